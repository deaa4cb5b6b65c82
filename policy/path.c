/*
 * policy/path.c - path canonicalisation (contract in path.h).
 */
#include "policy/path.h"

#include "policy/text.h"

#include <stdint.h>
#include <string.h>

/* Character classes of path bytes, one table lookup per byte. URI_COMPONENT: the characters
 * encodeURIComponent leaves as they are (ECMA-262 uriUnreserved). PCHAR_EXTRA: what RFC 3986
 * pchar adds to them, less "%" (escapes are handled apart). */
enum { URI_COMPONENT = 1, PCHAR_EXTRA = 2 };
#define U URI_COMPONENT
#define P PCHAR_EXTRA
static const uint8_t path_class[256] = {
	['a'] = U, ['b'] = U, ['c'] = U, ['d'] = U, ['e'] = U, ['f'] = U, ['g'] = U, ['h'] = U,
	['i'] = U, ['j'] = U, ['k'] = U, ['l'] = U, ['m'] = U, ['n'] = U, ['o'] = U, ['p'] = U,
	['q'] = U, ['r'] = U, ['s'] = U, ['t'] = U, ['u'] = U, ['v'] = U, ['w'] = U, ['x'] = U,
	['y'] = U, ['z'] = U,
	['A'] = U, ['B'] = U, ['C'] = U, ['D'] = U, ['E'] = U, ['F'] = U, ['G'] = U, ['H'] = U,
	['I'] = U, ['J'] = U, ['K'] = U, ['L'] = U, ['M'] = U, ['N'] = U, ['O'] = U, ['P'] = U,
	['Q'] = U, ['R'] = U, ['S'] = U, ['T'] = U, ['U'] = U, ['V'] = U, ['W'] = U, ['X'] = U,
	['Y'] = U, ['Z'] = U,
	['0'] = U, ['1'] = U, ['2'] = U, ['3'] = U, ['4'] = U, ['5'] = U, ['6'] = U, ['7'] = U,
	['8'] = U, ['9'] = U,
	['-'] = U, ['_'] = U, ['.'] = U, ['!'] = U, ['~'] = U, ['*'] = U, ['\''] = U, ['('] = U,
	[')'] = U,
	['$'] = P, ['&'] = P, ['+'] = P, [','] = P, [';'] = P, ['='] = P, [':'] = P, ['@'] = P,
};
#undef U
#undef P

static int
is_uri_component(unsigned char c)
{
	return path_class[c] & URI_COMPONENT;
}

int
pol_path_parse(const char *path, size_t len, enum pol_path_charset cs, struct pol_path *out,
               const char **why)
{
	const unsigned char *s = (const unsigned char *)path;
	size_t i = 1, o = 0;
	const uint8_t allowed = cs == POL_PATH_PCHAR ? URI_COMPONENT | PCHAR_EXTRA : URI_COMPONENT;

	out->nseg = 0;
	if (len == 0 || s[0] != '/') {
		*why = "path must start with /";
		return -1;
	}
	if (len == 1)
		return 0;
	while (i <= len) {
		size_t start = o;
		unsigned char high = 0; /* OR of the segment's decoded bytes: UTF-8 to check? */
		if (out->nseg == POL_PATH_MAX_SEGS) {
			*why = "too many path segments";
			return -1;
		}
		while (i < len && s[i] != '/') {
			unsigned char c = s[i];
			if (o >= sizeof out->buf) {
				*why = "path too long";
				return -1;
			}
			if (c == '%') {
				int hi, lo;
				if (i + 2 >= len || (hi = pol_hexval(s[i + 1])) < 0 ||
				    (lo = pol_hexval(s[i + 2])) < 0) {
					*why = "malformed percent-escape";
					return -1;
				}
				c = (unsigned char)(hi << 4 | lo);
				if (c < 0x20 || c == 0x7f) {
					*why = "escaped control byte in path";
					return -1;
				}
				if (c == '/' || c == '\\') {
					*why = "escaped / or \\ in a path segment";
					return -1;
				}
				out->buf[o++] = (char)c;
				high |= c;
				i += 3;
				continue;
			}
			if (!(path_class[c] & allowed)) {
				*why = "character not allowed in path";
				return -1;
			}
			out->buf[o++] = (char)c;
			i++;
		}
		size_t sl = o - start;
		if (sl == 0) {
			*why = "empty path segment";
			return -1;
		}
		if ((sl == 1 && out->buf[start] == '.') ||
		    (sl == 2 && out->buf[start] == '.' && out->buf[start + 1] == '.')) {
			*why = "dot segment in path";
			return -1;
		}
		if ((high & 0x80) && !pol_utf8_valid((const unsigned char *)out->buf + start, sl)) {
			*why = "path segment is not UTF-8";
			return -1;
		}
		out->seg[out->nseg].p = out->buf + start;
		out->seg[out->nseg].len = sl;
		out->nseg++;
		i++; /* skip the "/" (or step past the end) */
	}
	return 0;
}

int
pol_path_is(const struct pol_path *p, int i, const char *s)
{
	size_t n = strlen(s);
	return i < p->nseg && p->seg[i].len == n && !memcmp(p->seg[i].p, s, n);
}

long
pol_uri_encode(const char *s, size_t len, char *out, size_t outsz)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (is_uri_component(c)) {
			if (o + 1 > outsz)
				return -1;
			out[o++] = (char)c;
		} else {
			if (o + 3 > outsz)
				return -1;
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	return (long)o;
}

long
pol_path_canon(const struct pol_path *p, char *out, size_t outsz)
{
	return pol_path_canon_from(p, 0, out, outsz);
}

long
pol_path_canon_from(const struct pol_path *p, int first, char *out, size_t outsz)
{
	size_t o = 0;
	int i;

	if (p->nseg <= first) {
		if (outsz < 2)
			return -1;
		out[0] = '/';
		out[1] = 0;
		return 1;
	}
	for (i = first; i < p->nseg; i++) {
		long n;
		if (o + 1 >= outsz)
			return -1;
		out[o++] = '/';
		n = pol_uri_encode(p->seg[i].p, p->seg[i].len, out + o, outsz - o - 1);
		if (n < 0)
			return -1;
		o += (size_t)n;
	}
	out[o] = 0;
	return (long)o;
}
