/*
 * proxy/server.h - the process: the shared policy, N worker loops, signals, admin.
 */
#ifndef SG_PROXY_SERVER_H
#define SG_PROXY_SERVER_H

#include "policy/config.h"

struct px_main;

/* Builds the process for CFG read from PATH (takes a reference): resolves the upstream,
 * binds every worker's listeners and the admin listener. NULL with a log line on failure. */
struct px_main *px_main_new(struct pol_config *cfg, const char *path);

/* Runs the workers until SIGTERM/SIGINT drained them. Returns the exit status. */
int px_main_run(struct px_main *m);

void px_main_free(struct px_main *m);

#endif
