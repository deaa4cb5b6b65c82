/*
 * proxy/httpguard.h - RFC 9112 checks on a complete request or response head, in syncgate's
 * own code, before llhttp sees it. llhttp 8.1 (even in strict mode) lets through empty header
 * names, "\r\n\rX" head endings and unbounded lengths; this pass refuses those and everything
 * else the relay must never forward (see the list in px_guard_request()).
 *
 * Pure: no I/O, no allocation. The head is the bytes up to and including the first
 * "\r\n\r\n".
 */
#ifndef SG_PROXY_HTTPGUARD_H
#define SG_PROXY_HTTPGUARD_H

#include <stddef.h>
#include <stdint.h>

/* What the guard learned about the framing of a valid head. */
struct px_head_info {
	int http10;           /* HTTP/1.0 */
	int chunked;          /* Transfer-Encoding: chunked */
	int has_cl;
	uint64_t content_length;
	int conn_close;       /* Connection: close (or 1.0 without keep-alive) */
	int expect_continue;  /* Expect: 100-continue */
	int upgrade_ws;       /* Upgrade: websocket with Connection: upgrade */
	int nheaders;
	size_t line_len;      /* request/status line, without CRLF */
	int cl_rewrite;       /* Content-Length has leading zeros: forwarded canonical */
	int underscores;      /* request header names containing "_" (none of them protected) */
	int method_override;  /* X-HTTP-Method-Override, X-HTTP-Method or X-Method-Override */
	const char *origin;   /* request: the Origin header's value (into the head), or NULL */
	size_t origin_len;
};

/*
 * Where the head ends: the offset just past "\r\n\r\n" in BUF[0..LEN), 0 if not there yet,
 * or -1 if the bytes so far already break the line rules (a bare CR or LF).
 */
long px_head_end(const char *buf, size_t len);

/*
 * Checks request head HEAD[0..LEN). Returns 0, or the status to answer (400, 414, 431, 501)
 * with *WHY a static reason. Refused: a malformed request line; a request-target that is not
 * origin-form (or "*" for OPTIONS, authority-form for CONNECT is refused: 501), or holds "#",
 * a control or non-ASCII byte; header names that are empty or not tokens; whitespace before
 * a colon; obs-fold; control bytes (but HTAB) in a value; two Host headers or none on 1.1;
 * Transfer-Encoding with Content-Length, on HTTP/1.0, or other than one final "chunked";
 * duplicate or malformed Content-Length; more than MAX_HEADERS headers; a request line
 * over MAX_LINE bytes (414). Also refused, because a backend would frame, route or judge
 * the request differently from syncgate: a Connection header naming a header syncgate reads
 * (Content-Length, Transfer-Encoding, Host, Authorization, ...: removing it as hop-by-hop
 * would turn a body into a request syncgate never saw); two Authorization headers; a header
 * name with "_" that reads as one of those names (or another hop-by-hop or forwarding
 * header) once "_" is read as "-". The same Connection rule holds for responses (502).
 */
int px_guard_request(const char *head, size_t len, size_t max_line, int max_headers,
                     struct px_head_info *info, const char **why);

/* The same checks for a response head (status line instead of request line). */
int px_guard_response(const char *head, size_t len, int max_headers, struct px_head_info *info,
                      const char **why);

/* Case-insensitive token compare of N bytes at A with the NUL-terminated B. */
int px_token_eq(const char *a, size_t n, const char *b);

#endif
