/*
 * proxy/police.c - the one policing path (contract in police.h).
 *
 * A call that needs a fact is parked: its text is copied, its bytes held by the transport,
 * and the fact asked for; when it arrives the text is classified again (a struct pol_call
 * points into the classifier's scratch, which later calls reuse) and decided with the fact.
 * A stream that goes away while calls are parked leaves them orphaned: their lookups'
 * callbacks only free them.
 */
#include "proxy/police.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/path.h"
#include "proxy/log.h"
#include "proxy/shared.h"

struct px_police {
	struct px_env *env;
	struct px_facts facts;
};

struct parked {
	struct px_police_stream *s;  /* NULL once the stream is gone: the callback only frees */
	struct px_police *p;
	const struct px_transport *tr;
	struct parked *next;         /* in s->parked */
	char *text;                  /* the call, classified again when the fact arrives */
	size_t len;
	void *held;                  /* its bytes (tr->hold) */
	int *settled_now;            /* set while px_police_call() waits inside the ask: a fact
	                              * known at once settles the call as if never parked */
};

struct px_police *
px_police_new(struct px_env *env, const struct px_facts *facts)
{
	struct px_police *p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->env = env;
	p->facts = *facts;
	return p;
}

void
px_police_free(struct px_police *p)
{
	free(p);
}

void
px_police_stream_init(struct px_police_stream *s, struct px_police *p,
                      const struct px_transport *tr, void *t, const char *socket_id,
                      const char *peer)
{
	memset(s, 0, sizeof *s);
	s->p = p;
	s->tr = tr;
	s->t = t;
	s->socket_id = socket_id;
	s->peer = peer;
	s->dc_row = -1;
}

void
px_police_stream_release(struct px_police_stream *s)
{
	struct parked *q;
	for (q = s->parked; q; q = q->next)
		q->s = NULL;
	s->parked = NULL;
	s->nparked = 0;
}

void
px_police_ctx(struct px_police_stream *s, const char *app, size_t app_len, struct pol_ctx *ctx)
{
	struct px_env *env = s->p->env;

	px_env_refresh(env);
	if (app) {
		ctx->app = pol_config_app(env->cfg, app, app_len);
	} else {
		if (!s->app_pol || s->app_gen != env->gen) {
			s->app_pol = pol_config_app(env->cfg, s->app, strlen(s->app));
			s->app_gen = env->gen;
		}
		ctx->app = s->app_pol;
	}
	ctx->me = s->user;
	ctx->me_len = s->user_len;
	ctx->authenticated = s->user && ctx->app->identity == POL_IDENTITY_REQUIRE ? s->authenticated : 1;
}

/* ---- log, count, invalidate ---- */

static void note(struct px_police_stream *s, const struct pol_ctx *ctx, const struct pol_call *call,
                 const struct pol_decision *d);

/* The user a refusal budget counts against: the realtime socket's, or the one an HTTP
 * request's credential names (cred_user); NULL: none, nothing is counted. */
static const char *
budget_user(const struct px_police_stream *s)
{
	return s->user ? s->user : s->cred_user;
}

/* The app of CALL as the client named it (the realtime socket's, or an HTTP request's), into
 * OUT, for log lines. */
static void
app_of(const struct px_police_stream *s, const struct pol_call *call, char out[POL_APPID_MAX + 1])
{
	size_t al;

	if (!call->app) {
		memcpy(out, s->app, POL_APPID_MAX + 1);
		return;
	}
	al = call->app_len < POL_APPID_MAX ? call->app_len : POL_APPID_MAX;
	memcpy(out, call->app, al);
	out[al] = 0;
}

/* A refusal counted against the user's budget (refusal_budget): the refusal that uses it up
 * is logged once (budget_exhausted, and banned with refusal_ban); report mode logs what
 * would have happened and bans nobody. Only changes count (pol_op_is_change: not
 * /session/renew, reads or messages), and not the budget's own refusals. */
static void
budget_count(struct px_police_stream *s, const struct pol_ctx *ctx, const struct pol_call *call,
             const struct pol_decision *d)
{
	const struct pol_app *app = ctx->app;
	const char *user = budget_user(s);
	enum px_budget ev;
	char n[16], w[24], an[POL_APPID_MAX + 1];
	int report = app->mode == POL_MODE_REPORT;

	if (!app->budget || !user || !pol_op_is_change(call->op) ||
	    (d->rule && !strcmp(d->rule, "refusal-budget")))
		return;
	ev = px_shared_budget_refused(s->p->env->shared, app, user, px_wall_ms());
	if (ev == PX_BUDGET_OK)
		return;
	app_of(s, call, an);
	snprintf(n, sizeof n, "%u", (unsigned)app->budget);
	snprintf(w, sizeof w, "%u", (unsigned)(app->budget_window_ms / 1000));
	px_count(&s->p->env->ctr->budgets_exhausted, 1);
	px_log(PX_LOG_WARN, report ? "would_budget" : "budget_exhausted", "app", an, "user", user,
	       "peer", s->peer, "transport", s->tr->name, "#refusals", n, "#window_s", w, NULL);
	if (ev == PX_BUDGET_BANNED) {
		char b[24];
		snprintf(b, sizeof b, "%u", (unsigned)(app->ban_ms / 1000));
		px_count(&s->p->env->ctr->bans, 1);
		px_log(PX_LOG_WARN, report ? "would_ban" : "banned", "app", an, "user", user,
		       "peer", s->peer, "transport", s->tr->name, "#ban_s", b, NULL);
		if (!report)
			s->banned = 1;
	}
}

enum px_budget
px_police_budget_state(struct px_police *p, const struct pol_app *app, const char *app_name,
                       const char *user)
{
	int reset;
	enum px_budget st = px_shared_budget_state(p->env->shared, app->id[0] ? app->id : "*", user,
	                                           px_wall_ms(), &reset);
	if (reset)
		px_log(PX_LOG_INFO, "budget_reset", "app", app_name, "user", user, NULL);
	return st;
}

/*
 * refusal_budget: a user whose budget is used up (or who is banned) gets further changes
 * refused from memory, 403 TOO_MANY_REFUSED_CALLS (never 429: the SDK would re-send it
 * forever). Returns 1 when CALL was answered so (MSG carried out by the transport).
 */
static int
budget_refuse(struct px_police_stream *s, const struct pol_ctx *ctx, const struct pol_call *call,
              void *msg)
{
	const struct pol_app *app = ctx->app;
	const char *user;
	struct pol_decision d;
	enum px_budget st;
	char an[POL_APPID_MAX + 1];

	if (!app->budget || !(user = budget_user(s)) || !pol_op_is_change(call->op))
		return 0;
	app_of(s, call, an);
	st = px_police_budget_state(s->p, app, an, user);
	if (st == PX_BUDGET_OK || app->mode == POL_MODE_REPORT)
		return 0;
	memset(&d, 0, sizeof d);
	d.verdict = POL_DENY;
	d.status = 403;
	d.error_code = "TOO_MANY_REFUSED_CALLS";
	d.rule = "refusal-budget";
	snprintf(d.reason, sizeof d.reason,
	         "syncgate: user %.64s of app %.64s had %u changes refused within %us: further changes "
	         "are refused for now%s; make them from your server with the REST API",
	         user, app->id[0] ? app->id : "(default)", (unsigned)app->budget,
	         (unsigned)(app->budget_window_ms / 1000), st == PX_BUDGET_BANNED ? " (banned)" : "");
	note(s, ctx, call, &d);
	if (st == PX_BUDGET_BANNED)
		s->banned = 1;
	s->tr->carry_out(s->t, msg, call, &d, 0);
	return 1;
}

/* A refusal for the admin console's list (px_stats_refusal): refusals only, so the clock
 * read and the copy never touch an allowed call. */
static void
keep_refusal(const struct px_police_stream *s, const struct pol_call *call,
             const struct pol_decision *d, const char *app, const char *method, const char *path)
{
	struct px_refusal r;

	memset(&r, 0, sizeof r);
	r.time_ms = px_wall_ms();
	snprintf(r.app, sizeof r.app, "%s", app);
	snprintf(r.user, sizeof r.user, "%s", s->user ? s->user : "");
	snprintf(r.op, sizeof r.op, "%s", pol_op_to_str(call->op));
	snprintf(r.transport, sizeof r.transport, "%s", s->tr->name);
	snprintf(r.method, sizeof r.method, "%s", method);
	snprintf(r.path, sizeof r.path, "%s", path);
	snprintf(r.error_code, sizeof r.error_code, "%s", d->error_code ? d->error_code : "");
	snprintf(r.reason, sizeof r.reason, "%s", d->reason);
	r.status = d->status;
	r.report = d->would_deny;
	px_stats_refusal(s->p->env->stats, &r);
}

/* The decision line: the same keys on every transport. */
static void
log_decision(const struct px_police_stream *s, const struct pol_call *call,
             const struct pol_decision *d)
{
	char status[8], path[256], method[17], app[POL_APPID_MAX + 1];

	if (pol_path_canon_from(&call->path, call->res, path, sizeof path) < 0)
		strcpy(path, "(long)");
	snprintf(status, sizeof status, "%d", d->status);
	snprintf(method, sizeof method, "%.*s", (int)(call->method_len < 16 ? call->method_len : 16),
	         call->method_text ? call->method_text : "");
	app_of(s, call, app);
	if (px_verdict_of(d) == PX_V_REFUSE || px_verdict_of(d) == PX_V_WOULD_REFUSE)
		keep_refusal(s, call, d, app, method, path);
	if (d->strip || d->would_strip) {
		/* an allowed change without its locked fields: which ones went (or would have) */
		px_log(PX_LOG_INFO, d->strip ? "strip" : "would_strip", "transport", s->tr->name,
		       "socket", s->socket_id, "id", s->request_id ? s->request_id : "", "peer", s->peer,
		       "app", app, "user", s->user ? s->user : "", "op", pol_op_to_str(call->op), "method",
		       method, "path", path, "fields", d->reason, "rule", d->rule ? d->rule : "", "mode",
		       d->would_strip ? "report" : "enforce", NULL);
		return;
	}
	px_log(PX_LOG_INFO, px_verdict_to_str(px_verdict_of(d)), "transport", s->tr->name,
	       "socket", s->socket_id, "id", s->request_id ? s->request_id : "", "peer", s->peer, "app", app, "user", s->user ? s->user : "",
	       "op", pol_op_to_str(call->op), "method", method, "path", path, "#status", status,
	       "errorCode", d->error_code ? d->error_code : "", "rule", d->rule ? d->rule : "",
	       "mode", d->would_deny ? "report" : "enforce", NULL);
}

/*
 * Counts a decision for /metrics. A stream's decisions repeat (the same call, the same
 * verdict), so the row of the last one is remembered and bumped without hashing.
 */
static void
count_decision(struct px_police_stream *s, const struct pol_ctx *ctx, enum pol_op op,
               enum px_verdict v)
{
	struct px_env *env = s->p->env;

	if (s->dc_row >= 0 && s->dc_gen == env->gen && s->dc_app == ctx->app && s->dc_op == op &&
	    s->dc_verdict == v) {
		px_stats_decision_again(env->stats, s->dc_row);
		return;
	}
	s->dc_row = px_stats_decision(env->stats, ctx->app->id[0] ? ctx->app->id : "*", op, v);
	s->dc_gen = env->gen;
	s->dc_app = ctx->app;
	s->dc_op = op;
	s->dc_verdict = v;
}

/* A refusal, a would-be refusal or an "exists" is logged; every decision is counted. */
static void
note(struct px_police_stream *s, const struct pol_ctx *ctx, const struct pol_call *call,
     const struct pol_decision *d)
{
	if (d->verdict != POL_ALLOW || d->would_deny || d->strip || d->would_strip)
		log_decision(s, call, d);
	if (px_verdict_of(d) == PX_V_REFUSE || px_verdict_of(d) == PX_V_WOULD_REFUSE)
		budget_count(s, ctx, call, d);
	count_decision(s, ctx, call->op, px_verdict_of(d));
}

void
px_police_note(struct px_police_stream *s, const struct pol_ctx *ctx, const struct pol_call *call,
               const struct pol_decision *d)
{
	note(s, ctx, call, d);
}

/* After forwarding a call that may change a cached fact, the fact is dropped: the same on
 * every transport, browser calls and server-credential REST calls alike. */
static void
forget_facts(struct px_police *p, const struct pol_ctx *ctx, const struct pol_call *call)
{
	const char *app = ctx->app->id;

	if (!app[0])
		return; /* no key, no lookups, nothing cached */
	switch (call->op) {
	case POL_OP_USER_SET:
	case POL_OP_USER_CREATE:
		if (call->uid)
			p->facts.forget(p->facts.src, app, PX_LOOKUP_USER, call->uid, call->uid_len);
		break;
	case POL_OP_CONV_SET:
	case POL_OP_CONV_CREATE:
	case POL_OP_PART_BATCH:
	case POL_OP_PART_ACTION:
	case POL_OP_PART_DELETE:
		if (call->cid)
			p->facts.forget(p->facts.src, app, PX_LOOKUP_CONVERSATION, call->cid, call->cid_len);
		break;
	case POL_OP_REST_SERVER:
		if (call->method == POL_M_GET || call->method == POL_M_HEAD)
			break;
		if (call->cid)
			p->facts.forget(p->facts.src, app, PX_LOOKUP_CONVERSATION, call->cid, call->cid_len);
		else if (call->uid)
			p->facts.forget(p->facts.src, app, PX_LOOKUP_USER, call->uid, call->uid_len);
		break;
	default:
		break;
	}
}

/* ---- deciding ---- */

/* What fact F (NULL: none could be had) says; for a participant question, UID is asked. */
static enum pol_fact_value
fact_value(const struct px_police *p, const struct px_fact *f, int participant, const char *uid,
           size_t uid_len)
{
	enum px_lookup_state st = f ? p->facts.state(f) : PX_LOOKUP_ERROR;

	if (st == PX_LOOKUP_ERROR)
		return POL_FV_ERROR;
	if (st == PX_LOOKUP_ABSENT)
		return POL_FV_FALSE;
	if (!participant)
		return POL_FV_TRUE;
	return p->facts.has_participant(f, uid, uid_len) ? POL_FV_TRUE : POL_FV_FALSE;
}

static void
facts_for(const struct px_police *p, const struct px_fact *f, const char *uid, size_t uid_len,
          struct pol_facts *out)
{
	out->user_exists = out->conv_exists = fact_value(p, f, 0, NULL, 0);
	out->participant = fact_value(p, f, 1, uid, uid_len);
}

/* A participant batch with the switch off: each action decided with the conversation's
 * fact F (NULL: none was needed, or none could be had). */
static void
settle_batch(struct px_police_stream *s, const struct pol_ctx *ctx, const struct pol_call *call,
             const struct px_fact *f, void *msg, int parked)
{
	struct px_police *p = s->p;
	const struct px_transport *tr = s->tr;
	void *t = s->t;
	int i, n = call->nactions, any = 0;
	struct pol_decision *d = malloc((size_t)(n ? n : 1) * sizeof *d);
	unsigned char *allowed = malloc((size_t)(n ? n : 1));

	if (!d || !allowed) {
		struct pol_decision oom = {.verdict = POL_BADREQ, .status = 400,
		                           .error_code = "INVALID_REQUEST", .reason = "syncgate: out of memory",
		                           .rule = "out-of-memory"};
		free(d);
		free(allowed);
		tr->carry_out(t, msg, call, &oom, parked);
		return;
	}
	for (i = 0; i < n; i++) {
		struct pol_facts facts;
		pol_decide_action(ctx, call, i, NULL, &d[i]);
		if (d[i].verdict == POL_NEED_FACT) {
			const struct pol_action *a = &call->actions[i];
			facts_for(p, f, a->uid, a->uid_len, &facts);
			pol_decide_action(ctx, call, i, &facts, &d[i]);
		}
		note(s, ctx, call, &d[i]);
		allowed[i] = d[i].verdict == POL_ALLOW;
		any |= allowed[i];
	}
	if (any) /* (a batch refused whole changed nothing: the facts stay, here and in the fleet) */
		forget_facts(p, ctx, call);
	tr->carry_out_batch(t, msg, call, allowed, d, parked);
	free(d);
	free(allowed);
}

/* The final decision for CALL given the fact F it needed (NULL when none), carried out. */
static void
settle(struct px_police_stream *s, const struct pol_ctx *ctx, const struct pol_call *call,
       const struct px_fact *f, void *msg, int parked)
{
	struct pol_decision d;
	struct pol_facts facts;

	if (call->op == POL_OP_PART_BATCH) {
		/* decided action by action when the whole cannot be (the switch off, or an action
		 * holding a locked field) */
		pol_decide(ctx, call, NULL, &d);
		if (d.verdict == POL_NEED_FACT) {
			settle_batch(s, ctx, call, f, msg, parked);
			return;
		}
	}
	facts_for(s->p, f, call->uid, call->uid_len, &facts);
	pol_decide(ctx, call, &facts, &d);
	note(s, ctx, call, &d);
	if (d.verdict == POL_ALLOW)
		forget_facts(s->p, ctx, call);
	s->tr->carry_out(s->t, msg, call, &d, parked);
}

static void
parked_free(struct parked *q)
{
	if (q->held)
		q->tr->free_held(q->held);
	free(q->text);
	free(q);
}

static void
unpark(struct px_police_stream *s, struct parked *q)
{
	struct parked **pp;
	for (pp = &s->parked; *pp; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			s->nparked--;
			return;
		}
}

static void
fact_arrived(const struct px_fact *f, void *arg)
{
	struct parked *q = arg;
	struct px_police_stream *s = q->s;
	int parked = !q->settled_now;
	struct pol_call call;
	struct pol_ctx ctx;

	if (q->settled_now)
		*q->settled_now = 1;
	if (!s) {
		parked_free(q);
		return;
	}
	unpark(s, q);
	/* the text was classified before being parked: this cannot fail, but if it did the call
	 * would be dropped unanswered, so it is answered as malformed */
	if (s->tr->classify(s->t, q->text, q->len, &call)) {
		struct pol_decision bad = {.verdict = POL_BADREQ, .status = 400,
		                           .error_code = "INVALID_REQUEST",
		                           .reason = "syncgate: the call could not be read again",
		                           .rule = "unclassified"};
		memset(&call, 0, sizeof call);
		s->tr->carry_out(s->t, q->held, &call, &bad, parked);
	} else {
		px_police_ctx(s, call.app, call.app_len, &ctx);
		settle(s, &ctx, &call, f, q->held, parked);
	}
	parked_free(q); /* S may be gone: not touched after the transport's carry_out */
}

/* Parks CALL until the fact it needs is known. Returns 1 if it waits, 0 if it was settled
 * already (a cached fact, an error). */
static int
park(struct px_police_stream *s, const struct pol_ctx *ctx, const struct pol_call *call,
     const char *text, size_t len, void *msg, enum px_lookup_kind kind, const char *id,
     size_t idlen)
{
	struct px_police *p = s->p;
	struct parked *q = calloc(1, sizeof *q);
	int settled_now = 0;

	if (!q || !id || !(q->text = malloc(len ? len : 1)) || !(q->held = s->tr->hold(s->t, msg))) {
		if (q)
			parked_free(q);
		settle(s, ctx, call, NULL, msg, 0); /* fails closed */
		return 0;
	}
	memcpy(q->text, text, len);
	q->len = len;
	q->s = s;
	q->p = p;
	q->tr = s->tr;
	q->settled_now = &settled_now;
	q->next = s->parked;
	s->parked = q;
	s->nparked++;
	p->facts.ask(p->facts.src, ctx->app, kind, id, idlen, fact_arrived, q);
	if (settled_now)
		return 0; /* Q is freed; S may be gone */
	q->settled_now = NULL;
	return 1;
}

int
px_police_call(struct px_police_stream *s, const struct pol_ctx *ctx, const struct pol_call *call,
               const char *text, size_t len, void *msg)
{
	struct pol_decision d;
	int i;

	if (budget_refuse(s, ctx, call, msg))
		return 0;
	pol_decide(ctx, call, NULL, &d);
	if (d.verdict != POL_NEED_FACT) {
		/* no fact needed: the decision stands */
		note(s, ctx, call, &d);
		if (d.verdict == POL_ALLOW)
			forget_facts(s->p, ctx, call);
		s->tr->carry_out(s->t, msg, call, &d, 0);
		return 0;
	}
	if (call->op == POL_OP_PART_BATCH) {
		/* look the conversation up only if some action's verdict depends on it */
		for (i = 0; i < call->nactions; i++) {
			pol_decide_action(ctx, call, i, NULL, &d);
			if (d.verdict == POL_NEED_FACT)
				break;
		}
		if (i == call->nactions) {
			settle(s, ctx, call, NULL, msg, 0);
			return 0;
		}
	}
	if (d.need == POL_FACT_USER_EXISTS)
		return park(s, ctx, call, text, len, msg, PX_LOOKUP_USER, call->uid, call->uid_len);
	return park(s, ctx, call, text, len, msg, PX_LOOKUP_CONVERSATION, call->cid, call->cid_len);
}
