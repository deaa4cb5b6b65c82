/* libFuzzer: JWT and signature verification, credential classes. Property: nothing is valid
 * unless it carries the HMAC of the key (a random input never verifies). */
#include <stdlib.h>
#include <string.h>

#include "policy/jwt.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *why;
	struct pol_app app;
	char hdr[9000];

	if (pol_jwt_verify((const char *)data, size, "sk_test_fuzz", "app1", "alice", 5, "user",
	                   1700000000, 60, &why))
		abort();
	if (pol_jwt_verify((const char *)data, size, "sk_test_fuzz", "app1", NULL, 0, "app",
	                   1700000000, 60, &why))
		abort();
	if (pol_signature_ok("sk_test_fuzz", "alice", 5, (const char *)data, size))
		abort();
	memset(&app, 0, sizeof app);
	strcpy(app.id, "app1");
	app.secret_key = (char *)"sk_test_fuzz";
	if (size + 7 < sizeof hdr) {
		memcpy(hdr, "Bearer ", 7);
		memcpy(hdr + 7, data, size);
		/* SERVER only for the key itself (spaces after "Bearer" are tolerated) */
		size_t sp = 0;
		while (sp < size && data[sp] == ' ')
			sp++;
		if (pol_credential_class(&app, hdr, size + 7, 1700000000, 60) == POL_CRED_SERVER &&
		    !(size - sp == 12 && !memcmp(data + sp, "sk_test_fuzz", 12)))
			abort();
	}
	return 0;
}
