/*
 * proxy/upstream.h - one upstream, as one worker (or the admin thread) uses it: the
 * resolved address, the Host it is named by, its TLS client context and SNI (through the
 * config), the last TLS session (resumed by new connections), and the idle keep-alive pool.
 *
 * One struct px_upstream per upstream of the config (the default and each [upstream:NAME])
 * per thread that connects: the pool and the session cache are that thread's, never locked.
 */
#ifndef SG_PROXY_UPSTREAM_H
#define SG_PROXY_UPSTREAM_H

#include <event2/event.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include "policy/config.h"
#include "proxy/io.h"

struct px_upstream;

/* An upstream's resolved address (process.c resolves each once, at start). */
struct px_upstream_addr {
	struct sockaddr_storage sa;
	socklen_t len;
};

/*
 * Upstream IDX of CFG (its name, Host, SNI and verification names, pool size) at SA (copied)
 * for the loop BASE. TLS (may be NULL: plain) and CFG are referenced (px_upstream_update
 * swaps them; the upstream set, and so IDX, never changes in a process's life). POOL says
 * whether idle connections are kept. NULL on ENOMEM.
 */
struct px_upstream *px_upstream_new(struct event_base *base, int idx, const struct sockaddr *sa,
                                    socklen_t salen, SSL_CTX *tls, struct pol_config *cfg, int pool);
void px_upstream_free(struct px_upstream *up);

/* A new policy or TLS context (a reload): later connections use them. A changed context
 * drops the cached session (one verified under the old CA is not resumed). */
void px_upstream_update(struct px_upstream *up, SSL_CTX *tls, struct pol_config *cfg);

/*
 * A connection: an idle pooled one (*REUSED = 1: connected, no event follows), else a new
 * one that reports PX_IO_CONNECTED (after the TLS handshake for https) or an error. The
 * caller owns it and sets its callbacks. NULL if no socket could be made.
 */
struct px_io *px_upstream_get(struct px_upstream *up, int *reused);

/* Returns a clean, idle, connected IO to the pool (or frees it: pool full, draining, bytes
 * pending either way). IO's callbacks are replaced. */
void px_upstream_put(struct px_upstream *up, struct px_io *io);

/* Frees the idle pool and keeps no connection from now on (shutdown). */
void px_upstream_drain(struct px_upstream *up);

/* The Host it is named by: a named upstream's host, else "host:port" as configured. */
const char *px_upstream_host(const struct px_upstream *up);
/* The Host relayed requests carry instead of the client's, or NULL (the default upstream:
 * the client's Host goes as it came). */
const char *px_upstream_host_header(const struct px_upstream *up);
int px_upstream_index(const struct px_upstream *up);
const char *px_upstream_name(const struct px_upstream *up);

#endif
