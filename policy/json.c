/*
 * policy/json.c - strict JSON scanner (contract in json.h). RFC 8259 grammar; UTF-8 per
 * RFC 3629 (no overlongs, no encoded surrogates, nothing above U+10FFFF).
 */
#include "policy/json.h"

#include "policy/text.h"

#include <stdlib.h>
#include <string.h>

struct pol_json {
	uint32_t max_tokens, max_depth;
	struct pol_jtok *toks;
	uint32_t *stack;
	uint32_t *hash;      /* duplicate-key table, 2 * max_tokens slots */
	uint32_t hash_slots;
};

struct pol_json *
pol_json_new(uint32_t max_tokens, uint32_t max_depth)
{
	struct pol_json *j = calloc(1, sizeof *j);
	uint32_t slots = 16;

	if (!j)
		return NULL;
	while (slots < max_tokens * 2)
		slots <<= 1;
	j->max_tokens = max_tokens;
	j->max_depth = max_depth;
	j->toks = malloc(sizeof *j->toks * max_tokens);
	j->stack = malloc(sizeof *j->stack * (max_depth + 1));
	j->hash = malloc(sizeof *j->hash * slots);
	j->hash_slots = slots;
	if (!j->toks || !j->stack || !j->hash) {
		pol_json_free(j);
		return NULL;
	}
	return j;
}

void
pol_json_free(struct pol_json *j)
{
	if (!j)
		return;
	free(j->toks);
	free(j->stack);
	free(j->hash);
	free(j);
}

const struct pol_jtok *
pol_json_tokens(const struct pol_json *j)
{
	return j->toks;
}

static int
hex4(const unsigned char *p)
{
	int a = pol_hexval(p[0]), b = pol_hexval(p[1]), c = pol_hexval(p[2]), d = pol_hexval(p[3]);
	if ((a | b | c | d) < 0)
		return -1;
	return a << 12 | b << 8 | c << 4 | d;
}

/* 1 for the bytes a string may hold as they are: printable ASCII but the quote and backslash. */
static const uint8_t plain_char[256] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

#define ONES 0x0101010101010101ull

/* Index of the first byte at or after I that a string may not hold as it is (a quote, a
 * backslash, a control byte or non-ASCII), or LEN. */
static inline size_t
plain_run(const unsigned char *s, size_t len, size_t i)
{
	/* 8 bytes per step while none is special (SWAR: a byte's high bit set by the subtraction
	 * marks it), then byte by byte */
	while (i + 8 <= len) {
		uint64_t w, ctl, quote, bslash, special;
		memcpy(&w, s + i, 8);
		ctl = w - ONES * 0x20;
		quote = (w ^ ONES * '"') - ONES;
		bslash = (w ^ ONES * '\\') - ONES;
		/* the first special byte always shows, and nothing below it does (no borrow starts
		 * at a plain byte); bytes above it may show falsely */
		special = (((ctl | quote | bslash) & ~w) | w) & ONES * 0x80;
		if (special) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			i += (size_t)__builtin_ctzll(special) >> 3; /* straight to it */
#endif
			break;
		}
		i += 8;
	}
	while (i < len && plain_char[s[i]])
		i++;
	return i;
}

/*
 * The rest of a string whose first special byte is at I (not its closing quote): escapes,
 * UTF-8 and errors. Out of line: the strings of a frame are nearly always plain ASCII, and
 * this code would otherwise sit between the lines every frame runs.
 */
static __attribute__((noinline)) int
scan_string_rest(const unsigned char *s, size_t len, size_t i, size_t *pos, struct pol_jtok *t,
                 const char **why)
{
	uint8_t flags = 0;

	for (;;) {
		i = plain_run(s, len, i);
		if (i >= len) {
			*why = "unterminated string";
			return -1;
		}
		unsigned char c = s[i];
		if (c == '"')
			break;
		if (c < 0x20) {
			*why = "raw control character in string";
			return -1;
		}
		if (c >= 0x80) {
			size_t n = pol_utf8_seq(s + i, len - i);
			if (!n) {
				*why = "invalid UTF-8";
				return -1;
			}
			i += n;
			continue;
		}
		/* backslash */
		flags |= POL_JF_ESCAPED;
		if (i + 1 >= len) {
			*why = "unterminated escape";
			return -1;
		}
		switch (s[i + 1]) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
			if (s[i + 1] != '"' && s[i + 1] != '\\' && s[i + 1] != '/')
				flags |= POL_JF_CTRL;
			i += 2;
			continue;
		case 'u': {
			int u;
			if (i + 6 > len || (u = hex4(s + i + 2)) < 0) {
				*why = "bad \\u escape";
				return -1;
			}
			i += 6;
			if (u < 0x20)
				flags |= POL_JF_CTRL;
			if (u >= 0xd800 && u <= 0xdbff) {
				int lo;
				if (i + 6 <= len && s[i] == '\\' && s[i + 1] == 'u' &&
				    (lo = hex4(s + i + 2)) >= 0xdc00 && lo <= 0xdfff)
					i += 6;
				else
					flags |= POL_JF_LONE_SURR;
			} else if (u >= 0xdc00 && u <= 0xdfff) {
				flags |= POL_JF_LONE_SURR;
			}
			continue;
		}
		default:
			*why = "bad escape";
			return -1;
		}
	}
	t->end = (uint32_t)i;
	t->flags = flags;
	*pos = i + 1;
	return 0;
}

/* Scans a string whose opening quote is at *POS into T; leaves *POS after the closing quote. */
static inline int
scan_string(const unsigned char *s, size_t len, size_t *pos, struct pol_jtok *t, const char **why)
{
	size_t i = plain_run(s, len, *pos + 1);

	t->type = POL_J_STRING;
	t->start = (uint32_t)(*pos + 1);
	t->size = 0;
	if (__builtin_expect(i < len && s[i] == '"', 1)) { /* plain ASCII: the usual string */
		t->end = (uint32_t)i;
		t->flags = 0;
		*pos = i + 1;
		return 0;
	}
	return scan_string_rest(s, len, i, pos, t, why);
}

static inline int
scan_number(const unsigned char *s, size_t len, size_t *pos, struct pol_jtok *t, const char **why)
{
	size_t i = *pos;

	t->type = POL_J_NUMBER;
	t->start = (uint32_t)i;
	if (i < len && s[i] == '-')
		i++;
	if (i < len && s[i] == '0') {
		i++;
	} else if (i < len && s[i] >= '1' && s[i] <= '9') {
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
	} else {
		goto bad;
	}
	if (i < len && s[i] == '.') {
		i++;
		if (i >= len || s[i] < '0' || s[i] > '9')
			goto bad;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '+' || s[i] == '-'))
			i++;
		if (i >= len || s[i] < '0' || s[i] > '9')
			goto bad;
		while (i < len && s[i] >= '0' && s[i] <= '9')
			i++;
	}
	t->end = (uint32_t)i;
	*pos = i;
	return 0;
bad:
	*why = "bad number";
	return -1;
}

/* Decoding iterator over a string token: yields the UTF-8 bytes JSON.parse would produce. */
struct siter {
	const unsigned char *p, *end;
	unsigned char pend[4];
	int npend, ipend;
};

static void
siter_init(struct siter *it, const char *text, const struct pol_jtok *t)
{
	it->p = (const unsigned char *)text + t->start;
	it->end = (const unsigned char *)text + t->end;
	it->npend = it->ipend = 0;
}

static int
put_utf8(unsigned char *b, unsigned cp)
{
	if (cp < 0x80) {
		b[0] = (unsigned char)cp;
		return 1;
	}
	if (cp < 0x800) {
		b[0] = (unsigned char)(0xc0 | cp >> 6);
		b[1] = (unsigned char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		b[0] = (unsigned char)(0xe0 | cp >> 12);
		b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
		b[2] = (unsigned char)(0x80 | (cp & 0x3f));
		return 3;
	}
	b[0] = (unsigned char)(0xf0 | cp >> 18);
	b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
	b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
	b[3] = (unsigned char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Next decoded byte, or -1 at the end. A lone surrogate decodes to its 3-byte WTF-8 form
 * (only ever used for comparison; callers that need text refuse POL_JF_LONE_SURR). */
static int
siter_next(struct siter *it)
{
	if (it->ipend < it->npend)
		return it->pend[it->ipend++];
	if (it->p >= it->end)
		return -1;
	if (*it->p != '\\')
		return *it->p++;
	unsigned char e = it->p[1];
	it->p += 2;
	switch (e) {
	case 'b': return '\b';
	case 'f': return '\f';
	case 'n': return '\n';
	case 'r': return '\r';
	case 't': return '\t';
	case 'u': {
		unsigned cp = (unsigned)hex4(it->p);
		it->p += 4;
		if (cp >= 0xd800 && cp <= 0xdbff && it->p + 6 <= it->end && it->p[0] == '\\' &&
		    it->p[1] == 'u') {
			int lo = hex4(it->p + 2);
			if (lo >= 0xdc00 && lo <= 0xdfff) {
				cp = 0x10000 + ((cp - 0xd800) << 10) + ((unsigned)lo - 0xdc00);
				it->p += 6;
			}
		}
		it->npend = put_utf8(it->pend, cp);
		it->ipend = 1;
		return it->pend[0];
	}
	default: return e; /* '"', '\\', '/' */
	}
}

int
pol_json_str_eq(const char *text, const struct pol_jtok *t, const char *s, size_t len)
{
	struct siter it;
	size_t i;
	int c;

	if (t->type != POL_J_STRING)
		return 0;
	if (!(t->flags & POL_JF_ESCAPED))
		return t->end - t->start == len && !memcmp(text + t->start, s, len);
	siter_init(&it, text, t);
	for (i = 0; (c = siter_next(&it)) >= 0; i++)
		if (i >= len || (unsigned char)s[i] != c)
			return 0;
	return i == len;
}

long
pol_json_str_decode(const char *text, const struct pol_jtok *t, char *out, size_t outsz)
{
	struct siter it;
	size_t i = 0;
	int c;

	if (t->type != POL_J_STRING || (t->flags & POL_JF_LONE_SURR))
		return -1;
	if (!(t->flags & POL_JF_ESCAPED)) {
		size_t n = t->end - t->start;
		if (n > outsz)
			return -1;
		memcpy(out, text + t->start, n);
		return (long)n;
	}
	siter_init(&it, text, t);
	while ((c = siter_next(&it)) >= 0) {
		if (i >= outsz)
			return -1;
		out[i++] = (char)c;
	}
	return (long)i;
}

static int
str_tok_eq(const char *text, const struct pol_jtok *a, const struct pol_jtok *b)
{
	struct siter ia, ib;
	int ca, cb;

	if (!((a->flags | b->flags) & POL_JF_ESCAPED))
		return a->end - a->start == b->end - b->start &&
		       !memcmp(text + a->start, text + b->start, a->end - a->start);
	siter_init(&ia, text, a);
	siter_init(&ib, text, b);
	do {
		ca = siter_next(&ia);
		cb = siter_next(&ib);
		if (ca != cb)
			return 0;
	} while (ca >= 0);
	return 1;
}

static uint32_t
str_tok_hash(const char *text, const struct pol_jtok *t)
{
	struct siter it;
	uint32_t h = 2166136261u;
	int c;

	siter_init(&it, text, t);
	while ((c = siter_next(&it)) >= 0)
		h = (h ^ (uint32_t)c) * 16777619u;
	return h;
}

/* Refuses duplicate keys in object OBJ: pairwise for small objects, a hash table otherwise. */
static int
check_dups(struct pol_json *j, const char *text, uint32_t obj)
{
	const struct pol_jtok *t = j->toks;
	uint32_t n = t[obj].size, k, m, mask, slots;

	if (n < 2)
		return 0;
	if (n <= 8) {
		uint32_t keys[8], nk = 0;
		for (k = obj + 1; nk < n; k = t[k + 1].next)
			keys[nk++] = k;
		for (k = 0; k < n; k++)
			for (m = k + 1; m < n; m++)
				if (str_tok_eq(text, &t[keys[k]], &t[keys[m]]))
					return -1;
		return 0;
	}
	for (slots = 16; slots < n * 2; slots <<= 1)
		;
	mask = slots - 1;
	memset(j->hash, 0xff, slots * sizeof *j->hash);
	for (k = obj + 1, m = 0; m < n; m++, k = t[k + 1].next) {
		uint32_t h = str_tok_hash(text, &t[k]) & mask;
		while (j->hash[h] != UINT32_MAX) {
			if (str_tok_eq(text, &t[j->hash[h]], &t[k]))
				return -1;
			h = (h + 1) & mask;
		}
		j->hash[h] = k;
	}
	return 0;
}

/* Whitespace (RFC 8259 §2) from I on, out of line: compact frames have none between tokens. */
static __attribute__((noinline)) size_t
skip_ws_slow(const unsigned char *s, size_t len, size_t i)
{
	while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r'))
		i++;
	return i;
}

static inline size_t
skip_ws(const unsigned char *s, size_t len, size_t i)
{
	if (__builtin_expect(i < len && s[i] > ' ', 1))
		return i;
	return skip_ws_slow(s, len, i);
}

#define FAIL(msg)              \
	do {                   \
		*why = (msg);  \
		return -1;     \
	} while (0)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * One pass, three places to be: VALUE (a value starts at POS), KEY (an object key starts at
 * POS), AFTER (a value just ended: a comma, the container's end, or the end of the text).
 * The innermost open container is kept in locals (CUR, IN_OBJ, and N, its keys or elements so
 * far, counted where each begins: at a key, at "[" or at an array's comma) and N is saved in
 * the container's own token while a child is open: this runs for every realtime
 * frame, and touching the token array once per value rather than twice is measurable. Error
 * branches are marked unlikely so that the compiler lays the path of a valid frame out in one
 * run of code.
 */
int
pol_json_parse(struct pol_json *j, const char *text, size_t len, const char **why)
{
	const unsigned char *s = (const unsigned char *)text;
	struct pol_jtok *toks = j->toks, *t;
	const uint32_t max_tokens = j->max_tokens;
	size_t pos;
	uint32_t ntok = 0, depth = 0, cur = 0, n = 0, i;
	int multi_key = 0, in_obj = 0;

	if (UNLIKELY(len >= UINT32_MAX))
		FAIL("frame too large");
	pos = skip_ws(s, len, 0);
value:
	if (UNLIKELY(pos >= len))
		FAIL("unexpected end");
	if (UNLIKELY(ntok >= max_tokens))
		FAIL("too many values");
	t = &toks[ntok];
	switch (s[pos]) {
	case '"':
		if (UNLIKELY(scan_string(s, len, &pos, t, why)))
			return -1;
		break;
	case '{':
	case '[':
		if (UNLIKELY(depth >= j->max_depth))
			FAIL("nested too deep");
		if (depth)
			toks[cur].size = n; /* the parent's count, until its child closes */
		in_obj = s[pos] == '{';
		t->type = in_obj ? POL_J_OBJECT : POL_J_ARRAY;
		t->flags = 0;
		t->start = (uint32_t)pos;
		j->stack[depth++] = cur = ntok++;
		n = 0;
		pos = skip_ws(s, len, pos + 1);
		if (pos < len && s[pos] == (in_obj ? '}' : ']'))
			goto close;
		if (in_obj)
			goto key;
		n = 1;
		goto value;
	case 't':
	case 'f':
	case 'n': {
		const char *lit = s[pos] == 't' ? "true" : s[pos] == 'f' ? "false" : "null";
		size_t ll = s[pos] == 'f' ? 5 : 4;
		if (UNLIKELY(len - pos < ll || memcmp(s + pos, lit, ll)))
			FAIL("bad literal");
		t->type = s[pos] == 't' ? POL_J_TRUE : s[pos] == 'f' ? POL_J_FALSE : POL_J_NULL;
		t->flags = 0;
		t->size = 0;
		t->start = (uint32_t)pos;
		pos += ll;
		t->end = (uint32_t)pos;
		break;
	}
	default:
		if (UNLIKELY(scan_number(s, len, &pos, t, why)))
			return -1;
		t->flags = 0;
		t->size = 0;
		break;
	}
	t->next = ++ntok;
after:
	if (UNLIKELY(depth == 0))
		goto done;
	pos = skip_ws(s, len, pos);
	if (UNLIKELY(pos >= len))
		FAIL("unexpected end");
	if (s[pos] == ',') {
		pos = skip_ws(s, len, pos + 1);
		if (in_obj)
			goto key;
		n++;
		goto value;
	}
	if (UNLIKELY(s[pos] != (in_obj ? '}' : ']')))
		FAIL(in_obj ? "expected , or }" : "expected , or ]");
close: /* S[POS] closes CUR, which holds N keys or elements */
	pos++;
	toks[cur].end = (uint32_t)pos;
	toks[cur].next = ntok;
	toks[cur].size = n;
	if (in_obj && n >= 2)
		multi_key = 1; /* some object has two keys or more: check for duplicates */
	if (--depth) {
		cur = j->stack[depth - 1];
		n = toks[cur].size;
		in_obj = toks[cur].type == POL_J_OBJECT;
	}
	goto after;
key:
	if (UNLIKELY(pos >= len))
		FAIL("unexpected end");
	if (UNLIKELY(ntok >= max_tokens))
		FAIL("too many values");
	t = &toks[ntok];
	n++;
	if (UNLIKELY(s[pos] != '"'))
		FAIL("expected a key");
	if (UNLIKELY(scan_string(s, len, &pos, t, why)))
		return -1;
	if (UNLIKELY(t->flags & (POL_JF_CTRL | POL_JF_LONE_SURR)))
		FAIL("control character or lone surrogate in a key");
	t->next = ++ntok;
	pos = skip_ws(s, len, pos);
	if (UNLIKELY(pos >= len || s[pos] != ':'))
		FAIL("expected :");
	pos = skip_ws(s, len, pos + 1);
	goto value;
done:
	pos = skip_ws(s, len, pos);
	if (UNLIKELY(pos != len))
		FAIL("trailing data after the value");
	for (i = 0; UNLIKELY(multi_key) && i < ntok; i++)
		if (toks[i].type == POL_J_OBJECT && check_dups(j, text, i))
			FAIL("duplicate key");
	return (int)ntok;
}

#undef FAIL
#undef UNLIKELY

int
pol_json_obj_get(const char *text, const struct pol_jtok *toks, int obj, const char *key)
{
	uint32_t n = toks[obj].size, m, k;
	size_t kl = strlen(key);

	if (toks[obj].type != POL_J_OBJECT)
		return -1;
	for (k = (uint32_t)obj + 1, m = 0; m < n; m++, k = toks[k + 1].next)
		if (pol_json_str_eq(text, &toks[k], key, kl))
			return (int)k + 1;
	return -1;
}

long
pol_json_escape(char *out, size_t cap, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t i = 0, o = 0;

	while (i < n) {
		unsigned char c = u[i];
		size_t k;

		if (c == '"' || c == '\\') {
			if (cap - o < 2)
				return -1;
			out[o++] = '\\';
			out[o++] = (char)c;
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			if (cap - o < 6)
				return -1;
			memcpy(out + o, "\\u00", 4);
			out[o + 4] = hex[c >> 4];
			out[o + 5] = hex[c & 15];
			o += 6;
			i++;
		} else if ((k = pol_utf8_seq(u + i, n - i)) == 0) {
			if (cap - o < 6)
				return -1;
			memcpy(out + o, "\\ufffd", 6); /* what a UTF-8 decoder shows for the byte */
			o += 6;
			i++;
		} else {
			if (cap - o < k)
				return -1;
			memcpy(out + o, u + i, k);
			o += k;
			i += k;
		}
	}
	return (long)o;
}
