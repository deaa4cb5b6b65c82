/*
 * proxy/proxyproto.c - PROXY protocol v1 and v2 headers (contract in proxyproto.h).
 */
#include "proxy/proxyproto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v2sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};

/* One decimal port 0..65535 of at most 5 digits, without leading zeros. */
static int
port_of(const char *s, size_t n, uint16_t *out)
{
	unsigned long v = 0;
	size_t i;
	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

/* "PROXY TCP4|TCP6 SRC DST SPORT DPORT\r\n" or "PROXY UNKNOWN ...\r\n" (at most 107 bytes). */
static long
parse_v1(const uint8_t *p, size_t n, struct sockaddr_storage *src, const char **why)
{
	const char *s = (const char *)p, *eol = memchr(s, '\r', n < 107 ? n : 107);
	char f[6][48];
	size_t len, i, k = 0;
	const char *q;

	if (!eol) {
		if (n >= 107) {
			*why = "PROXY v1 header longer than 107 bytes";
			return -1;
		}
		return 0;
	}
	if ((size_t)(eol - s) + 1 >= n)
		return 0; /* the LF is still to come */
	if (eol[1] != '\n') {
		*why = "PROXY v1 header without CRLF";
		return -1;
	}
	len = (size_t)(eol - s) + 2;
	for (q = s; q < eol && k < 6; k++) {
		const char *e = memchr(q, ' ', (size_t)(eol - q));
		size_t fl = (size_t)((e ? e : eol) - q);
		if (fl == 0 || fl >= sizeof f[0])
			break;
		memcpy(f[k], q, fl);
		f[k][fl] = 0;
		q = e ? e + 1 : eol;
	}
	memset(src, 0, sizeof *src);
	if (k >= 2 && !strcmp(f[0], "PROXY") && !strcmp(f[1], "UNKNOWN")) {
		src->ss_family = AF_UNSPEC;
		return (long)len;
	}
	if (k != 6 || q != eol || strcmp(f[0], "PROXY") ||
	    (strcmp(f[1], "TCP4") && strcmp(f[1], "TCP6"))) {
		*why = "malformed PROXY v1 header";
		return -1;
	}
	{
		uint16_t sport, dport;
		int v6 = !strcmp(f[1], "TCP6");
		unsigned char a[16], b[16];
		for (i = 4; i < 6; i++)
			if (port_of(f[i], strlen(f[i]), i == 4 ? &sport : &dport)) {
				*why = "malformed PROXY v1 port";
				return -1;
			}
		if (inet_pton(v6 ? AF_INET6 : AF_INET, f[2], a) != 1 ||
		    inet_pton(v6 ? AF_INET6 : AF_INET, f[3], b) != 1) {
			*why = "malformed PROXY v1 address";
			return -1;
		}
		if (v6) {
			struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)src;
			s6->sin6_family = AF_INET6;
			memcpy(&s6->sin6_addr, a, 16);
			s6->sin6_port = htons(sport);
		} else {
			struct sockaddr_in *s4 = (struct sockaddr_in *)src;
			s4->sin_family = AF_INET;
			memcpy(&s4->sin_addr, a, 4);
			s4->sin_port = htons(sport);
		}
	}
	return (long)len;
}

/* The binary header: signature, version 2 and command, family and protocol, length, the
 * addresses, then TLVs (skipped). */
static long
parse_v2(const uint8_t *p, size_t n, struct sockaddr_storage *src, const char **why)
{
	size_t len;
	int cmd, fam;

	if (n < 16)
		return 0;
	if ((p[12] & 0xf0) != 0x20 || (p[12] & 0x0f) > 1) {
		*why = "PROXY v2 header with an unknown version or command";
		return -1;
	}
	cmd = p[12] & 0x0f;
	fam = p[13];
	len = 16 + ((size_t)p[14] << 8 | p[15]);
	if (len > PX_PP_MAX) {
		*why = "PROXY v2 header too long";
		return -1;
	}
	if (n < len)
		return 0;
	memset(src, 0, sizeof *src);
	src->ss_family = AF_UNSPEC;
	if (cmd == 0) /* LOCAL: the balancer's own connection (a health check) */
		return (long)len;
	if (fam == 0x11) { /* TCP over IPv4 */
		struct sockaddr_in *s4 = (struct sockaddr_in *)src;
		if (len < 16 + 12) {
			*why = "PROXY v2 header too short for its addresses";
			return -1;
		}
		s4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, p + 16, 4);
		memcpy(&s4->sin_port, p + 24, 2);
	} else if (fam == 0x21) { /* TCP over IPv6 */
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)src;
		if (len < 16 + 36) {
			*why = "PROXY v2 header too short for its addresses";
			return -1;
		}
		s6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, p + 16, 16);
		memcpy(&s6->sin6_port, p + 48, 2);
	}
	return (long)len;
}

long
px_proxyproto_parse(const uint8_t *p, size_t n, struct sockaddr_storage *src, const char **why)
{
	size_t k = n < 12 ? n : 12;

	if (n == 0)
		return 0;
	if (!memcmp(p, v2sig, k))
		return k < 12 ? 0 : parse_v2(p, n, src, why);
	k = n < 6 ? n : 6;
	if (!memcmp(p, "PROXY ", k))
		return k < 6 ? 0 : parse_v1(p, n, src, why);
	*why = "no PROXY protocol header (the listener expects one)";
	return -1;
}
