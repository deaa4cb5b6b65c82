/*
 * proxy/ws.c - the realtime socket's WebSocket relay, after a valid 101.
 *
 * Client -> backend: every frame header is checked (wsframe.c); data frames are collected
 * into a message (raw bytes kept for a byte-exact forward, unmasked payload for policy).
 * Each complete text message is classified here and decided by police.c: ALLOW forwards
 * the client's own frames; DENY / BADREQ forwards nothing and queues an answer
 * [seq, status, {errorCode, reasons}] for the client. A participant batch with mixed
 * verdicts is forwarded with the allowed actions only (policy/batch.c writes it), and the
 * backend's answer for that seq is merged with syncgate's (protocol.md 7.2). Any other
 * WebSocket is a blind tunnel (tunnel.c).
 *
 * Backend -> client: frames are relayed as they arrive, parsed no further than their headers
 * (except a single-frame answer whose seq awaits a merge). syncgate's own answers enter the
 * client stream only between backend messages, never inside a fragmented one.
 */
#include "proxy/ws.h"

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "policy/batch.h"
#include "policy/fields.h"
#include "policy/json.h"
#include "policy/jwt.h"
#include "policy/text.h"
#include "proxy/conn.h"
#include "proxy/log.h"
#include "proxy/police.h"
#include "proxy/wsframe.h"

#define MAX_MERGES 32
#define SERVER_FRAME_CAP (64ull * 1024 * 1024)

struct merge {
	char seq[40];
	int nactions;
	int nallowed;
	struct {
		int allowed;
		int status;
		const char *code;
		char *reason; /* owned */
	} act[0];
};

/* A call parked until a fact arrives; the socket relays other traffic meanwhile. */

/*
 * The message's frames as the client sent them: the LEN bytes at P (the fast path: in the
 * read block), else the first LEN bytes of BUF (the socket's input for a single-frame
 * message, ws->raw for a reassembled one, a parked call's own copy). forward_raw() moves
 * them to the backend, drop_raw() discards them.
 */
struct raw_src {
	struct evbuffer *buf;
	size_t len;
	const uint8_t *p;
};

struct px_ws {
	/* First, together (216 bytes): what the fast paths touch for every frame. With 100s of
	 * sockets the kernel's work between two events evicts these lines: each is a miss. */
	struct px_conn *c;
	/* the fast path (ws_client_direct): allowed frames of the current read block, not yet
	 * written; written before anything else goes to the backend */
	const uint8_t *span;
	size_t span_len;
	uint64_t s_remaining;   /* payload bytes of the current backend frame still to relay */
	time_t last;
	unsigned long long frames_in, frames_out;
	unsigned long long bytes_in, bytes_out; /* as read from each side */
	size_t seen_in, seen_out;      /* input bytes already counted (left for a later read) */
	struct evbuffer *inject; /* our answers, waiting for a backend message boundary */
	size_t inject_len;       /* its length (px_evbuffer_track_length) */
	int s_in_msg;           /* inside a fragmented backend data message */
	int nmerges;
	int server_closed;
	struct px_ws_assembler asm_; /* the message rules (wsframe.c) */
	/* the rest */
	/* client -> backend */
	struct evbuffer *raw;   /* the current message's data frames, as received */
	struct evbuffer *msg;   /* its unmasked payload */
	int msg_opcode;         /* of the message being reassembled, once complete */
	int client_closed;      /* client sent close */
	/* backend -> client */
	int s_frame_fin, s_frame_op;
	struct merge *merges[MAX_MERGES];
	unsigned long long refused;
	time_t opened;
	int close_code;          /* the first close code seen either way (0: none) */
	struct px_police_stream ps; /* police.c's: the socket's app, user, parked calls */
	char *user;              /* the socket's user id (decoded; owned) */
};

static void ws_client_readcb(struct px_io *io, void *arg);
static void ws_client_writecb(struct px_io *io, void *arg);
static void ws_upstream_readcb(struct px_io *io, void *arg);
static void ws_upstream_writecb(struct px_io *io, void *arg);
static void ws_eventcb(struct px_io *io, short what, void *arg);
static size_t ws_client_direct(struct px_io *io, const uint8_t *p, size_t n, void *arg);
static size_t ws_upstream_direct(struct px_io *io, const uint8_t *p, size_t n, void *arg);
static void client_resume(struct px_ws *ws);

static void
merge_free(struct merge *m)
{
	int i;
	for (i = 0; i < m->nactions; i++)
		free(m->act[i].reason);
	free(m);
}


/* The relay ends (the connection closes or begins its final flush): the close line. */
static void
ws_release(struct px_conn *c, void *obj)
{
	struct px_ws *ws = obj;
	int i;
	char in[24], out[24], refused[24], secs[24], code[8], bin[24], bout[24];

	snprintf(in, sizeof in, "%llu", ws->frames_in);
	snprintf(out, sizeof out, "%llu", ws->frames_out);
	snprintf(refused, sizeof refused, "%llu", ws->refused);
	snprintf(secs, sizeof secs, "%ld", (long)(time(NULL) - ws->opened));
	snprintf(code, sizeof code, "%d", ws->close_code);
	snprintf(bin, sizeof bin, "%llu", ws->bytes_in);
	snprintf(bout, sizeof bout, "%llu", ws->bytes_out);
	px_log(PX_LOG_INFO, "ws_closed", "socket", c->id, "peer", c->peer, "app", ws->ps.app,
	       "user", ws->user ? ws->user : "", "#frames_in", in, "#frames_out", out, "#bytes_in",
	       bin, "#bytes_out", bout, "#refused", refused, "#seconds", secs, "#close_code",
	       ws->close_code ? code : "", NULL);
	px_count(&c->env->ctr->ws_closed, 1);
	px_police_stream_release(&ws->ps);
	if (ws->raw)
		evbuffer_free(ws->raw);
	if (ws->msg)
		evbuffer_free(ws->msg);
	if (ws->inject)
		evbuffer_free(ws->inject);
	for (i = 0; i < ws->nmerges; i++)
		merge_free(ws->merges[i]);
	free(ws->user);
	free(ws);
}

static void
ws_idle(struct px_conn *c)
{
	struct px_ws *ws = c->obj;
	if (px_conn_idle_over(c, ws->last, ws_idle))
		px_conn_close(c);
}

/* Sends a close frame to the client and closes once it is flushed. */
static void
close_client(struct px_ws *ws, int code, const char *why)
{
	struct px_conn *c = ws->c;
	uint8_t f[4 + 125];
	size_t rl = strlen(why) > 100 ? 100 : strlen(why);
	size_t h = px_ws_write_header(f, 1, PX_WS_CLOSE, NULL, 2 + rl);
	char scode[8];

	snprintf(scode, sizeof scode, "%d", code);
	if (!ws->close_code)
		ws->close_code = code;
	px_log(PX_LOG_INFO, "ws_close", "peer", c->peer, "#code", scode, "why", why, NULL);
	f[h] = (uint8_t)(code >> 8);
	f[h + 1] = (uint8_t)code;
	memcpy(f + h + 2, why, rl);
	evbuffer_add_buffer(px_io_output(c->cio), ws->inject);
	evbuffer_add(px_io_output(c->cio), f, h + 2 + rl);
	ws->span_len = 0; /* the backend is gone */
	px_conn_drop_upstream(c);
	px_conn_close_when_flushed(c);
}


/* Backend at a message boundary: our queued answers may go out now. */
static void
flush_inject(struct px_ws *ws)
{
	if (ws->s_remaining == 0 && !ws->s_in_msg && ws->inject_len)
		evbuffer_add_buffer(px_io_output(ws->c->cio), ws->inject);
}

static void
queue_text(struct px_ws *ws, const char *text, size_t len)
{
	uint8_t h[PX_WS_MAX_HEADER];
	size_t hl = px_ws_write_header(h, 1, PX_WS_TEXT, NULL, len);
	evbuffer_add(ws->inject, h, hl);
	evbuffer_add(ws->inject, text, len);
	flush_inject(ws);
}

/* [seq, status, {"errorCode": code, "reasons": [reason]}] */
static void
queue_error(struct px_ws *ws, const char *seq, size_t seq_len, int status, const char *code,
            const char *reason)
{
	char esc[768], buf[1024];
	int n;
	px_json_escape(esc, sizeof esc, reason, strlen(reason));
	n = snprintf(buf, sizeof buf, "[%.*s,%d,{\"errorCode\":\"%s\",\"reasons\":[\"%s\"]}]",
	             (int)seq_len, seq, status, code, esc);
	if (n > 0 && (size_t)n < sizeof buf)
		queue_text(ws, buf, (size_t)n);
	if (status == 409)
		return; /* "exists": the SDK's success, not a refusal */
	ws->refused++;
	px_count(&ws->c->env->ctr->ws_refused, 1);
}

/* Writes the fast path's pending frames (they precede anything queued after them). */
static void
span_flush(struct px_ws *ws)
{
	if (ws->span_len && ws->c->uio)
		px_io_write(ws->c->uio, ws->span, ws->span_len);
	ws->span_len = 0;
}

/* The backend's output, for bytes that go after everything forwarded so far. */
static struct evbuffer *
upstream_out(struct px_ws *ws)
{
	span_flush(ws);
	return px_io_output(ws->c->uio);
}

static void
forward_text(struct px_ws *ws, const char *text, size_t len)
{
	uint8_t h[PX_WS_MAX_HEADER], mask[4];
	struct evbuffer *out = upstream_out(ws);
	size_t hl;
	char *copy;

	if (RAND_bytes(mask, 4) != 1)
		memset(mask, 0x5a, 4);
	hl = px_ws_write_header(h, 1, PX_WS_TEXT, mask, len);
	copy = malloc(len ? len : 1);
	if (!copy)
		return;
	memcpy(copy, text, len);
	px_ws_mask((uint8_t *)copy, len, mask, 0);
	evbuffer_add(out, h, hl);
	evbuffer_add(out, copy, len);
	free(copy);
}


/* Queues the answer to merge M's batch: a refusal per refused action, and for the allowed
 * ones the backend's responses RESP (a cJSON array of M->nallowed entries; NULL: none). */
static void
queue_batch_answer(struct px_ws *ws, const struct merge *m, const cJSON *resp)
{
	struct pol_batch_entry *e = calloc((size_t)(m->nactions ? m->nactions : 1), sizeof *e);
	char **raw = calloc((size_t)(m->nactions ? m->nactions : 1), sizeof *raw);
	size_t cap = 32 + strlen(m->seq);
	char *out = NULL;
	long n = -1;
	int i, k = 0;

	for (i = 0; e && raw && i < m->nactions; i++) {
		if (m->act[i].allowed && resp) {
			raw[i] = cJSON_PrintUnformatted(cJSON_GetArrayItem(resp, k++));
			e[i].raw = raw[i] ? raw[i] : "null";
			e[i].raw_len = strlen(e[i].raw);
			cap += e[i].raw_len + 1;
		} else {
			e[i].status = m->act[i].status;
			e[i].error_code = m->act[i].code ? m->act[i].code : "INVALID_REQUEST";
			e[i].reason = m->act[i].reason ? m->act[i].reason : "";
			cap += 64 + 6 * (strlen(e[i].error_code) + strlen(e[i].reason));
		}
	}
	if (e && raw && (out = malloc(cap)))
		n = pol_batch_answer(m->seq, strlen(m->seq), m->nactions, e, out, cap);
	if (n >= 0)
		queue_text(ws, out, (size_t)n);
	else
		queue_error(ws, m->seq, strlen(m->seq), 400, "INVALID_REQUEST", "syncgate: out of memory");
	for (i = 0; raw && i < m->nactions; i++)
		cJSON_free(raw[i]);
	free(raw);
	free(e);
	free(out);
}


/* Bytes wait in an output (else the fast path's px_io_write() calls sent everything and there
 * is nothing to flush and no watermark to check). */
static int
output_waiting(const struct px_conn *c)
{
	return px_io_pending(c->cio) || (c->uio && px_io_pending(c->uio));
}

/* Writes what the handlers queued on both sides: one flush per socket per event. */
static void
flush_both(struct px_conn *c)
{
	if (c->uio)
		px_io_flush(c->uio);
	px_io_flush(c->cio);
}

static void
forward_raw(struct px_ws *ws, const struct raw_src *r)
{
	if (!r->p) {
		evbuffer_remove_buffer(r->buf, upstream_out(ws), r->len);
		return;
	}
	if (ws->span_len && ws->span + ws->span_len == r->p) {
		ws->span_len += r->len; /* the next frame of the same block: one send for both */
		return;
	}
	span_flush(ws);
	ws->span = r->p;
	ws->span_len = r->len;
}

static void
drop_raw(const struct raw_src *r)
{
	if (!r->p)
		evbuffer_drain(r->buf, r->len);
}

/* Decides each action of a participant batch, with the conversation's fact F (or NULL). */
/* ---- the transport police.c decides for ---- */

/* An answer of syncgate's own for CALL: [seq, status, {errorCode, reasons}]. */
static void
answer_call(struct px_ws *ws, const struct pol_call *call, const struct pol_decision *d)
{
	queue_error(ws, call->seq, call->seq_len, d->status, d->error_code, d->reason);
}

/* After a parked call settled (from the loop): what it produced goes out, and the client is
 * read again if it waited for parked calls. */
static void
after_parked(struct px_ws *ws)
{
	if (ws->c->phase != PX_CONN_OPEN)
		return;
	flush_both(ws->c);
	client_resume(ws);
}

/* A call settled after the socket began to close (its close frame is queued, or the client
 * sent one): nothing more goes either way. Returns 1 if RAW was dropped for that. */
static int
gone_quiet(struct px_ws *ws, const struct raw_src *raw)
{
	if (ws->c->phase == PX_CONN_OPEN && !ws->client_closed)
		return 0;
	drop_raw(raw);
	return 1;
}

/*
 * An allowed call whose locked fields go (on_locked = strip, decided with D): its text as
 * policy/fields.c rewrites it (never longer; objects OBJS of CALL's tokens lose the fields),
 * framed anew, instead of the client's frames. CALL must be the classifier's last.
 */
static void
forward_stripped(struct px_ws *ws, const struct raw_src *raw, const struct pol_call *call,
                 const struct pol_decision *d, const int *objs, int nobj)
{
	char *b = malloc(call->text_len ? call->text_len : 1), what[POL_REASON_MAX];
	long bl = b ? pol_fields_strip(d->strip_lists, d->nstrip_lists, call->text, call->toks, objs,
	                               nobj, b, call->text_len, what, sizeof what)
	            : -1;

	drop_raw(raw);
	if (bl < 0)
		queue_error(ws, call->seq, call->seq_len, 400, "INVALID_REQUEST",
		            "syncgate: the call could not be written without its locked fields");
	else
		forward_text(ws, b, (size_t)bl);
	free(b);
}

static void
ws_carry_out(void *t, void *msg, const struct pol_call *call, const struct pol_decision *d,
             int parked)
{
	struct px_ws *ws = t;
	const struct raw_src *raw = msg;

	if (gone_quiet(ws, raw))
		return;
	if (d->verdict == POL_ALLOW) {
		if (ws->c->uio && d->strip)
			forward_stripped(ws, raw, call, d, &call->data_tok, 1);
		else if (ws->c->uio)
			forward_raw(ws, raw);
	} else {
		drop_raw(raw);
		answer_call(ws, call, d);
	}
	if (ws->ps.banned && ws->c->phase == PX_CONN_OPEN) {
		/* refusal_ban: this user's sockets close (the others at their next change) */
		close_client(ws, PX_WS_CLOSE_POLICY, "syncgate: banned for repeated refused changes");
		return;
	}
	if (parked)
		after_parked(ws);
}

/* The first allowed action of a batch whose locked fields go (its decision has the lists). */
static int
first_strip(const struct pol_decision *d, const unsigned char *allowed, int n)
{
	int i;
	for (i = 0; i < n && !(allowed[i] && d[i].strip); i++)
		;
	return i < n ? i : 0;
}

/*
 * A participant batch decided action by action (protocol.md 7.2): all allowed, the client's
 * frames go on; none allowed (or too many merges pending), syncgate answers the whole batch;
 * mixed, the backend gets the allowed actions only (policy/batch.c writes the frame) and its
 * answer is merged with syncgate's refusals when it comes (try_merge).
 */
static void
ws_carry_out_batch(void *t, void *msg, const struct pol_call *call, const unsigned char *allowed,
                   const struct pol_decision *d, int parked)
{
	struct px_ws *ws = t;
	const struct raw_src *raw = msg;
	int i, n = call->nactions, nallowed = 0, nstrip;
	int strip_objs[POL_STRIP_MAX];
	struct merge *m;

	if (gone_quiet(ws, raw))
		return;
	for (i = 0; i < n; i++) {
		nallowed += allowed[i] != 0;
		if (!allowed[i]) {
			ws->refused++;
			px_count(&ws->c->env->ctr->ws_refused, 1);
		}
	}
	for (i = 0, nstrip = 0; i < n; i++)
		if (allowed[i] && d[i].strip)
			strip_objs[nstrip++] = call->actions[i].params;
	if (nallowed == n) {
		if (ws->c->uio && nstrip)
			forward_stripped(ws, raw, call, &d[first_strip(d, allowed, n)], strip_objs, nstrip);
		else if (ws->c->uio)
			forward_raw(ws, raw);
		goto out;
	}
	drop_raw(raw);
	m = calloc(1, sizeof *m + (size_t)n * sizeof m->act[0]);
	if (m) {
		m->nactions = n;
		m->nallowed = nallowed;
		snprintf(m->seq, sizeof m->seq, "%.*s", (int)call->seq_len, call->seq);
		for (i = 0; i < n && m; i++) {
			m->act[i].allowed = allowed[i];
			if (allowed[i])
				continue;
			m->act[i].status = d[i].status;
			m->act[i].code = d[i].error_code;
			if (!(m->act[i].reason = strdup(d[i].reason))) {
				m->nactions = i;
				merge_free(m);
				m = NULL;
			}
		}
	}
	if (!m) {
		queue_error(ws, call->seq, call->seq_len, 400, "INVALID_REQUEST", "syncgate: out of memory");
		goto out;
	}
	if (nallowed == 0 || ws->nmerges == MAX_MERGES || !ws->c->uio) {
		/* answer the whole batch here: one response, each action refused */
		for (i = 0; i < n; i++)
			if (m->act[i].allowed) {
				m->act[i].status = 409;
				m->act[i].code = "TOO_MANY_BATCHES";
				m->act[i].reason = strdup("syncgate: too many batches in flight");
				m->act[i].allowed = 0;
			}
		queue_batch_answer(ws, m, NULL);
		merge_free(m);
		goto out;
	}
	{
		/* mixed: the allowed actions only, under the client's seq; never longer than the
		 * client's frame (policy/batch.h) */
		char *b = malloc(call->text_len ? call->text_len : 1);
		long bl = b ? pol_batch_forward(ws->c->env->classifier, call, allowed, b, call->text_len) : -1;
		if (bl < 0) {
			free(b);
			merge_free(m);
			queue_error(ws, call->seq, call->seq_len, 400, "INVALID_REQUEST", "syncgate: out of memory");
			goto out;
		}
		if (nstrip) {
			/* the allowed actions' locked fields go too: the forwarded frame is read again
			 * (a subset of a frame that was strict JSON) and rewritten */
			struct pol_call fc;
			const char *why;
			int k = 0, j = 0, fs = first_strip(d, allowed, n);
			const struct pol_decision *ds = &d[fs];
			char *b2 = malloc((size_t)bl);
			long b2l = -1;
			if (b2 && pol_classify_frame(ws->c->env->classifier, b, (size_t)bl, &fc, &why) == 0 &&
			    fc.op == POL_OP_PART_BATCH) {
				for (i = 0; i < n; i++)
					if (allowed[i]) {
						if (d[i].strip && k < POL_STRIP_MAX)
							strip_objs[k++] = fc.actions[j].params;
						j++;
					}
				b2l = pol_fields_strip(ds->strip_lists, ds->nstrip_lists, b, fc.toks, strip_objs, k,
				                       b2, (size_t)bl, NULL, 0);
			}
			if (b2l < 0) {
				free(b2);
				free(b);
				merge_free(m);
				queue_error(ws, call->seq, call->seq_len, 400, "INVALID_REQUEST",
				            "syncgate: the batch could not be written without its locked fields");
				goto out;
			}
			free(b);
			b = b2;
			bl = b2l;
		}
		forward_text(ws, b, (size_t)bl);
		free(b);
		ws->merges[ws->nmerges++] = m;
	}
out:
	if (ws->ps.banned && ws->c->phase == PX_CONN_OPEN) {
		close_client(ws, PX_WS_CLOSE_POLICY, "syncgate: banned for repeated refused changes");
		return;
	}
	if (parked)
		after_parked(ws);
}

static int
ws_classify(void *t, const char *text, size_t len, struct pol_call *call)
{
	struct px_ws *ws = t;
	const char *why;
	return pol_classify_frame(ws->c->env->classifier, text, len, call, &why);
}

/* A parked call's frames: copied out of the read block, or moved out of the input. */
static void *
ws_hold(void *t, void *msg)
{
	const struct raw_src *raw = msg;
	struct raw_src *h = calloc(1, sizeof *h);
	(void)t;
	if (!h || !(h->buf = evbuffer_new()))
		goto fail;
	h->len = raw->len;
	if (raw->p ? evbuffer_add(h->buf, raw->p, raw->len) < 0
	           : evbuffer_remove_buffer(raw->buf, h->buf, raw->len) != (int)raw->len)
		goto fail;
	return h;
fail:
	if (h && h->buf)
		evbuffer_free(h->buf);
	free(h);
	return NULL;
}

static void
ws_free_held(void *held)
{
	struct raw_src *h = held;
	evbuffer_free(h->buf);
	free(h);
}

static const struct px_transport ws_transport = {
	.name = "ws",
	.carry_out = ws_carry_out,
	.carry_out_batch = ws_carry_out_batch,
	.classify = ws_classify,
	.hold = ws_hold,
	.free_held = ws_free_held,
};

/* Identity (protocol.md 3.4, 7.6) on /session/renew. Returns 0 if the call may go on. */
static int
check_identity(struct px_ws *ws, const struct pol_ctx *ctx, const struct pol_call *call,
               const char *text, const struct raw_src *raw)
{
	struct px_conn *c = ws->c;
	const struct pol_jtok *t = pol_json_tokens(pol_classifier_json(c->env->classifier));
	int ti = pol_json_obj_get(text, t, call->data_tok, "token");
	char token[POL_JWT_MAX_BYTES]; /* per call: workers run this concurrently */
	long tl = ti >= 0 ? pol_json_str_decode(text, &t[ti], token, sizeof token) : -1;
	const char *why = "no token";
	int ok = tl > 0 && pol_jwt_verify(token, (size_t)tl, ctx->app->secret_key, ctx->app->id,
	                                  ws->user, ws->ps.user_len, "user", (int64_t)time(NULL),
	                                  c->cfg->limits.jwt_clock_skew_s, &why);

	px_log(ok ? PX_LOG_INFO : PX_LOG_WARN, "identity", "app", ws->ps.app, "user", ws->user,
	       "peer", c->peer, "result", ok ? "valid" : "invalid", "why", ok ? "" : why, "mode",
	       pol_identity_to_str(ctx->app->identity), NULL);
	if (ctx->app->identity != POL_IDENTITY_REQUIRE)
		return 0; /* verify: logged, not enforced */
	ws->ps.authenticated = ok;
	if (ok)
		return 0;
	{
		char reason[256];
		snprintf(reason, sizeof reason,
		         "syncgate: app %.64s requires a valid user token for this user: %s", ws->ps.app, why);
		drop_raw(raw);
		queue_error(ws, call->seq, call->seq_len, 401, "INVALID_TOKEN", reason);
	}
	return -1;
}

/* One complete client text message on the realtime socket (its frames: RAW). */
static void
police_message(struct px_ws *ws, const char *text, size_t len, struct raw_src *raw)
{
	struct px_conn *c = ws->c;
	struct pol_call call;
	struct pol_ctx ctx;
	const char *why = NULL;

	if (pol_classify_frame(c->env->classifier, text, len, &call, &why)) {
		/* A message the JSON scanner accepts is valid UTF-8 (it checks every string and
		 * refuses any other non-ASCII byte), so UTF-8 is checked here only, for a refused
		 * one: invalid UTF-8 closes 1007 (RFC 6455 §8.1), anything else is answered 400. */
		if (!pol_utf8_valid((const uint8_t *)text, len)) {
			close_client(ws, PX_WS_CLOSE_BAD_DATA, "text message is not UTF-8");
			return;
		}
		px_log(PX_LOG_INFO, "ws_bad_frame", "peer", c->peer, "app", ws->ps.app, "why", why, NULL);
		drop_raw(raw);
		if (call.seq) {
			char reason[256];
			snprintf(reason, sizeof reason, "syncgate: invalid frame: %s", why);
			queue_error(ws, call.seq, call.seq_len, 400, "INVALID_REQUEST", reason);
		} else {
			close_client(ws, PX_WS_CLOSE_BAD_DATA, why);
		}
		return;
	}
	px_police_ctx(&ws->ps, NULL, 0, &ctx);
	if (call.op == POL_OP_AUTH && ctx.app->identity != POL_IDENTITY_OFF) {
		if (check_identity(ws, &ctx, &call, text, raw))
			return;
		px_police_ctx(&ws->ps, NULL, 0, &ctx);
	}
	px_police_call(&ws->ps, &ctx, &call, text, len, raw);
}

/* A whole text message in one frame, its LEN payload bytes unmasked in the worker's scratch:
 * policed. Returns 0 to go on, -1 if the socket is closing. */
static int
police_text(struct px_ws *ws, size_t len, struct raw_src *raw)
{
	police_message(ws, ws->c->env->ws_scratch, len, raw);
	return ws->c->phase != PX_CONN_OPEN ? -1 : 0;
}

/*
 * The first bytes of IN (N of them in all) as far as a frame header can reach: a pointer into
 * the first chain when the header lies there (the usual case), else a copy in HB.
 */
static const uint8_t *
header_bytes(struct evbuffer *in, size_t n, uint8_t hb[PX_WS_MAX_HEADER])
{
	size_t want = n < PX_WS_MAX_HEADER ? n : PX_WS_MAX_HEADER;

	if (evbuffer_get_contiguous_space(in) >= want)
		return evbuffer_pullup(in, (ev_ssize_t)want); /* already contiguous: no copy */
	evbuffer_copyout(in, hb, want);
	return hb;
}

/* Copies LEN payload bytes at offset OFF of IN into DST, unmasked (RFC 6455 §5.3), reading
 * the chains in place rather than copying out and unmasking in a second pass. */
static void
copy_unmasked(struct evbuffer *in, size_t off, size_t len, const uint8_t mask[4], uint8_t *dst)
{
	struct evbuffer_ptr pos;

	if (evbuffer_get_contiguous_space(in) >= off + len) { /* the usual case: one chain */
		const uint8_t *p = evbuffer_pullup(in, (ev_ssize_t)(off + len));
		px_ws_unmask_copy(dst, p + off, len, mask, 0);
		return;
	}
	evbuffer_ptr_set(in, &pos, off, EVBUFFER_PTR_SET);
	evbuffer_copyout_from(in, &pos, dst, len);
	px_ws_mask(dst, len, mask, 0);
}

/* A whole client frame is about to be handled: counters. */
static void
client_frame_seen(struct px_ws *ws)
{
	ws->frames_in++;
	px_count(&ws->c->env->ctr->ws_frames_in, 1);
}

/* Processes one complete client frame at the head of IN. Returns 0 to go on, -1 to stop. */
static int
client_frame(struct px_ws *ws, struct evbuffer *in, const struct px_ws_header *h)
{
	struct px_conn *c = ws->c;
	size_t total = h->hdr_len + h->len;

	client_frame_seen(ws);
	if (h->opcode >= PX_WS_CLOSE) {
		if (h->opcode == PX_WS_CLOSE) {
			uint8_t p[PX_WS_MAX_CONTROL];
			int code;
			{
				struct evbuffer_ptr pos;
				evbuffer_ptr_set(in, &pos, h->hdr_len, EVBUFFER_PTR_SET);
				evbuffer_copyout_from(in, &pos, p, h->len);
			}
			px_ws_mask(p, h->len, h->mask, 0);
			if (px_ws_check_close(p, h->len, &code)) {
				close_client(ws, code, "invalid close frame");
				return -1;
			}
			ws->client_closed = 1;
			if (!ws->close_code)
				ws->close_code = code;
		}
		/* control frames pass at once, even between the fragments of a message */
		evbuffer_remove_buffer(in, upstream_out(ws), total);
		if (ws->client_closed)
			px_io_read(c->cio, 0);
		return ws->client_closed ? -1 : 0;
	}
	{
		int code, opcode = 0;
		const char *why;
		int r = px_ws_assemble(&ws->asm_, h, &opcode, &code, &why);
		if (r < 0) {
			close_client(ws, code, why);
			return -1;
		}
		if (r == PX_WS_LAST && ws->asm_.nfrag == 1 && opcode == PX_WS_TEXT &&
		    h->len <= c->env->ws_scratch_size) {
			/* the common case, a whole message in one frame: unmask a copy into the
			 * worker's scratch, decide, and move the frame on (or drop it) in one step */
			struct raw_src raw = {in, total, NULL};
			copy_unmasked(in, h->hdr_len, h->len, h->mask, (uint8_t *)c->env->ws_scratch);
			return police_text(ws, h->len, &raw);
		}
		if (r == PX_WS_LAST)
			ws->msg_opcode = opcode;
	}
	{
		/* unmask a copy of the payload for policy; keep the frame as received */
		struct evbuffer_iovec v[2];
		int n;
		size_t off = 0;
		evbuffer_remove_buffer(in, ws->raw, h->hdr_len);
		n = evbuffer_reserve_space(ws->msg, h->len ? h->len : 1, v, 2);
		if (n < 1) {
			close_client(ws, PX_WS_CLOSE_INTERNAL, "out of memory");
			return -1;
		}
		{
			struct evbuffer_ptr pos;
			size_t i, left = h->len;
			evbuffer_ptr_set(in, &pos, 0, EVBUFFER_PTR_SET);
			for (i = 0; i < (size_t)n && left; i++) {
				size_t take = v[i].iov_len < left ? v[i].iov_len : left;
				evbuffer_copyout_from(in, &pos, v[i].iov_base, take);
				px_ws_mask(v[i].iov_base, take, h->mask, off);
				evbuffer_ptr_set(in, &pos, take, EVBUFFER_PTR_ADD);
				v[i].iov_len = take;
				off += take;
				left -= take;
			}
			evbuffer_commit_space(ws->msg, v, (int)i);
		}
		evbuffer_remove_buffer(in, ws->raw, h->len);
	}
	if (!h->fin)
		return 0;
	{
		size_t len = evbuffer_get_length(ws->msg);
		const char *text = len ? (const char *)evbuffer_pullup(ws->msg, -1) : "";
		if (ws->msg_opcode == PX_WS_BINARY) {
			close_client(ws, PX_WS_CLOSE_UNSUPPORTED, "binary message on the realtime socket");
			return -1;
		}
		struct raw_src raw = {ws->raw, evbuffer_get_length(ws->raw), NULL};
		police_message(ws, text, len, &raw);
		evbuffer_drain(ws->msg, len);
	}
	return c->phase != PX_CONN_OPEN ? -1 : 0;
}

/*
 * 1 while the client must not be read: the backend's output is above the high watermark, or
 * the client's own is (relayed answers and syncgate's together, those still waiting for a
 * backend message boundary included: a client that sends refused calls and reads nothing
 * must not grow the answers it does not read), or PX_MAX_PARKED calls wait for facts.
 */
static int
client_must_wait(const struct px_ws *ws)
{
	const struct px_conn *c = ws->c;
	return (c->uio && px_io_pending(c->uio) > PX_HIGH_WATER) ||
	       px_io_pending(c->cio) + ws->inject_len > PX_HIGH_WATER ||
	       ws->ps.nparked >= PX_MAX_PARKED;
}

/* Reads the client again once nothing holds it back (from the write callbacks, which run
 * when an output drained to its low watermark, and when a parked call settles). */
static void
client_resume(struct px_ws *ws)
{
	if (ws->c->phase == PX_CONN_OPEN && !ws->client_closed && !client_must_wait(ws))
		px_io_read(ws->c->cio, 1);
}

/* After client bytes were handled: what they produced goes out, and reading pauses while
 * client_must_wait() (client_resume() turns it back on). */
static void
client_read_done(struct px_ws *ws)
{
	flush_both(ws->c);
	if (client_must_wait(ws))
		px_io_read(ws->c->cio, 0);
}

static void
ws_client_readcb(struct px_io *io, void *arg)
{
	struct px_ws *ws = arg;
	struct px_conn *c = ws->c;
	struct evbuffer *in = px_io_input(io);

	ws->last = time(NULL);
	ws->bytes_in += evbuffer_get_length(in) - ws->seen_in;
	{
		for (;;) {
			struct px_ws_header h;
			size_t n = evbuffer_get_length(in);
			uint8_t hb[PX_WS_MAX_HEADER];
			const uint8_t *hp;
			const char *why;
			int code, r;

			if (n == 0)
				break;
			hp = header_bytes(in, n, hb);
			r = px_ws_parse_header(hp, n < sizeof hb ? n : sizeof hb, 1,
			                       c->cfg->limits.ws_message_bytes, &h, &code, &why);
			if (r < 0) {
				close_client(ws, code, why);
				return;
			}
			if (r == 0 || n < h.hdr_len + h.len)
				break;
			if (client_frame(ws, in, &h) < 0)
				break; /* closing; C stays valid until the loop closes it */
		}
	}
	ws->seen_in = evbuffer_get_length(in);
	client_read_done(ws);
}

/*
 * The fast path for client bytes (px_io_set_direct): the whole single-frame text messages at
 * the front of the read block are policed there and the allowed ones forwarded from it, with
 * one send(2). It stops at anything else (a fragment, a control frame, a partial frame, a
 * header error), which ws_client_readcb then takes from the socket's input.
 */
static size_t
ws_client_direct(struct px_io *io, const uint8_t *p, size_t n, void *arg)
{
	struct px_ws *ws = arg;
	struct px_conn *c = ws->c;
	size_t off = 0;

	(void)io;
	if (!c->uio)
		return 0;
	ws->last = time(NULL);
	ws->seen_in = 0; /* the input is empty */
	while (off < n) {
		struct px_ws_header h;
		const char *why;
		int code, opcode;
		size_t total;

		if (px_ws_parse_header(p + off, n - off, 1, c->cfg->limits.ws_message_bytes, &h, &code,
		                       &why) <= 0)
			break;
		total = h.hdr_len + h.len;
		if (n - off < total || h.opcode != PX_WS_TEXT || !h.fin || ws->asm_.in_msg ||
		    h.len > c->env->ws_scratch_size)
			break;
		client_frame_seen(ws);
		if (px_ws_assemble(&ws->asm_, &h, &opcode, &code, &why) < 0) {
			close_client(ws, code, why);
			return n;
		}
		{
			struct raw_src raw = {NULL, total, p + off};
			px_ws_unmask_copy((uint8_t *)c->env->ws_scratch, p + off + h.hdr_len, h.len, h.mask, 0);
			ws->bytes_in += total;
			off += total;
			if (police_text(ws, h.len, &raw) < 0) {
				span_flush(ws); /* (close_client() already dropped it with the backend) */
				return n; /* closing: the rest of the block is not read */
			}
		}
	}
	span_flush(ws);
	if (output_waiting(c) || ws->ps.nparked >= PX_MAX_PARKED)
		client_read_done(ws);
	return off;
}

/* The backend's answer for a merged batch: splice syncgate's refusals into its responses. */
/* The backend's answer for a merged batch: splice syncgate's refusals into its responses. */
static int
try_merge(struct px_ws *ws, const char *text, size_t len)
{
	cJSON *root, *seq, *status, *resp;
	struct merge *m = NULL;
	char seqtxt[40];
	int i, mi = -1;

	root = cJSON_ParseWithLength(text, len);
	if (!root || !cJSON_IsArray(root) || cJSON_GetArraySize(root) != 3)
		goto no;
	seq = cJSON_GetArrayItem(root, 0);
	status = cJSON_GetArrayItem(root, 1);
	if (!cJSON_IsNumber(seq) || !cJSON_IsNumber(status))
		goto no;
	/* the seq as the backend wrote it */
	{
		const char *s = text, *e;
		while (*s == '[' || *s == ' ')
			s++;
		e = s;
		while (e < text + len && *e != ',' && *e != ' ')
			e++;
		snprintf(seqtxt, sizeof seqtxt, "%.*s", (int)(e - s), s);
	}
	for (i = 0; i < ws->nmerges; i++)
		if (!strcmp(ws->merges[i]->seq, seqtxt)) {
			m = ws->merges[i];
			mi = i;
			break;
		}
	if (!m)
		goto no;
	ws->merges[mi] = ws->merges[--ws->nmerges];
	resp = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(root, 2), "responses");
	if (status->valueint != 200 || !cJSON_IsArray(resp) ||
	    cJSON_GetArraySize(resp) != m->nallowed) {
		merge_free(m);
		cJSON_Delete(root);
		return 0; /* relay the backend's answer as it is: it fails every action */
	}
	queue_batch_answer(ws, m, resp);
	merge_free(m);
	cJSON_Delete(root);
	return 1;
no:
	cJSON_Delete(root);
	return 0;
}
static void
server_frame_seen(struct px_ws *ws, const struct px_ws_header *h)
{
	if (h->opcode < PX_WS_CLOSE)
		ws->s_in_msg = !h->fin;
	if (h->opcode == PX_WS_CLOSE)
		ws->server_closed = 1;
	ws->frames_out++;
	px_count(&ws->c->env->ctr->ws_frames_out, 1);
}

/* After backend bytes were relayed: the output goes out; the relay ends once both close
 * frames have passed; reading pauses while the client's output is above the high watermark
 * (ws_client_writecb resumes it). */
static void
upstream_read_done(struct px_ws *ws)
{
	struct px_conn *c = ws->c;

	flush_both(c);
	if (ws->server_closed && ws->client_closed && ws->s_remaining == 0) {
		/* both close frames relayed: the TCP connections end once the last is written */
		px_conn_drop_upstream(c);
		px_conn_close_when_flushed(c);
		return;
	}
	if (px_io_pending(c->cio) > PX_HIGH_WATER)
		px_io_read(c->uio, 0);
}

static void
ws_upstream_readcb(struct px_io *io, void *arg)
{
	struct px_ws *ws = arg;
	struct px_conn *c = ws->c;
	struct evbuffer *in = px_io_input(io);
	struct evbuffer *out = px_io_output(c->cio);

	ws->last = time(NULL);
	ws->bytes_out += evbuffer_get_length(in) - ws->seen_out;
	for (;;) {
		size_t n = evbuffer_get_length(in);
		if (ws->s_remaining) {
			size_t take = n < ws->s_remaining ? n : (size_t)ws->s_remaining;
			if (take == 0)
				break;
			evbuffer_remove_buffer(in, out, take);
			ws->s_remaining -= take;
			if (ws->s_remaining == 0)
				flush_inject(ws);
			continue;
		}
		struct px_ws_header h;
		uint8_t hb[PX_WS_MAX_HEADER];
		const char *why;
		int code, r;
		if (n == 0)
			break;
		const uint8_t *hp = header_bytes(in, n, hb);
		r = px_ws_parse_header(hp, n < sizeof hb ? n : sizeof hb, 0, SERVER_FRAME_CAP, &h,
		                       &code, &why);
		if (r < 0) {
			close_client(ws, PX_WS_CLOSE_INTERNAL, "backend protocol error");
			return;
		}
		if (r == 0)
			break;
		server_frame_seen(ws, &h);
		if (ws->nmerges && h.opcode == PX_WS_TEXT && h.fin && h.len <= 65536) {
			if (n < h.hdr_len + h.len)
				break; /* a candidate answer to a merged batch: wait for all of it */
			if (hp != hb)
				memcpy(hb, hp, h.hdr_len); /* HP points into the chain drained next */
			evbuffer_drain(in, h.hdr_len);
			const char *text = (const char *)evbuffer_pullup(in, (ev_ssize_t)h.len);
			if (try_merge(ws, text, h.len)) {
				evbuffer_drain(in, h.len);
				continue;
			}
			evbuffer_add(out, hb, h.hdr_len);
			ws->s_remaining = h.len;
			continue;
		}
		if (n >= h.hdr_len + h.len) {
			evbuffer_remove_buffer(in, out, h.hdr_len + h.len); /* the whole frame at once */
			flush_inject(ws);
			continue;
		}
		evbuffer_remove_buffer(in, out, h.hdr_len);
		ws->s_remaining = h.len;
	}
	ws->seen_out = evbuffer_get_length(in);
	upstream_read_done(ws);
}

/*
 * The fast path for backend bytes (px_io_set_direct): frames relayed straight from the read
 * block with one send(2), their headers parsed to keep the frame boundaries (syncgate's
 * answers go in only there). It stops at a partial header or a bad one, and takes nothing
 * while a merged batch's answer may come (that needs whole frames: ws_upstream_readcb).
 */
static size_t
ws_upstream_direct(struct px_io *io, const uint8_t *p, size_t n, void *arg)
{
	struct px_ws *ws = arg;
	struct px_conn *c = ws->c;
	size_t off = 0, sent = 0;

	(void)io;
	ws->last = time(NULL);
	ws->seen_out = 0; /* the input is empty */
	if (ws->nmerges)
		return 0;
	while (off < n) {
		if (ws->s_remaining == 0) {
			struct px_ws_header h;
			const char *why;
			int code;
			if (px_ws_parse_header(p + off, n - off, 0, SERVER_FRAME_CAP, &h, &code, &why) <= 0)
				break;
			server_frame_seen(ws, &h);
			off += h.hdr_len;
			ws->s_remaining = h.len;
		}
		{
			size_t take = n - off < ws->s_remaining ? n - off : (size_t)ws->s_remaining;
			off += take;
			ws->s_remaining -= take;
		}
		if (ws->s_remaining == 0 && !ws->s_in_msg && ws->inject_len) {
			/* a message boundary with answers waiting: they go in here */
			px_io_write(c->cio, p + sent, off - sent);
			sent = off;
			flush_inject(ws);
		}
	}
	px_io_write(c->cio, p + sent, off - sent);
	ws->bytes_out += off;
	if (output_waiting(c) || ws->server_closed)
		upstream_read_done(ws);
	return off;
}

static void
ws_client_writecb(struct px_io *io, void *arg)
{
	struct px_ws *ws = arg;
	(void)io;
	if (ws->c->uio)
		px_io_read(ws->c->uio, 1);
	client_resume(ws);
}

static void
ws_upstream_writecb(struct px_io *io, void *arg)
{
	(void)io;
	client_resume(arg);
}

static void
ws_eventcb(struct px_io *io, short what, void *arg)
{
	struct px_ws *ws = arg;
	struct px_conn *c = ws->c;
	if (io == c->uio && !(what & PX_IO_ERROR) && !ws->server_closed) {
		close_client(ws, PX_WS_CLOSE_GOING_AWAY, "backend closed the connection");
		return;
	}
	px_conn_close(c);
}


/* Shutdown: a 1001 close frame to the client (when the backend is between messages: a close
 * frame inside one would corrupt it), the backend side closed; the connection closes once
 * the frame is written, so SDKs reconnect elsewhere at once instead of waiting out the
 * grace period. */
static void
ws_drain(struct px_conn *c, void *obj)
{
	struct px_ws *ws = obj;
	if (c->phase == PX_CONN_OPEN && !ws->s_remaining && !ws->s_in_msg)
		close_client(ws, PX_WS_CLOSE_GOING_AWAY, "syncgate is shutting down");
}

static const struct px_proto ws_proto = {"ws", ws_release, ws_drain};

void
px_ws_start(struct px_conn *c, const char *app, char *user)
{
	struct px_ws *ws = calloc(1, sizeof *ws);

	if (!ws) {
		free(user);
		px_conn_close(c);
		return;
	}
	ws->c = c;
	ws->user = user;
	px_police_stream_init(&ws->ps, c->env->police, &ws_transport, ws, c->id, c->peer);
	snprintf(ws->ps.app, sizeof ws->ps.app, "%s", app);
	ws->ps.user = user;
	ws->ps.user_len = strlen(user);
	px_conn_set_proto(c, &ws_proto, ws);
	px_count(&c->env->ctr->ws_opened, 1); /* ws_release() counts it closed */
	ws->raw = evbuffer_new();
	ws->msg = evbuffer_new();
	px_ws_assembler_init(&ws->asm_, c->cfg->limits.ws_message_bytes, c->cfg->limits.ws_fragments);
	ws->inject = evbuffer_new();
	ws->last = ws->opened = time(NULL);
	if (!ws->raw || !ws->msg || !ws->inject ||
	    px_evbuffer_track_length(ws->inject, &ws->inject_len) < 0) {
		px_conn_close(c);
		return;
	}
	px_io_setcb(c->cio, ws_client_readcb, ws_client_writecb, ws_eventcb, ws);
	px_io_setcb(c->uio, ws_upstream_readcb, ws_upstream_writecb, ws_eventcb, ws);
	px_io_set_direct(c->cio, ws_client_direct);
	px_io_set_direct(c->uio, ws_upstream_direct);
	px_io_set_timeout(c->cio, 0);
	px_io_set_timeout(c->uio, 0);
	/* a whole frame must fit in the input buffer to be checked */
	px_io_set_read_max(c->cio, c->cfg->limits.ws_message_bytes + 64);
	px_io_set_read_max(c->uio, PX_HIGH_WATER);
	px_conn_timer(c, c->cfg->limits.ws_idle_ms, ws_idle);
	px_io_read(c->cio, 1);
	px_io_read(c->uio, 1);
	px_log(PX_LOG_DEBUG, "ws_open", "peer", c->peer, "app", ws->ps.app, "user", user, NULL);
	/* bytes the client sent after its upgrade request, held until now */
	if (evbuffer_get_length(px_io_input(c->cio)))
		ws_client_readcb(c->cio, ws);
	if (c->phase == PX_CONN_OPEN && c->uio && evbuffer_get_length(px_io_input(c->uio)))
		ws_upstream_readcb(c->uio, ws);
}
