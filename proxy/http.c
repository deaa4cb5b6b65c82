/*
 * proxy/http.c - the HTTP/1.1 relay: the first handler of every client connection.
 *
 * A request goes: client bytes -> head found and checked (httpguard) -> llhttp (framing) ->
 * classified here, decided by police.c (parked there while a fact is looked up) -> refused
 * (answered here) or its head rewritten (hop-by-hop headers, X-Forwarded-*) and its bytes
 * relayed to an upstream connection. Bodies pass through llhttp only to find where the
 * message ends; the bytes forwarded are the client's own. Responses take the mirror path.
 * One request is in flight per connection; pipelined requests wait in the client input
 * buffer, so answers keep their order. After a valid 101 the connection goes to ws.c (the
 * realtime socket) or tunnel.c (any other WebSocket), and this handler's state is freed.
 *
 * Freeing: px_io defers a free requested inside its own callback (io.h), and every callback
 * here returns right after px_conn_close(). A connection that ends after its answer goes
 * through px_conn_close_when_flushed(), which releases this handler from the loop.
 */
#include "proxy/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>

#include "policy/decide.h"
#include "policy/fields.h"
#include "policy/jwt.h"
#include "policy/route.h"
#include "policy/text.h"
#include "proxy/conn.h"
#include "proxy/httpguard.h"
#include "proxy/log.h"
#include "proxy/police.h"
#include "proxy/shared.h"
#include "proxy/tunnel.h"
#include "proxy/upstream.h"
#include "proxy/ws.h"
#include "proxy/wsframe.h"

/* A request body up to this size is received whole before anything reaches the backend, so
 * that a malformed chunked body is refused with not one byte forwarded (proxy_request_buffering). */
#define PX_REQUEST_BUFFER (64 * 1024)
/* Chunk-extension bytes allowed per chunk (RFC 9112 §7.1.1 sets no bound; llhttp 8.1 none). */
#define PX_MAX_CHUNK_EXT 4096
/* Bytes of a user id a refusal budget keeps (a longer one is not counted: budgets slow a
 * misbehaving page, they are not what keeps the switches). */
#define PX_BUDGET_USER_MAX 512

enum { T_NONE, T_KEEPALIVE, T_HEADER };

/*
 * Exchange states. Invariants:
 *  HEAD      no upstream in use for this client; reading the next request head.
 *  BODY      a sync call's body is being read whole (decide_body at most) before the call
 *            is decided: its head is in head_copy, the body bytes read so far in held; nothing
 *            has gone upstream.
 *  PARKED    a head was read and its decision waits for a fact (police.c): the client is
 *            not read; the head is at the front of its input (or in head_copy).
 *  REQUEST   a request was approved; its bytes go (or are buffered) to the upstream;
 *            the response may already be arriving (early responses).
 *  RESPONSE  the whole request reached the upstream; relaying the response.
 *  UPGRADING an upgrade request was forwarded; client input is held until the backend's 101.
 */
enum px_http_state { PX_H_HEAD, PX_H_BODY, PX_H_PARKED, PX_H_REQUEST, PX_H_RESPONSE, PX_H_UPGRADING };

struct px_http {
	struct px_conn *c;
	enum px_http_state state;
	int timer_kind;
	struct px_police_stream ps;     /* police.c's: this client's calls */

	/* the current request */
	char req_line[300];             /* "METHOD /path" (no query: it may hold a signature) */
	uint64_t req_start_us;
	llhttp_t req_parser;
	llhttp_settings_t req_settings;
	struct px_head_info req;
	size_t head_len;                /* the head's bytes */
	int head_in_input;              /* ... at the front of the input, else in head_copy */
	char *head_copy;                /* the head, while its body is held (BODY) */
	struct evbuffer *held;          /* the body bytes read before the decision (as received) */
	int req_method_head;            /* HEAD: the response has no body */
	int req_done;                   /* the whole request was read from the client */
	int req_sent;                   /* ... and handed to the upstream */
	int req_msg_complete;           /* llhttp saw message complete in the last execute */
	int refused_usable;             /* the last head was answered; the connection goes on */
	unsigned nreq;                  /* requests read on this connection (the request id) */
	char rid[40];                   /* "<socket>-<n>": the request's id in its log lines */
	char req_app[POL_APPID_MAX + 1]; /* the request's app id, for the access line */
	uint64_t up_start_us, up_head_us; /* upstream asked / its response head read */
	uint64_t req_body_bytes;
	size_t chunk_ext_bytes;         /* extension bytes of the current chunk */
	int body_error;                 /* status a body callback failed with */
	struct evbuffer *req_buf;       /* request bytes not yet sent upstream (buffering) */
	int streaming;                  /* request buffer exceeded: body goes straight through */
	int upstream_connected;
	int upstream_reused;
	int upstream_idle;              /* uio is kept between this client's requests, idle */
	char ws_key[32];                /* Sec-WebSocket-Key of an upgrade */
	char app[POL_APPID_MAX + 1];     /* realtime socket: its app id (checked: [A-Za-z0-9_.-]) */
	char *user;                     /* realtime socket: its user id, decoded (owned); NULL for
	                                 * any other request: the relay is then a blind tunnel */
	char *budget_user;              /* a browser change's user for refusal budgets
	                                 * (set_budget_user; PX_BUDGET_USER_MAX bytes, allocated
	                                 * at the first; h->ps.cred_user points here) */
	char client[64];                /* the client's address: the peer's, or from the
	                                 * X-Forwarded-For of a trusted proxy (logs) */
	int peer_trusted;               /* the peer is one of trusted_proxies */
	int client_from_xff;            /* client was taken from X-Forwarded-For */
	char origin[POL_ORIGIN_MAX];    /* the request's Origin, for syncgate's own answers */
	size_t origin_len;              /* 0: none (or not a valid origin) */
	int out_paused;                 /* HEAD: requests wait unread while the client's output
	                                 * is above PX_HIGH_WATER (it does not read its answers) */
	struct pol_route_match route;   /* the request's route (route.route NULL: the default
	                                 * upstream, no rewrite); points into c->cfg */
	char *rw;                       /* the target sent upstream when rewritten (rw_size
	                                 * bytes, allocated at the first rewrite) */
	size_t rw_size;
	long rwlen;                     /* 0: the client's target goes as it came */
	int up_idx;                     /* the request's upstream (index in env->ups) */
	int uio_idx;                    /* the upstream c->uio is a connection to */
	int collect_json;               /* body = json: llhttp's body bytes go to json_body */
	int json_ready;                 /* ... and it holds the whole body: classify reads it */
	struct evbuffer *new_body;      /* on_locked = strip: the body sent instead of the
	                                 * client's (framed by a Content-Length of its own) */
	struct evbuffer *json_body;     /* the body without its framing (chunked: decoded) */

	/* the current response */
	struct evbuffer *resp_buf;      /* bytes for the client, written out by px_io_send() */
	llhttp_t resp_parser;
	llhttp_settings_t resp_settings;
	int resp_started;               /* head forwarded to the client */
	int resp_done;
	int resp_eof_body;              /* body delimited by upstream close */
	int resp_msg_complete;
	int resp_status;
	int upstream_reusable;
	int close_after;                /* close the client once the response is flushed */
	uint64_t resp_bytes;
};

static void client_readcb(struct px_io *io, void *arg);
static void client_writecb(struct px_io *io, void *arg);
static void client_eventcb(struct px_io *io, short what, void *arg);
static void up_readcb(struct px_io *io, void *arg);
static void up_writecb(struct px_io *io, void *arg);
static void up_eventcb(struct px_io *io, short what, void *arg);
static void handle_head(struct px_http *h);
static void relay_request(struct px_http *h);
static int handle_response(struct px_http *h);
static void finish_transaction(struct px_http *h);
static void arm_timer(struct px_http *h, int kind, uint32_t ms);
static void http_timer(struct px_conn *c);

/* The access line of the current request, once, its latency in the histogram and its status
 * in the response counts. BACKEND: the backend answered (else syncgate did). */
static void
access_log(struct px_http *h, int status, int backend)
{
	struct px_conn *c = h->c;
	char st[8], dur[24], in[24], out[24], id[40], up[24];
	uint64_t us;

	if (!h->req_line[0])
		return;
	us = px_now_us() - h->req_start_us;
	px_observe(c->env->ctr->latency_bucket, &c->env->ctr->latency_sum_us, us);
	px_count(&c->env->ctr->responses[backend != 0][status >= 100 && status < 600 ? status / 100 : 0], 1);
	if (c->cfg->access_log) {
		snprintf(st, sizeof st, "%d", status);
		snprintf(dur, sizeof dur, "%.3f", (double)us / 1000.0);
		snprintf(in, sizeof in, "%llu", (unsigned long long)h->req_body_bytes);
		snprintf(out, sizeof out, "%llu", (unsigned long long)h->resp_bytes);
		snprintf(id, sizeof id, "%s", h->rid);
		if (h->up_head_us && h->up_start_us)
			snprintf(up, sizeof up, "%.3f", (double)(h->up_head_us - h->up_start_us) / 1000.0);
		else
			up[0] = 0;
		if (!c->cfg->operator_routes) /* (no route in the file: every request is the default's) */
			px_log_to(c->env->access, PX_LOG_INFO, "access", "id", id, "peer", h->client, "app",
			          h->req_app, "request", h->req_line, "#status", st, "by",
			          backend ? "backend" : "syncgate", "#upstream_ms", up, "#body_in", in,
			          "#body_out", out, "#ms", dur, NULL);
		else
			px_log_to(c->env->access, PX_LOG_INFO, "access", "id", id, "peer", h->client, "app",
			          h->req_app, "request", h->req_line, "route",
			          h->route.route ? h->route.route->name : "", "upstream",
			          px_upstream_name(c->env->ups[h->up_idx]), "#status", st, "by",
			          backend ? "backend" : "syncgate", "#upstream_ms", up, "#body_in", in,
			          "#body_out", out, "#ms", dur, NULL);
		if (evbuffer_get_length(c->env->access) >= PIPE_BUF)
			px_log_flush(c->env->access);
	}
	h->req_line[0] = 0;
}


/* ---- llhttp callbacks ---- */

static int
on_req_complete(llhttp_t *p)
{
	struct px_http *h = p->data;
	h->req_msg_complete = 1;
	return HPE_PAUSED;
}

static int
on_req_body(llhttp_t *p, const char *at, size_t len)
{
	struct px_http *h = p->data;
	h->req_body_bytes += len;
	if (h->req_body_bytes > h->c->cfg->limits.body_bytes) {
		h->body_error = 413;
		return -1;
	}
	if (h->collect_json && evbuffer_add(h->json_body, at, len)) {
		h->body_error = 503; /* out of memory */
		return -1;
	}
	return 0;
}

/* llhttp 8.1 does not bound chunk extensions: syncgate does (PX_MAX_CHUNK_EXT per chunk). */
static int
on_chunk_ext(llhttp_t *p, const char *at, size_t len)
{
	struct px_http *h = p->data;
	(void)at;
	h->chunk_ext_bytes += len;
	if (h->chunk_ext_bytes > PX_MAX_CHUNK_EXT) {
		h->body_error = 400;
		return -1;
	}
	return 0;
}

static int
on_chunk_header(llhttp_t *p)
{
	struct px_http *h = p->data;
	h->chunk_ext_bytes = 0;
	return 0;
}

static int
on_resp_headers_complete(llhttp_t *p)
{
	struct px_http *h = p->data;
	/* a response to HEAD has no body whatever its headers say (RFC 9112 §6.3) */
	return h->req_method_head ? 1 : 0;
}

static int
on_resp_complete(llhttp_t *p)
{
	struct px_http *h = p->data;
	h->resp_msg_complete = 1;
	return HPE_PAUSED;
}

static void reply(struct px_http *h, int status, const char *error_code, const char *reason, int close);

/* ---- timers ---- */

static void
http_timer(struct px_conn *c)
{
	struct px_http *h = c->obj;

	if (h->timer_kind == T_HEADER && evbuffer_get_length(px_io_input(c->cio)) > 0) {
		px_log(PX_LOG_INFO, "request_timeout", "peer", c->peer, "why", "header deadline", NULL);
		reply(h, 408, "REQUEST_TIMEOUT", "request head not received in time", 1);
		return;
	}
	px_conn_close(c);
}

static void
arm_timer(struct px_http *h, int kind, uint32_t ms)
{
	h->timer_kind = kind;
	px_conn_timer(h->c, ms, http_timer);
}

/* ---- lifecycle ---- */

static void
free_upstream(struct px_http *h)
{
	px_conn_drop_upstream(h->c);
	h->upstream_connected = 0;
	h->upstream_idle = 0;
}

/* The connection ends once its output is written (lingering unless the client is quiet). */
static void
end_conn(struct px_http *h)
{
	h->c->quiet = h->req_done;
	px_conn_close_when_flushed(h->c);
}

static void
http_release(struct px_conn *c, void *obj)
{
	struct px_http *h = obj;

	px_police_stream_release(&h->ps);
	if (c->uio && h->upstream_idle) {
		/* a clean keep-alive upstream outlives its client in the pool */
		px_upstream_put(c->env->ups[h->uio_idx], c->uio);
		c->uio = NULL;
	}
	if (h->json_body)
		evbuffer_free(h->json_body);
	if (h->new_body)
		evbuffer_free(h->new_body);
	free(h->rw);
	free(h->budget_user);
	if (h->resp_buf)
		evbuffer_free(h->resp_buf);
	if (h->req_buf)
		evbuffer_free(h->req_buf);
	if (h->held)
		evbuffer_free(h->held);
	free(h->head_copy);
	free(h->user);
	free(h);
}

/* Shutdown: a connection between requests closes now; one with a request in progress
 * finishes it (finish_transaction() closes it then: env->draining). */
static void
http_drain(struct px_conn *c, void *obj)
{
	struct px_http *h = obj;
	if (h->state == PX_H_HEAD && evbuffer_get_length(px_io_input(c->cio)) == 0)
		px_conn_close(c);
}

static const struct px_proto http_proto = {"http", http_release, http_drain};

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

/* Writes a complete syncgate-made response; CLOSE adds Connection: close and ends the
 * connection once it is flushed. */
static void
reply(struct px_http *h, int status, const char *error_code, const char *reason, int close)
{
	struct px_conn *c = h->c;
	struct evbuffer *out = px_io_output(c->cio);
	char body[1024], esc[768];

	evbuffer_add_buffer(out, h->resp_buf); /* an interim response staged before this one */
	px_json_escape(esc, sizeof esc, reason, strlen(reason));
	int n = snprintf(body, sizeof body, "{\"errorCode\":\"%s\",\"reasons\":[\"%s\"]}\n",
	                 error_code, esc);
	if (n < 0 || (size_t)n >= sizeof body)
		n = (int)strlen(body);
	if (c->env->draining)
		close = 1;
	evbuffer_add_printf(out,
	                    "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
	                    "Cache-Control: no-store\r\n",
	                    status, status_text(status), n);
	{
		/* a browser page reads the reason only if the answer names its origin */
		const char *ao;
		size_t al;
		if (pol_cors_origin(c->cfg, h->origin_len ? h->origin : NULL, h->origin_len, &ao, &al))
			evbuffer_add_printf(out, "Access-Control-Allow-Origin: %.*s\r\nVary: Origin\r\n",
			                    (int)al, ao);
	}
	evbuffer_add_printf(out, "%s\r\n", close ? "Connection: close\r\n" : "");
	evbuffer_add(out, body, (size_t)n);
	px_io_flush(c->cio);
	access_log(h, status, 0);
	if (status == 400 || status == 408 || status == 413 || status == 414 || status == 417 ||
	    status == 431 || status == 501)
		px_count(&c->env->ctr->http_bad, 1);
	if (close) {
		free_upstream(h);
		end_conn(h);
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

/*
 * Calls EACH(ARG, item, length) for every item of the comma-separated list values of header
 * NAME in HEAD[0..LEN) (all its lines, in order; items trimmed, empty ones skipped), until
 * EACH returns non-zero. RFC 9110 §5.6.1.
 */
static void
list_items(const char *head, size_t len, const char *name,
           int (*each)(void *arg, const char *s, size_t n), void *arg)
{
	const char *p = memchr(head, '\n', len), *end = head + len;

	while (p && ++p < end - 2) {
		const char *eol = memchr(p, '\r', (size_t)(end - p));
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (colon && px_token_eq(p, (size_t)(colon - p), name)) {
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
				if (e > s && each(arg, s, (size_t)(e - s)))
					return;
			}
		}
		p = memchr(eol, '\n', (size_t)(end - eol));
	}
}

static int
add_conn_token(void *arg, const char *s, size_t n)
{
	struct conn_tokens *ct = arg;
	if (ct->n == MAX_CONN_TOKENS) {
		ct->overflow = 1;
		return 1;
	}
	ct->t[ct->n].p = s;
	ct->t[ct->n].n = n;
	ct->n++;
	return 0;
}

static void
connection_tokens(const char *head, size_t len, struct conn_tokens *ct)
{
	ct->n = 0;
	ct->overflow = 0;
	list_items(head, len, "connection", add_conn_token, ct);
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
#define RW_FORWARDED 0x8  /* X-Forwarded-For, Forwarded, X-Real-IP of a peer not trusted:
                           * replaced by syncgate's, never appended to */
#define RW_HOST 0x10      /* Host: a named upstream's own (its [upstream:NAME] host) */

static int
rewritten_header(const char *name, size_t n, unsigned rw)
{
	return ((rw & RW_TE) && px_token_eq(name, n, "transfer-encoding")) ||
	       ((rw & RW_CL) && px_token_eq(name, n, "content-length")) ||
	       ((rw & RW_FORWARDED) && (px_token_eq(name, n, "x-forwarded-for") ||
	                                px_token_eq(name, n, "forwarded") ||
	                                px_token_eq(name, n, "x-real-ip"))) ||
	       ((rw & RW_UNDERSCORE) && memchr(name, '_', n)) ||
	       ((rw & RW_HOST) && px_token_eq(name, n, "host"));
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
write_upstream_head(struct px_http *h, const char *head, size_t len, struct evbuffer *out)
{
	struct px_conn *c = h->c;
	const char *p = memchr(head, '\n', len) + 1;
	int ws = h->state == PX_H_UPGRADING;
	struct conn_tokens ct;
	unsigned rw = 0;
	const char *host;

	connection_tokens(head, len, &ct);
	if (ct.overflow)
		return -1;
	if (h->req.chunked)
		rw |= RW_TE;
	if (h->req.cl_rewrite)
		rw |= RW_CL;
	if (h->req.underscores && c->cfg->underscore_headers == POL_UNDERSCORE_DROP)
		rw |= RW_UNDERSCORE;
	if (!h->peer_trusted)
		rw |= RW_FORWARDED;
	if ((host = px_upstream_host_header(c->env->ups[h->up_idx])))
		rw |= RW_HOST;
	if (h->new_body) /* a body of syncgate's writing: its own length, no chunking */
		rw |= RW_TE | RW_CL;
	if (h->rwlen > 0) {
		/* the route's rewrite: METHOD SP target SP version (RFC 9112 §3) */
		const char *sp1 = memchr(head, ' ', len), *sp2 = memchr(sp1 + 1, ' ', (size_t)(p - sp1 - 1));
		evbuffer_add(out, head, (size_t)(sp1 + 1 - head));
		evbuffer_add(out, h->rw, (size_t)h->rwlen);
		evbuffer_add(out, sp2, (size_t)(p - sp2));
	} else {
		evbuffer_add(out, head, (size_t)(p - head)); /* request line, byte for byte */
	}
	copy_fields(head, len, &ct, 1, ws, 0, rw, out); /* Upgrade is re-added below for ws */
	if (host)
		evbuffer_add_printf(out, "Host: %s\r\n", host);
	/* the framing the backend gets is the one syncgate read, spelt as no backend can read
	 * otherwise (a case-sensitive "chunked" compare, an octal-minded length parser) */
	if ((rw & RW_TE) && !h->new_body)
		evbuffer_add(out, "Transfer-Encoding: chunked\r\n", 28);
	if (rw & RW_CL)
		evbuffer_add_printf(out, "Content-Length: %llu\r\n",
		                    h->new_body ? (unsigned long long)evbuffer_get_length(h->new_body)
		                                : (unsigned long long)h->req.content_length);
	if (ws)
		evbuffer_add(out, "Connection: Upgrade\r\nUpgrade: websocket\r\n", 41);
	evbuffer_add(out, c->fwd, c->fwd_len);
	return 0;
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
check_signature(struct px_http *h, const struct pol_app *app, const struct pol_call *call,
                const char *target, size_t tlen)
{
	struct px_conn *c = h->c;
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
	reply(h, 401, "INVALID_SIGNATURE",
	      n > 1 ? "syncgate: more than one signature parameter"
	            : "syncgate: this app requires a valid identity-verification signature",
	      h->req.conn_close || ((h->req.has_cl || h->req.chunked) && !h->req_msg_complete));
	return 0;
}

/*
 * The realtime socket of an approved upgrade (CALL is POL_OP_REALTIME): its app and user id
 * are kept for the relay, which polices every frame. Returns 0, or -1 on ENOMEM.
 */
static int
keep_realtime_ids(struct px_http *h, const struct pol_call *call)
{
	free(h->user);
	h->user = malloc(call->uid_len + 1);
	if (!h->user)
		return -1;
	memcpy(h->user, call->uid, call->uid_len);
	h->user[call->uid_len] = 0;
	memcpy(h->app, call->app, call->app_len); /* pol_appid_valid(): at most POL_APPID_MAX */
	h->app[call->app_len] = 0;
	return 0;
}

/* ---- the transport police.c decides for ---- */

/*
 * The request head is checked and parsed by now: classifies it as a call (pol_classify_request:
 * the route table, the credential class read from its Authorization header) and keeps its
 * route, its upstream and the target to send (H->rw). With a body = json route whose body is
 * read (H->json_body), the ids and keys the route takes from it. Returns 0, or -1 with *WHY
 * (answer 400).
 */
static int
classify_head(struct px_http *h, const char *head, size_t len, struct pol_call *call,
              const char **why)
{
	struct px_conn *c = h->c;
	const char *authz = NULL, *sp1 = memchr(head, ' ', len);
	const char *target = sp1 + 1, *sp2 = memchr(target, ' ', len - (size_t)(target - head));
	size_t mlen = (size_t)(sp1 - head), tlen = (size_t)(sp2 - target);
	long al = find_header(head, len, "authorization", &authz);
	const struct pol_route *r;

	if (c->cfg->operator_routes && h->rw_size < tlen + 2 * POL_ROUTE_TEXT) {
		/* a rewrite is the client's target with other fixed parts: it fits in this */
		size_t n = tlen + 2 * POL_ROUTE_TEXT;
		char *nrw = realloc(h->rw, n);
		if (!nrw) {
			*why = "out of memory";
			return -1;
		}
		h->rw = nrw;
		h->rw_size = n;
	}
	if (pol_classify_request(c->env->classifier, c->cfg, head, mlen, target, tlen,
	                         al > 0 ? authz : NULL, al > 0 ? (size_t)al : 0,
	                         al > 0 ? (int64_t)time(NULL) : 0, /* a token's exp and nbf */
	                         call, &h->route, h->rw, h->rw_size, &h->rwlen, why))
		return -1;
	r = h->route.route;
	h->up_idx = r ? r->upstream : 0;
	if (r && r->body_json && h->json_ready) {
		/* every call of the route, a server credential's too: its ids and its app may be
		 * in the body, and the credential is judged for that app */
		size_t bl = evbuffer_get_length(h->json_body), need;
		const char *body = bl ? (const char *)evbuffer_pullup(h->json_body, -1) : "";
		if (!body || pol_classify_body(c->env->classifier, c->cfg, &h->route, call, body, bl,
		                               al > 0 ? authz : NULL, al > 0 ? (size_t)al : 0,
		                               al > 0 ? (int64_t)time(NULL) : 0, why))
			return -1;
		/* ids from the body go in encoded: up to three bytes for each of theirs */
		need = tlen + 2 * POL_ROUTE_TEXT + 4 * 3 * POL_BODY_ID_MAX;
		if (r->has_rewrite && h->rw_size < need) {
			char *nrw = realloc(h->rw, need);
			if (!nrw) {
				*why = "out of memory";
				return -1;
			}
			h->rw = nrw;
			h->rw_size = need;
		}
		if (r->has_rewrite &&
		    (h->rwlen = pol_route_rewrite(&h->route, call, target, tlen, h->rw, h->rw_size)) <= 0) {
			*why = "the rewritten path is too long";
			return -1;
		}
	} else if (h->json_ready) {
		/* a change of an app that locks fields of it (locks_body): its body is its payload */
		size_t bl = evbuffer_get_length(h->json_body);
		const char *body = bl ? (const char *)evbuffer_pullup(h->json_body, -1) : "";
		if (!body || pol_classify_payload(c->env->classifier, call, body, bl, why))
			return -1;
	}
	return 0;
}

static int
http_classify(void *t, const char *text, size_t len, struct pol_call *call)
{
	const char *why;
	return classify_head(t, text, len, call, &why);
}

/* The head stays at the front of the client's input while its call is parked: nothing to
 * copy. */
static char held_in_input;

static void *
http_hold(void *t, void *msg)
{
	(void)t;
	(void)msg;
	return &held_in_input;
}

static void
http_free_held(void *held)
{
	(void)held;
}

static void forward_head(struct px_http *h, const struct pol_call *call);
static void go_on(struct px_http *h);
static int check_ws_upgrade(struct px_http *h, const char *head, size_t len);
static int hold_body(struct px_http *h);
static int holds_body(const struct px_http *h, const struct pol_call *call);
static int json_body_readable(struct px_http *h, const char *who);
static int locks_body(const struct px_http *h, const struct pol_call *call);

/* The head at the front of the input was answered by syncgate: unless the answer closes
 * the connection (a body follows, or the client asked), the next request may follow. */
static void
answered(struct px_http *h)
{
	struct px_conn *c = h->c;
	if (c->phase != PX_CONN_OPEN)
		return;
	if (h->head_in_input)
		evbuffer_drain(px_io_input(c->cio), h->head_len);
	if (h->held) /* the refused call's body, read whole: dropped with it */
		evbuffer_drain(h->held, evbuffer_get_length(h->held));
	free(h->head_copy);
	h->head_copy = NULL;
	px_io_set_timeout(c->cio, 0);
	arm_timer(h, T_KEEPALIVE, c->cfg->limits.keepalive_idle_ms);
	h->refused_usable = 1;
}

/*
 * on_locked = strip on a call whose JSON body was read (a body = json route's, a change of an
 * app that locks fields): the body CALL read (its tokens are the classifier's, over
 * json_body) written again without the locked fields D names, into new_body, which
 * forward_head() sends with a Content-Length of its own. Returns 1, or 0
 * when it was answered (out of memory, or the rewrite failed).
 */
static int
strip_body(struct px_http *h, const struct pol_call *call, const struct pol_decision *d)
{
	size_t n = call->text_len ? call->text_len : 1;
	char *b = malloc(n);
	/* the body object; a participants batch's: every action's params */
	int batch = call->http_batch && call->nactions > 0, i, one = call->data_tok;
	int nobj = batch ? call->nactions : 1;
	int *objs = batch ? malloc((size_t)nobj * sizeof *objs) : &one;
	long bl = -1;

	if (b && objs) {
		for (i = 0; batch && i < nobj; i++)
			objs[i] = call->actions[i].params;
		bl = pol_fields_strip(d->strip_lists, d->nstrip_lists, call->text, call->toks, objs,
		                      nobj, b, n, NULL, 0);
	}
	if (batch)
		free(objs);
	if (bl < 0 || (!h->new_body && !(h->new_body = evbuffer_new())) ||
	    evbuffer_add(h->new_body, b, (size_t)bl)) {
		free(b);
		reply(h, 400, "INVALID_REQUEST", "syncgate: the body could not be written without its "
		      "locked fields", h->req.conn_close);
		answered(h);
		return 0;
	}
	free(b);
	return 1;
}

/* Carries out decision D for the head at the front of the input (see police.h). */
static void
http_carry_out(void *t, void *msg, const struct pol_call *call, const struct pol_decision *d,
               int parked)
{
	struct px_http *h = t;
	struct px_conn *c = h->c;
	(void)msg;

	h->refused_usable = 0;
	if (parked) {
		h->state = PX_H_HEAD;
		if (!h->close_after) /* (set: the client half-closed meanwhile) */
			px_io_read(c->cio, 1);
	}
	if (d->verdict == POL_ALLOW) {
		if (!d->strip || strip_body(h, call, d)) /* (else answered) */
			forward_head(h, call);
	} else {
		if (px_verdict_of(d) == PX_V_REFUSE)
			px_count(&c->env->ctr->http_refused, 1);
		/* a body not read whole cannot be skipped safely: the connection closes */
		reply(h, d->status, d->error_code, d->reason,
		      h->req.conn_close || h->close_after ||
		          ((h->req.has_cl || h->req.chunked) && !h->req_msg_complete));
		answered(h);
	}
	if (parked)
		go_on(h);
}

/* After a head was answered from outside the head loop (a parked call settled, a held body
 * decided): the requests pipelined behind it go on. */
static void
go_on(struct px_http *h)
{
	struct px_conn *c = h->c;
	if (!h->refused_usable || c->phase != PX_CONN_OPEN || h->state != PX_H_HEAD)
		return;
	if (px_io_pending(c->cio) > PX_HIGH_WATER) {
		h->out_paused = 1;
		px_io_read(c->cio, 0);
	} else if (evbuffer_get_length(px_io_input(c->cio)) > 0) {
		handle_head(h);
	}
}

static const struct px_transport http_transport = {
	.name = "http",
	.carry_out = http_carry_out,
	.carry_out_batch = NULL, /* a batch over HTTP is classified as a conversation change */
	.classify = http_classify,
	.hold = http_hold,
	.free_held = http_free_held,
};

void
px_http_start(struct px_conn *c)
{
	struct px_http *h = calloc(1, sizeof *h);

	if (!h || !(h->resp_buf = evbuffer_new())) {
		free(h);
		px_conn_close(c);
		return;
	}
	h->c = c;
	snprintf(h->client, sizeof h->client, "%s", c->peer);
	px_police_stream_init(&h->ps, c->env->police, &http_transport, h, c->id, h->client);
	h->ps.request_id = h->rid;
	px_conn_set_proto(c, &http_proto, h);
	px_io_setcb(c->cio, client_readcb, client_writecb, client_eventcb, h);
	px_io_set_read_max(c->cio, c->cfg->limits.header_bytes + PX_LOW_WATER);
	px_io_set_low_water(c->cio, PX_LOW_WATER);
	px_io_read(c->cio, 1);
	h->state = PX_H_HEAD;
	arm_timer(h, T_KEEPALIVE, c->cfg->limits.keepalive_idle_ms);
}


/* refusal_ban: the realtime upgrade of a banned user (not in report mode). Asking may end
 * the user's used-up budget: police.c logs its budget_reset then. */
static int
banned_user(struct px_http *h, const struct pol_call *call)
{
	const struct pol_app *app = pol_config_app(h->c->cfg, call->app ? call->app : "",
	                                           call->app ? call->app_len : 0);
	char user[PX_BUDGET_USER_MAX];

	if (!app->ban_ms || app->mode == POL_MODE_REPORT || call->uid_len >= sizeof user)
		return 0;
	memcpy(user, call->uid, call->uid_len);
	user[call->uid_len] = 0;
	return px_police_budget_state(h->c->env->police, app, h->req_app, user) == PX_BUDGET_BANNED;
}

/*
 * refusal_budget over HTTP: a browser's change counts against the budget of (and, that used
 * up, is refused for) the user its user token names (pol_jwt_user: verified with the app's
 * secret key when it has one; a token that does not verify names nobody, and the backend
 * refuses it anyway). Sets the stream's cred_user for police.c to that user, or to none:
 * any other call, an app without a budget, no such token. HEAD[0..LEN): the request head.
 */
static void
set_budget_user(struct px_http *h, const struct pol_ctx *ctx, const struct pol_call *call,
                const char *head, size_t len)
{
	const char *authz;
	long al, n;

	h->ps.cred_user = NULL;
	if (!ctx->app->budget || call->cred != POL_CRED_BROWSER || !pol_op_is_change(call->op))
		return;
	al = find_header(head, len, "authorization", &authz);
	if (al <= 0 || (!h->budget_user && !(h->budget_user = malloc(PX_BUDGET_USER_MAX))))
		return; /* (out of memory: counted as no user, as a token naming none) */
	n = pol_jwt_user(authz, (size_t)al, ctx->app->secret_key, h->req_app, (int64_t)time(NULL),
	                 h->c->cfg->limits.jwt_clock_skew_s, h->budget_user, PX_BUDGET_USER_MAX - 1);
	if (n <= 0)
		return;
	h->budget_user[n] = 0;
	h->ps.cred_user = h->budget_user;
}

/*
 * Classifies the request whose checked head is HEAD[0..LEN), at the front of the client's
 * input, and hands it to police.c. Returns 1 if its decision waits for a fact (parked),
 * else 0: forwarded or answered (the connection may be closing).
 */
static int
police_head(struct px_http *h, const char *head, size_t len)
{
	struct px_conn *c = h->c;
	const char *why, *ov, *sp1 = memchr(head, ' ', len);
	const char *target = sp1 + 1, *sp2 = memchr(target, ' ', len - (size_t)(target - head));
	size_t mlen = (size_t)(sp1 - head), tlen = (size_t)(sp2 - target), ovl;
	struct pol_call call;
	struct pol_ctx ctx;
	char who[POL_NAME_MAX + POL_APPID_MAX + 48];
	int route_body, locked;

	h->req_method_head = px_token_eq(head, mlen, "HEAD");
	if (target[0] == '*') {
		forward_head(h, NULL); /* OPTIONS * */
		return 0;
	}
	if (classify_head(h, head, len, &call, &why)) {
		px_log(PX_LOG_INFO, "bad_request", "peer", c->peer, "why", why, NULL);
		reply(h, 400, "INVALID_REQUEST", why, 1);
		return 0;
	}
	if (call.app) {
		memcpy(h->req_app, call.app, call.app_len); /* pol_appid_valid(): <= POL_APPID_MAX */
		h->req_app[call.app_len] = 0;
	}
	if (call.api && (h->req.method_override || query_param_count(target, tlen, "_method", &ov, &ovl))) {
		/* a backend honouring it would carry out another method than the one decided */
		px_log(PX_LOG_INFO, "bad_request", "peer", c->peer, "why", "method override", NULL);
		reply(h, 400, "INVALID_REQUEST",
		      "syncgate: method override (X-HTTP-Method-Override, _method) is not "
		      "accepted on API paths", 1);
		return 0;
	}
	if (h->req.upgrade_ws && call.api && call.op != POL_OP_REALTIME) {
		/* only the realtime socket is an API WebSocket: any other would be a blind tunnel */
		px_log(PX_LOG_INFO, "bad_request", "peer", c->peer, "why", "upgrade on an API path", NULL);
		reply(h, 400, "INVALID_REQUEST",
		      "syncgate: WebSocket upgrade on an API path that is not the realtime socket "
		      "(/v1/{appId}/realtime/{userId})", 1);
		return 0;
	}
	if (call.op == POL_OP_REALTIME && call.uid && banned_user(h, &call)) {
		reply(h, 403, "USER_BANNED", "syncgate: this user is banned for a while after repeated "
		      "refused changes (refusal_ban)", h->req.conn_close);
		return 0;
	}
	route_body = h->route.route && h->route.route->body_json;
	if (route_body) {
		snprintf(who, sizeof who, "route %s, body = json", h->route.route->name);
		if (!json_body_readable(h, who))
			return 0; /* answered */
	}
	locked = !route_body && locks_body(h, &call);
	if (locked) {
		snprintf(who, sizeof who, "app %s locks fields of this change", h->req_app);
		if (!json_body_readable(h, who))
			return 0; /* answered */
	}
	if (route_body || locked || holds_body(h, &call)) {
		/* the body is read whole before the call is decided (hold_body); as JSON, decoded
		 * from its framing, when it is the call's payload */
		if (!(h->head_copy = malloc(len)) || (!h->held && !(h->held = evbuffer_new())) ||
		    ((route_body || locked) && !h->json_body && !(h->json_body = evbuffer_new()))) {
			reply(h, 503, "OUT_OF_MEMORY", "syncgate: out of memory", 1);
			return 0;
		}
		h->collect_json = route_body || locked;
		memcpy(h->head_copy, head, len);
		evbuffer_drain(px_io_input(c->cio), len);
		h->head_in_input = 0;
		h->state = PX_H_BODY;
		px_conn_timer_stop(c);
		h->timer_kind = T_NONE;
		px_io_set_timeout(c->cio, c->cfg->limits.body_idle_ms);
		return hold_body(h);
	}
	px_police_ctx(&h->ps, call.app ? call.app : "", call.app ? call.app_len : 0, &ctx);
	set_budget_user(h, &ctx, &call, head, len);
	return px_police_call(&h->ps, &ctx, &call, head, len, NULL);
}

/*
 * A call whose JSON body is read whole (at most decide_body bytes) and parsed before anything
 * goes upstream: a body = json route's, or a change of an app that locks fields of it. WHO
 * says why, for the answer. Returns 1 if this request's body can be, else 0 when it was
 * answered: 417 for Expect: 100-continue (the client then sends without waiting, RFC 9110
 * §10.1.1), 413 for a declared length over decide_body, 400 for an upgrade.
 */
static int
json_body_readable(struct px_http *h, const char *who)
{
	char why[320];

	if (h->req.upgrade_ws) {
		snprintf(why, sizeof why, "syncgate: the JSON body is read before this call is decided "
		         "(%s): not an upgrade", who);
		reply(h, 400, "INVALID_REQUEST", why, 1);
		return 0;
	}
	if (h->req.expect_continue && !h->req_msg_complete) {
		snprintf(why, sizeof why, "syncgate: the body is read before this call is decided (%s): "
		         "send it without Expect: 100-continue", who);
		reply(h, 417, "EXPECTATION_FAILED", why, 1);
		return 0;
	}
	if (h->req.has_cl && h->req.content_length > h->c->cfg->limits.decide_body_bytes) {
		snprintf(why, sizeof why, "syncgate: the JSON body is read whole before this call is "
		         "decided (%s), up to %u bytes ([limits] decide_body)", who,
		         (unsigned)h->c->cfg->limits.decide_body_bytes);
		reply(h, 413, "BODY_TOO_LARGE", why, 1);
		return 0;
	}
	return 1;
}

/*
 * 1 if CALL is a browser's change with a body (not yet read) whose app locks fields of it
 * (pol_app_locks): the body is its payload, read and parsed before it is decided, so that
 * on_locked applies as it does to a realtime frame. Only changes ask: a read or a message
 * costs nothing more, and an app with no lists behaves as before.
 */
static int
locks_body(const struct px_http *h, const struct pol_call *call)
{
	return !h->req_msg_complete && pol_op_is_change(call->op) &&
	       pol_app_locks(pol_config_app(h->c->cfg, call->app ? call->app : "",
	                                    call->app ? call->app_len : 0),
	                     call->op);
}

/* Returns 1 while the call waits for a fact, else 0; sets the state (see police_head). */
static int
decide_held(struct px_http *h)
{
	struct pol_call call;
	struct pol_ctx ctx;
	const char *why;

	h->state = PX_H_HEAD;
	px_io_set_timeout(h->c->cio, 0);
	if (h->collect_json) {
		h->collect_json = 0;
		if (!h->req_msg_complete) {
			/* chunked, and longer than decide_body: it cannot be read whole */
			reply(h, 413, "BODY_TOO_LARGE", "syncgate: the JSON body of this call is read "
			      "whole before it is decided, and it is over [limits] decide_body", 1);
			return 0;
		}
		h->json_ready = 1;
	}
	if (classify_head(h, h->head_copy, h->head_len, &call, &why)) {
		/* a body read as JSON that is not strict JSON, or lacks an id a route takes from
		 * it: the body was read whole, so the connection goes on */
		px_log(PX_LOG_INFO, "bad_request", "peer", h->c->peer, "why", why, "route",
		       h->route.route ? h->route.route->name : "", NULL);
		reply(h, 400, "INVALID_REQUEST", why, !h->req_msg_complete || h->req.conn_close);
		answered(h);
		return 0;
	}
	if (call.app) { /* (a body route's app may have come from the body) */
		memcpy(h->req_app, call.app, call.app_len); /* pol_appid_valid(): <= POL_APPID_MAX */
		h->req_app[call.app_len] = 0;
	}
	px_police_ctx(&h->ps, call.app ? call.app : "", call.app ? call.app_len : 0, &ctx);
	set_budget_user(h, &ctx, &call, h->head_copy, h->head_len);
	if (px_police_call(&h->ps, &ctx, &call, h->head_copy, h->head_len, NULL)) {
		h->state = PX_H_PARKED;
		px_io_read(h->c->cio, 0);
		return 1;
	}
	return 0;
}

/*
 * BODY: moves the body bytes that arrived into H->held through llhttp (which finds the end of
 * the message and checks its framing), up to decide_body bytes; once the message is whole,
 * or the cap is reached (the rest will stream after the decision), the call is decided.
 * Returns 1 if it is then parked on a fact, else 0 (waiting for more, or decided).
 */
static int
hold_body(struct px_http *h)
{
	struct px_conn *c = h->c;
	struct evbuffer *in = px_io_input(c->cio);
	size_t cap = c->cfg->limits.decide_body_bytes;

	while (!h->req_msg_complete && evbuffer_get_length(h->held) < cap &&
	       evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		size_t take, used;
		llhttp_errno_t e;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		take = v.iov_len < cap - evbuffer_get_length(h->held) ? v.iov_len
		                                                       : cap - evbuffer_get_length(h->held);
		e = llhttp_execute(&h->req_parser, v.iov_base, take);
		if (e == HPE_PAUSED) {
			used = (size_t)(llhttp_get_error_pos(&h->req_parser) - (const char *)v.iov_base);
			llhttp_resume(&h->req_parser);
		} else if (e == HPE_OK) {
			used = take;
		} else {
			int too_big = e == HPE_USER && h->body_error == 413;
			if (e == HPE_USER && h->body_error == 503) {
				reply(h, 503, "OUT_OF_MEMORY", "syncgate: out of memory", 1);
				return 0;
			}
			px_log(PX_LOG_INFO, "bad_request", "peer", c->peer, "why",
			       too_big ? "body too large" : llhttp_get_error_reason(&h->req_parser), NULL);
			reply(h, too_big ? 413 : 400, too_big ? "BODY_TOO_LARGE" : "INVALID_REQUEST",
			      too_big ? "request body over the configured limit" : "malformed request body framing", 1);
			return 0;
		}
		evbuffer_remove_buffer(in, h->held, used);
	}
	if (!h->req_msg_complete && evbuffer_get_length(h->held) < cap)
		return 0; /* more to come */
	return decide_held(h);
}

/* A browser's sync call with a body of at most decide_body (chunked: held up to it) and no
 * 100-continue to wait for: its body is read before it is decided. */
static int
holds_body(const struct px_http *h, const struct pol_call *call)
{
	const struct pol_limits *lim = &h->c->cfg->limits;

	if (!lim->decide_body_bytes || h->req_msg_complete || h->req.expect_continue ||
	    h->req.upgrade_ws || (h->req.has_cl && h->req.content_length > lim->decide_body_bytes))
		return 0;
	/* (a change of no known shape too: its refusal leaves the connection usable) */
	return pol_op_is_change(call->op) || call->op == POL_OP_UNKNOWN;
}

/*
 * The head at the front of the input was allowed (CALL: its call, NULL for "OPTIONS *"):
 * identity checks of the boken exchange, then the head goes upstream rewritten and the body
 * follows.
 */
static void
forward_head(struct px_http *h, const struct pol_call *call)
{
	struct px_conn *c = h->c;
	struct evbuffer *in = px_io_input(c->cio);
	const struct pol_limits *lim = &c->cfg->limits;
	size_t end = h->head_len;
	const char *p = h->head_in_input ? (const char *)evbuffer_pullup(in, (ev_ssize_t)end)
	                                 : h->head_copy;

	if (call && call->op == POL_OP_SIGNATURE) {
		const struct pol_app *app = pol_config_app(c->env->cfg, call->app ? call->app : "",
		                                           call->app ? call->app_len : 0);
		const char *target = (const char *)memchr(p, ' ', end) + 1;
		size_t tlen = (size_t)((const char *)memchr(target, ' ', end - (size_t)(target - p)) - target);
		if (app->identity != POL_IDENTITY_OFF && !check_signature(h, app, call, target, tlen)) {
			answered(h);
			return;
		}
	}
	if (call && h->req.upgrade_ws && call->op == POL_OP_REALTIME && keep_realtime_ids(h, call)) {
		reply(h, 503, "OUT_OF_MEMORY", "syncgate: out of memory", 1);
		return;
	}
	h->state = PX_H_REQUEST;
	if (h->req.upgrade_ws) {
		if (!check_ws_upgrade(h, p, end)) {
			reply(h, 400, "INVALID_REQUEST", "bad WebSocket upgrade request", 1);
			return;
		}
		h->state = PX_H_UPGRADING; /* forward_head() kept the realtime socket's ids */
	}
	px_conn_timer_stop(c);
	h->timer_kind = T_NONE;
	if (!h->req_buf)
		h->req_buf = evbuffer_new();
	if (!h->req_buf) {
		reply(h, 503, "OUT_OF_MEMORY", "syncgate: out of memory", 1);
		return;
	}
	if (write_upstream_head(h, p, end, h->req_buf)) {
		reply(h, 400, "INVALID_REQUEST", "Connection header lists too many names", 1);
		return;
	}
	if (h->req.expect_continue && !h->req_msg_complete)
		evbuffer_add(h->resp_buf, "HTTP/1.1 100 Continue\r\n\r\n", 25);
	px_io_send(c->cio, h->resp_buf);
	if (h->head_in_input)
		evbuffer_drain(in, end);
	if (h->new_body) {
		/* the body stripped of its locked fields instead of the client's */
		if (h->held)
			evbuffer_drain(h->held, evbuffer_get_length(h->held));
		evbuffer_add_buffer(h->req_buf, h->new_body);
	} else if (h->held) {
		evbuffer_add_buffer(h->req_buf, h->held); /* the body read before the decision */
	}
	h->req_done = h->req_msg_complete;
	if (h->state == PX_H_UPGRADING) {
		/* hold every byte after the upgrade request until the backend's 101 */
		h->req_done = 1;
		px_io_read(c->cio, 0);
	} else if (!h->req_done) {
		px_io_set_timeout(c->cio, lim->body_idle_ms); /* a body is still to come */
	}
	relay_request(h);
}


/*
 * A valid 101 was relayed: the connection goes to ws.c (the realtime socket, whose ids
 * forward_head() kept) or to tunnel.c (any other WebSocket), and this handler's state is
 * freed. H is gone when this returns.
 */
static void
hand_off(struct px_http *h)
{
	struct px_conn *c = h->c;
	char app[POL_APPID_MAX + 1], *user = h->user;

	memcpy(app, h->app, sizeof app);
	h->user = NULL;
	px_conn_set_proto(c, NULL, NULL);
	http_release(c, h);
	if (user)
		px_ws_start(c, app, user);
	else
		px_tunnel_start(c);
}

static int
check_ws_upgrade(struct px_http *h, const char *head, size_t len)
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
	memcpy(h->ws_key, v, (size_t)n);
	h->ws_key[n] = 0;
	return 1;
}

static void
reset_request(struct px_http *h)
{
	memset(&h->req, 0, sizeof h->req);
	h->req_done = h->req_sent = h->req_msg_complete = 0;
	h->req_body_bytes = 0;
	h->chunk_ext_bytes = 0;
	h->body_error = 0;
	h->streaming = 0;
	h->resp_started = h->resp_done = h->resp_eof_body = h->resp_msg_complete = 0;
	h->resp_status = 0;
	h->upstream_reusable = 0;
	h->resp_bytes = 0;
	h->upstream_reused = 0;
	free(h->user);
	h->user = NULL;
	free(h->head_copy);
	h->head_copy = NULL;
	if (h->held)
		evbuffer_drain(h->held, evbuffer_get_length(h->held));
}

/* h->rid = "<socket id>-<request number>", written by hand: this runs for every request,
 * and snprintf() cost it ~1,000 instructions. */
static void
request_id(struct px_http *h)
{
	char digits[12];
	size_t il = strlen(h->c->id), n = 0;
	unsigned v = h->nreq;

	do
		digits[n++] = (char)('0' + v % 10);
	while ((v /= 10) && n < sizeof digits);
	if (il + 1 + n >= sizeof h->rid)
		il = sizeof h->rid - 2 - n;
	memcpy(h->rid, h->c->id, il);
	h->rid[il++] = '-';
	while (n)
		h->rid[il++] = digits[--n];
	h->rid[il] = 0;
}

/* The rightmost X-Forwarded-For entry that is not a trusted proxy (client_address). */
struct xff_scan {
	const struct pol_config *cfg;
	const char *last;
	size_t last_len;
};

static int
xff_entry(void *arg, const char *s, size_t n)
{
	struct xff_scan *x = arg;
	if (!pol_trusted_proxy(x->cfg, s, n)) {
		x->last = s;
		x->last_len = n;
	}
	return 0;
}

/*
 * The client's address for this request: the peer's, unless the peer is one of
 * trusted_proxies and the head has X-Forwarded-For: then the rightmost entry that is not
 * itself a trusted proxy (entries left of it were written by the client and prove nothing).
 * An entry that is not an address leaves the peer's.
 */
static void
client_address(struct px_http *h, const char *head, size_t len)
{
	struct px_conn *c = h->c;
	struct xff_scan x = {c->cfg, NULL, 0};

	if (h->client_from_xff) {
		memcpy(h->client, c->peer, sizeof h->client); /* both 64 bytes, NUL-terminated */
		h->client_from_xff = 0;
	}
	h->peer_trusted = c->cfg->ntrusted && pol_trusted_proxy(c->cfg, c->peer, strlen(c->peer));
	if (!h->peer_trusted)
		return;
	list_items(head, len, "x-forwarded-for", xff_entry, &x);
	if (x.last && x.last_len < sizeof h->client) {
		char t[64];
		unsigned char a[16];
		memcpy(t, x.last, x.last_len);
		t[x.last_len] = 0;
		if (inet_pton(AF_INET, t, a) == 1 || inet_pton(AF_INET6, t, a) == 1) {
			memcpy(h->client, t, x.last_len + 1);
			h->client_from_xff = 1;
		}
	}
}

/*
 * Handles the request head at the front of the client's input. Returns 1 when it was refused
 * and answered with the connection still usable (the next pipelined head may follow), else 0:
 * forwarded, waiting for more bytes, or closing.
 */
static int
handle_one_head(struct px_http *h)
{
	struct px_conn *c = h->c;
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
	px_env_refresh(c->env);
	if (c->cfg != c->env->cfg) {
		pol_config_unref(c->cfg);
		c->cfg = pol_config_ref(c->env->cfg);
		lim = &c->cfg->limits;
	}
	h->refused_usable = 0;
	h->origin_len = 0;
	if (h->timer_kind == T_KEEPALIVE) {
		/* first byte of a new request: the absolute header deadline starts (slowloris) */
		arm_timer(h, T_HEADER, lim->header_timeout_ms);
	}
	look = n < lim->header_bytes ? n : lim->header_bytes;
	p = (char *)evbuffer_pullup(in, (ev_ssize_t)look);
	end = px_head_end(p, look);
	if (end < 0) {
		reply(h, 400, "INVALID_REQUEST", "bare CR or LF, or NUL, in the request head", 1);
		return 0;
	}
	if (end == 0) {
		if (!memchr(p, '\n', look) && look > lim->request_line_bytes + 1)
			reply(h, 414, "URI_TOO_LONG", "request line too long", 1);
		else if (look >= lim->header_bytes)
			reply(h, 431, "HEADERS_TOO_LARGE", "request head too large", 1);
		return 0;
	}
	st = px_guard_request(p, (size_t)end, lim->request_line_bytes, (int)lim->header_count,
	                      &h->req, &why);
	if (!st && h->req.underscores && c->cfg->underscore_headers == POL_UNDERSCORE_REJECT) {
		st = 400;
		why = "header name with '_' (underscore_headers = reject)";
	}
	if (st) {
		px_log(PX_LOG_INFO, "bad_request", "peer", c->peer, "why", why, NULL);
		reply(h, st, st == 431 ? "HEADERS_TOO_LARGE" : st == 414 ? "URI_TOO_LONG" :
		              "INVALID_REQUEST", why, 1);
		return 0;
	}
	client_address(h, p, (size_t)end);
	if (h->req.origin && h->req.origin_len < sizeof h->origin &&
	    pol_origin_valid(h->req.origin, h->req.origin_len)) {
		memcpy(h->origin, h->req.origin, h->req.origin_len);
		h->origin_len = h->req.origin_len;
	}
	{
		/* the access line: method and path, never the query */
		const char *sp = memchr(p, ' ', (size_t)end), *t = sp + 1;
		size_t tl = strcspn(t, " ?");
		snprintf(h->req_line, sizeof h->req_line, "%.*s %.*s", (int)(sp - p), p,
		         (int)(tl > 256 ? 256 : tl), t);
		h->req_start_us = px_now_us();
		h->nreq++;
		request_id(h);
		h->req_app[0] = 0;
		h->up_start_us = h->up_head_us = 0;
	}
	/* this request's counts (a refused one before it on this connection kept its own) */
	h->req_body_bytes = 0;
	h->chunk_ext_bytes = 0;
	h->body_error = 0;
	h->route.route = NULL;
	h->rwlen = 0;
	h->up_idx = 0;
	h->collect_json = h->json_ready = 0;
	if (h->json_body)
		evbuffer_drain(h->json_body, evbuffer_get_length(h->json_body));
	if (h->new_body) {
		evbuffer_free(h->new_body);
		h->new_body = NULL;
	}
	/* llhttp, strict and with no lenient flag, must agree that this is one valid head */
	llhttp_settings_init(&h->req_settings);
	h->req_settings.on_message_complete = on_req_complete;
	h->req_settings.on_body = on_req_body;
	h->req_settings.on_chunk_extension_name = on_chunk_ext;
	h->req_settings.on_chunk_extension_value = on_chunk_ext;
	h->req_settings.on_chunk_header = on_chunk_header;
	llhttp_init(&h->req_parser, HTTP_REQUEST, &h->req_settings);
	h->req_parser.data = h;
	h->req_msg_complete = 0;
	e = llhttp_execute(&h->req_parser, p, (size_t)end);
	if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
		px_log(PX_LOG_INFO, "bad_request", "peer", c->peer, "why",
		       llhttp_get_error_reason(&h->req_parser), NULL);
		reply(h, 400, "INVALID_REQUEST", "malformed request head", 1);
		return 0;
	}
	if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE)
		llhttp_resume(&h->req_parser);
	if (h->req.has_cl && h->req.content_length > lim->body_bytes) {
		reply(h, 413, "BODY_TOO_LARGE", "request body over the configured limit", 1);
		return 0;
	}
	px_count(&c->env->ctr->http_requests, 1);
	h->head_len = (size_t)end;
	h->head_in_input = 1;
	if (police_head(h, p, (size_t)end)) {
		/* a fact is being looked up: the client waits unread, the head in its input */
		h->state = PX_H_PARKED;
		px_io_read(c->cio, 0);
		px_conn_timer_stop(c);
		h->timer_kind = T_NONE;
		return 0;
	}
	return h->refused_usable && c->phase == PX_CONN_OPEN && h->state == PX_H_HEAD;
}

/*
 * The client does not read its answers: its input waits unread (reading off) until the
 * output drains to PX_LOW_WATER (client_writecb), so that syncgate's own answers to a flood
 * of pipelined requests are bounded like relayed bytes. A client that reads nothing for
 * keepalive_idle is closed.
 */
static void
pause_for_output(struct px_http *h)
{
	struct px_conn *c = h->c;
	h->out_paused = 1;
	px_io_read(c->cio, 0);
	arm_timer(h, T_KEEPALIVE, c->cfg->limits.keepalive_idle_ms);
}

/* Handles the request heads waiting in the client's input, one after the other while they
 * are refused, as long as the client reads the answers. */
static void
handle_head(struct px_http *h)
{
	struct px_conn *c = h->c;
	while (handle_one_head(h)) {
		if (px_io_pending(c->cio) > PX_HIGH_WATER) {
			pause_for_output(h);
			return;
		}
	}
}

/* ---- request body and hand-off to the upstream ---- */

static void
connect_upstream(struct px_http *h)
{
	struct px_conn *c = h->c;
	h->up_start_us = px_now_us();
	px_count(&c->env->ctr->upstream_requests[h->up_idx], 1);
	if (c->uio && h->upstream_idle && h->uio_idx == h->up_idx) {
		/* the connection this client used last time: no pool round trip */
		h->upstream_idle = 0;
		h->upstream_reused = 1;
		h->upstream_connected = 1;
		px_io_set_timeout(c->uio, c->cfg->limits.upstream_response_ms);
		return;
	}
	if (c->uio && h->upstream_idle) {
		/* this request goes to another upstream: the idle one goes back to its pool */
		px_upstream_put(c->env->ups[h->uio_idx], c->uio);
		c->uio = NULL;
		h->upstream_idle = 0;
	}
	h->uio_idx = h->up_idx;
	c->uio = px_upstream_get(c->env->ups[h->up_idx], &h->upstream_reused);
	if (!c->uio) {
		px_count(&c->env->ctr->upstream_errors, 1);
		px_count(&c->env->ctr->upstream_failures[h->up_idx], 1);
		reply(h, 502, "BAD_GATEWAY", "cannot reach the backend", 1);
		return;
	}
	px_io_setcb(c->uio, up_readcb, up_writecb, up_eventcb, h);
	px_io_set_low_water(c->uio, PX_LOW_WATER);
	px_io_set_read_max(c->uio, c->cfg->limits.response_header_bytes + PX_HIGH_WATER);
	h->upstream_connected = h->upstream_reused;
	px_io_set_timeout(c->uio, c->cfg->limits.upstream_response_ms); /* connect: px_io_connect's */
	px_io_read(c->uio, 1);
}

static void
flush_request(struct px_http *h)
{
	struct px_conn *c = h->c;
	struct evbuffer *uout;

	if (!h->upstream_connected)
		return;
	uout = px_io_output(c->uio);
	px_io_send(c->uio, h->req_buf);
	if (h->req_done && !h->req_sent) {
		h->req_sent = 1;
		if (h->state == PX_H_REQUEST)
			h->state = PX_H_RESPONSE;
		px_io_set_timeout(c->cio, 0);
	}
	/* backpressure: the client waits while the upstream is slow to take the body */
	if (evbuffer_get_length(uout) > PX_HIGH_WATER)
		px_io_read(c->cio, 0);
}

static void
relay_request(struct px_http *h)
{
	struct px_conn *c = h->c;
	struct evbuffer *in = px_io_input(c->cio);

	while (!h->req_done && evbuffer_get_length(in) > 0) {
		struct evbuffer_iovec v;
		llhttp_errno_t e;
		size_t used;

		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		h->req_msg_complete = 0;
		e = llhttp_execute(&h->req_parser, v.iov_base, v.iov_len);
		if (e == HPE_PAUSED) {
			used = (size_t)(llhttp_get_error_pos(&h->req_parser) - (const char *)v.iov_base);
			llhttp_resume(&h->req_parser);
			h->req_done = 1;
		} else if (e == HPE_OK) {
			used = v.iov_len;
		} else {
			int too_big = e == HPE_USER && h->body_error == 413;
			px_log(PX_LOG_INFO, "bad_request", "peer", c->peer, "why",
			       too_big ? "body too large" : llhttp_get_error_reason(&h->req_parser), NULL);
			reply(h, too_big ? 413 : 400, too_big ? "BODY_TOO_LARGE" : "INVALID_REQUEST",
			              too_big ? "request body over the configured limit"
			                      : "malformed request body framing", 1);
			return;
		}
		evbuffer_remove_buffer(in, h->req_buf, used);
	}
	if (!h->streaming && evbuffer_get_length(h->req_buf) > PX_REQUEST_BUFFER)
		h->streaming = 1;
	if (!h->req_done && !h->streaming)
		return;
	if (!c->uio || h->upstream_idle) {
		connect_upstream(h);
		if (!c->uio)
			return;
	}
	flush_request(h);
}

/* ---- response ---- */

/* The response head for the client: hop-by-hop headers out; Connection as syncgate decides. */
static int
write_client_head(struct px_http *h, const char *head, size_t len, int upgrade)
{
	struct evbuffer *out = h->resp_buf;
	const char *p = memchr(head, '\n', len) + 1;
	struct conn_tokens ct;

	connection_tokens(head, len, &ct);
	if (ct.overflow)
		return -1;
	evbuffer_add(out, head, (size_t)(p - head));
	copy_fields(head, len, &ct, 0, 0, upgrade, 0, out);
	if (upgrade)
		evbuffer_add(out, "Connection: Upgrade\r\n\r\n", 23);
	else if (h->close_after)
		evbuffer_add(out, "Connection: close\r\n\r\n", 21);
	else
		evbuffer_add(out, "\r\n", 2);
	return 0;
}

static void
upstream_failed(struct px_http *h, int status, const char *why)
{
	struct px_conn *c = h->c;
	int e = c->uio ? px_io_errno(c->uio) : 0;

	px_count(&c->env->ctr->upstream_errors, 1);
	px_count(&c->env->ctr->upstream_failures[h->uio_idx], 1);
	px_log(PX_LOG_WARN, "upstream_error", "peer", c->peer, "upstream",
	       px_upstream_name(c->env->ups[h->uio_idx]), "host", px_upstream_host(c->env->ups[h->uio_idx]),
	       "why", why, "error", e ? strerror(e) : "", NULL);
	free_upstream(h);
	if (h->resp_started) {
		px_conn_close(c); /* a truncated response is signalled by closing */
		return;
	}
	reply(h, status, status == 504 ? "GATEWAY_TIMEOUT" : "BAD_GATEWAY", why,
	              !h->req_done || h->state == PX_H_UPGRADING || h->req.conn_close);
	if (c->phase == PX_CONN_OPEN)
		finish_transaction(h);
}

/* A 101 is accepted only with the Sec-WebSocket-Accept for our client's key. */
static int
valid_101(struct px_http *h, const char *head, size_t len)
{
	const char *v;
	long n;
	char want[29];

	n = find_header(head, len, "sec-websocket-accept", &v);
	px_ws_accept(h->ws_key, strlen(h->ws_key), want);
	if (n != 28 || memcmp(v, want, 28))
		return 0;
	if (find_header(head, len, "sec-websocket-extensions", &v) >= 0)
		return 0; /* we removed the offer: an extension would hide frames from policy */
	n = find_header(head, len, "upgrade", &v);
	return n == 9 && px_token_eq(v, 9, "websocket");
}

static int
response_head(struct px_http *h)
{
	struct px_conn *c = h->c;
	struct evbuffer *in = px_io_input(c->uio);
	size_t n = evbuffer_get_length(in), cap = c->cfg->limits.response_header_bytes;
	size_t look = n < cap ? n : cap;
	struct px_head_info info;
	const char *why;
	char *p = (char *)evbuffer_pullup(in, (ev_ssize_t)look);
	long end = px_head_end(p, look);
	llhttp_errno_t e;

	if (end < 0 || (end == 0 && look >= cap)) {
		upstream_failed(h, 502, "malformed or oversized response head");
		return -1;
	}
	if (end == 0)
		return 0;
	if (px_guard_response(p, (size_t)end, 1000, &info, &why)) {
		upstream_failed(h, 502, why);
		return -1;
	}
	llhttp_settings_init(&h->resp_settings);
	h->resp_settings.on_headers_complete = on_resp_headers_complete;
	h->resp_settings.on_message_complete = on_resp_complete;
	llhttp_init(&h->resp_parser, HTTP_RESPONSE, &h->resp_settings);
	h->resp_parser.data = h;
	h->resp_msg_complete = 0;
	e = llhttp_execute(&h->resp_parser, p, (size_t)end);
	if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE) {
		upstream_failed(h, 502, "malformed response head");
		return -1;
	}
	if (e != HPE_OK)
		llhttp_resume(&h->resp_parser);
	h->resp_status = h->resp_parser.status_code;
	h->up_head_us = px_now_us();
	if (h->up_start_us)
		px_observe(c->env->ctr->upstream_bucket, &c->env->ctr->upstream_sum_us,
		           h->up_head_us - h->up_start_us);
	if (h->resp_status >= 100 && h->resp_status < 200 && h->resp_status != 101) {
		if (write_client_head(h, p, (size_t)end, 0)) { /* interim: the final response follows */
			upstream_failed(h, 502, "Connection header lists too many names");
			return -1;
		}
		px_io_send(c->cio, h->resp_buf);
		evbuffer_drain(in, (size_t)end);
		return 1;
	}
	if (h->resp_status == 101) {
		if (h->state != PX_H_UPGRADING || !valid_101(h, p, (size_t)end)) {
			upstream_failed(h, 502, "backend answered 101 without a valid WebSocket accept");
			return -1;
		}
		if (write_client_head(h, p, (size_t)end, 1)) {
			upstream_failed(h, 502, "Connection header lists too many names");
			return -1;
		}
		px_io_send(c->cio, h->resp_buf);
		evbuffer_drain(in, (size_t)end);
		px_conn_nodelay(c);
		access_log(h, 101, 1);
		hand_off(h);
		return -1;
	}
	h->resp_eof_body = !h->resp_msg_complete && llhttp_message_needs_eof(&h->resp_parser);
	if (h->state == PX_H_UPGRADING)
		h->close_after = 1; /* never read the held bytes as HTTP */
	h->close_after |= h->req.conn_close || h->resp_eof_body || c->env->draining;
	h->upstream_reusable = !info.conn_close && !h->resp_eof_body && !h->req.http10 &&
	                       h->state != PX_H_UPGRADING;
	if (write_client_head(h, p, (size_t)end, 0)) {
		upstream_failed(h, 502, "Connection header lists too many names");
		return -1;
	}
	evbuffer_drain(in, (size_t)end);
	h->resp_started = 1;
	h->resp_done = h->resp_msg_complete;
	return 1;
}

/* Relays what the upstream sent. Returns 1 while the exchange goes on, 0 when H may be gone
 * (answered, failed, finished or handed off): the caller returns at once. */
static int
handle_response(struct px_http *h)
{
	struct px_conn *c = h->c;
	struct evbuffer *in, *out = h->resp_buf;

	for (;;) {
		if (!c->uio)
			return 1;
		in = px_io_input(c->uio);
		if (!h->resp_started) {
			int r = response_head(h);
			if (r <= 0)
				return r == 0;
			continue;
		}
		if (h->resp_done || evbuffer_get_length(in) == 0)
			break;
		struct evbuffer_iovec v;
		llhttp_errno_t e;
		size_t used;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		h->resp_msg_complete = 0;
		e = llhttp_execute(&h->resp_parser, v.iov_base, v.iov_len);
		if (e == HPE_PAUSED) {
			used = (size_t)(llhttp_get_error_pos(&h->resp_parser) - (const char *)v.iov_base);
			llhttp_resume(&h->resp_parser);
			h->resp_done = 1;
		} else if (e == HPE_OK) {
			used = v.iov_len;
		} else {
			upstream_failed(h, 502, "malformed response body framing");
			return 0;
		}
		h->resp_bytes += used;
		evbuffer_remove_buffer(in, out, used);
	}
	px_io_send(c->cio, out);
	if (h->resp_done) {
		if (evbuffer_get_length(in) > 0)
			h->upstream_reusable = 0; /* bytes after the response: never reuse */
		finish_transaction(h);
		return 0;
	}
	if (px_io_pending(c->cio) > PX_HIGH_WATER)
		px_io_read(c->uio, 0);
	return 1;
}

static void
finish_transaction(struct px_http *h)
{
	struct px_conn *c = h->c;
	access_log(h, h->resp_status ? h->resp_status : 502, h->resp_status != 0);
	if (!h->req_done)
		h->close_after = 1; /* answered early: the rest of the body cannot be skipped safely */
	if (c->uio) {
		/* The backend connection's fate is its own exchange's: a client that closes (its
		 * Connection: close is hop-by-hop, never forwarded) leaves a clean one to the pool. */
		if (h->upstream_reusable && h->req_sent && h->req_done && h->resp_done &&
		    !c->env->draining) {
			/* keep it for this client's next request (or the pool, when the client goes);
			 * it expires at upstream_idle */
			px_io_set_timeout(c->uio, c->cfg->limits.upstream_idle_ms);
			h->upstream_idle = 1;
		} else {
			free_upstream(h);
		}
	}
	px_io_set_timeout(c->cio, 0);
	if (h->close_after || c->env->draining || c->phase != PX_CONN_OPEN) {
		if (c->phase == PX_CONN_OPEN) {
			c->quiet = h->req_done;
			px_conn_finish(c); /* H and C may be gone: every caller returns now */
		}
		return;
	}
	reset_request(h);
	px_conn_nodelay(c); /* kept alive: answers may follow unacknowledged ones */
	h->state = PX_H_HEAD;
	if (c->cfg != c->env->cfg) {
		pol_config_unref(c->cfg);
		c->cfg = pol_config_ref(c->env->cfg);
	}
	if (px_io_pending(c->cio) > PX_HIGH_WATER) {
		pause_for_output(h); /* answers pile up unread: the next request waits */
		return;
	}
	arm_timer(h, T_KEEPALIVE, c->cfg->limits.keepalive_idle_ms);
	px_io_read(c->cio, 1);
	if (evbuffer_get_length(px_io_input(c->cio)) > 0)
		handle_head(h); /* a pipelined request */
}

/* ---- callbacks ---- */

static void
client_readcb(struct px_io *io, void *arg)
{
	struct px_http *h = arg;
	(void)io;
	switch (h->state) {
	case PX_H_HEAD:
		handle_head(h);
		break;
	case PX_H_REQUEST:
		relay_request(h);
		break;
	case PX_H_BODY:
		if (!hold_body(h))
			go_on(h);
		break;
	case PX_H_PARKED:
	case PX_H_RESPONSE:
	case PX_H_UPGRADING:
		break; /* held: the next request waits for this one's answer */
	}
}

static void
client_writecb(struct px_io *io, void *arg)
{
	struct px_http *h = arg;
	struct px_conn *c = h->c;
	(void)io;
	/* drained below the low watermark: resume the response, or the requests waiting */
	if (c->uio && h->resp_started && !h->resp_done)
		px_io_read(c->uio, 1);
	if (h->out_paused && h->state == PX_H_HEAD) {
		h->out_paused = 0;
		px_io_read(c->cio, 1);
		handle_head(h);
	}
}

/*
 * A client whose TLS handshake failed or timed out. One that spoke plain HTTP to the TLS port
 * gets a plain 400 saying so (nginx's "plain HTTP request was sent to HTTPS port"): it is the
 * only answer such a client can read. Nothing reached the backend either way.
 */
static void
tls_refused(struct px_http *h)
{
	struct px_conn *c = h->c;
	static const char plain[] = "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
	                            "Content-Length: 87\r\nConnection: close\r\n\r\n"
	                            "{\"errorCode\":\"TLS_REQUIRED\",\"reasons\":[\"a plain HTTP request was sent to a TLS port\"]}\n";

	const char *why = px_io_why(c->cio);

	px_count(&c->env->ctr->tls_handshake_failures, 1);
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
	struct px_http *h = arg;
	struct px_conn *c = h->c;
	(void)io;
	if (what & PX_IO_TLS) {
		tls_refused(h);
		return;
	}
	if ((what & PX_IO_TIMEOUT) && (h->state == PX_H_BODY || (h->state == PX_H_REQUEST && !h->req_done))) {
		px_log(PX_LOG_INFO, "request_timeout", "peer", c->peer, "why", "body idle", NULL);
		reply(h, 408, "REQUEST_TIMEOUT", "request body stalled", 1);
		return;
	}
	if ((what & PX_IO_EOF) && h->state == PX_H_PARKED && h->req_msg_complete) {
		/* the client half-closed after a whole request that waits for a fact: answer it,
		 * then close */
		h->close_after = 1;
		px_io_read(c->cio, 0);
		return;
	}
	if ((what & PX_IO_EOF) && h->state == PX_H_RESPONSE && h->req_sent) {
		/* the client half-closed after its request: finish the answer, then close */
		h->close_after = 1;
		px_io_read(c->cio, 0);
		return;
	}
	px_conn_close(c);
}

static void
up_readcb(struct px_io *io, void *arg)
{
	struct px_http *h = arg;
	(void)io;
	if (h->upstream_idle) {
		free_upstream(h); /* bytes from an idle backend: never reuse that connection */
		return;
	}
	handle_response(h);
}

static void
up_writecb(struct px_io *io, void *arg)
{
	struct px_http *h = arg;
	struct px_conn *c = h->c;
	(void)io;
	/* the upstream took the body down to the low watermark: read the client again */
	if (h->state == PX_H_REQUEST && !h->req_done)
		px_io_read(c->cio, 1);
}

static void
up_eventcb(struct px_io *io, short what, void *arg)
{
	struct px_http *h = arg;
	struct px_conn *c = h->c;
	(void)io;

	if (h->upstream_idle) {
		free_upstream(h); /* closed or expired while idle */
		return;
	}
	if (what & PX_IO_CONNECTED) {
		h->upstream_connected = 1;
		flush_request(h);
		return;
	}
	if (what & PX_IO_TLS) {
		/* the detail (verify result, alert) is for the operator's log, not the client */
		px_log(PX_LOG_WARN, "upstream_tls_failed", "peer", c->peer, "why", px_io_why(io), NULL);
		upstream_failed(h, 502, (what & PX_IO_TIMEOUT) ? "backend TLS handshake timed out"
		                                               : "backend TLS handshake failed");
		return;
	}
	if (what & PX_IO_TIMEOUT) {
		upstream_failed(h, h->upstream_connected ? 504 : 502,
		                h->upstream_connected ? "backend response timeout" : "backend connect timeout");
		return;
	}
	if ((what & PX_IO_EOF) && h->resp_started && h->resp_eof_body && !h->resp_done) {
		if (!handle_response(h) || !c->uio || h->resp_done)
			return;
		llhttp_finish(&h->resp_parser);
		h->resp_done = 1;
		h->upstream_reusable = 0;
		finish_transaction(h);
		return;
	}
	upstream_failed(h, 502, (what & PX_IO_EOF) ? "backend closed the connection"
	                                               : "backend connection error");
}
