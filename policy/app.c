/*
 * policy/app.c - finding an app in a loaded config (contracts in config.h). Apart from the
 * loader so that what reads a config (route.c, decide.c, proxy/) does not depend on the
 * code that builds one: config.c parses route sections with route.c's parsers, and route.c
 * finds apps here.
 */
#include <string.h>

#include "policy/config.h"

const struct pol_app *
pol_config_app(const struct pol_config *c, const char *appid, size_t len)
{
	int lo = 0, hi = c->napps - 1;

	if (len > POL_APPID_MAX)
		return &c->defaults;
	while (lo <= hi) {
		int mid = (lo + hi) / 2;
		size_t idlen = strlen(c->apps[mid].id);
		int r = memcmp(appid, c->apps[mid].id, len < idlen ? len : idlen);
		if (r == 0)
			r = len < idlen ? -1 : len > idlen ? 1 : 0;
		if (r == 0)
			return &c->apps[mid];
		if (r < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return &c->defaults;
}

int
pol_config_has_app(const struct pol_config *c, const char *appid)
{
	return pol_config_app(c, appid, strlen(appid))->id[0] != 0;
}
