/*
 * proxy/process.c - the process (contract in process.h).
 *
 * The main thread owns the signals and the admin listener; each worker thread runs its own
 * event loop (worker.c). Nothing of a connection is ever touched by another thread.
 *
 * Policy changes (SIGHUP, admin API) build a new config, validate it, and publish it through
 * shared.c; each worker picks it up at its next request or frame. A broken file changes
 * nothing. SIGTERM/SIGINT: every worker drains (worker.c), then the process exits 0.
 */
#include "proxy/process.h"

#include <errno.h>
#include <event2/event.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxy/admin.h"
#include "proxy/fleet.h"
#include "proxy/io.h"
#include "proxy/log.h"
#include "proxy/shared.h"
#include "proxy/stats.h"
#include "proxy/tls.h"
#include "proxy/upstream.h"
#include "proxy/worker.h"

struct px_process {
	char *path;
	struct px_shared *shared;
	struct pol_config *file_cfg;    /* the file as last loaded (reloads compare with it) */
	struct event_base *base;        /* signals and the admin listener */
	struct event *sig_term, *sig_int, *sig_hup;
	struct px_worker **workers;
	struct px_stats **stats;        /* each worker's, for the admin endpoint */
	int nworkers;
	struct px_upstream *admin_ups[POL_UPSTREAM_MAX]; /* the main thread's instances (/readyz) */
	int nadmin_ups;
	struct px_admin *admin;
	struct px_fleet *fleet;         /* [fleet]: NULL without */
	char upstream[300];             /* scheme://host:port, for the ready line */
	/* watch_config: an inotify watch on the file's directory (a ConfigMap update swaps a
	 * symlink there), a short settle timer, and the content last loaded */
	int watch_fd;
	struct event *watch_ev, *watch_timer;
	uint64_t file_hash;
};

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

/* 1 if upstreams A and B are the same address under the same name (what start bound). */
static int
same_upstream(const struct pol_upstream *a, const struct pol_upstream *b)
{
	return !strcmp(a->name, b->name) && !strcmp(a->scheme, b->scheme) && !strcmp(a->host, b->host) &&
	       !strcmp(a->port, b->port);
}

/*
 * Listen addresses, the upstreams' addresses and the worker count are bound at start
 * (sockets, threads, resolved addresses): a reload that changes the default upstream, the
 * listen addresses or the workers says so and keeps the running ones, so the published
 * config always describes what the process does. Named upstreams added, removed or moved
 * cannot be kept that way (routes name them): such a reload is refused (returns -1, ERR).
 */
static int
keep_running_shape(const struct pol_config *run, struct pol_config *n, char *err, size_t errlen)
{
	int i;

	if (n->nupstreams != run->nupstreams) {
		snprintf(err, errlen, "the set of [upstream:NAME] sections changed: that needs a restart");
		return -1;
	}
	if (n->lookup_upstream != run->lookup_upstream) {
		snprintf(err, errlen, "lookup_upstream changed: that needs a restart");
		return -1;
	}
	for (i = 1; i < n->nupstreams; i++)
		if (!same_upstream(&n->upstreams[i], &run->upstreams[i])) {
			snprintf(err, errlen, "[upstream:%s] changed name or address: that needs a restart",
			         n->upstreams[i].name);
			return -1;
		}
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
	memcpy(n->upstreams[0].scheme, run->upstreams[0].scheme, sizeof n->upstreams[0].scheme);
	memcpy(n->upstreams[0].host, run->upstreams[0].host, sizeof n->upstreams[0].host);
	memcpy(n->upstreams[0].port, run->upstreams[0].port, sizeof n->upstreams[0].port);
	n->upstreams[0].tls = run->upstreams[0].tls;
	n->workers = run->workers;
	if (memcmp(&n->fleet, &run->fleet, sizeof n->fleet))
		px_log(PX_LOG_WARN, "reload", "note", "[fleet] changes need a restart: kept the running one",
		       NULL);
	n->fleet = run->fleet;
	return 0;
}

static void
free_clients(struct px_tls_clients *cli)
{
	int i;
	for (i = 0; i < POL_UPSTREAM_MAX; i++) {
		SSL_CTX_free(cli->ctx[i]);
		cli->ctx[i] = NULL;
	}
}

/* The listeners' context and each upstream's (NULL where not needed; CLI has
 * POL_UPSTREAM_MAX entries); -1 with ERR if a file is unusable. */
static int
build_tls(const struct pol_config *cfg, SSL_CTX **srv_ctx, struct px_tls_clients *cli, char *err,
          size_t errlen)
{
	int failed, i;

	for (i = 0; i < POL_UPSTREAM_MAX; i++)
		cli->ctx[i] = NULL;
	*srv_ctx = px_tls_server_ctx_new(cfg, err, errlen, &failed);
	if (failed)
		return -1;
	for (i = 0; i < cfg->nupstreams; i++) {
		cli->ctx[i] = px_tls_client_ctx_new(&cfg->upstreams[i], err, errlen, &failed);
		if (failed) {
			free_clients(cli);
			SSL_CTX_free(*srv_ctx);
			*srv_ctx = NULL;
			return -1;
		}
	}
	return 0;
}

/* FNV-1a of the file at PATH (0 if it cannot be read): a change of content, not of mtime. */
static uint64_t
file_hash(const char *path)
{
	uint64_t h = 14695981039346656037ull;
	unsigned char buf[4096];
	size_t n;
	FILE *f = fopen(path, "rb");

	if (!f)
		return 0;
	while ((n = fread(buf, 1, sizeof buf, f)) > 0)
		for (size_t i = 0; i < n; i++)
			h = (h ^ buf[i]) * 1099511628211ull;
	fclose(f);
	return h;
}

static void reload_cb(evutil_socket_t sig, short what, void *arg);

/* The directory changed and settled: a reload, as on SIGHUP, if the file's content did. */
static void
watch_settled(evutil_socket_t fd, short what, void *arg)
{
	struct px_process *p = arg;
	uint64_t h = file_hash(p->path);
	(void)fd;
	(void)what;
	if (!h || h == p->file_hash)
		return;
	px_log(PX_LOG_INFO, "config_changed", "config", p->path, NULL);
	reload_cb(SIGHUP, 0, p);
}

static void
watch_readable(evutil_socket_t fd, short what, void *arg)
{
	struct px_process *p = arg;
	char buf[4096];
	struct timeval tv = {0, 200000}; /* editors and kubelet write in steps */
	(void)what;
	while (read(fd, buf, sizeof buf) > 0)
		;
	evtimer_add(p->watch_timer, &tv);
}

/* watch_config: inotify on the config file's directory. Returns 0, or -1 (logged). */
static int
watch_start(struct px_process *p)
{
	char dir[4096];
	char *slash;

	snprintf(dir, sizeof dir, "%s", p->path);
	slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = 0;
	else
		*slash = 0;
	p->watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (p->watch_fd < 0 ||
	    inotify_add_watch(p->watch_fd, dir, IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE |
	                                         IN_ATTRIB) < 0) {
		px_log(PX_LOG_ERROR, "startup", "why", "watch_config: cannot watch the config's directory",
		       "dir", dir, "error", strerror(errno), NULL);
		return -1;
	}
	p->watch_ev = event_new(p->base, p->watch_fd, EV_READ | EV_PERSIST, watch_readable, p);
	p->watch_timer = evtimer_new(p->base, watch_settled, p);
	if (!p->watch_ev || !p->watch_timer || event_add(p->watch_ev, NULL))
		return -1;
	return 0;
}

static void
reload_cb(evutil_socket_t sig, short what, void *arg)
{
	struct px_process *p = arg;
	char err[POL_ERR_MAX];
	struct pol_config *n;
	SSL_CTX *srv_ctx;
	struct px_tls_clients cli_ctx;
	int i;
	(void)sig;
	(void)what;

	n = pol_config_load(p->path, err);
	if (!n || keep_running_shape(p->file_cfg, n, err, sizeof err)) {
		px_log(PX_LOG_ERROR, "reload_failed", "why", err, "kept", "previous policy", NULL);
		px_shared_count_reload(p->shared, 0);
		pol_config_unref(n);
		return;
	}
	if (build_tls(n, &srv_ctx, &cli_ctx, err, sizeof err)) {
		px_log(PX_LOG_ERROR, "reload_failed", "why", err, "kept",
		       "previous policy and certificates", NULL);
		px_shared_count_reload(p->shared, 0);
		pol_config_unref(n);
		return;
	}
	px_shared_reload(p->shared, n, srv_ctx, &cli_ctx);
	for (i = 0; i < p->nadmin_ups; i++)
		px_upstream_update(p->admin_ups[i], cli_ctx.ctx[i], n);
	SSL_CTX_free(srv_ctx);
	free_clients(&cli_ctx);
	pol_config_unref(p->file_cfg);
	p->file_cfg = n;
	px_shared_count_reload(p->shared, 1);
	p->file_hash = file_hash(p->path);
	px_log(PX_LOG_INFO, "reload", "config", p->path, NULL);
}

static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct px_process *p = arg;
	int i;
	(void)what;

	px_log(PX_LOG_INFO, "shutdown", "signal", sig == SIGTERM ? "TERM" : "INT", NULL);
	for (i = 0; i < p->nworkers; i++)
		px_worker_stop(p->workers[i]);
	px_admin_free(p->admin);
	p->admin = NULL;
	if (p->watch_ev)
		event_del(p->watch_ev);
	if (p->watch_timer)
		event_del(p->watch_timer);
	if (p->nworkers == 1) {
		/* the worker's own drain ends the shared loop; signals are no longer wanted */
		event_del(p->sig_term);
		event_del(p->sig_int);
		event_del(p->sig_hup);
		return;
	}
	event_base_loopexit(p->base, NULL);
}

struct px_process *
px_process_new(struct pol_config *cfg, const char *path)
{
	struct px_process *p;
	struct addrinfo hints, *res = NULL;
	evutil_socket_t fds[POL_MAX_LISTEN];
	SSL_CTX *srv_ctx = NULL;
	struct px_tls_clients cli_ctx = {{NULL}};
	struct px_upstream_addr addrs[POL_UPSTREAM_MAX];
	int i, rc, nfds = 0;

	p = calloc(1, sizeof *p);
	if (!p)
		return NULL;
	p->watch_fd = -1;
	p->path = strdup(path);
	p->file_cfg = pol_config_ref(cfg);
	if (!p->path)
		goto bad;
	{
		char err[POL_ERR_MAX];
		if (build_tls(cfg, &srv_ctx, &cli_ctx, err, sizeof err)) {
			px_log(PX_LOG_ERROR, "startup", "why", err, NULL);
			goto bad;
		}
		for (i = 0; i < cfg->nupstreams; i++)
			if (cfg->upstreams[i].tls && !cfg->upstreams[i].t.verify)
				px_log(PX_LOG_WARN, "startup", "upstream", cfg->upstreams[i].name, "note",
				       i ? "verify = off: the backend's certificate is not checked"
				         : "upstream_verify = off: the backend's certificate is not checked", NULL);
	}
	p->shared = px_shared_new(cfg, srv_ctx, &cli_ctx);
	if (!p->shared)
		goto bad;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	for (i = 0; i < cfg->nupstreams; i++) {
		const struct pol_upstream *u = &cfg->upstreams[i];
		rc = getaddrinfo(u->host, u->port, &hints, &res);
		if (rc || !res || res->ai_addrlen > sizeof addrs[i].sa) {
			px_log(PX_LOG_ERROR, "startup", "why", "cannot resolve upstream", "upstream", u->name,
			       "host", u->host, "error", rc ? gai_strerror(rc) : "no address", NULL);
			if (res)
				freeaddrinfo(res);
			goto bad;
		}
		memcpy(&addrs[i].sa, res->ai_addr, res->ai_addrlen);
		addrs[i].len = res->ai_addrlen;
		freeaddrinfo(res);
		res = NULL;
	}
	snprintf(p->upstream, sizeof p->upstream, "%s://%s:%s", cfg->upstream_scheme, cfg->upstream_host,
	         cfg->upstream_port);
	p->workers = calloc((size_t)cfg->workers, sizeof *p->workers);
	p->stats = calloc((size_t)cfg->workers, sizeof *p->stats);
	rc = p->workers && p->stats ? bind_listeners(cfg, fds, &nfds) : -1;
	for (i = 0; rc == 0 && i < cfg->workers; i++) {
		p->workers[i] = px_worker_new(i, p->shared, addrs, fds, nfds);
		if (!p->workers[i]) {
			rc = -1;
		} else {
			p->stats[i] = px_worker_stats(p->workers[i]);
			p->nworkers++;
		}
	}
	/* one worker: its loop is the main loop, and the process stays single-threaded (glibc's
	 * syscall wrappers then skip the cancellation bookkeeping a second thread would cost) */
	if (rc == 0)
		p->base = p->nworkers == 1 ? px_worker_base(p->workers[0]) : event_base_new();
	for (i = 0; p->base && i < cfg->nupstreams; i++) {
		p->admin_ups[i] = px_upstream_new(p->base, i, (const struct sockaddr *)&addrs[i].sa,
		                                  addrs[i].len, cli_ctx.ctx[i], cfg, 0);
		if (!p->admin_ups[i])
			break;
		p->nadmin_ups++;
	}
	if (rc || !p->base || p->nadmin_ups != cfg->nupstreams)
		goto bad;
	/* the fleet's state_file is applied here, before the first connection is accepted */
	if (cfg->fleet.on && !(p->fleet = px_fleet_new(p->base, p->shared, &cfg->fleet)))
		goto bad;
	if (cfg->admin_listen[0]) {
		struct px_admin_env ae = {p->base, p->shared, p->stats, p->nworkers, p->admin_ups,
		                          p->nadmin_ups, p->fleet, time(NULL)};
		p->admin = px_admin_new(&ae, cfg);
		if (!p->admin)
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
	SSL_CTX_free(srv_ctx);
	srv_ctx = NULL; /* (a later failure goes to bad:, which frees it again) */
	free_clients(&cli_ctx);
	p->sig_term = evsignal_new(p->base, SIGTERM, stop_cb, p);
	p->sig_int = evsignal_new(p->base, SIGINT, stop_cb, p);
	p->sig_hup = evsignal_new(p->base, SIGHUP, reload_cb, p);
	evsignal_add(p->sig_term, NULL);
	evsignal_add(p->sig_int, NULL);
	evsignal_add(p->sig_hup, NULL);
	p->file_hash = file_hash(p->path);
	if (cfg->watch_config && watch_start(p))
		goto bad;
	return p;
bad:
	for (i = 0; i < nfds; i++)
		evutil_closesocket(fds[i]);
	SSL_CTX_free(srv_ctx);
	free_clients(&cli_ctx);
	px_process_free(p);
	return NULL;
}

int
px_process_run(struct px_process *p)
{
	char nw[8];
	int i;

	for (i = 0; p->nworkers > 1 && i < p->nworkers; i++)
		if (px_worker_spawn(p->workers[i])) {
			px_log(PX_LOG_ERROR, "startup", "why", "cannot start a worker thread", NULL);
			return 1;
		}
	snprintf(nw, sizeof nw, "%d", p->nworkers);
	px_log(PX_LOG_INFO, "ready", "upstream", p->upstream, "#workers", nw, "version",
	       SYNCGATE_VERSION, NULL);
	event_base_dispatch(p->base);
	for (i = 0; p->nworkers > 1 && i < p->nworkers; i++)
		px_worker_join(p->workers[i]);
	for (i = 0; i < p->nworkers; i++)
		px_worker_flush_logs(p->workers[i]); /* the last requests' lines come before "exit" */
	px_log(PX_LOG_INFO, "exit", NULL);
	return 0;
}

void
px_process_free(struct px_process *p)
{
	int i;
	if (!p)
		return;
	px_admin_free(p->admin);
	px_fleet_free(p->fleet);
	if (p->watch_ev)
		event_free(p->watch_ev);
	if (p->watch_timer)
		event_free(p->watch_timer);
	if (p->watch_fd >= 0)
		close(p->watch_fd);
	if (p->sig_term)
		event_free(p->sig_term);
	if (p->sig_int)
		event_free(p->sig_int);
	if (p->sig_hup)
		event_free(p->sig_hup);
	for (i = 0; i < p->nadmin_ups; i++)
		px_upstream_free(p->admin_ups[i]);
	if (p->base && (p->nworkers != 1 || p->base != px_worker_base(p->workers[0])))
		event_base_free(p->base);
	for (i = 0; i < p->nworkers; i++)
		px_worker_free(p->workers[i]);
	free(p->workers);
	free(p->stats);
	px_shared_free(p->shared);
	pol_config_unref(p->file_cfg);
	free(p->path);
	free(p);
	px_io_thread_done(); /* the buffers the connections freed above returned here */
}
