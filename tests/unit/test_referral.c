/* Unit tests of the referral plugin against the mock host. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/mock.h>

#include "check.h"

const mktd_plugin *mktd_plugin_entry(const mktd_host *host);

#define DAY 86400000LL
/* 2026-11-01T00:00:00Z */
#define T0 1793491200000LL

static int next_id;

/* A new mock with one referral campaign "ref"; NULL (and a failed check)
 * when the params are refused. */
static mktd_mock *mk(const char *params)
{
    mktd_mock *m = mktd_mock_new();
    int rc = mktd_mock_add(m, mktd_plugin_entry, "ref", params);

    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  params refused: %s\n", mktd_mock_errors(m));
        mktd_mock_free(m);
        return NULL;
    }
    return m;
}

/* Plays one event line built from fmt; the line gets a fresh id first. */
static int play(mktd_mock *m, const char *fmt, ...)
{
    char body[1024], line[1200];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(body, sizeof body, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "{\"id\":\"e%d\",%s}", ++next_id, body);
    return mktd_mock_event(m, line);
}

static void signup(mktd_mock *m, long long ts, const char *user, const char *referrer)
{
    if (referrer)
        CHECK_INT(play(m,
                       "\"type\":\"user.signup\",\"user\":\"%s\",\"ts\":%lld,"
                       "\"props\":{\"referrer\":\"%s\"}",
                       user, ts, referrer),
                  0);
    else
        CHECK_INT(play(m, "\"type\":\"user.signup\",\"user\":\"%s\",\"ts\":%lld", user, ts), 0);
}

static void paid(mktd_mock *m, long long ts, const char *user, const char *order, long long amount)
{
    CHECK_INT(play(m,
                   "\"type\":\"order.paid\",\"user\":\"%s\",\"ts\":%lld,"
                   "\"props\":{\"order_id\":\"%s\",\"amount\":%lld}",
                   user, ts, order, amount),
              0);
}

/* amount < 0: no amount (refund what is left). */
static void refund(mktd_mock *m, long long ts, const char *user, const char *order,
                   long long amount)
{
    if (amount >= 0)
        CHECK_INT(play(m,
                       "\"type\":\"order.refunded\",\"user\":\"%s\",\"ts\":%lld,"
                       "\"props\":{\"order_id\":\"%s\",\"amount\":%lld}",
                       user, ts, order, amount),
                  0);
    else
        CHECK_INT(play(m,
                       "\"type\":\"order.refunded\",\"user\":\"%s\",\"ts\":%lld,"
                       "\"props\":{\"order_id\":\"%s\"}",
                       user, ts, order),
                  0);
}

static void other(mktd_mock *m, long long ts, const char *user, const char *type)
{
    CHECK_INT(play(m, "\"type\":\"%s\",\"user\":\"%s\",\"ts\":%lld", type, user, ts), 0);
}

/* What the last call added: dump from the count before it. */
#define SINCE(m, mark) mktd_mock_dump((m), (mark))

/* ---- params ---- */

/* The params are refused, with an error containing each of the
 * NULL-terminated strings. */
static void refused(const char *params, ...)
{
    mktd_mock *m = mktd_mock_new();
    int rc = mktd_mock_add(m, mktd_plugin_entry, "ref", params);
    const char *errs = mktd_mock_errors(m);
    va_list ap;
    const char *want;

    CHECK_INT(rc, -EINVAL);
    va_start(ap, params);
    while ((want = va_arg(ap, const char *)) != NULL) {
        int found = errs && strstr(errs, want) != NULL;

        CHECK(found);
        if (!found)
            fprintf(stderr, "  params: %s  want: %s\n  errors: %s\n", params, want,
                    errs ? errs : "(null)");
    }
    va_end(ap);
    mktd_mock_free(m);
}

static void test_params(void)
{
    mktd_mock *m;

    /* Descriptor. */
    const mktd_plugin *p = mktd_plugin_entry(mktd_mock_host());
    CHECK_STR(p->name, "referral");
    CHECK(p->flags & MKTD_PLUGIN_WHEN_REFUSED);
    CHECK(!(p->flags & MKTD_PLUGIN_WHEN_REQUIRED));
    CHECK_INT(p->abi_version, MKTD_ABI_VERSION);
    CHECK(p->init && p->on_event);

    /* Valid configs. */
    m = mk("commission: [1000]\n");
    mktd_mock_free(m);
    m = mk("commission: [0, 10000, 5]\n"
           "reward: {amount: 0, referrer_share: 0}\n"
           "min_order: 0\nwindow: 30d\ndaily_cap: 1\nutc_offset: \"-05:30\"\nclawback: false\n");
    mktd_mock_free(m);
    m = mk("commission: [1]\nutc_offset: Z\nwindow: 3600\nreward: {amount: 5, referrer_share: "
           "100}\n");
    mktd_mock_free(m);

    /* A null reward or daily_cap reads as absent. */
    m = mk("commission: [100]\nreward: ~\ndaily_cap:\n");
    mktd_mock_free(m);

    /* Missing params or commission. */
    refused("commission: ~\n", "params:1:1: ", "commission", NULL);
    refused(NULL, "commission", NULL);
    refused("min_order: 5\n", "params:1:1: ", "commission", NULL);
    refused("[1, 2]\n", "params:1:1: ", NULL);
    /* Unknown keys, also inside reward. */
    refused("commission: [100]\nbogus: 1\n", "params:2:1: ", "bogus", NULL);
    refused("commission: [100]\nreward: {amount: 1, referrer_share: 5, extra: 2}\n",
            "params:2:40: ", "extra", NULL);
    /* commission: a list of 1..3 integers 0..10000. */
    refused("commission: 100\n", "params:1:13: ", "commission", NULL);
    refused("commission: []\n", "params:1:13: ", "commission", NULL);
    refused("commission: [1, 2, 3, 4]\n", "params:1:13: ", "commission", NULL);
    refused("commission: [100, 10001]\n", "params:1:19: ", "10001", NULL);
    refused("commission: [-1]\n", "params:1:14: ", NULL);
    refused("commission: [abc]\n", "params:1:14: ", NULL);
    refused("commission: [1.5]\n", "params:1:14: ", NULL);
    refused("commission: ['100']\n", "params:1:14: ", NULL);
    refused("commission:\n  - 100\n  - 20000\n", "params:3:5: ", NULL);
    /* reward */
    refused("commission: [100]\nreward: 5\n", "params:2:9: ", "reward", NULL);
    refused("commission: [100]\nreward: {referrer_share: 50}\n", "params:2:9: ", "amount", NULL);
    refused("commission: [100]\nreward: {amount: 50}\n", "params:2:9: ", "referrer_share", NULL);
    refused("commission: [100]\nreward: {amount: -1, referrer_share: 50}\n", "params:2:18: ", NULL);
    refused("commission: [100]\nreward: {amount: 10, referrer_share: 101}\n",
            "params:2:38: ", NULL);
    refused("commission: [100]\nreward: {amount: 10, referrer_share: -1}\n", "params:2:38: ", NULL);
    /* min_order, window, daily_cap, utc_offset, clawback */
    refused("commission: [100]\nmin_order: -1\n", "params:2:12: ", NULL);
    refused("commission: [100]\nmin_order: lots\n", "params:2:12: ", NULL);
    refused("commission: [100]\nwindow: soon\n", "params:2:9: ", NULL);
    refused("commission: [100]\nwindow: -5d\n", "params:2:9: ", NULL);
    refused("commission: [100]\ndaily_cap: 0\n", "params:2:12: ", NULL);
    refused("commission: [100]\ndaily_cap: x\n", "params:2:12: ", NULL);
    refused("commission: [100]\nutc_offset: \"+8\"\n", "params:2:13: ", "utc_offset", NULL);
    refused("commission: [100]\nutc_offset: \"+08:60\"\n", "params:2:13: ", NULL);
    refused("commission: [100]\nutc_offset: \"+24:00\"\n", "params:2:13: ", NULL);
    refused("commission: [100]\nutc_offset: \"08:00\"\n", "params:2:13: ", NULL);
    refused("commission: [100]\nutc_offset: [1]\n", "params:2:13: ", NULL);
    refused("commission: [100]\nclawback: maybe\n", "params:2:11: ", NULL);
    /* Every problem is reported, not just the first. */
    refused("commission: [20000]\nmin_order: -1\nclawback: 3\nnope: 1\n",
            "params:1:14: ", "params:2:12: ", "params:3:11: ", "params:4:1: ", NULL);
}

/* ---- binding ---- */

static void test_bind_basic(void)
{
    mktd_mock *m = mk("commission: [1000]\n");
    const mktd_mock_action *a;
    size_t mark;

    if (!m)
        return;
    signup(m, T0, "b", "a");
    CHECK_STR(SINCE(m, 0), "referral.bound b {\"referrer\":\"a\"}\n");
    CHECK_INT(mktd_mock_count(m), 1);
    a = mktd_mock_action_at(m, 0);
    CHECK_STR(a->campaign, "ref");
    CHECK_STR(a->kind, "referral.bound");
    CHECK_STR(a->user, "b");
    CHECK_INT(a->ts, T0);
    CHECK(a->event_id != NULL);

    /* A signup without referrer (or a null one) does nothing; a non-string
     * referrer is an invalid event. */
    mark = mktd_mock_count(m);
    signup(m, T0, "c", NULL);
    CHECK_INT(play(m,
                   "\"type\":\"user.signup\",\"user\":\"d\",\"ts\":%lld,"
                   "\"props\":{\"referrer\":null}",
                   T0),
              0);
    CHECK_INT(play(m,
                   "\"type\":\"user.signup\",\"user\":\"d2\",\"ts\":%lld,"
                   "\"props\":{\"referrer\":5}",
                   T0),
              -EINVAL);
    CHECK_INT(mktd_mock_count(m), mark);
    /* ...but c's signup counts as an event: c is not new any more. */
    signup(m, T0, "c", "a");
    CHECK_STR(SINCE(m, mark), "referral.rejected c {\"referrer\":\"a\",\"reason\":\"not_new\"}\n");

    /* Other event types do nothing. */
    mark = mktd_mock_count(m);
    other(m, T0, "b", "page.view");
    CHECK_INT(mktd_mock_count(m), mark);
    mktd_mock_free(m);
}

static void test_reject_reasons(void)
{
    mktd_mock *m = mk("commission: [1000]\n");
    size_t mark;

    if (!m)
        return;
    /* self */
    signup(m, T0, "a", "a");
    CHECK_STR(SINCE(m, 0), "referral.rejected a {\"referrer\":\"a\",\"reason\":\"self\"}\n");

    /* a chain c -> b -> x */
    mark = mktd_mock_count(m);
    signup(m, T0, "b", "x");
    signup(m, T0, "c", "b");
    CHECK_STR(SINCE(m, mark),
              "referral.bound b {\"referrer\":\"x\"}\nreferral.bound c {\"referrer\":\"b\"}\n");

    /* cycle: x (new) refers to c, whose chain holds x. */
    mark = mktd_mock_count(m);
    signup(m, T0, "x", "c");
    CHECK_STR(SINCE(m, mark), "referral.rejected x {\"referrer\":\"c\",\"reason\":\"cycle\"}\n");
    /* Direct cycle: x refers to b, whose referrer is x. */
    mark = mktd_mock_count(m);
    signup(m, T0, "x", "b");
    CHECK_STR(SINCE(m, mark), "referral.rejected x {\"referrer\":\"b\",\"reason\":\"cycle\"}\n");

    /* self before everything: a bound user referring themself. */
    mark = mktd_mock_count(m);
    signup(m, T0, "c", "c");
    CHECK_STR(SINCE(m, mark), "referral.rejected c {\"referrer\":\"c\",\"reason\":\"self\"}\n");
    /* cycle before already_bound: b is bound and c's chain holds b. */
    mark = mktd_mock_count(m);
    signup(m, T0, "b", "c");
    CHECK_STR(SINCE(m, mark), "referral.rejected b {\"referrer\":\"c\",\"reason\":\"cycle\"}\n");
    /* already_bound before not_new: c is bound and has had events. */
    mark = mktd_mock_count(m);
    signup(m, T0, "c", "y");
    CHECK_STR(SINCE(m, mark),
              "referral.rejected c {\"referrer\":\"y\",\"reason\":\"already_bound\"}\n");
    /* already_bound also for the same referrer again. */
    mark = mktd_mock_count(m);
    signup(m, T0, "c", "b");
    CHECK_STR(SINCE(m, mark),
              "referral.rejected c {\"referrer\":\"b\",\"reason\":\"already_bound\"}\n");

    /* not_new: any earlier event, whatever its ts. */
    mark = mktd_mock_count(m);
    other(m, T0 + DAY, "d", "page.view");
    signup(m, T0, "d", "a");
    CHECK_STR(SINCE(m, mark), "referral.rejected d {\"referrer\":\"a\",\"reason\":\"not_new\"}\n");

    /* A rejected user stays unbound: orders earn nothing. */
    mark = mktd_mock_count(m);
    paid(m, T0, "d", "od", 10000);
    paid(m, T0, "a", "oa", 10000);
    CHECK_INT(mktd_mock_count(m), mark);

    /* The cycle check walks long chains: u0 <- u1 <- ... <- u199. */
    char u[16], r[16];
    for (int i = 1; i < 200; i++) {
        snprintf(u, sizeof u, "u%d", i);
        snprintf(r, sizeof r, "u%d", i - 1);
        signup(m, T0, u, r);
    }
    mark = mktd_mock_count(m);
    signup(m, T0, "u0", "u199");
    CHECK_STR(SINCE(m, mark),
              "referral.rejected u0 {\"referrer\":\"u199\",\"reason\":\"cycle\"}\n");
    /* ...while a new user may join at its end. */
    mark = mktd_mock_count(m);
    signup(m, T0, "u200", "u199");
    CHECK_STR(SINCE(m, mark), "referral.bound u200 {\"referrer\":\"u199\"}\n");
    mktd_mock_free(m);
}

static void test_daily_cap(void)
{
    mktd_mock *m = mk("commission: [1000]\ndaily_cap: 2\nutc_offset: \"+08:00\"\n");
    size_t mark;
    /* Local midnight of 2026-11-02 at +08:00 is 2026-11-01T16:00:00Z. */
    long long midnight = T0 + 16 * 3600000LL;

    if (!m)
        return;
    signup(m, midnight - 3600000, "n1", "r");
    /* A refused binding does not count against the cap. */
    signup(m, midnight - 3000000, "r", "r");
    signup(m, midnight - 2000000, "n2", "r");
    mark = mktd_mock_count(m);
    signup(m, midnight - 1, "n3", "r");
    CHECK_STR(SINCE(m, mark),
              "referral.rejected n3 {\"referrer\":\"r\",\"reason\":\"daily_cap\"}\n");
    /* The cap is per referrer. */
    mark = mktd_mock_count(m);
    signup(m, midnight - 1, "n4", "s");
    CHECK_STR(SINCE(m, mark), "referral.bound n4 {\"referrer\":\"s\"}\n");
    /* A new local day: r may bind again, twice. */
    mark = mktd_mock_count(m);
    signup(m, midnight, "n5", "r");
    signup(m, midnight + 1, "n6", "r");
    signup(m, midnight + 2, "n7", "r");
    CHECK_STR(SINCE(m, mark),
              "referral.bound n5 {\"referrer\":\"r\"}\n"
              "referral.bound n6 {\"referrer\":\"r\"}\n"
              "referral.rejected n7 {\"referrer\":\"r\",\"reason\":\"daily_cap\"}\n");
    /* The day is the signup's own ts, not now: a late signup for the
     * previous local day finds that day full. */
    mark = mktd_mock_count(m);
    signup(m, midnight - 10, "n8", "r");
    CHECK_STR(SINCE(m, mark),
              "referral.rejected n8 {\"referrer\":\"r\",\"reason\":\"daily_cap\"}\n");
    /* not_new comes before daily_cap. */
    mark = mktd_mock_count(m);
    signup(m, midnight + 3, "n7", "r");
    CHECK_STR(SINCE(m, mark), "referral.rejected n7 {\"referrer\":\"r\",\"reason\":\"not_new\"}\n");
    mktd_mock_free(m);

    /* The same instants at the default +00:00 fall in one day. */
    m = mk("commission: [1000]\ndaily_cap: 2\n");
    if (!m)
        return;
    signup(m, midnight - 1, "n1", "r");
    signup(m, midnight, "n2", "r");
    mark = mktd_mock_count(m);
    signup(m, midnight + 1, "n3", "r");
    CHECK_STR(SINCE(m, mark),
              "referral.rejected n3 {\"referrer\":\"r\",\"reason\":\"daily_cap\"}\n");
    /* ...and the UTC day changes at T0 + 1d. */
    mark = mktd_mock_count(m);
    signup(m, T0 + DAY, "n4", "r");
    CHECK_STR(SINCE(m, mark), "referral.bound n4 {\"referrer\":\"r\"}\n");
    mktd_mock_free(m);

    /* A negative offset: at -05:00 local midnight is 05:00Z. */
    m = mk("commission: [1000]\ndaily_cap: 1\nutc_offset: \"-05:00\"\n");
    if (!m)
        return;
    signup(m, T0 + 5 * 3600000LL - 1, "n1", "r");
    mark = mktd_mock_count(m);
    signup(m, T0 + 5 * 3600000LL, "n2", "r");
    signup(m, T0 + 5 * 3600000LL + 1, "n3", "r");
    CHECK_STR(SINCE(m, mark),
              "referral.bound n2 {\"referrer\":\"r\"}\n"
              "referral.rejected n3 {\"referrer\":\"r\",\"reason\":\"daily_cap\"}\n");
    mktd_mock_free(m);

    /* Without daily_cap there is no limit. */
    m = mk("commission: [1000]\n");
    if (!m)
        return;
    for (int i = 0; i < 50; i++) {
        char u[16];

        snprintf(u, sizeof u, "m%d", i);
        signup(m, T0, u, "r");
    }
    CHECK_INT(mktd_mock_count(m), 50);
    CHECK(strstr(SINCE(m, 0), "rejected") == NULL);
    mktd_mock_free(m);
}

/* ---- commission and reward ---- */

static void test_commission_levels(void)
{
    mktd_mock *m = mk("commission: [1000, 500, 250]\n");
    size_t mark;

    if (!m)
        return;
    /* d -> c -> b -> a */
    signup(m, T0, "b", "a");
    signup(m, T0, "c", "b");
    signup(m, T0, "d", "c");

    /* Three levels, each floored. */
    mark = mktd_mock_count(m);
    paid(m, T0 + 1, "d", "o1", 999);
    CHECK_STR(SINCE(m, mark),
              "referral.commission c "
              "{\"order_id\":\"o1\",\"buyer\":\"d\",\"level\":1,\"rate_bp\":1000,\"amount\":99}\n"
              "referral.commission b "
              "{\"order_id\":\"o1\",\"buyer\":\"d\",\"level\":2,\"rate_bp\":500,\"amount\":49}\n"
              "referral.commission a "
              "{\"order_id\":\"o1\",\"buyer\":\"d\",\"level\":3,\"rate_bp\":250,\"amount\":24}\n");
    /* Missing ancestors are skipped. */
    mark = mktd_mock_count(m);
    paid(m, T0 + 2, "c", "o2", 10000);
    CHECK_STR(SINCE(m, mark),
              "referral.commission b "
              "{\"order_id\":\"o2\",\"buyer\":\"c\",\"level\":1,\"rate_bp\":1000,\"amount\":1000}\n"
              "referral.commission a "
              "{\"order_id\":\"o2\",\"buyer\":\"c\",\"level\":2,\"rate_bp\":500,\"amount\":500}\n");
    mark = mktd_mock_count(m);
    paid(m, T0 + 3, "b", "o3", 10000);
    CHECK_STR(
        SINCE(m, mark),
        "referral.commission a "
        "{\"order_id\":\"o3\",\"buyer\":\"b\",\"level\":1,\"rate_bp\":1000,\"amount\":1000}\n");
    /* An unbound buyer earns nobody anything. */
    mark = mktd_mock_count(m);
    paid(m, T0 + 4, "a", "o4", 10000);
    CHECK_INT(mktd_mock_count(m), mark);
    /* Zero amounts are not recorded: 3 * 1000 / 10000 = 0.3; level 2 gets
     * 3 * 500 / 10000 = 0.15 -> 0 too. */
    mark = mktd_mock_count(m);
    paid(m, T0 + 5, "d", "o5", 3);
    CHECK_INT(mktd_mock_count(m), mark);
    /* A zero-amount order. */
    paid(m, T0 + 5, "d", "o6", 0);
    CHECK_INT(mktd_mock_count(m), mark);
    /* 40: level 1 gets 4, level 2 gets 2, level 3 gets 1. */
    paid(m, T0 + 6, "d", "o7", 40);
    CHECK_STR(SINCE(m, mark),
              "referral.commission c "
              "{\"order_id\":\"o7\",\"buyer\":\"d\",\"level\":1,\"rate_bp\":1000,\"amount\":4}\n"
              "referral.commission b "
              "{\"order_id\":\"o7\",\"buyer\":\"d\",\"level\":2,\"rate_bp\":500,\"amount\":2}\n"
              "referral.commission a "
              "{\"order_id\":\"o7\",\"buyer\":\"d\",\"level\":3,\"rate_bp\":250,\"amount\":1}\n");
    mktd_mock_free(m);

    /* A zero rate skips its level, not the ones above it; one level only
     * pays the direct referrer. */
    m = mk("commission: [1000, 0, 10000]\n");
    if (!m)
        return;
    signup(m, T0, "b", "a");
    signup(m, T0, "c", "b");
    signup(m, T0, "d", "c");
    mark = mktd_mock_count(m);
    paid(m, T0 + 1, "d", "o1", 100);
    CHECK_STR(
        SINCE(m, mark),
        "referral.commission c "
        "{\"order_id\":\"o1\",\"buyer\":\"d\",\"level\":1,\"rate_bp\":1000,\"amount\":10}\n"
        "referral.commission a "
        "{\"order_id\":\"o1\",\"buyer\":\"d\",\"level\":3,\"rate_bp\":10000,\"amount\":100}\n");
    mktd_mock_free(m);

    m = mk("commission: [500]\n");
    if (!m)
        return;
    signup(m, T0, "b", "a");
    signup(m, T0, "c", "b");
    mark = mktd_mock_count(m);
    paid(m, T0 + 1, "c", "o1", 1000);
    CHECK_STR(SINCE(m, mark),
              "referral.commission b "
              "{\"order_id\":\"o1\",\"buyer\":\"c\",\"level\":1,\"rate_bp\":500,\"amount\":50}\n");
    mktd_mock_free(m);
}

static void test_qualifying(void)
{
    mktd_mock *m = mk("commission: [1000]\nmin_order: 100\nwindow: 1d\n");
    size_t mark;

    if (!m)
        return;
    signup(m, T0, "b", "a");
    /* min_order */
    mark = mktd_mock_count(m);
    paid(m, T0 + 1, "b", "o1", 99);
    CHECK_INT(mktd_mock_count(m), mark);
    paid(m, T0 + 2, "b", "o2", 100);
    CHECK_STR(SINCE(m, mark),
              "referral.commission a "
              "{\"order_id\":\"o2\",\"buyer\":\"b\",\"level\":1,\"rate_bp\":1000,\"amount\":10}\n");
    /* A repeated order id earns nothing, whoever pays it. */
    mark = mktd_mock_count(m);
    paid(m, T0 + 3, "b", "o2", 5000);
    CHECK_INT(mktd_mock_count(m), mark);
    /* An order that did not qualify is seen all the same. */
    paid(m, T0 + 4, "b", "o1", 5000);
    CHECK_INT(mktd_mock_count(m), mark);
    paid(m, T0 + 4, "zz", "o9", 5000); /* unbound buyer */
    paid(m, T0 + 5, "b", "o9", 5000);
    CHECK_INT(mktd_mock_count(m), mark);
    /* window: the binding ts plus 1d, inclusive. */
    paid(m, T0 + DAY, "b", "o3", 1000);
    CHECK_INT(mktd_mock_count(m), mark + 1);
    paid(m, T0 + DAY + 1, "b", "o4", 1000);
    CHECK_INT(mktd_mock_count(m), mark + 1);
    /* ...and that later order id is seen too. */
    paid(m, T0 + 10, "b", "o4", 1000);
    CHECK_INT(mktd_mock_count(m), mark + 1);
    mktd_mock_free(m);

    /* The binding ts is the action's ts (now), not the signup's own ts. */
    m = mk("commission: [1000]\nwindow: 1s\n");
    if (!m)
        return;
    other(m, T0 + 5000, "clock", "page.view");
    signup(m, T0, "b", "a"); /* late: bound at now = T0 + 5000 */
    CHECK_INT(mktd_mock_action_at(m, 0)->ts, T0 + 5000);
    mark = mktd_mock_count(m);
    paid(m, T0 + 6000, "b", "o1", 100);
    CHECK_INT(mktd_mock_count(m), mark + 1);
    paid(m, T0 + 6001, "b", "o2", 100);
    CHECK_INT(mktd_mock_count(m), mark + 1);
    /* The window is tested against the order's own ts: a late order whose
     * ts is inside it qualifies although now is later. */
    paid(m, T0 + 5500, "b", "o3", 100);
    CHECK_INT(mktd_mock_count(m), mark + 2);
    mktd_mock_free(m);

    /* Default window: 365d. */
    m = mk("commission: [1000]\n");
    if (!m)
        return;
    signup(m, T0, "b", "a");
    mark = mktd_mock_count(m);
    paid(m, T0 + 365 * DAY, "b", "o1", 100);
    CHECK_INT(mktd_mock_count(m), mark + 1);
    paid(m, T0 + 365 * DAY + 1, "b", "o2", 100);
    CHECK_INT(mktd_mock_count(m), mark + 1);
    mktd_mock_free(m);
}

static void test_reward(void)
{
    mktd_mock *m = mk("commission: [1000, 500]\nreward: {amount: 1001, referrer_share: 33}\n"
                      "min_order: 100\n");
    size_t mark;

    if (!m)
        return;
    signup(m, T0, "b", "a");
    signup(m, T0, "c", "b");
    /* A first order below min_order does not use up the reward. */
    mark = mktd_mock_count(m);
    paid(m, T0 + 1, "c", "o0", 50);
    CHECK_INT(mktd_mock_count(m), mark);
    /* Commissions by level, then the reward, referrer first. */
    paid(m, T0 + 2, "c", "o1", 1000);
    CHECK_STR(SINCE(m, mark),
              "referral.commission b "
              "{\"order_id\":\"o1\",\"buyer\":\"c\",\"level\":1,\"rate_bp\":1000,\"amount\":100}\n"
              "referral.commission a "
              "{\"order_id\":\"o1\",\"buyer\":\"c\",\"level\":2,\"rate_bp\":500,\"amount\":50}\n"
              "referral.reward b {\"referee\":\"c\",\"role\":\"referrer\",\"amount\":330}\n"
              "referral.reward c {\"referee\":\"c\",\"role\":\"referee\",\"amount\":671}\n");
    /* First qualifying order only. */
    mark = mktd_mock_count(m);
    paid(m, T0 + 3, "c", "o2", 1000);
    CHECK_INT(mktd_mock_count(m), mark + 2);
    CHECK(strstr(SINCE(m, mark), "reward") == NULL);
    /* Each referee has their own first order. */
    mark = mktd_mock_count(m);
    paid(m, T0 + 4, "b", "o3", 100);
    CHECK_STR(SINCE(m, mark),
              "referral.commission a "
              "{\"order_id\":\"o3\",\"buyer\":\"b\",\"level\":1,\"rate_bp\":1000,\"amount\":10}\n"
              "referral.reward a {\"referee\":\"b\",\"role\":\"referrer\",\"amount\":330}\n"
              "referral.reward b {\"referee\":\"b\",\"role\":\"referee\",\"amount\":671}\n");
    mktd_mock_free(m);

    /* Zero shares are not recorded; the reward comes without commission. */
    m = mk("commission: [0]\nreward: {amount: 500, referrer_share: 0}\n");
    if (!m)
        return;
    signup(m, T0, "b", "a");
    mark = mktd_mock_count(m);
    paid(m, T0 + 1, "b", "o1", 1000);
    CHECK_STR(SINCE(m, mark),
              "referral.reward b {\"referee\":\"b\",\"role\":\"referee\",\"amount\":500}\n");
    mktd_mock_free(m);

    m = mk("commission: [0]\nreward: {amount: 500, referrer_share: 100}\n");
    if (!m)
        return;
    signup(m, T0, "b", "a");
    mark = mktd_mock_count(m);
    paid(m, T0 + 1, "b", "o1", 1000);
    CHECK_STR(SINCE(m, mark),
              "referral.reward a {\"referee\":\"b\",\"role\":\"referrer\",\"amount\":500}\n");
    mktd_mock_free(m);

    m = mk("commission: [0]\nreward: {amount: 0, referrer_share: 50}\n");
    if (!m)
        return;
    signup(m, T0, "b", "a");
    mark = mktd_mock_count(m);
    paid(m, T0 + 1, "b", "o1", 1000);
    CHECK_INT(mktd_mock_count(m), mark);
    mktd_mock_free(m);

    /* Floor rounding of the referrer's share: 1 * 50 / 100 = 0. */
    m = mk("commission: [0]\nreward: {amount: 1, referrer_share: 50}\n");
    if (!m)
        return;
    signup(m, T0, "b", "a");
    mark = mktd_mock_count(m);
    paid(m, T0 + 1, "b", "o1", 1000);
    CHECK_STR(SINCE(m, mark),
              "referral.reward b {\"referee\":\"b\",\"role\":\"referee\",\"amount\":1}\n");
    mktd_mock_free(m);
}

/* ---- refunds ---- */

static void test_refunds(void)
{
    mktd_mock *m = mk("commission: [1000, 500, 250]\nreward: {amount: 100, referrer_share: 50}\n");
    size_t mark;

    if (!m)
        return;
    signup(m, T0, "b", "a");
    signup(m, T0, "c", "b");
    signup(m, T0, "d", "c");
    paid(m, T0 + 1, "d", "o1", 999);  /* 99, 49, 24 + reward */
    paid(m, T0 + 2, "d", "o2", 1000); /* 100, 50, 25 */

    /* A full refund (no amount) claws every commission back whole, in level
     * order; the rewards stay. The refund's user does not matter. */
    mark = mktd_mock_count(m);
    refund(m, T0 + 3, "someone", "o1", -1);
    CHECK_STR(SINCE(m, mark),
              "referral.clawback c {\"order_id\":\"o1\",\"level\":1,\"amount\":99}\n"
              "referral.clawback b {\"order_id\":\"o1\",\"level\":2,\"amount\":49}\n"
              "referral.clawback a {\"order_id\":\"o1\",\"level\":3,\"amount\":24}\n");
    /* Nothing is left to refund. */
    mark = mktd_mock_count(m);
    refund(m, T0 + 4, "d", "o1", -1);
    refund(m, T0 + 4, "d", "o1", 5);
    CHECK_INT(mktd_mock_count(m), mark);

    /* Partial refunds: floor(c * r / paid), capped by what is left of c. */
    refund(m, T0 + 5, "d", "o2", 333);
    CHECK_STR(SINCE(m, mark),
              "referral.clawback c {\"order_id\":\"o2\",\"level\":1,\"amount\":33}\n"
              "referral.clawback b {\"order_id\":\"o2\",\"level\":2,\"amount\":16}\n"
              "referral.clawback a {\"order_id\":\"o2\",\"level\":3,\"amount\":8}\n");
    mark = mktd_mock_count(m);
    refund(m, T0 + 6, "d", "o2", 333);
    CHECK_STR(SINCE(m, mark),
              "referral.clawback c {\"order_id\":\"o2\",\"level\":1,\"amount\":33}\n"
              "referral.clawback b {\"order_id\":\"o2\",\"level\":2,\"amount\":16}\n"
              "referral.clawback a {\"order_id\":\"o2\",\"level\":3,\"amount\":8}\n");
    /* The rest (334 left): 33, 16, 8 again; the sums never exceed the
     * commissions. */
    mark = mktd_mock_count(m);
    refund(m, T0 + 7, "d", "o2", -1);
    CHECK_STR(SINCE(m, mark),
              "referral.clawback c {\"order_id\":\"o2\",\"level\":1,\"amount\":33}\n"
              "referral.clawback b {\"order_id\":\"o2\",\"level\":2,\"amount\":16}\n"
              "referral.clawback a {\"order_id\":\"o2\",\"level\":3,\"amount\":8}\n");
    mark = mktd_mock_count(m);
    refund(m, T0 + 8, "d", "o2", -1);
    CHECK_INT(mktd_mock_count(m), mark);

    /* Refunds of orders never seen paid, or that earned nothing. */
    refund(m, T0 + 9, "d", "nope", -1);
    refund(m, T0 + 9, "d", "nope", 10);
    paid(m, T0 + 9, "a", "o3", 1000);
    refund(m, T0 + 9, "a", "o3", -1);
    CHECK_INT(mktd_mock_count(m), mark);
    mktd_mock_free(m);

    /* Over-refund counts as what is left; zero clawbacks are not recorded. */
    m = mk("commission: [1000, 30]\n");
    if (!m)
        return;
    signup(m, T0, "b", "a");
    signup(m, T0, "c", "b");
    paid(m, T0 + 1, "c", "o1", 1000); /* b: 100, a: 3 */
    mark = mktd_mock_count(m);
    CHECK_INT(mark, 4);
    refund(m, T0 + 2, "c", "o1", 600);
    CHECK_STR(SINCE(m, mark),
              "referral.clawback b {\"order_id\":\"o1\",\"level\":1,\"amount\":60}\n"
              "referral.clawback a {\"order_id\":\"o1\",\"level\":2,\"amount\":1}\n");
    mark = mktd_mock_count(m);
    refund(m, T0 + 3, "c", "o1", 100000);
    CHECK_STR(SINCE(m, mark),
              "referral.clawback b {\"order_id\":\"o1\",\"level\":1,\"amount\":40}\n"
              "referral.clawback a {\"order_id\":\"o1\",\"level\":2,\"amount\":1}\n");
    mark = mktd_mock_count(m);
    refund(m, T0 + 4, "c", "o1", 1);
    CHECK_INT(mktd_mock_count(m), mark);

    /* Small refunds: floor(3 * 100 / 1000) = 0 is not recorded. */
    paid(m, T0 + 5, "c", "o2", 1000); /* b: 100, a: 3 */
    mark = mktd_mock_count(m);
    refund(m, T0 + 6, "c", "o2", 100);
    CHECK_STR(SINCE(m, mark),
              "referral.clawback b {\"order_id\":\"o2\",\"level\":1,\"amount\":10}\n");
    mktd_mock_free(m);

    /* Clawbacks never sum to more than the commission. */
    m = mk("commission: [3333]\n");
    if (!m)
        return;
    signup(m, T0, "b", "a");
    paid(m, T0 + 1, "b", "o1", 7); /* floor(7 * 3333 / 10000) = 2 */
    mark = mktd_mock_count(m);
    long long sum = 0;
    for (int i = 0; i < 10; i++)
        refund(m, T0 + 2 + i, "b", "o1", i < 6 ? 1 : -1);
    for (size_t i = mark; i < mktd_mock_count(m); i++) {
        const mktd_mock_action *a = mktd_mock_action_at(m, i);
        const char *p = strstr(a->payload, "\"amount\":");

        CHECK_STR(a->kind, "referral.clawback");
        if (p)
            sum += atoll(p + 9);
    }
    CHECK(sum <= 2);
    mktd_mock_free(m);

    /* clawback: false claws nothing back. */
    m = mk("commission: [1000]\nclawback: false\n");
    if (!m)
        return;
    signup(m, T0, "b", "a");
    paid(m, T0 + 1, "b", "o1", 1000);
    mark = mktd_mock_count(m);
    CHECK_INT(mark, 2);
    refund(m, T0 + 2, "b", "o1", 500);
    refund(m, T0 + 3, "b", "o1", -1);
    CHECK_INT(mktd_mock_count(m), mark);
    mktd_mock_free(m);
}

/* ---- activity ---- */

static void test_disabled(void)
{
    mktd_mock *m = mk("commission: [1000]\n");
    size_t mark;

    if (!m)
        return;
    signup(m, T0, "b", "a");
    paid(m, T0 + 1, "b", "o1", 1000); /* a: 100 */
    mark = mktd_mock_count(m);
    CHECK_INT(mark, 2);

    mktd_mock_set_enabled(m, "ref", 0);
    signup(m, T0 + 2, "c", "a");
    paid(m, T0 + 3, "b", "o2", 1000);
    refund(m, T0 + 4, "b", "o1", -1); /* not seen */
    CHECK_INT(mktd_mock_count(m), mark);

    mktd_mock_set_enabled(m, "ref", 1);
    /* c was never bound (and is not new any more). */
    paid(m, T0 + 5, "c", "o3", 1000);
    CHECK_INT(mktd_mock_count(m), mark);
    /* o2 was not seen while disabled: it earns now. */
    paid(m, T0 + 6, "b", "o2", 1000);
    CHECK_INT(mktd_mock_count(m), mark + 1);
    /* The refund while disabled was not seen: all of o1 is left. */
    mark = mktd_mock_count(m);
    refund(m, T0 + 7, "b", "o1", -1);
    CHECK_STR(SINCE(m, mark),
              "referral.clawback a {\"order_id\":\"o1\",\"level\":1,\"amount\":100}\n");

    /* Outside starts..ends likewise. */
    mktd_mock_set_window(m, "ref", T0 + 100, T0 + 200);
    mark = mktd_mock_count(m);
    signup(m, T0 + 50, "d", "a");
    signup(m, T0 + 201, "e", "a");
    paid(m, T0 + 201, "b", "o4", 1000);
    CHECK_INT(mktd_mock_count(m), mark);
    signup(m, T0 + 150, "f", "a");
    CHECK_STR(SINCE(m, mark), "referral.bound f {\"referrer\":\"a\"}\n");
    mktd_mock_free(m);

    /* `when` is refused (as the daemon refuses it in a config): the
     * setting is kept as it was, and the campaign acts on its fixed inputs. */
    m = mk("commission: [1000]\n");
    if (!m)
        return;
    mktd_mock_set_when(m, "ref", "something.else");
    CHECK(strstr(mktd_mock_errors(m), "takes no `when`") != NULL);
    signup(m, T0, "b", "a");
    CHECK_STR(SINCE(m, 0), "referral.bound b {\"referrer\":\"a\"}\n");
    mktd_mock_free(m);
}

/* A helper plugin: on an input "trigger" event it emits actions shaped like
 * the referral plugin's input events. */
static const mktd_host *helper_host;

static int helper_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    mktd_obj *o;
    int rc;

    (void)data;
    (void)flags;
    if (ev->depth != 0 || strcmp(ev->type, "trigger") != 0)
        return 0;
    o = helper_host->obj_new(ctx);
    helper_host->obj_str(o, "referrer", "a");
    rc = helper_host->emit(ctx, "user.signup", "fresh", o);
    if (rc < 0)
        return rc;
    o = helper_host->obj_new(ctx);
    helper_host->obj_str(o, "order_id", "o1");
    helper_host->obj_int(o, "amount", 1000);
    rc = helper_host->emit(ctx, "order.paid", "b", o);
    if (rc < 0)
        return rc;
    o = helper_host->obj_new(ctx);
    helper_host->obj_str(o, "order_id", "o0");
    rc = helper_host->emit(ctx, "order.refunded", "b", o);
    return rc;
}

static int helper_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    (void)ctx;
    (void)params;
    *data = NULL;
    return 0;
}

static const mktd_plugin helper_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "helper",
    .version = "0",
    .init = helper_init,
    .on_event = helper_on_event,
};

static const mktd_plugin *helper_entry(const mktd_host *h)
{
    helper_host = h;
    return &helper_plugin;
}

static void test_internal_ignored(void)
{
    mktd_mock *m = mktd_mock_new();
    size_t mark;

    CHECK_INT(mktd_mock_add(m, helper_entry, "helper", NULL), 0);
    CHECK_INT(mktd_mock_add(m, mktd_plugin_entry, "ref", "commission: [1000]\n"), 0);
    signup(m, T0, "b", "a");
    paid(m, T0 + 1, "b", "o0", 1000);
    mark = mktd_mock_count(m);
    CHECK_INT(mark, 2);
    CHECK_INT(play(m, "\"type\":\"trigger\",\"user\":\"b\",\"ts\":%lld", T0 + 2), 0);
    /* Only the helper's three actions: no binding, commission or clawback. */
    CHECK_INT(mktd_mock_count(m), mark + 3);
    CHECK(strstr(SINCE(m, mark), "referral.") == NULL);
    /* The internal order.paid did not mark o1 as seen. */
    mark = mktd_mock_count(m);
    paid(m, T0 + 3, "b", "o1", 1000);
    CHECK_INT(mktd_mock_count(m), mark + 1);
    /* And "fresh" was not bound by it: it can still sign up. */
    mark = mktd_mock_count(m);
    signup(m, T0 + 4, "fresh", "a");
    CHECK_STR(SINCE(m, mark), "referral.bound fresh {\"referrer\":\"a\"}\n");
    mktd_mock_free(m);
}

static void test_large_amounts(void)
{
    mktd_mock *m = mk("commission: [9999, 10000, 1000]\n"
                      "reward: {amount: 9223372036854775807, referrer_share: 50}\n"
                      "min_order: 9223372036854775807\nwindow: 36500d\n");
    size_t mark;

    if (!m)
        return;
    signup(m, T0, "b", "a");
    signup(m, T0, "c", "b");
    signup(m, T0, "d", "c");
    mark = mktd_mock_count(m);
    paid(m, T0 + 1, "d", "o1", 9223372036854775807LL);
    CHECK_STR(SINCE(m, mark), "referral.commission c {\"order_id\":\"o1\",\"buyer\":\"d\","
                              "\"level\":1,\"rate_bp\":9999,\"amount\":9222449699651090329}\n"
                              "referral.commission b {\"order_id\":\"o1\",\"buyer\":\"d\","
                              "\"level\":2,\"rate_bp\":10000,\"amount\":9223372036854775807}\n"
                              "referral.commission a {\"order_id\":\"o1\",\"buyer\":\"d\","
                              "\"level\":3,\"rate_bp\":1000,\"amount\":922337203685477580}\n"
                              "referral.reward c {\"referee\":\"d\",\"role\":\"referrer\","
                              "\"amount\":4611686018427387903}\n"
                              "referral.reward d {\"referee\":\"d\",\"role\":\"referee\","
                              "\"amount\":4611686018427387904}\n");
    /* A partial refund of a third: floor(c * r / paid) in 128 bits. */
    mark = mktd_mock_count(m);
    refund(m, T0 + 2, "d", "o1", 3074457345618258602LL);
    CHECK_STR(
        SINCE(m, mark),
        "referral.clawback c {\"order_id\":\"o1\",\"level\":1,\"amount\":3074149899883696776}\n"
        "referral.clawback b {\"order_id\":\"o1\",\"level\":2,\"amount\":3074457345618258602}\n"
        "referral.clawback a {\"order_id\":\"o1\",\"level\":3,\"amount\":307445734561825859}\n");
    /* The rest claws back what is left, no more. */
    mark = mktd_mock_count(m);
    refund(m, T0 + 3, "d", "o1", -1);
    CHECK_STR(
        SINCE(m, mark),
        "referral.clawback c {\"order_id\":\"o1\",\"level\":1,\"amount\":6148299799767393552}\n"
        "referral.clawback b {\"order_id\":\"o1\",\"level\":2,\"amount\":6148914691236517205}\n"
        "referral.clawback a {\"order_id\":\"o1\",\"level\":3,\"amount\":614891469123651720}\n");
    mktd_mock_free(m);

    /* A binding near the end of time does not overflow ts + window. */
    m = mk("commission: [1000]\nwindow: 106751991167d\n");
    if (!m)
        return;
    signup(m, 9000000000000000000LL, "b", "a");
    mark = mktd_mock_count(m);
    paid(m, 9100000000000000000LL, "b", "o1", 100);
    CHECK_INT(mktd_mock_count(m), mark + 1);
    mktd_mock_free(m);
}

static void test_user_ids(void)
{
    /* Ids with spaces, separators and non-ASCII bytes survive the state. */
    mktd_mock *m = mk("commission: [1000, 1000]\n");
    size_t mark;

    if (!m)
        return;
    signup(m, T0, "b; 3:x", "a b;1:c");
    signup(m, T0, "c\\u00e9 ", "b; 3:x");
    mark = mktd_mock_count(m);
    paid(m, T0 + 1, "c\\u00e9 ", "o;1:2", 100);
    refund(m, T0 + 2, "x", "o;1:2", -1);
    CHECK_STR(SINCE(m, mark),
              "referral.commission b; 3:x {\"order_id\":\"o;1:2\",\"buyer\":\"c\xc3\xa9 \","
              "\"level\":1,\"rate_bp\":1000,\"amount\":10}\n"
              "referral.commission a b;1:c {\"order_id\":\"o;1:2\",\"buyer\":\"c\xc3\xa9 \","
              "\"level\":2,\"rate_bp\":1000,\"amount\":10}\n"
              "referral.clawback b; 3:x {\"order_id\":\"o;1:2\",\"level\":1,\"amount\":10}\n"
              "referral.clawback a b;1:c {\"order_id\":\"o;1:2\",\"level\":2,\"amount\":10}\n");
    mktd_mock_free(m);
}

#include "poison.h"

static void test_garbage_state(void)
{
    static const char *const bad_refs[] = {
        "", "garbage", "123", "123 ", "-", "1x b", "99999999999999999999 a", " a",
    };
    static const char *const bad_orders[] = {
        "",
        "o",
        "x;1000;0;0;1:b",
        "o;1000;0;0;5:b",
        "o;1000;0;0;0:",
        "o;1000;0;1;1:b",
        "o;1000;0;1;1:b;1;100;0;",
        "o;1000;0;1;1:b;1;100;0;2:a",
        "o;1000;0;1;1:b;1;100;200;1:a",
        "o;1000;2000;0;1:b",
        "o;-5;0;0;1:b",
        "o;1000;0;4;1:b",
        "o;1000;0;0;1:bX",
        "o;99999999999999999999;0;0;1:b",
        "o;1000;0;1;1:b;1;100;0;1:a;",
        "o;1000;0;1;1:b;0;100;0;1:a",
        "o;1000;0;0;1:b;",
        "o;1000;0;2;1:b;1;100;0;1:a",
        "o;1000;0;1;1:b;1;-100;0;1:a",
    };
    mktd_mock *m = mktd_mock_new();
    size_t mark;
    char key[32];

    CHECK_INT(mktd_mock_add(m, poison_entry, "ref", "commission: [1000, 1000]\n"), 0);

    /* An unreadable binding reads as none. */
    for (size_t i = 0; i < sizeof bad_refs / sizeof *bad_refs; i++) {
        char u[16], o[16];

        snprintf(u, sizeof u, "g%zu", i);
        snprintf(o, sizeof o, "go%zu", i);
        poison(m, u, "ref", bad_refs[i]);
        mark = mktd_mock_count(m);
        paid(m, T0, u, o, 1000);
        CHECK_INT(mktd_mock_count(m), mark);
    }
    /* ...also in the middle of a chain: the chain ends there. */
    signup(m, T0, "h2", "h1");
    poison(m, "h1", "ref", "7 ");
    mark = mktd_mock_count(m);
    paid(m, T0, "h2", "ho", 1000);
    CHECK_STR(SINCE(m, mark), "referral.commission h1 {\"order_id\":\"ho\",\"buyer\":\"h2\","
                              "\"level\":1,\"rate_bp\":1000,\"amount\":100}\n");

    /* A well-formed binding written by hand is read. */
    poison(m, "w", "ref", "1793491200000 v x");
    mark = mktd_mock_count(m);
    paid(m, T0, "w", "wo", 1000);
    CHECK_STR(SINCE(m, mark), "referral.commission v x {\"order_id\":\"wo\",\"buyer\":\"w\","
                              "\"level\":1,\"rate_bp\":1000,\"amount\":100}\n");

    /* An unreadable order record: the refund is ignored, the id stays seen. */
    signup(m, T0, "b", "a");
    for (size_t i = 0; i < sizeof bad_orders / sizeof *bad_orders; i++) {
        char o[16];

        snprintf(o, sizeof o, "bo%zu", i);
        snprintf(key, sizeof key, "order:%s", o);
        poison(m, NULL, key, bad_orders[i]);
        mark = mktd_mock_count(m);
        refund(m, T0, "b", o, -1);
        refund(m, T0, "b", o, 10);
        paid(m, T0, "b", o, 1000);
        CHECK_INT(mktd_mock_count(m), mark);
    }

    /* A well-formed record written by hand is read and updated. */
    poison(m, NULL, "order:ok", "o;1000;0;1;1:b;1;100;0;3:a;b");
    mark = mktd_mock_count(m);
    refund(m, T0, "b", "ok", 500);
    refund(m, T0, "b", "ok", -1);
    CHECK_STR(SINCE(m, mark),
              "referral.clawback a;b {\"order_id\":\"ok\",\"level\":1,\"amount\":50}\n"
              "referral.clawback a;b {\"order_id\":\"ok\",\"level\":1,\"amount\":50}\n");
    mktd_mock_free(m);
}

/* A state value of campaign "ref" as text, "(none)" when absent. */
static const char *ref_state(mktd_mock *m, const char *user, const char *key)
{
    const char *v;
    return mktd_mock_state(m, "ref", user, key, &v, NULL) == 0 ? v : "(none)";
}

/* on_forget: b is referee (of a) and referrer (of c); its referees are
 * bound to the pseudonym, its referrer's index forgets it, order records
 * name the pseudonym; b itself comes back as a new user. */
static void test_forget(void)
{
    mktd_mock *m = mk("commission: [1000, 500]\n");
    char ps[64], key[256];
    size_t mark;

    if (!m)
        return;
    signup(m, T0, "a", NULL);
    signup(m, T0 + 1, "b", "a");
    signup(m, T0 + 2, "c", "b");
    paid(m, T0 + 3, "b", "ob", 10000); /* a earns; b is the buyer */
    paid(m, T0 + 4, "c", "oc", 10000); /* b and a earn */
    CHECK_STR(ref_state(m, "a", "kid:b"), "");
    CHECK_STR(ref_state(m, "b", "kid:c"), "");
    CHECK_INT(mktd_mock_forget(m, "b", ps, sizeof ps), 0);
    CHECK_INT(strncmp(ps, "forgotten:", 10), 0);
    CHECK_INT(strlen(ps), 42);
    /* b's own state went; c is bound to the pseudonym, with its ts */
    CHECK_STR(ref_state(m, "b", "ref"), "(none)");
    CHECK_STR(ref_state(m, "b", "kid:c"), "(none)");
    CHECK_STR(ref_state(m, "a", "kid:b"), "(none)");
    snprintf(key, sizeof key, "%lld %s", T0 + 2, ps);
    CHECK_STR(ref_state(m, "c", "ref"), key);
    /* the order records name the pseudonym (buyer, beneficiary) */
    snprintf(key, sizeof key, "o;10000;0;1;42:%s;1;1000;0;1:a", ps);
    CHECK_STR(ref_state(m, NULL, "order:ob"), key);
    snprintf(key, sizeof key, "o;10000;0;2;1:c;1;1000;0;42:%s;2;500;0;1:a", ps);
    CHECK_STR(ref_state(m, NULL, "order:oc"), key);
    /* the recorded actions name it too (the host's rewrite) */
    const char *dump = mktd_mock_dump(m, 0);
    CHECK(strstr(dump, " b ") == NULL && strstr(dump, "\"b\"") == NULL);
    CHECK(strstr(dump, ps) != NULL);
    /* a clawback of c's order reaches the pseudonym's commission */
    mark = mktd_mock_count(m);
    refund(m, T0 + 5, "c", "oc", -1);
    snprintf(key, sizeof key,
             "referral.clawback %s {\"order_id\":\"oc\",\"level\":1,\"amount\":1000}\n"
             "referral.clawback a {\"order_id\":\"oc\",\"level\":2,\"amount\":500}\n",
             ps);
    CHECK_STR(mktd_mock_dump(m, mark), key);
    /* b comes back new: it may bind again (to c even: b's chain is gone) */
    mark = mktd_mock_count(m);
    signup(m, T0 + 6, "b", "c");
    CHECK_STR(mktd_mock_dump(m, mark), "referral.bound b {\"referrer\":\"c\"}\n");
    mktd_mock_free(m);
}

/* After a load (the marker set, nothing to index on a first one) the
 * index goes on growing with each binding. (Bindings older than the index
 * are indexed at the first load of this version: tests/integration
 * test_forget.py.) */
static void test_forget_after_load(void)
{
    mktd_mock *m = mk("commission: [1000]\n");
    char ps[64], want[96];
    const char *v;

    if (!m)
        return;
    CHECK_INT(mktd_mock_load(m), 0); /* first load: nothing to index */
    CHECK_STR(ref_state(m, NULL, "kids"), "1");
    signup(m, T0, "a", NULL);
    signup(m, T0 + 1, "b", "a");
    CHECK_INT(mktd_mock_state(m, "ref", "a", "kid:b", &v, NULL), 0);
    CHECK_INT(mktd_mock_forget(m, "a", ps, sizeof ps), 0);
    snprintf(want, sizeof want, "%lld %s", T0 + 1, ps);
    CHECK_STR(ref_state(m, "b", "ref"), want);
    mktd_mock_free(m);
}

int main(void)
{
    test_params();
    test_bind_basic();
    test_reject_reasons();
    test_daily_cap();
    test_commission_levels();
    test_qualifying();
    test_reward();
    test_refunds();
    test_disabled();
    test_internal_ignored();
    test_large_amounts();
    test_user_ids();
    test_garbage_state();
    test_forget();
    test_forget_after_load();
    return check_done();
}
