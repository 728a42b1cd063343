/* Campaign matching: `when.event` and `when.all` conditions (spec 2, 9). */
#ifndef MKTD_COND_H
#define MKTD_COND_H

#include <jansson.h>
#include <mktd/plugin.h>

#include "config/config.h"

/* What a condition can look at. */
struct cond_input {
    const char *type;
    const char *user;
    json_t *props;               /* object or NULL */
    const mktd_profile *profile; /* NULL for a user never seen */
    /* user.count.<type>; NULL callback: 0 */
    int64_t (*count)(void *arg, const char *user, const char *type);
    void *count_arg;
};

/* 1 when the condition holds, else 0. */
int cond_eval(const struct cond *c, const struct cond_input *in);

/* 1 when the campaign's `when` holds for the input (type in when.event and
 * every condition of when.all); a campaign without `when` matches. */
int when_matches(const struct campaign_cfg *c, const struct cond_input *in);

#endif
