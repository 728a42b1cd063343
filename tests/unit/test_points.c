/* Unit tests of the points plugin on the real engine (the SDK test kit). */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/mock.h>
#include <mktd/plugin.h>

#include "check.h"

const mktd_plugin *mktd_plugin_entry(const mktd_host *host);
static const mktd_plugin *test_entry(const mktd_host *host);
#define PLUGKIT_ENTRY test_entry
#define PLUGKIT_NOTES

#include "plugkit.h"

#define HOUR_MS 3600000LL
#define DAY_MS (24 * HOUR_MS)
#define T0 1767225600000LL /* 2026-01-01T00:00:00Z */

/* ---- the plugin under a test host that keeps its notes (and passes them
 * on to the mock host's note, so nothing else changes) ---- */

static mktd_host test_host;

static const mktd_plugin *test_entry(const mktd_host *host)
{
    (void)host;
    test_host = *mktd_mock_host();
    test_host.note = plugkit_note;
    return mktd_plugin_entry(&test_host);
}

/* Fires the timers due by `until` with the notes cleared first. */
static int advance(mktd_mock *m, int64_t until)
{
    clear_notes();
    return mktd_mock_advance(m, until);
}

/* ---- helpers ---- */

static int paid(mktd_mock *m, const char *user, int64_t ts, const char *order, int64_t amount)
{
    char props[256];
    snprintf(props, sizeof props, "{\"order_id\":\"%s\",\"amount\":%" PRId64 "}", order, amount);
    return play(m, "order.paid", user, ts, props);
}

static int redeem(mktd_mock *m, const char *user, int64_t ts, const char *order, int64_t points)
{
    char props[256];
    snprintf(props, sizeof props, "{\"order_id\":\"%s\",\"points\":%" PRId64 "}", order, points);
    return play(m, "points.redeem", user, ts, props);
}

/* amount < 0: none */
static int refund(mktd_mock *m, const char *user, int64_t ts, const char *order, int64_t amount)
{
    char props[256];
    if (amount < 0)
        snprintf(props, sizeof props, "{\"order_id\":\"%s\"}", order);
    else
        snprintf(props, sizeof props, "{\"order_id\":\"%s\",\"amount\":%" PRId64 "}", order,
                 amount);
    return play(m, "order.refunded", user, ts, props);
}

/* "kind user payload" per action from index from, "@ts" added for
 * timer-driven ones. */
static const char *dump(mktd_mock *m, size_t from)
{
    static char buf[16384];
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = from; i < mktd_mock_count(m); i++) {
        const mktd_mock_action *a = mktd_mock_action_at(m, i);
        int n = a->event_id ? snprintf(buf + off, sizeof buf - off, "%s %s %s\n", a->kind, a->user,
                                       a->payload)
                            : snprintf(buf + off, sizeof buf - off, "%s %s %s @%" PRId64 "\n",
                                       a->kind, a->user, a->payload, a->ts);
        if (n < 0 || (size_t)n >= sizeof buf - off)
            break;
        off += (size_t)n;
    }
    return buf;
}

static const char *lot(mktd_mock *m, const char *user, int64_t ts, const char *order)
{
    char key[128];
    const char *v = NULL;
    size_t n;
    snprintf(key, sizeof key, "lot:%019" PRId64 ":%s", ts, order);
    return mktd_mock_state(m, "p", user, key, &v, &n) == 0 ? v : "(none)";
}

/* ---- params ---- */

static void test_params(void)
{
    mktd_mock *m = mktd_mock_new();
    const char *e;

    CHECK_ERR("expire_after: 30d\n", "params:", "rate");
    CHECK_ERR("rate: 0\n", "params:1:7:", NULL);
    CHECK_ERR("rate: -5\n", "params:1:7:", NULL);
    CHECK_ERR("rate: 1.5\n", "params:1:7:", NULL);
    CHECK_ERR("rate: 100\nexpire_after: 0\n", "params:2:15:", NULL);
    CHECK_ERR("rate: 100\nexpire_after: never\n", "params:2:15:", NULL);
    CHECK_ERR("rate: 100\nper_yuan: 1\n", "params:2:1:", "tier_window");
    CHECK_ERR("rate: 100\ntier_window: 30d\n", "params:2:14:", "needs tiers");
    CHECK_ERR("rate: 100\ntiers: gold\n", "params:2:8:", NULL);
    CHECK_ERR("rate: 100\ntiers: []\n", "params:2:8:", "empty");
    CHECK_ERR("rate: 100\ntiers:\n  - {name: a}\n", "params:3:5:", "at");
    CHECK_ERR("rate: 100\ntiers:\n  - {at: 5}\n", "params:3:5:", "name");
    CHECK_ERR("rate: 100\ntiers:\n  - {name: a, at: 0}\n", "params:3:19:", NULL);
    CHECK_ERR("rate: 100\ntiers:\n  - {name: a, at: 5, colour: red}\n", "params:3:", "colour");
    CHECK_ERR("rate: 100\ntiers:\n  - {name: a, at: 5}\n  - {name: b, at: 5}\n",
              "params:4:19:", "go up");
    CHECK_ERR("rate: 100\ntiers:\n  - {name: a, at: 5}\n  - {name: a, at: 9}\n",
              "params:4:12:", "twice");
    CHECK_ERR("rate: 100\ntiers:\n  - 5\n", "params:3:5:", NULL);
    CHECK_ERR("- rate\n", "params:1:1:", NULL);
    e = add_err(m, NULL);
    CHECK(strstr(e, "rate") != NULL);
    e = add_err(m, "rate: 0\nexpire_after: 0\nx: 1\n");
    CHECK(has_error(e, "params:1:7:", NULL));
    CHECK(has_error(e, "params:2:15:", NULL));
    CHECK(has_error(e, "params:3:1:", NULL));

    add_ok(m, "ok1", "rate: 1\n");
    add_ok(m, "ok2",
           "rate: 100\nexpire_after: 365d\ntiers: [{name: silver, at: 1000}, {name: "
           "gold, at: 5000}]\ntier_window: 365d\n");
    add_ok(m, "ok3", "rate: 100\ntiers: ~\n");
    mktd_mock_free(m);
}

/* ---- earning and redeeming ---- */

static void test_earn(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "rate: 150\n");                   /* 1.5 points per yuan */
    CHECK_INT(paid(m, "u", T0, "o1", 999), 0);       /* 14.985 */
    CHECK_INT(paid(m, "u", T0 + 1, "o2", 10000), 0); /* 150 */
    CHECK_INT(paid(m, "u", T0 + 2, "o3", 66), 0);    /* 0.99: nothing */
    CHECK_INT(paid(m, "u", T0 + 3, "o2", 10000), 0); /* seen: nothing */
    CHECK_STR(dump(m, 0), "points.earned u {\"order_id\":\"o1\",\"points\":14,\"balance\":14}\n"
                          "points.earned u {\"order_id\":\"o2\",\"points\":150,\"balance\":164}\n");
    CHECK_INT(mktd_mock_counter(m, "p", "u", "balance"), 164);
    CHECK_STR(lot(m, "u", T0, "o1"), "14 14 0");
    CHECK_STR(lot(m, "u", T0 + 1, "o2"), "150 150 0");
    /* a large order does not overflow */
    CHECK_INT(paid(m, "w", T0 + 4, "big", INT64_MAX), 0);
    CHECK_STR(dump(m, 2), "points.earned w "
                          "{\"order_id\":\"big\",\"points\":138350580552821637,"
                          "\"balance\":138350580552821637}\n");
    /* the lot is stamped with now, not the late event's own ts */
    CHECK_INT(paid(m, "u", T0 - DAY_MS, "late", 10000), 0);
    CHECK_STR(lot(m, "u", T0 + 4, "late"), "150 150 0");
    mktd_mock_free(m);
}

static void test_redeem(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "rate: 100\nexpire_after: 30d\n");
    CHECK_INT(paid(m, "u", T0, "o1", 10000), 0);             /* 100 */
    CHECK_INT(paid(m, "u", T0 + DAY_MS, "o2", 5000), 0);     /* 50 */
    CHECK_INT(paid(m, "u", T0 + 2 * DAY_MS, "o3", 3000), 0); /* 30 */
    mktd_mock_clear(m);
    /* insufficient: nothing changes */
    CHECK_INT(redeem(m, "u", T0 + 3 * DAY_MS, "r1", 181), 0);
    CHECK_STR(dump(m, 0), "points.rejected u "
                          "{\"order_id\":\"r1\",\"points\":181,\"reason\":\"insufficient\"}\n");
    CHECK_INT(mktd_mock_counter(m, "p", "u", "balance"), 180);
    /* oldest first, across lots */
    CHECK_INT(redeem(m, "u", T0 + 3 * DAY_MS, "r2", 120), 0);
    CHECK_STR(dump(m, 1),
              "points.redeemed u {\"order_id\":\"r2\",\"points\":120,\"balance\":60}\n");
    CHECK_STR(lot(m, "u", T0, "o1"), "(none)");
    CHECK_STR(lot(m, "u", T0 + DAY_MS, "o2"), "50 30 0");
    CHECK_STR(lot(m, "u", T0 + 2 * DAY_MS, "o3"), "30 30 0");
    /* the expiry follows: o1 is spent, so the next one due is o2's */
    int64_t due;
    CHECK_INT(mktd_mock_timer(m, "p", "u", "expire", &due), 0);
    CHECK_INT(due, T0 + 31 * DAY_MS);
    /* the whole balance */
    CHECK_INT(redeem(m, "u", T0 + 3 * DAY_MS, "r3", 60), 0);
    CHECK_STR(dump(m, 2), "points.redeemed u {\"order_id\":\"r3\",\"points\":60,\"balance\":0}\n");
    CHECK_INT(mktd_mock_timer(m, "p", "u", "expire", &due), -ENOENT);
    CHECK_INT(redeem(m, "u", T0 + 3 * DAY_MS, "r4", 1), 0);
    CHECK_STR(dump(m, 3), "points.rejected u "
                          "{\"order_id\":\"r4\",\"points\":1,\"reason\":\"insufficient\"}\n");
    /* malformed redemptions are ignored */
    CHECK_INT(play(m, "points.redeem", "u", T0 + 3 * DAY_MS, "{\"order_id\":\"r5\"}"), 0);
    CHECK_INT(play(m, "points.redeem", "u", T0 + 3 * DAY_MS, "{\"order_id\":\"r5\",\"points\":0}"),
              0);
    CHECK_INT(play(m, "points.redeem", "u", T0 + 3 * DAY_MS, "{\"points\":5}"), 0);
    CHECK_INT(mktd_mock_count(m), 4);
    mktd_mock_free(m);
}

static void test_expiry(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "rate: 100\nexpire_after: 30d\n");
    CHECK_INT(paid(m, "u", T0, "o1", 10000), 0);         /* 100 */
    CHECK_INT(paid(m, "u", T0 + DAY_MS, "o2", 5000), 0); /* 50 */
    CHECK_INT(redeem(m, "u", T0 + 2 * DAY_MS, "r1", 40), 0);
    mktd_mock_clear(m);
    CHECK_INT(mktd_mock_advance(m, T0 + 30 * DAY_MS - 1), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    /* the oldest first: what is left of o1 (60), then o2 */
    CHECK_INT(mktd_mock_advance(m, T0 + 30 * DAY_MS), 0);
    CHECK_STR(dump(m, 0), "points.expired u {\"points\":60,\"balance\":50} @1769817600000\n");
    CHECK_INT(mktd_mock_advance(m, T0 + 31 * DAY_MS), 0);
    CHECK_STR(dump(m, 1), "points.expired u {\"points\":50,\"balance\":0} @1769904000000\n");
    CHECK_INT(mktd_mock_counter(m, "p", "u", "balance"), 0);
    CHECK_STR(lot(m, "u", T0, "o1"), "(none)");
    int64_t due;
    CHECK_INT(mktd_mock_timer(m, "p", "u", "expire", &due), -ENOENT);

    /* two lots of one moment expire together; a spent lot never does */
    mktd_mock_clear(m);
    CHECK_INT(paid(m, "v", T0 + 40 * DAY_MS, "a", 1000), 0);
    CHECK_INT(paid(m, "v", T0 + 40 * DAY_MS, "b", 2000), 0);
    CHECK_INT(paid(m, "v", T0 + 41 * DAY_MS, "c", 500), 0);
    CHECK_INT(redeem(m, "v", T0 + 41 * DAY_MS, "r", 25), 0); /* a:10, b:15 */
    CHECK_INT(mktd_mock_advance(m, T0 + 80 * DAY_MS), 0);
    CHECK_STR(dump(m, 4), "points.expired v {\"points\":5,\"balance\":5} @1773273600000\n"
                          "points.expired v {\"points\":5,\"balance\":0} @1773360000000\n");
    mktd_mock_free(m);
}

static void test_refund(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "rate: 100\nexpire_after: 30d\n");
    CHECK_INT(paid(m, "u", T0, "o1", 10000), 0);     /* 100 */
    CHECK_INT(paid(m, "u", T0 + 1, "o2", 5000), 0);  /* 50 */
    CHECK_INT(paid(m, "u", T0 + 2, "o3", 20000), 0); /* 200 */
    CHECK_INT(redeem(m, "u", T0 + 3, "r1", 80), 0);  /* o1 keeps 20 */
    mktd_mock_clear(m);
    /* a partial refund leaves the points; the rest of it is the full one */
    CHECK_INT(refund(m, "u", T0 + 4, "o3", 5000), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(refund(m, "u", T0 + 5, "o3", 15000), 0);
    CHECK_STR(dump(m, 0),
              "points.reversed u {\"order_id\":\"o3\",\"points\":200,\"balance\":70}\n");
    /* o1 earned 100: its own 20 first, then the balance (o2's 50), never
     * more than the balance */
    CHECK_INT(refund(m, "u", T0 + 6, "o1", -1), 0);
    CHECK_STR(dump(m, 1), "points.reversed u {\"order_id\":\"o1\",\"points\":70,\"balance\":0}\n");
    CHECK_INT(mktd_mock_counter(m, "p", "u", "balance"), 0);
    CHECK_STR(lot(m, "u", T0, "o1"), "(none)");
    CHECK_STR(lot(m, "u", T0 + 1, "o2"), "(none)");
    int64_t due;
    CHECK_INT(mktd_mock_timer(m, "p", "u", "expire", &due), -ENOENT);
    /* a second refund of it, an unknown order, the empty balance */
    CHECK_INT(refund(m, "u", T0 + 7, "o1", -1), 0);
    CHECK_INT(refund(m, "u", T0 + 7, "o9", -1), 0);
    CHECK_INT(refund(m, "u", T0 + 7, "o2", -1), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    /* a refund of more than was paid is a full one; the refund is matched
     * by order id: the buyer's points go, whoever reports it */
    CHECK_INT(paid(m, "v", T0 + 8, "o4", 1000), 0);
    CHECK_INT(refund(m, "shop", T0 + 9, "o4", 99999), 0);
    CHECK_STR(dump(m, 2), "points.earned v {\"order_id\":\"o4\",\"points\":10,\"balance\":10}\n"
                          "points.reversed v {\"order_id\":\"o4\",\"points\":10,\"balance\":0}\n");
    /* the reversal comes from the order's own lot first, not the oldest */
    mktd_mock_clear(m);
    CHECK_INT(paid(m, "w", T0 + 10, "a", 1000), 0);
    CHECK_INT(paid(m, "w", T0 + 11, "b", 2000), 0);
    CHECK_INT(refund(m, "w", T0 + 12, "b", -1), 0);
    CHECK_STR(lot(m, "w", T0 + 10, "a"), "10 10 0");
    CHECK_STR(lot(m, "w", T0 + 11, "b"), "(none)");
    mktd_mock_free(m);
}

static void test_expired_not_reversed(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "rate: 100\nexpire_after: 10d\n");
    CHECK_INT(paid(m, "u", T0, "o1", 10000), 0); /* 100 */
    CHECK_INT(redeem(m, "u", T0 + 1, "r1", 30), 0);
    CHECK_INT(paid(m, "u", T0 + 5 * DAY_MS, "o2", 50000), 0); /* 500 */
    CHECK_INT(mktd_mock_advance(m, T0 + 10 * DAY_MS), 0);     /* o1's 70 expire */
    mktd_mock_clear(m);
    /* o1 earned 100; 70 of it expired already: only 30 are reversed (o1's
     * lot is empty, so from o2) */
    CHECK_INT(refund(m, "u", T0 + 11 * DAY_MS, "o1", -1), 0);
    CHECK_STR(dump(m, 0),
              "points.reversed u {\"order_id\":\"o1\",\"points\":30,\"balance\":470}\n");
    /* o3 expires whole: its refund reverses nothing */
    CHECK_INT(paid(m, "u", T0 + 11 * DAY_MS, "o3", 2000), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 21 * DAY_MS), 0);
    mktd_mock_clear(m);
    CHECK_INT(paid(m, "u", T0 + 22 * DAY_MS, "o4", 1000), 0);
    CHECK_INT(refund(m, "u", T0 + 22 * DAY_MS, "o3", -1), 0);
    CHECK_STR(dump(m, 0), "points.earned u {\"order_id\":\"o4\",\"points\":10,\"balance\":10}\n");
    CHECK_INT(mktd_mock_counter(m, "p", "u", "balance"), 10);
    mktd_mock_free(m);
}

#define TIERS "rate: 100\ntiers: [{name: silver, at: 100}, {name: gold, at: 300}]\n"

static void test_tiers(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", TIERS "tier_window: 30d\n");
    CHECK_INT(paid(m, "u", T0, "o1", 5000), 0);               /* 50: none */
    CHECK_INT(paid(m, "u", T0 + DAY_MS, "o2", 10000), 0);     /* 150: silver */
    CHECK_INT(paid(m, "u", T0 + 2 * DAY_MS, "o3", 20000), 0); /* 350: gold */
    CHECK_STR(dump(m, 0), "points.earned u {\"order_id\":\"o1\",\"points\":50,\"balance\":50}\n"
                          "points.earned u {\"order_id\":\"o2\",\"points\":100,\"balance\":150}\n"
                          "tier.changed u {\"from\":null,\"to\":\"silver\"}\n"
                          "points.earned u {\"order_id\":\"o3\",\"points\":200,\"balance\":350}\n"
                          "tier.changed u {\"from\":\"silver\",\"to\":\"gold\"}\n");
    /* spending points does not lower the tier: it counts points earned */
    mktd_mock_clear(m);
    CHECK_INT(redeem(m, "u", T0 + 3 * DAY_MS, "r1", 340), 0);
    CHECK_STR(dump(m, 0),
              "points.redeemed u {\"order_id\":\"r1\",\"points\":340,\"balance\":10}\n");
    /* a refund lowers it (the points earned go) */
    mktd_mock_clear(m);
    CHECK_INT(refund(m, "u", T0 + 4 * DAY_MS, "o3", -1), 0);
    CHECK_STR(dump(m, 0), "points.reversed u {\"order_id\":\"o3\",\"points\":10,\"balance\":0}\n"
                          "tier.changed u {\"from\":\"gold\",\"to\":\"silver\"}\n");
    CHECK_INT(mktd_mock_counter(m, "p", "u", "tier_sum"), 150);
    /* o1 leaves the window at T0 + 30d: 100 left, still silver */
    mktd_mock_clear(m);
    CHECK_INT(mktd_mock_advance(m, T0 + 30 * DAY_MS), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(mktd_mock_counter(m, "p", "u", "tier_sum"), 100);
    CHECK_STR(lot(m, "u", T0, "o1"), "(none)"); /* spent and out of the window */
    /* o2 (at T0 + 1d) leaves at T0 + 31d, not a millisecond before, and
     * the tier drops with no event, stamped with the timer's due time */
    CHECK_INT(mktd_mock_advance(m, T0 + 31 * DAY_MS - 1), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 31 * DAY_MS), 0);
    CHECK_STR(dump(m, 0), "tier.changed u {\"from\":\"silver\",\"to\":null} @1769904000000\n");
    CHECK_INT(mktd_mock_counter(m, "p", "u", "tier_sum"), 0);
    CHECK_INT(mktd_mock_counter(m, "p", "u", "tier"), 0);
    int64_t due;
    CHECK_INT(mktd_mock_timer(m, "p", "u", "tier", &due), -ENOENT);

    /* straight from none to the top, and down by the clock in one step */
    mktd_mock_clear(m);
    CHECK_INT(paid(m, "v", T0 + 40 * DAY_MS, "big", 40000), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 70 * DAY_MS), 0);
    CHECK_STR(dump(m, 0), "points.earned v {\"order_id\":\"big\",\"points\":400,\"balance\":400}\n"
                          "tier.changed v {\"from\":null,\"to\":\"gold\"}\n"
                          "tier.changed v {\"from\":\"gold\",\"to\":null} @1773273600000\n");
    /* the lot stays while it holds points; the balance is untouched */
    CHECK_STR(lot(m, "v", T0 + 40 * DAY_MS, "big"), "400 400 0");
    CHECK_INT(mktd_mock_counter(m, "p", "v", "balance"), 400);
    mktd_mock_free(m);

    /* without tier_window every point ever earned counts */
    m = mktd_mock_new();
    add_ok(m, "p", TIERS);
    CHECK_INT(paid(m, "u", T0, "o1", 20000), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 400 * DAY_MS), 0);
    CHECK_INT(paid(m, "u", T0 + 400 * DAY_MS, "o2", 10000), 0);
    CHECK_INT(refund(m, "u", T0 + 401 * DAY_MS, "o2", -1), 0);
    CHECK_STR(dump(m, 0), "points.earned u {\"order_id\":\"o1\",\"points\":200,\"balance\":200}\n"
                          "tier.changed u {\"from\":null,\"to\":\"silver\"}\n"
                          "points.earned u {\"order_id\":\"o2\",\"points\":100,\"balance\":300}\n"
                          "tier.changed u {\"from\":\"silver\",\"to\":\"gold\"}\n"
                          "points.reversed u {\"order_id\":\"o2\",\"points\":100,\"balance\":200}\n"
                          "tier.changed u {\"from\":\"gold\",\"to\":\"silver\"}\n");
    mktd_mock_free(m);
}

/* ---- flags, caps, groups ---- */

static const mktd_host *other_host;

static int other_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    (void)data;
    if (!(flags & MKTD_F_MATCH) || strcmp(ev->type, "order.paid") != 0)
        return 0;
    return other_host->emit(ctx, "promo.applied", ev->user, NULL);
}

static int other_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    (void)ctx;
    (void)params;
    *data = NULL;
    return 0;
}

static const mktd_plugin other_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "other",
    .version = "test",
    .init = other_init,
    .on_event = other_on_event,
};

static const mktd_plugin *other_entry(const mktd_host *host)
{
    other_host = host;
    return &other_plugin;
}

static void test_excluded(void)
{
    mktd_mock *m = mktd_mock_new();

    CHECK_INT(mktd_mock_add(m, other_entry, "promo", NULL), 0);
    add_ok(m, "p", "rate: 100\n");
    mktd_mock_set_group(m, "promo", "one");
    mktd_mock_set_group(m, "p", "one");
    CHECK_INT(paid(m, "u", T0, "o1", 10000), 0);
    CHECK_STR(mktd_mock_dump(m, 0), "promo.applied u {}\n");
    CHECK_INT(mktd_mock_counter(m, "p", "u", "balance"), 0);
    /* the order is kept as seen: paid again it earns nothing */
    mktd_mock_set_group(m, "promo", NULL);
    mktd_mock_set_when(m, "promo", "nothing");
    CHECK_INT(paid(m, "u", T0 + 1, "o1", 10000), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    /* its refund reverses nothing; redemptions are not subject to groups */
    CHECK_INT(paid(m, "u", T0 + 2, "o2", 10000), 0);
    mktd_mock_set_group(m, "promo", "one");
    mktd_mock_set_when(m, "promo", NULL);
    CHECK_INT(refund(m, "u", T0 + 3, "o1", -1), 0);
    CHECK_INT(redeem(m, "u", T0 + 4, "r", 100), 0);
    CHECK_STR(mktd_mock_dump(m, 1),
              "points.earned u {\"order_id\":\"o2\",\"points\":100,\"balance\":100}\n"
              "points.redeemed u {\"order_id\":\"r\",\"points\":100,\"balance\":0}\n");
    mktd_mock_free(m);
}

static void test_capped(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "rate: 100\n");
    CHECK_INT(mktd_mock_set_caps(m, "[{id: once, kinds: [points.earned, points.redeemed], max: 1, "
                                    "per: 1d}]"),
              0);
    CHECK_INT(paid(m, "u", T0, "o1", 10000), 0);
    CHECK_INT(paid(m, "u", T0 + 1, "o2", 10000), 0); /* capped: not earned */
    CHECK_INT(mktd_mock_counter(m, "p", "u", "balance"), 100);
    CHECK_INT(redeem(m, "u", T0 + 2, "r1", 50), 0); /* capped: not redeemed */
    CHECK_INT(mktd_mock_counter(m, "p", "u", "balance"), 100);
    CHECK_INT(refund(m, "u", T0 + 3, "o2", -1), 0); /* it earned nothing */
    CHECK_STR(mktd_mock_dump(m, 0),
              "points.earned u {\"order_id\":\"o1\",\"points\":100,\"balance\":100}\n");
    CHECK_INT(redeem(m, "u", T0 + 2 * DAY_MS, "r2", 100), 0);
    CHECK_STR(mktd_mock_dump(m, 1),
              "points.redeemed u {\"order_id\":\"r2\",\"points\":100,\"balance\":0}\n");
    mktd_mock_free(m);
}

static void test_inactive(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", TIERS "expire_after: 10d\ntier_window: 5d\n");
    CHECK_INT(paid(m, "u", T0, "o1", 10000), 0);
    CHECK_INT(mktd_mock_count(m), 2); /* earned, silver */
    mktd_mock_set_enabled(m, "p", 0);
    /* a disabled campaign earns, redeems and reverses nothing */
    CHECK_INT(paid(m, "u", T0 + 1, "o2", 10000), 0);
    CHECK_INT(redeem(m, "u", T0 + 2, "r", 10), 0);
    CHECK_INT(refund(m, "u", T0 + 3, "o1", -1), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    /* its timers fire and record nothing: the points expire all the same;
     * the tier stays until the campaign is active again */
    CHECK_INT(mktd_mock_advance(m, T0 + 10 * DAY_MS), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_INT(mktd_mock_counter(m, "p", "u", "balance"), 0);
    CHECK_INT(mktd_mock_counter(m, "p", "u", "tier"), 1);
    mktd_mock_set_enabled(m, "p", 1);
    CHECK_INT(paid(m, "u", T0 + 11 * DAY_MS, "o3", 5000), 0);
    CHECK_STR(dump(m, 2), "points.earned u {\"order_id\":\"o3\",\"points\":50,\"balance\":50}\n"
                          "tier.changed u {\"from\":\"silver\",\"to\":null}\n");
    /* o2 was not seen: paid again now, it earns */
    CHECK_INT(paid(m, "u", T0 + 11 * DAY_MS, "o2", 10000), 0);
    CHECK_INT(mktd_mock_count(m), 6);
    mktd_mock_free(m);
}

static void test_when(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "rate: 100\n");
    mktd_mock_set_when(m, "p", "order.paid");
    CHECK_INT(paid(m, "u", T0, "o1", 10000), 0);
    /* redemptions and refunds are not named by `when`: they go on */
    CHECK_INT(redeem(m, "u", T0 + 1, "r", 30), 0);
    CHECK_INT(refund(m, "u", T0 + 2, "o1", -1), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "points.earned u {\"order_id\":\"o1\",\"points\":100,\"balance\":100}\n"
              "points.redeemed u {\"order_id\":\"r\",\"points\":30,\"balance\":70}\n"
              "points.reversed u {\"order_id\":\"o1\",\"points\":70,\"balance\":0}\n");
    /* an order `when` does not match earns nothing, and is seen */
    mktd_mock_set_when(m, "p", "order.big");
    CHECK_INT(paid(m, "u", T0 + 3, "o2", 10000), 0);
    mktd_mock_set_when(m, "p", "order.paid");
    CHECK_INT(paid(m, "u", T0 + 4, "o2", 10000), 0);
    CHECK_INT(mktd_mock_count(m), 3);
    mktd_mock_free(m);
}

/* ---- notes: the reasons explanations give ---- */

static void test_notes(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", TIERS "expire_after: 10d\ntier_window: 30d\n");
    /* earned, up a tier */
    CHECK_INT(paid(m, "u", T0, "o1", 15000), 0); /* 150: silver */
    CHECK_NOTE("tier of u: 150 points within the window");
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_INT(paid(m, "u", T0 + 1, "o2", 2000), 0); /* 20 */
    /* seen before, too small */
    CHECK_INT(paid(m, "u", T0 + 2, "o1", 15000), 0);
    CHECK_NOTE("order o1 was seen paid before: it earns nothing");
    CHECK_INT(paid(m, "u", T0 + 3, "o3", 99), 0);
    CHECK_NOTE("order o3 earns 0 points");
    /* (an order.paid without order_id or amount never gets here: the
     * daemon refuses it as invalid_event) */
    CHECK_INT(mktd_mock_count(m), 3);
    /* insufficient, malformed redemptions */
    CHECK_INT(redeem(m, "u", T0 + 5, "r1", 171), 0);
    CHECK_NOTE("insufficient: 171 asked, 170 in the balance");
    CHECK_INT(play(m, "points.redeem", "u", T0 + 5, "{\"order_id\":\"r2\",\"points\":0}"), 0);
    CHECK_NOTE("points.redeem without points (an integer >= 1): ignored");
    CHECK_INT(play(m, "points.redeem", "u", T0 + 5, "{\"points\":5}"), 0);
    CHECK_NOTE("points.redeem without an order_id of 1-128 bytes: ignored");
    /* refunds: unknown, partial, nothing earned, twice, balance empty */
    CHECK_INT(refund(m, "u", T0 + 6, "o9", -1), 0);
    CHECK_NOTE("order o9 was not seen paid: nothing to reverse");
    CHECK_INT(refund(m, "u", T0 + 6, "o2", 500), 0);
    CHECK_NOTE("order o2: a partial refund; its points stay");
    CHECK_INT(refund(m, "u", T0 + 6, "o3", -1), 0);
    CHECK_NOTE("order o3: nothing to reverse (0 points, 0 expired)");
    CHECK_INT(refund(m, "u", T0 + 7, "o3", -1), 0);
    CHECK_NOTE("order o3 is refunded already");
    CHECK_INT(redeem(m, "u", T0 + 8, "r3", 170), 0);
    CHECK_INT(refund(m, "u", T0 + 9, "o2", -1), 0);
    CHECK_NOTE("order o2: the balance is empty, nothing reversed");
    /* o2's reversal left 150 in the window (silver); o1's takes it to 0 */
    CHECK_INT(refund(m, "u", T0 + 10, "o1", -1), 0);
    CHECK_NOTE("order o1: the balance is empty, nothing reversed");
    CHECK_NOTE("tier of u: 0 points within the window");
    CHECK_STR(dump(m, 3), "points.rejected u "
                          "{\"order_id\":\"r1\",\"points\":171,\"reason\":\"insufficient\"}\n"
                          "points.redeemed u {\"order_id\":\"r3\",\"points\":170,\"balance\":0}\n"
                          "tier.changed u {\"from\":\"silver\",\"to\":null}\n");
    /* an order whose points expired whole reverses nothing */
    CHECK_INT(paid(m, "v", T0 + DAY_MS, "o5", 2000), 0); /* 20 */
    CHECK_INT(advance(m, T0 + 11 * DAY_MS), 0);
    CHECK_INT(refund(m, "v", T0 + 12 * DAY_MS, "o5", -1), 0);
    CHECK_NOTE("order o5: nothing to reverse (20 points, 20 expired)");
    /* a drop by the clock alone */
    CHECK_INT(paid(m, "w", T0 + 20 * DAY_MS, "o6", 10000), 0); /* 100: silver */
    CHECK_INT(advance(m, T0 + 50 * DAY_MS), 0);
    CHECK_NOTE("tier of w: 0 points within the window");
    mktd_mock_free(m);

    /* inactive: the timers change nothing that shows, and say so */
    m = mktd_mock_new();
    add_ok(m, "p", TIERS "expire_after: 10d\ntier_window: 5d\n");
    CHECK_INT(paid(m, "u", T0, "o1", 10000), 0);
    mktd_mock_set_enabled(m, "p", 0);
    CHECK_INT(advance(m, T0 + 5 * DAY_MS), 0);
    CHECK_NOTE("tier of u would change, but the campaign is inactive");
    CHECK_INT(advance(m, T0 + 10 * DAY_MS), 0);
    CHECK_NOTE("100 points of u expired while the campaign was inactive");
    CHECK_INT(mktd_mock_count(m), 2);
    mktd_mock_free(m);

    /* capped: earned, redeemed, tier.changed */
    m = mktd_mock_new();
    add_ok(m, "p", TIERS);
    CHECK_INT(mktd_mock_set_caps(m,
                                 "[{id: once, kinds: [points.earned, points.redeemed], max: 1, "
                                 "per: 1d}, {id: tier, kinds: [tier.changed], max: 0, per: 1d}]"),
              0);
    CHECK_INT(paid(m, "u", T0, "o1", 10000), 0);
    CHECK_NOTE("tier.changed for u was capped");
    CHECK_INT(paid(m, "u", T0 + 1, "o2", 10000), 0);
    CHECK_NOTE("points.earned for u was capped");
    CHECK_INT(redeem(m, "u", T0 + 2, "r1", 50), 0);
    CHECK_NOTE("points.redeemed for u was capped");
    CHECK_STR(mktd_mock_dump(m, 0),
              "points.earned u {\"order_id\":\"o1\",\"points\":100,\"balance\":100}\n");
    mktd_mock_free(m);

    /* capped: rejected */
    m = mktd_mock_new();
    add_ok(m, "p", "rate: 100\n");
    CHECK_INT(mktd_mock_set_caps(m, "[{id: none, kinds: [points.rejected], max: 0, per: 1d}]"), 0);
    CHECK_INT(redeem(m, "u", T0, "r1", 50), 0);
    CHECK_NOTE("insufficient: 50 asked, 0 in the balance");
    CHECK_NOTE("points.rejected for u was capped");
    CHECK_INT(mktd_mock_count(m), 0);
    mktd_mock_free(m);

    /* capped: reversed, expired (the points go all the same) */
    m = mktd_mock_new();
    add_ok(m, "p", "rate: 100\nexpire_after: 10d\n");
    CHECK_INT(mktd_mock_set_caps(m, "[{id: none, kinds: [points.reversed, points.expired], max: 0, "
                                    "per: 1d}]"),
              0);
    CHECK_INT(paid(m, "u", T0, "o1", 10000), 0);
    CHECK_INT(paid(m, "u", T0 + 1, "o2", 10000), 0);
    CHECK_INT(refund(m, "u", T0 + 2, "o1", -1), 0);
    CHECK_NOTE("points.reversed for u was capped");
    CHECK_INT(advance(m, T0 + 11 * DAY_MS), 0);
    CHECK_NOTE("points.expired for u was capped");
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_INT(mktd_mock_counter(m, "p", "u", "balance"), 0);
    mktd_mock_free(m);

    /* excluded by its group */
    m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, other_entry, "promo", NULL), 0);
    add_ok(m, "p", "rate: 100\n");
    mktd_mock_set_group(m, "promo", "one");
    mktd_mock_set_group(m, "p", "one");
    CHECK_INT(paid(m, "u", T0, "o1", 10000), 0);
    CHECK_NOTE("order o1 earns nothing: excluded by the campaign's group");
    mktd_mock_free(m);
}

/* on_forget called through the campaign itself (test_forget_by_host goes
 * through the daemon's forget): the campaign-wide order records name the
 * pseudonym */
static mktd_plugin wrapped;
static const mktd_host *wrapped_host;

static int wrapped_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    const mktd_plugin *real = mktd_plugin_entry(wrapped_host);
    if (strcmp(ev->type, "test.forget") == 0)
        return real->on_forget(ctx, data, ev->user, "forgotten:x");
    return real->on_event(ctx, data, ev, flags);
}

static const mktd_plugin *wrapped_entry(const mktd_host *host)
{
    wrapped_host = host;
    wrapped = *mktd_plugin_entry(host);
    wrapped.on_event = wrapped_on_event;
    return &wrapped;
}

static void test_forget(void)
{
    mktd_mock *m = mktd_mock_new();
    const char *v;
    size_t n;

    CHECK_INT(mktd_mock_add(m, wrapped_entry, "p", "rate: 100\n"), 0);
    CHECK_INT(paid(m, "bob", T0, "o1", 10000), 0);
    CHECK_INT(paid(m, "amy", T0, "o2", 10000), 0);
    CHECK_INT(play(m, "test.forget", "bob", T0 + 1, NULL), 0);
    CHECK_INT(mktd_mock_state(m, "p", NULL, "order:o1", &v, &n), 0);
    CHECK_STR(v, "10000 0 100 0 0 1767225600000 forgotten:x");
    CHECK_INT(mktd_mock_state(m, "p", NULL, "order:o2", &v, &n), 0);
    CHECK_STR(v, "10000 0 100 0 0 1767225600000 amy");
    mktd_mock_free(m);
}

/* The daemon's forget (mktd_mock_forget): the user's lots, counters and
 * timers go with it, its order records name the pseudonym, and it earns
 * again from nothing. */
static void test_forget_by_host(void)
{
    mktd_mock *m = mktd_mock_new();
    char ps[64], want[512];
    const char *v;
    int64_t due;

    add_ok(m, "p", "rate: 100\nexpire_after: 30d\n");
    CHECK_INT(paid(m, "bob", T0, "o1", 10000), 0);
    CHECK_INT(paid(m, "amy", T0, "o2", 10000), 0);
    CHECK_INT(mktd_mock_counter(m, "p", "bob", "balance"), 100);
    CHECK_INT(mktd_mock_timer(m, "p", "bob", "expire", &due), 0);
    CHECK_INT(mktd_mock_forget(m, "bob", ps, sizeof ps), 0);
    CHECK_INT(mktd_mock_state(m, "p", NULL, "order:o1", &v, NULL), 0);
    snprintf(want, sizeof want, "10000 0 100 0 0 %lld %s", (long long)T0, ps);
    CHECK_STR(v, want);
    CHECK_INT(mktd_mock_state(m, "p", NULL, "order:o2", &v, NULL), 0);
    snprintf(want, sizeof want, "10000 0 100 0 0 %lld amy", (long long)T0);
    CHECK_STR(v, want);
    CHECK_INT(mktd_mock_counter(m, "p", "bob", "balance"), 0);
    CHECK_INT(mktd_mock_timer(m, "p", "bob", "expire", &due), -ENOENT);
    CHECK_INT(mktd_mock_timer(m, "p", "amy", "expire", &due), 0);
    snprintf(want, sizeof want,
             "points.earned %s {\"order_id\":\"o1\",\"points\":100,\"balance\":100}\n"
             "points.earned amy {\"order_id\":\"o2\",\"points\":100,\"balance\":100}\n",
             ps);
    CHECK_STR(mktd_mock_dump(m, 0), want);
    /* a refund of the old order reverses nothing of the new bob */
    CHECK_INT(paid(m, "bob", T0 + 1, "o3", 5000), 0);
    CHECK_INT(refund(m, "bob", T0 + 2, "o1", -1), 0);
    CHECK_INT(mktd_mock_counter(m, "p", "bob", "balance"), 50);
    mktd_mock_free(m);
}

int main(void)
{
    test_params();
    test_earn();
    test_redeem();
    test_expiry();
    test_refund();
    test_expired_not_reversed();
    test_tiers();
    test_excluded();
    test_capped();
    test_inactive();
    test_when();
    test_notes();
    test_forget();
    test_forget_by_host();
    return check_done();
}
