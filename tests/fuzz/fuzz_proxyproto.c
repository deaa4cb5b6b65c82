/* libFuzzer: the PROXY protocol header. Properties: a header never claims more bytes than it
 * was given; the length a whole header is given is the same with any bytes after it; a
 * prefix of a whole header asks for more. */
#include <stdlib.h>
#include <string.h>

#include "proxy/proxyproto.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	struct sockaddr_storage src;
	unsigned char more[PX_PP_MAX + 16];
	const char *why;
	long r = px_proxyproto_parse(data, size, &src, &why);

	if (r > (long)size)
		abort();
	if (r > 0) {
		size_t k;
		if ((size_t)r + 16 <= sizeof more) {
			memcpy(more, data, (size_t)r);
			memset(more + r, 'x', 16);
			if (px_proxyproto_parse(more, (size_t)r + 16, &src, &why) != r)
				abort(); /* what follows the header does not change it */
		}
		for (k = 0; k < (size_t)r; k++)
			if (px_proxyproto_parse(data, k, &src, &why) != 0)
				abort(); /* a prefix of a header asks for more */
	}
	return 0;
}
