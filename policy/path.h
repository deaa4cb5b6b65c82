/*
 * policy/path.h - split and decode a path the way the backend will, or refuse it.
 *
 * A path is "/" + segments joined by "/", each segment percent-encoded (protocol.md 1, 2).
 * Each segment is decoded exactly once. Refused (the caller answers 400 INVALID_REQUEST):
 * malformed or truncated escapes; empty segments ("//", a trailing "/"); "." and ".."
 * whether written raw or escaped; a decoded NUL, control byte, "/" or "\" (a backend that
 * decodes before splitting would see another resource); decoded bytes that are not UTF-8
 * (decodeURIComponent throws on them); raw bytes outside the allowed set.
 */
#ifndef SG_POLICY_PATH_H
#define SG_POLICY_PATH_H

#include <stddef.h>

#define POL_PATH_MAX_SEGS 16
#define POL_PATH_MAX_BYTES 4096

enum pol_path_charset {
	POL_PATH_URI_COMPONENT, /* realtime frames: what encodeURIComponent leaves raw */
	POL_PATH_PCHAR,         /* HTTP targets: RFC 3986 pchar */
};

struct pol_seg {
	const char *p; /* into the pol_path buffer; not NUL-terminated */
	size_t len;
};

struct pol_path {
	struct pol_seg seg[POL_PATH_MAX_SEGS];
	int nseg;
	char buf[POL_PATH_MAX_BYTES];
};

/*
 * Decodes PATH (LEN bytes, must start with "/", no query) into OUT. Returns 0, or -1 with
 * *WHY set to a static reason. "/" alone is zero segments.
 */
int pol_path_parse(const char *path, size_t len, enum pol_path_charset cs, struct pol_path *out,
                   const char **why);

/* 1 if segment I of P equals the NUL-terminated S. */
int pol_path_is(const struct pol_path *p, int i, const char *s);

/*
 * Canonical text of P ("/" + encodeURIComponent(seg) joined by "/") into OUT (OUTSZ bytes,
 * NUL-terminated). Returns its length, or -1 if it does not fit. Parsing the result gives P.
 */
long pol_path_canon(const struct pol_path *p, char *out, size_t outsz);
/* The same for segments FIRST.. of P ("/" when there are none). */
long pol_path_canon_from(const struct pol_path *p, int first, char *out, size_t outsz);

/* encodeURIComponent of LEN bytes into OUT; returns length or -1 if OUTSZ is too small. */
long pol_uri_encode(const char *s, size_t len, char *out, size_t outsz);

#endif
