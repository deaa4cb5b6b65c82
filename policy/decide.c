/*
 * policy/decide.c - protocol.md section 7 as code (contract in decide.h).
 *
 * Error codes: UNAUTHORIZED_TO_EDIT and UNAUTHORIZED_TO_EDIT_PARTICIPANT are the codes the SDK
 * itself knows (it ignores them in the cases of protocol.md section 3); the others are
 * syncgate's own [syncgate] codes. Every refusal's reason names the app, the switch that is
 * off, and the REST API as the way to make the change.
 */
#include "policy/decide.h"

#include <stdio.h>
#include <string.h>

#include "policy/fields.h"

static const char *
app_name(const struct pol_ctx *ctx)
{
	return ctx->app->id[0] ? ctx->app->id : "(default)";
}

static void
allow(struct pol_decision *d, const char *rule)
{
	d->verdict = POL_ALLOW;
	d->status = 200;
	d->error_code = NULL;
	d->reason[0] = 0;
	d->rule = rule;
}

static void
need(struct pol_decision *d, enum pol_fact_kind k, const char *rule)
{
	d->verdict = POL_NEED_FACT;
	d->need = k;
	d->rule = rule;
}

/*
 * A refusal. In report mode it becomes an ALLOW marked would_deny, keeping status, code and
 * reason for the decision log.
 */
static void
deny(const struct pol_ctx *ctx, struct pol_decision *d, int status, const char *code,
     const char *rule, const char *what, const char *sw)
{
	d->status = status;
	d->error_code = code;
	d->rule = rule;
	if (sw)
		snprintf(d->reason, sizeof d->reason,
		         "syncgate: %.80s refused: %s sync from the browser is disabled for app %.64s; "
		         "make this change from your server with the REST API",
		         what, sw, app_name(ctx));
	else
		snprintf(d->reason, sizeof d->reason, "syncgate: %.80s (app %.64s)", what, app_name(ctx));
	if (ctx->app->mode == POL_MODE_REPORT && status != 400) {
		d->verdict = POL_ALLOW;
		d->would_deny = 1;
	} else {
		d->verdict = POL_DENY;
	}
}

/* protocol.md 7.5: a fact that could not be looked up fails closed. */
static void
unverified(const struct pol_ctx *ctx, struct pol_decision *d, const char *code, const char *rule,
           const char *what)
{
	d->status = 403;
	d->error_code = code;
	d->rule = rule;
	snprintf(d->reason, sizeof d->reason,
	         "syncgate: %.40s refused: the %.40s could not be verified (lookup failed or no "
	         "secret key configured for app %.64s); browser sync is disabled, use the REST API",
	         rule, what, app_name(ctx));
	if (ctx->app->mode == POL_MODE_REPORT) {
		d->verdict = POL_ALLOW;
		d->would_deny = 1;
	} else {
		d->verdict = POL_DENY;
	}
}

static int
is_me(const struct pol_ctx *ctx, const char *uid, size_t len)
{
	return ctx->me && uid && len == ctx->me_len && !memcmp(uid, ctx->me, len);
}

/* One participant action (batched or not): protocol.md 7.2 rows 3-4. */
static void
decide_participant(const struct pol_ctx *ctx, enum pol_method m, const char *uid, size_t uid_len,
                   unsigned keys, const struct pol_facts *f, struct pol_decision *d)
{
	enum pol_fact_value part = f ? f->participant : POL_FV_UNKNOWN;

	if (m == POL_M_POST) {
		if (part == POL_FV_UNKNOWN)
			return need(d, POL_FACT_PARTICIPANT, "participant-create");
		if (part == POL_FV_TRUE)
			return deny(ctx, d, 409, "PARTICIPANT_ALREADY_EXISTS", "participant-create",
			            "already a participant", NULL);
		if (part == POL_FV_ERROR)
			return unverified(ctx, d, "UNAUTHORIZED_TO_EDIT_PARTICIPANT",
			                  "participant-create", "participation");
		return deny(ctx, d, 403, "UNAUTHORIZED_TO_EDIT_PARTICIPANT", "participant-create",
		            "adding a participant", "conversation");
	}
	/* PUT / PATCH: only my own notify, and only if I am already a participant. */
	if (!is_me(ctx, uid, uid_len) || (keys & ~POL_PK_NOTIFY))
		return deny(ctx, d, 403, "UNAUTHORIZED_TO_EDIT_PARTICIPANT", "participant-edit",
		            "changing a participant (only your own notify setting may change)",
		            "conversation");
	if (part == POL_FV_UNKNOWN)
		return need(d, POL_FACT_PARTICIPANT, "participant-edit-notify");
	if (part == POL_FV_TRUE)
		return allow(d, "participant-edit-notify");
	if (part == POL_FV_ERROR)
		return unverified(ctx, d, "UNAUTHORIZED_TO_EDIT_PARTICIPANT", "participant-edit",
		                  "participation");
	return deny(ctx, d, 403, "UNAUTHORIZED_TO_EDIT_PARTICIPANT", "participant-edit",
	            "joining a conversation", "conversation");
}

/* An empty decision. Not a memset: the reason buffer is large and set only by a refusal
 * (this runs for every realtime frame). */
static void
clear(struct pol_decision *d)
{
	d->verdict = POL_ALLOW;
	d->status = 0;
	d->error_code = NULL;
	d->reason[0] = 0;
	d->need = POL_FACT_NONE;
	d->would_deny = 0;
	d->rule = NULL;
	d->strip = d->would_strip = 0;
}

static const char *const kind_names[POL_FIELDS_KINDS] = {"users", "conversations", "participants"};

/*
 * Locked fields of an allowed change (user_fields_locked, ...): the payload object OBJ of C
 * (its tokens read by the classifier; NULL: an HTTP call whose body was not read) against
 * the lists of KINDS (a bit per enum pol_field_kind). reject: a refusal naming the field;
 * strip: still ALLOW, with the lists to strip with and the names found.
 */
static void
check_locked(const struct pol_ctx *ctx, const struct pol_call *c, int obj, unsigned kinds,
             struct pol_decision *d)
{
	const struct pol_app *app = ctx->app;
	const char *name = NULL;
	int k, kind = -1;

	d->nstrip_lists = 0;
	if (!c->toks || obj < 0)
		return;
	for (k = 0; k < POL_FIELDS_KINDS; k++) {
		const char *nm;
		if (!(kinds & (1u << k)) || !app->locked[k].n)
			continue;
		d->strip_lists[d->nstrip_lists] = &app->locked[k]; /* (only read when stripping) */
		if (!pol_fields_find(&app->locked[k], c->text, c->toks, obj, &nm))
			continue;
		if (!name) {
			name = nm;
			kind = k;
		}
		d->nstrip_lists++;
	}
	if (!name) {
		d->nstrip_lists = 0;
		return;
	}
	if (!app->strip_locked) {
		d->nstrip_lists = 0;
		d->status = 403;
		d->error_code = "FIELD_LOCKED";
		d->rule = "field-locked";
		snprintf(d->reason, sizeof d->reason,
		         "syncgate: the field '%.64s' of %s is locked for app %.64s: a browser may not "
		         "set it; set it from your server with the REST API",
		         name, kind_names[kind], app_name(ctx));
		if (app->mode == POL_MODE_REPORT) {
			d->verdict = POL_ALLOW;
			d->would_deny = 1;
		} else {
			d->verdict = POL_DENY;
		}
		return;
	}
	/* strip: the names of every locked field present, for the decision log */
	d->reason[0] = 0;
	for (k = 0; k < d->nstrip_lists; k++)
		pol_fields_present(d->strip_lists[k], c->text, c->toks, obj, d->reason, sizeof d->reason);
	d->rule = "field-locked-strip";
	if (app->mode == POL_MODE_REPORT)
		d->would_strip = 1;
	else
		d->strip = 1;
}

static void decide_call(const struct pol_ctx *ctx, const struct pol_call *c,
                        const struct pol_facts *f, struct pol_decision *d);

/* The locked-field lists (a bit per enum pol_field_kind) an allowed change of OP is checked
 * against: a conversation change's data carries my participation fields too. */
static unsigned
op_kinds(enum pol_op op)
{
	switch (op) {
	case POL_OP_USER_SET:
	case POL_OP_USER_CREATE:
		return 1u << POL_FIELDS_USER;
	case POL_OP_CONV_SET:
	case POL_OP_CONV_CREATE:
		return 1u << POL_FIELDS_CONV | 1u << POL_FIELDS_PART;
	case POL_OP_PART_ACTION:
	case POL_OP_PART_BATCH:
		return 1u << POL_FIELDS_PART;
	default:
		return 0;
	}
}

/* 1 if APP has a list among KINDS. */
static int
locks_any(const struct pol_app *app, unsigned kinds)
{
	return ((kinds & 1u << POL_FIELDS_USER) && app->locked[POL_FIELDS_USER].n) ||
	       ((kinds & 1u << POL_FIELDS_CONV) && app->locked[POL_FIELDS_CONV].n) ||
	       ((kinds & 1u << POL_FIELDS_PART) && app->locked[POL_FIELDS_PART].n);
}

int
pol_app_locks(const struct pol_app *app, enum pol_op op)
{
	return locks_any(app, op_kinds(op));
}

/* An allowed change: its locked fields (if the app has lists of KINDS) decide further. */
static void
allowed_change(const struct pol_ctx *ctx, const struct pol_call *c, int obj, unsigned kinds,
               struct pol_decision *d)
{
	int i;

	if (d->verdict != POL_ALLOW || d->would_deny)
		return;
	if (locks_any(ctx->app, kinds))
		check_locked(ctx, c, obj, kinds, d);
	/* an HTTP participants batch (read because the app locks participant fields): every
	 * action's params, as in a realtime batch; the first locked one refuses the whole (one
	 * HTTP answer), and with strip each action loses its locked members */
	for (i = 0; c->http_batch && i < c->nactions && (kinds & 1u << POL_FIELDS_PART) &&
	            ctx->app->locked[POL_FIELDS_PART].n && d->verdict == POL_ALLOW && !d->would_deny;
	     i++) {
		struct pol_decision a = *d;
		if (d->strip || d->would_strip)
			break; /* (the body's strip covers every action: see pol_http_batch_objs()) */
		check_locked(ctx, c, c->actions[i].params, 1u << POL_FIELDS_PART, &a);
		if (a.verdict != POL_ALLOW || a.would_deny || a.strip || a.would_strip)
			*d = a;
	}
}

/* A participant batch allowed whole: decided action by action (pol_decide_action) instead
 * when an action holds a locked field. */
static void
allowed_batch(const struct pol_ctx *ctx, const struct pol_call *c, struct pol_decision *d)
{
	const struct pol_locked *l = &ctx->app->locked[POL_FIELDS_PART];
	const char *nm;
	int i;

	if (!l->n || !c->toks)
		return;
	for (i = 0; i < c->nactions; i++)
		if (pol_fields_find(l, c->text, c->toks, c->actions[i].params, &nm)) {
			d->verdict = POL_NEED_FACT;
			d->need = POL_FACT_NONE;
			d->rule = "participant-batch-locked";
			return;
		}
}

void
pol_decide(const struct pol_ctx *ctx, const struct pol_call *c, const struct pol_facts *f,
           struct pol_decision *d)
{
	decide_call(ctx, c, f, d);
	if (c->cred == POL_CRED_FOREIGN_KEY && d->status == 403) {
		/* a server call with another app's (or an old) secret key: the switch is not the
		 * reason to give, the key is (the refusal itself stands: it is a browser credential) */
		d->status = 401;
		d->error_code = "INVALID_SECRET_KEY";
		d->rule = "foreign-secret-key";
		snprintf(d->reason, sizeof d->reason,
		         "syncgate: the Authorization bearer is a secret key, but not app %.64s's: "
		         "a server-side change needs this app's secret key (or an app token signed "
		         "with it)",
		         app_name(ctx));
	}
}

static void
decide_call(const struct pol_ctx *ctx, const struct pol_call *c, const struct pol_facts *f,
            struct pol_decision *d)
{
	const struct pol_app *app = ctx->app;
	enum pol_fact_value v;

	clear(d);
	if (app->identity == POL_IDENTITY_REQUIRE && ctx->me && !ctx->authenticated &&
	    c->op != POL_OP_AUTH && c->op != POL_OP_PING) {
		d->verdict = POL_DENY;
		d->status = 401;
		d->error_code = "NOT_AUTHENTICATED";
		d->rule = "identity-require";
		snprintf(d->reason, sizeof d->reason,
		         "syncgate: app %.64s requires a verified user token before any other call",
		         app_name(ctx));
		return;
	}
	switch (c->op) {
	case POL_OP_USER_SET:
		if (app->user_sync) {
			allow(d, "user-sync-on");
			return allowed_change(ctx, c, c->data_tok, op_kinds(POL_OP_USER_SET), d);
		}
		return deny(ctx, d, 403, "USER_SYNC_DISABLED", "user-set", "updating a user", "user");
	case POL_OP_USER_CREATE:
		if (app->user_sync) {
			allow(d, "user-sync-on");
			return allowed_change(ctx, c, c->data_tok, op_kinds(POL_OP_USER_CREATE), d);
		}
		v = f ? f->user_exists : POL_FV_UNKNOWN;
		if (v == POL_FV_UNKNOWN)
			return need(d, POL_FACT_USER_EXISTS, "user-create");
		if (v == POL_FV_TRUE)
			return deny(ctx, d, 409, "USER_ALREADY_EXISTS", "user-create",
			            "the user already exists", NULL);
		if (v == POL_FV_ERROR)
			return unverified(ctx, d, "USER_SYNC_DISABLED", "user-create",
			                  "existence of the user");
		return deny(ctx, d, 403, "USER_SYNC_DISABLED", "user-create", "creating a user",
		            "user");
	case POL_OP_CONV_SET: /* (its data carries my participation fields too) */
		if (app->conversation_sync) {
			allow(d, "conversation-sync-on");
			return allowed_change(ctx, c, c->data_tok, op_kinds(POL_OP_CONV_SET), d);
		}
		return deny(ctx, d, 403, "UNAUTHORIZED_TO_EDIT", "conversation-set",
		            "changing a conversation", "conversation");
	case POL_OP_CONV_CREATE:
		if (app->conversation_sync) {
			allow(d, "conversation-sync-on");
			return allowed_change(ctx, c, c->data_tok, op_kinds(POL_OP_CONV_CREATE), d);
		}
		v = f ? f->conv_exists : POL_FV_UNKNOWN;
		if (v == POL_FV_UNKNOWN)
			return need(d, POL_FACT_CONV_EXISTS, "conversation-create");
		if (v == POL_FV_TRUE)
			return deny(ctx, d, 409, "CONVERSATION_ALREADY_EXISTS", "conversation-create",
			            "the conversation already exists", NULL);
		if (v == POL_FV_ERROR)
			return unverified(ctx, d, "CONVERSATION_SYNC_DISABLED", "conversation-create",
			                  "existence of the conversation");
		return deny(ctx, d, 403, "CONVERSATION_SYNC_DISABLED", "conversation-create",
		            "creating a conversation", "conversation");
	case POL_OP_PART_ACTION:
		if (app->conversation_sync)
			allow(d, "conversation-sync-on");
		else
			decide_participant(ctx, c->method, c->uid, c->uid_len, c->keys, f, d);
		return allowed_change(ctx, c, c->data_tok, op_kinds(POL_OP_PART_ACTION), d);
	case POL_OP_PART_DELETE:
		if (app->conversation_sync)
			return allow(d, "conversation-sync-on");
		return deny(ctx, d, 403, "UNAUTHORIZED_TO_EDIT_PARTICIPANT", "participant-delete",
		            "removing a participant", "conversation");
	case POL_OP_PART_BATCH:
		/* decided per action; a batch as a whole passes only with the switch on */
		if (app->conversation_sync) {
			allow(d, "conversation-sync-on");
			return allowed_batch(ctx, c, d);
		}
		d->verdict = POL_NEED_FACT;
		d->need = POL_FACT_NONE;
		d->rule = "participant-batch";
		return;
	case POL_OP_READ:
	case POL_OP_PING:
	case POL_OP_AUTH:
	case POL_OP_ACK:
	case POL_OP_MESSAGE:
	case POL_OP_USER_STATE:
	case POL_OP_REST_SERVER:
	case POL_OP_REALTIME:
	case POL_OP_SIGNATURE:
	case POL_OP_HTTP_PASS:
		return allow(d, pol_op_to_str(c->op));
	case POL_OP_UNKNOWN:
		/* A change of no shape in protocol.md section 3. A backend that reads paths more
		 * leniently than syncgate might take it for a sync call, so it never passes: 400,
		 * refused in report mode too (the SDK sends no such call). */
		d->verdict = POL_DENY;
		d->status = 400;
		d->error_code = "INVALID_REQUEST";
		d->rule = "unknown-mutation";
		snprintf(d->reason, sizeof d->reason,
		         "syncgate: %.*s of this path is not a call syncgate recognises, so it is "
		         "refused (app %.64s); make server-side changes with the REST API and your "
		         "secret key",
		         (int)(c->method_len > 16 ? 16 : c->method_len),
		         c->method_text ? c->method_text : "", app_name(ctx));
		return;
	}
	d->verdict = POL_BADREQ;
	d->status = 400;
	d->error_code = "INVALID_REQUEST";
	d->rule = "unclassified";
}

void
pol_decide_action(const struct pol_ctx *ctx, const struct pol_call *c, int i,
                  const struct pol_facts *f, struct pol_decision *d)
{
	const struct pol_action *a = &c->actions[i];

	clear(d);
	if (ctx->app->conversation_sync)
		allow(d, "conversation-sync-on");
	else
		decide_participant(ctx, a->method, a->uid, a->uid_len, a->keys, f, d);
	allowed_change(ctx, c, a->params, op_kinds(POL_OP_PART_BATCH), d);
}

const char *
pol_verdict_to_str(enum pol_verdict v)
{
	switch (v) {
	case POL_ALLOW: return "allow";
	case POL_DENY: return "deny";
	case POL_NEED_FACT: return "need-fact";
	case POL_BADREQ: return "badreq";
	}
	return "?";
}

const char *
pol_fact_to_str(enum pol_fact_kind k)
{
	switch (k) {
	case POL_FACT_NONE: return "none";
	case POL_FACT_USER_EXISTS: return "user-exists";
	case POL_FACT_CONV_EXISTS: return "conversation-exists";
	case POL_FACT_PARTICIPANT: return "participant";
	}
	return "?";
}
