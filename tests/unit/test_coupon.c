/* Unit tests of the coupon plugin against the mock host. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/mock.h>
#include <mktd/plugin.h>

#include "check.h"

const mktd_plugin *mktd_plugin_entry(const mktd_host *host);

#include "plugkit.h"

#define HOUR_MS 3600000LL
#define DAY_MS (24 * HOUR_MS)

/* ---- a tiny second plugin: on "tick" it emits reactivation.offer, on
 * "fake.use" a coupon.used without a string code ---- */

static const mktd_host *offer_host;

static int offer_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    mktd_obj *o;
    (void)data;
    if (!(flags & MKTD_F_MATCH))
        return 0;
    if (strcmp(ev->type, "tick") == 0) {
        o = offer_host->obj_new(ctx);
        offer_host->obj_int(o, "attempt", 1);
        return offer_host->emit(ctx, "reactivation.offer", ev->user, o);
    }
    if (strcmp(ev->type, "fake.use") == 0) {
        /* an internal coupon.used without a code */
        o = offer_host->obj_new(ctx);
        offer_host->obj_int(o, "code", 17);
        return offer_host->emit(ctx, "coupon.used", ev->user, o);
    }
    return 0;
}

static int offer_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    (void)ctx;
    (void)params;
    *data = NULL;
    return 0;
}

static const mktd_plugin offer_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "offerer",
    .version = "test",
    .flags = 0,
    .init = offer_init,
    .on_event = offer_on_event,
};

static const mktd_plugin *offer_entry(const mktd_host *host)
{
    offer_host = host;
    return &offer_plugin;
}

/* ---- a host whose random bytes follow a script ---- */

static mktd_host scripted_host;
static const unsigned char *script;
static size_t script_len, script_pos;

static int scripted_random(void *buf, size_t len)
{
    unsigned char *p = buf;
    for (size_t i = 0; i < len; i++) {
        if (script_pos < script_len)
            p[i] = script[script_pos++];
        else if (mktd_mock_host()->random_bytes(p + i, 1) < 0)
            return -EIO;
    }
    return 0;
}

static int scripted_random_for(mktd_ctx *ctx, void *buf, size_t len)
{
    (void)ctx;
    return scripted_random(buf, len);
}

static const mktd_plugin *scripted_entry(const mktd_host *host)
{
    (void)host;
    scripted_host = *mktd_mock_host();
    scripted_host.random_bytes = scripted_random;
    scripted_host.random_for = scripted_random_for;
    return mktd_plugin_entry(&scripted_host);
}

static void set_script(const unsigned char *bytes, size_t len)
{
    script = bytes;
    script_len = len;
    script_pos = 0;
}

/* ---- helpers ---- */

/* Plays a coupon.used event for code; extra is more props ("" or ",..."). */
static int use(mktd_mock *m, const char *user, int64_t ts, const char *code, const char *extra)
{
    char props[512];
    snprintf(props, sizeof props, "{\"code\":\"%s\"%s}", code, extra ? extra : "");
    return play(m, "coupon.used", user, ts, props);
}

/* The "code" of an action's payload, copied into buf. */
static const char *code_of(const mktd_mock_action *a, char *buf, size_t size)
{
    const char *p, *q;
    buf[0] = '\0';
    if (!a || !(p = strstr(a->payload, "\"code\":\"")))
        return buf;
    p += 8;
    q = strchr(p, '"');
    if (!q || (size_t)(q - p) >= size)
        return buf;
    memcpy(buf, p, (size_t)(q - p));
    buf[q - p] = '\0';
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- params ---- */

static void test_param_errors(void)
{
    mktd_mock *m = mktd_mock_new();
    const char *e;

    /* exactly one of value / percent */
    CHECK_ERR("valid_for: 7d\n", "params:1:1:", "percent");
    CHECK_ERR("value: 5\nvalid_for: 7d\npercent: 10\n", "params:3:1:", "percent");
    CHECK_ERR("percent: 10\nvalid_for: 7d\nvalue: 5\n", "params:3:1:", "value");
    /* value: int > 0 */
    CHECK_ERR("value: 0\nvalid_for: 7d\n", "params:1:8:", NULL);
    CHECK_ERR("value: -3\nvalid_for: 7d\n", "params:1:8:", NULL);
    CHECK_ERR("value: ten\nvalid_for: 7d\n", "params:1:8:", NULL);
    CHECK_ERR("value: 1.5\nvalid_for: 7d\n", "params:1:8:", NULL);
    CHECK_ERR("value: \"5\"\nvalid_for: 7d\n", "params:1:8:", NULL);
    /* percent: 1..100 */
    CHECK_ERR("percent: 0\nvalid_for: 7d\n", "params:1:10:", NULL);
    CHECK_ERR("percent: 101\nvalid_for: 7d\n", "params:1:10:", NULL);
    CHECK_ERR("valid_for: 7d\npercent: x\n", "params:2:10:", NULL);
    /* min_spend: int >= 0 */
    CHECK_ERR("value: 5\nmin_spend: -1\nvalid_for: 7d\n", "params:2:12:", NULL);
    CHECK_ERR("value: 5\nmin_spend: lots\nvalid_for: 7d\n", "params:2:12:", NULL);
    /* valid_for: required duration > 0 */
    CHECK_ERR("value: 5\n", "params:", "valid_for");
    CHECK_ERR("value: 5\nvalid_for: 0\n", "params:2:12:", NULL);
    CHECK_ERR("value: 5\nvalid_for: 0s\n", "params:2:12:", NULL);
    CHECK_ERR("value: 5\nvalid_for: soon\n", "params:2:12:", NULL);
    CHECK_ERR("value: 5\nvalid_for: -7d\n", "params:2:12:", NULL);
    /* per_user_limit: int >= 1 */
    CHECK_ERR("value: 5\nvalid_for: 7d\nper_user_limit: 0\n", "params:3:17:", NULL);
    CHECK_ERR("value: 5\nvalid_for: 7d\nper_user_limit: two\n", "params:3:17:", NULL);
    /* budget: int >= 1 */
    CHECK_ERR("value: 5\nvalid_for: 7d\nbudget: 0\n", "params:3:9:", NULL);
    CHECK_ERR("value: 5\nvalid_for: 7d\nbudget: -10\n", "params:3:9:", NULL);
    /* code_prefix: [A-Z0-9-], at most 32 characters */
    CHECK_ERR("value: 5\nvalid_for: 7d\ncode_prefix: win-\n", "params:3:14:", "code_prefix");
    CHECK_ERR("value: 5\nvalid_for: 7d\ncode_prefix: \"A_B\"\n", "params:3:14:", "code_prefix");
    CHECK_ERR("value: 5\nvalid_for: 7d\ncode_prefix: \"A B\"\n", "params:3:14:", "code_prefix");
    CHECK_ERR("value: 5\nvalid_for: 7d\ncode_prefix: ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456\n",
              "params:3:14:", "code_prefix");
    CHECK_ERR("value: 5\nvalid_for: 7d\ncode_prefix: [A]\n", "params:3:14:", NULL);
    /* unknown keys, naming the allowed ones */
    CHECK_ERR("value: 5\nvalid_for: 7d\nvalu: 5\n", "params:3:1:", "code_prefix");
    CHECK_ERR("value: 5\nvalid_for: 7d\nexpires: 1d\n", "params:3:", "expires");

    /* every problem is reported, not only the first */
    e = add_err(m, "value: 0\nmin_spend: -1\nvalid_for: 0\nper_user_limit: 0\nbudget: 0\n"
                   "code_prefix: x\n");
    CHECK(has_error(e, "params:1:8:", NULL));
    CHECK(has_error(e, "params:2:12:", NULL));
    CHECK(has_error(e, "params:3:12:", NULL));
    CHECK(has_error(e, "params:4:17:", NULL));
    CHECK(has_error(e, "params:5:9:", NULL));
    CHECK(has_error(e, "params:6:14:", NULL));
    CHECK_INT(count_lines(e) + (e[0] && e[strlen(e) - 1] != '\n'), 6);

    /* no params at all: errors for the required keys */
    e = add_err(m, NULL);
    CHECK(strstr(e, "valid_for") != NULL);
    CHECK(strstr(e, "value") != NULL);
    CHECK(strstr(e, "percent") != NULL);
    /* params that are not a map */
    CHECK_ERR("- value\n", "params:1:1:", NULL);

    /* edge values are accepted */
    add_ok(m, "ok1", "value: 1\nvalid_for: 1\n");
    add_ok(m, "ok2", "percent: 100\nvalid_for: 250ms\nmin_spend: 0\n");
    add_ok(m, "ok3", "percent: 1\nvalid_for: 90s\nper_user_limit: 1\nbudget: 1\n");
    add_ok(m, "ok4", "value: 5\nvalid_for: 7d\ncode_prefix: \"\"\n");
    add_ok(m, "ok5", "value: 5\nvalid_for: 7d\ncode_prefix: ABCDEFGHIJKLMNOPQRSTUVWXYZ012345\n");
    add_ok(m, "ok6", "value: 5\nvalid_for: 7d\ncode_prefix: X-2026-\n");
    /* a key set to null is absent */
    add_ok(m, "ok7", "value: ~\npercent: 10\nvalid_for: 7d\nbudget: null\nmin_spend:\n");
    mktd_mock_free(m);
}

/* ---- issue ---- */

static void test_defaults(void)
{
    mktd_mock *m = mktd_mock_new();
    const mktd_mock_action *a;
    char code[64], want[256];

    add_ok(m, "c", "value: 500\nvalid_for: 7d\n");
    CHECK_INT(play(m, "order.paid", "u1", 1000, "{\"order_id\":\"o1\",\"amount\":100}"), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    a = last(m);
    CHECK_STR(a->kind, "coupon.issued");
    CHECK_STR(a->user, "u1");
    CHECK_STR(a->campaign, "c");
    CHECK_STR(a->event_id, last_id());
    CHECK_INT(a->ts, 1000);
    snprintf(want, sizeof want,
             "{\"code\":\"%s\",\"value\":500,\"min_spend\":0,\"expires_at\":%lld}",
             code_of(a, code, sizeof code), 1000 + 7 * DAY_MS);
    CHECK_STR(a->payload, want);
    CHECK_INT(strlen(code), 13);

    /* per_user_limit defaults to 1; no budget */
    CHECK_INT(play(m, "order.paid", "u1", 2000, "{\"order_id\":\"o2\",\"amount\":100}"), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    for (int i = 0; i < 50; i++) {
        char user[16];
        snprintf(user, sizeof user, "n%d", i);
        CHECK_INT(play(m, "x", user, 3000, NULL), 0);
    }
    CHECK_INT(mktd_mock_count(m), 51);
    CHECK_INT(mktd_mock_counter(m, "c", NULL, "budget"), 51);
    CHECK_INT(mktd_mock_counter(m, "c", "u1", "issued"), 1);
    mktd_mock_free(m);
}

static void test_match_only(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "c", "value: 500\nvalid_for: 7d\nper_user_limit: 10\n");
    mktd_mock_set_when(m, "c", "order.paid");
    CHECK_INT(play(m, "page.view", "u1", 1000, NULL), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(play(m, "order.paid", "u1", 1000, "{\"order_id\":\"o1\",\"amount\":1}"), 0);
    CHECK_INT(mktd_mock_count(m), 1);

    /* disabled: no issue */
    mktd_mock_set_enabled(m, "c", 0);
    CHECK_INT(play(m, "order.paid", "u1", 2000, "{\"order_id\":\"o2\",\"amount\":1}"), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    mktd_mock_set_enabled(m, "c", 1);

    /* outside the window: no issue; inside (inclusive): issue */
    mktd_mock_set_window(m, "c", 5000, 6000);
    CHECK_INT(play(m, "order.paid", "u1", 4999, "{\"order_id\":\"o3\",\"amount\":1}"), 0);
    CHECK_INT(play(m, "order.paid", "u1", 6001, "{\"order_id\":\"o4\",\"amount\":1}"), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(play(m, "order.paid", "u1", 5000, "{\"order_id\":\"o5\",\"amount\":1}"), 0);
    CHECK_INT(play(m, "order.paid", "u1", 6000, "{\"order_id\":\"o6\",\"amount\":1}"), 0);
    CHECK_INT(mktd_mock_count(m), 3);
    CHECK_INT(mktd_mock_counter(m, "c", "u1", "issued"), 3);
    mktd_mock_free(m);
}

static void test_per_user_limit(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "c", "value: 500\nvalid_for: 7d\nper_user_limit: 3\n");
    for (int i = 0; i < 5; i++)
        CHECK_INT(play(m, "visit", "u1", 1000 + i, NULL), 0);
    CHECK_INT(mktd_mock_count(m), 3);
    CHECK_INT(mktd_mock_counter(m, "c", "u1", "issued"), 3);
    CHECK_INT(play(m, "visit", "u2", 2000, NULL), 0);
    CHECK_INT(mktd_mock_count(m), 4);
    CHECK_STR(last(m)->user, "u2");
    /* the limit counts every coupon ever issued, redeemed or not */
    {
        char code[64];
        code_of(mktd_mock_action_at(m, 0), code, sizeof code);
        mktd_mock_set_when(m, "c", "visit");
        CHECK_INT(use(m, "u1", 3000, code, ""), 0);
        CHECK_STR(last(m)->kind, "coupon.redeemed");
        CHECK_INT(play(m, "visit", "u1", 4000, NULL), 0);
        CHECK_STR(last(m)->kind, "coupon.redeemed");
    }
    mktd_mock_free(m);
}

static void test_budget(void)
{
    mktd_mock *m = mktd_mock_new();

    add_ok(m, "c", "value: 500\nvalid_for: 7d\nbudget: 2\n");
    /* a refusal by per_user_limit spends nothing */
    CHECK_INT(play(m, "visit", "u1", 1000, NULL), 0);
    CHECK_INT(play(m, "visit", "u1", 1001, NULL), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(mktd_mock_counter(m, "c", NULL, "budget"), 1);
    CHECK_INT(play(m, "visit", "u2", 1002, NULL), 0);
    CHECK_INT(play(m, "visit", "u3", 1003, NULL), 0);
    CHECK_INT(play(m, "visit", "u4", 1004, NULL), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_STR(last(m)->user, "u2");
    CHECK_INT(mktd_mock_counter(m, "c", NULL, "budget"), 2);
    /* a refusal by budget counts nothing against the user */
    CHECK_INT(mktd_mock_counter(m, "c", "u3", "issued"), 0);
    mktd_mock_free(m);

    /* per_user_limit and budget together */
    m = mktd_mock_new();
    add_ok(m, "c", "percent: 10\nvalid_for: 7d\nbudget: 3\nper_user_limit: 2\n");
    for (int i = 0; i < 3; i++) {
        CHECK_INT(play(m, "visit", "a", 1000 + i, NULL), 0);
        CHECK_INT(play(m, "visit", "b", 1000 + i, NULL), 0);
    }
    CHECK_INT(mktd_mock_count(m), 3);
    CHECK_STR(mktd_mock_action_at(m, 0)->user, "a");
    CHECK_STR(mktd_mock_action_at(m, 1)->user, "b");
    CHECK_STR(mktd_mock_action_at(m, 2)->user, "a");
    mktd_mock_free(m);
}

static int code_chars_ok(const char *s)
{
    for (; *s; s++) {
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= '2' && *s <= '9')))
            return 0;
    }
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_code_format(void)
{
    enum { N = 3000 };
    mktd_mock *m = mktd_mock_new();
    char **codes = calloc(N, sizeof *codes);
    int seen[256] = {0}, bad = 0, dups = 0, distinct = 0;

    add_ok(m, "c", "value: 500\nvalid_for: 7d\ncode_prefix: WIN-26\n");
    for (int i = 0; i < N; i++) {
        char user[16], code[64];
        snprintf(user, sizeof user, "u%d", i);
        CHECK_INT(play(m, "visit", user, 1000, NULL), 0);
        code_of(last(m), code, sizeof code);
        codes[i] = strdup(code);
    }
    CHECK_INT(mktd_mock_count(m), N);
    for (int i = 0; i < N; i++) {
        const char *c = codes[i];
        if (strlen(c) != 6 + 13 || strncmp(c, "WIN-26", 6) != 0 || !code_chars_ok(c + 6)) {
            if (!bad++)
                fprintf(stderr, "  bad code: %s\n", c);
            continue;
        }
        for (const char *p = c + 6; *p; p++)
            seen[(unsigned char)*p]++;
    }
    CHECK_INT(bad, 0);
    qsort(codes, N, sizeof *codes, cmp_str);
    for (int i = 1; i < N; i++)
        dups += strcmp(codes[i - 1], codes[i]) == 0;
    CHECK_INT(dups, 0);
    /* every one of the 34 characters shows up, evenly: a chi-square test
     * over 39000 draws (33 degrees of freedom; 80 is exceeded by chance
     * about once in 100000 runs, a bias of one byte value in 255 per
     * character gives about 175) */
    {
        double expect = N * 13 / 34.0, chi2 = 0;
        for (int ch = 0; ch < 256; ch++) {
            if (seen[ch]) {
                distinct++;
                chi2 += (seen[ch] - expect) * (seen[ch] - expect) / expect;
            }
        }
        CHECK_INT(distinct, 34);
        CHECK(chi2 < 80);
        if (chi2 >= 80)
            fprintf(stderr, "  chi-square %.1f\n", chi2);
    }
    CHECK_INT(seen['0'] + seen['1'], 0);
    for (int i = 0; i < N; i++)
        free(codes[i]);
    free(codes);
    mktd_mock_free(m);

    /* no prefix: 13 characters */
    m = mktd_mock_new();
    add_ok(m, "c", "value: 500\nvalid_for: 7d\n");
    CHECK_INT(play(m, "visit", "u1", 1000, NULL), 0);
    {
        char code[64];
        code_of(last(m), code, sizeof code);
        CHECK_INT(strlen(code), 13);
        CHECK(code_chars_ok(code));
    }
    mktd_mock_free(m);
}

/* The bytes map to characters one to one; bytes that would bias the draw
 * (238..255, beyond the last whole multiple of 34) are drawn again; a code
 * taken already is drawn again. */
static void test_code_draw(void)
{
    static const unsigned char bytes[] = {
        /* u1: 238..255 are skipped, then 0..12 */
        238, 0, 255, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 250, 12,
        /* u2: 25, 26, 33 are Z, 2, 9; 34 and 237 wrap to A and 9 */
        25, 26, 33, 34, 237, 67, 68, 101, 102, 135, 136, 169, 203,
        /* u3: first u1's code again (taken), then another */
        0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22,
        21};
    mktd_mock *m = mktd_mock_new();
    char code[64];

    set_script(bytes, sizeof bytes);
    CHECK_INT(mktd_mock_add(m, scripted_entry, "c", "value: 5\nvalid_for: 1d\ncode_prefix: Q-\n"),
              0);
    CHECK_INT(play(m, "visit", "u1", 1000, NULL), 0);
    CHECK_STR(code_of(last(m), code, sizeof code), "Q-ABCDEFGHIJKLM");
    CHECK_INT(play(m, "visit", "u2", 1000, NULL), 0);
    CHECK_STR(code_of(last(m), code, sizeof code), "Q-Z29A99A9A9A99");
    CHECK_INT(play(m, "visit", "u3", 1000, NULL), 0);
    CHECK_STR(code_of(last(m), code, sizeof code), "Q-98765432ZYXWV");
    CHECK_INT(script_pos, sizeof bytes);
    CHECK_INT(mktd_mock_count(m), 3);
    set_script(NULL, 0);
    mktd_mock_free(m);
}

static void test_expires_at(void)
{
    mktd_mock *m = mktd_mock_new();
    char code[64], want[256];
    const mktd_mock_action *a;

    add_ok(m, "c", "value: 500\nvalid_for: 1h\nmin_spend: 3000\n");
    CHECK_INT(play(m, "visit", "u1", 5000000, NULL), 0);
    a = last(m);
    CHECK_INT(a->ts, 5000000);
    snprintf(want, sizeof want,
             "{\"code\":\"%s\",\"value\":500,\"min_spend\":3000,\"expires_at\":%lld}",
             code_of(a, code, sizeof code), 5000000 + HOUR_MS);
    CHECK_STR(a->payload, want);

    /* a late event: now stays at the largest ts seen, and counts from there */
    CHECK_INT(play(m, "visit", "u2", 2000, NULL), 0);
    a = last(m);
    CHECK_STR(a->user, "u2");
    CHECK_INT(a->ts, 5000000);
    snprintf(want, sizeof want,
             "{\"code\":\"%s\",\"value\":500,\"min_spend\":3000,\"expires_at\":%lld}",
             code_of(a, code, sizeof code), 5000000 + HOUR_MS);
    CHECK_STR(a->payload, want);

    /* so u2's coupon is still good at 5000000 + 1h - 1 */
    mktd_mock_set_when(m, "c", "visit");
    CHECK_INT(use(m, "u2", 5000000 + HOUR_MS - 1, code, ""), 0);
    CHECK_STR(last(m)->kind, "coupon.redeemed");
    mktd_mock_free(m);
}

static void test_percent(void)
{
    mktd_mock *m = mktd_mock_new();
    char code[64], want[256];

    add_ok(m, "c", "percent: 15\nmin_spend: 10000\nvalid_for: 30d\ncode_prefix: P\n");
    CHECK_INT(play(m, "visit", "u1", 0, NULL), 0);
    snprintf(want, sizeof want,
             "{\"code\":\"%s\",\"percent\":15,\"min_spend\":10000,\"expires_at\":%lld}",
             code_of(last(m), code, sizeof code), 30 * DAY_MS);
    CHECK_STR(last(m)->payload, want);
    CHECK(code[0] == 'P' && strlen(code) == 14);
    mktd_mock_free(m);
}

/* ---- redemption ---- */

/* Issues one coupon of campaign id to user at ts; returns its code in buf. */
static const char *issue_one(mktd_mock *m, const char *user, int64_t ts, char *buf, size_t size)
{
    size_t n = mktd_mock_count(m);
    CHECK_INT(play(m, "order.paid", user, ts, "{\"order_id\":\"oi\",\"amount\":1}"), 0);
    CHECK_INT(mktd_mock_count(m), n + 1);
    CHECK_STR(last(m)->kind, "coupon.issued");
    return code_of(last(m), buf, size);
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

static void test_redeem_ok(void)
{
    mktd_mock *m = mktd_mock_new();
    char c1[64], c2[64], want[256];
    size_t n;

    add_ok(m, "c", "value: 500\nvalid_for: 1d\nmin_spend: 10000\nper_user_limit: 5\n");
    mktd_mock_set_when(m, "c", "order.paid");
    issue_one(m, "u1", 1000, c1, sizeof c1);
    issue_one(m, "u1", 1000, c2, sizeof c2);
    CHECK(strcmp(c1, c2) != 0);

    /* with order_id, amount exactly min_spend */
    n = mktd_mock_count(m);
    CHECK_INT(use(m, "u1", 2000, c1, ",\"order_id\":\"o-77\",\"amount\":10000"), 0);
    CHECK_INT(mktd_mock_count(m), n + 1);
    snprintf(want, sizeof want, "{\"code\":\"%s\",\"order_id\":\"o-77\"}", c1);
    check_last(m, "coupon.redeemed", "u1", want);
    CHECK_STR(last(m)->campaign, "c");
    CHECK_INT(last(m)->ts, 2000);

    /* without order_id or amount: no min_spend check */
    CHECK_INT(use(m, "u1", 3000, c2, ""), 0);
    CHECK_INT(mktd_mock_count(m), n + 2);
    snprintf(want, sizeof want, "{\"code\":\"%s\"}", c2);
    check_last(m, "coupon.redeemed", "u1", want);
    mktd_mock_free(m);
}

static void test_reject_order(void)
{
    mktd_mock *m = mktd_mock_new();
    char code[64], want[256];
    const int64_t exp = 1000 + HOUR_MS;

    add_ok(m, "c", "value: 500\nvalid_for: 1h\nmin_spend: 10000\n");
    mktd_mock_set_when(m, "c", "order.paid");
    issue_one(m, "u1", 1000, code, sizeof code);

#define REJ(user_, reason_)                                                                        \
    do {                                                                                           \
        snprintf(want, sizeof want, "{\"code\":\"%s\",\"reason\":\"%s\"}", code, reason_);         \
        check_last(m, "coupon.rejected", user_, want);                                             \
    } while (0)

    /* not_owner beats expired and min_spend */
    CHECK_INT(use(m, "u2", exp + 5, code, ",\"amount\":1"), 0);
    REJ("u2", "not_owner");
    CHECK_INT(use(m, "u2", 2000, code, ",\"amount\":1"), 0);
    REJ("u2", "not_owner");
    /* min_spend, while still valid */
    CHECK_INT(use(m, "u1", 2000, code, ",\"amount\":9999"), 0);
    REJ("u1", "min_spend");
    /* expired beats min_spend (ts == expires_at is expired) */
    CHECK_INT(use(m, "u1", exp, code, ",\"amount\":1"), 0);
    REJ("u1", "expired");
    /* redeem it (a late event: its own ts counts, not now) */
    CHECK_INT(use(m, "u1", exp - 1, code, ",\"amount\":10000"), 0);
    snprintf(want, sizeof want, "{\"code\":\"%s\"}", code);
    check_last(m, "coupon.redeemed", "u1", want);
    /* used beats min_spend */
    CHECK_INT(use(m, "u1", 3000, code, ",\"amount\":1"), 0);
    REJ("u1", "used");
    CHECK_INT(use(m, "u1", 3001, code, ",\"amount\":20000,\"order_id\":\"o9\""), 0);
    REJ("u1", "used");
    /* expired beats used */
    CHECK_INT(use(m, "u1", exp + 1, code, ""), 0);
    REJ("u1", "expired");
    /* not_owner beats used */
    CHECK_INT(use(m, "u2", 3002, code, ""), 0);
    REJ("u2", "not_owner");
#undef REJ
    /* one action per coupon.used, each with the event's id */
    CHECK_INT(mktd_mock_count(m), 1 + 9);
    CHECK_STR(last(m)->event_id, last_id());
    mktd_mock_free(m);
}

static void test_unknown(void)
{
    mktd_mock *m = mktd_mock_new();

    /* another plugin first: a is still the first coupon campaign */
    CHECK_INT(mktd_mock_add(m, offer_entry, "offers", NULL), 0);
    add_ok(m, "a", "value: 500\nvalid_for: 1d\n");
    add_ok(m, "b", "percent: 5\nvalid_for: 1d\n");
    mktd_mock_set_when(m, "a", "order.paid");
    mktd_mock_set_when(m, "b", "order.paid");
    CHECK_INT(use(m, "u1", 1000, "NOSUCHCODE", ",\"amount\":5"), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_STR(last(m)->campaign, "a");
    check_last(m, "coupon.rejected", "u1", "{\"code\":\"NOSUCHCODE\",\"reason\":\"unknown\"}");

    /* still so when a is disabled or outside its window */
    mktd_mock_set_enabled(m, "a", 0);
    mktd_mock_set_window(m, "b", 0, 10);
    CHECK_INT(use(m, "u1", 2000, "NOPE", ""), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_STR(last(m)->campaign, "a");
    check_last(m, "coupon.rejected", "u1", "{\"code\":\"NOPE\",\"reason\":\"unknown\"}");
    mktd_mock_free(m);
}

static void test_redeem_inactive(void)
{
    mktd_mock *m = mktd_mock_new();
    char c1[64], c2[64], want[256];

    add_ok(m, "c", "value: 500\nvalid_for: 30d\nper_user_limit: 2\n");
    mktd_mock_set_when(m, "c", "order.paid");
    issue_one(m, "u1", 1000, c1, sizeof c1);
    issue_one(m, "u1", 1000, c2, sizeof c2);

    /* disabled: redeems, issues nothing */
    mktd_mock_set_enabled(m, "c", 0);
    CHECK_INT(use(m, "u1", 2000, c1, ""), 0);
    snprintf(want, sizeof want, "{\"code\":\"%s\"}", c1);
    check_last(m, "coupon.redeemed", "u1", want);
    CHECK_INT(play(m, "order.paid", "u9", 2001, "{\"order_id\":\"o\",\"amount\":1}"), 0);
    CHECK_INT(mktd_mock_count(m), 3);
    /* and rejects */
    CHECK_INT(use(m, "u1", 2002, c1, ""), 0);
    snprintf(want, sizeof want, "{\"code\":\"%s\",\"reason\":\"used\"}", c1);
    check_last(m, "coupon.rejected", "u1", want);

    /* enabled again but outside the window: redeems */
    mktd_mock_set_enabled(m, "c", 1);
    mktd_mock_set_window(m, "c", 0, 1500);
    CHECK_INT(use(m, "u1", 3000, c2, ",\"order_id\":\"x\""), 0);
    snprintf(want, sizeof want, "{\"code\":\"%s\",\"order_id\":\"x\"}", c2);
    check_last(m, "coupon.redeemed", "u1", want);
    CHECK_INT(mktd_mock_count(m), 5);
    mktd_mock_free(m);
}

static void test_two_campaigns(void)
{
    mktd_mock *m = mktd_mock_new();
    char ca[64], cb[64], want[256];
    size_t n;

    add_ok(m, "a", "value: 500\nvalid_for: 1d\ncode_prefix: A-\n");
    add_ok(m, "b", "percent: 20\nvalid_for: 1d\ncode_prefix: B-\n");
    mktd_mock_set_when(m, "a", "order.paid");
    mktd_mock_set_when(m, "b", "user.signup");
    issue_one(m, "u1", 1000, ca, sizeof ca);
    CHECK_STR(last(m)->campaign, "a");
    CHECK_INT(play(m, "user.signup", "u1", 1000, NULL), 0);
    CHECK_STR(last(m)->campaign, "b");
    code_of(last(m), cb, sizeof cb);
    CHECK(strncmp(cb, "B-", 2) == 0);

    /* a's code: only a acts */
    n = mktd_mock_count(m);
    CHECK_INT(use(m, "u1", 2000, ca, ""), 0);
    CHECK_INT(mktd_mock_count(m), n + 1);
    CHECK_STR(last(m)->campaign, "a");
    snprintf(want, sizeof want, "{\"code\":\"%s\"}", ca);
    check_last(m, "coupon.redeemed", "u1", want);

    /* b's code: only b acts, though a is first */
    CHECK_INT(use(m, "u2", 2000, cb, ""), 0);
    CHECK_INT(mktd_mock_count(m), n + 2);
    CHECK_STR(last(m)->campaign, "b");
    snprintf(want, sizeof want, "{\"code\":\"%s\",\"reason\":\"not_owner\"}", cb);
    check_last(m, "coupon.rejected", "u2", want);
    mktd_mock_free(m);
}

/* A campaign whose `when` names coupon.used redeems before it issues. */
static void test_redeem_before_issue(void)
{
    mktd_mock *m = mktd_mock_new();
    char code[64], want[256];

    add_ok(m, "c", "value: 100\nvalid_for: 1d\nper_user_limit: 2\n");
    mktd_mock_set_when(m, "c", "order.paid,coupon.used");
    issue_one(m, "u1", 1000, code, sizeof code);
    CHECK_INT(use(m, "u1", 2000, code, ""), 0);
    CHECK_INT(mktd_mock_count(m), 3);
    snprintf(want, sizeof want, "{\"code\":\"%s\"}", code);
    CHECK_STR(mktd_mock_action_at(m, 1)->kind, "coupon.redeemed");
    CHECK_STR(mktd_mock_action_at(m, 1)->payload, want);
    CHECK_STR(mktd_mock_action_at(m, 2)->kind, "coupon.issued");
    CHECK_STR(mktd_mock_action_at(m, 2)->user, "u1");
    mktd_mock_free(m);
}

/* The worked example of plugins/coupon/README.md. */
static void test_readme_example(void)
{
    mktd_mock *m = mktd_mock_new();
    char code[64], want[2048];
    const int64_t t0 = 1767225600000LL;

    add_ok(m, "first-order",
           "value: 500          # 5.00 off\n"
           "min_spend: 3000     # on orders of 30.00 or more\n"
           "valid_for: 30d\n"
           "code_prefix: WELCOME-\n"
           "budget: 10000\n");
    mktd_mock_set_when(m, "first-order", "order.paid");
    CHECK_INT(play(m, "order.paid", "alice", t0, "{\"order_id\":\"o1\",\"amount\":4200}"), 0);
    code_of(last(m), code, sizeof code);
    CHECK(strncmp(code, "WELCOME-", 8) == 0 && strlen(code) == 8 + 13);
    CHECK_INT(play(m, "order.paid", "alice", t0 + HOUR_MS, "{\"order_id\":\"o2\",\"amount\":1500}"),
              0);
    CHECK_INT(use(m, "bob", t0 + 2 * HOUR_MS, code, ""), 0);
    CHECK_INT(use(m, "alice", t0 + 3 * HOUR_MS, code, ",\"order_id\":\"o3\",\"amount\":2000"), 0);
    CHECK_INT(use(m, "alice", t0 + 4 * HOUR_MS, code, ",\"order_id\":\"o4\",\"amount\":3500"), 0);
    CHECK_INT(use(m, "alice", t0 + 5 * HOUR_MS, code, ",\"order_id\":\"o5\",\"amount\":9900"), 0);
    CHECK_INT(use(m, "alice", t0 + 6 * HOUR_MS, "NOSUCHCODE", ""), 0);
    snprintf(want, sizeof want,
             "coupon.issued alice "
             "{\"code\":\"%s\",\"value\":500,\"min_spend\":3000,\"expires_at\":1769817600000}\n"
             "coupon.rejected bob {\"code\":\"%s\",\"reason\":\"not_owner\"}\n"
             "coupon.rejected alice {\"code\":\"%s\",\"reason\":\"min_spend\"}\n"
             "coupon.redeemed alice {\"code\":\"%s\",\"order_id\":\"o4\"}\n"
             "coupon.rejected alice {\"code\":\"%s\",\"reason\":\"used\"}\n"
             "coupon.rejected alice {\"code\":\"NOSUCHCODE\",\"reason\":\"unknown\"}\n",
             code, code, code, code, code);
    CHECK_STR(mktd_mock_dump(m, 0), want);
    mktd_mock_free(m);
}

/* A coupon.used without a usable code is left alone. */
static void test_used_without_code(void)
{
    mktd_mock *m = mktd_mock_new();

    CHECK_INT(mktd_mock_add(m, offer_entry, "other", NULL), 0);
    add_ok(m, "c", "value: 5\nvalid_for: 1d\n");
    mktd_mock_set_when(m, "c", "order.paid");
    /* input events like these are refused before any campaign sees them */
    CHECK_INT(play(m, "coupon.used", "u1", 1000, NULL), -EINVAL);
    CHECK_INT(play(m, "coupon.used", "u1", 1000, "{\"code\":17}"), -EINVAL);
    CHECK_INT(mktd_mock_count(m), 0);
    /* an internal one reaches the campaign, which ignores it */
    CHECK_INT(play(m, "fake.use", "u1", 1000, NULL), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_STR(last(m)->kind, "coupon.used");
    mktd_mock_free(m);
}

/* ---- chaining ---- */

static void test_chaining(void)
{
    mktd_mock *m = mktd_mock_new();
    const mktd_mock_action *a;
    char code[64], want[256];

    CHECK_INT(mktd_mock_add(m, offer_entry, "winback", NULL), 0);
    add_ok(m, "offer-coupon", "value: 300\nvalid_for: 7d\n");
    mktd_mock_set_when(m, "offer-coupon", "reactivation.offer");

    CHECK_INT(play(m, "login", "u1", 1000, NULL), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(play(m, "tick", "u1", 2000, NULL), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    a = mktd_mock_action_at(m, 0);
    CHECK_STR(a->kind, "reactivation.offer");
    CHECK_STR(a->campaign, "winback");
    a = mktd_mock_action_at(m, 1);
    CHECK_STR(a->kind, "coupon.issued");
    CHECK_STR(a->campaign, "offer-coupon");
    CHECK_STR(a->user, "u1");
    CHECK_STR(a->event_id, last_id());
    CHECK_INT(a->ts, 2000);
    snprintf(want, sizeof want,
             "{\"code\":\"%s\",\"value\":300,\"min_spend\":0,\"expires_at\":%lld}",
             code_of(a, code, sizeof code), 2000 + 7 * DAY_MS);
    CHECK_STR(a->payload, want);
    mktd_mock_free(m);
}

static void test_own_actions_unseen(void)
{
    mktd_mock *m = mktd_mock_new();

    /* `when` matches everything: its own coupon.issued would match too */
    add_ok(m, "c", "value: 300\nvalid_for: 7d\nper_user_limit: 10\n");
    CHECK_INT(play(m, "visit", "u1", 1000, NULL), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(mktd_mock_counter(m, "c", "u1", "issued"), 1);
    mktd_mock_free(m);

    /* a second campaign does see the first's actions, but not its own */
    m = mktd_mock_new();
    add_ok(m, "a", "value: 300\nvalid_for: 7d\nper_user_limit: 10\n");
    add_ok(m, "b", "value: 100\nvalid_for: 7d\nper_user_limit: 10\n");
    mktd_mock_set_when(m, "a", "visit");
    mktd_mock_set_when(m, "b", "coupon.issued");
    CHECK_INT(play(m, "visit", "u1", 1000, NULL), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_STR(mktd_mock_action_at(m, 0)->campaign, "a");
    CHECK_STR(mktd_mock_action_at(m, 1)->campaign, "b");
    mktd_mock_free(m);
}

/* A dry run (spec 10) leaves nothing: no action, counter, code or
 * redemption; the id is not remembered. */
static void test_dry(void)
{
    mktd_mock *m = mktd_mock_new();
    char code[64];

    add_ok(m, "c", "value: 500\nvalid_for: 7d\nbudget: 1\n");
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"d1\",\"type\":\"visit\",\"user\":\"u1\",\"ts\":1000,"
                                 "\"dry\":true}"),
              0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(mktd_mock_counter(m, "c", NULL, "budget"), 0);
    CHECK_INT(mktd_mock_counter(m, "c", "u1", "issued"), 0);
    /* the same id for real: not a duplicate */
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"d1\",\"type\":\"visit\",\"user\":\"u1\",\"ts\":1000}"),
              0);
    CHECK_INT(mktd_mock_count(m), 1);
    code_of(last(m), code, sizeof code);
    CHECK(code[0] != '\0');
    CHECK_INT(mktd_mock_counter(m, "c", NULL, "budget"), 1);

    char line[512];
    snprintf(line, sizeof line,
             "{\"id\":\"d2\",\"type\":\"coupon.used\",\"user\":\"u1\",\"ts\":2000,\"dry\":true,"
             "\"props\":{\"code\":\"%s\"}}",
             code);
    CHECK_INT(mktd_mock_event(m, line), 0);
    CHECK_INT(mktd_mock_count(m), 1);
    CHECK_INT(use(m, "u1", 2000, code, ""), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_STR(last(m)->kind, "coupon.redeemed");
    mktd_mock_free(m);
}

/* on_forget: the forgotten user's code records belong to its pseudonym
 * (a code stays unique, a redeemed one stays redeemed), its own counter
 * goes, and it comes back as a new user; a failing forget keeps it all. */
static void test_forget(void)
{
    mktd_mock *m = mktd_mock_new();
    char c1[64], c2[64], other[64], ps[64], want[128];
    const char *v;

    add_ok(m, "c", "value: 500\nvalid_for: 7d\nper_user_limit: 2\n");
    mktd_mock_set_when(m, "c", "visit");
    CHECK_INT(play(m, "visit", "u1", 1000, NULL), 0);
    code_of(last(m), c1, sizeof c1);
    CHECK_INT(play(m, "visit", "u1", 1001, NULL), 0);
    code_of(last(m), c2, sizeof c2);
    CHECK_INT(play(m, "visit", "u2", 1002, NULL), 0);
    code_of(last(m), other, sizeof other);
    CHECK_INT(use(m, "u1", 1003, c1, ""), 0);
    CHECK_STR(last(m)->kind, "coupon.redeemed");
    CHECK_INT(mktd_mock_counter(m, "c", "u1", "issued"), 2);

    CHECK_INT(mktd_mock_forget(m, "u1", ps, sizeof ps), 0);
    char key[80];
    snprintf(key, sizeof key, "code:%s", c1);
    CHECK_INT(mktd_mock_state(m, "c", NULL, key, &v, NULL), 0);
    snprintf(want, sizeof want, "1 %lld 0 %s", 1000 + 7 * DAY_MS, ps);
    CHECK_STR(v, want);
    snprintf(key, sizeof key, "code:%s", c2);
    CHECK_INT(mktd_mock_state(m, "c", NULL, key, &v, NULL), 0);
    snprintf(want, sizeof want, "0 %lld 0 %s", 1001 + 7 * DAY_MS, ps);
    CHECK_STR(v, want);
    snprintf(key, sizeof key, "code:%s", other);
    CHECK_INT(mktd_mock_state(m, "c", NULL, key, &v, NULL), 0);
    snprintf(want, sizeof want, "0 %lld 0 u2", 1002 + 7 * DAY_MS);
    CHECK_STR(v, want);
    CHECK_INT(mktd_mock_counter(m, "c", "u1", "issued"), 0);
    /* the recorded actions name the pseudonym */
    CHECK_STR(mktd_mock_action_at(m, 0)->user, ps);
    CHECK_STR(mktd_mock_action_at(m, 2)->user, "u2");
    /* u1 is new: two coupons again; the old codes are not its own */
    CHECK_INT(play(m, "visit", "u1", 2000, NULL), 0);
    CHECK_STR(last(m)->kind, "coupon.issued");
    CHECK_STR(last(m)->user, "u1");
    CHECK_INT(use(m, "u1", 2001, c2, ""), 0);
    CHECK_STR(last(m)->kind, "coupon.rejected");
    CHECK(strstr(last(m)->payload, "not_owner") != NULL);
    mktd_mock_free(m);
}

int main(void)
{
    test_param_errors();
    test_defaults();
    test_match_only();
    test_per_user_limit();
    test_budget();
    test_code_format();
    test_code_draw();
    test_expires_at();
    test_percent();
    test_redeem_ok();
    test_reject_order();
    test_unknown();
    test_redeem_inactive();
    test_two_campaigns();
    test_redeem_before_issue();
    test_readme_example();
    test_used_without_code();
    test_chaining();
    test_own_actions_unseen();
    test_dry();
    test_forget();
    return check_done();
}
