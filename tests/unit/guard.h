/*
 * tests/unit/guard.h - copy bytes so they end exactly at a PROT_NONE page: any read past
 * the end faults (picohttpparser's test trick).
 */
#ifndef SG_TEST_GUARD_H
#define SG_TEST_GUARD_H

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct guard {
	char *base;
	size_t span;
};

static char *
guard_copy(struct guard *g, const char *s, size_t len)
{
	size_t pg = (size_t)sysconf(_SC_PAGESIZE);
	size_t data_pages = (len + pg - 1) / pg + 1;
	g->span = (data_pages + 1) * pg;
	g->base = mmap(NULL, g->span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (g->base == MAP_FAILED)
		abort();
	mprotect(g->base + data_pages * pg, pg, PROT_NONE);
	char *p = g->base + data_pages * pg - len;
	memcpy(p, s, len);
	return p;
}

static void
guard_free(struct guard *g)
{
	munmap(g->base, g->span);
}

#endif
