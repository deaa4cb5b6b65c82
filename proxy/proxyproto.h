/*
 * proxy/proxyproto.h - the PROXY protocol header (HAProxy's proxy-protocol.txt, v1 and v2) a
 * load balancer sends first on a connection to say who the client is. A parser with no I/O:
 * it looks at the bytes received so far and says how many the header takes.
 */
#ifndef SG_PROXY_PROXYPROTO_H
#define SG_PROXY_PROXYPROTO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PX_PP_MAX 536 /* v2: 16 + 520 bytes at most we accept (v1: 107) */

/*
 * Reads a PROXY header at the start of P (N bytes). Returns the header's length and sets
 * *SRC (the client's address and port; ss_family AF_UNSPEC for v1 UNKNOWN and v2 LOCAL or a
 * family other than TCP over IPv4/IPv6: keep the connection's own peer), 0 if more bytes are
 * needed, or -1 with *WHY if this is not a valid header (or one longer than PX_PP_MAX).
 */
long px_proxyproto_parse(const uint8_t *p, size_t n, struct sockaddr_storage *src,
                         const char **why);

#endif
