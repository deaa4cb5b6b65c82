/*
 * proxy/admin.h - the admin listener ([admin] listen), on the main thread, apart from traffic.
 *
 *   GET /healthz        200 while the process runs
 *   GET /readyz         200 if the backend accepts a connection now, else 503
 *   GET /metrics        Prometheus text format (decision counts lag by at most 250 ms)
 *   GET /apps           the effective switches of every configured app and [app:*]
 *   PUT /apps/{appId}   {"user_sync": "on|off", "conversation_sync": "on|off",
 *                        "mode": "enforce|report"}: applies to the next call on every socket
 *
 * With a token_file, every request needs "Authorization: Bearer <token>" (else 401).
 * One request per connection; bodies up to 64 KiB.
 */
#ifndef SG_PROXY_ADMIN_H
#define SG_PROXY_ADMIN_H

#include "policy/config.h"

struct px_main;
struct px_admin;

struct px_admin *px_admin_new(struct px_main *m, const struct pol_config *cfg);
void px_admin_free(struct px_admin *a);

#endif
