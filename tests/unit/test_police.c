/*
 * tests/unit/test_police.c - proxy/police.c in-process: the one policing path with a fake
 * transport (records what it is asked to do) and a fake fact source (answers when the test
 * says). Covers allow, deny, park then settle, a fact known at once, lookup failure and
 * timeout (fail closed), the stream gone while parked, report mode, the decision counts,
 * cache invalidation the same for HTTP and realtime calls, and a mixed participant batch.
 */
#include <stdlib.h>
#include <string.h>

#include "policy/call.h"
#include "policy/config.h"
#include "proxy/police.h"
#include "proxy/stats.h"
#include "proxy/types.h"
#include "t.h"

/* ---- the fake fact source ---- */

struct px_fact {
	enum px_lookup_state state;
	const char *parts[4];
};

static struct {
	int asks;
	enum px_lookup_kind kind;
	char id[64];
	px_lookup_cb cb[128];     /* pending asks, answered last first */
	void *arg[128];
	int npending;
	int answer_now;           /* answer inside ask (a cached fact) */
	struct px_fact now;
	int forgets;
	enum px_lookup_kind forget_kind;
	char forget_app[64], forget_id[64];
} src;

static void
fake_ask(void *s, const struct pol_app *app, enum px_lookup_kind kind, const char *id,
         size_t idlen, px_lookup_cb cb, void *arg)
{
	(void)s;
	(void)app;
	src.asks++;
	src.kind = kind;
	snprintf(src.id, sizeof src.id, "%.*s", (int)idlen, id);
	if (src.answer_now) {
		cb(&src.now, arg);
		return;
	}
	src.cb[src.npending] = cb;
	src.arg[src.npending++] = arg;
}

static void
fake_forget(void *s, const char *app, enum px_lookup_kind kind, const char *id, size_t idlen)
{
	(void)s;
	src.forgets++;
	src.forget_kind = kind;
	snprintf(src.forget_app, sizeof src.forget_app, "%s", app);
	snprintf(src.forget_id, sizeof src.forget_id, "%.*s", (int)idlen, id);
}

static enum px_lookup_state
fake_state(const struct px_fact *f)
{
	return f->state;
}

static int
fake_has_participant(const struct px_fact *f, const char *uid, size_t len)
{
	int i;
	for (i = 0; i < 4 && f->parts[i]; i++)
		if (strlen(f->parts[i]) == len && !memcmp(f->parts[i], uid, len))
			return 1;
	return 0;
}

/* The pending lookup's answer arrives (from "the loop"). */
static void
answer(enum px_lookup_state st)
{
	struct px_fact f = {st, {NULL}};
	CHECK(src.npending > 0);
	if (src.npending > 0) {
		src.npending--;
		src.cb[src.npending](&f, src.arg[src.npending]);
	}
}

/* ---- the fake transport ---- */

struct fake {
	int carried, batches, holds, frees, parked;
	struct pol_decision d;
	unsigned char allowed[8];
	int nactions;
	int classify_http;        /* classify again as an HTTP head (else a frame) */
	struct pol_classifier *k;
};

static int held_token;

static void
fake_carry_out(void *t, void *msg, const struct pol_call *call, const struct pol_decision *d,
               int parked)
{
	struct fake *f = t;
	(void)msg;
	(void)call;
	f->carried++;
	f->d = *d;
	f->parked = parked;
}

static void
fake_carry_out_batch(void *t, void *msg, const struct pol_call *call, const unsigned char *allowed,
                     const struct pol_decision *d, int parked)
{
	struct fake *f = t;
	(void)msg;
	(void)d;
	f->batches++;
	f->nactions = call->nactions;
	memcpy(f->allowed, allowed, (size_t)call->nactions);
	f->parked = parked;
}

static int
fake_classify(void *t, const char *text, size_t len, struct pol_call *call)
{
	struct fake *f = t;
	const char *why;
	if (f->classify_http) {
		const char *sp = memchr(text, ' ', len);
		return pol_classify_http(f->k, text, (size_t)(sp - text), sp + 1, len - (size_t)(sp + 1 - text),
		                         POL_CRED_BROWSER, call, &why);
	}
	return pol_classify_frame(f->k, text, len, call, &why);
}

static void *
fake_hold(void *t, void *msg)
{
	struct fake *f = t;
	(void)msg;
	f->holds++;
	return &held_token;
}

static struct fake *freed_by;
static void
fake_free_held(void *held)
{
	CHECK(held == &held_token);
	if (freed_by)
		freed_by->frees++;
}

static const struct px_transport fake_tr = {"fake", fake_carry_out, fake_carry_out_batch,
                                            fake_classify, fake_hold, fake_free_held};

/* ---- the environment ---- */

static _Atomic unsigned long gen;
static struct px_env env;
static struct px_police *police;

static void
no_refresh(struct px_env *e)
{
	(void)e;
}

static void
setup(const char *conf)
{
	char err[POL_ERR_MAX];
	if (env.cfg)
		pol_config_unref(env.cfg);
	env.cfg = pol_config_load_string(conf, "test.conf", err);
	if (!env.cfg) {
		fprintf(stderr, "config: %s\n", err);
		exit(2);
	}
	env.gen++;
	gen = env.gen;
	env.shared_gen = &gen;
	env.refresh = no_refresh;
	memset(&src, 0, sizeof src);
}

static const char *BASE = "[syncgate]\nlisten = 127.0.0.1:1\nupstream = http://127.0.0.1:2\n";

static void
stream(struct px_police_stream *s, struct fake *f, const char *user)
{
	memset(f, 0, sizeof *f);
	f->k = env.classifier;
	freed_by = f;
	px_police_stream_init(s, police, &fake_tr, f, "w0-1", "192.0.2.1");
	if (user) {
		snprintf(s->app, sizeof s->app, "demo");
		s->user = user;
		s->user_len = strlen(user);
	}
}

/* Classifies frame TEXT and hands it to police as the realtime socket would. */
static int
frame(struct px_police_stream *s, const char *text)
{
	struct pol_call call;
	struct pol_ctx ctx;
	const char *why;
	CHECK(pol_classify_frame(env.classifier, text, strlen(text), &call, &why) == 0);
	px_police_ctx(s, NULL, 0, &ctx);
	return px_police_call(s, &ctx, &call, text, strlen(text), NULL);
}

/* The same for an HTTP head "METHOD TARGET" with a browser credential. */
static int
http(struct px_police_stream *s, const char *head)
{
	struct pol_call call;
	struct pol_ctx ctx;
	const char *why, *sp = strchr(head, ' ');
	CHECK(pol_classify_http(env.classifier, head, (size_t)(sp - head), sp + 1, strlen(sp + 1),
	                        POL_CRED_BROWSER, &call, &why) == 0);
	px_police_ctx(s, call.app, call.app_len, &ctx);
	return px_police_call(s, &ctx, &call, head, strlen(head), NULL);
}

static unsigned long long
count(const char *app, enum pol_op op, enum px_verdict v)
{
	struct px_decision_count *rows;
	struct px_stats *all[1] = {env.stats};
	unsigned long long n = 0;
	int i, k;
	px_stats_publish(env.stats);
	k = px_stats_decisions(all, 1, &rows);
	for (i = 0; i < k; i++)
		if (!strcmp(rows[i].app, app) && rows[i].op == op && rows[i].verdict == v)
			n = rows[i].n;
	free(rows);
	return n;
}

/* ---- tests ---- */

static void
test_allow_and_deny(void)
{
	char conf[512];
	struct px_police_stream s;
	struct fake f;

	snprintf(conf, sizeof conf, "%s[app:demo]\nuser_sync = on\nconversation_sync = off\nsecret_key = sk\n", BASE);
	setup(conf);
	stream(&s, &f, "alice");
	CHECK(frame(&s, "[1,\"PUT\",\"/users/alice\",{\"name\":\"A\"},{}]") == 0);
	CHECK(f.carried == 1 && f.d.verdict == POL_ALLOW && !f.parked && f.holds == 0);
	CHECK(count("demo", POL_OP_USER_SET, PX_V_ALLOW) == 1);
	/* an allowed user change drops what is cached about that user */
	CHECK(src.forgets == 1 && src.forget_kind == PX_LOOKUP_USER);
	CHECK_STR(src.forget_id, "alice");
	CHECK_STR(src.forget_app, "demo");

	CHECK(frame(&s, "[2,\"PUT\",\"/conversations/c1\",{\"subject\":\"x\"},{}]") == 0);
	CHECK(f.carried == 2 && f.d.verdict == POL_DENY && f.d.status == 403);
	CHECK_STR(f.d.error_code, "UNAUTHORIZED_TO_EDIT");
	CHECK(src.forgets == 1); /* a refused call changes nothing */
	CHECK(count("demo", POL_OP_CONV_SET, PX_V_REFUSE) == 1);
	/* the same refusal again: counted on the remembered row */
	CHECK(frame(&s, "[3,\"PUT\",\"/conversations/c1\",{\"subject\":\"y\"},{}]") == 0);
	CHECK(count("demo", POL_OP_CONV_SET, PX_V_REFUSE) == 2);
	px_police_stream_release(&s);
}

static void
test_park_then_settle(void)
{
	char conf[512];
	struct px_police_stream s;
	struct fake f;

	snprintf(conf, sizeof conf, "%s[app:demo]\nuser_sync = off\nsecret_key = sk\n", BASE);
	setup(conf);
	stream(&s, &f, "alice");
	/* createIfNotExists: parked on "does bob exist" */
	CHECK(frame(&s, "[4,\"POST\",\"/users/bob\",{\"name\":\"B\"},{}]") == 1);
	CHECK(f.carried == 0 && f.holds == 1 && s.nparked == 1);
	CHECK(src.asks == 1 && src.kind == PX_LOOKUP_USER);
	CHECK_STR(src.id, "bob");
	answer(PX_LOOKUP_PRESENT);
	CHECK(f.carried == 1 && f.parked == 1 && f.frees == 1 && s.nparked == 0);
	CHECK(f.d.status == 409);
	CHECK_STR(f.d.error_code, "USER_ALREADY_EXISTS");
	CHECK(count("demo", POL_OP_USER_CREATE, PX_V_EXISTS) == 1);

	/* absent: refused */
	CHECK(frame(&s, "[5,\"POST\",\"/users/carol\",{},{}]") == 1);
	answer(PX_LOOKUP_ABSENT);
	CHECK(f.carried == 2 && f.d.verdict == POL_DENY && f.d.status == 403);
	CHECK_STR(f.d.error_code, "USER_SYNC_DISABLED");

	/* a fact known at once (cached): settled inside the call, not reported as parked */
	src.answer_now = 1;
	src.now.state = PX_LOOKUP_PRESENT;
	CHECK(frame(&s, "[6,\"POST\",\"/users/dave\",{},{}]") == 0);
	CHECK(f.carried == 3 && f.parked == 0 && f.d.status == 409 && s.nparked == 0);
	CHECK(f.frees == 3);
	px_police_stream_release(&s);
}

static void
test_lookup_failure_fails_closed(void)
{
	char conf[512];
	struct px_police_stream s;
	struct fake f;

	snprintf(conf, sizeof conf, "%s[app:demo]\nuser_sync = off\nconversation_sync = off\nsecret_key = sk\n", BASE);
	setup(conf);
	stream(&s, &f, "alice");
	/* the backend failed or the lookup timed out: the source answers ERROR */
	CHECK(frame(&s, "[7,\"POST\",\"/conversations/c9\",{},{}]") == 1);
	CHECK(src.kind == PX_LOOKUP_CONVERSATION);
	answer(PX_LOOKUP_ERROR);
	CHECK(f.carried == 1 && f.d.verdict == POL_DENY && f.d.status == 403);
	CHECK(strstr(f.d.reason, "could not be verified") != NULL);
	px_police_stream_release(&s);
}

static void
test_gone_while_parked(void)
{
	char conf[512];
	struct px_police_stream s;
	struct fake f;

	snprintf(conf, sizeof conf, "%s[app:demo]\nuser_sync = off\nsecret_key = sk\n", BASE);
	setup(conf);
	stream(&s, &f, "alice");
	CHECK(frame(&s, "[8,\"POST\",\"/users/erin\",{},{}]") == 1);
	px_police_stream_release(&s); /* the socket closed */
	memset(&s, 0xa5, sizeof s);   /* and its memory was reused */
	answer(PX_LOOKUP_PRESENT);
	CHECK(f.carried == 0);       /* nothing carried out for a gone stream */
	CHECK(f.frees == 1);         /* but what it held is freed */
}

static void
test_report_mode(void)
{
	char conf[512];
	struct px_police_stream s;
	struct fake f;

	snprintf(conf, sizeof conf, "%s[app:demo]\nuser_sync = off\nmode = report\nsecret_key = sk\n", BASE);
	setup(conf);
	stream(&s, &f, "alice");
	CHECK(frame(&s, "[9,\"PUT\",\"/users/alice\",{},{}]") == 0);
	CHECK(f.carried == 1 && f.d.verdict == POL_ALLOW && f.d.would_deny);
	CHECK(count("demo", POL_OP_USER_SET, PX_V_WOULD_REFUSE) == 1);
	CHECK(src.forgets == 1); /* forwarded: the fact is dropped */
	/* report mode waits for facts too: the log says what enforce would have done */
	CHECK(frame(&s, "[10,\"POST\",\"/users/frank\",{},{}]") == 1);
	answer(PX_LOOKUP_ABSENT);
	CHECK(f.carried == 2 && f.d.verdict == POL_ALLOW && f.d.would_deny && f.d.status == 403);
	px_police_stream_release(&s);
}

static void
test_http_same_path(void)
{
	unsigned long long exists;
	char conf[512];
	struct px_police_stream s;
	struct fake f;

	snprintf(conf, sizeof conf, "%s[app:demo]\nuser_sync = off\nconversation_sync = on\nsecret_key = sk\n", BASE);
	setup(conf);
	stream(&s, &f, NULL);
	f.classify_http = 1;
	exists = count("demo", POL_OP_USER_CREATE, PX_V_EXISTS);
	/* REST-shaped createIfNotExists from a browser: parked on the same fact, and settled */
	CHECK(http(&s, "POST /v1/demo/users/gina") == 1);
	CHECK(src.kind == PX_LOOKUP_USER);
	CHECK_STR(src.id, "gina");
	answer(PX_LOOKUP_PRESENT);
	CHECK(f.carried == 1 && f.parked && f.d.status == 409);
	CHECK(count("demo", POL_OP_USER_CREATE, PX_V_EXISTS) == exists + 1);
	src.answer_now = 0;
	CHECK(http(&s, "POST /v1/demo/users/hank") == 1);
	answer(PX_LOOKUP_ABSENT);
	CHECK(f.carried == 2 && f.d.status == 403);
	CHECK_STR(f.d.error_code, "USER_SYNC_DISABLED");
	/* an allowed conversation change over HTTP drops the cached conversation, as over ws */
	CHECK(http(&s, "PUT /v1/demo/conversations/c7") == 0);
	CHECK(f.d.verdict == POL_ALLOW && src.forgets == 1 && src.forget_kind == PX_LOOKUP_CONVERSATION);
	CHECK_STR(src.forget_id, "c7");
	px_police_stream_release(&s);

	stream(&s, &f, "alice");
	CHECK(frame(&s, "[11,\"PUT\",\"/conversations/c7\",{},{}]") == 0);
	CHECK(src.forgets == 2 && src.forget_kind == PX_LOOKUP_CONVERSATION);
	CHECK_STR(src.forget_id, "c7");
	px_police_stream_release(&s);
}

/* Over HTTP each request names its app: one connection's decisions are counted per app. */
static void
test_http_counts_per_app(void)
{
	char conf[512];
	struct px_police_stream s;
	struct fake f;

	snprintf(conf, sizeof conf, "%s[app:one]\nuser_sync = off\n[app:two]\nuser_sync = off\n", BASE);
	setup(conf);
	stream(&s, &f, NULL);
	f.classify_http = 1;
	CHECK(http(&s, "PUT /v1/one/users/a") == 0);
	CHECK(http(&s, "PUT /v1/two/users/a") == 0);
	CHECK(http(&s, "PUT /v1/two/users/b") == 0);
	CHECK(count("one", POL_OP_USER_SET, PX_V_REFUSE) == 1);
	CHECK(count("two", POL_OP_USER_SET, PX_V_REFUSE) == 2);
	px_police_stream_release(&s);
}

static void
test_batch(void)
{
	char conf[512];
	struct px_police_stream s;
	struct fake f;

	snprintf(conf, sizeof conf, "%s[app:demo]\nconversation_sync = off\nsecret_key = sk\n", BASE);
	setup(conf);
	stream(&s, &f, "alice");
	/* my own notify (needs "am I a participant") and adding bob (needs "is bob one") */
	CHECK(frame(&s, "[12,\"POST\",\"/conversations/c1/participants\",{\"actions\":["
	                "{\"id\":\"alice\",\"method\":\"PATCH\",\"params\":{\"notify\":false}},"
	                "{\"id\":\"bob\",\"method\":\"POST\",\"params\":{}}]},{}]") == 1);
	CHECK(src.kind == PX_LOOKUP_CONVERSATION);
	CHECK_STR(src.id, "c1");
	{
		struct px_fact fact = {PX_LOOKUP_PRESENT, {"alice", NULL}};
		src.npending--;
		src.cb[0](&fact, src.arg[0]);
	}
	CHECK(f.batches == 1 && f.nactions == 2 && f.parked == 1);
	CHECK(f.allowed[0] == 1 && f.allowed[1] == 0);
	CHECK(count("demo", POL_OP_PART_BATCH, PX_V_ALLOW) == 1);
	CHECK(count("demo", POL_OP_PART_BATCH, PX_V_REFUSE) == 1);
	CHECK(src.forgets == 1); /* an action went: the conversation's fact is dropped */
	CHECK_STR(src.forget_id, "c1");

	/* a batch refused whole changes nothing: its fact stays cached (and no instance of a
	 * fleet is told to drop it) */
	src.forgets = 0;
	CHECK(frame(&s, "[13,\"POST\",\"/conversations/c2/participants\",{\"actions\":["
	                "{\"id\":\"bob\",\"method\":\"POST\",\"params\":{}},"
	                "{\"id\":\"carol\",\"method\":\"POST\",\"params\":{}}]},{}]") == 1);
	{
		struct px_fact fact = {PX_LOOKUP_PRESENT, {"alice", NULL}};
		src.npending--;
		src.cb[0](&fact, src.arg[0]);
	}
	CHECK(f.batches == 2 && f.allowed[0] == 0 && f.allowed[1] == 0);
	CHECK(src.forgets == 0);
	px_police_stream_release(&s);
}

static void
test_max_parked(void)
{
	char conf[512], text[128];
	struct px_police_stream s;
	struct fake f;
	int i;

	snprintf(conf, sizeof conf, "%s[app:demo]\nuser_sync = off\nsecret_key = sk\n", BASE);
	setup(conf);
	stream(&s, &f, "alice");
	for (i = 0; i < PX_MAX_PARKED; i++) {
		snprintf(text, sizeof text, "[%d,\"POST\",\"/users/u%d\",{},{}]", 100 + i, i);
		CHECK(frame(&s, text) == 1);
	}
	CHECK(s.nparked == PX_MAX_PARKED); /* the transport stops reading at this count */
	px_police_stream_release(&s);
	CHECK(s.nparked == 0);
	while (src.npending)
		answer(PX_LOOKUP_ABSENT);
	CHECK(f.carried == 0 && f.frees == PX_MAX_PARKED);
}

/* The console's list: a refused call is kept with what the page shows, an allowed one not;
 * each worker keeps its last PX_REFUSALS_KEPT, merged newest first; refusals per minute over
 * the last hour, the current minute last. */
static void
test_refusals_kept(void)
{
	struct px_stats *w2 = px_stats_new(), *all[2] = {env.stats, w2};
	struct px_refusal *rs = NULL, r;
	unsigned long long per[PX_REFUSAL_MINUTES], base = 1796544000000ull; /* a whole minute */
	int n, i;

	/* a refused frame through the policing path lands in the list, an allowed one not */
	{
		char conf[512];
		struct px_police_stream st;
		struct fake f;
		int before;
		snprintf(conf, sizeof conf, "%s[app:demo]\nuser_sync = off\nsecret_key = sk\n", BASE);
		setup(conf);
		n = px_stats_refusals(all, 1, 200, &rs);
		free(rs);
		before = n;
		stream(&st, &f, "alice");
		frame(&st, "[1,\"PUT\",\"/users/alice\",{\"name\":\"A\"},{}]");
		frame(&st, "[2,\"GET\",\"/users\",{\"ids\":[\"a\"]},{}]");
		n = px_stats_refusals(all, 1, 200, &rs);
		CHECK(n == before + 1);
		if (n > 0) {
			CHECK_STR(rs[0].op, "user-set");
			CHECK_STR(rs[0].transport, "fake");
			CHECK_STR(rs[0].app, "demo");
			CHECK_STR(rs[0].user, "alice");
			CHECK_STR(rs[0].error_code, "USER_SYNC_DISABLED");
			CHECK(rs[0].status == 403 && strstr(rs[0].reason, "syncgate") && !rs[0].report);
			CHECK_STR(rs[0].path, "/users/alice");
			CHECK(rs[0].time_ms > 1700000000000ull); /* the wall clock */
		}
		free(rs);
		px_police_stream_release(&st);
	}
	/* 250 refusals on one worker: its last 200 are kept */
	for (i = 0; i < 250; i++) {
		memset(&r, 0, sizeof r);
		r.time_ms = base + (unsigned long long)i * 1000;
		snprintf(r.user, sizeof r.user, "u%d", i);
		px_stats_refusal(w2, &r);
	}
	n = px_stats_refusals(&all[1], 1, 200, &rs);
	CHECK(n == 200);
	CHECK(n == 200 && !strcmp(rs[0].user, "u249") && !strcmp(rs[199].user, "u50"));
	free(rs);
	n = px_stats_refusals(&all[1], 1, 5, &rs);
	CHECK(n == 5 && !strcmp(rs[4].user, "u245"));
	free(rs);
	/* per minute: 250 s from base is minutes 0..4 (60, 60, 60, 60, 10) */
	px_stats_refusal_minutes(&all[1], 1, base + 249000, per);
	CHECK(per[PX_REFUSAL_MINUTES - 1] == 10 && per[PX_REFUSAL_MINUTES - 2] == 60 &&
	      per[PX_REFUSAL_MINUTES - 5] == 60 && per[PX_REFUSAL_MINUTES - 6] == 0);
	/* an hour later they have all left the chart */
	px_stats_refusal_minutes(&all[1], 1, base + 3600000ull + 250000, per);
	for (i = 0, n = 0; i < PX_REFUSAL_MINUTES; i++)
		n += (int)per[i];
	CHECK(n == 0);
	px_stats_free(w2);
}

int
main(void)
{
	struct px_facts facts = {NULL, fake_ask, fake_forget, fake_state, fake_has_participant};
	char err[POL_ERR_MAX];

	env.cfg = pol_config_load_string(BASE, "test.conf", err);
	env.stats = px_stats_new();
	env.ctr = px_stats_counters(env.stats);
	env.classifier = pol_classifier_new(&env.cfg->limits);
	police = px_police_new(&env, &facts);
	test_allow_and_deny();
	test_park_then_settle();
	test_lookup_failure_fails_closed();
	test_gone_while_parked();
	test_report_mode();
	test_http_same_path();
	test_http_counts_per_app();
	test_batch();
	test_max_parked();
	test_refusals_kept();
	px_police_free(police);
	pol_classifier_free(env.classifier);
	px_stats_free(env.stats);
	pol_config_unref(env.cfg);
	return t_done("police");
}
