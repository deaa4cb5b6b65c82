/*
 * tests/unit/test_conn.c - proxy/conn.c in-process: a connection's lifecycle over real
 * sockets (socketpairs) on a real loop, with a fake protocol handler that records the hooks
 * conn.c calls. Covers counting, the one teardown path, the handler released from the loop
 * and never under its own feet, the flush before the close, the lingering close and the
 * quiet close, the timer, the drain hook, and the per-address cap.
 */
#include <errno.h>
#include <event2/event.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "proxy/conn.h"
#include "proxy/shared.h"
#include "proxy/stats.h"
#include "t.h"

static struct px_env env;
static int gone, released, drained, timer_fired;
static void *released_obj;
static _Atomic unsigned long gen;

static void
conn_gone(struct px_env *e)
{
	(void)e;
	gone++;
}

static void
fake_release(struct px_conn *c, void *obj)
{
	(void)c;
	released++;
	released_obj = obj;
}

static void
fake_drain(struct px_conn *c, void *obj)
{
	(void)obj;
	drained++;
	if (!strcmp(c->id, "w0-close-me"))
		px_conn_close(c);
}

static const struct px_proto fake_proto = {"fake", fake_release, fake_drain};
static int obj_token;

static struct sockaddr_in
addr(const char *ip4)
{
	struct sockaddr_in sa;
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	inet_pton(AF_INET, ip4, &sa.sin_addr);
	return sa;
}

/* A connection on one end of a socketpair; *PEER is the client's end. */
static struct px_conn *
open_conn(const char *ip, int *peer)
{
	int sv[2];
	struct sockaddr_in sa = addr(ip);
	struct px_conn *c;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv))
		abort();
	*peer = sv[1];
	c = px_conn_new(&env, sv[0], (struct sockaddr *)&sa, 0);
	if (c)
		px_conn_set_proto(c, &fake_proto, &obj_token);
	return c;
}

static void
spin(int turns)
{
	while (turns-- > 0)
		event_base_loop(env.base, EVLOOP_NONBLOCK);
}

static ssize_t
read_all(int fd, char *buf, size_t n)
{
	ssize_t got = 0, r;
	while ((size_t)got < n && (r = read(fd, buf + got, n - (size_t)got)) > 0)
		got += r;
	return got;
}

static void
test_counts_and_teardown(void)
{
	int peer;
	char b[8];
	struct px_conn *c = open_conn("192.0.2.7", &peer);

	CHECK(c != NULL);
	CHECK(env.nconns == 1 && env.conns == c);
	CHECK(atomic_load(&env.ctr->connections_open) == 1);
	CHECK(strstr(c->fwd, "X-Forwarded-For: 192.0.2.7\r\n") != NULL);
	CHECK_STR(c->peer, "192.0.2.7");
	released = gone = 0;
	px_conn_close(c);
	CHECK(released == 1 && released_obj == &obj_token && gone == 1);
	CHECK(env.nconns == 0 && env.conns == NULL);
	CHECK(atomic_load(&env.ctr->connections_open) == 0);
	CHECK(read(peer, b, sizeof b) == 0); /* the client sees the close */
	close(peer);
}

static void
test_flush_then_linger(void)
{
	int peer;
	char b[64];
	struct px_conn *c = open_conn("192.0.2.8", &peer);

	released = gone = 0;
	evbuffer_add(px_io_output(c->cio), "bye", 3);
	px_conn_close_when_flushed(c);
	CHECK(released == 0); /* never under the caller's feet */
	CHECK(c->phase == PX_CONN_CLOSING);
	spin(3);
	CHECK(released == 1 && gone == 0);
	CHECK(read_all(peer, b, 3) == 3 && !memcmp(b, "bye", 3));
	CHECK(c->phase == PX_CONN_LINGERING); /* the client was not known to be done: linger */
	/* the client's late bytes are read and dropped, not answered with a reset */
	CHECK(write(peer, "late", 4) == 4);
	spin(3);
	CHECK(gone == 0 && env.nconns == 1);
	CHECK(read(peer, b, sizeof b) == 0); /* FIN: our side is done */
	close(peer);
	spin(3);
	CHECK(gone == 1 && env.nconns == 0);
}

static void
discard(struct px_io *io, void *arg)
{
	(void)arg;
	evbuffer_drain(px_io_input(io), evbuffer_get_length(px_io_input(io)));
}

static void
test_quiet_close(void)
{
	int peer;
	char b[8];
	struct px_conn *c = open_conn("192.0.2.9", &peer);

	gone = 0;
	/* a whole request read, and the socket found empty after it */
	px_io_setcb(c->cio, discard, NULL, NULL, c);
	px_io_read(c->cio, 1);
	CHECK(write(peer, "GET / HTTP/1.1\r\n\r\n", 18) == 18);
	spin(2);
	c->quiet = 1;
	px_conn_close_when_flushed(c);
	spin(3);
	CHECK(gone == 1); /* no lingering: nothing more was coming */
	CHECK(read(peer, b, sizeof b) == 0);
	close(peer);
}

static void
fire(struct px_conn *c)
{
	timer_fired++;
	px_conn_close(c);
}

static void
test_timer_and_drain(void)
{
	int p1, p2;
	struct px_conn *a = open_conn("192.0.2.10", &p1);
	struct px_conn *b = open_conn("192.0.2.11", &p2);

	gone = drained = timer_fired = 0;
	snprintf(b->id, sizeof b->id, "w0-close-me");
	px_conn_drain_all(&env); /* each handler asked; one closes its connection */
	CHECK(drained == 2 && gone == 1 && env.nconns == 1 && env.conns == a);
	px_conn_timer(a, 5, fire);
	usleep(20000);
	spin(3);
	CHECK(timer_fired == 1 && gone == 2 && env.nconns == 0);
	close(p1);
	close(p2);
}

static void
test_per_address_cap(void)
{
	int p1, p2;
	char b[256];
	ssize_t n;
	struct px_conn *a = open_conn("198.51.100.1", &p1);
	struct px_conn *b2 = open_conn("198.51.100.1", &p2);

	CHECK(a != NULL);
	CHECK(b2 == NULL); /* max_connections_per_client = 1 */
	n = read(p2, b, sizeof b - 1);
	CHECK(n > 0);
	if (n > 0) {
		b[n] = 0;
		CHECK(strstr(b, "429") != NULL && strstr(b, "TOO_MANY_CONNECTIONS") != NULL);
	}
	CHECK(env.nconns == 1);
	px_conn_close(a);
	/* the address's count dropped: it may connect again */
	a = open_conn("198.51.100.1", &p1);
	CHECK(a != NULL);
	if (a)
		px_conn_close(a);
	close(p1);
	close(p2);
}

static void
test_upstream_freed_with_conn(void)
{
	int peer, up[2];
	char b[8];
	struct px_conn *c = open_conn("192.0.2.12", &peer);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, up))
		abort();
	c->uio = px_io_new(env.base, up[0]);
	px_conn_close(c);
	spin(1);
	CHECK(read(up[1], b, sizeof b) == 0); /* the backend side sees the close too */
	close(up[1]);
	close(peer);
}

int
main(void)
{
	char err[POL_ERR_MAX];
	struct pol_config *cfg = pol_config_load_string(
		"[syncgate]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n"
		"[limits]\nmax_connections_per_client = 1\n", "test.conf", err);

	if (!cfg) {
		fprintf(stderr, "config: %s\n", err);
		return 2;
	}
	env.base = event_base_new();
	env.cfg = cfg;
	env.shared = px_shared_new(cfg, NULL, NULL);
	env.shared_gen = &gen;
	env.stats = px_stats_new();
	env.ctr = px_stats_counters(env.stats);
	env.conn_gone = conn_gone;
	test_counts_and_teardown();
	test_flush_then_linger();
	test_quiet_close();
	test_timer_and_drain();
	test_per_address_cap();
	test_upstream_freed_with_conn();
	px_stats_free(env.stats);
	px_shared_free(env.shared);
	pol_config_unref(cfg);
	event_base_free(env.base);
	px_io_thread_done();
	return t_done("conn");
}
