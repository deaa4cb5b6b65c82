/*
 * tests/unit/test_proxyproto.c - the PROXY protocol header parser: v1 and v2, every prefix of
 * a valid header asks for more (fed one byte at a time), malformed headers are refused, and
 * the bytes after the header are never claimed.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "proxy/proxyproto.h"
#include "t.h"

/* Parses H (N bytes) whole, and checks that every shorter prefix says "need more". */
static long
whole(const uint8_t *h, size_t n, struct sockaddr_storage *src)
{
	const char *why = NULL;
	size_t k;
	for (k = 0; k < n; k++) {
		long r = px_proxyproto_parse(h, k, src, &why);
		if (r != 0) {
			fprintf(stderr, "prefix %zu of %zu: %ld (%s)\n", k, n, r, why ? why : "");
			CHECK(r == 0);
			break;
		}
	}
	return px_proxyproto_parse(h, n, src, &why);
}

static const char *
addr_of(const struct sockaddr_storage *s, char *buf, size_t n, int *port)
{
	if (s->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)s;
		*port = ntohs(a->sin_port);
		return inet_ntop(AF_INET, &a->sin_addr, buf, (socklen_t)n);
	}
	if (s->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)s;
		*port = ntohs(a->sin6_port);
		return inet_ntop(AF_INET6, &a->sin6_addr, buf, (socklen_t)n);
	}
	*port = -1;
	return "unspec";
}

static void
test_v1(void)
{
	struct sockaddr_storage src;
	char buf[64];
	int port;
	const char *why = NULL;
	const char *h4 = "PROXY TCP4 203.0.113.5 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
	const char *h6 = "PROXY TCP6 2001:db8::7 2001:db8::1 6000 80\r\n";
	const char *hu = "PROXY UNKNOWN\r\n";
	long hl = (long)(strstr(h4, "\r\n") - h4) + 2;

	CHECK(whole((const uint8_t *)h4, (size_t)hl, &src) == hl);
	CHECK(px_proxyproto_parse((const uint8_t *)h4, strlen(h4), &src, &why) == hl); /* the request is not taken */
	CHECK_STR(addr_of(&src, buf, sizeof buf, &port), "203.0.113.5");
	CHECK(port == 51234);
	CHECK(whole((const uint8_t *)h6, strlen(h6), &src) == (long)strlen(h6));
	CHECK_STR(addr_of(&src, buf, sizeof buf, &port), "2001:db8::7");
	CHECK(whole((const uint8_t *)hu, strlen(hu), &src) == (long)strlen(hu));
	CHECK(src.ss_family == AF_UNSPEC);
	{
		static const char *const bad[] = {
			"GET / HTTP/1.1\r\n\r\n", "PROXY TCP4 203.0.113.5 10.0.0.1 51234\r\n",
			"PROXY TCP4 203.0.113.500 10.0.0.1 1 2\r\n", "PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n",
			"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
			"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
			"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
		};
		size_t i;
		for (i = 0; i < sizeof bad / sizeof *bad; i++) {
			long r = px_proxyproto_parse((const uint8_t *)bad[i], strlen(bad[i]), &src, &why);
			if (r != -1)
				fprintf(stderr, "accepted: %s\n", bad[i]);
			CHECK(r == -1);
		}
	}
	{
		/* no CRLF within 107 bytes */
		uint8_t l[200];
		memcpy(l, "PROXY TCP4 ", 11);
		memset(l + 11, '1', sizeof l - 11);
		CHECK(px_proxyproto_parse(l, sizeof l, &src, &why) == -1);
	}
}

static void
test_v2(void)
{
	static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
	struct sockaddr_storage src;
	uint8_t h[64 + 600];
	char buf[64];
	int port;
	const char *why = NULL;

	/* PROXY, TCP over IPv4, 12 address bytes and a 5-byte TLV after them */
	memcpy(h, sig, 12);
	h[12] = 0x21;
	h[13] = 0x11;
	h[14] = 0;
	h[15] = 12 + 5;
	inet_pton(AF_INET, "198.51.100.9", h + 16);
	inet_pton(AF_INET, "10.0.0.1", h + 20);
	h[24] = 0x1f;
	h[25] = 0x90; /* 8080 */
	h[26] = 0;
	h[27] = 80;
	memcpy(h + 28, "\x04\x00\x02xy", 5);
	memcpy(h + 33, "GET", 3);
	CHECK(whole(h, 33, &src) == 33);
	CHECK(px_proxyproto_parse(h, 36, &src, &why) == 33);
	CHECK_STR(addr_of(&src, buf, sizeof buf, &port), "198.51.100.9");
	CHECK(port == 8080);
	/* IPv6 */
	h[13] = 0x21;
	h[15] = 36;
	inet_pton(AF_INET6, "2001:db8::42", h + 16);
	inet_pton(AF_INET6, "2001:db8::1", h + 32);
	h[48] = 0;
	h[49] = 99;
	CHECK(whole(h, 52, &src) == 52);
	CHECK_STR(addr_of(&src, buf, sizeof buf, &port), "2001:db8::42");
	CHECK(port == 99);
	/* LOCAL (a health check): the connection's own peer */
	h[12] = 0x20;
	CHECK(whole(h, 52, &src) == 52);
	CHECK(src.ss_family == AF_UNSPEC);
	/* too short for its family, bad version, bad command, too long */
	h[12] = 0x21;
	h[13] = 0x11;
	h[15] = 4;
	CHECK(px_proxyproto_parse(h, 20, &src, &why) == -1);
	h[15] = 12;
	h[12] = 0x11;
	CHECK(px_proxyproto_parse(h, 28, &src, &why) == -1);
	h[12] = 0x22;
	CHECK(px_proxyproto_parse(h, 28, &src, &why) == -1);
	h[12] = 0x21;
	h[14] = 0x02;
	h[15] = 0x10; /* 528 + 16 > PX_PP_MAX */
	CHECK(px_proxyproto_parse(h, 16, &src, &why) == -1);
}

int
main(void)
{
	test_v1();
	test_v2();
	return t_done("proxyproto");
}
