/*
 * proxy/process.h - the process: the shared policy, N workers, signals (reload, shutdown),
 * the admin endpoint.
 */
#ifndef SG_PROXY_PROCESS_H
#define SG_PROXY_PROCESS_H

#include "policy/config.h"

struct px_process;

/* Builds the process for CFG read from PATH (takes a reference): resolves the upstream,
 * binds the listeners, starts the admin listener, then listens. NULL (logged) on failure. */
struct px_process *px_process_new(struct pol_config *cfg, const char *path);

/* Runs the workers until SIGTERM/SIGINT drained them. Returns the exit status. */
int px_process_run(struct px_process *p);

void px_process_free(struct px_process *p);

#endif
