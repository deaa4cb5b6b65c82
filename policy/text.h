/*
 * policy/text.h - the byte-level text rules every parser in syncgate shares: hex digits and
 * UTF-8 (RFC 3629: no overlongs, no encoded surrogates, nothing above U+10FFFF). One copy,
 * so that the JSON scanner, the path decoder and the WebSocket layer cannot disagree.
 */
#ifndef SG_POLICY_TEXT_H
#define SG_POLICY_TEXT_H

#include <stddef.h>

/* The value of hex digit C, or -1. */
int pol_hexval(unsigned char c);

/* Length (1-4) of the valid UTF-8 sequence at P (N bytes available), or 0 if invalid. */
size_t pol_utf8_seq(const unsigned char *p, size_t n);

/* 1 if the LEN bytes at S are valid UTF-8. */
int pol_utf8_valid(const unsigned char *s, size_t len);

#endif
