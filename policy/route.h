/*
 * policy/route.h - the route table: which upstream an HTTP request goes to, under which
 * path, and what it is for the switch decision.
 *
 * A route is "METHODS /pattern" with literal segments and placeholders ({app}, {user},
 * {conversation}, {participant}, and {*} for zero or more trailing segments), an upstream,
 * an optional rewrite (the path sent upstream, built from the same placeholders) and a sync
 * class. The built-in TalkJS routes are rows of the same table (config.c adds them), so the
 * table `syncgate -T` prints is the one requests are matched against.
 *
 * Matching is pure and allocation-free: it reads a request's decoded path (policy/path.h:
 * the same percent-decoding the built-in classifier uses) and compares literal segments
 * case-insensitively, as a backend that routes case-insensitively would read them.
 * Precedence is by specificity, never by file order: more literal segments first, then
 * fewer placeholders, then fewer methods; two operator routes of equal rank that can match
 * one request are refused when the file is loaded.
 */
#ifndef SG_POLICY_ROUTE_H
#define SG_POLICY_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "policy/call.h"
#include "policy/config.h"

#define POL_ROUTE_MAX 512        /* operator routes in one file */
#define POL_ROUTE_TEXT 512       /* bytes of a pattern or rewrite as written */
#define POL_ROUTE_KEY 64         /* bytes of a body key name (user = body:KEY) */
#define POL_BODY_ID_MAX 1024     /* bytes of an id taken from a body (decoded) */

/* What a route's calls are for the switch decision. TALKJS: classified by the built-in
 * TalkJS table (protocol.md 3), on the path the backend receives (after the rewrite). */
enum pol_sync { POL_SYNC_TALKJS, POL_SYNC_REALTIME, POL_SYNC_USER_SET, POL_SYNC_USER_CREATE,
                POL_SYNC_CONV_SET, POL_SYNC_CONV_CREATE, POL_SYNC_PARTICIPANT, POL_SYNC_NONE };

/* A segment of a pattern or rewrite. */
enum pol_rseg { POL_RS_LIT, POL_RS_APP, POL_RS_USER, POL_RS_CONV, POL_RS_PART, POL_RS_REST };
#define POL_RS_IDS 5 /* placeholders with a value: APP..PART (index = kind - 1), REST */

struct pol_rpart {
	enum pol_rseg kind;
	uint16_t off, len;  /* LIT: the decoded literal in the route's text buffer */
};

struct pol_route {
	char name[POL_NAME_MAX + 1];
	unsigned methods;              /* bit (1u << enum pol_method); POL_METHODS_ANY for "*" */
	struct pol_rpart pat[POL_PATH_MAX_SEGS];
	int npat;
	struct pol_rpart rw[POL_PATH_MAX_SEGS];
	int nrw;                       /* 0 with has_rewrite: "/" */
	int has_rewrite;
	char match_text[POL_ROUTE_TEXT];   /* "METHODS /pattern" as normalised (-T, logs) */
	char rewrite_text[POL_ROUTE_TEXT];
	char lit[POL_ROUTE_TEXT];      /* decoded literals of pat and rw */
	int upstream;                  /* index into pol_config.upstreams */
	enum pol_sync sync;
	int body_json;                 /* body = json: read whole, parsed strictly */
	char body_key[4][POL_ROUTE_KEY]; /* APP..PART taken from a top-level body key; "" = not */
	char app[POL_APPID_MAX + 1];   /* app = ID: the app of a route with no {app}; "" = none */
	int line;                      /* [route:NAME] header line; 0 for a built-in */
	int literals, holes;           /* rank: literal segments, placeholders */
	int nmethods;
};

#define POL_METHODS_ANY 0xffffffffu

/* The route a request matched and where its placeholders are among the path's segments. */
struct pol_route_match {
	const struct pol_route *route;  /* NULL: no table (no operator route): the default
	                                 * upstream, no rewrite, the built-in classification */
	int at[POL_RS_IDS];             /* segment index of APP..PART, -1 when absent */
	int rest;                       /* first segment of {*} (== nseg when it is empty), or -1 */
	const char *bid[4];             /* APP..PART read from the body (pol_route_body), decoded; */
	size_t bidlen[4];               /* valid as long as the body and the classifier's scratch */
};

/*
 * Finds the first route of C's table (precedence order) matching METHOD and the decoded
 * PATH. Sets M; returns 0, or -1 when no route matches (a table always ends with built-ins
 * covering every path, so only a table an operator emptied can miss).
 */
int pol_route_find(const struct pol_config *c, enum pol_method method, const struct pol_path *path,
                   struct pol_route_match *m);

/*
 * Applies a matched operator route of sync class other than TALKJS to CALL (classified by
 * pol_classify_http from the same target): sets op, app, uid / cid and api from the
 * placeholders (and the route's fixed app). CRED is the credential class for the route's app.
 * Returns 0, or -1 with *WHY (an app id outside [A-Za-z0-9_.-]).
 */
int pol_route_apply(const struct pol_route_match *m, struct pol_call *call, enum pol_cred cred,
                    const char **why);

/*
 * body = json: scans BODY (LEN bytes) strictly with K's JSON scanner (duplicate keys,
 * invalid UTF-8, anything but an object refused) and takes the ids the route names from
 * top-level string keys, and the participant keys (notify / access / other) of a
 * participant route. Returns 0, or -1 with *WHY (the body must not reach the backend).
 * CALL's ids then point into K's scratch, valid until K classifies again.
 */
int pol_route_body(struct pol_classifier *k, struct pol_route_match *m, struct pol_call *call,
                   const char *body, size_t len, const char **why);

/*
 * A body = json route's call once its body (BODY, LEN bytes) is read: the route applied
 * again, the body read (pol_route_body), and the credential class (AUTHZ, ALEN, NOW as for
 * pol_classify_request) decided for the app the call now has, which may come from the body:
 * a server credential makes it POL_OP_REST_SERVER. Returns 0, or -1 with *WHY (answer 400).
 */
int pol_classify_body(struct pol_classifier *k, const struct pol_config *c, struct pol_route_match *m,
                      struct pol_call *call, const char *body, size_t len, const char *authz,
                      size_t alen, int64_t now, const char **why);

/*
 * The request-target sent upstream for a request whose original target is TARGET (TLEN
 * bytes, query allowed) under route M: the rewrite with each placeholder replaced by the
 * client's raw segment (or, for an id taken from the body, its encodeURIComponent), {*} by
 * the raw rest of the path, and the query kept. Returns the length written to OUT (OUTSZ
 * bytes, NUL-terminated), 0 when the route has no rewrite (the target goes as it is), or -1
 * when it does not fit or an id it needs is missing.
 */
long pol_route_rewrite(const struct pol_route_match *m, const struct pol_call *call,
                       const char *target, size_t tlen, char *out, size_t outsz);

/*
 * Classifies an HTTP request as syncgate decides it: the built-in classification of TARGET
 * (pol_classify_http), then the route table when C has operator routes (M: the route, or
 * NULL), the credential class for the call's app from AUTHZ (the Authorization header's
 * value, ALEN bytes; NULL: none) at time NOW, and for a TALKJS route with a rewrite the
 * built-in classification of the path the backend will receive. The rewritten target goes
 * to RW (RWSZ bytes) with *RWLEN its length; 0: the target goes unchanged (or, for a body =
 * json route, is rewritten once its body is read). Returns 0, or -1 with *WHY (answer 400).
 */
int pol_classify_routed(struct pol_classifier *k, const struct pol_config *c, const char *method,
                        size_t mlen, const char *target, size_t tlen, const char *authz,
                        size_t alen, int64_t now, struct pol_call *call, struct pol_route_match *m,
                        char *rw, size_t rwsz, long *rwlen, const char **why);

/* The common case inline (no route in the file, no credential): the built-in classification
 * alone, as before there was a route table. */
static inline int
pol_classify_request(struct pol_classifier *k, const struct pol_config *c, const char *method,
                     size_t mlen, const char *target, size_t tlen, const char *authz, size_t alen,
                     int64_t now, struct pol_call *call, struct pol_route_match *m, char *rw,
                     size_t rwsz, long *rwlen, const char **why)
{
	if (!c->operator_routes && !authz) {
		*rwlen = 0;
		m->route = NULL;
		return pol_classify_http(k, method, mlen, target, tlen, POL_CRED_NONE, call, why);
	}
	return pol_classify_routed(k, c, method, mlen, target, tlen, authz, alen, now, call, m, rw,
	                           rwsz, rwlen, why);
}

/*
 * Runs one [route-test] line, "METHOD TARGET -> key=value ..." with keys route, sync,
 * upstream, rewrite, op, app, user, conversation, against C's table. Returns 0, or -1 with
 * what differed in ERR.
 */
int pol_route_test(const struct pol_config *c, struct pol_classifier *k, const char *line,
                   char *err, size_t errsz);

/* One route as `-T` prints it (NUL-terminated into OUT). */
void pol_route_describe(const struct pol_config *c, const struct pol_route *r, char *out, size_t outsz);

const char *pol_sync_to_str(enum pol_sync s);

/* ---- used by config.c while loading ---- */

/*
 * Parses "METHODS /pattern" into R (match), or a rewrite "/path" (REWRITE = 1). Returns 0,
 * or -1 with a message in ERR (ERRSZ bytes).
 */
int pol_route_parse_match(struct pol_route *r, const char *text, char *err, size_t errsz);
int pol_route_parse_rewrite(struct pol_route *r, const char *text, char *err, size_t errsz);

/* Checks R once all its keys are read (placeholders a sync class needs, rewrite holes
 * filled by the pattern or the body). Returns 0, or -1 with ERR. */
int pol_route_check(const struct pol_route *r, char *err, size_t errsz);

/* Sorts ROUTES (N) by precedence and refuses two operator routes of equal rank that can
 * match one request (ERR names both lines). Built-ins an operator route replaces must have
 * been removed by the caller. Returns 0 or -1. */
int pol_route_sort(struct pol_route *routes, int n, const char *file, char *err, size_t errsz);

/* 1 if routes A and B (equal rank or not) can match one request. */
int pol_route_overlap(const struct pol_route *a, const struct pol_route *b);

#endif
