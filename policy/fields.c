/*
 * policy/fields.c - locked fields (contract in fields.h).
 */
#include "policy/fields.h"

#include <stdio.h>
#include <string.h>

/* The value token of dotted NAME under object OBJ, or -1; *KEY: its key token. */
static int
lookup(const char *text, const struct pol_jtok *t, int obj, const char *name, int *key)
{
	char seg[POL_FIELD_MAX];
	const char *p = name;
	int cur = obj, v = -1;

	while (*p) {
		const char *dot = strchr(p, '.');
		size_t n = dot ? (size_t)(dot - p) : strlen(p);
		if (t[cur].type != POL_J_OBJECT || n >= sizeof seg)
			return -1;
		memcpy(seg, p, n);
		seg[n] = 0;
		v = pol_json_obj_get(text, t, cur, seg);
		if (v < 0)
			return -1;
		*key = v - 1; /* a value's key is the token before it */
		cur = v;
		p = dot ? dot + 1 : p + n;
	}
	return v;
}

int
pol_fields_find(const struct pol_locked *l, const char *text, const struct pol_jtok *t, int obj,
                const char **name)
{
	int i, key;

	for (i = 0; i < l->n; i++)
		if (lookup(text, t, obj, l->name[i], &key) >= 0) {
			*name = l->name[i];
			return 1;
		}
	return 0;
}

void
pol_fields_present(const struct pol_locked *l, const char *text, const struct pol_jtok *t,
                   int obj, char *out, size_t outsz)
{
	size_t wl = strlen(out);
	int i, key;

	for (i = 0; i < l->n; i++)
		if (lookup(text, t, obj, l->name[i], &key) >= 0 && wl + strlen(l->name[i]) + 2 < outsz)
			wl += (size_t)snprintf(out + wl, outsz - wl, "%s%s", wl ? "," : "", l->name[i]);
}

/* ---- the rewrite ---- */

struct strip {
	const char *text;
	const struct pol_jtok *t;
	int removed[POL_STRIP_MAX];   /* value tokens of the members removed */
	int parent[POL_STRIP_MAX];    /* the object each was removed from */
	int n;
	char *out;
	size_t cap, len;
	int full;
};

static void
put(struct strip *s, const char *p, size_t n)
{
	if (s->full || n > s->cap - s->len) {
		s->full = 1;
		return;
	}
	memcpy(s->out + s->len, p, n);
	s->len += n;
}

/* The bytes of value token V: a string's quotes included. */
static size_t
vstart(const struct strip *s, int v)
{
	return s->t[v].type == POL_J_STRING ? s->t[v].start - 1 : s->t[v].start;
}

static size_t
vend(const struct strip *s, int v)
{
	return s->t[v].type == POL_J_STRING ? s->t[v].end + 1 : s->t[v].end;
}

static int
removed(const struct strip *s, int v)
{
	for (int i = 0; i < s->n; i++)
		if (s->removed[i] == v)
			return 1;
	return 0;
}

/* 1 if container V loses a member itself; 2 if one of its descendants does; else 0. */
static int
touched(const struct strip *s, int v)
{
	int r = 0;
	for (int i = 0; i < s->n; i++) {
		if (s->parent[i] == v)
			return 1;
		if (s->parent[i] > v && (uint32_t)s->parent[i] < s->t[v].next)
			r = 2;
	}
	return r;
}

static void
emit(struct strip *s, int v)
{
	const struct pol_jtok *t = s->t;
	int how = (t[v].type == POL_J_OBJECT || t[v].type == POL_J_ARRAY) ? touched(s, v) : 0;
	uint32_t i, c;

	if (!how) {
		put(s, s->text + vstart(s, v), vend(s, v) - vstart(s, v));
		return;
	}
	if (how == 1) {
		/* this object loses members: the others, as written, joined by "," */
		int first = 1;
		put(s, "{", 1);
		for (i = 0, c = (uint32_t)v + 1; i < t[v].size; i++, c = t[c + 1].next) {
			if (removed(s, (int)c + 1))
				continue;
			if (!first)
				put(s, ",", 1);
			put(s, s->text + t[c].start - 1, vstart(s, (int)c + 1) - (t[c].start - 1));
			emit(s, (int)c + 1);
			first = 0;
		}
		put(s, "}", 1);
		return;
	}
	{
		/* a descendant does: every byte as written around the children */
		size_t pos = vstart(s, v);
		int obj = t[v].type == POL_J_OBJECT;
		for (i = 0, c = (uint32_t)v + 1; i < t[v].size; i++) {
			int child = obj ? (int)c + 1 : (int)c;
			put(s, s->text + pos, vstart(s, child) - pos);
			emit(s, child);
			pos = vend(s, child);
			c = t[child].next;
		}
		put(s, s->text + pos, vend(s, v) - pos);
	}
}

long
pol_fields_strip(const struct pol_locked *const *lists, int nlists, const char *text,
                 const struct pol_jtok *t, const int *objs, int nobj, char *out, size_t cap,
                 char *what, size_t whatsz)
{
	struct strip s;
	size_t wl = 0;
	int i, j, key, li;

	memset(&s, 0, sizeof s);
	s.text = text;
	s.t = t;
	s.out = out;
	s.cap = cap;
	if (whatsz)
		what[0] = 0;
	for (li = 0; li < nlists; li++)
	for (i = 0; i < nobj; i++) {
		const struct pol_locked *l = lists[li];
		for (j = 0; j < l->n; j++) {
			int v = lookup(text, t, objs[i], l->name[j], &key), parent = objs[i];
			if (v < 0)
				continue;
			{
				/* the object that holds it: the last container on its dotted path */
				const char *dot = strrchr(l->name[j], '.');
				if (dot) {
					char up[POL_FIELD_MAX];
					int k2;
					memcpy(up, l->name[j], (size_t)(dot - l->name[j]));
					up[dot - l->name[j]] = 0;
					parent = lookup(text, t, objs[i], up, &k2);
				}
			}
			if (removed(&s, v))
				continue;
			if (s.n == POL_STRIP_MAX)
				return -1;
			s.removed[s.n] = v;
			s.parent[s.n] = parent;
			s.n++;
			if (whatsz && wl + strlen(l->name[j]) + 2 < whatsz) {
				wl += (size_t)snprintf(what + wl, whatsz - wl, "%s%s", wl ? "," : "", l->name[j]);
			}
		}
	}
	/* a member inside a removed one goes with it */
	for (i = 0; i < s.n; i++)
		for (j = 0; j < s.n; j++)
			if (i != j && s.removed[j] > s.removed[i] && (uint32_t)s.removed[j] < t[s.removed[i]].next) {
				s.removed[j] = s.removed[--s.n];
				s.parent[j] = s.parent[s.n];
				j--;
			}
	emit(&s, 0);
	return s.full ? -1 : (long)s.len;
}
