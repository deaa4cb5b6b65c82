/*
 * proxy/conn.h - a client connection from accept to the one teardown path: its sockets, its
 * timer, the final flush and the lingering close, its counts (struct bodies: types.h).
 *
 * A connection is owned by one protocol handler at a time (px_conn_set_proto); conn.c never
 * calls a handler except through the struct px_proto hooks, so it sits below them all.
 * Functions that may free C say so; callers return right after them.
 */
#ifndef SG_PROXY_CONN_H
#define SG_PROXY_CONN_H

#include <sys/socket.h>
#include <time.h>

#include "proxy/types.h"

/* The lingering close: how long, and how much, a closing connection keeps reading. */
#define PX_LINGER_MS 2000
#define PX_LINGER_BYTES (64 * 1024 * 1024) /* time is the real bound; this is a backstop */

/*
 * A connection for accepted socket FD from SA on ENV's loop; TLS: the listener terminates
 * TLS (the handshake starts now). Counted and listed in ENV. Returns NULL when it was
 * refused (max_connections_per_client: a 429 on plain sockets) or could not be built; the
 * socket is closed then. The caller sets a protocol handler at once.
 */
struct px_conn *px_conn_new(struct px_env *env, evutil_socket_t fd, const struct sockaddr *sa,
                            int tls);

/*
 * The same for a proxy_protocol listener: the connection's first bytes must be a PROXY v1 or
 * v2 header (read exactly, nothing after it, within tls_handshake), whose source address
 * becomes C's peer; then the per-address cap applies, TLS starts if TLS, and READY(C) takes
 * the connection. No header, a malformed one or none in time closes the socket (logged).
 */
void px_conn_new_proxied(struct px_env *env, evutil_socket_t fd, const struct sockaddr *sa,
                         int tls, void (*ready)(struct px_conn *c));

/* Hands C to handler PROTO with state OBJ (NULL, NULL: none). The previous handler has
 * released its own state. */
void px_conn_set_proto(struct px_conn *c, const struct px_proto *proto, void *obj);

/* The one teardown path: the handler released, both sockets and the timer freed, counts
 * dropped, C freed. Tolerates a half-built connection. */
void px_conn_close(struct px_conn *c);

/* Ends C once its output is written: reading stops now; from the loop the handler is
 * released (it may pool the upstream) and the upstream freed; after the flush comes the
 * lingering close, unless C->quiet (set by the handler: a whole request was read) still
 * holds. Does not free C at once (the caller's callback may go on reading its fields, not
 * writing them). */
void px_conn_close_when_flushed(struct px_conn *c);

/* The same from a handler that is done with C (and returns at once): released now; with
 * nothing left to write, C goes straight to the lingering close, or is freed (quiet). */
void px_conn_finish(struct px_conn *c);

/* Arms C's timer: FN(C) runs after MS (replacing whatever was armed). FN may close C. */
void px_conn_timer(struct px_conn *c, unsigned ms, void (*fn)(struct px_conn *c));
void px_conn_timer_stop(struct px_conn *c);
/* A relay's idle deadline (ws_idle) from its timer: 1 (logged) if LAST, its last byte either
 * way, is that long ago (the caller closes C), else the timer is re-armed with FN for the
 * rest and 0 is returned. */
int px_conn_idle_over(struct px_conn *c, time_t last, void (*fn)(struct px_conn *c));

/* Frees the upstream connection, if any. */
void px_conn_drop_upstream(struct px_conn *c);

/* TCP_NODELAY on the client socket, once it may carry small writes after unacknowledged
 * ones (nginx's tcp_nodelay): a kept-alive connection, a WebSocket, TLS. */
void px_conn_nodelay(struct px_conn *c);

/* Shutdown: each connection's handler is asked to end it when idle. */
void px_conn_drain_all(struct px_env *env);
/* Closes every connection of ENV now. */
void px_conn_close_all(struct px_env *env);

#endif
