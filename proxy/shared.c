/*
 * proxy/shared.c - the policy and state every thread shares (contract in shared.h).
 */
#include "proxy/shared.h"
#include "proxy/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEER_BUCKETS 1024

struct px_override {
	char app[POL_APPID_MAX + 1];
	struct pol_app_change ch;
};

struct peer_count {
	struct peer_count *next;
	unsigned count;
	char addr[64];
};

/* refusal budgets: one entry per (app, user) that was refused lately */
#define BUDGET_BUCKETS 4096
#define BUDGET_MAX 65536 /* users tracked at once: past it a new one is not counted (a budget
                          * slows a misbehaving page; it is not what keeps the switches) */
struct budget {
	struct budget *next;
	uint64_t window_start, count;   /* refusals since window_start */
	uint64_t until;                 /* exhausted until (the window's end), 0: not */
	uint64_t banned_until;          /* 0: not banned */
	/* refusals not yet added to the fleet's count (on sh->pending while pending > 0) */
	struct budget *pending_next;
	uint32_t pending, pending_budget;
	uint64_t pending_window, pending_window_ms, pending_ban_ms;
	char key[];                     /* "app\0user" */
};

/* cache invalidations: the last FORGET_RING, for the other workers and the fleet */
#define FORGET_RING 1024
struct forget {
	uint64_t seq;                   /* 1-based; 0: never written */
	int kind, local;
	size_t applen, idlen;
	char *key;                      /* "app\0id" */
};

struct px_shared {
	_Atomic unsigned long gen;
	_Atomic unsigned long long reloads_ok, reloads_failed;
	pthread_mutex_t lock;           /* everything below but the peers */
	struct pol_config *file_cfg;    /* as read */
	struct pol_config *cfg;         /* with the overrides applied */
	SSL_CTX *tls_server;
	struct px_tls_clients tls_client; /* per upstream */
	struct px_override *ov;
	int nov;
	pthread_mutex_t peers_lock;
	struct peer_count *peers[PEER_BUCKETS];
	pthread_mutex_t budget_lock;
	struct budget *budgets[BUDGET_BUCKETS];
	int nbudgets;
	struct budget *pending;         /* budgets with refusals for the fleet */
	pthread_mutex_t forget_lock;
	_Atomic uint64_t forget_seq;    /* the newest entry's seq */
	struct forget forgets[FORGET_RING];
	int nworkers;                   /* invalidations are kept only for other readers */
	void (*kick)(void *);           /* the fleet's: something was queued for it */
	void *kick_arg;
};

static void
ctx_ref(SSL_CTX *c)
{
	if (c)
		SSL_CTX_up_ref(c);
}

/* Replaces DST's contexts with references to SRC's. */
static void
set_clients(struct px_tls_clients *dst, const struct px_tls_clients *src)
{
	int i;
	for (i = 0; i < POL_UPSTREAM_MAX; i++) {
		SSL_CTX_free(dst->ctx[i]);
		dst->ctx[i] = src ? src->ctx[i] : NULL;
		ctx_ref(dst->ctx[i]);
	}
}

struct px_shared *
px_shared_new(struct pol_config *cfg, SSL_CTX *tls_server, const struct px_tls_clients *tls_client)
{
	struct px_shared *sh = calloc(1, sizeof *sh);

	if (!sh)
		return NULL;
	pthread_mutex_init(&sh->lock, NULL);
	pthread_mutex_init(&sh->peers_lock, NULL);
	pthread_mutex_init(&sh->budget_lock, NULL);
	pthread_mutex_init(&sh->forget_lock, NULL);
	sh->nworkers = cfg->workers; /* (fixed at start: a reload keeps the running count) */
	sh->file_cfg = pol_config_ref(cfg);
	sh->cfg = pol_config_ref(cfg);
	sh->tls_server = tls_server;
	ctx_ref(tls_server);
	set_clients(&sh->tls_client, tls_client);
	return sh;
}

void
px_shared_free(struct px_shared *sh)
{
	int i;
	if (!sh)
		return;
	pol_config_unref(sh->cfg);
	pol_config_unref(sh->file_cfg);
	SSL_CTX_free(sh->tls_server);
	set_clients(&sh->tls_client, NULL);
	free(sh->ov);
	for (i = 0; i < PEER_BUCKETS; i++)
		while (sh->peers[i]) {
			struct peer_count *p = sh->peers[i];
			sh->peers[i] = p->next;
			free(p);
		}
	for (i = 0; i < BUDGET_BUCKETS; i++)
		while (sh->budgets[i]) {
			struct budget *b = sh->budgets[i];
			sh->budgets[i] = b->next;
			free(b);
		}
	for (i = 0; i < FORGET_RING; i++)
		free(sh->forgets[i].key);
	pthread_mutex_destroy(&sh->forget_lock);
	pthread_mutex_destroy(&sh->budget_lock);
	pthread_mutex_destroy(&sh->peers_lock);
	pthread_mutex_destroy(&sh->lock);
	free(sh);
}

const _Atomic unsigned long *
px_shared_genp(const struct px_shared *sh)
{
	return &sh->gen;
}

void
px_shared_take(struct px_shared *sh, struct pol_config **cfg, SSL_CTX **tls_server,
               struct px_tls_clients *tls_client, unsigned long *gen)
{
	int i;
	pthread_mutex_lock(&sh->lock);
	*cfg = pol_config_ref(sh->cfg);
	*tls_server = sh->tls_server;
	ctx_ref(*tls_server);
	for (i = 0; i < POL_UPSTREAM_MAX; i++) {
		tls_client->ctx[i] = sh->tls_client.ctx[i];
		ctx_ref(tls_client->ctx[i]);
	}
	*gen = atomic_load(&sh->gen);
	pthread_mutex_unlock(&sh->lock);
}

struct pol_config *
px_shared_policy(struct px_shared *sh)
{
	struct pol_config *c;
	pthread_mutex_lock(&sh->lock);
	c = pol_config_ref(sh->cfg);
	pthread_mutex_unlock(&sh->lock);
	return c;
}

struct pol_config *
px_shared_file_policy(struct px_shared *sh)
{
	struct pol_config *c;
	pthread_mutex_lock(&sh->lock);
	c = pol_config_ref(sh->file_cfg);
	pthread_mutex_unlock(&sh->lock);
	return c;
}

/* The effective policy: the file's, with the overrides applied in order. */
static struct pol_config *
apply_overrides(struct px_shared *sh, struct pol_config *file)
{
	struct pol_config *c = pol_config_ref(file);
	int i;
	for (i = 0; i < sh->nov; i++) {
		struct pol_config *n = pol_config_with_change(c, sh->ov[i].app, &sh->ov[i].ch);
		if (!n)
			continue;
		pol_config_unref(c);
		c = n;
	}
	return c;
}

/* Publishes C as the policy (takes its reference). Caller holds the lock. */
static void
publish(struct px_shared *sh, struct pol_config *c)
{
	struct pol_config *old = sh->cfg;
	sh->cfg = c;
	atomic_fetch_add_explicit(&sh->gen, 1, memory_order_release);
	pol_config_unref(old);
}

/*
 * A reload keeps an admin override only where the file did not change that switch: the
 * file's new word on a switch wins over an earlier runtime flip, and a flip of a switch the
 * file left alone survives the reload.
 */
static void
rebase_overrides(struct px_shared *sh, const struct pol_config *old, const struct pol_config *neu)
{
	int i, j = 0;
	for (i = 0; i < sh->nov; i++) {
		struct px_override *o = &sh->ov[i];
		const struct pol_app *a = pol_config_app(old, o->app, strlen(o->app));
		const struct pol_app *b = pol_config_app(neu, o->app, strlen(o->app));
		if (!b->id[0])
			continue; /* the app's section is gone */
		if (a->user_sync != b->user_sync)
			o->ch.user_sync = -1;
		if (a->conversation_sync != b->conversation_sync)
			o->ch.conversation_sync = -1;
		if (a->mode != b->mode)
			o->ch.mode = -1;
		if (o->ch.user_sync < 0 && o->ch.conversation_sync < 0 && o->ch.mode < 0)
			continue;
		sh->ov[j++] = *o;
	}
	sh->nov = j;
}

void
px_shared_reload(struct px_shared *sh, struct pol_config *n, SSL_CTX *tls_server,
                 const struct px_tls_clients *tls_client)
{
	pthread_mutex_lock(&sh->lock);
	SSL_CTX_free(sh->tls_server);
	sh->tls_server = tls_server;
	ctx_ref(tls_server);
	set_clients(&sh->tls_client, tls_client);
	rebase_overrides(sh, sh->file_cfg, n);
	pol_config_unref(sh->file_cfg);
	sh->file_cfg = pol_config_ref(n);
	publish(sh, apply_overrides(sh, n));
	pthread_mutex_unlock(&sh->lock);
}

int
px_shared_change_app(struct px_shared *sh, const char *app, const struct pol_app_change *ch)
{
	struct px_override *o = NULL;
	int i;

	pthread_mutex_lock(&sh->lock);
	if (!pol_config_has_app(sh->file_cfg, app)) {
		pthread_mutex_unlock(&sh->lock);
		return 404;
	}
	for (i = 0; i < sh->nov; i++)
		if (!strcmp(sh->ov[i].app, app))
			o = &sh->ov[i];
	if (!o) {
		struct px_override *n = realloc(sh->ov, (size_t)(sh->nov + 1) * sizeof *n);
		if (!n) {
			pthread_mutex_unlock(&sh->lock);
			return 500;
		}
		sh->ov = n;
		o = &sh->ov[sh->nov++];
		snprintf(o->app, sizeof o->app, "%s", app);
		o->ch.user_sync = o->ch.conversation_sync = o->ch.mode = -1;
	}
	if (ch->user_sync >= 0)
		o->ch.user_sync = ch->user_sync;
	if (ch->conversation_sync >= 0)
		o->ch.conversation_sync = ch->conversation_sync;
	if (ch->mode >= 0)
		o->ch.mode = ch->mode;
	publish(sh, apply_overrides(sh, sh->file_cfg));
	pthread_mutex_unlock(&sh->lock);
	return 0;
}

void
px_shared_count_reload(struct px_shared *sh, int ok)
{
	atomic_fetch_add(ok ? &sh->reloads_ok : &sh->reloads_failed, 1);
}

void
px_shared_reloads(const struct px_shared *sh, unsigned long long *ok, unsigned long long *failed)
{
	*ok = atomic_load(&sh->reloads_ok);
	*failed = atomic_load(&sh->reloads_failed);
}

int
px_shared_override(struct px_shared *sh, const char *app, struct pol_app_change *out)
{
	int i, found = 0;

	out->user_sync = out->conversation_sync = out->mode = -1;
	pthread_mutex_lock(&sh->lock);
	for (i = 0; i < sh->nov; i++)
		if (!strcmp(sh->ov[i].app, app)) {
			*out = sh->ov[i].ch;
			found = 1;
		}
	pthread_mutex_unlock(&sh->lock);
	return found;
}

/* ---- connections per client address ---- */

static unsigned
peer_hash(const char *a)
{
	unsigned h = 2166136261u;
	for (; *a; a++)
		h = (h ^ (unsigned char)*a) * 16777619u;
	return h % PEER_BUCKETS;
}

int
px_shared_peer_add(struct px_shared *sh, const char *addr, unsigned cap)
{
	struct peer_count **pp, *p;
	int rc = 0;

	pthread_mutex_lock(&sh->peers_lock);
	for (pp = &sh->peers[peer_hash(addr)]; *pp && strcmp((*pp)->addr, addr); pp = &(*pp)->next)
		;
	p = *pp;
	if (!p) {
		p = calloc(1, sizeof *p);
		if (p) {
			snprintf(p->addr, sizeof p->addr, "%s", addr);
			*pp = p;
		}
	}
	if (p && cap && p->count >= cap)
		rc = -1;
	else if (p)
		p->count++;
	pthread_mutex_unlock(&sh->peers_lock);
	return rc;
}

void
px_shared_peer_remove(struct px_shared *sh, const char *addr)
{
	struct peer_count **pp, *p;

	pthread_mutex_lock(&sh->peers_lock);
	for (pp = &sh->peers[peer_hash(addr)]; *pp && strcmp((*pp)->addr, addr); pp = &(*pp)->next)
		;
	if ((p = *pp) && --p->count == 0) {
		*pp = p->next;
		free(p);
	}
	pthread_mutex_unlock(&sh->peers_lock);
}

/* ---- refusal budgets ---- */

static unsigned
budget_hash(const char *app, const char *user)
{
	unsigned h = 2166136261u;
	for (; *app; app++)
		h = (h ^ (unsigned char)*app) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (; *user; user++)
		h = (h ^ (unsigned char)*user) * 16777619u;
	return h % BUDGET_BUCKETS;
}

/* The entry of (APP, USER), made when CREATE; entries whose window and ban are over are
 * dropped from the bucket on the way. Under budget_lock. */
static struct budget *
budget_find(struct px_shared *sh, const char *app, const char *user, uint64_t now, uint64_t window,
            int create)
{
	struct budget **pp = &sh->budgets[budget_hash(app, user)], *b;
	size_t al = strlen(app), ul = strlen(user);

	while ((b = *pp)) {
		if (!strcmp(b->key, app) && !strcmp(b->key + strlen(b->key) + 1, user))
			return b;
		if (now >= b->banned_until && now >= b->until && now - b->window_start > 86400000ull &&
		    !b->pending) {
			*pp = b->next; /* a day quiet: forgotten */
			free(b);
			sh->nbudgets--;
			continue;
		}
		pp = &b->next;
	}
	if (!create || sh->nbudgets >= BUDGET_MAX || !(b = calloc(1, sizeof *b + al + ul + 2)))
		return NULL;
	memcpy(b->key, app, al + 1);
	memcpy(b->key + al + 1, user, ul + 1);
	b->window_start = now;
	(void)window;
	b->next = sh->budgets[budget_hash(app, user)];
	sh->budgets[budget_hash(app, user)] = b;
	sh->nbudgets++;
	return b;
}

enum px_budget
px_shared_budget_state(struct px_shared *sh, const char *app, const char *user, uint64_t now_ms,
                       int *reset)
{
	enum px_budget st = PX_BUDGET_OK;
	struct budget *b;

	*reset = 0;
	pthread_mutex_lock(&sh->budget_lock);
	b = budget_find(sh, app, user, now_ms, 0, 0);
	if (b) {
		if (now_ms < b->banned_until)
			st = PX_BUDGET_BANNED;
		else if (now_ms < b->until)
			st = PX_BUDGET_EXHAUSTED;
		else if (b->until || b->banned_until) {
			*reset = 1; /* once: the next window starts clean */
			b->until = b->banned_until = 0;
			b->count = 0;
			b->window_start = now_ms;
		}
	}
	pthread_mutex_unlock(&sh->budget_lock);
	return st;
}

enum px_budget
px_shared_budget_refused(struct px_shared *sh, const struct pol_app *a, const char *user,
                         uint64_t now_ms)
{
	enum px_budget ev = PX_BUDGET_OK;
	struct budget *b;
	int kick = 0;

	pthread_mutex_lock(&sh->budget_lock);
	b = budget_find(sh, a->id[0] ? a->id : "*", user, now_ms, a->budget_window_ms, 1);
	if (b && !b->until) {
		if (now_ms - b->window_start >= a->budget_window_ms) {
			b->window_start = now_ms;
			b->count = 0;
		}
		if (sh->kick) { /* the fleet counts it too, in its window of the wall clock */
			uint64_t w = now_ms / a->budget_window_ms;
			if (!b->pending) {
				b->pending_next = sh->pending;
				sh->pending = b;
			} else if (b->pending_window != w) {
				b->pending = 0; /* (a window turned within one push: the old one is over) */
			}
			b->pending++;
			b->pending_window = w;
			b->pending_window_ms = a->budget_window_ms;
			b->pending_budget = a->budget;
			b->pending_ban_ms = a->ban_ms;
			kick = 1;
		}
		if (++b->count >= a->budget) {
			b->until = b->window_start + a->budget_window_ms;
			ev = PX_BUDGET_EXHAUSTED;
			if (a->ban_ms) {
				b->banned_until = now_ms + a->ban_ms;
				if (b->until < b->banned_until)
					b->until = b->banned_until;
				ev = PX_BUDGET_BANNED;
			}
		}
	}
	pthread_mutex_unlock(&sh->budget_lock);
	if (kick)
		sh->kick(sh->kick_arg);
	return ev;
}

int
px_shared_budget_pending(struct px_shared *sh, struct px_budget_push **out)
{
	struct budget *b;
	int n = 0, i = 0;

	*out = NULL;
	pthread_mutex_lock(&sh->budget_lock);
	for (b = sh->pending; b; b = b->pending_next)
		n++;
	if (n && (*out = calloc((size_t)n, sizeof **out))) {
		while ((b = sh->pending)) {
			struct px_budget_push *p = &(*out)[i];
			sh->pending = b->pending_next;
			b->pending_next = NULL;
			p->key = strdup(b->key);
			p->user = strdup(b->key + strlen(b->key) + 1);
			if (p->key && p->user && b->pending) {
				p->app = p->key;
				p->n = b->pending;
				p->budget = b->pending_budget;
				p->window = b->pending_window;
				p->window_ms = b->pending_window_ms;
				p->ban_ms = b->pending_ban_ms;
				i++;
			} else { /* (out of memory: these refusals stay local) */
				free(p->key);
				free(p->user);
				p->key = p->user = NULL;
			}
			b->pending = 0;
		}
	}
	pthread_mutex_unlock(&sh->budget_lock);
	if (n && !*out)
		return -1;
	return i;
}

void
px_shared_budget_requeue(struct px_shared *sh, const struct px_budget_push *p)
{
	struct budget *b;

	pthread_mutex_lock(&sh->budget_lock);
	b = budget_find(sh, p->app, p->user, px_wall_ms(), 0, 0);
	if (b) {
		if (!b->pending) {
			b->pending_next = sh->pending;
			sh->pending = b;
			b->pending_window = p->window;
		}
		if (b->pending_window == p->window) {
			b->pending += p->n;
			b->pending_budget = p->budget;
			b->pending_window_ms = p->window_ms;
			b->pending_ban_ms = p->ban_ms;
		} /* (else a newer window has refusals of its own: the old one is over) */
	}
	pthread_mutex_unlock(&sh->budget_lock);
}

void
px_shared_budget_pushes_free(struct px_budget_push *p, int n)
{
	int i;
	for (i = 0; i < n; i++) {
		free(p[i].key);
		free(p[i].user);
	}
	free(p);
}

enum px_budget
px_shared_budget_mark(struct px_shared *sh, const char *app, const char *user, uint64_t until,
                      uint64_t banned_until, uint64_t now_ms)
{
	enum px_budget ev = PX_BUDGET_OK;
	struct budget *b;

	pthread_mutex_lock(&sh->budget_lock);
	b = budget_find(sh, app, user, now_ms, 0, 1);
	if (b) {
		if (banned_until > now_ms && banned_until > b->banned_until) {
			ev = now_ms < b->banned_until ? PX_BUDGET_OK : PX_BUDGET_BANNED;
			b->banned_until = banned_until;
		}
		if (until > now_ms && until > b->until) {
			if (ev == PX_BUDGET_OK && now_ms >= b->until && now_ms >= b->banned_until)
				ev = PX_BUDGET_EXHAUSTED;
			b->until = until;
		}
		if (b->until < b->banned_until)
			b->until = b->banned_until;
		if (b->until && b->window_start + 1 > now_ms)
			b->window_start = now_ms;
	}
	pthread_mutex_unlock(&sh->budget_lock);
	return ev;
}

/* ---- cache invalidations ---- */

void
px_shared_set_fleet(struct px_shared *sh, void (*kick)(void *), void *arg)
{
	sh->kick_arg = arg;
	sh->kick = kick;
}

void
px_shared_forget(struct px_shared *sh, const char *app, int kind, const char *id, size_t idlen,
                 int local)
{
	size_t al;
	char *key;
	struct forget *f;
	uint64_t seq;

	if (!sh->kick && sh->nworkers < 2)
		return; /* no other reader: the worker dropped its own fact already */
	al = app ? strlen(app) : 0;
	key = app ? malloc(al + idlen + 2) : NULL;
	if (app && !key)
		return; /* (the fact's TTL still bounds it) */
	if (key) {
		memcpy(key, app, al + 1);
		memcpy(key + al + 1, id, idlen);
		key[al + 1 + idlen] = 0;
	}
	pthread_mutex_lock(&sh->forget_lock);
	seq = atomic_load_explicit(&sh->forget_seq, memory_order_relaxed) + 1;
	f = &sh->forgets[seq % FORGET_RING];
	free(f->key);
	f->key = key;
	f->seq = seq;
	f->kind = kind;
	f->local = local;
	f->applen = al;
	f->idlen = idlen;
	atomic_store_explicit(&sh->forget_seq, seq, memory_order_release);
	pthread_mutex_unlock(&sh->forget_lock);
	if (local && sh->kick)
		sh->kick(sh->kick_arg);
}

uint64_t
px_shared_forget_seq(const struct px_shared *sh)
{
	return atomic_load_explicit(&sh->forget_seq, memory_order_acquire);
}

uint64_t
px_shared_forgets(struct px_shared *sh, uint64_t since, int local_only, px_forget_fn fn, void *arg)
{
	uint64_t seq, i;

	pthread_mutex_lock(&sh->forget_lock);
	seq = atomic_load_explicit(&sh->forget_seq, memory_order_relaxed);
	if (seq - since > FORGET_RING) {
		fn(arg, NULL, 0, NULL, 0); /* overwritten before they were read */
		since = seq - FORGET_RING;
	}
	for (i = since + 1; i <= seq; i++) {
		const struct forget *f = &sh->forgets[i % FORGET_RING];
		if (!local_only || f->local)
			fn(arg, f->key, f->kind, f->key ? f->key + f->applen + 1 : NULL, f->idlen);
	}
	pthread_mutex_unlock(&sh->forget_lock);
	return seq;
}
