/*
 * policy/fields.h - locked fields (user_fields_locked, conversation_fields_locked,
 * participant_fields_locked): finding them in a call's JSON payload, and writing the payload
 * without them (on_locked = strip).
 *
 * Pure: the caller hands the text, its tokens (policy/json.h, from the strict scan that
 * classified it) and the output buffer; nothing is allocated. A name is a key of the object
 * ("role") or keys joined by "." ("custom.plan": the key "plan" of the object under "custom").
 * Keys compare after unescaping, byte-exact, as JSON.parse reads them (the scan refused
 * duplicate keys, so a found key is the one the backend would read).
 */
#ifndef SG_POLICY_FIELDS_H
#define SG_POLICY_FIELDS_H

#include <stddef.h>

#include "policy/config.h"
#include "policy/json.h"

/* 1 if object token OBJ of TEXT holds one of L's fields (*NAME: the first found), else 0. */
int pol_fields_find(const struct pol_locked *l, const char *text, const struct pol_jtok *t, int obj,
                    const char **name);

/* Appends to OUT (a comma-separated list, NUL-terminated, OUTSZ bytes) the names of L's
 * fields present in object OBJ (those that do not fit are left out). */
void pol_fields_present(const struct pol_locked *l, const char *text, const struct pol_jtok *t,
                        int obj, char *out, size_t outsz);

#define POL_STRIP_MAX 64 /* fields removed from one message */

/*
 * Writes TEXT (the whole message, its root token 0) to OUT (CAP bytes) without the members
 * that the fields of LISTS[0..NLISTS) name in each object token OBJS[0..NOBJ): every other
 * byte as written; an
 * object that loses a member is written with its remaining members, as written and in their
 * order, joined by ","; the result is valid JSON and never longer than TEXT. WHAT (WHATSZ
 * bytes, NUL-terminated) gets the names removed, comma-separated, for the decision log.
 * Returns the length written (the whole TEXT when nothing was found), or -1 when OUT is too
 * small or more than POL_STRIP_MAX fields were found.
 */
long pol_fields_strip(const struct pol_locked *const *lists, int nlists, const char *text,
                      const struct pol_jtok *t, const int *objs, int nobj, char *out, size_t cap,
                      char *what, size_t whatsz);

#endif
