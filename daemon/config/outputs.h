/* The config's `outputs:` (spec section 15): webhook outputs of actions. */
#ifndef MKTD_CONFIG_OUTPUTS_H
#define MKTD_CONFIG_OUTPUTS_H

#include <stddef.h>
#include <stdint.h>

#include "config/yaml.h"
#include "lib/util.h"

struct output_cfg {
    char *id;     /* [a-z0-9_-]{1,64}, unique */
    char *url;    /* http:// or https:// */
    char **kinds; /* NULL: every kind */
    size_t n_kinds;
    char **campaigns; /* NULL: every campaign */
    size_t n_campaigns;
    char *secret_file; /* as resolved (relative to the config file's folder) */
    char *secret;      /* the file's bytes, a trailing newline dropped; never empty */
    size_t secret_len;
    int batch;          /* 1..10000, default 100 */
    int64_t timeout_ms; /* default 5 s */
    const struct ynode *node;
};

/* Checks `outputs:` (node n, NULL or null: none), reading each secret
 * file; relative paths resolve against dir (config_resolve). Adds every problem to
 * errs ("FILE:LINE:COL: message") and returns how many there were; fills
 * *out and *n (also on errors: free them with outputs_cfg_free). */
int outputs_cfg_parse(const struct ynode *n, const char *dir, int dir_real, struct errs *errs,
                      struct output_cfg **out, size_t *nout);
void outputs_cfg_free(struct output_cfg *o, size_t n);
/* A deep copy of o[0..n) (no node): free it with outputs_cfg_free. */
struct output_cfg *outputs_cfg_dup(const struct output_cfg *o, size_t n);

#endif
