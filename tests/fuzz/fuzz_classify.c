/* libFuzzer: realtime frame classification and decision under every switch combination.
 * Properties: an accepted frame is strictly valid (parsing it again gives the same call);
 * a refused frame's seq, when read, lies inside the input; decisions are total. */
#include <stdlib.h>
#include <string.h>

#include "policy/call.h"
#include "policy/decide.h"
#include "policy/json.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static struct pol_classifier *k;
	static struct pol_limits lim = {.json_tokens = 4096, .json_depth = 32, .batch_actions = 100};
	struct pol_call c;
	const char *why;
	int us, cs, mode;

	if (!k)
		k = pol_classifier_new(&lim);
	if (pol_classify_frame(k, (const char *)data, size, &c, &why)) {
		if (c.seq && (c.seq < (const char *)data || c.seq + c.seq_len > (const char *)data + size))
			abort();
		return 0;
	}
	enum pol_op op = c.op;
	int nact = c.nactions;
	for (us = 0; us < 2; us++)
		for (cs = 0; cs < 2; cs++)
			for (mode = 0; mode < 2; mode++) {
				struct pol_app app;
				struct pol_decision d;
				struct pol_facts f = {POL_FV_TRUE, POL_FV_FALSE, POL_FV_ERROR};
				memset(&app, 0, sizeof app);
				strcpy(app.id, "fz");
				app.user_sync = us;
				app.conversation_sync = cs;
				app.mode = mode ? POL_MODE_REPORT : POL_MODE_ENFORCE;
				struct pol_ctx ctx = {&app, "me", 2, 1};
				pol_decide(&ctx, &c, NULL, &d);
				if (d.verdict == POL_DENY && (d.status < 400 || !d.error_code || !d.reason[0]))
					abort();
				pol_decide(&ctx, &c, &f, &d);
				if (d.verdict == POL_NEED_FACT && op != POL_OP_PART_BATCH)
					abort(); /* with every fact known a call must be decided */
				for (int i = 0; i < nact; i++)
					pol_decide_action(&ctx, &c, i, &f, &d);
			}
	/* accepted text classifies the same way again */
	{
		struct pol_call c2;
		if (pol_classify_frame(k, (const char *)data, size, &c2, &why) || c2.op != op ||
		    c2.nactions != nact)
			abort();
	}
	return 0;
}
