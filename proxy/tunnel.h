/*
 * proxy/tunnel.h - a blind WebSocket tunnel: any upgrade that is not the realtime socket
 * (the app's own WebSockets) is relayed byte for byte both ways, under the watermarks.
 */
#ifndef SG_PROXY_TUNNEL_H
#define SG_PROXY_TUNNEL_H

#include "proxy/types.h"

/* Takes over C after a valid 101 (both sockets, the timer). May close C. */
void px_tunnel_start(struct px_conn *c);

#endif
