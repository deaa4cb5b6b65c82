/*
 * ws_bench: WebSocket relay benchmark tool (not a test). One epoll loop, three modes:
 *
 *   ws_bench server PORT                    a minimal realtime backend: accepts any upgrade and
 *                                           answers each text frame [seq,...] with [seq,200,{}]
 *   ws_bench rtt PORT CONNS SECONDS PATH    CONNS sockets, each sending a small call frame and
 *                                           waiting for its answer, for SECONDS: round trips/s
 *   ws_bench idle PORT CONNS PATH HOLD_S    opens CONNS sockets, holds them HOLD_S seconds
 *
 * Loopback only (127.0.0.1), bounded in count and time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 16384

void ws_accept(const char *key, size_t n, char out[29]);

struct peer {
	int fd;
	int upgraded;
	size_t len;
	unsigned long seq;
	char buf[BUF];
};

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
nb(int fd)
{
	int one = 1;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static int
connect_to(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
		perror("connect");
		exit(1);
	}
	nb(fd);
	return fd;
}

/* A masked client text frame (mask 0: payload as is). */
static size_t
client_frame(char *out, const char *payload, size_t n)
{
	out[0] = (char)0x81;
	out[1] = (char)(0x80 | n);
	memset(out + 2, 0, 4);
	memcpy(out + 6, payload, n);
	return 6 + n;
}

static void
write_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EAGAIN)
				continue;
			return;
		}
		p += w;
		n -= (size_t)w;
	}
}

/* Parses complete frames at the head of P; calls ON for each payload; returns bytes used. */
static size_t
frames(struct peer *p, void (*on)(struct peer *, const char *, size_t))
{
	size_t off = 0;
	for (;;) {
		unsigned char *b = (unsigned char *)p->buf + off;
		size_t avail = p->len - off, hl = 2, n;
		int masked;
		if (avail < 2)
			break;
		masked = b[1] >> 7;
		n = b[1] & 0x7f;
		if (n == 126) {
			if (avail < 4)
				break;
			n = (size_t)b[2] << 8 | b[3];
			hl = 4;
		} else if (n == 127) {
			break; /* not used here */
		}
		if (masked)
			hl += 4;
		if (avail < hl + n)
			break;
		if (masked) {
			size_t i;
			for (i = 0; i < n; i++)
				b[hl + i] ^= b[hl - 4 + (i & 3)];
		}
		if ((b[0] & 0x0f) == 1)
			on(p, (char *)b + hl, n);
		off += hl + n;
	}
	return off;
}

static void
server_answer(struct peer *p, const char *payload, size_t n)
{
	char out[64];
	size_t i = 1, o = 2;
	if (n < 2 || payload[0] != '[')
		return;
	out[0] = (char)0x81;
	out[o++] = '[';
	while (i < n && payload[i] >= '0' && payload[i] <= '9' && o < 40)
		out[o++] = payload[i++];
	memcpy(out + o, ",200,{}]", 8);
	o += 8;
	out[1] = (char)(o - 2);
	write_all(p->fd, out, o);
}

static int
run_server(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1, ep = epoll_create1(0);
	struct epoll_event ev = {.events = EPOLLIN}, evs[256];

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (bind(lfd, (struct sockaddr *)&a, sizeof a) || listen(lfd, 4096)) {
		perror("listen");
		return 1;
	}
	nb(lfd);
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	for (;;) {
		int n = epoll_wait(ep, evs, 256, -1), i;
		for (i = 0; i < n; i++) {
			struct peer *p = evs[i].data.ptr;
			if (!p) {
				int fd;
				while ((fd = accept(lfd, NULL, NULL)) >= 0) {
					p = calloc(1, sizeof *p);
					p->fd = fd;
					nb(fd);
					ev.events = EPOLLIN;
					ev.data.ptr = p;
					epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				}
				continue;
			}
			ssize_t r = read(p->fd, p->buf + p->len, BUF - p->len);
			if (r <= 0) {
				if (r < 0 && errno == EAGAIN)
					continue;
				close(p->fd);
				free(p);
				continue;
			}
			p->len += (size_t)r;
			if (!p->upgraded) {
				char *e = memmem(p->buf, p->len, "\r\n\r\n", 4);
				char *k = memmem(p->buf, p->len, "Sec-WebSocket-Key: ", 19);
				char resp[256], acc[64];
				if (!e || !k)
					continue;
				char *ke = memchr(k + 19, '\r', (size_t)(e - k));
				ws_accept(k + 19, (size_t)(ke - k - 19), acc);
				int rl = snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
				write_all(p->fd, resp, (size_t)rl);
				p->upgraded = 1;
				size_t used = (size_t)(e + 4 - p->buf);
				memmove(p->buf, p->buf + used, p->len - used);
				p->len -= used;
			}
			size_t used = frames(p, server_answer);
			memmove(p->buf, p->buf + used, p->len - used);
			p->len -= used;
		}
	}
}

static unsigned long rtts;

static void
client_got(struct peer *p, const char *payload, size_t n)
{
	char f[64], call[48];
	(void)payload;
	(void)n;
	rtts++;
	p->seq++;
	int cl = snprintf(call, sizeof call, "[%lu,\"GET\",\"/ping\",{},{}]", p->seq);
	write_all(p->fd, f, client_frame(f, call, (size_t)cl));
}

static int
open_ws(int port, const char *path)
{
	char req[512];
	int fd = connect_to(port);
	int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", path);
	write_all(fd, req, (size_t)n);
	return fd;
}

static int
wait_101(struct peer *p)
{
	char *e = memmem(p->buf, p->len, "\r\n\r\n", 4);
	if (!e)
		return 0;
	if (strncmp(p->buf, "HTTP/1.1 101", 12)) {
		fprintf(stderr, "no 101: %.60s\n", p->buf);
		exit(1);
	}
	size_t used = (size_t)(e + 4 - p->buf);
	memmove(p->buf, p->buf + used, p->len - used);
	p->len -= used;
	p->upgraded = 1;
	return 1;
}

static int
run_clients(int port, int conns, double secs, const char *path, int idle)
{
	int ep = epoll_create1(0), i, up = 0;
	struct peer *ps = calloc((size_t)conns, sizeof *ps);
	struct epoll_event ev, evs[512];
	double t0 = 0, tend = 0;

	for (i = 0; i < conns; i++) {
		ps[i].fd = open_ws(port, path);
		ev.events = EPOLLIN;
		ev.data.ptr = &ps[i];
		epoll_ctl(ep, EPOLL_CTL_ADD, ps[i].fd, &ev);
	}
	for (;;) {
		int n = epoll_wait(ep, evs, 512, 1000);
		if (up == conns && !t0) {
			t0 = now();
			tend = t0 + secs;
			if (idle) {
				printf("ws_bench idle: %d sockets open\n", conns);
				fflush(stdout);
			} else {
				for (i = 0; i < conns; i++)
					client_got(&ps[i], NULL, 0);
				rtts = 0;
			}
		}
		if (t0 && now() >= tend)
			break;
		for (i = 0; i < n; i++) {
			struct peer *p = evs[i].data.ptr;
			ssize_t r = read(p->fd, p->buf + p->len, BUF - p->len);
			if (r <= 0) {
				if (r < 0 && errno == EAGAIN)
					continue;
				fprintf(stderr, "ws_bench: a socket closed\n");
				return 1;
			}
			p->len += (size_t)r;
			if (!p->upgraded) {
				if (!wait_101(p))
					continue;
				up++;
			}
			size_t used = frames(p, client_got);
			memmove(p->buf, p->buf + used, p->len - used);
			p->len -= used;
		}
	}
	if (!idle)
		printf("%.0f\n", (double)rtts / (now() - t0));
	return 0;
}

/* SHA-1 (FIPS 180-1) and base64 for Sec-WebSocket-Accept, to keep the tool free of libraries. */
static void
sha1(const unsigned char *m, size_t n, unsigned char out[20])
{
	unsigned h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
	unsigned char blk[64];
	size_t i, total = ((n + 8) / 64 + 1) * 64;
	for (size_t off = 0; off < total; off += 64) {
		unsigned w[80], a, b, c, d, e, t;
		for (i = 0; i < 64; i++) {
			size_t k = off + i;
			blk[i] = k < n ? m[k] : k == n ? 0x80 : 0;
		}
		if (off + 64 == total)
			for (i = 0; i < 8; i++)
				blk[56 + i] = (unsigned char)(((unsigned long long)n * 8) >> (56 - 8 * i));
		for (i = 0; i < 16; i++)
			w[i] = (unsigned)blk[4 * i] << 24 | (unsigned)blk[4 * i + 1] << 16 | (unsigned)blk[4 * i + 2] << 8 | blk[4 * i + 3];
		for (i = 16; i < 80; i++) {
			t = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
			w[i] = t << 1 | t >> 31;
		}
		a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
		for (i = 0; i < 80; i++) {
			unsigned f, k;
			if (i < 20) f = (b & c) | (~b & d), k = 0x5A827999;
			else if (i < 40) f = b ^ c ^ d, k = 0x6ED9EBA1;
			else if (i < 60) f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
			else f = b ^ c ^ d, k = 0xCA62C1D6;
			t = (a << 5 | a >> 27) + f + e + k + w[i];
			e = d, d = c, c = b << 30 | b >> 2, b = a, a = t;
		}
		h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
	}
	for (i = 0; i < 20; i++)
		out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

void
ws_accept(const char *key, size_t n, char out[29])
{
	static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	unsigned char in[128], md[21];
	size_t i, o = 0;
	memcpy(in, key, n);
	memcpy(in + n, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 36);
	sha1(in, n + 36, md);
	md[20] = 0;
	for (i = 0; i < 21; i += 3) {
		unsigned v = (unsigned)md[i] << 16 | (unsigned)(i + 1 < 21 ? md[i + 1] : 0) << 8 | (i + 2 < 21 ? md[i + 2] : 0);
		out[o++] = b64[v >> 18];
		out[o++] = b64[(v >> 12) & 63];
		out[o++] = i + 1 < 20 ? b64[(v >> 6) & 63] : '=';
		out[o++] = i + 2 < 20 ? b64[v & 63] : '=';
	}
	out[28] = 0;
}

int
main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "server"))
		return run_server(atoi(argv[2]));
	if (argc >= 6 && !strcmp(argv[1], "rtt"))
		return run_clients(atoi(argv[2]), atoi(argv[3]), atof(argv[4]), argv[5], 0);
	if (argc >= 6 && !strcmp(argv[1], "idle"))
		return run_clients(atoi(argv[2]), atoi(argv[3]), atof(argv[5]), argv[4], 1);
	fprintf(stderr, "usage: ws_bench server PORT | rtt PORT CONNS SECONDS PATH | idle PORT CONNS PATH HOLD_S\n");
	return 2;
}
