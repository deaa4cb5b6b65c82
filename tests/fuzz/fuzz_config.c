/* libFuzzer: the configuration loader. Property: it either loads or names FILE:LINE. */
#include <stdlib.h>
#include <string.h>

#include "policy/config.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	char *text = malloc(size + 1), err[POL_ERR_MAX];
	struct pol_config *c;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	err[0] = 0;
	c = pol_config_load_string(text, "fuzz.conf", err);
	if (!c && strncmp(err, "fuzz.conf:", 10))
		abort();
	if (c) {
		(void)pol_config_app(c, "x", 1);
		pol_config_unref(c);
	}
	free(text);
	return 0;
}
