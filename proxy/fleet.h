/*
 * proxy/fleet.h - the fleet store: syncgates sharing their switches, refusal budgets and
 * cache invalidations through Redis ([fleet]; docs/configuration.md).
 *
 * One client per process, on the main thread's loop (the admin's): two connections (commands,
 * and a subscriber to the change notices), each command bounded by [fleet] timeout, reconnects
 * with back-off. Workers never wait on it: they reach it only through px_shared's queues
 * (budget refusals, invalidations), and it changes their policy only through
 * px_shared_change_app(), like the admin API.
 *
 * Switches: the fleet holds what was set through any instance's admin API (one hash per app,
 * a version counter bumped by every write); the file holds everything else. Every instance
 * loads the whole snapshot at start and after every reconnect, takes the notices as a hint
 * and polls the version (a subscriber misses what was published while it was away). While
 * Redis is away the last known state is kept (and, with state_file, across a restart); flips
 * apply locally, and at the resync each is written if it is newer than the fleet's record.
 */
#ifndef SG_PROXY_FLEET_H
#define SG_PROXY_FLEET_H

#include <event2/event.h>
#include <stdint.h>

#include "policy/config.h"
#include "proxy/shared.h"

struct px_fleet;
struct px_fleet_wait;

/*
 * The client of CONF (a [fleet] section) on BASE, changing SH. The state_file, if any, is
 * applied before this returns; connecting starts at once, in the background. NULL on ENOMEM.
 */
struct px_fleet *px_fleet_new(struct event_base *base, struct px_shared *sh,
                              const struct pol_fleet *conf);
void px_fleet_free(struct px_fleet *fl);

/* The answer to an admin change: SHARED 1, or 0 with WHY ("redis unreachable (...)"). */
typedef void (*px_fleet_shared_cb)(void *arg, int shared, const char *why);

/*
 * Shares APP's change CH, which the caller has applied locally. Returns a handle: CB(ARG)
 * runs later from the loop, within the fleet's timeout, unless px_fleet_cancel() was called.
 * Returns NULL when it cannot be shared now, with WHY (WHYLEN bytes) saying why: the change
 * is kept and written at the next resync if it is still newer than the fleet's.
 */
struct px_fleet_wait *px_fleet_share(struct px_fleet *fl, const char *app,
                                     const struct pol_app_change *ch, px_fleet_shared_cb cb,
                                     void *arg, char *why, size_t whylen);
void px_fleet_cancel(struct px_fleet_wait *w);

enum px_fleet_notice { PX_FLEET_SWITCH, PX_FLEET_FORGET, PX_FLEET_BUDGET, PX_FLEET_NOTICES };

struct px_fleet_status {
	int connected;                  /* both connections up and the snapshot loaded */
	uint64_t version;               /* of the switches applied */
	uint64_t state_age_ms;          /* since the last snapshot or version check (or the
	                                 * state_file's save); UINT64_MAX: never */
	uint64_t stale_since_ms;        /* wall clock; 0 while connected */
	unsigned long long errors;
	unsigned long long notices[PX_FLEET_NOTICES]; /* received from other instances */
	const char *instance;
	const char *redis;
	char why[200];                  /* the last error, "" none */
};
void px_fleet_status(const struct px_fleet *fl, struct px_fleet_status *st);

#endif
