/*
 * proxy/tls.h - OpenSSL contexts built from the configuration.
 *
 * The listeners' context (certificate, key, protocol floor, ALPN http/1.1, no
 * renegotiation, session resumption) and one per https upstream (verification against the
 * system store or its CA file, optional client certificate). Both are built whole
 * and checked before use, so a reload with a broken certificate fails here and changes
 * nothing. SSL_CTX is reference-counted and safe to share between worker threads; each
 * connection's SSL holds its own reference, so a context swapped out by a reload stays alive
 * while connections made with it remain.
 */
#ifndef SG_PROXY_TLS_H
#define SG_PROXY_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>
#include <time.h>

#include "policy/config.h"

/*
 * The listeners' context from CFG's [tls], or NULL when no listen address is marked tls.
 * On failure returns NULL and sets ERR (ERRLEN bytes) to "[tls] cert FILE: reason"; *FAILED
 * tells a failure from "not needed".
 */
SSL_CTX *px_tls_server_ctx_new(const struct pol_config *cfg, char *err, size_t errlen, int *failed);

/* Upstream UP's context (an https url), or NULL when UP is plain; as above (ERR names the
 * key: "upstream_ca_file ..." for the default upstream, "[upstream:NAME] ca_file ..."). */
SSL_CTX *px_tls_client_ctx_new(const struct pol_upstream *up, char *err, size_t errlen, int *failed);

/*
 * A new SSL from CTX (px_tls_client_ctx_new) for one connection to upstream UP: SNI (host
 * names only, never an address, RFC 6066 §3), the name or address the certificate must carry,
 * and session resumption through SLOT, the caller's cache of one session (resumed when set,
 * replaced when the server issues a new one; NULL: none). SLOT must outlive the SSL; the
 * caller frees *SLOT with SSL_SESSION_free. NULL on failure.
 */
SSL *px_tls_client_new(SSL_CTX *ctx, const struct pol_upstream *up, SSL_SESSION **slot);

/* When CTX's certificate expires (unix time), 0 if it has none. */
time_t px_tls_not_after(SSL_CTX *ctx);

/*
 * Why the TLS operation on SSL that returned SSLERR (SSL_get_error) failed, for a log line:
 * "certificate verify failed: hostname mismatch", "unsupported protocol", ... Consumes
 * the thread's OpenSSL error queue. Returns 1 if the peer spoke plain HTTP to a TLS port
 * (OpenSSL recognises the request line), else 0.
 */
int px_tls_why(SSL *ssl, int sslerr, char *buf, size_t len);

#endif
