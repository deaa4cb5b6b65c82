/*
 * proxy/conn.c - a client connection's lifecycle (contract in conn.h).
 *
 * Freeing: px_io defers a free requested inside its own callback (io.h), and every callback
 * returns right after px_conn_close(). A connection that ends after its last answer is
 * flushed goes through CLOSING: its handler is released from the loop (timer at 0 ms), never
 * under the handler's own feet, then LINGERING.
 */
#include "proxy/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/log.h"
#include "proxy/proxyproto.h"
#include "proxy/shared.h"

static void closing_writecb(struct px_io *io, void *arg);
static void linger_close(struct px_conn *c);

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_conn *c = arg;
	(void)fd;
	(void)what;
	c->timer_fn(c);
}

void
px_conn_timer(struct px_conn *c, unsigned ms, void (*fn)(struct px_conn *c))
{
	struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
	c->timer_fn = fn;
	evtimer_add(c->timer, &tv);
}

int
px_conn_idle_over(struct px_conn *c, time_t last, void (*fn)(struct px_conn *c))
{
	uint32_t idle = c->cfg->limits.ws_idle_ms;
	time_t now = time(NULL);

	if ((uint64_t)(now - last) * 1000 < idle) {
		px_conn_timer(c, idle - (uint32_t)(now - last) * 1000, fn);
		return 0;
	}
	px_log(PX_LOG_INFO, "ws_idle_close", "peer", c->peer, NULL);
	return 1;
}

void
px_conn_timer_stop(struct px_conn *c)
{
	evtimer_del(c->timer);
}

void
px_conn_nodelay(struct px_conn *c)
{
	int one = 1;
	if (c->nodelay || !c->cio)
		return;
	setsockopt(px_io_fd(c->cio), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->nodelay = 1;
}

void
px_conn_drop_upstream(struct px_conn *c)
{
	if (c->uio) {
		px_io_free(c->uio);
		c->uio = NULL;
	}
}

void
px_conn_set_proto(struct px_conn *c, const struct px_proto *proto, void *obj)
{
	c->proto = proto;
	c->obj = obj;
}

static void
release_proto(struct px_conn *c)
{
	const struct px_proto *p = c->proto;
	void *obj = c->obj;
	c->proto = NULL;
	c->obj = NULL;
	if (p)
		p->release(c, obj);
}

/* The client's address SA into C's peer and its forwarding lines (TLS: https). */
static void
set_peer(struct px_conn *c, const struct sockaddr *sa, int tls)
{
	const char *proto = tls ? "https" : "http";

	c->peer_v6 = sa->sa_family == AF_INET6;
	if (c->peer_v6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->peer, sizeof c->peer);
	else
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof c->peer);
	c->fwd_len = (size_t)snprintf(c->fwd, sizeof c->fwd,
	                              "X-Forwarded-For: %s\r\nX-Forwarded-Proto: %s\r\n"
	                              "Forwarded: for=%s%s%s;proto=%s\r\n\r\n",
	                              c->peer, proto, c->peer_v6 ? "\"[" : "", c->peer,
	                              c->peer_v6 ? "]\"" : "", proto);
}

/* The per-address cap: 0, or -1 (the client told 429 on a plain socket; the caller closes). */
static int
count_peer(struct px_conn *c, evutil_socket_t fd, int tls)
{
	if (px_shared_peer_add(c->env->shared, c->peer, c->cfg->limits.max_connections_per_client)) {
		static const char busy[] = "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\n"
		                           "Content-Length: 86\r\nConnection: close\r\n\r\n"
		                           "{\"errorCode\":\"TOO_MANY_CONNECTIONS\",\"reasons\":[\"max_connections_per_client reached\"]}\n";
		px_log(PX_LOG_WARN, "max_connections_per_client", "peer", c->peer, NULL);
		if (!tls) /* over TLS there is no cheap way to say it: the close alone must do */
			(void)!send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		return -1;
	}
	c->peer_counted = 1;
	return 0;
}

/* TLS on an admitted connection: 0, or -1 (the caller closes C). */
static int
start_tls(struct px_conn *c)
{
	SSL *ssl = c->env->tls_server ? SSL_new(c->env->tls_server) : NULL;
	px_conn_nodelay(c); /* records of a handshake and an answer follow each other */
	if (!ssl || px_io_tls_accept(c->cio, ssl, c->cfg->limits.tls_handshake_ms)) {
		if (!ssl)
			px_log(PX_LOG_ERROR, "tls", "why", "cannot create a TLS session", NULL);
		return -1;
	}
	return 0;
}

/* A connection listed and counted in ENV, with its socket and timer, not yet admitted. */
static struct px_conn *
conn_alloc(struct px_env *env, evutil_socket_t fd)
{
	struct px_conn *c = calloc(1, sizeof *c);

	if (!c) {
		evutil_closesocket(fd);
		return NULL;
	}
	c->env = env;
	c->cfg = pol_config_ref(env->cfg);
	snprintf(c->id, sizeof c->id, "w%d-%llu", env->id, ++env->next_conn_id);
	c->cio = px_io_new(env->base, fd); /* takes the fd, even on failure */
	c->timer = evtimer_new(env->base, timer_cb, c);
	c->next = env->conns;
	if (env->conns)
		env->conns->prev = c;
	env->conns = c;
	env->nconns++;
	px_count(&env->ctr->connections_open, 1);
	c->counted = 1;
	if (!c->cio || !c->timer) {
		px_conn_close(c);
		return NULL;
	}
	return c;
}

struct px_conn *
px_conn_new(struct px_env *env, evutil_socket_t fd, const struct sockaddr *sa, int tls)
{
	struct px_conn *c = conn_alloc(env, fd);

	if (!c)
		return NULL;
	set_peer(c, sa, tls);
	if (count_peer(c, fd, tls) || (tls && start_tls(c))) {
		px_conn_close(c);
		return NULL;
	}
	return c;
}

/* ---- the PROXY protocol header ---- */

static void
proxied_fail(struct px_conn *c, const char *why)
{
	px_log(PX_LOG_INFO, "proxy_protocol", "peer", c->peer, "why", why, NULL);
	px_conn_close(c);
}

static void
proxied_timeout(struct px_conn *c)
{
	proxied_fail(c, "no PROXY header in time");
}

/* The header's bytes are peeked and taken exactly: what follows (a TLS handshake, a request)
 * stays in the socket for the connection's own reads. */
static void
proxied_readable(evutil_socket_t fd, short what, void *arg)
{
	struct px_conn *c = arg;
	uint8_t buf[PX_PP_MAX];
	struct sockaddr_storage src;
	const char *why = "";
	ssize_t n;
	long len;
	(void)what;

	n = recv(fd, buf, sizeof buf, MSG_PEEK);
	if (n <= 0) {
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		proxied_fail(c, "closed before its PROXY header");
		return;
	}
	len = px_proxyproto_parse(buf, (size_t)n, &src, &why);
	if (len < 0) {
		proxied_fail(c, why);
		return;
	}
	if (len == 0) {
		if ((size_t)n == sizeof buf)
			proxied_fail(c, "PROXY header too long");
		return; /* more to come */
	}
	if (recv(fd, buf, (size_t)len, 0) != len) {
		proxied_fail(c, "PROXY header read short");
		return;
	}
	event_free(c->pre);
	c->pre = NULL;
	px_conn_timer_stop(c);
	if (src.ss_family != AF_UNSPEC)
		set_peer(c, (struct sockaddr *)&src, c->pre_tls);
	if (count_peer(c, fd, c->pre_tls) || (c->pre_tls && start_tls(c))) {
		px_conn_close(c);
		return;
	}
	c->ready(c);
}

void
px_conn_new_proxied(struct px_env *env, evutil_socket_t fd, const struct sockaddr *sa, int tls,
                    void (*ready)(struct px_conn *c))
{
	struct px_conn *c = conn_alloc(env, fd);

	if (!c)
		return;
	set_peer(c, sa, tls); /* the balancer's, until its header names the client */
	c->ready = ready;
	c->pre_tls = tls;
	c->pre = event_new(env->base, px_io_fd(c->cio), EV_READ | EV_PERSIST, proxied_readable, c);
	if (!c->pre || event_add(c->pre, NULL)) {
		px_conn_close(c);
		return;
	}
	px_conn_timer(c, c->cfg->limits.tls_handshake_ms, proxied_timeout);
}

void
px_conn_close(struct px_conn *c)
{
	struct px_env *env = c->env;

	release_proto(c);
	px_conn_drop_upstream(c);
	if (c->pre) {
		event_free(c->pre);
		c->pre = NULL;
	}
	if (c->cio) {
		px_io_free(c->cio);
		c->cio = NULL;
	}
	if (c->timer) {
		event_free(c->timer);
		c->timer = NULL;
	}
	pol_config_unref(c->cfg);
	c->cfg = NULL;
	if (c->counted)
		px_count(&env->ctr->connections_open, (unsigned long long)-1);
	if (c->peer_counted)
		px_shared_peer_remove(env->shared, c->peer);
	if (c->prev)
		c->prev->next = c->next;
	else
		env->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	env->nconns--;
	free(c);
	env->conn_gone(env);
}

/* ---- the final flush and the lingering close ---- */

/* From the loop after px_conn_close_when_flushed(): the handler goes, the flush goes on. */
static void
closing_timer(struct px_conn *c)
{
	release_proto(c);
	px_conn_drop_upstream(c);
	if (px_io_pending(c->cio) > 0) {
		/* still flushing: the write callback goes on from there; a client that never
		 * reads is cut off at the keep-alive timeout */
		px_conn_timer(c, c->cfg->limits.keepalive_idle_ms, px_conn_close);
		return;
	}
	linger_close(c);
}

static void
closing_writecb(struct px_io *io, void *arg)
{
	struct px_conn *c = arg;
	(void)io;
	if (px_io_pending(c->cio) == 0 && !c->proto)
		linger_close(c);
}

static void
closing_eventcb(struct px_io *io, short what, void *arg)
{
	(void)io;
	(void)what;
	px_conn_close(arg);
}

void
px_conn_close_when_flushed(struct px_conn *c)
{
	/* quiet: nothing is left to write and nothing unread arrived (known only now: pausing
	 * the reads below forgets it) */
	c->quiet = c->quiet && px_io_pending(c->cio) == 0 &&
	           evbuffer_get_length(px_io_input(c->cio)) == 0 && px_io_drained(c->cio);
	c->phase = PX_CONN_CLOSING;
	px_io_setcb(c->cio, NULL, closing_writecb, closing_eventcb, c);
	px_io_read(c->cio, 0);
	px_io_set_low_water(c->cio, 0); /* the write callback runs once the output is empty */
	px_io_set_timeout(c->cio, 0);
	px_io_flush(c->cio);
	evtimer_del(c->timer);
	px_conn_timer(c, 0, closing_timer); /* the handler may still pool the upstream */
}

void
px_conn_finish(struct px_conn *c)
{
	if (px_io_pending(c->cio) > 0) {
		px_conn_close_when_flushed(c);
		return;
	}
	c->quiet = c->quiet && evbuffer_get_length(px_io_input(c->cio)) == 0 && px_io_drained(c->cio);
	release_proto(c);
	px_conn_drop_upstream(c);
	c->phase = PX_CONN_CLOSING;
	evtimer_del(c->timer);
	linger_close(c);
}

/*
 * The lingering close (nginx's lingering_close): once the last answer is written, stop
 * writing (FIN) but keep reading and discarding for up to PX_LINGER_MS / PX_LINGER_BYTES.
 * Closing while the client still sends would make the kernel answer with RST, and a client
 * that gets RST may lose the answer we just wrote (a 413 during an upload, a close frame).
 */
static void
linger_readcb(struct px_io *io, void *arg)
{
	struct px_conn *c = arg;
	struct evbuffer *in = px_io_input(io);
	c->linger_bytes += evbuffer_get_length(in);
	evbuffer_drain(in, evbuffer_get_length(in));
	if (c->linger_bytes > PX_LINGER_BYTES)
		px_conn_close(c);
}

static void
linger_close(struct px_conn *c)
{
	struct evbuffer *in = px_io_input(c->cio);

	if (c->phase == PX_CONN_LINGERING || c->env->draining) {
		px_conn_close(c);
		return;
	}
	if (c->quiet) {
		/* a whole request was read and nothing followed it: the client has nothing more
		 * to send (nginx lingers only then too), so no RST can come of closing now */
		px_conn_close(c);
		return;
	}
	c->phase = PX_CONN_LINGERING;
	px_io_shutdown(c->cio);
	evbuffer_drain(in, evbuffer_get_length(in));
	px_io_setcb(c->cio, linger_readcb, NULL, closing_eventcb, c);
	px_io_set_timeout(c->cio, 0);
	px_io_set_read_max(c->cio, 65536);
	px_io_read(c->cio, 1);
	evtimer_del(c->timer);
	px_conn_timer(c, PX_LINGER_MS, px_conn_close);
}

/* ---- the worker's view ---- */

void
px_conn_drain_all(struct px_env *env)
{
	struct px_conn *c, *next;
	for (c = env->conns; c; c = next) {
		next = c->next;
		if (c->proto && c->proto->drain)
			c->proto->drain(c, c->obj); /* may close C (NEXT stays valid: only C goes) */
	}
}

void
px_conn_close_all(struct px_env *env)
{
	while (env->conns)
		px_conn_close(env->conns);
}
