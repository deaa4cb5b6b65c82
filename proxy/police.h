/*
 * proxy/police.h - the one policing path, for HTTP requests and realtime frames alike:
 *
 *     classified call -> decide -> (park on a fact -> settle) -> log -> count -> invalidate
 *                     -> the transport forwards it or answers it
 *
 * The transport (http.c, ws.c; a test's fake) classifies a call from its own syntax and hands
 * it here with a handle on its bytes (MSG); what to do with the verdict goes back through
 * struct px_transport. Facts come from a struct px_facts (lookup.c's cache and REST lookups,
 * or a test's fake). police.c knows no socket: it is tested in-process (tests/unit/test_police.c).
 */
#ifndef SG_PROXY_POLICE_H
#define SG_PROXY_POLICE_H

#include <stddef.h>

#include "policy/call.h"
#include "policy/decide.h"
#include "proxy/lookup.h"
#include "proxy/shared.h"
#include "proxy/types.h"

/* Calls of one stream waiting for a fact at once: past it the transport stops reading the
 * client until one settles (each holds a copy of its call; a client sending lookups faster
 * than the backend answers them must not grow syncgate's memory). */
#define PX_MAX_PARKED 64

/* Where facts come from. ASK answers at once (a cached fact or an error: CB runs before it
 * returns) or later from the loop; FORGET drops a cached fact after a call that may change
 * it was forwarded. */
struct px_facts {
	void *src;
	void (*ask)(void *src, const struct pol_app *app, enum px_lookup_kind kind, const char *id,
	            size_t idlen, px_lookup_cb cb, void *arg);
	void (*forget)(void *src, const char *app, enum px_lookup_kind kind, const char *id,
	               size_t idlen);
	enum px_lookup_state (*state)(const struct px_fact *f);
	int (*has_participant)(const struct px_fact *f, const char *uid, size_t len);
};

/*
 * What a transport does with a decision. T is the transport's object, MSG its handle on the
 * call's bytes. CARRY_OUT and CARRY_OUT_BATCH are the last thing police does with a call:
 * they may close the connection. PARKED says the call waited for a fact (the transport is
 * called from the loop, not from inside its own px_police_call()).
 */
struct px_transport {
	const char *name; /* "http", "ws": the decision log's transport */
	/* D is final (ALLOW, possibly would_deny, or a refusal to answer with D's status,
	 * errorCode and reason) */
	void (*carry_out)(void *t, void *msg, const struct pol_call *call,
	                  const struct pol_decision *d, int parked);
	/* a participant batch decided action by action: ALLOWED[i] and D[i] for each (NULL for
	 * a transport that never classifies a batch) */
	void (*carry_out_batch)(void *t, void *msg, const struct pol_call *call,
	                        const unsigned char *allowed, const struct pol_decision *d,
	                        int parked);
	/* classifies again a parked call's TEXT (copied by police) into CALL: 0, or -1 */
	int (*classify)(void *t, const char *text, size_t len, struct pol_call *call);
	/* keeps MSG's bytes past the current callback; NULL on ENOMEM */
	void *(*hold)(void *t, void *msg);
	/* frees what HOLD returned (the transport may be gone by then) */
	void (*free_held)(void *held);
};

struct px_police;
struct parked;

/* One client stream's policing state: embedded in the transport's object, its fields are
 * police.c's. */
struct px_police_stream {
	struct px_police *p;
	const struct px_transport *tr;
	void *t;
	const char *socket_id, *peer;   /* log fields (the transport's, outliving the stream) */
	const char *request_id;         /* HTTP: the current request's id (its access line's); NULL */
	char app[POL_APPID_MAX + 1];    /* the realtime socket's app; "" over HTTP */
	const char *user;               /* the realtime socket's user (decoded), or NULL */
	size_t user_len;
	const char *cred_user;          /* HTTP: the user a browser's change counts against for a
	                                 * refusal budget (its user token's sub: http.c sets it
	                                 * for the call in hand), or NULL */
	int authenticated;              /* identity = require: a valid token was seen */
	struct parked *parked;          /* calls waiting for a fact */
	int nparked;
	/* per-call lookups a stream repeats, valid while env->gen is the generation noted */
	const struct pol_app *app_pol;
	unsigned long app_gen;
	int dc_row;                     /* the last decision's row in the table, -1: none */
	unsigned long dc_gen;
	const struct pol_app *dc_app;   /* (over HTTP each request names its own app) */
	enum pol_op dc_op;
	enum px_verdict dc_verdict;
	int banned;                     /* refusal_ban: this stream's user was just banned (the
	                                 * transport closes it: 1008 on the realtime socket) */
};

/* A worker's police over ENV (classifier, policy, stats) with fact source FACTS (copied).
 * NULL on ENOMEM. */
struct px_police *px_police_new(struct px_env *env, const struct px_facts *facts);
void px_police_free(struct px_police *p);

void px_police_stream_init(struct px_police_stream *s, struct px_police *p,
                           const struct px_transport *tr, void *t, const char *socket_id,
                           const char *peer);
/* The stream's transport is going: its parked calls are dropped when their facts arrive. */
void px_police_stream_release(struct px_police_stream *s);

/* The policy context of the stream's next call: the switches in force now (the admin API or
 * a reload may have changed them since the stream opened). APP/APP_LEN name the app over
 * HTTP (NULL: the stream's own, the realtime socket's). */
void px_police_ctx(struct px_police_stream *s, const char *app, size_t app_len,
                   struct pol_ctx *ctx);

/*
 * Decides CALL, classified from TEXT[0..LEN) (the frame text, or the request head), whose
 * bytes MSG stands for, under CTX, and carries the decision out through the transport:
 * now, or once a fact it needs has been looked up (the call is parked: its TEXT copied and
 * MSG held). Returns 1 if the call was parked, else 0 (carried out; the connection may be
 * closing).
 */
int px_police_call(struct px_police_stream *s, const struct pol_ctx *ctx,
                   const struct pol_call *call, const char *text, size_t len, void *msg);

/*
 * refusal_budget: the state now of USER's budget in APP (APP_NAME: the app as the client named
 * it, for the log), logging budget_reset once when a used-up budget or a ban has just ended,
 * whoever asks first (a change, an upgrade). Returns PX_BUDGET_OK, _EXHAUSTED or _BANNED.
 */
enum px_budget px_police_budget_state(struct px_police *p, const struct pol_app *app,
                                      const char *app_name, const char *user);

/* Logs and counts a refusal the transport decided itself (identity, a malformed call) the
 * way police's own are. */
void px_police_note(struct px_police_stream *s, const struct pol_ctx *ctx,
                    const struct pol_call *call, const struct pol_decision *d);

#endif
