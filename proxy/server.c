/*
 * proxy/server.c - the process (struct px_main) and its workers (struct px_server).
 *
 * The main thread owns the signals and the admin listener; each worker thread runs its own
 * event loop with its own listeners (SO_REUSEPORT, so the kernel spreads connections),
 * connections, upstream pool, lookup cache and classifier. Nothing of a connection is ever
 * touched by another thread.
 *
 * Policy changes (SIGHUP, admin API) build a new config, validate it, swap it under
 * px_main.lock and bump px_main.gen; each worker picks it up at its next request or frame
 * (px_server_refresh). Configs are refcounted, so a request that started on the old policy
 * finishes on it. A broken file changes nothing.
 *
 * SIGTERM/SIGINT: every worker stops accepting, closes idle connections, lets in-flight
 * requests finish, and exits after shutdown_grace at the latest; then the process exits 0.
 */
#include "proxy/server.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/admin.h"
#include "proxy/internal.h"
#include "proxy/log.h"
#include "proxy/lookup.h"
#include "proxy/tls.h"

const double px_latency_bounds[PX_LATENCY_BUCKETS] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                      0.05, 0.1, 0.25, 0.5, 1, 5};

/* ---- connections per client address ---- */

static unsigned
peer_hash(const char *a)
{
	unsigned h = 2166136261u;
	for (; *a; a++)
		h = (h ^ (unsigned char)*a) * 16777619u;
	return h % 1024;
}

int
px_main_peer_add(struct px_main *m, const char *addr, unsigned cap)
{
	struct px_peer_count **pp, *p;
	int rc = 0;

	pthread_mutex_lock(&m->peers_lock);
	for (pp = &m->peers[peer_hash(addr)]; *pp && strcmp((*pp)->addr, addr); pp = &(*pp)->next)
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
	pthread_mutex_unlock(&m->peers_lock);
	return rc;
}

void
px_main_peer_remove(struct px_main *m, const char *addr)
{
	struct px_peer_count **pp, *p;

	pthread_mutex_lock(&m->peers_lock);
	for (pp = &m->peers[peer_hash(addr)]; *pp && strcmp((*pp)->addr, addr); pp = &(*pp)->next)
		;
	if ((p = *pp) && --p->count == 0) {
		*pp = p->next;
		free(p);
	}
	pthread_mutex_unlock(&m->peers_lock);
}

/* ---- workers ---- */

void
px_server_refresh_slow(struct px_server *srv)
{
	struct px_main *m = srv->main;
	struct pol_config *old = srv->cfg;

	SSL_CTX *old_server = NULL, *old_client = NULL;

	pthread_mutex_lock(&m->lock);
	srv->cfg = pol_config_ref(m->cfg);
	srv->gen = atomic_load(&m->gen);
	if (srv->tls_server != m->tls_server) {
		old_server = srv->tls_server;
		srv->tls_server = m->tls_server;
		SSL_CTX_up_ref(srv->tls_server);
	}
	if (srv->tls_client != m->tls_client) {
		old_client = srv->tls_client;
		srv->tls_client = m->tls_client;
		SSL_CTX_up_ref(srv->tls_client);
	}
	pthread_mutex_unlock(&m->lock);
	pol_config_unref(old);
	SSL_CTX_free(old_server); /* connections made with it hold their own references */
	if (old_client) {
		/* a session verified under the old CA or client certificate is not resumed */
		SSL_CTX_free(old_client);
		SSL_SESSION_free(srv->up_session);
		srv->up_session = NULL;
	}
}

#define DC_MAX 4096  /* label sets per worker: app ids come from clients, so they are capped */
#define DC_SLOTS 8192

static unsigned
dc_hash(const char *app, enum pol_op op, int verdict)
{
	unsigned h = 2166136261u ^ (unsigned)op * 31u ^ (unsigned)verdict * 7u;
	for (; *app; app++)
		h = (h ^ (unsigned char)*app) * 16777619u;
	return h;
}

int
px_server_count_decision(struct px_server *srv, const char *app, enum pol_op op, int verdict)
{
	unsigned slot = dc_hash(app, op, verdict) % DC_SLOTS;
	int i;

	if (!srv->dc_index)
		return -1;
	while ((i = srv->dc_index[slot]) >= 0) {
		struct px_decision_count *d = &srv->dc[i];
		if (d->op == op && d->verdict == verdict && !strcmp(d->app, app)) {
			d->n++;
			return i;
		}
		slot = (slot + 1) % DC_SLOTS;
	}
	if (srv->ndc >= DC_MAX)
		return -1;
	if (srv->ndc == srv->cdc) {
		int nc = srv->cdc ? srv->cdc * 2 : 64;
		struct px_decision_count *nd = realloc(srv->dc, (size_t)nc * sizeof *nd);
		if (!nd)
			return -1;
		srv->dc = nd;
		srv->cdc = nc;
	}
	i = srv->ndc++;
	snprintf(srv->dc[i].app, sizeof srv->dc[i].app, "%s", app);
	srv->dc[i].op = (unsigned char)op;
	srv->dc[i].verdict = (unsigned char)verdict;
	srv->dc[i].n = 1;
	srv->dc_index[slot] = i;
	return i;
}

/* Publishes the decision counts for the admin thread. */
static void
publish_decisions(struct px_server *srv)
{
	pthread_mutex_lock(&srv->dlock);
	if (srv->ndc > srv->cdecisions) {
		struct px_decision_count *n = realloc(srv->decisions, (size_t)srv->cdc * sizeof *n);
		if (!n) {
			pthread_mutex_unlock(&srv->dlock);
			return;
		}
		srv->decisions = n;
		srv->cdecisions = srv->cdc;
	}
	if (srv->ndc)
		memcpy(srv->decisions, srv->dc, (size_t)srv->ndc * sizeof *srv->dc);
	srv->ndecisions = srv->ndc;
	pthread_mutex_unlock(&srv->dlock);
}

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
accept_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_server *srv = arg;
	int i;
	(void)fd;
	(void)what;
	srv->accepted_turn = 0;
	if (srv->draining || (unsigned)srv->nconns >= srv->cfg->limits.max_connections)
		return; /* px_server_conn_gone() resumes them */
	for (i = 0; i < srv->nlisteners; i++)
		evconnlistener_enable(srv->listeners[i]);
}

static void
accept_conn(struct px_server *srv, evutil_socket_t fd, struct sockaddr *sa, int salen, int tls)
{
	if (srv->draining) {
		evutil_closesocket(fd);
		return;
	}
	px_server_refresh(srv); /* a reloaded certificate serves the next connection */
	px_conn_accept(srv, fd, sa, salen, tls);
	if (tls && ++srv->accepted_turn == TLS_ACCEPT_BURST) {
		int i;
		for (i = 0; i < srv->nlisteners; i++)
			evconnlistener_disable(srv->listeners[i]);
		event_active(srv->accept_resume, EV_READ, 1); /* after this turn's pending events */
	}
	if ((unsigned)srv->nconns >= srv->cfg->limits.max_connections) {
		int i;
		px_log(PX_LOG_WARN, "max_connections", "why", "accept paused", NULL);
		for (i = 0; i < srv->nlisteners; i++)
			evconnlistener_disable(srv->listeners[i]);
	}
}

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	(void)l;
	accept_conn(arg, fd, sa, salen, 0);
}

static void
accept_tls_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
              void *arg)
{
	(void)l;
	accept_conn(arg, fd, sa, salen, 1);
}

static void
accept_error_cb(struct evconnlistener *l, void *arg)
{
	(void)l;
	(void)arg;
	px_log(PX_LOG_WARN, "accept_error", "why", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()), NULL);
}

void
px_server_conn_gone(struct px_server *srv)
{
	int i;
	if (srv->draining) {
		if (srv->nconns == 0)
			event_base_loopexit(srv->base, NULL);
		return;
	}
	if ((unsigned)srv->nconns + 1 == srv->cfg->limits.max_connections)
		for (i = 0; i < srv->nlisteners; i++)
			evconnlistener_enable(srv->listeners[i]);
}

static void
drain_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_server *srv = arg;
	(void)fd;
	(void)what;
	char n[16];
	snprintf(n, sizeof n, "%d", srv->nconns);
	px_log(PX_LOG_WARN, "shutdown", "why", "grace period over, closing the rest", "cut", n, NULL);
	while (srv->conns)
		px_conn_close(srv->conns);
	event_base_loopexit(srv->base, NULL);
}

/* In the worker's thread: stop accepting, close idle connections, let the rest finish. */
static void
access_flush_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_server *srv = arg;
	(void)fd;
	(void)what;
	px_log_flush(srv->access);
	publish_decisions(srv);
}

static void
worker_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_server *srv = arg;
	struct px_conn *c, *next;
	struct timeval tv;
	char b;
	int i;
	(void)what;

	(void)!read(fd, &b, 1);

	if (srv->draining)
		return;
	srv->draining = 1;
	for (i = 0; i < srv->nlisteners; i++) {
		evconnlistener_free(srv->listeners[i]);
		srv->listeners[i] = NULL;
	}
	srv->nlisteners = 0;
	px_upstream_pool_free(srv);
	for (c = srv->conns; c; c = next) {
		next = c->next;
		if (c->state == PX_C_HEAD && evbuffer_get_length(px_io_input(c->cio)) == 0)
			px_conn_close(c);
		else if (c->state == PX_C_WS)
			px_ws_going_away(c); /* closes from the loop once the frame is out */
	}
	event_del(srv->access_timer); /* a pending timer would keep the loop alive */
	if (srv->nconns == 0) {
		event_base_loopexit(srv->base, NULL);
		return;
	}
	tv.tv_sec = srv->cfg->limits.shutdown_grace_ms / 1000;
	tv.tv_usec = (srv->cfg->limits.shutdown_grace_ms % 1000) * 1000;
	srv->drain_timer = evtimer_new(srv->base, drain_timeout_cb, srv);
	evtimer_add(srv->drain_timer, &tv);
}

static void
server_free(struct px_server *srv)
{
	int i;
	if (!srv)
		return;
	while (srv->conns)
		px_conn_close(srv->conns);
	for (i = 0; i < srv->nlisteners; i++)
		if (srv->listeners[i])
			evconnlistener_free(srv->listeners[i]);
	px_lookup_free_all(srv);
	px_upstream_pool_free(srv);
	if (srv->stop_ev)
		event_free(srv->stop_ev);
	if (srv->access_timer)
		event_free(srv->access_timer);
	if (srv->accept_resume)
		event_free(srv->accept_resume);
	if (srv->access) {
		px_log_flush(srv->access);
		evbuffer_free(srv->access);
	}
	if (srv->stop_fd[0] >= 0)
		evutil_closesocket(srv->stop_fd[0]);
	if (srv->stop_fd[1] >= 0)
		evutil_closesocket(srv->stop_fd[1]);
	if (srv->drain_timer)
		event_free(srv->drain_timer);
	pol_classifier_free(srv->classifier);
	free(srv->ws_scratch);
	free(srv->decisions);
	free(srv->dc);
	free(srv->dc_index);
	pthread_mutex_destroy(&srv->dlock);
	pol_config_unref(srv->cfg);
	SSL_CTX_free(srv->tls_server);
	SSL_CTX_free(srv->tls_client);
	SSL_SESSION_free(srv->up_session);
	if (srv->base)
		event_base_free(srv->base);
	free(srv);
}

static struct px_server *
server_new(struct px_main *m, int id, const struct sockaddr *up, socklen_t uplen,
           const evutil_socket_t *listen_fds, int nlisten)
{
	struct px_server *srv = calloc(1, sizeof *srv);
	struct pol_config *cfg = m->cfg;
	int i;

	if (!srv)
		return NULL;
	pthread_mutex_init(&srv->dlock, NULL);
	srv->main = m;
	srv->id = id;
	srv->cfg = pol_config_ref(cfg);
	srv->gen = atomic_load(&m->gen);
	if ((srv->tls_server = m->tls_server))
		SSL_CTX_up_ref(srv->tls_server);
	if ((srv->tls_client = m->tls_client))
		SSL_CTX_up_ref(srv->tls_client);
	srv->base = event_base_new();
	srv->classifier = pol_classifier_new(&cfg->limits);
	srv->ws_scratch_size = cfg->limits.ws_message_bytes;
	srv->ws_scratch = malloc(srv->ws_scratch_size);
	srv->stop_fd[0] = srv->stop_fd[1] = -1;
	if (evutil_socketpair(AF_UNIX, SOCK_STREAM, 0, srv->stop_fd) == 0) {
		evutil_make_socket_nonblocking(srv->stop_fd[0]);
		evutil_make_socket_closeonexec(srv->stop_fd[0]);
		evutil_make_socket_closeonexec(srv->stop_fd[1]);
	}
	srv->stop_ev = srv->base && srv->stop_fd[0] >= 0
	                   ? event_new(srv->base, srv->stop_fd[0], EV_READ, worker_stop_cb, srv) : NULL;
	srv->access = evbuffer_new();
	srv->dc_index = malloc(DC_SLOTS * sizeof *srv->dc_index);
	if (srv->dc_index)
		memset(srv->dc_index, 0xff, DC_SLOTS * sizeof *srv->dc_index);
	srv->access_timer = srv->base ? event_new(srv->base, -1, EV_PERSIST, access_flush_cb, srv) : NULL;
	srv->accept_resume = srv->base ? event_new(srv->base, -1, 0, accept_resume_cb, srv) : NULL;
	if (!srv->base || !srv->classifier || !srv->ws_scratch || !srv->stop_ev || !srv->access ||
	    !srv->access_timer || !srv->accept_resume) {
		px_log(PX_LOG_ERROR, "startup", "why", "out of memory", NULL);
		server_free(srv);
		return NULL;
	}
	event_add(srv->stop_ev, NULL);
	{
		struct timeval tv = {0, 250000};
		event_add(srv->access_timer, &tv);
	}
	memcpy(&srv->up_addr, up, uplen);
	srv->up_addrlen = uplen;
	for (i = 0; i < nlisten; i++) {
		evutil_socket_t fd = dup(listen_fds[i]);
		srv->listeners[i] = fd < 0 ? NULL : evconnlistener_new(
			srv->base, cfg->listen[i].tls ? accept_tls_cb : accept_cb, srv,
			LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
		if (!srv->listeners[i]) {
			if (fd >= 0)
				evutil_closesocket(fd);
			px_log(PX_LOG_ERROR, "startup", "why", "cannot accept", "error",
			       evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()), NULL);
			server_free(srv);
			return NULL;
		}
		evconnlistener_set_error_cb(srv->listeners[i], accept_error_cb);
		srv->nlisteners++;
	}
	return srv;
}

/*
 * Binds every listen address once, for the whole process (nginx without reuseport): the
 * workers accept on dup()s of these sockets, and the originals are closed once they have
 * (a drain closes the socket when the last worker frees its listener). SO_REUSEPORT would
 * let another process with the same user bind the same address and take a share of the connections, under its own
 * policy; without it such a bind fails with EADDRINUSE, and so does ours when the address
 * is taken (a fatal start error). SO_REUSEADDR only allows a restart while old connections
 * are in TIME_WAIT. The sockets are only bound here: px_main_new() calls listen(2) once the
 * whole process is up (the admin listener too), so a client that can connect is served.
 * Returns 0, or -1 after logging why.
 */
static int
bind_listeners(const struct pol_config *cfg, evutil_socket_t *fds, int *n)
{
	struct addrinfo hints, *ai;
	int i, rc, one = 1;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	for (i = 0; i < cfg->nlisten; i++) {
		char addr[300];
		evutil_socket_t fd;
		const char *what = NULL;

		snprintf(addr, sizeof addr, "%s:%s", cfg->listen[i].host, cfg->listen[i].port);
		ai = NULL;
		rc = getaddrinfo(cfg->listen[i].host, cfg->listen[i].port, &hints, &ai);
		if (rc || !ai) {
			px_log(PX_LOG_ERROR, "startup", "why", "cannot resolve listen address", "addr", addr,
			       "error", rc ? gai_strerror(rc) : "no address", NULL);
			if (ai)
				freeaddrinfo(ai);
			return -1;
		}
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			what = "socket";
		else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one))
			what = "setsockopt";
		else if (bind(fd, ai->ai_addr, ai->ai_addrlen))
			what = "bind";
		freeaddrinfo(ai);
		if (what) {
			px_log(PX_LOG_ERROR, "startup", "why", "cannot listen", "addr", addr, "call", what,
			       "error", strerror(errno), NULL);
			if (fd >= 0)
				evutil_closesocket(fd);
			return -1;
		}
		fds[(*n)++] = fd;
		px_log(PX_LOG_INFO, "listen", "addr", addr, "tls", cfg->listen[i].tls ? "on" : "off",
		       NULL);
	}
	return 0;
}

static void *
worker_main(void *arg)
{
	struct px_server *srv = arg;
	event_base_dispatch(srv->base);
	px_io_thread_done();
	return NULL;
}

/* ---- policy changes ---- */

/* The effective policy: the file's, with the overrides applied in order. */
static struct pol_config *
apply_overrides(struct px_main *m, struct pol_config *file)
{
	struct pol_config *c = pol_config_ref(file);
	int i;
	for (i = 0; i < m->nov; i++) {
		struct pol_config *n = pol_config_with_change(c, m->ov[i].app, &m->ov[i].ch);
		if (!n)
			continue;
		pol_config_unref(c);
		c = n;
	}
	return c;
}

/* Publishes C as the policy (takes its reference). Caller holds m->lock. */
static void
publish(struct px_main *m, struct pol_config *c)
{
	struct pol_config *old = m->cfg;
	m->cfg = c;
	atomic_fetch_add_explicit(&m->gen, 1, memory_order_release);
	pol_config_unref(old);
}

int
px_main_change_app(struct px_main *m, const char *app, const struct pol_app_change *ch)
{
	struct px_override *o = NULL;
	int i;

	pthread_mutex_lock(&m->lock);
	if (!pol_config_has_app(m->file_cfg, app)) {
		pthread_mutex_unlock(&m->lock);
		return 404;
	}
	for (i = 0; i < m->nov; i++)
		if (!strcmp(m->ov[i].app, app))
			o = &m->ov[i];
	if (!o) {
		struct px_override *n = realloc(m->ov, (size_t)(m->nov + 1) * sizeof *n);
		if (!n) {
			pthread_mutex_unlock(&m->lock);
			return 500;
		}
		m->ov = n;
		o = &m->ov[m->nov++];
		snprintf(o->app, sizeof o->app, "%s", app);
		o->ch.user_sync = o->ch.conversation_sync = o->ch.mode = -1;
	}
	if (ch->user_sync >= 0)
		o->ch.user_sync = ch->user_sync;
	if (ch->conversation_sync >= 0)
		o->ch.conversation_sync = ch->conversation_sync;
	if (ch->mode >= 0)
		o->ch.mode = ch->mode;
	publish(m, apply_overrides(m, m->file_cfg));
	pthread_mutex_unlock(&m->lock);
	return 0;
}

/*
 * A reload keeps an admin override only where the file did not change that switch: the
 * file's new word on a switch wins over an earlier runtime flip, and a flip of a switch the
 * file left alone survives the reload.
 */
static void
rebase_overrides(struct px_main *m, const struct pol_config *old, const struct pol_config *neu)
{
	int i, j = 0;
	for (i = 0; i < m->nov; i++) {
		struct px_override *o = &m->ov[i];
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
		m->ov[j++] = *o;
	}
	m->nov = j;
}

/*
 * Listen addresses, the upstream and the worker count are bound at start (sockets, threads,
 * the resolved address): a reload that changes them says so and keeps the running ones, so
 * the published config always describes what the process does.
 */
static void
keep_running_shape(const struct pol_config *run, struct pol_config *n)
{
	if (strcmp(n->upstream_scheme, run->upstream_scheme) || strcmp(n->upstream_host, run->upstream_host) ||
	    strcmp(n->upstream_port, run->upstream_port) || n->workers != run->workers ||
	    n->nlisten != run->nlisten || memcmp(n->listen, run->listen, sizeof n->listen))
		px_log(PX_LOG_WARN, "reload", "note",
		       "upstream, listen and workers changes need a restart: kept the running ones", NULL);
	memcpy(n->listen, run->listen, sizeof n->listen);
	n->nlisten = run->nlisten;
	n->tls_listeners = run->tls_listeners;
	memcpy(n->upstream_scheme, run->upstream_scheme, sizeof n->upstream_scheme);
	memcpy(n->upstream_host, run->upstream_host, sizeof n->upstream_host);
	memcpy(n->upstream_port, run->upstream_port, sizeof n->upstream_port);
	n->upstream_tls = run->upstream_tls;
	n->workers = run->workers;
}

/* Both TLS contexts for CFG (NULL where not needed); -1 with ERR if a file is unusable. */
static int
build_tls(const struct pol_config *cfg, SSL_CTX **srv_ctx, SSL_CTX **cli_ctx, char *err,
          size_t errlen)
{
	int failed;

	*cli_ctx = NULL;
	*srv_ctx = px_tls_server_ctx_new(cfg, err, errlen, &failed);
	if (failed)
		return -1;
	*cli_ctx = px_tls_client_ctx_new(cfg, err, errlen, &failed);
	if (failed) {
		SSL_CTX_free(*srv_ctx);
		*srv_ctx = NULL;
		return -1;
	}
	return 0;
}

static void
reload_cb(evutil_socket_t sig, short what, void *arg)
{
	struct px_main *m = arg;
	char err[POL_ERR_MAX];
	struct pol_config *n;
	SSL_CTX *srv_ctx, *cli_ctx;
	(void)sig;
	(void)what;

	n = pol_config_load(m->path, err);
	if (!n) {
		px_log(PX_LOG_ERROR, "reload_failed", "why", err, "kept", "previous policy", NULL);
		return;
	}
	keep_running_shape(m->file_cfg, n);
	if (build_tls(n, &srv_ctx, &cli_ctx, err, sizeof err)) {
		px_log(PX_LOG_ERROR, "reload_failed", "why", err, "kept",
		       "previous policy and certificates", NULL);
		pol_config_unref(n);
		return;
	}
	pthread_mutex_lock(&m->lock);
	SSL_CTX_free(m->tls_server);
	SSL_CTX_free(m->tls_client);
	m->tls_server = srv_ctx;
	m->tls_client = cli_ctx;
	rebase_overrides(m, m->file_cfg, n);
	pol_config_unref(m->file_cfg);
	m->file_cfg = n;
	publish(m, apply_overrides(m, n));
	pthread_mutex_unlock(&m->lock);
	px_log(PX_LOG_INFO, "reload", "config", m->path, NULL);
}

static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct px_main *m = arg;
	int i;
	(void)what;

	px_log(PX_LOG_INFO, "shutdown", "signal", sig == SIGTERM ? "TERM" : "INT", NULL);
	for (i = 0; i < m->nworkers; i++)
		(void)!write(m->workers[i]->stop_fd[1], "x", 1);
	px_admin_free(m->admin);
	m->admin = NULL;
	if (m->nworkers == 1) {
		/* the worker's own drain ends the shared loop; signals are no longer wanted */
		event_del(m->sig_term);
		event_del(m->sig_int);
		event_del(m->sig_hup);
		return;
	}
	event_base_loopexit(m->base, NULL);
}

/* ---- the process ---- */

struct px_main *
px_main_new(struct pol_config *cfg, const char *path)
{
	struct px_main *m;
	struct addrinfo hints, *res = NULL;
	evutil_socket_t fds[PX_MAX_LISTENERS];
	int i, rc, nfds = 0;

	m = calloc(1, sizeof *m);
	if (!m)
		return NULL;
	pthread_mutex_init(&m->lock, NULL);
	pthread_mutex_init(&m->peers_lock, NULL);
	m->path = strdup(path);
	m->file_cfg = pol_config_ref(cfg);
	m->cfg = pol_config_ref(cfg);
	m->started = time(NULL);
	if (!m->path)
		goto bad;
	{
		char err[POL_ERR_MAX];
		if (build_tls(cfg, &m->tls_server, &m->tls_client, err, sizeof err)) {
			px_log(PX_LOG_ERROR, "startup", "why", err, NULL);
			goto bad;
		}
		if (cfg->upstream_tls && !cfg->up_tls.verify)
			px_log(PX_LOG_WARN, "startup", "note",
			       "upstream_verify = off: the backend's certificate is not checked", NULL);
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	rc = getaddrinfo(cfg->upstream_host, cfg->upstream_port, &hints, &res);
	if (rc || !res) {
		px_log(PX_LOG_ERROR, "startup", "why", "cannot resolve upstream", "host",
		       cfg->upstream_host, "error", gai_strerror(rc), NULL);
		goto bad;
	}
	m->workers = calloc((size_t)cfg->workers, sizeof *m->workers);
	rc = m->workers ? bind_listeners(cfg, fds, &nfds) : -1;
	for (i = 0; rc == 0 && i < cfg->workers; i++) {
		m->workers[i] = server_new(m, i, res->ai_addr, res->ai_addrlen, fds, nfds);
		if (!m->workers[i])
			rc = -1;
		else
			m->nworkers++;
	}
	freeaddrinfo(res);
	if (rc)
		goto bad;
	/* one worker: its loop is the main loop, and the process stays single-threaded (glibc's
	 * syscall wrappers then skip the cancellation bookkeeping a second thread would cost) */
	m->base = m->nworkers == 1 ? m->workers[0]->base : event_base_new();
	if (!m->base)
		goto bad;
	if (cfg->admin_listen[0]) {
		m->admin = px_admin_new(m, cfg);
		if (!m->admin)
			goto bad;
	}
	for (i = 0; i < nfds; i++)
		if (listen(fds[i], 1024)) {
			px_log(PX_LOG_ERROR, "startup", "why", "cannot listen", "addr", cfg->listen[i].host,
			       "call", "listen", "error", strerror(errno), NULL);
			goto bad;
		}
	for (i = 0; i < nfds; i++)
		evutil_closesocket(fds[i]); /* the workers have their own */
	nfds = 0;
	m->sig_term = evsignal_new(m->base, SIGTERM, stop_cb, m);
	m->sig_int = evsignal_new(m->base, SIGINT, stop_cb, m);
	m->sig_hup = evsignal_new(m->base, SIGHUP, reload_cb, m);
	evsignal_add(m->sig_term, NULL);
	evsignal_add(m->sig_int, NULL);
	evsignal_add(m->sig_hup, NULL);
	return m;
bad:
	for (i = 0; i < nfds; i++)
		evutil_closesocket(fds[i]);
	px_main_free(m);
	return NULL;
}

int
px_main_run(struct px_main *m)
{
	char up[300], nw[8];
	int i;

	for (i = 0; m->nworkers > 1 && i < m->nworkers; i++)
		if (pthread_create(&m->workers[i]->thread, NULL, worker_main, m->workers[i])) {
			px_log(PX_LOG_ERROR, "startup", "why", "cannot start a worker thread", NULL);
			return 1;
		}
	snprintf(up, sizeof up, "%s://%s:%s", m->cfg->upstream_scheme, m->cfg->upstream_host,
	         m->cfg->upstream_port);
	snprintf(nw, sizeof nw, "%d", m->nworkers);
	px_log(PX_LOG_INFO, "ready", "upstream", up, "workers", nw, "version", SYNCGATE_VERSION, NULL);
	event_base_dispatch(m->base);
	for (i = 0; m->nworkers > 1 && i < m->nworkers; i++)
		pthread_join(m->workers[i]->thread, NULL);
	px_log(PX_LOG_INFO, "exit", NULL);
	return 0;
}

void
px_main_free(struct px_main *m)
{
	int i;
	if (!m)
		return;
	px_admin_free(m->admin);
	if (m->sig_term)
		event_free(m->sig_term);
	if (m->sig_int)
		event_free(m->sig_int);
	if (m->sig_hup)
		event_free(m->sig_hup);
	if (m->base && (m->nworkers != 1 || m->base != m->workers[0]->base))
		event_base_free(m->base);
	for (i = 0; i < m->nworkers; i++)
		server_free(m->workers[i]);
	free(m->workers);
	pol_config_unref(m->cfg);
	pol_config_unref(m->file_cfg);
	SSL_CTX_free(m->tls_server);
	SSL_CTX_free(m->tls_client);
	free(m->ov);
	free(m->path);
	for (i = 0; i < 1024; i++)
		while (m->peers[i]) {
			struct px_peer_count *p = m->peers[i];
			m->peers[i] = p->next;
			free(p);
		}
	pthread_mutex_destroy(&m->peers_lock);
	pthread_mutex_destroy(&m->lock);
	free(m);
	px_io_thread_done(); /* the buffers the connections freed above returned here */
}
