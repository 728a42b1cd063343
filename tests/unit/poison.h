/* A plugin wrapped so that a "test.poison" event writes a raw state value
 * through the campaign's own context: stored state may be anything, and
 * the plugin must read garbage without harm. Include after check.h, where
 * mktd_plugin_entry is the plugin under test; add the campaign with
 * poison_entry. */
#ifndef MKTD_TEST_POISON_H
#define MKTD_TEST_POISON_H
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <mktd/mock.h>
#include <mktd/plugin.h>

static mktd_plugin poisoned;
static const mktd_host *poison_host;
static int (*real_on_event)(mktd_ctx *, void *, const mktd_event *, unsigned);

static int poison_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    mktd_value key, val, user;

    if (ev->depth != 0 || strcmp(ev->type, "test.poison") != 0)
        return real_on_event(ctx, data, ev, flags);
    if (poison_host->prop(ctx, ev, "key", &key) != MKTD_T_STRING ||
        poison_host->prop(ctx, ev, "value", &val) != MKTD_T_STRING)
        return -EINVAL;
    if (poison_host->prop(ctx, ev, "of", &user) != MKTD_T_STRING)
        user.s = NULL;
    return poison_host->state_put(ctx, user.s, key.s, val.s, val.len);
}

static const mktd_plugin *poison_entry(const mktd_host *h)
{
    poison_host = h;
    poisoned = *mktd_plugin_entry(h);
    real_on_event = poisoned.on_event;
    poisoned.on_event = poison_on_event;
    return &poisoned;
}

/* Writes value (JSON string content) under key for user `of` (NULL:
 * campaign-wide). */
static void poison(mktd_mock *m, const char *of, const char *key, const char *value)
{
    static int n;
    char line[1200];
    snprintf(line, sizeof line,
             "{\"id\":\"poison-%d\",\"type\":\"test.poison\",\"user\":\"t\",\"props\":{"
             "\"key\":\"%s\",\"value\":\"%s\"%s%s%s}}",
             ++n, key, value, of ? ",\"of\":\"" : "", of ? of : "", of ? "\"" : "");
    CHECK_INT(mktd_mock_event(m, line), 0);
}
#endif
