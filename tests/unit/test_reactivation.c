/* Unit tests of the reactivation plugin against the mock host. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/mock.h>
#include <mktd/plugin.h>

#include "check.h"

const mktd_plugin *mktd_plugin_entry(const mktd_host *host);

#define S INT64_C(1000)
#define MIN (60 * S)
#define HOUR (60 * MIN)
#define DAY (24 * HOUR)
/* 2026-01-01T00:00:00Z */
#define T0 INT64_C(1767225600000)

static int ev_seq;

/* Plays one input event. */
static int play(mktd_mock *m, const char *type, const char *user, int64_t ts)
{
    char line[512];
    snprintf(line, sizeof line,
             "{\"id\":\"e%d\",\"type\":\"%s\",\"user\":\"%s\",\"ts\":%" PRId64 "}", ++ev_seq, type,
             user, ts);
    return mktd_mock_event(m, line);
}

/* A mock with one campaign; NULL (and a failed CHECK) when it is refused. */
static mktd_mock *setup(const char *id, const char *yaml)
{
    mktd_mock *m = mktd_mock_new();
    int rc = mktd_mock_add(m, mktd_plugin_entry, id, yaml);
    CHECK_INT(rc, 0);
    if (rc != 0) {
        fprintf(stderr, "  errors: %s\n", mktd_mock_errors(m));
        mktd_mock_free(m);
        return NULL;
    }
    CHECK_INT(mktd_mock_load(m), 0);
    return m;
}

/* The errors of a refused config (an empty string when it was accepted). */
static char errbuf[4096];
static const char *errors_of(const char *yaml)
{
    mktd_mock *m = mktd_mock_new();
    int rc = mktd_mock_add(m, mktd_plugin_entry, "winback", yaml);
    errbuf[0] = '\0';
    if (rc != 0) {
        const char *e = mktd_mock_errors(m);
        snprintf(errbuf, sizeof errbuf, "%s", e ? e : "(null)");
    }
    CHECK(rc == 0 || rc == -EINVAL);
    mktd_mock_free(m);
    return errbuf;
}

#define CHECK_ERR(yaml, needle)                                                                    \
    do {                                                                                           \
        const char *e_ = errors_of(yaml);                                                          \
        if (!strstr(e_, needle))                                                                   \
            fprintf(stderr, "  config: %s\n  errors: %s\n  wanted: %s\n", yaml, e_, needle);       \
        CHECK(strstr(e_, needle) != NULL);                                                         \
    } while (0)

#define CHECK_OK(yaml)                                                                             \
    do {                                                                                           \
        const char *e_ = errors_of(yaml);                                                          \
        if (*e_)                                                                                   \
            fprintf(stderr, "  config: %s\n  errors: %s\n", yaml, e_);                             \
        CHECK_STR(e_, "");                                                                         \
    } while (0)

/* When the user's pending attempt falls due, or -1 for none. The timer
 * itself may sit earlier (it is not moved on every activity), so this reads
 * the due time the plugin keeps in its state ("2 a k t0 g p d x"), and
 * checks that a timer is set no later than it. */
static int64_t timer_of(mktd_mock *m, const char *campaign, const char *user)
{
    const char *val;
    size_t len;
    if (mktd_mock_state(m, campaign, user, "s", &val, &len) != 0)
        return -1;
    long long a, k, t0, g, p, d, x;
    if (sscanf(val, "2 %lld %lld %lld %lld %lld %lld %lld", &a, &k, &t0, &g, &p, &d, &x) != 7)
        return -2;
    int64_t timer = -1;
    int has_timer = mktd_mock_timer(m, campaign, user, "attempt", &timer) == 0;
    if (d == INT64_MIN) {
        CHECK(!has_timer);
        return -1;
    }
    CHECK(has_timer && timer == x && timer <= d);
    return d;
}

/* ---------------------------------------------------------------- */

static void test_descriptor(void)
{
    const mktd_plugin *p = mktd_plugin_entry(mktd_mock_host());
    CHECK(p != NULL);
    CHECK_STR(p->name, "reactivation");
    CHECK_INT(p->abi_version, MKTD_ABI_VERSION);
    CHECK_INT(p->struct_size, sizeof(mktd_plugin));
    CHECK(p->flags & MKTD_PLUGIN_WHEN_REFUSED);
    CHECK(!(p->flags & MKTD_PLUGIN_WHEN_REQUIRED));
    CHECK(p->init && p->on_event && p->on_timer && p->on_load && p->destroy);
}

static void test_param_errors(void)
{
    /* no params at all: inactive_for is required */
    {
        mktd_mock *m = mktd_mock_new();
        CHECK_INT(mktd_mock_add(m, mktd_plugin_entry, "winback", NULL), -EINVAL);
        CHECK(strstr(mktd_mock_errors(m), "inactive_for") != NULL);
        mktd_mock_free(m);
    }
    CHECK_ERR("max_attempts: 2\n", "inactive_for");
    CHECK_ERR("inactive_for: 0\n", "params:1:15:");
    CHECK_ERR("inactive_for: soon\n", "params:1:15:");
    CHECK_ERR("inactive_for: -5\n", "params:1:15:");
    CHECK_ERR("inactive_for: 1d\nfoo: 1\n", "params:2:");
    CHECK_ERR("inactive_for: 1d\nfoo: 1\n", "foo");
    CHECK_ERR("inactive_for: 1d\ncooldown: 0\n", "params:2:11:");
    CHECK_ERR("inactive_for: 1d\nmax_attempts: 0\n", "params:2:15:");
    CHECK_ERR("inactive_for: 1d\nmax_attempts: \"2\"\n", "params:2:15:");
    CHECK_ERR("inactive_for: 1d\nholdout_percent: 51\n", "params:2:18:");
    CHECK_ERR("inactive_for: 1d\nholdout_percent: -1\n", "params:2:18:");
    CHECK_ERR("inactive_for: 1d\nconvert_within: 3x\n", "params:2:17:");
    CHECK_ERR("inactive_for: 1d\nbackfill: yes\n", "params:2:11:");
    /* activity */
    CHECK_ERR("inactive_for: 1d\nactivity: [app.open, Order.Paid]\n", "params:2:22:");
    CHECK_ERR("inactive_for: 1d\nactivity: [app.open, Order.Paid]\n", "Order.Paid");
    CHECK_ERR("inactive_for: 1d\nactivity: []\n", "params:2:11:");
    CHECK_ERR("inactive_for: 1d\nactivity: {a: 1}\n", "params:2:11:");
    CHECK_ERR("inactive_for: 1d\nactivity:\n  - app.open\n  - [x]\n", "params:4:5:");
    /* quiet hours */
    CHECK_ERR("inactive_for: 1d\nquiet_hours: 22:00\n", "params:2:14:");
    CHECK_ERR("inactive_for: 1d\nquiet_hours:\n  from: \"25:00\"\n  to: \"08:00\"\n",
              "params:3:9:");
    CHECK_ERR("inactive_for: 1d\nquiet_hours:\n  from: \"22:00\"\n  to: \"8:00\"\n", "params:4:7:");
    CHECK_ERR("inactive_for: 1d\nquiet_hours:\n  from: \"22:00\"\n  to: \"08:60\"\n",
              "params:4:7:");
    CHECK_ERR("inactive_for: 1d\nquiet_hours:\n  from: \"22:00\"\n  to: \"08:00\"\n"
              "  utc_offset: \"+8\"\n",
              "params:5:15:");
    CHECK_ERR("inactive_for: 1d\nquiet_hours:\n  from: \"22:00\"\n  to: \"08:00\"\n"
              "  utc_offset: \"08:00\"\n",
              "params:5:15:");
    CHECK_ERR("inactive_for: 1d\nquiet_hours:\n  from: \"22:00\"\n  to: \"08:00\"\n  tz: x\n",
              "params:5:3:");
    CHECK_ERR("inactive_for: 1d\nquiet_hours:\n  from: \"22:00\"\n", "to");
    /* every problem is reported, not only the first */
    {
        const char *e = errors_of("inactive_for: 0\nmax_attempts: 0\nholdout_percent: 99\n");
        CHECK(strstr(e, "params:1:15:") != NULL);
        CHECK(strstr(e, "params:2:15:") != NULL);
        CHECK(strstr(e, "params:3:18:") != NULL);
    }
    /* accepted forms */
    CHECK_OK("inactive_for: 30d\n");
    CHECK_OK("inactive_for: 3600\n");
    CHECK_OK("inactive_for: 1d\nactivity: app.open\n");
    CHECK_OK("inactive_for: 1d\nholdout_percent: 50\nmax_attempts: 5\nconvert_within: 0\n");
    CHECK_OK("inactive_for: 1d\nquiet_hours: {from: 22:00, to: 08:00, utc_offset: -05:30}\n");
    CHECK_OK("inactive_for: 1d\nquiet_hours: {from: \"09:00\", to: \"09:00\"}\n");
    CHECK_OK("inactive_for: 1d\noffer: {coupon: SPRING, amount: 500}\nbackfill: true\n");
    /* a key with no value counts as absent */
    CHECK_OK("inactive_for: 1d\nactivity:\nquiet_hours:\noffer:\ncooldown:\n");
}

/* Defaults: one attempt at inactive_for, offer {}, cooldown = inactive_for,
 * convert_within 7d. */
static void test_defaults(void)
{
    mktd_mock *m = setup("winback", "inactive_for: 1d\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + DAY);
    CHECK_INT(mktd_mock_advance(m, T0 + DAY - 1), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + DAY), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n");
    /* max_attempts defaults to 1: nothing more, no timer left */
    CHECK_INT(timer_of(m, "winback", "u2"), -1);
    CHECK_INT(mktd_mock_advance(m, T0 + 30 * DAY), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    mktd_mock_free(m);

    /* cooldown defaults to inactive_for */
    m = setup("winback", "inactive_for: 2h\nmax_attempts: 3\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + DAY), 0);
    CHECK_INT(mktd_mock_count(m), 3);
    if (mktd_mock_count(m) == 3) {
        CHECK_INT(mktd_mock_action_at(m, 0)->ts, T0 + 2 * HOUR);
        CHECK_INT(mktd_mock_action_at(m, 1)->ts, T0 + 4 * HOUR);
        CHECK_INT(mktd_mock_action_at(m, 2)->ts, T0 + 6 * HOUR);
    }
    mktd_mock_free(m);

    /* convert_within defaults to 7d, inclusive */
    m = setup("winback", "inactive_for: 1d\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(play(m, "app.open", "u2", T0 + DAY + 7 * DAY), 0);
    CHECK_STR(mktd_mock_dump(m, 1),
              "reactivation.converted u2 {\"group\":\"offer\",\"after_ms\":604800000}\n");
    mktd_mock_free(m);
    m = setup("winback", "inactive_for: 1d\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(play(m, "app.open", "u2", T0 + DAY + 7 * DAY + 1), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    mktd_mock_free(m);

    /* an integer duration is seconds */
    m = setup("winback", "inactive_for: 3600\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + HOUR);
    mktd_mock_free(m);
}

static void test_offer_payload(void)
{
    mktd_mock *m = setup("winback", "inactive_for: 1h\n"
                                    "offer:\n"
                                    "  coupon: \"SPRING\"\n"
                                    "  amount: 500\n"
                                    "  channels: [push, email]\n"
                                    "  note: null\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + HOUR), 0);
    CHECK_STR(mktd_mock_dump(m, 0), "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":3600000,"
                                    "\"offer\":{\"coupon\":\"SPRING\",\"amount\":500,"
                                    "\"channels\":[\"push\",\"email\"],\"note\":null}}\n");
    mktd_mock_free(m);

    /* `offer:` left empty counts as no offer: {} */
    m = setup("winback", "inactive_for: 1h\noffer:\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + HOUR), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":3600000,\"offer\":{}}\n");
    mktd_mock_free(m);
}

/* FNV-1a buckets: winback:u1 -> 1229837814 -> 14; winback:u2 -> 95;
 * winback:u4 -> 9; spring-sale:u1 -> 88. */
static void test_holdout_buckets(void)
{
    /* 15%: u1 (14) and u4 (9) are held out, u2 (95) gets the offer */
    mktd_mock *m = setup("winback", "inactive_for: 1h\nholdout_percent: 15\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u1", T0), 0);
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(play(m, "app.open", "u4", T0), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + HOUR), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.holdout u1 {\"attempt\":1,\"inactive_ms\":3600000}\n"
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":3600000,\"offer\":{}}\n"
              "reactivation.holdout u4 {\"attempt\":1,\"inactive_ms\":3600000}\n");
    mktd_mock_free(m);

    /* 14%: bucket 14 is not below 14 */
    m = setup("winback", "inactive_for: 1h\nholdout_percent: 14\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u1", T0), 0);
    CHECK_INT(play(m, "app.open", "u4", T0), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + HOUR), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u1 {\"attempt\":1,\"inactive_ms\":3600000,\"offer\":{}}\n"
              "reactivation.holdout u4 {\"attempt\":1,\"inactive_ms\":3600000}\n");
    mktd_mock_free(m);

    /* the bucket hashes the campaign id too: spring-sale:u1 is 88 */
    m = setup("spring-sale", "inactive_for: 1h\nholdout_percent: 50\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u1", T0), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + HOUR), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u1 {\"attempt\":1,\"inactive_ms\":3600000,\"offer\":{}}\n");
    mktd_mock_free(m);

    /* 0% (the default): nobody is held out */
    m = setup("winback", "inactive_for: 1h\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u4", T0), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + HOUR), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u4 {\"attempt\":1,\"inactive_ms\":3600000,\"offer\":{}}\n");
    mktd_mock_free(m);
}

/* Attempts: a + inactive_for + (k-1) x cooldown, up to max_attempts, each
 * stamped with its due time and without an event id. */
static void test_attempts(void)
{
    mktd_mock *m = setup("winback", "inactive_for: 1d\ncooldown: 12h\nmax_attempts: 3\n"
                                    "holdout_percent: 15\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(play(m, "app.open", "u1", T0 + HOUR), 0);
    /* an event much later: every timer due before it fires first, at its own due time */
    CHECK_INT(play(m, "app.open", "u9", T0 + 10 * DAY), 0);
    CHECK_INT(mktd_mock_count(m), 6);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n"
              "reactivation.holdout u1 {\"attempt\":1,\"inactive_ms\":86400000}\n"
              "reactivation.offer u2 {\"attempt\":2,\"inactive_ms\":129600000,\"offer\":{}}\n"
              "reactivation.holdout u1 {\"attempt\":2,\"inactive_ms\":129600000}\n"
              "reactivation.offer u2 {\"attempt\":3,\"inactive_ms\":172800000,\"offer\":{}}\n"
              "reactivation.holdout u1 {\"attempt\":3,\"inactive_ms\":172800000}\n");
    static const int64_t want_ts[] = {
        T0 + DAY,     T0 + HOUR + DAY,    T0 + DAY + 12 * HOUR, T0 + HOUR + DAY + 12 * HOUR,
        T0 + 2 * DAY, T0 + HOUR + 2 * DAY};
    for (size_t i = 0; i < 6 && i < mktd_mock_count(m); i++) {
        const mktd_mock_action *a = mktd_mock_action_at(m, i);
        CHECK_INT(a->ts, want_ts[i]);
        CHECK(a->event_id == NULL);
        CHECK_STR(a->campaign, "winback");
    }
    CHECK_INT(timer_of(m, "winback", "u1"), -1);
    CHECK_INT(timer_of(m, "winback", "u2"), -1);
    CHECK_INT(timer_of(m, "winback", "u9"), T0 + 11 * DAY);
    mktd_mock_free(m);

    /* activity between attempts starts a new spell from attempt 1 */
    m = setup("winback", "inactive_for: 1d\nmax_attempts: 3\nconvert_within: 1h\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + DAY), 0);
    CHECK_INT(play(m, "app.open", "u2", T0 + DAY + 5 * HOUR), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + 2 * DAY + 5 * HOUR);
    CHECK_INT(mktd_mock_advance(m, T0 + 2 * DAY + 5 * HOUR), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n"
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n");
    mktd_mock_free(m);
}

/* Quiet hours [from, to), same day, at UTC. */
static void test_quiet_hours(void)
{
    const char *cfg = "inactive_for: 1d\n"
                      "quiet_hours: {from: \"01:00\", to: \"06:00\"}\n";
    /* inside: moved to 06:00, inactive_ms counts to the shifted moment */
    mktd_mock *m = setup("winback", cfg);
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0 + 2 * HOUR), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + DAY + 6 * HOUR);
    CHECK_INT(mktd_mock_advance(m, T0 + 3 * DAY), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":100800000,\"offer\":{}}\n");
    if (mktd_mock_count(m) == 1)
        CHECK_INT(mktd_mock_action_at(m, 0)->ts, T0 + DAY + 6 * HOUR);
    mktd_mock_free(m);

    /* boundaries: from is inside, to is not, the ms before from is not */
    m = setup("winback", cfg);
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u1", T0 + 1 * HOUR), 0);
    CHECK_INT(play(m, "app.open", "u2", T0 + 6 * HOUR), 0);
    CHECK_INT(play(m, "app.open", "u3", T0 + 1 * HOUR - 1), 0);
    CHECK_INT(play(m, "app.open", "u4", T0 + 6 * HOUR - 1), 0);
    CHECK_INT(timer_of(m, "winback", "u1"), T0 + DAY + 6 * HOUR);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + DAY + 6 * HOUR);
    CHECK_INT(timer_of(m, "winback", "u3"), T0 + DAY + 1 * HOUR - 1);
    CHECK_INT(timer_of(m, "winback", "u4"), T0 + DAY + 6 * HOUR);
    mktd_mock_free(m);

    /* from == to: no quiet hours */
    m = setup("winback", "inactive_for: 1d\nquiet_hours: {from: \"03:00\", to: \"03:00\"}\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0 + 3 * HOUR), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + DAY + 3 * HOUR);
    mktd_mock_free(m);
}

/* Quiet hours across midnight, at +08:00: 22:00 local is 14:00Z, 08:00 local
 * is 00:00Z. */
static void test_quiet_hours_midnight(void)
{
    const char *cfg = "inactive_for: 1d\n"
                      "quiet_hours: {from: \"22:00\", to: \"08:00\", utc_offset: \"+08:00\"}\n";
    mktd_mock *m = setup("winback", cfg);
    if (!m)
        return;
    /* due 01-02 23:00 local (15:00Z): moved to 01-03 08:00 local (00:00Z) */
    CHECK_INT(play(m, "app.open", "u1", T0 + 15 * HOUR), 0);
    /* due 01-03 03:00 local (01-02 19:00Z): moved to 01-03 08:00 local */
    CHECK_INT(play(m, "app.open", "u2", T0 + 19 * HOUR), 0);
    /* due exactly 22:00 local (14:00Z): inside */
    CHECK_INT(play(m, "app.open", "u3", T0 + 14 * HOUR), 0);
    /* due 21:59:59.999 local: outside */
    CHECK_INT(play(m, "app.open", "u4", T0 + 14 * HOUR - 1), 0);
    /* due exactly 08:00 local (00:00Z): outside */
    CHECK_INT(play(m, "app.open", "u5", T0 + DAY), 0);
    /* due 07:59:59.999 local: inside, moved by 1 ms */
    CHECK_INT(play(m, "app.open", "u6", T0 + DAY - 1), 0);
    /* due 12:00 local (04:00Z): outside */
    CHECK_INT(play(m, "app.open", "u7", T0 + DAY + 4 * HOUR), 0);
    CHECK_INT(timer_of(m, "winback", "u1"), T0 + 2 * DAY);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + 2 * DAY);
    CHECK_INT(timer_of(m, "winback", "u3"), T0 + 2 * DAY);
    CHECK_INT(timer_of(m, "winback", "u4"), T0 + DAY + 14 * HOUR - 1);
    CHECK_INT(timer_of(m, "winback", "u5"), T0 + 2 * DAY);
    CHECK_INT(timer_of(m, "winback", "u6"), T0 + 2 * DAY);
    CHECK_INT(timer_of(m, "winback", "u7"), T0 + 2 * DAY + 4 * HOUR);
    CHECK_INT(mktd_mock_advance(m, T0 + 2 * DAY), 0);
    /* u4 first (earlier due), then the 00:00Z group by user id */
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u4 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n"
              "reactivation.offer u1 {\"attempt\":1,\"inactive_ms\":118800000,\"offer\":{}}\n"
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":104400000,\"offer\":{}}\n"
              "reactivation.offer u3 {\"attempt\":1,\"inactive_ms\":122400000,\"offer\":{}}\n"
              "reactivation.offer u5 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n"
              "reactivation.offer u6 {\"attempt\":1,\"inactive_ms\":86400001,\"offer\":{}}\n");
    for (size_t i = 1; i < mktd_mock_count(m); i++)
        CHECK_INT(mktd_mock_action_at(m, i)->ts, T0 + 2 * DAY);
    mktd_mock_free(m);

    /* a negative offset: 22:00-08:00 at -05:00 is 03:00Z-13:00Z */
    m = setup("winback", "inactive_for: 1d\n"
                         "quiet_hours: {from: \"22:00\", to: \"08:00\", utc_offset: \"-05:00\"}\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u1", T0 + 4 * HOUR), 0);
    CHECK_INT(play(m, "app.open", "u2", T0 + 13 * HOUR), 0);
    CHECK_INT(timer_of(m, "winback", "u1"), T0 + DAY + 13 * HOUR);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + DAY + 13 * HOUR);
    mktd_mock_free(m);
}

/* An attempt whose shifted moment is not later than the previous one's is
 * skipped and keeps its number. */
static void test_quiet_skip(void)
{
    mktd_mock *m = setup("winback", "inactive_for: 1d\ncooldown: 5h\nmax_attempts: 3\n"
                                    "quiet_hours: {from: \"22:00\", to: \"08:00\"}\n");
    if (!m)
        return;
    /* attempt 1 due 01-02 22:30 -> 01-03 08:00; attempt 2 due 01-03 03:30 ->
     * 08:00 again: skipped; attempt 3 due 01-03 08:30 */
    CHECK_INT(play(m, "app.open", "u2", T0 + 22 * HOUR + 30 * MIN), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 5 * DAY), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":120600000,\"offer\":{}}\n"
              "reactivation.offer u2 {\"attempt\":3,\"inactive_ms\":122400000,\"offer\":{}}\n");
    if (mktd_mock_count(m) == 2) {
        CHECK_INT(mktd_mock_action_at(m, 0)->ts, T0 + 2 * DAY + 8 * HOUR);
        CHECK_INT(mktd_mock_action_at(m, 1)->ts, T0 + 2 * DAY + 8 * HOUR + 30 * MIN);
    }
    mktd_mock_free(m);

    /* with every later attempt in the same quiet night, only one is made */
    m = setup("winback", "inactive_for: 1d\ncooldown: 1h\nmax_attempts: 4\n"
                         "quiet_hours: {from: \"22:00\", to: \"08:00\"}\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0 + 22 * HOUR), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 5 * DAY), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":122400000,\"offer\":{}}\n");
    CHECK_INT(timer_of(m, "winback", "u2"), -1);
    mktd_mock_free(m);
}

static void test_conversion(void)
{
    const char *cfg = "inactive_for: 1d\nmax_attempts: 2\nconvert_within: 2h\n"
                      "holdout_percent: 50\n";
    mktd_mock *m = setup("winback", cfg);
    if (!m)
        return;
    /* u2 gets offers, u1 (bucket 14) is held out */
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(play(m, "app.open", "u1", T0), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + DAY), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_INT(play(m, "checkout.done", "u2", T0 + DAY + HOUR), 0);
    CHECK_INT(play(m, "app.open", "u1", T0 + DAY + 2 * HOUR), 0);
    CHECK_STR(mktd_mock_dump(m, 2),
              "reactivation.converted u2 {\"group\":\"offer\",\"after_ms\":3600000}\n"
              "reactivation.converted u1 {\"group\":\"holdout\",\"after_ms\":7200000}\n");
    /* event-caused: ts = now, event id set */
    if (mktd_mock_count(m) == 4) {
        const mktd_mock_action *a = mktd_mock_action_at(m, 2);
        CHECK_INT(a->ts, T0 + DAY + HOUR);
        CHECK(a->event_id != NULL);
    }
    /* the spell ended: attempt 2 of the old spell is gone, a new attempt 1 waits */
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + 2 * DAY + HOUR);
    CHECK_INT(timer_of(m, "winback", "u1"), T0 + 2 * DAY + 2 * HOUR);
    /* a second activity converts nothing more */
    CHECK_INT(play(m, "app.open", "u2", T0 + DAY + 90 * MIN), 0);
    CHECK_INT(mktd_mock_count(m), 4);
    mktd_mock_free(m);

    /* not after convert_within */
    m = setup("winback", cfg);
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(play(m, "app.open", "u2", T0 + DAY + 2 * HOUR + 1), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n");
    /* but the spell ended all the same */
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + 2 * DAY + 2 * HOUR + 1);
    mktd_mock_free(m);

    /* the latest offer of the spell counts */
    m = setup("winback", "inactive_for: 1d\nmax_attempts: 2\nconvert_within: 2h\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(play(m, "app.open", "u2", T0 + 2 * DAY + 30 * MIN), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n"
              "reactivation.offer u2 {\"attempt\":2,\"inactive_ms\":172800000,\"offer\":{}}\n"
              "reactivation.converted u2 {\"group\":\"offer\",\"after_ms\":1800000}\n");
    mktd_mock_free(m);

    /* an activity at the offer's own ts converts with after_ms 0 */
    m = setup("winback", "inactive_for: 1d\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(play(m, "app.open", "u2", T0 + DAY), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n"
              "reactivation.converted u2 {\"group\":\"offer\",\"after_ms\":0}\n");
    mktd_mock_free(m);

    /* no offer or holdout in the spell: nothing to convert */
    m = setup("winback", "inactive_for: 1d\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(play(m, "app.open", "u2", T0 + HOUR), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + HOUR + DAY);
    mktd_mock_free(m);
}

/* A late activity: before the offer, it ends the spell without a conversion;
 * at or before the last activity, it changes nothing. */
static void test_late_activity(void)
{
    mktd_mock *m = setup("winback", "inactive_for: 1d\nmax_attempts: 3\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + DAY), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + 2 * DAY);
    /* at or before the last activity: nothing */
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(play(m, "app.open", "u2", T0 - HOUR), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + 2 * DAY);
    /* after it but before the offer: the spell ends, no conversion */
    CHECK_INT(play(m, "app.open", "u2", T0 + 12 * HOUR), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + DAY + 12 * HOUR);
    /* the new spell's attempt 1, already due, fires before the next event */
    CHECK_INT(play(m, "app.open", "u9", T0 + DAY + 13 * HOUR), 0);
    CHECK_STR(mktd_mock_dump(m, 1),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n");
    if (mktd_mock_count(m) == 2)
        CHECK_INT(mktd_mock_action_at(m, 1)->ts, T0 + DAY + 12 * HOUR);
    mktd_mock_free(m);

    /* a late event at or before the last activity does not convert either */
    m = setup("winback", "inactive_for: 1d\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + DAY), 0);
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    mktd_mock_free(m);
}

static void test_activity_filter(void)
{
    mktd_mock *m = setup("winback", "inactive_for: 1d\nactivity: [app.open, checkout.done]\n");
    if (!m)
        return;
    CHECK_INT(play(m, "page.view", "u2", T0), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), -1);
    CHECK_INT(play(m, "checkout.done", "u2", T0 + HOUR), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + HOUR + DAY);
    /* page views do not keep the user active */
    CHECK_INT(play(m, "page.view", "u2", T0 + 2 * HOUR), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + HOUR + DAY);
    CHECK_INT(mktd_mock_advance(m, T0 + HOUR + DAY), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    /* nor do they convert */
    CHECK_INT(play(m, "page.view", "u2", T0 + 2 * DAY), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(play(m, "app.open", "u2", T0 + 2 * DAY + 1), 0);
    CHECK_STR(mktd_mock_dump(m, 1),
              "reactivation.converted u2 {\"group\":\"offer\",\"after_ms\":82800001}\n");
    mktd_mock_free(m);

    /* a single type is accepted too */
    m = setup("winback", "inactive_for: 1d\nactivity: app.open\n");
    if (!m)
        return;
    CHECK_INT(play(m, "page.view", "u2", T0), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), -1);
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + DAY);
    mktd_mock_free(m);
}

/* A disabled campaign sees no activity, and its attempts that fall due are
 * skipped for good; later ones keep their numbers. */
static void test_disabled(void)
{
    mktd_mock *m = setup("winback", "inactive_for: 1d\nmax_attempts: 3\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    mktd_mock_set_enabled(m, "winback", 0);
    /* not seen while disabled */
    CHECK_INT(play(m, "app.open", "u2", T0 + HOUR), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + DAY);
    CHECK_INT(play(m, "app.open", "u3", T0 + HOUR), 0);
    CHECK_INT(timer_of(m, "winback", "u3"), -1);
    CHECK_INT(mktd_mock_advance(m, T0 + DAY + HOUR), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + 2 * DAY);
    mktd_mock_set_enabled(m, "winback", 1);
    CHECK_INT(mktd_mock_advance(m, T0 + 5 * DAY), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":2,\"inactive_ms\":172800000,\"offer\":{}}\n"
              "reactivation.offer u2 {\"attempt\":3,\"inactive_ms\":259200000,\"offer\":{}}\n");
    mktd_mock_free(m);

    /* disabled through the last attempt: nothing, and no timer left */
    m = setup("winback", "inactive_for: 1d\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    mktd_mock_set_enabled(m, "winback", 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 2 * DAY), 0);
    mktd_mock_set_enabled(m, "winback", 1);
    CHECK_INT(mktd_mock_advance(m, T0 + 9 * DAY), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), -1);
    /* a skipped attempt gives nothing to convert */
    CHECK_INT(play(m, "app.open", "u2", T0 + 9 * DAY + 1), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + 10 * DAY + 1);
    mktd_mock_free(m);
}

static void test_window(void)
{
    /* activity outside the window is not seen */
    mktd_mock *m = setup("winback", "inactive_for: 1d\nmax_attempts: 3\n");
    if (!m)
        return;
    mktd_mock_set_window(m, "winback", T0 + DAY, T0 + 3 * DAY + 12 * HOUR);
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), -1);
    CHECK_INT(play(m, "app.open", "u2", T0 + DAY), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + 2 * DAY);
    /* attempts 1 and 2 inside, attempt 3 (T0+4d) outside: skipped */
    CHECK_INT(mktd_mock_advance(m, T0 + 10 * DAY), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n"
              "reactivation.offer u2 {\"attempt\":2,\"inactive_ms\":172800000,\"offer\":{}}\n");
    CHECK_INT(timer_of(m, "winback", "u2"), -1);
    mktd_mock_free(m);

    /* an attempt before the window starts is skipped; the next keeps number 2 */
    m = setup("winback", "inactive_for: 1d\nmax_attempts: 2\n");
    if (!m)
        return;
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    mktd_mock_set_window(m, "winback", T0 + DAY + 1, T0 + 30 * DAY);
    CHECK_INT(mktd_mock_advance(m, T0 + 10 * DAY), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":2,\"inactive_ms\":172800000,\"offer\":{}}\n");
    mktd_mock_free(m);

    /* the window is tested at the shifted moment: 23:00 moves to 08:00 next day,
     * after `ends` */
    m = setup("winback", "inactive_for: 1d\nquiet_hours: {from: \"22:00\", to: \"08:00\"}\n");
    if (!m)
        return;
    mktd_mock_set_window(m, "winback", T0, T0 + DAY + 23 * HOUR + 30 * MIN);
    CHECK_INT(play(m, "app.open", "u2", T0 + 23 * HOUR), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + 2 * DAY + 8 * HOUR);
    CHECK_INT(mktd_mock_advance(m, T0 + 10 * DAY), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    mktd_mock_free(m);
}

struct prof {
    const char *user;
    int64_t events, last_seen;
};

static void set_profiles(mktd_mock *m, const struct prof *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        mktd_profile pr = {
            .events = p[i].events, .first_seen = p[i].last_seen - DAY, .last_seen = p[i].last_seen};
        mktd_mock_set_profile(m, p[i].user, &pr);
    }
}

static void test_backfill(void)
{
    static const struct prof profs[] = {{"u1", 3, T0}, {"u2", 1, T0 - 10 * DAY}};

    mktd_mock *m = mktd_mock_new();
    mktd_mock_auto_profile(m, 0);
    set_profiles(m, profs, 2);
    mktd_mock_set_now(m, T0 + HOUR);
    CHECK_INT(mktd_mock_add(m, mktd_plugin_entry, "winback",
                            "inactive_for: 1d\nmax_attempts: 2\nbackfill: true\n"),
              0);
    CHECK_INT(mktd_mock_load(m), 0);
    CHECK_INT(timer_of(m, "winback", "u1"), T0 + DAY);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 - 9 * DAY);
    /* u2 is long dormant: both attempts fall due at once, at their own due times */
    CHECK_INT(play(m, "app.open", "u9", T0 + 2 * HOUR), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n"
              "reactivation.offer u2 {\"attempt\":2,\"inactive_ms\":172800000,\"offer\":{}}\n");
    if (mktd_mock_count(m) == 2) {
        CHECK_INT(mktd_mock_action_at(m, 0)->ts, T0 - 9 * DAY);
        CHECK_INT(mktd_mock_action_at(m, 1)->ts, T0 - 8 * DAY);
    }
    /* a later load is not a first one: no second backfill, even for a user
     * whose last_seen moved without the campaign seeing it */
    static const struct prof moved[] = {{"u2", 2, T0 + HOUR}};
    set_profiles(m, moved, 1);
    CHECK_INT(mktd_mock_load(m), 0);
    CHECK_INT(timer_of(m, "winback", "u2"), -1);
    CHECK_INT(mktd_mock_advance(m, T0 + DAY), 0);
    CHECK_STR(mktd_mock_dump(m, 2),
              "reactivation.offer u1 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n");
    mktd_mock_free(m);

    /* without backfill, known users are left alone */
    m = mktd_mock_new();
    mktd_mock_auto_profile(m, 0);
    set_profiles(m, profs, 2);
    CHECK_INT(mktd_mock_add(m, mktd_plugin_entry, "winback", "inactive_for: 1d\n"), 0);
    CHECK_INT(mktd_mock_load(m), 0);
    CHECK_INT(timer_of(m, "winback", "u1"), -1);
    CHECK_INT(timer_of(m, "winback", "u2"), -1);
    mktd_mock_free(m);

    /* profiles kept by the mock itself: users seen before the campaign came */
    m = mktd_mock_new();
    CHECK_INT(play(m, "page.view", "u1", T0), 0);
    CHECK_INT(play(m, "page.view", "u1", T0 + 3 * HOUR), 0);
    CHECK_INT(play(m, "app.open", "u2", T0 + HOUR), 0);
    CHECK_INT(mktd_mock_add(m, mktd_plugin_entry, "winback",
                            "inactive_for: 1d\nbackfill: true\nactivity: [app.open]\n"),
              0);
    CHECK_INT(mktd_mock_load(m), 0);
    CHECK_INT(timer_of(m, "winback", "u1"), T0 + DAY + 3 * HOUR);
    CHECK_INT(timer_of(m, "winback", "u2"), T0 + DAY + HOUR);
    CHECK_INT(mktd_mock_advance(m, T0 + 2 * DAY), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n"
              "reactivation.offer u1 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n");
    mktd_mock_free(m);
}

/* Internal events (actions of other campaigns) are neither activity nor
 * conversions, even when `activity` names their type. */
static void test_internal_events(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, mktd_plugin_entry, "late", "inactive_for: 1d\n"), 0);
    CHECK_INT(mktd_mock_add(m, mktd_plugin_entry, "early",
                            "inactive_for: 2h\n"
                            "activity: [app.open, reactivation.offer]\n"),
              0);
    CHECK_INT(mktd_mock_load(m), 0);
    CHECK_INT(play(m, "app.open", "u2", T0), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 3 * DAY), 0);
    /* "early" offers at 2h; it sees "late"'s offer at 1d as an internal
     * event and neither converts nor starts a new spell */
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":7200000,\"offer\":{}}\n"
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":86400000,\"offer\":{}}\n");
    if (mktd_mock_count(m) == 2) {
        CHECK_STR(mktd_mock_action_at(m, 0)->campaign, "early");
        CHECK_STR(mktd_mock_action_at(m, 1)->campaign, "late");
    }
    CHECK_INT(timer_of(m, "early", "u2"), -1);
    CHECK_INT(timer_of(m, "late", "u2"), -1);
    mktd_mock_free(m);
}

/* Two campaigns of the plugin keep separate state and buckets. */
static void test_two_campaigns(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(
        mktd_mock_add(m, mktd_plugin_entry, "winback", "inactive_for: 1d\nholdout_percent: 50\n"),
        0);
    CHECK_INT(mktd_mock_add(m, mktd_plugin_entry, "spring-sale",
                            "inactive_for: 2d\nholdout_percent: 50\noffer: {pct: 10}\n"),
              0);
    CHECK_INT(mktd_mock_load(m), 0);
    CHECK_INT(play(m, "app.open", "u1", T0), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 3 * DAY), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.holdout u1 {\"attempt\":1,\"inactive_ms\":86400000}\n"
              "reactivation.offer u1 {\"attempt\":1,\"inactive_ms\":172800000,"
              "\"offer\":{\"pct\":10}}\n");
    mktd_mock_free(m);
}

/* The worked example of plugins/reactivation/README.md. */
static void test_readme_example(void)
{
    mktd_mock *m =
        setup("winback", "inactive_for: 30d\n"
                         "cooldown: 7d\n"
                         "max_attempts: 2\n"
                         "holdout_percent: 20\n"
                         "activity: [app.open, order.paid]\n"
                         "quiet_hours: {from: \"22:00\", to: \"08:00\", utc_offset: \"+08:00\"}\n"
                         "offer: {coupon: WINBACK10, discount: 1000}\n");
    if (!m)
        return;
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e1\",\"type\":\"app.open\",\"user\":\"u1\","
                                 "\"ts\":\"2026-01-01T03:00:00Z\"}"),
              0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e2\",\"type\":\"order.paid\",\"user\":\"u2\","
                                 "\"ts\":\"2026-01-01T15:00:00Z\","
                                 "\"props\":{\"order_id\":\"o1\",\"amount\":4900}}"),
              0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e3\",\"type\":\"app.open\",\"user\":\"u2\","
                                 "\"ts\":\"2026-02-03T12:00:00Z\"}"),
              0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e4\",\"type\":\"app.open\",\"user\":\"u1\","
                                 "\"ts\":\"2026-02-08T00:00:00Z\"}"),
              0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "reactivation.holdout u1 {\"attempt\":1,\"inactive_ms\":2592000000}\n"
              "reactivation.offer u2 {\"attempt\":1,\"inactive_ms\":2624400000,"
              "\"offer\":{\"coupon\":\"WINBACK10\",\"discount\":1000}}\n"
              "reactivation.converted u2 {\"group\":\"offer\",\"after_ms\":216000000}\n"
              "reactivation.holdout u1 {\"attempt\":2,\"inactive_ms\":3196800000}\n"
              "reactivation.converted u1 {\"group\":\"holdout\",\"after_ms\":75600000}\n");
    static const int64_t ts[] = {1769828400000, 1769904000000, 1770120000000, 1770433200000,
                                 1770508800000};
    static const char *const ids[] = {NULL, NULL, "e3", NULL, "e4"};
    for (size_t i = 0; i < 5 && i < mktd_mock_count(m); i++) {
        const mktd_mock_action *a = mktd_mock_action_at(m, i);
        CHECK_INT(a->ts, ts[i]);
        if (ids[i])
            CHECK_STR(a->event_id, ids[i]);
        else
            CHECK(a->event_id == NULL);
    }
    mktd_mock_free(m);
}

#include "poison.h"

static const char *state_of(mktd_mock *m, const char *user)
{
    const char *val;
    size_t len;
    static char buf[256];
    if (mktd_mock_state(m, "winback", user, "s", &val, &len) != 0)
        return "";
    snprintf(buf, sizeof buf, "%.*s", (int)len, val);
    return buf;
}

static void test_state_text(void)
{
    /* 2 a k t0 g p d x: NO_TIME and "none" are INT64_MIN */
    static const char *const good[] = {
        "2 1767225601000 1 -9223372036854775808 0 -9223372036854775808 1769817601000 "
        "1769817601000",
        "2 1767225601000 2 1767225600500 1 1769817600000 -9223372036854775808 "
        "-9223372036854775808",
        "2 1767225601000 9223372036854775807 0 2 0 0 0",
    };
    static const char *const bad[] = {
        "",
        "2",
        "3 1767225601000 1 0 0 0 0 0",
        "2 1767225601000 1 0 0 0 0",          /* six numbers */
        "2 1767225601000 1 0 0 0 0 0 0",      /* eight */
        "2 1767225601000 1 0 0 0 0 0 ",       /* trailing space */
        "2  1767225601000 1 0 0 0 0 0",       /* two spaces */
        "2 1767225601000 1 0 0 0 0 0x",       /* junk */
        "2 1767225601000 1 0 3 0 0 0",        /* no such group */
        "2 1767225601000 0 0 0 0 0 0",        /* attempt 0 */
        "2 9223372036854775808 1 0 0 0 0 0",  /* out of range */
        "2 -9223372036854775809 1 0 0 0 0 0", /* out of range */
        "2 - 1 0 0 0 0 0",
        "2 +5 1 0 0 0 0 0",
    };
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, poison_entry, "winback", "inactive_for: 30d\n"), 0);
    CHECK_INT(mktd_mock_load(m), 0);
    char user[16];
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        snprintf(user, sizeof user, "g%zu", i);
        poison(m, user, "s", good[i]);
        /* read: activity no later than its last one changes nothing */
        CHECK_INT(play(m, "app.open", user, T0 + 500), 0);
        CHECK_STR(state_of(m, user), good[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(user, sizeof user, "b%zu", i);
        poison(m, user, "s", bad[i]);
        /* unreadable: a spell starts afresh at this activity */
        CHECK_INT(play(m, "app.open", user, T0 + 500), 0);
        char want[128];
        snprintf(want, sizeof want, "2 %" PRId64 " 1 0 0 -9223372036854775808 %" PRId64 " %" PRId64,
                 T0 + 500, T0 + 500 + 30 * DAY, T0 + 500 + 30 * DAY);
        if (strcmp(state_of(m, user), want) != 0)
            fprintf(stderr, "  state %s\n", bad[i]);
        CHECK_STR(state_of(m, user), want);
    }
    mktd_mock_free(m);
}

/* Forget (mktd_mock_forget): the plugin keeps nothing beyond the user's
 * own state and timer, which go; the user comes back as a new one. */
static void test_forget(void)
{
    mktd_mock *m = setup("w", "inactive_for: 7d\n");
    int64_t due;
    char ps[64];
    if (!m)
        return;
    CHECK_INT(play(m, "visit", "u1", T0), 0);
    CHECK_INT(play(m, "visit", "u2", T0), 0);
    CHECK_INT(timer_of(m, "w", "u1"), T0 + 7 * DAY);
    CHECK_INT(mktd_mock_forget(m, "u1", ps, sizeof ps), 0);
    CHECK_INT(mktd_mock_state(m, "w", "u1", "s", NULL, NULL), -ENOENT);
    CHECK_INT(mktd_mock_timer(m, "w", "u1", "attempt", &due), -ENOENT);
    CHECK_INT(timer_of(m, "w", "u2"), T0 + 7 * DAY);
    /* the next attempt is u2's alone; u1 starts over from its new activity */
    CHECK_INT(play(m, "visit", "u1", T0 + DAY), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 7 * DAY), 0);
    CHECK_STR(mktd_mock_dump(m, 0), "reactivation.offer u2 "
                                    "{\"attempt\":1,\"inactive_ms\":604800000,\"offer\":{}}\n");
    CHECK_INT(timer_of(m, "w", "u1"), T0 + 8 * DAY);
    mktd_mock_free(m);
}

int main(void)
{
    test_descriptor();
    test_param_errors();
    test_defaults();
    test_offer_payload();
    test_holdout_buckets();
    test_attempts();
    test_quiet_hours();
    test_quiet_hours_midnight();
    test_quiet_skip();
    test_conversion();
    test_late_activity();
    test_activity_filter();
    test_disabled();
    test_window();
    test_backfill();
    test_internal_events();
    test_two_campaigns();
    test_readme_example();
    test_state_text();
    test_forget();
    return check_done();
}
