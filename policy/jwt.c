/*
 * policy/jwt.c - HS256 JWT and signature verification (contract in jwt.h). RFC 7519 / 7515.
 */
#include "policy/jwt.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "policy/json.h"

/* Strict base64url without padding (RFC 7515 §2). Returns decoded length or -1. */
static long
b64url_decode(const char *in, size_t len, unsigned char *out, size_t outsz)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t i, o = 0;

	if (len % 4 == 1)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)in[i];
		int v;
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '-')
			v = 62;
		else if (c == '_')
			v = 63;
		else
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (o >= outsz)
				return -1;
			out[o++] = (unsigned char)(acc >> bits);
		}
	}
	if (bits && (acc & ((1u << bits) - 1)))
		return -1; /* non-canonical trailing bits */
	return (long)o;
}

static int
hmac_sha256(const char *key, const void *msg, size_t len, unsigned char out[32])
{
	unsigned int n = 32;
	return HMAC(EVP_sha256(), key, (int)strlen(key), msg, len, out, &n) != NULL && n == 32;
}

static int
claim_str(const char *text, const struct pol_jtok *t, int obj, const char *name, const char *want,
          size_t want_len)
{
	int v = pol_json_obj_get(text, t, obj, name);
	return v >= 0 && pol_json_str_eq(text, &t[v], want, want_len) &&
	       !(t[v].flags & (POL_JF_CTRL | POL_JF_LONE_SURR));
}

/* A numeric claim as an integer number of seconds; 0 absent, 1 present, -1 malformed. */
static int
claim_time(const char *text, const struct pol_jtok *t, int obj, const char *name, double *out)
{
	char buf[64];
	int v = pol_json_obj_get(text, t, obj, name);
	size_t n;

	if (v < 0)
		return 0;
	if (t[v].type != POL_J_NUMBER)
		return -1;
	n = t[v].end - t[v].start;
	if (n >= sizeof buf)
		return -1;
	memcpy(buf, text + t[v].start, n);
	buf[n] = 0;
	*out = strtod(buf, NULL);
	return 1;
}

int
pol_jwt_verify(const char *token, size_t len, const char *key, const char *app,
               const char *sub, size_t sub_len, const char *type, int64_t now, uint32_t skew,
               const char **why)
{
	const char *d1, *d2;
	unsigned char hdr[1024], body[POL_JWT_MAX_BYTES], sig[64], mac[32];
	long hl, bl, sl;
	struct pol_json *j = NULL;
	const struct pol_jtok *t;
	double exp, nbf;
	int ok = 0, r;

	*why = "malformed token";
	if (!key) {
		*why = "no secret key configured for the app";
		return 0;
	}
	if (len == 0 || len > POL_JWT_MAX_BYTES)
		return 0;
	d1 = memchr(token, '.', len);
	if (!d1)
		return 0;
	d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - token));
	if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - token)))
		return 0;
	hl = b64url_decode(token, (size_t)(d1 - token), hdr, sizeof hdr);
	bl = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), body, sizeof body);
	sl = b64url_decode(d2 + 1, len - (size_t)(d2 + 1 - token), sig, sizeof sig);
	if (hl <= 0 || bl <= 0 || sl < 0) {
		*why = "bad base64url";
		return 0;
	}
	j = pol_json_new(256, 8);
	if (!j)
		return 0;
	if (pol_json_parse(j, (const char *)hdr, (size_t)hl, why) < 0)
		goto out;
	t = pol_json_tokens(j);
	if (t[0].type != POL_J_OBJECT || !claim_str((const char *)hdr, t, 0, "alg", "HS256", 5)) {
		*why = "alg must be HS256";
		goto out;
	}
	/* signature over the exact encoded header.payload */
	if (sl != 32 || !hmac_sha256(key, token, (size_t)(d2 - token), mac) ||
	    CRYPTO_memcmp(mac, sig, 32) != 0) {
		*why = "bad signature";
		goto out;
	}
	if (pol_json_parse(j, (const char *)body, (size_t)bl, why) < 0)
		goto out;
	t = pol_json_tokens(j);
	if (t[0].type != POL_J_OBJECT) {
		*why = "claims are not an object";
		goto out;
	}
	if (!claim_str((const char *)body, t, 0, "iss", app, strlen(app))) {
		*why = "iss is not the app id";
		goto out;
	}
	if (!claim_str((const char *)body, t, 0, "tokenType", type, strlen(type))) {
		*why = "wrong tokenType";
		goto out;
	}
	if (sub ? !claim_str((const char *)body, t, 0, "sub", sub, sub_len)
	        : pol_json_obj_get((const char *)body, t, 0, "sub") >= 0) {
		*why = sub ? "sub is not the socket's user" : "app token with a sub";
		goto out;
	}
	if ((r = claim_time((const char *)body, t, 0, "exp", &exp)) < 0 ||
	    (r == 1 && exp + skew <= (double)now)) {
		*why = r < 0 ? "malformed exp" : "token expired";
		goto out;
	}
	if ((r = claim_time((const char *)body, t, 0, "nbf", &nbf)) < 0 ||
	    (r == 1 && nbf - skew > (double)now)) {
		*why = r < 0 ? "malformed nbf" : "token not valid yet (nbf)";
		goto out;
	}
	ok = 1;
	*why = "ok";
out:
	pol_json_free(j);
	return ok;
}

/* The token of a "Bearer" Authorization value (AUTHZ, LEN bytes) into *TOK / *TL; 0, or -1
 * for another scheme or none. */
static int
bearer(const char *authz, size_t len, const char **tok, size_t *tl)
{
	if (!authz || len < 7 || strncasecmp(authz, "Bearer ", 7))
		return -1;
	*tok = authz + 7;
	*tl = len - 7;
	while (*tl && **tok == ' ') {
		(*tok)++;
		(*tl)--;
	}
	return 0;
}

long
pol_jwt_user(const char *authz, size_t len, const char *key, const char *app, int64_t now,
             uint32_t skew, char *out, size_t cap)
{
	unsigned char body[POL_JWT_MAX_BYTES];
	const char *tok, *d1, *d2, *why;
	const struct pol_jtok *t;
	struct pol_json *j;
	size_t tl;
	long bl, n = -1;
	int v;

	if (bearer(authz, len, &tok, &tl) || tl == 0 || tl > POL_JWT_MAX_BYTES)
		return -1;
	d1 = memchr(tok, '.', tl);
	d2 = d1 ? memchr(d1 + 1, '.', tl - (size_t)(d1 + 1 - tok)) : NULL;
	if (!d2 || (bl = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), body, sizeof body)) <= 0)
		return -1;
	if (!(j = pol_json_new(256, 8)))
		return -1;
	if (pol_json_parse(j, (const char *)body, (size_t)bl, &why) < 0)
		goto out;
	t = pol_json_tokens(j);
	if (t[0].type != POL_J_OBJECT || (v = pol_json_obj_get((const char *)body, t, 0, "sub")) < 0 ||
	    t[v].type != POL_J_STRING || (t[v].flags & (POL_JF_CTRL | POL_JF_LONE_SURR)))
		goto out;
	n = pol_json_str_decode((const char *)body, &t[v], out, cap);
	if (n <= 0) {
		n = -1;
		goto out;
	}
	if (key ? !pol_jwt_verify(tok, tl, key, app, out, (size_t)n, "user", now, skew, &why)
	        : !claim_str((const char *)body, t, 0, "iss", app, strlen(app)) ||
	              !claim_str((const char *)body, t, 0, "tokenType", "user", 4))
		n = -1;
out:
	pol_json_free(j);
	return n;
}

/* Base64url (RFC 4648 §5, no padding) of LEN bytes at IN into OUT; returns the length
 * written, or -1 if CAP is too small. */
static long
b64url_encode(const unsigned char *in, size_t len, char *out, size_t cap)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;

	if ((len + 2) / 3 * 4 > cap)
		return -1;
	for (i = 0; i + 2 < len; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = a[(v >> 6) & 63];
		out[o++] = a[v & 63];
	}
	if (len - i == 1) {
		unsigned v = (unsigned)in[i] << 16;
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
	} else if (len - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		out[o++] = a[(v >> 6) & 63];
	}
	return (long)o;
}

long
pol_jwt_sign_user(const char *key, const char *app, const char *user, size_t user_len,
                  int64_t now, uint32_t ttl, char *out, size_t cap)
{
	static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
	char claims[2048], esc_app[POL_APPID_MAX * 6 + 1], esc_user[1024];
	unsigned char mac[32];
	long na = pol_json_escape(esc_app, sizeof esc_app - 1, app, strlen(app));
	long nu = pol_json_escape(esc_user, sizeof esc_user - 1, user, user_len);
	long o, e;
	int cl;

	if (na < 0 || nu < 0)
		return -1;
	esc_app[na] = 0;
	esc_user[nu] = 0;
	if (ttl)
		cl = snprintf(claims, sizeof claims, "{\"iss\":\"%s\",\"sub\":\"%s\",\"tokenType\":\"user\",\"exp\":%lld}",
		              esc_app, esc_user, (long long)(now + ttl));
	else
		cl = snprintf(claims, sizeof claims, "{\"iss\":\"%s\",\"sub\":\"%s\",\"tokenType\":\"user\"}",
		              esc_app, esc_user);
	if (cl < 0 || (size_t)cl >= sizeof claims)
		return -1;
	if ((o = b64url_encode((const unsigned char *)header, sizeof header - 1, out, cap)) < 0 ||
	    (size_t)o + 1 >= cap)
		return -1;
	out[o++] = '.';
	if ((e = b64url_encode((const unsigned char *)claims, (size_t)cl, out + o, cap - (size_t)o)) < 0)
		return -1;
	o += e;
	hmac_sha256(key, out, (size_t)o, mac);
	if ((size_t)o + 1 >= cap)
		return -1;
	out[o++] = '.';
	if ((e = b64url_encode(mac, sizeof mac, out + o, cap - (size_t)o)) < 0 || (size_t)(o + e) >= cap)
		return -1;
	o += e;
	out[o] = 0;
	return o;
}

int
pol_signature_ok(const char *key, const char *uid, size_t uid_len, const char *hex,
                 size_t hex_len)
{
	static const char digits[] = "0123456789abcdef";
	unsigned char mac[32];
	char want[64], got[64];
	size_t i;

	if (!key || hex_len != 64 || !hmac_sha256(key, uid, uid_len, mac))
		return 0;
	for (i = 0; i < 32; i++) {
		want[2 * i] = digits[mac[i] >> 4];
		want[2 * i + 1] = digits[mac[i] & 15];
	}
	for (i = 0; i < 64; i++) {
		char c = hex[i];
		if (c >= 'A' && c <= 'F')
			c = (char)(c - 'A' + 'a');
		else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return 0;
		got[i] = c;
	}
	return CRYPTO_memcmp(want, got, 64) == 0;
}

enum pol_cred
pol_credential_class(const struct pol_app *app, const char *authz, size_t len, int64_t now,
                     uint32_t skew)
{
	const char *tok;
	size_t tl;
	const char *why;

	if (!authz || len == 0)
		return POL_CRED_NONE;
	if (bearer(authz, len, &tok, &tl))
		return POL_CRED_BROWSER;
	if (app->secret_key) {
		size_t kl = strlen(app->secret_key);
		if (tl == kl && CRYPTO_memcmp(tok, app->secret_key, kl) == 0)
			return POL_CRED_SERVER;
		if (app->id[0] &&
		    pol_jwt_verify(tok, tl, app->secret_key, app->id, NULL, 0, "app", now, skew, &why))
			return POL_CRED_SERVER;
		if (tl > 8 && (!strncmp(tok, "sk_test_", 8) || !strncmp(tok, "sk_live_", 8)))
			return POL_CRED_FOREIGN_KEY;
		return POL_CRED_BROWSER;
	}
	if ((tl > 8 && !strncmp(tok, "sk_test_", 8)) || (tl > 8 && !strncmp(tok, "sk_live_", 8)))
		return POL_CRED_SERVER;
	return POL_CRED_BROWSER;
}
