/* The word-at-a-time loops against their one-byte-at-a-time definitions: unmasking (RFC 6455
 * §5.3) at every length and starting offset, in place and copying; UTF-8 validation with the
 * first non-ASCII byte at every position around the 8-byte steps. */
#include <stdint.h>
#include <stdlib.h>

#include "policy/text.h"
#include "proxy/wsframe.h"
#include "t.h"

static int
utf8_reference(const unsigned char *s, size_t len)
{
	size_t i = 0;
	while (i < len) {
		size_t n = s[i] < 0x80 ? 1 : pol_utf8_seq(s + i, len - i);
		if (!n)
			return 0;
		i += n;
	}
	return 1;
}

int
main(void)
{
	const uint8_t mask[4] = {0x37, 0xfa, 0x21, 0x3d};
	uint8_t src[64], want[64], got[64], inplace[64];
	size_t len, off, i, pos;

	srand(7);
	for (i = 0; i < sizeof src; i++)
		src[i] = (uint8_t)rand();
	for (len = 0; len <= 40; len++)
		for (off = 0; off < 8; off++) {
			for (i = 0; i < len; i++)
				want[i] = src[i] ^ mask[(off + i) & 3];
			px_ws_unmask_copy(got, src, len, mask, off);
			memcpy(inplace, src, len);
			px_ws_mask(inplace, len, mask, off);
			CHECK(memcmp(got, want, len) == 0);
			CHECK(memcmp(inplace, want, len) == 0);
		}

	/* a valid 2-byte, 3-byte and 4-byte sequence, a bad continuation, a truncated one, an
	 * overlong form and a surrogate, each placed at offsets 0..24 in ASCII */
	{
		static const char *const seqs[] = {"\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xc3\x28",
		                                   "\xe2\x82", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
		unsigned char buf[64];
		for (i = 0; i < sizeof seqs / sizeof seqs[0]; i++)
			for (pos = 0; pos <= 24; pos++)
				for (len = pos + strlen(seqs[i]); len <= pos + strlen(seqs[i]) + 9; len++) {
					memset(buf, 'a', sizeof buf);
					memcpy(buf + pos, seqs[i], strlen(seqs[i]));
					CHECK(pol_utf8_valid(buf, len) == utf8_reference(buf, len));
				}
		memset(buf, 'a', sizeof buf);
		CHECK(pol_utf8_valid(buf, sizeof buf) == 1);
		buf[63] = 0x80;
		CHECK(pol_utf8_valid(buf, sizeof buf) == 0);
		CHECK(pol_utf8_valid(buf, 63) == 1);
	}
	return t_done("test_wsframe");
}
