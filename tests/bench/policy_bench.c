/*
 * policy_bench: classify + decide on one core for a realistic realtime frame mix, and the
 * number of heap allocations per frame (counted by interposing malloc). Not a test: it
 * prints figures. Target (issue 4): >= 1,000,000 decisions/s overall, no allocation per
 * read frame.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/call.h"
#include "policy/decide.h"
#include "policy/route.h"

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static unsigned long allocs;
void *malloc(size_t n) { allocs++; return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { allocs++; return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { allocs++; return __libc_realloc(p, n); }

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* HTTP requests classified (pol_classify_request: built-in classification, route table,
 * rewrite) per second, against a config with NROUTES operator routes (legacy-style paths
 * that the TalkJS requests below never match, plus the three hosted-origin routes when
 * HOSTED), for each request of a small set. */
static void
route_bench_one(struct pol_classifier *k, int nroutes, int hosted, long iters)
{
	static const char *const reqs[][2] = {
		{"GET", "/public_api/v1/bench/realtime/alice?talkjs-core=1"},
		{"PUT", "/public_api/v1/bench/users/alice"},
		{"GET", "/api/v0/bench/bokens/alice?signature=ab"},
		{"PUT", "/legacy/bench/tenant7/users/alice"},
	};
	char *text = malloc(200 * 1024), err[POL_ERR_MAX], rw[4096];
	size_t at = 0;
	struct pol_config *c;
	int i;

	at += (size_t)snprintf(text + at, 200 * 1024 - at,
	                       "[syncgate]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n"
	                       "[upstream:rest]\nurl = http://127.0.0.1:3\n");
	for (i = 0; i < nroutes; i++)
		at += (size_t)snprintf(text + at, 200 * 1024 - at,
		                       "[route:r%d]\nmatch = PUT,PATCH /legacy/{app}/tenant%d/users/{user}\n"
		                       "sync = user_set\nrewrite = /v1/{app}/users/{user}\n", i, i);
	if (hosted)
		at += (size_t)snprintf(text + at, 200 * 1024 - at,
		                       "[route:hr]\nmatch = GET /public_api/v1/{app}/realtime/{user}\n"
		                       "sync = realtime\nrewrite = /v1/{app}/realtime/{user}\n"
		                       "[route:hrest]\nmatch = * /public_api/v1/{app}/{*}\nupstream = rest\n"
		                       "rewrite = /v1/{app}/{*}\n"
		                       "[route:happ]\nmatch = * /api/v0/{app}/{*}\n");
	c = pol_config_load_string(text, "bench.conf", err);
	free(text);
	if (!c) {
		fprintf(stderr, "%s\n", err);
		abort();
	}
	printf("  %d operator routes%s:\n", c->operator_routes, hosted ? " (the 3 hosted-origin ones included)" : "");
	for (i = 0; i < (int)(sizeof reqs / sizeof reqs[0]); i++) {
		struct pol_call call;
		struct pol_route_match m;
		const char *why;
		long rwlen, j, n = iters / 4;
		unsigned long a0 = allocs;
		double t0 = now();
		for (j = 0; j < n; j++)
			if (pol_classify_request(k, c, reqs[i][0], strlen(reqs[i][0]), reqs[i][1], strlen(reqs[i][1]),
			                         NULL, 0, 0, &call, &m, rw, sizeof rw, &rwlen, &why))
				abort();
		double dt = now() - t0;
		printf("    %-6s %-52s %12.0f requests/s  %.2f allocations  route %s\n", reqs[i][0], reqs[i][1],
		       (double)n / dt, (double)(allocs - a0) / (double)n, m.route ? m.route->name : "(none)");
	}
	pol_config_unref(c);
}

static void
route_bench(struct pol_classifier *k, long iters)
{
	printf("policy_bench: HTTP classification through the route table\n");
	route_bench_one(k, 0, 0, iters);
	route_bench_one(k, 47, 1, iters);
}

int
main(int argc, char **argv)
{
	struct pol_limits lim = {.json_tokens = 100000, .json_depth = 64, .batch_actions = 100};
	struct pol_classifier *k = pol_classifier_new(&lim);
	struct pol_app app;
	char msg[2048], content[1100];
	long iters = argc > 1 ? atol(argv[1]) : 2000000;
	int i;

	memset(&app, 0, sizeof app);
	strcpy(app.id, "bench");
	app.user_sync = 0;
	app.conversation_sync = 0;
	struct pol_ctx ctx = {&app, "alice", 5, 1};
	for (i = 0; i < 1024; i++)
		content[i] = (char)('a' + i % 26);
	content[1024] = 0;
	snprintf(msg, sizeof msg,
	         "[17,\"POST\",\"/conversations/c_123/messages\",{\"content\":[{\"type\":\"text\",\"children\":[\"%s\"]}],\"idempotencyKey\":\"k_1795722257646\"},{}]",
	         content);

	/* the mix: what an SDK session sends, weighted */
	struct { const char *name; const char *frame; int weight; } mix[] = {
		{"ping", "[3,\"GET\",\"/ping\",{},{}]", 10},
		{"user read", "[4,\"GET\",\"/users\",{\"ids\":[\"alice\",\"bob\",\"carol\"],\"includePrivateFields\":false},{}]", 20},
		{"subscribe", "[5,\"SUBSCRIBE\",\"/me/conversations/c_123/messages\",{},{}]", 15},
		{"list read", "[6,\"GET\",\"/me/conversations/c_123/messages\",{\"limit\":30,\"cursor\":null},{}]", 15},
		{"ack", "[41,\"ACK\"]", 10},
		{"message 1 KiB", msg, 15},
		{"typing", "[7,\"POST\",\"/me/conversations/c_123/typing\",{},{}]", 5},
		{"user set (denied)", "[8,\"PUT\",\"/users/alice\",{\"name\":\"Alice\",\"custom\":{\"team\":\"red\"},\"locale\":\"nl-NL\"},{}]", 5},
		{"participant batch (denied)", "[9,\"POST\",\"/conversations/c_123/participants\",{\"actions\":[{\"id\":\"bob\",\"method\":\"PUT\",\"params\":{\"access\":\"Read\"}},{\"id\":\"alice\",\"method\":\"PATCH\",\"params\":{\"notify\":false,\"access\":\"ReadWrite\"}}]},{}]", 5},
	};
	int nmix = (int)(sizeof mix / sizeof mix[0]), total_w = 0, w;
	size_t lens[16];
	for (i = 0; i < nmix; i++) {
		total_w += mix[i].weight;
		lens[i] = strlen(mix[i].frame);
	}
	/* a schedule of frame indices following the weights */
	int sched[100], ns = 0;
	for (i = 0; i < nmix; i++)
		for (w = 0; w < mix[i].weight * 100 / total_w; w++)
			sched[ns++] = i;

	printf("policy_bench: %ld decisions, mix of %d frame kinds\n", iters, nmix);
	for (i = 0; i < nmix; i++) {
		struct pol_call c;
		struct pol_decision d;
		const char *why;
		unsigned long a0 = allocs;
		long n = iters / 10, j;
		double t0 = now();
		for (j = 0; j < n; j++) {
			if (pol_classify_frame(k, mix[i].frame, lens[i], &c, &why))
				abort();
			if (c.op == POL_OP_PART_BATCH) {
				int x;
				for (x = 0; x < c.nactions; x++)
					pol_decide_action(&ctx, &c, x, NULL, &d);
			} else {
				pol_decide(&ctx, &c, NULL, &d);
			}
		}
		double dt = now() - t0;
		printf("  %-28s %6zu B  %12.0f decisions/s  %.2f allocations/frame\n", mix[i].name, lens[i],
		       (double)n / dt, (double)(allocs - a0) / (double)n);
	}
	{
		struct pol_call c;
		struct pol_decision d;
		const char *why;
		unsigned long a0 = allocs;
		long j;
		double t0 = now();
		for (j = 0; j < iters; j++) {
			int f = sched[j % ns];
			pol_classify_frame(k, mix[f].frame, lens[f], &c, &why);
			if (c.op == POL_OP_PART_BATCH) {
				int x;
				for (x = 0; x < c.nactions; x++)
					pol_decide_action(&ctx, &c, x, NULL, &d);
			} else {
				pol_decide(&ctx, &c, NULL, &d);
			}
		}
		double dt = now() - t0;
		printf("  %-28s %6s    %12.0f decisions/s  %.2f allocations/frame  (target >= 1,000,000/s)\n",
		       "MIX (weighted)", "", (double)iters / dt, (double)(allocs - a0) / (double)iters);
	}
	route_bench(k, iters);
	pol_classifier_free(k);
	return 0;
}
