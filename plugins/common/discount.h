/* What the built-in plugins share, written against the SDK alone
 * (mktd/plugin.h): included by coupon and promotion. */
#ifndef MKTD_PLUGINS_COMMON_DISCOUNT_H
#define MKTD_PLUGINS_COMMON_DISCOUNT_H

#include <errno.h>
#include <stdint.h>

#include <mktd/plugin.h>

/* The key node of whichever of `a` and `b` (value nodes of params) comes
 * second in the map. */
static inline const mktd_node *plug_second_key(const mktd_host *host, const mktd_node *params,
                                               const mktd_node *a, const mktd_node *b)
{
    size_t n = host->node_len(params);
    int seen = 0;

    for (size_t i = 0; i < n; i++) {
        const mktd_node *v = host->node_value_at(params, i);
        if (v == a || v == b) {
            if (seen)
                return host->node_key_at(params, i);
            seen = 1;
        }
    }
    return params;
}

/* Exactly one of `value` (>= 1) and `percent` (1-100) into *value and
 * *percent (the other stays 0). A key set to null counts as absent, as it
 * does for the host's typed getters. 0, or -EINVAL after config_error. */
static inline int plug_value_or_percent(const mktd_host *host, mktd_ctx *ctx,
                                        const mktd_node *params, int64_t *value, int64_t *percent)
{
    int rv, rp, has_v, has_p;

    /* The defaults (0) are below both ranges: 0 after success means absent. */
    rv = host->get_int(ctx, params, "value", 0, 0, 1, INT64_MAX, value);
    rp = host->get_int(ctx, params, "percent", 0, 0, 1, 100, percent);
    has_v = rv < 0 || *value > 0;
    has_p = rp < 0 || *percent > 0;
    if (!has_v && !has_p)
        return host->config_error(ctx, params, "one of 'value' or 'percent' is required");
    if (has_v && has_p) {
        const mktd_node *at = plug_second_key(host, params, host->node_get(params, "value"),
                                              host->node_get(params, "percent"));
        host->config_error(ctx, at, "'value' and 'percent' exclude each other: give only one");
        return -EINVAL;
    }
    return rv < 0 || rp < 0 ? -EINVAL : 0;
}

#endif
