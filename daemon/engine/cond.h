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

/* when_matches, and when it is 0 the reason in buf (spec 10's not_matched
 * details): "event T not in when.event", or the first condition that
 * failed with the value it saw, "user.orders eq 1: is 3" ("...: missing"
 * when absent). buf is "" on a match. */
int when_explain(const struct campaign_cfg *c, const struct cond_input *in, char *buf, size_t len);

#endif
