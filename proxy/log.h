/*
 * proxy/log.h - JSON lines on stderr. One line per event; keys and values are escaped.
 * Secrets (tokens, keys) and message bodies are never passed here.
 */
#ifndef SG_PROXY_LOG_H
#define SG_PROXY_LOG_H

#include <stddef.h>
#include <stdint.h>

enum px_log_level { PX_LOG_DEBUG, PX_LOG_INFO, PX_LOG_WARN, PX_LOG_ERROR };

void px_log_set_level(enum px_log_level l);

/*
 * Logs an event: LEVEL, EVENT name, then NULL-terminated key/value string pairs, e.g.
 * px_log(PX_LOG_INFO, "listen", "addr", "127.0.0.1:8080", NULL). A key written "#name" is a
 * number or a boolean: its value goes out bare ("status":403, "fleet":true) when it reads as
 * one (a JSON number, true, false), else as null.
 */
void px_log(enum px_log_level level, const char *event, ...);

/* The same line appended to BUF instead of written at once (access lines: see
 * px_log_flush). */
struct evbuffer;
void px_log_to(struct evbuffer *buf, enum px_log_level level, const char *event, ...);

/* Writes BUF's whole lines to stderr in writes of at most PIPE_BUF bytes (each atomic on a
 * pipe, so lines of several threads never interleave). */
void px_log_flush(struct evbuffer *buf);

/* The wall clock (CLOCK_REALTIME) in milliseconds since the epoch: times that outlive the
 * process or are shared between its threads (refusal budgets, the console's refusals). */
uint64_t px_wall_ms(void);

/* Appends S (N bytes) JSON-escaped into OUT (SZ bytes, NUL-terminated); returns bytes used. */
size_t px_json_escape(char *out, size_t sz, const char *s, size_t n);

#endif
