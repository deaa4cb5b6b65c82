/*
 * policy/jwt.h - credential checks (protocol.md 3.4): HS256 JWTs, identity-verification
 * signatures, and the class of an HTTP Authorization header. Pure: the caller hands in the
 * time. MACs are compared in constant time (CRYPTO_memcmp).
 */
#ifndef SG_POLICY_JWT_H
#define SG_POLICY_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "policy/call.h"
#include "policy/config.h"

#define POL_JWT_MAX_BYTES 8192

/*
 * Verifies TOKEN (LEN bytes) as an HS256 JWT signed with KEY whose claims are iss = APP,
 * tokenType = TYPE ("user" or "app"), sub = SUB (when SUB is non-NULL; an app token must have
 * no sub), exp / nbf against NOW (unix seconds) with SKEW seconds of slack.
 * Returns 1 if valid, else 0 with *WHY a static reason.
 */
int pol_jwt_verify(const char *token, size_t len, const char *key, const char *app,
                   const char *sub, size_t sub_len, const char *type, int64_t now, uint32_t skew,
                   const char **why);

/*
 * The user an HTTP request's Authorization header (AUTHZ, LEN bytes) names for APP: the sub of
 * a "Bearer" user token (tokenType "user", iss APP), decoded into OUT (CAP bytes, not
 * NUL-terminated). With KEY (the app's secret key) the token must verify as pol_jwt_verify()
 * checks a user token at NOW with SKEW; without one, nothing better can be known and the
 * claimed sub is taken. Returns its length, or -1: no bearer token, none of that shape, a sub
 * that is empty, holds a control character or does not fit, or a token that does not verify.
 */
long pol_jwt_user(const char *authz, size_t len, const char *key, const char *app, int64_t now,
                  uint32_t skew, char *out, size_t cap);

/*
 * Writes to OUT (CAP bytes, NUL-terminated) an HS256 user token for the realtime socket of
 * USER (USER_LEN bytes) in APP, signed with KEY: {"iss": APP, "sub": USER, "tokenType":
 * "user", "exp": NOW + TTL} (no exp when TTL is 0). Returns its length, or -1 if it does not
 * fit. pol_jwt_verify() accepts it (the `syncgate token` helper).
 */
long pol_jwt_sign_user(const char *key, const char *app, const char *user, size_t user_len,
                       int64_t now, uint32_t ttl, char *out, size_t cap);

/* 1 if HEX is the hex HMAC-SHA256 of UID keyed with KEY (either case); constant time. */
int pol_signature_ok(const char *key, const char *uid, size_t uid_len, const char *hex,
                     size_t hex_len);

/*
 * The credential class of an Authorization header value (NULL: none). SERVER: "Bearer" and
 * the app's secret key, or a valid app JWT. With no secret key configured, a bearer of the
 * secret-key shape (sk_test_ / sk_live_) counts as SERVER, since nothing better can be known;
 * everything else is BROWSER.
 */
enum pol_cred pol_credential_class(const struct pol_app *app, const char *authz, size_t len,
                                   int64_t now, uint32_t skew);

#endif
