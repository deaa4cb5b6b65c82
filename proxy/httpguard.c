/*
 * proxy/httpguard.c - RFC 9112 head checks (contract in httpguard.h).
 */
#include "proxy/httpguard.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 §5.6.2 tchar */
static int
is_tchar(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int
px_token_eq(const char *a, size_t n, const char *b)
{
	return strlen(b) == n && strncasecmp(a, b, n) == 0;
}

long
px_head_end(const char *buf, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		if (buf[i] == '\n') {
			if (i == 0 || buf[i - 1] != '\r')
				return -1; /* bare LF */
			if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
				return (long)(i + 1);
		} else if (buf[i] == '\r') {
			if (i + 1 < len && buf[i + 1] != '\n')
				return -1; /* bare CR (including "\r\n\rX") */
		} else if (buf[i] == 0) {
			return -1;
		}
	}
	return 0;
}

/* The next element of the comma-separated list V[*I..N) (RFC 9110 §5.6.1), trimmed, at
 * [*S, *E); returns 0 when the list is done. */
static int
list_next(const char *v, size_t n, size_t *i, size_t *s, size_t *e)
{
	while (*i < n) {
		while (*i < n && (v[*i] == ' ' || v[*i] == '\t' || v[*i] == ','))
			(*i)++;
		*s = *i;
		while (*i < n && v[*i] != ',')
			(*i)++;
		*e = *i;
		while (*e > *s && (v[*e - 1] == ' ' || v[*e - 1] == '\t'))
			(*e)--;
		if (*e > *s)
			return 1;
	}
	return 0;
}

static int
list_has(const char *v, size_t n, const char *tok)
{
	size_t i = 0, s, e;
	while (list_next(v, n, &i, &s, &e))
		if (px_token_eq(v + s, e - s, tok))
			return 1;
	return 0;
}

/*
 * Header names a CGI/WSGI-style backend reading "_" as "-" must never be handed in disguise:
 * framing, routing, hop-by-hop, credentials, forwarding and the WebSocket handshake. Only
 * names with a "-" can be spelt with "_", but the whole set is listed for the reader.
 */
static const char *const protected_names[] = {
	"content-length", "transfer-encoding", "host", "connection", "upgrade", "te", "trailer",
	"keep-alive", "proxy-connection", "expect", "authorization", "content-type",
	"x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded",
	"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
	"sec-websocket-protocol", "x-http-method-override", "x-http-method", "x-method-override",
};

/* The names a Connection header may not list: a proxy removes what Connection names, and
 * each of these decides how syncgate framed, routed or judged the request. */
static const char *const unremovable_names[] = {
	"content-length", "transfer-encoding", "host", "authorization", "content-type",
	"sec-websocket-key", "sec-websocket-version",
};

/* 1 if the N bytes at NAME read as TARGET when case is ignored and "_" is read as "-". */
static int
reads_as(const char *name, size_t n, const char *target)
{
	size_t i;

	if (strlen(target) != n)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];
		if (c >= 'A' && c <= 'Z')
			c += 'a' - 'A';
		else if (c == '_')
			c = '-';
		if (c != (unsigned char)target[i])
			return 0;
	}
	return 1;
}

static int
reads_as_any(const char *name, size_t n, const char *const *set, size_t count)
{
	size_t i;
	for (i = 0; i < count; i++)
		if (reads_as(name, n, set[i]))
			return 1;
	return 0;
}

/* 1 if the list value V[0..N) names a header in unremovable_names (RFC 9110 §7.6.1). */
static int
connection_names_unremovable(const char *v, size_t n)
{
	size_t i = 0, s, e;
	while (list_next(v, n, &i, &s, &e))
		if (reads_as_any(v + s, e - s, unremovable_names,
		                 sizeof unremovable_names / sizeof unremovable_names[0]))
			return 1;
	return 0;
}

/* The header names the guard reads, told apart by length first (one compare for most lines). */
enum hkind { H_OTHER, H_HOST, H_AUTHZ, H_OVERRIDE, H_CL, H_TE, H_CONNECTION, H_UPGRADE, H_EXPECT,
             H_ORIGIN };

static enum hkind
header_kind(const char *p, size_t n)
{
	switch (n) {
	case 4:
		return px_token_eq(p, n, "host") ? H_HOST : H_OTHER;
	case 6:
		return px_token_eq(p, n, "expect") ? H_EXPECT : px_token_eq(p, n, "origin") ? H_ORIGIN : H_OTHER;
	case 7:
		return px_token_eq(p, n, "upgrade") ? H_UPGRADE : H_OTHER;
	case 10:
		return px_token_eq(p, n, "connection") ? H_CONNECTION : H_OTHER;
	case 13:
		return px_token_eq(p, n, "authorization") ? H_AUTHZ
		       : px_token_eq(p, n, "x-http-method") ? H_OVERRIDE : H_OTHER;
	case 14:
		return px_token_eq(p, n, "content-length") ? H_CL : H_OTHER;
	case 17:
		return px_token_eq(p, n, "transfer-encoding") ? H_TE
		       : px_token_eq(p, n, "x-method-override") ? H_OVERRIDE : H_OTHER;
	case 22:
		return px_token_eq(p, n, "x-http-method-override") ? H_OVERRIDE : H_OTHER;
	}
	return H_OTHER;
}

struct hstate {
	int request;
	int host, te, cl, conn_upgrade, conn_close, conn_keepalive, upgrade_ws, expect;
	int expect_other, authz;
};

/* Checks the header lines from P (just past the start line's CRLF) to END (the final CRLF). */
static int
check_fields(const char *p, const char *end, int max_headers, struct px_head_info *info,
             struct hstate *st, const char **why)
{
	while (p < end) {
		const char *eol = memchr(p, '\r', (size_t)(end - p) + 1);
		const char *colon, *v, *ve;
		size_t nl;

		if (!eol) {
			*why = "malformed header line";
			return 400;
		}
		if (*p == ' ' || *p == '\t') {
			*why = "obs-fold in header";
			return 400;
		}
		if (++info->nheaders > max_headers) {
			*why = "too many headers";
			return 431;
		}
		colon = memchr(p, ':', (size_t)(eol - p));
		if (!colon || colon == p) {
			*why = "empty header name or no colon";
			return 400;
		}
		for (const char *q = p; q < colon; q++)
			if (!is_tchar((unsigned char)*q)) {
				*why = q + 1 == colon && (*q == ' ' || *q == '\t')
				           ? "whitespace before colon" : "header name is not a token";
				return 400;
			}
		nl = (size_t)(colon - p);
		v = colon + 1;
		ve = eol;
		for (const char *q = v; q < ve; q++) {
			unsigned char c = (unsigned char)*q;
			if ((c < 0x20 && c != '\t') || c == 0x7f) {
				*why = "control byte in header value";
				return 400;
			}
		}
		while (v < ve && (*v == ' ' || *v == '\t'))
			v++;
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			ve--;
		size_t vl = (size_t)(ve - v);

		if (st->request && memchr(p, '_', nl)) {
			if (reads_as_any(p, nl, protected_names,
			                 sizeof protected_names / sizeof protected_names[0])) {
				*why = "header name with '_' that reads as a framing, routing or credential header";
				return 400;
			}
			info->underscores++;
		}
		switch (header_kind(p, nl)) {
		case H_HOST:
			st->host++;
			break;
		case H_AUTHZ:
			if (st->request && st->authz++) {
				*why = "more than one Authorization header";
				return 400;
			}
			break;
		case H_OVERRIDE:
			info->method_override = st->request;
			break;
		case H_ORIGIN:
			info->origin = v; /* the last one, as find_header() would not: it is only echoed
			                   * once checked (pol_origin_valid) */
			info->origin_len = vl;
			break;
		case H_CL: {
			uint64_t n = 0;
			size_t i;
			if (st->cl++ || vl == 0 || vl > 19) {
				*why = "duplicate or malformed Content-Length";
				return 400;
			}
			for (i = 0; i < vl; i++) {
				if (v[i] < '0' || v[i] > '9') {
					*why = "malformed Content-Length";
					return 400;
				}
				n = n * 10 + (uint64_t)(v[i] - '0');
			}
			info->has_cl = 1;
			info->content_length = n;
			info->cl_rewrite = vl > 1 && v[0] == '0';
			break;
		}
		case H_TE:
			if (st->te++ || !px_token_eq(v, vl, "chunked")) {
				*why = "Transfer-Encoding other than a single chunked";
				return 400;
			}
			info->chunked = 1;
			break;
		case H_CONNECTION:
			if (connection_names_unremovable(v, vl)) {
				*why = "Connection names a header that frames, routes or authorizes the message";
				return 400;
			}
			st->conn_close |= list_has(v, vl, "close");
			st->conn_keepalive |= list_has(v, vl, "keep-alive");
			st->conn_upgrade |= list_has(v, vl, "upgrade");
			break;
		case H_UPGRADE:
			st->upgrade_ws |= list_has(v, vl, "websocket");
			break;
		case H_EXPECT:
			if (px_token_eq(v, vl, "100-continue"))
				st->expect = 1;
			else
				st->expect_other = 1;
			break;
		case H_OTHER:
			break;
		}
		p = eol + 2;
	}
	if (st->te && st->cl) {
		*why = "both Transfer-Encoding and Content-Length";
		return 400;
	}
	if (st->te && info->http10) {
		*why = "Transfer-Encoding on HTTP/1.0";
		return 400;
	}
	info->conn_close = st->conn_close || (info->http10 && !st->conn_keepalive);
	info->upgrade_ws = st->upgrade_ws && st->conn_upgrade;
	info->expect_continue = st->expect;
	return 0;
}

static int
parse_version(const char *p, const char *end, struct px_head_info *info)
{
	if (end - p != 8 || memcmp(p, "HTTP/1.", 7))
		return -1;
	if (p[7] == '1')
		info->http10 = 0;
	else if (p[7] == '0')
		info->http10 = 1;
	else
		return -1;
	return 0;
}

int
px_guard_request(const char *head, size_t len, size_t max_line, int max_headers,
                 struct px_head_info *info, const char **why)
{
	const char *end = head + len - 2; /* the final CRLF */
	const char *eol, *sp1, *sp2, *q;
	struct hstate st;
	int r;

	memset(info, 0, sizeof *info);
	memset(&st, 0, sizeof st);
	st.request = 1;
	eol = memchr(head, '\r', len);
	if (!eol || eol == head) {
		*why = "empty request line";
		return 400;
	}
	info->line_len = (size_t)(eol - head);
	if (info->line_len > max_line) {
		*why = "request line too long";
		return 414;
	}
	for (sp1 = head; sp1 < eol && is_tchar((unsigned char)*sp1); sp1++)
		;
	if (sp1 == head || sp1 >= eol || *sp1 != ' ') {
		*why = "malformed method";
		return 400;
	}
	sp2 = memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1));
	if (!sp2 || sp2 == sp1 + 1) {
		*why = "malformed request line";
		return 400;
	}
	for (q = sp1 + 1; q < sp2; q++) {
		unsigned char c = (unsigned char)*q;
		if (c <= 0x20 || c >= 0x7f || c == '#') {
			*why = c == '#' ? "fragment in request-target"
			                : "control or non-ASCII byte in request-target";
			return 400;
		}
	}
	if (px_token_eq(head, (size_t)(sp1 - head), "CONNECT")) {
		*why = "CONNECT is not supported";
		return 501;
	}
	if (sp1[1] != '/' &&
	    !(sp2 - sp1 == 2 && sp1[1] == '*' && px_token_eq(head, (size_t)(sp1 - head), "OPTIONS"))) {
		*why = "request-target must be origin-form";
		return 400;
	}
	if (parse_version(sp2 + 1, eol, info)) {
		*why = "unsupported HTTP version";
		return 400;
	}
	r = check_fields(eol + 2, end, max_headers, info, &st, why);
	if (r)
		return r;
	if (st.host > 1 || (st.host == 0 && !info->http10)) {
		*why = st.host ? "two Host headers" : "no Host header";
		return 400;
	}
	if (st.expect_other) {
		*why = "unsupported Expect";
		return 417;
	}
	return 0;
}

int
px_guard_response(const char *head, size_t len, int max_headers, struct px_head_info *info,
                  const char **why)
{
	const char *end = head + len - 2;
	const char *eol;
	struct hstate st;

	memset(info, 0, sizeof *info);
	memset(&st, 0, sizeof st);
	eol = memchr(head, '\r', len);
	if (!eol || eol - head < 12 || parse_version(head, head + 8, info) || head[8] != ' ' ||
	    head[9] < '1' || head[9] > '5' || head[10] < '0' || head[10] > '9' || head[11] < '0' ||
	    head[11] > '9' || (eol - head > 12 && head[12] != ' ')) {
		*why = "malformed status line";
		return 502;
	}
	for (const char *q = head + 12; q < eol; q++)
		if ((unsigned char)*q < 0x20 && *q != '\t') {
			*why = "control byte in status line";
			return 502;
		}
	info->line_len = (size_t)(eol - head);
	if (check_fields(eol + 2, end, max_headers, info, &st, why))
		return 502;
	return 0;
}
