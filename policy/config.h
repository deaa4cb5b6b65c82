/*
 * policy/config.h - syncgate's configuration model.
 *
 * A struct pol_config is built once from an INI file (inih), validated whole, and then never
 * changes: a reload builds a new one and swaps the pointer. It is reference-counted so a call
 * that started on the old policy finishes on it (Varnish VCL style).
 *
 * This is the only file of policy/ that touches the file system (the config file itself and
 * secret_key_file); everything else in policy/ is computation on memory it is handed.
 */
#ifndef SG_POLICY_CONFIG_H
#define SG_POLICY_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define POL_MAX_LISTEN 8
#define POL_MAX_APPS 4096
#define POL_APPID_MAX 128
#define POL_ERR_MAX 512
#define POL_PATH_MAX 512
#define POL_NAME_MAX 63        /* bytes of an upstream or route name */
#define POL_UPSTREAM_MAX 16    /* upstreams: the default plus [upstream:NAME] sections */

enum pol_mode { POL_MODE_ENFORCE, POL_MODE_REPORT };
enum pol_identity { POL_IDENTITY_OFF, POL_IDENTITY_VERIFY, POL_IDENTITY_REQUIRE };
/* Request header names with "_" (Envoy's headers_with_underscores_action): a CGI/WSGI-style
 * backend maps "_" to "-", so such a name may read as another header. DROP (the default, as
 * nginx's underscores_in_headers off) removes them from the forwarded head, REJECT answers 400,
 * ALLOW forwards them. Whatever the setting, a name that reads as a header syncgate frames,
 * routes or decides on (Content-Length, Transfer-Encoding, Host, Connection, Upgrade, ...)
 * is refused (proxy/httpguard.c). */
enum pol_underscore { POL_UNDERSCORE_DROP, POL_UNDERSCORE_REJECT, POL_UNDERSCORE_ALLOW };

/* The CORS origin policy of syncgate's own answers ([syncgate] cors_origins): a browser page
 * reads a refusal's reason only if the answer names its origin. REFLECT (the default): any
 * request's Origin is named (the answers hold nothing but the reason); LIST: only the listed
 * origins; ANY: "*"; OFF: none. */
enum pol_cors { POL_CORS_REFLECT, POL_CORS_LIST, POL_CORS_ANY, POL_CORS_OFF };
#define POL_CORS_MAX 16      /* origins in cors_origins */
#define POL_TRUSTED_MAX 32   /* networks in trusted_proxies */

/* A network of [syncgate] trusted_proxies: ADDR/BITS (IPv4 or IPv6). */
struct pol_cidr {
	int v6;
	unsigned char addr[16];
	int bits;
};
#define POL_ORIGIN_MAX 256   /* bytes of one origin */

/* Locked fields (user_fields_locked, ...): names a browser may never set, even with the
 * switch on; "custom.plan" is the key "plan" inside the object "custom". */
#define POL_LOCKED_MAX 16        /* names per list */
#define POL_FIELD_MAX 64         /* bytes of one name, dots included */
enum pol_field_kind { POL_FIELDS_USER, POL_FIELDS_CONV, POL_FIELDS_PART, POL_FIELDS_KINDS };
struct pol_locked {
	char name[POL_LOCKED_MAX][POL_FIELD_MAX];
	int n;
};

/* Per-app switches. Every field is always set: an app section starts as a copy of [app:*]. */
struct pol_app {
	char id[POL_APPID_MAX + 1];
	int user_sync;          /* 1 = browser may create/update users (TalkJS default) */
	int conversation_sync;  /* 1 = browser may create/update conversations */
	enum pol_mode mode;
	enum pol_identity identity;
	char *secret_key;       /* NULL when none configured; owned by the config */
	struct pol_locked locked[POL_FIELDS_KINDS]; /* user_fields_locked, conversation_..., participant_... */
	int strip_locked;       /* on_locked = strip (else reject) */
	uint32_t budget;        /* refusal_budget = N/WINDOW: refusals a user may get per window
	                         * before further changes are refused from memory (0: none) */
	uint32_t budget_window_ms;
	uint32_t ban_ms;        /* refusal_ban: an exhausted budget also bans the user this long */
};

/*
 * Every size and time a peer controls, in one place. Defaults are in config.c next to the
 * table that parses them (and in conf/syncgate.conf); ranges are checked at load time.
 */
struct pol_limits {
	uint32_t request_line_bytes;    /* 414 past it */
	uint32_t header_bytes;          /* 431 past it (whole head, request line included) */
	uint32_t header_count;          /* 431 past it */
	uint64_t body_bytes;            /* 413 past it */
	uint32_t decide_body_bytes;     /* a sync call's body up to this size is held whole before
	                                 * it is decided (0: decided on the head alone) */
	uint32_t response_header_bytes; /* upstream head cap; 502 past it */
	uint32_t ws_message_bytes;      /* reassembled client text message; close 1009 */
	uint32_t ws_fragments;          /* fragments per message; close 1009 */
	uint32_t json_depth;            /* nesting of a realtime frame; 400 INVALID_REQUEST */
	uint32_t json_tokens;           /* values in one realtime frame; 400 */
	uint32_t batch_actions;         /* participant actions per batch; 400 */
	uint32_t max_connections;       /* client connections per worker; accept paused past it */
	uint32_t max_connections_per_client; /* per client address, all workers; 0: no cap */
	uint32_t header_timeout_ms;     /* absolute deadline for a request head (slowloris, 408) */
	uint32_t body_idle_ms;          /* longest gap inside a request body (408) */
	uint32_t keepalive_idle_ms;     /* idle client connection between requests */
	uint32_t upstream_connect_ms;   /* 502 past it */
	uint32_t upstream_response_ms;  /* request sent -> response head; 504 past it */
	uint32_t ws_idle_ms;            /* no frame either way for this long closes the socket */
	uint32_t shutdown_grace_ms;     /* SIGTERM: in-flight work gets this long */
	uint32_t upstream_idle_ms;      /* pooled upstream connection lifetime while idle */
	uint32_t upstream_pool;         /* idle upstream connections kept per worker */
	uint32_t lookup_timeout_ms;     /* existence lookups */
	uint32_t lookup_cache_ttl_ms;   /* positive facts */
	uint32_t lookup_negative_ttl_ms;
	uint32_t lookup_max_inflight;   /* concurrent lookups per worker; past it: fail closed */
	uint32_t lookup_cache_bytes;     /* per worker: facts (keys, participant ids) held */
	uint32_t jwt_clock_skew_s;
	uint32_t tls_handshake_ms;      /* accept -> TLS handshake done; closed past it */
};

struct pol_listen {
	char host[256];
	char port[8];
	int tls;                /* "HOST:PORT tls": terminate TLS with [tls] cert/key */
	int proxy_protocol;     /* "HOST:PORT proxy_protocol": each connection starts with a
	                         * PROXY protocol v1 or v2 header naming the client */
};

/* [tls]: the listeners' certificate and protocol floor. Files are read by proxy/tls.c. */
struct pol_tls {
	char cert[POL_PATH_MAX];        /* PEM, leaf first then the chain; "" when unset */
	char key[POL_PATH_MAX];
	int min_version;                /* 12 or 13 (TLS 1.2 / 1.3) */
	char ciphers[512];              /* TLS 1.2 cipher list (OpenSSL syntax) */
	char ciphersuites[256];         /* TLS 1.3 suites; "" = OpenSSL's */
	int session_resumption;         /* session cache and tickets */
};

/* Upstream TLS (upstream = https://...): verification is on unless switched off. */
struct pol_upstream_tls {
	int verify;                     /* check the chain and the name (default 1) */
	char ca_file[POL_PATH_MAX];     /* "" = the system store */
	char cert[POL_PATH_MAX];        /* client certificate for mutual TLS, "" = none */
	char key[POL_PATH_MAX];
	char server_name[256];          /* SNI and name checked; "" = upstream host */
};

/*
 * An upstream: the default one ([syncgate] upstream and its upstream_* keys, index 0, named
 * "default") or an [upstream:NAME] section. Addresses are resolved by proxy/ at start.
 */
struct pol_upstream {
	char name[POL_NAME_MAX + 1];
	char scheme[8];                 /* "http" or "https" */
	int tls;                        /* https: HTTP and WebSocket (wss) go over TLS */
	char host[256];                 /* as in the url (no brackets) */
	char port[8];
	char host_header[300];          /* the Host sent; "" (the default upstream): the
	                                 * client's Host header is passed as it came */
	struct pol_upstream_tls t;      /* server_name = sni */
	uint32_t pool;                  /* idle connections kept per worker */
	int line;                       /* [upstream:NAME] header (0: the default's [syncgate]) */
	int url_line, ca_line, cert_line, key_line;
};

/*
 * [fleet]: the Redis store a fleet of syncgates shares switches, budgets and cache
 * invalidations through (proxy/fleet.c). Redis is named by an address, never a host name:
 * hiredis 0.14 resolves names blocking, on the loop.
 */
struct pol_fleet {
	int on;                         /* the file has a [fleet] section */
	char redis_host[64];            /* an IPv4 or IPv6 literal; "" with redis_unix */
	char redis_port[8];
	char redis_unix[POL_PATH_MAX];  /* unix:/path */
	char redis[POL_PATH_MAX + 8];   /* as written, for log lines */
	char prefix[65];                /* key_prefix, default "syncgate:" */
	char password[256];             /* from password_file ("" none) */
	char state_file[POL_PATH_MAX];  /* "" none */
	uint32_t poll_ms;               /* version poll, default 1 s */
	uint32_t timeout_ms;            /* every command's deadline, default 1 s */
	char instance[128];             /* "" = HOSTNAME-PID, filled by proxy/ */
	int line;                       /* the section header */
};

struct pol_route;
struct pol_route_test;

/* Where keys were set (0: not in the file), so that checks made after loading (in proxy/:
 * resolving the upstream, reading certificates) name the line to fix. */
struct pol_key_lines {
	int syncgate, tls;              /* the section headers */
	int listen, upstream, up_ca, up_cert, up_key;
	int tls_cert, tls_key;
	int admin_listen, admin_token;
};

struct pol_config {
	int refs;               /* see pol_config_ref(); atomic */
	struct pol_key_lines lines;
	char *path;             /* file it was read from */
	struct pol_listen listen[POL_MAX_LISTEN];
	int nlisten;
	char upstream_scheme[8]; /* "http" or "https" */
	int upstream_tls;        /* scheme is https: HTTP and WebSocket (wss) go over TLS */
	struct pol_upstream_tls up_tls;
	struct pol_tls tls;
	int tls_listeners;       /* how many listen addresses are marked tls */
	char upstream_host[256];
	char upstream_port[8];
	int workers;
	int watch_config;        /* [syncgate] watch_config = on: reload when the file changes */
	int access_log;          /* [syncgate] access_log = on | off (default on) */
	enum pol_underscore underscore_headers; /* [syncgate] underscore_headers (default drop) */
	struct pol_cidr trusted[POL_TRUSTED_MAX]; /* [syncgate] trusted_proxies */
	int ntrusted;
	enum pol_cors cors;      /* [syncgate] cors_origins */
	char cors_list[POL_CORS_MAX][POL_ORIGIN_MAX];
	int ncors;
	struct pol_app defaults; /* [app:*] */
	struct pol_app *apps;    /* sorted by id for bsearch */
	int napps;
	struct pol_limits limits;
	char admin_listen[300];  /* [admin] listen as written; empty: no admin listener */
	char admin_host[256];
	char admin_port[8];
	char *admin_token;       /* from token_file; NULL: none (loopback only) */
	char *metrics_token;     /* from metrics_token_file: /metrics only; NULL: none */
	struct pol_upstream upstreams[POL_UPSTREAM_MAX]; /* [0]: the default */
	int nupstreams;
	int lookup_upstream;     /* [syncgate] lookup_upstream: where existence lookups go */
	struct pol_route *routes; /* the route table in precedence order, built-ins included */
	int nroutes;
	int operator_routes;     /* routes from the file (0: requests skip the table: every
	                          * one goes to the default upstream unchanged) */
	struct pol_fleet fleet;  /* [fleet] */
};

/* The upstream named NAME (LEN bytes), or -1. */
int pol_config_upstream(const struct pol_config *c, const char *name, size_t len);

/*
 * Reads and validates FILE. Returns a config with one reference, or NULL with ERR holding
 * "FILE:LINE: message" (LINE 0 for whole-file problems). ERR has POL_ERR_MAX bytes.
 */
struct pol_config *pol_config_load(const char *file, char *err);

/* Same, from a string (unit tests); NAME is used in messages. */
struct pol_config *pol_config_load_string(const char *text, const char *name, char *err);

/* Reference counting; safe across threads. The last unref frees everything. */
struct pol_config *pol_config_ref(struct pol_config *c);
void pol_config_unref(struct pol_config *c);

/*
 * The app for APPID (LEN bytes, not NUL-terminated): its own section, else [app:*] (with
 * id left empty). Never NULL. Valid as long as the config is.
 */
const struct pol_app *pol_config_app(const struct pol_config *c, const char *appid, size_t len);

/* A runtime change of one app's switches (admin API); -1 leaves a field as it is. */
struct pol_app_change {
	int user_sync, conversation_sync, mode;
};

/*
 * A new config: BASE with app APPID's switches changed (the app gets its own entry, copied
 * from [app:*], if it had none). Returns it with one reference, or NULL on ENOMEM or a bad id.
 */
struct pol_config *pol_config_with_change(const struct pol_config *base, const char *appid,
                                          const struct pol_app_change *ch);

/* 1 if APPID has an [app:APPID] section (as opposed to running on [app:*]). */
int pol_config_has_app(const struct pol_config *c, const char *appid);

const char *pol_mode_to_str(enum pol_mode m);
const char *pol_identity_to_str(enum pol_identity i);
const char *pol_underscore_to_str(enum pol_underscore u);

/* 1 if the LEN bytes at O are a serialized origin (RFC 6454 §6.2) syncgate may echo:
 * "http" or "https", "://", a host of [A-Za-z0-9.-] or a bracketed IPv6 address, an optional
 * ":" port of 1-5 digits, nothing else. */
int pol_origin_valid(const char *o, size_t len);

/*
 * The Access-Control-Allow-Origin value for syncgate's own answer to a request whose Origin
 * header is O (LEN bytes; NULL: none) under C's cors_origins: sets *VALUE (O itself, or "*")
 * and *VLEN and returns 1, or returns 0 when the answer names no origin.
 */
int pol_cors_origin(const struct pol_config *c, const char *o, size_t len, const char **value,
                    size_t *vlen);

/* 1 if ADDR (an IPv4 or IPv6 address as text, LEN bytes) is in one of C's trusted_proxies
 * networks; 0 for any other or unparsable text. */
int pol_trusted_proxy(const struct pol_config *c, const char *addr, size_t len);

#endif
