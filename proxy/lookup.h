/*
 * proxy/lookup.h - facts for policy's NEED_FACT verdicts (protocol.md 4, 7.5): does user U
 * exist, does conversation C exist and who are its participants. Found with REST GETs to the
 * backend using the app's secret key, asynchronously on the worker's loop; deduplicated
 * while in flight; cached (positive facts for lookup_cache_ttl, negative ones for
 * lookup_negative_ttl); bounded by lookup_timeout and lookup_max_inflight.
 *
 * Any failure (no secret key, backend unreachable, timeout, a status other than 200/404, a
 * malformed body, capacity) gives PX_LOOKUP_ERROR, which policy turns into a refusal.
 */
#ifndef SG_PROXY_LOOKUP_H
#define SG_PROXY_LOOKUP_H

#include <event2/event.h>
#include <stddef.h>

#include "policy/config.h"
#include "proxy/stats.h"

struct px_upstream;
struct px_lookups;

enum px_lookup_kind { PX_LOOKUP_USER, PX_LOOKUP_CONVERSATION };
enum px_lookup_state { PX_LOOKUP_ERROR = -1, PX_LOOKUP_ABSENT = 0, PX_LOOKUP_PRESENT = 1 };

/* A looked-up fact. For a conversation, the participants are searchable while the result is
 * (it belongs to the cache and must not be kept past the callback). */
struct px_fact;

typedef void (*px_lookup_cb)(const struct px_fact *f, void *arg);

/*
 * A worker's lookups on BASE, asking upstream UP (its Host and pool), counting in CTR, with
 * the limits of *CFG as it is at each call (the worker's current policy). NULL on ENOMEM.
 */
struct px_lookups *px_lookups_new(struct event_base *base, struct px_upstream *up,
                                  struct px_counters *ctr, struct pol_config *const *cfg);
/* Fails every lookup in flight (their callbacks run) and frees the cache. */
void px_lookups_free(struct px_lookups *lk);

/*
 * Answers KIND / ID of APP. If the fact is cached the callback runs before this returns and
 * NULL is returned; otherwise it runs later from the loop and a handle is returned that
 * px_lookup_cancel() can use while the callback has not run. (F is never NULL.)
 */
struct px_lookup_waiter *px_lookup(struct px_lookups *lk, const struct pol_app *app,
                                   enum px_lookup_kind kind, const char *id, size_t idlen,
                                   px_lookup_cb cb, void *arg);

/* The callback of W will not run (its owner is going away). */
void px_lookup_cancel(struct px_lookup_waiter *w);

enum px_lookup_state px_fact_state(const struct px_fact *f);
/* For a present conversation: is UID a participant? */
int px_fact_has_participant(const struct px_fact *f, const char *uid, size_t len);
const char *px_fact_error(const struct px_fact *f);

/* Drops a cached fact after syncgate forwarded a call that may change it. */
void px_lookup_forget(struct px_lookups *lk, const char *app, enum px_lookup_kind kind,
                      const char *id, size_t idlen);
/* Drops every cached fact (invalidations were missed: see px_shared_forgets()). */
void px_lookup_forget_all(struct px_lookups *lk);


#endif
