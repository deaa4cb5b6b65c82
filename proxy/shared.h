/*
 * proxy/shared.h - what every thread of the process shares: the policy in force (the file's
 * config with the admin API's overrides applied), the TLS contexts built from that file, a
 * generation counter, and the connection count of each client address.
 *
 * A change (reload, admin PUT) builds a new config, swaps it under the lock and bumps the
 * generation, which workers compare with one atomic load per request or frame
 * (px_shared_gen) and then take with px_shared_take(). Configs and contexts are refcounted:
 * what a request started on stays alive until it ends.
 */
#ifndef SG_PROXY_SHARED_H
#define SG_PROXY_SHARED_H

#include <openssl/ssl.h>
#include <stdatomic.h>
#include <stdint.h>

#include "policy/config.h"

struct px_shared;

/* Each upstream's TLS client context (ctx[i] for the config's upstream i; NULL: plain). */
struct px_tls_clients {
	SSL_CTX *ctx[POL_UPSTREAM_MAX];
};

/* Takes a reference to CFG, to the listeners' context and to each upstream's
 * (TLS_CLIENT[i] for CFG's upstream i; POL_UPSTREAM_MAX entries, NULL where plain).
 * NULL on ENOMEM. */
struct px_shared *px_shared_new(struct pol_config *cfg, SSL_CTX *tls_server,
                                const struct px_tls_clients *tls_client);
void px_shared_free(struct px_shared *sh);

/* The generation (bumped by every change): workers keep the pointer and load it. */
const _Atomic unsigned long *px_shared_genp(const struct px_shared *sh);

/* A consistent view: new references to the policy and the contexts (NULL where none; the
 * upstreams' into TLS_CLIENT, POL_UPSTREAM_MAX entries), and the generation they belong to. */
void px_shared_take(struct px_shared *sh, struct pol_config **cfg, SSL_CTX **tls_server,
                    struct px_tls_clients *tls_client, unsigned long *gen);

/* A new reference to the policy in force, or to the file's own (without overrides). */
struct pol_config *px_shared_policy(struct px_shared *sh);
struct pol_config *px_shared_file_policy(struct px_shared *sh);

/* A reload: N (a reference taken) and its contexts replace the file's; an override is kept
 * where the file did not change that switch. */
void px_shared_reload(struct px_shared *sh, struct pol_config *n, SSL_CTX *tls_server,
                      const struct px_tls_clients *tls_client);

/* An admin change of APP's switches (a field < 0: unchanged). Returns 0, 404 for an app not
 * in the file, or 500 (ENOMEM). */
int px_shared_change_app(struct px_shared *sh, const char *app, const struct pol_app_change *ch);

/*
 * Refusal budgets (refusal_budget = N/WINDOW, refusal_ban), counted once for the process
 * (every worker): the state of (APP, USER) now (*RESET = 1 once, when an exhausted budget or
 * a ban has just ended: one log line), and a refusal counted for A's budget, which returns
 * EXHAUSTED (or BANNED with refusal_ban) exactly once, on the refusal that uses it up.
 */
enum px_budget { PX_BUDGET_OK, PX_BUDGET_EXHAUSTED, PX_BUDGET_BANNED };
enum px_budget px_shared_budget_state(struct px_shared *sh, const char *app, const char *user,
                                      uint64_t now_ms, int *reset);
enum px_budget px_shared_budget_refused(struct px_shared *sh, const struct pol_app *a,
                                        const char *user, uint64_t now_ms);

/*
 * The fleet's share of the budgets (proxy/fleet.c; only once px_shared_set_fleet() was
 * called): every refusal counted is also queued for the fleet's total, by (app, user) and
 * window of the wall clock (now / window_ms). px_shared_budget_pending() takes the queue
 * (*OUT to free with px_shared_budget_pushes_free(); returns how many, -1 on ENOMEM);
 * px_shared_budget_mark() applies the fleet's verdict (exhausted until UNTIL, banned until
 * BANNED_UNTIL, wall-clock ms) and returns what became true now (EXHAUSTED or BANNED: one log
 * line, as for a local exhaustion), else PX_BUDGET_OK.
 */
struct px_budget_push {
	char *key, *app, *user;
	uint32_t n, budget;
	uint64_t window, window_ms, ban_ms;
};
int px_shared_budget_pending(struct px_shared *sh, struct px_budget_push **out);
void px_shared_budget_pushes_free(struct px_budget_push *p, int n);
/* A push that could not be sent, queued again (added to what came since, same window). */
void px_shared_budget_requeue(struct px_shared *sh, const struct px_budget_push *p);
enum px_budget px_shared_budget_mark(struct px_shared *sh, const char *app, const char *user,
                                     uint64_t until, uint64_t banned_until, uint64_t now_ms);

/*
 * Cache invalidations seen by every worker: a change forwarded through one worker (LOCAL 1)
 * or announced by another instance of the fleet (LOCAL 0) drops fact KIND (a
 * px_lookup_kind) / ID of APP everywhere. Entries are numbered; a worker compares
 * px_shared_forget_seq() with the last it applied (one atomic load per lookup) and calls
 * px_shared_forgets() from there, which calls FN for each (only the local ones with
 * LOCAL_ONLY: what the fleet publishes) and returns the seq to resume from. Only the last
 * 1024 are kept: a reader further behind gets one FN call with APP NULL (drop everything).
 * APP NULL: every fact (an instance that was away from the fleet may have missed some).
 * With one worker and no fleet nothing else reads them: px_shared_forget() keeps nothing.
 */
void px_shared_forget(struct px_shared *sh, const char *app, int kind, const char *id,
                      size_t idlen, int local);
uint64_t px_shared_forget_seq(const struct px_shared *sh);
typedef void (*px_forget_fn)(void *arg, const char *app, int kind, const char *id, size_t idlen);
uint64_t px_shared_forgets(struct px_shared *sh, uint64_t since, int local_only, px_forget_fn fn,
                           void *arg);

/* The fleet client (set once, before the workers start): KICK(ARG) is called, from any
 * thread and outside every lock, when a local invalidation or budget refusal was queued. */
void px_shared_set_fleet(struct px_shared *sh, void (*kick)(void *), void *arg);

/* Reloads (SIGHUP) that took effect / that kept the previous policy: counted by the process,
 * read by /metrics. */
void px_shared_count_reload(struct px_shared *sh, int ok);
void px_shared_reloads(const struct px_shared *sh, unsigned long long *ok,
                       unsigned long long *failed);

/* The admin API's override of APP into *OUT (fields < 0: from the file). Returns 1 if there
 * is one, else 0. */
int px_shared_override(struct px_shared *sh, const char *app, struct pol_app_change *out);

/* Counts a connection from ADDR; returns 0, or -1 (not counted) if ADDR is at CAP (0: none). */
int px_shared_peer_add(struct px_shared *sh, const char *addr, unsigned cap);
void px_shared_peer_remove(struct px_shared *sh, const char *addr);

#endif
