/*
 * A blind TCP relay on libevent, the control of tests/bench/ws.sh: the least work a proxy
 * built on libevent can do per round trip (no parsing, no policy, no buffering beyond one
 * recv(2)), with the same event setup as syncgate's relay (persistent edge-triggered read
 * events with EV_CLOSED, TCP_NODELAY, recv(2)/send(2) straight from a stack buffer). Where it
 * and nginx measure alike, a benchmark on that machine cannot rank proxies more finely than
 * its own noise. Benchmark tool only: the backend connection is made with a blocking
 * connect(2), and a send(2) that would block is retried (the benchmark's frames are small).
 *
 * Usage: le_relay LISTEN_PORT BACKEND_PORT (both on 127.0.0.1)
 */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct side {
	int fd;
	struct event *ev;
	struct side *peer;
};

static struct sockaddr_in backend;
static struct event_base *base;

static void
pair_free(struct side *a)
{
	struct side *b = a->peer;
	event_free(a->ev);
	event_free(b->ev);
	close(a->fd);
	close(b->fd);
	free(a);
	free(b);
}

static void
readable(evutil_socket_t fd, short what, void *arg)
{
	struct side *s = arg;
	char buf[16384];
	ssize_t n, off, w;

	(void)what;
	for (;;) {
		n = recv(fd, buf, sizeof buf, 0);
		if (n < 0 && errno == EAGAIN)
			return;
		if (n <= 0) {
			pair_free(s);
			return;
		}
		for (off = 0; off < n; off += w > 0 ? w : 0) {
			w = send(s->peer->fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
			if (w < 0 && errno != EAGAIN) {
				pair_free(s);
				return;
			}
		}
		if ((size_t)n < sizeof buf)
			return; /* a short read emptied the socket: the next edge brings more */
	}
}

static void
accepted(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len, void *arg)
{
	struct side *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
	int one = 1, u = socket(AF_INET, SOCK_STREAM, 0);

	(void)l;
	(void)sa;
	(void)len;
	(void)arg;
	if (!a || !b || u < 0 || connect(u, (struct sockaddr *)&backend, sizeof backend) < 0) {
		perror("le_relay: backend");
		close(fd);
		if (u >= 0)
			close(u);
		free(a);
		free(b);
		return;
	}
	evutil_make_socket_nonblocking(u);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	a->fd = fd;
	b->fd = u;
	a->peer = b;
	b->peer = a;
	a->ev = event_new(base, fd, EV_READ | EV_PERSIST | EV_ET | EV_CLOSED, readable, a);
	b->ev = event_new(base, u, EV_READ | EV_PERSIST | EV_ET | EV_CLOSED, readable, b);
	event_add(a->ev, NULL);
	event_add(b->ev, NULL);
}

int
main(int argc, char **argv)
{
	struct sockaddr_in me = {.sin_family = AF_INET};

	if (argc != 3) {
		fprintf(stderr, "usage: le_relay LISTEN_PORT BACKEND_PORT\n");
		return 2;
	}
	me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	me.sin_port = htons((uint16_t)atoi(argv[1]));
	backend = me;
	backend.sin_port = htons((uint16_t)atoi(argv[2]));
	base = event_base_new();
	if (!base || !evconnlistener_new_bind(base, accepted, NULL,
	                                      LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_FREE, 1024,
	                                      (struct sockaddr *)&me, sizeof me)) {
		perror("le_relay: listen");
		return 1;
	}
	event_base_dispatch(base);
	return 0;
}
