/* Unit tests of the loyalty example plugin against the mock host (mktd/mock.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/mock.h>
#include <mktd/plugin.h>

/* The plugin is linked into this test; its entry is called directly. */
const mktd_plugin *mktd_plugin_entry(const mktd_host *host);

static int failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);               \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define CHECK_STR(got, want)                                                                       \
    do {                                                                                           \
        const char *g_ = (got), *w_ = (want);                                                      \
        if (!g_ || strcmp(g_, w_) != 0) {                                                          \
            fprintf(stderr, "%s:%d: got:\n%s\nwant:\n%s\n", __FILE__, __LINE__,                    \
                    g_ ? g_ : "(null)", w_);                                                       \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                                                \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_)) {                                                              \
            fprintf(stderr, "%s:%d: '%s' not in:\n%s\n", __FILE__, __LINE__, n_,                   \
                    h_ ? h_ : "(null)");                                                           \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

static const char *const params = "points_per_yuan: 2\n"
                                  "tiers:\n"
                                  "  - {name: silver, at: 100}\n"
                                  "  - {name: gold, at: 500}\n"
                                  "  - {name: premium, at: 2000}\n";

static mktd_mock *setup(void)
{
    mktd_mock *m = mktd_mock_new();
    if (mktd_mock_add(m, mktd_plugin_entry, "member", params) != 0) {
        fprintf(stderr, "setup: %s\n", mktd_mock_errors(m));
        exit(1);
    }
    return m;
}

static int paid(mktd_mock *m, const char *id, const char *user, const char *order, long amount)
{
    char line[512];
    snprintf(line, sizeof line,
             "{\"id\":\"%s\",\"type\":\"order.paid\",\"user\":\"%s\",\"ts\":1000,"
             "\"props\":{\"order_id\":\"%s\",\"amount\":%ld}}",
             id, user, order, amount);
    return mktd_mock_event(m, line);
}

static int refunded(mktd_mock *m, const char *id, const char *user, const char *order, long amount)
{
    char line[512];
    if (amount > 0)
        snprintf(line, sizeof line,
                 "{\"id\":\"%s\",\"type\":\"order.refunded\",\"user\":\"%s\",\"ts\":2000,"
                 "\"props\":{\"order_id\":\"%s\",\"amount\":%ld}}",
                 id, user, order, amount);
    else
        snprintf(line, sizeof line,
                 "{\"id\":\"%s\",\"type\":\"order.refunded\",\"user\":\"%s\",\"ts\":2000,"
                 "\"props\":{\"order_id\":\"%s\"}}",
                 id, user, order);
    return mktd_mock_event(m, line);
}

static void test_earn_and_tiers(void)
{
    mktd_mock *m = setup();

    /* 123.45 yuan at 2 points per yuan: 246 points (fractions round down). */
    CHECK(paid(m, "e1", "alice", "o1", 12345) == 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "points.earned alice {\"order_id\":\"o1\",\"points\":246,\"total\":246}\n"
              "points.tier alice {\"tier\":\"silver\",\"total\":246}\n");
    CHECK(mktd_mock_counter(m, "member", "alice", "total") == 246);

    /* A jump over two thresholds: one points.tier for each, lowest first. */
    size_t n = mktd_mock_count(m);
    CHECK(paid(m, "e2", "alice", "o2", 100000) == 0);
    CHECK_STR(mktd_mock_dump(m, n),
              "points.earned alice {\"order_id\":\"o2\",\"points\":2000,\"total\":2246}\n"
              "points.tier alice {\"tier\":\"gold\",\"total\":2246}\n"
              "points.tier alice {\"tier\":\"premium\",\"total\":2246}\n");

    /* The same order id again earns nothing. */
    n = mktd_mock_count(m);
    CHECK(paid(m, "e3", "alice", "o2", 100000) == 0);
    CHECK(mktd_mock_count(m) == n);

    /* Less than one point: no action. */
    CHECK(paid(m, "e4", "bob", "o3", 49) == 0);
    CHECK(mktd_mock_count(m) == n);
    CHECK(mktd_mock_counter(m, "member", "bob", "total") == 0);

    /* Payload order is fixed by the plugin; the action is the event's. */
    const mktd_mock_action *a = mktd_mock_action_at(m, 0);
    CHECK(a && strcmp(a->event_id, "e1") == 0 && strcmp(a->campaign, "member") == 0);
    mktd_mock_free(m);
}

static void test_refunds(void)
{
    mktd_mock *m = setup();

    CHECK(paid(m, "e1", "alice", "o1", 10001) == 0); /* 200 points */
    size_t n = mktd_mock_count(m);

    /* A third refunded: floor(200 * 3333 / 10001) = 66 points back. */
    CHECK(refunded(m, "r1", "alice", "o1", 3333) == 0);
    CHECK_STR(mktd_mock_dump(m, n),
              "points.revoked alice {\"order_id\":\"o1\",\"points\":66,\"total\":134}\n");

    /* The rest, without an amount: everything left comes back, and a tier
     * once reached is kept. */
    n = mktd_mock_count(m);
    CHECK(refunded(m, "r2", "alice", "o1", 0) == 0);
    CHECK_STR(mktd_mock_dump(m, n),
              "points.revoked alice {\"order_id\":\"o1\",\"points\":134,\"total\":0}\n");
    CHECK(mktd_mock_counter(m, "member", "alice", "tier") == 1);

    /* Nothing left to refund; an order never paid here. */
    n = mktd_mock_count(m);
    CHECK(refunded(m, "r3", "alice", "o1", 500) == 0);
    CHECK(refunded(m, "r4", "alice", "nope", 500) == 0);
    CHECK(mktd_mock_count(m) == n);

    /* Climbing back past silver does not announce it again. */
    CHECK(paid(m, "e2", "alice", "o2", 5000) == 0);
    CHECK_STR(mktd_mock_dump(m, n),
              "points.earned alice {\"order_id\":\"o2\",\"points\":100,\"total\":100}\n");

    /* A refund larger than what is left counts as what is left; a refund
     * reported under another user still takes the buyer's points. */
    n = mktd_mock_count(m);
    CHECK(refunded(m, "r5", "shop", "o2", 999999) == 0);
    CHECK_STR(mktd_mock_dump(m, n),
              "points.revoked alice {\"order_id\":\"o2\",\"points\":100,\"total\":0}\n");
    mktd_mock_free(m);
}

static void test_flags(void)
{
    mktd_mock *m = setup();

    /* `when` names other types: orders do not match, nothing is earned. */
    mktd_mock_set_when(m, "member", "user.signup");
    CHECK(paid(m, "e1", "alice", "o1", 10000) == 0);
    CHECK(mktd_mock_count(m) == 0);

    /* Matching again; then disabled: the refund is not seen either. */
    mktd_mock_set_when(m, "member", NULL);
    CHECK(paid(m, "e2", "alice", "o2", 10000) == 0);
    size_t n = mktd_mock_count(m);
    CHECK(n == 2);
    mktd_mock_set_enabled(m, "member", 0);
    CHECK(refunded(m, "r1", "alice", "o2", 0) == 0);
    CHECK(mktd_mock_count(m) == n);
    CHECK(mktd_mock_counter(m, "member", "alice", "total") == 200);

    /* Outside the window: nothing. */
    mktd_mock_set_enabled(m, "member", 1);
    mktd_mock_set_window(m, "member", 5000, 9000);
    CHECK(paid(m, "e3", "alice", "o3", 10000) == 0); /* ts 1000 */
    CHECK(mktd_mock_count(m) == n);
    mktd_mock_free(m);
}

/* A second plugin that fails on orders of 666 fen: the points campaign's
 * counter, order record and actions of that event are undone with it. */
static const mktd_host *fail_host;

static int fail_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    mktd_value v;
    (void)data;
    (void)flags;
    if (fail_host->prop(ctx, ev, "amount", &v) == MKTD_T_INT && v.i == 666)
        return -EIO;
    return 0;
}

static int fail_init(mktd_ctx *ctx, const mktd_node *p, void **data)
{
    (void)ctx;
    (void)p;
    *data = NULL;
    return 0;
}

static const mktd_plugin fail_plugin = {.abi_version = MKTD_ABI_VERSION,
                                        .struct_size = sizeof(mktd_plugin),
                                        .name = "failer",
                                        .version = "test",
                                        .init = fail_init,
                                        .on_event = fail_on_event};

static const mktd_plugin *fail_entry(const mktd_host *h)
{
    fail_host = h;
    return &fail_plugin;
}

static void test_rollback(void)
{
    mktd_mock *m = setup();
    CHECK(mktd_mock_add(m, fail_entry, "failer", NULL) == 0);

    CHECK(paid(m, "e1", "alice", "o1", 666) == -EIO);
    CHECK(mktd_mock_count(m) == 0);
    CHECK(mktd_mock_counter(m, "member", "alice", "total") == 0);

    /* The order was not remembered: paying it again earns. */
    CHECK(paid(m, "e2", "alice", "o1", 700) == 0);
    CHECK(mktd_mock_counter(m, "member", "alice", "total") == 14);
    mktd_mock_free(m);
}

static void test_config_errors(void)
{
    mktd_mock *m = mktd_mock_new();

    /* Every problem is reported, each at its line:col. */
    CHECK(mktd_mock_add(m, mktd_plugin_entry, "bad",
                        "points_per_yuan: 0\n"
                        "tiers:\n"
                        "  - {name: gold, at: 500}\n"
                        "  - {name: silver, at: 100}\n"
                        "  - {name: gold, at: 900}\n"
                        "  - {nme: x, at: 1000}\n"
                        "bonus: 1\n") == -EINVAL);
    const char *e = mktd_mock_errors(m);
    CHECK_CONTAINS(e, "params:1:18: points_per_yuan: must be an integer from 1 to 1000000");
    CHECK_CONTAINS(e, "params:4:24: at: tiers go up: 100 is not above 500 (tier 'gold')");
    CHECK_CONTAINS(e, "params:5:12: name: tier 'gold' is given twice");
    CHECK_CONTAINS(e, "params:6:6: unknown key 'nme'");
    CHECK_CONTAINS(e, "params:7:1: unknown key 'bonus'");

    CHECK(mktd_mock_add(m, mktd_plugin_entry, "bad2", "tiers: {name: gold}\n") == -EINVAL);
    CHECK_CONTAINS(mktd_mock_errors(m), "params:1:8: tiers: must be a list of {name, at}");

    /* No params at all: one point per yuan, no tiers. */
    CHECK(mktd_mock_add(m, mktd_plugin_entry, "plain", NULL) == 0);
    CHECK(mktd_mock_add(m, mktd_plugin_entry, "nulltiers", "tiers:\n") == 0);
    CHECK(paid(m, "e1", "u", "o1", 250) == 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "points.earned u {\"order_id\":\"o1\",\"points\":2,\"total\":2}\n"
              "points.earned u {\"order_id\":\"o1\",\"points\":2,\"total\":2}\n");
    mktd_mock_free(m);
}

int main(void)
{
    test_earn_and_tiers();
    test_refunds();
    test_flags();
    test_rollback();
    test_config_errors();
    if (failures) {
        fprintf(stderr, "test_loyalty: %d checks failed\n", failures);
        return 1;
    }
    printf("test_loyalty: ok\n");
    return 0;
}
