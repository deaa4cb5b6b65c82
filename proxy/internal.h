/*
 * proxy/internal.h - the structs proxy/'s modules share: a worker (struct px_server) and a
 * client connection (struct px_conn). Private to the .c files of proxy/; nothing outside proxy/ sees them.
 *
 * Ownership: a server owns its listeners, its connections (a list) and its idle upstream
 * pool. A connection owns its client px_io, at most one upstream px_io, its
 * timers and its WebSocket state. px_conn_close() is the one teardown path.
 */
#ifndef SG_PROXY_INTERNAL_H
#define SG_PROXY_INTERNAL_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <llhttp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <time.h>

#include "policy/call.h"
#include "policy/config.h"
#include "policy/decide.h"
#include "proxy/httpguard.h"
#include "proxy/io.h"

/* Watermarks for backpressure: stop reading side A while B's output holds more than HIGH;
 * resume when B's output has drained to LOW (le-proxy's drained_writecb). */
#define PX_HIGH_WATER (256 * 1024)
#define PX_LOW_WATER (64 * 1024)
/* A request body up to this size is received whole before anything reaches the backend, so
 * that a malformed chunked body is refused with not one byte forwarded (proxy_request_buffering). */
#define PX_REQUEST_BUFFER (64 * 1024)
#define PX_MAX_LISTENERS POL_MAX_LISTEN
/* The lingering close: how long, and how much, a closing connection keeps reading. */
#define PX_LINGER_MS 2000
#define PX_LINGER_BYTES (64 * 1024 * 1024) /* time is the real bound; this is a backstop */
/* Chunk-extension bytes allowed per chunk (RFC 9112 §7.1.1 sets no bound; llhttp 8.1 none). */
#define PX_MAX_CHUNK_EXT 4096

struct px_ws;

/*
 * Connection states. Invariants:
 *  HEAD      no upstream in use for this client; reading the next request head.
 *  REQUEST   a request was approved; its bytes go (or are buffered) to the upstream;
 *            the response may already be arriving (early responses).
 *  RESPONSE  the whole request reached the upstream; relaying the response.
 *  UPGRADING an upgrade request was forwarded; client input is held until the backend's 101.
 *  WS        a WebSocket relay (px_ws) owns both sockets' callbacks.
 *  CLOSING   flushing the last output to the client; nothing more is read.
 */
enum px_conn_state { PX_C_HEAD, PX_C_REQUEST, PX_C_RESPONSE, PX_C_UPGRADING, PX_C_WS,
                     PX_C_CLOSING };

struct px_server;

struct px_conn {
	struct px_server *srv;
	struct px_conn *prev, *next;
	struct px_io *cio;              /* client */
	struct px_io *uio;              /* upstream, while in use */
	enum px_conn_state state;
	struct pol_config *cfg;         /* the policy this request is decided on (a reference) */
	struct px_ws *ws;               /* after an upgrade */
	/* (the fields above are the first 64 bytes: every callback starts from them) */
	char peer[64];                  /* client address, for X-Forwarded-For and logs */
	int peer_v6;
	char fwd[200];                  /* the X-Forwarded-* / Forwarded lines for this peer */
	int counted;                    /* in stats.connections_open */
	int peer_counted;               /* in px_main's per-address table */
	int lingering;                  /* answer written, FIN sent, discarding input */
	int nodelay;                    /* TCP_NODELAY is set on the client socket */
	size_t linger_bytes;
	char id[24];                    /* "w<worker>-<n>": the socket in decision and close lines */
	size_t fwd_len;
	struct event *timer;            /* header deadline / keep-alive idle / response timeout */
	int timer_kind;

	/* the current request */
	char req_line[300];             /* "METHOD /path" (no query: it may hold a signature) */
	uint64_t req_start_us;
	llhttp_t req_parser;
	llhttp_settings_t req_settings;
	struct px_head_info req;
	int req_method_head;            /* HEAD: the response has no body */
	int req_done;                   /* the whole request was read from the client */
	int req_sent;                   /* ... and handed to the upstream */
	int req_msg_complete;           /* llhttp saw message complete in the last execute */
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
	int out_paused;                 /* HEAD: requests wait unread while the client's output
	                                 * is above PX_HIGH_WATER (it does not read its answers) */

	/* the current response */
	struct evbuffer *resp_buf;      /* bytes for the client, written out by send_buffer() */
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

/* The realtime socket's user id, "" for any other connection (log fields). */
static inline const char *
px_conn_user(const struct px_conn *c)
{
	return c->user ? c->user : "";
}

/* Prometheus counters of one worker: written by it, read by the admin thread (atomics). */
#define PX_LATENCY_BUCKETS 12
/* Upper bounds (seconds) of the request-latency buckets: http.c fills them, admin.c labels them. */
extern const double px_latency_bounds[PX_LATENCY_BUCKETS];
struct px_counters {
	_Atomic unsigned long long http_requests, http_refused, http_bad, upstream_errors;
	_Atomic unsigned long long ws_opened, ws_closed, ws_frames_in, ws_frames_out, ws_refused;
	_Atomic unsigned long long lookups, lookup_cache_hits, lookup_errors;
	_Atomic unsigned long long lookup_cache_facts, lookup_cache_bytes; /* gauges */
	_Atomic unsigned long long connections_open;
	_Atomic unsigned long long tls_handshake_failures; /* client side */
	_Atomic unsigned long long latency_bucket[PX_LATENCY_BUCKETS + 1]; /* HTTP, +Inf last */
	_Atomic unsigned long long latency_sum_us;
};

/*
 * Adds N to one of the calling worker's own counters. One writer per counter, so a plain
 * load and store (no locked instruction on the per-frame path), atomic only so that the admin
 * thread's relaxed loads see whole values.
 */
static inline void
px_count(_Atomic unsigned long long *c, unsigned long long n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

/*
 * The decision-table verdict of final decision D (not NEED_FACT): PX_V_EXISTS for a 409 (what
 * a createIfNotExists asked for is there: the SDK takes it as success, so it is not counted
 * or logged as a refusal that alerts would fire on), else refuse / would_refuse / allow.
 */
enum px_verdict { PX_V_ALLOW, PX_V_REFUSE, PX_V_WOULD_REFUSE, PX_V_EXISTS, PX_V_COUNT };
static inline enum px_verdict
px_verdict_of(const struct pol_decision *d)
{
	if (d->status == 409 && (d->verdict == POL_DENY || d->would_deny))
		return PX_V_EXISTS;
	return d->verdict != POL_ALLOW ? PX_V_REFUSE : d->would_deny ? PX_V_WOULD_REFUSE : PX_V_ALLOW;
}
/* Its name in /metrics and as the event of a decision's log line. */
static inline const char *
px_verdict_to_str(enum px_verdict v)
{
	static const char *const names[PX_V_COUNT] = {"allow", "refuse", "would_refuse", "exists"};
	return (unsigned)v < PX_V_COUNT ? names[v] : "?";
}

/* Decisions by (app, operation, verdict), for /metrics: a worker-local table with a lock,
 * since the admin thread reads it. */
struct px_decision_count {
	char app[POL_APPID_MAX + 1];
	unsigned char op, verdict; /* enum px_verdict */
	unsigned long long n;
};

struct px_main;

struct px_server {
	struct px_main *main;
	int id;                         /* worker number */
	struct event_base *base;
	struct pol_config *cfg;         /* this worker's view of the policy (see px_server_refresh) */
	unsigned long gen;              /* the px_main generation cfg was taken at */
	struct pol_classifier *classifier;
	struct evconnlistener *listeners[PX_MAX_LISTENERS];
	int nlisteners;
	struct px_conn *conns;
	int nconns;
	char *ws_scratch;               /* one unmasked client message at a time (ws.c) */
	size_t ws_scratch_size;
	struct px_lookups *lookups;     /* lookup.c: cache and requests in flight */
	struct sockaddr_storage up_addr;
	socklen_t up_addrlen;
	SSL_CTX *tls_server;            /* listeners' TLS context (NULL: no tls listener) */
	SSL_CTX *tls_client;            /* upstream TLS context (NULL: plain upstream) */
	SSL_SESSION *up_session;        /* the last upstream session, resumed by new connections */
	struct px_io **pool;            /* idle upstream connections */
	int npool, cpool;
	int draining;
	struct event *stop_ev, *drain_timer;
	struct event *accept_resume;    /* re-enables the listeners after a burst of accepts */
	int accepted_turn;              /* TLS accepts since the listeners were last (re-)enabled */
	struct px_counters stats;
	/* decision counts: the worker's own table (no lock on the hot path), copied to the
	 * snapshot the admin thread reads every 250 ms, under dlock */
	struct px_decision_count *dc;
	int ndc, cdc;
	int *dc_index;                  /* open addressing over dc, DC_SLOTS entries */
	pthread_mutex_t dlock;
	struct px_decision_count *decisions; /* the snapshot */
	int ndecisions, cdecisions;
	pthread_t thread;
	unsigned long long next_conn_id;
	evutil_socket_t stop_fd[2];     /* main writes to [1] to stop this worker (no libevent
	                                 * locking: no other thread ever touches this base) */
	struct evbuffer *access;        /* access lines, written every 250 ms or 4 KiB */
	struct event *access_timer;
};

/*
 * The process: the policy every worker follows, and what changes it. CFG is the file's
 * config with the admin API's overrides applied; a change builds a new one, swaps it under
 * LOCK and bumps GEN, which workers compare with one atomic load per request or frame.
 */
struct px_override {
	char app[POL_APPID_MAX + 1];
	struct pol_app_change ch;
};

struct px_main {
	pthread_mutex_t lock;
	struct pol_config *file_cfg;
	struct pol_config *cfg;
	SSL_CTX *tls_server, *tls_client; /* built from file_cfg; swapped with it on reload */
	_Atomic unsigned long gen;
	struct px_override *ov;
	int nov;
	char *path;
	struct event_base *base;        /* signals and the admin listener */
	struct event *sig_term, *sig_int, *sig_hup;
	struct px_server **workers;
	int nworkers;
	struct px_admin *admin;
	time_t started;
	/* connections per client address, across workers (max_connections_per_client) */
	pthread_mutex_t peers_lock;
	struct px_peer_count *peers[1024];
};

struct px_peer_count {
	struct px_peer_count *next;
	unsigned count;
	char addr[64];
};

/* Counts a connection from ADDR; returns 0, or -1 (not counted) if ADDR is at CAP. */
int px_main_peer_add(struct px_main *m, const char *addr, unsigned cap);
void px_main_peer_remove(struct px_main *m, const char *addr);

/* proxy/http.c: TLS says the listener terminates TLS (srv->tls_server). */
void px_conn_accept(struct px_server *srv, evutil_socket_t fd, struct sockaddr *sa, int salen,
                    int tls);
void px_conn_close(struct px_conn *c);
/* Enters CLOSING: the connection is closed from the loop once its output is written. */
void px_conn_close_when_flushed(struct px_conn *c);
/* Writes a complete syncgate-made response; CLOSE adds Connection: close and closes after. */
void px_conn_reply(struct px_conn *c, int status, const char *error_code, const char *reason,
                   int close);

/* proxy/upstream.c */
struct px_io *px_upstream_get(struct px_server *srv, int *reused);
void px_upstream_put(struct px_server *srv, struct px_io *bev);
void px_upstream_pool_free(struct px_server *srv);

/* proxy/ws.c: takes over C after a valid 101 (both sockets). */
void px_ws_start(struct px_conn *c);
void px_ws_free(struct px_ws *ws);
/* Drain: a 1001 close frame to the client of realtime relay C (when the backend is between
 * messages), the backend side closed; C closes once the frame is written, so SDKs reconnect
 * elsewhere at once instead of waiting out the grace period. */
void px_ws_going_away(struct px_conn *c);

/* proxy/server.c */
void px_server_conn_gone(struct px_server *srv);
void px_server_refresh_slow(struct px_server *srv);
/* Takes the newest policy if it changed: call at the start of each request and frame. */
static inline void
px_server_refresh(struct px_server *srv)
{
	if (atomic_load_explicit(&srv->main->gen, memory_order_acquire) != srv->gen)
		px_server_refresh_slow(srv);
}
/* Counts one decision for /metrics (VERDICT: enum px_verdict). Returns
 * the entry's index in srv->dc (stable: entries are never removed), or -1 if not counted. */
int px_server_count_decision(struct px_server *srv, const char *app, enum pol_op op, int verdict);
/* Policy changes, from the admin API (returns 0, or 404 for an unknown app, 400). */
int px_main_change_app(struct px_main *m, const char *app, const struct pol_app_change *ch);

#endif
