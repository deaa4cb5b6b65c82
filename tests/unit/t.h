/*
 * tests/unit/t.h - a minimal test harness: CHECK records a failure and goes on; the binary
 * exits non-zero if anything failed and prints "N passed, N failed".
 */
#ifndef SG_TEST_T_H
#define SG_TEST_T_H

#include <stdio.h>
#include <string.h>

static int t_pass, t_fail;

#define CHECK(cond)                                                                   \
	do {                                                                          \
		if (cond) {                                                           \
			t_pass++;                                                     \
		} else {                                                              \
			t_fail++;                                                     \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
		}                                                                     \
	} while (0)

#define CHECK_STR(a, b)                                                               \
	do {                                                                          \
		const char *a_ = (a), *b_ = (b);                                      \
		if (a_ && b_ && !strcmp(a_, b_)) {                                    \
			t_pass++;                                                     \
		} else {                                                              \
			t_fail++;                                                     \
			fprintf(stderr, "%s:%d: %s == \"%s\", want \"%s\"\n", __FILE__, __LINE__, #a, \
			        a_ ? a_ : "(null)", b_ ? b_ : "(null)");               \
		}                                                                     \
	} while (0)

static inline int
t_done(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, t_pass, t_fail);
	return t_fail ? 1 : 0;
}

#endif
