/*
 * proxy/admin.h - the admin listener ([admin] listen), on the main thread, apart from traffic.
 *
 *   GET /healthz        200 while the process runs
 *   GET /readyz         200 if the backend accepts a connection now, else 503
 *   GET /metrics        Prometheus text format (decision counts lag by at most 250 ms)
 *   GET /apps           the effective switches of every configured app and [app:*], and
 *                       where each comes from (the file, or a PUT since it was read)
 *   GET /apps/{appId}   the same for one app (404: no [app:...] section)
 *   PUT /apps/{appId}   {"user_sync": "on|off", "conversation_sync": "on|off",
 *                        "mode": "enforce|report"}: applies to the next call on every socket
 *
 * With a token_file, every request needs "Authorization: Bearer <token>" (else 401).
 * One request per connection; bodies up to 64 KiB.
 */
#ifndef SG_PROXY_ADMIN_H
#define SG_PROXY_ADMIN_H

#include <event2/event.h>
#include <time.h>

#include "policy/config.h"

struct px_shared;
struct px_stats;
struct px_upstream;
struct px_admin;
struct px_fleet;

/* What the admin endpoint reads and changes (all outlive it). */
struct px_admin_env {
	struct event_base *base;        /* the main thread's loop */
	struct px_shared *shared;       /* the policy: read, and changed by PUT /apps */
	struct px_stats *const *stats;  /* the workers' counters and decision tables */
	int nworkers;
	struct px_upstream *const *ups; /* /readyz connects to each (the main thread's instances) */
	int nups;
	struct px_fleet *fleet;         /* [fleet]: PUT /apps shares through it (NULL: none) */
	time_t started;
};

/* Listens on CFG's [admin] listen. NULL (logged) if it cannot. */
struct px_admin *px_admin_new(const struct px_admin_env *env, const struct pol_config *cfg);
void px_admin_free(struct px_admin *a);

#endif
