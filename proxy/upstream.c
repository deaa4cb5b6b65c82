/*
 * proxy/upstream.c - the upstream connection pool of one worker.
 *
 * px_upstream_get() hands out an idle keep-alive connection when there is one, else a new
 * connecting bufferevent (the caller sees BEV_EVENT_CONNECTED). Idle connections sit with
 * callbacks that free them on any event: data from an idle backend, EOF, error or the idle
 * timeout all mean it is no longer safe to reuse.
 */
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/internal.h"

static void
pool_remove(struct px_server *srv, struct bufferevent *bev)
{
	int i;
	for (i = 0; i < srv->npool; i++)
		if (srv->pool[i] == bev) {
			srv->pool[i] = srv->pool[--srv->npool];
			return;
		}
}

static void
idle_readcb(struct bufferevent *bev, void *arg)
{
	pool_remove(arg, bev);
	bufferevent_free(bev);
}

static void
idle_eventcb(struct bufferevent *bev, short what, void *arg)
{
	(void)what;
	pool_remove(arg, bev);
	bufferevent_free(bev);
}

struct bufferevent *
px_upstream_get(struct px_server *srv, int *reused)
{
	struct bufferevent *bev;

	while (srv->npool > 0) {
		bev = srv->pool[--srv->npool];
		if (evbuffer_get_length(bufferevent_get_input(bev)) == 0) {
			bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
			bufferevent_set_timeouts(bev, NULL, NULL);
			*reused = 1;
			return bev;
		}
		bufferevent_free(bev);
	}
	*reused = 0;
	bev = bufferevent_socket_new(srv->base, -1, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (!bev)
		return NULL;
	if (bufferevent_socket_connect(bev, (struct sockaddr *)&srv->up_addr, (int)srv->up_addrlen)) {
		bufferevent_free(bev);
		return NULL;
	}
	{
		int one = 1;
		evutil_socket_t fd = bufferevent_getfd(bev);
		if (fd >= 0)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	return bev;
}

void
px_upstream_put(struct px_server *srv, struct bufferevent *bev)
{
	struct timeval tv;
	const struct pol_limits *lim = &srv->cfg->limits;

	if (srv->draining || (unsigned)srv->npool >= lim->upstream_pool ||
	    evbuffer_get_length(bufferevent_get_input(bev)) != 0) {
		bufferevent_free(bev);
		return;
	}
	if (srv->npool == srv->cpool) {
		int nc = srv->cpool ? srv->cpool * 2 : 16;
		struct bufferevent **np = realloc(srv->pool, (size_t)nc * sizeof *np);
		if (!np) {
			bufferevent_free(bev);
			return;
		}
		srv->pool = np;
		srv->cpool = nc;
	}
	tv.tv_sec = lim->upstream_idle_ms / 1000;
	tv.tv_usec = (lim->upstream_idle_ms % 1000) * 1000;
	bufferevent_setcb(bev, idle_readcb, NULL, idle_eventcb, srv);
	bufferevent_set_timeouts(bev, &tv, NULL);
	bufferevent_enable(bev, EV_READ);
	srv->pool[srv->npool++] = bev;
}

void
px_upstream_pool_free(struct px_server *srv)
{
	while (srv->npool > 0)
		bufferevent_free(srv->pool[--srv->npool]);
	free(srv->pool);
	srv->pool = NULL;
	srv->cpool = 0;
}
