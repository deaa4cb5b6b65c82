/*
 * proxy/fleet.c - the fleet store's client (see fleet.h; keys in docs/configuration.md).
 *
 * Redis keys, P = key_prefix:
 *   P version                 bumped by every switch write
 *   P apps                    the app ids with fleet values
 *   P app:ID                  user_sync, conversation_sync, mode (those ever set), each
 *                             with at:SWITCH (wall-clock ms of its flip: newest wins per
 *                             switch), version (of the last write), by (its instance)
 *   P events                  notices: "switch V", "forget IID APP user|conversation ID",
 *                             "budget IID APP UNTIL BAN_UNTIL USER"
 *   P budget:APP:W:USER       refusals in window W (wall clock / window), expiring
 *
 * hiredis 0.14.1's async API has no command timeout and no reconnect: every command's send
 * time is kept (replies come in order) and a timer drops both connections when the oldest
 * waits past [fleet] timeout, or a connection or its first answer takes longer; reconnects
 * back off from 100 ms to 5 s. redisAsyncFree() runs each pending callback with a NULL
 * reply, so a callback's private data is freed by the callback, whatever the reply.
 * Nothing here is ever called from inside a hiredis callback of the context it frees: errors
 * found in a callback schedule the drop (drop_ev).
 */
#include "proxy/fleet.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "proxy/log.h"

#define SENT_MAX 1024          /* commands in flight on the command connection */
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define TICK_MS 50             /* deadlines, reconnects, polls are checked this often */
#define FLEET_APPS_MAX 4096    /* apps with fleet values (more: the rest ignored, logged) */
#define BUDGET_PUSH_MS 100     /* refusals are added to the fleet's totals at most this often */
#define NOTICE_MAX (64 * 1024) /* a notice longer than this is ignored */

/* The switches the fleet holds, each with the time it was set: newest wins per switch. */
#define NFIELDS 3
static const char *const FIELD[NFIELDS] = {"user_sync", "conversation_sync", "mode"};

/* One app's record: what the fleet (or a local flip not yet shared) says of its switches. */
struct fapp {
	char id[POL_APPID_MAX + 1];
	int v[NFIELDS];                 /* -1: not held; mode: an enum pol_mode */
	uint64_t at[NFIELDS];           /* wall-clock ms of the change that set it */
	unsigned pending;               /* fields flipped here that the fleet has not taken */
	uint64_t version;
	int writing;                    /* writes of it in flight */
};

struct rconn {
	struct px_fleet *fl;
	redisAsyncContext *ac;          /* NULL: down */
	uint64_t started_ms;            /* connect began (monotonic) */
	int answered;                   /* the first reply came (SUBSCRIBE's for the subscriber) */
	uint64_t sent[SENT_MAX];        /* monotonic send times of the commands in flight */
	unsigned head, n;
};

struct px_fleet_wait {
	struct px_fleet *fl;
	int resync;                     /* written at a resync: only where newer */
	px_fleet_shared_cb cb;          /* NULL: cancelled */
	void *arg;
	char app[POL_APPID_MAX + 1];
	unsigned mask;                  /* the fields written */
	uint64_t at[NFIELDS];           /* their times */
};

struct px_fleet {
	struct event_base *base;
	struct px_shared *sh;
	struct pol_fleet conf;
	char iid[17];                   /* this process's random id in notices */
	char channel[80], k_version[80], k_apps[80];
	struct rconn cmd, sub;
	struct event *tick, *kick_ev, *drop_ev;
	int kick_fd[2];
	_Atomic int kicked;
	int connected;                  /* both up, snapshot applied */
	int resync;                     /* the next snapshot is the first of a connection: the
	                                 * flips made while away are written after it */
	int snapshot_busy, poll_busy;
	int snapshot_again;             /* a notice came while a snapshot was in flight */
	uint32_t rng;                   /* the back-off's jitter */
	unsigned gen;                   /* connections made: a drop scheduled for an older one
	                                 * is void */
	unsigned drop_gen;
	int drop_armed;
	int budget_due;                 /* refusals queued, waiting for the next push */
	int forget_failed;              /* an invalidation could not be announced */
	uint64_t budget_pushed;         /* monotonic ms of the last push (one per BUDGET_PUSH_MS) */
	char *saved;                    /* the state_file's text as last written */
	uint64_t version;
	uint64_t state_ms;              /* monotonic: last snapshot / version check; 0 never */
	uint64_t stale_since;           /* wall clock; 0: connected */
	uint64_t next_connect, backoff, next_poll;
	uint64_t forget_seen;
	unsigned long long errors, notices[PX_FLEET_NOTICES];
	char why[200];
	struct fapp *apps;
	int napps, capps;
	char drop_why[200];
};

static uint64_t
mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A formatted string in memory of its own (NULL on ENOMEM): ids may be long. */
static char *
fmt_alloc(size_t *len, const char *fmt, ...)
{
	va_list ap;
	int n;
	char *b;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || !(b = malloc((size_t)n + 1)))
		return NULL;
	va_start(ap, fmt);
	vsnprintf(b, (size_t)n + 1, fmt, ap);
	va_end(ap);
	if (len)
		*len = (size_t)n;
	return b;
}

static void fleet_drop(struct px_fleet *fl, const char *why);
static void send_snapshot(struct px_fleet *fl);
static void flush_queues(struct px_fleet *fl);

static void
fleet_error(struct px_fleet *fl, const char *why)
{
	fl->errors++;
	snprintf(fl->why, sizeof fl->why, "%s", why);
	px_log(PX_LOG_WARN, "fleet_error", "redis", fl->conf.redis, "why", why, NULL);
}

/* An error reply that may repeat (every push under a flood): counted, logged once per
 * distinct reason. */
static void
fleet_error_quiet(struct px_fleet *fl, const char *why)
{
	if (strcmp(fl->why, why))
		fleet_error(fl, why);
	else
		fl->errors++;
}

/* An error seen inside a hiredis callback: both connections are dropped from the loop,
 * unless they were dropped (and maybe remade) meanwhile. */
static void
drop_later(struct px_fleet *fl, const char *why)
{
	if (fl->drop_armed)
		return;
	snprintf(fl->drop_why, sizeof fl->drop_why, "%s", why);
	fl->drop_armed = 1;
	fl->drop_gen = fl->gen;
	event_active(fl->drop_ev, 0, 0);
}

/* ---- the switch records ---- */

static struct fapp *
fapp_get(struct px_fleet *fl, const char *id, int create)
{
	int i;
	for (i = 0; i < fl->napps; i++)
		if (!strcmp(fl->apps[i].id, id))
			return &fl->apps[i];
	if (!create || strlen(id) > POL_APPID_MAX || fl->napps >= FLEET_APPS_MAX)
		return NULL;
	if (fl->napps == fl->capps) {
		int nc = fl->capps ? fl->capps * 2 : 16;
		struct fapp *n = realloc(fl->apps, (size_t)nc * sizeof *n);
		if (!n)
			return NULL;
		fl->apps = n;
		fl->capps = nc;
	}
	struct fapp *a = &fl->apps[fl->napps++];
	memset(a, 0, sizeof *a);
	snprintf(a->id, sizeof a->id, "%s", id);
	a->v[0] = a->v[1] = a->v[2] = -1;
	return a;
}

static const char *
value_text(int f, int v)
{
	return f == 2 ? (v == POL_MODE_REPORT ? "report" : "enforce") : v ? "on" : "off";
}

/* A field's value as syncgate writes it, or -1 (anything else is ignored, never "off"). */
static int
value_parse(int f, const char *s)
{
	if (f == 2)
		return !strcmp(s, "report") ? POL_MODE_REPORT : !strcmp(s, "enforce") ? POL_MODE_ENFORCE : -1;
	return !strcmp(s, "on") ? 1 : !strcmp(s, "off") ? 0 : -1;
}

/* The fields of A in MASK that it holds, as a change. */
static struct pol_app_change
change_of(const struct fapp *a, unsigned mask)
{
	struct pol_app_change ch = {-1, -1, -1};
	if (mask & 1)
		ch.user_sync = a->v[0];
	if (mask & 2)
		ch.conversation_sync = a->v[1];
	if (mask & 4)
		ch.mode = a->v[2];
	return ch;
}

/* Makes CH the app's override where it holds a value and differs from the one in force. */
static void
apply_change(struct px_fleet *fl, const char *app, const struct pol_app_change *ch)
{
	struct pol_config *now = px_shared_policy(fl->sh);
	const struct pol_app *a = pol_config_app(now, app, strlen(app));
	int differs = a->id[0] &&
	              ((ch->user_sync >= 0 && ch->user_sync != a->user_sync) ||
	               (ch->conversation_sync >= 0 && ch->conversation_sync != a->conversation_sync) ||
	               (ch->mode >= 0 && ch->mode != (int)a->mode));

	pol_config_unref(now);
	if (differs)
		px_shared_change_app(fl->sh, app, ch); /* (404: not an app of this file) */
}

/* ---- the state file ---- */

static void
save_state(struct px_fleet *fl)
{
	char tmp[POL_PATH_MAX + 32];
	cJSON *j, *apps;
	char *text, *sig;
	FILE *f;
	int i, ok;

	if (!fl->conf.state_file[0])
		return;
	j = cJSON_CreateObject();
	cJSON_AddNumberToObject(j, "version", (double)fl->version);
	cJSON_AddStringToObject(j, "instance", fl->conf.instance);
	apps = cJSON_AddObjectToObject(j, "apps");
	for (i = 0; apps && i < fl->napps; i++) {
		const struct fapp *a = &fl->apps[i];
		cJSON *o = cJSON_AddObjectToObject(apps, a->id), *at, *pend;
		int k;
		if (!o)
			continue;
		/* {"user_sync": "off", ..., "at": {"user_sync": MS}, "pending": ["user_sync"]} */
		for (k = 0; k < NFIELDS; k++)
			if (a->v[k] >= 0)
				cJSON_AddStringToObject(o, FIELD[k], value_text(k, a->v[k]));
		cJSON_AddNumberToObject(o, "version", (double)a->version);
		at = cJSON_AddObjectToObject(o, "at");
		pend = cJSON_AddArrayToObject(o, "pending");
		for (k = 0; at && pend && k < NFIELDS; k++) {
			if (a->v[k] >= 0)
				cJSON_AddNumberToObject(at, FIELD[k], (double)a->at[k]);
			if (a->pending & 1u << k)
				cJSON_AddItemToArray(pend, cJSON_CreateString(FIELD[k]));
		}
	}
	sig = cJSON_PrintUnformatted(j); /* what is saved, but for when */
	if (!sig || (fl->saved && !strcmp(sig, fl->saved))) {
		/* unchanged: no write (and no fsync on the loop) */
		free(sig);
		cJSON_Delete(j);
		return;
	}
	cJSON_AddNumberToObject(j, "saved_at", (double)px_wall_ms());
	text = cJSON_PrintUnformatted(j);
	cJSON_Delete(j);
	if (!text) {
		free(sig);
		return;
	}
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", fl->conf.state_file, (long)getpid());
	f = fopen(tmp, "w");
	ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF && fflush(f) == 0 &&
	     fsync(fileno(f)) == 0;
	if (f && fclose(f))
		ok = 0;
	free(text);
	free(fl->saved);
	fl->saved = ok ? sig : NULL;
	if (!ok)
		free(sig);
	if (!ok || rename(tmp, fl->conf.state_file)) {
		char why[POL_PATH_MAX + 64];
		free(fl->saved);
		fl->saved = NULL;
		snprintf(why, sizeof why, "state_file %s: %s", fl->conf.state_file, strerror(errno));
		unlink(tmp);
		fleet_error(fl, why);
	}
}

/* At start: the last state an instance saved, applied as the admin API's overrides. */
static void
load_state(struct px_fleet *fl)
{
	FILE *f = fl->conf.state_file[0] ? fopen(fl->conf.state_file, "r") : NULL;
	char *buf = NULL, n[24], v[24];
	long len;
	cJSON *j = NULL, *apps, *o;
	int count = 0;

	if (!f)
		return;
	if (fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) > 0 && len < 16 * 1024 * 1024 &&
	    fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len + 1)) &&
	    fread(buf, 1, (size_t)len, f) == (size_t)len) {
		buf[len] = 0;
		j = cJSON_Parse(buf);
	}
	fclose(f);
	free(buf);
	apps = cJSON_GetObjectItemCaseSensitive(j, "apps");
	if (!cJSON_IsObject(apps)) {
		char why[POL_PATH_MAX + 64];
		snprintf(why, sizeof why, "state_file %s: not a saved fleet state", fl->conf.state_file);
		fleet_error(fl, why);
		cJSON_Delete(j);
		return;
	}
	cJSON_ArrayForEach(o, apps) {
		struct fapp *a;
		struct pol_app_change ch;
		const cJSON *ver = cJSON_GetObjectItemCaseSensitive(o, "version"),
		            *at = cJSON_GetObjectItemCaseSensitive(o, "at"),
		            *pend = cJSON_GetObjectItemCaseSensitive(o, "pending"), *x;
		int k;
		if (!cJSON_IsObject(o) || !(a = fapp_get(fl, o->string, 1)))
			continue;
		for (k = 0; k < NFIELDS; k++) {
			const cJSON *val = cJSON_GetObjectItemCaseSensitive(o, FIELD[k]),
			            *t = cJSON_GetObjectItemCaseSensitive(at, FIELD[k]);
			a->v[k] = cJSON_IsString(val) ? value_parse(k, val->valuestring) : -1;
			a->at[k] = cJSON_IsNumber(t) && t->valuedouble > 0 ? (uint64_t)t->valuedouble : 0;
		}
		cJSON_ArrayForEach(x, pend)
			for (k = 0; k < NFIELDS; k++)
				if (cJSON_IsString(x) && !strcmp(x->valuestring, FIELD[k]) && a->v[k] >= 0)
					a->pending |= 1u << k;
		a->version = cJSON_IsNumber(ver) && ver->valuedouble > 0 ? (uint64_t)ver->valuedouble : 0;
		ch = change_of(a, 7);
		apply_change(fl, a->id, &ch);
		count++;
	}
	o = cJSON_GetObjectItemCaseSensitive(j, "version");
	fl->version = cJSON_IsNumber(o) && o->valuedouble > 0 ? (uint64_t)o->valuedouble : 0;
	o = cJSON_GetObjectItemCaseSensitive(j, "saved_at");
	if (cJSON_IsNumber(o) && o->valuedouble > 0 && (uint64_t)o->valuedouble <= px_wall_ms()) {
		/* the state's age is the file's, not this process's: stale since it was saved */
		uint64_t age = px_wall_ms() - (uint64_t)o->valuedouble, now = mono_ms();
		fl->stale_since = (uint64_t)o->valuedouble;
		fl->state_ms = age < now ? now - age : 1;
	}
	cJSON_Delete(j);
	snprintf(n, sizeof n, "%d", count);
	snprintf(v, sizeof v, "%llu", (unsigned long long)fl->version);
	px_log(PX_LOG_INFO, "fleet_state_file", "path", fl->conf.state_file, "#version", v, "#apps", n,
	       NULL);
}

/* ---- commands ---- */

static int
sent_push(struct rconn *c)
{
	if (c->n == SENT_MAX)
		return -1;
	c->sent[(c->head + c->n++) % SENT_MAX] = mono_ms();
	return 0;
}

static void
sent_pop(struct rconn *c)
{
	if (c->n) {
		c->head = (c->head + 1) % SENT_MAX;
		c->n--;
	}
	c->answered = 1;
}

/* Sends a command on the command connection (ARGC/ARGV, lengths known); FN gets PRIV,
 * whatever happens. Returns 0, or -1 (FN will not run) when it cannot be sent. */
static int
command(struct px_fleet *fl, redisCallbackFn *fn, void *priv, int argc, const char **argv,
        const size_t *lens)
{
	struct rconn *c = &fl->cmd;
	if (!c->ac || c->n == SENT_MAX)
		return -1;
	if (redisAsyncCommandArgv(c->ac, fn, priv, argc, argv, lens) != REDIS_OK)
		return -1;
	sent_push(c);
	return 0;
}

/* The reply of a command whose answer only matters when it is an error: logged, or with
 * DROP (AUTH's: a refused password) the connections dropped (stale, back-off). */
static void
checked(struct px_fleet *fl, redisReply *reply, const char *what, int drop)
{
	char why[240];

	if (!reply)
		return;
	sent_pop(&fl->cmd);
	if (reply->type != REDIS_REPLY_ERROR)
		return;
	snprintf(why, sizeof why, "redis: %s%.200s", what, reply->str);
	if (drop)
		drop_later(fl, why);
	else
		fleet_error(fl, why);
}

static void
on_plain(redisAsyncContext *ac, void *r, void *priv)
{
	(void)ac;
	checked(priv, r, "", 0);
}

static void
on_auth(redisAsyncContext *ac, void *r, void *priv)
{
	(void)ac;
	checked(priv, r, "AUTH: ", 1);
}

/* Returns 0, or -1 when it could not be sent. */
static int
publish(struct px_fleet *fl, const char *msg, size_t len)
{
	const char *argv[3] = {"PUBLISH", fl->channel, msg};
	size_t lens[3] = {7, strlen(fl->channel), len};
	return command(fl, on_plain, fl, 3, argv, lens);
}

/* ---- switches ---- */

/* KEYS: version, apps, the app's hash. ARGV: app, by, channel, only_if_newer (1/0), then
 * field, value, at (wall-clock ms) triples. Each field is written (with "at:FIELD") unless
 * ONLY_IF_NEWER and the fleet's is as new or newer. Returns the new version, or -1 when
 * nothing was written. */
static const char WRITE_LUA[] =
	"local wrote = false "
	"for i = 5, #ARGV, 3 do "
	"local cur = redis.call('HGET', KEYS[3], 'at:' .. ARGV[i]) "
	"if ARGV[4] ~= '1' or not cur or tonumber(cur) < tonumber(ARGV[i + 2]) then "
	"redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1], 'at:' .. ARGV[i], ARGV[i + 2]) "
	"wrote = true end end "
	"if not wrote then return -1 end "
	"local v = redis.call('INCR', KEYS[1]) "
	"redis.call('SADD', KEYS[2], ARGV[1]) "
	"redis.call('HSET', KEYS[3], 'version', v, 'by', ARGV[2]) "
	"redis.call('PUBLISH', ARGV[3], 'switch ' .. v) "
	"return v";

/* KEYS: version, apps. ARGV: key_prefix. Returns {version, app, {field, value, ...}, ...}. */
static const char SNAPSHOT_LUA[] =
	"local out = {redis.call('GET', KEYS[1]) or '0'} "
	"for _, a in ipairs(redis.call('SMEMBERS', KEYS[2])) do "
	"out[#out + 1] = a out[#out + 1] = redis.call('HGETALL', ARGV[1] .. 'app:' .. a) end "
	"return out";

static void
on_write(redisAsyncContext *ac, void *r, void *priv)
{
	struct px_fleet_wait *w = priv;
	struct px_fleet *fl = w->fl;
	redisReply *reply = r;
	char why[240] = "";
	(void)ac;

	struct fapp *a = fapp_get(fl, w->app, 0);

	if (a && a->writing > 0)
		a->writing--;
	if (!reply) {
		snprintf(why, sizeof why, "redis unreachable (%s)", fl->why[0] ? fl->why : "connection lost");
	} else {
		sent_pop(&fl->cmd);
		if (reply->type == REDIS_REPLY_INTEGER) {
			int f;
			/* taken, or (at a resync) older than the fleet's: not pending any more */
			for (f = 0; a && f < NFIELDS; f++)
				if ((w->mask & 1u << f) && a->at[f] == w->at[f])
					a->pending &= ~(1u << f);
			if (reply->integer > 0) {
				if (a)
					a->version = (uint64_t)reply->integer;
				if ((uint64_t)reply->integer == fl->version + 1 && !w->resync)
					fl->version = (uint64_t)reply->integer; /* (else a snapshot follows) */
			}
			if (w->resync)
				send_snapshot(fl); /* (what the fleet kept where it was newer) */
			save_state(fl);
		} else {
			snprintf(why, sizeof why, "redis: %.200s",
			         reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
			fleet_error(fl, why);
		}
	}
	if (w->cb)
		w->cb(w->arg, !why[0], why);
	free(w);
}

/* Writes the fields MASK of record A to the fleet; at a resync (W NULL) only where newer
 * than the fleet's. */
static int
write_record(struct px_fleet *fl, struct fapp *a, unsigned mask, struct px_fleet_wait *w)
{
	char k_app[POL_APPID_MAX + 80], at[NFIELDS][24];
	const char *argv[10 + 3 * NFIELDS]; /* EVAL script 3 keys*3 args*4, field/value/at */
	size_t lens[10 + 3 * NFIELDS];
	int n = 0, i, f, resync = !w;

	if (!w && !(w = calloc(1, sizeof *w)))
		return -1;
	w->fl = fl;
	w->resync = resync;
	snprintf(w->app, sizeof w->app, "%s", a->id);
	snprintf(k_app, sizeof k_app, "%sapp:%s", fl->conf.prefix, a->id);
	argv[n++] = "EVAL";
	argv[n++] = WRITE_LUA;
	argv[n++] = "3";
	argv[n++] = fl->k_version;
	argv[n++] = fl->k_apps;
	argv[n++] = k_app;
	argv[n++] = a->id;
	argv[n++] = fl->conf.instance;
	argv[n++] = fl->channel;
	argv[n++] = resync ? "1" : "0";
	for (f = 0; f < NFIELDS; f++) {
		if (!(mask & 1u << f) || a->v[f] < 0)
			continue;
		snprintf(at[f], sizeof at[f], "%llu", (unsigned long long)a->at[f]);
		argv[n++] = FIELD[f];
		argv[n++] = value_text(f, a->v[f]);
		argv[n++] = at[f];
		w->mask |= 1u << f;
		w->at[f] = a->at[f];
	}
	for (i = 0; i < n; i++)
		lens[i] = strlen(argv[i]);
	if (!w->mask || command(fl, on_write, w, n, argv, lens)) {
		free(w);
		return -1;
	}
	a->writing++;
	return 0;
}

struct px_fleet_wait *
px_fleet_share(struct px_fleet *fl, const char *app, const struct pol_app_change *ch,
               px_fleet_shared_cb cb, void *arg, char *why, size_t whylen)
{
	struct fapp *a = fapp_get(fl, app, 1);
	struct px_fleet_wait *w;
	unsigned mask = 0;

	if (!a) {
		snprintf(why, whylen, "%s", fl->napps >= FLEET_APPS_MAX ? "the fleet holds "
		         "switches of 4096 apps already (FLEET_APPS_MAX)" : "out of memory");
		return NULL;
	}
	{
		const int v[NFIELDS] = {ch->user_sync, ch->conversation_sync, ch->mode};
		uint64_t now = px_wall_ms();
		int f;
		for (f = 0; f < NFIELDS; f++)
			if (v[f] >= 0) {
				a->v[f] = v[f];
				a->at[f] = now;
				a->pending |= 1u << f;
				mask |= 1u << f;
			}
	}
	save_state(fl); /* (a restart while Redis is away keeps it) */
	if (!fl->connected) {
		snprintf(why, whylen, "redis unreachable (%s)", fl->why[0] ? fl->why : "connecting");
		return NULL;
	}
	if (!(w = calloc(1, sizeof *w))) {
		snprintf(why, whylen, "out of memory");
		return NULL;
	}
	w->cb = cb;
	w->arg = arg;
	if (write_record(fl, a, mask, w)) {
		snprintf(why, whylen, "redis unreachable (%s)", fl->cmd.ac ? "too many commands in flight"
		         : fl->why[0] ? fl->why : "connection lost");
		return NULL; /* (write_record freed W) */
	}
	return w;
}

void
px_fleet_cancel(struct px_fleet_wait *w)
{
	if (w)
		w->cb = NULL;
}

/* A snapshot: {version, app, {field, value, ...}, ...}. Each app's record replaces the
 * one known unless a local flip not yet shared is newer: that one is written instead. */
static void
on_snapshot(redisAsyncContext *ac, void *r, void *priv)
{
	struct px_fleet *fl = priv;
	redisReply *reply = r;
	size_t i, k;
	int napps = 0, capped = 0, j;
	char vtext[24], n[24];
	(void)ac;

	if (!reply)
		return;
	sent_pop(&fl->cmd);
	fl->snapshot_busy = 0;
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1 ||
	    reply->element[0]->type != REDIS_REPLY_STRING) {
		char why[240];
		snprintf(why, sizeof why, "redis: snapshot: %.200s",
		         reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
		drop_later(fl, why);
		return;
	}
	for (i = 1; i + 1 < reply->elements; i += 2) {
		redisReply *id = reply->element[i], *h = reply->element[i + 1];
		int v[NFIELDS] = {-1, -1, -1}, f;
		uint64_t ver = 0, at[NFIELDS] = {0, 0, 0};
		unsigned take = 0;
		struct pol_app_change ch;
		struct fapp *a;

		if (id->type != REDIS_REPLY_STRING || h->type != REDIS_REPLY_ARRAY)
			continue;
		for (k = 0; k + 1 < h->elements; k += 2) {
			const char *name = h->element[k]->str, *val = h->element[k + 1]->str;
			if (h->element[k]->type != REDIS_REPLY_STRING ||
			    h->element[k + 1]->type != REDIS_REPLY_STRING)
				continue;
			if (!strcmp(name, "version"))
				ver = strtoull(val, NULL, 10);
			for (f = 0; f < NFIELDS; f++) {
				if (!strcmp(name, FIELD[f]))
					v[f] = value_parse(f, val); /* (not syncgate's: ignored) */
				else if (!strncmp(name, "at:", 3) && !strcmp(name + 3, FIELD[f]))
					at[f] = strtoull(val, NULL, 10);
			}
		}
		if (!(a = fapp_get(fl, id->str, 1))) {
			capped++;
			continue;
		}
		napps++;
		a->version = ver;
		/* per switch: the fleet's, unless one flipped here is as new or newer (written at a
		 * resync, or being written now) */
		for (f = 0; f < NFIELDS; f++) {
			if (v[f] < 0 || ((a->pending & 1u << f) && a->at[f] >= at[f]))
				continue;
			a->v[f] = v[f];
			a->at[f] = at[f];
			a->pending &= ~(1u << f);
			take |= 1u << f;
		}
		ch = change_of(a, take);
		apply_change(fl, a->id, &ch);
	}
	fl->version = strtoull(reply->element[0]->str, NULL, 10);
	if (capped) {
		char c[24];
		snprintf(c, sizeof c, "%d", capped);
		px_log(PX_LOG_WARN, "fleet_error", "why", "apps over FLEET_APPS_MAX (4096) ignored",
		       "#apps", c, NULL);
	}
	/* the first snapshot of a connection: the flips made while away, if still the newest */
	for (j = 0; fl->resync && j < fl->napps; j++)
		if (fl->apps[j].pending && !fl->apps[j].writing &&
		    write_record(fl, &fl->apps[j], fl->apps[j].pending, NULL) == 0)
			px_log(PX_LOG_INFO, "fleet_resync_pushed", "app", fl->apps[j].id, NULL);
	fl->resync = 0;
	fl->state_ms = mono_ms();
	if (!fl->connected) {
		/* the notices published while this instance was away are lost: its workers drop
		 * every cached fact; and if facts changed here meanwhile (invalidations queued and
		 * not announced), every other instance is told to do the same ("flush") */
		uint64_t seq = px_shared_forget_seq(fl->sh);
		if (seq != fl->forget_seen) {
			char msg[40];
			int len = snprintf(msg, sizeof msg, "flush %s", fl->iid);
			publish(fl, msg, (size_t)len);
		}
		fl->forget_seen = seq;
		px_shared_forget(fl->sh, NULL, 0, NULL, 0, 0); /* (0: local only, not announced) */
		fl->connected = 1;
		fl->stale_since = 0;
		fl->why[0] = 0;
		fl->backoff = 0;
		px_log(PX_LOG_INFO, "fleet_connected", "redis", fl->conf.redis, "instance",
		       fl->conf.instance, NULL);
		flush_queues(fl);
	}
	snprintf(vtext, sizeof vtext, "%llu", (unsigned long long)fl->version);
	snprintf(n, sizeof n, "%d", napps);
	px_log(PX_LOG_INFO, "fleet_snapshot", "#version", vtext, "#apps", n, NULL);
	save_state(fl);
	if (fl->snapshot_again) { /* a notice came meanwhile: this snapshot may predate it */
		fl->snapshot_again = 0;
		send_snapshot(fl);
	}
}

static void
send_snapshot(struct px_fleet *fl)
{
	const char *argv[6] = {"EVAL", SNAPSHOT_LUA, "2", fl->k_version, fl->k_apps, fl->conf.prefix};
	size_t lens[6];
	int i;

	if (fl->snapshot_busy)
		return;
	for (i = 0; i < 6; i++)
		lens[i] = strlen(argv[i]);
	if (command(fl, on_snapshot, fl, 6, argv, lens) == 0)
		fl->snapshot_busy = 1;
}

static void
on_version(redisAsyncContext *ac, void *r, void *priv)
{
	struct px_fleet *fl = priv;
	redisReply *reply = r;
	(void)ac;

	if (!reply)
		return;
	sent_pop(&fl->cmd);
	fl->poll_busy = 0;
	if (reply->type == REDIS_REPLY_ERROR) {
		/* (NOAUTH after an ACL change, WRONGTYPE, LOADING): stale until it works again */
		char why[240];
		snprintf(why, sizeof why, "redis: version poll: %.200s", reply->str);
		drop_later(fl, why);
		return;
	}
	fl->state_ms = mono_ms();
	if (reply->type == REDIS_REPLY_STRING && strtoull(reply->str, NULL, 10) != fl->version)
		send_snapshot(fl); /* (REDIS_REPLY_NIL: nothing ever written) */
}

/* ---- budgets and invalidations ---- */

/* KEYS: the window's counter. ARGV: refusals, expiry ms. Returns the fleet's total. */
static const char BUDGET_LUA[] = "local t = redis.call('INCRBY', KEYS[1], ARGV[1]) "
                                 "redis.call('PEXPIRE', KEYS[1], ARGV[2]) return t";

struct budget_req {
	struct px_fleet *fl;
	struct px_budget_push p;        /* p.key (app), p.user: owned */
};

static void
log_budget(const char *app, const char *user, enum px_budget ev, uint64_t until,
           uint64_t ban_until, const char *by, int report)
{
	uint64_t now = px_wall_ms();
	char s[24];
	if (ev == PX_BUDGET_OK)
		return;
	snprintf(s, sizeof s, "%llu", (unsigned long long)(until > now ? (until - now + 999) / 1000 : 0));
	px_log(PX_LOG_WARN, report ? "would_budget" : "budget_exhausted", "app", app, "user", user,
	       "#fleet", "true", "via", by, "#for_s", s, NULL);
	if (ev == PX_BUDGET_BANNED) {
		snprintf(s, sizeof s, "%llu",
		         (unsigned long long)(ban_until > now ? (ban_until - now + 999) / 1000 : 0));
		px_log(PX_LOG_WARN, report ? "would_ban" : "banned", "app", app, "user", user, "#fleet",
		       "true", "via", by, "#ban_s", s, NULL);
	}
}

/* APP's section ("*": [app:*]), or NULL when this file has none of that id; *CFG holds it. */
static const struct pol_app *
app_of(struct px_fleet *fl, const char *app, struct pol_config **cfg)
{
	int star = !strcmp(app, "*");
	const struct pol_app *a;
	*cfg = px_shared_policy(fl->sh);
	a = pol_config_app(*cfg, star ? "" : app, star ? 0 : strlen(app));
	return star || a->id[0] ? a : NULL;
}

static void
free_budget_req(struct budget_req *b)
{
	free(b->p.key);
	free(b->p.user);
	free(b);
}

/* The fleet's total for a window: at or over the budget, the user is budgeted here (whatever
 * push took it there: a reply lost on the way must not leave the window unenforced) and,
 * when that changed something here, every instance is told. */
static void
on_budget(redisAsyncContext *ac, void *r, void *priv)
{
	struct budget_req *b = priv;
	struct px_fleet *fl = b->fl;
	redisReply *reply = r;
	(void)ac;

	if (reply) {
		sent_pop(&fl->cmd);
		if (reply->type == REDIS_REPLY_INTEGER && reply->integer >= (long long)b->p.budget) {
			uint64_t now = px_wall_ms(), until = (b->p.window + 1) * b->p.window_ms,
			         ban = b->p.ban_ms ? now + b->p.ban_ms : 0;
			struct pol_config *cfg;
			const struct pol_app *a = app_of(fl, b->p.app, &cfg);
			int report = a && a->mode == POL_MODE_REPORT;
			enum px_budget ev = until > now ? px_shared_budget_mark(fl->sh, b->p.app, b->p.user,
			                                                        until, report ? 0 : ban, now)
			                                : PX_BUDGET_OK; /* (that window is over) */
			pol_config_unref(cfg);
			log_budget(b->p.app, b->p.user, ev, until, ban, "total", report);
			if (ev != PX_BUDGET_OK) {
				size_t len;
				char *msg = fmt_alloc(&len, "budget %s %s %llu %llu %s", fl->iid, b->p.app,
				                      (unsigned long long)until, (unsigned long long)ban, b->p.user);
				if (!msg || publish(fl, msg, len))
					fleet_error_quiet(fl, "a budget notice could not be sent");
				free(msg);
			}
		} else if (reply->type == REDIS_REPLY_ERROR) {
			char why[240];
			snprintf(why, sizeof why, "redis: budget: %.200s", reply->str);
			fleet_error_quiet(fl, why);
		}
	}
	free_budget_req(b);
}

/* The refusals queued since the last push, added to the fleet's totals (at most every
 * BUDGET_PUSH_MS, one command per user and window). One that cannot be sent now is queued
 * again. */
static void
push_budgets(struct px_fleet *fl)
{
	struct px_budget_push *p;
	int n, i;

	fl->budget_due = 0;
	fl->budget_pushed = mono_ms();
	n = px_shared_budget_pending(fl->sh, &p);
	for (i = 0; i < n; i++) {
		struct budget_req *b = calloc(1, sizeof *b);
		char cnt[16], exp[24], *key;
		const char *argv[6];
		size_t lens[6], kl;
		int k;

		key = fmt_alloc(&kl, "%sbudget:%s:%llu:%s", fl->conf.prefix, p[i].app,
		                (unsigned long long)p[i].window, p[i].user);
		if (b) {
			b->fl = fl;
			b->p = p[i];
			p[i].key = p[i].user = NULL; /* (the request owns them now) */
			b->p.app = b->p.key;
		}
		if (!b || !key) {
			free(key);
			if (b)
				px_shared_budget_requeue(fl->sh, &b->p);
			else
				px_shared_budget_requeue(fl->sh, &p[i]);
			if (b)
				free_budget_req(b);
			continue;
		}
		snprintf(cnt, sizeof cnt, "%u", b->p.n);
		snprintf(exp, sizeof exp, "%llu", (unsigned long long)(2 * b->p.window_ms));
		argv[0] = "EVAL";
		argv[1] = BUDGET_LUA;
		argv[2] = "1";
		argv[3] = key;
		argv[4] = cnt;
		argv[5] = exp;
		for (k = 0; k < 6; k++)
			lens[k] = k == 3 ? kl : strlen(argv[k]);
		if (command(fl, on_budget, b, 6, argv, lens)) {
			px_shared_budget_requeue(fl->sh, &b->p); /* (sent with the next push) */
			free_budget_req(b);
			fl->budget_due = 1;
		}
		free(key);
	}
	px_shared_budget_pushes_free(p, n > 0 ? n : 0);
}

static void
publish_forget(void *arg, const char *app, int kind, const char *id, size_t idlen)
{
	struct px_fleet *fl = arg;
	size_t len;
	char *msg = !app ? fmt_alloc(&len, "flush %s", fl->iid)
	                 : fmt_alloc(&len, "forget %s %s %s %.*s", fl->iid, app,
	                             kind ? "conversation" : "user", (int)idlen, id);
	if (!msg || publish(fl, msg, len))
		fl->forget_failed = 1;
	free(msg);
}

/* What the workers queued: invalidations are announced at once (the next decision on
 * another instance may need them); refusals are pushed at most every BUDGET_PUSH_MS. While
 * disconnected both wait (refusals in px_shared; invalidations in its ring, replaced by one
 * "flush" at the resync when any were missed). */
static void
flush_queues(struct px_fleet *fl)
{
	uint64_t seen = fl->forget_seen;

	if (!fl->connected)
		return;
	fl->forget_failed = 0;
	fl->forget_seen = px_shared_forgets(fl->sh, fl->forget_seen, 1, publish_forget, fl);
	if (fl->forget_failed) {
		/* (sent again with the next: an invalidation is idempotent) */
		fl->forget_seen = seen;
		fleet_error_quiet(fl, "invalidations could not be announced (too many commands in flight)");
	}
	if (mono_ms() - fl->budget_pushed >= BUDGET_PUSH_MS)
		push_budgets(fl);
	else
		fl->budget_due = 1; /* (tick_cb pushes them) */
}

/* A worker queued something: KICK_FD wakes the loop (one byte until it is read). */
static void
kick(void *arg)
{
	struct px_fleet *fl = arg;
	if (!atomic_exchange(&fl->kicked, 1)) {
		char c = 1;
		if (write(fl->kick_fd[1], &c, 1) < 0) {
			/* (full: a wake-up is already pending) */
		}
	}
}

static void
kick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_fleet *fl = arg;
	char buf[64];
	(void)what;
	while (read(fd, buf, sizeof buf) > 0)
		;
	atomic_store(&fl->kicked, 0);
	flush_queues(fl);
}

/* ---- notices ---- */

/*
 * A message on the channel. Anyone who can publish there is trusted as far as these go:
 * switches are only ever read back from the hashes; an invalidation only drops a cached fact;
 * a budget notice only budgets a user of an app of this file, for at most that app's window
 * and ban from now.
 */
static void
on_notice(struct px_fleet *fl, const char *msg, size_t len)
{
	char *buf, *f[5], *rest, *sp;
	int n = 0;

	if (len >= NOTICE_MAX || !(buf = malloc(len + 1)))
		return;
	memcpy(buf, msg, len);
	buf[len] = 0;
	/* up to five words; REST is what follows the fifth (an id or a user may hold spaces) */
	for (rest = buf; n < 5 && rest; n++) {
		f[n] = rest;
		if ((sp = strchr(rest, ' ')))
			*sp++ = 0;
		rest = sp;
	}
	if (n >= 2 && !strcmp(f[0], "switch")) {
		if (strtoull(f[1], NULL, 10) != fl->version) {
			fl->notices[PX_FLEET_SWITCH]++;
			if (fl->snapshot_busy)
				fl->snapshot_again = 1; /* (the one in flight may predate it) */
			else
				send_snapshot(fl);
		}
	} else if (n < 2 || !strcmp(f[1], fl->iid)) {
		/* (our own) */
	} else if (!strcmp(f[0], "flush")) {
		fl->notices[PX_FLEET_FORGET]++;
		px_shared_forget(fl->sh, NULL, 0, NULL, 0, 0);
	} else if (!strcmp(f[0], "forget") && n == 5 &&
	           (!strcmp(f[3], "user") || !strcmp(f[3], "conversation"))) {
		/* "forget IID APP KIND ID": the id is the rest of the message from its first byte */
		const char *id = msg + (f[4] - buf);
		fl->notices[PX_FLEET_FORGET]++;
		px_shared_forget(fl->sh, f[2], !strcmp(f[3], "conversation"), id,
		                 len - (size_t)(f[4] - buf), 0);
	} else if (!strcmp(f[0], "budget") && n == 5 && rest && *rest) {
		/* "budget IID APP UNTIL BAN_UNTIL USER": USER is the rest */
		uint64_t now = px_wall_ms(), until = strtoull(f[3], NULL, 10), ban = strtoull(f[4], NULL, 10);
		struct pol_config *cfg;
		const struct pol_app *a = app_of(fl, f[2], &cfg);
		if (a && a->budget && a->mode != POL_MODE_REPORT && until > now) {
			if (until > now + a->budget_window_ms)
				until = now + a->budget_window_ms;
			ban = !a->ban_ms || ban <= now ? 0 : ban > now + a->ban_ms ? now + a->ban_ms : ban;
			fl->notices[PX_FLEET_BUDGET]++;
			log_budget(f[2], rest, px_shared_budget_mark(fl->sh, f[2], rest, until, ban, now),
			           until, ban, "notice", 0);
		}
		pol_config_unref(cfg);
	}
	free(buf);
}

/* The subscriber: SUBSCRIBE's confirmation, then every message on the channel. */
static void
on_message(redisAsyncContext *ac, void *r, void *priv)
{
	struct px_fleet *fl = priv;
	redisReply *reply = r;
	(void)ac;

	if (!reply)
		return;
	if (reply->type == REDIS_REPLY_ERROR) {
		char why[240];
		snprintf(why, sizeof why, "redis: subscribe: %.200s", reply->str);
		fleet_error(fl, why);
		drop_later(fl, why);
		return;
	}
	if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
	    reply->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (!strcmp(reply->element[0]->str, "subscribe")) {
		fl->sub.answered = 1;
		/* subscribed: what was published before is in the snapshot taken now */
		send_snapshot(fl);
	} else if (!strcmp(reply->element[0]->str, "message") &&
	           reply->element[2]->type == REDIS_REPLY_STRING) {
		on_notice(fl, reply->element[2]->str, reply->element[2]->len);
	}
}

/* ---- connections ---- */

static void
on_connect(const redisAsyncContext *ac, int status)
{
	struct rconn *c = ac->data;
	if (status != REDIS_OK && c) {
		char why[240];
		snprintf(why, sizeof why, "connect: %.200s", ac->errstr);
		c->ac = NULL; /* hiredis frees it */
		drop_later(c->fl, why);
	}
}

static void
on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rconn *c = ac->data;
	if (!c)
		return;
	if (c->ac == ac) { /* (not a drop of ours) */
		char why[240];
		snprintf(why, sizeof why, "%.200s", status == REDIS_OK ? "connection closed"
		                                                   : ac->errstr[0] ? ac->errstr
		                                                                    : "connection lost");
		c->ac = NULL;
		drop_later(c->fl, why);
	}
}

static int
open_conn(struct px_fleet *fl, struct rconn *c)
{
	const struct pol_fleet *f = &fl->conf;
	redisAsyncContext *ac = f->redis_unix[0] ? redisAsyncConnectUnix(f->redis_unix)
	                                         : redisAsyncConnect(f->redis_host, atoi(f->redis_port));
	if (!ac)
		return -1;
	if (ac->err) {
		snprintf(fl->drop_why, sizeof fl->drop_why, "connect: %.150s", ac->errstr);
		redisAsyncFree(ac);
		return -1;
	}
	ac->data = c;
	c->ac = ac;
	c->n = c->head = 0;
	c->answered = 0;
	c->started_ms = mono_ms();
	if (redisLibeventAttach(ac, fl->base) != REDIS_OK) {
		c->ac = NULL;
		ac->data = NULL;
		redisAsyncFree(ac);
		return -1;
	}
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	/* a half-open subscriber would lose notices unnoticed: the kernel probes it */
	redisEnableKeepAlive(&ac->c);
	if (f->password[0]) {
		const char *argv[2] = {"AUTH", f->password};
		size_t lens[2] = {4, strlen(f->password)};
		/* (the subscriber's refusal shows as its SUBSCRIBE failing: a disconnect) */
		if (redisAsyncCommandArgv(ac, c == &fl->cmd ? on_auth : NULL, fl, 2, argv, lens) !=
		    REDIS_OK)
			return -1;
		if (c == &fl->cmd)
			sent_push(c);
	}
	return 0;
}

static void
fleet_connect(struct px_fleet *fl)
{
	const char *argv[2] = {"SUBSCRIBE", fl->channel};
	size_t lens[2] = {9, strlen(fl->channel)};

	fl->gen++; /* (a drop scheduled for the connections before is void) */
	fl->drop_why[0] = 0;
	fl->snapshot_busy = fl->poll_busy = fl->snapshot_again = 0;
	fl->resync = 1;
	if (open_conn(fl, &fl->cmd) || open_conn(fl, &fl->sub) ||
	    redisAsyncCommandArgv(fl->sub.ac, on_message, fl, 2, argv, lens) != REDIS_OK)
		fleet_drop(fl, fl->drop_why[0] ? fl->drop_why : "connect: out of memory");
}

static void
close_conn(struct rconn *c)
{
	redisAsyncContext *ac = c->ac;
	c->ac = NULL;
	c->n = 0;
	if (ac) {
		ac->data = NULL; /* its callbacks see no connection of ours */
		redisAsyncFree(ac);
	}
}

/* Both connections go; a reconnect is due after the back-off. */
static void
fleet_drop(struct px_fleet *fl, const char *why)
{
	uint64_t now = mono_ms();
	char reason[200];

	snprintf(reason, sizeof reason, "%s", why); /* (WHY may be fl->why or fl->drop_why) */
	fl->gen++;
	fl->drop_armed = 0;
	fl->drop_why[0] = 0;
	event_del(fl->drop_ev);
	if (fl->connected) {
		fl->stale_since = px_wall_ms();
		px_log(PX_LOG_WARN, "fleet_disconnected", "redis", fl->conf.redis, "why", reason, NULL);
	}
	/* one fleet_error per distinct reason while reconnecting, not one per attempt */
	if (fl->connected || !fl->why[0] || strcmp(fl->why, reason))
		fleet_error(fl, reason);
	fl->connected = 0;
	/* the commands in flight are answered (NULL) now, with fl->why saying why */
	close_conn(&fl->cmd);
	close_conn(&fl->sub);
	fl->snapshot_busy = fl->poll_busy = 0;
	fl->backoff = fl->backoff ? fl->backoff * 2 : BACKOFF_MIN_MS;
	if (fl->backoff > BACKOFF_MAX_MS)
		fl->backoff = BACKOFF_MAX_MS;
	fl->rng = fl->rng * 1103515245u + 12345u; /* (seeded per process: no fleet-wide lockstep) */
	fl->next_connect = now + fl->backoff + (fl->rng >> 8) % (fl->backoff / 4 + 1);
}

static void
drop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_fleet *fl = arg;
	char why[200];
	(void)fd;
	(void)what;
	snprintf(why, sizeof why, "%s", fl->drop_why[0] ? fl->drop_why : "error");
	fl->drop_armed = 0;
	if (fl->drop_gen == fl->gen) /* (else those connections were dropped already) */
		fleet_drop(fl, why);
}

static void
tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct px_fleet *fl = arg;
	uint64_t now = mono_ms(), to = fl->conf.timeout_ms;
	(void)fd;
	(void)what;

	if (fl->drop_armed)
		return; /* (drop_cb first: it sets the back-off) */
	if (!fl->cmd.ac && !fl->sub.ac) {
		if (now >= fl->next_connect)
			fleet_connect(fl);
		return;
	}
	if (fl->budget_due && fl->connected && now - fl->budget_pushed >= BUDGET_PUSH_MS)
		push_budgets(fl);
	if ((fl->cmd.n && now - fl->cmd.sent[fl->cmd.head] > to) ||
	    (!fl->cmd.answered && now - fl->cmd.started_ms > to) ||
	    (!fl->sub.answered && now - fl->sub.started_ms > to)) {
		char why[120];
		snprintf(why, sizeof why, "no answer within %ums ([fleet] timeout)", (unsigned)to);
		fleet_drop(fl, why);
		return;
	}
	if (fl->connected && now >= fl->next_poll && !fl->poll_busy) {
		const char *argv[2] = {"GET", fl->k_version};
		size_t lens[2] = {3, strlen(fl->k_version)};
		fl->next_poll = now + fl->conf.poll_ms;
		if (command(fl, on_version, fl, 2, argv, lens) == 0)
			fl->poll_busy = 1;
	}
}

struct px_fleet *
px_fleet_new(struct event_base *base, struct px_shared *sh, const struct pol_fleet *conf)
{
	struct px_fleet *fl = calloc(1, sizeof *fl);
	unsigned char r[8];
	struct timeval tv = {0, TICK_MS * 1000};
	int i;

	if (!fl)
		return NULL;
	fl->base = base;
	fl->sh = sh;
	fl->conf = *conf;
	fl->kick_fd[0] = fl->kick_fd[1] = -1;
	fl->cmd.fl = fl->sub.fl = fl;
	if (!fl->conf.instance[0]) {
		char host[64] = "syncgate";
		gethostname(host, sizeof host - 1);
		host[sizeof host - 1] = 0;
		snprintf(fl->conf.instance, sizeof fl->conf.instance, "%s-%ld", host, (long)getpid());
	}
	if (RAND_bytes(r, sizeof r) != 1)
		for (i = 0; i < 8; i++)
			r[i] = (unsigned char)(rand() ^ getpid());
	for (i = 0; i < 8; i++)
		snprintf(fl->iid + 2 * i, 3, "%02x", r[i]);
	memcpy(&fl->rng, r, sizeof fl->rng);
	snprintf(fl->channel, sizeof fl->channel, "%sevents", conf->prefix);
	snprintf(fl->k_version, sizeof fl->k_version, "%sversion", conf->prefix);
	snprintf(fl->k_apps, sizeof fl->k_apps, "%sapps", conf->prefix);
	fl->stale_since = px_wall_ms();
	if (evutil_socketpair(AF_UNIX, SOCK_STREAM, 0, fl->kick_fd) ||
	    evutil_make_socket_nonblocking(fl->kick_fd[0]) ||
	    evutil_make_socket_nonblocking(fl->kick_fd[1]) ||
	    !(fl->kick_ev = event_new(base, fl->kick_fd[0], EV_READ | EV_PERSIST, kick_cb, fl)) ||
	    !(fl->drop_ev = event_new(base, -1, 0, drop_cb, fl)) ||
	    !(fl->tick = event_new(base, -1, EV_PERSIST, tick_cb, fl)) ||
	    event_add(fl->kick_ev, NULL) || event_add(fl->tick, &tv)) {
		px_fleet_free(fl);
		return NULL;
	}
	evutil_make_socket_closeonexec(fl->kick_fd[0]);
	evutil_make_socket_closeonexec(fl->kick_fd[1]);
	load_state(fl);
	fl->forget_seen = px_shared_forget_seq(sh);
	px_shared_set_fleet(sh, kick, fl);
	fleet_connect(fl);
	return fl;
}

void
px_fleet_free(struct px_fleet *fl)
{
	if (!fl)
		return;
	px_shared_set_fleet(fl->sh, NULL, NULL);
	close_conn(&fl->cmd);
	close_conn(&fl->sub);
	if (fl->tick)
		event_free(fl->tick);
	if (fl->kick_ev)
		event_free(fl->kick_ev);
	if (fl->drop_ev)
		event_free(fl->drop_ev);
	if (fl->kick_fd[0] >= 0)
		evutil_closesocket(fl->kick_fd[0]);
	if (fl->kick_fd[1] >= 0)
		evutil_closesocket(fl->kick_fd[1]);
	free(fl->apps);
	free(fl->saved);
	free(fl);
}

void
px_fleet_status(const struct px_fleet *fl, struct px_fleet_status *st)
{
	memset(st, 0, sizeof *st);
	st->connected = fl->connected;
	st->version = fl->version;
	st->state_age_ms = fl->state_ms ? mono_ms() - fl->state_ms : UINT64_MAX;
	st->stale_since_ms = fl->connected ? 0 : fl->stale_since;
	st->errors = fl->errors;
	memcpy(st->notices, fl->notices, sizeof st->notices);
	st->instance = fl->conf.instance;
	st->redis = fl->conf.redis;
	snprintf(st->why, sizeof st->why, "%s", fl->why);
}
