/*
 * libFuzzer: an HTTP request through a route table (hosted-origin routes, legacy routes with
 * ids in the path and in a JSON body). Input: "METHOD TARGET\n" then the body.
 * Properties: nothing crashes or reads out of bounds; whenever syncgate would send a
 * rewritten target, its path is one pol_path_parse() accepts (no dot segment, no escaped
 * "/", nothing a backend could split or decode differently from what was decided); a body
 * route's ids, once read, are path segments.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "policy/call.h"
#include "policy/config.h"
#include "policy/path.h"
#include "policy/route.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static const char conf[] =
	"[syncgate]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n"
	"[upstream:rest]\nurl = http://127.0.0.1:3\n"
	"[route:hosted-realtime]\nmatch = GET /public_api/v1/{app}/realtime/{user}\nsync = realtime\n"
	"rewrite = /v1/{app}/realtime/{user}\n"
	"[route:hosted-rest]\nmatch = * /public_api/v1/{app}/{*}\nupstream = rest\nrewrite = /v1/{app}/{*}\n"
	"[route:legacy-user]\nmatch = PUT,PATCH /legacy/{app}/users/{user}\nsync = user_set\nbody = json\n"
	"rewrite = /v1/{app}/users/{user}\n"
	"[route:legacy-create]\nmatch = POST /legacy/{app}/users\nsync = user_create\nbody = json\n"
	"user = body:id\nrewrite = /v1/{app}/users/{user}\n"
	"[route:legacy-member]\nmatch = PUT /legacy/{app}/c/{conversation}/m/{participant}\n"
	"sync = participant\nbody = json\nrewrite = /v1/{app}/conversations/{conversation}/participants/{participant}\n"
	"[route:legacy-join]\nmatch = POST /join\napp = body:app\nconversation = body:c\nparticipant = body:u\n"
	"sync = participant\nbody = json\nrewrite = /v1/{app}/conversations/{conversation}/participants/{participant}\n"
	"[route:odd]\nmatch = * /x/{app}/{*}\nrewrite = /v1/{app}/users/{*}\n"
	"[app:a1]\nuser_sync = off\nsecret_key = sk_test_a1\n";

static struct pol_config *cfg;
static struct pol_classifier *k;

/* The path of target T (RLEN bytes) must parse. */
static void
check_target(const char *t, long len)
{
	struct pol_path p;
	const char *why;
	long plen = 0;
	while (plen < len && t[plen] != '?')
		plen++;
	if (pol_path_parse(t, (size_t)plen, POL_PATH_PCHAR, &p, &why))
		abort();
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	const char *in = (const char *)data, *nl, *sp, *why;
	char rw[4096], err[POL_ERR_MAX];
	struct pol_call call;
	struct pol_route_match m;
	long rwlen;
	char *body;
	size_t blen;

	if (!cfg) {
		cfg = pol_config_load_string(conf, "fuzz.conf", err);
		k = cfg ? pol_classifier_new(&cfg->limits) : NULL;
		if (!cfg || !k)
			abort();
	}
	nl = memchr(in, '\n', size);
	if (!nl)
		nl = in + size;
	sp = memchr(in, ' ', (size_t)(nl - in));
	if (!sp || sp == in || nl - sp < 2 || sp[1] != '/')
		return 0;
	if (pol_classify_request(k, cfg, in, (size_t)(sp - in), sp + 1, (size_t)(nl - sp - 1),
	                         (size > 3 && in[size - 1] == 'K') ? "Bearer sk_test_a1" : NULL,
	                         17, 0, &call, &m, rw, sizeof rw, &rwlen, &why))
		return 0;
	if (rwlen > 0)
		check_target(rw, rwlen);
	if (!m.route || !m.route->body_json)
		return 0;
	blen = nl < in + size ? size - (size_t)(nl + 1 - in) : 0;
	body = malloc(blen ? blen : 1); /* exactly its length: a read past it is caught */
	if (!body)
		return 0;
	memcpy(body, nl < in + size ? nl + 1 : "", blen);
	if (pol_classify_body(k, cfg, &m, &call, body, blen,
	                      (size > 3 && in[size - 1] == 'K') ? "Bearer sk_test_a1" : NULL, 17, 0,
	                      &why) == 0 && m.route->has_rewrite) {
		rwlen = pol_route_rewrite(&m, &call, sp + 1, (size_t)(nl - sp - 1), rw, sizeof rw);
		if (rwlen > 0)
			check_target(rw, rwlen);
	}
	free(body);
	return 0;
}
