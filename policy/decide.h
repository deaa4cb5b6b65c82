/*
 * policy/decide.h - the decision function: a classified call plus the facts known so far in,
 * a verdict out (protocol.md section 7). Pure: no I/O, no clock, no allocation.
 *
 * A decision that depends on a fact syncgate has not looked up yet returns POL_NEED_FACT
 * naming it; the caller looks it up (proxy/lookup.c) and decides again with the answer.
 * A participant batch is decided one action at a time (pol_decide_action).
 */
#ifndef SG_POLICY_DECIDE_H
#define SG_POLICY_DECIDE_H

#include "policy/call.h"
#include "policy/config.h"

enum pol_verdict { POL_ALLOW, POL_DENY, POL_NEED_FACT, POL_BADREQ };

enum pol_fact_kind { POL_FACT_NONE, POL_FACT_USER_EXISTS, POL_FACT_CONV_EXISTS,
                     POL_FACT_PARTICIPANT };

/* What is known of one fact. ERROR: the lookup failed (unreachable, timeout, no key). */
enum pol_fact_value { POL_FV_UNKNOWN, POL_FV_TRUE, POL_FV_FALSE, POL_FV_ERROR };

/* The facts of one decision: about the call's user / conversation, or one action's. */
struct pol_facts {
	enum pol_fact_value user_exists;
	enum pol_fact_value conv_exists;
	enum pol_fact_value participant; /* the (action's) uid is a participant of cid */
};

/* Who is asking: the app's policy and the socket's user. */
struct pol_ctx {
	const struct pol_app *app;
	const char *me; /* the userId of the realtime socket URL (decoded); NULL for HTTP */
	size_t me_len;
	int authenticated; /* identity = require: a valid token was seen on this socket */
};

#define POL_REASON_MAX 320

struct pol_decision {
	enum pol_verdict verdict;
	int status;             /* DENY/BADREQ: 400, 401, 403 or 409 */
	const char *error_code; /* DENY/BADREQ */
	char reason[POL_REASON_MAX];
	enum pol_fact_kind need; /* NEED_FACT: which fact (about call/action uid and cid) */
	int would_deny;         /* report mode: ALLOW that enforce mode would have refused */
	const char *rule;       /* short name of the table row applied, for the decision log */
	/* on_locked = strip: ALLOW, but the payload goes without the locked fields it holds
	 * (reason: their names, comma-separated); would_strip: the same in report mode, nothing
	 * changed. strip_lists: the lists to strip with (into the app, valid with its config). */
	int strip, would_strip;
	const struct pol_locked *strip_lists[2];
	int nstrip_lists;
};

/* Decides a whole call (not a batch: see below). FACTS may be NULL (nothing known). */
void pol_decide(const struct pol_ctx *ctx, const struct pol_call *call,
                const struct pol_facts *facts, struct pol_decision *out);

/* Decides action I of a POL_OP_PART_BATCH call. */
void pol_decide_action(const struct pol_ctx *ctx, const struct pol_call *call, int i,
                       const struct pol_facts *facts, struct pol_decision *out);

/*
 * 1 if APP locks fields that an allowed change of OP is checked for (user_fields_locked for a
 * user change; conversation_ and participant_fields_locked for a conversation change;
 * participant_fields_locked for a participant action or batch): the call's payload must then
 * be read before it is decided (over HTTP, its body). 0 for every other operation.
 */
int pol_app_locks(const struct pol_app *app, enum pol_op op);

const char *pol_verdict_to_str(enum pol_verdict v);
const char *pol_fact_to_str(enum pol_fact_kind k);

#endif
