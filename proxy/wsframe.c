/*
 * proxy/wsframe.c - RFC 6455 frame codec (contract in wsframe.h).
 */
#include "proxy/wsframe.h"

#include "policy/text.h"

#include <openssl/evp.h>
#include <string.h>

int
px_ws_parse_header(const uint8_t *buf, size_t len, int from_client, uint64_t max_payload,
                   struct px_ws_header *h, int *code, const char **why)
{
	size_t need = 2;
	uint64_t n;

	if (len < 2)
		return 0;
	h->fin = buf[0] >> 7;
	h->opcode = buf[0] & 0x0f;
	h->masked = buf[1] >> 7;
	n = buf[1] & 0x7f;
	*code = PX_WS_CLOSE_PROTOCOL;
	if (buf[0] & 0x70) {
		*why = "RSV bits set without a negotiated extension";
		return -1;
	}
	if ((h->opcode > PX_WS_BINARY && h->opcode < PX_WS_CLOSE) || h->opcode > PX_WS_PONG) {
		*why = "reserved opcode";
		return -1;
	}
	if (h->masked != from_client) {
		*why = from_client ? "client frame not masked" : "server frame masked";
		return -1;
	}
	if (h->opcode >= PX_WS_CLOSE && (!h->fin || n > PX_WS_MAX_CONTROL)) {
		*why = "fragmented or oversized control frame";
		return -1;
	}
	if (n == 126)
		need += 2;
	else if (n == 127)
		need += 8;
	if (h->masked)
		need += 4;
	if (len < need)
		return 0;
	if (n == 126) {
		n = (uint64_t)buf[2] << 8 | buf[3];
		if (n < 126) {
			*why = "non-minimal length encoding";
			return -1;
		}
	} else if (n == 127) {
		int i;
		n = 0;
		for (i = 0; i < 8; i++)
			n = n << 8 | buf[2 + i];
		if (n >> 63) {
			*why = "length with bit 63 set";
			return -1;
		}
		if (n < 65536) {
			*why = "non-minimal length encoding";
			return -1;
		}
	}
	if (n > max_payload) {
		*code = PX_WS_CLOSE_TOO_BIG;
		*why = "frame over the message size limit";
		return -1;
	}
	h->len = n;
	if (h->masked)
		memcpy(h->mask, buf + need - 4, 4);
	h->hdr_len = need;
	return (int)need;
}

size_t
px_ws_write_header(uint8_t *out, int fin, int opcode, const uint8_t *mask, uint64_t len)
{
	size_t o = 2;
	out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
	if (len < 126) {
		out[1] = (uint8_t)len;
	} else if (len < 65536) {
		out[1] = 126;
		out[2] = (uint8_t)(len >> 8);
		out[3] = (uint8_t)len;
		o = 4;
	} else {
		int i;
		out[1] = 127;
		for (i = 0; i < 8; i++)
			out[2 + i] = (uint8_t)(len >> (56 - 8 * i));
		o = 10;
	}
	if (mask) {
		out[1] |= 0x80;
		memcpy(out + o, mask, 4);
		o += 4;
	}
	return o;
}

void
px_ws_unmask_copy(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t mask[4],
                  uint64_t offset)
{
	uint8_t m[8];
	uint64_t w, k;
	uint32_t h;
	size_t i;
	unsigned r = (unsigned)(offset & 3);

	/* the mask as a word starting at payload byte OFFSET; 8 bytes per step (memcpy keeps
	 * the loads and stores free of alignment assumptions) */
	m[0] = mask[r];
	m[1] = mask[(r + 1) & 3];
	m[2] = mask[(r + 2) & 3];
	m[3] = mask[(r + 3) & 3];
	memcpy(m + 4, m, 4);
	memcpy(&k, m, 8);
	for (i = 0; i + 8 <= len; i += 8) {
		memcpy(&w, src + i, 8);
		w ^= k;
		memcpy(dst + i, &w, 8);
	}
	if (len - i >= 4) { /* I is a multiple of 8 here: the mask starts again at m[0] */
		uint32_t k4;
		memcpy(&h, src + i, 4);
		memcpy(&k4, m, 4);
		h ^= k4;
		memcpy(dst + i, &h, 4);
		i += 4;
	}
	for (; i < len; i++)
		dst[i] = src[i] ^ m[i & 7];
}

void
px_ws_mask(uint8_t *buf, size_t len, const uint8_t mask[4], uint64_t offset)
{
	px_ws_unmask_copy(buf, buf, len, mask, offset);
}

int
px_ws_check_close(const uint8_t *p, size_t len, int *code_out)
{
	int code;

	if (len == 0) {
		*code_out = 1005;
		return 0;
	}
	if (len == 1) {
		*code_out = PX_WS_CLOSE_PROTOCOL;
		return -1;
	}
	code = p[0] << 8 | p[1];
	if (!((code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
	      (code >= 3000 && code <= 4999))) {
		*code_out = PX_WS_CLOSE_PROTOCOL;
		return -1;
	}
	if (!pol_utf8_valid(p + 2, len - 2)) {
		*code_out = PX_WS_CLOSE_BAD_DATA;
		return -1;
	}
	*code_out = code;
	return 0;
}

void
px_ws_accept(const char *key, size_t klen, char out[29])
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	out[0] = 0;
	if (!c)
		return;
	if (EVP_DigestInit_ex(c, EVP_sha1(), NULL) && EVP_DigestUpdate(c, key, klen) &&
	    EVP_DigestUpdate(c, guid, sizeof guid - 1) && EVP_DigestFinal_ex(c, md, &mdlen) &&
	    mdlen == 20)
		EVP_EncodeBlock((unsigned char *)out, md, 20);
	EVP_MD_CTX_free(c);
}

int
px_ws_key_valid(const char *key, size_t klen)
{
	unsigned char out[24];
	size_t i;

	if (klen != 24 || key[22] != '=' || key[23] != '=')
		return 0;
	for (i = 0; i < 22; i++) {
		char c = key[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '+' || c == '/'))
			return 0;
	}
	return EVP_DecodeBlock(out, (const unsigned char *)key, 24) == 18;
}

void
px_ws_assembler_init(struct px_ws_assembler *a, uint64_t max_size, uint32_t max_frags)
{
	memset(a, 0, sizeof *a);
	a->max_size = max_size;
	a->max_frags = max_frags;
}

int
px_ws_assemble(struct px_ws_assembler *a, const struct px_ws_header *h, int *opcode, int *code,
               const char **why)
{
	if (h->opcode >= PX_WS_CLOSE)
		return PX_WS_CONTROL;
	*code = PX_WS_CLOSE_PROTOCOL;
	if ((h->opcode == PX_WS_CONT) != a->in_msg) {
		*why = a->in_msg ? "new message inside a fragmented one" : "continuation without a message";
		return -1;
	}
	if (!a->in_msg) {
		a->in_msg = 1;
		a->opcode = h->opcode;
		a->nfrag = 0;
		a->size = 0;
	}
	if (++a->nfrag > a->max_frags || h->len > a->max_size - a->size) {
		*code = PX_WS_CLOSE_TOO_BIG;
		*why = "message over the size or fragment limit";
		return -1;
	}
	a->size += h->len;
	if (!h->fin)
		return PX_WS_PART;
	a->in_msg = 0;
	*opcode = a->opcode;
	return PX_WS_LAST;
}
