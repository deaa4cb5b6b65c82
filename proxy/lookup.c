/*
 * proxy/lookup.c - existence lookups (contract in lookup.h).
 *
 * A request in flight (struct lookup_req) carries the waiters of every call that asked for
 * the same fact meanwhile. Its answer becomes a struct px_fact: handed to the waiters first,
 * then cached, so that a waiter dropping the fact (px_lookup_forget) cannot pull it from
 * under the others. Errors are handed out but never cached.
 */
#include "proxy/lookup.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <llhttp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/path.h"
#include "proxy/io.h"
#include "proxy/log.h"
#include "proxy/upstream.h"

#define BUCKETS 4096
#define MAX_ENTRIES 65536
#define MAX_BODY (1024 * 1024)
#define MAX_KEY 1024

struct px_fact {
	char *key;
	size_t keylen;
	enum px_lookup_state state;
	const char *error;
	char **parts; /* participants of a present conversation */
	size_t *partlen;
	size_t nparts;
	uint64_t expires;
	size_t bytes; /* what it holds, for lookup_cache_memory */
	struct px_fact *hnext;
	struct px_fact *older, *newer;
};

struct px_lookup_waiter {
	px_lookup_cb cb;
	void *arg;
	int cancelled;
	struct px_lookup_waiter *next;
};

struct lookup_req {
	struct px_lookups *lk;
	char *key;
	size_t keylen;
	enum px_lookup_kind kind;
	struct px_lookup_waiter *waiters;
	struct px_io *io;
	int reused, retried, forgotten;
	uint64_t started_us;      /* when it was asked (the lookup latency histogram) */
	int finishing;            /* its waiters are being called: a lookup asked meanwhile (a
	                           * waiter's next call) starts its own request, since this one's
	                           * waiter list is no longer read */
	struct event *timer;
	llhttp_t parser;
	llhttp_settings_t settings;
	struct evbuffer *body;
	int body_too_big, complete;
	struct evbuffer *request; /* kept to retry once on a stale pooled connection */
	struct lookup_req *prev, *next;
};

struct px_lookups {
	struct event_base *base;
	struct px_upstream *up;
	struct px_counters *ctr;            /* the worker's */
	struct pol_config *const *cfg;      /* the worker's current policy (its limits) */
	struct px_fact *bucket[BUCKETS];
	struct px_fact *oldest, *newest; /* in the order cached; their number and bytes are the
	                                   * worker's lookup_cache_facts / _bytes gauges */
	struct lookup_req *inflight;
	unsigned ninflight;
	unsigned long requests;
};

static uint64_t
now_ms(void)
{
	return px_now_us() / 1000;
}

static uint32_t
hash(const char *k, size_t n)
{
	uint32_t h = 2166136261u;
	size_t i;
	for (i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * 16777619u;
	return h;
}

struct px_lookups *
px_lookups_new(struct event_base *base, struct px_upstream *up, struct px_counters *ctr,
               struct pol_config *const *cfg)
{
	struct px_lookups *lk = calloc(1, sizeof *lk);
	if (!lk)
		return NULL;
	lk->base = base;
	lk->up = up;
	lk->ctr = ctr;
	lk->cfg = cfg;
	return lk;
}

/* "app \0 kind \0 id" */
static size_t
make_key(char *out, const char *app, enum px_lookup_kind kind, const char *id, size_t idlen)
{
	size_t al = strlen(app);
	if (al + idlen + 4 > MAX_KEY)
		return 0;
	memcpy(out, app, al);
	out[al] = 0;
	out[al + 1] = kind == PX_LOOKUP_USER ? 'u' : 'c';
	out[al + 2] = 0;
	memcpy(out + al + 3, id, idlen);
	return al + 3 + idlen;
}

static void
fact_free(struct px_fact *f)
{
	size_t i;
	for (i = 0; i < f->nparts; i++)
		free(f->parts[i]);
	free(f->parts);
	free(f->partlen);
	free(f->key);
	free(f);
}

static struct px_fact **
find_slot(struct px_lookups *lk, const char *key, size_t n)
{
	struct px_fact **p = &lk->bucket[hash(key, n) % BUCKETS];
	while (*p && !((*p)->keylen == n && !memcmp((*p)->key, key, n)))
		p = &(*p)->hnext;
	return p;
}

static void
unlink_entry(struct px_lookups *lk, struct px_fact *f)
{
	struct px_fact **p = find_slot(lk, f->key, f->keylen);
	if (*p == f)
		*p = f->hnext;
	if (f->older)
		f->older->newer = f->newer;
	else
		lk->oldest = f->newer;
	if (f->newer)
		f->newer->older = f->older;
	else
		lk->newest = f->older;
	px_count(&lk->ctr->lookup_cache_facts, (unsigned long long)-1);
	px_count(&lk->ctr->lookup_cache_bytes, -(unsigned long long)f->bytes);
	fact_free(f);
}

/* What F holds, allocator overhead aside. */
static size_t
fact_bytes(const struct px_fact *f)
{
	size_t n = sizeof *f + f->keylen + f->nparts * (sizeof *f->parts + sizeof *f->partlen + 1), i;
	for (i = 0; i < f->nparts; i++)
		n += f->partlen[i];
	return n;
}

/*
 * Caches F (taking it), replacing an entry of the same key. Room is made from the oldest end:
 * facts whose time is up (they would only be looked up again), then as many as the caps
 * (MAX_ENTRIES, lookup_cache_memory) need. A fact bigger than the whole cache is freed
 * instead.
 */
static void
cache_insert(struct px_lookups *lk, struct px_fact *f)
{
	struct px_counters *st = lk->ctr; /* this worker's: it alone writes them */
	const size_t cap = (*lk->cfg)->limits.lookup_cache_bytes;
	const uint64_t now = now_ms();
	struct px_fact **p = find_slot(lk, f->key, f->keylen);

	f->bytes = fact_bytes(f);
	if (*p)
		unlink_entry(lk, *p);
	if (f->bytes > cap) {
		fact_free(f);
		return;
	}
	while (lk->oldest &&
	       (lk->oldest->expires <= now || atomic_load(&st->lookup_cache_facts) >= MAX_ENTRIES ||
	        atomic_load(&st->lookup_cache_bytes) + f->bytes > cap))
		unlink_entry(lk, lk->oldest);
	p = find_slot(lk, f->key, f->keylen);
	f->hnext = NULL;
	*p = f;
	f->older = lk->newest;
	f->newer = NULL;
	if (lk->newest)
		lk->newest->newer = f;
	else
		lk->oldest = f;
	lk->newest = f;
	px_count(&lk->ctr->lookup_cache_facts, 1);
	px_count(&lk->ctr->lookup_cache_bytes, f->bytes);
}

enum px_lookup_state
px_fact_state(const struct px_fact *f)
{
	return f->state;
}

const char *
px_fact_error(const struct px_fact *f)
{
	return f->error ? f->error : "";
}

int
px_fact_has_participant(const struct px_fact *f, const char *uid, size_t len)
{
	size_t i;
	for (i = 0; i < f->nparts; i++)
		if (f->partlen[i] == len && !memcmp(f->parts[i], uid, len))
			return 1;
	return 0;
}

static void
call_error(px_lookup_cb cb, void *arg, const char *why)
{
	struct px_fact f;
	memset(&f, 0, sizeof f);
	f.state = PX_LOOKUP_ERROR;
	f.error = why;
	cb(&f, arg);
}

/* ---- requests ---- */

static int req_start(struct lookup_req *r);

static void
req_free(struct lookup_req *r)
{
	struct px_lookups *lk = r->lk;
	struct px_lookup_waiter *w, *next;

	for (w = r->waiters; w; w = next) {
		next = w->next;
		free(w);
	}
	if (r->io)
		px_io_free(r->io);
	if (r->timer)
		event_free(r->timer);
	if (r->body)
		evbuffer_free(r->body);
	if (r->request)
		evbuffer_free(r->request);
	if (r->prev)
		r->prev->next = r->next;
	else
		lk->inflight = r->next;
	if (r->next)
		r->next->prev = r->prev;
	lk->ninflight--;
	free(r->key);
	free(r);
}

/* The answer is known: hand it to the waiters, then cache it (unless it is an error). */
static void
req_finish(struct lookup_req *r, struct px_fact *f)
{
	struct px_lookup_waiter *w;
	struct px_lookups *lk = r->lk;
	const struct pol_limits *lim = &(*lk->cfg)->limits;

	r->finishing = 1;
	px_observe(lk->ctr->lookup_bucket, &lk->ctr->lookup_sum_us, px_now_us() - r->started_us);
	for (w = r->waiters; w; w = w->next)
		if (!w->cancelled)
			w->cb(f, w->arg);
	if (f->state != PX_LOOKUP_ERROR && !r->forgotten) {
		f->expires = now_ms() + (f->state == PX_LOOKUP_PRESENT ? lim->lookup_cache_ttl_ms
		                                                       : lim->lookup_negative_ttl_ms);
		cache_insert(lk, f);
	} else {
		fact_free(f);
	}
	req_free(r);
}

static void
req_fail(struct lookup_req *r, const char *why)
{
	struct px_fact *f = calloc(1, sizeof *f);
	char *key = malloc(r->keylen);

	px_log(PX_LOG_WARN, "lookup_failed", "why", why, "upstream", px_upstream_host(r->lk->up),
	       "error", r->io && px_io_errno(r->io) ? strerror(px_io_errno(r->io)) : "", NULL);
	px_count(&r->lk->ctr->lookup_errors, 1);
	if (!f || !key) {
		free(f);
		free(key);
		struct px_lookup_waiter *w;
		for (w = r->waiters; w; w = w->next)
			if (!w->cancelled)
				call_error(w->cb, w->arg, why);
		req_free(r);
		return;
	}
	memcpy(key, r->key, r->keylen);
	f->key = key;
	f->keylen = r->keylen;
	f->state = PX_LOOKUP_ERROR;
	f->error = why;
	req_finish(r, f);
}

/* Builds the fact from a complete 200/404 response. */
static void
req_answer(struct lookup_req *r)
{
	int status = r->parser.status_code;
	struct px_fact *f;

	if (status != 200 && status != 404) {
		req_fail(r, status == 401 ? "the backend refused the app's secret key"
		                          : "unexpected status from the backend");
		return;
	}
	f = calloc(1, sizeof *f);
	if (!f || !(f->key = malloc(r->keylen))) {
		free(f);
		req_fail(r, "out of memory");
		return;
	}
	memcpy(f->key, r->key, r->keylen);
	f->keylen = r->keylen;
	f->state = status == 200 ? PX_LOOKUP_PRESENT : PX_LOOKUP_ABSENT;
	if (status == 200 && r->kind == PX_LOOKUP_CONVERSATION) {
		size_t len = evbuffer_get_length(r->body);
		cJSON *root = cJSON_ParseWithLength((const char *)evbuffer_pullup(r->body, -1), len);
		cJSON *parts = cJSON_GetObjectItemCaseSensitive(root, "participants"), *p;
		size_t n = 0;
		if (!cJSON_IsObject(parts)) {
			cJSON_Delete(root);
			fact_free(f);
			req_fail(r, "conversation without a participants map");
			return;
		}
		cJSON_ArrayForEach(p, parts) n++;
		f->parts = calloc(n ? n : 1, sizeof *f->parts);
		f->partlen = calloc(n ? n : 1, sizeof *f->partlen);
		if (!f->parts || !f->partlen) {
			cJSON_Delete(root);
			fact_free(f);
			req_fail(r, "out of memory");
			return;
		}
		cJSON_ArrayForEach(p, parts) {
			f->partlen[f->nparts] = strlen(p->string);
			f->parts[f->nparts] = strdup(p->string);
			if (f->parts[f->nparts])
				f->nparts++;
		}
		cJSON_Delete(root);
	}
	/* a clean keep-alive exchange: the connection goes back to the pool */
	if (llhttp_should_keep_alive(&r->parser) && evbuffer_get_length(px_io_input(r->io)) == 0) {
		px_upstream_put(r->lk->up, r->io);
		r->io = NULL;
	}
	req_finish(r, f);
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	struct lookup_req *r = p->data;
	if (evbuffer_get_length(r->body) + len > MAX_BODY) {
		r->body_too_big = 1;
		return -1;
	}
	evbuffer_add(r->body, at, len);
	return 0;
}

static int
on_complete(llhttp_t *p)
{
	struct lookup_req *r = p->data;
	r->complete = 1;
	return HPE_PAUSED;
}

static void
req_readcb(struct px_io *io, void *arg)
{
	struct lookup_req *r = arg;
	struct evbuffer *in = px_io_input(io);

	while (evbuffer_get_length(in) > 0 && !r->complete) {
		struct evbuffer_iovec v;
		llhttp_errno_t e;
		size_t used;
		evbuffer_peek(in, -1, NULL, &v, 1);
		e = llhttp_execute(&r->parser, v.iov_base, v.iov_len);
		if (e == HPE_PAUSED) {
			used = (size_t)(llhttp_get_error_pos(&r->parser) - (const char *)v.iov_base);
		} else if (e == HPE_OK) {
			used = v.iov_len;
		} else {
			req_fail(r, r->body_too_big ? "backend answer too large" : "malformed backend answer");
			return;
		}
		evbuffer_drain(in, used);
	}
	if (r->complete)
		req_answer(r);
}

static void
req_eventcb(struct px_io *io, short what, void *arg)
{
	struct lookup_req *r = arg;
	(void)io;
	if (what & PX_IO_CONNECTED)
		return;
	if (r->reused && !r->retried && !r->complete && r->parser.status_code == 0) {
		/* a pooled connection the backend had closed: once more on a fresh one */
		px_io_free(r->io);
		r->io = NULL;
		r->retried = 1;
		req_start(r);
		return;
	}
	req_fail(r, (what & PX_IO_TIMEOUT) ? "lookup timed out" : "backend unreachable");
}

static void
req_timeout(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	req_fail(arg, "lookup timed out");
}

/* Sends the request. Returns -1 if it failed at once (R is then answered and freed). */
static int
req_start(struct lookup_req *r)
{
	struct evbuffer *req;

	r->io = px_upstream_get(r->lk->up, &r->reused);
	if (!r->io) {
		req_fail(r, "backend unreachable");
		return -1;
	}
	llhttp_settings_init(&r->settings);
	r->settings.on_body = on_body;
	r->settings.on_message_complete = on_complete;
	llhttp_init(&r->parser, HTTP_RESPONSE, &r->settings);
	r->parser.data = r;
	px_io_setcb(r->io, req_readcb, NULL, req_eventcb, r);
	px_io_set_read_max(r->io, MAX_BODY + 65536);
	px_io_read(r->io, 1);
	req = px_io_output(r->io);
	evbuffer_add_buffer_reference(req, r->request);
	px_io_flush(r->io);
	return 0;
}

struct px_lookup_waiter *
px_lookup(struct px_lookups *lk, const struct pol_app *app, enum px_lookup_kind kind,
          const char *id, size_t idlen, px_lookup_cb cb, void *arg)
{
	char key[MAX_KEY], enc[3 * 512];
	size_t kl;
	struct px_fact **slot;
	struct lookup_req *r;
	struct px_lookup_waiter *w;
	const struct pol_limits *lim = &(*lk->cfg)->limits;
	long el;
	struct timeval tv;

	if (!app->secret_key || !app->id[0]) {
		call_error(cb, arg, "no secret key configured for the app");
		return NULL;
	}
	kl = make_key(key, app->id, kind, id, idlen);
	el = pol_uri_encode(id, idlen, enc, sizeof enc);
	if (!kl || el < 0) {
		call_error(cb, arg, "id too long to look up");
		return NULL;
	}
	slot = find_slot(lk, key, kl);
	if (*slot) {
		if ((*slot)->expires > now_ms()) {
			px_count(&lk->ctr->lookup_cache_hits, 1);
			cb(*slot, arg);
			return NULL;
		}
		unlink_entry(lk, *slot);
	}
	w = calloc(1, sizeof *w);
	if (!w) {
		call_error(cb, arg, "out of memory");
		return NULL;
	}
	w->cb = cb;
	w->arg = arg;
	for (r = lk->inflight; r; r = r->next)
		if (r->keylen == kl && !memcmp(r->key, key, kl) && !r->finishing) {
			w->next = r->waiters; /* the same fact is already being looked up */
			r->waiters = w;
			return w;
		}
	if (lk->ninflight >= lim->lookup_max_inflight) {
		free(w);
		call_error(cb, arg, "too many lookups in flight");
		return NULL;
	}
	r = calloc(1, sizeof *r);
	if (!r || !(r->key = malloc(kl)) || !(r->body = evbuffer_new()) ||
	    !(r->request = evbuffer_new()) ||
	    !(r->timer = evtimer_new(lk->base, req_timeout, r))) {
		if (r) {
			free(r->key);
			if (r->body)
				evbuffer_free(r->body);
			if (r->request)
				evbuffer_free(r->request);
			free(r);
		}
		free(w);
		call_error(cb, arg, "out of memory");
		return NULL;
	}
	memcpy(r->key, key, kl);
	r->keylen = kl;
	r->kind = kind;
	r->lk = lk;
	r->waiters = w;
	r->next = lk->inflight;
	if (lk->inflight)
		lk->inflight->prev = r;
	lk->inflight = r;
	lk->ninflight++;
	lk->requests++;
	r->started_us = px_now_us();
	px_count(&lk->ctr->lookups, 1);
	evbuffer_add_printf(r->request,
	                    "GET /v1/%s/%s/%.*s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
	                    "Accept: application/json\r\nUser-Agent: syncgate-lookup\r\n\r\n",
	                    app->id, kind == PX_LOOKUP_USER ? "users" : "conversations", (int)el, enc,
	                    px_upstream_host(lk->up), app->secret_key);
	tv.tv_sec = lim->lookup_timeout_ms / 1000;
	tv.tv_usec = (lim->lookup_timeout_ms % 1000) * 1000;
	evtimer_add(r->timer, &tv);
	px_log(PX_LOG_DEBUG, "lookup", "app", app->id, "kind", kind == PX_LOOKUP_USER ? "user" : "conversation", NULL);
	return req_start(r) ? NULL : w; /* failed at once: W was answered and freed */
}

void
px_lookup_cancel(struct px_lookup_waiter *w)
{
	if (w)
		w->cancelled = 1;
}

void
px_lookup_forget(struct px_lookups *lk, const char *app, enum px_lookup_kind kind,
                 const char *id, size_t idlen)
{
	char key[MAX_KEY];
	size_t kl;
	struct px_fact **slot;
	struct lookup_req *r;

	if (!(kl = make_key(key, app, kind, id, idlen)))
		return;
	slot = find_slot(lk, key, kl);
	if (*slot)
		unlink_entry(lk, *slot);
	for (r = lk->inflight; r; r = r->next)
		if (r->keylen == kl && !memcmp(r->key, key, kl))
			r->forgotten = 1; /* its answer may predate the change: do not cache it */
}

void
px_lookup_forget_all(struct px_lookups *lk)
{
	struct lookup_req *r;

	while (lk->oldest)
		unlink_entry(lk, lk->oldest);
	for (r = lk->inflight; r; r = r->next)
		r->forgotten = 1;
}

void
px_lookups_free(struct px_lookups *lk)
{
	if (!lk)
		return;
	while (lk->inflight)
		req_fail(lk->inflight, "shutting down"); /* waiters free what they hold */
	while (lk->oldest)
		unlink_entry(lk, lk->oldest);
	free(lk);
}
