/*
 * proxy/io.c - sockets with evbuffers (contract in io.h).
 *
 * The read event is edge-triggered (EV_ET), as nginx's are: level-triggered epoll polls every
 * ready socket again on the next epoll_wait, a measurable share of the relay's kernel time.
 * An edge is only lost if we stop reading with bytes still queued in the kernel; that happens
 * when a read fills all the room we gave it (more may be queued: read again from the loop) or
 * when reading is paused (re-registering the event on resume makes epoll report the pending
 * bytes at once). A short read does not prove the queue empty when the peer's FIN came with
 * the bytes: both are one edge. The event therefore also asks for EV_CLOSED (EPOLLRDHUP, as
 * nginx's pending_eof), and a short read that saw it reads again to collect the EOF.
 */
#include "proxy/io.h"
#include "proxy/tls.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 16384
/* A read rest smaller than this is copied into the input instead of pinning its block (see
 * io_readable): at most 4 blocks' worth of memory per byte count, where a reference could pin
 * 200 times the bytes it holds. */
#define COPY_BELOW (READ_CHUNK / 4)
#define TLS_WRITE_CHUNK 16384  /* one TLS record's worth per SSL_write */
#define TLS_READ_BURST (4 * READ_CHUNK) /* per loop turn, then the other sockets get theirs */

struct px_io {
	/* First, together (80 bytes): what every read and every write of the relays looks at.
	 * With 100s of sockets the kernel's work between two events evicts these lines, so each
	 * line touched is a miss. (Not aligned to a line: memalign's slack cost more memory per
	 * idle socket than the one line it would save.) */
	evutil_socket_t fd;
	int pending_err;         /* a write failed in px_io_flush(): reported from the loop */
	unsigned short busy;     /* inside one of our handlers (nesting depth) */
	unsigned char reading;   /* the owner wants input */
	unsigned char rev_added; /* rev is registered (reading && input below read_max) */
	unsigned char wev_added;
	unsigned char connecting;
	unsigned char drained;   /* the last read found the socket empty, and reading went on since */
	unsigned char dead;      /* px_io_free() was called while busy */
	unsigned char above_low; /* output went above the low watermark: WRITE callback owed */
	unsigned char handshaking;
	SSL *ssl;                /* NULL: a plain socket */
	struct evbuffer *in, *out;
	size_t in_len, out_len;  /* their lengths (px_evbuffer_track_length) */
	px_io_direct_cb directcb;
	void *arg;
	size_t read_max, low_water;
	struct event *rev, *wev;
	px_io_cb readcb, writecb;
	px_io_event_cb eventcb;
	unsigned timeout_ms;
	/* TLS. While HANDSHAKING, px_io drives SSL_do_handshake() from both events and delivers
	 * nothing; the owner's input starts after it. */
	struct event *hs_timer;        /* handshake deadline */
	unsigned connect_ms;           /* client side: the handshake gets the connect timeout too */
	unsigned char tls_client;      /* report PX_IO_CONNECTED when the handshake is done */
	unsigned char tls_failed;      /* no close_notify on the way out */
	unsigned char read_wants_write; /* SSL_read() must write first (TLS 1.3 key update) */
	unsigned char plain_http;      /* the handshake failed on a plain HTTP request */
	char *why;                     /* the last TLS failure, for the owner's log line */
	int last_errno;          /* errno of the last PX_IO_ERROR reported (0: none known) */
};

/*
 * Read blocks. recv(2) lands in a READ_CHUNK block from a per-thread free list, and the bytes
 * (when there are COPY_BELOW or more of them; fewer are copied)
 * join the input as a reference chain (evbuffer_add_reference) whose cleanup hands the block
 * back when libevent frees the chain: once the owner drained it, or once it moved to another
 * px_io's output and was sent. Every chain of a worker is freed on that worker's thread (or
 * on the main thread at exit, after the workers are joined). A chain from
 * evbuffer_reserve_space() instead cost a 16 KiB malloc() and free() per read: the largest
 * user-space cost of the WebSocket relay under callgrind.
 */
struct read_block {
	struct read_block *next;
};
#define FREE_BLOCKS_MAX 64 /* per thread: 1 MiB kept for reuse at most */
static _Thread_local struct read_block *free_blocks;
static _Thread_local unsigned nfree_blocks;

static void *
block_get(void)
{
	struct read_block *b = free_blocks;
	if (!b)
		return malloc(READ_CHUNK);
	free_blocks = b->next;
	nfree_blocks--;
	return b;
}

static void
block_put(const void *data, size_t len, void *block)
{
	struct read_block *b = block;
	(void)data;
	(void)len;
	if (nfree_blocks >= FREE_BLOCKS_MAX) {
		free(b);
		return;
	}
	b->next = free_blocks;
	free_blocks = b;
	nfree_blocks++;
}

void
px_io_thread_done(void)
{
	while (free_blocks) {
		struct read_block *b = free_blocks;
		free_blocks = b->next;
		free(b);
	}
	nfree_blocks = 0;
}

static void io_readable(evutil_socket_t fd, short what, void *arg);
static void io_writable(evutil_socket_t fd, short what, void *arg);
static void write_done(struct px_io *io);
static void tls_readable(struct px_io *io);

static void
destroy(struct px_io *io)
{
	if (io->ssl) {
		/* best effort close_notify (RFC 8446 §6.1) on a healthy session */
		if (SSL_is_init_finished(io->ssl) && !io->tls_failed &&
		    !(SSL_get_shutdown(io->ssl) & SSL_SENT_SHUTDOWN))
			SSL_shutdown(io->ssl);
		ERR_clear_error();
		SSL_free(io->ssl);
	}
	if (io->hs_timer)
		event_free(io->hs_timer);
	free(io->why);
	if (io->rev)
		event_free(io->rev);
	if (io->wev)
		event_free(io->wev);
	if (io->in)
		evbuffer_free(io->in);
	if (io->out)
		evbuffer_free(io->out);
	if (io->fd >= 0)
		evutil_closesocket(io->fd);
	free(io);
}

static void
track_length(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
	(void)b;
	*(size_t *)arg = info->orig_size + info->n_added - info->n_deleted;
}

int
px_evbuffer_track_length(struct evbuffer *b, size_t *len)
{
	*len = evbuffer_get_length(b);
	return evbuffer_add_cb(b, track_length, len) ? 0 : -1;
}

static void update_read(struct px_io *io);

/*
 * The input's length, kept as track_length() keeps it; and when the owner drains the input
 * below READ_MAX while reading had paused on it, reading resumes here, wherever the drain
 * happened (a pipelined request handled from the write callback or the other side's, not
 * from READ, after which px_io would have checked).
 */
static void
input_changed(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
	struct px_io *io = arg;
	(void)b;
	io->in_len = info->orig_size + info->n_added - info->n_deleted;
	if (info->n_deleted && io->reading && !io->rev_added && io->in_len < io->read_max)
		update_read(io);
}

struct px_io *
px_io_new(struct event_base *base, evutil_socket_t fd)
{
	struct px_io *io = calloc(1, sizeof *io);

	if (!io) {
		evutil_closesocket(fd);
		return NULL;
	}
	io->fd = fd;
	assert(fcntl(fd, F_GETFL) & O_NONBLOCK); /* the contract; no syscall per connection */
	io->rev = event_new(base, fd, EV_READ | EV_CLOSED | EV_PERSIST | EV_ET, io_readable, io);
	io->wev = event_new(base, fd, EV_WRITE | EV_PERSIST, io_writable, io);
	io->in = evbuffer_new();
	io->out = evbuffer_new();
	io->read_max = (size_t)-1;
	if (!io->rev || !io->wev || !io->in || !io->out ||
	    !evbuffer_add_cb(io->in, input_changed, io) ||
	    px_evbuffer_track_length(io->out, &io->out_len) < 0) {
		destroy(io);
		return NULL;
	}
	return io;
}

/* Registers EV with a timeout of MS, or none. (event_add(ev, NULL) alone would keep a
 * timeout set earlier: it has to be removed explicitly.) */
static void
arm(struct event *ev, unsigned ms)
{
	struct timeval tv;
	if (ms) {
		tv.tv_sec = ms / 1000;
		tv.tv_usec = (ms % 1000) * 1000;
		event_add(ev, &tv);
	} else {
		event_add(ev, NULL);
		event_remove_timer(ev);
	}
}

struct px_io *
px_io_connect(struct event_base *base, const struct sockaddr *sa, socklen_t len,
              unsigned timeout_ms)
{
	evutil_socket_t fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	struct px_io *io;
	int one = 1;

	if (fd < 0)
		return NULL;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	io = px_io_new(base, fd);
	if (!io)
		return NULL;
	if (connect(fd, sa, len) < 0 && errno != EINPROGRESS) {
		io->pending_err = errno;
		event_active(io->wev, EV_WRITE, 1); /* reported from the loop */
		return io;
	}
	io->connecting = 1;
	io->connect_ms = timeout_ms;
	io->wev_added = 1;
	arm(io->wev, timeout_ms);
	return io;
}

void
px_io_free(struct px_io *io)
{
	if (!io)
		return;
	if (io->busy) {
		io->dead = 1;
		event_del(io->rev);
		event_del(io->wev);
		return;
	}
	destroy(io);
}

void
px_io_setcb(struct px_io *io, px_io_cb read, px_io_cb write, px_io_event_cb event, void *arg)
{
	io->readcb = read;
	io->writecb = write;
	io->eventcb = event;
	io->directcb = NULL;
	io->arg = arg;
}

void
px_io_set_direct(struct px_io *io, px_io_direct_cb direct)
{
	io->directcb = direct;
}

struct evbuffer *
px_io_input(struct px_io *io)
{
	return io->in;
}

struct evbuffer *
px_io_output(struct px_io *io)
{
	return io->out;
}

evutil_socket_t
px_io_fd(const struct px_io *io)
{
	return io->fd;
}

/* Registers or unregisters the read event as the owner's wish and the input level say. */
static void
update_read(struct px_io *io)
{
	int want = !io->dead && (io->handshaking ||
	                         (io->reading && !io->connecting &&
	                          io->in_len < io->read_max));
	if (want && !io->rev_added) {
		arm(io->rev, io->timeout_ms);
		io->rev_added = 1;
		/* bytes OpenSSL already took off the socket raise no epoll edge */
		if (io->ssl && !io->handshaking && SSL_has_pending(io->ssl))
			event_active(io->rev, EV_READ, 1);
	} else if (!want && io->rev_added) {
		event_del(io->rev);
		io->rev_added = 0;
		io->drained = 0; /* bytes may now arrive unseen */
	}
}

void
px_io_read(struct px_io *io, int on)
{
	io->reading = on;
	update_read(io);
}

void
px_io_set_read_max(struct px_io *io, size_t max)
{
	io->read_max = max;
	update_read(io);
}

void
px_io_set_low_water(struct px_io *io, size_t low)
{
	io->low_water = low;
	if (io->out_len > low)
		io->above_low = 1;
}

void
px_io_set_timeout(struct px_io *io, unsigned ms)
{
	if (ms == io->timeout_ms)
		return; /* the pending event already has it (re-armed by every read) */
	io->timeout_ms = ms;
	if (io->rev_added)
		arm(io->rev, ms); /* re-adding a pending event only moves its timer */
}

/*
 * The owner's callbacks run through these: a px_io_free() inside them only marks the io dead,
 * and the handler that made the call frees it and stops. Each returns 0 if IO is gone.
 */
static int
finish_call(struct px_io *io)
{
	if (--io->busy == 0 && io->dead) {
		destroy(io);
		return 0;
	}
	return !io->dead;
}

static int
report(struct px_io *io, short what)
{
	if ((what & PX_IO_ERROR) && !(what & PX_IO_TLS))
		io->last_errno = errno;
	if (!io->eventcb)
		return 1;
	io->busy++;
	io->eventcb(io, what, io->arg);
	return finish_call(io);
}

static int
call_read(struct px_io *io)
{
	if (!io->readcb)
		return 1;
	io->busy++;
	io->readcb(io, io->arg);
	return finish_call(io);
}

static int
call_write(struct px_io *io)
{
	if (!io->writecb)
		return 1;
	io->busy++;
	io->writecb(io, io->arg);
	return finish_call(io);
}

/* ---- TLS transport ---- */

static void
tls_fail(struct px_io *io, int sslerr)
{
	char buf[160];
	int e = errno;

	io->tls_failed = 1;
	io->plain_http = (unsigned char)px_tls_why(io->ssl, sslerr, buf, sizeof buf);
	free(io->why);
	io->why = strdup(buf);
	errno = e ? e : EPROTO;
}

/*
 * One step of the handshake. 1: done; 0: waiting for the socket (events set); -1: failed and
 * reported (IO may be gone).
 */
static int
handshake(struct px_io *io)
{
	int r, e;

	ERR_clear_error();
	r = SSL_do_handshake(io->ssl);
	if (r == 1) {
		io->handshaking = 0;
		evtimer_del(io->hs_timer);
		write_done(io); /* a WANT_WRITE may have left the write event on */
		return 1;
	}
	e = SSL_get_error(io->ssl, r);
	if (e == SSL_ERROR_WANT_READ) {
		if (io->wev_added) { /* owner output waits for the handshake, not for the socket */
			event_del(io->wev);
			io->wev_added = 0;
		}
		update_read(io);
		return 0;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		if (!io->wev_added) {
			event_add(io->wev, NULL);
			io->wev_added = 1;
		}
		return 0;
	}
	tls_fail(io, e);
	report(io, PX_IO_ERROR | PX_IO_TLS);
	return -1;
}

/* After the handshake: input flows to the owner; a client learns it is connected. 0 if IO
 * is gone. */
static int
handshake_done(struct px_io *io)
{
	update_read(io);
	if (io->tls_client && !report(io, PX_IO_CONNECTED))
		return 0;
	px_io_flush(io); /* what the owner queued meanwhile */
	return !io->dead;
}

static void
hs_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct px_io *io = arg;
	(void)fd;
	(void)what;
	io->tls_failed = 1;
	free(io->why);
	io->why = strdup("TLS handshake timed out");
	report(io, PX_IO_TIMEOUT | PX_IO_TLS);
}

static int
tls_start(struct px_io *io, SSL *ssl)
{
	io->ssl = ssl;
	io->hs_timer = evtimer_new(event_get_base(io->rev), hs_timeout, io);
	if (!io->hs_timer || SSL_set_fd(ssl, io->fd) != 1)
		return -1;
	io->handshaking = 1;
	return 0;
}

int
px_io_tls_accept(struct px_io *io, SSL *ssl, unsigned timeout_ms)
{
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};

	if (tls_start(io, ssl))
		return -1;
	SSL_set_accept_state(ssl);
	evtimer_add(io->hs_timer, &tv);
	update_read(io); /* a ClientHello already queued is reported at once */
	return 0;
}

int
px_io_tls_connect(struct px_io *io, SSL *ssl)
{
	if (tls_start(io, ssl))
		return -1;
	SSL_set_connect_state(ssl);
	io->tls_client = 1;
	return 0; /* the handshake starts once the TCP connect completes */
}

int
px_io_drained(const struct px_io *io)
{
	return !io->ssl && io->drained;
}

const char *
px_io_why(const struct px_io *io)
{
	return io->why ? io->why : "";
}

int
px_io_tls_plain_http(const struct px_io *io)
{
	return io->plain_http;
}

int
px_io_is_tls(const struct px_io *io)
{
	return io->ssl != NULL;
}

/*
 * Reads records until OpenSSL wants the socket again (SSL_read's WANT_READ means recv(2) saw
 * EAGAIN, so the edge is re-armed) or the owner's room is used up, then hands the input over
 * once. A record's plaintext can sit in OpenSSL after a short read, which is why the plain
 * path's "short read = drained" shortcut does not apply here.
 */
static void
tls_readable(struct px_io *io)
{
	struct evbuffer_iovec v;
	unsigned char first[READ_CHUNK];
	size_t total = 0, room;
	int n, e = SSL_ERROR_NONE;

	if (io->handshaking) {
		if (handshake(io) <= 0 || !handshake_done(io))
			return;
		if (!io->rev_added)
			return; /* the owner does not read yet: update_read resumes it */
	}
	for (;;) {
		room = READ_CHUNK;
		if (io->read_max != (size_t)-1) {
			size_t have = io->in_len;
			room = have < io->read_max ? io->read_max - have : 0;
			if (room > READ_CHUNK)
				room = READ_CHUNK;
		}
		if (room == 0 || total >= TLS_READ_BURST)
			break;
		ERR_clear_error();
		if (io->in_len == 0) {
			/* Into the stack first: a read that finds nothing (the last of every burst, the
			 * one after the handshake) must not leave an empty 16 KiB chain on an idle
			 * connection; evbuffer_drain() frees chains only when there is data. */
			n = SSL_read(io->ssl, first, (int)(room < sizeof first ? room : sizeof first));
			if (n > 0 && evbuffer_add(io->in, first, (size_t)n) < 0) {
				e = SSL_ERROR_SSL;
				break;
			}
		} else {
			if (evbuffer_reserve_space(io->in, (ev_ssize_t)room, &v, 1) < 1) {
				e = SSL_ERROR_SSL;
				break;
			}
			n = SSL_read(io->ssl, v.iov_base, (int)(v.iov_len < room ? v.iov_len : room));
			v.iov_len = n > 0 ? (size_t)n : 0;
			evbuffer_commit_space(io->in, &v, 1);
		}
		if (n > 0) {
			total += (size_t)n;
			continue;
		}
		e = SSL_get_error(io->ssl, n);
		break;
	}
	if (e == SSL_ERROR_SSL || e == SSL_ERROR_SYSCALL)
		tls_fail(io, e);
	if (total && !call_read(io))
		return;
	switch (e) {
	case SSL_ERROR_NONE: /* room or burst used up: more may be waiting */
		update_read(io);
		if (io->rev_added)
			event_active(io->rev, EV_READ, 1);
		return;
	case SSL_ERROR_WANT_READ:
		update_read(io);
		return;
	case SSL_ERROR_WANT_WRITE:
		io->read_wants_write = 1;
		if (!io->wev_added) {
			event_add(io->wev, NULL);
			io->wev_added = 1;
		}
		return;
	case SSL_ERROR_ZERO_RETURN: /* close_notify, or a bare FIN (SSL_OP_IGNORE_UNEXPECTED_EOF) */
		event_del(io->rev);
		io->rev_added = 0;
		report(io, PX_IO_EOF);
		return;
	default:
		report(io, PX_IO_ERROR);
		return;
	}
}

/* Encrypts and writes IO's output as far as the socket takes it. -1 on a real error. */
static int
tls_write_out(struct px_io *io)
{
	size_t len;

	while ((len = io->out_len) > 0) {
		unsigned char *p;
		int n, e;

		if (len > TLS_WRITE_CHUNK)
			len = TLS_WRITE_CHUNK;
		p = evbuffer_pullup(io->out, (ev_ssize_t)len);
		if (!p) {
			errno = ENOMEM;
			return -1;
		}
		ERR_clear_error();
		n = SSL_write(io->ssl, p, (int)len);
		if (n > 0) {
			evbuffer_drain(io->out, (size_t)n);
			continue;
		}
		e = SSL_get_error(io->ssl, n);
		if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ)
			return 0;
		tls_fail(io, e);
		return -1;
	}
	return 0;
}

void
px_io_shutdown(struct px_io *io)
{
	if (io->ssl && !io->handshaking && !io->tls_failed) {
		ERR_clear_error();
		SSL_shutdown(io->ssl); /* close_notify; the peer's is not waited for */
		ERR_clear_error();
	}
	shutdown(io->fd, SHUT_WR);
}

static void
io_readable(evutil_socket_t fd, short what, void *arg)
{
	struct px_io *io = arg;
	ssize_t n;
	size_t room = READ_CHUNK, have;
	void *block;

	if (what & EV_TIMEOUT) {
		report(io, PX_IO_TIMEOUT);
		return;
	}
	if (io->ssl) {
		tls_readable(io);
		return;
	}
	have = io->in_len;
	if (io->read_max != (size_t)-1) {
		room = have < io->read_max ? io->read_max - have : 0;
		if (room > READ_CHUNK)
			room = READ_CHUNK;
		if (room == 0) {
			update_read(io);
			return;
		}
	}
	block = block_get();
	if (!block) {
		report(io, PX_IO_ERROR);
		return;
	}
	/* recv(2) for one buffer: the kernel's iovec import makes readv(2) measurably dearer */
	n = recv(fd, block, room, 0);
	if (n <= 0)
		block_put(NULL, 0, block);
	if (n < 0) {
		if (errno == EINTR)
			event_active(io->rev, EV_READ, 1);
		if (errno == EAGAIN || errno == EINTR)
			return;
		report(io, PX_IO_ERROR);
		return;
	}
	if (n == 0) {
		event_del(io->rev);
		io->rev_added = 0;
		report(io, PX_IO_EOF);
		return;
	}
	{
		int full = (size_t)n == room;
		size_t used = 0;
		io->drained = !full;
		if (io->directcb && have == 0) {
			io->busy++;
			used = io->directcb(io, block, (size_t)n, io->arg);
			if (!finish_call(io)) {
				block_put(NULL, 0, block);
				return;
			}
		}
		if (used < (size_t)n) {
			size_t left = (size_t)n - used;
			/* A few bytes by reference would pin the whole block wherever they go, and an
			 * output holding many small answers (a client that does not read) counts
			 * bytes against its watermark, not blocks: 256 KiB of 73-byte answers pinned
			 * 56 MB. So a small rest is copied (into the input's last chain where it
			 * fits) and the block goes back at once; a large one stays zero-copy. */
			int r = left < COPY_BELOW
			            ? evbuffer_add(io->in, (char *)block + used, left)
			            : evbuffer_add_reference(io->in, (char *)block + used, left, block_put,
			                                     block);
			if (left < COPY_BELOW)
				block_put(NULL, 0, block);
			if (r < 0) {
				if (left >= COPY_BELOW)
					block_put(NULL, 0, block);
				report(io, PX_IO_ERROR);
				return;
			}
			if (!call_read(io))
				return;
			update_read(io);
		} else {
			block_put(NULL, 0, block);
			/* the input is still empty: only the owner's wish may have changed */
			if (!(io->rev_added && io->reading))
				update_read(io);
		}
		if ((full || (what & EV_CLOSED)) && io->rev_added)
			event_active(io->rev, EV_READ | (what & EV_CLOSED), 1); /* no new edge comes */
	}
}

/*
 * Writes as much of IO's output (*LEFT bytes, updated) as the socket takes: send(2) when it
 * is one contiguous piece (the usual case for relayed messages), else evbuffer_write()'s
 * writev(2). Returns -1 on a real error (errno set), else 0.
 */
static int
write_out(struct px_io *io, size_t *left)
{
	size_t front;
	ssize_t n;
	int r;

	if (io->ssl) {
		r = tls_write_out(io);
		*left = io->out_len;
		return r;
	}
	front = evbuffer_get_contiguous_space(io->out);
	if (front == *left) {
		n = send(io->fd, evbuffer_pullup(io->out, (ev_ssize_t)front), front, MSG_NOSIGNAL);
		if (n > 0) {
			evbuffer_drain(io->out, (size_t)n);
			*left -= (size_t)n;
		}
	} else {
		/* evbuffer_write() sends at most 128 chains per call (many small answers are many
		 * chains): go on until the socket is full or the output empty, because the fd is
		 * edge-triggered (the read event's EV_ET covers it) and a socket left writable
		 * raises no new edge for the write event */
		do
			n = evbuffer_write(io->out, io->fd);
		while (n > 0 && io->out_len > 0);
		*left = io->out_len;
	}
	return n < 0 && errno != EAGAIN && errno != EINTR ? -1 : 0;
}

static void
write_done(struct px_io *io)
{
	if (io->wev_added && io->out_len == 0) {
		event_del(io->wev);
		io->wev_added = 0;
	}
}

static void
io_writable(evutil_socket_t fd, short what, void *arg)
{
	struct px_io *io = arg;
	int err = 0;
	socklen_t el = sizeof err;

	if (io->pending_err) {
		errno = io->pending_err;
		report(io, PX_IO_ERROR);
		return;
	}
	if (io->connecting) {
		if (what & EV_TIMEOUT) {
			report(io, PX_IO_TIMEOUT);
			return;
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
			errno = err;
			report(io, PX_IO_ERROR);
			return;
		}
		io->connecting = 0;
		event_del(io->wev);
		io->wev_added = 0;
		if (io->ssl) {
			struct timeval tv = {io->connect_ms / 1000, (io->connect_ms % 1000) * 1000};
			if (io->connect_ms)
				evtimer_add(io->hs_timer, &tv);
			if (handshake(io) <= 0)
				return;
			handshake_done(io);
			return;
		}
		update_read(io);
		if (report(io, PX_IO_CONNECTED))
			px_io_flush(io);
		return;
	}
	if (io->handshaking) {
		if (handshake(io) > 0)
			handshake_done(io);
		return;
	}
	if (io->read_wants_write) {
		io->read_wants_write = 0;
		event_active(io->rev, EV_READ, 1);
	}
	{
		size_t left = io->out_len;
		if (left && write_out(io, &left) < 0) {
			report(io, PX_IO_ERROR);
			return;
		}
	}
	write_done(io);
	if (io->above_low && io->out_len <= io->low_water) {
		io->above_low = 0;
		call_write(io);
	}
}

void
px_io_flush(struct px_io *io)
{
	size_t left;

	if (io->connecting || io->handshaking || io->pending_err || io->dead)
		return;
	left = io->out_len;
	if (left == 0)
		return;
	if (!io->wev_added) {
		if (write_out(io, &left) < 0) {
			io->pending_err = errno ? errno : EIO;
			event_active(io->wev, EV_WRITE, 1);
			return;
		}
		if (left == 0)
			return;
		/* the socket is full: wait for it */
		event_add(io->wev, NULL);
		io->wev_added = 1;
	}
	if (left > io->low_water)
		io->above_low = 1; /* the WRITE callback follows when it drains */
}

void
px_io_write(struct px_io *io, const void *p, size_t n)
{
	ssize_t w = 0;

	if (n == 0)
		return;
	if (!io->ssl && !io->wev_added && !io->connecting && !io->pending_err && !io->dead &&
	    io->out_len == 0) {
		w = send(io->fd, p, n, MSG_NOSIGNAL);
		if (w == (ssize_t)n)
			return;
		if (w < 0) {
			if (errno != EAGAIN && errno != EINTR) {
				io->pending_err = errno;
				event_active(io->wev, EV_WRITE, 1);
				return;
			}
			w = 0;
		}
		/* the socket is full: the rest waits for it */
		if (evbuffer_add(io->out, (const char *)p + w, n - (size_t)w) < 0) {
			io->pending_err = ENOMEM;
			event_active(io->wev, EV_WRITE, 1);
			return;
		}
		event_add(io->wev, NULL);
		io->wev_added = 1;
		if (n - (size_t)w > io->low_water)
			io->above_low = 1;
		return;
	}
	if (evbuffer_add(io->out, p, n) < 0) {
		io->pending_err = ENOMEM;
		event_active(io->wev, EV_WRITE, 1);
	}
}

size_t
px_io_pending(const struct px_io *io)
{
	return io->out_len;
}

uint64_t
px_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

void
px_io_send(struct px_io *io, struct evbuffer *src)
{
	evbuffer_add_buffer(io->out, src);
	px_io_flush(io);
}

int
px_io_errno(const struct px_io *io)
{
	return io->last_errno;
}
