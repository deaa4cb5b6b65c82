/*
 * proxy/upstream.c - the upstream connection pool of one worker.
 *
 * px_upstream_get() hands out an idle keep-alive connection when there is one, else a new
 * connecting px_io (the caller sees PX_IO_CONNECTED; with an https upstream, after the TLS
 * handshake, resuming the worker's last session when the backend allows). Idle connections sit with callbacks
 * that free them on any event: data from an idle backend, EOF, error or the idle timeout all
 * mean it is no longer safe to reuse.
 */
#include <stdlib.h>
#include <string.h>

#include "proxy/internal.h"
#include "proxy/log.h"
#include "proxy/tls.h"

static void
pool_remove(struct px_server *srv, struct px_io *io)
{
	int i;
	for (i = 0; i < srv->npool; i++)
		if (srv->pool[i] == io) {
			srv->pool[i] = srv->pool[--srv->npool];
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
px_upstream_get(struct px_server *srv, int *reused)
{
	struct px_io *io;

	while (srv->npool > 0) {
		io = srv->pool[--srv->npool];
		if (evbuffer_get_length(px_io_input(io)) == 0) {
			px_io_setcb(io, NULL, NULL, NULL, NULL);
			px_io_set_timeout(io, 0);
			*reused = 1;
			return io;
		}
		px_io_free(io);
	}
	*reused = 0;
	io = px_io_connect(srv->base, (struct sockaddr *)&srv->up_addr, srv->up_addrlen,
	                   srv->cfg->limits.upstream_connect_ms);
	if (io && srv->tls_client) {
		SSL *ssl = px_tls_client_new(srv->tls_client, srv->cfg, &srv->up_session);
		if (!ssl || px_io_tls_connect(io, ssl)) {
			if (!ssl)
				px_log(PX_LOG_ERROR, "tls", "why", "cannot create an upstream TLS session", NULL);
			px_io_free(io);
			return NULL;
		}
	}
	return io;
}

void
px_upstream_put(struct px_server *srv, struct px_io *io)
{
	const struct pol_limits *lim = &srv->cfg->limits;

	if (srv->draining || (unsigned)srv->npool >= lim->upstream_pool ||
	    evbuffer_get_length(px_io_input(io)) != 0 || px_io_pending(io) != 0) {
		px_io_free(io);
		return;
	}
	if (srv->npool == srv->cpool) {
		int nc = srv->cpool ? srv->cpool * 2 : 16;
		struct px_io **np = realloc(srv->pool, (size_t)nc * sizeof *np);
		if (!np) {
			px_io_free(io);
			return;
		}
		srv->pool = np;
		srv->cpool = nc;
	}
	px_io_setcb(io, idle_readcb, NULL, idle_eventcb, srv);
	px_io_set_timeout(io, lim->upstream_idle_ms);
	px_io_read(io, 1);
	srv->pool[srv->npool++] = io;
}

void
px_upstream_pool_free(struct px_server *srv)
{
	while (srv->npool > 0)
		px_io_free(srv->pool[--srv->npool]);
	free(srv->pool);
	srv->pool = NULL;
	srv->cpool = 0;
}
