/*
 * policy/batch.c - the forwarded frame and the client's answer of a mixed participant batch
 * (contract in batch.h).
 */
#include "policy/batch.h"

#include <assert.h>
#include <stdio.h>
#include <string.h>

#include "policy/json.h"

/* An output buffer that fills up once and then takes nothing more. */
struct wbuf {
	char *p;
	size_t cap, len;
	int full;
};

static void
put(struct wbuf *w, const char *s, size_t n)
{
	if (w->full || n > w->cap - w->len) {
		w->full = 1;
		return;
	}
	memcpy(w->p + w->len, s, n);
	w->len += n;
}

#define PUT_LIT(w, lit) put(w, lit, sizeof(lit) - 1)

static void
put_int(struct wbuf *w, int v)
{
	char b[16];
	int n = snprintf(b, sizeof b, "%d", v);
	put(w, b, (size_t)n);
}

/* S as a JSON string, quotes included. */
static void
put_str(struct wbuf *w, const char *s)
{
	long n;

	PUT_LIT(w, "\"");
	if (w->full)
		return;
	n = pol_json_escape(w->p + w->len, w->cap - w->len, s, strlen(s));
	if (n < 0) {
		w->full = 1;
		return;
	}
	w->len += (size_t)n;
	PUT_LIT(w, "\"");
}

static long
wbuf_result(const struct wbuf *w)
{
	return w->full ? -1 : (long)w->len;
}

long
pol_batch_forward(const struct pol_classifier *k, const struct pol_call *call,
                  const unsigned char *allowed, char *out, size_t cap)
{
	const struct pol_jtok *t = pol_json_tokens(pol_classifier_json(k));
	struct wbuf w = {out, cap, 0, 0};
	uint32_t path;
	int i, first = 1;

	/* CALL is K's last classification: its seq is K's token 1, of the same text */
	assert(call->op == POL_OP_PART_BATCH && call->method == POL_M_POST);
	assert(t[0].type == POL_J_ARRAY && t[0].size == 5 && call->seq == call->text + t[1].start);
	path = t[t[1].next].next;
	assert(t[path].type == POL_J_STRING);

	PUT_LIT(&w, "[");
	put(&w, call->seq, call->seq_len);
	PUT_LIT(&w, ",\"POST\",");
	put(&w, call->text + t[path].start - 1, t[path].end - t[path].start + 2);
	PUT_LIT(&w, ",{\"actions\":[");
	for (i = 0; i < call->nactions; i++) {
		const struct pol_jtok *a = &t[call->actions[i].tok];
		if (!allowed[i])
			continue;
		assert(a->type == POL_J_OBJECT);
		if (!first)
			PUT_LIT(&w, ",");
		put(&w, call->text + a->start, a->end - a->start);
		first = 0;
	}
	PUT_LIT(&w, "]},{}]");
	return wbuf_result(&w);
}

long
pol_batch_answer(const char *seq, size_t seq_len, int n, const struct pol_batch_entry *e,
                 char *out, size_t cap)
{
	struct wbuf w = {out, cap, 0, 0};
	int i;

	assert(n >= 0);
	PUT_LIT(&w, "[");
	put(&w, seq, seq_len);
	PUT_LIT(&w, ",200,{\"responses\":[");
	for (i = 0; i < n && !w.full; i++) {
		if (i)
			PUT_LIT(&w, ",");
		if (e[i].raw) {
			put(&w, e[i].raw, e[i].raw_len);
			continue;
		}
		assert(e[i].error_code && e[i].reason);
		PUT_LIT(&w, "{\"status\":");
		put_int(&w, e[i].status);
		PUT_LIT(&w, ",\"errorCode\":");
		put_str(&w, e[i].error_code);
		PUT_LIT(&w, ",\"reasons\":[");
		put_str(&w, e[i].reason);
		PUT_LIT(&w, "]}");
	}
	PUT_LIT(&w, "]}]");
	return wbuf_result(&w);
}
