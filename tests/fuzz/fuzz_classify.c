/* libFuzzer: realtime frame classification and decision under every switch combination.
 * Properties: an accepted frame is strictly valid (parsing it again gives the same call);
 * a refused frame's seq, when read, lies inside the input; decisions are total; the frame
 * written without locked fields (on_locked = strip) is strict JSON, never longer, and holds
 * none of them. The same bytes as an HTTP body (pol_classify_payload(), a participants batch
 * and a plain change): decided without crashing under locked lists, reject and strip. */
#include <stdlib.h>
#include <string.h>

#include "policy/call.h"
#include "policy/decide.h"
#include "policy/fields.h"
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
	for (int batch = 0; batch < 2; batch++) {
		/* an HTTP change whose body is its payload (an app locking fields of it) */
		struct pol_call h;
		memset(&h, 0, sizeof h);
		h.op = POL_OP_CONV_SET;
		h.method = POL_M_POST;
		h.data_tok = -1;
		h.http_batch = batch;
		h.cred = POL_CRED_BROWSER;
		if (pol_classify_payload(k, &h, (const char *)data, size, &why) == 0) {
			if (batch && size && (h.nactions < 1 || h.nactions > 100))
				abort(); /* a batch body read is one of 1..batch_actions actions */
			for (int strip = 0; strip < 2; strip++) {
				struct pol_app app;
				struct pol_decision d;
				memset(&app, 0, sizeof app);
				strcpy(app.id, "fz");
				app.user_sync = app.conversation_sync = 1;
				app.strip_locked = strip;
				strcpy(app.locked[POL_FIELDS_PART].name[0], "access");
				strcpy(app.locked[POL_FIELDS_CONV].name[0], "custom.tier");
				app.locked[POL_FIELDS_PART].n = app.locked[POL_FIELDS_CONV].n = 1;
				struct pol_ctx ctx = {&app, "me", 2, 1};
				pol_decide(&ctx, &h, NULL, &d);
				if (d.verdict != POL_ALLOW && d.verdict != POL_DENY)
					abort(); /* a conversation change with the switch on is decided */
				if (d.verdict == POL_DENY && strcmp(d.error_code, "FIELD_LOCKED"))
					abort();
			}
		}
	}
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
	/* the strip rewrite: fields at the top, nested, and a parent with its child */
	if (c.toks && c.data_tok >= 0) {
		static struct pol_locked l;
		static char out[65536];
		const struct pol_locked *lists[1] = {&l};
		int objs[101], nobj = 0, i;
		long r;
		if (!l.n) {
			static const char *const names[] = {"role", "custom.plan", "a", "a.b", "notify", "x.y.z"};
			for (i = 0; i < 6; i++)
				strcpy(l.name[l.n++], names[i]);
		}
		objs[nobj++] = c.data_tok;
		for (i = 0; i < c.nactions && nobj < 101; i++)
			objs[nobj++] = c.actions[i].params;
		r = size <= sizeof out ? pol_fields_strip(lists, 1, c.text, c.toks, objs, nobj, out, size,
		                                          NULL, 0)
		                       : -1;
		if (r > (long)size)
			abort();
		if (r >= 0) {
			struct pol_call c3;
			if (pol_classify_frame(k, out, (size_t)r, &c3, &why))
				abort(); /* the rewrite of a valid call is a valid call */
			const char *nm;
			if (pol_fields_find(&l, c3.text, c3.toks, c3.data_tok, &nm))
				abort(); /* and holds no locked field any more */
		}
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
