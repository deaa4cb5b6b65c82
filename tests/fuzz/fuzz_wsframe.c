/* libFuzzer: the WebSocket frame parser and the reassembler, over a byte stream split at
 * fuzzer-chosen points. Properties: the header sequence read from split input equals the one
 * read whole (restartable parsing); accepted headers obey RFC 6455 §5.2; the reassembler's
 * verdicts equal those of an independent model of RFC 6455 §5.4 with the caps. */
#include <stdlib.h>
#include <string.h>

#include "policy/text.h"
#include "proxy/wsframe.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

#define MAXF 256
#define CAP 4096

struct seq {
	int n;
	struct px_ws_header h[MAXF];
	int err;
};

static void
walk(const unsigned char *d, size_t size, int from_client, size_t chunk, struct seq *out)
{
	static unsigned char buf[CAP * 2 + 64];
	size_t have = 0, off = 0;
	out->n = 0;
	out->err = 0;
	for (;;) {
		struct px_ws_header h;
		int code, r;
		const char *why;
		r = px_ws_parse_header(buf, have, from_client, CAP, &h, &code, &why);
		if (r < 0) {
			out->err = code;
			return;
		}
		if (r > 0 && have >= h.hdr_len + h.len) {
			if (out->n == MAXF)
				return;
			out->h[out->n++] = h;
			memmove(buf, buf + h.hdr_len + h.len, have - h.hdr_len - h.len);
			have -= h.hdr_len + h.len;
			continue;
		}
		if (off >= size)
			return;
		size_t n = size - off < chunk ? size - off : chunk;
		if (have + n > sizeof buf)
			return;
		memcpy(buf + have, d + off, n);
		have += n;
		off += n;
	}
}

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static struct seq whole, split;
	int from_client, i;

	if (size < 2)
		return 0;
	from_client = data[0] & 1;
	walk(data + 1, size - 1, from_client, size, &whole);
	walk(data + 1, size - 1, from_client, 1 + data[0] % 7, &split);
	if (whole.n != split.n || whole.err != split.err)
		abort();
	for (i = 0; i < whole.n; i++) {
		const struct px_ws_header *h = &whole.h[i];
		if (memcmp(h, &split.h[i], sizeof *h))
			abort();
		if (h->masked != from_client || h->len > CAP)
			abort();
		if (h->opcode >= PX_WS_CLOSE && (!h->fin || h->len > 125))
			abort();
		if ((h->opcode > 2 && h->opcode < 8) || h->opcode > 10)
			abort();
	}
	/* the reassembler against a model: small caps so that the fuzzer reaches them */
	{
		struct px_ws_assembler a;
		int open = 0, mop = 0;
		unsigned count = 0;
		uint64_t msize = 0;
		px_ws_assembler_init(&a, 1000, 5);
		for (i = 0; i < whole.n; i++) {
			const struct px_ws_header *h = &whole.h[i];
			int opcode = -1, code = 0, want, wcode = 0;
			const char *why;
			int r = px_ws_assemble(&a, h, &opcode, &code, &why);
			if (h->opcode >= PX_WS_CLOSE) {
				want = PX_WS_CONTROL;
			} else if ((h->opcode == PX_WS_CONT) != open) {
				want = -1;
				wcode = PX_WS_CLOSE_PROTOCOL;
			} else {
				if (!open) {
					open = 1;
					mop = h->opcode;
					count = 0;
					msize = 0;
				}
				count++;
				msize += h->len;
				if (count > 5 || msize > 1000) {
					want = -1;
					wcode = PX_WS_CLOSE_TOO_BIG;
				} else if (h->fin) {
					want = PX_WS_LAST;
					open = 0;
				} else {
					want = PX_WS_PART;
				}
			}
			if (r != want || (r < 0 && code != wcode) || (r == PX_WS_LAST && opcode != mop))
				abort();
			if (r < 0)
				break; /* the relay closes the socket here */
		}
	}
	/* close payload and UTF-8 checks on the raw bytes */
	{
		int code;
		if (px_ws_check_close(data + 1, size - 1 > 125 ? 125 : size - 1, &code) == 0 &&
		    size > 3 && !(code >= 1000 && code <= 4999))
			abort();
		(void)pol_utf8_valid(data, size);
	}
	return 0;
}
