/*
 * classify_tool: reads one base64-encoded frame per line on stdin, classifies it with
 * policy/, and prints one JSON line per frame: {"ok":false} or what policy/ read (method,
 * decoded path segments and data keys in hex, participant actions). The differential test
 * (json_differential.test.mjs) compares this with JSON.parse's reading of the same bytes.
 */
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "policy/call.h"
#include "policy/json.h"

static void
hex(const char *s, size_t n)
{
	size_t i;
	putchar('"');
	for (i = 0; i < n; i++)
		printf("%02x", (unsigned char)s[i]);
	putchar('"');
}

static void
keys(const char *text, const struct pol_jtok *t, int obj)
{
	uint32_t k, m;
	char buf[4096];
	putchar('[');
	for (k = (uint32_t)obj + 1, m = 0; m < t[obj].size; m++, k = t[k + 1].next) {
		long n = pol_json_str_decode(text, &t[k], buf, sizeof buf);
		if (m)
			putchar(',');
		if (n < 0)
			printf("null");
		else
			hex(buf, (size_t)n);
	}
	putchar(']');
}

int
main(void)
{
	struct pol_limits lim = {.json_tokens = 100000, .json_depth = 64, .batch_actions = 100};
	struct pol_classifier *k = pol_classifier_new(&lim);
	static char line[1 << 21];
	static unsigned char frame[1 << 21];

	while (fgets(line, sizeof line, stdin)) {
		size_t l = strcspn(line, "\r\n");
		int n = EVP_DecodeBlock(frame, (unsigned char *)line, (int)l);
		struct pol_call c;
		const char *why;
		int i;

		if (n < 0) {
			puts("{\"ok\":false,\"bad_input\":true}");
			continue;
		}
		while (l > 0 && line[l - 1] == '=') { /* EVP_DecodeBlock counts padding */
			n--;
			l--;
		}
		if (pol_classify_frame(k, (const char *)frame, (size_t)n, &c, &why)) {
			puts("{\"ok\":false}");
			continue;
		}
		const struct pol_jtok *t = pol_json_tokens(pol_classifier_json(k));
		printf("{\"ok\":true,\"op\":\"%s\"", pol_op_to_str(c.op));
		if (c.op == POL_OP_ACK) {
			puts("}");
			continue;
		}
		printf(",\"method\":");
		hex(c.method_text, c.method_len);
		printf(",\"segs\":[");
		for (i = 0; i < c.path.nseg; i++) {
			if (i)
				putchar(',');
			hex(c.path.seg[i].p, c.path.seg[i].len);
		}
		printf("],\"keys\":");
		keys((const char *)frame, t, c.data_tok);
		if (c.op == POL_OP_PART_BATCH) {
			printf(",\"actions\":[");
			for (i = 0; i < c.nactions; i++) {
				int pa = pol_json_obj_get((const char *)frame, t, (int)c.actions[i].tok, "params");
				printf("%s{\"id\":", i ? "," : "");
				hex(c.actions[i].uid, c.actions[i].uid_len);
				printf(",\"method\":%d,\"params\":", c.actions[i].method);
				keys((const char *)frame, t, pa);
				putchar('}');
			}
			putchar(']');
		}
		puts("}");
	}
	pol_classifier_free(k);
	return 0;
}
