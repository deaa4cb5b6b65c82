/*
 * proxy/tls.c - OpenSSL contexts from the configuration (contract in tls.h).
 *
 * Defaults follow Mozilla's "intermediate" profile: TLS 1.2 and 1.3 only, ECDHE with AEAD
 * ciphers for 1.2, OpenSSL's 1.3 suites, no compression, no renegotiation (a client-driven
 * renegotiation is a cheap CPU attack and lets a peer change identity mid-connection).
 */
#include "proxy/tls.h"

#include "proxy/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#define CTX_OPTIONS                                                                       \
	(SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF |  \
	 SSL_OP_CIPHER_SERVER_PREFERENCE)
/* partial writes and a moving buffer: px_io writes from an evbuffer that may be pulled up
 * anew between retries; released buffers: an idle connection keeps no 34 KiB of records */
#define CTX_MODES                                                                         \
	(SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |             \
	 SSL_MODE_RELEASE_BUFFERS)

static const unsigned char alpn_http11[] = "\x08http/1.1";

/* A context with the options and modes both sides share, MIN_VERSION as the floor. */
static SSL_CTX *
ctx_new(const SSL_METHOD *method, int min_version, const char *what, char *err, size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new(method);

	if (!ctx) {
		snprintf(err, errlen, "%s: cannot create an OpenSSL context", what);
		ERR_clear_error();
		return NULL;
	}
	SSL_CTX_set_options(ctx, CTX_OPTIONS);
	SSL_CTX_set_mode(ctx, CTX_MODES);
	SSL_CTX_set_min_proto_version(ctx, min_version);
	return ctx;
}

/* "what FILE: reason" from errno or the OpenSSL error queue (which it empties). */
static void
file_error(char *err, size_t errlen, const char *what, const char *file)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;
	FILE *f = fopen(file, "r");

	if (!f)
		snprintf(err, errlen, "%s %s: %s", what, file, strerror(errno));
	else
		snprintf(err, errlen, "%s %s: %s", what, file, r ? r : "not usable");
	if (f)
		fclose(f);
	ERR_clear_error();
}

/* An expired certificate (or one not valid yet) loads, since replacing it by a reload must
 * stay possible, but every peer will refuse it: say so at -t, at start and at reload. */
static void
warn_expired(SSL_CTX *ctx, const char *what, const char *file)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);
	const char *why = NULL;

	if (!x)
		return;
	if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0)
		why = "the certificate has expired: peers will refuse it";
	else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0)
		why = "the certificate is not valid yet: peers will refuse it";
	if (why)
		px_log(PX_LOG_WARN, "certificate", "key", what, "file", file, "why", why, NULL);
}

time_t
px_tls_not_after(SSL_CTX *ctx)
{
	X509 *x = SSL_CTX_get0_certificate(ctx);
	struct tm tm;

	if (!x || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
		return 0;
	return timegm(&tm);
}

static int
load_pair(SSL_CTX *ctx, const char *cert, const char *key, const char *cwhat, const char *kwhat,
          char *err, size_t errlen)
{
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		file_error(err, errlen, cwhat, cert);
		return -1;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		file_error(err, errlen, kwhat, key);
		return -1;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "%s %s does not match %s %s", kwhat, key, cwhat, cert);
		ERR_clear_error();
		return -1;
	}
	warn_expired(ctx, cwhat, cert);
	return 0;
}

/*
 * ALPN (RFC 7301 §3.2): syncgate speaks HTTP/1.1 only. A client that offers protocols but not
 * http/1.1 gets the no_application_protocol alert rather than a connection it cannot use.
 */
static int
alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
            unsigned inlen, void *arg)
{
	(void)ssl;
	(void)arg;
	if (SSL_select_next_proto((unsigned char **)out, outlen, alpn_http11, sizeof alpn_http11 - 1,
	                          in, inlen) == OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

SSL_CTX *
px_tls_server_ctx_new(const struct pol_config *cfg, char *err, size_t errlen, int *failed)
{
	const struct pol_tls *t = &cfg->tls;
	SSL_CTX *ctx;

	*failed = 0;
	if (!cfg->tls_listeners)
		return NULL;
	*failed = 1;
	ctx = ctx_new(TLS_server_method(), t->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION,
	              "[tls]", err, errlen);
	if (!ctx)
		return NULL;
	if (SSL_CTX_set_cipher_list(ctx, t->ciphers) != 1) {
		snprintf(err, errlen, "[tls] ciphers: no usable cipher in '%s'", t->ciphers);
		goto bad;
	}
	if (t->ciphersuites[0] && SSL_CTX_set_ciphersuites(ctx, t->ciphersuites) != 1) {
		snprintf(err, errlen, "[tls] ciphersuites: no usable suite in '%s'", t->ciphersuites);
		goto bad;
	}
	if (load_pair(ctx, t->cert, t->key, "[tls] cert", "[tls] key", err, errlen))
		goto bad;
	SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
	SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"syncgate", 8);
	if (!t->session_resumption) {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
		SSL_CTX_set_num_tickets(ctx, 0);
	}
	*failed = 0;
	return ctx;
bad:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

/* The ex_data slot of an upstream SSL that points at its owner's session cache. */
static int slot_index = -1;
static pthread_once_t slot_once = PTHREAD_ONCE_INIT;

static void
slot_index_init(void)
{
	slot_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* OpenSSL hands us each session the upstream issues (TLS 1.3: after the handshake, in a
 * NewSessionTicket); keeping it (return 1) takes over its reference. */
static int
new_session(SSL *ssl, SSL_SESSION *sess)
{
	SSL_SESSION **slot = SSL_get_ex_data(ssl, slot_index);

	if (!slot)
		return 0;
	SSL_SESSION_free(*slot);
	*slot = sess;
	return 1;
}

SSL_CTX *
px_tls_client_ctx_new(const struct pol_upstream *up, char *err, size_t errlen, int *failed)
{
	const struct pol_upstream_tls *u = &up->t;
	int dflt = !strcmp(up->name, "default");
	char ca_name[POL_NAME_MAX + 32], cert_name[POL_NAME_MAX + 32], key_name[POL_NAME_MAX + 32];
	SSL_CTX *ctx;

	*failed = 0;
	if (!up->tls)
		return NULL;
	*failed = 1;
	/* errors name the key as the file spells it (main.c finds its line from the name) */
	snprintf(ca_name, sizeof ca_name, dflt ? "upstream_ca_file" : "[upstream:%s] ca_file", up->name);
	snprintf(cert_name, sizeof cert_name, dflt ? "upstream_cert" : "[upstream:%s] cert", up->name);
	snprintf(key_name, sizeof key_name, dflt ? "upstream_key" : "[upstream:%s] key", up->name);
	ctx = ctx_new(TLS_client_method(), TLS1_2_VERSION, "upstream TLS", err, errlen);
	if (!ctx)
		return NULL;
	if (SSL_CTX_set_alpn_protos(ctx, alpn_http11, sizeof alpn_http11 - 1) != 0) {
		snprintf(err, errlen, "upstream TLS: cannot set ALPN");
		goto bad;
	}
	if (u->verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		if (u->ca_file[0]) {
			if (SSL_CTX_load_verify_file(ctx, u->ca_file) != 1) {
				file_error(err, errlen, ca_name, u->ca_file);
				goto bad;
			}
		} else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
			snprintf(err, errlen, "upstream TLS: the system certificate store cannot be read");
			goto bad;
		}
	} else {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	}
	if (u->cert[0] &&
	    load_pair(ctx, u->cert, u->key, cert_name, key_name, err, errlen))
		goto bad;
	pthread_once(&slot_once, slot_index_init);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(ctx, new_session);
	*failed = 0;
	return ctx;
bad:
	ERR_clear_error();
	SSL_CTX_free(ctx);
	return NULL;
}

static int
client_prepare(SSL *ssl, const struct pol_upstream *up)
{
	const char *name = up->t.server_name[0] ? up->t.server_name : up->host;
	unsigned char addr[16];
	int is_ip = inet_pton(AF_INET, name, addr) == 1 || inet_pton(AF_INET6, name, addr) == 1;

	if (!is_ip && SSL_set_tlsext_host_name(ssl, name) != 1)
		return -1;
	if (!up->t.verify)
		return 0;
	if (is_ip)
		return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1 ? 0 : -1;
	SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	return SSL_set1_host(ssl, name) == 1 ? 0 : -1;
}

SSL *
px_tls_client_new(SSL_CTX *ctx, const struct pol_upstream *up, SSL_SESSION **slot)
{
	SSL *ssl = SSL_new(ctx);

	if (!ssl)
		return NULL;
	if (client_prepare(ssl, up) ||
	    (slot && (slot_index < 0 || SSL_set_ex_data(ssl, slot_index, slot) != 1))) {
		SSL_free(ssl);
		ERR_clear_error();
		return NULL;
	}
	if (slot && *slot)
		SSL_set_session(ssl, *slot); /* a failed resumption falls back to a full handshake */
	return ssl;
}

int
px_tls_why(SSL *ssl, int sslerr, char *buf, size_t len)
{
	unsigned long e, last = 0;
	int reason, plain = 0;
	long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;

	while ((e = ERR_get_error()) != 0)
		last = e; /* the innermost reason is the last one queued */
	reason = ERR_GET_REASON(last);
	if (last && ERR_GET_LIB(last) == ERR_LIB_SSL &&
	    (reason == SSL_R_HTTP_REQUEST || reason == SSL_R_HTTPS_PROXY_REQUEST))
		plain = 1;
	if (vr != X509_V_OK)
		snprintf(buf, len, "certificate verify failed: %s", X509_verify_cert_error_string(vr));
	else if (last && ERR_reason_error_string(last))
		snprintf(buf, len, "%s", ERR_reason_error_string(last));
	else if (sslerr == SSL_ERROR_SYSCALL && errno)
		snprintf(buf, len, "%s", strerror(errno));
	else if (sslerr == SSL_ERROR_SYSCALL || sslerr == SSL_ERROR_ZERO_RETURN)
		snprintf(buf, len, "the peer closed the connection during the handshake");
	else
		snprintf(buf, len, "TLS error %d", sslerr);
	return plain;
}
