/*
 * proxy/worker.c - one worker (contract in worker.h).
 *
 * Each worker has its own listeners (dup()s of the process's bound sockets), connections,
 * upstream pool, lookup cache, police and classifier. Policy changes reach it through the
 * shared generation: px_env_refresh() at each request or frame takes the new policy and TLS
 * contexts (refcounted: what a request started on stays alive until it ends).
 *
 * Shutdown: stop accepting, close idle connections, let in-flight requests finish, say 1001
 * to realtime sockets, and end after shutdown_grace at the latest.
 */
#include "proxy/worker.h"

#include <event2/buffer.h>
#include <event2/listener.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "policy/call.h"
#include "proxy/conn.h"
#include "proxy/http.h"
#include "proxy/log.h"
#include "proxy/lookup.h"
#include "proxy/police.h"
#include "proxy/shared.h"
#include "proxy/stats.h"
#include "proxy/types.h"
#include "proxy/upstream.h"

#define MAX_LISTENERS POL_MAX_LISTEN

/* What a listener's accept callback is told: its worker and the listen address's flags. */
struct listener {
	struct px_worker *w;
	int tls, proxy_protocol;
};

struct px_worker {
	struct px_env env;              /* first: the hooks get &w->env */
	struct listener largs[MAX_LISTENERS];
	struct px_shared *shared;
	struct px_tls_clients tls_client; /* the upstreams' contexts, as last taken */
	struct evconnlistener *listeners[MAX_LISTENERS];
	int nlisteners;
	struct px_lookups *lookups;
	uint64_t forget_seen;           /* invalidations applied (px_shared_forgets()) */
	struct event *stop_ev, *drain_timer;
	struct event *accept_resume;    /* re-enables the listeners after a burst of accepts */
	int accepted_turn;              /* TLS accepts since the listeners were last (re-)enabled */
	struct event *access_timer;
	pthread_t thread;
	evutil_socket_t stop_fd[2];     /* px_worker_stop() writes to [1] (no libevent locking:
	                                 * no other thread ever touches this base) */
};

/* ---- policy ---- */

static void
refresh(struct px_env *env)
{
	struct px_worker *w = (struct px_worker *)env;
	struct pol_config *old = env->cfg;
	SSL_CTX *old_server = env->tls_server;
	struct px_tls_clients old_client = w->tls_client;
	int i;

	px_shared_take(w->shared, &env->cfg, &env->tls_server, &w->tls_client, &env->gen);
	for (i = 0; i < env->nups; i++)
		px_upstream_update(env->ups[i], w->tls_client.ctx[i], env->cfg);
	pol_config_unref(old);
	SSL_CTX_free(old_server); /* connections made with it hold their own references */
	for (i = 0; i < POL_UPSTREAM_MAX; i++)
		SSL_CTX_free(old_client.ctx[i]);
}

/* ---- the fact source of police.c: lookup.c ---- */

static void
forget_one(void *arg, const char *app, int kind, const char *id, size_t idlen)
{
	struct px_worker *w = arg;
	if (!app)
		px_lookup_forget_all(w->lookups);
	else
		px_lookup_forget(w->lookups, app, (enum px_lookup_kind)kind, id, idlen);
}

/* Facts that changed through another worker or another instance of the fleet are dropped
 * before a fact is asked for (one atomic load when none did). */
static void
facts_ask(void *src, const struct pol_app *app, enum px_lookup_kind kind, const char *id,
          size_t idlen, px_lookup_cb cb, void *arg)
{
	struct px_worker *w = src;
	if (px_shared_forget_seq(w->shared) != w->forget_seen)
		w->forget_seen = px_shared_forgets(w->shared, w->forget_seen, 0, forget_one, w);
	px_lookup(w->lookups, app, kind, id, idlen, cb, arg);
}

static void
facts_forget(void *src, const char *app, enum px_lookup_kind kind, const char *id, size_t idlen)
{
	struct px_worker *w = src;
	px_lookup_forget(w->lookups, app, kind, id, idlen);
	px_shared_forget(w->shared, app, (int)kind, id, idlen, 1);
}

/* ---- accepting ---- */

/*
 * New TLS connections per loop turn. libevent's listener accepts until the backlog is empty;
 * under a storm of new TLS connections that puts every pending handshake (~0.3 ms of CPU each)
 * ahead of the requests of the connections already open: tls.sh's connection-per-request load
 * had p99 11 ms (nginx 4.7). After a burst the listeners pause until the events already
 * pending in this turn have run (p99 4.8 ms; nginx's multi_accept off takes one per turn).
 * Plain connections cost little to start and are not paced (pausing costs two epoll_ctl).
 */
#define TLS_ACCEPT_BURST 2

static void
listeners_enable(struct px_worker *w, int on)
{
	int i;
	for (i = 0; i < w->nlisteners; i++)
		if (on)
			evconnlistener_enable(w->listeners[i]);
		else
			evconnlistener_disable(w->listeners[i]);
}

static void
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_worker *w = arg;
	(void)fd;
	(void)what;
	w->accepted_turn = 0;
	if (w->env.draining || (unsigned)w->env.nconns >= w->env.cfg->limits.max_connections)
		return; /* conn_gone() resumes them */
	listeners_enable(w, 1);
}

static void
accept_conn(struct px_worker *w, evutil_socket_t fd, struct sockaddr *sa, int tls, int proxied)
{
	struct px_conn *c;

	if (w->env.draining) {
		evutil_closesocket(fd);
		return;
	}
	px_env_refresh(&w->env); /* a reloaded certificate serves the next connection */
	if (proxied) {
		px_conn_new_proxied(&w->env, fd, sa, tls, px_http_start);
	} else {
		c = px_conn_new(&w->env, fd, sa, tls);
		if (c)
			px_http_start(c);
	}
	if (tls && ++w->accepted_turn == TLS_ACCEPT_BURST) {
		listeners_enable(w, 0);
		event_active(w->accept_resume, EV_READ, 1); /* after this turn's pending events */
	}
	if ((unsigned)w->env.nconns >= w->env.cfg->limits.max_connections) {
		px_log(PX_LOG_WARN, "max_connections", "why", "accept paused", NULL);
		listeners_enable(w, 0);
	}
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct listener *la = arg;
	(void)l;
	(void)salen;
	accept_conn(la->w, fd, sa, la->tls, la->proxy_protocol);
}

static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
	(void)l;
	(void)arg;
	px_log(PX_LOG_WARN, "accept_error", "why", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()), NULL);
}

/* A connection was freed (conn.c, through env->conn_gone). */
static void
conn_gone(struct px_env *env)
{
	struct px_worker *w = (struct px_worker *)env;
	if (env->draining) {
		if (env->nconns == 0)
			event_base_loopexit(env->base, NULL);
		return;
	}
	if ((unsigned)env->nconns + 1 == env->cfg->limits.max_connections)
		listeners_enable(w, 1);
}

/* ---- periodic work and shutdown ---- */

static void
access_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_worker *w = arg;
	(void)fd;
	(void)what;
	px_log_flush(w->env.access);
	px_stats_publish(w->env.stats);
}

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_worker *w = arg;
	char n[16];
	(void)fd;
	(void)what;
	snprintf(n, sizeof n, "%d", w->env.nconns);
	px_log(PX_LOG_WARN, "shutdown", "why", "grace period over, closing the rest", "#cut", n, NULL);
	px_conn_close_all(&w->env);
	event_base_loopexit(w->env.base, NULL);
}

/* In the worker's thread: stop accepting, close idle connections, let the rest finish. */
static void
worker_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_worker *w = arg;
	struct timeval tv;
	char b;
	int i;
	(void)what;

	(void)!read(fd, &b, 1);
	if (w->env.draining)
		return;
	w->env.draining = 1;
	for (i = 0; i < w->nlisteners; i++) {
		evconnlistener_free(w->listeners[i]);
		w->listeners[i] = NULL;
	}
	w->nlisteners = 0;
	for (i = 0; i < w->env.nups; i++)
		px_upstream_drain(w->env.ups[i]);
	px_conn_drain_all(&w->env);
	event_del(w->access_timer); /* a pending timer would keep the loop alive */
	if (w->env.nconns == 0) {
		event_base_loopexit(w->env.base, NULL);
		return;
	}
	tv.tv_sec = w->env.cfg->limits.shutdown_grace_ms / 1000;
	tv.tv_usec = (w->env.cfg->limits.shutdown_grace_ms % 1000) * 1000;
	w->drain_timer = evtimer_new(w->env.base, drain_timeout_cb, w);
	if (w->drain_timer)
		evtimer_add(w->drain_timer, &tv);
}

void
px_worker_stop(struct px_worker *w)
{
	(void)!write(w->stop_fd[1], "x", 1);
}

/* ---- life ---- */

void
px_worker_free(struct px_worker *w)
{
	int i;
	if (!w)
		return;
	px_conn_close_all(&w->env);
	for (i = 0; i < w->nlisteners; i++)
		if (w->listeners[i])
			evconnlistener_free(w->listeners[i]);
	px_lookups_free(w->lookups);
	px_police_free(w->env.police);
	for (i = 0; i < w->env.nups; i++)
		px_upstream_free(w->env.ups[i]);
	if (w->stop_ev)
		event_free(w->stop_ev);
	if (w->access_timer)
		event_free(w->access_timer);
	if (w->accept_resume)
		event_free(w->accept_resume);
	if (w->drain_timer)
		event_free(w->drain_timer);
	if (w->env.access) {
		px_log_flush(w->env.access);
		evbuffer_free(w->env.access);
	}
	if (w->stop_fd[0] >= 0)
		evutil_closesocket(w->stop_fd[0]);
	if (w->stop_fd[1] >= 0)
		evutil_closesocket(w->stop_fd[1]);
	pol_classifier_free(w->env.classifier);
	free(w->env.ws_scratch);
	px_stats_free(w->env.stats);
	pol_config_unref(w->env.cfg);
	SSL_CTX_free(w->env.tls_server);
	for (i = 0; i < POL_UPSTREAM_MAX; i++)
		SSL_CTX_free(w->tls_client.ctx[i]);
	if (w->env.base)
		event_base_free(w->env.base);
	free(w);
}

struct px_worker *
px_worker_new(int id, struct px_shared *sh, const struct px_upstream_addr *addrs,
              const evutil_socket_t *listen_fds, int nlisten)
{
	struct px_worker *w = calloc(1, sizeof *w);
	struct px_env *env;
	struct pol_config *cfg;
	int i;

	if (!w)
		return NULL;
	env = &w->env;
	w->shared = sh;
	w->stop_fd[0] = w->stop_fd[1] = -1;
	env->id = id;
	env->shared = sh;
	env->shared_gen = px_shared_genp(sh);
	env->refresh = refresh;
	env->conn_gone = conn_gone;
	px_shared_take(sh, &env->cfg, &env->tls_server, &w->tls_client, &env->gen);
	cfg = env->cfg;
	env->base = event_base_new();
	env->stats = px_stats_new();
	env->ctr = env->stats ? px_stats_counters(env->stats) : NULL;
	env->classifier = pol_classifier_new(&cfg->limits);
	env->ws_scratch_size = cfg->limits.ws_message_bytes;
	env->ws_scratch = malloc(env->ws_scratch_size);
	env->access = evbuffer_new();
	for (i = 0; env->base && i < cfg->nupstreams; i++) {
		env->ups[i] = px_upstream_new(env->base, i, (const struct sockaddr *)&addrs[i].sa,
		                              addrs[i].len, w->tls_client.ctx[i], cfg, 1);
		if (!env->ups[i])
			break;
		env->nups++;
	}
	env->up = env->nups == cfg->nupstreams ? env->ups[0] : NULL;
	w->lookups = env->up && env->ctr ? px_lookups_new(env->base, env->ups[cfg->lookup_upstream],
	                                                  env->ctr, &env->cfg) : NULL;
	if (w->lookups) {
		struct px_facts facts = {w, facts_ask, facts_forget, px_fact_state,
		                         px_fact_has_participant};
		env->police = px_police_new(env, &facts);
	}
	if (evutil_socketpair(AF_UNIX, SOCK_STREAM, 0, w->stop_fd) == 0) {
		evutil_make_socket_nonblocking(w->stop_fd[0]);
		evutil_make_socket_closeonexec(w->stop_fd[0]);
		evutil_make_socket_closeonexec(w->stop_fd[1]);
	}
	w->stop_ev = env->base && w->stop_fd[0] >= 0
	                 ? event_new(env->base, w->stop_fd[0], EV_READ, worker_stop_cb, w) : NULL;
	w->access_timer = env->base ? event_new(env->base, -1, EV_PERSIST, access_flush_cb, w) : NULL;
	w->accept_resume = env->base ? event_new(env->base, -1, 0, accept_resume_cb, w) : NULL;
	if (!env->base || !env->stats || !env->classifier || !env->ws_scratch || !env->access ||
	    !env->up || !w->lookups || !env->police || !w->stop_ev || !w->access_timer ||
	    !w->accept_resume) {
		px_log(PX_LOG_ERROR, "startup", "why", "out of memory", NULL);
		px_worker_free(w);
		return NULL;
	}
	event_add(w->stop_ev, NULL);
	{
		struct timeval tv = {0, 250000};
		event_add(w->access_timer, &tv);
	}
	for (i = 0; i < nlisten; i++) {
		evutil_socket_t fd = dup(listen_fds[i]);
		w->largs[i].w = w;
		w->largs[i].tls = cfg->listen[i].tls;
		w->largs[i].proxy_protocol = cfg->listen[i].proxy_protocol;
		w->listeners[i] = fd < 0 ? NULL : evconnlistener_new(
			env->base, accept_cb, &w->largs[i],
			LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
		if (!w->listeners[i]) {
			if (fd >= 0)
				evutil_closesocket(fd);
			px_log(PX_LOG_ERROR, "startup", "why", "cannot accept", "error",
			       evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()), NULL);
			px_worker_free(w);
			return NULL;
		}
		evconnlistener_set_error_cb(w->listeners[i], accept_error_cb);
		w->nlisteners++;
	}
	return w;
}

struct event_base *
px_worker_base(struct px_worker *w)
{
	return w->env.base;
}

void
px_worker_flush_logs(struct px_worker *w)
{
	px_log_flush(w->env.access);
}

struct px_stats *
px_worker_stats(struct px_worker *w)
{
	return w->env.stats;
}

static void *
worker_main(void *arg)
{
	struct px_worker *w = arg;
	event_base_dispatch(w->env.base);
	px_io_thread_done();
	return NULL;
}

int
px_worker_spawn(struct px_worker *w)
{
	return pthread_create(&w->thread, NULL, worker_main, w) ? -1 : 0;
}

void
px_worker_join(struct px_worker *w)
{
	pthread_join(w->thread, NULL);
}
