/*
 * proxy/console.h - the admin console's files (proxy/console/), embedded in the binary at
 * build time by cmake/embed.cmake: one page, its script and its style, served by admin.c.
 */
#ifndef SG_PROXY_CONSOLE_H
#define SG_PROXY_CONSOLE_H

#include <stddef.h>

struct px_asset {
	const char *path;           /* the URL path it is served at */
	const char *type;           /* its Content-Type */
	const unsigned char *data;
	size_t len;
};

extern const struct px_asset px_console_assets[];
extern const int px_console_nassets;

#endif
