/*
 * proxy/tunnel.c - a blind WebSocket tunnel (contract in tunnel.h).
 *
 * syncgate does not follow the frames of a tunnel: bytes go straight from one socket's read
 * block to the other (px_io_set_direct), and whatever waits in an output above the high
 * watermark stops the other side's reading until the write callback sees it drained. The
 * tunnel ends when either side closes, or after ws_idle without a byte either way.
 */
#include "proxy/tunnel.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "proxy/conn.h"
#include "proxy/log.h"

struct px_tunnel {
	struct px_conn *c;
	time_t last, opened;
	unsigned long long bytes_in, bytes_out; /* from the client, from the backend */
};

static void
tunnel_release(struct px_conn *c, void *obj)
{
	struct px_tunnel *t = obj;
	char bin[24], bout[24], secs[24];

	snprintf(bin, sizeof bin, "%llu", t->bytes_in);
	snprintf(bout, sizeof bout, "%llu", t->bytes_out);
	snprintf(secs, sizeof secs, "%ld", (long)(time(NULL) - t->opened));
	px_log(PX_LOG_INFO, "ws_closed", "socket", c->id, "peer", c->peer, "tunnel", "yes",
	       "#bytes_in", bin, "#bytes_out", bout, "#seconds", secs, NULL);
	px_count(&c->env->ctr->ws_closed, 1);
	free(t);
}

/* Shutdown: a tunnel's frames are not followed, so no close frame can be put in; it has
 * the grace period. */
static const struct px_proto tunnel_proto = {"tunnel", tunnel_release, NULL};

static void
tunnel_idle(struct px_conn *c)
{
	struct px_tunnel *t = c->obj;
	if (px_conn_idle_over(c, t->last, tunnel_idle))
		px_conn_close(c);
}

/* Bytes from FROM were queued on TO: sent now; FROM waits while TO's output is high. */
static void
relayed(struct px_io *from, struct px_io *to)
{
	px_io_flush(to);
	if (px_io_pending(to) > PX_HIGH_WATER)
		px_io_read(from, 0);
}

static size_t
client_direct(struct px_io *io, const uint8_t *p, size_t n, void *arg)
{
	struct px_tunnel *t = arg;
	struct px_conn *c = t->c;
	t->last = time(NULL);
	t->bytes_in += n;
	px_io_write(c->uio, p, n);
	if (px_io_pending(c->uio))
		relayed(io, c->uio);
	return n;
}

static size_t
upstream_direct(struct px_io *io, const uint8_t *p, size_t n, void *arg)
{
	struct px_tunnel *t = arg;
	struct px_conn *c = t->c;
	t->last = time(NULL);
	t->bytes_out += n;
	px_io_write(c->cio, p, n);
	if (px_io_pending(c->cio))
		relayed(io, c->cio);
	return n;
}

/* Bytes that did not go through the direct path (TLS, or input already waiting). */
static void
client_readcb(struct px_io *io, void *arg)
{
	struct px_tunnel *t = arg;
	struct evbuffer *in = px_io_input(io);
	t->last = time(NULL);
	t->bytes_in += evbuffer_get_length(in);
	evbuffer_add_buffer(px_io_output(t->c->uio), in);
	relayed(io, t->c->uio);
}

static void
upstream_readcb(struct px_io *io, void *arg)
{
	struct px_tunnel *t = arg;
	struct evbuffer *in = px_io_input(io);
	t->last = time(NULL);
	t->bytes_out += evbuffer_get_length(in);
	evbuffer_add_buffer(px_io_output(t->c->cio), in);
	relayed(io, t->c->cio);
}

/* An output drained to the low watermark: the other side is read again. */
static void
client_writecb(struct px_io *io, void *arg)
{
	struct px_tunnel *t = arg;
	(void)io;
	px_io_read(t->c->uio, 1);
}

static void
upstream_writecb(struct px_io *io, void *arg)
{
	struct px_tunnel *t = arg;
	(void)io;
	px_io_read(t->c->cio, 1);
}

/* The backend closed: what it sent reaches the client, then the client is closed. Anything
 * else (the client closed, an error) ends the tunnel now. */
static void
eventcb(struct px_io *io, short what, void *arg)
{
	struct px_tunnel *t = arg;
	struct px_conn *c = t->c;
	if (io == c->uio && !(what & PX_IO_ERROR) && c->phase == PX_CONN_OPEN) {
		px_conn_close_when_flushed(c);
		return;
	}
	px_conn_close(c);
}

void
px_tunnel_start(struct px_conn *c)
{
	struct px_tunnel *t = calloc(1, sizeof *t);

	if (!t) {
		px_conn_close(c);
		return;
	}
	t->c = c;
	t->last = t->opened = time(NULL);
	px_conn_set_proto(c, &tunnel_proto, t);
	px_count(&c->env->ctr->ws_opened, 1); /* tunnel_release() counts it closed */
	px_io_setcb(c->cio, client_readcb, client_writecb, eventcb, t);
	px_io_setcb(c->uio, upstream_readcb, upstream_writecb, eventcb, t);
	px_io_set_direct(c->cio, client_direct);
	px_io_set_direct(c->uio, upstream_direct);
	px_io_set_timeout(c->cio, 0);
	px_io_set_timeout(c->uio, 0);
	px_io_set_read_max(c->cio, PX_HIGH_WATER);
	px_io_set_read_max(c->uio, PX_HIGH_WATER);
	px_io_set_low_water(c->cio, PX_LOW_WATER);
	px_io_set_low_water(c->uio, PX_LOW_WATER);
	px_conn_timer(c, c->cfg->limits.ws_idle_ms, tunnel_idle);
	px_io_read(c->cio, 1);
	px_io_read(c->uio, 1);
	/* bytes either side sent with or right after the upgrade, held until now */
	if (evbuffer_get_length(px_io_input(c->cio)))
		client_readcb(c->cio, t);
	if (c->phase == PX_CONN_OPEN && evbuffer_get_length(px_io_input(c->uio)))
		upstream_readcb(c->uio, t);
}
