/*
 * proxy/main.c - command line: syncgate -c FILE | -t -c FILE | --version | --help.
 */
#include <event2/event.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/config.h"
#include "policy/jwt.h"
#include "policy/route.h"
#include "proxy/log.h"
#include "proxy/process.h"
#include "proxy/tls.h"

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: syncgate [-t | -T] -c FILE\n"
	        "       syncgate token -c FILE --app APPID --user USERID [--ttl SECONDS]\n"
	        "       syncgate --version | --help\n"
	        "\n"
	        "  -c FILE     configuration file (INI; see conf/syncgate.conf)\n"
	        "  -t          check the configuration (and run its [route-test] lines) and exit: 0 if\n"
	        "              valid, else 1 and FILE:LINE: message\n"
	        "  -T          load it (route tests included; certificates are not read, names not\n"
	        "              resolved) and print the route table in precedence order\n"
	        "  -v          debug logging\n"
	        "  token       print a user token for USERID of APPID, signed with the app's secret\n"
	        "              key from FILE (HS256, expiring after --ttl seconds, default 3600)\n"
	        "  --version   print the version, the build and the libraries\n"
	        "  --help      this text\n"
	        "\n"
	        "Signals: SIGHUP reloads the configuration; SIGTERM drains and exits.\n");
}

/* The line of the key a TLS loading error WHY (from proxy/tls.c) is about. */
static int
key_line(const struct pol_config *cfg, const char *why)
{
	static const struct {
		const char *prefix;
		size_t off;
	} map[] = {
		{"[tls] key", offsetof(struct pol_key_lines, tls_key)},
		{"[tls] cert", offsetof(struct pol_key_lines, tls_cert)},
		{"[tls]", offsetof(struct pol_key_lines, tls)},
		{"upstream_ca_file", offsetof(struct pol_key_lines, up_ca)},
		{"upstream_key", offsetof(struct pol_key_lines, up_key)},
		{"upstream_cert", offsetof(struct pol_key_lines, up_cert)},
		{"upstream", offsetof(struct pol_key_lines, upstream)},
	};
	size_t i;
	for (i = 0; i < sizeof map / sizeof map[0]; i++)
		if (!strncmp(why, map[i].prefix, strlen(map[i].prefix)))
			return *(const int *)((const char *)&cfg->lines + map[i].off);
	return 0;
}

/* -t: every upstream's host must resolve (at start it must, or syncgate does not start).
 * Returns -1 when all do, else the index of the first that does not (ERR says why). */
static int
upstreams_resolve(const struct pol_config *cfg, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	int rc, i;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	for (i = 0; i < cfg->nupstreams; i++) {
		const struct pol_upstream *u = &cfg->upstreams[i];
		rc = getaddrinfo(u->host, u->port, &hints, &res);
		if (res)
			freeaddrinfo(res);
		res = NULL;
		if (rc) {
			snprintf(err, errlen, "%s%s%s: cannot resolve '%s': %s", i ? "[upstream:" : "upstream",
			         i ? u->name : "", i ? "] url" : "", u->host, gai_strerror(rc));
			return i;
		}
	}
	return -1;
}

/* The line a TLS error WHY about named upstream U is about (its key's, else the url's). */
static int
upstream_key_line(const struct pol_upstream *u, const char *why)
{
	const char *k = strchr(why, ']');
	if (k && !strncmp(k, "] ca_file", 9))
		return u->ca_line;
	if (k && !strncmp(k, "] cert", 6))
		return u->cert_line;
	if (k && !strncmp(k, "] key", 5))
		return u->key_line;
	return u->url_line ? u->url_line : u->line;
}

/* -t: the listeners' and every upstream's certificates and keys. 0, or 1 (printed). */
static int
check_tls(const struct pol_config *cfg, const char *file)
{
	char err[POL_ERR_MAX];
	int failed, i, line;
	SSL_CTX *s = px_tls_server_ctx_new(cfg, err, sizeof err, &failed);

	SSL_CTX_free(s);
	if (failed) {
		fprintf(stderr, "%s:%d: %s\n", file, key_line(cfg, err), err);
		return 1;
	}
	for (i = 0; i < cfg->nupstreams; i++) {
		SSL_CTX *c = px_tls_client_ctx_new(&cfg->upstreams[i], err, sizeof err, &failed);
		SSL_CTX_free(c);
		if (failed) {
			line = i ? upstream_key_line(&cfg->upstreams[i], err) : key_line(cfg, err);
			fprintf(stderr, "%s:%d: %s\n", file, line, err);
			return 1;
		}
	}
	return 0;
}

/* -T: the route table requests are matched against, in precedence order. */
static void
print_routes(const struct pol_config *cfg)
{
	char line[1400];
	int i;

	printf("# %d routes in precedence order (%d from the file); the first that matches a request "
	       "applies%s\n", cfg->nroutes, cfg->operator_routes,
	       cfg->operator_routes ? "" : ".\n# No route in the file: every request goes to the default "
	                                   "upstream unchanged, classified by the built-in TalkJS table");
	for (i = 0; i < cfg->nroutes; i++) {
		pol_route_describe(cfg, &cfg->routes[i], line, sizeof line);
		printf("%s\n", line);
	}
	for (i = 0; i < cfg->nupstreams; i++)
		printf("# upstream %s = %s://%s%s%s:%s%s%s%s\n", cfg->upstreams[i].name,
		       cfg->upstreams[i].scheme, strchr(cfg->upstreams[i].host, ':') ? "[" : "",
		       cfg->upstreams[i].host, strchr(cfg->upstreams[i].host, ':') ? "]" : "",
		       cfg->upstreams[i].port, cfg->upstreams[i].host_header[0] ? " (Host: " : " (Host: as sent by the client",
		       cfg->upstreams[i].host_header, ")");
	printf("# lookups go to upstream %s\n", cfg->upstreams[cfg->lookup_upstream].name);
}

/* syncgate token -c FILE --app APPID --user USERID [--ttl SECONDS] */
static int
token_main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"app", required_argument, NULL, 'a'},
		{"user", required_argument, NULL, 'u'},
		{"ttl", required_argument, NULL, 'T'},
		{NULL, 0, NULL, 0},
	};
	const char *file = NULL, *app = NULL, *user = NULL;
	char err[POL_ERR_MAX], tok[POL_JWT_MAX_BYTES], *end;
	unsigned long ttl = 3600;
	const struct pol_app *a;
	struct pol_config *cfg;
	long n;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "c:", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			file = optarg;
			break;
		case 'a':
			app = optarg;
			break;
		case 'u':
			user = optarg;
			break;
		case 'T':
			ttl = strtoul(optarg, &end, 10);
			if (*end || ttl > 31536000) {
				fprintf(stderr, "syncgate token: --ttl is 0..31536000 seconds\n");
				return 2;
			}
			break;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!file || !app || !user || !*user || optind != argc) {
		usage(stderr);
		return 2;
	}
	cfg = pol_config_load(file, err);
	if (!cfg) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	a = pol_config_app(cfg, app, strlen(app));
	if (!pol_config_has_app(cfg, app) || !a->secret_key) {
		fprintf(stderr, "syncgate token: %s has no [app:%s] section with a secret key\n", file, app);
		pol_config_unref(cfg);
		return 1;
	}
	n = pol_jwt_sign_user(a->secret_key, app, user, strlen(user), (int64_t)time(NULL),
	                      (uint32_t)ttl, tok, sizeof tok);
	pol_config_unref(cfg);
	if (n < 0) {
		fprintf(stderr, "syncgate token: the user id is too long\n");
		return 1;
	}
	printf("%s\n", tok);
	return 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *file = NULL;
	int test = 0, table = 0, opt, rc;
	char err[POL_ERR_MAX];
	struct pol_config *cfg;
	struct px_process *m;

	if (argc > 1 && !strcmp(argv[1], "token"))
		return token_main(argc - 1, argv + 1);
	while ((opt = getopt_long(argc, argv, "c:tTvh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			file = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'T':
			table = 1;
			break;
		case 'v':
			px_log_set_level(PX_LOG_DEBUG);
			break;
		case 'V':
			printf("syncgate %s (commit %s, %s)\n%s\nlibevent %s\n", SYNCGATE_VERSION,
			       SYNCGATE_COMMIT, SYNCGATE_BUILD, OpenSSL_version(OPENSSL_VERSION),
			       event_get_version());
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!file || optind != argc) {
		usage(stderr);
		return 2;
	}
	cfg = pol_config_load(file, err);
	if (!cfg) {
		if (test || table)
			fprintf(stderr, "%s\n", err); /* -t speaks to a person: FILE:LINE: message */
		else
			px_log(PX_LOG_ERROR, "startup", "why", err, NULL); /* a log collector reads this */
		return 1;
	}
	if (test || table) {
		/* the certificates and keys are part of the configuration: load them too */
		int bad;
		if (!table && check_tls(cfg, file)) {
			pol_config_unref(cfg);
			return 1;
		}
		if (!table && (bad = upstreams_resolve(cfg, err, sizeof err)) >= 0) {
			fprintf(stderr, "%s:%d: %s\n", file,
			        bad ? cfg->upstreams[bad].url_line : cfg->lines.upstream, err);
			pol_config_unref(cfg);
			return 1;
		}
		if (table)
			print_routes(cfg);
		else
			printf("%s: configuration ok\n", file);
		pol_config_unref(cfg);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	m = px_process_new(cfg, file);
	pol_config_unref(cfg);
	if (!m)
		return 1;
	rc = px_process_run(m);
	px_process_free(m);
	return rc;
}
