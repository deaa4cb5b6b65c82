/*
 * proxy/log.c - JSON-lines logging (contract in log.h). One write(2) per line so lines from
 * several worker threads never interleave.
 */
#include "proxy/log.h"

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

void
px_log(enum px_log_level level, const char *event, ...)
{
	static const char *names[] = {"debug", "info", "warn", "error"};
	char line[4096];
	size_t o;
	struct timeval tv;
	struct tm tm;
	va_list ap;
	const char *k;

	if (level < min_level)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	o = (size_t)snprintf(line, sizeof line,
	                     "{\"ts\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03dZ\",\"level\":\"%s\",\"event\":\"%s\"",
	                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
	                     tm.tm_sec, (int)(tv.tv_usec / 1000), names[level], event);
	va_start(ap, event);
	while ((k = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);
		if (o + 16 >= sizeof line)
			break;
		o += (size_t)snprintf(line + o, sizeof line - o, ",\"%s\":\"", k);
		if (o >= sizeof line - 8)
			break;
		o += px_json_escape(line + o, sizeof line - o - 4, v ? v : "", v ? strlen(v) : 0);
		line[o++] = '"';
	}
	va_end(ap);
	if (o > sizeof line - 3)
		o = sizeof line - 3;
	line[o++] = '}';
	line[o++] = '\n';
	(void)!write(2, line, o);
}
