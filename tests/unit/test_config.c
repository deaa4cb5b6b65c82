/* Config loader: each error message with its line, each default. */
#include <stdlib.h>
#include <unistd.h>

#include "policy/config.h"
#include "t.h"


/* BASE and then EXTRA; a listen or upstream key first in EXTRA replaces BASE's (a key may
 * appear once per section), on the same line. */
static struct pol_config *
load(const char *extra, char *err)
{
	static char buf[8192];
	const char *lines[3] = {"[syncgate]\n", "listen = 127.0.0.1:8080\n", "upstream = http://127.0.0.1:8081\n"};
	if (!strncmp(extra, "listen =", 8))
		lines[1] = "\n";
	if (!strncmp(extra, "upstream =", 10))
		lines[2] = "\n";
	snprintf(buf, sizeof buf, "%s%s%s%s", lines[0], lines[1], lines[2], extra);
	return pol_config_load_string(buf, "t.conf", err);
}

static void
expect_error(const char *extra, const char *want)
{
	char err[POL_ERR_MAX] = "";
	struct pol_config *c = load(extra, err);
	CHECK(c == NULL);
	if (!strstr(err, want)) {
		t_fail++;
		fprintf(stderr, "error for %s: got \"%s\", want substring \"%s\"\n", extra, err, want);
	} else {
		t_pass++;
	}
	pol_config_unref(c);
}

/* cors_origins: parsing, and the Access-Control-Allow-Origin value of syncgate's answers. */
static void
test_cors(void)
{
	static const char *const valid[] = {"https://app.example.com", "http://localhost:3000",
	                                    "https://[::1]:8443", "http://10.0.0.1", "https://a-b.c"};
	static const char *const invalid[] = {"null", "https://", "ftp://x", "https://a b",
	                                      "https://x/path", "https://x:", "https://x:123456",
	                                      "https://[zz]", "http://x?y", "HTTPS://x", ""};
	char err[POL_ERR_MAX];
	struct pol_config *c;
	const char *v;
	size_t vl, i;

	for (i = 0; i < sizeof valid / sizeof *valid; i++)
		CHECK(pol_origin_valid(valid[i], strlen(valid[i])));
	for (i = 0; i < sizeof invalid / sizeof *invalid; i++)
		CHECK(!pol_origin_valid(invalid[i], strlen(invalid[i])));

	c = load("", err); /* default: reflect a valid origin */
	CHECK(c && c->cors == POL_CORS_REFLECT);
	CHECK(c && pol_cors_origin(c, "https://a.example", 17, &v, &vl) && vl == 17 && !memcmp(v, "https://a.example", 17));
	CHECK(c && !pol_cors_origin(c, "null", 4, &v, &vl));
	CHECK(c && !pol_cors_origin(c, NULL, 0, &v, &vl));
	pol_config_unref(c);
	c = load("cors_origins = https://a.example,  http://localhost:3000\n", err);
	CHECK(c && c->cors == POL_CORS_LIST && c->ncors == 2);
	CHECK(c && pol_cors_origin(c, "http://localhost:3000", 21, &v, &vl));
	CHECK(c && !pol_cors_origin(c, "https://b.example", 17, &v, &vl));
	pol_config_unref(c);
	c = load("cors_origins = *\n", err);
	CHECK(c && pol_cors_origin(c, "https://b.example", 17, &v, &vl) && vl == 1 && *v == '*');
	pol_config_unref(c);
	c = load("cors_origins = off\n", err);
	CHECK(c && !pol_cors_origin(c, "https://b.example", 17, &v, &vl));
	pol_config_unref(c);
	expect_error("cors_origins = ftp://x\n", "t.conf:4: cors_origins: 'ftp://x' is not an origin");
	expect_error("cors_origins = ,\n", "t.conf:4: cors_origins: no origin given");
}

/* trusted_proxies: networks, v4 and v6, prefix bits that end inside a byte. */
static void
test_trusted(void)
{
	char err[POL_ERR_MAX];
	struct pol_config *c = load("trusted_proxies = 10.0.0.0/8, 192.168.1.128/25 ,  2001:db8::/32, 127.0.0.1\n", err);
	static const char *const in[] = {"10.255.0.1", "192.168.1.200", "2001:db8:ffff::1", "127.0.0.1"};
	static const char *const out[] = {"11.0.0.1", "192.168.1.127", "2001:db9::1", "127.0.0.2", "::ffff:10.0.0.1", "x", ""};
	size_t i;

	CHECK(c && c->ntrusted == 4);
	for (i = 0; c && i < sizeof in / sizeof *in; i++)
		CHECK(pol_trusted_proxy(c, in[i], strlen(in[i])));
	for (i = 0; c && i < sizeof out / sizeof *out; i++)
		CHECK(!pol_trusted_proxy(c, out[i], strlen(out[i])));
	pol_config_unref(c);
	c = load("", err); /* none by default: no peer is trusted */
	CHECK(c && !pol_trusted_proxy(c, "127.0.0.1", 9));
	pol_config_unref(c);
	expect_error("trusted_proxies = 10.0.0.0/33\n", "t.conf:4: trusted_proxies: '10.0.0.0/33' is not an address");
	expect_error("trusted_proxies = example.com\n", "t.conf:4: trusted_proxies: 'example.com' is not an address");
}

int
main(void)
{
	char err[POL_ERR_MAX];
	struct pol_config *c;
	const struct pol_app *a;

	test_cors();
	test_trusted();
	c = load("listen = 127.0.0.1:8080 proxy_protocol, 127.0.0.1:8081\n", err);
	CHECK(c && c->nlisten == 2);
	CHECK(c && c->listen[0].proxy_protocol && !c->listen[0].tls);
	CHECK(c && !c->listen[1].proxy_protocol && !c->listen[1].tls);
	pol_config_unref(c);
	/* both flags, in either order (a tls listener then needs [tls] cert and key) */
	expect_error("listen = 127.0.0.1:8443 proxy_protocol tls\n", "[tls]");

	/* defaults */
	c = load("", err);
	CHECK(c != NULL);
	CHECK(c->nlisten == 1);
	CHECK_STR(c->listen[0].host, "127.0.0.1");
	CHECK_STR(c->listen[0].port, "8080");
	CHECK_STR(c->upstream_host, "127.0.0.1");
	CHECK_STR(c->upstream_port, "8081");
	CHECK(c->workers == 1);
	CHECK(c->limits.request_line_bytes == 8192);
	CHECK(c->limits.header_bytes == 32768);
	CHECK(c->limits.header_count == 100);
	CHECK(c->limits.body_bytes == 16u * 1024 * 1024);
	CHECK(c->limits.ws_message_bytes == 1024 * 1024);
	CHECK(c->limits.batch_actions == 100);
	CHECK(c->limits.header_timeout_ms == 10000);
	CHECK(c->limits.lookup_cache_ttl_ms == 30000);
	a = pol_config_app(c, "anything", 8);
	CHECK(a->user_sync == 1 && a->conversation_sync == 1);
	CHECK(a->mode == POL_MODE_ENFORCE && a->identity == POL_IDENTITY_OFF);
	CHECK(a->secret_key == NULL);
	pol_config_unref(c);

	/* app sections inherit [app:*] regardless of order; lookups are exact */
	c = load("[app:abc]\nuser_sync = off\nsecret_key = sk_test_1\n"
	         "[app:*]\nconversation_sync = off\nmode = report\n"
	         "[app:abd]\nidentity = require\nsecret_key = sk_test_2\n"
	         "[limits]\nbody = 1m\nheader_timeout = 2s\nws_idle = 3m\njwt_clock_skew = 5\n",
	         err);
	CHECK(c != NULL);
	if (c) {
		a = pol_config_app(c, "abc", 3);
		CHECK_STR(a->id, "abc");
		CHECK(a->user_sync == 0 && a->conversation_sync == 0 && a->mode == POL_MODE_REPORT);
		CHECK_STR(a->secret_key, "sk_test_1");
		a = pol_config_app(c, "abd", 3);
		CHECK(a->identity == POL_IDENTITY_REQUIRE && a->user_sync == 1);
		a = pol_config_app(c, "ab", 2);
		CHECK(a->id[0] == 0 && a->conversation_sync == 0);
		a = pol_config_app(c, "abcd", 4);
		CHECK(a->id[0] == 0);
		CHECK(c->limits.body_bytes == 1024 * 1024);
		CHECK(c->limits.header_timeout_ms == 2000);
		CHECK(c->limits.ws_idle_ms == 180000);
		CHECK(c->limits.jwt_clock_skew_s == 5);
		pol_config_ref(c);
		pol_config_unref(c);
		pol_config_unref(c);
	}

	/* listen lists and IPv6 */
	c = load("listen = 127.0.0.1:1, [::1]:2\n", err);
	CHECK(c && c->nlisten == 2 && !strcmp(c->listen[1].host, "::1") &&
	      !strcmp(c->listen[1].port, "2"));
	pol_config_unref(c);

	/* errors, with file and line */
	expect_error("bogus = 1\n", "t.conf:4: unknown key 'bogus' in [syncgate]");
	/* a section or a key given twice: refused, naming both lines (the last one silently
	 * winning would let a stray "user_sync = on" turn protection off) */
	expect_error("[app:a]\nuser_sync = off\n[app:b]\n[app:a]\nuser_sync = on\n",
	             "t.conf:7: section '[app:a]' again (first at line 4)");
	expect_error("[app:a]\nuser_sync = off\nconversation_sync = off\nuser_sync = on\n",
	             "t.conf:7: key 'user_sync' again (first at line 5)");
	expect_error("workers = 2\nlisten = 127.0.0.1:9\n", "t.conf:5: key 'listen' again (first at line 2)");
	expect_error("[limits]\nbody = 1m\n[syncgate]\nworkers = 2\n", "t.conf:6: section '[syncgate]' again (first at line 1)");
	/* what used to pass -t and fail at start or never work (#20): each names its line */
	expect_error("listen = 127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:1\n",
	             "t.conf:4: listen: '127.0.0.1:1' is listed twice");
	expect_error("[admin]\nlisten = 127.0.0.1:8080\n",
	             "t.conf:5: [admin] listen 127.0.0.1:8080 is also a [syncgate] listen address");
	expect_error("listen = 0.0.0.0:9000\n[admin]\nlisten = 127.0.0.1:9000\n",
	             "t.conf:6: [admin] listen 127.0.0.1:9000 is also a [syncgate] listen address");
	expect_error("[app:a]\nuser_sync = off\nidentity = require\n",
	             "t.conf:6: identity = require needs the app's secret_key (a)");
	expect_error("[app:*]\nidentity = require\n[app:a]\nsecret_key = k\n",
	             "t.conf:5: identity = require needs the app's secret_key ([app:*])");
	expect_error("[admin]\nlisten = 10.0.0.1:9\n", "t.conf:5: [admin] listen on a non-loopback address needs token_file");
	expect_error("upstream = https://a:1\nupstream_cert = /c.pem\n", "t.conf:5: upstream_cert and upstream_key go together");
	c = load("[tls]\ncert = /c.pem\nkey = /k.pem\n[admin]\nlisten = 127.0.0.1:1\n", err);
	CHECK(c && c->lines.tls_cert == 5 && c->lines.tls_key == 6 && c->lines.listen == 2 &&
	      c->lines.upstream == 3 && c->lines.admin_listen == 8);
	pol_config_unref(c);
	c = pol_config_load("tests", err); /* a directory given as -c */
	CHECK(c == NULL && strstr(err, "tests:0: cannot open: Is a directory"));
	/* the same key in two sections is fine; indented keys are keys (not continuation lines) */
	c = load("[app:a]\n  user_sync = off\n\tconversation_sync = off\n[app:b]\n    user_sync = off\n", err);
	CHECK(c != NULL);
	if (c) {
		a = pol_config_app(c, "a", 1);
		CHECK(a->user_sync == 0 && a->conversation_sync == 0);
		a = pol_config_app(c, "b", 1);
		CHECK(a->user_sync == 0 && a->conversation_sync == 1);
		pol_config_unref(c);
	}
	{
		char longline[400];
		memset(longline, 'A', sizeof longline);
		memcpy(longline, "[tls]\nciphers = ", 16);
		memcpy(longline + sizeof longline - 2, "\n", 2);
		expect_error(longline, "t.conf:5: line longer than");
	}
	expect_error("[nope]\nx = 1\n", "t.conf:5: unknown section [nope]");
	expect_error("[app:a]\nuser_sync = maybe\n", "t.conf:5: user_sync: 'maybe' is not on or off");
	expect_error("[app:a]\nmode = loud\n", "mode: 'loud' is not enforce or report");
	expect_error("[app:a]\nidentity = x\n", "identity: 'x' is not off, verify or require");
	expect_error("[app:a]\ncolour = red\n", "unknown key 'colour' in an app section");
	expect_error("[app:a b]\nuser_sync = on\n", "app id must be");
	expect_error("[app:a]\nsecret_key = x\nsecret_key = y\n", "t.conf:6: key 'secret_key' again (first at line 5)");
	expect_error("[app:a]\nsecret_key_file = /nonexistent/key\n", "secret_key_file: cannot read");
	expect_error("[limits]\nbody = lots\n", "t.conf:5: body: 'lots' is not a valid value");
	expect_error("[limits]\nheader_count = 5\n", "header_count: out of range (8..1000)");
	expect_error("[limits]\nheader_timeout = 10\n", "header_timeout: '10' is not a valid value");
	expect_error("[limits]\nspeed = 1\n", "unknown key 'speed' in [limits]");
	expect_error("workers = 0\n", "workers: '0' is not 1..64");
	expect_error("listen = nowhere\n", "listen: 'nowhere' is not HOST:PORT");
	expect_error("upstream = ftp://x:1\n", "upstream: 'ftp://x:1' must be http://HOST:PORT");
	expect_error("upstream = http://x:1/path\n", "must not have a path");
	expect_error("this is not ini\n", "t.conf:4: syntax error");
	c = pol_config_load_string("[syncgate]\nlisten = 127.0.0.1:1\n", "u.conf", err);
	CHECK(c == NULL && strstr(err, "u.conf:1: [syncgate] upstream is required")); /* the section names the line */
	c = pol_config_load_string("[syncgate]\nupstream = http://a:1\n", "u.conf", err);
	CHECK(c == NULL && strstr(err, "listen is required"));
	c = pol_config_load("/nonexistent/syncgate.conf", err);
	CHECK(c == NULL && strstr(err, "/nonexistent/syncgate.conf:0: cannot open"));

	/* [admin]: a non-loopback address needs a token; the token comes from a file */
	expect_error("[admin]\nlisten = 0.0.0.0:9901\n", "[admin] listen on a non-loopback address needs token_file");
	expect_error("[admin]\nlisten = nowhere\n", "t.conf:5: [admin] listen: 'nowhere' is not HOST:PORT");
	expect_error("[admin]\ntoken_file = /nonexistent/token\n", "token_file: cannot read");
	expect_error("[admin]\ncolour = red\n", "unknown key 'colour' in [admin]");
	c = load("[admin]\nlisten = 127.0.0.1:9901\n", err);
	CHECK(c && !strcmp(c->admin_port, "9901") && c->admin_token == NULL);
	pol_config_unref(c);
	{
		FILE *f = fopen("/tmp/sg_test_token", "w");
		fputs("s3cret\n", f);
		fclose(f);
		c = load("[admin]\nlisten = 10.1.2.3:9901\ntoken_file = /tmp/sg_test_token\n", err);
		CHECK(c && !strcmp(c->admin_token, "s3cret"));
		/* runtime changes copy everything and change one app */
		if (c) {
			struct pol_app_change ch = {0, -1, POL_MODE_REPORT};
			struct pol_config *n = pol_config_with_change(c, "newapp", &ch);
			CHECK(n && pol_config_has_app(n, "newapp") && !pol_config_has_app(c, "newapp"));
			a = pol_config_app(n, "newapp", 6);
			CHECK(a->user_sync == 0 && a->conversation_sync == 1 && a->mode == POL_MODE_REPORT);
			CHECK(!strcmp(n->admin_token, "s3cret"));
			CHECK(pol_config_with_change(c, "bad id", &ch) == NULL);
			pol_config_unref(n);
		}
		pol_config_unref(c);
		unlink("/tmp/sg_test_token");
	}

	/* TLS: listeners marked tls need [tls] cert and key; upstream TLS keys need https:// */
	c = load("", err);
	CHECK(c && c->tls_listeners == 0 && c->upstream_tls == 0 && c->up_tls.verify == 1);
	CHECK(c && c->tls.min_version == 12 && c->tls.session_resumption == 1 && strstr(c->tls.ciphers, "ECDHE"));
	CHECK(c && c->limits.tls_handshake_ms == 10000);
	pol_config_unref(c);
	c = pol_config_load_string("[syncgate]\nlisten = 127.0.0.1:80, [::1]:443 tls\nupstream = https://backend.internal:8443\n"
	                           "upstream_ca_file = /etc/ca.pem\nupstream_server_name = api.internal\n"
	                           "upstream_cert = /c.pem\nupstream_key = /k.pem\n"
	                           "[tls]\ncert = /s.pem\nkey = /s.key\nmin_version = 1.3\nsession_resumption = off\n"
	                           "[limits]\ntls_handshake = 2s\n", "tls.conf", err);
	CHECK(c != NULL);
	if (c) {
		CHECK(c->nlisten == 2 && !c->listen[0].tls && c->listen[1].tls && c->tls_listeners == 1);
		CHECK_STR(c->listen[1].host, "::1");
		CHECK(c->upstream_tls == 1);
		CHECK_STR(c->upstream_scheme, "https");
		CHECK_STR(c->upstream_host, "backend.internal");
		CHECK_STR(c->up_tls.ca_file, "/etc/ca.pem");
		CHECK_STR(c->up_tls.server_name, "api.internal");
		CHECK_STR(c->up_tls.cert, "/c.pem");
		CHECK_STR(c->tls.cert, "/s.pem");
		CHECK(c->tls.min_version == 13 && c->tls.session_resumption == 0);
		CHECK(c->limits.tls_handshake_ms == 2000);
	}
	pol_config_unref(c);
	expect_error("listen = 127.0.0.1:1 ssl\n", "listen: '127.0.0.1:1' has an unknown flag 'ssl' (tls, proxy_protocol)");
	expect_error("listen = 127.0.0.1:1 tls\n", "a listen address is marked tls: [tls] needs cert and key");
	expect_error("listen = 127.0.0.1:1 tls\n[tls]\ncert = /a.pem\n", "[tls] needs cert and key");
	expect_error("upstream_ca_file = /ca.pem\n", "upstream_* TLS settings need an https:// upstream");
	expect_error("upstream = https://a:1\nupstream_cert = /c.pem\n", "upstream_cert and upstream_key go together");
	expect_error("upstream = https://a:1\nupstream_verify = maybe\n", "upstream_verify: 'maybe' is not on or off");
	expect_error("upstream = https://a:1\nupstream_colour = red\n", "unknown key 'upstream_colour' in [syncgate]");
	expect_error("[tls]\nmin_version = 1.1\n", "t.conf:5: min_version: '1.1' is not 1.2 or 1.3");
	expect_error("[tls]\ncert =\n", "[tls] cert: empty value");
	expect_error("[tls]\nsession_resumption = sometimes\n", "session_resumption: 'sometimes' is not on or off");
	expect_error("[tls]\nrenegotiation = on\n", "unknown key 'renegotiation' in [tls]");
	expect_error("[limits]\ntls_handshake = 10ms\n", "tls_handshake: out of range");

	/* [fleet]: an address (never a name), its defaults, each bad key with its line */
	c = load("[fleet]\nredis = 127.0.0.1:6379\n", err);
	CHECK(c && c->fleet.on && !strcmp(c->fleet.redis_host, "127.0.0.1") &&
	      !strcmp(c->fleet.redis_port, "6379") && !strcmp(c->fleet.prefix, "syncgate:") &&
	      c->fleet.poll_ms == 1000 && c->fleet.timeout_ms == 1000 && !c->fleet.password[0] &&
	      c->fleet.line == 4);
	pol_config_unref(c);
	c = load("[fleet]\nredis = [::1]:7000\nkey_prefix = sg.prod:\npoll = 250ms\ntimeout = 2s\n"
	         "state_file = /var/lib/syncgate/fleet.json\ninstance = pod-a\n", err);
	CHECK(c && !strcmp(c->fleet.redis_host, "::1") && !strcmp(c->fleet.prefix, "sg.prod:") &&
	      c->fleet.poll_ms == 250 && c->fleet.timeout_ms == 2000 &&
	      !strcmp(c->fleet.state_file, "/var/lib/syncgate/fleet.json") &&
	      !strcmp(c->fleet.instance, "pod-a"));
	pol_config_unref(c);
	c = load("[fleet]\nredis = unix:/run/redis/redis.sock\n", err);
	CHECK(c && !c->fleet.redis_host[0] && !strcmp(c->fleet.redis_unix, "/run/redis/redis.sock"));
	pol_config_unref(c);
	c = load("", err);
	CHECK(c && !c->fleet.on);
	pol_config_unref(c);
	{
		char pw[] = "/tmp/sg_test_fleet_pw_XXXXXX";
		int fd = mkstemp(pw);
		char text[256];
		CHECK(fd >= 0 && write(fd, "s3cret\n", 7) == 7);
		close(fd);
		snprintf(text, sizeof text, "[fleet]\nredis = 127.0.0.1:1\npassword_file = %s\n", pw);
		c = load(text, err);
		CHECK(c && !strcmp(c->fleet.password, "s3cret"));
		pol_config_unref(c);
		unlink(pw);
	}
	expect_error("[fleet]\npoll = 1s\n", "t.conf:4: [fleet] needs redis = IP:PORT or unix:/path");
	expect_error("[fleet]\nredis = redis.internal:6379\n",
	             "t.conf:5: [fleet] redis: 'redis.internal:6379' is not an IP address and port");
	expect_error("[fleet]\nredis = 127.0.0.1\n", "[fleet] redis: '127.0.0.1' is not an IP address");
	expect_error("[fleet]\nredis = unix:relative.sock\n", "is not unix:/absolute/path");
	expect_error("[fleet]\nredis = 127.0.0.1:1\nkey_prefix = a b\n", "t.conf:6: [fleet] key_prefix: 'a b'");
	expect_error("[fleet]\nredis = 127.0.0.1:1\npassword_file = /nonexistent/pw\n",
	             "t.conf:6: [fleet] password_file: cannot read '/nonexistent/pw'");
	expect_error("[fleet]\nredis = 127.0.0.1:1\npoll = 10ms\n", "[fleet] poll: '10ms' is not 100ms..60s");
	expect_error("[fleet]\nredis = 127.0.0.1:1\ntimeout = 1h\n", "[fleet] timeout: '1h' is not 50ms..30s");
	expect_error("[fleet]\nredis = 127.0.0.1:1\nstate_file = fleet.json\n", "[fleet] state_file: 'fleet.json' is not an absolute path");
	expect_error("[fleet]\nredis = 127.0.0.1:1\ncolour = red\n", "unknown key 'colour' in [fleet]");
	expect_error("[fleet]\nredis = 127.0.0.1:1\n[fleet]\n", "section");

	/* the shipped default config and the examples load */
	c = pol_config_load("conf/syncgate.conf", err);
	if (!c)
		fprintf(stderr, "%s\n", err);
	CHECK(c != NULL);
	pol_config_unref(c);
	c = pol_config_load("conf/examples/tls.conf", err);
	if (!c)
		fprintf(stderr, "%s\n", err);
	CHECK(c && c->tls_listeners == 1 && c->upstream_tls && c->up_tls.verify);
	pol_config_unref(c);
	return t_done("test_config");
}
