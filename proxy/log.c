/*
 * proxy/log.c - JSON-lines logging (contract in log.h). One write(2) per line so lines from
 * several worker threads never interleave.
 */
#include "proxy/log.h"

#include <event2/buffer.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum px_log_level min_level = PX_LOG_INFO;

void
px_log_set_level(enum px_log_level l)
{
	min_level = l;
}

uint64_t
px_wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

size_t
px_json_escape(char *out, size_t sz, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	if (sz == 0)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (o + 7 >= sz)
			break;
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20 || c == 0x7f) {
			out[o++] = '\\';
			out[o++] = 'u';
			out[o++] = '0';
			out[o++] = '0';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		} else {
			out[o++] = (char)c;
		}
	}
	out[o] = 0;
	return o;
}

/* 1 if S is a JSON number as syncgate writes them: -?(0|[1-9][0-9]*)(.[0-9]+)?, at most 24
 * characters. */
static int
json_number(const char *s)
{
	const char *p = s;
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return 0;
	if (*p == '.') {
		const char *f = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		if (p == f)
			return 0;
	}
	return !*p && p - s <= 24;
}

static size_t
format_line(char *line, size_t size, enum px_log_level level, const char *event, va_list ap)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	size_t o;
	struct timeval tv;
	struct tm tm;
	const char *k;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	o = (size_t)snprintf(line, size,
	                     "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"level\":\"%s\",\"event\":\"%s\"",
	                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	                     tm.tm_sec, (int)(tv.tv_usec / 1000), names[level], event);
	while ((k = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);
		if (o + 16 >= size)
			break;
		if (k[0] == '#') {
			/* a number (or true / false): written bare when it is one, else null */
			int num = v && (json_number(v) || !strcmp(v, "true") || !strcmp(v, "false"));
			o += (size_t)snprintf(line + o, size - o, ",\"%s\":%s", k + 1, num ? v : "null");
			if (o >= size - 8)
				break;
			continue;
		}
		o += (size_t)snprintf(line + o, size - o, ",\"%s\":\"", k);
		if (o >= size - 8)
			break;
		o += px_json_escape(line + o, size - o - 4, v ? v : "", v ? strlen(v) : 0);
		line[o++] = '"';
	}
	if (o > size - 3)
		o = size - 3;
	line[o++] = '}';
	line[o++] = '\n';
	return o;
}

/* Formats one line and writes it to stderr, or appends it to BUF when BUF is not NULL. */
static void
emit(struct evbuffer *buf, enum px_log_level level, const char *event, va_list ap)
{
	char line[4096];
	size_t n;

	if (level < min_level)
		return;
	n = format_line(line, sizeof line, level, event, ap);
	if (buf)
		evbuffer_add(buf, line, n);
	else
		(void)!write(2, line, n);
}

void
px_log(enum px_log_level level, const char *event, ...)
{
	va_list ap;
	va_start(ap, event);
	emit(NULL, level, event, ap);
	va_end(ap);
}

void
px_log_to(struct evbuffer *buf, enum px_log_level level, const char *event, ...)
{
	va_list ap;
	va_start(ap, event);
	emit(buf, level, event, ap);
	va_end(ap);
}

void
px_log_flush(struct evbuffer *buf)
{
	while (evbuffer_get_length(buf) > 0) {
		size_t len = evbuffer_get_length(buf), take = len < PIPE_BUF ? len : PIPE_BUF;
		const char *p = (const char *)evbuffer_pullup(buf, (ev_ssize_t)take);
		/* whole lines only: back up to the last newline in the chunk */
		while (take > 0 && p[take - 1] != '\n')
			take--;
		if (take == 0)
			take = len < PIPE_BUF ? len : PIPE_BUF; /* a line longer than PIPE_BUF */
		(void)!write(2, p, take);
		evbuffer_drain(buf, take);
	}
}
