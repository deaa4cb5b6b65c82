/*
 * proxy/http.h - the HTTP/1.1 relay, the first protocol handler of every client connection
 * (see http.c). After a valid 101 it hands the connection to ws.c or tunnel.c.
 */
#ifndef SG_PROXY_HTTP_H
#define SG_PROXY_HTTP_H

#include "proxy/types.h"

/* Takes over new connection C (px_conn_new): reads its first request head. May close C. */
void px_http_start(struct px_conn *c);

#endif
