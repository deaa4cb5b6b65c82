/*
 * proxy/server.h - one worker: an event loop, its listeners, connections and upstream pool.
 */
#ifndef SG_PROXY_SERVER_H
#define SG_PROXY_SERVER_H

#include "policy/config.h"

struct px_server;

/*
 * Builds a worker for CFG (takes a reference): resolves the upstream, binds the listeners.
 * Returns NULL with a log line on failure.
 */
struct px_server *px_server_new(struct pol_config *cfg, const char *config_path);

/* Runs the loop until SIGTERM/SIGINT drained it. Returns the exit status. */
int px_server_run(struct px_server *srv);

void px_server_free(struct px_server *srv);

#endif
