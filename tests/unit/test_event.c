/* Unit tests for daemon/event.c: one input line per spec sections 1 and 9. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "engine/event.h"
#include "lib/util.h"

#define NOW 1793491200000LL /* 2026-11-01T00:00:00Z */
#define DAY 86400000LL

static struct decode_opts opts = {NOW, DAY, 0};
static char detail[256];
static char *echo;
static struct event ev;

/* Decodes n bytes of s; the event stays in ev until the next call. */
static enum ev_status decn(const char *s, size_t n)
{
    event_clear(&ev);
    free(echo);
    echo = NULL;
    strcpy(detail, "(unset)");
    return event_decode(s, n, &opts, &ev, detail, sizeof(detail), &echo);
}

static enum ev_status dec(const char *s)
{
    return decn(s, strlen(s));
}

/* The detail contains sub. */
#define CHECK_DETAIL(sub)                                                                          \
    do {                                                                                           \
        if (strstr(detail, sub)) {                                                                 \
            check_pass++;                                                                          \
        } else {                                                                                   \
            check_fail++;                                                                          \
            fprintf(stderr, "%s:%d: detail \"%s\" lacks \"%s\"\n", __FILE__, __LINE__, detail,     \
                    sub);                                                                          \
        }                                                                                          \
    } while (0)

#define CHECK_ECHO(s)                                                                              \
    do {                                                                                           \
        const char *want_ = (s);                                                                   \
        if (want_)                                                                                 \
            CHECK_STR(echo, want_);                                                                \
        else                                                                                       \
            CHECK(echo == NULL);                                                                   \
    } while (0)

/* A line with the given fields after a fixed id/type/user head. */
static char buf[300000];
static const char *ev_with(const char *type, const char *rest)
{
    snprintf(buf, sizeof(buf), "{\"id\":\"e1\",\"type\":\"%s\",\"user\":\"u1\"%s%s}", type,
             rest[0] ? "," : "", rest);
    return buf;
}

static const char *repeat(char c, size_t n)
{
    static char r[512];
    if (n >= sizeof(r))
        abort();
    memset(r, c, n);
    r[n] = 0;
    return r;
}

static void test_valid(void)
{
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"page.view\",\"user\":\"u1\"}"), EV_OK);
    CHECK_STR(ev.id, "e1");
    CHECK_STR(ev.type, "page.view");
    CHECK_STR(ev.user, "u1");
    CHECK_INT(ev.has_ts, 0);
    CHECK(ev.props == NULL);
    CHECK(ev.root != NULL);
    CHECK_ECHO("e1");

    /* Whitespace around, a trailing \r (JSON whitespace), unknown fields. */
    CHECK_INT(dec(" \t{\"id\":\"e2\",\"type\":\"a_b-c.9\",\"user\":\"u\",\"x\":[1,{\"y\":null}],"
                  "\"z\":{\"q\":1}}\t \r"),
              EV_OK);
    CHECK_STR(ev.type, "a_b-c.9");
    CHECK_ECHO("e2");

    /* Fields in any order, escaped keys and values. */
    CHECK_INT(dec("{\"user\":\"\\u00e9\",\"\\u0069d\":\"\\\"q\\\"\",\"type\":\"t\"}"), EV_OK);
    CHECK_STR(ev.user, "\xc3\xa9");
    CHECK_STR(ev.id, "\"q\"");
    CHECK_ECHO("\"q\"");

    /* props present, null, empty. */
    CHECK_INT(dec(ev_with("t", "\"props\":{\"a\":{\"b\":2}}")), EV_OK);
    CHECK(json_is_object(ev.props));
    CHECK_INT(json_integer_value(props_path(ev.props, "a.b")), 2);
    CHECK_INT(dec(ev_with("t", "\"props\":null")), EV_OK);
    CHECK(ev.props == NULL);
    CHECK_INT(dec(ev_with("t", "\"props\":{}")), EV_OK);
    CHECK(json_is_object(ev.props));

    /* \u0000 in a props string value is fine. */
    CHECK_INT(dec(ev_with("t", "\"props\":{\"s\":\"a\\u0000b\"}")), EV_OK);
    CHECK_INT(json_string_length(props_path(ev.props, "s")), 3);

    /* Non-ASCII id of exactly 128 bytes (64 two-byte characters). */
    {
        char line[1024], id[300] = "";
        for (int i = 0; i < 64; i++)
            strcat(id, "\xc3\xa9");
        snprintf(line, sizeof(line), "{\"id\":\"%s\",\"type\":\"t\",\"user\":\"u\"}", id);
        CHECK_INT(dec(line), EV_OK);
        CHECK_STR(echo, id);
    }
}

static void test_invalid_json(void)
{
    static const char *bad[] = {
        "{",
        "nope",
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\"}x",
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\"} {}",
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",}",
        "{\"id\":'e1'}",
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":{\"s\":\"\\ud800\"}}",
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":{\"s\":\"\\udc00\"}}",
        "{\"id\":\"\\ud800x\",\"type\":\"t\",\"user\":\"u\"}",
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\xff\"}",
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"\xc0\xaf\"}",         /* overlong */
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"\xe2\x82\"}",         /* truncated */
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"\xed\xa0\x80\"}",     /* surrogate */
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"\xf4\x90\x80\x80\"}", /* > U+10FFFF */
        "\xef\xbb\xbf{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\"}",    /* BOM */
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"a\tb\"}",             /* raw control */
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":{\"x\":1e400}}",
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":{\"x\":-1e400}}",
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"ts\":1e400}",
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":{\"x\":NaN}}",
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":{\"x\":01}}",
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":{\"x\":+1}}",
        "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":{\"x\":.5}}",
        "",
        " ",
        "\r",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum ev_status st = dec(bad[i]);
        if (st != EV_INVALID_JSON)
            fprintf(stderr, "case %zu: %s\n", i, bad[i]);
        CHECK_INT(st, EV_INVALID_JSON);
        CHECK_ECHO(NULL);
        CHECK(detail[0] != 0 && strcmp(detail, "(unset)") != 0);
        CHECK(ev.root == NULL);
        /* The detail is printable ASCII (it ends up in a JSON answer). */
        for (const char *p = detail; *p; p++)
            CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
    }

    /* A raw NUL byte, inside a string or after the object. */
    static const char nul1[] = "{\"id\":\"e\0\",\"type\":\"t\",\"user\":\"u\"}";
    CHECK_INT(decn(nul1, sizeof(nul1) - 1), EV_INVALID_JSON);
    CHECK_ECHO(NULL);
    static const char nul2[] = "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\"}\0";
    CHECK_INT(decn(nul2, sizeof(nul2) - 1), EV_INVALID_JSON);
    static const char nul3[] = "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\"\0}";
    CHECK_INT(decn(nul3, sizeof(nul3) - 1), EV_INVALID_JSON);
    CHECK_DETAIL("NUL");

    /* A length shorter than the string: only len bytes count. */
    CHECK_INT(decn("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\"}", 10), EV_INVALID_JSON);
    /* The position is reported. */
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\xff\"}"), EV_INVALID_JSON);
    CHECK_DETAIL("at byte");
}

static void test_not_object(void)
{
    static const char *v[] = {"[]",   "[{\"id\":\"e1\"}]", "1", "-2.5", "\"e1\"", "null", "true",
                              "false"};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        CHECK_INT(dec(v[i]), EV_INVALID_EVENT);
        CHECK_ECHO(NULL);
        CHECK_DETAIL("not a JSON object");
    }
}

static void test_required(void)
{
    CHECK_INT(dec("{\"type\":\"t\",\"user\":\"u\"}"), EV_INVALID_EVENT);
    CHECK_STR(detail, "missing field: id");
    CHECK_ECHO(NULL);
    CHECK_INT(dec("{\"id\":\"e1\",\"user\":\"u\"}"), EV_INVALID_EVENT);
    CHECK_STR(detail, "missing field: type");
    CHECK_ECHO("e1");
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\"}"), EV_INVALID_EVENT);
    CHECK_STR(detail, "missing field: user");
    CHECK_ECHO("e1");
    CHECK_INT(dec("{}"), EV_INVALID_EVENT);
    CHECK_STR(detail, "missing field: id");
    CHECK_INT(dec("{\"id\":null,\"type\":\"t\",\"user\":\"u\"}"), EV_INVALID_EVENT);
    CHECK_STR(detail, "missing field: id");
    CHECK_ECHO(NULL);
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":null}"), EV_INVALID_EVENT);
    CHECK_STR(detail, "missing field: user");
    CHECK_ECHO("e1");

    /* id */
    char line[4096];
    static const char *bad_ids[] = {"\"\"",          "1",          "true", "[\"e1\"]", "{}",
                                    "\"a\\u0000b\"", "\"\\u0000\""};
    for (size_t i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
        snprintf(line, sizeof(line), "{\"id\":%s,\"type\":\"t\",\"user\":\"u\"}", bad_ids[i]);
        CHECK_INT(dec(line), EV_INVALID_EVENT);
        CHECK_ECHO(NULL);
        CHECK_DETAIL("field 'id'");
    }
    snprintf(line, sizeof(line), "{\"id\":\"%s\",\"type\":\"t\",\"user\":\"u\"}", repeat('i', 128));
    CHECK_INT(dec(line), EV_OK);
    CHECK_INT(strlen(echo), 128);
    snprintf(line, sizeof(line), "{\"id\":\"%s\",\"type\":\"t\",\"user\":\"u\"}", repeat('i', 129));
    CHECK_INT(dec(line), EV_INVALID_EVENT);
    CHECK_ECHO(NULL);

    /* type */
    static const char *bad_types[] = {"\"\"",        "\"Order.paid\"", "\"a b\"",    "\"a/b\"",
                                      "\"\\u00e9\"", "\"a\\u0000\"",   "1",          "[]",
                                      "\"A\"",       "\"t\\n\"",       "\"\\u0041\""};
    for (size_t i = 0; i < sizeof(bad_types) / sizeof(bad_types[0]); i++) {
        snprintf(line, sizeof(line), "{\"id\":\"e1\",\"type\":%s,\"user\":\"u\"}", bad_types[i]);
        CHECK_INT(dec(line), EV_INVALID_EVENT);
        CHECK_ECHO("e1");
        CHECK_DETAIL("field 'type'");
    }
    snprintf(line, sizeof(line), "{\"id\":\"e1\",\"type\":\"%s\",\"user\":\"u\"}", repeat('t', 64));
    CHECK_INT(dec(line), EV_OK);
    snprintf(line, sizeof(line), "{\"id\":\"e1\",\"type\":\"%s\",\"user\":\"u\"}", repeat('t', 65));
    CHECK_INT(dec(line), EV_INVALID_EVENT);
    CHECK_ECHO("e1");
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"\\u0074\",\"user\":\"u\"}"), EV_OK);
    CHECK_STR(ev.type, "t");

    /* user */
    static const char *bad_users[] = {"\"\"", "7", "false", "{\"id\":\"u\"}", "\"u\\u0000\""};
    for (size_t i = 0; i < sizeof(bad_users) / sizeof(bad_users[0]); i++) {
        snprintf(line, sizeof(line), "{\"id\":\"e1\",\"type\":\"t\",\"user\":%s}", bad_users[i]);
        CHECK_INT(dec(line), EV_INVALID_EVENT);
        CHECK_ECHO("e1");
        CHECK_DETAIL("field 'user'");
    }
    snprintf(line, sizeof(line), "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"%s\"}",
             repeat('u', 128));
    CHECK_INT(dec(line), EV_OK);
    snprintf(line, sizeof(line), "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"%s\"}",
             repeat('u', 129));
    CHECK_INT(dec(line), EV_INVALID_EVENT);
}

static void test_ts(void)
{
    CHECK_INT(dec(ev_with("t", "\"ts\":0")), EV_OK);
    CHECK_INT(ev.has_ts, 1);
    CHECK_INT(ev.ts, 0);
    CHECK_INT(dec(ev_with("t", "\"ts\":-0")), EV_OK);
    CHECK_INT(ev.ts, 0);
    CHECK_INT(dec(ev_with("t", "\"ts\":1793491200000")), EV_OK);
    CHECK_INT(ev.ts, NOW);
    CHECK_INT(dec(ev_with("t", "\"ts\":null")), EV_OK);
    CHECK_INT(ev.has_ts, 0);

    CHECK_INT(dec(ev_with("t", "\"ts\":\"2026-11-01T00:00:00Z\"")), EV_OK);
    CHECK_INT(ev.has_ts, 1);
    CHECK_INT(ev.ts, NOW);
    CHECK_INT(dec(ev_with("t", "\"ts\":\"2026-11-01t08:00:00.5+08:00\"")), EV_OK);
    CHECK_INT(ev.ts, NOW + 500);
    CHECK_INT(dec(ev_with("t", "\"ts\":\"2026-10-31T19:00:00.1239-05:00\"")), EV_OK);
    CHECK_INT(ev.ts, NOW + 123);
    CHECK_INT(dec(ev_with("t", "\"ts\":\"2026-11-01T00:00:00z\"")), EV_OK);
    CHECK_INT(ev.ts, NOW);
    CHECK_INT(dec(ev_with("t", "\"ts\":\"1970-01-01T00:00:00Z\"")), EV_OK);
    CHECK_INT(ev.ts, 0);

    static const char *bad[] = {
        "\"ts\":-1",
        "\"ts\":\"1969-12-31T23:59:59.999Z\"",
        "\"ts\":1.5",
        "\"ts\":100.0",
        "\"ts\":1e3",
        "\"ts\":true",
        "\"ts\":[]",
        "\"ts\":{}",
        "\"ts\":\"\"",
        "\"ts\":\"now\"",
        "\"ts\":\"1793491200000\"",
        "\"ts\":\"2026-11-01\"",
        "\"ts\":\"2026-11-01 00:00:00Z\"",
        "\"ts\":\"2026-11-01T00:00:00\"",
        "\"ts\":\"2026-12-31T23:59:60Z\"",
        "\"ts\":\"2026-02-29T00:00:00Z\"",
        "\"ts\":\"2026-11-01T00:00:00Z\\u0000\"",
        "\"ts\":\"2026-11-01T00:00:00Z \"",
        "\"ts\":92233720368547758070",
        "\"ts\":9223372036854775808",
        "\"ts\":-9223372036854775809",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        enum ev_status st = dec(ev_with("t", bad[i]));
        if (st != EV_INVALID_EVENT)
            fprintf(stderr, "ts case %zu: %s (%s)\n", i, bad[i], detail);
        CHECK_INT(st, EV_INVALID_EVENT);
        CHECK_ECHO("e1");
        CHECK_DETAIL("field 'ts'");
    }
    CHECK_INT(dec(ev_with("t", "\"ts\":true")), EV_INVALID_EVENT);
    CHECK_STR(detail, "field 'ts': must be an integer (Unix ms) or an RFC 3339 string");

    /* max_future: exactly at the limit is fine, one ms later is not. */
    char rest[128];
    snprintf(rest, sizeof(rest), "\"ts\":%lld", NOW + DAY);
    CHECK_INT(dec(ev_with("t", rest)), EV_OK);
    snprintf(rest, sizeof(rest), "\"ts\":%lld", NOW + DAY + 1);
    CHECK_INT(dec(ev_with("t", rest)), EV_INVALID_EVENT);
    CHECK_ECHO("e1");
    CHECK_DETAIL("max_future");
    CHECK_INT(dec(ev_with("t", "\"ts\":\"2026-11-02T00:00:00Z\"")), EV_OK);
    CHECK_INT(dec(ev_with("t", "\"ts\":\"2026-11-02T00:00:00.001Z\"")), EV_INVALID_EVENT);
    CHECK_INT(dec(ev_with("t", "\"ts\":9223372036854775807")), EV_INVALID_EVENT);
    /* The past is never too far. */
    CHECK_INT(dec(ev_with("t", "\"ts\":1")), EV_OK);
    /* Saturation: a huge allowance admits the largest ts. */
    struct decode_opts saved = opts;
    opts.max_future_ms = INT64_MAX;
    CHECK_INT(dec(ev_with("t", "\"ts\":9223372036854775807")), EV_OK);
    CHECK_INT(ev.ts, INT64_MAX);
    opts.max_future_ms = 0;
    snprintf(rest, sizeof(rest), "\"ts\":%lld", NOW);
    CHECK_INT(dec(ev_with("t", rest)), EV_OK);
    snprintf(rest, sizeof(rest), "\"ts\":%lld", NOW + 1);
    CHECK_INT(dec(ev_with("t", rest)), EV_INVALID_EVENT);
    opts = saved;
    /* No ts: no future check. */
    CHECK_INT(dec(ev_with("t", "")), EV_OK);
}

static void test_props_type(void)
{
    static const char *bad[] = {"\"props\":[]", "\"props\":\"x\"", "\"props\":1", "\"props\":true",
                                "\"props\":[{}]"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT(dec(ev_with("t", bad[i])), EV_INVALID_EVENT);
        CHECK_STR(detail, "field 'props': must be an object");
        CHECK_ECHO("e1");
    }
}

static void test_builtin(void)
{
    /* user.signup */
    CHECK_INT(dec(ev_with("user.signup", "")), EV_OK);
    CHECK_INT(dec(ev_with("user.signup", "\"props\":{\"referrer\":\"u0\"}")), EV_OK);
    CHECK_INT(dec(ev_with("user.signup", "\"props\":{\"referrer\":null}")), EV_OK);
    CHECK_INT(dec(ev_with("user.signup", "\"props\":{\"referrer\":5}")), EV_INVALID_EVENT);
    CHECK_DETAIL("props.referrer");
    CHECK_ECHO("e1");
    CHECK_INT(dec(ev_with("user.signup", "\"props\":{\"referrer\":\"\"}")), EV_INVALID_EVENT);
    CHECK_INT(dec(ev_with("user.signup", "\"props\":{\"referrer\":\"a\\u0000\"}")),
              EV_INVALID_EVENT);
    {
        char rest[1024];
        snprintf(rest, sizeof(rest), "\"props\":{\"referrer\":\"%s\"}", repeat('r', 128));
        CHECK_INT(dec(ev_with("user.signup", rest)), EV_OK);
        snprintf(rest, sizeof(rest), "\"props\":{\"referrer\":\"%s\"}", repeat('r', 129));
        CHECK_INT(dec(ev_with("user.signup", rest)), EV_INVALID_EVENT);
    }

    /* order.paid */
    CHECK_INT(dec(ev_with("order.paid", "\"props\":{\"order_id\":\"o1\",\"amount\":0}")), EV_OK);
    CHECK_INT(dec(ev_with("order.paid", "\"props\":{\"order_id\":\"o1\",\"amount\":12345}")),
              EV_OK);
    CHECK_INT(dec(ev_with("order.paid", "\"props\":{\"order_id\":\"o1\",\"amount\":"
                                        "9223372036854775807}")),
              EV_OK);
    CHECK_INT(dec(ev_with("order.paid", "")), EV_INVALID_EVENT);
    CHECK_STR(detail, "missing field: props.order_id");
    CHECK_INT(dec(ev_with("order.paid", "\"props\":null")), EV_INVALID_EVENT);
    CHECK_STR(detail, "missing field: props.order_id");
    CHECK_INT(dec(ev_with("order.paid", "\"props\":{\"order_id\":\"o1\"}")), EV_INVALID_EVENT);
    CHECK_STR(detail, "missing field: props.amount");
    CHECK_ECHO("e1");
    CHECK_INT(dec(ev_with("order.paid", "\"props\":{\"order_id\":\"o1\",\"amount\":null}")),
              EV_INVALID_EVENT);
    CHECK_STR(detail, "missing field: props.amount");
    CHECK_INT(dec(ev_with("order.paid", "\"props\":{\"order_id\":null,\"amount\":1}")),
              EV_INVALID_EVENT);
    CHECK_STR(detail, "missing field: props.order_id");
    static const char *bad_amounts[] = {"100.0",
                                        "-1",
                                        "\"5\"",
                                        "1e2",
                                        "true",
                                        "[1]",
                                        "1.5",
                                        "92233720368547758070",
                                        "9223372036854775808",
                                        "-9223372036854775809"};
    for (size_t i = 0; i < sizeof(bad_amounts) / sizeof(bad_amounts[0]); i++) {
        char rest[256];
        snprintf(rest, sizeof(rest), "\"props\":{\"order_id\":\"o1\",\"amount\":%s}",
                 bad_amounts[i]);
        enum ev_status st = dec(ev_with("order.paid", rest));
        if (st != EV_INVALID_EVENT)
            fprintf(stderr, "amount case %zu: %s\n", i, bad_amounts[i]);
        CHECK_INT(st, EV_INVALID_EVENT);
        CHECK_STR(detail, "props.amount: must be an integer >= 0");
        CHECK_ECHO("e1");
    }
    static const char *bad_oids[] = {"1", "\"\"", "\"o\\u0000\"", "{}", "false"};
    for (size_t i = 0; i < sizeof(bad_oids) / sizeof(bad_oids[0]); i++) {
        char rest[256];
        snprintf(rest, sizeof(rest), "\"props\":{\"order_id\":%s,\"amount\":1}", bad_oids[i]);
        CHECK_INT(dec(ev_with("order.paid", rest)), EV_INVALID_EVENT);
        CHECK_DETAIL("props.order_id");
    }
    {
        char rest[1024];
        snprintf(rest, sizeof(rest), "\"props\":{\"order_id\":\"%s\",\"amount\":1}",
                 repeat('o', 128));
        CHECK_INT(dec(ev_with("order.paid", rest)), EV_OK);
        snprintf(rest, sizeof(rest), "\"props\":{\"order_id\":\"%s\",\"amount\":1}",
                 repeat('o', 129));
        CHECK_INT(dec(ev_with("order.paid", rest)), EV_INVALID_EVENT);
    }

    /* order.refunded */
    CHECK_INT(dec(ev_with("order.refunded", "\"props\":{\"order_id\":\"o1\"}")), EV_OK);
    CHECK_INT(dec(ev_with("order.refunded", "\"props\":{\"order_id\":\"o1\",\"amount\":null}")),
              EV_OK);
    CHECK_INT(dec(ev_with("order.refunded", "\"props\":{\"order_id\":\"o1\",\"amount\":1}")),
              EV_OK);
    CHECK_INT(dec(ev_with("order.refunded", "\"props\":{\"order_id\":\"o1\",\"amount\":0}")),
              EV_INVALID_EVENT);
    CHECK_STR(detail, "props.amount: must be an integer > 0");
    CHECK_INT(dec(ev_with("order.refunded", "\"props\":{\"order_id\":\"o1\",\"amount\":5.0}")),
              EV_INVALID_EVENT);
    CHECK_INT(dec(ev_with("order.refunded", "\"props\":{\"amount\":5}")), EV_INVALID_EVENT);
    CHECK_STR(detail, "missing field: props.order_id");
    CHECK_INT(dec(ev_with("order.refunded", "")), EV_INVALID_EVENT);

    /* coupon.used */
    CHECK_INT(dec(ev_with("coupon.used", "\"props\":{\"code\":\"C1\"}")), EV_OK);
    CHECK_INT(dec(ev_with("coupon.used", "\"props\":{\"code\":\"C1\",\"order_id\":null,"
                                         "\"amount\":null}")),
              EV_OK);
    CHECK_INT(dec(ev_with("coupon.used", "\"props\":{\"code\":\"C1\",\"order_id\":\"o\","
                                         "\"amount\":0}")),
              EV_OK);
    CHECK_INT(dec(ev_with("coupon.used", "")), EV_INVALID_EVENT);
    CHECK_STR(detail, "missing field: props.code");
    CHECK_INT(dec(ev_with("coupon.used", "\"props\":{\"code\":7}")), EV_INVALID_EVENT);
    CHECK_DETAIL("props.code");
    CHECK_INT(dec(ev_with("coupon.used", "\"props\":{\"code\":\"C1\",\"order_id\":7}")),
              EV_INVALID_EVENT);
    CHECK_DETAIL("props.order_id");
    CHECK_INT(dec(ev_with("coupon.used", "\"props\":{\"code\":\"C1\",\"amount\":-5}")),
              EV_INVALID_EVENT);
    CHECK_STR(detail, "props.amount: must be an integer >= 0");
    CHECK_INT(dec(ev_with("coupon.used", "\"props\":{\"code\":\"C1\",\"amount\":1.0}")),
              EV_INVALID_EVENT);

    /* Other types take any props, including those names with any value. */
    CHECK_INT(dec(ev_with("order.paid2", "\"props\":{\"amount\":\"x\",\"order_id\":1}")), EV_OK);
    CHECK_INT(dec(ev_with("order", "\"props\":{\"amount\":-1.5}")), EV_OK);
}

static void test_duplicates(void)
{
    /* A repeated key at the top level. */
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"user\":\"v\"}"),
              EV_INVALID_EVENT);
    CHECK_ECHO("e1");
    CHECK_DETAIL("duplicate key");
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"x\":1,\"x\":1}"),
              EV_INVALID_EVENT);
    CHECK_ECHO("e1");
    CHECK_INT(dec("{\"id\":\"e1\",\"props\":{},\"type\":\"t\",\"user\":\"u\",\"props\":{}}"),
              EV_INVALID_EVENT);
    /* A repeated id: no echo. */
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"id\":\"e1\"}"), EV_INVALID_EVENT);
    CHECK_ECHO(NULL);
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"id\":\"e2\"}"), EV_INVALID_EVENT);
    CHECK_ECHO(NULL);
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"\\u0069\\u0064\":\"e2\"}"),
              EV_INVALID_EVENT);
    CHECK_ECHO(NULL);
    CHECK_INT(dec("{\"id\":1,\"type\":\"t\",\"user\":\"u\",\"id\":\"e2\"}"), EV_INVALID_EVENT);
    CHECK_ECHO(NULL);
    /* Escaped forms of a key count as the same key. */
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"\\u0075ser\":\"v\"}"),
              EV_INVALID_EVENT);
    CHECK_ECHO("e1");
    /* Keys that only look alike are different. */
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"ID\":\"e2\",\"id \":2}"), EV_OK);
    CHECK_ECHO("e1");
    /* The duplicate is found even after a props holding strings with
     * braces, commas and escaped quotes. */
    CHECK_INT(dec("{\"props\":{\"a\":\"},\\\"id\\\":{\",\"b\":[\"{\",\",\"]},\"id\":\"e1\","
                  "\"type\":\"t\",\"user\":\"u\",\"type\":\"t\"}"),
              EV_INVALID_EVENT);
    CHECK_ECHO("e1");
    CHECK_DETAIL("duplicate key");

    /* Inside props (or any nested object) the last one wins. */
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":{\"a\":1,\"a\":2}}"),
              EV_OK);
    CHECK_INT(json_integer_value(props_path(ev.props, "a")), 2);
    CHECK_INT(json_object_size(ev.props), 1);
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":{\"a\":{\"b\":1,"
                  "\"b\":null},\"id\":1,\"id\":3}}"),
              EV_OK);
    CHECK(props_path(ev.props, "a.b") == NULL);
    CHECK_INT(json_integer_value(props_path(ev.props, "id")), 3);
    CHECK_ECHO("e1");
    CHECK_INT(dec("{\"id\":\"e1\",\"x\":[{\"k\":1,\"k\":2}],\"type\":\"t\",\"user\":\"u\"}"),
              EV_OK);
    /* A built-in type's prop repeated: the last one is checked. */
    CHECK_INT(dec(ev_with("order.paid", "\"props\":{\"order_id\":\"o\",\"amount\":-1,"
                                        "\"amount\":5}")),
              EV_OK);
    CHECK_INT(json_integer_value(props_path(ev.props, "amount")), 5);
    CHECK_INT(dec(ev_with("order.paid", "\"props\":{\"order_id\":\"o\",\"amount\":5,"
                                        "\"amount\":-1}")),
              EV_INVALID_EVENT);
    /* Duplicates at both levels: invalid. */
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":{\"a\":1,\"a\":2},"
                  "\"type\":\"t\"}"),
              EV_INVALID_EVENT);
    CHECK_ECHO("e1");
    /* A duplicate and then broken JSON: invalid_json. */
    CHECK_INT(dec("{\"id\":\"e1\",\"id\":\"e1\",\"type\":"), EV_INVALID_JSON);
    CHECK_ECHO(NULL);
}

static void test_numbers(void)
{
    /* Integers within int64 stay integers, exactly. */
    CHECK_INT(dec(ev_with("t", "\"props\":{\"max\":9223372036854775807,"
                               "\"min\":-9223372036854775808,\"n\":9007199254740993}")),
              EV_OK);
    CHECK(json_is_integer(props_path(ev.props, "max")));
    CHECK(json_integer_value(props_path(ev.props, "max")) == INT64_MAX);
    CHECK(json_integer_value(props_path(ev.props, "min")) == INT64_MIN);
    CHECK(json_integer_value(props_path(ev.props, "n")) == 9007199254740993LL);

    /* Beyond int64 in props: a double; the other integers stay exact. */
    CHECK_INT(dec(ev_with("t", "\"props\":{\"big\":92233720368547758070,"
                               "\"neg\":-9223372036854775809,\"n\":9007199254740993,"
                               "\"x\":[18446744073709551616,1],\"r\":1.5,\"e\":1e2,\"z\":0}")),
              EV_OK);
    CHECK(json_is_real(props_path(ev.props, "big")));
    CHECK(json_real_value(props_path(ev.props, "big")) == 92233720368547758070.0);
    CHECK(json_is_real(props_path(ev.props, "neg")));
    CHECK(json_real_value(props_path(ev.props, "neg")) == -9223372036854775809.0);
    CHECK(json_is_integer(props_path(ev.props, "n")));
    CHECK(json_integer_value(props_path(ev.props, "n")) == 9007199254740993LL);
    json_t *x = props_path(ev.props, "x");
    CHECK(json_is_real(json_array_get(x, 0)));
    CHECK(json_is_integer(json_array_get(x, 1)));
    CHECK(json_is_real(props_path(ev.props, "r")));
    CHECK(json_is_real(props_path(ev.props, "e")));
    CHECK(json_is_integer(props_path(ev.props, "z")));
    CHECK_ECHO("e1");
    /* Numbers inside strings are left alone. */
    CHECK_INT(dec(ev_with("t", "\"props\":{\"s\":\"92233720368547758070\","
                               "\"b\":92233720368547758070}")),
              EV_OK);
    CHECK_STR(json_string_value(props_path(ev.props, "s")), "92233720368547758070");
    /* A big integer in an unknown top-level field is fine too. */
    CHECK_INT(dec(ev_with("t", "\"n\":123456789012345678901234567890")), EV_OK);
    /* Beyond int64 in an integer field: invalid_event. */
    CHECK_INT(dec(ev_with("order.paid", "\"props\":{\"order_id\":\"o\","
                                        "\"amount\":100000000000000000000}")),
              EV_INVALID_EVENT);
    CHECK_ECHO("e1");
    /* Beyond double range: invalid_json. */
    {
        char rest[1024];
        snprintf(rest, sizeof(rest), "\"props\":{\"n\":1%s}", repeat('0', 400));
        CHECK_INT(dec(ev_with("t", rest)), EV_INVALID_JSON);
        CHECK_ECHO(NULL);
        snprintf(rest, sizeof(rest), "\"props\":{\"n\":1%s}", repeat('0', 300));
        CHECK_INT(dec(ev_with("t", rest)), EV_OK);
        CHECK(json_is_real(props_path(ev.props, "n")));
    }
    CHECK_INT(dec(ev_with("t", "\"props\":{\"n\":1e308}")), EV_OK);
    CHECK_INT(dec(ev_with("t", "\"props\":{\"n\":1e309}")), EV_INVALID_JSON);
    CHECK_INT(dec(ev_with("t", "\"props\":{\"n\":1e-400}")), EV_OK);
    /* A big integer and a duplicate key together. */
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":{\"a\":1,\"a\":"
                  "99999999999999999999}}"),
              EV_OK);
    CHECK(json_is_real(props_path(ev.props, "a")));
    CHECK_INT(dec("{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":{\"a\":"
                  "99999999999999999999},\"user\":\"v\"}"),
              EV_INVALID_EVENT);
    CHECK_ECHO("e1");
    /* Big integer and then broken JSON. */
    CHECK_INT(dec("{\"id\":\"e1\",\"n\":99999999999999999999,"), EV_INVALID_JSON);
    CHECK_INT(dec("{\"id\":\"e1\",\"n\":99999999999999999999,\"m\":0099}"), EV_INVALID_JSON);
}

static void test_nul_keys(void)
{
    /* jansson cannot hold a key with \u0000: refused as invalid_event. */
    CHECK_INT(dec(ev_with("t", "\"props\":{\"a\\u0000b\":1}")), EV_INVALID_EVENT);
    CHECK_ECHO("e1");
    CHECK_DETAIL("\\u0000");
    CHECK_INT(dec(ev_with("t", "\"x\\u0000\":1")), EV_INVALID_EVENT);
    CHECK_ECHO("e1");
    /* Values with the same text are unaffected; escaped backslashes are not
     * escapes. */
    CHECK_INT(dec(ev_with("t", "\"props\":{\"a\\\\u0000\":\"\\u0000\"}")), EV_OK);
    CHECK(props_path(ev.props, "a\\u0000") != NULL);
    CHECK_INT(json_string_length(props_path(ev.props, "a\\u0000")), 1);
    /* The same when the line is also rewritten for a big integer. */
    CHECK_INT(dec(ev_with("t", "\"props\":{\"a\\\\u0000\":\"\\u0000\",\"n\":1e2,"
                               "\"b\":99999999999999999999}")),
              EV_OK);
    CHECK(props_path(ev.props, "a\\u0000") != NULL);
    CHECK(json_is_real(props_path(ev.props, "b")));
    CHECK_INT(dec(ev_with("t", "\"props\":{\"a\\u0000\":1,\"b\":99999999999999999999}")),
              EV_INVALID_EVENT);
    CHECK_ECHO("e1");
}

static char *put(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

static const char *nest_props(int k)
{
    /* props = k nested objects {"a":...} around 1; props is at level 2. */
    char *p = buf;
    p = put(p, "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"props\":");
    for (int i = 0; i < k; i++)
        p = put(p, "{\"a\":");
    *p++ = '1';
    for (int i = 0; i < k; i++)
        *p++ = '}';
    *p++ = '}';
    *p = 0;
    return buf;
}

static const char *nest_arrays(int k, int top_object)
{
    char *p = buf;
    if (top_object)
        p = put(p, "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"x\":");
    for (int i = 0; i < k; i++)
        *p++ = '[';
    for (int i = 0; i < k; i++)
        *p++ = ']';
    if (top_object)
        *p++ = '}';
    *p = 0;
    return buf;
}

static void test_depth(void)
{
    /* Deepest container at level k + 1. */
    CHECK_INT(dec(nest_props(63)), EV_OK);
    CHECK(props_path(ev.props, "a.a.a") != NULL);
    CHECK_INT(dec(nest_props(64)), EV_INVALID_JSON);
    CHECK_ECHO(NULL);
    CHECK_DETAIL("nesting");
    CHECK_INT(dec(nest_props(10000)), EV_INVALID_JSON);
    CHECK_ECHO(NULL);
    /* Arrays: the innermost empty one is a container too. */
    CHECK_INT(dec(nest_arrays(63, 1)), EV_OK);
    CHECK_INT(dec(nest_arrays(64, 1)), EV_INVALID_JSON);
    CHECK_INT(dec(nest_arrays(64, 0)), EV_INVALID_EVENT); /* valid JSON, not an object */
    CHECK_INT(dec(nest_arrays(65, 0)), EV_INVALID_JSON);
    CHECK_INT(dec(nest_arrays(10000, 0)), EV_INVALID_JSON);
    CHECK_INT(dec(nest_arrays(100000, 1)), EV_INVALID_JSON);
    /* A scalar at level 65 is fine: [[...[1]...]] with 64 arrays. */
    {
        char *p = buf;
        p = put(p, "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\",\"x\":");
        for (int i = 0; i < 63; i++)
            *p++ = '[';
        *p++ = '1';
        for (int i = 0; i < 63; i++)
            *p++ = ']';
        strcpy(p, "}");
        CHECK_INT(dec(buf), EV_OK);
    }
    /* Unbalanced deep input. */
    memset(buf, '[', 4000);
    CHECK_INT(decn(buf, 4000), EV_INVALID_JSON);
    memset(buf, '{', 4000);
    CHECK_INT(decn(buf, 4000), EV_INVALID_JSON);
}

static void test_props_path(void)
{
    json_error_t err;
    json_t *p = json_loads("{\"a\":{\"b\":{\"c\":3},\"n\":null,\"arr\":[{\"x\":1}]},\"\":{\"\":5},"
                           "\"d.e\":1,\"top\":\"s\"}",
                           0, &err);
    CHECK(p != NULL);
    CHECK_INT(json_integer_value(props_path(p, "a.b.c")), 3);
    CHECK(json_is_object(props_path(p, "a.b")));
    CHECK(props_path(p, "a.n") == NULL);
    CHECK(props_path(p, "a.n.x") == NULL);
    CHECK(props_path(p, "a.arr.0") == NULL);
    CHECK(props_path(p, "a.arr.0.x") == NULL);
    CHECK(json_is_array(props_path(p, "a.arr")));
    CHECK(props_path(p, "a.b.c.d") == NULL);
    CHECK(props_path(p, "top.x") == NULL);
    CHECK(props_path(p, "zz") == NULL);
    CHECK(props_path(p, "d.e") == NULL); /* dots always separate */
    CHECK_INT(json_integer_value(props_path(p, ".")), 5);
    CHECK(json_is_object(props_path(p, "")));
    CHECK(props_path(NULL, "a") == NULL);
    CHECK(props_path(p, NULL) == NULL);
    json_decref(p);
}

/* Spec 10: dry and explain are optional booleans; null is absent; any other
 * type is invalid_event (a repeat at the top level too). */
static void test_dry_explain(void)
{
    CHECK_INT(dec(ev_with("t", "")), EV_OK);
    CHECK_INT(ev.dry, 0);
    CHECK_INT(ev.explain, 0);
    CHECK_INT(dec(ev_with("t", "\"dry\":true")), EV_OK);
    CHECK_INT(ev.dry, 1);
    CHECK_INT(ev.explain, 0);
    CHECK_INT(dec(ev_with("t", "\"explain\":true")), EV_OK);
    CHECK_INT(ev.dry, 0);
    CHECK_INT(ev.explain, 1);
    CHECK_INT(dec(ev_with("t", "\"dry\":true,\"explain\":true")), EV_OK);
    CHECK_INT(ev.dry, 1);
    CHECK_INT(ev.explain, 1);
    CHECK_INT(dec(ev_with("t", "\"dry\":false,\"explain\":false")), EV_OK);
    CHECK_INT(ev.dry, 0);
    CHECK_INT(ev.explain, 0);
    CHECK_INT(dec(ev_with("t", "\"dry\":null,\"explain\":null")), EV_OK);
    CHECK_INT(ev.dry, 0);
    CHECK_INT(ev.explain, 0);
    /* inside props they are just props */
    CHECK_INT(dec(ev_with("t", "\"props\":{\"dry\":true}")), EV_OK);
    CHECK_INT(ev.dry, 0);

    static const char *const bad[] = {"1", "0", "\"yes\"", "\"true\"", "[]", "{}", "1.0"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char rest[64];
        snprintf(rest, sizeof rest, "\"dry\":%s", bad[i]);
        CHECK_INT(dec(ev_with("t", rest)), EV_INVALID_EVENT);
        CHECK_DETAIL("field 'dry'");
        CHECK_ECHO("e1");
        snprintf(rest, sizeof rest, "\"explain\":%s", bad[i]);
        CHECK_INT(dec(ev_with("t", rest)), EV_INVALID_EVENT);
        CHECK_DETAIL("field 'explain'");
    }
    CHECK_INT(dec(ev_with("t", "\"dry\":true,\"dry\":true")), EV_INVALID_EVENT);
    CHECK_DETAIL("duplicate key");
    /* validity comes first: a dry event with a bad prop is still invalid */
    CHECK_INT(dec(ev_with("order.paid", "\"dry\":true,\"props\":{\"order_id\":\"o\"}")),
              EV_INVALID_EVENT);
    CHECK_DETAIL("props.amount");
    CHECK_INT(ev.dry, 0);
}

/* jansson's tree of s, dumped in key order (NULL when jansson refuses it). */
static char *jansson_dump(const char *s)
{
    json_t *j = json_loadb(s, strlen(s), JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    char *d = j ? json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(j);
    return d;
}

/* levels containers, objects ({"k": ...}) and arrays in turn, an object
 * outermost, 0 innermost; its length. */
static size_t nest(char *out, int levels)
{
    size_t n = 0;
    for (int k = 0; k < levels; k++)
        n += (size_t)sprintf(out + n, "%s", k % 2 ? "[" : "{\"k\":");
    out[n++] = '0';
    for (int k = levels - 1; k >= 0; k--)
        out[n++] = k % 2 ? ']' : '}';
    out[n] = 0;
    return n;
}

/* The fast path takes s and gives jansson's tree: the same values, types
 * (an integer stays one) and key order. */
static void check_plain(const char *s)
{
    json_t *j = event_parse_plain(s, strlen(s));
    CHECK(j != NULL);
    if (!j) {
        fprintf(stderr, "  (not taken: %s)\n", s);
        return;
    }
    char *a = json_dumps(j, JSON_COMPACT), *b = jansson_dump(s);
    CHECK(b != NULL);
    CHECK_STR(a, b ? b : "(refused)");
    json_t *ref = json_loadb(s, strlen(s), 0, NULL);
    CHECK(json_equal(j, ref));
    json_decref(ref);
    free(a);
    free(b);
    json_decref(j);
}

static void test_plain(void)
{
    static const char *const plain[] = {
        "{}",
        " {\t\"a\" :\r1 , \"b\":\n-2}  ",
        "{\"id\":\"e1\",\"type\":\"order.paid\",\"user\":\"u1\",\"ts\":1793491200000,"
        "\"props\":{\"order_id\":\"o1\",\"amount\":12000,\"tags\":[\"a\",1,true,false,null,"
        "{},[]],\"n\":{\"m\":{\"k\":0}}}}",
        "{\"z\":1,\"a\":2,\"m\":3}", /* insertion order, not sorted */
        "{\"\":\"\",\"x\":\"a b/c\"}",
        "{\"big\":999999999999999999,\"neg\":-999999999999999999,\"zero\":0}",
        "{\"a\":[[],[[1]],{\"b\":[{}]}]}",
    };
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++)
        check_plain(plain[i]);

    /* 64 levels are plain, 65 are jansson's (whose error names the depth) */
    char deep[600];
    nest(deep, 64);
    check_plain(deep);

    /* Left to jansson: each line below either is not valid JSON or needs
     * what the fast path does not do; event_decode's answers for them are
     * those of the tests above. */
    static const char *const other[] = {
        "",
        "   ",
        "[]",
        "1",
        "\"s\"",
        "{\"a\":\"\\n\"}",      /* an escape */
        "{\"a\":\"\xc3\xa9\"}", /* UTF-8 */
        "{\"a\":\"\xff\"}",     /* not UTF-8 */
        "{\"a\":\"x\ty\"}",     /* a control byte */
        "{\"a\":1.5}",          /* a real */
        "{\"a\":1e3}",
        "{\"a\":1E3}",
        "{\"a\":01}", /* zero-led */
        "{\"a\":-0}",
        "{\"a\":-}",
        "{\"a\":1234567890123456789}", /* 19 digits */
        "{\"a\":99999999999999999999999}",
        "{\"a\":1x}",
        "{\"a\":truex}",
        "{\"a\":nul}",
        "{\"a\":1,\"a\":2}", /* a duplicate key */
        "{\"a\":{\"b\":1,\"b\":1}}",
        "{\"a\":1,}",
        "{\"a\":1",
        "{\"a\" 1}",
        "{\"a\":[1,]}",
        "{\"a\":[1 2]}",
        "{a:1}",
        "{\"a\":1} x",
        "{\"a\":1}{}",
        "{\"a\":\"unterminated}",
    };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        json_t *j = event_parse_plain(other[i], strlen(other[i]));
        CHECK(j == NULL);
        if (j)
            fprintf(stderr, "  (taken: %s)\n", other[i]);
        json_decref(j);
    }
    char deeper[600];
    size_t n = nest(deeper, 65);
    CHECK(event_parse_plain(deeper, n) == NULL);
    CHECK_INT(dec(deeper), EV_INVALID_JSON);
    CHECK_DETAIL("nesting deeper than 64 levels");
    /* a line cut short is never read past its length */
    const char *full = "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\"}";
    for (size_t k = 0; k < strlen(full); k++)
        CHECK(event_parse_plain(full, k) == NULL);
}

int main(void)
{
    test_valid();
    test_invalid_json();
    test_not_object();
    test_required();
    test_ts();
    test_props_type();
    test_builtin();
    test_duplicates();
    test_numbers();
    test_nul_keys();
    test_depth();
    test_props_path();
    test_dry_explain();
    test_plain();
    event_clear(&ev);
    free(echo);
    /* event_clear on a cleared event is harmless. */
    event_clear(&ev);
    return check_done();
}
