/* Locked fields (#18): finding them, the strip rewrite on hostile JSON, and the decisions. */
#include <stdlib.h>

#include "policy/call.h"
#include "policy/config.h"
#include "policy/decide.h"
#include "policy/fields.h"
#include "policy/json.h"
#include "guard.h"
#include "t.h"

static struct pol_json *J;

/* TEXT without the fields of L found in the data object of the frame [1,"PUT","/users/u",DATA,{}]
 * (or in the root object when ROOT), into OUT. */
static const char *
strip(const char *names, const char *text, int root)
{
	static char out[4096];
	struct pol_locked l;
	const struct pol_locked *lists[1] = {&l};
	const struct pol_jtok *t;
	const char *why, *p = names;
	char what[256];
	int obj, n;
	long r;

	memset(&l, 0, sizeof l);
	while (*p) {
		size_t k = strcspn(p, ",");
		memcpy(l.name[l.n], p, k);
		l.name[l.n++][k] = 0;
		p += k + (p[k] == ',');
	}
	n = pol_json_parse(J, text, strlen(text), &why);
	if (n < 0)
		return "(parse)";
	t = pol_json_tokens(J);
	obj = root ? 0 : (int)t[t[t[1].next].next].next; /* [seq, method, path, data, ...] */
	r = pol_fields_strip(lists, 1, text, t, &obj, 1, out, strlen(text), what, sizeof what);
	if (r < 0)
		return "(strip failed)";
	out[r] = 0;
	/* the result is strict JSON again */
	if (pol_json_parse(J, out, (size_t)r, &why) < 0)
		return "(invalid result)";
	return out;
}

static void
test_strip(void)
{
	/* nothing locked present: byte for byte */
	CHECK_STR(strip("role", "{ \"name\" : \"A\" }", 1), "{ \"name\" : \"A\" }");
	/* the first, a middle, the last, the only key */
	CHECK_STR(strip("role", "{\"role\":\"admin\",\"name\":\"A\"}", 1), "{\"name\":\"A\"}");
	CHECK_STR(strip("role", "{\"a\":1,\"role\":\"admin\",\"b\":2}", 1), "{\"a\":1,\"b\":2}");
	CHECK_STR(strip("role", "{\"a\":1, \"role\" : [1,{\"x\":2}] }", 1), "{\"a\":1}");
	CHECK_STR(strip("role", "{\"role\":null}", 1), "{}");
	/* kept members keep their bytes and order; whitespace inside them stays */
	CHECK_STR(strip("role", "{\"b\" : [ 1 , 2 ],\"role\":1,\"a\": {\"k\" :\"v\"}}", 1),
	          "{\"b\" : [ 1 , 2 ],\"a\": {\"k\" :\"v\"}}");
	/* an escaped key name is the key it decodes to (JSON.parse's reading) */
	CHECK_STR(strip("role", "{\"r\\u006fle\":\"admin\",\"n\":1}", 1), "{\"n\":1}");
	CHECK_STR(strip("role", "{\"Role\":\"admin\"}", 1), "{\"Role\":\"admin\"}"); /* byte-exact */
	/* nested: custom.plan goes, the rest of custom stays */
	CHECK_STR(strip("custom.plan", "{\"custom\":{\"plan\":\"pro\",\"team\":\"red\"},\"name\":\"A\"}", 1),
	          "{\"custom\":{\"team\":\"red\"},\"name\":\"A\"}");
	CHECK_STR(strip("custom.plan", "{\"custom\":{\"plan\":\"pro\"}}", 1), "{\"custom\":{}}");
	CHECK_STR(strip("custom.plan", "{\"custom\":\"plan\"}", 1), "{\"custom\":\"plan\"}"); /* not an object */
	/* both levels, and a name given twice */
	CHECK_STR(strip("role,custom.plan,role", "{\"role\":1,\"custom\":{\"x\":1,\"plan\":2},\"z\":3}", 1),
	          "{\"custom\":{\"x\":1},\"z\":3}");
	/* the parent and its child locked: the parent goes whole */
	CHECK_STR(strip("custom,custom.plan", "{\"custom\":{\"plan\":2},\"z\":3}", 1), "{\"z\":3}");
	/* in a frame: the data object only, everything else byte for byte */
	CHECK_STR(strip("role", "[7, \"PUT\", \"/users/u\", {\"name\":\"A\",\"role\":\"admin\"}, {\"role\":1}]", 0),
	          "[7, \"PUT\", \"/users/u\", {\"name\":\"A\"}, {\"role\":1}]");
	/* a string value holding quotes, commas and braces */
	CHECK_STR(strip("role", "{\"n\":\"a\\\",}{\",\"role\":\"x,}\"}", 1), "{\"n\":\"a\\\",}{\"}");
}

static struct pol_config *
load(const char *app)
{
	char text[2048], err[POL_ERR_MAX];
	struct pol_config *c;
	snprintf(text, sizeof text,
	         "[syncgate]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n%s", app);
	c = pol_config_load_string(text, "t.conf", err);
	if (!c)
		fprintf(stderr, "config: %s\n", err);
	return c;
}

static struct pol_decision D;

static const char *
decide(struct pol_classifier *k, const struct pol_config *c, const char *frame)
{
	struct pol_call call;
	struct pol_ctx ctx;
	const char *why;
	if (pol_classify_frame(k, frame, strlen(frame), &call, &why))
		return "(classify)";
	ctx.app = pol_config_app(c, "demo", 4);
	ctx.me = "me";
	ctx.me_len = 2;
	ctx.authenticated = 1;
	if (call.op == POL_OP_PART_BATCH) {
		struct pol_facts f = {POL_FV_UNKNOWN, POL_FV_UNKNOWN, POL_FV_TRUE};
		pol_decide_action(&ctx, &call, 0, &f, &D);
	} else {
		pol_decide(&ctx, &call, NULL, &D);
	}
	return D.strip ? "strip" : D.would_strip ? "would_strip" : D.would_deny ? "would_deny"
	       : D.verdict == POL_ALLOW ? "allow" : D.error_code;
}

static void
test_decide(void)
{
	struct pol_config *c = load("[app:demo]\nuser_fields_locked = role, custom.plan\n"
	                            "conversation_fields_locked = custom.tier\n"
	                            "participant_fields_locked = access\n");
	struct pol_classifier *k = c ? pol_classifier_new(&c->limits) : NULL;
	if (!k)
		return;
	CHECK_STR(decide(k, c, "[1,\"PUT\",\"/users/me\",{\"name\":\"A\"},{}]"), "allow");
	CHECK_STR(decide(k, c, "[1,\"PUT\",\"/users/me\",{\"name\":\"A\",\"role\":\"admin\"},{}]"), "FIELD_LOCKED");
	CHECK(D.status == 403 && strstr(D.reason, "'role'") && strstr(D.reason, "REST API"));
	CHECK_STR(decide(k, c, "[1,\"POST\",\"/users/new\",{\"custom\":{\"plan\":\"pro\"}},{}]"), "FIELD_LOCKED");
	CHECK_STR(decide(k, c, "[1,\"PUT\",\"/conversations/c1\",{\"custom\":{\"tier\":1}},{}]"), "FIELD_LOCKED");
	/* a conversation frame carries my participation fields too */
	CHECK_STR(decide(k, c, "[1,\"PUT\",\"/conversations/c1\",{\"subject\":\"s\",\"access\":\"Read\"},{}]"), "FIELD_LOCKED");
	/* a batch: each action's params */
	CHECK_STR(decide(k, c, "[1,\"POST\",\"/conversations/c1/participants\",{\"actions\":[{\"id\":\"bob\",\"method\":\"PUT\",\"params\":{\"access\":\"Read\"}}]},{}]"), "FIELD_LOCKED");
	CHECK_STR(decide(k, c, "[1,\"POST\",\"/conversations/c1/participants\",{\"actions\":[{\"id\":\"bob\",\"method\":\"PUT\",\"params\":{\"notify\":false}}]},{}]"), "allow");
	/* reads and messages are not looked at */
	CHECK_STR(decide(k, c, "[1,\"POST\",\"/conversations/c1/messages\",{\"role\":\"admin\",\"access\":1},{}]"), "allow");
	pol_classifier_free(k);
	pol_config_unref(c);

	/* strip, and report mode */
	c = load("[app:demo]\nuser_fields_locked = role\non_locked = strip\n");
	k = c ? pol_classifier_new(&c->limits) : NULL;
	if (k) {
		CHECK_STR(decide(k, c, "[1,\"PUT\",\"/users/me\",{\"name\":\"A\",\"role\":\"admin\"},{}]"), "strip");
		CHECK_STR(D.reason, "role");
		CHECK(D.nstrip_lists == 1);
		CHECK_STR(decide(k, c, "[1,\"PUT\",\"/users/me\",{\"name\":\"A\"},{}]"), "allow");
		pol_classifier_free(k);
	}
	pol_config_unref(c);
	c = load("[app:*]\nuser_fields_locked = role\non_locked = strip\nmode = report\n[app:demo]\n");
	k = c ? pol_classifier_new(&c->limits) : NULL;
	if (k) {
		CHECK_STR(decide(k, c, "[1,\"PUT\",\"/users/me\",{\"role\":\"admin\"},{}]"), "would_strip");
		pol_classifier_free(k);
	}
	pol_config_unref(c);
	c = load("[app:demo]\nuser_fields_locked = role\nmode = report\n");
	k = c ? pol_classifier_new(&c->limits) : NULL;
	if (k) {
		CHECK_STR(decide(k, c, "[1,\"PUT\",\"/users/me\",{\"role\":\"admin\"},{}]"), "would_deny");
		pol_classifier_free(k);
	}
	pol_config_unref(c);
	/* with the switch off the switch decides (the field is never reached) */
	c = load("[app:demo]\nuser_sync = off\nuser_fields_locked = role\n");
	k = c ? pol_classifier_new(&c->limits) : NULL;
	if (k) {
		CHECK_STR(decide(k, c, "[1,\"PUT\",\"/users/me\",{\"role\":\"admin\"},{}]"), "USER_SYNC_DISABLED");
		pol_classifier_free(k);
	}
	pol_config_unref(c);
}

/* An HTTP browser change: METHOD TARGET classified, BODY its payload (pol_classify_payload),
 * decided for app demo of C: as decide(), or "(payload)" when the body is refused. */
static const char *
decide_http(struct pol_classifier *k, const struct pol_config *c, const char *method,
            const char *target, const char *body)
{
	struct pol_call call;
	struct pol_ctx ctx = {pol_config_app(c, "demo", 4), NULL, 0, 1};
	const char *why;

	if (pol_classify_http(k, method, strlen(method), target, strlen(target), POL_CRED_BROWSER,
	                      &call, &why))
		return "(classify)";
	if (pol_classify_payload(k, &call, body, strlen(body), &why))
		return "(payload)";
	pol_decide(&ctx, &call, NULL, &D);
	return D.strip ? "strip" : D.would_strip ? "would_strip" : D.would_deny ? "would_deny"
	       : D.verdict == POL_ALLOW ? "allow" : D.error_code;
}

/* The REST-shaped browser changes over HTTP: which apps lock fields of which operations, the
 * body as the call's payload (strict, an object, read to its end only), and the decisions on
 * it as on a frame's data. */
static void
test_http_payload(void)
{
	struct pol_config *c = load("[app:demo]\nuser_fields_locked = role, custom.plan\n"
	                            "participant_fields_locked = access\n[app:open]\n");
	struct pol_classifier *k = c ? pol_classifier_new(&c->limits) : NULL;
	const struct pol_app *demo, *open;
	struct pol_call call;
	const char *why, *body = "{\"name\":\"A\",\"custom\":{\"plan\":\"pro\",\"team\":\"t\"}}";
	size_t i, n = strlen(body);
	int accepted = 0;

	if (!k)
		return;
	demo = pol_config_app(c, "demo", 4);
	open = pol_config_app(c, "open", 4);
	/* pol_app_locks: the lists an op's payload is checked against */
	CHECK(pol_app_locks(demo, POL_OP_USER_SET) && pol_app_locks(demo, POL_OP_USER_CREATE));
	CHECK(pol_app_locks(demo, POL_OP_CONV_SET) && pol_app_locks(demo, POL_OP_CONV_CREATE)); /* participant list */
	CHECK(pol_app_locks(demo, POL_OP_PART_ACTION) && pol_app_locks(demo, POL_OP_PART_BATCH));
	CHECK(!pol_app_locks(demo, POL_OP_PART_DELETE) && !pol_app_locks(demo, POL_OP_MESSAGE));
	CHECK(!pol_app_locks(demo, POL_OP_READ) && !pol_app_locks(demo, POL_OP_REST_SERVER));
	CHECK(!pol_app_locks(demo, POL_OP_UNKNOWN) && !pol_app_locks(demo, POL_OP_AUTH));
	CHECK(!pol_app_locks(open, POL_OP_USER_SET) && !pol_app_locks(open, POL_OP_PART_ACTION));

	/* the decisions, as for a frame's data */
	CHECK_STR(decide_http(k, c, "PUT", "/v1/demo/users/me", "{\"name\":\"A\"}"), "allow");
	CHECK_STR(decide_http(k, c, "PUT", "/v1/demo/users/me", "{\"name\":\"A\",\"role\":\"admin\"}"), "FIELD_LOCKED");
	CHECK(D.status == 403 && strstr(D.reason, "'role'"));
	CHECK_STR(decide_http(k, c, "POST", "/v1/demo/users/new", body), "FIELD_LOCKED");
	CHECK(strstr(D.reason, "'custom.plan'") != NULL);
	CHECK_STR(decide_http(k, c, "PUT", "/v1/demo/conversations/c1/participants/me", "{\"access\":\"Read\"}"), "FIELD_LOCKED");
	CHECK_STR(decide_http(k, c, "PUT", "/v1/demo/conversations/c1", "{\"subject\":\"s\",\"access\":\"Read\"}"), "FIELD_LOCKED");
	CHECK_STR(decide_http(k, c, "PUT", "/public_api/v1/demo/conversations/c1", "{\"subject\":\"s\"}"), "allow");
	/* an empty body names no field; no payload is read */
	CHECK_STR(decide_http(k, c, "PUT", "/v1/demo/users/me", ""), "allow");
	CHECK(pol_classify_http(k, "PUT", 3, "/v1/demo/users/me", 17, POL_CRED_BROWSER, &call, &why) == 0 &&
	      pol_classify_payload(k, &call, "", 0, &why) == 0 && call.toks == NULL && call.data_tok < 0);
	/* not strict JSON, or not an object: refused */
	CHECK_STR(decide_http(k, c, "PUT", "/v1/demo/users/me", "{\"role\":\"a\",\"role\":\"b\"}"), "(payload)");
	CHECK_STR(decide_http(k, c, "PUT", "/v1/demo/users/me", "{name:1}"), "(payload)");
	CHECK_STR(decide_http(k, c, "PUT", "/v1/demo/users/me", "[{\"role\":\"admin\"}]"), "(payload)");
	CHECK_STR(decide_http(k, c, "PUT", "/v1/demo/users/me", "\"x\""), "(payload)");
	CHECK_STR(decide_http(k, c, "PUT", "/v1/demo/users/me", "{\"name\":\"\\ud800\"} x"), "(payload)");
	/* the payload names the body: text, its root object; participant keys stay the worst case */
	CHECK(pol_classify_http(k, "PUT", 3, "/v1/demo/conversations/c1/participants/me", 41,
	                        POL_CRED_BROWSER, &call, &why) == 0 &&
	      pol_classify_payload(k, &call, "{\"notify\":false}", 16, &why) == 0);
	CHECK(call.data_tok == 0 && call.toks && call.text_len == 16 && call.keys == POL_PK_OTHER);
	/* every prefix of a body, ending at a guard page: refused, never read past its end */
	for (i = 1; i < n; i++) {
		struct guard g;
		char *p = guard_copy(&g, body, i);
		if (pol_classify_payload(k, &call, p, i, &why) == 0)
			accepted++;
		guard_free(&g);
	}
	CHECK(accepted == 0);
	pol_classifier_free(k);
	pol_config_unref(c);
}

static void
expect_error(const char *app, const char *want)
{
	char text[1024], err[POL_ERR_MAX] = "";
	struct pol_config *c;
	snprintf(text, sizeof text, "[syncgate]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n%s", app);
	c = pol_config_load_string(text, "t.conf", err);
	CHECK(c == NULL && strstr(err, want));
	if (c || !strstr(err, want))
		fprintf(stderr, "got '%s', want '%s'\n", err, want);
	pol_config_unref(c);
}

static void
test_config(void)
{
	struct pol_config *c = load("[app:*]\nuser_fields_locked = role\n[app:a]\n[app:b]\nuser_fields_locked = none\n");
	if (c) {
		CHECK(pol_config_app(c, "a", 1)->locked[POL_FIELDS_USER].n == 1); /* from [app:*] */
		CHECK(pol_config_app(c, "b", 1)->locked[POL_FIELDS_USER].n == 0); /* its own: none */
		CHECK(!pol_config_app(c, "a", 1)->strip_locked);
	}
	pol_config_unref(c);
	expect_error("[app:a]\nuser_fields_locked = role, .x\n", "t.conf:5: user_fields_locked: '.x' is not a field name");
	expect_error("[app:a]\nuser_fields_locked = a..b\n", "t.conf:5: user_fields_locked: 'a..b' has an empty key");
	expect_error("[app:a]\non_locked = drop\n", "t.conf:5: on_locked: 'drop' is not reject or strip");
	expect_error("[app:a]\nparticipant_fields_locked = a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q\n", "more than 16 fields");
}

int
main(void)
{
	J = pol_json_new(1000, 64);
	test_strip();
	test_decide();
	test_http_payload();
	test_config();
	pol_json_free(J);
	return t_done("test_fields");
}
