/*
 * libFuzzer: syncgate's reading of an HTTP request line against a lenient backend's.
 *
 * Input: "METHOD TARGET" (the first space splits them). syncgate classifies it with a browser
 * credential and decides it with both switches off (every fact unknowable). Independently,
 * this driver reads the target the way a lenient backend could: the query cut off, each
 * segment cut at its first ";", percent-decoded where the escape is valid, compared without
 * case; the method upper-cased. Properties (issue 15):
 *  - a request the lenient reading takes for a user, conversation or participant mutation
 *    (anything under /users/{x} or /conversations/{x} but its messages), or for any mutation
 *    under /api/v0/{app}, is never allowed by syncgate;
 *  - a request the lenient reading takes for the realtime socket is either refused or known
 *    to syncgate as an API path (so an upgrade on it is inspected or refused, never tunnelled).
 */
#include <stdlib.h>
#include <string.h>

#include "policy/call.h"
#include "policy/decide.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define MAXSEG 16
#define SEGLEN 64

struct reading {
	int n;
	char seg[MAXSEG][SEGLEN]; /* lower case, decoded; longer segments are cut */
};

static int
hexv(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static void
lenient_read(const char *t, size_t len, struct reading *r)
{
	size_t i = 0;

	memset(r, 0, sizeof *r);
	while (i < len && t[i] == '/')
		i++; /* "//v1" reads as "/v1" to some routers */
	while (i < len && t[i] != '?' && r->n < MAXSEG) {
		size_t o = 0;
		int cut = 0;
		while (i < len && t[i] != '/' && t[i] != '?') {
			int c = (unsigned char)t[i], hi, lo;
			if (c == ';')
				cut = 1;
			if (c == '%' && i + 2 < len && (hi = hexv((unsigned char)t[i + 1])) >= 0 &&
			    (lo = hexv((unsigned char)t[i + 2])) >= 0) {
				c = hi << 4 | lo;
				i += 2;
			}
			i++;
			if (cut)
				continue;
			if (c >= 'A' && c <= 'Z')
				c += 'a' - 'A';
			if (o < SEGLEN - 1)
				r->seg[r->n][o++] = (char)c;
		}
		if (o)
			r->n++;
		while (i < len && t[i] == '/')
			i++;
	}
}

static int
is(const struct reading *r, int i, const char *s)
{
	return i < r->n && !strcmp(r->seg[i], s);
}

/* The segment index of the resource after the app id of a /v1 base, -1 if none. */
static int
v1_resource(const struct reading *r)
{
	if (is(r, 0, "v1"))
		return 2;
	if (is(r, 0, "public_api") && is(r, 1, "v1"))
		return 3;
	return -1;
}

static int
lenient_forbidden(const char *m, const struct reading *r)
{
	int b;

	if (!strcmp(m, "GET") || !strcmp(m, "HEAD") || !strcmp(m, "OPTIONS") ||
	    !strcmp(m, "SUBSCRIBE") || !strcmp(m, "UNSUBSCRIBE"))
		return 0;
	if (is(r, 0, "api") && is(r, 1, "v0") && r->n >= 3)
		return 1;
	b = v1_resource(r);
	if (b < 0 || r->n < b + 2)
		return 0;
	/* messages (and their reactions) are not sync: they pass whatever the switches */
	return is(r, b, "users") || (is(r, b, "conversations") && !is(r, b + 2, "messages"));
}

static int
lenient_realtime(const char *m, const struct reading *r)
{
	int b = v1_resource(r);
	return !strcmp(m, "GET") && b > 0 && r->n == b + 2 && is(r, b, "realtime");
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static struct pol_classifier *k;
	static struct pol_limits lim = {.json_tokens = 4096, .json_depth = 32, .batch_actions = 100};
	const char *in = (const char *)data, *sp = memchr(in, ' ', size), *why;
	char method[32];
	size_t ml, tl;
	struct pol_call c;
	struct reading r;
	int i;

	if (!k)
		k = pol_classifier_new(&lim);
	if (!sp || sp == in || (size_t)(sp - in) >= sizeof method)
		return 0;
	ml = (size_t)(sp - in);
	tl = size - ml - 1;
	for (i = 0; i < (int)ml; i++) {
		char ch = in[i];
		if (ch == '\0' || ch == ' ')
			return 0;
		method[i] = ch >= 'a' && ch <= 'z' ? (char)(ch - 'a' + 'A') : ch;
	}
	method[ml] = 0;
	lenient_read(sp + 1, tl, &r);
	if (pol_classify_http(k, in, ml, sp + 1, tl, POL_CRED_BROWSER, &c, &why))
		return 0; /* refused (400): nothing reaches the backend */
	if (lenient_realtime(method, &r) && !c.api)
		abort(); /* an upgrade here would be a blind tunnel */
	if (lenient_forbidden(method, &r)) {
		struct pol_app app;
		struct pol_decision d;
		struct pol_facts f = {POL_FV_ERROR, POL_FV_ERROR, POL_FV_ERROR};
		memset(&app, 0, sizeof app);
		strcpy(app.id, "fz");
		struct pol_ctx ctx = {&app, NULL, 0, 1};
		pol_decide(&ctx, &c, NULL, &d);
		if (d.verdict == POL_NEED_FACT)
			pol_decide(&ctx, &c, &f, &d);
		if (d.verdict == POL_ALLOW)
			abort(); /* a mutation the backend may carry out, passed */
	}
	return 0;
}
