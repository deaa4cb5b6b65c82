/* libFuzzer: the HTTP request path of syncgate (its own head guard, then llhttp 8.1 strict,
 * then the body) over a byte stream split at fuzzer-chosen points. Property: when the guard
 * accepts a head, llhttp must agree and read the same framing (chunked, Content-Length). */
#include <llhttp.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/httpguard.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static int done;

static int
on_complete(llhttp_t *p)
{
	(void)p;
	done = 1;
	return HPE_PAUSED;
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static char buf[16384];
	size_t len = 0, off = 1, cut;
	long end = 0;
	struct px_head_info info;
	const char *why;
	llhttp_t parser;
	llhttp_settings_t s;

	if (size < 2)
		return 0;
	cut = 1 + data[0] % 64; /* arrival chunk size */
	while (off < size && end == 0) {
		size_t n = size - off < cut ? size - off : cut;
		if (len + n > sizeof buf)
			return 0; /* over the head cap: 431 */
		memcpy(buf + len, data + off, n);
		len += n;
		off += n;
		end = px_head_end(buf, len);
	}
	if (end <= 0)
		return 0;
	if (px_guard_request(buf, (size_t)end, 8192, 100, &info, &why))
		return 0;
	llhttp_settings_init(&s);
	s.on_message_complete = on_complete;
	llhttp_init(&parser, HTTP_REQUEST, &s);
	done = 0;
	llhttp_errno_t e = llhttp_execute(&parser, buf, (size_t)end);
	if (e != HPE_OK && e != HPE_PAUSED && e != HPE_PAUSED_UPGRADE)
		return 0; /* llhttp stricter than the guard: refused with 400, which is safe */
	if (!!(parser.flags & F_CHUNKED) != info.chunked)
		abort();
	if (info.has_cl && !done && parser.content_length != info.content_length)
		abort();
	if (e != HPE_OK)
		llhttp_resume(&parser);
	/* the body, in the same chunks: never reads past what it is given */
	{
		size_t have = len - (size_t)end;
		const char *p = buf + end;
		while (!done) {
			if (have) {
				e = llhttp_execute(&parser, p, have);
				if (e != HPE_OK && e != HPE_PAUSED)
					break;
			}
			if (off >= size)
				break;
			size_t n = size - off < cut ? size - off : cut;
			memcpy(buf, data + off, n);
			p = buf;
			have = n;
			off += n;
		}
	}
	return 0;
}
