/*
 * proxy/main.c - command line: syncgate -c FILE | -t -c FILE | --version | --help.
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "policy/config.h"
#include "proxy/log.h"
#include "proxy/server.h"
#include "proxy/tls.h"

static void
usage(FILE *f)
{
	fprintf(f,
	        "usage: syncgate [-t] -c FILE\n"
	        "       syncgate --version | --help\n"
	        "\n"
	        "  -c FILE     configuration file (INI; see conf/syncgate.conf)\n"
	        "  -t          check the configuration and exit: 0 if valid, else 1 and FILE:LINE: message\n"
	        "  -v          debug logging\n"
	        "  --version   print the version\n"
	        "  --help      this text\n"
	        "\n"
	        "Signals: SIGHUP reloads the configuration; SIGTERM drains and exits.\n");
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
	int test = 0, opt, rc;
	char err[POL_ERR_MAX];
	struct pol_config *cfg;
	struct px_main *m;

	while ((opt = getopt_long(argc, argv, "c:tvh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'c':
			file = optarg;
			break;
		case 't':
			test = 1;
			break;
		case 'v':
			px_log_set_level(PX_LOG_DEBUG);
			break;
		case 'V':
			printf("syncgate %s\n", SYNCGATE_VERSION);
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
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (test) {
		/* the certificates and keys are part of the configuration: load them too */
		int failed_s, failed_c;
		char terr[POL_ERR_MAX];
		SSL_CTX *s = px_tls_server_ctx_new(cfg, err, sizeof err, &failed_s);
		SSL_CTX *c = failed_s ? NULL : px_tls_client_ctx_new(cfg, terr, sizeof terr, &failed_c);
		SSL_CTX_free(s);
		SSL_CTX_free(c);
		if (failed_s || (!failed_s && failed_c)) {
			fprintf(stderr, "%s:0: %s\n", file, failed_s ? err : terr);
			pol_config_unref(cfg);
			return 1;
		}
		printf("%s: configuration ok\n", file);
		pol_config_unref(cfg);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	m = px_main_new(cfg, file);
	pol_config_unref(cfg);
	if (!m)
		return 1;
	rc = px_main_run(m);
	px_main_free(m);
	return rc;
}
