/*
 * proxy/stats.h - one worker's counters and decision table, and how the admin thread reads
 * them. The worker is the only writer of its own struct px_stats; the admin thread reads the
 * counters with relaxed atomic loads and the decision table through a snapshot published
 * every 250 ms under a lock (px_stats_publish), so the per-call path takes no lock.
 */
#ifndef SG_PROXY_STATS_H
#define SG_PROXY_STATS_H

#include <stdatomic.h>
#include <stddef.h>

#include "policy/call.h"
#include "policy/decide.h"

/* Upper bounds (seconds) of the request-latency buckets. */
#define PX_LATENCY_BUCKETS 12
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
	/* HTTP responses by [answered by the backend][status / 100] (0: syncgate's own) */
	_Atomic unsigned long long responses[2][6];
	/* the upstream's time to a response head, and lookups' time to an answer */
	_Atomic unsigned long long upstream_bucket[PX_LATENCY_BUCKETS + 1];
	_Atomic unsigned long long upstream_sum_us;
	_Atomic unsigned long long lookup_bucket[PX_LATENCY_BUCKETS + 1];
	_Atomic unsigned long long lookup_sum_us;
	/* per upstream (the config's index): requests sent, and failures of those */
	_Atomic unsigned long long budgets_exhausted, bans; /* refusal_budget, refusal_ban */
	_Atomic unsigned long long upstream_requests[POL_UPSTREAM_MAX];
	_Atomic unsigned long long upstream_failures[POL_UPSTREAM_MAX];
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

/* Counts a duration of US microseconds in histogram BUCKETS (PX_LATENCY_BUCKETS + 1) and SUM. */
static inline void
px_observe(_Atomic unsigned long long *buckets, _Atomic unsigned long long *sum, unsigned long long us)
{
	int b;
	for (b = 0; b < PX_LATENCY_BUCKETS && (double)us / 1e6 > px_latency_bounds[b]; b++)
		;
	px_count(&buckets[b], 1);
	px_count(sum, us);
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
const char *px_verdict_to_str(enum px_verdict v);

/* One row of the decision table: decisions by (app, operation, verdict). */
struct px_decision_count {
	char app[POL_APPID_MAX + 1];
	unsigned char op, verdict; /* enum pol_op, enum px_verdict */
	unsigned long long n;
};

struct px_stats;

/* NULL on ENOMEM. */
struct px_stats *px_stats_new(void);
void px_stats_free(struct px_stats *st);

/* The counters, for px_count() (valid as long as ST). */
struct px_counters *px_stats_counters(struct px_stats *st);

/*
 * Counts one decision. Returns the row's index (stable: rows are never removed), which
 * px_stats_decision_again() bumps without hashing, or -1 if it was not counted (the table
 * holds at most 4096 label sets: app ids come from clients).
 */
int px_stats_decision(struct px_stats *st, const char *app, enum pol_op op, enum px_verdict v);
void px_stats_decision_again(struct px_stats *st, int row);

/* Copies the decision table to the snapshot readers see (the worker, every 250 ms). */
void px_stats_publish(struct px_stats *st);

/* Readers (any thread). The sum over N workers' ALL of the counter at OFFSET in struct
 * px_counters. */
unsigned long long px_stats_sum(struct px_stats *const *all, int n, size_t offset);
#define PX_STATS_SUM(all, n, field) px_stats_sum(all, n, offsetof(struct px_counters, field))

/* The workers' published decision tables merged by label set into *OUT (malloc'd, the
 * caller frees it); returns the number of rows. */
int px_stats_decisions(struct px_stats *const *all, int n, struct px_decision_count **out);

/* ---- recent refusals (the admin console) ---- */

#define PX_REFUSALS_KEPT 200 /* per worker: the last ones, newest replacing oldest */
#define PX_REFUSAL_MINUTES 60 /* refusals per minute over the last hour */

/* One refused (or would-be refused) call, as the console lists it. Strings are cut to fit. */
struct px_refusal {
	unsigned long long time_ms;     /* wall clock, ms since the epoch */
	char app[POL_APPID_MAX + 1];
	char user[129];                 /* the realtime socket's user ("" over HTTP) */
	char op[24];
	char transport[8];
	char method[17];
	char path[160];
	char error_code[48];
	char reason[POL_REASON_MAX];
	int status;
	int report;                     /* report mode: would have been refused */
};

/* Keeps R among the worker's last refusals and counts it in its minute (the worker's own
 * thread; a short lock, taken only for refusals). */
void px_stats_refusal(struct px_stats *st, const struct px_refusal *r);

/* Readers (any thread): the LIMIT most recent refusals of all N workers, newest first, into
 * *OUT (malloc'd; the caller frees it); returns how many. */
int px_stats_refusals(struct px_stats *const *all, int n, int limit, struct px_refusal **out);

/* Refusals per minute for the PX_REFUSAL_MINUTES minutes up to the one of NOW_MS (OUT[last]
 * is the current minute), summed over the workers. */
void px_stats_refusal_minutes(struct px_stats *const *all, int n, unsigned long long now_ms,
                              unsigned long long out[PX_REFUSAL_MINUTES]);

#endif
