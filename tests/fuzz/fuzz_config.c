/* libFuzzer: the configuration loader. Property: it either loads or names FILE:LINE. */
#include <stdlib.h>
#include <string.h>

#include "policy/call.h"
#include "policy/config.h"
#include "policy/route.h"

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
		/* whatever table loaded: requests go through it, and -T can print it */
		static const char *const reqs[][2] = {
			{"GET", "/public_api/v1/a1/realtime/u1?x"}, {"PUT", "/v1/a1/users/u%201"},
			{"POST", "/l/a1/users"}, {"DELETE", "/"}, {"PATCH", "/a/b/c/d/e/f/g/h/i"},
		};
		struct pol_classifier *k = pol_classifier_new(&c->limits);
		char rw[2048], line[1400];
		struct pol_call call;
		struct pol_route_match m;
		const char *why;
		long rwlen;
		int i;
		(void)pol_config_app(c, "x", 1);
		for (i = 0; k && i < (int)(sizeof reqs / sizeof reqs[0]); i++)
			(void)pol_classify_request(k, c, reqs[i][0], strlen(reqs[i][0]), reqs[i][1],
			                           strlen(reqs[i][1]), NULL, 0, 0, &call, &m, rw, sizeof rw,
			                           &rwlen, &why);
		for (i = 0; i < c->nroutes; i++)
			pol_route_describe(c, &c->routes[i], line, sizeof line);
		pol_classifier_free(k);
		pol_config_unref(c);
	}
	free(text);
	return 0;
}
