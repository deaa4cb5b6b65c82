/*
 * policy/json.h - a strict, zero-allocation JSON scanner for realtime frames.
 *
 * Why not cJSON here: the backend reads frames with JavaScript's JSON.parse, and every place
 * where syncgate's reading differs from it is a bypass (protocol.md section 6). cJSON accepts
 * invalid UTF-8, lenient numbers, and finds the first of two duplicate keys where JSON.parse
 * keeps the last; and it allocates per node. This scanner accepts exactly RFC 8259 JSON text
 * with valid UTF-8, refuses duplicate keys (compared after unescaping, byte-exact), refuses
 * keys holding control characters or lone surrogates, and writes a flat token array into
 * scratch memory allocated once (jsmn's layout, with a skip index per token). The string
 * escaper that policy's text writers share lives here too, beside the rules it must satisfy.
 */
#ifndef SG_POLICY_JSON_H
#define SG_POLICY_JSON_H

#include <stddef.h>
#include <stdint.h>

enum pol_jtype { POL_J_OBJECT = 1, POL_J_ARRAY, POL_J_STRING, POL_J_NUMBER, POL_J_TRUE,
                 POL_J_FALSE, POL_J_NULL };

/* String token flags. */
#define POL_JF_ESCAPED 0x01  /* holds backslash escapes: compare with pol_json_str_eq() */
#define POL_JF_CTRL 0x02     /* an escape decodes to U+0000..U+001F */
#define POL_JF_LONE_SURR 0x04 /* a \uD800-\uDFFF escape without its pair */

struct pol_jtok {
	uint8_t type;
	uint8_t flags;
	uint32_t start, end; /* bytes of the value; for strings, inside the quotes */
	uint32_t size;       /* object: keys; array: elements */
	uint32_t next;       /* index of the first token after this value (and its children) */
};

struct pol_json;

/* Scratch for frames of at most MAX_TOKENS values nested at most MAX_DEPTH deep. NULL on ENOMEM. */
struct pol_json *pol_json_new(uint32_t max_tokens, uint32_t max_depth);
void pol_json_free(struct pol_json *j);

/*
 * Scans TEXT (LEN bytes, need not be NUL-terminated; nothing past LEN is read). Returns the
 * token count (token 0 is the top value), or -1 with *WHY set to a static reason. The tokens
 * stay valid until the next parse on J.
 */
int pol_json_parse(struct pol_json *j, const char *text, size_t len, const char **why);
const struct pol_jtok *pol_json_tokens(const struct pol_json *j);

/* 1 if string token T of TEXT decodes to exactly the LEN bytes S. */
int pol_json_str_eq(const char *text, const struct pol_jtok *t, const char *s, size_t len);

/*
 * Decodes string token T into OUT (OUTSZ bytes). Returns the decoded length, or -1 if it does
 * not fit or holds a lone surrogate. OUT is not NUL-terminated.
 */
long pol_json_str_decode(const char *text, const struct pol_jtok *t, char *out, size_t outsz);

/* Child lookup in object token OBJ by exact (decoded) key; returns the value's index or -1. */
int pol_json_obj_get(const char *text, const struct pol_jtok *toks, int obj, const char *key);

/*
 * Writes the N bytes at S as the inside of a JSON string (no quotes) into OUT (CAP bytes, not
 * NUL-terminated): '"' and '\' backslash-escaped, U+0000..U+001F and DEL as \u00XX, valid
 * UTF-8 copied as it is, and each byte that starts no valid UTF-8 sequence as \ufffd, so the
 * result is always a string this scanner accepts. Returns its length, or -1 if it does not
 * fit (OUT's contents are then unspecified); a CAP of 6 * N always suffices.
 */
long pol_json_escape(char *out, size_t cap, const char *s, size_t n);

#endif
