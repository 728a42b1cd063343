/* What changed between two configs, and which changes only a restart
 * applies: the daemon's reload refuses those (net/server.c), and `mktd
 * check --running` lists them before a reload is tried. */
#ifndef MKTD_CONFIG_DIFF_H
#define MKTD_CONFIG_DIFF_H

#include <stddef.h>

#include "config/config.h"

struct config_change {
    char *key;   /* "database", "campaign first-order", "limits", ... */
    char *text;  /* what changed, for people */
    int restart; /* only a restart applies it: a reload is refused */
};

/* The changes from the running config oc to nc: restart ones first, in a
 * fixed order, then those a reload applies. Returns how many (*out:
 * free with config_changes_free). */
size_t config_diff(const struct config *oc, const struct config *nc, struct config_change **out);
void config_changes_free(struct config_change *v, size_t n);

#endif
