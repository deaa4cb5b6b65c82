/*
 * proxy/upstream.c - one upstream's connections for one thread (contract in upstream.h).
 *
 * Idle connections sit with callbacks that free them on any event: data from an idle
 * backend, EOF, error or the idle timeout all mean it is no longer safe to reuse.
 */
#include "proxy/upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/log.h"
#include "proxy/tls.h"

struct px_upstream {
	struct event_base *base;
	int idx;                        /* in cfg->upstreams (fixed for the process's life) */
	char name[POL_NAME_MAX + 1];
	char host[300];                 /* the Host it is named by (lookups, logs) */
	int rewrite_host;               /* relayed requests carry HOST, not the client's */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	SSL_CTX *tls;                   /* NULL: plain */
	SSL_SESSION *session;           /* the last session, resumed by new connections */
	struct pol_config *cfg;
	int pooling, draining;
	struct px_io **pool;            /* idle connections */
	int npool, cpool;
};

/* The Host it is named by, from its config entry U (at start and at every reload). */
static void
set_host(struct px_upstream *up, const struct pol_upstream *u)
{
	if ((up->rewrite_host = u->host_header[0] != 0))
		snprintf(up->host, sizeof up->host, "%s", u->host_header);
	else
		snprintf(up->host, sizeof up->host, "%s%s%s:%s", strchr(u->host, ':') ? "[" : "", u->host,
		         strchr(u->host, ':') ? "]" : "", u->port);
}

struct px_upstream *
px_upstream_new(struct event_base *base, int idx, const struct sockaddr *sa, socklen_t salen,
                SSL_CTX *tls, struct pol_config *cfg, int pool)
{
	struct px_upstream *up = calloc(1, sizeof *up);
	const struct pol_upstream *u = &cfg->upstreams[idx];

	if (!up || salen > sizeof up->addr) {
		free(up);
		return NULL;
	}
	up->base = base;
	up->idx = idx;
	snprintf(up->name, sizeof up->name, "%s", u->name);
	set_host(up, u);
	memcpy(&up->addr, sa, salen);
	up->addrlen = salen;
	if ((up->tls = tls))
		SSL_CTX_up_ref(tls);
	up->cfg = pol_config_ref(cfg);
	up->pooling = pool;
	return up;
}

void
px_upstream_free(struct px_upstream *up)
{
	if (!up)
		return;
	px_upstream_drain(up);
	SSL_CTX_free(up->tls);
	SSL_SESSION_free(up->session);
	pol_config_unref(up->cfg);
	free(up);
}

void
px_upstream_update(struct px_upstream *up, SSL_CTX *tls, struct pol_config *cfg)
{
	if (tls != up->tls) {
		SSL_CTX_free(up->tls); /* connections made with it hold their own references */
		if ((up->tls = tls))
			SSL_CTX_up_ref(tls);
		SSL_SESSION_free(up->session);
		up->session = NULL;
	}
	if (cfg != up->cfg) {
		pol_config_unref(up->cfg);
		up->cfg = pol_config_ref(cfg);
		set_host(up, &cfg->upstreams[up->idx]); /* host = reloads */
	}
}

static void
pool_remove(struct px_upstream *up, struct px_io *io)
{
	int i;
	for (i = 0; i < up->npool; i++)
		if (up->pool[i] == io) {
			up->pool[i] = up->pool[--up->npool];
			return;
		}
}

static void
idle_readcb(struct px_io *io, void *arg)
{
	pool_remove(arg, io);
	px_io_free(io);
}

static void
idle_eventcb(struct px_io *io, short what, void *arg)
{
	(void)what;
	pool_remove(arg, io);
	px_io_free(io);
}

struct px_io *
px_upstream_get(struct px_upstream *up, int *reused)
{
	struct px_io *io;

	while (up->npool > 0) {
		io = up->pool[--up->npool];
		if (evbuffer_get_length(px_io_input(io)) == 0) {
			px_io_setcb(io, NULL, NULL, NULL, NULL);
			px_io_set_timeout(io, 0);
			*reused = 1;
			return io;
		}
		px_io_free(io);
	}
	*reused = 0;
	io = px_io_connect(up->base, (struct sockaddr *)&up->addr, up->addrlen,
	                   up->cfg->limits.upstream_connect_ms);
	if (io && up->tls) {
		SSL *ssl = px_tls_client_new(up->tls, &up->cfg->upstreams[up->idx], &up->session);
		if (!ssl || px_io_tls_connect(io, ssl)) {
			if (!ssl)
				px_log(PX_LOG_ERROR, "tls", "why", "cannot create an upstream TLS session",
				       "upstream", up->name, NULL);
			px_io_free(io);
			return NULL;
		}
	}
	return io;
}

void
px_upstream_put(struct px_upstream *up, struct px_io *io)
{
	const struct pol_limits *lim = &up->cfg->limits;

	if (!up->pooling || up->draining || (unsigned)up->npool >= up->cfg->upstreams[up->idx].pool ||
	    evbuffer_get_length(px_io_input(io)) != 0 || px_io_pending(io) != 0) {
		px_io_free(io);
		return;
	}
	if (up->npool == up->cpool) {
		int nc = up->cpool ? up->cpool * 2 : 16;
		struct px_io **np = realloc(up->pool, (size_t)nc * sizeof *np);
		if (!np) {
			px_io_free(io);
			return;
		}
		up->pool = np;
		up->cpool = nc;
	}
	px_io_setcb(io, idle_readcb, NULL, idle_eventcb, up);
	px_io_set_timeout(io, lim->upstream_idle_ms);
	px_io_read(io, 1);
	up->pool[up->npool++] = io;
}

void
px_upstream_drain(struct px_upstream *up)
{
	up->draining = 1;
	while (up->npool > 0)
		px_io_free(up->pool[--up->npool]);
	free(up->pool);
	up->pool = NULL;
	up->cpool = 0;
}

const char *
px_upstream_host(const struct px_upstream *up)
{
	return up->host;
}

const char *
px_upstream_host_header(const struct px_upstream *up)
{
	return up->rewrite_host ? up->host : NULL;
}

int
px_upstream_index(const struct px_upstream *up)
{
	return up->idx;
}

const char *
px_upstream_name(const struct px_upstream *up)
{
	return up->name;
}
