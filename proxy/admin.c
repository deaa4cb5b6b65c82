/*
 * proxy/admin.c - the admin endpoint (contract in admin.h).
 */
#include "proxy/admin.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/listener.h>
#include <llhttp.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proxy/fleet.h"
#include "proxy/io.h"
#include "proxy/log.h"
#include "proxy/shared.h"
#include "proxy/stats.h"
#include "proxy/tls.h"
#include "proxy/console.h"
#include "proxy/upstream.h"

#define ADMIN_MAX_REQUEST (64 * 1024)

struct px_admin {
	struct px_admin_env e;
	struct evconnlistener *listener;
	struct admin_conn *conns;
};

struct admin_conn;

/* PREFIX then MS (wall clock) as 2026-12-06T10:00:00Z. */
static void
iso_time(uint64_t ms, const char *prefix, char *buf, size_t n)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	char d[32];
	gmtime_r(&t, &tm);
	strftime(d, sizeof d, "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(buf, n, "%s%s", prefix, d);
}

/* /readyz: one connection attempt per upstream. */
struct probe {
	struct admin_conn *c;
	struct px_io *io;
	int done;
	char why[200];       /* "" when it connected */
};

struct admin_conn {
	struct px_admin *a;
	struct admin_conn *prev, *next;
	struct px_io *io;
	struct probe probes[POL_UPSTREAM_MAX];
	int nprobes, pending;
	llhttp_t parser;
	llhttp_settings_t settings;
	char method[8];
	char url[512];
	size_t url_len;
	char auth[512];
	size_t auth_len;
	int in_auth;         /* the header being read is Authorization */
	char field[32];
	size_t field_len;
	struct evbuffer *body;
	int complete, replied;
	char peer[64];
	struct pol_config *cfg;  /* the policy in force when the request was complete */
	struct px_fleet_wait *fleet_wait; /* PUT /apps: the fleet's answer, awaited */
	char put_app[POL_APPID_MAX + 1], put_what[256], put_was[128];
};

static void
conn_free(struct admin_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		c->a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	for (int i = 0; i < c->nprobes; i++)
		if (c->probes[i].io)
			px_io_free(c->probes[i].io);
	px_fleet_cancel(c->fleet_wait);
	px_io_free(c->io);
	evbuffer_free(c->body);
	pol_config_unref(c->cfg);
	free(c);
}

static void
admin_writecb(struct px_io *io, void *arg)
{
	struct admin_conn *c = arg;
	(void)io;
	if (c->replied && px_io_pending(c->io) == 0)
		conn_free(c);
}

/* The answer is in C's output: nothing more is read, the connection goes once it is sent. */
static void
replied(struct admin_conn *c)
{
	c->replied = 1;
	px_io_read(c->io, 0);
	px_io_set_low_water(c->io, 0);
	px_io_flush(c->io);
	if (evbuffer_get_length(px_io_output(c->io)) == 0)
		conn_free(c);
}

static void
reply(struct admin_conn *c, int status, const char *type, const char *body, size_t len)
{
	struct evbuffer *out = px_io_output(c->io);
	const char *text = status == 200 ? "OK" : status == 400 ? "Bad Request" :
	                   status == 401 ? "Unauthorized" : status == 404 ? "Not Found" :
	                   status == 405 ? "Method Not Allowed" : status == 413 ? "Content Too Large" :
	                   status == 503 ? "Service Unavailable" : "Error";
	evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                         "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
	                    status, text, type, len);
	evbuffer_add(out, body, len);
	replied(c);
}

static void
reply_json(struct admin_conn *c, int status, cJSON *j)
{
	char *s = cJSON_PrintUnformatted(j);
	if (s) {
		size_t n = strlen(s);
		char *b = malloc(n + 2);
		if (b) {
			memcpy(b, s, n);
			b[n] = '\n';
			reply(c, status, "application/json", b, n + 1);
			free(b);
		}
		cJSON_free(s);
	}
	cJSON_Delete(j);
}

static void
reply_error(struct admin_conn *c, int status, const char *why)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "error", why);
	reply_json(c, status, j);
}

/* ---- /metrics ---- */

#define SUM(field) PX_STATS_SUM(e->stats, e->nworkers, field)

/* A Prometheus histogram NAME from the workers' buckets at offset BUCKETS (PX_LATENCY_BUCKETS
 * + 1 counters, microseconds summed at SUM) of struct px_counters. */
static void
histogram(struct evbuffer *b, const struct px_admin_env *e, const char *name, const char *help,
          size_t buckets, size_t sum)
{
	unsigned long long cum = 0;
	int i;

	evbuffer_add_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
	for (i = 0; i <= PX_LATENCY_BUCKETS; i++) {
		cum += px_stats_sum(e->stats, e->nworkers, buckets + (size_t)i * sizeof(unsigned long long));
		if (i < PX_LATENCY_BUCKETS)
			evbuffer_add_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, px_latency_bounds[i], cum);
	}
	evbuffer_add_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, cum, name,
	                    (double)px_stats_sum(e->stats, e->nworkers, sum) / 1e6, name, cum);
}

static void
metrics(struct admin_conn *c)
{
	const struct px_admin_env *e = &c->a->e;
	struct evbuffer *b = evbuffer_new();
	int i;

	if (!b) {
		reply_error(c, 500, "out of memory");
		return;
	}
#define COUNTER(name, help, value) \
	evbuffer_add_printf(b, "# HELP " name " " help "\n# TYPE " name " counter\n" name " %llu\n", (value))
#define GAUGE(name, help, value) \
	evbuffer_add_printf(b, "# HELP " name " " help "\n# TYPE " name " gauge\n" name " %llu\n", (value))
	COUNTER("syncgate_http_requests_total", "HTTP requests read (including upgrades)", SUM(http_requests));
	COUNTER("syncgate_http_refused_total", "HTTP requests refused by policy", SUM(http_refused));
	COUNTER("syncgate_http_bad_requests_total", "HTTP requests refused as malformed or over a limit", SUM(http_bad));
	COUNTER("syncgate_upstream_errors_total", "backend failures (refused, reset, timeout, malformed)", SUM(upstream_errors));
	evbuffer_add_printf(b, "# HELP syncgate_upstream_requests_total requests sent to each upstream\n"
	                       "# TYPE syncgate_upstream_requests_total counter\n");
	for (i = 0; i < c->cfg->nupstreams; i++)
		evbuffer_add_printf(b, "syncgate_upstream_requests_total{upstream=\"%s\"} %llu\n",
		                    c->cfg->upstreams[i].name, SUM(upstream_requests[i]));
	evbuffer_add_printf(b, "# HELP syncgate_upstream_failures_total requests an upstream failed "
	                       "(unreachable, TLS, reset, timeout, malformed)\n"
	                       "# TYPE syncgate_upstream_failures_total counter\n");
	for (i = 0; i < c->cfg->nupstreams; i++)
		evbuffer_add_printf(b, "syncgate_upstream_failures_total{upstream=\"%s\"} %llu\n",
		                    c->cfg->upstreams[i].name, SUM(upstream_failures[i]));
	COUNTER("syncgate_refusal_budgets_exhausted_total", "users whose refusal budget was used up (report mode: would have been)", SUM(budgets_exhausted));
	COUNTER("syncgate_refusal_bans_total", "users banned for a used-up refusal budget (refusal_ban)", SUM(bans));
	GAUGE("syncgate_connections_open", "client connections open", SUM(connections_open));
	COUNTER("syncgate_tls_handshake_failures_total", "client TLS handshakes refused, failed or timed out", SUM(tls_handshake_failures));
	COUNTER("syncgate_ws_opened_total", "WebSocket relays opened", SUM(ws_opened));
	GAUGE("syncgate_ws_open", "WebSocket relays open", SUM(ws_opened) - SUM(ws_closed));
	evbuffer_add_printf(b, "# HELP syncgate_ws_frames_total WebSocket frames relayed or answered\n"
	                       "# TYPE syncgate_ws_frames_total counter\n"
	                       "syncgate_ws_frames_total{direction=\"client\"} %llu\n"
	                       "syncgate_ws_frames_total{direction=\"backend\"} %llu\n",
	                    SUM(ws_frames_in), SUM(ws_frames_out));
	COUNTER("syncgate_ws_refused_total", "realtime calls (or batch actions) answered by syncgate", SUM(ws_refused));
	COUNTER("syncgate_lookups_total", "existence lookups sent to the backend", SUM(lookups));
	COUNTER("syncgate_lookup_cache_hits_total", "facts answered from the cache", SUM(lookup_cache_hits));
	GAUGE("syncgate_lookup_cache_facts", "facts cached", SUM(lookup_cache_facts));
	GAUGE("syncgate_lookup_cache_bytes", "memory held by cached facts (keys and participant ids)",
	      SUM(lookup_cache_bytes));
	COUNTER("syncgate_lookup_errors_total", "lookups that failed (the call failed closed)", SUM(lookup_errors));
	evbuffer_add_printf(b, "# HELP syncgate_decisions_total policy decisions by app, operation and verdict\n"
	                       "# TYPE syncgate_decisions_total counter\n");
	{
		struct px_decision_count *all = NULL;
		int n = px_stats_decisions(e->stats, e->nworkers, &all);
		for (i = 0; i < n; i++) {
			char esc[POL_APPID_MAX * 2 + 8];
			px_json_escape(esc, sizeof esc, all[i].app, strlen(all[i].app));
			evbuffer_add_printf(b, "syncgate_decisions_total{app=\"%s\",op=\"%s\",verdict=\"%s\"} %llu\n",
			                    esc, pol_op_to_str((enum pol_op)all[i].op),
			                    px_verdict_to_str((enum px_verdict)all[i].verdict),
			                    all[i].n);
		}
		free(all);
	}
	histogram(b, e, "syncgate_http_request_duration_seconds", "time from a request's head to its answer",
	          offsetof(struct px_counters, latency_bucket), offsetof(struct px_counters, latency_sum_us));
	histogram(b, e, "syncgate_upstream_response_seconds",
	          "time from asking the upstream (a pooled or new connection) to its response head",
	          offsetof(struct px_counters, upstream_bucket), offsetof(struct px_counters, upstream_sum_us));
	histogram(b, e, "syncgate_lookup_duration_seconds", "time an existence lookup took (the backend's answer, or its failure)",
	          offsetof(struct px_counters, lookup_bucket), offsetof(struct px_counters, lookup_sum_us));
	{
		/* the listeners' certificate: alert well before it expires */
		struct pol_config *cfg;
		SSL_CTX *sctx;
		struct px_tls_clients cctx;
		unsigned long gen;
		int u;
		px_shared_take(e->shared, &cfg, &sctx, &cctx, &gen);
		if (sctx)
			evbuffer_add_printf(b, "# HELP syncgate_tls_certificate_expiry_timestamp_seconds when the listeners' certificate expires (unix time)\n"
			                       "# TYPE syncgate_tls_certificate_expiry_timestamp_seconds gauge\n"
			                       "syncgate_tls_certificate_expiry_timestamp_seconds %lld\n",
			                    (long long)px_tls_not_after(sctx));
		SSL_CTX_free(sctx);
		for (u = 0; u < POL_UPSTREAM_MAX; u++)
			SSL_CTX_free(cctx.ctx[u]);
		pol_config_unref(cfg);
	}
	evbuffer_add_printf(b, "# HELP syncgate_http_responses_total HTTP responses by status class and by who answered\n"
	                       "# TYPE syncgate_http_responses_total counter\n");
	for (i = 1; i < 6; i++) {
		evbuffer_add_printf(b, "syncgate_http_responses_total{class=\"%dxx\",by=\"syncgate\"} %llu\n",
		                    i, SUM(responses[0][i]));
		evbuffer_add_printf(b, "syncgate_http_responses_total{class=\"%dxx\",by=\"backend\"} %llu\n",
		                    i, SUM(responses[1][i]));
	}
	{
		unsigned long long ok, failed;
		px_shared_reloads(e->shared, &ok, &failed);
		evbuffer_add_printf(b, "# HELP syncgate_reloads_total configuration reloads (SIGHUP) by result\n"
		                       "# TYPE syncgate_reloads_total counter\n"
		                       "syncgate_reloads_total{result=\"ok\"} %llu\n"
		                       "syncgate_reloads_total{result=\"failed\"} %llu\n", ok, failed);
	}
	evbuffer_add_printf(b, "# HELP syncgate_build_info the running build (value 1)\n"
	                       "# TYPE syncgate_build_info gauge\n"
	                       "syncgate_build_info{version=\"%s\",openssl=\"%s\",libevent=\"%s\"} 1\n",
	                    SYNCGATE_VERSION, OpenSSL_version(OPENSSL_VERSION_STRING), event_get_version());
	GAUGE("syncgate_config_generation", "policy changes since start (reloads and admin changes)",
	      (unsigned long long)atomic_load(px_shared_genp(e->shared)));
	GAUGE("syncgate_workers", "worker threads", (unsigned long long)e->nworkers);
	if (e->fleet) {
		struct px_fleet_status st;
		px_fleet_status(e->fleet, &st);
		GAUGE("syncgate_fleet_connected", "1 while the fleet store is connected and its state loaded",
		      (unsigned long long)st.connected);
		GAUGE("syncgate_fleet_state_age_seconds",
		      "seconds since the fleet's state was last loaded or checked",
		      st.state_age_ms == UINT64_MAX ? (unsigned long long)(time(NULL) - e->started)
		                                     : (unsigned long long)(st.state_age_ms / 1000));
		GAUGE("syncgate_fleet_version", "the fleet's switch version applied",
		      (unsigned long long)st.version);
		COUNTER("syncgate_fleet_errors_total", "fleet store errors (connect, timeout, replies)",
		        st.errors);
		evbuffer_add_printf(b, "# HELP syncgate_fleet_notices_total notices received from other instances\n"
		                       "# TYPE syncgate_fleet_notices_total counter\n"
		                       "syncgate_fleet_notices_total{kind=\"switch\"} %llu\n"
		                       "syncgate_fleet_notices_total{kind=\"forget\"} %llu\n"
		                       "syncgate_fleet_notices_total{kind=\"budget\"} %llu\n",
		                    st.notices[PX_FLEET_SWITCH], st.notices[PX_FLEET_FORGET],
		                    st.notices[PX_FLEET_BUDGET]);
	}
	GAUGE("syncgate_uptime_seconds", "seconds since start", (unsigned long long)(time(NULL) - e->started));
	{
		size_t len = evbuffer_get_length(b);
		reply(c, 200, "text/plain; version=0.0.4", (const char *)evbuffer_pullup(b, -1), len);
	}
	evbuffer_free(b);
}

/* ---- /apps ---- */

/* An app's effective switches; with SH, where each comes from ("file", or "admin": changed
 * by PUT /apps since the file was last read). */
static cJSON *
app_json(const struct pol_app *a, const char *id, struct px_shared *sh)
{
	cJSON *j = cJSON_CreateObject();
	cJSON_AddStringToObject(j, "id", id);
	cJSON_AddStringToObject(j, "user_sync", a->user_sync ? "on" : "off");
	cJSON_AddStringToObject(j, "conversation_sync", a->conversation_sync ? "on" : "off");
	cJSON_AddStringToObject(j, "mode", pol_mode_to_str(a->mode));
	cJSON_AddStringToObject(j, "identity", pol_identity_to_str(a->identity));
	cJSON_AddBoolToObject(j, "secret_key", a->secret_key != NULL); /* never the key itself */
	if (sh) {
		struct pol_app_change ov;
		cJSON *src = cJSON_CreateObject();
		px_shared_override(sh, id, &ov);
		cJSON_AddStringToObject(src, "user_sync", ov.user_sync >= 0 ? "admin" : "file");
		cJSON_AddStringToObject(src, "conversation_sync", ov.conversation_sync >= 0 ? "admin" : "file");
		cJSON_AddStringToObject(src, "mode", ov.mode >= 0 ? "admin" : "file");
		cJSON_AddItemToObject(j, "source", src);
	}
	return j;
}

/* "user_sync=on conversation_sync=off mode=enforce": an app's switches, for log lines. */
static void
switches_text(const struct pol_app *a, char *buf, size_t n)
{
	snprintf(buf, n, "user_sync=%s conversation_sync=%s mode=%s", a->user_sync ? "on" : "off",
	         a->conversation_sync ? "on" : "off", pol_mode_to_str(a->mode));
}

static void
apps(struct admin_conn *c)
{
	const struct pol_config *cfg = c->cfg;
	cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray();
	int i;

	cJSON_AddItemToObject(j, "defaults", app_json(&cfg->defaults, "*", NULL));
	for (i = 0; i < cfg->napps; i++)
		cJSON_AddItemToArray(arr, app_json(&cfg->apps[i], cfg->apps[i].id, c->a->e.shared));
	cJSON_AddItemToObject(j, "apps", arr);
	reply_json(c, 200, j);
}

static int
switch_value(cJSON *j, const char *name, const char *on, const char *off, int *out, char *why,
             size_t whysz)
{
	cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
	*out = -1;
	if (!v)
		return 0;
	if (cJSON_IsString(v) && !strcmp(v->valuestring, on))
		*out = 1;
	else if (cJSON_IsString(v) && !strcmp(v->valuestring, off))
		*out = 0;
	else {
		snprintf(why, whysz, "%s must be \"%s\" or \"%s\"", name, on, off);
		return -1;
	}
	return 0;
}

/* The answer to PUT /apps/{appId} once applied: SHARED 1 / 0 (WHY) with a fleet, -1 without. */
static void
put_done(struct admin_conn *c, int shared, const char *why)
{
	struct pol_config *now = px_shared_policy(c->a->e.shared);
	char fleet[300] = "";
	cJSON *out;

	if (shared >= 0)
		snprintf(fleet, sizeof fleet, "%s%s", shared ? "shared" : "not shared: ",
		         shared ? "" : why);
	px_log(PX_LOG_INFO, "admin_change", "app", c->put_app, "change", c->put_what, "was",
	       c->put_was, "by", c->peer, shared >= 0 ? "fleet" : NULL, fleet, NULL);
	out = app_json(pol_config_app(now, c->put_app, strlen(c->put_app)), c->put_app,
	               c->a->e.shared);
	pol_config_unref(now);
	if (shared >= 0)
		cJSON_AddStringToObject(out, "fleet", fleet);
	reply_json(c, 200, out);
}

static void
put_shared(void *arg, int shared, const char *why)
{
	struct admin_conn *c = arg;
	c->fleet_wait = NULL;
	put_done(c, shared, why);
}

static void
put_app(struct admin_conn *c, const char *app)
{
	struct px_shared *sh = c->a->e.shared;
	size_t len = evbuffer_get_length(c->body);
	cJSON *j = cJSON_ParseWithLength((const char *)evbuffer_pullup(c->body, -1), len), *item;
	struct pol_app_change ch;
	char why[128] = "", what[256], was[128];
	int mode_report, rc;

	if (!cJSON_IsObject(j)) {
		cJSON_Delete(j);
		reply_error(c, 400, "body must be a JSON object");
		return;
	}
	{
		/* the known keys, each at most once: cJSON finds the first of two, and a reader of
		 * the request (or a proxy in front) might take the last */
		static const char *const keys[] = {"user_sync", "conversation_sync", "mode"};
		int seen[3] = {0, 0, 0}, k, n = 0;
		cJSON_ArrayForEach(item, j) {
			for (k = 0; k < 3 && strcmp(item->string, keys[k]); k++)
				;
			if (k == 3) {
				snprintf(why, sizeof why, "unknown key \"%.40s\"", item->string);
				break;
			}
			if (seen[k]++) {
				snprintf(why, sizeof why, "key \"%s\" given twice", keys[k]);
				break;
			}
			n++;
		}
		if (!why[0] && n == 0)
			snprintf(why, sizeof why,
			         "the body names no switch to change (user_sync, conversation_sync, mode)");
	}
	if (why[0] || switch_value(j, "user_sync", "on", "off", &ch.user_sync, why, sizeof why) ||
	    switch_value(j, "conversation_sync", "on", "off", &ch.conversation_sync, why, sizeof why) ||
	    switch_value(j, "mode", "report", "enforce", &mode_report, why, sizeof why)) {
		cJSON_Delete(j);
		reply_error(c, 400, why);
		return;
	}
	cJSON_Delete(j);
	ch.mode = mode_report < 0 ? -1 : mode_report ? POL_MODE_REPORT : POL_MODE_ENFORCE;
	switches_text(pol_config_app(c->cfg, app, strlen(app)), was, sizeof was);
	rc = px_shared_change_app(sh, app, &ch);
	if (rc == 404) {
		reply_error(c, 404, "no [app:...] section for this app id");
		return;
	}
	if (rc) {
		reply_error(c, 500, "out of memory");
		return;
	}
	snprintf(what, sizeof what, "%s%s%s",
	         ch.user_sync < 0 ? "" : ch.user_sync ? "user_sync=on " : "user_sync=off ",
	         ch.conversation_sync < 0 ? "" : ch.conversation_sync ? "conversation_sync=on " : "conversation_sync=off ",
	         ch.mode < 0 ? "" : ch.mode == POL_MODE_REPORT ? "mode=report" : "mode=enforce");
	snprintf(c->put_app, sizeof c->put_app, "%s", app);
	snprintf(c->put_what, sizeof c->put_what, "%s", what);
	snprintf(c->put_was, sizeof c->put_was, "%s", was);
	if (c->a->e.fleet) {
		/* applied here; the answer waits for the fleet (at most its timeout) */
		char not_shared[240];
		c->fleet_wait = px_fleet_share(c->a->e.fleet, app, &ch, put_shared, c, not_shared,
		                               sizeof not_shared);
		if (!c->fleet_wait)
			put_done(c, 0, not_shared);
		else /* the fleet answers within its timeout: the connection waits that long */
			px_io_set_timeout(c->io, c->cfg->fleet.timeout_ms + 10000);
		return;
	}
	put_done(c, -1, NULL);
}

/* GET /apps/{appId}: one configured app, as /apps lists it. */
static void
get_app(struct admin_conn *c, const char *app)
{
	if (!pol_config_has_app(c->cfg, app)) {
		reply_error(c, 404, "no [app:...] section for this app id");
		return;
	}
	reply_json(c, 200, app_json(pol_config_app(c->cfg, app, strlen(app)), app, c->a->e.shared));
}

/* ---- /readyz ---- */

/* Every probe has its answer: 200 when each upstream took a connection (and its TLS
 * handshake), else 503 with the first failure as "why"; "upstreams" has one entry each. */
static void
readyz_answer(struct admin_conn *c)
{
	cJSON *j = cJSON_CreateObject(), *ups = cJSON_CreateObject();
	const char *why = NULL;
	char first[300];
	int i;

	for (i = 0; i < c->nprobes; i++) {
		const char *name = px_upstream_name(c->a->e.ups[i]);
		cJSON_AddStringToObject(ups, name, c->probes[i].why[0] ? c->probes[i].why : "ok");
		if (c->probes[i].why[0] && !why) {
			why = c->probes[i].why;
			if (c->nprobes > 1) {
				snprintf(first, sizeof first, "%s (upstream %s)", why, name);
				why = first;
			}
		}
	}
	cJSON_AddBoolToObject(j, "ready", !why);
	if (why)
		cJSON_AddStringToObject(j, "why", why);
	cJSON_AddItemToObject(j, "upstreams", ups);
	if (c->a->e.fleet) {
		/* decisions never wait on the fleet: without it the last known state serves */
		struct px_fleet_status st;
		char t[96];
		px_fleet_status(c->a->e.fleet, &st);
		if (st.connected)
			snprintf(t, sizeof t, "ok");
		else
			iso_time(st.stale_since_ms, "stale since ", t, sizeof t);
		cJSON_AddStringToObject(j, "fleet", t);
	}
	reply_json(c, why ? 503 : 200, j);
}

static void
probe_event(struct px_io *io, short what, void *arg)
{
	struct probe *pr = arg;
	struct admin_conn *c = pr->c;

	if (what & PX_IO_CONNECTED)
		pr->why[0] = 0;
	else if (what & PX_IO_TLS)
		snprintf(pr->why, sizeof pr->why, "backend TLS handshake failed: %s", px_io_why(io));
	else
		snprintf(pr->why, sizeof pr->why, "backend unreachable");
	px_io_free(pr->io);
	pr->io = NULL;
	pr->done = 1;
	if (--c->pending == 0)
		readyz_answer(c);
}

static void
readyz(struct admin_conn *c)
{
	int reused, i;

	/* a new connection every time: the admin thread's upstreams keep no pool */
	c->nprobes = c->a->e.nups;
	c->pending = 0;
	for (i = 0; i < c->nprobes; i++) {
		struct probe *pr = &c->probes[i];
		pr->c = c;
		pr->done = 0;
		pr->why[0] = 0;
		pr->io = px_upstream_get(c->a->e.ups[i], &reused);
		if (!pr->io) {
			snprintf(pr->why, sizeof pr->why, "backend unreachable");
			pr->done = 1;
			continue;
		}
		c->pending++;
		px_io_setcb(pr->io, NULL, NULL, probe_event, pr);
	}
	if (!c->pending)
		readyz_answer(c);
}

/* ---- the console: its files, recent refusals, live counts ---- */

/* The page's Content-Security-Policy: nothing but its own script, style and API; no inline
 * code, no frames, no forms posted anywhere. */
#define CONSOLE_CSP                                                                        \
	"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "        \
	"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* GET of one of the console's files (no token: they hold no data, the API they call does).
 * Returns 1 if PATH is one. */
static int
console_file(struct admin_conn *c, const char *path)
{
	struct evbuffer *out;
	int i;

	for (i = 0; i < px_console_nassets && strcmp(px_console_assets[i].path, path); i++)
		;
	if (i == px_console_nassets)
		return 0;
	out = px_io_output(c->io);
	evbuffer_add_printf(out, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
	                         "Content-Security-Policy: " CONSOLE_CSP "\r\n"
	                         "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"
	                         "Cache-Control: no-store\r\nConnection: close\r\n\r\n",
	                    px_console_assets[i].type, px_console_assets[i].len);
	evbuffer_add(out, px_console_assets[i].data, px_console_assets[i].len);
	replied(c);
	return 1;
}

/* GET /decisions?limit=N: the last N (1..200, default 200) refusals of every worker, newest
 * first. */
static void
decisions(struct admin_conn *c, const char *query)
{
	const struct px_admin_env *e = &c->a->e;
	struct px_refusal *all = NULL;
	cJSON *j = cJSON_CreateObject(), *arr = cJSON_CreateArray();
	long limit = PX_REFUSALS_KEPT;
	int i, n;

	if (query) {
		const char *l = strstr(query, "limit=");
		char *end;
		if (l && (l == query || l[-1] == '&')) {
			limit = strtol(l + 6, &end, 10);
			if (end == l + 6 || (*end && *end != '&') || limit < 1 || limit > PX_REFUSALS_KEPT) {
				cJSON_Delete(arr);
				cJSON_Delete(j);
				reply_error(c, 400, "limit is 1..200");
				return;
			}
		}
	}
	n = px_stats_refusals(e->stats, e->nworkers, (int)limit, &all);
	for (i = 0; i < n; i++) {
		const struct px_refusal *r = &all[i];
		cJSON *o = cJSON_CreateObject();
		cJSON_AddNumberToObject(o, "time", (double)r->time_ms);
		cJSON_AddStringToObject(o, "app", r->app);
		cJSON_AddStringToObject(o, "user", r->user);
		cJSON_AddStringToObject(o, "op", r->op);
		cJSON_AddStringToObject(o, "transport", r->transport);
		cJSON_AddStringToObject(o, "method", r->method);
		cJSON_AddStringToObject(o, "path", r->path);
		cJSON_AddNumberToObject(o, "status", r->status);
		cJSON_AddStringToObject(o, "errorCode", r->error_code);
		cJSON_AddStringToObject(o, "reason", r->reason);
		cJSON_AddStringToObject(o, "mode", r->report ? "report" : "enforce");
		cJSON_AddItemToArray(arr, o);
	}
	free(all);
	cJSON_AddItemToObject(j, "refusals", arr);
	reply_json(c, 200, j);
}

/* GET /stats: decision counts by app, operation and verdict, and refusals per minute over
 * the last hour (oldest first). */
static void
stats(struct admin_conn *c)
{
	const struct px_admin_env *e = &c->a->e;
	struct px_decision_count *rows = NULL;
	unsigned long long per[PX_REFUSAL_MINUTES], t = px_wall_ms();
	cJSON *j = cJSON_CreateObject(), *counts = cJSON_CreateArray(), *minutes = cJSON_CreateArray();
	int i, n = px_stats_decisions(e->stats, e->nworkers, &rows);

	for (i = 0; i < n; i++) {
		cJSON *o = cJSON_CreateObject();
		cJSON_AddStringToObject(o, "app", rows[i].app);
		cJSON_AddStringToObject(o, "op", pol_op_to_str((enum pol_op)rows[i].op));
		cJSON_AddStringToObject(o, "verdict", px_verdict_to_str((enum px_verdict)rows[i].verdict));
		cJSON_AddNumberToObject(o, "n", (double)rows[i].n);
		cJSON_AddItemToArray(counts, o);
	}
	free(rows);
	px_stats_refusal_minutes(e->stats, e->nworkers, t, per);
	for (i = 0; i < PX_REFUSAL_MINUTES; i++)
		cJSON_AddItemToArray(minutes, cJSON_CreateNumber((double)per[i]));
	cJSON_AddNumberToObject(j, "time", (double)t);
	cJSON_AddItemToObject(j, "counts", counts);
	cJSON_AddItemToObject(j, "refusals_per_minute", minutes);
	if (e->fleet) {
		struct px_fleet_status st;
		cJSON *f = cJSON_AddObjectToObject(j, "fleet");
		char since[64];
		px_fleet_status(e->fleet, &st);
		cJSON_AddBoolToObject(f, "connected", st.connected);
		cJSON_AddNumberToObject(f, "version", (double)st.version);
		if (st.state_age_ms == UINT64_MAX)
			cJSON_AddNullToObject(f, "state_age_seconds");
		else
			cJSON_AddNumberToObject(f, "state_age_seconds", (double)(st.state_age_ms / 1000));
		cJSON_AddStringToObject(f, "instance", st.instance);
		if (st.stale_since_ms) {
			iso_time(st.stale_since_ms, "", since, sizeof since);
			cJSON_AddStringToObject(f, "stale_since", since);
		} else {
			cJSON_AddNullToObject(f, "stale_since");
		}
	} else {
		cJSON_AddNullToObject(j, "fleet");
	}
	reply_json(c, 200, j);
}

/* ---- requests ---- */

/* 1 if the request carries "Bearer TOK" (constant time); 0 for none or another. */
static int
bearer_is(const struct admin_conn *c, const char *tok)
{
	size_t tl = strlen(tok);
	return c->auth_len == 7 + tl && !strncasecmp(c->auth, "Bearer ", 7) &&
	       CRYPTO_memcmp(c->auth + 7, tok, tl) == 0;
}

/* The admin token: every endpoint that reads policy or changes it. */
static int
authorized(const struct admin_conn *c)
{
	const char *tok = c->cfg->admin_token;
	return !tok || bearer_is(c, tok); /* no token: loopback without a token_file */
}

/* /metrics: the admin token, or the read-only metrics token when one is configured, so a
 * scraper's credential cannot change switches. */
static int
metrics_authorized(const struct admin_conn *c)
{
	const char *mt = c->cfg->metrics_token;
	return (mt && bearer_is(c, mt)) || authorized(c);
}

static void
route(struct admin_conn *c)
{
	const char *u = c->url;
	int get = !strcmp(c->method, "GET"), put = !strcmp(c->method, "PUT");

	/* probes need no token: a kubelet or load balancer has none, and rotating the token
	 * must not fail every pod's probes; they tell nothing but up and ready */
	if (!strcmp(u, "/healthz") && get) {
		reply(c, 200, "application/json", "{\"status\":\"ok\"}\n", 16);
		return;
	}
	if (!strcmp(u, "/readyz") && get) {
		readyz(c);
		return;
	}
	if (get && console_file(c, u))
		return;
	if (get && !strcmp(u, "/favicon.ico")) { /* browsers ask with no token: not a failed login */
		reply_error(c, 404, "no such endpoint");
		return;
	}
	if (!strcmp(u, "/metrics") && get ? !metrics_authorized(c) : !authorized(c)) {
		px_log(PX_LOG_WARN, "admin_unauthorized", "peer", c->peer, "path", c->url, NULL);
		reply_error(c, 401, "Authorization: Bearer <admin token> required");
		return;
	}
	if (!strcmp(u, "/metrics") && get)
		metrics(c);
	else if ((!strcmp(u, "/decisions") || !strncmp(u, "/decisions?", 11)) && get)
		decisions(c, u[10] ? u + 11 : NULL);
	else if (!strcmp(u, "/stats") && get)
		stats(c);
	else if (!strcmp(u, "/apps") && get)
		apps(c);
	else if (!strncmp(u, "/apps/", 6) && u[6] && !strchr(u + 6, '/')) {
		if (put)
			put_app(c, u + 6);
		else if (get)
			get_app(c, u + 6);
		else
			reply_error(c, 405, "use GET or PUT");
	} else
		reply_error(c, 404, "no such endpoint");
}

static int
on_url(llhttp_t *p, const char *at, size_t len)
{
	struct admin_conn *c = p->data;
	if (c->url_len + len >= sizeof c->url)
		return -1;
	memcpy(c->url + c->url_len, at, len);
	c->url_len += len;
	c->url[c->url_len] = 0;
	return 0;
}

static int
on_field(llhttp_t *p, const char *at, size_t len)
{
	struct admin_conn *c = p->data;
	if (c->field_len + len < sizeof c->field) {
		memcpy(c->field + c->field_len, at, len);
		c->field_len += len;
	} else {
		c->field_len = sizeof c->field; /* too long to be Authorization */
	}
	return 0;
}

static int
on_field_done(llhttp_t *p)
{
	struct admin_conn *c = p->data;
	c->in_auth = c->field_len == 13 && !strncasecmp(c->field, "authorization", 13);
	c->field_len = 0;
	return 0;
}

static int
on_value(llhttp_t *p, const char *at, size_t len)
{
	struct admin_conn *c = p->data;
	if (!c->in_auth)
		return 0;
	if (c->auth_len + len >= sizeof c->auth)
		return -1;
	memcpy(c->auth + c->auth_len, at, len);
	c->auth_len += len;
	return 0;
}

static int
on_body(llhttp_t *p, const char *at, size_t len)
{
	struct admin_conn *c = p->data;
	if (evbuffer_get_length(c->body) + len > ADMIN_MAX_REQUEST)
		return -1;
	evbuffer_add(c->body, at, len);
	return 0;
}

static int
on_headers_complete(llhttp_t *p)
{
	struct admin_conn *c = p->data;
	snprintf(c->method, sizeof c->method, "%s", llhttp_method_name((llhttp_method_t)p->method));
	return 0;
}

static int
on_complete(llhttp_t *p)
{
	struct admin_conn *c = p->data;
	c->complete = 1;
	return HPE_PAUSED;
}

static void
admin_readcb(struct px_io *io, void *arg)
{
	struct admin_conn *c = arg;
	struct evbuffer *in = px_io_input(io);
	size_t n = evbuffer_get_length(in);
	llhttp_errno_t e;

	if (c->complete || c->replied) {
		evbuffer_drain(in, n);
		return;
	}
	e = llhttp_execute(&c->parser, (const char *)evbuffer_pullup(in, -1), n);
	evbuffer_drain(in, n);
	if (e != HPE_OK && e != HPE_PAUSED) {
		reply_error(c, 400, "malformed request");
		return;
	}
	if (c->complete) {
		c->cfg = px_shared_policy(c->a->e.shared);
		route(c);
	}
}

static void
admin_eventcb(struct px_io *io, short what, void *arg)
{
	(void)io;
	(void)what;
	conn_free(arg);
}

static void
admin_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct px_admin *a = arg;
	struct admin_conn *c = calloc(1, sizeof *c);
	(void)l;
	(void)salen;
	if (!c) {
		evutil_closesocket(fd);
		return;
	}
	c->a = a;
	c->io = px_io_new(a->e.base, fd);
	c->body = evbuffer_new();
	if (!c->io || !c->body) {
		if (c->io)
			px_io_free(c->io);
		if (c->body)
			evbuffer_free(c->body);
		free(c);
		return;
	}
	if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, c->peer, sizeof c->peer);
	else
		inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, c->peer, sizeof c->peer);
	c->next = a->conns;
	if (a->conns)
		a->conns->prev = c;
	a->conns = c;
	llhttp_settings_init(&c->settings);
	c->settings.on_url = on_url;
	c->settings.on_header_field = on_field;
	c->settings.on_header_field_complete = on_field_done;
	c->settings.on_header_value = on_value;
	c->settings.on_headers_complete = on_headers_complete;
	c->settings.on_body = on_body;
	c->settings.on_message_complete = on_complete;
	llhttp_init(&c->parser, HTTP_REQUEST, &c->settings);
	c->parser.data = c;
	px_io_setcb(c->io, admin_readcb, admin_writecb, admin_eventcb, c);
	px_io_set_read_max(c->io, ADMIN_MAX_REQUEST + 8192);
	px_io_set_timeout(c->io, 10000);
	px_io_read(c->io, 1);
}

struct px_admin *
px_admin_new(const struct px_admin_env *env, const struct pol_config *cfg)
{
	struct px_admin *a = calloc(1, sizeof *a);
	struct addrinfo hints, *ai = NULL;

	if (!a)
		return NULL;
	a->e = *env;
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	if (getaddrinfo(cfg->admin_host, cfg->admin_port, &hints, &ai) || !ai) {
		px_log(PX_LOG_ERROR, "startup", "why", "cannot resolve [admin] listen", NULL);
		free(a);
		return NULL;
	}
	a->listener = evconnlistener_new_bind(env->base, admin_accept, a,
	                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE |
	                                          LEV_OPT_CLOSE_ON_EXEC,
	                                      64, ai->ai_addr, (int)ai->ai_addrlen);
	freeaddrinfo(ai);
	if (!a->listener) {
		px_log(PX_LOG_ERROR, "startup", "why", "cannot listen on [admin] listen", "addr",
		       cfg->admin_listen, NULL);
		free(a);
		return NULL;
	}
	px_log(PX_LOG_INFO, "admin_listen", "addr", cfg->admin_listen, "auth",
	       cfg->admin_token ? "token" : "none (loopback)", NULL);
	return a;
}

void
px_admin_free(struct px_admin *a)
{
	if (!a)
		return;
	while (a->conns)
		conn_free(a->conns);
	evconnlistener_free(a->listener);
	free(a);
}
