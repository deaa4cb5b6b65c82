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
	return st;
}

void
px_stats_free(struct px_stats *st)
{
	if (!st)
		return;
	pthread_mutex_destroy(&st->dlock);
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
