/*
 * proxy/worker.h - one worker thread: its event loop, its share of the listeners (dup()s of
 * the process's sockets), accept pacing, its connections, its upstream, lookups and police,
 * the policy refresh, and the drain at shutdown. Nothing of a worker is touched by another
 * thread except through px_worker_stop() and its stats (read with atomics and a snapshot).
 */
#ifndef SG_PROXY_WORKER_H
#define SG_PROXY_WORKER_H

#include <event2/event.h>
#include <sys/socket.h>

#include "policy/config.h"

struct px_shared;
struct px_stats;
struct px_worker;
struct px_upstream_addr;

/*
 * Worker ID over the policy SH publishes, accepting on dup()s of the NLISTEN bound sockets
 * LISTEN_FDS (listen address I of the policy says whether socket I is TLS), relaying to the
 * policy's upstreams, upstream I at ADDRS[I]. NULL (logged) on failure.
 */
struct px_worker *px_worker_new(int id, struct px_shared *sh, const struct px_upstream_addr *addrs,
                                const evutil_socket_t *listen_fds, int nlisten);
void px_worker_free(struct px_worker *w);

/* The worker's loop: the caller runs it (px_worker_run) on its own thread, or on the main
 * thread when there is one worker. */
struct event_base *px_worker_base(struct px_worker *w);
/* Runs the loop on a new thread; 0, or -1. px_worker_join() waits for its end. */
int px_worker_spawn(struct px_worker *w);
void px_worker_join(struct px_worker *w);

/* From any thread: the worker stops accepting, drains its connections (shutdown_grace at
 * most) and ends its loop. */
void px_worker_stop(struct px_worker *w);

struct px_stats *px_worker_stats(struct px_worker *w);

/* Writes the worker's buffered access lines now (after its loop ended, before "exit"). */
void px_worker_flush_logs(struct px_worker *w);

#endif
