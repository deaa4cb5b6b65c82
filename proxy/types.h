/*
 * proxy/types.h - the bodies of the two structs the connection modules share: a worker's
 * environment (struct px_env), which a connection is handed at accept, and the connection
 * itself (struct px_conn). Private to proxy/.
 *
 * Who writes what: conn.c alone creates, closes and frees a connection and writes its
 * fields (cio, uio, timer, phase, proto); a protocol handler (http.c, ws.c, tunnel.c) reads
 * them and changes them only through conn.h. worker.c alone writes the environment; the
 * handlers read it. Nothing here points up: a handler reaches the worker only through the
 * hooks the worker set (refresh, conn_gone), never by name.
 */
#ifndef SG_PROXY_TYPES_H
#define SG_PROXY_TYPES_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stddef.h>

#include "policy/call.h"
#include "policy/config.h"
#include "proxy/io.h"
#include "proxy/stats.h"

/* Watermarks for backpressure: stop reading side A while B's output holds more than HIGH;
 * resume when B's output has drained to LOW (le-proxy's drained_writecb). */
#define PX_HIGH_WATER (256 * 1024)
#define PX_LOW_WATER (64 * 1024)

struct px_conn;
struct px_police;
struct px_upstream;
struct px_shared;

/* One worker's environment: what every connection of the worker uses. */
struct px_env {
	struct event_base *base;
	int id;                         /* worker number */
	struct pol_config *cfg;         /* the worker's view of the policy (px_env_refresh) */
	unsigned long gen;              /* the shared generation CFG was taken at */
	const _Atomic unsigned long *shared_gen;
	void (*refresh)(struct px_env *env); /* the worker's: takes the newest policy */
	void (*conn_gone)(struct px_env *env); /* the worker's: a connection was freed */
	struct px_counters *ctr;        /* this worker's counters */
	struct px_stats *stats;
	struct px_police *police;
	struct pol_classifier *classifier;
	struct px_upstream *ups[POL_UPSTREAM_MAX]; /* the config's upstreams, by index */
	int nups;
	struct px_upstream *up;         /* ups[0], the default upstream */
	struct px_shared *shared;       /* per-address connection counts */
	SSL_CTX *tls_server;            /* listeners' TLS context (NULL: no tls listener) */
	char *ws_scratch;               /* one unmasked client message at a time (ws.c) */
	size_t ws_scratch_size;
	struct evbuffer *access;        /* access lines, written every 250 ms or 4 KiB */
	int draining;                   /* shutting down: no keep-alive, no new upstreams */
	struct px_conn *conns;          /* every open connection (conn.c keeps the list) */
	int nconns;
	unsigned long long next_conn_id;
};

/* Takes the newest policy if it changed: call at the start of each request and frame. */
static inline void
px_env_refresh(struct px_env *env)
{
	if (atomic_load_explicit(env->shared_gen, memory_order_acquire) != env->gen)
		env->refresh(env);
}

/*
 * The protocol handler that owns a connection now (http.c, then ws.c or tunnel.c after an
 * upgrade), set with px_conn_set_proto(). conn.c calls these and nothing else of it.
 */
struct px_proto {
	const char *name;
	/* OBJ is released: the connection closes, or begins its final flush. C stays valid;
	 * the handler must not write to it or arm anything on it. */
	void (*release)(struct px_conn *c, void *obj);
	/* The worker is shutting down: end the connection when it is idle (may close C). */
	void (*drain)(struct px_conn *c, void *obj);
};

/*
 * Phases. Invariants:
 *  OPEN       the protocol handler (proto) owns both sockets' callbacks.
 *  CLOSING    the handler is released (or about to be, from the loop); the last output is
 *             flushed to the client; nothing more is read; the upstream is gone.
 *  LINGERING  FIN sent; input is read and discarded until the client closes or time is up.
 */
enum px_conn_phase { PX_CONN_OPEN, PX_CONN_CLOSING, PX_CONN_LINGERING };

struct px_conn {
	struct px_env *env;
	struct px_io *cio;              /* client */
	struct px_io *uio;              /* upstream, while in use */
	const struct px_proto *proto;   /* NULL once released */
	void *obj;                      /* the handler's state */
	enum px_conn_phase phase;
	struct pol_config *cfg;         /* the policy this connection's current request runs on */
	struct px_conn *prev, *next;    /* in env->conns */
	struct event *timer;            /* one timer; its use is the current owner's */
	void (*timer_fn)(struct px_conn *c);
	char peer[64];                  /* client address, for X-Forwarded-For and logs */
	char id[24];                    /* "w<worker>-<n>": the socket in decision and close lines */
	char fwd[200];                  /* the X-Forwarded-* / Forwarded lines for this peer */
	size_t fwd_len;
	int peer_v6;
	int counted;                    /* in connections_open */
	int peer_counted;               /* in the per-address table */
	int nodelay;                    /* TCP_NODELAY is set on the client socket */
	int quiet;                      /* the client sent a whole request and nothing since:
	                                 * no lingering close is needed */
	struct event *pre;              /* proxy_protocol listener: reads the PROXY header */
	void (*ready)(struct px_conn *c); /* ... then this takes the connection */
	int pre_tls;                    /* ... and TLS starts first */
	size_t linger_bytes;
};

#endif
