/* Unit tests of the checkin plugin against the mock host. */
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

#define MIN_MS 60000LL
#define HOUR_MS 3600000LL
#define DAY_MS (24 * HOUR_MS)
/* 2023-11-15T00:00:00Z */
#define D0 1700006400000LL

/* ---- the plugin under a test host: notes are kept, emits can be capped,
 * and matching events can be marked excluded by a group ---- */

static mktd_host test_host;
static const mktd_plugin *real_plugin;
static mktd_plugin wrapped_plugin;

static int cap_emits;
static int exclude;

static int test_emit(mktd_ctx *ctx, const char *kind, const char *user, mktd_obj *payload)
{
    if (cap_emits > 0) {
        cap_emits--;
        return MKTD_CAPPED;
    }
    return mktd_mock_host()->emit(ctx, kind, user, payload);
}

static int wrapped_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    if (exclude && (flags & MKTD_F_MATCH))
        flags = (flags & ~MKTD_F_MATCH) | MKTD_F_EXCLUDED;
    return real_plugin->on_event(ctx, data, ev, flags);
}

static const mktd_plugin *test_entry(const mktd_host *host)
{
    (void)host;
    test_host = *mktd_mock_host();
    test_host.note = plugkit_note;
    test_host.emit = test_emit;
    real_plugin = mktd_plugin_entry(&test_host);
    wrapped_plugin = *real_plugin;
    wrapped_plugin.on_event = wrapped_on_event;
    return &wrapped_plugin;
}

/* ---- a second plugin: on "tick" it records a `checkin` action ---- */

static const mktd_host *emitter_host;

static int emitter_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    (void)data;
    if (!(flags & MKTD_F_MATCH) || strcmp(ev->type, "tick") != 0)
        return 0;
    return emitter_host->emit(ctx, "checkin", ev->user, emitter_host->obj_new(ctx));
}

static int emitter_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    (void)ctx;
    (void)params;
    *data = NULL;
    return 0;
}

static const mktd_plugin emitter_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "emitter",
    .version = "test",
    .init = emitter_init,
    .on_event = emitter_on_event,
};

static const mktd_plugin *emitter_entry(const mktd_host *host)
{
    emitter_host = host;
    return &emitter_plugin;
}

/* ---- helpers ---- */

static int checkin(mktd_mock *m, const char *user, int64_t ts)
{
    return play(m, "checkin", user, ts, NULL);
}

static const char *run_state(mktd_mock *m, const char *campaign, const char *user)
{
    static char buf[64];
    const char *v = NULL;
    size_t len = 0;
    if (mktd_mock_state(m, campaign, user, "run", &v, &len) != 0)
        return "(none)";
    snprintf(buf, sizeof buf, "%.*s", (int)len, v);
    return buf;
}

/* ---- params ---- */

static void test_param_errors(void)
{
    mktd_mock *m = mktd_mock_new();
    const char *e;

    /* streak: required, 1..36600 */
    CHECK_ERR("utc_offset: \"+08:00\"\n", "params:", "streak");
    CHECK_ERR("streak: 0\n", "params:1:9:", NULL);
    CHECK_ERR("streak: -7\n", "params:1:9:", NULL);
    CHECK_ERR("streak: 36601\n", "params:1:9:", NULL);
    CHECK_ERR("streak: seven\n", "params:1:9:", NULL);
    CHECK_ERR("streak: 7d\n", "params:1:9:", NULL);
    /* utc_offset: "+hh:mm", "-hh:mm" or "Z" */
    CHECK_ERR("streak: 7\nutc_offset: \"+8\"\n", "params:2:13:", "utc_offset");
    CHECK_ERR("streak: 7\nutc_offset: \"08:00\"\n", "params:2:13:", "utc_offset");
    CHECK_ERR("streak: 7\nutc_offset: \"+24:00\"\n", "params:2:13:", "utc_offset");
    CHECK_ERR("streak: 7\nutc_offset: \"+08:60\"\n", "params:2:13:", "utc_offset");
    CHECK_ERR("streak: 7\nutc_offset: \"+0800\"\n", "params:2:13:", "utc_offset");
    CHECK_ERR("streak: 7\nutc_offset: 8\n", "params:2:13:", NULL);
    /* reward: a map */
    CHECK_ERR("streak: 7\nreward: 100\n", "params:2:9:", "reward");
    CHECK_ERR("streak: 7\nreward: [1, 2]\n", "params:2:9:", "reward");
    /* unknown keys, naming the allowed ones */
    CHECK_ERR("streak: 7\ndays: 7\n", "params:2:1:", "utc_offset");
    /* every problem is reported */
    e = add_err(m, "streak: 0\nutc_offset: \"+25:00\"\nreward: x\n");
    CHECK(has_error(e, "params:1:9:", NULL));
    CHECK(has_error(e, "params:2:13:", NULL));
    CHECK(has_error(e, "params:3:9:", NULL));
    /* no params, params not a map */
    e = add_err(m, NULL);
    CHECK(strstr(e, "streak") != NULL);
    CHECK_ERR("- streak\n", "params:1:1:", NULL);

    add_ok(m, "ok1", "streak: 1\n");
    add_ok(m, "ok2", "streak: 36600\nutc_offset: \"-23:59\"\nreward: {}\n");
    add_ok(m, "ok3", "streak: 7\nutc_offset: Z\nreward:\n");
    add_ok(m, "ok4", "streak: 7\nutc_offset: ~\nreward: {points: 50, badge: [a, b]}\n");
    mktd_mock_free(m);

    /* no `when`: check-ins are its fixed input */
    m = mktd_mock_new();
    add_ok(m, "c", "streak: 1\n");
    mktd_mock_set_when(m, "c", "visit");
    CHECK(mktd_mock_errors(m) != NULL && strstr(mktd_mock_errors(m), "when") != NULL);
    CHECK_INT(checkin(m, "u1", D0), 0);
    CHECK_INT(mktd_mock_count(m), 1); /* the refused `when` was not applied */
    mktd_mock_free(m);
}

/* ---- runs ---- */

static void test_streak(void)
{
    mktd_mock *m = mktd_mock_new();
    const mktd_mock_action *a;

    add_ok(m, "c", "streak: 3\nreward: {points: 50, note: \"3 days\"}\n");
    CHECK_INT(checkin(m, "u1", D0 + 9 * HOUR_MS), 0);
    CHECK_NOTE("run 1 of 3 on 2023-11-15");
    CHECK_STR(run_state(m, "c", "u1"), "19676 1");
    CHECK_INT(checkin(m, "u1", D0 + DAY_MS + 20 * HOUR_MS), 0);
    CHECK_NOTE("run 2 of 3 on 2023-11-16");
    CHECK_INT(mktd_mock_count(m), 0);
    /* the third day, in its first millisecond */
    CHECK_INT(checkin(m, "u1", D0 + 2 * DAY_MS), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    a = last(m);
    CHECK_STR(a->kind, "checkin.reward");
    CHECK_STR(a->campaign, "c");
    CHECK_STR(a->user, "u1");
    CHECK_STR(a->event_id, last_id());
    CHECK_INT(a->ts, D0 + 2 * DAY_MS);
    CHECK_STR(a->payload, "{\"days\":3,\"reward\":{\"points\":50,\"note\":\"3 days\"}}");
    CHECK_NOTE("run 3 on 2023-11-17: reward");
    /* 4, 5: nothing; 6 = 2 x 3: again */
    CHECK_INT(checkin(m, "u1", D0 + 3 * DAY_MS + 1), 0);
    CHECK_NOTE("run 4 of 6 on 2023-11-18");
    CHECK_INT(checkin(m, "u1", D0 + 4 * DAY_MS + 1), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(checkin(m, "u1", D0 + 6 * DAY_MS - 1), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_STR(last(m)->payload, "{\"days\":6,\"reward\":{\"points\":50,\"note\":\"3 days\"}}");
    CHECK_STR(run_state(m, "c", "u1"), "19681 6");
    /* users have runs of their own */
    CHECK_INT(checkin(m, "u2", D0 + 6 * DAY_MS), 0);
    CHECK_STR(run_state(m, "c", "u2"), "19682 1");
    CHECK_INT(mktd_mock_count(m), 2);
    /* other event types are not check-ins */
    CHECK_INT(play(m, "visit", "u2", D0 + 7 * DAY_MS, NULL), 0);
    CHECK_STR(run_state(m, "c", "u2"), "19682 1");
    mktd_mock_free(m);
}

static void test_streak_one(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "c", "streak: 1\n");
    for (int i = 0; i < 3; i++)
        CHECK_INT(checkin(m, "u1", D0 + i * DAY_MS), 0);
    CHECK_STR(mktd_mock_dump(m, 0), "checkin.reward u1 {\"days\":1,\"reward\":{}}\n"
                                    "checkin.reward u1 {\"days\":2,\"reward\":{}}\n"
                                    "checkin.reward u1 {\"days\":3,\"reward\":{}}\n");
    mktd_mock_free(m);
}

static void test_missed_day(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "c", "streak: 2\n");
    CHECK_INT(checkin(m, "u1", D0), 0);
    CHECK_INT(checkin(m, "u1", D0 + DAY_MS), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(checkin(m, "u1", D0 + 2 * DAY_MS), 0);
    /* the fourth day missed: the fifth starts again */
    CHECK_INT(checkin(m, "u1", D0 + 4 * DAY_MS), 0);
    CHECK_NOTE("missed a day after 2023-11-17: the run starts again");
    CHECK_NOTE("run 1 of 2 on 2023-11-19");
    CHECK_STR(run_state(m, "c", "u1"), "19680 1");
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(checkin(m, "u1", D0 + 5 * DAY_MS), 0);
    CHECK_STR(mktd_mock_dump(m, 1), "checkin.reward u1 {\"days\":2,\"reward\":{}}\n");
    /* a long gap too */
    CHECK_INT(checkin(m, "u1", D0 + 400 * DAY_MS), 0);
    CHECK_STR(run_state(m, "c", "u1"), "20076 1");
    mktd_mock_free(m);
}

static void test_twice_a_day(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "c", "streak: 2\n");
    CHECK_INT(checkin(m, "u1", D0 + 1 * HOUR_MS), 0);
    CHECK_INT(checkin(m, "u1", D0 + 23 * HOUR_MS), 0);
    CHECK_NOTE("already checked in on 2023-11-15");
    CHECK_INT(checkin(m, "u1", D0 + DAY_MS - 1), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_STR(run_state(m, "c", "u1"), "19676 1");
    CHECK_INT(checkin(m, "u1", D0 + DAY_MS), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(checkin(m, "u1", D0 + DAY_MS + HOUR_MS), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_STR(run_state(m, "c", "u1"), "19677 2");
    mktd_mock_free(m);
}

/* A check-in dated at or before the last counted local day changes nothing. */
static void test_back_dated(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "c", "streak: 2\n");
    CHECK_INT(checkin(m, "u1", D0 + 3 * DAY_MS), 0);
    CHECK_INT(checkin(m, "u1", D0 + 2 * DAY_MS), 0); /* late: the day before */
    CHECK_NOTE("back-dated: 2023-11-17 is before the last counted day 2023-11-18");
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_STR(run_state(m, "c", "u1"), "19679 1");
    CHECK_INT(checkin(m, "u1", D0), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_STR(run_state(m, "c", "u1"), "19679 1");
    /* the run goes on from the last counted day */
    CHECK_INT(checkin(m, "u1", D0 + 4 * DAY_MS), 0);
    CHECK_STR(mktd_mock_dump(m, 0), "checkin.reward u1 {\"days\":2,\"reward\":{}}\n");
    mktd_mock_free(m);
}

/* Local days at utc_offset: +08:00 starts the day at 16:00 UTC. Check-ins at
 * 23:30 and then 00:30 local are consecutive local days within one UTC day;
 * 23:30 local and 00:30 local a day later are consecutive UTC days but miss
 * a local one. */
static void test_utc_offset(void)
{
    mktd_mock *m = mktd_mock_new();
    /* 2023-11-15 23:30 at +08:00 = 15:30Z */
    int64_t t1 = D0 + 15 * HOUR_MS + 30 * MIN_MS;

    add_ok(m, "local", "streak: 2\nutc_offset: \"+08:00\"\nreward: {tz: local}\n");
    add_ok(m, "utc", "streak: 2\nreward: {tz: utc}\n");
    CHECK_INT(checkin(m, "u1", t1), 0);
    /* 2023-11-16 00:30 at +08:00 = 2023-11-15 16:30Z: the same UTC day */
    CHECK_INT(checkin(m, "u1", t1 + HOUR_MS), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "checkin.reward u1 {\"days\":2,\"reward\":{\"tz\":\"local\"}}\n");
    CHECK_STR(run_state(m, "local", "u1"), "19677 2");
    CHECK_STR(run_state(m, "utc", "u1"), "19676 1");

    /* u2: 2023-11-15 23:30 local, then 2023-11-17 00:30 local (16:30Z on
     * the 16th): the next UTC day, but the local 16th was missed */
    CHECK_INT(checkin(m, "u2", t1), 0);
    CHECK_INT(checkin(m, "u2", t1 + DAY_MS + HOUR_MS), 0);
    CHECK_STR(mktd_mock_dump(m, 1), "checkin.reward u2 {\"days\":2,\"reward\":{\"tz\":\"utc\"}}\n");
    CHECK_STR(run_state(m, "local", "u2"), "19678 1");
    CHECK_STR(run_state(m, "utc", "u2"), "19677 2");
    mktd_mock_free(m);

    /* a negative offset, and days before 1970 in the notes */
    m = mktd_mock_new();
    add_ok(m, "c", "streak: 2\nutc_offset: \"-05:00\"\n");
    CHECK_INT(checkin(m, "u1", 0), 0); /* 1969-12-31 19:00 local */
    CHECK_NOTE("run 1 of 2 on 1969-12-31");
    CHECK_STR(run_state(m, "c", "u1"), "-1 1");
    CHECK_INT(checkin(m, "u1", 5 * HOUR_MS - 1), 0);
    CHECK_NOTE("already checked in on 1969-12-31");
    CHECK_INT(checkin(m, "u1", 5 * HOUR_MS), 0);
    CHECK_STR(mktd_mock_dump(m, 0), "checkin.reward u1 {\"days\":2,\"reward\":{}}\n");
    mktd_mock_free(m);
}

/* Disabled or outside its window, the campaign does not see check-ins: a
 * day only they covered breaks the run. */
static void test_inactive(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "c", "streak: 2\n");
    CHECK_INT(checkin(m, "u1", D0), 0);
    mktd_mock_set_enabled(m, "c", 0);
    CHECK_INT(checkin(m, "u1", D0 + DAY_MS), 0);
    CHECK_STR(run_state(m, "c", "u1"), "19676 1");
    mktd_mock_set_enabled(m, "c", 1);
    CHECK_INT(checkin(m, "u1", D0 + 2 * DAY_MS), 0);
    CHECK_STR(run_state(m, "c", "u1"), "19678 1");
    CHECK_INT(mktd_mock_count(m), 0);
    mktd_mock_set_window(m, "c", D0 + 10 * DAY_MS, D0 + 20 * DAY_MS);
    CHECK_INT(checkin(m, "u1", D0 + 3 * DAY_MS), 0);
    CHECK_STR(run_state(m, "c", "u1"), "19678 1");
    CHECK_INT(checkin(m, "u1", D0 + 10 * DAY_MS), 0);
    CHECK_INT(checkin(m, "u1", D0 + 11 * DAY_MS), 0);
    CHECK_STR(mktd_mock_dump(m, 0), "checkin.reward u1 {\"days\":2,\"reward\":{}}\n");
    mktd_mock_free(m);
}

/* Only input events: an action of kind `checkin` is not a check-in. */
static void test_internal_ignored(void)
{
    mktd_mock *m = mktd_mock_new();

    CHECK_INT(mktd_mock_add(m, emitter_entry, "em", NULL), 0);
    add_ok(m, "c", "streak: 1\n");
    CHECK_INT(play(m, "tick", "u1", D0, NULL), 0);
    CHECK_STR(mktd_mock_dump(m, 0), "checkin u1 {}\n");
    CHECK_STR(run_state(m, "c", "u1"), "(none)");
    mktd_mock_free(m);
}

/* Excluded by its group, or capped: the day counts, no reward recorded. */
static void test_excluded_and_capped(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "c", "streak: 2\n");
    CHECK_INT(checkin(m, "u1", D0), 0);
    exclude = 1;
    CHECK_INT(checkin(m, "u1", D0 + DAY_MS), 0);
    exclude = 0;
    CHECK_NOTE("run 2 on 2023-11-16: group taken, no reward");
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_STR(run_state(m, "c", "u1"), "19677 2");
    CHECK_INT(checkin(m, "u1", D0 + 2 * DAY_MS), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    cap_emits = 1;
    CHECK_INT(checkin(m, "u1", D0 + 3 * DAY_MS), 0);
    CHECK_INT(cap_emits, 0);
    CHECK_NOTE("run 4 on 2023-11-18: checkin.reward capped");
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_STR(run_state(m, "c", "u1"), "19679 4");
    CHECK_INT(checkin(m, "u1", D0 + 4 * DAY_MS), 0);
    CHECK_INT(checkin(m, "u1", D0 + 5 * DAY_MS), 0);
    CHECK_STR(mktd_mock_dump(m, 0), "checkin.reward u1 {\"days\":6,\"reward\":{}}\n");
    mktd_mock_free(m);
}

/* The test kit's own groups and caps (spec 11). */
static void test_group_and_caps(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "a", "streak: 2\nreward: {from: a}\n");
    add_ok(m, "b", "streak: 3\nreward: {from: b}\n");
    mktd_mock_set_group(m, "a", "daily");
    mktd_mock_set_group(m, "b", "daily");
    for (int i = 0; i < 6; i++)
        CHECK_INT(checkin(m, "u1", D0 + i * DAY_MS), 0);
    /* day 2: a; day 3: b (a recorded nothing); day 4: a; day 6: a takes the
     * group, b only counts its sixth day */
    CHECK_STR(mktd_mock_dump(m, 0), "checkin.reward u1 {\"days\":2,\"reward\":{\"from\":\"a\"}}\n"
                                    "checkin.reward u1 {\"days\":3,\"reward\":{\"from\":\"b\"}}\n"
                                    "checkin.reward u1 {\"days\":4,\"reward\":{\"from\":\"a\"}}\n"
                                    "checkin.reward u1 {\"days\":6,\"reward\":{\"from\":\"a\"}}\n");
    CHECK_NOTE("run 6 on 2023-11-20: group taken, no reward");
    CHECK_STR(run_state(m, "b", "u1"), "19681 6");
    mktd_mock_free(m);

    m = mktd_mock_new();
    add_ok(m, "c", "streak: 1\n");
    CHECK_INT(mktd_mock_set_caps(m, "[{id: weekly, kinds: [checkin.reward], max: 2, per: 7d}]"), 0);
    for (int i = 0; i < 4; i++)
        CHECK_INT(checkin(m, "u1", D0 + i * DAY_MS), 0);
    CHECK_NOTE("run 4 on 2023-11-18: checkin.reward capped");
    CHECK_STR(mktd_mock_dump(m, 0), "checkin.reward u1 {\"days\":1,\"reward\":{}}\n"
                                    "checkin.reward u1 {\"days\":2,\"reward\":{}}\n");
    CHECK_STR(run_state(m, "c", "u1"), "19679 4");
    mktd_mock_free(m);
}

/* A dry check-in answers and leaves the run as it was. */
static void test_dry(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "c", "streak: 2\n");
    CHECK_INT(checkin(m, "u1", D0), 0);
    clear_notes();
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"d1\",\"type\":\"checkin\",\"user\":\"u1\",\"ts\":"
                                 "1700092800000,\"dry\":true}"),
              0);
    CHECK_NOTE("run 2 on 2023-11-16: reward");
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_STR(run_state(m, "c", "u1"), "19676 1");
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"d1\",\"type\":\"checkin\",\"user\":\"u1\",\"ts\":"
                                 "1700092800000}"),
              0);
    CHECK_STR(mktd_mock_dump(m, 0), "checkin.reward u1 {\"days\":2,\"reward\":{}}\n");
    mktd_mock_free(m);
}

/* The README's worked example, action for action. */
static void test_readme_example(void)
{
    mktd_mock *m = mktd_mock_new();
    /* 2026-01-01T00:00:00Z = 08:00 local on the 1st */
    const int64_t J = 1767225600000LL;

    add_ok(m, "daily-checkin",
           "streak: 3\nutc_offset: \"+08:00\"\nreward: {points: 30, label: \"3-day streak\"}\n");
    CHECK_INT(checkin(m, "alice", J + 1 * HOUR_MS), 0);                           /* 1st 09:00 */
    CHECK_INT(checkin(m, "alice", J + 15 * HOUR_MS + 50 * MIN_MS), 0);            /* 1st 23:50 */
    CHECK_INT(checkin(m, "alice", J + 16 * HOUR_MS + 10 * MIN_MS), 0);            /* 2nd 00:10 */
    CHECK_INT(checkin(m, "alice", J + DAY_MS + 12 * HOUR_MS), 0);                 /* 2nd 20:00 */
    CHECK_INT(checkin(m, "alice", J + 2 * DAY_MS), 0);                            /* 3rd 08:00 */
    CHECK_INT(checkin(m, "bob", J + 2 * DAY_MS + 15 * HOUR_MS + 30 * MIN_MS), 0); /* 3rd 23:30 */
    CHECK_INT(checkin(m, "bob", J + 3 * DAY_MS + 16 * HOUR_MS + 30 * MIN_MS), 0); /* 5th 00:30 */
    CHECK_INT(checkin(m, "alice", J + 3 * DAY_MS), 0);                            /* 4th 08:00 */
    CHECK_INT(checkin(m, "alice", J + 4 * DAY_MS), 0);                            /* 5th 08:00 */
    CHECK_INT(checkin(m, "alice", J + 2 * DAY_MS + 13 * HOUR_MS), 0);             /* 3rd 21:00 */
    CHECK_NOTE("back-dated: 2026-01-03 is before the last counted day 2026-01-05");
    CHECK_INT(checkin(m, "alice", J + 5 * DAY_MS), 0); /* 6th 08:00 */
    CHECK_STR(mktd_mock_dump(m, 0),
              "checkin.reward alice {\"days\":3,\"reward\":{\"points\":30,\"label\":\"3-day "
              "streak\"}}\n"
              "checkin.reward alice {\"days\":6,\"reward\":{\"points\":30,\"label\":\"3-day "
              "streak\"}}\n");
    CHECK_STR(run_state(m, "daily-checkin", "bob"), "20458 1");
    mktd_mock_free(m);
}

/* Forget (mktd_mock_forget): the run is the user's own state, which goes:
 * the user's next check-in starts a new run. */
static void test_forget(void)
{
    mktd_mock *m = mktd_mock_new();
    char ps[64];
    add_ok(m, "ci", "streak: 2\n");
    CHECK_INT(checkin(m, "u1", D0), 0);
    CHECK_INT(mktd_mock_state(m, "ci", "u1", "run", NULL, NULL), 0);
    CHECK_INT(mktd_mock_forget(m, "u1", ps, sizeof ps), 0);
    CHECK_INT(mktd_mock_state(m, "ci", "u1", "run", NULL, NULL), -ENOENT);
    CHECK_INT(checkin(m, "u1", D0 + DAY_MS), 0);
    CHECK_INT(mktd_mock_count(m), 0); /* day 1 of a new run, not day 2 */
    CHECK_INT(checkin(m, "u1", D0 + 2 * DAY_MS), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    mktd_mock_free(m);
}

int main(void)
{
    test_param_errors();
    test_streak();
    test_streak_one();
    test_missed_day();
    test_twice_a_day();
    test_back_dated();
    test_utc_offset();
    test_inactive();
    test_internal_ignored();
    test_excluded_and_capped();
    test_group_and_caps();
    test_dry();
    test_readme_example();
    test_forget();
    return check_done();
}
