/* Path canonicalisation: decode once, refuse what a backend could read differently. */
#include "policy/path.h"
#include "t.h"

static struct pol_path P;

static int
parse(const char *s, enum pol_path_charset cs)
{
	const char *why;
	return pol_path_parse(s, strlen(s), cs, &P, &why);
}

#define OK(s) CHECK(parse(s, POL_PATH_URI_COMPONENT) == 0)
#define BAD(s) CHECK(parse(s, POL_PATH_URI_COMPONENT) != 0)

int
main(void)
{
	char buf[POL_PATH_MAX_BYTES * 3];
	long n;

	OK("/");
	CHECK(P.nseg == 0);
	OK("/users/alice");
	CHECK(P.nseg == 2 && pol_path_is(&P, 0, "users") && pol_path_is(&P, 1, "alice"));
	OK("/users/a%20b");
	CHECK(pol_path_is(&P, 1, "a b"));
	OK("/users/%C3%A9");
	CHECK(pol_path_is(&P, 1, "\xc3\xa9"));
	OK("/users/%2e%2e.x");   /* "...x" is a name, not a dot segment */
	CHECK(pol_path_is(&P, 1, "...x"));
	OK("/users/it's(ok)!~*_-.");

	BAD("");
	BAD("users");
	BAD("//users");
	BAD("/users/");
	BAD("/users//a");
	BAD("/users/.");
	BAD("/users/..");
	BAD("/users/%2e");
	BAD("/users/%2E%2e");
	BAD("/users/a%2Fb");
	BAD("/users/a%2fb");
	BAD("/users/a%5cb");
	BAD("/users/a%00");
	BAD("/users/a%0a");
	BAD("/users/a%7f");
	BAD("/users/a%");
	BAD("/users/a%2");
	BAD("/users/a%zz");
	BAD("/users/%C3");       /* decodes to invalid UTF-8 */
	BAD("/users/%ED%A0%80"); /* encoded surrogate */
	BAD("/users/a b");
	BAD("/users/a?b");
	BAD("/users/a#b");
	BAD("/users/a@b");       /* encodeURIComponent would have escaped it */
	BAD("/users/\xc3\xa9");  /* raw non-ASCII */
	CHECK(parse("/users/a@b:c", POL_PATH_PCHAR) == 0 && pol_path_is(&P, 1, "a@b:c"));
	CHECK(parse("/users/a b", POL_PATH_PCHAR) != 0);
	BAD("/a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q"); /* 17 segments */

	/* canon(canon(x)) == canon(x), and the canonical form re-parses to the same segments */
	{
		const char *cases[] = {"/users/a%20b", "/users/%c3%a9", "/x/it's", "/conversations/c1/participants/%40me", "/"};
		size_t i;
		for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
			char c1[512], c2[512];
			CHECK(parse(cases[i], POL_PATH_URI_COMPONENT) == 0);
			CHECK(pol_path_canon(&P, c1, sizeof c1) > 0);
			CHECK(parse(c1, POL_PATH_URI_COMPONENT) == 0);
			CHECK(pol_path_canon(&P, c2, sizeof c2) > 0);
			CHECK_STR(c1, c2);
		}
		parse("/users/%40me", POL_PATH_URI_COMPONENT);
		pol_path_canon(&P, buf, sizeof buf);
		CHECK_STR(buf, "/users/%40me");
	}
	n = pol_uri_encode("a b/\xc3\xa9", 6, buf, sizeof buf);
	CHECK(n == 14);
	buf[n] = 0;
	CHECK_STR(buf, "a%20b%2F%C3%A9");
	CHECK(pol_uri_encode("ab", 2, buf, 1) == -1);
	return t_done("test_path");
}
