/*
 * policy/call.h - classification: one realtime frame or one HTTP request head in, one
 * operation out (protocol.md section 3), with the ids and payload facts a decision reads.
 *
 * A struct pol_classifier owns the scratch memory (JSON tokens, action table); one per
 * worker thread, reused for every frame: classifying allocates nothing. A struct pol_call
 * points into that scratch and into the classified text, and is valid until the next
 * classification on the same classifier and as long as the text is.
 */
#ifndef SG_POLICY_CALL_H
#define SG_POLICY_CALL_H

#include <stddef.h>
#include <stdint.h>

#include "policy/config.h"
#include "policy/path.h"

enum pol_method { POL_M_GET, POL_M_PUT, POL_M_POST, POL_M_PATCH, POL_M_DELETE, POL_M_SUBSCRIBE,
                  POL_M_UNSUBSCRIBE, POL_M_OPTIONS, POL_M_HEAD, POL_M_OTHER };

enum pol_op {
	POL_OP_READ,          /* GET / SUBSCRIBE / UNSUBSCRIBE: always passes */
	POL_OP_PING,          /* GET /ping */
	POL_OP_AUTH,          /* POST /session/renew */
	POL_OP_ACK,           /* [pubId, "ACK"] */
	POL_OP_MESSAGE,       /* messages, reactions, /files/validate */
	POL_OP_USER_STATE,    /* /me/conversations/{cid}/read|unread|typing */
	POL_OP_USER_SET,      /* PUT/PATCH/DELETE /users/{uid}, other user mutations */
	POL_OP_USER_CREATE,   /* POST /users/{uid} */
	POL_OP_CONV_SET,      /* PUT/PATCH/DELETE /conversations/{cid}, other conversation mutations */
	POL_OP_CONV_CREATE,   /* POST /conversations/{cid} */
	POL_OP_PART_BATCH,    /* POST /conversations/{cid}/participants {actions:[...]} */
	POL_OP_PART_ACTION,   /* PUT/POST/PATCH /conversations/{cid}/participants/{uid} */
	POL_OP_PART_DELETE,   /* DELETE /conversations/{cid}/participants/{uid} */
	POL_OP_REST_SERVER,   /* HTTP REST API call with a server credential */
	POL_OP_REALTIME,      /* HTTP: the realtime WebSocket upgrade (U1) */
	POL_OP_SIGNATURE,     /* HTTP: U3 boken exchange */
	POL_OP_HTTP_PASS,     /* HTTP: U2, U4-U6, CORS preflights, anything not sync */
	POL_OP_UNKNOWN,       /* a mutation of no shape syncgate knows, under an API path or in a
	                       * frame: refused 400 (a lenient backend might read it as a sync
	                       * call), unless it carries a server credential (REST_SERVER) */
};

/* Keys of a participant action's params (or an unbatched participant call's data). */
#define POL_PK_NOTIFY 0x1
#define POL_PK_ACCESS 0x2
#define POL_PK_OTHER 0x4

struct pol_action {
	uint32_t tok;           /* the action object's token (its bytes: tok start..end) */
	enum pol_method method; /* PUT, POST or PATCH */
	const char *uid;        /* decoded, in classifier scratch */
	size_t uid_len;
	unsigned keys;          /* POL_PK_* */
	int params;             /* the token of its params object */
};

/* FOREIGN_KEY: a bearer shaped like a secret key (sk_test_..., sk_live_...) that is not the
 * app's configured key: a browser credential for every purpose, but a refusal says so. */
enum pol_cred { POL_CRED_NONE, POL_CRED_BROWSER, POL_CRED_SERVER, POL_CRED_FOREIGN_KEY };

struct pol_call {
	enum pol_op op;
	enum pol_method method;
	const char *method_text;
	size_t method_len;
	const char *seq; /* realtime: the seq exactly as written; NULL if none could be read */
	size_t seq_len;
	int http_batch;            /* HTTP: a participants batch (POST .../participants), decided
	                            * as a conversation change (its body is not read); when its
	                            * app locks participant fields the body is read and its
	                            * actions (below) are checked for them */
	struct pol_path path;      /* decoded segments (resource part for HTTP) */
	const char *app;           /* HTTP only: app id segment; NULL otherwise */
	size_t app_len;
	int res;                   /* the first segment of the resource path: after the API base
	                            * and app id over HTTP (path.nseg when there is none), 0 in
	                            * a frame */
	int api;                   /* HTTP only: the path is under an API base (/v1, /public_api/v1,
	                            * /api/v0), so the rules for unknown shapes apply */
	const char *uid, *cid;     /* decoded target ids, or NULL */
	size_t uid_len, cid_len;
	unsigned keys;             /* POL_PK_* of the data (participant calls) */
	int data_tok;              /* realtime: token index of data (HTTP: of the body, when read) */
	const struct pol_jtok *toks; /* the tokens data_tok and actions' params index (NULL: the
	                            * payload was not read: an HTTP call without a body route
	                            * whose app locks no field of it) */
	struct pol_action *actions; /* POL_OP_PART_BATCH */
	int nactions;
	const char *text;          /* the frame text classified (realtime) */
	size_t text_len;
	enum pol_cred cred;        /* HTTP */
};

struct pol_classifier;

struct pol_classifier *pol_classifier_new(const struct pol_limits *lim);
void pol_classifier_free(struct pol_classifier *k);

/* The JSON tokens of the last classified frame (to copy action objects out of a batch). */
const struct pol_json *pol_classifier_json(const struct pol_classifier *k);
/* The classifier's JSON scanner, for another strict scan (an HTTP route's body); it
 * replaces the tokens of the last classified frame. */
struct pol_json *pol_classifier_scanner(struct pol_classifier *k);
/* The classifier's id scratch (*SIZE bytes): decoded ids of an HTTP route's body live there
 * until the next classification (a frame's batch uses it too). */
char *pol_classifier_idbuf(struct pol_classifier *k, size_t *size);

/*
 * Classifies one complete client text message. Returns 0 with OUT filled, or -1 for a frame
 * that must not reach the backend (protocol.md 7.4): *WHY says why, and OUT->seq is set when
 * a seq could still be read (answer 400 INVALID_REQUEST), else NULL (close 1007).
 */
int pol_classify_frame(struct pol_classifier *k, const char *text, size_t len,
                       struct pol_call *out, const char **why);

/*
 * Classifies an HTTP request from its method and request-target (origin-form, query allowed)
 * and credential class. Returns 0, or -1 with *WHY for a target that must be refused (400).
 *
 * The fixed words of a path (v1, public_api, api, v0, realtime, bokens, users, ...) are
 * matched case-insensitively after per-segment percent-decoding, the way a backend that
 * routes case-insensitively reads them. Refused: an app id outside [A-Za-z0-9_.-]; a ";"
 * in a path whose segments, read without their ";parameters", start with an API base
 * (Tomcat, Spring and others strip them). Under an API base, a method other than GET, HEAD,
 * OPTIONS, SUBSCRIBE and UNSUBSCRIBE on a path that is no known shape is POL_OP_UNKNOWN
 * (refused by pol_decide) unless CRED is SERVER; so is any such method under /api/v0/{app}
 * whatever the credential. The realtime socket's path is POL_OP_REALTIME for GET only.
 */
int pol_classify_http(struct pol_classifier *k, const char *method, size_t mlen,
                      const char *target, size_t tlen, enum pol_cred cred, struct pol_call *out,
                      const char **why);

/*
 * The body of an HTTP call classified by pol_classify_http (a REST-shaped browser change
 * whose app locks fields: pol_app_locks) as the call's payload, the way a frame's data is:
 * BODY (LEN bytes, decoded from its framing) is scanned strictly with K's scanner (duplicate
 * keys, invalid UTF-8, depth and size caps) and must be a JSON object; then CALL's text,
 * toks and data_tok (0) name it, valid until K classifies again and as long as BODY is. An
 * empty body names no field: CALL is left without a payload. The participant keys
 * (CALL->keys) stay the worst case, as for a body not read, so that an app's switches decide
 * alike with and without locked lists. Returns 0, or -1 with *WHY: not strict JSON, or not an
 * object (answer 400; the body must not reach the backend).
 */
int pol_classify_payload(struct pol_classifier *k, struct pol_call *call, const char *body,
                         size_t len, const char **why);

/* 1 if the LEN bytes at ID are a valid app id: 1..POL_APPID_MAX bytes of [A-Za-z0-9_.-]. */
int pol_appid_valid(const char *id, size_t len);

const char *pol_op_to_str(enum pol_op op);

/* 1 if OP is a sync change (protocol.md 3, in bold): a user, conversation or participant
 * change, what the switches, locked fields and refusal budgets are about. Not
 * /session/renew, reads, messages or per-user state; not POL_OP_UNKNOWN (a change of no
 * known shape) nor POL_OP_REST_SERVER (a server's). Inline: HTTP asks it of every request
 * with a body. */
static inline int
pol_op_is_change(enum pol_op op)
{
	switch (op) {
	case POL_OP_USER_SET:
	case POL_OP_USER_CREATE:
	case POL_OP_CONV_SET:
	case POL_OP_CONV_CREATE:
	case POL_OP_PART_BATCH:
	case POL_OP_PART_ACTION:
	case POL_OP_PART_DELETE:
		return 1;
	default:
		return 0;
	}
}

enum pol_method pol_method_parse(const char *m, size_t len);

#endif
