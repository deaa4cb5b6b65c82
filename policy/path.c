/*
 * policy/path.c - path canonicalisation (contract in path.h).
 */
#include "policy/path.h"

#include "policy/text.h"

#include <string.h>

/* Characters encodeURIComponent leaves as they are (ECMA-262 uriUnreserved). */
static int
is_uri_component(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.' || c == '!' || c == '~' || c == '*' ||
	       c == '\'' || c == '(' || c == ')';
}

/* RFC 3986 pchar, less "%" (escapes are handled apart). */
static int
is_pchar(unsigned char c)
{
	return is_uri_component(c) || c == '$' || c == '&' || c == '+' || c == ',' || c == ';' ||
	       c == '=' || c == ':' || c == '@';
}

int
pol_path_parse(const char *path, size_t len, enum pol_path_charset cs, struct pol_path *out,
               const char **why)
{
	const unsigned char *s = (const unsigned char *)path;
	size_t i = 1, o = 0;

	out->nseg = 0;
	if (len == 0 || s[0] != '/') {
		*why = "path must start with /";
		return -1;
	}
	if (len == 1)
		return 0;
	while (i <= len) {
		size_t start = o;
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
				i += 3;
				continue;
			}
			if (!(cs == POL_PATH_PCHAR ? is_pchar(c) : is_uri_component(c))) {
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
		if (!pol_utf8_valid((const unsigned char *)out->buf + start, sl)) {
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
	size_t o = 0;
	int i;

	if (p->nseg == 0) {
		if (outsz < 2)
			return -1;
		out[0] = '/';
		out[1] = 0;
		return 1;
	}
	for (i = 0; i < p->nseg; i++) {
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
