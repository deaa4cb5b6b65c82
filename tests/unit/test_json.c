/* The strict JSON scanner: what it accepts, what it refuses, and that it never over-reads. */
#include "guard.h"
#include "policy/json.h"
#include "policy/text.h"
#include "t.h"

#include <stdint.h>
#include <string.h>

static struct pol_json *J;

static int
ok(const char *s)
{
	struct guard g;
	const char *why;
	char *p = guard_copy(&g, s, strlen(s));
	int n = pol_json_parse(J, p, strlen(s), &why);
	guard_free(&g);
	return n;
}

#define ACCEPT(s) do { int n_ = ok(s); if (n_ < 0) fprintf(stderr, "refused: %s\n", s); CHECK(n_ >= 0); } while (0)
#define REFUSE(s) do { int n_ = ok(s); if (n_ >= 0) fprintf(stderr, "accepted: %s\n", s); CHECK(n_ < 0); } while (0)

int
main(void)
{
	const char *why;
	J = pol_json_new(1000, 16);

	ACCEPT("[]");
	ACCEPT(" {} ");
	ACCEPT("[0,-1,1.5,-0.0e+10,1E5,\"\",true,false,null]");
	ACCEPT("{\"a\":{\"b\":[1,{\"c\":\"d\"}]},\"e\":\"\\u00e9\\n\\\"\"}");
	ACCEPT("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
	ACCEPT("\"\\ud83d\\ude00\"");
	ACCEPT("{\"a\":1,\"A\":2}");
	ACCEPT("12345678901234567890123456789");

	REFUSE("");
	REFUSE(" ");
	REFUSE("[1,]");
	REFUSE("{\"a\":1,}");
	REFUSE("[1] [2]");
	REFUSE("[1]x");
	REFUSE("01");
	REFUSE("+1");
	REFUSE("1.");
	REFUSE(".5");
	REFUSE("1e");
	REFUSE("NaN");
	REFUSE("Infinity");
	REFUSE("tru");
	REFUSE("nul");
	REFUSE("'a'");
	REFUSE("{a:1}");
	REFUSE("\"\\x41\"");
	REFUSE("\"\\u12\"");
	REFUSE("\"a\tb\"");        /* raw control */
	REFUSE("\"\xc3\"");         /* truncated UTF-8 */
	REFUSE("\"\xc0\xaf\"");     /* overlong */
	REFUSE("\"\xed\xa0\x80\""); /* encoded surrogate */
	REFUSE("\"\xf4\x90\x80\x80\""); /* > U+10FFFF */
	REFUSE("\"\xff\"");
	REFUSE("[\xc3\xa9]");       /* non-ASCII outside a string */
	REFUSE("[1,2");
	REFUSE("{\"a\"}");
	REFUSE("{\"a\" 1}");
	REFUSE("\v1");              /* not JSON whitespace */

	/* duplicate keys, byte-exact after unescaping, in any object */
	REFUSE("{\"a\":1,\"a\":2}");
	REFUSE("{\"a\":1,\"\\u0061\":2}");
	REFUSE("{\"x\":{\"k\":1,\"k\":1}}");
	REFUSE("[{\"\\/\":1,\"/\":2}]");
	REFUSE("{\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":2}");
	ACCEPT("{\"a\":{\"a\":1}}");
	/* many keys take the hash path */
	{
		char buf[4096];
		size_t o = 0;
		int i;
		o += (size_t)sprintf(buf + o, "{");
		for (i = 0; i < 50; i++)
			o += (size_t)sprintf(buf + o, "%s\"k%d\":%d", i ? "," : "", i, i);
		sprintf(buf + o, "}");
		ACCEPT(buf);
		sprintf(buf + o, ",\"k\\u0033\":0}"); /* "k3" again */
		REFUSE(buf);
	}
	/* keys with control characters or lone surrogates */
	REFUSE("{\"a\\u0000\":1}");
	REFUSE("{\"a\\n\":1}");
	REFUSE("{\"\\ud800\":1}");
	/* values may hold them; the flags tell */
	CHECK(ok("\"\\u0000\"") == 1 && (pol_json_tokens(J)[0].flags & POL_JF_CTRL));
	CHECK(ok("\"\\udc00x\"") == 1 && (pol_json_tokens(J)[0].flags & POL_JF_LONE_SURR));

	/* caps */
	REFUSE("[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]");
	{
		struct pol_json *small = pol_json_new(4, 4);
		CHECK(pol_json_parse(small, "[1,2,3]", 7, &why) == 4);
		CHECK(pol_json_parse(small, "[1,2,3,4]", 9, &why) < 0 && !strcmp(why, "too many values"));
		pol_json_free(small);
	}

	/* token structure */
	{
		const char *s = "[7,\"GET\",{\"a\":[1,2]},\"z\"]";
		const struct pol_jtok *t;
		CHECK(pol_json_parse(J, s, strlen(s), &why) == 9);
		t = pol_json_tokens(J);
		CHECK(t[0].type == POL_J_ARRAY && t[0].size == 4 && t[0].next == 9);
		CHECK(t[3].type == POL_J_OBJECT && t[3].size == 1 && t[3].next == 8);
		CHECK(t[8].type == POL_J_STRING && pol_json_str_eq(s, &t[8], "z", 1));
		CHECK(pol_json_obj_get(s, t, 3, "a") == 5);
		CHECK(pol_json_obj_get(s, t, 3, "b") == -1);
	}

	/* every prefix of a valid text is refused, without reading past its end */
	{
		const char *s = "[12,\"PUT\",\"/users/a%20b\",{\"name\":\"\\u00e9\",\"n\":-1.5e3},{}]";
		size_t i;
		int bad = 0;
		for (i = 0; i < strlen(s); i++) {
			struct guard g;
			char *p = guard_copy(&g, s, i);
			if (pol_json_parse(J, p, i, &why) >= 0)
				bad++;
			guard_free(&g);
		}
		CHECK(bad == 0);
		CHECK(ok(s) > 0);
	}
	/* the shared UTF-8 rules (policy/text.c), at every boundary of Table 3-7 */
	{
		static const struct {
			const char *s;
			size_t n;
			int ok;
		} u[] = {
			{"", 0, 1}, {"abc", 3, 1}, {"\x7f", 1, 1}, {"\xc2\x80", 2, 1}, {"\xdf\xbf", 2, 1},
			{"\xe0\xa0\x80", 3, 1}, {"\xed\x9f\xbf", 3, 1}, {"\xee\x80\x80", 3, 1},
			{"\xf0\x90\x80\x80", 4, 1}, {"\xf4\x8f\xbf\xbf", 4, 1},
			{"\x80", 1, 0}, {"\xc0\x80", 2, 0}, {"\xc1\xbf", 2, 0}, {"\xe0\x9f\xbf", 3, 0},
			{"\xed\xa0\x80", 3, 0}, {"\xf0\x8f\xbf\xbf", 4, 0}, {"\xf4\x90\x80\x80", 4, 0},
			{"\xf5\x80\x80\x80", 4, 0}, {"\xff", 1, 0}, {"a\xe2\x82", 3, 0}, {"\xc2", 1, 0},
		};
		size_t i;
		for (i = 0; i < sizeof u / sizeof u[0]; i++)
			if (pol_utf8_valid((const unsigned char *)u[i].s, u[i].n) != u[i].ok) {
				fprintf(stderr, "utf8 case %zu\n", i);
				t_fail++;
			} else {
				t_pass++;
			}
		CHECK(pol_hexval('f') == 15 && pol_hexval('A') == 10 && pol_hexval('g') == -1);
	}
	{
		/* strings are scanned 8 bytes at a time: a special byte at every offset of the
		 * word, and the string ending at every offset, decide as byte by byte would */
		char buf[64];
		int at, len;
		for (len = 0; len <= 24; len++)
			for (at = 0; at < len; at++) {
				const struct pol_jtok *t;
				memset(buf, 0, sizeof buf);
				buf[0] = '"';
				memset(buf + 1, 'a', (size_t)len);
				buf[1 + len] = '"';
				CHECK(ok(buf) == 1 && pol_json_tokens(J)[0].end == (uint32_t)(1 + len));
				buf[1 + at] = 0x01; /* a raw control byte */
				REFUSE(buf);
				buf[1 + at] = (char)0x80; /* a stray continuation byte */
				REFUSE(buf);
				buf[1 + at] = '"'; /* the string ends early: the rest is trailing data */
				if (at < len - 1)
					REFUSE(buf);
				buf[1 + at] = '\\'; /* an escape: "\\a" is not one; "\\n" is */
				buf[2 + at] = at + 1 < len ? 'n' : '"';
				if (at + 1 < len) {
					CHECK(ok(buf) == 1);
					t = pol_json_tokens(J);
					CHECK((t[0].flags & POL_JF_ESCAPED) && t[0].end == (uint32_t)(1 + len));
				} else {
					REFUSE(buf); /* the closing quote was escaped */
				}
				memset(buf + 1, 'a', (size_t)len);
				buf[1 + len] = '"';
				if (at + 1 < len) { /* a 2-byte UTF-8 character */
					buf[1 + at] = (char)0xc3;
					buf[2 + at] = (char)0xa9;
					CHECK(ok(buf) == 1 && pol_json_tokens(J)[0].end == (uint32_t)(1 + len));
				}
			}
	}
	/* the escaper: what the scanner reads back is what went in (invalid UTF-8 as U+FFFD) */
	{
		static const struct {
			const char *in, *want;
		} e[] = {
			{"", ""},
			{"plain ascii /", "plain ascii /"},
			{"a\"b\\c", "a\\\"b\\\\c"},
			{"\n\t\r\b\f\x01\x1f\x7f", "\\u000a\\u0009\\u000d\\u0008\\u000c\\u0001\\u001f\\u007f"},
			{"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"},
			{"x\xff" "y\xc3", "x\\ufffdy\\ufffd"},
			{"\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd"}, /* an encoded surrogate: three bad bytes */
			{"\xc3\xa9\xc3", "\xc3\xa9\\ufffd"},
		};
		char out[256], q[260], back[256];
		size_t i, c;
		for (i = 0; i < sizeof e / sizeof e[0]; i++) {
			size_t n = strlen(e[i].in), wl = strlen(e[i].want);
			long r = pol_json_escape(out, sizeof out, e[i].in, n);
			if (r != (long)wl || memcmp(out, e[i].want, wl)) {
				fprintf(stderr, "escape case %zu: %.*s\n", i, (int)(r < 0 ? 0 : r), out);
				t_fail++;
				continue;
			}
			t_pass++;
			for (c = 0; c < wl; c++) { /* every smaller CAP: -1, nothing written past it */
				memset(out, '#', sizeof out);
				if (pol_json_escape(out, c, e[i].in, n) != -1 || out[c] != '#')
					break;
			}
			CHECK(c == wl);
			q[0] = '"';
			memcpy(q + 1, e[i].want, wl);
			q[1 + wl] = '"';
			CHECK(pol_json_parse(J, q, wl + 2, &why) == 1);
			CHECK(pol_json_str_decode(q, &pol_json_tokens(J)[0], back, sizeof back) >= 0);
			if (pol_utf8_valid((const unsigned char *)e[i].in, n))
				CHECK(pol_json_str_eq(q, &pol_json_tokens(J)[0], e[i].in, n));
		}
		/* every byte value alone, and all of them in a row: within 6 bytes per byte, and a
		 * string the scanner accepts */
		for (c = 0; c < 256; c++) {
			char b = (char)c;
			long r = pol_json_escape(out + 1, 6, &b, 1);
			out[0] = '"';
			CHECK(r > 0 && r <= 6);
			out[1 + r] = '"';
			CHECK(r > 0 && pol_json_parse(J, out, (size_t)r + 2, &why) == 1);
		}
		{
			char all[256], big[2 + 6 * 256];
			long r;
			for (c = 0; c < 256; c++)
				all[c] = (char)c;
			r = pol_json_escape(big + 1, 6 * 256, all, 256);
			CHECK(r > 0);
			big[0] = '"';
			big[r > 0 ? 1 + r : 1] = '"';
			CHECK(r > 0 && pol_json_parse(J, big, (size_t)r + 2, &why) == 1);
		}
	}
	pol_json_free(J);
	return t_done("test_json");
}
