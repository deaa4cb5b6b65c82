/*
 * policy/route.c - the route table (contract in route.h).
 */
#include "policy/route.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/json.h"
#include "policy/jwt.h"

static const struct {
	const char *name;
	enum pol_method m;
} method_names[] = {
	{"GET", POL_M_GET}, {"HEAD", POL_M_HEAD}, {"POST", POL_M_POST}, {"PUT", POL_M_PUT},
	{"PATCH", POL_M_PATCH}, {"DELETE", POL_M_DELETE}, {"OPTIONS", POL_M_OPTIONS},
};

static const char *const hole_names[] = {"", "{app}", "{user}", "{conversation}", "{participant}",
                                         "{*}"};

const char *
pol_sync_to_str(enum pol_sync s)
{
	static const char *names[] = {"talkjs", "realtime", "user_set", "user_create",
	                              "conversation_set", "conversation_create", "participant", "none"};
	return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

/* ---- parsing (config.c calls these while loading) ---- */

/* Decodes one percent-encoded segment of a pattern or rewrite written by the operator, the
 * way pol_path_parse() decodes a request's (a literal must compare with what it decodes).
 * Returns the decoded length into OUT, or -1. */
static long
decode_literal(const char *s, size_t n, char *out, size_t outsz, char *err, size_t errsz)
{
	struct pol_path p;
	char buf[POL_ROUTE_TEXT + 2];
	const char *why;

	if (n + 1 >= sizeof buf) {
		snprintf(err, errsz, "segment too long");
		return -1;
	}
	buf[0] = '/';
	memcpy(buf + 1, s, n);
	if (pol_path_parse(buf, n + 1, POL_PATH_PCHAR, &p, &why)) {
		snprintf(err, errsz, "segment '%.*s': %s", (int)(n > 64 ? 64 : n), s, why);
		return -1;
	}
	if (p.nseg != 1) {
		snprintf(err, errsz, "segment '%.*s': not one segment", (int)(n > 64 ? 64 : n), s);
		return -1;
	}
	if (p.seg[0].len > outsz) {
		snprintf(err, errsz, "route text too long");
		return -1;
	}
	memcpy(out, p.seg[0].p, p.seg[0].len);
	return (long)p.seg[0].len;
}

/* Parses "/a/{user}/b" into PARTS (*N); literals into R->lit from *LITUSED on, decoded (a
 * pattern's: compared with decoded segments) or, RAW, as written (a rewrite's: sent as the
 * operator wrote them, once checked). */
static int
parse_path_parts(struct pol_route *r, const char *text, struct pol_rpart *parts, int *n,
                 size_t *litused, int raw, char *err, size_t errsz)
{
	const char *p = text;

	*n = 0;
	if (*p != '/') {
		snprintf(err, errsz, "'%.64s' must start with /", text);
		return -1;
	}
	if (!strcmp(p, "/"))
		return 0;
	while (*p == '/') {
		const char *s = p + 1, *e = s;
		struct pol_rpart *x;
		size_t len;
		int k;

		while (*e && *e != '/')
			e++;
		len = (size_t)(e - s);
		if (*n == POL_PATH_MAX_SEGS) {
			snprintf(err, errsz, "more than %d segments", POL_PATH_MAX_SEGS);
			return -1;
		}
		if (*n > 0 && parts[*n - 1].kind == POL_RS_REST) {
			snprintf(err, errsz, "{*} must be the last segment%s", "");
			return -1;
		}
		x = &parts[(*n)++];
		x->off = x->len = 0;
		x->kind = POL_RS_LIT;
		if (len && *s == '{') {
			for (k = 1; k <= POL_RS_REST; k++)
				if (strlen(hole_names[k]) == len && !memcmp(hole_names[k], s, len))
					break;
			if (k > POL_RS_REST) {
				snprintf(err, errsz,
				         "unknown placeholder '%.*s' (use {app}, {user}, {conversation}, "
				         "{participant} or {*})", (int)(len > 40 ? 40 : len), s);
				return -1;
			}
			x->kind = (enum pol_rseg)k;
		} else {
			long dl;
			if (!len) {
				snprintf(err, errsz, "empty segment in '%.64s'", text);
				return -1;
			}
			dl = decode_literal(s, len, r->lit + *litused, sizeof r->lit - *litused, err, errsz);
			if (dl < 0)
				return -1;
			if (raw) {
				if (len > sizeof r->lit - *litused) {
					snprintf(err, errsz, "route text too long");
					return -1;
				}
				memcpy(r->lit + *litused, s, len);
				dl = (long)len;
			}
			x->off = (uint16_t)*litused;
			x->len = (uint16_t)dl;
			*litused += (size_t)dl;
		}
		p = e;
	}
	if (*p) {
		snprintf(err, errsz, "bad path '%.64s'", text);
		return -1;
	}
	return 0;
}

static size_t
lit_used(const struct pol_route *r)
{
	size_t used = 0;
	int i;
	for (i = 0; i < r->npat; i++)
		if (r->pat[i].kind == POL_RS_LIT && r->pat[i].off + r->pat[i].len > used)
			used = r->pat[i].off + r->pat[i].len;
	for (i = 0; i < r->nrw; i++)
		if (r->rw[i].kind == POL_RS_LIT && r->rw[i].off + r->rw[i].len > used)
			used = r->rw[i].off + r->rw[i].len;
	return used;
}

int
pol_route_parse_match(struct pol_route *r, const char *text, char *err, size_t errsz)
{
	const char *sp = strchr(text, ' '), *path;
	char list[128];
	size_t used = 0, ml;
	int i, seen_holes[POL_RS_REST + 1] = {0};

	if (!sp || (size_t)(sp - text) >= sizeof list) {
		snprintf(err, errsz, "match: '%.80s' is not METHODS /path", text);
		return -1;
	}
	ml = (size_t)(sp - text);
	memcpy(list, text, ml);
	list[ml] = 0;
	for (path = sp; *path == ' ' || *path == '\t'; path++)
		;
	r->methods = 0;
	r->nmethods = 0;
	if (!strcmp(list, "*")) {
		r->methods = POL_METHODS_ANY;
		r->nmethods = 32;
	} else {
		char *save = NULL, *tok;
		for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			size_t k;
			for (k = 0; k < sizeof method_names / sizeof method_names[0]; k++)
				if (!strcmp(tok, method_names[k].name))
					break;
			if (k == sizeof method_names / sizeof method_names[0]) {
				snprintf(err, errsz, "match: unknown method '%.20s' (GET, HEAD, POST, PUT, "
				         "PATCH, DELETE, OPTIONS or *)", tok);
				return -1;
			}
			if (r->methods & (1u << method_names[k].m)) {
				snprintf(err, errsz, "match: method %s listed twice", method_names[k].name);
				return -1;
			}
			r->methods |= 1u << method_names[k].m;
			r->nmethods++;
		}
		if (!r->nmethods) {
			snprintf(err, errsz, "match: no method in '%.80s'", text);
			return -1;
		}
	}
	if (parse_path_parts(r, path, r->pat, &r->npat, &used, 0, err, errsz))
		return -1;
	r->literals = r->holes = 0;
	for (i = 0; i < r->npat; i++) {
		if (r->pat[i].kind == POL_RS_LIT) {
			r->literals++;
			continue;
		}
		r->holes++;
		if (seen_holes[r->pat[i].kind]++) {
			snprintf(err, errsz, "match: %s appears twice", hole_names[r->pat[i].kind]);
			return -1;
		}
	}
	snprintf(r->match_text, sizeof r->match_text, "%.*s %s", (int)ml, text, path);
	return 0;
}

int
pol_route_parse_rewrite(struct pol_route *r, const char *text, char *err, size_t errsz)
{
	size_t used = lit_used(r);
	int i, seen[POL_RS_REST + 1] = {0};

	if (parse_path_parts(r, text, r->rw, &r->nrw, &used, 1, err, errsz))
		return -1;
	for (i = 0; i < r->nrw; i++)
		if (r->rw[i].kind != POL_RS_LIT && seen[r->rw[i].kind]++) {
			snprintf(err, errsz, "%s appears twice", hole_names[r->rw[i].kind]);
			return -1;
		}
	r->has_rewrite = 1;
	snprintf(r->rewrite_text, sizeof r->rewrite_text, "%s", text);
	return 0;
}

/* 1 if placeholder KIND (APP..PART) has a value: in the pattern, from the body, or (app) fixed. */
static int
has_id(const struct pol_route *r, enum pol_rseg kind)
{
	int i;
	for (i = 0; i < r->npat; i++)
		if (r->pat[i].kind == kind)
			return 1;
	if (r->body_key[kind - 1][0])
		return 1;
	return kind == POL_RS_APP && r->app[0];
}

static int
in_pattern(const struct pol_route *r, enum pol_rseg kind)
{
	int i;
	for (i = 0; i < r->npat; i++)
		if (r->pat[i].kind == kind)
			return 1;
	return 0;
}

int
pol_route_check(const struct pol_route *r, char *err, size_t errsz)
{
	int i, k;

	if (!r->npat && !r->match_text[0]) {
		snprintf(err, errsz, "[route:%s] needs match = METHODS /path", r->name);
		return -1;
	}
	for (k = POL_RS_APP; k <= POL_RS_PART; k++)
		if (r->body_key[k - 1][0] && in_pattern(r, (enum pol_rseg)k)) {
			snprintf(err, errsz, "[route:%s] %s is both in the path and taken from the body",
			         r->name, hole_names[k]);
			return -1;
		}
	if (r->app[0] && (in_pattern(r, POL_RS_APP) || r->body_key[0][0])) {
		snprintf(err, errsz, "[route:%s] app = is for a route whose path has no {app}", r->name);
		return -1;
	}
	for (k = 0; k < 4; k++)
		if (r->body_key[k][0] && !r->body_json) {
			snprintf(err, errsz, "[route:%s] an id taken from the body needs body = json", r->name);
			return -1;
		}
	for (i = 0; i < r->nrw; i++) {
		enum pol_rseg kind = r->rw[i].kind;
		if (kind == POL_RS_LIT)
			continue;
		if (kind == POL_RS_REST ? !in_pattern(r, POL_RS_REST) : !has_id(r, kind)) {
			snprintf(err, errsz, "[route:%s] rewrite uses %s, which the match does not capture%s",
			         r->name, hole_names[kind], kind == POL_RS_REST ? "" : " (nor the body, nor app =)");
			return -1;
		}
	}
	switch (r->sync) {
	case POL_SYNC_TALKJS:
	case POL_SYNC_NONE:
		if (r->body_json && r->sync == POL_SYNC_TALKJS) {
			snprintf(err, errsz, "[route:%s] body = json needs a sync class (user_set, ..., none)",
			         r->name);
			return -1;
		}
		return 0;
	case POL_SYNC_REALTIME:
		if (r->methods != (1u << POL_M_GET) || !has_id(r, POL_RS_APP) || !in_pattern(r, POL_RS_USER) ||
		    r->body_json) {
			snprintf(err, errsz, "[route:%s] sync = realtime needs match = GET /...{user}... with "
			         "{app} (or app =) and no body", r->name);
			return -1;
		}
		return 0;
	case POL_SYNC_USER_SET:
	case POL_SYNC_USER_CREATE:
		k = has_id(r, POL_RS_USER);
		break;
	case POL_SYNC_CONV_SET:
	case POL_SYNC_CONV_CREATE:
		k = has_id(r, POL_RS_CONV);
		break;
	case POL_SYNC_PARTICIPANT:
		k = has_id(r, POL_RS_CONV) && has_id(r, POL_RS_PART);
		break;
	default:
		k = 0;
	}
	if (!k) {
		snprintf(err, errsz, "[route:%s] sync = %s needs its ids: %s in the path or from the body "
		         "(user = body:KEY)", r->name, pol_sync_to_str(r->sync),
		         r->sync == POL_SYNC_PARTICIPANT ? "{conversation} and {participant}"
		         : r->sync == POL_SYNC_USER_SET || r->sync == POL_SYNC_USER_CREATE ? "{user}"
		                                                                           : "{conversation}");
		return -1;
	}
	if (!has_id(r, POL_RS_APP)) {
		snprintf(err, errsz, "[route:%s] sync = %s needs the app: {app} in the path, app = ID, "
		         "or app = body:KEY", r->name, pol_sync_to_str(r->sync));
		return -1;
	}
	return 0;
}

/* ---- precedence ---- */

static int
has_rest(const struct pol_route *r)
{
	return r->npat > 0 && r->pat[r->npat - 1].kind == POL_RS_REST;
}

/* <0 when A goes before B. */
static int
rank_cmp(const struct pol_route *a, const struct pol_route *b)
{
	if (a->literals != b->literals)
		return b->literals - a->literals;
	if (has_rest(a) != has_rest(b))
		return has_rest(a) - has_rest(b);
	if (has_rest(a) && a->npat != b->npat) /* both {*}: the longer fixed part is narrower */
		return b->npat - a->npat;
	if (a->holes != b->holes)
		return a->holes - b->holes;
	return a->nmethods - b->nmethods;
}

static int
route_cmp(const void *pa, const void *pb)
{
	const struct pol_route *a = pa, *b = pb;
	int r = rank_cmp(a, b);
	if (r)
		return r;
	if (!a->line != !b->line)
		return !a->line - !b->line; /* an operator route before a built-in of its rank */
	if (!a->line)
		return strcmp(a->name, b->name); /* built-ins of one rank are disjoint: any order */
	return a->line - b->line;       /* (operator routes of one rank do not overlap) */
}

static int
lit_eq(const struct pol_route *a, const struct pol_rpart *x, const struct pol_route *b,
       const struct pol_rpart *y)
{
	return x->len == y->len && !strncasecmp(a->lit + x->off, b->lit + y->off, x->len);
}

int
pol_route_overlap(const struct pol_route *a, const struct pol_route *b)
{
	int la = a->npat - has_rest(a), lb = b->npat - has_rest(b), i;

	if (!(a->methods & b->methods))
		return 0;
	if (!has_rest(a) && !has_rest(b) && la != lb)
		return 0;
	if (!has_rest(a) && lb > la)
		return 0;
	if (!has_rest(b) && la > lb)
		return 0;
	for (i = 0; i < la && i < lb; i++)
		if (a->pat[i].kind == POL_RS_LIT && b->pat[i].kind == POL_RS_LIT &&
		    !lit_eq(a, &a->pat[i], b, &b->pat[i]))
			return 0;
	return 1;
}

int
pol_route_sort(struct pol_route *routes, int n, const char *file, char *err, size_t errsz)
{
	int i, j;

	qsort(routes, (size_t)n, sizeof *routes, route_cmp);
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n && !rank_cmp(&routes[i], &routes[j]); j++)
			if (routes[i].line && routes[j].line && pol_route_overlap(&routes[i], &routes[j])) {
				snprintf(err, errsz,
				         "%.200s:%d: [route:%s] and [route:%s] (line %d) have the same precedence "
				         "and can match the same request: make one more specific",
				         file, routes[j].line, routes[j].name, routes[i].name, routes[i].line);
				return -1;
			}
	return 0;
}

/* ---- matching ---- */

int
pol_route_find(const struct pol_config *c, enum pol_method method, const struct pol_path *path,
               struct pol_route_match *m)
{
	unsigned bit = 1u << method;
	int i, j;

	for (i = 0; i < c->nroutes; i++) {
		const struct pol_route *r = &c->routes[i];
		int rest = has_rest(r), fixed = r->npat - rest;

		if (!(r->methods & bit) || path->nseg < fixed || (!rest && path->nseg != fixed))
			continue;
		for (j = 0; j < fixed; j++) {
			const struct pol_rpart *x = &r->pat[j];
			if (x->kind == POL_RS_LIT &&
			    (path->seg[j].len != x->len || strncasecmp(path->seg[j].p, r->lit + x->off, x->len)))
				break;
		}
		if (j < fixed)
			continue;
		m->route = r;
		for (j = 0; j < POL_RS_IDS; j++)
			m->at[j] = -1;
		m->rest = rest ? fixed : -1;
		for (j = 0; j < fixed; j++)
			if (r->pat[j].kind != POL_RS_LIT)
				m->at[r->pat[j].kind - 1] = j;
		return 0;
	}
	m->route = NULL;
	return -1;
}

int
pol_route_apply(const struct pol_route_match *m, struct pol_call *call, enum pol_cred cred,
                const char **why)
{
	const struct pol_route *r = m->route;
	const struct pol_path *p = &call->path;

	call->res = 0; /* the whole path names the resource in logs */
	call->app = NULL;
	call->app_len = 0;
	call->uid = call->cid = NULL;
	call->uid_len = call->cid_len = 0;
	call->actions = NULL;
	call->nactions = 0;
	call->keys = POL_PK_OTHER; /* until a body says otherwise */
	call->cred = cred;
	if (m->at[0] >= 0) {
		call->app = p->seg[m->at[0]].p;
		call->app_len = p->seg[m->at[0]].len;
	} else if (r->app[0]) {
		call->app = r->app;
		call->app_len = strlen(r->app);
	}
	if (call->app && !pol_appid_valid(call->app, call->app_len)) {
		*why = "app id outside [A-Za-z0-9_.-] or too long";
		return -1;
	}
	if (m->at[1] >= 0) {
		call->uid = p->seg[m->at[1]].p;
		call->uid_len = p->seg[m->at[1]].len;
	}
	if (m->at[2] >= 0) {
		call->cid = p->seg[m->at[2]].p;
		call->cid_len = p->seg[m->at[2]].len;
	}
	if (m->at[3] >= 0) { /* a participant's id is the call's uid (decide.c's action uid) */
		call->uid = p->seg[m->at[3]].p;
		call->uid_len = p->seg[m->at[3]].len;
	}
	call->api = r->sync != POL_SYNC_NONE;
	switch (r->sync) {
	case POL_SYNC_TALKJS: /* not applied here: the caller classified the rewritten path */
	case POL_SYNC_NONE:
		call->op = POL_OP_HTTP_PASS;
		return 0;
	case POL_SYNC_REALTIME:
		call->op = POL_OP_REALTIME;
		return 0;
	case POL_SYNC_USER_SET:
		call->op = POL_OP_USER_SET;
		break;
	case POL_SYNC_USER_CREATE:
		call->op = POL_OP_USER_CREATE;
		break;
	case POL_SYNC_CONV_SET:
		call->op = POL_OP_CONV_SET;
		break;
	case POL_SYNC_CONV_CREATE:
		call->op = POL_OP_CONV_CREATE;
		break;
	case POL_SYNC_PARTICIPANT:
		call->op = call->method == POL_M_DELETE ? POL_OP_PART_DELETE : POL_OP_PART_ACTION;
		break;
	}
	if (cred == POL_CRED_SERVER)
		call->op = POL_OP_REST_SERVER;
	return 0;
}

/* 1 if the LEN bytes at ID could be one decoded segment of a client's path (the rules of
 * pol_path_parse(): no "." or "..", no "/" or "\\", no control byte): an id from a body goes
 * into a path (a rewrite, a lookup) that the backend splits and decodes. */
static int
id_is_segment(const char *id, size_t len)
{
	size_t i;
	if ((len == 1 && id[0] == '.') || (len == 2 && id[0] == '.' && id[1] == '.'))
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)id[i];
		if (ch < 0x20 || ch == 0x7f || ch == '/' || ch == '\\')
			return 0;
	}
	return 1;
}

int
pol_route_body(struct pol_classifier *k, struct pol_route_match *m, struct pol_call *call,
               const char *body, size_t len, const char **why)
{
	const struct pol_route *r = m->route;
	struct pol_json *jj = pol_classifier_scanner(k);
	const struct pol_jtok *t;
	char *idbuf;
	size_t idsize, used = 0;
	int n, i;

	n = pol_json_parse(jj, body, len, why);
	if (n < 0)
		return -1;
	t = pol_json_tokens(jj);
	if (t[0].type != POL_J_OBJECT) {
		*why = "the body is not a JSON object";
		return -1;
	}
	idbuf = pol_classifier_idbuf(k, &idsize);
	for (i = 0; i < 4; i++)
		m->bid[i] = NULL;
	for (i = 0; i < 4; i++) {
		const char *key = r->body_key[i], *id;
		size_t idlen;
		int v;
		if (!key[0])
			continue;
		v = pol_json_obj_get(body, t, 0, key);
		if (v < 0 || t[v].type != POL_J_STRING || t[v].end == t[v].start) {
			*why = "an id the route takes from the body is missing, empty or not a string";
			return -1;
		}
		if (t[v].flags & (POL_JF_CTRL | POL_JF_LONE_SURR)) {
			*why = "an id the route takes from the body holds a control character or a lone "
			       "surrogate";
			return -1;
		}
		id = body + t[v].start;
		idlen = t[v].end - t[v].start;
		if (t[v].flags & POL_JF_ESCAPED) {
			/* the id the backend reads is the decoded one (JSON.parse) */
			long dl = pol_json_str_decode(body, &t[v], idbuf + used, idsize - used);
			if (dl <= 0) {
				*why = "an id the route takes from the body cannot be decoded";
				return -1;
			}
			id = idbuf + used;
			idlen = (size_t)dl;
			used += (size_t)dl;
		}
		if (idlen > POL_BODY_ID_MAX) {
			*why = "an id the route takes from the body is over 1024 bytes";
			return -1;
		}
		if (!id_is_segment(id, idlen)) {
			*why = "an id the route takes from the body is not a path segment (\".\", \"..\", "
			       "\"/\", \"\\\\\" or a control character)";
			return -1;
		}
		m->bid[i] = id;
		m->bidlen[i] = idlen;
		switch (i) {
		case 0:
			call->app = id;
			call->app_len = idlen;
			if (!pol_appid_valid(call->app, call->app_len)) {
				*why = "app id outside [A-Za-z0-9_.-] or too long";
				return -1;
			}
			break;
		case 1:
		case 3:
			call->uid = id;
			call->uid_len = idlen;
			break;
		case 2:
			call->cid = id;
			call->cid_len = idlen;
			break;
		}
	}
	call->toks = t; /* the body is the call's payload: locked fields are looked for there */
	call->data_tok = 0;
	call->text = body;
	call->text_len = len;
	if (r->sync == POL_SYNC_PARTICIPANT) {
		/* the keys of the change, read as decide.c reads an action's params */
		int c = 1;
		call->keys = 0;
		for (i = 0; i < (int)t[0].size; i++) {
			const struct pol_jtok *key = &t[c];
			int x, is_id = 0;
			for (x = 0; x < 4; x++)
				if (r->body_key[x][0] && pol_json_str_eq(body, key, r->body_key[x], strlen(r->body_key[x])))
					is_id = 1; /* the route's own id keys are not changes */
			if (is_id)
				;
			else if (pol_json_str_eq(body, key, "notify", 6))
				call->keys |= POL_PK_NOTIFY;
			else if (pol_json_str_eq(body, key, "access", 6))
				call->keys |= POL_PK_ACCESS;
			else
				call->keys |= POL_PK_OTHER;
			c = (int)t[c + 1].next;
		}
	}
	return 0;
}

/* Appends N bytes at S to OUT (*AT of OUTSZ); -1 when they do not fit. */
static int
put(char *out, size_t outsz, size_t *at, const char *s, size_t n)
{
	if (*at + n >= outsz)
		return -1;
	memcpy(out + *at, s, n);
	*at += n;
	return 0;
}

long
pol_route_rewrite(const struct pol_route_match *m, const struct pol_call *call,
                  const char *target, size_t tlen, char *out, size_t outsz)
{
	const struct pol_route *r = m->route;
	const char *seg[POL_PATH_MAX_SEGS + 1], *q, *pend;
	size_t plen = 0, at = 0;
	int nseg = 0, i;

	if (!r || !r->has_rewrite)
		return 0;
	while (plen < tlen && target[plen] != '?')
		plen++;
	pend = target + plen;
	q = plen < tlen ? target + plen : NULL;
	/* the raw segments: pol_path_parse() accepted this path, so raw "/" are the separators */
	for (i = 0; i < (int)plen && nseg < POL_PATH_MAX_SEGS + 1; i++)
		if (target[i] == '/')
			seg[nseg++] = target + i + 1;
	if (plen == 1)
		nseg = 0;
	for (i = 0; i < r->nrw; i++) {
		const struct pol_rpart *x = &r->rw[i];
		int idx;

		if (x->kind == POL_RS_REST) {
			const char *from = m->rest >= 0 && m->rest < nseg ? seg[m->rest] - 1 : pend;
			if (from == pend && i == 0 && put(out, outsz, &at, "/", 1))
				return -1;
			if (put(out, outsz, &at, from, (size_t)(pend - from)))
				return -1;
			continue;
		}
		if (put(out, outsz, &at, "/", 1))
			return -1;
		if (x->kind == POL_RS_LIT) {
			if (put(out, outsz, &at, r->lit + x->off, x->len)) /* as written (checked pchar) */
				return -1;
			continue;
		}
		idx = m->at[x->kind - 1];
		if (idx >= 0 && idx < nseg) {
			const char *s = seg[idx], *e = idx + 1 < nseg ? seg[idx + 1] - 1 : pend;
			if (put(out, outsz, &at, s, (size_t)(e - s)))
				return -1;
		} else {
			/* an id from the body (or the fixed app): encodeURIComponent of it */
			const char *id = m->bid[x->kind - 1];
			size_t idl = m->bidlen[x->kind - 1];
			long el;
			if (!id && x->kind == POL_RS_APP) {
				id = call->app;
				idl = call->app_len;
			}
			if (!id)
				return -1;
			el = pol_uri_encode(id, idl, out + at, outsz - at);
			if (el < 0 || at + (size_t)el >= outsz)
				return -1;
			at += (size_t)el;
		}
	}
	if (!r->nrw && put(out, outsz, &at, "/", 1))
		return -1;
	if (q && put(out, outsz, &at, q, (size_t)(target + tlen - q)))
		return -1;
	out[at] = 0;
	return (long)at;
}

void
pol_route_describe(const struct pol_config *c, const struct pol_route *r, char *out, size_t outsz)
{
	int n, k;
	static const char *const id_names[] = {"app", "user", "conversation", "participant"};

	n = snprintf(out, outsz, "%-24s %-40s upstream=%s sync=%s", r->name, r->match_text,
	             c->upstreams[r->upstream].name, pol_sync_to_str(r->sync));
	if (r->has_rewrite && n > 0 && (size_t)n < outsz)
		n += snprintf(out + n, outsz - (size_t)n, " rewrite=%s", r->rewrite_text);
	if (r->body_json && n > 0 && (size_t)n < outsz)
		n += snprintf(out + n, outsz - (size_t)n, " body=json");
	for (k = 0; k < 4; k++)
		if (r->body_key[k][0] && n > 0 && (size_t)n < outsz)
			n += snprintf(out + n, outsz - (size_t)n, " %s=body:%s", id_names[k], r->body_key[k]);
	if (r->app[0] && n > 0 && (size_t)n < outsz)
		n += snprintf(out + n, outsz - (size_t)n, " app=%s", r->app);
	if (n > 0 && (size_t)n < outsz) {
		if (r->line)
			snprintf(out + n, outsz - (size_t)n, " (%s:%d)", c->path ? c->path : "?", r->line);
		else
			snprintf(out + n, outsz - (size_t)n, " (built-in)");
	}
}

/* ---- a request classified as syncgate decides it ---- */

/*
 * A ";" in a path: Tomcat, Spring and other servlet containers drop ";parameters" from each
 * segment before routing, so "/legacy;x/a1/users" is "/legacy/a1/users" to them. When the
 * file has routes, the path read without its parameters must take the same route R, and a
 * route whose sync class needs its ids (not talkjs: the built-in classifier has its own rule,
 * nor none) must see none at all. Returns 0, or -1 with *WHY.
 */
static int
params_change_route(const struct pol_config *c, enum pol_method method, const char *target,
                    size_t tlen, const struct pol_route *r, const char **why)
{
	char bare[POL_PATH_MAX_BYTES];
	struct pol_path p;
	struct pol_route_match m2;
	const char *w;
	size_t plen = 0, i, n = 0;
	int skip = 0;

	while (plen < tlen && target[plen] != '?')
		plen++;
	if (!memchr(target, ';', plen))
		return 0;
	if (r->sync != POL_SYNC_TALKJS && r->sync != POL_SYNC_NONE) {
		*why = "';' parameter in a path a route decides on (a backend may drop it)";
		return -1;
	}
	for (i = 0; i < plen && n < sizeof bare; i++) {
		if (target[i] == '/')
			skip = 0;
		else if (target[i] == ';')
			skip = 1;
		if (!skip)
			bare[n++] = target[i];
	}
	if (pol_path_parse(bare, n, POL_PATH_PCHAR, &p, &w) || pol_route_find(c, method, &p, &m2) ||
	    m2.route != r) {
		*why = "';' parameter in a path: read without it, the path takes another route";
		return -1;
	}
	return 0;
}

int
pol_classify_body(struct pol_classifier *k, const struct pol_config *c, struct pol_route_match *m,
                  struct pol_call *call, const char *body, size_t len, const char *authz,
                  size_t alen, int64_t now, const char **why)
{
	enum pol_cred cred0 = authz && alen ? POL_CRED_BROWSER : POL_CRED_NONE, cred;
	const struct pol_app *app;

	if (pol_route_apply(m, call, cred0, why) || pol_route_body(k, m, call, body, len, why))
		return -1;
	if (cred0 == POL_CRED_NONE)
		return 0;
	/* the app may have come from the body: its key decides, not [app:*]'s */
	app = pol_config_app(c, call->app ? call->app : "", call->app ? call->app_len : 0);
	cred = pol_credential_class(app, authz, alen, now, c->limits.jwt_clock_skew_s);
	call->cred = cred;
	if (cred == POL_CRED_SERVER && call->op != POL_OP_HTTP_PASS)
		call->op = POL_OP_REST_SERVER;
	return 0;
}

int
pol_classify_routed(struct pol_classifier *k, const struct pol_config *c, const char *method,
                    size_t mlen, const char *target, size_t tlen, const char *authz, size_t alen,
                    int64_t now, struct pol_call *call, struct pol_route_match *m, char *rw,
                    size_t rwsz, long *rwlen, const char **why)
{
	enum pol_cred cred0 = authz && alen ? POL_CRED_BROWSER : POL_CRED_NONE, cred;
	const struct pol_route *r = NULL;
	const char *t = target;
	size_t tl = tlen;
	const struct pol_app *app;

	*rwlen = 0;
	m->route = NULL;
	if (pol_classify_http(k, method, mlen, target, tlen, cred0, call, why))
		return -1;
	if (c->operator_routes && pol_route_find(c, call->method, &call->path, m) == 0)
		r = m->route;
	if (r && params_change_route(c, call->method, target, tlen, r, why))
		return -1;
	if (r && r->sync == POL_SYNC_TALKJS) {
		if (r->has_rewrite) {
			/* the built-in table classifies what the backend will receive */
			*rwlen = pol_route_rewrite(m, call, target, tlen, rw, rwsz);
			if (*rwlen <= 0) {
				*why = "the rewritten path is too long";
				return -1;
			}
			t = rw;
			tl = (size_t)*rwlen;
			if (pol_classify_http(k, method, mlen, t, tl, cred0, call, why))
				return -1;
		}
	} else if (r) {
		if (pol_route_apply(m, call, cred0, why))
			return -1;
		if (r->has_rewrite && !r->body_json) {
			*rwlen = pol_route_rewrite(m, call, target, tlen, rw, rwsz);
			if (*rwlen <= 0) {
				*why = "the rewritten path is too long";
				return -1;
			}
		}
	}
	if (cred0 == POL_CRED_NONE)
		return 0;
	app = pol_config_app(c, call->app ? call->app : "", call->app ? call->app_len : 0);
	cred = pol_credential_class(app, authz, alen, now, c->limits.jwt_clock_skew_s);
	call->cred = cred; /* classified alike unless SERVER; a refusal names a foreign key */
	if (cred != POL_CRED_SERVER)
		return 0;
	if (r && r->sync != POL_SYNC_TALKJS)
		return pol_route_apply(m, call, cred, why);
	return pol_classify_http(k, method, mlen, t, tl, cred, call, why);
}

/* The next "key=value" of a route-test line's expectations; 0 at the end. */
static int
next_expect(const char **p, char *key, size_t ksz, char *val, size_t vsz)
{
	const char *s = *p, *eq, *e;
	while (*s == ' ' || *s == '\t')
		s++;
	if (!*s)
		return 0;
	e = s + strcspn(s, " \t");
	eq = memchr(s, '=', (size_t)(e - s));
	if (!eq || (size_t)(eq - s) >= ksz || (size_t)(e - eq - 1) >= vsz)
		return -1;
	memcpy(key, s, (size_t)(eq - s));
	key[eq - s] = 0;
	memcpy(val, eq + 1, (size_t)(e - eq - 1));
	val[e - eq - 1] = 0;
	*p = e;
	return 1;
}

int
pol_route_test(const struct pol_config *c, struct pol_classifier *k, const char *line, char *err,
               size_t errsz)
{
	char method[16], target[POL_ROUTE_TEXT * 2], rw[POL_ROUTE_TEXT * 3], key[32], val[POL_ROUTE_TEXT];
	const char *arrow = strstr(line, "->"), *sp = strchr(line, ' '), *why = NULL, *p;
	struct pol_call call;
	struct pol_route_match m;
	long rwlen;
	size_t tl;
	int got;

	if (!arrow || !sp || sp > arrow || (size_t)(sp - line) >= sizeof method) {
		snprintf(err, errsz, "'%.80s' is not METHOD /path -> key=value ...", line);
		return -1;
	}
	memcpy(method, line, (size_t)(sp - line));
	method[sp - line] = 0;
	while (*sp == ' ')
		sp++;
	tl = (size_t)(arrow - sp);
	while (tl && (sp[tl - 1] == ' ' || sp[tl - 1] == '\t'))
		tl--;
	if (!tl || tl >= sizeof target || *sp != '/') {
		snprintf(err, errsz, "'%.80s': the request target must start with /", line);
		return -1;
	}
	memcpy(target, sp, tl);
	target[tl] = 0;
	if (pol_classify_request(k, c, method, strlen(method), target, tl, NULL, 0, 0, &call, &m, rw,
	                         sizeof rw, &rwlen, &why)) {
		snprintf(err, errsz, "%s %s is refused 400 (%s)", method, target, why);
		return -1;
	}
	p = arrow + 2;
	while ((got = next_expect(&p, key, sizeof key, val, sizeof val)) > 0) {
		const char *have;
		char buf[POL_ROUTE_TEXT * 3];
		if (!strcmp(key, "route")) {
			have = m.route ? m.route->name : (c->operator_routes ? "none" : "talkjs-builtin");
			if (!m.route && !c->operator_routes) {
				/* no operator route: the table is not consulted, report what it would say */
				struct pol_route_match m2;
				have = pol_route_find(c, call.method, &call.path, &m2) == 0 ? m2.route->name : "none";
			}
		} else if (!strcmp(key, "sync")) {
			have = m.route ? pol_sync_to_str(m.route->sync) : "talkjs";
		} else if (!strcmp(key, "upstream")) {
			have = c->upstreams[m.route ? m.route->upstream : 0].name;
		} else if (!strcmp(key, "rewrite")) {
			if (rwlen > 0) {
				snprintf(buf, sizeof buf, "%s", rw);
			} else if (m.route && m.route->has_rewrite) {
				snprintf(buf, sizeof buf, "(from-the-body)");
			} else {
				snprintf(buf, sizeof buf, "%s", target);
			}
			have = buf;
		} else if (!strcmp(key, "op")) {
			have = pol_op_to_str(call.op);
		} else if (!strcmp(key, "app") || !strcmp(key, "user") || !strcmp(key, "conversation")) {
			const char *id = key[0] == 'a' ? call.app : key[0] == 'u' ? call.uid : call.cid;
			size_t il = key[0] == 'a' ? call.app_len : key[0] == 'u' ? call.uid_len : call.cid_len;
			snprintf(buf, sizeof buf, "%.*s", id ? (int)il : 0, id ? id : "");
			have = id ? buf : "(none)";
		} else {
			snprintf(err, errsz, "unknown expectation '%s' (route, sync, upstream, rewrite, op, "
			         "app, user, conversation)", key);
			return -1;
		}
		if (strcmp(have, val)) {
			snprintf(err, errsz, "%s %s: %s=%s expected, got %s=%s", method, target, key, val, key, have);
			return -1;
		}
	}
	if (got < 0) {
		snprintf(err, errsz, "'%.80s': expectations are key=value words", arrow + 2);
		return -1;
	}
	return 0;
}
