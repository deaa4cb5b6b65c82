/* libFuzzer: path canonicalisation. Properties: canon(canon(x)) == canon(x); a canonical path
 * re-parses to the same segments and holds no %2F, %5C, %00, "//", "." or ".." segment. */
#include <stdlib.h>
#include <string.h>

#include "policy/path.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

int
LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
	static struct pol_path a, b;
	char c1[POL_PATH_MAX_BYTES * 3 + 2], c2[sizeof c1];
	const char *why;
	int cs;

	if (size < 1)
		return 0;
	cs = data[0] & 1 ? POL_PATH_PCHAR : POL_PATH_URI_COMPONENT;
	if (pol_path_parse((const char *)data + 1, size - 1, cs, &a, &why))
		return 0;
	long n1 = pol_path_canon(&a, c1, sizeof c1);
	if (n1 < 0)
		abort();
	if (pol_path_parse(c1, (size_t)n1, POL_PATH_URI_COMPONENT, &b, &why))
		abort(); /* a canonical path must parse */
	if (b.nseg != a.nseg)
		abort();
	for (int i = 0; i < a.nseg; i++)
		if (a.seg[i].len != b.seg[i].len || memcmp(a.seg[i].p, b.seg[i].p, a.seg[i].len))
			abort();
	long n2 = pol_path_canon(&b, c2, sizeof c2);
	if (n2 != n1 || memcmp(c1, c2, (size_t)n1))
		abort();
	if (strstr(c1, "%2F") || strstr(c1, "%5C") || strstr(c1, "%00") || strstr(c1, "//") ||
	    strstr(c1, "/./") || strstr(c1, "/../"))
		abort();
	if ((n1 >= 2 && !strcmp(c1 + n1 - 2, "/.")) || (n1 >= 3 && !strcmp(c1 + n1 - 3, "/..")))
		abort();
	return 0;
}
