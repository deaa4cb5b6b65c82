/*
 * proxy/http.c - the HTTP/1.1 relay: one struct px_conn per client connection.
 *
 * A request goes: client bytes -> head found and checked (httpguard) -> llhttp (framing) ->
 * policy (classify + decide) -> refused here, or its head rewritten (hop-by-hop headers,
 * X-Forwarded-*) and its bytes relayed to an upstream connection. Bodies pass through
 * llhttp only to find where the message ends; the bytes forwarded are the client's own.
 * Responses take the mirror path. One request is in flight per connection; pipelined
 * requests wait in the client input buffer, so answers keep their order.
 *
 * Freeing: px_io defers a free requested inside its own callback (io.h), and every callback
 * here returns right after px_conn_close(). A connection that must close once its last
 * answer is flushed is closed from the timer (T_CLOSE), never under a caller's feet.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "policy/jwt.h"
#include "policy/text.h"
#include "proxy/internal.h"
#include "proxy/log.h"
#include "proxy/lookup.h"
#include "proxy/wsframe.h"

enum { T_NONE, T_KEEPALIVE, T_HEADER, T_CLOSE };

static void client_readcb(struct px_io *io, void *arg);
static void client_writecb(struct px_io *io, void *arg);
static void client_eventcb(struct px_io *io, short what, void *arg);
static void up_readcb(struct px_io *io, void *arg);
static void up_writecb(struct px_io *io, void *arg);
static void up_eventcb(struct px_io *io, short what, void *arg);
static void handle_head(struct px_conn *c);
static void relay_request(struct px_conn *c);
static void handle_response(struct px_conn *c);
static void finish_transaction(struct px_conn *c);
static void arm_timer(struct px_conn *c, int kind, uint32_t ms);
static void linger_close(struct px_conn *c);

static void
ms_to_tv(uint32_t ms, struct timeval *tv)
{
	tv->tv_sec = ms / 1000;
	tv->tv_usec = (ms % 1000) * 1000;
}

/* The access line of the current request, once, and its latency in the histogram. */
static void
access_log(struct px_conn *c, int status)
{
	char st[8], dur[24], in[24], out[24];
	uint64_t us;
	int b;

	if (!c->req_line[0])
		return;
	us = px_now_us() - c->req_start_us;
	for (b = 0; b < PX_LATENCY_BUCKETS && (double)us / 1e6 > px_latency_bounds[b]; b++)
		;
	px_count(&c->srv->stats.latency_bucket[b], 1);
	px_count(&c->srv->stats.latency_sum_us, us);
	if (c->cfg->access_log) {
		snprintf(st, sizeof st, "%d", status);
		snprintf(dur, sizeof dur, "%.3f", (double)us / 1000.0);
		snprintf(in, sizeof in, "%llu", (unsigned long long)c->req_body_bytes);
		snprintf(out, sizeof out, "%llu", (unsigned long long)c->resp_bytes);
		px_log_to(c->srv->access, PX_LOG_INFO, "access", "peer", c->peer, "request", c->req_line,
		          "status", st, "body_in", in, "body_out", out, "ms", dur, NULL);
		if (evbuffer_get_length(c->srv->access) >= PIPE_BUF)
			px_log_flush(c->srv->access);
	}
	c->req_line[0] = 0;
}

static const char *
state_to_str(enum px_conn_state s)
{
	switch (s) {
	case PX_C_HEAD: return "head";
	case PX_C_REQUEST: return "request";
	case PX_C_RESPONSE: return "response";
	case PX_C_UPGRADING: return "upgrading";
	case PX_C_WS: return "ws";
	case PX_C_CLOSING: return "closing";
	}
	return "?";
}

/* ---- llhttp callbacks ---- */

static int
on_req_complete(llhttp_t *p)
{
	struct px_conn *c = p->data;
	c->req_msg_complete = 1;
	return HPE_PAUSED;
}

static int
on_req_body(llhttp_t *p, const char *at, size_t len)
{
	struct px_conn *c = p->data;
	(void)at;
	c->req_body_bytes += len;
	if (c->req_body_bytes > c->cfg->limits.body_bytes) {
		c->body_error = 413;
		return -1;
	}
	return 0;
}

/* llhttp 8.1 does not bound chunk extensions: syncgate does (PX_MAX_CHUNK_EXT per chunk). */
static int
on_chunk_ext(llhttp_t *p, const char *at, size_t len)
{
	struct px_conn *c = p->data;
	(void)at;
	c->chunk_ext_bytes += len;
	if (c->chunk_ext_bytes > PX_MAX_CHUNK_EXT) {
		c->body_error = 400;
		return -1;
	}
	return 0;
}

static int
on_chunk_header(llhttp_t *p)
{
	struct px_conn *c = p->data;
	c->chunk_ext_bytes = 0;
	return 0;
}

static int
on_resp_headers_complete(llhttp_t *p)
{
	struct px_conn *c = p->data;
	/* a response to HEAD has no body whatever its headers say (RFC 9112 §6.3) */
	return c->req_method_head ? 1 : 0;
}

static int
on_resp_complete(llhttp_t *p)
{
	struct px_conn *c = p->data;
	c->resp_msg_complete = 1;
	return HPE_PAUSED;
}

/* ---- timers ---- */

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_conn *c = arg;
	(void)fd;
	(void)what;
	if (c->timer_kind == T_CLOSE && c->state == PX_C_CLOSING) {
		if (px_io_pending(c->cio) > 0) {
			/* still flushing: the write callback goes on from there; a client that
			 * never reads is cut off at the keep-alive timeout */
			arm_timer(c, T_NONE, c->cfg->limits.keepalive_idle_ms);
			return;
		}
		linger_close(c);
		return;
	}
	if (c->timer_kind == T_HEADER && evbuffer_get_length(px_io_input(c->cio)) > 0) {
		px_log(PX_LOG_INFO, "request_timeout", "peer", c->peer, "why", "header deadline", NULL);
		px_conn_reply(c, 408, "REQUEST_TIMEOUT", "request head not received in time", 1);
		return;
	}
	px_conn_close(c);
}

static void
arm_timer(struct px_conn *c, int kind, uint32_t ms)
{
	struct timeval tv;
	ms_to_tv(ms, &tv);
	c->timer_kind = kind;
	evtimer_add(c->timer, &tv);
}
/*
 * TCP_NODELAY on the client socket, once it may carry small writes after unacknowledged ones
 * (nginx's tcp_nodelay): a kept-alive connection, a WebSocket, TLS. A connection that carries
 * one request and closes goes without: one setsockopt(2) less for each such client.
 */
static void
client_nodelay(struct px_conn *c)
{
	int one = 1;
	if (c->nodelay || !c->cio)
		return;
	setsockopt(px_io_fd(c->cio), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->nodelay = 1;
}

/* ---- lifecycle ---- */

void
px_conn_accept(struct px_server *srv, evutil_socket_t fd, struct sockaddr *sa, int salen, int tls)
{
	const char *proto = tls ? "https" : "http";
	struct px_conn *c = calloc(1, sizeof *c);

	(void)salen;
	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	c->srv = srv;
	c->cfg = pol_config_ref(srv->cfg);
	snprintf(c->id, sizeof c->id, "w%d-%llu", srv->id, ++srv->next_conn_id);
	if (sa->sa_family == AF_INET6) {
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->peer, sizeof c->peer);
		c->peer_v6 = 1;
	} else {
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof c->peer);
	}
	if (px_main_peer_add(srv->main, c->peer, c->cfg->limits.max_connections_per_client)) {
		static const char busy[] = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
		                           "Content-Length: 86\r\nConnection: close\r\n\r\n"
		                           "{\"errorCode\":\"TOO_MANY_CONNECTIONS\",\"reasons\":[\"max_connections_per_client reached\"]}\n";
		px_log(PX_LOG_WARN, "max_connections_per_client", "peer", c->peer, NULL);
		if (!tls) /* over TLS there is no cheap way to say it: the close alone must do */
			(void)!send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		evutil_closesocket(fd);
		pol_config_unref(c->cfg);
		free(c);
		return;
	}
	c->peer_counted = 1;
	c->fwd_len = (size_t)snprintf(c->fwd, sizeof c->fwd,
	                              "X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n"
	                              "Forwarded: for=%s%s%s;proto=%s\r\n\r\n",
	                              c->peer, proto, c->peer_v6 ? "\"[" : "", c->peer,
	                              c->peer_v6 ? "]\"" : "", proto);
	c->cio = px_io_new(srv->base, fd); /* takes the fd, even on failure */
	c->timer = evtimer_new(srv->base, timer_cb, c);
	c->resp_buf = evbuffer_new();
	c->next = srv->conns;
	if (srv->conns)
		srv->conns->prev = c;
	srv->conns = c;
	srv->nconns++;
	if (!c->cio || !c->timer || !c->resp_buf) {
		px_conn_close(c);
		return;
	}
	if (tls) {
		SSL *ssl = srv->tls_server ? SSL_new(srv->tls_server) : NULL;
		client_nodelay(c); /* records of a handshake and an answer follow each other */
		if (!ssl || px_io_tls_accept(c->cio, ssl, c->cfg->limits.tls_handshake_ms)) {
			if (!ssl)
				px_log(PX_LOG_ERROR, "tls", "why", "cannot create a TLS session", NULL);
			px_conn_close(c);
			return;
		}
	}
	px_io_setcb(c->cio, client_readcb, client_writecb, client_eventcb, c);
	px_io_set_read_max(c->cio, c->cfg->limits.header_bytes + PX_LOW_WATER);
	px_io_set_low_water(c->cio, PX_LOW_WATER);
	px_io_read(c->cio, 1);
	c->state = PX_C_HEAD;
	px_count(&srv->stats.connections_open, 1);
	c->counted = 1;
	arm_timer(c, T_KEEPALIVE, c->cfg->limits.keepalive_idle_ms);
}

static void
free_upstream(struct px_conn *c)
{
	if (c->uio) {
		px_io_free(c->uio);
		c->uio = NULL;
	}
	c->upstream_connected = 0;
	c->upstream_idle = 0;
}


/* The one teardown path: tolerates a half-built connection. */
void
px_conn_close(struct px_conn *c)
{
	struct px_server *srv = c->srv;

	if (c->ws) {
		px_ws_free(c->ws);
		c->ws = NULL;
	}
	if (c->uio && c->upstream_idle) {
		/* a clean keep-alive upstream outlives its client in the pool */
		px_upstream_put(srv, c->uio);
		c->uio = NULL;
	}
	free_upstream(c);
	if (c->resp_buf) {
		evbuffer_free(c->resp_buf);
		c->resp_buf = NULL;
	}
	if (c->cio) {
		px_io_free(c->cio);
		c->cio = NULL;
	}
	if (c->timer) {
		event_free(c->timer);
		c->timer = NULL;
	}
	if (c->req_buf) {
		evbuffer_free(c->req_buf);
		c->req_buf = NULL;
	}
	free(c->user);
	c->user = NULL;
	pol_config_unref(c->cfg);
	c->cfg = NULL;
	if (c->counted)
		px_count(&srv->stats.connections_open, (unsigned long long)-1);
	if (c->peer_counted)
		px_main_peer_remove(srv->main, c->peer);
	if (c->prev)
		c->prev->next = c->next;
	else
		srv->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	srv->nconns--;
	free(c);
	px_server_conn_gone(srv);
}

/*
 * The lingering close (nginx's lingering_close): once the last answer is written, stop
 * writing (FIN) but keep reading and discarding for up to PX_LINGER_MS / PX_LINGER_BYTES.
 * Closing while the client still sends would make the kernel answer with RST, and a client
 * that gets RST may lose the answer we just wrote (a 413 during an upload, a close frame).
 */
static void
linger_readcb(struct px_io *io, void *arg)
{
	struct px_conn *c = arg;
	struct evbuffer *in = px_io_input(io);
	c->linger_bytes += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
	if (c->linger_bytes > PX_LINGER_BYTES)
		px_conn_close(c);
}

static void
linger_eventcb(struct px_io *io, short what, void *arg)
{
	(void)io;
	(void)what;
	px_conn_close(arg); /* EOF: the client is done too */
}

static void
linger_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	px_conn_close(arg);
}

static void
linger_close(struct px_conn *c)
{
	struct timeval tv = {PX_LINGER_MS / 1000, (PX_LINGER_MS % 1000) * 1000};
	struct evbuffer *in = px_io_input(c->cio);

	if (c->lingering || c->srv->draining) {
		px_conn_close(c);
		return;
	}
	if (c->uio && c->upstream_idle) {
		px_upstream_put(c->srv, c->uio); /* clean and idle: the next client's */
		c->uio = NULL;
		c->upstream_idle = 0;
	}
	if (!c->ws && c->req_done && evbuffer_get_length(in) == 0 &&
	    px_io_drained(c->cio)) {
		/* a whole request was read and nothing followed it: the client has nothing more
		 * to send (nginx lingers only then too), so no RST can come of closing now */
		px_conn_close(c);
		return;
	}
	c->lingering = 1;
	free_upstream(c);
	px_io_shutdown(c->cio);
	evbuffer_drain(in, evbuffer_get_length(in));
	px_io_setcb(c->cio, linger_readcb, NULL, linger_eventcb, c);
	px_io_set_timeout(c->cio, 0);
	px_io_set_read_max(c->cio, 65536);
	px_io_read(c->cio, 1);
	evtimer_del(c->timer);
	evtimer_assign(c->timer, c->srv->base, linger_timeout, c);
	evtimer_add(c->timer, &tv);
}

void
px_conn_close_when_flushed(struct px_conn *c)
{
	c->state = PX_C_CLOSING;
	px_io_read(c->cio, 0);
	px_io_set_low_water(c->cio, 0); /* the write callback closes it once empty */
	evtimer_del(c->timer);
	evtimer_assign(c->timer, c->srv->base, timer_cb, c); /* the WebSocket relay reuses it */
	arm_timer(c, T_CLOSE, 0);
}

static const char *
status_text(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 417: return "Expectation Failed";
	case 431: return "Request Header Fields Too Large";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	}
	return "Error";
}

void
px_conn_reply(struct px_conn *c, int status, const char *error_code, const char *reason,
              int close)
{
	struct evbuffer *out = px_io_output(c->cio);
	char body[1024], esc[768];

	evbuffer_add_buffer(out, c->resp_buf); /* an interim response staged before this one */
	px_json_escape(esc, sizeof esc, reason, strlen(reason));
	int n = snprintf(body, sizeof body, "{\"errorCode\":\"%s\",\"reasons\":[\"%s\"]}\n",
	                 error_code, esc);
	if (n < 0 || (size_t)n >= sizeof body)
		n = (int)strlen(body);
	if (c->srv->draining)
		close = 1;
	evbuffer_add_printf(out,
	                    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
	                    "Cache-Control: no-store\r\n%s\r\n",
	                    status, status_text(status), n, close ? "Connection: close\r\n" : "");
	evbuffer_add(out, body, (size_t)n);
	px_io_flush(c->cio);
	access_log(c, status);
	if (status == 400 || status == 408 || status == 413 || status == 414 || status == 417 ||
	    status == 431 || status == 501)
		px_count(&c->srv->stats.http_bad, 1);
	if (close) {
		free_upstream(c);
		px_conn_close_when_flushed(c);
	}
}

/* ---- request head ---- */

/* The field names a head's Connection header(s) list (RFC 9110 §7.6.1), collected once. */
#define MAX_CONN_TOKENS 32 /* a named cap: a head listing more is refused */
struct conn_tokens {
	int n;
	int overflow;
	struct {
		const char *p;
		size_t n;
	} t[MAX_CONN_TOKENS];
};

static void
connection_tokens(const char *head, size_t len, struct conn_tokens *ct)
{
	const char *p = memchr(head, '\n', len), *end = head + len;

	ct->n = 0;
	ct->overflow = 0;
	while (p && ++p < end - 2) {
		const char *eol = memchr(p, '\r', (size_t)(end - p));
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (colon && px_token_eq(p, (size_t)(colon - p), "connection")) {
			const char *v = colon + 1;
			while (v < eol) {
				const char *s, *e;
				while (v < eol && (*v == ' ' || *v == '\t' || *v == ','))
					v++;
				s = v;
				while (v < eol && *v != ',')
					v++;
				e = v;
				while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
					e--;
				if (e == s)
					continue;
				if (ct->n == MAX_CONN_TOKENS) {
					ct->overflow = 1;
					return;
				}
				ct->t[ct->n].p = s;
				ct->t[ct->n].n = (size_t)(e - s);
				ct->n++;
			}
		}
		p = memchr(eol, '\n', (size_t)(end - eol));
	}
}

/* 1 if NAME is listed in the Connection header(s) CT was collected from. */
static int
named_by_connection(const struct conn_tokens *ct, const char *name, size_t n)
{
	int i;
	for (i = 0; i < ct->n; i++)
		if (ct->t[i].n == n && strncasecmp(ct->t[i].p, name, n) == 0)
			return 1;
	return 0;
}

/*
 * Header names a proxy never forwards (RFC 9110 §7.6.1), plus the ones syncgate answers or
 * rewrites itself. REQUEST: Expect (answered here) and X-Forwarded-Proto (replaced) too;
 * WS: Sec-WebSocket-Extensions (the offer is removed so every frame stays inspectable).
 * Switching on the length first keeps this off the profile.
 */
static int
drop_header(const char *name, size_t n, int request, int ws, int upgrade)
{
	switch (n) {
	case 2:
		return px_token_eq(name, n, "te");
	case 6:
		return request && px_token_eq(name, n, "expect");
	case 7:
		return !upgrade && px_token_eq(name, n, "upgrade");
	case 10:
		return px_token_eq(name, n, "connection") || px_token_eq(name, n, "keep-alive");
	case 16:
		return px_token_eq(name, n, "proxy-connection");
	case 17:
		return request && px_token_eq(name, n, "x-forwarded-proto");
	case 24:
		return ws && px_token_eq(name, n, "sec-websocket-extensions");
	}
	return 0;
}

/* Request header lines copy_fields() leaves out for write_upstream_head() to write again in
 * canonical form, or (RW_UNDERSCORE) at all. */
#define RW_TE 0x1         /* Transfer-Encoding: sent as exactly "chunked" */
#define RW_CL 0x2         /* Content-Length with leading zeros: sent as plain digits */
#define RW_UNDERSCORE 0x4 /* names with "_" (underscore_headers = drop) */

static int
rewritten_header(const char *name, size_t n, unsigned rw)
{
	return ((rw & RW_TE) && px_token_eq(name, n, "transfer-encoding")) ||
	       ((rw & RW_CL) && px_token_eq(name, n, "content-length")) ||
	       ((rw & RW_UNDERSCORE) && memchr(name, '_', n));
}

/*
 * Copies the header lines of HEAD (after its first line) to OUT, leaving out the dropped ones
 * and those RW names, in as few copies as there are runs of kept lines.
 */
static void
copy_fields(const char *head, size_t len, const struct conn_tokens *ct, int request, int ws,
            int upgrade, unsigned rw, struct evbuffer *out)
{
	const char *p = memchr(head, '\n', len) + 1, *end = head + len - 2, *run = p;

	while (p < end) {
		const char *eol = memchr(p, '\r', (size_t)(end - p) + 1);
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		size_t nl = (size_t)(colon - p);
		if (drop_header(p, nl, request, ws, upgrade) ||
		    (!upgrade && named_by_connection(ct, p, nl)) || (rw && rewritten_header(p, nl, rw))) {
			if (p > run)
				evbuffer_add(out, run, (size_t)(p - run));
			run = eol + 2;
		}
		p = eol + 2;
	}
	if (end > run)
		evbuffer_add(out, run, (size_t)(end - run));
}

/* Finds header NAME's value in HEAD; returns its length and sets *V, or -1. */
static long
find_header(const char *head, size_t len, const char *name, const char **v)
{
	const char *p = memchr(head, '\n', len), *end = head + len;
	while (p && ++p < end - 2) {
		const char *eol = memchr(p, '\r', (size_t)(end - p));
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (colon && px_token_eq(p, (size_t)(colon - p), name)) {
			const char *s = colon + 1, *e = eol;
			while (s < e && (*s == ' ' || *s == '\t'))
				s++;
			while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			*v = s;
			return e - s;
		}
		p = memchr(eol, '\n', (size_t)(end - eol));
	}
	return -1;
}

/*
 * Copies the head to OUT with hop-by-hop headers removed and forwarding headers added.
 * Returns -1 (nothing written) for a head whose Connection header lists too many names.
 */
static int
write_upstream_head(struct px_conn *c, const char *head, size_t len, struct evbuffer *out)
{
	const char *p = memchr(head, '\n', len) + 1;
	int ws = c->state == PX_C_UPGRADING;
	struct conn_tokens ct;
	unsigned rw = 0;

	connection_tokens(head, len, &ct);
	if (ct.overflow)
		return -1;
	if (c->req.chunked)
		rw |= RW_TE;
	if (c->req.cl_rewrite)
		rw |= RW_CL;
	if (c->req.underscores && c->cfg->underscore_headers == POL_UNDERSCORE_DROP)
		rw |= RW_UNDERSCORE;
	evbuffer_add(out, head, (size_t)(p - head)); /* request line, byte for byte */
	copy_fields(head, len, &ct, 1, ws, 0, rw, out); /* Upgrade is re-added below for ws */
	/* the framing the backend gets is the one syncgate read, spelt as no backend can read
	 * otherwise (a case-sensitive "chunked" compare, an octal-minded length parser) */
	if (rw & RW_TE)
		evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
	if (rw & RW_CL)
		evbuffer_add_printf(out, "Content-Length: %llu\r\n",
		                    (unsigned long long)c->req.content_length);
	if (ws)
		evbuffer_add(out, "Connection: Upgrade\r\nUpgrade: websocket\r\n", 41);
	evbuffer_add(out, c->fwd, c->fwd_len);
	return 0;
}

static void
log_decision(struct px_conn *c, const struct pol_call *call, const struct pol_decision *d,
             const char *target, size_t tlen)
{
	char status[8], app[POL_APPID_MAX + 1], path[512];
	size_t al = call->app_len < POL_APPID_MAX ? call->app_len : POL_APPID_MAX;
	size_t pl = tlen < sizeof path - 1 ? tlen : sizeof path - 1;

	snprintf(status, sizeof status, "%d", d->status);
	memcpy(app, call->app ? call->app : "", call->app ? al : 0);
	app[call->app ? al : 0] = 0;
	memcpy(path, target, pl);
	path[pl] = 0;
	px_log(PX_LOG_INFO, px_verdict_to_str(px_verdict_of(d)), "transport", "http",
	       "socket", c->id, "peer", c->peer, "app", app, "op", pol_op_to_str(call->op), "path", path,
	       "status", status, "errorCode", d->error_code ? d->error_code : "", "rule",
	       d->rule ? d->rule : "", "mode", d->would_deny ? "report" : "enforce", NULL);
}

/*
 * How many parameters of the query of TARGET[0..TLEN) are named NAME (lower case) when their
 * names are read the way a lenient backend reads them: split at "&" or ";", percent-decoded,
 * "+" as a space, case ignored. *V / *VL: the value of the last one as written (not decoded).
 */
static int
query_param_count(const char *target, size_t tlen, const char *name, const char **v, size_t *vl)
{
	const char *q = memchr(target, '?', tlen), *end = target + tlen;
	size_t nl = strlen(name);
	int count = 0;

	while (q && q < end) {
		const char *p = q + 1, *amp = p;
		while (amp < end && *amp != '&' && *amp != ';') /* ";" too: CGI, older Pythons */
			amp++;
		if (amp == end)
			amp = NULL;
		const char *e = amp ? amp : end, *eq = memchr(p, '=', (size_t)(e - p));
		const char *ne = eq ? eq : e;
		size_t k = 0;
		int match = 1;

		while (p < ne && match) {
			int c = (unsigned char)*p++, hi, lo;
			if (c == '%' && ne - p >= 2 && (hi = pol_hexval((unsigned char)p[0])) >= 0 &&
			    (lo = pol_hexval((unsigned char)p[1])) >= 0) {
				c = hi << 4 | lo;
				p += 2;
			} else if (c == '+') {
				c = ' ';
			}
			if (c >= 'A' && c <= 'Z')
				c += 'a' - 'A';
			match = k < nl && c == (unsigned char)name[k++];
		}
		if (match && k == nl) {
			count++;
			*v = eq ? eq + 1 : e;
			*vl = (size_t)(e - *v);
		}
		q = amp;
	}
	return count;
}

/*
 * U3 with identity verify or require: the signature query parameter must be the HMAC of the
 * user id (protocol.md 3.4), and the only parameter any backend could read as "signature"
 * (a second one, "Signature" or "%73ignature", might be the one the backend reads). Returns
 * 1 if the request may go on; 0 when it was answered 401.
 */
static int
check_signature(struct px_conn *c, const struct pol_app *app, const struct pol_call *call,
                const char *target, size_t tlen)
{
	const char *sig = NULL;
	size_t sl = 0;
	int n = query_param_count(target, tlen, "signature", &sig, &sl);
	int ok = n == 1 && pol_signature_ok(app->secret_key, call->uid, call->uid_len, sig, sl);

	px_log(ok ? PX_LOG_INFO : PX_LOG_WARN, "identity", "transport", "http", "app", app->id,
	       "peer", c->peer, "result", ok ? "valid" : "invalid", "why",
	       ok ? "" : n > 1 ? "more than one signature parameter" : n ? "signature does not match the user id" : "no signature", "mode",
	       pol_identity_to_str(app->identity), NULL);
	if (ok || app->identity != POL_IDENTITY_REQUIRE)
		return 1;
	px_conn_reply(c, 401, "INVALID_SIGNATURE",
	              n > 1 ? "syncgate: more than one signature parameter"
	                    : "syncgate: this app requires a valid identity-verification signature", 0);
	return 0;
}

/*
 * The realtime socket of an approved upgrade (CALL is POL_OP_REALTIME): its app and user id
 * are kept for the relay, which polices every frame. Returns 0, or -1 on ENOMEM.
 */
static int
keep_realtime_ids(struct px_conn *c, const struct pol_call *call)
{
	free(c->user);
	c->user = malloc(call->uid_len + 1);
	if (!c->user)
		return -1;
	memcpy(c->user, call->uid, call->uid_len);
	c->user[call->uid_len] = 0;
	memcpy(c->app, call->app, call->app_len); /* pol_appid_valid(): at most POL_APPID_MAX */
	c->app[call->app_len] = 0;
	return 0;
}

/*
 * Classifies and decides the request whose checked head is HEAD[0..LEN). Returns 1 if it may
 * be forwarded; otherwise it has been answered and 0 is returned.
 */
static int
police_request(struct px_conn *c, const char *head, size_t len)
{
	struct px_server *srv = c->srv;
	struct pol_call call;
	struct pol_decision d;
	const char *why, *authz = NULL, *sp1 = memchr(head, ' ', len);
	const char *target = sp1 + 1, *sp2 = memchr(target, ' ', len - (size_t)(target - head));
	size_t mlen = (size_t)(sp1 - head), tlen = (size_t)(sp2 - target);
	long al = find_header(head, len, "authorization", &authz);
	const struct pol_app *app;
	struct pol_ctx ctx;
	enum pol_cred cred = al > 0 ? POL_CRED_BROWSER : POL_CRED_NONE;
	const char *ov;
	size_t ovl;

	c->req_method_head = px_token_eq(head, mlen, "HEAD");
	if (target[0] == '*')
		return 1; /* OPTIONS * */
	if (pol_classify_http(srv->classifier, head, mlen, target, tlen, cred, &call, &why)) {
		px_log(PX_LOG_INFO, "bad_request", "peer", c->peer, "why", why, NULL);
		px_conn_reply(c, 400, "INVALID_REQUEST", why, 1);
		return 0;
	}
	app = pol_config_app(c->cfg, call.app ? call.app : "", call.app ? call.app_len : 0);
	if (al > 0) {
		cred = pol_credential_class(app, authz, (size_t)al, (int64_t)time(NULL),
		                            c->cfg->limits.jwt_clock_skew_s);
		if (cred == POL_CRED_SERVER)
			pol_classify_http(srv->classifier, head, mlen, target, tlen, cred, &call, &why);
	}
	if (call.api && (c->req.method_override ||
	                 query_param_count(target, tlen, "_method", &ov, &ovl))) {
		/* a backend honouring it would carry out another method than the one decided */
		px_log(PX_LOG_INFO, "bad_request", "peer", c->peer, "why", "method override", NULL);
		px_conn_reply(c, 400, "INVALID_REQUEST",
		              "syncgate: method override (X-HTTP-Method-Override, _method) is not "
		              "accepted on API paths", 1);
		return 0;
	}
	if (c->req.upgrade_ws && call.api && call.op != POL_OP_REALTIME) {
		/* only the realtime socket is an API WebSocket: any other would be a blind tunnel */
		px_log(PX_LOG_INFO, "bad_request", "peer", c->peer, "why", "upgrade on an API path", NULL);
		px_conn_reply(c, 400, "INVALID_REQUEST",
		              "syncgate: WebSocket upgrade on an API path that is not the realtime socket "
		              "(/v1/{appId}/realtime/{userId})", 1);
		return 0;
	}
	ctx.app = app;
	ctx.me = NULL;
	ctx.me_len = 0;
	ctx.authenticated = 1;
	pol_decide(&ctx, &call, NULL, &d);
	if (d.verdict == POL_NEED_FACT) {
		/* HTTP bodies are not inspected, so no fact can make such a call pass: a fact that
		 * would only choose between refusals is treated as unknown (protocol.md 7.5). */
		struct pol_facts f = {POL_FV_ERROR, POL_FV_ERROR, POL_FV_ERROR};
		pol_decide(&ctx, &call, &f, &d);
	}
	if (d.would_deny)
		log_decision(c, &call, &d, target, tlen);
	if (d.verdict == POL_ALLOW && call.op == POL_OP_SIGNATURE && app->identity != POL_IDENTITY_OFF &&
	    !check_signature(c, app, &call, target, tlen))
		return 0;
	if (d.verdict == POL_ALLOW && c->req.upgrade_ws && call.op == POL_OP_REALTIME &&
	    keep_realtime_ids(c, &call)) {
		px_conn_reply(c, 503, "OUT_OF_MEMORY", "syncgate: out of memory", 1);
		return 0;
	}
	if (d.verdict == POL_ALLOW) {
		px_server_count_decision(srv, app->id[0] ? app->id : "*", call.op, px_verdict_of(&d));
		if (call.op == POL_OP_REST_SERVER && call.method != POL_M_GET && app->id[0]) {
			/* a server-side change passing through: drop what syncgate cached about it */
			if (call.cid)
				px_lookup_forget(srv, app->id, PX_LOOKUP_CONVERSATION, call.cid, call.cid_len);
			else if (call.uid)
				px_lookup_forget(srv, app->id, PX_LOOKUP_USER, call.uid, call.uid_len);
		}
		return 1;
	}
	if (px_verdict_of(&d) == PX_V_REFUSE)
		px_count(&srv->stats.http_refused, 1);
	px_server_count_decision(srv, app->id[0] ? app->id : "*", call.op, px_verdict_of(&d));
	log_decision(c, &call, &d, target, tlen);
	px_conn_reply(c, d.status, d.error_code, d.reason,
	              c->req.has_cl || c->req.chunked || c->req.conn_close);
	return 0;
}

static int
check_ws_upgrade(struct px_conn *c, const char *head, size_t len)
{
	const char *v;
	long n;

	if (!px_token_eq(head, 3, "GET") || head[3] != ' ')
		return 0;
	n = find_header(head, len, "sec-websocket-version", &v);
	if (n != 2 || memcmp(v, "13", 2))
		return 0;
	n = find_header(head, len, "sec-websocket-key", &v);
	if (n < 0 || !px_ws_key_valid(v, (size_t)n))
		return 0;
	memcpy(c->ws_key, v, (size_t)n);
	c->ws_key[n] = 0;
	return 1;
}

static void
reset_request(struct px_conn *c)
{
	memset(&c->req, 0, sizeof c->req);
	c->req_done = c->req_sent = c->req_msg_complete = 0;
	c->req_body_bytes = 0;
	c->chunk_ext_bytes = 0;
	c->body_error = 0;
	c->streaming = 0;
	c->resp_started = c->resp_done = c->resp_eof_body = c->resp_msg_complete = 0;
	c->resp_status = 0;
	c->upstream_reusable = 0;
	c->resp_bytes = 0;
	c->upstream_reused = 0;
	free(c->user);
	c->user = NULL;
}

/*
 * Handles the request head at the front of the client's input. Returns 1 when it was refused
 * and answered with the connection still usable (the next pipelined head may follow), else 0:
 * forwarded, waiting for more bytes, or closing.
 */
static int
handle_one_head(struct px_conn *c)
{
	struct evbuffer *in = px_io_input(c->cio);
	const struct pol_limits *lim = &c->cfg->limits;
	size_t n = evbuffer_get_length(in), look;
	const char *why;
	char *p;
	long end;
	int st;
	llhttp_errno_t e;

	if (n == 0)
		return 0;
	px_server_refresh(c->srv);
	if (c->cfg != c->srv->cfg) {
		pol_config_unref(c->cfg);
		c->cfg = pol_config_ref(c->srv->cfg);
		lim = &c->cfg->limits;
	}
	if (c->timer_kind == T_KEEPALIVE) {
		/* first byte of a new request: the absolute header deadline starts (slowloris) */
		evtimer_del(c->timer);
		arm_timer(c, T_HEADER, lim->header_timeout_ms);
	}
	look = n < lim->header_bytes ? n : lim->header_bytes;
	p = (char *)evbuffer_pullup(in, (ev_ssize_t)look);
	end = px_head_end(p, look);
	if (end < 0) {
		px_conn_reply(c, 400, "INVALID_REQUEST", "bare CR or LF, or NUL, in the request head", 1);
		return 0;
	}
	if (end == 0) {
		if (!memchr(p, '\n', look) && look > lim->request_line_bytes + 1)
			px_conn_reply(c, 414, "URI_TOO_LONG", "request line too long", 1);
		else if (look >= lim->header_bytes)
			px_conn_reply(c, 431, "HEADERS_TOO_LARGE", "request head too large", 1);
		return 0;
	}
	st = px_guard_request(p, (size_t)end, lim->request_line_bytes, (int)lim->header_count,
	                      &c->req, &why);
	if (!st && c->req.underscores && c->cfg->underscore_headers == POL_UNDERSCORE_REJECT) {
		st = 400;
		why = "header name with '_' (underscore_headers = reject)";
	}
	if (st) {
		px_log(PX_LOG_INFO, "bad_request", "peer", c->peer, "why", why, NULL);
		px_conn_reply(c, st, st == 431 ? "HEADERS_TOO_LARGE" : st == 414 ? "URI_TOO_LONG" :
		              "INVALID_REQUEST", why, 1);
		return 0;
	}
	{
		/* the access line: method and path, never the query */
		const char *sp = memchr(p, ' ', (size_t)end), *t = sp + 1;
		size_t tl = strcspn(t, " ?");
		snprintf(c->req_line, sizeof c->req_line, "%.*s %.*s", (int)(sp - p), p,
		         (int)(tl > 256 ? 256 : tl), t);
		c->req_start_us = px_now_us();
	}
	/* llhttp, strict and with no lenient flag, must agree that this is one valid head */
	llhttp_settings_init(&c->req_settings);
	c->req_settings.on_message_complete = on_req_complete;
	c->req_settings.on_body = on_req_body;
	c->req_settings.on_chunk_extension_name = on_chunk_ext;
	c->req_settings.on_chunk_extension_value = on_chunk_ext;
	c->req_settings.on_chunk_header = on_chunk_header;
	llhttp_init(&c->req_parser, HTTP_REQUEST, &c->req_settings);
	c->req_parser.data = c;
	c->req_msg_complete = 0;
	e = llhttp_execute(&c->req_parser, p, (size_t)end);
	if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
		px_log(PX_LOG_INFO, "bad_request", "peer", c->peer, "why",
		       llhttp_get_error_reason(&c->req_parser), NULL);
		px_conn_reply(c, 400, "INVALID_REQUEST", "malformed request head", 1);
		return 0;
	}
	if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE)
		llhttp_resume(&c->req_parser);
	if (c->req.has_cl && c->req.content_length > lim->body_bytes) {
		px_conn_reply(c, 413, "BODY_TOO_LARGE", "request body over the configured limit", 1);
		return 0;
	}
	px_count(&c->srv->stats.http_requests, 1);
	if (!police_request(c, p, (size_t)end)) {
		if (c->state == PX_C_CLOSING)
			return 0;
		/* refused with no body: the connection stays usable */
		evbuffer_drain(in, (size_t)end);
		evtimer_del(c->timer);
		arm_timer(c, T_KEEPALIVE, lim->keepalive_idle_ms);
		return 1;
	}
	c->state = PX_C_REQUEST;
	if (c->req.upgrade_ws) {
		if (!check_ws_upgrade(c, p, (size_t)end)) {
			px_conn_reply(c, 400, "INVALID_REQUEST", "bad WebSocket upgrade request", 1);
			return 0;
		}
		c->state = PX_C_UPGRADING; /* police_request() kept the realtime socket's ids */
	}
	evtimer_del(c->timer);
	c->timer_kind = T_NONE;
	if (!c->req_buf)
		c->req_buf = evbuffer_new();
	if (!c->req_buf) {
		px_conn_close(c);
		return 0;
	}
	if (write_upstream_head(c, p, (size_t)end, c->req_buf)) {
		px_conn_reply(c, 400, "INVALID_REQUEST", "Connection header lists too many names", 1);
		return 0;
	}
	if (c->req.expect_continue && !c->req_msg_complete)
		evbuffer_add(c->resp_buf, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	px_io_send(c->cio, c->resp_buf);
	evbuffer_drain(in, (size_t)end);
	c->req_done = c->req_msg_complete;
	if (c->state == PX_C_UPGRADING) {
		/* hold every byte after the upgrade request until the backend's 101 */
		c->req_done = 1;
		px_io_read(c->cio, 0);
	} else if (!c->req_done) {
		px_io_set_timeout(c->cio, lim->body_idle_ms); /* a body is still to come */
	}
	relay_request(c);
	return 0;
}

/*
 * The client does not read its answers: its input waits unread (reading off) until the
 * output drains to PX_LOW_WATER (client_writecb), so that syncgate's own answers to a flood
 * of pipelined requests are bounded like relayed bytes. A client that reads nothing for
 * keepalive_idle is closed.
 */
static void
pause_for_output(struct px_conn *c)
{
	c->out_paused = 1;
	px_io_read(c->cio, 0);
	evtimer_del(c->timer);
	arm_timer(c, T_KEEPALIVE, c->cfg->limits.keepalive_idle_ms);
}

/* Handles the request heads waiting in the client's input, one after the other while they
 * are refused, as long as the client reads the answers. */
static void
handle_head(struct px_conn *c)
{
	while (handle_one_head(c)) {
		if (px_io_pending(c->cio) > PX_HIGH_WATER) {
			pause_for_output(c);
			return;
		}
	}
}

/* ---- request body and hand-off to the upstream ---- */

static void
connect_upstream(struct px_conn *c)
{
	if (c->uio && c->upstream_idle) {
		/* the connection this client used last time: no pool round trip */
		c->upstream_idle = 0;
		c->upstream_reused = 1;
		c->upstream_connected = 1;
		px_io_set_timeout(c->uio, c->cfg->limits.upstream_response_ms);
		return;
	}
	c->uio = px_upstream_get(c->srv, &c->upstream_reused);
	if (!c->uio) {
		px_count(&c->srv->stats.upstream_errors, 1);
		px_conn_reply(c, 502, "BAD_GATEWAY", "cannot reach the backend", 1);
		return;
	}
	px_io_setcb(c->uio, up_readcb, up_writecb, up_eventcb, c);
	px_io_set_low_water(c->uio, PX_LOW_WATER);
	px_io_set_read_max(c->uio, c->cfg->limits.response_header_bytes + PX_HIGH_WATER);
	c->upstream_connected = c->upstream_reused;
	px_io_set_timeout(c->uio, c->cfg->limits.upstream_response_ms); /* connect: px_io_connect's */
	px_io_read(c->uio, 1);
}

static void
flush_request(struct px_conn *c)
{
	struct evbuffer *uout;

	if (!c->upstream_connected)
		return;
	uout = px_io_output(c->uio);
	px_io_send(c->uio, c->req_buf);
	if (c->req_done && !c->req_sent) {
		c->req_sent = 1;
		if (c->state == PX_C_REQUEST)
			c->state = PX_C_RESPONSE;
		px_io_set_timeout(c->cio, 0);
	}
	/* backpressure: the client waits while the upstream is slow to take the body */
	if (evbuffer_get_length(uout) > PX_HIGH_WATER)
		px_io_read(c->cio, 0);
}

static void
relay_request(struct px_conn *c)
{
	struct evbuffer *in = px_io_input(c->cio);

	while (!c->req_done && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		llhttp_errno_t e;
		size_t used;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		c->req_msg_complete = 0;
		e = llhttp_execute(&c->req_parser, v.iov_base, v.iov_len);
		if (e == HPE_PAUSED) {
			used = (size_t)(llhttp_get_error_pos(&c->req_parser) - (const char *)v.iov_base);
			llhttp_resume(&c->req_parser);
			c->req_done = 1;
		} else if (e == HPE_OK) {
			used = v.iov_len;
		} else {
			int too_big = e == HPE_USER && c->body_error == 413;
			px_log(PX_LOG_INFO, "bad_request", "peer", c->peer, "why",
			       too_big ? "body too large" : llhttp_get_error_reason(&c->req_parser), NULL);
			px_conn_reply(c, too_big ? 413 : 400, too_big ? "BODY_TOO_LARGE" : "INVALID_REQUEST",
			              too_big ? "request body over the configured limit"
			                      : "malformed request body framing", 1);
			return;
		}
		evbuffer_remove_buffer(in, c->req_buf, used);
	}
	if (!c->streaming && evbuffer_get_length(c->req_buf) > PX_REQUEST_BUFFER)
		c->streaming = 1;
	if (!c->req_done && !c->streaming)
		return;
	if (!c->uio || c->upstream_idle) {
		connect_upstream(c);
		if (!c->uio)
			return;
	}
	flush_request(c);
}

/* ---- response ---- */

/* The response head for the client: hop-by-hop headers out; Connection as syncgate decides. */
static int
write_client_head(struct px_conn *c, const char *head, size_t len, int upgrade)
{
	struct evbuffer *out = c->resp_buf;
	const char *p = memchr(head, '\n', len) + 1;
	struct conn_tokens ct;

	connection_tokens(head, len, &ct);
	if (ct.overflow)
		return -1;
	evbuffer_add(out, head, (size_t)(p - head));
	copy_fields(head, len, &ct, 0, 0, upgrade, 0, out);
	if (upgrade)
		evbuffer_add(out, "Connection: Upgrade\r\n\r\n", 23);
	else if (c->close_after)
		evbuffer_add(out, "Connection: close\r\n\r\n", 21);
	else
		evbuffer_add(out, "\r\n", 2);
	return 0;
}

static void
upstream_failed(struct px_conn *c, int status, const char *why)
{
	px_count(&c->srv->stats.upstream_errors, 1);
	px_log(PX_LOG_WARN, "upstream_error", "peer", c->peer, "why", why, NULL);
	free_upstream(c);
	if (c->resp_started) {
		px_conn_close(c); /* a truncated response is signalled by closing */
		return;
	}
	px_conn_reply(c, status, status == 504 ? "GATEWAY_TIMEOUT" : "BAD_GATEWAY", why,
	              !c->req_done || c->state == PX_C_UPGRADING || c->req.conn_close);
	if (c->state != PX_C_CLOSING)
		finish_transaction(c);
}

/* A 101 is accepted only with the Sec-WebSocket-Accept for our client's key. */
static int
valid_101(struct px_conn *c, const char *head, size_t len)
{
	const char *v;
	long n;
	char want[29];

	n = find_header(head, len, "sec-websocket-accept", &v);
	px_ws_accept(c->ws_key, strlen(c->ws_key), want);
	if (n != 28 || memcmp(v, want, 28))
		return 0;
	if (find_header(head, len, "sec-websocket-extensions", &v) >= 0)
		return 0; /* we removed the offer: an extension would hide frames from policy */
	n = find_header(head, len, "upgrade", &v);
	return n == 9 && px_token_eq(v, 9, "websocket");
}

static int
response_head(struct px_conn *c)
{
	struct evbuffer *in = px_io_input(c->uio);
	size_t n = evbuffer_get_length(in), cap = c->cfg->limits.response_header_bytes;
	size_t look = n < cap ? n : cap;
	struct px_head_info info;
	const char *why;
	char *p = (char *)evbuffer_pullup(in, (ev_ssize_t)look);
	long end = px_head_end(p, look);
	llhttp_errno_t e;

	if (end < 0 || (end == 0 && look >= cap)) {
		upstream_failed(c, 502, "malformed or oversized response head");
		return -1;
	}
	if (end == 0)
		return 0;
	if (px_guard_response(p, (size_t)end, 1000, &info, &why)) {
		upstream_failed(c, 502, why);
		return -1;
	}
	llhttp_settings_init(&c->resp_settings);
	c->resp_settings.on_headers_complete = on_resp_headers_complete;
	c->resp_settings.on_message_complete = on_resp_complete;
	llhttp_init(&c->resp_parser, HTTP_RESPONSE, &c->resp_settings);
	c->resp_parser.data = c;
	c->resp_msg_complete = 0;
	e = llhttp_execute(&c->resp_parser, p, (size_t)end);
	if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
		upstream_failed(c, 502, "malformed response head");
		return -1;
	}
	if (e != HPE_OK)
		llhttp_resume(&c->resp_parser);
	c->resp_status = c->resp_parser.status_code;
	if (c->resp_status >= 100 && c->resp_status < 200 && c->resp_status != 101) {
		if (write_client_head(c, p, (size_t)end, 0)) { /* interim: the final response follows */
			upstream_failed(c, 502, "Connection header lists too many names");
			return -1;
		}
		px_io_send(c->cio, c->resp_buf);
		evbuffer_drain(in, (size_t)end);
		return 1;
	}
	if (c->resp_status == 101) {
		if (c->state != PX_C_UPGRADING || !valid_101(c, p, (size_t)end)) {
			upstream_failed(c, 502, "backend answered 101 without a valid WebSocket accept");
			return -1;
		}
		if (write_client_head(c, p, (size_t)end, 1)) {
			upstream_failed(c, 502, "Connection header lists too many names");
			return -1;
		}
		px_io_send(c->cio, c->resp_buf);
		evbuffer_drain(in, (size_t)end);
		c->state = PX_C_WS;
		client_nodelay(c);
		access_log(c, 101);
		px_count(&c->srv->stats.ws_opened, 1);
		px_ws_start(c);
		return -1;
	}
	c->resp_eof_body = !c->resp_msg_complete && llhttp_message_needs_eof(&c->resp_parser);
	if (c->state == PX_C_UPGRADING)
		c->close_after = 1; /* never read the held bytes as HTTP */
	c->close_after |= c->req.conn_close || c->resp_eof_body || c->srv->draining;
	c->upstream_reusable = !info.conn_close && !c->resp_eof_body && !c->req.http10 &&
	                       c->state != PX_C_UPGRADING;
	if (write_client_head(c, p, (size_t)end, 0)) {
		upstream_failed(c, 502, "Connection header lists too many names");
		return -1;
	}
	evbuffer_drain(in, (size_t)end);
	c->resp_started = 1;
	c->resp_done = c->resp_msg_complete;
	return 1;
}

static void
handle_response(struct px_conn *c)
{
	struct evbuffer *in, *out = c->resp_buf;

	for (;;) {
		if (!c->uio)
			return;
		in = px_io_input(c->uio);
		if (!c->resp_started) {
			int r = response_head(c);
			if (r <= 0)
				return;
			continue;
		}
		if (c->resp_done || evbuffer_get_length(in) == 0)
			break;
		struct evbuffer_iovec v;
		llhttp_errno_t e;
		size_t used;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		c->resp_msg_complete = 0;
		e = llhttp_execute(&c->resp_parser, v.iov_base, v.iov_len);
		if (e == HPE_PAUSED) {
			used = (size_t)(llhttp_get_error_pos(&c->resp_parser) - (const char *)v.iov_base);
			llhttp_resume(&c->resp_parser);
			c->resp_done = 1;
		} else if (e == HPE_OK) {
			used = v.iov_len;
		} else {
			upstream_failed(c, 502, "malformed response body framing");
			return;
		}
		c->resp_bytes += used;
		evbuffer_remove_buffer(in, out, used);
	}
	px_io_send(c->cio, out);
	if (c->resp_done) {
		if (evbuffer_get_length(in) > 0)
			c->upstream_reusable = 0; /* bytes after the response: never reuse */
		finish_transaction(c);
		return;
	}
	if (px_io_pending(c->cio) > PX_HIGH_WATER)
		px_io_read(c->uio, 0);
}

static void
finish_transaction(struct px_conn *c)
{
	access_log(c, c->resp_status ? c->resp_status : 502);
	if (!c->req_done)
		c->close_after = 1; /* answered early: the rest of the body cannot be skipped safely */
	if (c->uio) {
		/* The backend connection's fate is its own exchange's: a client that closes (its
		 * Connection: close is hop-by-hop, never forwarded) leaves a clean one to the pool. */
		if (c->upstream_reusable && c->req_sent && c->req_done && c->resp_done &&
		    !c->srv->draining) {
			/* keep it for this client's next request (or the pool, when the client goes);
			 * it expires at upstream_idle */
			px_io_set_timeout(c->uio, c->cfg->limits.upstream_idle_ms);
			c->upstream_idle = 1;
		} else {
			free_upstream(c);
		}
	}
	px_io_set_timeout(c->cio, 0);
	if (c->close_after || c->srv->draining || c->state == PX_C_CLOSING) {
		if (px_io_pending(c->cio) == 0)
			linger_close(c);
		else
			px_conn_close_when_flushed(c); /* the write callback closes it once drained */
		return;
	}
	reset_request(c);
	client_nodelay(c); /* kept alive: answers may follow unacknowledged ones */
	c->state = PX_C_HEAD;
	if (c->cfg != c->srv->cfg) {
		pol_config_unref(c->cfg);
		c->cfg = pol_config_ref(c->srv->cfg);
	}
	if (px_io_pending(c->cio) > PX_HIGH_WATER) {
		pause_for_output(c); /* answers pile up unread: the next request waits */
		return;
	}
	evtimer_del(c->timer);
	arm_timer(c, T_KEEPALIVE, c->cfg->limits.keepalive_idle_ms);
	px_io_read(c->cio, 1);
	if (evbuffer_get_length(px_io_input(c->cio)) > 0)
		handle_head(c); /* a pipelined request */
}

/* ---- callbacks ---- */

static void
client_readcb(struct px_io *io, void *arg)
{
	struct px_conn *c = arg;
	(void)io;
	switch (c->state) {
	case PX_C_HEAD:
		handle_head(c);
		break;
	case PX_C_REQUEST:
		relay_request(c);
		break;
	case PX_C_RESPONSE:
	case PX_C_UPGRADING:
	case PX_C_CLOSING:
		break; /* held: the next request waits for this response */
	case PX_C_WS:
		break; /* px_ws replaced this callback */
	}
}

static void
client_writecb(struct px_io *io, void *arg)
{
	struct px_conn *c = arg;
	(void)io;
	if (c->state == PX_C_CLOSING) {
		if (px_io_pending(c->cio) == 0)
			linger_close(c);
		return;
	}
	/* drained below the low watermark: resume the response, or the requests waiting */
	if (c->uio && c->resp_started && !c->resp_done)
		px_io_read(c->uio, 1);
	if (c->out_paused && c->state == PX_C_HEAD) {
		c->out_paused = 0;
		px_io_read(c->cio, 1);
		handle_head(c);
	}
}

/*
 * A client whose TLS handshake failed or timed out. One that spoke plain HTTP to the TLS port
 * gets a plain 400 saying so (nginx's "plain HTTP request was sent to HTTPS port"): it is the
 * only answer such a client can read. Nothing reached the backend either way.
 */
static void
tls_refused(struct px_conn *c)
{
	static const char plain[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
	                            "Content-Length: 87\r\nConnection: close\r\n\r\n"
	                            "{\"errorCode\":\"TLS_REQUIRED\",\"reasons\":[\"a plain HTTP request was sent to a TLS port\"]}\n";

	const char *why = px_io_why(c->cio);

	px_count(&c->srv->stats.tls_handshake_failures, 1);
	/* a connect-and-close (port scans, TCP health checks) is not worth an info line */
	px_log(strncmp(why, "the peer closed", 15) ? PX_LOG_INFO : PX_LOG_DEBUG, "tls_handshake_failed",
	       "peer", c->peer, "why", why, NULL);
	if (px_io_tls_plain_http(c->cio))
		(void)!send(px_io_fd(c->cio), plain, sizeof plain - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
	px_conn_close(c);
}

static void
client_eventcb(struct px_io *io, short what, void *arg)
{
	struct px_conn *c = arg;
	(void)io;
	if (what & PX_IO_TLS) {
		tls_refused(c);
		return;
	}
	if ((what & PX_IO_TIMEOUT) && c->state == PX_C_REQUEST && !c->req_done) {
		px_log(PX_LOG_INFO, "request_timeout", "peer", c->peer, "why", "body idle", NULL);
		px_conn_reply(c, 408, "REQUEST_TIMEOUT", "request body stalled", 1);
		return;
	}
	if ((what & PX_IO_EOF) && c->state == PX_C_RESPONSE && c->req_sent) {
		/* the client half-closed after its request: finish the answer, then close */
		c->close_after = 1;
		px_io_read(c->cio, 0);
		return;
	}
	px_conn_close(c);
}

static void
up_readcb(struct px_io *io, void *arg)
{
	struct px_conn *c = arg;
	(void)io;
	if (c->upstream_idle) {
		free_upstream(c); /* bytes from an idle backend: never reuse that connection */
		return;
	}
	handle_response(c);
}

static void
up_writecb(struct px_io *io, void *arg)
{
	struct px_conn *c = arg;
	(void)io;
	/* the upstream took the body down to the low watermark: read the client again */
	if (c->state == PX_C_REQUEST && !c->req_done)
		px_io_read(c->cio, 1);
}

static void
up_eventcb(struct px_io *io, short what, void *arg)
{
	struct px_conn *c = arg;
	(void)io;

	if (c->upstream_idle) {
		free_upstream(c); /* closed or expired while idle */
		return;
	}
	if (what & PX_IO_CONNECTED) {
		c->upstream_connected = 1;
		flush_request(c);
		return;
	}
	if (what & PX_IO_TLS) {
		/* the detail (verify result, alert) is for the operator's log, not the client */
		px_log(PX_LOG_WARN, "upstream_tls_failed", "peer", c->peer, "why", px_io_why(io), NULL);
		upstream_failed(c, 502, (what & PX_IO_TIMEOUT) ? "backend TLS handshake timed out"
		                                               : "backend TLS handshake failed");
		return;
	}
	if (what & PX_IO_TIMEOUT) {
		upstream_failed(c, c->upstream_connected ? 504 : 502,
		                c->upstream_connected ? "backend response timeout" : "backend connect timeout");
		return;
	}
	if ((what & PX_IO_EOF) && c->resp_started && c->resp_eof_body && !c->resp_done) {
		handle_response(c);
		if (!c->uio || c->resp_done)
			return;
		llhttp_finish(&c->resp_parser);
		c->resp_done = 1;
		c->upstream_reusable = 0;
		finish_transaction(c);
		return;
	}
	upstream_failed(c, 502, (what & PX_IO_EOF) ? "backend closed the connection"
	                                               : "backend connection error");
}

const char *px_conn_state_to_str(enum px_conn_state s);
const char *
px_conn_state_to_str(enum px_conn_state s)
{
	return state_to_str(s);
}
