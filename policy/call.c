/*
 * policy/call.c - classification of realtime frames and HTTP requests (contract in call.h).
 */
#include "policy/call.h"

#include <stdlib.h>
#include <string.h>

#include "policy/json.h"

#define ID_BUF_BYTES (64 * 1024)

struct pol_classifier {
	struct pol_json *json;
	struct pol_action *actions;
	uint32_t max_actions;
	char *idbuf; /* decoded action uids */
};

struct pol_classifier *
pol_classifier_new(const struct pol_limits *lim)
{
	struct pol_classifier *k = calloc(1, sizeof *k);

	if (!k)
		return NULL;
	k->json = pol_json_new(lim->json_tokens, lim->json_depth);
	k->max_actions = lim->batch_actions;
	k->actions = calloc(lim->batch_actions, sizeof *k->actions);
	k->idbuf = malloc(ID_BUF_BYTES);
	if (!k->json || !k->actions || !k->idbuf) {
		pol_classifier_free(k);
		return NULL;
	}
	return k;
}

void
pol_classifier_free(struct pol_classifier *k)
{
	if (!k)
		return;
	pol_json_free(k->json);
	free(k->actions);
	free(k->idbuf);
	free(k);
}

const struct pol_json *
pol_classifier_json(const struct pol_classifier *k)
{
	return k->json;
}

struct pol_json *
pol_classifier_scanner(struct pol_classifier *k)
{
	return k->json;
}

char *
pol_classifier_idbuf(struct pol_classifier *k, size_t *size)
{
	*size = ID_BUF_BYTES;
	return k->idbuf;
}

static const struct {
	const char *name;
	enum pol_method m;
} methods[] = {
	{"GET", POL_M_GET}, {"PUT", POL_M_PUT}, {"POST", POL_M_POST}, {"PATCH", POL_M_PATCH},
	{"DELETE", POL_M_DELETE}, {"SUBSCRIBE", POL_M_SUBSCRIBE},
	{"UNSUBSCRIBE", POL_M_UNSUBSCRIBE}, {"OPTIONS", POL_M_OPTIONS}, {"HEAD", POL_M_HEAD},
};

enum pol_method
pol_method_parse(const char *m, size_t len)
{
	size_t i;
	for (i = 0; i < sizeof methods / sizeof methods[0]; i++)
		if (strlen(methods[i].name) == len && !memcmp(methods[i].name, m, len))
			return methods[i].m;
	return POL_M_OTHER;
}

static int
is_read(enum pol_method m)
{
	return m == POL_M_GET || m == POL_M_SUBSCRIBE || m == POL_M_UNSUBSCRIBE ||
	       m == POL_M_HEAD || m == POL_M_OPTIONS;
}

/* Segment I of P is the literal S (lower case), compared ASCII-case-insensitively: the fixed
 * words of a path are matched the way a backend that routes case-insensitively (Express,
 * Koa, Spring with its defaults relaxed) reads them, so "/Users/x" is a user call, not an
 * unknown one that passes. The length is known at compile time, so the comparison is inlined
 * (this runs several times for every frame). */
#define SEG_IS(p, i, s) seg_is(p, i, s, sizeof(s) - 1)

/* Up to 8 bytes at P (N of them, 1..8) in a word, every byte ORed with 0x20. */
static inline uint64_t
fold_word(const unsigned char *p, size_t n)
{
	uint64_t w = 0;
	memcpy(&w, p, n);
	return w | 0x2020202020202020ull;
}

/*
 * ORing 0x20 folds A-Z onto a-z, and the literals hold only lower-case letters, digits and
 * "_", whose other preimages under it (0x10-0x19, DEL) pol_path_parse() never lets into a
 * segment: so folded words are equal exactly when the segment is the word in some case.
 * N is a compile-time constant, so this is a few word compares.
 */
static inline int
seg_is(const struct pol_path *p, int i, const char *s, size_t n)
{
	const unsigned char *a, *b = (const unsigned char *)s;
	size_t k;

	if (i >= p->nseg || p->seg[i].len != n)
		return 0;
	a = (const unsigned char *)p->seg[i].p;
	for (k = 0; k + 8 <= n; k += 8)
		if (fold_word(a + k, 8) != fold_word(b + k, 8))
			return 0;
	return k == n || fold_word(a + k, n - k) == fold_word(b + k, n - k);
}

static void
set_id(const struct pol_path *p, int i, const char **id, size_t *len)
{
	*id = p->seg[i].p;
	*len = p->seg[i].len;
}

/*
 * Routes a mutation of the resource path P (segments from B on) to its operation: the user,
 * conversation and participant rows of protocol.md section 3. Mutations of a users or
 * conversations resource that the table does not name fall to the class of that resource,
 * so an unlisted call can never slip past a switch that is off.
 */
static void
route_mutation(struct pol_call *c, int b)
{
	const struct pol_path *p = &c->path;
	int n = p->nseg - b;
	enum pol_method m = c->method;

	c->op = POL_OP_UNKNOWN;
	if (n >= 1 && SEG_IS(p, b, "users")) {
		c->op = POL_OP_USER_SET;
		if (n >= 2)
			set_id(p, b + 1, &c->uid, &c->uid_len);
		if (n == 2 && m == POL_M_POST)
			c->op = POL_OP_USER_CREATE;
		return;
	}
	if (n >= 1 && SEG_IS(p, b, "conversations")) {
		c->op = POL_OP_CONV_SET;
		if (n < 2)
			return;
		set_id(p, b + 1, &c->cid, &c->cid_len);
		if (n == 2) {
			if (m == POL_M_POST)
				c->op = POL_OP_CONV_CREATE;
			return;
		}
		if (SEG_IS(p, b + 2, "messages")) {
			c->op = POL_OP_MESSAGE;
			return;
		}
		if (SEG_IS(p, b + 2, "participants")) {
			if (n == 3 && m == POL_M_POST) {
				c->op = POL_OP_PART_BATCH;
			} else if (n == 4) {
				set_id(p, b + 3, &c->uid, &c->uid_len);
				if (m == POL_M_DELETE)
					c->op = POL_OP_PART_DELETE;
				else if (m == POL_M_PUT || m == POL_M_POST || m == POL_M_PATCH)
					c->op = POL_OP_PART_ACTION;
			}
		}
		return;
	}
	if (n >= 1 && SEG_IS(p, b, "me")) {
		if (n == 1) {
			c->op = POL_OP_USER_SET; /* the user itself */
			return;
		}
		if (SEG_IS(p, b + 1, "conversations")) {
			c->op = POL_OP_CONV_SET;
			if (n >= 3)
				set_id(p, b + 2, &c->cid, &c->cid_len);
			if (n == 4 && m == POL_M_POST &&
			    (SEG_IS(p, b + 3, "read") || SEG_IS(p, b + 3, "unread") ||
			     SEG_IS(p, b + 3, "typing")))
				c->op = POL_OP_USER_STATE;
		}
		return;
	}
	if (n == 2 && SEG_IS(p, b, "files") && SEG_IS(p, b + 1, "validate"))
		c->op = POL_OP_MESSAGE;
}

/* Bits of the keys of object token OBJ. */
static unsigned
key_bits(const char *text, const struct pol_jtok *t, int obj)
{
	unsigned bits = 0;
	uint32_t k, m;

	for (k = (uint32_t)obj + 1, m = 0; m < t[obj].size; m++, k = t[k + 1].next) {
		if (pol_json_str_eq(text, &t[k], "notify", 6))
			bits |= POL_PK_NOTIFY;
		else if (pol_json_str_eq(text, &t[k], "access", 6))
			bits |= POL_PK_ACCESS;
		else
			bits |= POL_PK_OTHER;
	}
	return bits;
}

/* A string the decision reads: no control characters, no lone surrogates. */
static int
clean_string(const struct pol_jtok *t)
{
	return t->type == POL_J_STRING && !(t->flags & (POL_JF_CTRL | POL_JF_LONE_SURR));
}

static int
parse_actions(struct pol_classifier *k, struct pol_call *c, const struct pol_jtok *t,
              const char **why)
{
	int arr = pol_json_obj_get(c->text, t, c->data_tok, "actions");
	uint32_t i, a, used = 0;

	if (arr < 0 || t[arr].type != POL_J_ARRAY) {
		*why = "participants batch without an actions array";
		return -1;
	}
	if (t[c->data_tok].size != 1) {
		*why = "participants batch with keys besides actions";
		return -1;
	}
	if (t[arr].size == 0 || t[arr].size > k->max_actions) {
		*why = "participants batch is empty or over the batch_actions limit";
		return -1;
	}
	for (a = (uint32_t)arr + 1, i = 0; i < t[arr].size; i++, a = t[a].next) {
		struct pol_action *act = &k->actions[i];
		int id, me, pa;
		long n;

		if (t[a].type != POL_J_OBJECT) {
			*why = "participant action is not an object";
			return -1;
		}
		id = pol_json_obj_get(c->text, t, (int)a, "id");
		me = pol_json_obj_get(c->text, t, (int)a, "method");
		pa = pol_json_obj_get(c->text, t, (int)a, "params");
		if (id < 0 || me < 0 || pa < 0 || t[a].size != 3) {
			*why = "participant action must have exactly id, method and params";
			return -1;
		}
		if (!clean_string(&t[id]) || !clean_string(&t[me]) || t[pa].type != POL_J_OBJECT) {
			*why = "participant action has a bad id, method or params";
			return -1;
		}
		act->tok = a;
		act->method = pol_method_parse(c->text + t[me].start, t[me].end - t[me].start);
		if ((t[me].flags & POL_JF_ESCAPED) ||
		    (act->method != POL_M_PUT && act->method != POL_M_POST &&
		     act->method != POL_M_PATCH)) {
			*why = "participant action method must be PUT, POST or PATCH";
			return -1;
		}
		n = pol_json_str_decode(c->text, &t[id], k->idbuf + used, ID_BUF_BYTES - used);
		if (n <= 0) {
			*why = "participant action id is empty or too long";
			return -1;
		}
		act->uid = k->idbuf + used;
		act->uid_len = (size_t)n;
		used += (uint32_t)n;
		act->keys = key_bits(c->text, t, pa);
		act->params = pa;
	}
	c->actions = k->actions;
	c->nactions = (int)t[arr].size;
	return 0;
}

/* Best effort for an unparsable frame: "[" ws number → that number is the seq. */
static void
salvage_seq(const char *text, size_t len, struct pol_call *c)
{
	size_t i = 0, s;

	while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
		i++;
	if (i >= len || text[i] != '[')
		return;
	i++;
	while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
		i++;
	s = i;
	while (i < len && i - s < 20 && text[i] >= '0' && text[i] <= '9')
		i++;
	if (i == s || i >= len || (text[s] == '0' && i - s > 1))
		return;
	if (text[i] != ',' && text[i] != ' ' && text[i] != ']')
		return;
	c->seq = text + s;
	c->seq_len = i - s;
}

#define MAX_SEQ_TEXT 32

int
pol_classify_frame(struct pol_classifier *k, const char *text, size_t len,
                   struct pol_call *c, const char **why)
{
	const struct pol_jtok *t;
	int n, e1, e2, e3, e4;
	char pathtext[POL_PATH_MAX_BYTES];
	const char *path;
	long pl;

	memset(c, 0, offsetof(struct pol_call, path));
	c->toks = NULL;
	c->data_tok = -1;
	c->res = 0;
	c->path.nseg = 0;
	c->app = c->uid = c->cid = NULL;
	c->api = 0;
	c->actions = NULL;
	c->nactions = 0;
	c->keys = 0;
	c->text = text;
	c->text_len = len;
	c->cred = POL_CRED_NONE;

	n = pol_json_parse(k->json, text, len, why);
	if (n < 0) {
		salvage_seq(text, len, c);
		return -1;
	}
	t = pol_json_tokens(k->json);
	if (t[0].type != POL_J_ARRAY || t[0].size < 1 || t[1].type != POL_J_NUMBER) {
		*why = "frame is not an array starting with a number";
		return -1;
	}
	if (t[1].end - t[1].start > MAX_SEQ_TEXT) {
		*why = "seq too long";
		return -1;
	}
	c->seq = text + t[1].start;
	c->seq_len = t[1].end - t[1].start;
	e1 = (int)t[1].next;
	if (t[0].size == 2) {
		if (pol_json_str_eq(text, &t[e1], "ACK", 3)) {
			c->op = POL_OP_ACK;
			return 0;
		}
		*why = "two-element frame that is not an ACK";
		return -1;
	}
	if (t[0].size != 5) {
		*why = "call frame must have 5 elements";
		return -1;
	}
	e2 = (int)t[e1].next;
	e3 = (int)t[e2].next;
	e4 = (int)t[e3].next;
	if (!clean_string(&t[e1]) || (t[e1].flags & POL_JF_ESCAPED)) {
		*why = "method must be a plain string";
		return -1;
	}
	c->method_text = text + t[e1].start;
	c->method_len = t[e1].end - t[e1].start;
	c->method = pol_method_parse(c->method_text, c->method_len);
	if (c->method == POL_M_OTHER || c->method == POL_M_OPTIONS || c->method == POL_M_HEAD) {
		*why = "unknown method";
		return -1;
	}
	if (!clean_string(&t[e2])) {
		*why = "path must be a string without control characters";
		return -1;
	}
	if (t[e3].type != POL_J_OBJECT || t[e4].type != POL_J_OBJECT) {
		*why = "data and headers must be objects";
		return -1;
	}
	c->data_tok = e3;
	c->toks = t;
	if (t[e2].flags & POL_JF_ESCAPED) {
		pl = pol_json_str_decode(text, &t[e2], pathtext, sizeof pathtext);
		if (pl < 0) {
			*why = "path too long";
			return -1;
		}
		path = pathtext;
	} else { /* no escapes: the token's bytes are the path */
		path = text + t[e2].start;
		pl = (long)(t[e2].end - t[e2].start);
		if (pl > POL_PATH_MAX_BYTES) {
			*why = "path too long";
			return -1;
		}
	}
	if (pol_path_parse(path, (size_t)pl, POL_PATH_URI_COMPONENT, &c->path, why))
		return -1;

	if (c->path.nseg == 1 && SEG_IS(&c->path, 0, "ping") && c->method == POL_M_GET) {
		c->op = POL_OP_PING;
		return 0;
	}
	if (c->path.nseg == 2 && SEG_IS(&c->path, 0, "session") && SEG_IS(&c->path, 1, "renew") &&
	    c->method == POL_M_POST) {
		c->op = POL_OP_AUTH;
		return 0;
	}
	if (is_read(c->method)) {
		c->op = POL_OP_READ;
		return 0;
	}
	route_mutation(c, 0);
	if (c->op == POL_OP_PART_BATCH)
		return parse_actions(k, c, t, why);
	if (c->op == POL_OP_PART_ACTION)
		c->keys = key_bits(text, t, c->data_tok);
	return 0;
}

/*
 * The API base P starts with: the number of segments of the base words (1 for /v1, 2 for
 * /public_api/v1 and /api/v0), 0 if none. *V0 says which family: /api/v0 (the browser API,
 * U2 and U3) or a /v1 one (realtime, REST). The app id is the segment after the base.
 */
static int
api_base(const struct pol_path *p, int *v0)
{
	*v0 = 0;
	if (p->nseg >= 1 && SEG_IS(p, 0, "v1"))
		return 1;
	if (p->nseg >= 2 && SEG_IS(p, 0, "public_api") && SEG_IS(p, 1, "v1"))
		return 2;
	if (p->nseg >= 2 && SEG_IS(p, 0, "api") && SEG_IS(p, 1, "v0")) {
		*v0 = 1;
		return 2;
	}
	return 0;
}

int
pol_appid_valid(const char *id, size_t len)
{
	size_t i;

	if (len == 0 || len > POL_APPID_MAX)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)id[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '.' || c == '-'))
			return 0;
	}
	return 1;
}

/*
 * 1 if PATH (LEN bytes, with at least one ";") read the way a ";"-stripping backend reads it,
 * every segment cut at its first ";", starts with an API base.
 */
static int
params_hide_api_base(const char *path, size_t len)
{
	char buf[POL_PATH_MAX_BYTES];
	struct pol_path p;
	const char *why;
	size_t i, o = 0;
	int skip = 0, v0;

	for (i = 0; i < len && o < sizeof buf; i++) {
		if (path[i] == '/')
			skip = 0;
		else if (path[i] == ';')
			skip = 1;
		if (!skip)
			buf[o++] = path[i];
	}
	/* a path that no longer parses cannot be told apart: treat it as hiding a base */
	if (i < len || pol_path_parse(buf, o, POL_PATH_PCHAR, &p, &why))
		return 1;
	return api_base(&p, &v0) > 0;
}

int
pol_classify_http(struct pol_classifier *k, const char *method, size_t mlen,
                  const char *target, size_t tlen, enum pol_cred cred, struct pol_call *c,
                  const char **why)
{
	size_t plen = 0;
	int b, v0, mutation;

	(void)k;
	memset(c, 0, offsetof(struct pol_call, path));
	c->toks = NULL;
	c->data_tok = -1;
	c->res = 0;
	c->app = c->uid = c->cid = NULL;
	c->api = 0;
	c->actions = NULL;
	c->nactions = 0;
	c->keys = POL_PK_OTHER; /* an HTTP body is not inspected: assume the worst */
	c->text = NULL;
	c->text_len = 0;
	c->cred = cred;
	c->method_text = method;
	c->method_len = mlen;
	c->method = pol_method_parse(method, mlen);
	while (plen < tlen && target[plen] != '?')
		plen++;
	if (pol_path_parse(target, plen, POL_PATH_PCHAR, &c->path, why))
		return -1;
	if (memchr(target, ';', plen) && params_hide_api_base(target, plen)) {
		*why = "';' parameter in an API path";
		return -1;
	}

	const struct pol_path *p = &c->path;
	c->op = POL_OP_HTTP_PASS;
	b = api_base(p, &v0);
	if (b == 0)
		return 0; /* not an API path: the app's own traffic, passed */
	c->api = 1;
	mutation = !is_read(c->method);
	if (p->nseg > b) {
		c->app = p->seg[b].p;
		c->app_len = p->seg[b].len;
		if (!pol_appid_valid(c->app, c->app_len)) {
			*why = "app id outside [A-Za-z0-9_.-] or too long";
			return -1;
		}
	}
	b++; /* the first resource segment */
	c->res = b < p->nseg ? b : p->nseg;
	if (v0) {
		/* /api/v0/{app} (U2) and /api/v0/{app}/bokens/{uid} (U3) are read; nothing under
		 * /api/v0 changes anything, whoever asks */
		if (mutation) {
			c->op = POL_OP_UNKNOWN;
			return 0;
		}
		if (p->nseg == b + 2 && SEG_IS(p, b, "bokens") && c->method != POL_M_OPTIONS) {
			c->op = POL_OP_SIGNATURE;
			set_id(p, b + 1, &c->uid, &c->uid_len);
		}
		return 0;
	}
	if (!c->app) {
		c->op = mutation ? (cred == POL_CRED_SERVER ? POL_OP_REST_SERVER : POL_OP_UNKNOWN)
		                 : POL_OP_HTTP_PASS;
		return 0;
	}
	if (p->nseg == b + 2 && SEG_IS(p, b, "realtime") && c->method == POL_M_GET) {
		c->op = POL_OP_REALTIME;
		set_id(p, b + 1, &c->uid, &c->uid_len);
		return 0;
	}
	if (!mutation) {
		c->op = POL_OP_READ;
		return 0;
	}
	if (p->nseg == b + 1 && SEG_IS(p, b, "files") && c->method == POL_M_POST)
		return 0; /* U4 upload */
	if (c->method != POL_M_OTHER)
		route_mutation(c, b);
	else
		c->op = POL_OP_UNKNOWN;
	if (cred == POL_CRED_SERVER)
		c->op = POL_OP_REST_SERVER;
	else if (c->op == POL_OP_PART_BATCH) {
		c->op = POL_OP_CONV_SET; /* a batch body over HTTP is not decided per action: fail closed */
		c->http_batch = 1;
	}
	return 0;
}

int
pol_classify_payload(struct pol_classifier *k, struct pol_call *c, const char *body, size_t len,
                     const char **why)
{
	const struct pol_jtok *t;

	if (len == 0)
		return 0;
	if (pol_json_parse(k->json, body, len, why) < 0)
		return -1;
	t = pol_json_tokens(k->json);
	if (t[0].type != POL_J_OBJECT) {
		*why = "the body is not a JSON object";
		return -1;
	}
	c->toks = t;
	c->data_tok = 0;
	c->text = body;
	c->text_len = len;
	/* a participants batch: its actions' params are what a locked participant field hides in */
	return c->http_batch ? parse_actions(k, c, t, why) : 0;
}

const char *
pol_op_to_str(enum pol_op op)
{
	static const char *names[] = {
		"read", "ping", "auth", "ack", "message", "user-state", "user-set", "user-create",
		"conversation-set", "conversation-create", "participant-batch", "participant-action",
		"participant-delete", "rest-server", "realtime", "signature", "http-pass", "unknown",
	};
	return (unsigned)op < sizeof names / sizeof names[0] ? names[op] : "?";
}
