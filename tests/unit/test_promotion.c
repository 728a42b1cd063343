/* Unit tests of the promotion plugin against the mock host. */
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
#define PLUGKIT_AFTER_ADD(m, id) mktd_mock_set_when(m, id, "order.paid")

#include "plugkit.h"

/* ---- the plugin under a test host: notes are kept, emits can be capped,
 * and matching events can be marked excluded by a group ---- */

static mktd_host test_host;
static const mktd_plugin *real_plugin;
static mktd_plugin wrapped_plugin;

static int cap_emits; /* the next n emits answer MKTD_CAPPED, recording nothing */
static int exclude;   /* MATCH becomes EXCLUDED, as when the group is taken */
static int emitted;   /* emits that were recorded (or would be, in a dry run) */

static int test_emit(mktd_ctx *ctx, const char *kind, const char *user, mktd_obj *payload)
{
    if (cap_emits > 0) {
        cap_emits--;
        return MKTD_CAPPED; /* the payload stays the callback's, freed with it */
    }
    int rc = mktd_mock_host()->emit(ctx, kind, user, payload);
    if (rc == 0)
        emitted++;
    return rc;
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

/* ---- a second plugin: on "tick" it records an order.refunded action of
 * o1 whose amount is not an integer ---- */

static const mktd_host *emitter_host;

static int emitter_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    mktd_obj *o;
    (void)data;
    if (!(flags & MKTD_F_MATCH) || strcmp(ev->type, "tick") != 0)
        return 0;
    o = emitter_host->obj_new(ctx);
    emitter_host->obj_str(o, "order_id", "o1");
    emitter_host->obj_json(o, "amount", "1.5");
    return emitter_host->emit(ctx, "order.refunded", ev->user, o);
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

static int paid(mktd_mock *m, const char *user, int64_t ts, const char *order, int64_t amount)
{
    char props[256];
    snprintf(props, sizeof props, "{\"order_id\":\"%s\",\"amount\":%" PRId64 "}", order, amount);
    return play(m, "order.paid", user, ts, props);
}

/* A refund; amount < 0: without amount. */
static int refunded(mktd_mock *m, const char *user, int64_t ts, const char *order, int64_t amount)
{
    char props[256];
    if (amount < 0)
        snprintf(props, sizeof props, "{\"order_id\":\"%s\"}", order);
    else
        snprintf(props, sizeof props, "{\"order_id\":\"%s\",\"amount\":%" PRId64 "}", order,
                 amount);
    return play(m, "order.refunded", user, ts, props);
}

static void check_last(mktd_mock *m, const char *kind, const char *user, const char *payload)
{
    const mktd_mock_action *a = last(m);
    CHECK(a != NULL);
    if (!a)
        return;
    CHECK_STR(a->kind, kind);
    CHECK_STR(a->user, user);
    CHECK_STR(a->payload, payload);
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

static int has_order(mktd_mock *m, const char *campaign, const char *user, const char *order,
                     char *val, size_t size)
{
    char key[512];
    const char *v = NULL;
    size_t len = 0;
    snprintf(key, sizeof key, "o:%s", order);
    if (mktd_mock_state(m, campaign, user, key, &v, &len) != 0)
        return 0;
    if (val)
        snprintf(val, size, "%.*s", (int)len, v);
    return 1;
}

/* ---- params ---- */

static void test_param_errors(void)
{
    mktd_mock *m = mktd_mock_new();
    const char *e;

    /* exactly one of value / percent */
    CHECK_ERR("min_spend: 10\n", "params:1:1:", "percent");
    CHECK_ERR("value: 5\npercent: 10\n", "params:2:1:", "percent");
    CHECK_ERR("percent: 10\nvalue: 5\n", "params:2:1:", "value");
    /* value: int > 0 */
    CHECK_ERR("value: 0\n", "params:1:8:", NULL);
    CHECK_ERR("value: -3\n", "params:1:8:", NULL);
    CHECK_ERR("value: 1.5\n", "params:1:8:", NULL);
    CHECK_ERR("value: \"5\"\n", "params:1:8:", NULL);
    /* percent: 1..100 */
    CHECK_ERR("percent: 0\n", "params:1:10:", NULL);
    CHECK_ERR("percent: 101\n", "params:1:10:", NULL);
    CHECK_ERR("percent: ten\n", "params:1:10:", NULL);
    /* min_spend: int >= 0 */
    CHECK_ERR("value: 5\nmin_spend: -1\n", "params:2:12:", NULL);
    CHECK_ERR("value: 5\nmin_spend: lots\n", "params:2:12:", NULL);
    /* max_discount, budget, per_user_limit: int >= 1 */
    CHECK_ERR("value: 5\nmax_discount: 0\n", "params:2:15:", NULL);
    CHECK_ERR("value: 5\nmax_discount: x\n", "params:2:15:", NULL);
    CHECK_ERR("value: 5\nbudget: 0\n", "params:2:9:", NULL);
    CHECK_ERR("value: 5\nbudget: -100\n", "params:2:9:", NULL);
    CHECK_ERR("value: 5\nper_user_limit: 0\n", "params:2:17:", NULL);
    CHECK_ERR("value: 5\nper_user_limit: [1]\n", "params:2:17:", NULL);
    /* unknown keys, naming the allowed ones */
    CHECK_ERR("value: 5\nvalid_for: 7d\n", "params:2:1:", "per_user_limit");
    CHECK_ERR("value: 5\nmaxdiscount: 7\n", "params:2:1:", "max_discount");

    /* every problem is reported, not only the first */
    e = add_err(m, "value: 0\nmin_spend: -1\nmax_discount: 0\nbudget: 0\nper_user_limit: 0\n");
    CHECK(has_error(e, "params:1:8:", NULL));
    CHECK(has_error(e, "params:2:12:", NULL));
    CHECK(has_error(e, "params:3:15:", NULL));
    CHECK(has_error(e, "params:4:9:", NULL));
    CHECK(has_error(e, "params:5:17:", NULL));
    CHECK_INT(count_lines(e) + (e[0] && e[strlen(e) - 1] != '\n'), 5);

    /* no params: value or percent is required; params not a map */
    e = add_err(m, NULL);
    CHECK(strstr(e, "value") != NULL && strstr(e, "percent") != NULL);
    CHECK_ERR("- value\n", "params:1:1:", NULL);

    /* edge values, and null keys that count as absent */
    add_ok(m, "ok1", "value: 1\n");
    add_ok(m, "ok2", "percent: 100\nmin_spend: 0\nmax_discount: 1\nbudget: 1\nper_user_limit: 1\n");
    add_ok(m, "ok3", "percent: 1\n");
    add_ok(m, "ok4", "value: ~\npercent: 10\nbudget: null\nmax_discount:\nper_user_limit: ~\n");
    mktd_mock_free(m);
}

/* ---- application ---- */

static void test_value(void)
{
    mktd_mock *m = mktd_mock_new();
    const mktd_mock_action *a;

    add_ok(m, "p", "value: 500\n");
    CHECK_INT(paid(m, "u1", 1000, "o1", 3000), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    a = last(m);
    CHECK_STR(a->kind, "promotion.applied");
    CHECK_STR(a->campaign, "p");
    CHECK_STR(a->user, "u1");
    CHECK_STR(a->event_id, last_id());
    CHECK_INT(a->ts, 1000);
    CHECK_STR(a->payload, "{\"amount\":3000,\"discount\":500,\"order_id\":\"o1\"}");
    CHECK_NOTE("discount 500 on amount 3000");
    /* the order is remembered in the buyer's state; the money is counted */
    {
        char val[96];
        CHECK(has_order(m, "p", "u1", "o1", val, sizeof val));
        CHECK_STR(val, "500 3000 0 0");
    }
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 500);
    CHECK_INT(mktd_mock_counter(m, "p", "u1", "applied"), 1);

    /* no per_user_limit by default: every new order earns */
    CHECK_INT(paid(m, "u1", 2000, "o2", 3000), 0);
    CHECK_INT(paid(m, "u1", 3000, "o3", 3000), 0);
    CHECK_INT(mktd_mock_count(m), 3);
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 1500);

    /* at most the amount */
    CHECK_INT(paid(m, "u2", 4000, "o4", 300), 0);
    check_last(m, "promotion.applied", "u2",
               "{\"amount\":300,\"discount\":300,\"order_id\":\"o4\"}");
    /* a zero amount gives a zero discount, which records nothing */
    CHECK_INT(paid(m, "u2", 5000, "o5", 0), 0);
    CHECK_INT(mktd_mock_count(m), 4);
    CHECK_NOTE("zero discount on amount 0");
    CHECK(!has_order(m, "p", "u2", "o5", NULL, 0));
    CHECK_INT(mktd_mock_counter(m, "p", "u2", "applied"), 1);

    /* only events matching `when` */
    CHECK_INT(play(m, "checkout", "u3", 6000, "{\"amount\":3000}"), 0);
    CHECK_INT(mktd_mock_count(m), 4);
    mktd_mock_free(m);
}

/* An event without order_id (when names another type): applied, no
 * order_id in the payload, nothing remembered; amounts that are missing or
 * not integers earn nothing. */
static void test_other_events(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "percent: 10\n");
    mktd_mock_set_when(m, "p", "checkout");
    CHECK_INT(play(m, "checkout", "u1", 1000, "{\"amount\":2500}"), 0);
    check_last(m, "promotion.applied", "u1", "{\"amount\":2500,\"discount\":250}");
    CHECK_INT(play(m, "checkout", "u1", 1000, "{\"amount\":2500}"), 0);
    CHECK_INT(mktd_mock_count(m), 2); /* no order id: nothing to tell them apart */
    CHECK_INT(play(m, "checkout", "u1", 1000, "{\"amount\":\"2500\"}"), 0);
    CHECK_NOTE("amount is not an integer");
    CHECK_INT(play(m, "checkout", "u1", 1000, "{\"amount\":2500.5}"), 0);
    CHECK_NOTE("amount is not an integer");
    CHECK_INT(play(m, "checkout", "u1", 1000, "{\"total\":2500}"), 0);
    CHECK_NOTE("no amount");
    CHECK_INT(play(m, "checkout", "u1", 1000, "{\"amount\":-5}"), 0);
    CHECK_NOTE("amount -5 is negative");
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 500);

    /* an order id longer than order.paid allows (any length elsewhere) */
    {
        char id[400], props[600], want[800];
        memset(id, 'x', 300);
        id[300] = '\0';
        snprintf(props, sizeof props, "{\"order_id\":\"%s\",\"amount\":1000}", id);
        CHECK_INT(play(m, "checkout", "u1", 2000, props), 0);
        snprintf(want, sizeof want, "{\"amount\":1000,\"discount\":100,\"order_id\":\"%s\"}", id);
        CHECK_STR(last(m)->payload, want);
        CHECK(has_order(m, "p", "u1", id, NULL, 0));
        CHECK_INT(play(m, "checkout", "u1", 2000, props), 0);
        CHECK_INT(mktd_mock_count(m), 3);
        snprintf(want, sizeof want, "order %s already applied", id);
        CHECK_NOTE(want);
    }
    mktd_mock_free(m);

    /* an internal refund whose amount is not an integer reverses nothing */
    m = mktd_mock_new();
    add_ok(m, "p", "value: 500\n");
    CHECK_INT(mktd_mock_add(m, emitter_entry, "em", NULL), 0);
    CHECK_INT(paid(m, "u1", 1000, "o1", 3000), 0);
    CHECK_INT(play(m, "tick", "u1", 2000, NULL), 0);
    CHECK_STR(mktd_mock_dump(m, 1), "order.refunded u1 {\"order_id\":\"o1\",\"amount\":1.5}\n");
    CHECK_NOTE("refund of order o1: amount is not an integer");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 500);
    mktd_mock_free(m);
}

static void test_min_spend(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "value: 300\nmin_spend: 2000\n");
    CHECK_INT(paid(m, "u1", 1000, "o1", 1999), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_NOTE("below min_spend: 1999 < 2000");
    CHECK(!has_order(m, "p", "u1", "o1", NULL, 0));
    /* equal is enough */
    CHECK_INT(paid(m, "u1", 2000, "o2", 2000), 0);
    check_last(m, "promotion.applied", "u1",
               "{\"amount\":2000,\"discount\":300,\"order_id\":\"o2\"}");
    /* an order refused below min_spend earns when paid again for more */
    CHECK_INT(paid(m, "u1", 3000, "o1", 2500), 0);
    check_last(m, "promotion.applied", "u1",
               "{\"amount\":2500,\"discount\":300,\"order_id\":\"o1\"}");
    mktd_mock_free(m);
}

static void test_percent(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "percent: 15\n");
    /* 999 * 15 / 100 = 149.85: floor */
    CHECK_INT(paid(m, "u1", 1000, "o1", 999), 0);
    check_last(m, "promotion.applied", "u1",
               "{\"amount\":999,\"discount\":149,\"order_id\":\"o1\"}");
    /* 6 * 15 / 100 = 0.9: a zero discount */
    CHECK_INT(paid(m, "u1", 1000, "o2", 6), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_NOTE("zero discount on amount 6");
    /* 7 * 15 / 100 = 1.05 */
    CHECK_INT(paid(m, "u1", 1000, "o3", 7), 0);
    check_last(m, "promotion.applied", "u1", "{\"amount\":7,\"discount\":1,\"order_id\":\"o3\"}");
    /* no overflow near the int64 maximum: floor(9223372036854775807 * 15 / 100) */
    CHECK_INT(paid(m, "u1", 1000, "o4", INT64_MAX), 0);
    check_last(m, "promotion.applied", "u1",
               "{\"amount\":9223372036854775807,\"discount\":1383505805528216371,"
               "\"order_id\":\"o4\"}");
    mktd_mock_free(m);

    m = mktd_mock_new();
    add_ok(m, "p", "percent: 100\n");
    CHECK_INT(paid(m, "u1", 1000, "o1", INT64_MAX), 0);
    check_last(m, "promotion.applied", "u1",
               "{\"amount\":9223372036854775807,\"discount\":9223372036854775807,"
               "\"order_id\":\"o1\"}");
    mktd_mock_free(m);
}

static void test_max_discount(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "percent: 50\nmax_discount: 300\n");
    CHECK_INT(paid(m, "u1", 1000, "o1", 500), 0);
    check_last(m, "promotion.applied", "u1",
               "{\"amount\":500,\"discount\":250,\"order_id\":\"o1\"}");
    CHECK_INT(paid(m, "u1", 1000, "o2", 600), 0);
    check_last(m, "promotion.applied", "u1",
               "{\"amount\":600,\"discount\":300,\"order_id\":\"o2\"}");
    CHECK_INT(paid(m, "u1", 1000, "o3", 100000), 0);
    check_last(m, "promotion.applied", "u1",
               "{\"amount\":100000,\"discount\":300,\"order_id\":\"o3\"}");
    mktd_mock_free(m);

    /* a fixed value above max_discount, and max_discount above the amount */
    m = mktd_mock_new();
    add_ok(m, "p", "value: 800\nmax_discount: 500\n");
    CHECK_INT(paid(m, "u1", 1000, "o1", 10000), 0);
    check_last(m, "promotion.applied", "u1",
               "{\"amount\":10000,\"discount\":500,\"order_id\":\"o1\"}");
    CHECK_INT(paid(m, "u1", 1000, "o2", 200), 0);
    check_last(m, "promotion.applied", "u1",
               "{\"amount\":200,\"discount\":200,\"order_id\":\"o2\"}");
    mktd_mock_free(m);
}

static void test_budget(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "value: 500\nbudget: 1200\n");
    CHECK_INT(paid(m, "u1", 1000, "o1", 3000), 0);
    CHECK_INT(paid(m, "u2", 2000, "o2", 3000), 0);
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 1000);
    /* 200 left: the discount is cut to it */
    CHECK_INT(paid(m, "u3", 3000, "o3", 3000), 0);
    check_last(m, "promotion.applied", "u3",
               "{\"amount\":3000,\"discount\":200,\"order_id\":\"o3\",\"budget_cut\":true}");
    CHECK_NOTE("budget_cut: discount 500 cut to the 200 left");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 1200);
    {
        char val[96];
        CHECK(has_order(m, "p", "u3", "o3", val, sizeof val));
        CHECK_STR(val, "200 3000 0 0");
    }
    /* nothing left: nothing recorded, nothing remembered */
    CHECK_INT(paid(m, "u4", 4000, "o4", 3000), 0);
    CHECK_INT(mktd_mock_count(m), 3);
    CHECK_NOTE("budget spent");
    CHECK(!has_order(m, "p", "u4", "o4", NULL, 0));
    CHECK_INT(mktd_mock_counter(m, "p", "u4", "applied"), 0);

    /* a reversal returns its discount to the budget (net) */
    CHECK_INT(refunded(m, "u3", 5000, "o3", -1), 0);
    check_last(m, "promotion.reversed", "u3", "{\"order_id\":\"o3\",\"discount\":200}");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 1000);
    CHECK_INT(paid(m, "u4", 6000, "o5", 3000), 0);
    check_last(m, "promotion.applied", "u4",
               "{\"amount\":3000,\"discount\":200,\"order_id\":\"o5\",\"budget_cut\":true}");
    CHECK_INT(refunded(m, "u1", 7000, "o1", -1), 0);
    check_last(m, "promotion.reversed", "u1", "{\"order_id\":\"o1\",\"discount\":500}");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 700);
    CHECK_INT(paid(m, "u5", 8000, "o6", 3000), 0);
    check_last(m, "promotion.applied", "u5",
               "{\"amount\":3000,\"discount\":500,\"order_id\":\"o6\"}");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 1200);
    mktd_mock_free(m);
}

static void test_duplicate_order(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "value: 500\n");
    CHECK_INT(paid(m, "u1", 1000, "o1", 3000), 0);
    CHECK_INT(paid(m, "u1", 2000, "o1", 3000), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_NOTE("order o1 already applied");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 500);
    CHECK_INT(mktd_mock_counter(m, "p", "u1", "applied"), 1);
    /* reversed, it still earns nothing again */
    CHECK_INT(refunded(m, "u1", 3000, "o1", -1), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_INT(paid(m, "u1", 4000, "o1", 3000), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_NOTE("order o1 already applied");
    /* order ids are the buyer's own: another user's o1 is another order */
    CHECK_INT(paid(m, "u2", 5000, "o1", 3000), 0);
    check_last(m, "promotion.applied", "u2",
               "{\"amount\":3000,\"discount\":500,\"order_id\":\"o1\"}");
    mktd_mock_free(m);
}

static void test_per_user_limit(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "value: 100\nper_user_limit: 2\nmin_spend: 1000\n");
    CHECK_INT(paid(m, "u1", 1000, "o1", 1000), 0);
    /* a refusal (min_spend) is not counted */
    CHECK_INT(paid(m, "u1", 1000, "o2", 999), 0);
    CHECK_INT(paid(m, "u1", 1000, "o3", 1000), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_INT(mktd_mock_counter(m, "p", "u1", "applied"), 2);
    CHECK_INT(paid(m, "u1", 1000, "o4", 5000), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_NOTE("per_user_limit reached");
    CHECK(!has_order(m, "p", "u1", "o4", NULL, 0));
    /* other users have their own count */
    CHECK_INT(paid(m, "u2", 1000, "o4", 5000), 0);
    CHECK_INT(mktd_mock_count(m), 3);
    /* a reversal does not give an application back */
    CHECK_INT(refunded(m, "u1", 2000, "o1", -1), 0);
    CHECK_STR(last(m)->kind, "promotion.reversed");
    CHECK_INT(mktd_mock_counter(m, "p", "u1", "applied"), 2);
    CHECK_INT(paid(m, "u1", 3000, "o5", 5000), 0);
    CHECK_INT(mktd_mock_count(m), 4);
    CHECK_NOTE("per_user_limit reached");
    mktd_mock_free(m);
}

/* ---- reversal ---- */

static void test_refunds(void)
{
    mktd_mock *m = mktd_mock_new();
    char val[96];

    add_ok(m, "p", "value: 500\nbudget: 100000\n");
    CHECK_INT(paid(m, "u1", 1000, "o1", 10000), 0);
    CHECK_INT(paid(m, "u1", 1000, "o2", 10000), 0);
    CHECK_INT(paid(m, "u1", 1000, "o3", 10000), 0);
    CHECK_INT(paid(m, "u1", 1000, "o4", 10000), 0);
    CHECK_INT(mktd_mock_count(m), 4);
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 2000);

    /* a partial refund does not reverse; it is counted */
    CHECK_INT(refunded(m, "u1", 2000, "o1", 4000), 0);
    CHECK_INT(mktd_mock_count(m), 4);
    CHECK_NOTE("partial refund of order o1: 4000 of 10000 left, discount kept");
    CHECK(has_order(m, "p", "u1", "o1", val, sizeof val));
    CHECK_STR(val, "500 10000 4000 0");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 2000);
    CHECK_INT(refunded(m, "u1", 2000, "o1", 5999), 0);
    CHECK_INT(mktd_mock_count(m), 4);
    /* what is left (1): full, so reversed */
    CHECK_INT(refunded(m, "u1", 2000, "o1", 1), 0);
    CHECK_INT(mktd_mock_count(m), 5);
    check_last(m, "promotion.reversed", "u1", "{\"order_id\":\"o1\",\"discount\":500}");
    CHECK_STR(last(m)->event_id, last_id());
    CHECK_NOTE("full refund of order o1: discount 500 reversed");
    CHECK(has_order(m, "p", "u1", "o1", val, sizeof val));
    CHECK_STR(val, "500 10000 10000 1");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 1500);
    /* not twice */
    CHECK_INT(refunded(m, "u1", 2000, "o1", -1), 0);
    CHECK_INT(mktd_mock_count(m), 5);
    CHECK_NOTE("refund of order o1: already reversed");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 1500);

    /* a refund without amount is full, after a partial one too */
    CHECK_INT(refunded(m, "u1", 3000, "o2", 100), 0);
    CHECK_INT(refunded(m, "u1", 3000, "o2", -1), 0);
    check_last(m, "promotion.reversed", "u1", "{\"order_id\":\"o2\",\"discount\":500}");
    /* the amount equal to the whole order */
    CHECK_INT(refunded(m, "u1", 3000, "o3", 10000), 0);
    check_last(m, "promotion.reversed", "u1", "{\"order_id\":\"o3\",\"discount\":500}");
    /* more than what is left counts as what is left */
    CHECK_INT(refunded(m, "u1", 3000, "o4", 2000), 0);
    CHECK_INT(refunded(m, "u1", 3000, "o4", 9000), 0);
    check_last(m, "promotion.reversed", "u1", "{\"order_id\":\"o4\",\"discount\":500}");
    CHECK_INT(mktd_mock_count(m), 8);
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 0);

    /* orders it did not apply to, and the refund by another user */
    CHECK_INT(paid(m, "u1", 4000, "o5", 10000), 0);
    CHECK_INT(refunded(m, "u1", 5000, "o9", -1), 0);
    CHECK_NOTE("refund of order o9: not an order it applied to");
    CHECK_INT(refunded(m, "u2", 5000, "o5", -1), 0);
    CHECK_INT(mktd_mock_count(m), 9);
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 500);
    mktd_mock_free(m);
}

/* Reversals ignore `enabled`, the window and `when`. */
static void test_refund_inactive(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "value: 500\nbudget: 1000\n");
    CHECK_INT(paid(m, "u1", 1000, "o1", 3000), 0);
    CHECK_INT(paid(m, "u1", 1000, "o2", 3000), 0);
    CHECK_INT(paid(m, "u1", 1000, "o3", 3000), 0);
    CHECK_INT(mktd_mock_count(m), 2);

    mktd_mock_set_enabled(m, "p", 0);
    CHECK_INT(refunded(m, "u1", 2000, "o1", -1), 0);
    check_last(m, "promotion.reversed", "u1", "{\"order_id\":\"o1\",\"discount\":500}");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 500);
    /* disabled: no application, even with budget back */
    CHECK_INT(paid(m, "u1", 2000, "o4", 3000), 0);
    CHECK_INT(mktd_mock_count(m), 3);
    mktd_mock_set_enabled(m, "p", 1);

    mktd_mock_set_window(m, "p", 10000, 20000);
    CHECK_INT(refunded(m, "u1", 30000, "o2", 3000), 0);
    check_last(m, "promotion.reversed", "u1", "{\"order_id\":\"o2\",\"discount\":500}");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 0);
    CHECK_INT(paid(m, "u1", 30000, "o5", 3000), 0);
    CHECK_INT(mktd_mock_count(m), 4);
    mktd_mock_free(m);
}

/* ---- groups and caps ---- */

/* Excluded by the group: nothing recorded or remembered for the order, but
 * refunds still reverse earlier applications. */
static void test_excluded(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "value: 500\nbudget: 5000\nper_user_limit: 5\n");
    CHECK_INT(paid(m, "u1", 1000, "o1", 3000), 0);
    CHECK_INT(mktd_mock_count(m), 1);

    exclude = 1;
    CHECK_INT(paid(m, "u1", 2000, "o2", 3000), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_STR(notes, ""); /* the engine explains it: skipped, group taken by ... */
    CHECK(!has_order(m, "p", "u1", "o2", NULL, 0));
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 500);
    CHECK_INT(mktd_mock_counter(m, "p", "u1", "applied"), 1);
    /* with the refund in `when` too, so that it arrives excluded */
    mktd_mock_set_when(m, "p", "order.paid,order.refunded");
    CHECK_INT(refunded(m, "u1", 3000, "o1", -1), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    check_last(m, "promotion.reversed", "u1", "{\"order_id\":\"o1\",\"discount\":500}");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 0);
    CHECK_INT(refunded(m, "u1", 3000, "o2", -1), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    exclude = 0;

    /* the excluded order was not remembered: it earns later */
    CHECK_INT(paid(m, "u1", 4000, "o2", 3000), 0);
    check_last(m, "promotion.applied", "u1",
               "{\"amount\":3000,\"discount\":500,\"order_id\":\"o2\"}");
    mktd_mock_free(m);
}

/* A capped promotion.applied counts nothing: not against per_user_limit or
 * the budget, and the order is not remembered. */
static void test_capped(void)
{
    mktd_mock *m = mktd_mock_new();
    char val[96];

    add_ok(m, "p", "value: 500\nbudget: 500\nper_user_limit: 1\n");
    cap_emits = 1;
    CHECK_INT(paid(m, "u1", 1000, "o1", 3000), 0);
    CHECK_INT(cap_emits, 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_NOTE("promotion.applied capped: nothing counted");
    CHECK(!has_order(m, "p", "u1", "o1", NULL, 0));
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 0);
    CHECK_INT(mktd_mock_counter(m, "p", "u1", "applied"), 0);
    /* the same order again, not capped: the whole budget and the user's one */
    CHECK_INT(paid(m, "u1", 2000, "o1", 3000), 0);
    check_last(m, "promotion.applied", "u1",
               "{\"amount\":3000,\"discount\":500,\"order_id\":\"o1\"}");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 500);

    /* a capped reversal: the order counts as refunded, the budget gets
     * nothing back, and a later refund reverses nothing */
    cap_emits = 1;
    CHECK_INT(refunded(m, "u1", 3000, "o1", -1), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_NOTE("promotion.reversed of order o1 capped: discount not returned");
    CHECK(has_order(m, "p", "u1", "o1", val, sizeof val));
    CHECK_STR(val, "500 3000 3000 0");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 500);
    CHECK_INT(refunded(m, "u1", 4000, "o1", -1), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_NOTE("refund of order o1: nothing left to refund");
    mktd_mock_free(m);
}

/* The test kit's own groups (spec 11): one discount per order among the
 * group's campaigns, in config order; a campaign that records nothing
 * (budget spent) leaves the group to the next. Refunds reverse whatever
 * the group. */
static void test_group(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "a", "value: 500\nbudget: 500\n");
    add_ok(m, "b", "percent: 10\n");
    mktd_mock_set_group(m, "a", "checkout");
    mktd_mock_set_group(m, "b", "checkout");
    CHECK_INT(paid(m, "u1", 1000, "o1", 3000), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "promotion.applied u1 {\"amount\":3000,\"discount\":500,\"order_id\":\"o1\"}\n");
    /* a's note only: b notes nothing (the engine explains it as skipped) */
    CHECK_STR(notes, "discount 500 on amount 3000\n");
    CHECK(!has_order(m, "b", "u1", "o1", NULL, 0));
    CHECK_INT(mktd_mock_counter(m, "b", NULL, "spent"), 0);
    CHECK_INT(mktd_mock_counter(m, "b", "u1", "applied"), 0);
    /* a's budget is spent: it records nothing, and b takes the order */
    CHECK_INT(paid(m, "u2", 2000, "o2", 3000), 0);
    CHECK_STR(mktd_mock_dump(m, 1),
              "promotion.applied u2 {\"amount\":3000,\"discount\":300,\"order_id\":\"o2\"}\n");
    /* refunds: each reverses its own */
    CHECK_INT(refunded(m, "u1", 3000, "o1", -1), 0);
    CHECK_STR(mktd_mock_dump(m, 2),
              "promotion.reversed u1 {\"order_id\":\"o1\",\"discount\":500}\n");
    CHECK_INT(refunded(m, "u2", 3000, "o2", -1), 0);
    CHECK_STR(mktd_mock_dump(m, 3),
              "promotion.reversed u2 {\"order_id\":\"o2\",\"discount\":300}\n");
    /* the budget is back: a takes the group again */
    CHECK_INT(paid(m, "u3", 4000, "o3", 3000), 0);
    CHECK_STR(mktd_mock_dump(m, 4),
              "promotion.applied u3 {\"amount\":3000,\"discount\":500,\"order_id\":\"o3\"}\n");
    mktd_mock_free(m);
}

/* The test kit's own caps (spec 11): a capped promotion.applied is as if it
 * had not been. */
static void test_caps(void)
{
    mktd_mock *m = mktd_mock_new();
    const int64_t day = 86400000;

    add_ok(m, "p", "value: 500\nbudget: 1000\nper_user_limit: 2\n");
    CHECK_INT(mktd_mock_set_caps(m, "[{id: one-a-day, kinds: [promotion.applied], max: 1, "
                                    "per: 1d}]"),
              0);
    CHECK_INT(paid(m, "u1", day, "o1", 3000), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(paid(m, "u1", day + 1000, "o2", 3000), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_NOTE("promotion.applied capped: nothing counted");
    CHECK(!has_order(m, "p", "u1", "o2", NULL, 0));
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 500);
    CHECK_INT(mktd_mock_counter(m, "p", "u1", "applied"), 1);
    /* another user is not capped; the budget is then spent */
    CHECK_INT(paid(m, "u2", day + 2000, "o3", 3000), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    /* a reversal gives 500 back; o2 paid again two days on earns it */
    CHECK_INT(refunded(m, "u2", day + 3000, "o3", -1), 0);
    CHECK_INT(paid(m, "u1", 3 * day, "o2", 3000), 0);
    CHECK_STR(mktd_mock_dump(m, 3),
              "promotion.applied u1 {\"amount\":3000,\"discount\":500,\"order_id\":\"o2\"}\n");
    CHECK_INT(mktd_mock_counter(m, "p", "u1", "applied"), 2);
    mktd_mock_free(m);
}

/* ---- dry runs, chains, several campaigns ---- */

/* A dry order quotes the discount and leaves nothing behind; the real
 * order then gets the same. */
static void test_dry(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "p", "percent: 20\nbudget: 1000\n");
    CHECK_INT(paid(m, "u1", 1000, "o1", 4000), 0); /* 800 spent */
    clear_notes();
    emitted = 0;
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"d1\",\"type\":\"order.paid\",\"user\":\"u2\",\"ts\":"
                                 "2000,\"dry\":true,\"props\":{\"order_id\":\"o2\",\"amount\":"
                                 "5000}}"),
              0);
    CHECK_INT(emitted, 1);
    CHECK_NOTE("budget_cut: discount 1000 cut to the 200 left");
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 800);
    CHECK(!has_order(m, "p", "u2", "o2", NULL, 0));
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"d1\",\"type\":\"order.paid\",\"user\":\"u2\",\"ts\":"
                                 "2000,\"props\":{\"order_id\":\"o2\",\"amount\":5000}}"),
              0);
    check_last(m, "promotion.applied", "u2",
               "{\"amount\":5000,\"discount\":200,\"order_id\":\"o2\",\"budget_cut\":true}");
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 1000);
    mktd_mock_free(m);
}

/* Two promotions keep their own books; a campaign never sees its own
 * actions; an internal event with an amount can earn (chaining). */
static void test_two_campaigns(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "a", "value: 100\n");
    add_ok(m, "b", "percent: 10\n");
    mktd_mock_set_when(m, "a", NULL); /* every event, its own actions too */
    CHECK_INT(paid(m, "u1", 1000, "o1", 3000), 0);
    /* a: the order; b: the order; then a sees b's promotion.applied (an
     * internal event with amount 3000 and order_id o1: already applied) */
    CHECK_STR(mktd_mock_dump(m, 0),
              "promotion.applied u1 {\"amount\":3000,\"discount\":100,\"order_id\":\"o1\"}\n"
              "promotion.applied u1 {\"amount\":3000,\"discount\":300,\"order_id\":\"o1\"}\n");
    CHECK_NOTE("order o1 already applied");
    CHECK_INT(mktd_mock_counter(m, "a", NULL, "spent"), 100);
    CHECK_INT(mktd_mock_counter(m, "b", NULL, "spent"), 300);
    /* a refund reverses both, in campaign order */
    CHECK_INT(refunded(m, "u1", 2000, "o1", -1), 0);
    CHECK_STR(mktd_mock_dump(m, 2),
              "promotion.reversed u1 {\"order_id\":\"o1\",\"discount\":100}\n"
              "promotion.reversed u1 {\"order_id\":\"o1\",\"discount\":300}\n");
    CHECK_INT(mktd_mock_counter(m, "a", NULL, "spent"), 0);
    CHECK_INT(mktd_mock_counter(m, "b", NULL, "spent"), 0);
    mktd_mock_free(m);
}

/* The README's worked example, action for action. */
static void test_readme_example(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "spend-300-save-30", "value: 3000\nmin_spend: 30000\nbudget: 5000\n");
    add_ok(m, "ten-off-capped", "percent: 10\nmax_discount: 2000\nper_user_limit: 2\n");
    mktd_mock_set_when(m, "ten-off-capped", "order.paid");
    CHECK_INT(paid(m, "alice", 1767225600000, "o1", 32000), 0);
    CHECK_INT(paid(m, "bob", 1767229200000, "o2", 45000), 0);
    CHECK_INT(paid(m, "alice", 1767232800000, "o3", 8000), 0);
    CHECK_INT(paid(m, "carol", 1767236400000, "o4", 30000), 0);
    CHECK_INT(refunded(m, "alice", 1767240000000, "o1", 12000), 0);
    CHECK_INT(refunded(m, "alice", 1767243600000, "o1", -1), 0);
    CHECK_INT(paid(m, "dave", 1767247200000, "o5", 50000), 0);
    CHECK_INT(paid(m, "alice", 1767250800000, "o6", 50000), 0);
    CHECK_STR(mktd_mock_dump(m, 0),
              "promotion.applied alice {\"amount\":32000,\"discount\":3000,\"order_id\":\"o1\"}\n"
              "promotion.applied alice {\"amount\":32000,\"discount\":2000,\"order_id\":\"o1\"}\n"
              "promotion.applied bob {\"amount\":45000,\"discount\":2000,\"order_id\":\"o2\","
              "\"budget_cut\":true}\n"
              "promotion.applied bob {\"amount\":45000,\"discount\":2000,\"order_id\":\"o2\"}\n"
              "promotion.applied alice {\"amount\":8000,\"discount\":800,\"order_id\":\"o3\"}\n"
              "promotion.applied carol {\"amount\":30000,\"discount\":2000,\"order_id\":\"o4\"}\n"
              "promotion.reversed alice {\"order_id\":\"o1\",\"discount\":3000}\n"
              "promotion.reversed alice {\"order_id\":\"o1\",\"discount\":2000}\n"
              "promotion.applied dave {\"amount\":50000,\"discount\":3000,\"order_id\":\"o5\"}\n"
              "promotion.applied dave {\"amount\":50000,\"discount\":2000,\"order_id\":\"o5\"}\n");
    mktd_mock_free(m);
}

/* Forget (mktd_mock_forget): the order records and the per-user count are
 * the user's own, and go; the campaign's budget stays spent. */
static void test_forget(void)
{
    mktd_mock *m = mktd_mock_new();
    char ps[64];
    add_ok(m, "p", "value: 100\nper_user_limit: 1\nbudget: 1000\n");
    CHECK_INT(paid(m, "u1", 1000, "o1", 5000), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(mktd_mock_counter(m, "p", "u1", "applied"), 1);
    CHECK_INT(mktd_mock_state(m, "p", "u1", "o:o1", NULL, NULL), 0);
    CHECK_INT(mktd_mock_forget(m, "u1", ps, sizeof ps), 0);
    CHECK_INT(mktd_mock_counter(m, "p", "u1", "applied"), 0);
    CHECK_INT(mktd_mock_state(m, "p", "u1", "o:o1", NULL, NULL), -ENOENT);
    CHECK_INT(mktd_mock_counter(m, "p", NULL, "spent"), 100);
    CHECK_STR(mktd_mock_action_at(m, 0)->user, ps);
    /* a new user: the limit counts again from nothing */
    CHECK_INT(paid(m, "u1", 2000, "o2", 5000), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_STR(mktd_mock_action_at(m, 1)->user, "u1");
    mktd_mock_free(m);
}

int main(void)
{
    test_param_errors();
    test_value();
    test_other_events();
    test_min_spend();
    test_percent();
    test_max_discount();
    test_budget();
    test_duplicate_order();
    test_per_user_limit();
    test_refunds();
    test_refund_inactive();
    test_excluded();
    test_capped();
    test_group();
    test_caps();
    test_dry();
    test_two_campaigns();
    test_readme_example();
    test_forget();
    return check_done();
}
