/*
 * policy/config.c - INI loader for struct pol_config (see config.h for the contract).
 *
 * inih calls handler() once per "name = value" line. handler() returns 0 on the first bad
 * line and keeps the message; inih reports that line's number as the parse result, which
 * gives the "FILE:LINE: message" form without inih's optional line-number handler.
 *
 * inih reads the text through read_line(), which counts lines and sees each one first: it
 * removes leading whitespace (so indented keys, as in HAProxy-style files, are keys, not
 * inih's "continuation lines" that would append to the previous value), and it refuses a
 * section that appears twice and a key given twice in one section, naming both lines: the
 * last value silently winning would let a stray "user_sync = on" turn protection off.
 */
#include "policy/config.h"
#include "policy/route.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define UNSET (-1)

enum lim_kind { LIM_COUNT, LIM_BYTES, LIM_MS, LIM_SECONDS };

struct lim_def {
	const char *name;
	size_t off;
	int is64;
	enum lim_kind kind;
	uint64_t min, max, def;
};

#define L32(f) offsetof(struct pol_limits, f), 0
#define L64(f) offsetof(struct pol_limits, f), 1
#define KiB 1024ull
#define MiB (1024ull * 1024)

/* The one table of peer-facing caps and timeouts: name in [limits], range, default. */
static const struct lim_def lim_defs[] = {
	{"request_line", L32(request_line_bytes), LIM_BYTES, 256, 64 * KiB, 8 * KiB},
	{"header_bytes", L32(header_bytes), LIM_BYTES, 1 * KiB, 1 * MiB, 32 * KiB},
	{"header_count", L32(header_count), LIM_COUNT, 8, 1000, 100},
	{"body", L64(body_bytes), LIM_BYTES, 0, 1024ull * 1024 * MiB, 16 * MiB},
	{"decide_body", L32(decide_body_bytes), LIM_BYTES, 0, 16 * MiB, 64 * KiB},
	{"response_header_bytes", L32(response_header_bytes), LIM_BYTES, 1 * KiB, 1 * MiB, 64 * KiB},
	{"ws_message", L32(ws_message_bytes), LIM_BYTES, 125, 64 * MiB, 1 * MiB},
	{"ws_fragments", L32(ws_fragments), LIM_COUNT, 1, 100000, 1024},
	{"json_depth", L32(json_depth), LIM_COUNT, 4, 512, 64},
	{"json_tokens", L32(json_tokens), LIM_COUNT, 16, 4000000, 100000},
	{"batch_actions", L32(batch_actions), LIM_COUNT, 1, 10000, 100},
	{"max_connections", L32(max_connections), LIM_COUNT, 1, 1000000, 9000},
	{"max_connections_per_client", L32(max_connections_per_client), LIM_COUNT, 0, 1000000, 1000},
	{"header_timeout", L32(header_timeout_ms), LIM_MS, 100, 3600000, 10000},
	{"body_idle", L32(body_idle_ms), LIM_MS, 100, 3600000, 30000},
	{"keepalive_idle", L32(keepalive_idle_ms), LIM_MS, 100, 3600000, 60000},
	{"upstream_connect", L32(upstream_connect_ms), LIM_MS, 10, 600000, 5000},
	{"upstream_response", L32(upstream_response_ms), LIM_MS, 10, 3600000, 30000},
	{"ws_idle", L32(ws_idle_ms), LIM_MS, 1000, 86400000, 120000},
	{"shutdown_grace", L32(shutdown_grace_ms), LIM_MS, 0, 3600000, 10000},
	{"upstream_idle", L32(upstream_idle_ms), LIM_MS, 100, 3600000, 30000},
	{"upstream_pool", L32(upstream_pool), LIM_COUNT, 0, 100000, 256},
	{"lookup_timeout", L32(lookup_timeout_ms), LIM_MS, 10, 600000, 2000},
	{"lookup_cache_ttl", L32(lookup_cache_ttl_ms), LIM_MS, 0, 86400000, 30000},
	{"lookup_negative_ttl", L32(lookup_negative_ttl_ms), LIM_MS, 0, 600000, 1000},
	{"lookup_max_inflight", L32(lookup_max_inflight), LIM_COUNT, 1, 100000, 256},
	{"lookup_cache_memory", L32(lookup_cache_bytes), LIM_BYTES, 64 * KiB, 1024 * MiB, 32 * MiB},
	{"jwt_clock_skew", L32(jwt_clock_skew_s), LIM_SECONDS, 0, 3600, 60},
	{"tls_handshake", L32(tls_handshake_ms), LIM_MS, 100, 600000, 10000},
};

/* An app section while loading: UNSET fields inherit [app:*] once the whole file is read. */
struct app_draft {
	char id[POL_APPID_MAX + 1];
	int user_sync, conversation_sync, mode, identity, strip_locked;
	int budget_set, ban_set;
	uint32_t budget, budget_window_ms, ban_ms;
	struct pol_locked locked[POL_FIELDS_KINDS];
	int locked_set[POL_FIELDS_KINDS];
	char *secret_key;
	int secret_key_set;
	int identity_line;      /* where identity was set (an error names it) */
};

#define MAX_LINE 4096 /* inih's own line buffer is smaller: a longer line is an error there */

/* A section or key seen so far, with its line (duplicate detection). */
struct seen {
	char name[POL_APPID_MAX + 8];
	int line;
};


struct loader {
	struct pol_config *c;
	const char *name;
	char msg[POL_ERR_MAX];
	int failed;
	int fail_line;         /* the line of the first error found outside handler() */
	/* read_line()'s state */
	int line;              /* the line inih is handling now */
	FILE *file;            /* the file read, or NULL for a string */
	const char *text;      /* the string's rest */
	struct seen *sections; /* every section so far */
	int nsections, csections;
	struct seen *keys;     /* the keys of the current section */
	int nkeys, ckeys;
	struct app_draft def;
	struct app_draft *apps;
	int napps, capps;
	int seen_upstream;
	int seen_up_tls_key;   /* an upstream_* TLS key was written (needs https://) */
	char section[POL_NAME_MAX + 16]; /* the section read_line() is in */
	char raw[MAX_LINE];    /* the line inih is handling, as written (route tests) */
	struct up_draft *ups;  /* [upstream:NAME] sections */
	int nups;
	struct route_draft *routes; /* [route:NAME] sections */
	int nroutes, croutes;
	struct route_test *tests;   /* [route-test] lines */
	int ntests, ctests;
	char lookup_name[POL_NAME_MAX + 1];
	int lookup_line;
};

/* An [upstream:NAME] section while loading. */
struct up_draft {
	struct pol_upstream u;
	int seen_url, pool_set, host_set, tls_key_line; /* a TLS key's line (needs https://) */
};

/* A [route:NAME] section while loading: upstream names resolve once every section is read. */
struct route_draft {
	struct pol_route r;
	char upstream[POL_NAME_MAX + 1];
	int upstream_line, match_line, rewrite_line, sync_set;
};

/* A [route-test] line: "METHOD TARGET -> key=value ...". */
struct route_test {
	int line;
	char *text;
};

#define DEFAULT_CIPHERS                                                                   \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                       \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                       \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"


static int
fail(struct loader *ld, const char *fmt, const char *a, const char *b)
{
	if (!ld->failed) {
		ld->failed = 1;
		snprintf(ld->msg, sizeof ld->msg, fmt, a, b);
	}
	return 0;
}

static int
parse_bool(const char *v)
{
	if (!strcmp(v, "on") || !strcmp(v, "yes") || !strcmp(v, "true") || !strcmp(v, "1"))
		return 1;
	if (!strcmp(v, "off") || !strcmp(v, "no") || !strcmp(v, "false") || !strcmp(v, "0"))
		return 0;
	return UNSET;
}

/* "12", "8k", "16m", "1g" (binary units) / "500ms", "10s", "2m", "1h". -1 on junk. */
static int
parse_number(const char *v, enum lim_kind kind, uint64_t *out)
{
	char *end;
	uint64_t n, mul = 1;

	if (!isdigit((unsigned char)v[0]))
		return -1;
	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno)
		return -1;
	switch (kind) {
	case LIM_COUNT:
		if (*end)
			return -1;
		break;
	case LIM_BYTES:
		if (!*end)
			mul = 1;
		else if (!strcasecmp(end, "k"))
			mul = KiB;
		else if (!strcasecmp(end, "m"))
			mul = MiB;
		else if (!strcasecmp(end, "g"))
			mul = 1024 * MiB;
		else
			return -1;
		break;
	case LIM_MS:
	case LIM_SECONDS:
		if (!strcmp(end, "ms"))
			mul = 1;
		else if (!strcmp(end, "s") || (!*end && kind == LIM_SECONDS))
			mul = 1000;
		else if (!strcmp(end, "m"))
			mul = 60000;
		else if (!strcmp(end, "h"))
			mul = 3600000;
		else
			return -1;
		break;
	}
	if (n > UINT64_MAX / mul)
		return -1;
	n *= mul;
	if (kind == LIM_SECONDS) {
		if (n % 1000)
			return -1;
		n /= 1000;
	}
	*out = n;
	return 0;
}

/* "host:port" or "[v6]:port" into HOST / PORT. */
static int
parse_hostport(const char *v, char *host, size_t hostsz, char *port)
{
	const char *colon;
	size_t hl;
	char *end;
	long p;

	if (v[0] == '[') {
		const char *rb = strchr(v, ']');
		if (!rb || rb[1] != ':')
			return -1;
		hl = (size_t)(rb - v - 1);
		v++;
		colon = rb + 1;
	} else {
		colon = strrchr(v, ':');
		if (!colon)
			return -1;
		hl = (size_t)(colon - v);
	}
	if (hl == 0 || hl >= hostsz)
		return -1;
	p = strtol(colon + 1, &end, 10);
	if (*end || end == colon + 1 || p < 1 || p > 65535)
		return -1;
	memcpy(host, v, hl);
	host[hl] = 0;
	snprintf(port, 8, "%ld", p);
	return 0;
}

static char *
trim(char *s)
{
	char *e;
	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

/* 1 if HOST listens on every address (so it overlaps any other listener on its port). */
static int
wildcard(const char *host)
{
	return !strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !strcmp(host, "*") || !host[0];
}

/* One address as text into binary; returns 4 or 16 (its length), or 0. */
static int
parse_addr(const char *text, unsigned char out[16], int *v6)
{
	if (inet_pton(AF_INET, text, out) == 1) {
		*v6 = 0;
		return 4;
	}
	if (inet_pton(AF_INET6, text, out) == 1) {
		*v6 = 1;
		return 16;
	}
	return 0;
}

/* [syncgate] trusted_proxies = ADDR[/BITS][, ...]: the load balancers whose X-Forwarded-For
 * is believed. */
static int
parse_trusted(struct loader *ld, const char *v)
{
	struct pol_config *c = ld->c;

	c->ntrusted = 0;
	while (*v) {
		size_t n = strcspn(v, ", \t");
		if (n) {
			char t[64], *slash;
			struct pol_cidr *e;
			int len;
			if (c->ntrusted == POL_TRUSTED_MAX)
				return fail(ld, "trusted_proxies: more than 32 networks%s%s", "", "");
			snprintf(t, sizeof t, "%.*s", (int)(n < 63 ? n : 63), v);
			e = &c->trusted[c->ntrusted];
			memset(e, 0, sizeof *e);
			slash = strchr(t, '/');
			if (slash)
				*slash = 0;
			len = n < 63 ? parse_addr(t, e->addr, &e->v6) : 0;
			e->bits = len * 8;
			if (len && slash) {
				char *end;
				long b = strtol(slash + 1, &end, 10);
				if (!slash[1] || *end || b < 0 || b > len * 8)
					len = 0;
				else
					e->bits = (int)b;
			}
			if (!len) {
				if (slash)
					*slash = '/';
				return fail(ld, "trusted_proxies: '%s' is not an address or ADDRESS/BITS%s", t, "");
			}
			c->ntrusted++;
		}
		v += n;
		v += strspn(v, ", \t");
	}
	return 1;
}

/* [syncgate] cors_origins = reflect | off | * | ORIGIN[, ORIGIN ...] */
static int
parse_cors(struct loader *ld, const char *v)
{
	struct pol_config *c = ld->c;

	c->ncors = 0;
	if (!strcmp(v, "reflect") || !strcmp(v, "off") || !strcmp(v, "*")) {
		c->cors = !strcmp(v, "reflect") ? POL_CORS_REFLECT : !strcmp(v, "off") ? POL_CORS_OFF : POL_CORS_ANY;
		return 1;
	}
	c->cors = POL_CORS_LIST;
	while (*v) {
		size_t n = strcspn(v, ", \t");
		if (n) {
			char o[84];
			if (c->ncors == POL_CORS_MAX)
				return fail(ld, "cors_origins: more than 16 origins%s%s", "", "");
			snprintf(o, sizeof o, "%.*s", (int)(n > 80 ? 80 : n), v);
			if (n >= POL_ORIGIN_MAX || !pol_origin_valid(v, n))
				return fail(ld, "cors_origins: '%s' is not an origin like https://app.example.com "
				            "(or reflect, off, *)%s", o, "");
			memcpy(c->cors_list[c->ncors], v, n);
			c->cors_list[c->ncors++][n] = 0;
		}
		v += n;
		v += strspn(v, ", \t");
	}
	if (!c->ncors)
		return fail(ld, "cors_origins: no origin given%s%s", "", "");
	return 1;
}

static int
parse_listen(struct loader *ld, const char *value)
{
	char buf[1024], *save = NULL, *tok;
	struct pol_config *c = ld->c;

	if (strlen(value) >= sizeof buf)
		return fail(ld, "listen: value too long%s%s", "", "");
	strcpy(buf, value);
	c->nlisten = 0;
	c->tls_listeners = 0;
	for (tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *t = trim(tok), *sp;
		int tls = 0, pp = 0;
		if (c->nlisten == POL_MAX_LISTEN)
			return fail(ld, "listen: at most 8 addresses%s%s", "", "");
		if ((sp = strpbrk(t, " \t"))) {
			char *flag, *fsave = NULL;
			*sp = 0;
			for (flag = strtok_r(sp + 1, " \t", &fsave); flag; flag = strtok_r(NULL, " \t", &fsave)) {
				if (!strcmp(flag, "tls"))
					tls = 1;
				else if (!strcmp(flag, "proxy_protocol"))
					pp = 1;
				else
					return fail(ld, "listen: '%s' has an unknown flag '%s' (tls, proxy_protocol)", t, flag);
			}
		}
		if (parse_hostport(t, c->listen[c->nlisten].host, sizeof c->listen[0].host,
		                   c->listen[c->nlisten].port))
			return fail(ld, "listen: '%s' is not HOST:PORT%s", t, "");
		for (int k = 0; k < c->nlisten; k++)
			if (!strcmp(c->listen[k].host, c->listen[c->nlisten].host) &&
			    !strcmp(c->listen[k].port, c->listen[c->nlisten].port))
				return fail(ld, "listen: '%s' is listed twice%s", t, "");
		c->listen[c->nlisten].tls = tls;
		c->listen[c->nlisten].proxy_protocol = pp;
		c->tls_listeners += tls;
		c->nlisten++;
	}
	if (!c->nlisten)
		return fail(ld, "listen: no address%s%s", "", "");
	return 1;
}

static int parse_url(const char *v, struct pol_upstream *u);

/* [syncgate] upstream = http(s)://HOST[:PORT]: the default upstream (the scheme's port when
 * none is written). */
static int
parse_upstream(struct loader *ld, const char *v)
{
	struct pol_config *c = ld->c;
	struct pol_upstream u;

	memset(&u, 0, sizeof u);
	if (strncmp(v, "http://", 7) && strncmp(v, "https://", 8))
		return fail(ld, "upstream: '%s' must be http://HOST:PORT or https://HOST:PORT%s", v, "");
	if (parse_url(v, &u))
		return fail(ld, strpbrk(v + 8, "/") && strcmp(strpbrk(v + 8, "/"), "/")
		                    ? "upstream: '%s' must not have a path%s"
		                    : "upstream: '%s' must be http(s)://HOST[:PORT]%s", v, "");
	memcpy(c->upstream_scheme, u.scheme, sizeof c->upstream_scheme);
	c->upstream_tls = u.tls;
	memcpy(c->upstream_host, u.host, sizeof c->upstream_host);
	memcpy(c->upstream_port, u.port, sizeof c->upstream_port);
	ld->seen_upstream = 1;
	return 1;
}

static char *
read_secret_file(const char *path)
{
	FILE *f = fopen(path, "r");
	char buf[1024];
	size_t n;

	if (!f)
		return NULL;
	n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	return strdup(trim(buf));
}

static int
valid_appid(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > POL_APPID_MAX)
		return 0;
	for (; *id; id++)
		if (!isalnum((unsigned char)*id) && *id != '_' && *id != '-' && *id != '.')
			return 0;
	return 1;
}

static struct app_draft *
app_section(struct loader *ld, const char *section)
{
	const char *id = section + 4;
	int i;

	if (!strcmp(id, "*"))
		return &ld->def;
	for (i = 0; i < ld->napps; i++)
		if (!strcmp(ld->apps[i].id, id))
			return &ld->apps[i];
	if (!valid_appid(id)) {
		fail(ld, "[%s]: app id must be 1-128 of [A-Za-z0-9_.-]%s", section, "");
		return NULL;
	}
	if (ld->napps == POL_MAX_APPS) {
		fail(ld, "[%s]: too many apps%s", section, "");
		return NULL;
	}
	if (ld->napps == ld->capps) {
		int nc = ld->capps ? ld->capps * 2 : 8;
		struct app_draft *na = realloc(ld->apps, (size_t)nc * sizeof *na);
		if (!na) {
			fail(ld, "out of memory%s%s", "", "");
			return NULL;
		}
		ld->apps = na;
		ld->capps = nc;
	}
	struct app_draft *a = &ld->apps[ld->napps++];
	memset(a, 0, sizeof *a);
	snprintf(a->id, sizeof a->id, "%s", id);
	a->user_sync = a->conversation_sync = a->mode = a->identity = a->strip_locked = UNSET;
	return a;
}

/*
 * "role, custom.plan": a comma-separated list of field names, each a JSON key or keys joined
 * by "." (a key inside an object: "custom.plan"), at most POL_LOCKED_MAX of them; "" or
 * "none" is the empty list. Returns 1, or 0 (failed).
 */
static int
parse_locked(struct loader *ld, struct pol_locked *l, const char *name, const char *value)
{
	const char *p = value;

	l->n = 0;
	if (!strcmp(value, "none"))
		return 1;
	while (*p) {
		const char *e = strchr(p, ','), *s = p;
		size_t n;
		while (*s == ' ' || *s == '\t')
			s++;
		n = (size_t)((e ? e : p + strlen(p)) - s);
		while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
			n--;
		if (!n || n >= POL_FIELD_MAX || s[0] == '.' || s[n - 1] == '.' || memchr(s, '"', n) ||
		    memchr(s, '\\', n) || memchr(s, ' ', n)) {
			char bad[POL_FIELD_MAX + 8];
			snprintf(bad, sizeof bad, "%.*s", (int)(n < POL_FIELD_MAX ? n : POL_FIELD_MAX), s);
			return fail(ld, "%s: '%s' is not a field name (key or key.key)", name, bad);
		}
		for (size_t i = 1; i < n; i++)
			if (s[i] == '.' && s[i - 1] == '.')
				return fail(ld, "%s: '%s' has an empty key", name, value);
		if (l->n == POL_LOCKED_MAX)
			return fail(ld, "%s: more than 16 fields%s", name, "");
		memcpy(l->name[l->n], s, n);
		l->name[l->n][n] = 0;
		l->n++;
		if (!e)
			break;
		p = e + 1;
	}
	return 1;
}

static int
app_key(struct loader *ld, struct app_draft *a, const char *name, const char *value)
{
	int b;

	if (!strcmp(name, "user_sync") || !strcmp(name, "conversation_sync")) {
		if ((b = parse_bool(value)) == UNSET)
			return fail(ld, "%s: '%s' is not on or off", name, value);
		if (name[0] == 'u')
			a->user_sync = b;
		else
			a->conversation_sync = b;
		return 1;
	}
	if (!strcmp(name, "mode")) {
		if (!strcmp(value, "enforce"))
			a->mode = POL_MODE_ENFORCE;
		else if (!strcmp(value, "report"))
			a->mode = POL_MODE_REPORT;
		else
			return fail(ld, "mode: '%s' is not enforce or report%s", value, "");
		return 1;
	}
	if (!strcmp(name, "identity")) {
		a->identity_line = ld->line;
		if (!strcmp(value, "off"))
			a->identity = POL_IDENTITY_OFF;
		else if (!strcmp(value, "verify"))
			a->identity = POL_IDENTITY_VERIFY;
		else if (!strcmp(value, "require"))
			a->identity = POL_IDENTITY_REQUIRE;
		else
			return fail(ld, "identity: '%s' is not off, verify or require%s", value, "");
		return 1;
	}
	if (!strcmp(name, "secret_key") || !strcmp(name, "secret_key_file")) {
		char *k;
		if (a->secret_key_set)
			return fail(ld, "%s: the app already has a secret key%s", name, "");
		if (!value[0])
			return fail(ld, "%s: empty value%s", name, "");
		k = name[10] ? read_secret_file(value) : strdup(value);
		if (!k)
			return fail(ld, "secret_key_file: cannot read '%s'%s", value, "");
		if (!k[0]) {
			free(k);
			return fail(ld, "secret_key_file: '%s' is empty%s", value, "");
		}
		a->secret_key = k;
		a->secret_key_set = 1;
		return 1;
	}
	{
		static const char *const lists[POL_FIELDS_KINDS] = {
			"user_fields_locked", "conversation_fields_locked", "participant_fields_locked"};
		int k;
		for (k = 0; k < POL_FIELDS_KINDS; k++)
			if (!strcmp(name, lists[k]))
				return parse_locked(ld, &a->locked[k], name, value) ? (a->locked_set[k] = 1) : 0;
	}
	if (!strcmp(name, "refusal_budget")) {
		/* N/WINDOW: "20/1m" */
		const char *slash = strchr(value, '/');
		char num[16];
		uint64_t n, w;
		char *end;
		if (!slash || (size_t)(slash - value) >= sizeof num)
			return fail(ld, "refusal_budget: '%s' is not N/WINDOW (20/1m)%s", value, "");
		memcpy(num, value, (size_t)(slash - value));
		num[slash - value] = 0;
		n = strtoull(num, &end, 10);
		if (*end || end == num || n < 1 || n > 1000000 || parse_number(slash + 1, LIM_MS, &w) ||
		    w < 1000 || w > 86400000)
			return fail(ld, "refusal_budget: '%s' is not N/WINDOW: 1..1000000 per 1s..24h%s", value, "");
		a->budget = (uint32_t)n;
		a->budget_window_ms = (uint32_t)w;
		a->budget_set = 1;
		return 1;
	}
	if (!strcmp(name, "refusal_ban")) {
		uint64_t w;
		if (parse_number(value, LIM_MS, &w) || w > 86400000)
			return fail(ld, "refusal_ban: '%s' is not a duration up to 24h%s", value, "");
		a->ban_ms = (uint32_t)w;
		a->ban_set = 1;
		return 1;
	}
	if (!strcmp(name, "on_locked")) {
		if (!strcmp(value, "reject"))
			a->strip_locked = 0;
		else if (!strcmp(value, "strip"))
			a->strip_locked = 1;
		else
			return fail(ld, "on_locked: '%s' is not reject or strip%s", value, "");
		return 1;
	}
	return fail(ld, "unknown key '%s' in an app section%s", name, "");
}

static int
limits_key(struct loader *ld, const char *name, const char *value)
{
	size_t i;
	uint64_t n;

	for (i = 0; i < sizeof lim_defs / sizeof lim_defs[0]; i++) {
		const struct lim_def *d = &lim_defs[i];
		if (strcmp(d->name, name))
			continue;
		if (parse_number(value, d->kind, &n))
			return fail(ld, "%s: '%s' is not a valid value", name, value);
		if (n < d->min || n > d->max) {
			char range[96];
			snprintf(range, sizeof range, "%llu..%llu%s", (unsigned long long)d->min,
			         (unsigned long long)d->max,
			         d->kind == LIM_MS ? " ms" : d->kind == LIM_BYTES ? " bytes" :
			         d->kind == LIM_SECONDS ? " s" : "");
			return fail(ld, "%s: out of range (%s)", name, range);
		}
		if (d->is64)
			*(uint64_t *)((char *)&ld->c->limits + d->off) = n;
		else
			*(uint32_t *)((char *)&ld->c->limits + d->off) = (uint32_t)n;
		return 1;
	}
	return fail(ld, "unknown key '%s' in [limits]%s", name, "");
}

/* Copies a file path (checked for size, not existence: proxy/tls.c reads and reports). */
static int
set_path(struct loader *ld, char *dst, size_t size, const char *name, const char *value)
{
	if (!value[0])
		return fail(ld, "%s: empty value%s", name, "");
	if (strlen(value) >= size)
		return fail(ld, "%s: path too long%s", name, "");
	strcpy(dst, value);
	return 1;
}

static int
upstream_tls_key(struct loader *ld, const char *name, const char *value)
{
	struct pol_upstream_tls *u = &ld->c->up_tls;

	ld->seen_up_tls_key = 1;
	if (!strcmp(name, "upstream_verify")) {
		if ((u->verify = parse_bool(value)) == UNSET)
			return fail(ld, "upstream_verify: '%s' is not on or off%s", value, "");
		return 1;
	}
	if (!strcmp(name, "upstream_ca_file"))
		return set_path(ld, u->ca_file, sizeof u->ca_file, name, value);
	if (!strcmp(name, "upstream_cert"))
		return set_path(ld, u->cert, sizeof u->cert, name, value);
	if (!strcmp(name, "upstream_key"))
		return set_path(ld, u->key, sizeof u->key, name, value);
	if (!strcmp(name, "upstream_server_name"))
		return set_path(ld, u->server_name, sizeof u->server_name, name, value);
	return -1;
}

static int
tls_key(struct loader *ld, const char *name, const char *value)
{
	struct pol_tls *t = &ld->c->tls;
	int b;

	if (!strcmp(name, "cert"))
		return set_path(ld, t->cert, sizeof t->cert, "[tls] cert", value);
	if (!strcmp(name, "key"))
		return set_path(ld, t->key, sizeof t->key, "[tls] key", value);
	if (!strcmp(name, "min_version")) {
		if (!strcmp(value, "1.2"))
			t->min_version = 12;
		else if (!strcmp(value, "1.3"))
			t->min_version = 13;
		else
			return fail(ld, "min_version: '%s' is not 1.2 or 1.3%s", value, "");
		return 1;
	}
	if (!strcmp(name, "ciphers"))
		return set_path(ld, t->ciphers, sizeof t->ciphers, "ciphers", value);
	if (!strcmp(name, "ciphersuites"))
		return set_path(ld, t->ciphersuites, sizeof t->ciphersuites, "ciphersuites", value);
	if (!strcmp(name, "session_resumption")) {
		if ((b = parse_bool(value)) == UNSET)
			return fail(ld, "session_resumption: '%s' is not on or off%s", value, "");
		t->session_resumption = b;
		return 1;
	}
	return fail(ld, "unknown key '%s' in [tls]%s", name, "");
}

/* The line of each key a later check (here or in proxy/) may have to name. */
static void
note_line(struct loader *ld, const char *section, const char *name)
{
	static const struct {
		const char *section, *name;
		size_t off;
	} keys[] = {
#define KL(s, n, f) {s, n, offsetof(struct pol_key_lines, f)}
		KL("syncgate", "listen", listen), KL("syncgate", "upstream", upstream),
		KL("syncgate", "upstream_ca_file", up_ca), KL("syncgate", "upstream_cert", up_cert),
		KL("syncgate", "upstream_key", up_key), KL("tls", "cert", tls_cert),
		KL("tls", "key", tls_key), KL("admin", "listen", admin_listen),
		KL("admin", "token_file", admin_token),
#undef KL
	};
	size_t i;
	for (i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (!strcmp(section, keys[i].section) && !strcmp(name, keys[i].name))
			*(int *)((char *)&ld->c->lines + keys[i].off) = ld->line;
}

/* 1 if S is a name for an upstream or a route: 1..POL_NAME_MAX of [A-Za-z0-9_.-]. */
static int
valid_name(const char *s)
{
	size_t n = strlen(s);
	return n >= 1 && n <= POL_NAME_MAX && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == n;
}

/*
 * "http(s)://HOST[:PORT][/]" into U's scheme, tls, host and port (the scheme's port when none
 * is written). Returns 0 or -1.
 */
static int
parse_url(const char *v, struct pol_upstream *u)
{
	const char *rest;
	char hp[300];
	size_t n;

	if (!strncmp(v, "http://", 7)) {
		strcpy(u->scheme, "http");
		u->tls = 0;
		rest = v + 7;
	} else if (!strncmp(v, "https://", 8)) {
		strcpy(u->scheme, "https");
		u->tls = 1;
		rest = v + 8;
	} else {
		return -1;
	}
	n = strcspn(rest, "/");
	if ((rest[n] && strcmp(rest + n, "/")) || n == 0 || n + 8 >= sizeof hp)
		return -1;
	memcpy(hp, rest, n);
	hp[n] = 0;
	if (!strchr(hp, ':') || (hp[0] == '[' && hp[n - 1] == ']')) {
		snprintf(hp + n, sizeof hp - n, ":%s", u->tls ? "443" : "80");
	}
	return parse_hostport(hp, u->host, sizeof u->host, u->port);
}

static struct up_draft *
upstream_section(struct loader *ld, const char *name)
{
	int i;
	if (!valid_name(name)) {
		fail(ld, "[upstream:%s]: a name is 1-63 of [A-Za-z0-9_.-]%s", name, "");
		return NULL;
	}
	if (!strcmp(name, "default")) {
		fail(ld, "[upstream:default]: 'default' is [syncgate] upstream's name%s%s", "", "");
		return NULL;
	}
	for (i = 0; i < ld->nups; i++)
		if (!strcmp(ld->ups[i].u.name, name))
			return &ld->ups[i];
	if (ld->nups == POL_UPSTREAM_MAX - 1) {
		fail(ld, "[upstream:%s]: more than 15 named upstreams%s", name, "");
		return NULL;
	}
	if (!ld->ups && !(ld->ups = calloc(POL_UPSTREAM_MAX, sizeof *ld->ups))) {
		fail(ld, "out of memory%s%s", "", "");
		return NULL;
	}
	memset(&ld->ups[ld->nups], 0, sizeof ld->ups[ld->nups]);
	snprintf(ld->ups[ld->nups].u.name, sizeof ld->ups[ld->nups].u.name, "%s", name);
	ld->ups[ld->nups].u.line = ld->line;
	ld->ups[ld->nups].u.t.verify = 1;
	return &ld->ups[ld->nups++];
}

static int
upstream_key(struct loader *ld, struct up_draft *d, const char *name, const char *value)
{
	struct pol_upstream *u = &d->u;
	int b;

	if (!strcmp(name, "url")) {
		if (parse_url(value, u))
			return fail(ld, "url: '%s' must be http(s)://HOST[:PORT] (no path)%s", value, "");
		d->seen_url = 1;
		u->url_line = ld->line;
		return 1;
	}
	if (!strcmp(name, "host")) {
		if (!*value || strlen(value) >= sizeof u->host_header || strpbrk(value, " \t\r\n,/"))
			return fail(ld, "host: '%s' is not a Host header value%s", value, "");
		snprintf(u->host_header, sizeof u->host_header, "%s", value);
		d->host_set = 1;
		return 1;
	}
	if (!strcmp(name, "pool")) {
		char *end;
		long n = strtol(value, &end, 10);
		if (*end || end == value || n < 0 || n > 100000)
			return fail(ld, "pool: '%s' is not 0..100000%s", value, "");
		u->pool = (uint32_t)n;
		d->pool_set = 1;
		return 1;
	}
	d->tls_key_line = d->tls_key_line ? d->tls_key_line : ld->line;
	if (!strcmp(name, "verify")) {
		if ((b = parse_bool(value)) == UNSET)
			return fail(ld, "verify: '%s' is not on or off%s", value, "");
		u->t.verify = b;
		return 1;
	}
	if (!strcmp(name, "sni"))
		return set_path(ld, u->t.server_name, sizeof u->t.server_name, "sni", value);
	if (!strcmp(name, "ca_file")) {
		u->ca_line = ld->line;
		return set_path(ld, u->t.ca_file, sizeof u->t.ca_file, "ca_file", value);
	}
	if (!strcmp(name, "cert")) {
		u->cert_line = ld->line;
		return set_path(ld, u->t.cert, sizeof u->t.cert, "cert", value);
	}
	if (!strcmp(name, "key")) {
		u->key_line = ld->line;
		return set_path(ld, u->t.key, sizeof u->t.key, "key", value);
	}
	return fail(ld, "unknown key '%s' in [upstream:...] (url, host, sni, verify, ca_file, cert, key, pool)%s",
	            name, "");
}

static struct route_draft *
route_section(struct loader *ld, const char *name)
{
	struct route_draft *d;
	int i;

	if (!valid_name(name)) {
		fail(ld, "[route:%s]: a name is 1-63 of [A-Za-z0-9_.-]%s", name, "");
		return NULL;
	}
	for (i = 0; i < ld->nroutes; i++)
		if (!strcmp(ld->routes[i].r.name, name))
			return &ld->routes[i];
	if (ld->nroutes == POL_ROUTE_MAX) {
		fail(ld, "[route:%s]: more than 512 routes%s", name, "");
		return NULL;
	}
	if (ld->nroutes == ld->croutes) {
		int nc = ld->croutes ? ld->croutes * 2 : 16;
		struct route_draft *nr = realloc(ld->routes, (size_t)nc * sizeof *nr);
		if (!nr) {
			fail(ld, "out of memory%s%s", "", "");
			return NULL;
		}
		ld->routes = nr;
		ld->croutes = nc;
	}
	d = &ld->routes[ld->nroutes++];
	memset(d, 0, sizeof *d);
	snprintf(d->r.name, sizeof d->r.name, "%s", name);
	d->r.line = ld->line;
	return d;
}

static int
route_key(struct loader *ld, struct route_draft *d, const char *name, const char *value)
{
	struct pol_route *r = &d->r;
	char err[300];
	static const char *const ids[] = {"app", "user", "conversation", "participant"};
	int k;

	if (!strcmp(name, "match")) {
		if (pol_route_parse_match(r, value, err, sizeof err))
			return fail(ld, "%s%s", err, "");
		if (r->has_rewrite) { /* a rewrite read before the match: its literals went first */
			char rw[POL_ROUTE_TEXT];
			snprintf(rw, sizeof rw, "%s", r->rewrite_text);
			if (pol_route_parse_match(r, value, err, sizeof err) ||
			    pol_route_parse_rewrite(r, rw, err, sizeof err))
				return fail(ld, "%s%s", err, "");
		}
		d->match_line = ld->line;
		return 1;
	}
	if (!strcmp(name, "rewrite")) {
		if (pol_route_parse_rewrite(r, value, err, sizeof err))
			return fail(ld, "rewrite: %s%s", err, "");
		d->rewrite_line = ld->line;
		return 1;
	}
	if (!strcmp(name, "upstream")) {
		if (!valid_name(value))
			return fail(ld, "upstream: '%s' is not an upstream name%s", value, "");
		snprintf(d->upstream, sizeof d->upstream, "%s", value);
		d->upstream_line = ld->line;
		return 1;
	}
	if (!strcmp(name, "sync")) {
		for (k = 0; k <= POL_SYNC_NONE; k++)
			if (!strcmp(value, pol_sync_to_str((enum pol_sync)k)))
				break;
		if (k > POL_SYNC_NONE)
			return fail(ld, "sync: '%s' is not talkjs, realtime, user_set, user_create, "
			            "conversation_set, conversation_create, participant or none%s", value, "");
		r->sync = (enum pol_sync)k;
		d->sync_set = 1;
		return 1;
	}
	if (!strcmp(name, "body")) {
		if (strcmp(value, "json"))
			return fail(ld, "body: '%s' is not json%s", value, "");
		r->body_json = 1;
		return 1;
	}
	for (k = 0; k < 4; k++) {
		if (strcmp(name, ids[k]))
			continue;
		if (!strncmp(value, "body:", 5)) {
			const char *key = value + 5;
			if (!*key || strlen(key) >= sizeof r->body_key[k] || strpbrk(key, "\"\\"))
				return fail(ld, "%s: '%s' is not body:KEY", name, value);
			snprintf(r->body_key[k], sizeof r->body_key[k], "%s", key);
			return 1;
		}
		if (k == 0) {
			if (!valid_appid(value) || !strcmp(value, ".") || !strcmp(value, ".."))
				return fail(ld, "app: '%s' is not an app id or body:KEY%s", value, "");
			snprintf(r->app, sizeof r->app, "%s", value);
			return 1;
		}
		return fail(ld, "%s: '%s' must be body:KEY (a path id is a placeholder in match)", name, value);
	}
	return fail(ld, "unknown key '%s' in [route:...] (match, upstream, rewrite, sync, body, "
	            "app, user, conversation, participant)%s", name, "");
}

static int
route_test_line(struct loader *ld)
{
	if (ld->ntests == ld->ctests) {
		int nc = ld->ctests ? ld->ctests * 2 : 16;
		struct route_test *nt = realloc(ld->tests, (size_t)nc * sizeof *nt);
		if (!nt)
			return fail(ld, "out of memory%s%s", "", "");
		ld->tests = nt;
		ld->ctests = nc;
	}
	ld->tests[ld->ntests].line = ld->line;
	if (!(ld->tests[ld->ntests].text = strdup(ld->raw)))
		return fail(ld, "out of memory%s%s", "", "");
	ld->ntests++;
	return 1;
}

/* [fleet] keys (see struct pol_fleet). */
static int
fleet_key(struct loader *ld, const char *name, const char *value)
{
	struct pol_fleet *f = &ld->c->fleet;
	uint64_t ms;

	if (!strcmp(name, "redis")) {
		unsigned char a[16];
		if (!strncmp(value, "unix:", 5)) {
			if (value[5] != '/' || strlen(value + 5) >= sizeof f->redis_unix)
				return fail(ld, "[fleet] redis: '%s' is not unix:/absolute/path%s", value, "");
			snprintf(f->redis_unix, sizeof f->redis_unix, "%s", value + 5);
			f->redis_host[0] = 0;
		} else if (parse_hostport(value, f->redis_host, sizeof f->redis_host, f->redis_port) ||
		           (inet_pton(AF_INET, f->redis_host, a) != 1 &&
		            inet_pton(AF_INET6, f->redis_host, a) != 1)) {
			f->redis_host[0] = 0;
			return fail(ld, "[fleet] redis: '%s' is not an IP address and port or unix:/path "
			            "(a host name would be resolved blocking by hiredis 0.14)%s", value, "");
		} else {
			f->redis_unix[0] = 0;
		}
		snprintf(f->redis, sizeof f->redis, "%s", value);
		return 1;
	}
	if (!strcmp(name, "key_prefix")) {
		size_t n = strlen(value), i;
		for (i = 0; i < n && (isalnum((unsigned char)value[i]) || strchr(":_.-", value[i])); i++)
			;
		if (n == 0 || n >= sizeof f->prefix || i < n)
			return fail(ld, "[fleet] key_prefix: '%s' is not 1-64 of [A-Za-z0-9:_.-]%s", value, "");
		memcpy(f->prefix, value, n + 1);
		return 1;
	}
	if (!strcmp(name, "password_file")) {
		char *pw = read_secret_file(value);
		int bad = !pw || !*pw || strlen(pw) >= sizeof f->password || strpbrk(pw, "\r\n");
		if (!bad)
			snprintf(f->password, sizeof f->password, "%s", pw);
		free(pw);
		if (bad)
			return fail(ld, "[fleet] password_file: cannot read '%s' (or it is empty, over 255 "
			            "bytes or more than one line)%s", value, "");
		return 1;
	}
	if (!strcmp(name, "state_file")) {
		if (value[0] != '/' || strlen(value) >= sizeof f->state_file)
			return fail(ld, "[fleet] state_file: '%s' is not an absolute path%s", value, "");
		snprintf(f->state_file, sizeof f->state_file, "%s", value);
		return 1;
	}
	if (!strcmp(name, "poll")) {
		if (parse_number(value, LIM_MS, &ms) || ms < 100 || ms > 60000)
			return fail(ld, "[fleet] poll: '%s' is not 100ms..60s%s", value, "");
		f->poll_ms = (uint32_t)ms;
		return 1;
	}
	if (!strcmp(name, "timeout")) {
		if (parse_number(value, LIM_MS, &ms) || ms < 50 || ms > 30000)
			return fail(ld, "[fleet] timeout: '%s' is not 50ms..30s%s", value, "");
		f->timeout_ms = (uint32_t)ms;
		return 1;
	}
	if (!strcmp(name, "instance")) {
		size_t n = strlen(value), i;
		for (i = 0; i < n && (isalnum((unsigned char)value[i]) || strchr("_.-", value[i])); i++)
			;
		if (n == 0 || n >= sizeof f->instance || i < n)
			return fail(ld, "[fleet] instance: '%s' is not 1-127 of [A-Za-z0-9_.-]%s", value, "");
		memcpy(f->instance, value, n + 1);
		return 1;
	}
	return fail(ld, "unknown key '%s' in [fleet]%s", name, "");
}

static int
handler(void *user, const char *section, const char *name, const char *value)
{
	struct loader *ld = user;

	if (ld->failed)
		return 1; /* keep inih's line of the first error */
	note_line(ld, section, name);
	if (!strcmp(section, "syncgate")) {
		if (!strcmp(name, "listen"))
			return parse_listen(ld, value);
		if (!strcmp(name, "upstream"))
			return parse_upstream(ld, value);
		if (!strcmp(name, "access_log")) {
			int b = parse_bool(value);
			if (b == UNSET)
				return fail(ld, "access_log: '%s' is not on or off%s", value, "");
			ld->c->access_log = b;
			return 1;
		}
		if (!strncmp(name, "upstream_", 9)) {
			int r = upstream_tls_key(ld, name, value);
			if (r >= 0)
				return r;
		}
		if (!strcmp(name, "underscore_headers")) {
			if (!strcmp(value, "drop"))
				ld->c->underscore_headers = POL_UNDERSCORE_DROP;
			else if (!strcmp(value, "reject"))
				ld->c->underscore_headers = POL_UNDERSCORE_REJECT;
			else if (!strcmp(value, "allow"))
				ld->c->underscore_headers = POL_UNDERSCORE_ALLOW;
			else
				return fail(ld, "underscore_headers: '%s' is not drop, reject or allow%s",
				            value, "");
			return 1;
		}
		if (!strcmp(name, "cors_origins"))
			return parse_cors(ld, value);
		if (!strcmp(name, "trusted_proxies"))
			return parse_trusted(ld, value);
		if (!strcmp(name, "watch_config")) {
			int b = parse_bool(value);
			if (b == UNSET)
				return fail(ld, "watch_config: '%s' is not on or off%s", value, "");
			ld->c->watch_config = b;
			return 1;
		}
		if (!strcmp(name, "lookup_upstream")) {
			if (!valid_name(value))
				return fail(ld, "lookup_upstream: '%s' is not an upstream name%s", value, "");
			snprintf(ld->lookup_name, sizeof ld->lookup_name, "%s", value);
			ld->lookup_line = ld->line;
			return 1;
		}
		if (!strcmp(name, "workers")) {
			uint64_t n;
			if (parse_number(value, LIM_COUNT, &n) || n < 1 || n > 64)
				return fail(ld, "workers: '%s' is not 1..64%s", value, "");
			ld->c->workers = (int)n;
			return 1;
		}
		return fail(ld, "unknown key '%s' in [syncgate]%s", name, "");
	}
	if (!strcmp(section, "limits"))
		return limits_key(ld, name, value);
	if (!strcmp(section, "tls"))
		return tls_key(ld, name, value);
	if (!strcmp(section, "admin")) {
		if (!strcmp(name, "listen")) {
			if (parse_hostport(value, ld->c->admin_host, sizeof ld->c->admin_host,
			                   ld->c->admin_port))
				return fail(ld, "[admin] listen: '%s' is not HOST:PORT%s", value, "");
			snprintf(ld->c->admin_listen, sizeof ld->c->admin_listen, "%s", value);
			return 1;
		}
		if (!strcmp(name, "token_file") || !strcmp(name, "metrics_token_file")) {
			char **tok = name[0] == 't' ? &ld->c->admin_token : &ld->c->metrics_token;
			free(*tok);
			*tok = read_secret_file(value);
			if (!*tok || !**tok)
				return fail(ld, "[admin] %s: cannot read '%s' (or it is empty)", name, value);
			return 1;
		}
		return fail(ld, "unknown key '%s' in [admin]%s", name, "");
	}
	if (!strncmp(section, "app:", 4)) {
		struct app_draft *a = app_section(ld, section);
		return a ? app_key(ld, a, name, value) : 0;
	}
	if (!strncmp(section, "upstream:", 9)) {
		struct up_draft *u = upstream_section(ld, section + 9);
		return u ? upstream_key(ld, u, name, value) : 0;
	}
	if (!strncmp(section, "route:", 6)) {
		struct route_draft *r = route_section(ld, section + 6);
		return r ? route_key(ld, r, name, value) : 0;
	}
	if (!strcmp(section, "route-test"))
		return route_test_line(ld);
	if (!strcmp(section, "fleet"))
		return fleet_key(ld, name, value);
	return fail(ld, "unknown section [%s]%s", section, "");
}

/* The upstreams: [0] from [syncgate] upstream, then the sections in file order. */
static int
finish_upstreams(struct loader *ld, struct pol_config *c, const char *name, char *err)
{
	struct pol_upstream *d = &c->upstreams[0];
	int i;

	snprintf(d->name, sizeof d->name, "default");
	memcpy(d->scheme, c->upstream_scheme, sizeof d->scheme);
	d->tls = c->upstream_tls;
	memcpy(d->host, c->upstream_host, sizeof d->host);
	memcpy(d->port, c->upstream_port, sizeof d->port);
	d->host_header[0] = 0;
	d->t = c->up_tls;
	d->pool = c->limits.upstream_pool;
	d->url_line = c->lines.upstream;
	d->ca_line = c->lines.up_ca;
	d->cert_line = c->lines.up_cert;
	d->key_line = c->lines.up_key;
	c->nupstreams = 1;
	for (i = 0; i < ld->nups; i++) {
		struct up_draft *x = &ld->ups[i];
		struct pol_upstream *u = &x->u;
		if (!x->seen_url) {
			snprintf(err, POL_ERR_MAX, "%s:%d: [upstream:%s] needs url = http(s)://HOST[:PORT]",
			         name, u->line, u->name);
			return -1;
		}
		if (x->tls_key_line && !u->tls) {
			snprintf(err, POL_ERR_MAX, "%s:%d: [upstream:%s] TLS settings need an https:// url",
			         name, x->tls_key_line, u->name);
			return -1;
		}
		if (!u->t.cert[0] != !u->t.key[0]) {
			snprintf(err, POL_ERR_MAX, "%s:%d: [upstream:%s] cert and key go together", name,
			         u->cert_line ? u->cert_line : u->key_line, u->name);
			return -1;
		}
		if (!x->pool_set)
			u->pool = c->limits.upstream_pool;
		if (!x->host_set) {
			int v6 = strchr(u->host, ':') != NULL;
			int dflt = !strcmp(u->port, u->tls ? "443" : "80");
			snprintf(u->host_header, sizeof u->host_header, "%s%s%s%s%s", v6 ? "[" : "", u->host,
			         v6 ? "]" : "", dflt ? "" : ":", dflt ? "" : u->port);
		}
		c->upstreams[c->nupstreams++] = *u;
	}
	c->lookup_upstream = 0;
	if (ld->lookup_name[0] && (c->lookup_upstream = pol_config_upstream(c, ld->lookup_name,
	                                                                    strlen(ld->lookup_name))) < 0) {
		snprintf(err, POL_ERR_MAX, "%s:%d: lookup_upstream: no [upstream:%s]", name, ld->lookup_line,
		         ld->lookup_name);
		return -1;
	}
	return 0;
}

/* The built-in TalkJS routes (protocol.md 1): every one to the default upstream, unchanged,
 * classified by the built-in table. An operator route of the same name or match replaces one. */
static const struct {
	const char *name, *match;
	enum pol_sync sync;
} builtin_routes[] = {
	{"talkjs-realtime", "GET /v1/{app}/realtime/{user}", POL_SYNC_TALKJS},
	{"talkjs-realtime-custom", "GET /public_api/v1/{app}/realtime/{user}", POL_SYNC_TALKJS},
	{"talkjs-rest", "* /v1/{app}/{*}", POL_SYNC_TALKJS},
	{"talkjs-rest-custom", "* /public_api/v1/{app}/{*}", POL_SYNC_TALKJS},
	{"talkjs-api", "* /api/v0/{app}/{*}", POL_SYNC_TALKJS},
	{"talkjs-other", "* /{*}", POL_SYNC_TALKJS},
};
#define NBUILTIN ((int)(sizeof builtin_routes / sizeof builtin_routes[0]))

static int
finish_routes(struct loader *ld, struct pol_config *c, const char *name, char *err)
{
	struct pol_route *t;
	char msg[300];
	int i, j, n = 0;

	t = calloc((size_t)ld->nroutes + NBUILTIN, sizeof *t);
	if (!t) {
		snprintf(err, POL_ERR_MAX, "%s:0: out of memory", name);
		return -1;
	}
	c->routes = t;
	for (i = 0; i < ld->nroutes; i++) {
		struct route_draft *d = &ld->routes[i];
		d->r.upstream = 0;
		if (d->upstream[0] &&
		    (d->r.upstream = pol_config_upstream(c, d->upstream, strlen(d->upstream))) < 0) {
			snprintf(err, POL_ERR_MAX, "%s:%d: [route:%s] upstream: no [upstream:%s]", name,
			         d->upstream_line, d->r.name, d->upstream);
			return -1;
		}
		if (pol_route_check(&d->r, msg, sizeof msg)) {
			snprintf(err, POL_ERR_MAX, "%s:%d: %s", name, d->match_line ? d->match_line : d->r.line, msg);
			return -1;
		}
		t[n++] = d->r;
	}
	c->operator_routes = n;
	for (i = 0; i < NBUILTIN; i++) {
		struct pol_route b;
		memset(&b, 0, sizeof b);
		snprintf(b.name, sizeof b.name, "%s", builtin_routes[i].name);
		if (pol_route_parse_match(&b, builtin_routes[i].match, msg, sizeof msg)) {
			snprintf(err, POL_ERR_MAX, "%s:0: built-in route %s: %s", name, b.name, msg);
			return -1; /* a bug: unit-tested */
		}
		b.sync = builtin_routes[i].sync;
		/* replaced by a route of its name or of its path (whatever the methods: a built-in
		 * left beside it would take the methods it does not list, and every built-in sends
		 * to the default upstream unchanged, as the next one down does) */
		for (j = 0; j < c->operator_routes; j++)
			if (!strcmp(t[j].name, b.name) ||
			    !strcasecmp(t[j].match_text + strcspn(t[j].match_text, " "),
			                b.match_text + strcspn(b.match_text, " ")))
				break;
		if (j == c->operator_routes)
			t[n++] = b;
	}
	c->nroutes = n;
	return pol_route_sort(t, n, name, err, POL_ERR_MAX);
}

/* Runs the [route-test] lines against C's table; -1 with ERR naming the first that fails. */
static int
run_route_tests(struct loader *ld, struct pol_config *c, const char *name, char *err)
{
	struct pol_classifier *k;
	char msg[400];
	int i, rc = 0;

	if (!ld->ntests)
		return 0;
	if (!(k = pol_classifier_new(&c->limits))) {
		snprintf(err, POL_ERR_MAX, "%s:0: out of memory", name);
		return -1;
	}
	for (i = 0; i < ld->ntests && !rc; i++)
		if (pol_route_test(c, k, ld->tests[i].text, msg, sizeof msg)) {
			snprintf(err, POL_ERR_MAX, "%.200s:%d: route-test: %.280s", name, ld->tests[i].line, msg);
			rc = -1;
		}
	pol_classifier_free(k);
	return rc;
}

static void
free_drafts(struct loader *ld)
{
	int i;
	for (i = 0; i < ld->ntests; i++)
		free(ld->tests[i].text);
	free(ld->tests);
	free(ld->routes);
	free(ld->ups);
	ld->tests = NULL;
	ld->routes = NULL;
	ld->ups = NULL;
	ld->ntests = ld->nroutes = ld->nups = 0;
}

int
pol_config_upstream(const struct pol_config *c, const char *name, size_t len)
{
	int i;
	for (i = 0; i < c->nupstreams; i++)
		if (strlen(c->upstreams[i].name) == len && !memcmp(c->upstreams[i].name, name, len))
			return i;
	return -1;
}

static int
app_cmp(const void *a, const void *b)
{
	return strcmp(((const struct pol_app *)a)->id, ((const struct pol_app *)b)->id);
}

static void
finish_app(struct pol_app *out, const struct app_draft *d, const struct pol_app *def)
{
	snprintf(out->id, sizeof out->id, "%s", d->id);
	out->user_sync = d->user_sync != UNSET ? d->user_sync : def->user_sync;
	out->conversation_sync = d->conversation_sync != UNSET ? d->conversation_sync
	                                                       : def->conversation_sync;
	out->mode = d->mode != UNSET ? (enum pol_mode)d->mode : def->mode;
	out->identity = d->identity != UNSET ? (enum pol_identity)d->identity : def->identity;
	out->secret_key = d->secret_key; /* ownership moves */
	out->strip_locked = d->strip_locked != UNSET ? d->strip_locked : def->strip_locked;
	out->budget = d->budget_set ? d->budget : def->budget;
	out->budget_window_ms = d->budget_set ? d->budget_window_ms : def->budget_window_ms;
	out->ban_ms = d->ban_set ? d->ban_ms : def->ban_ms;
	for (int k = 0; k < POL_FIELDS_KINDS; k++)
		out->locked[k] = d->locked_set[k] ? d->locked[k] : def->locked[k];
}

static void
set_defaults(struct pol_config *c)
{
	size_t i;

	c->refs = 1;
	c->workers = 1;
	c->access_log = 1;
	c->up_tls.verify = 1;
	c->tls.min_version = 12;
	c->tls.session_resumption = 1;
	strcpy(c->tls.ciphers, DEFAULT_CIPHERS);
	for (i = 0; i < sizeof lim_defs / sizeof lim_defs[0]; i++) {
		const struct lim_def *d = &lim_defs[i];
		if (d->is64)
			*(uint64_t *)((char *)&c->limits + d->off) = d->def;
		else
			*(uint32_t *)((char *)&c->limits + d->off) = (uint32_t)d->def;
	}
}

/* Adds NAME at the current line to SET; returns the line it was seen at before, 0 if new, or
 * -1 when out of memory. */
static int
remember(struct loader *ld, struct seen **set, int *n, int *cap, const char *name, size_t len)
{
	int i;

	if (len >= sizeof (*set)->name)
		len = sizeof (*set)->name - 1;
	for (i = 0; i < *n; i++)
		if (strlen((*set)[i].name) == len && !memcmp((*set)[i].name, name, len))
			return (*set)[i].line;
	if (*n == *cap) {
		int nc = *cap ? *cap * 2 : 16;
		struct seen *ns = realloc(*set, (size_t)nc * sizeof *ns);
		if (!ns)
			return -1;
		*set = ns;
		*cap = nc;
	}
	memcpy((*set)[*n].name, name, len);
	(*set)[*n].name[len] = 0;
	(*set)[*n].line = ld->line;
	(*n)++;
	return 0;
}

/* Records the first error found by read_line() (inih goes on; load() reports this one). */
static void
fail_at_line(struct loader *ld, const char *what, const char *name, int first)
{
	if (ld->failed)
		return;
	ld->failed = 1;
	ld->fail_line = ld->line;
	snprintf(ld->msg, sizeof ld->msg, "%s '%.140s' again (first at line %d): each may appear once",
	         what, name, first);
}

/* Notes the section header or key on LINE (whitespace already stripped). */
static void
check_line(struct loader *ld, const char *line)
{
	const char *end;
	int first;

	if (*line == '[') {
		end = strchr(line, ']');
		if (!end)
			return; /* inih reports the malformed header */
		first = remember(ld, &ld->sections, &ld->nsections, &ld->csections, line + 1,
		                 (size_t)(end - line - 1));
		if (first > 0) {
			char sec[160];
			snprintf(sec, sizeof sec, "[%.*s]", (int)(end - line - 1 > 150 ? 150 : end - line - 1),
			         line + 1);
			fail_at_line(ld, "section", sec, first);
		}
		ld->nkeys = 0; /* keys are per section */
		snprintf(ld->section, sizeof ld->section, "%.*s",
		         (int)(end - line - 1 < (long)sizeof ld->section - 1 ? end - line - 1
		                                                          : (long)sizeof ld->section - 1),
		         line + 1);
		/* route and upstream sections exist from their header (its line is theirs, and one
		 * with no key is still checked) */
		if ((!strncmp(ld->section, "route:", 6) && !route_section(ld, ld->section + 6)) ||
		    (!strncmp(ld->section, "upstream:", 9) && !upstream_section(ld, ld->section + 9))) {
			if (!ld->fail_line)
				ld->fail_line = ld->line;
		}
		if (end - line - 1 == 8 && !memcmp(line + 1, "syncgate", 8))
			ld->c->lines.syncgate = ld->line;
		else if (end - line - 1 == 3 && !memcmp(line + 1, "tls", 3))
			ld->c->lines.tls = ld->line;
		else if (end - line - 1 == 5 && !memcmp(line + 1, "fleet", 5)) {
			/* exists from its header: one without redis = is an error */
			struct pol_fleet *f = &ld->c->fleet;
			f->on = 1;
			f->line = ld->line;
			snprintf(f->prefix, sizeof f->prefix, "syncgate:");
			f->poll_ms = 1000;
			f->timeout_ms = 1000;
		}
		return;
	}
	if (*line == ';' || *line == '#' || *line == 0 || !(end = strpbrk(line, "=:")))
		return;
	if (!strcmp(ld->section, "route-test"))
		return; /* lines, not keys: the same request may be tested twice */
	while (end > line && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	first = remember(ld, &ld->keys, &ld->nkeys, &ld->ckeys, line, (size_t)(end - line));
	if (first > 0) {
		char key[160];
		snprintf(key, sizeof key, "%.*s", (int)(end - line > 150 ? 150 : end - line), line);
		fail_at_line(ld, "key", key, first);
	}
}

/* inih's ini_reader: the next line of the file or string into STR (NUM bytes), leading
 * whitespace removed, counted; NULL at the end. */
static char *
read_line(char *str, int num, void *stream)
{
	struct loader *ld = stream;
	char buf[MAX_LINE];
	const char *p;
	size_t n;

	if (ld->file) {
		if (!fgets(buf, sizeof buf, ld->file))
			return NULL;
	} else {
		const char *nl;
		if (!*ld->text)
			return NULL;
		nl = strchr(ld->text, '\n');
		n = nl ? (size_t)(nl - ld->text + 1) : strlen(ld->text);
		if (n >= sizeof buf)
			n = sizeof buf - 1;
		memcpy(buf, ld->text, n);
		buf[n] = 0;
		ld->text += n;
	}
	ld->line++;
	for (p = buf; *p == ' ' || *p == '\t'; p++)
		;
	n = strlen(p);
	if (n + 1 > (size_t)num || (strlen(buf) == sizeof buf - 1 && buf[sizeof buf - 2] != '\n')) {
		/* inih would cut it: a value silently shortened is worse than an error */
		if (!ld->failed) {
			ld->failed = 1;
			ld->fail_line = ld->line;
			snprintf(ld->msg, sizeof ld->msg, "line longer than %d bytes", num - 2);
		}
		str[0] = 0;
		return str;
	}
	check_line(ld, p);
	memcpy(str, p, n + 1);
	snprintf(ld->raw, sizeof ld->raw, "%s", p);
	for (n = strlen(ld->raw); n && (ld->raw[n - 1] == '\n' || ld->raw[n - 1] == '\r' ||
	                                ld->raw[n - 1] == ' ' || ld->raw[n - 1] == '\t');)
		ld->raw[--n] = 0;
	return str;
}

typedef int (*ini_runner)(const void *src, struct loader *ld);

static int
run_file(const void *src, struct loader *ld)
{
	int rc;

	struct stat st;

	ld->file = fopen((const char *)src, "r");
	if (!ld->file)
		return -1;
	if (fstat(fileno(ld->file), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(ld->file);
		ld->file = NULL;
		errno = EISDIR;
		return -1;
	}
	rc = ini_parse_stream(read_line, ld, handler, ld);
	fclose(ld->file);
	ld->file = NULL;
	return rc;
}

static int
run_string(const void *src, struct loader *ld)
{
	ld->text = (const char *)src;
	return ini_parse_stream(read_line, ld, handler, ld);
}

static struct pol_config *
load(ini_runner run, const void *src, const char *name, char *err)
{
	struct loader ld;
	struct pol_config *c;
	int rc, i;

	memset(&ld, 0, sizeof ld);
	c = calloc(1, sizeof *c);
	if (!c) {
		snprintf(err, POL_ERR_MAX, "%s:0: out of memory", name);
		return NULL;
	}
	set_defaults(c);
	ld.c = c;
	ld.name = name;
	ld.def.user_sync = ld.def.conversation_sync = ld.def.mode = ld.def.identity = UNSET;
	ld.def.strip_locked = UNSET;

	rc = run(src, &ld);
	free(ld.sections);
	free(ld.keys);
	ld.sections = ld.keys = NULL;
	if (rc < 0) {
		snprintf(err, POL_ERR_MAX, "%s:0: cannot open: %s", name, strerror(errno));
		goto bad;
	}
	if (ld.fail_line && (rc == 0 || ld.fail_line < rc))
		rc = ld.fail_line; /* read_line() found it before any error inih saw */
	else if (ld.fail_line && rc < ld.fail_line)
		ld.failed = 0; /* inih's own syntax error came first: its message */
	if (rc > 0) {
		if (!ld.failed)
			snprintf(ld.msg, sizeof ld.msg, "syntax error (expected [section] or name = value)");
		snprintf(err, POL_ERR_MAX, "%.200s:%d: %.280s", name, rc, ld.msg);
		goto bad;
	}
	if (!c->nlisten) {
		snprintf(err, POL_ERR_MAX, "%s:%d: [syncgate] listen is required", name, c->lines.syncgate);
		goto bad;
	}
	if (!ld.seen_upstream) {
		snprintf(err, POL_ERR_MAX, "%s:%d: [syncgate] upstream is required", name, c->lines.syncgate);
		goto bad;
	}
	if (c->tls_listeners && (!c->tls.cert[0] || !c->tls.key[0])) {
		snprintf(err, POL_ERR_MAX, "%s:%d: a listen address is marked tls: [tls] needs cert and key", name,
		         c->lines.tls ? c->lines.tls : c->lines.listen);
		goto bad;
	}
	if (ld.seen_up_tls_key && !c->upstream_tls) {
		snprintf(err, POL_ERR_MAX, "%s:%d: upstream_* TLS settings need an https:// upstream", name, c->lines.upstream);
		goto bad;
	}
	if (!c->up_tls.cert[0] != !c->up_tls.key[0]) {
		snprintf(err, POL_ERR_MAX, "%s:%d: upstream_cert and upstream_key go together", name,
		         c->lines.up_cert ? c->lines.up_cert : c->lines.up_key);
		goto bad;
	}
	if (c->admin_listen[0] && !c->admin_token && strcmp(c->admin_host, "localhost") &&
	    strcmp(c->admin_host, "::1") && strncmp(c->admin_host, "127.", 4)) {
		snprintf(err, POL_ERR_MAX, "%s:%d: [admin] listen on a non-loopback address needs token_file", name,
		         c->lines.admin_listen);
		goto bad;
	}
	for (i = 0; c->admin_listen[0] && i < c->nlisten; i++)
		if (!strcmp(c->admin_port, c->listen[i].port) &&
		    (!strcmp(c->admin_host, c->listen[i].host) || wildcard(c->admin_host) ||
		     wildcard(c->listen[i].host))) {
			snprintf(err, POL_ERR_MAX, "%s:%d: [admin] listen %.280s is also a [syncgate] listen address",
			         name, c->lines.admin_listen, c->admin_listen);
			goto bad;
		}
	if (c->fleet.on && !c->fleet.redis[0]) {
		snprintf(err, POL_ERR_MAX, "%s:%d: [fleet] needs redis = IP:PORT or unix:/path", name,
		         c->fleet.line);
		goto bad;
	}
	if (c->limits.header_bytes < c->limits.request_line_bytes) {
		snprintf(err, POL_ERR_MAX, "%s:0: [limits] header_bytes must be >= request_line", name);
		goto bad;
	}

	/* [app:*] itself defaults to TalkJS's defaults: both switches on, enforce, identity off. */
	{
		struct pol_app base = {.user_sync = 1, .conversation_sync = 1};
		finish_app(&c->defaults, &ld.def, &base);
		ld.def.secret_key = NULL;
		c->defaults.id[0] = 0;
	}
	c->apps = calloc((size_t)(ld.napps ? ld.napps : 1), sizeof *c->apps);
	if (!c->apps) {
		snprintf(err, POL_ERR_MAX, "%s:0: out of memory", name);
		goto bad;
	}
	for (i = 0; i < ld.napps; i++) {
		finish_app(&c->apps[i], &ld.apps[i], &c->defaults);
		ld.apps[i].secret_key = NULL; /* none: lookups fail closed (protocol.md 7.5) */
	}
	c->napps = ld.napps;
	/* identity = require needs the key: without one every renew would be refused */
	for (i = -1; i < ld.napps; i++) {
		const struct pol_app *a = i < 0 ? &c->defaults : &c->apps[i];
		const struct app_draft *d = i < 0 ? &ld.def : &ld.apps[i];
		if (a->identity == POL_IDENTITY_REQUIRE && !a->secret_key) {
			snprintf(err, POL_ERR_MAX, "%s:%d: identity = require needs the app's secret_key (%s)",
			         name, d->identity_line ? d->identity_line : ld.def.identity_line,
			         i < 0 ? "[app:*]" : a->id);
			goto bad;
		}
	}
	qsort(c->apps, (size_t)c->napps, sizeof *c->apps, app_cmp);
	c->path = strdup(name);
	if (finish_upstreams(&ld, c, name, err) || finish_routes(&ld, c, name, err) ||
	    run_route_tests(&ld, c, name, err))
		goto bad_routes;
	free_drafts(&ld);
	free(ld.apps);
	return c;

bad_routes:
	free_drafts(&ld);
	free(ld.apps);
	pol_config_unref(c);
	return NULL;
bad:
	free_drafts(&ld);
	free(ld.def.secret_key);
	for (i = 0; i < ld.napps; i++)
		free(ld.apps[i].secret_key);
	free(ld.apps);
	pol_config_unref(c); /* frees the keys of the apps finished so far (c->napps of them) */
	return NULL;
}

struct pol_config *
pol_config_load(const char *file, char *err)
{
	return load(run_file, file, file, err);
}

struct pol_config *
pol_config_load_string(const char *text, const char *name, char *err)
{
	return load(run_string, text, name, err);
}

struct pol_config *
pol_config_ref(struct pol_config *c)
{
	atomic_fetch_add_explicit((_Atomic int *)&c->refs, 1, memory_order_relaxed);
	return c;
}

void
pol_config_unref(struct pol_config *c)
{
	int i;

	if (!c)
		return;
	if (atomic_fetch_sub_explicit((_Atomic int *)&c->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (i = 0; i < c->napps; i++)
		free(c->apps[i].secret_key);
	free(c->apps);
	free(c->defaults.secret_key);
	free(c->admin_token);
	free(c->metrics_token);
	free(c->path);
	free(c->routes);
	free(c);
}

struct pol_config *
pol_config_with_change(const struct pol_config *base, const char *appid,
                       const struct pol_app_change *ch)
{
	struct pol_config *c;
	int i, n = base->napps, found = pol_config_has_app(base, appid);

	if (!valid_appid(appid))
		return NULL;
	c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	*c = *base;
	c->refs = 1;
	c->path = base->path ? strdup(base->path) : NULL;
	c->defaults.secret_key = base->defaults.secret_key ? strdup(base->defaults.secret_key) : NULL;
	c->admin_token = base->admin_token ? strdup(base->admin_token) : NULL;
	c->metrics_token = base->metrics_token ? strdup(base->metrics_token) : NULL;
	c->routes = NULL;
	if (base->nroutes && (c->routes = malloc((size_t)base->nroutes * sizeof *c->routes)))
		memcpy(c->routes, base->routes, (size_t)base->nroutes * sizeof *c->routes);
	c->apps = calloc((size_t)n + 1, sizeof *c->apps);
	if (base->nroutes && !c->routes) {
		free(c->apps);
		c->apps = NULL;
	}
	c->napps = 0;
	if (!c->apps) {
		pol_config_unref(c);
		return NULL;
	}
	for (i = 0; i < n; i++) {
		c->apps[i] = base->apps[i];
		c->apps[i].secret_key = base->apps[i].secret_key ? strdup(base->apps[i].secret_key) : NULL;
		c->napps++;
	}
	if (!found) {
		struct pol_app *a = &c->apps[c->napps++];
		*a = base->defaults;
		snprintf(a->id, sizeof a->id, "%s", appid);
		a->secret_key = base->defaults.secret_key ? strdup(base->defaults.secret_key) : NULL;
		qsort(c->apps, (size_t)c->napps, sizeof *c->apps, app_cmp);
	}
	struct pol_app *a = (struct pol_app *)pol_config_app(c, appid, strlen(appid));
	if (ch->user_sync >= 0)
		a->user_sync = ch->user_sync;
	if (ch->conversation_sync >= 0)
		a->conversation_sync = ch->conversation_sync;
	if (ch->mode >= 0)
		a->mode = (enum pol_mode)ch->mode;
	return c;
}

const char *
pol_mode_to_str(enum pol_mode m)
{
	return m == POL_MODE_REPORT ? "report" : "enforce";
}

int
pol_trusted_proxy(const struct pol_config *c, const char *addr, size_t len)
{
	unsigned char a[16];
	char t[64];
	int v6, n, i;

	if (!c->ntrusted || len >= sizeof t)
		return 0;
	memcpy(t, addr, len);
	t[len] = 0;
	if (!(n = parse_addr(t, a, &v6)))
		return 0;
	for (i = 0; i < c->ntrusted; i++) {
		const struct pol_cidr *e = &c->trusted[i];
		int full = e->bits / 8, rest = e->bits % 8;
		if (e->v6 != v6 || memcmp(a, e->addr, (size_t)full))
			continue;
		if (rest && ((a[full] ^ e->addr[full]) & (0xff << (8 - rest)) & 0xff))
			continue;
		return 1;
	}
	return 0;
}

int
pol_origin_valid(const char *o, size_t len)
{
	size_t i, h;

	if (len > 7 && !memcmp(o, "http://", 7))
		i = 7;
	else if (len > 8 && !memcmp(o, "https://", 8))
		i = 8;
	else
		return 0;
	h = i;
	if (o[i] == '[') {
		for (i++; i < len && (isxdigit((unsigned char)o[i]) || o[i] == ':' || o[i] == '.'); i++)
			;
		if (i >= len || o[i] != ']' || i == h + 1)
			return 0;
		i++;
	} else {
		for (; i < len && (isalnum((unsigned char)o[i]) || o[i] == '.' || o[i] == '-'); i++)
			;
		if (i == h)
			return 0;
	}
	if (i < len && o[i] == ':') {
		size_t p = ++i;
		for (; i < len && isdigit((unsigned char)o[i]); i++)
			;
		if (i == p || i - p > 5)
			return 0;
	}
	return i == len;
}

int
pol_cors_origin(const struct pol_config *c, const char *o, size_t len, const char **value,
                size_t *vlen)
{
	int i;

	if (!o || c->cors == POL_CORS_OFF)
		return 0;
	if (c->cors == POL_CORS_ANY) {
		*value = "*";
		*vlen = 1;
		return 1;
	}
	if (!pol_origin_valid(o, len))
		return 0;
	if (c->cors == POL_CORS_LIST) {
		for (i = 0; i < c->ncors; i++)
			if (strlen(c->cors_list[i]) == len && !strncasecmp(c->cors_list[i], o, len))
				break;
		if (i == c->ncors)
			return 0;
	}
	*value = o;
	*vlen = len;
	return 1;
}

const char *
pol_underscore_to_str(enum pol_underscore u)
{
	return u == POL_UNDERSCORE_REJECT ? "reject" : u == POL_UNDERSCORE_ALLOW ? "allow" : "drop";
}

const char *
pol_identity_to_str(enum pol_identity i)
{
	return i == POL_IDENTITY_REQUIRE ? "require" : i == POL_IDENTITY_VERIFY ? "verify" : "off";
}
