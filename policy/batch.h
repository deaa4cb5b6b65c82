/*
 * policy/batch.h - the text of a participant batch whose actions got different verdicts
 * (protocol.md 7.2): the frame that carries the allowed actions only to the backend, and the
 * one answer the client gets, with a response per action in the client's order.
 *
 * Pure writers: no allocation, no I/O, nothing kept. The caller owns every buffer; on -1
 * (the output does not fit) OUT's contents are unspecified.
 */
#ifndef SG_POLICY_BATCH_H
#define SG_POLICY_BATCH_H

#include <stddef.h>

#include "policy/call.h"

/*
 * Writes to OUT (CAP bytes, not NUL-terminated) the frame
 *     [seq,"POST",path,{"actions":[a, ...]},{}]
 * where seq is CALL's seq and path its path string token, both exactly as the client wrote
 * them (quotes and escapes included), and the actions are the action objects of CALL, as
 * written, for which ALLOWED[i] != 0, in the client's order. ALLOWED holds call->nactions
 * flags; none set gives "actions":[] (valid JSON, but not a batch syncgate would accept).
 *
 * CALL must be the POL_OP_PART_BATCH call K classified last, with its text still alive: the
 * action and path bytes are read through K's tokens. Returns the output's length, or -1 if
 * CAP is too small. The output is never longer than the classified frame (the client wrote
 * every fixed byte of it, "actions" at least as long, a comma between actions and a headers
 * object of at least "{}"), so a CAP of the frame's length always suffices.
 */
long pol_batch_forward(const struct pol_classifier *k, const struct pol_call *call,
                       const unsigned char *allowed, char *out, size_t cap);

/*
 * One response of a batch answer: RAW (RAW_LEN bytes) copied verbatim when not NULL (the
 * backend's response object for a forwarded action; the caller vouches it is one JSON
 * value), otherwise syncgate's refusal {"status":STATUS,"errorCode":ERROR_CODE,
 * "reasons":[REASON]} with both strings escaped by pol_json_escape (ERROR_CODE and REASON
 * are then NUL-terminated and not NULL).
 */
struct pol_batch_entry {
	int status;
	const char *error_code;
	const char *reason;
	const char *raw;
	size_t raw_len;
};

/*
 * Writes to OUT (CAP bytes, not NUL-terminated) the client's answer
 *     [seq,200,{"responses":[e[0], ..., e[N-1]]}]
 * with SEQ (SEQ_LEN bytes, a JSON number as written) and the N >= 0 entries E in order.
 * Returns the output's length, or -1 if CAP is too small. A CAP of
 *     32 + SEQ_LEN + the sum over E of (raw_len + 1), or 64 + 6 * (strlen(error_code) +
 *     strlen(reason)) for a refusal,
 * always suffices.
 */
long pol_batch_answer(const char *seq, size_t seq_len, int n, const struct pol_batch_entry *e,
                      char *out, size_t cap);

#endif
