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
	pol_classifier_free(k);
	return 0;
}
