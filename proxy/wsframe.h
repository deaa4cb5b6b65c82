/*
 * proxy/wsframe.h - RFC 6455 §5 frame codec: header parsing and writing, masking, close-frame
 * and UTF-8 checks. Pure: no I/O, no allocation.
 *
 * The header parser is restartable: hand it whatever bytes are buffered; it answers "need
 * more" (0), "a header of N bytes" (N), or a protocol error with the close code to send
 * (wslay_frame_recv's checks: RSV bits, reserved opcodes, control frames <= 125 bytes with
 * FIN, minimal length encodings, bit 63 clear, masking by direction).
 */
#ifndef SG_PROXY_WSFRAME_H
#define SG_PROXY_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

enum {
	PX_WS_CONT = 0x0, PX_WS_TEXT = 0x1, PX_WS_BINARY = 0x2,
	PX_WS_CLOSE = 0x8, PX_WS_PING = 0x9, PX_WS_PONG = 0xa,
};

/* Close codes (RFC 6455 §7.4.1). */
#define PX_WS_CLOSE_NORMAL 1000
#define PX_WS_CLOSE_GOING_AWAY 1001
#define PX_WS_CLOSE_PROTOCOL 1002
#define PX_WS_CLOSE_UNSUPPORTED 1003
#define PX_WS_CLOSE_BAD_DATA 1007
#define PX_WS_CLOSE_POLICY 1008
#define PX_WS_CLOSE_TOO_BIG 1009
#define PX_WS_CLOSE_INTERNAL 1011

#define PX_WS_MAX_HEADER 14
#define PX_WS_MAX_CONTROL 125

struct px_ws_header {
	int fin;
	int opcode;
	int masked;
	uint8_t mask[4];
	uint64_t len;      /* payload bytes */
	size_t hdr_len;    /* header bytes */
};

/*
 * Parses the header at BUF[0..LEN). FROM_CLIENT: frames must be masked (else unmasked).
 * MAX_PAYLOAD caps one frame's payload (1009 past it). Returns hdr_len (> 0) with H filled,
 * 0 if more bytes are needed, -1 with *CODE and *WHY set on a protocol error.
 */
int px_ws_parse_header(const uint8_t *buf, size_t len, int from_client, uint64_t max_payload,
                       struct px_ws_header *h, int *code, const char **why);

/*
 * Message reassembly rules (RFC 6455 §5.4), apart from the bytes: which frames start, continue
 * and end a message, and the caps on a message's size and fragment count. Control frames may
 * come between fragments and do not touch the state.
 */
struct px_ws_assembler {
	int in_msg;          /* a fragmented message is open */
	int opcode;          /* its opcode (TEXT or BINARY) */
	uint32_t nfrag;      /* data frames in it so far */
	uint64_t size;       /* payload bytes in it so far */
	uint64_t max_size;
	uint32_t max_frags;
};

enum { PX_WS_CONTROL = 1, PX_WS_PART, PX_WS_LAST };

void px_ws_assembler_init(struct px_ws_assembler *a, uint64_t max_size, uint32_t max_frags);

/*
 * Accounts for the frame with header H. Returns PX_WS_CONTROL for a control frame, PX_WS_PART
 * for a data frame that leaves its message open, PX_WS_LAST for the frame that completes a
 * message (its opcode in *OPCODE, its fragment count in A->nfrag until the next call), or -1
 * with *CODE (1002 or 1009) and *WHY for a frame that breaks the rules or a cap.
 */
int px_ws_assemble(struct px_ws_assembler *a, const struct px_ws_header *h, int *opcode,
                   int *code, const char **why);

/* Writes a header into OUT (PX_WS_MAX_HEADER bytes) with minimal length encoding; returns its
 * length. MASK NULL: unmasked. */
size_t px_ws_write_header(uint8_t *out, int fin, int opcode, const uint8_t *mask, uint64_t len);

/* XORs LEN bytes with MASK, the first byte being payload byte OFFSET. */
void px_ws_mask(uint8_t *buf, size_t len, const uint8_t mask[4], uint64_t offset);
/* The same from SRC into DST (which may be SRC, not otherwise overlap): copy and unmask in
 * one pass. */
void px_ws_unmask_copy(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t mask[4],
                       uint64_t offset);

/*
 * Checks an (unmasked) close payload: empty, or a valid code plus UTF-8 reason. Returns 0 and
 * the code (1005 if none) in *CODE_OUT, or -1 with the close code to answer in *CODE_OUT.
 */
int px_ws_check_close(const uint8_t *p, size_t len, int *code_out);

/* Sec-WebSocket-Accept for KEY (RFC 6455 §4.2.2) into OUT (29 bytes, NUL-terminated). */
void px_ws_accept(const char *key, size_t klen, char out[29]);

/* 1 if KEY is a valid Sec-WebSocket-Key: base64 of 16 bytes. */
int px_ws_key_valid(const char *key, size_t klen);

#endif
