/* Unit tests of the groupbuy plugin on the real engine (the SDK test kit). */
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

/* ---- helpers ---- */

static int gopen(mktd_mock *m, const char *user, int64_t ts, const char *group, const char *product)
{
    char props[1024];
    snprintf(props, sizeof props, "{\"group_id\":\"%s\",\"product\":%s}", group, product);
    return play(m, "group.open", user, ts, props);
}

static int join(mktd_mock *m, const char *user, int64_t ts, const char *group)
{
    char props[512];
    snprintf(props, sizeof props, "{\"group_id\":\"%s\"}", group);
    return play(m, "group.join", user, ts, props);
}

/* "campaign kind user payload\n" for every action from index from, with
 * "@ts" and "-" (no event id) for timer-driven ones. */
static const char *dump(mktd_mock *m, size_t from)
{
    static char buf[16384];
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = from; i < mktd_mock_count(m); i++) {
        const mktd_mock_action *a = mktd_mock_action_at(m, i);
        int n = snprintf(buf + off, sizeof buf - off, "%s %s %s %s", a->campaign, a->kind, a->user,
                         a->payload);
        if (n < 0 || (size_t)n >= sizeof buf - off)
            break;
        off += (size_t)n;
        if (!a->event_id)
            n = snprintf(buf + off, sizeof buf - off, " @%" PRId64, a->ts);
        else
            n = 0;
        off += (size_t)n;
        if (off + 1 < sizeof buf)
            buf[off++] = '\n', buf[off] = '\0';
    }
    return buf;
}

static const char *state_of(mktd_mock *m, const char *campaign, const char *key)
{
    const char *v = NULL;
    size_t n;
    return mktd_mock_state(m, campaign, NULL, key, &v, &n) == 0 ? v : "(none)";
}

/* ---- params ---- */

static void test_params(void)
{
    mktd_mock *m = mktd_mock_new();
    const char *e;

    CHECK_ERR("window: 1h\n", "params:", "size");
    CHECK_ERR("size: 3\n", "params:", "window");
    CHECK_ERR("size: 1\nwindow: 1h\n", "params:1:7:", NULL);
    CHECK_ERR("size: 101\nwindow: 1h\n", "params:1:7:", NULL);
    CHECK_ERR("size: three\nwindow: 1h\n", "params:1:7:", NULL);
    CHECK_ERR("size: 3\nwindow: 0\n", "params:2:9:", NULL);
    CHECK_ERR("size: 3\nwindow: soon\n", "params:2:9:", NULL);
    CHECK_ERR("size: 3\nwindow: 1h\nreward: -1\n", "params:3:9:", NULL);
    CHECK_ERR("size: 3\nwindow: 1h\nreward: 1.5\n", "params:3:9:", NULL);
    CHECK_ERR("size: 3\nwindow: 1h\nprice: 5\n", "params:3:1:", "reward");
    CHECK_ERR("- size\n", "params:1:1:", NULL);
    e = add_err(m, NULL);
    CHECK(strstr(e, "size") != NULL);
    /* every problem is reported */
    e = add_err(m, "size: 0\nwindow: 0\nreward: -1\nx: 1\n");
    CHECK(has_error(e, "params:1:7:", NULL));
    CHECK(has_error(e, "params:2:9:", NULL));
    CHECK(has_error(e, "params:3:9:", NULL));
    CHECK(has_error(e, "params:4:1:", NULL));

    add_ok(m, "ok1", "size: 2\nwindow: 1\n");
    add_ok(m, "ok2", "size: 100\nwindow: 250ms\nreward: 0\n");
    add_ok(m, "ok3", "size: 5\nwindow: 2d\nreward: 1000\n");
    mktd_mock_free(m);
}

/* ---- success and expiry ---- */

static void test_success(void)
{
    mktd_mock *m = mktd_mock_new();
    int64_t due;

    add_ok(m, "gb", "size: 3\nwindow: 1h\nreward: 500\n");
    CHECK_INT(gopen(m, "alice", T0, "g1", "\"tea\""), 0);
    CHECK_INT(mktd_mock_count(m), 0); /* an opening records nothing */
    CHECK_INT(mktd_mock_timer(m, "gb", NULL, "x:g1", &due), 0);
    CHECK_INT(due, T0 + HOUR_MS);
    CHECK_STR(state_of(m, "gb", "m:2:g1:alice"), "1");
    CHECK_INT(join(m, "bob", T0 + 10, "g1"), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    /* the last millisecond of the window fills it */
    CHECK_INT(join(m, "carol", T0 + HOUR_MS - 1, "g1"), 0);
    CHECK_STR(dump(m, 0),
              "gb groupbuy.success alice "
              "{\"group_id\":\"g1\",\"product\":\"tea\",\"members\":3,\"reward\":500}\n"
              "gb groupbuy.success bob "
              "{\"group_id\":\"g1\",\"product\":\"tea\",\"members\":3,\"reward\":500}\n"
              "gb groupbuy.success carol "
              "{\"group_id\":\"g1\",\"product\":\"tea\",\"members\":3,\"reward\":500}\n");
    /* caused by the join, stamped with now */
    CHECK_STR(mktd_mock_action_at(m, 0)->event_id, "e3");
    CHECK_INT(mktd_mock_action_at(m, 0)->ts, T0 + HOUR_MS - 1);
    /* the expiry is gone, the member list too; the record stays */
    CHECK_INT(mktd_mock_timer(m, "gb", NULL, "x:g1", &due), -ENOENT);
    CHECK_STR(state_of(m, "gb", "m:2:g1:alice"), "(none)");
    CHECK(strncmp(state_of(m, "gb", "g:g1"), "s ", 2) == 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 2 * HOUR_MS), 0);
    CHECK_INT(mktd_mock_count(m), 3);

    /* members join in any order of user id: the actions follow joining */
    mktd_mock_clear(m);
    CHECK_INT(gopen(m, "zed", T0 + 3 * HOUR_MS, "g2", "{\"sku\":\"A-1\",\"price\":990}"), 0);
    CHECK_INT(join(m, "amy", T0 + 3 * HOUR_MS + 1, "g2"), 0);
    CHECK_INT(join(m, "moe", T0 + 3 * HOUR_MS + 2, "g2"), 0);
    CHECK_STR(dump(m, 0),
              "gb groupbuy.success zed {\"group_id\":\"g2\",\"product\":{\"sku\":\"A-1\","
              "\"price\":990},\"members\":3,\"reward\":500}\n"
              "gb groupbuy.success amy {\"group_id\":\"g2\",\"product\":{\"sku\":\"A-1\","
              "\"price\":990},\"members\":3,\"reward\":500}\n"
              "gb groupbuy.success moe {\"group_id\":\"g2\",\"product\":{\"sku\":\"A-1\","
              "\"price\":990},\"members\":3,\"reward\":500}\n");

    /* without a product: null; reward defaults to 0 */
    mktd_mock *m2 = mktd_mock_new();
    add_ok(m2, "gb", "size: 2\nwindow: 1h\n");
    CHECK_INT(play(m2, "group.open", "a", T0, "{\"group_id\":\"p\"}"), 0);
    CHECK_INT(join(m2, "b", T0 + 1, "p"), 0);
    CHECK_STR(
        dump(m2, 0),
        "gb groupbuy.success a {\"group_id\":\"p\",\"product\":null,\"members\":2,\"reward\":0}\n"
        "gb groupbuy.success b {\"group_id\":\"p\",\"product\":null,\"members\":2,\"reward\":0}\n");
    mktd_mock_free(m2);
    mktd_mock_free(m);
}

static void test_expiry(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "gb", "size: 3\nwindow: 1h\nreward: 500\n");
    CHECK_INT(gopen(m, "alice", T0, "g1", "\"tea\""), 0);
    CHECK_INT(join(m, "bob", T0 + 1, "g1"), 0);
    /* a join at exactly open + window: the expiry fires first, then the
     * join is refused as expired */
    CHECK_INT(join(m, "carol", T0 + HOUR_MS, "g1"), 0);
    CHECK_STR(dump(m, 0),
              "gb groupbuy.expired alice {\"group_id\":\"g1\",\"product\":\"tea\",\"members\":2} @"
              "1767229200000\n"
              "gb groupbuy.expired bob {\"group_id\":\"g1\",\"product\":\"tea\",\"members\":2} @"
              "1767229200000\n"
              "gb groupbuy.rejected carol {\"group_id\":\"g1\",\"reason\":\"expired\"}\n");
    CHECK(mktd_mock_action_at(m, 0)->event_id == NULL);
    CHECK(strncmp(state_of(m, "gb", "g:g1"), "x ", 2) == 0);
    CHECK_STR(state_of(m, "gb", "m:2:g1:bob"), "(none)");

    /* the expiry by the clock alone, stamped with its due time */
    mktd_mock_clear(m);
    CHECK_INT(gopen(m, "dan", T0 + 2 * HOUR_MS, "g2", "\"cake\""), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 3 * HOUR_MS - 1), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 3 * HOUR_MS), 0);
    CHECK_STR(dump(m, 0),
              "gb groupbuy.expired dan "
              "{\"group_id\":\"g2\",\"product\":\"cake\",\"members\":1} @1767236400000\n");

    /* a late opening whose window has passed already expires before the
     * next event, at its own due time */
    mktd_mock_clear(m);
    CHECK_INT(gopen(m, "eve", T0, "g3", "\"old\""), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(play(m, "page.view", "x", T0 + 3 * HOUR_MS, NULL), 0);
    CHECK_STR(dump(m, 0),
              "gb groupbuy.expired eve "
              "{\"group_id\":\"g3\",\"product\":\"old\",\"members\":1} @1767229200000\n");
    mktd_mock_free(m);
}

static void test_reasons(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "gb", "size: 2\nwindow: 1h\n");
    /* unknown_group */
    CHECK_INT(join(m, "a", T0, "nope"), 0);
    CHECK_STR(dump(m, 0),
              "gb groupbuy.rejected a {\"group_id\":\"nope\",\"reason\":\"unknown_group\"}\n");
    /* already_member: the opener is the first member */
    mktd_mock_clear(m);
    CHECK_INT(gopen(m, "a", T0, "g1", "\"x\""), 0);
    CHECK_INT(join(m, "a", T0 + 1, "g1"), 0);
    CHECK_STR(dump(m, 0),
              "gb groupbuy.rejected a {\"group_id\":\"g1\",\"reason\":\"already_member\"}\n");
    /* already_open, while open */
    mktd_mock_clear(m);
    CHECK_INT(gopen(m, "b", T0 + 2, "g1", "\"x\""), 0);
    CHECK_STR(dump(m, 0),
              "gb groupbuy.rejected b {\"group_id\":\"g1\",\"reason\":\"already_open\"}\n");
    /* full comes before already_member: a member of a full group */
    mktd_mock_clear(m);
    CHECK_INT(join(m, "c", T0 + 3, "g1"), 0); /* success */
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_INT(join(m, "a", T0 + 4, "g1"), 0);
    CHECK_INT(join(m, "d", T0 + 5, "g1"), 0);
    CHECK_STR(dump(m, 2), "gb groupbuy.rejected a {\"group_id\":\"g1\",\"reason\":\"full\"}\n"
                          "gb groupbuy.rejected d {\"group_id\":\"g1\",\"reason\":\"full\"}\n");
    /* expired comes before full: the full group after its window */
    mktd_mock_clear(m);
    CHECK_INT(join(m, "a", T0 + HOUR_MS, "g1"), 0);
    CHECK_INT(join(m, "e", T0 + HOUR_MS, "g1"), 0);
    CHECK_STR(dump(m, 0), "gb groupbuy.rejected a {\"group_id\":\"g1\",\"reason\":\"expired\"}\n"
                          "gb groupbuy.rejected e {\"group_id\":\"g1\",\"reason\":\"expired\"}\n");
    /* the id is never used again, after success... */
    mktd_mock_clear(m);
    CHECK_INT(gopen(m, "f", T0 + 2 * HOUR_MS, "g1", "\"x\""), 0);
    CHECK_STR(dump(m, 0),
              "gb groupbuy.rejected f {\"group_id\":\"g1\",\"reason\":\"already_open\"}\n");
    /* ...and after expiry; expired comes before already_member */
    mktd_mock_clear(m);
    CHECK_INT(gopen(m, "g", T0 + 2 * HOUR_MS, "g2", "\"x\""), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 4 * HOUR_MS), 0);
    CHECK_INT(gopen(m, "h", T0 + 4 * HOUR_MS, "g2", "\"x\""), 0);
    CHECK_INT(join(m, "g", T0 + 4 * HOUR_MS, "g2"), 0);
    CHECK_STR(dump(m, 0),
              "gb groupbuy.expired g {\"group_id\":\"g2\",\"product\":\"x\",\"members\":1} "
              "@1767236400000\n"
              "gb groupbuy.rejected h {\"group_id\":\"g2\",\"reason\":\"already_open\"}\n"
              "gb groupbuy.rejected g {\"group_id\":\"g2\",\"reason\":\"expired\"}\n");
    /* a late join (own ts in the window) to a group that expired already */
    mktd_mock_clear(m);
    CHECK_INT(join(m, "i", T0 + 2 * HOUR_MS + 5, "g2"), 0);
    CHECK_STR(dump(m, 0), "gb groupbuy.rejected i {\"group_id\":\"g2\",\"reason\":\"expired\"}\n");
    /* a late join dated before the opening: the group did not exist yet */
    mktd_mock_clear(m);
    CHECK_INT(gopen(m, "j", T0 + 5 * HOUR_MS, "g3", "\"x\""), 0);
    CHECK_INT(join(m, "k", T0 + 5 * HOUR_MS - 1, "g3"), 0);
    CHECK_STR(dump(m, 0),
              "gb groupbuy.rejected k {\"group_id\":\"g3\",\"reason\":\"unknown_group\"}\n");
    /* a group_id that is not a string of 1-128 bytes is ignored */
    mktd_mock_clear(m);
    CHECK_INT(play(m, "group.join", "k", T0 + 5 * HOUR_MS, "{\"group_id\":7}"), 0);
    CHECK_INT(play(m, "group.join", "k", T0 + 5 * HOUR_MS, "{\"group_id\":\"\"}"), 0);
    CHECK_INT(play(m, "group.open", "k", T0 + 5 * HOUR_MS, NULL), 0);
    char props[256];
    snprintf(props, sizeof props, "{\"group_id\":\"%0129d\"}", 0);
    CHECK_INT(play(m, "group.open", "k", T0 + 5 * HOUR_MS, props), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    snprintf(props, sizeof props, "{\"group_id\":\"%0128d\"}", 0);
    CHECK_INT(play(m, "group.join", "k", T0 + 5 * HOUR_MS, props), 0);
    CHECK_INT(mktd_mock_count(m), 1); /* 128 bytes is a group id */
    mktd_mock_free(m);
}

/* ---- several campaigns ---- */

static void test_two_campaigns(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "c1", "size: 2\nwindow: 1h\nreward: 1\n");
    add_ok(m, "c2", "size: 2\nwindow: 1h\nreward: 2\n");
    /* c1 comes first and takes the opening */
    CHECK_INT(gopen(m, "a", T0, "g1", "\"x\""), 0);
    /* c1 stops opening: c2 takes the next one */
    mktd_mock_set_enabled(m, "c1", 0);
    CHECK_INT(gopen(m, "b", T0 + 1, "g2", "\"y\""), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    /* a join to c2's group: c1 (first, disabled) does not answer it */
    CHECK_INT(join(m, "c", T0 + 2, "g2"), 0);
    CHECK_STR(
        dump(m, 0),
        "c2 groupbuy.success b {\"group_id\":\"g2\",\"product\":\"y\",\"members\":2,\"reward\":2}\n"
        "c2 groupbuy.success c "
        "{\"group_id\":\"g2\",\"product\":\"y\",\"members\":2,\"reward\":2}\n");
    /* an unknown group is answered once, by the first campaign, disabled
     * or not */
    mktd_mock_clear(m);
    CHECK_INT(join(m, "d", T0 + 3, "g9"), 0);
    CHECK_STR(dump(m, 0),
              "c1 groupbuy.rejected d {\"group_id\":\"g9\",\"reason\":\"unknown_group\"}\n");
    mktd_mock_set_enabled(m, "c1", 1);
    mktd_mock_clear(m);
    CHECK_INT(join(m, "d", T0 + 4, "g9"), 0);
    CHECK_STR(dump(m, 0),
              "c1 groupbuy.rejected d {\"group_id\":\"g9\",\"reason\":\"unknown_group\"}\n");
    /* a join to c1's group: c2 ignores it */
    mktd_mock_clear(m);
    CHECK_INT(join(m, "e", T0 + 5, "g1"), 0);
    CHECK_STR(
        dump(m, 0),
        "c1 groupbuy.success a {\"group_id\":\"g1\",\"product\":\"x\",\"members\":2,\"reward\":1}\n"
        "c1 groupbuy.success e "
        "{\"group_id\":\"g1\",\"product\":\"x\",\"members\":2,\"reward\":1}\n");
    /* reopening c2's id: c2 answers, c1 (which matches) stays silent */
    mktd_mock_clear(m);
    CHECK_INT(gopen(m, "f", T0 + 6, "g2", "\"z\""), 0);
    CHECK_STR(dump(m, 0),
              "c2 groupbuy.rejected f {\"group_id\":\"g2\",\"reason\":\"already_open\"}\n");
    /* a rejected join to c2's open group comes from c2 only */
    mktd_mock_clear(m);
    mktd_mock_set_enabled(m, "c1", 0);
    CHECK_INT(gopen(m, "g", T0 + 7, "g3", "\"w\""), 0);
    mktd_mock_set_enabled(m, "c1", 1);
    CHECK_INT(join(m, "g", T0 + 8, "g3"), 0);
    CHECK_STR(dump(m, 0),
              "c2 groupbuy.rejected g {\"group_id\":\"g3\",\"reason\":\"already_member\"}\n");
    mktd_mock_free(m);
}

static void test_disabled(void)
{
    mktd_mock *m = mktd_mock_new();
    int64_t due;

    add_ok(m, "gb", "size: 2\nwindow: 1h\n");
    CHECK_INT(gopen(m, "a", T0, "g1", "\"x\""), 0);
    mktd_mock_set_enabled(m, "gb", 0);
    /* a disabled campaign opens nothing and answers no join to its groups */
    CHECK_INT(gopen(m, "b", T0 + 1, "g2", "\"x\""), 0);
    CHECK_INT(join(m, "b", T0 + 2, "g1"), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    /* the expiry fires while disabled, and records nothing */
    CHECK_INT(mktd_mock_advance(m, T0 + HOUR_MS), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(mktd_mock_timer(m, "gb", NULL, "x:g1", &due), -ENOENT);
    CHECK(strncmp(state_of(m, "gb", "g:g1"), "x ", 2) == 0);
    CHECK_STR(state_of(m, "gb", "m:2:g1:a"), "(none)");
    /* enabled again: the group has expired for good */
    mktd_mock_set_enabled(m, "gb", 1);
    CHECK_INT(mktd_mock_advance(m, T0 + 2 * HOUR_MS), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(join(m, "c", T0 + 2 * HOUR_MS, "g1"), 0);
    CHECK_STR(dump(m, 0), "gb groupbuy.rejected c {\"group_id\":\"g1\",\"reason\":\"expired\"}\n");
    /* g2 was never opened: unknown */
    mktd_mock_clear(m);
    CHECK_INT(join(m, "c", T0 + 2 * HOUR_MS, "g2"), 0);
    CHECK_STR(dump(m, 0),
              "gb groupbuy.rejected c {\"group_id\":\"g2\",\"reason\":\"unknown_group\"}\n");

    /* outside starts..ends: the expiry records nothing either */
    mktd_mock_clear(m);
    mktd_mock_set_window(m, "gb", T0, T0 + 3 * HOUR_MS);
    CHECK_INT(gopen(m, "d", T0 + 3 * HOUR_MS - 10, "g4", "\"x\""), 0);
    CHECK_INT(mktd_mock_advance(m, T0 + 5 * HOUR_MS), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK(strncmp(state_of(m, "gb", "g:g4"), "x ", 2) == 0);
    mktd_mock_free(m);
}

/* `when` chooses the openings; joins go to the owner whatever it says. */
static void test_when(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "gb", "size: 2\nwindow: 1h\n");
    mktd_mock_set_when(m, "gb", "group.open");
    CHECK_INT(gopen(m, "a", T0, "g1", "\"x\""), 0);
    CHECK_INT(join(m, "b", T0 + 1, "g1"), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    mktd_mock_set_when(m, "gb", "something.else");
    CHECK_INT(gopen(m, "a", T0 + 2, "g2", "\"x\""), 0);
    CHECK_INT(join(m, "b", T0 + 3, "g2"), 0); /* not opened: unknown */
    CHECK_STR(dump(m, 2),
              "gb groupbuy.rejected b {\"group_id\":\"g2\",\"reason\":\"unknown_group\"}\n");
    mktd_mock_free(m);
}

/* ---- caps and groups ---- */

static const mktd_host *other_host;

static int other_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    (void)data;
    if (!(flags & MKTD_F_MATCH) || strcmp(ev->type, "group.open") != 0)
        return 0;
    return other_host->emit(ctx, "other.thing", ev->user, NULL);
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

static void test_caps_and_groups(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "gb", "size: 2\nwindow: 1h\n");
    CHECK_INT(mktd_mock_set_caps(m, "[{id: one, kinds: [groupbuy.success], max: 1, per: 7d}]"), 0);
    CHECK_INT(gopen(m, "a", T0, "g1", "\"x\""), 0);
    CHECK_INT(join(m, "b", T0 + 1, "g1"), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    /* a's second success is capped; b... is not a member; c's goes on */
    CHECK_INT(gopen(m, "a", T0 + 2, "g2", "\"x\""), 0);
    CHECK_INT(join(m, "c", T0 + 3, "g2"), 0);
    CHECK_STR(dump(m, 2), "gb groupbuy.success c "
                          "{\"group_id\":\"g2\",\"product\":\"x\",\"members\":2,\"reward\":0}\n");
    CHECK(strncmp(state_of(m, "gb", "g:g2"), "s ", 2) == 0);
    mktd_mock_free(m);

    /* excluded by its group: the opening is not taken */
    m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, other_entry, "first", NULL), 0);
    add_ok(m, "gb", "size: 2\nwindow: 1h\n");
    mktd_mock_set_group(m, "first", "pick");
    mktd_mock_set_group(m, "gb", "pick");
    CHECK_INT(gopen(m, "a", T0, "g1", "\"x\""), 0);
    CHECK_STR(mktd_mock_dump(m, 0), "other.thing a {}\n");
    CHECK_STR(state_of(m, "gb", "g:g1"), "(none)");
    CHECK_INT(join(m, "b", T0 + 1, "g1"), 0);
    CHECK_STR(mktd_mock_dump(m, 1),
              "groupbuy.rejected b {\"group_id\":\"g1\",\"reason\":\"unknown_group\"}\n");
    /* a reopening of its own group while excluded: no already_open */
    mktd_mock_clear(m);
    mktd_mock_set_when(m, "first", "nothing.here");
    CHECK_INT(gopen(m, "a", T0 + 2, "g2", "\"x\""), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK(strncmp(state_of(m, "gb", "g:g2"), "o ", 2) == 0);
    mktd_mock_set_when(m, "first", NULL);
    CHECK_INT(gopen(m, "c", T0 + 3, "g2", "\"x\""), 0);
    CHECK_STR(mktd_mock_dump(m, 0), "other.thing c {}\n");
    mktd_mock_set_when(m, "first", "nothing.here");
    CHECK_INT(gopen(m, "c", T0 + 4, "g2", "\"x\""), 0);
    CHECK_STR(mktd_mock_dump(m, 1),
              "groupbuy.rejected c {\"group_id\":\"g2\",\"reason\":\"already_open\"}\n");
    mktd_mock_free(m);
}

/* ---- notes: the reasons explanations give ---- */

/* Fires the timers due by `until` with the notes cleared first. */
static int advance(mktd_mock *m, int64_t until)
{
    clear_notes();
    return mktd_mock_advance(m, until);
}

static void test_notes(void)
{
    mktd_mock *m = mktd_mock_new();
    char want[128];

    add_ok(m, "gb", "size: 3\nwindow: 1h\nreward: 5\n");
    /* unknown_group */
    CHECK_INT(join(m, "a", T0, "nope"), 0);
    CHECK_NOTE("group nope: group.join rejected: unknown_group");
    /* an opening: its size and end */
    CHECK_INT(gopen(m, "a", T0, "g1", "\"x\""), 0);
    snprintf(want, sizeof want, "group g1 opened, 1 of 3, until %lld", (long long)(T0 + HOUR_MS));
    CHECK_NOTE(want);
    /* already_open */
    CHECK_INT(gopen(m, "b", T0 + 1, "g1", "\"x\""), 0);
    CHECK_NOTE("group g1: group.open rejected: already_open");
    /* already_member (the opener) */
    CHECK_INT(join(m, "a", T0 + 2, "g1"), 0);
    CHECK_NOTE("group g1: group.join rejected: already_member");
    /* a join that does not fill it */
    CHECK_INT(join(m, "b", T0 + 3, "g1"), 0);
    CHECK_NOTE("group g1: 2 of 3");
    /* the join that fills it */
    CHECK_INT(join(m, "c", T0 + 4, "g1"), 0);
    CHECK_NOTE("group g1: full with 3 members");
    CHECK_INT(mktd_mock_count(m), 1 + 1 + 1 + 3);
    /* full */
    CHECK_INT(join(m, "d", T0 + 5, "g1"), 0);
    CHECK_NOTE("group g1: group.join rejected: full");
    /* expired (the group's window has passed: after full) */
    CHECK_INT(join(m, "d", T0 + HOUR_MS, "g1"), 0);
    CHECK_NOTE("group g1: group.join rejected: expired");
    /* a join dated before the opening: unknown_group */
    CHECK_INT(gopen(m, "e", T0 + 2 * HOUR_MS, "g2", "\"x\""), 0);
    CHECK_INT(join(m, "f", T0 + 2 * HOUR_MS - 1, "g2"), 0);
    CHECK_NOTE("group g2: group.join rejected: unknown_group");
    /* the expiry, by the clock */
    CHECK_INT(join(m, "f", T0 + 2 * HOUR_MS + 1, "g2"), 0);
    CHECK_INT(advance(m, T0 + 3 * HOUR_MS), 0);
    CHECK_NOTE("group g2 expired with 2 of 3");
    /* a group_id that is not one */
    CHECK_INT(play(m, "group.join", "k", T0 + 3 * HOUR_MS, "{\"group_id\":7}"), 0);
    CHECK_NOTE("group.join without a group_id of 1-128 bytes: ignored");
    CHECK_INT(play(m, "group.open", "k", T0 + 3 * HOUR_MS, NULL), 0);
    CHECK_NOTE("group.open without a group_id of 1-128 bytes: ignored");

    /* inactive: its group's joins and openings are not answered; the
     * expiry records nothing */
    mktd_mock_clear(m);
    CHECK_INT(gopen(m, "g", T0 + 4 * HOUR_MS, "g3", "\"x\""), 0);
    mktd_mock_set_enabled(m, "gb", 0);
    CHECK_INT(join(m, "h", T0 + 4 * HOUR_MS + 1, "g3"), 0);
    CHECK_NOTE("group g3: inactive, the join is not answered");
    CHECK_INT(gopen(m, "h", T0 + 4 * HOUR_MS + 2, "g3", "\"x\""), 0);
    CHECK_NOTE("group g3: inactive, the opening is not answered");
    CHECK_INT(advance(m, T0 + 5 * HOUR_MS), 0);
    CHECK_NOTE("group g3 expired while the campaign was inactive: nothing recorded");
    CHECK_INT(mktd_mock_count(m), 0);
    mktd_mock_free(m);

    /* another campaign's group */
    m = mktd_mock_new();
    add_ok(m, "c1", "size: 2\nwindow: 1h\n");
    add_ok(m, "c2", "size: 2\nwindow: 1h\n");
    mktd_mock_set_when(m, "c1", "nothing.here");
    CHECK_INT(gopen(m, "a", T0, "g1", "\"x\""), 0);
    CHECK_NOTE("group g1 opened, 1 of 2");
    CHECK_INT(join(m, "b", T0 + 1, "g1"), 0);
    CHECK_NOTE("group g1 belongs to campaign c2");
    CHECK_INT(gopen(m, "c", T0 + 2, "g1", "\"x\""), 0);
    CHECK_NOTE("group g1 belongs to campaign c2");
    CHECK_NOTE("group g1: group.open rejected: already_open");
    mktd_mock_free(m);

    /* capped: a rejection, a member's success */
    m = mktd_mock_new();
    add_ok(m, "gb", "size: 2\nwindow: 1h\n");
    CHECK_INT(mktd_mock_set_caps(m, "[{id: one, kinds: [groupbuy.rejected, groupbuy.success], "
                                    "max: 1, per: 7d}]"),
              0);
    CHECK_INT(join(m, "a", T0, "nope1"), 0); /* a's one action */
    CHECK_INT(join(m, "a", T0 + 1, "nope2"), 0);
    CHECK_NOTE("group nope2: group.join rejected: unknown_group");
    CHECK_NOTE("the rejection was capped");
    CHECK_INT(gopen(m, "a", T0 + 2, "g1", "\"x\""), 0);
    CHECK_INT(join(m, "b", T0 + 3, "g1"), 0);
    CHECK_NOTE("groupbuy.success for a was capped");
    CHECK_STR(dump(m, 0),
              "gb groupbuy.rejected a {\"group_id\":\"nope1\",\"reason\":\"unknown_group\"}\n"
              "gb groupbuy.success b "
              "{\"group_id\":\"g1\",\"product\":\"x\",\"members\":2,\"reward\":0}\n");
    mktd_mock_free(m);

    /* excluded by its group: not opened; its own group's reopening is
     * not answered */
    m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, other_entry, "first", NULL), 0);
    add_ok(m, "gb", "size: 2\nwindow: 1h\n");
    mktd_mock_set_group(m, "first", "pick");
    mktd_mock_set_group(m, "gb", "pick");
    CHECK_INT(gopen(m, "a", T0, "g1", "\"x\""), 0);
    CHECK_NOTE("group g1 not opened: excluded by the campaign's group");
    mktd_mock_set_when(m, "first", "nothing.here");
    CHECK_INT(gopen(m, "a", T0 + 1, "g2", "\"x\""), 0);
    mktd_mock_set_when(m, "first", NULL);
    CHECK_INT(gopen(m, "b", T0 + 2, "g2", "\"x\""), 0);
    CHECK_NOTE("group g2: excluded by the campaign's group");
    mktd_mock_free(m);
}

/* ---- forget: on_forget called through the campaign itself ---- */

static mktd_plugin wrapped;
static const mktd_host *wrapped_host;

static int wrapped_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    const mktd_plugin *real = mktd_plugin_entry(wrapped_host);
    if (strcmp(ev->type, "test.forget") == 0) {
        mktd_value v;
        if (wrapped_host->prop(ctx, ev, "pseudonym", &v) != MKTD_T_STRING)
            return -EINVAL;
        return real->on_forget(ctx, data, ev->user, v.s);
    }
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

    CHECK_INT(mktd_mock_add(m, wrapped_entry, "gb", "size: 4\nwindow: 1h\n"), 0);
    CHECK_INT(gopen(m, "alice", T0, "g1", "\"x\""), 0);
    CHECK_INT(join(m, "bob", T0 + 1, "g1"), 0);
    CHECK_INT(gopen(m, "bob", T0 + 2, "g:2", "\"x\""), 0);
    CHECK_INT(gopen(m, "carol", T0 + 3, "g3", "\"x\""), 0);
    CHECK_INT(play(m, "test.forget", "bob", T0 + 4, "{\"pseudonym\":\"forgotten:k1\"}"), 0);
    CHECK_STR(state_of(m, "gb", "m:2:g1:bob"), "(none)");
    CHECK_STR(state_of(m, "gb", "m:2:g1:forgotten:k1"), "2");
    CHECK_STR(state_of(m, "gb", "m:3:g:2:forgotten:k1"), "1");
    CHECK_STR(state_of(m, "gb", "m:2:g1:alice"), "1");
    CHECK_STR(state_of(m, "gb", "m:2:g3:carol"), "1");
    /* the pseudonym keeps bob's place; bob himself may join anew */
    CHECK_INT(join(m, "bob", T0 + 5, "g1"), 0);
    CHECK_INT(join(m, "dan", T0 + 6, "g1"), 0);
    CHECK_STR(
        mktd_mock_dump(m, 0),
        "groupbuy.success alice "
        "{\"group_id\":\"g1\",\"product\":\"x\",\"members\":4,\"reward\":0}\n"
        "groupbuy.success forgotten:k1 "
        "{\"group_id\":\"g1\",\"product\":\"x\",\"members\":4,\"reward\":0}\n"
        "groupbuy.success bob {\"group_id\":\"g1\",\"product\":\"x\",\"members\":4,\"reward\":0}\n"
        "groupbuy.success dan "
        "{\"group_id\":\"g1\",\"product\":\"x\",\"members\":4,\"reward\":0}\n");
    /* the expiry of bob's own group names the pseudonym */
    mktd_mock_clear(m);
    CHECK_INT(mktd_mock_advance(m, T0 + 2 + HOUR_MS), 0);
    CHECK_STR(
        mktd_mock_dump(m, 0),
        "groupbuy.expired forgotten:k1 {\"group_id\":\"g:2\",\"product\":\"x\",\"members\":1}\n");
    mktd_mock_free(m);
}

/* The daemon's forget (mktd_mock_forget): the member keeps its place
 * under the pseudonym, the recorded actions name it too. */
static void test_forget_by_host(void)
{
    mktd_mock *m = mktd_mock_new();
    char ps[64], want[512];

    add_ok(m, "gb", "size: 3\nwindow: 1h\nreward: 5\n");
    CHECK_INT(gopen(m, "alice", T0, "g1", "\"x\""), 0);
    CHECK_INT(join(m, "bob", T0 + 1, "g1"), 0);
    CHECK_INT(mktd_mock_forget(m, "alice", ps, sizeof ps), 0);
    CHECK_INT(join(m, "carol", T0 + 2, "g1"), 0);
    snprintf(want, sizeof want,
             "groupbuy.success %s "
             "{\"group_id\":\"g1\",\"product\":\"x\",\"members\":3,\"reward\":5}\n"
             "groupbuy.success bob "
             "{\"group_id\":\"g1\",\"product\":\"x\",\"members\":3,\"reward\":5}\n"
             "groupbuy.success carol "
             "{\"group_id\":\"g1\",\"product\":\"x\",\"members\":3,\"reward\":5}\n",
             ps);
    CHECK_STR(mktd_mock_dump(m, 0), want);
    mktd_mock_free(m);
}

int main(void)
{
    test_params();
    test_success();
    test_expiry();
    test_reasons();
    test_two_campaigns();
    test_disabled();
    test_when();
    test_caps_and_groups();
    test_notes();
    test_forget();
    test_forget_by_host();
    return check_done();
}
