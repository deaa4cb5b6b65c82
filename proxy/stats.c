/*
 * proxy/stats.c - counters and the decision table (contract in stats.h).
 */
#include "proxy/stats.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double px_latency_bounds[PX_LATENCY_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05, 0.1, 0.25, 0.5, 1, 5};

#define DC_MAX 4096  /* label sets per worker: app ids come from clients, so they are capped */
#define DC_SLOTS 8192

struct px_stats {
	struct px_counters c;
	/* the worker's own table (no lock on the hot path) ... */
	struct px_decision_count *dc;
	int ndc, cdc;
	int *dc_index; /* open addressing over dc, DC_SLOTS entries */
	/* ... copied to the snapshot readers see, under dlock */
	pthread_mutex_t dlock;
	struct px_decision_count *snap;
	int nsnap, csnap;
	/* the last refusals (a ring) and the count per minute, under rlock */
	pthread_mutex_t rlock;
	struct px_refusal *ring;        /* PX_REFUSALS_KEPT, allocated at the first refusal */
	unsigned long long nring;       /* refusals kept so far (ring index = nring % KEPT) */
	unsigned long long minute[PX_REFUSAL_MINUTES]; /* the minute (ms / 60000) of each slot */
	unsigned long long per_minute[PX_REFUSAL_MINUTES];
};

const char *
px_verdict_to_str(enum px_verdict v)
{
	static const char *const names[PX_V_COUNT] = {"allow", "refuse", "would_refuse", "exists"};
	return (unsigned)v < PX_V_COUNT ? names[v] : "?";
}

struct px_stats *
px_stats_new(void)
{
	struct px_stats *st = calloc(1, sizeof *st);

	if (!st)
		return NULL;
	st->dc_index = malloc(DC_SLOTS * sizeof *st->dc_index);
	if (!st->dc_index) {
		free(st);
		return NULL;
	}
	memset(st->dc_index, 0xff, DC_SLOTS * sizeof *st->dc_index);
	pthread_mutex_init(&st->dlock, NULL);
	pthread_mutex_init(&st->rlock, NULL);
	return st;
}

void
px_stats_free(struct px_stats *st)
{
	if (!st)
		return;
	pthread_mutex_destroy(&st->dlock);
	pthread_mutex_destroy(&st->rlock);
	free(st->ring);
	free(st->dc);
	free(st->dc_index);
	free(st->snap);
	free(st);
}

struct px_counters *
px_stats_counters(struct px_stats *st)
{
	return &st->c;
}

static unsigned
dc_hash(const char *app, enum pol_op op, int verdict)
{
	unsigned h = 2166136261u ^ (unsigned)op * 31u ^ (unsigned)verdict * 7u;
	for (; *app; app++)
		h = (h ^ (unsigned char)*app) * 16777619u;
	return h;
}

int
px_stats_decision(struct px_stats *st, const char *app, enum pol_op op, enum px_verdict v)
{
	unsigned slot = dc_hash(app, op, (int)v) % DC_SLOTS;
	int i;

	while ((i = st->dc_index[slot]) >= 0) {
		struct px_decision_count *d = &st->dc[i];
		if (d->op == op && d->verdict == v && !strcmp(d->app, app)) {
			d->n++;
			return i;
		}
		slot = (slot + 1) % DC_SLOTS;
	}
	if (st->ndc >= DC_MAX)
		return -1;
	if (st->ndc == st->cdc) {
		int nc = st->cdc ? st->cdc * 2 : 64;
		struct px_decision_count *nd = realloc(st->dc, (size_t)nc * sizeof *nd);
		if (!nd)
			return -1;
		st->dc = nd;
		st->cdc = nc;
	}
	i = st->ndc++;
	snprintf(st->dc[i].app, sizeof st->dc[i].app, "%s", app);
	st->dc[i].op = (unsigned char)op;
	st->dc[i].verdict = (unsigned char)v;
	st->dc[i].n = 1;
	st->dc_index[slot] = i;
	return i;
}

void
px_stats_decision_again(struct px_stats *st, int row)
{
	st->dc[row].n++;
}

void
px_stats_publish(struct px_stats *st)
{
	pthread_mutex_lock(&st->dlock);
	if (st->ndc > st->csnap) {
		struct px_decision_count *n = realloc(st->snap, (size_t)st->cdc * sizeof *n);
		if (!n) {
			pthread_mutex_unlock(&st->dlock);
			return;
		}
		st->snap = n;
		st->csnap = st->cdc;
	}
	if (st->ndc)
		memcpy(st->snap, st->dc, (size_t)st->ndc * sizeof *st->dc);
	st->nsnap = st->ndc;
	pthread_mutex_unlock(&st->dlock);
}

unsigned long long
px_stats_sum(struct px_stats *const *all, int n, size_t offset)
{
	unsigned long long s = 0;
	int w;
	for (w = 0; w < n; w++)
		s += atomic_load_explicit((_Atomic unsigned long long *)((char *)&all[w]->c + offset),
		                          memory_order_relaxed);
	return s;
}

int
px_stats_decisions(struct px_stats *const *all, int nw, struct px_decision_count **out)
{
	struct px_decision_count *rows = NULL;
	int n = 0, cap = 0, w, i, k;

	for (w = 0; w < nw; w++) {
		struct px_stats *s = all[w];
		pthread_mutex_lock(&s->dlock);
		for (i = 0; i < s->nsnap; i++) {
			const struct px_decision_count *d = &s->snap[i];
			for (k = 0; k < n; k++)
				if (rows[k].op == d->op && rows[k].verdict == d->verdict && !strcmp(rows[k].app, d->app))
					break;
			if (k == n) {
				if (n == cap) {
					int nc = cap ? cap * 2 : 64;
					struct px_decision_count *nr = realloc(rows, (size_t)nc * sizeof *nr);
					if (!nr)
						break;
					rows = nr;
					cap = nc;
				}
				rows[n] = *d;
				rows[n++].n = 0;
			}
			rows[k].n += d->n;
		}
		pthread_mutex_unlock(&s->dlock);
	}
	*out = rows;
	return n;
}

/* ---- recent refusals ---- */

void
px_stats_refusal(struct px_stats *st, const struct px_refusal *r)
{
	unsigned long long m = r->time_ms / 60000;
	int slot = (int)(m % PX_REFUSAL_MINUTES);

	pthread_mutex_lock(&st->rlock);
	if (!st->ring)
		st->ring = calloc(PX_REFUSALS_KEPT, sizeof *st->ring); /* (NULL: only counted) */
	if (st->ring)
		st->ring[st->nring++ % PX_REFUSALS_KEPT] = *r;
	if (st->minute[slot] != m) {
		st->minute[slot] = m;
		st->per_minute[slot] = 0;
	}
	st->per_minute[slot]++;
	pthread_mutex_unlock(&st->rlock);
}

static int
newest_first(const void *a, const void *b)
{
	unsigned long long x = ((const struct px_refusal *)a)->time_ms;
	unsigned long long y = ((const struct px_refusal *)b)->time_ms;
	return x < y ? 1 : x > y ? -1 : 0;
}

int
px_stats_refusals(struct px_stats *const *all, int n, int limit, struct px_refusal **out)
{
	struct px_refusal *v = malloc((size_t)(n > 0 ? n : 1) * PX_REFUSALS_KEPT * sizeof *v);
	int i, k = 0;

	*out = v;
	if (!v)
		return 0;
	for (i = 0; i < n; i++) {
		struct px_stats *st = all[i];
		unsigned long long j, kept;
		pthread_mutex_lock(&st->rlock);
		kept = st->ring ? (st->nring < PX_REFUSALS_KEPT ? st->nring : PX_REFUSALS_KEPT) : 0;
		for (j = 0; j < kept; j++)
			v[k++] = st->ring[(st->nring - 1 - j) % PX_REFUSALS_KEPT];
		pthread_mutex_unlock(&st->rlock);
	}
	qsort(v, (size_t)k, sizeof *v, newest_first);
	return k < limit ? k : limit;
}

void
px_stats_refusal_minutes(struct px_stats *const *all, int n, unsigned long long now_ms,
                         unsigned long long out[PX_REFUSAL_MINUTES])
{
	unsigned long long now_m = now_ms / 60000;
	int i, j;

	memset(out, 0, PX_REFUSAL_MINUTES * sizeof *out);
	for (i = 0; i < n; i++) {
		struct px_stats *st = all[i];
		pthread_mutex_lock(&st->rlock);
		for (j = 0; j < PX_REFUSAL_MINUTES; j++) {
			unsigned long long m = st->minute[j];
			if (st->per_minute[j] && m <= now_m && now_m - m < PX_REFUSAL_MINUTES)
				out[PX_REFUSAL_MINUTES - 1 - (now_m - m)] += st->per_minute[j];
		}
		pthread_mutex_unlock(&st->rlock);
	}
}
