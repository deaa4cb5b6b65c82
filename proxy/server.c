/*
 * proxy/server.c - a worker's event loop: listeners, signals, reload and drain.
 *
 * SIGHUP re-reads the config file: a new policy is built and validated first, then swapped
 * in; connections keep the policy they hold until their current request ends (refcounts).
 * A broken file changes nothing. SIGTERM/SIGINT stop accepting, close idle connections, let
 * in-flight requests finish, and exit after shutdown_grace at the latest.
 */
#include "proxy/server.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/internal.h"
#include "proxy/log.h"
#include "proxy/lookup.h"

static char *config_path;

static void
accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct px_server *srv = arg;
	(void)l;
	if (srv->draining) {
		evutil_closesocket(fd);
		return;
	}
	px_conn_accept(srv, fd, sa, salen);
	if ((unsigned)srv->nconns >= srv->cfg->limits.max_connections) {
		int i;
		px_log(PX_LOG_WARN, "max_connections", "why", "accept paused", NULL);
		for (i = 0; i < srv->nlisteners; i++)
			evconnlistener_disable(srv->listeners[i]);
	}
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
	px_log(PX_LOG_WARN, "shutdown", "why", "grace period over, closing the rest", NULL);
	while (srv->conns)
		px_conn_close(srv->conns);
	event_base_loopexit(srv->base, NULL);
}

static void
stop_cb(evutil_socket_t sig, short what, void *arg)
{
	struct px_server *srv = arg;
	struct px_conn *c, *next;
	struct timeval tv;
	int i;
	(void)what;

	if (srv->draining)
		return;
	srv->draining = 1;
	px_log(PX_LOG_INFO, "shutdown", "signal", sig == SIGTERM ? "TERM" : "INT", NULL);
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
	}
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
reload_cb(evutil_socket_t sig, short what, void *arg)
{
	struct px_server *srv = arg;
	char err[POL_ERR_MAX];
	struct pol_config *n;
	(void)sig;
	(void)what;

	n = pol_config_load(config_path, err);
	if (!n) {
		px_log(PX_LOG_ERROR, "reload_failed", "why", err, "kept", "previous policy", NULL);
		return;
	}
	/* listeners, upstream and workers need a restart; the policy and limits swap now */
	if (strcmp(n->upstream_host, srv->cfg->upstream_host) ||
	    strcmp(n->upstream_port, srv->cfg->upstream_port))
		px_log(PX_LOG_WARN, "reload", "note", "upstream changes need a restart", NULL);
	pol_config_unref(srv->cfg);
	srv->cfg = n;
	px_log(PX_LOG_INFO, "reload", "config", config_path, NULL);
}

struct px_server *
px_server_new(struct pol_config *cfg, const char *path)
{
	struct px_server *srv = calloc(1, sizeof *srv);
	struct addrinfo hints, *res = NULL;
	int i, rc;

	if (!srv)
		return NULL;
	config_path = strdup(path);
	srv->cfg = pol_config_ref(cfg);
	srv->base = event_base_new();
	srv->classifier = pol_classifier_new(&cfg->limits);
	srv->ws_scratch_size = cfg->limits.ws_message_bytes;
	srv->ws_scratch = malloc(srv->ws_scratch_size);
	if (!srv->base || !srv->classifier || !srv->ws_scratch) {
		px_log(PX_LOG_ERROR, "startup", "why", "out of memory", NULL);
		goto bad;
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
	memcpy(&srv->up_addr, res->ai_addr, res->ai_addrlen);
	srv->up_addrlen = res->ai_addrlen;
	freeaddrinfo(res);

	for (i = 0; i < cfg->nlisten; i++) {
		struct addrinfo *ai = NULL;
		char addr[300];
		hints.ai_flags = AI_PASSIVE;
		rc = getaddrinfo(cfg->listen[i].host, cfg->listen[i].port, &hints, &ai);
		snprintf(addr, sizeof addr, "%s:%s", cfg->listen[i].host, cfg->listen[i].port);
		if (rc || !ai) {
			px_log(PX_LOG_ERROR, "startup", "why", "cannot resolve listen address", "addr", addr, NULL);
			goto bad;
		}
		srv->listeners[i] = evconnlistener_new_bind(
			srv->base, accept_cb, srv,
			LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, 1024,
			ai->ai_addr, (int)ai->ai_addrlen);
		freeaddrinfo(ai);
		if (!srv->listeners[i]) {
			px_log(PX_LOG_ERROR, "startup", "why", "cannot listen", "addr", addr, "error",
			       evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()), NULL);
			goto bad;
		}
		evconnlistener_set_error_cb(srv->listeners[i], accept_error_cb);
		srv->nlisteners++;
		px_log(PX_LOG_INFO, "listen", "addr", addr, NULL);
	}
	srv->sig_term = evsignal_new(srv->base, SIGTERM, stop_cb, srv);
	srv->sig_int = evsignal_new(srv->base, SIGINT, stop_cb, srv);
	srv->sig_hup = evsignal_new(srv->base, SIGHUP, reload_cb, srv);
	evsignal_add(srv->sig_term, NULL);
	evsignal_add(srv->sig_int, NULL);
	evsignal_add(srv->sig_hup, NULL);
	return srv;
bad:
	px_server_free(srv);
	return NULL;
}

int
px_server_run(struct px_server *srv)
{
	char up[300];
	snprintf(up, sizeof up, "http://%s:%s", srv->cfg->upstream_host, srv->cfg->upstream_port);
	px_log(PX_LOG_INFO, "ready", "upstream", up, "version", SYNCGATE_VERSION, NULL);
	event_base_dispatch(srv->base);
	px_log(PX_LOG_INFO, "exit", NULL);
	return 0;
}

void
px_server_free(struct px_server *srv)
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
	if (srv->sig_term)
		event_free(srv->sig_term);
	if (srv->sig_int)
		event_free(srv->sig_int);
	if (srv->sig_hup)
		event_free(srv->sig_hup);
	if (srv->drain_timer)
		event_free(srv->drain_timer);
	pol_classifier_free(srv->classifier);
	free(srv->ws_scratch);
	pol_config_unref(srv->cfg);
	if (srv->base)
		event_base_free(srv->base);
	free(config_path);
	config_path = NULL;
	free(srv);
}
