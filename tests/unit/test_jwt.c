/* JWT and signature vectors (protocol.md 3.4). Tokens are built here with OpenSSL's HMAC. */
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "policy/jwt.h"
#include "t.h"

static const char *KEY = "sk_test_abc123";

static size_t
b64url(const unsigned char *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t i, o = 0;
	for (i = 0; i + 2 < n; i += 3) {
		out[o++] = a[in[i] >> 2];
		out[o++] = a[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		out[o++] = a[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
		out[o++] = a[in[i + 2] & 63];
	}
	if (n - i == 1) {
		out[o++] = a[in[i] >> 2];
		out[o++] = a[(in[i] & 3) << 4];
	} else if (n - i == 2) {
		out[o++] = a[in[i] >> 2];
		out[o++] = a[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		out[o++] = a[(in[i + 1] & 15) << 2];
	}
	out[o] = 0;
	return o;
}

/* header.payload.signature, signed with KEY (or unsigned when key is NULL). */
static char *
mk(const char *header, const char *payload, const char *key)
{
	static char tok[4096];
	unsigned char mac[32];
	unsigned int ml = 32;
	size_t o = b64url((const unsigned char *)header, strlen(header), tok);
	tok[o++] = '.';
	o += b64url((const unsigned char *)payload, strlen(payload), tok + o);
	if (key)
		HMAC(EVP_sha256(), key, (int)strlen(key), (unsigned char *)tok, o, mac, &ml);
	tok[o++] = '.';
	if (key)
		o += b64url(mac, 32, tok + o);
	tok[o] = 0;
	return tok;
}

static int
user_ok(const char *tok, const char *sub, long now)
{
	const char *why;
	return pol_jwt_verify(tok, strlen(tok), KEY, "app1", sub, strlen(sub), "user", now, 60, &why);
}

#define HS "{\"alg\":\"HS256\",\"typ\":\"JWT\"}"

int
main(void)
{
	long now = 1700000000;
	char buf[4096];
	char *t;

	CHECK(user_ok(mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\"}", KEY), "alice", now));
	CHECK(user_ok(mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\",\"exp\":1700000100}", KEY), "alice", now));
	/* wrong sub / iss / tokenType / key */
	CHECK(!user_ok(mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\"}", KEY), "bob", now));
	CHECK(!user_ok(mk(HS, "{\"iss\":\"app2\",\"sub\":\"alice\",\"tokenType\":\"user\"}", KEY), "alice", now));
	CHECK(!user_ok(mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"app\"}", KEY), "alice", now));
	CHECK(!user_ok(mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\"}", KEY), "alice", now));
	CHECK(!user_ok(mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\"}", "sk_test_other"), "alice", now));
	/* exp / nbf with 60 s skew */
	CHECK(!user_ok(mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\",\"exp\":1699999900}", KEY), "alice", now));
	CHECK(user_ok(mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\",\"exp\":1699999990}", KEY), "alice", now));
	CHECK(!user_ok(mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\",\"nbf\":1700000100}", KEY), "alice", now));
	CHECK(user_ok(mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\",\"nbf\":1700000030}", KEY), "alice", now));
	CHECK(!user_ok(mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\",\"exp\":\"soon\"}", KEY), "alice", now));
	/* algorithms */
	CHECK(!user_ok(mk("{\"alg\":\"none\"}", "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\"}", NULL), "alice", now));
	CHECK(!user_ok(mk("{\"alg\":\"HS512\"}", "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\"}", KEY), "alice", now));
	CHECK(!user_ok(mk("{\"alg\":\"RS256\"}", "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\"}", KEY), "alice", now));
	CHECK(!user_ok(mk("{\"typ\":\"JWT\"}", "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\"}", KEY), "alice", now));
	CHECK(!user_ok(mk("{\"alg\":\"HS256\",\"alg\":\"none\"}", "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\"}", KEY), "alice", now));
	/* duplicate claims (JSON.parse would take the last) */
	CHECK(!user_ok(mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\",\"sub\":\"bob\",\"tokenType\":\"user\"}", KEY), "alice", now));
	/* tampering */
	t = mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\"}", KEY);
	strcpy(buf, t);
	buf[strlen(buf) - 3] ^= 1;
	CHECK(!user_ok(buf, "alice", now));
	strcpy(buf, t);
	buf[5] = buf[5] == 'A' ? 'B' : 'A';
	CHECK(!user_ok(buf, "alice", now));
	strcpy(buf, t);
	*strchr(buf, '.') = '!';
	CHECK(!user_ok(buf, "alice", now));
	snprintf(buf, sizeof buf, "%s.", t);
	CHECK(!user_ok(buf, "alice", now));
	snprintf(buf, sizeof buf, "%s=", t);
	CHECK(!user_ok(buf, "alice", now));
	CHECK(!user_ok("a.b", "alice", now));
	CHECK(!user_ok("", "alice", now));
	{
		const char *why;
		CHECK(!pol_jwt_verify(t, strlen(t), NULL, "app1", "alice", 5, "user", now, 60, &why));
	}

	/* signatures: hex HMAC-SHA256(user id), either case */
	{
		unsigned char mac[32];
		unsigned int ml = 32;
		char hex[65];
		int i;
		HMAC(EVP_sha256(), KEY, (int)strlen(KEY), (const unsigned char *)"alice", 5, mac, &ml);
		for (i = 0; i < 32; i++)
			sprintf(hex + 2 * i, "%02x", mac[i]);
		CHECK(pol_signature_ok(KEY, "alice", 5, hex, 64));
		for (i = 0; i < 64; i++)
			if (hex[i] >= 'a')
				hex[i] = (char)(hex[i] - 32);
		CHECK(pol_signature_ok(KEY, "alice", 5, hex, 64));
		CHECK(!pol_signature_ok(KEY, "bob", 3, hex, 64));
		CHECK(!pol_signature_ok(KEY, "alice", 5, hex, 63));
		CHECK(!pol_signature_ok("other", "alice", 5, hex, 64));
		CHECK(!pol_signature_ok(NULL, "alice", 5, hex, 64));
		hex[0] = 'g';
		CHECK(!pol_signature_ok(KEY, "alice", 5, hex, 64));
	}

	/* credential classes */
	{
		struct pol_app app;
		memset(&app, 0, sizeof app);
		strcpy(app.id, "app1");
		app.secret_key = (char *)KEY;
		char h[4200];
		CHECK(pol_credential_class(&app, NULL, 0, now, 60) == POL_CRED_NONE);
		snprintf(h, sizeof h, "Bearer %s", KEY);
		CHECK(pol_credential_class(&app, h, strlen(h), now, 60) == POL_CRED_SERVER);
		/* another key: not a server credential, but recognisably a key (a refusal says so) */
		CHECK(pol_credential_class(&app, "Bearer sk_test_nope", 19, now, 60) == POL_CRED_FOREIGN_KEY);
		CHECK(pol_credential_class(&app, "Bearer sk_live_0123", 19, now, 60) == POL_CRED_FOREIGN_KEY);
		CHECK(pol_credential_class(&app, "Bearer sk_test_", 15, now, 60) == POL_CRED_BROWSER);
		CHECK(pol_credential_class(&app, "Bearer pk_test_nope", 19, now, 60) == POL_CRED_BROWSER);
		snprintf(h, sizeof h, "Bearer %s", mk(HS, "{\"iss\":\"app1\",\"tokenType\":\"app\",\"exp\":1700000100}", KEY));
		CHECK(pol_credential_class(&app, h, strlen(h), now, 60) == POL_CRED_SERVER);
		snprintf(h, sizeof h, "Bearer %s", mk(HS, "{\"iss\":\"app1\",\"sub\":\"alice\",\"tokenType\":\"user\"}", KEY));
		CHECK(pol_credential_class(&app, h, strlen(h), now, 60) == POL_CRED_BROWSER);
		app.secret_key = NULL;
		CHECK(pol_credential_class(&app, "Bearer sk_live_x1", 17, now, 60) == POL_CRED_SERVER);
		CHECK(pol_credential_class(&app, "Bearer eyJ", 10, now, 60) == POL_CRED_BROWSER);
	}
	{
		/* pol_jwt_user: the user an HTTP request's bearer user token names (refusal budgets) */
		char h[4200], u[64];
		long n;
#define USER(key, app) pol_jwt_user(h, strlen(h), key, app, now, 60, u, sizeof u)
		snprintf(h, sizeof h, "Bearer %s", mk(HS, "{\"iss\":\"app1\",\"sub\":\"al\\u0069ce\",\"tokenType\":\"user\"}", KEY));
		n = USER(KEY, "app1");
		CHECK(n == 5 && !memcmp(u, "alice", 5)); /* decoded */
		CHECK(USER(NULL, "app1") == 5);           /* no key: as claimed */
		CHECK(USER(KEY, "app2") == -1 && USER(NULL, "app2") == -1);
		CHECK(USER("sk_test_other", "app1") == -1);
		CHECK(pol_jwt_user(h, strlen(h), KEY, "app1", now, 60, u, 4) == -1); /* does not fit */
		snprintf(h, sizeof h, "bearer   %s", mk(HS, "{\"iss\":\"app1\",\"sub\":\"bob\",\"tokenType\":\"user\",\"exp\":1699999000}", KEY));
		CHECK(USER(KEY, "app1") == -1); /* expired */
		CHECK(USER(NULL, "app1") == 3);
		snprintf(h, sizeof h, "Bearer %s", mk(HS, "{\"iss\":\"app1\",\"sub\":\"bob\",\"tokenType\":\"user\"}", "sk_test_forged"));
		CHECK(USER(KEY, "app1") == -1);   /* forged */
		CHECK(USER(NULL, "app1") == 3);   /* (nothing to check it with) */
		snprintf(h, sizeof h, "Bearer %s", mk(HS, "{\"iss\":\"app1\",\"tokenType\":\"app\"}", KEY));
		CHECK(USER(KEY, "app1") == -1 && USER(NULL, "app1") == -1); /* an app token names nobody */
		snprintf(h, sizeof h, "Bearer %s", mk(HS, "{\"iss\":\"app1\",\"sub\":\"bob\",\"tokenType\":\"app\"}", KEY));
		CHECK(USER(NULL, "app1") == -1);
		snprintf(h, sizeof h, "Bearer %s", mk(HS, "{\"iss\":\"app1\",\"sub\":\"a\\u0000b\",\"tokenType\":\"user\"}", KEY));
		CHECK(USER(KEY, "app1") == -1);   /* a control character */
		snprintf(h, sizeof h, "Bearer %s", mk(HS, "{\"iss\":\"app1\",\"sub\":\"\",\"tokenType\":\"user\"}", KEY));
		CHECK(USER(KEY, "app1") == -1);   /* empty */
		snprintf(h, sizeof h, "Bearer %s", mk(HS, "{\"iss\":\"app1\",\"sub\":7,\"tokenType\":\"user\"}", KEY));
		CHECK(USER(KEY, "app1") == -1);
		snprintf(h, sizeof h, "Basic %s", "YWxpY2U6eA==");
		CHECK(USER(NULL, "app1") == -1);
		snprintf(h, sizeof h, "Bearer %s", KEY);
		CHECK(USER(KEY, "app1") == -1);
		snprintf(h, sizeof h, "Bearer a.b");
		CHECK(USER(NULL, "app1") == -1);
		CHECK(pol_jwt_user(NULL, 0, KEY, "app1", now, 60, u, sizeof u) == -1);
#undef USER
	}
	{
		/* pol_jwt_sign_user: what `syncgate token` prints verifies as the user's token */
		char tok[POL_JWT_MAX_BYTES];
		const char *why = NULL;
		long n = pol_jwt_sign_user(KEY, "app1", "al\"ice", 6, now, 600, tok, sizeof tok);
		CHECK(n > 0 && (size_t)n == strlen(tok));
		CHECK(pol_jwt_verify(tok, (size_t)n, KEY, "app1", "al\"ice", 6, "user", now, 0, &why));
		CHECK(!pol_jwt_verify(tok, (size_t)n, KEY, "app1", "alice", 5, "user", now, 0, &why));
		CHECK(!pol_jwt_verify(tok, (size_t)n, "sk_other", "app1", "al\"ice", 6, "user", now, 0, &why));
		CHECK(!pol_jwt_verify(tok, (size_t)n, KEY, "app1", "al\"ice", 6, "user", now + 601, 0, &why));
		n = pol_jwt_sign_user(KEY, "app1", "bob", 3, now, 0, tok, sizeof tok); /* no exp */
		CHECK(n > 0 && pol_jwt_verify(tok, (size_t)n, KEY, "app1", "bob", 3, "user", now + 99999999, 0, &why));
		for (size_t cap = 0; cap < (size_t)n + 1; cap++)
			CHECK(pol_jwt_sign_user(KEY, "app1", "bob", 3, now, 0, tok, cap) == -1);
	}
	return t_done("test_jwt");
}
