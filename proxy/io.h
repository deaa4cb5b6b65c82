/*
 * proxy/io.h - a socket with an input and an output evbuffer, on a libevent loop.
 *
 * Why not bufferevent_socket: it asks the kernel how much is readable (ioctl FIONREAD) before
 * every read, and arms then disarms its write event around every write: four extra syscalls
 * and a loop turn per proxied request, the largest cost in the relay's profile. px_io keeps
 * one persistent read event, reads straight into the input buffer, writes at once on
 * px_io_flush(), and waits for writability only while output is blocked.
 *
 * Callbacks run only from px_io's own event handlers, never from a call the owner makes
 * (px_io_flush() reports a write error later, from the loop), so the owner is never re-entered.
 * px_io_free() may be called from inside a callback: the free is deferred until it returns.
 */
#ifndef SG_PROXY_IO_H
#define SG_PROXY_IO_H

#include <event2/buffer.h>
#include <openssl/ssl.h>
#include <event2/event.h>
#include <stdint.h>
#include <sys/socket.h>

#define PX_IO_CONNECTED 0x01
#define PX_IO_EOF 0x02
#define PX_IO_ERROR 0x04
#define PX_IO_TIMEOUT 0x08
#define PX_IO_TLS 0x10 /* with ERROR or TIMEOUT: the TLS handshake failed (px_io_why) */

struct px_io;

typedef void (*px_io_cb)(struct px_io *io, void *arg);
typedef void (*px_io_event_cb)(struct px_io *io, short what, void *arg);
/* See px_io_set_direct(). Returns how many of the N bytes at P it consumed (0..N). */
typedef size_t (*px_io_direct_cb)(struct px_io *io, const uint8_t *p, size_t n, void *arg);

/* Wraps connected non-blocking socket FD (taken over: closed by px_io_free). NULL on ENOMEM.
 * (evconnlistener's sockets are non-blocking, px_io_connect's too.) */
struct px_io *px_io_new(struct event_base *base, evutil_socket_t fd);

/* A new non-blocking TCP socket connecting to SA; PX_IO_CONNECTED or PX_IO_ERROR (or
 * PX_IO_TIMEOUT after TIMEOUT_MS) follows. NULL if the socket cannot be made. */
struct px_io *px_io_connect(struct event_base *base, const struct sockaddr *sa, socklen_t len,
                            unsigned timeout_ms);

void px_io_free(struct px_io *io);

/* READ: input arrived. WRITE: output drained to the low watermark after having been above
 * it (or emptied, with no watermark set). EVENT: PX_IO_* flags. Clears a DIRECT callback. */
void px_io_setcb(struct px_io *io, px_io_cb read, px_io_cb write, px_io_event_cb event, void *arg);

/*
 * The relay's fast path. While the input buffer is empty, bytes just read on a plain socket go
 * first to DIRECT, straight from the read block (no evbuffer): it consumes whole units from
 * the front and returns how many bytes it took; the rest joins the input and READ runs as
 * usual. P is valid only during the call. DIRECT runs under the same rules as READ (it may
 * free IO). NULL turns it off; px_io_setcb() does too.
 */
void px_io_set_direct(struct px_io *io, px_io_direct_cb direct);

/*
 * Keeps *LEN equal to B's length from now on, through libevent's change callbacks
 * (evbuffer_add_cb), for a hot path that should not touch B's own cache line to learn it.
 * Returns 0, or -1 if the callback could not be registered. LEN must outlive B.
 */
int px_evbuffer_track_length(struct evbuffer *b, size_t *len);

struct evbuffer *px_io_input(struct px_io *io);
struct evbuffer *px_io_output(struct px_io *io);
evutil_socket_t px_io_fd(const struct px_io *io);

/* Turns reading on or off (backpressure). Reading also pauses by itself while the input
 * holds READ_MAX bytes or more, and resumes once the owner has drained it below. */
void px_io_read(struct px_io *io, int on);
void px_io_set_read_max(struct px_io *io, size_t max);
void px_io_set_low_water(struct px_io *io, size_t low);

/* A PX_IO_TIMEOUT after MS without input (0: none). Re-armed by every read. */
void px_io_set_timeout(struct px_io *io, unsigned ms);

/* Writes the output now, as far as the socket takes it. */
void px_io_flush(struct px_io *io);

/*
 * Queues N bytes at P after the output: sent at once with one send(2) when nothing is queued
 * before them and the socket is a connected plain one, else copied to the output (then
 * px_io_pending() says so, and the owner flushes and checks its watermarks as usual). A write
 * error is reported later, from the loop, as px_io_flush's is.
 */
void px_io_write(struct px_io *io, const void *p, size_t n);

/* Bytes waiting in IO's output (0: everything written so far has gone to the socket). */
size_t px_io_pending(const struct px_io *io);

/*
 * TLS. px_io_tls_accept() makes IO (from px_io_new) the server side of SSL, which it takes
 * over: the handshake runs inside px_io within TIMEOUT_MS, and the owner's READ callback sees
 * only plaintext after it. px_io_tls_connect() does the same for a px_io_connect()ed IO as the
 * client: PX_IO_CONNECTED comes after the handshake (which gets the connect timeout again).
 * A failed or late handshake is PX_IO_ERROR|PX_IO_TLS or PX_IO_TIMEOUT|PX_IO_TLS. Both return
 * 0, or -1 (the owner frees IO; SSL is IO's either way).
 */
int px_io_tls_accept(struct px_io *io, SSL *ssl, unsigned timeout_ms);
int px_io_tls_connect(struct px_io *io, SSL *ssl);
int px_io_is_tls(const struct px_io *io);
/* Why the last TLS operation failed ("" if none): "certificate verify failed: ...". */
const char *px_io_why(const struct px_io *io);
/* The errno of the last PX_IO_ERROR (0: none known; a TLS failure has px_io_why()). */
int px_io_errno(const struct px_io *io);

/* 1 if the handshake failed because the client sent a plain HTTP request. */
int px_io_tls_plain_http(const struct px_io *io);

/* 1 if the last read of a plain socket found it empty and reading has not paused since:
 * nothing the peer sent waits unread (as far as we know: more may arrive at any time). 0 over
 * TLS, and 0 once reading paused (bytes may have arrived unseen). */
int px_io_drained(const struct px_io *io);

/* Ends our direction: close_notify on TLS, then FIN. Reading continues (lingering close). */
void px_io_shutdown(struct px_io *io);

/* Frees the calling thread's cache of read buffers: call as a thread's event loop ends
 * (buffers still in use return to the cache of the thread that frees them). */
void px_io_thread_done(void);

/* Microseconds on the monotonic clock (timeouts, latencies, cache expiry). */
uint64_t px_now_us(void);

/* Moves SRC to the output and flushes. */
void px_io_send(struct px_io *io, struct evbuffer *src);

#endif
