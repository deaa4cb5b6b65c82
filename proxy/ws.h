/*
 * proxy/ws.h - the realtime socket's WebSocket relay (see ws.c): every client message
 * classified and decided (police.c), backend frames relayed with syncgate's answers put in
 * between messages.
 */
#ifndef SG_PROXY_WS_H
#define SG_PROXY_WS_H

#include "proxy/types.h"

/*
 * Takes over C after a valid 101 (both sockets, the timer): the realtime socket of app APP
 * (copied) and user USER (decoded; taken over, freed with the relay). May close C.
 */
void px_ws_start(struct px_conn *c, const char *app, char *user);

#endif
