/* Unit tests for daemon/cond.c: fields and ops of `when` (spec 2, 9). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "engine/cond.h"

static json_t *props;
static mktd_profile profile = {
    .events = 3, .orders = 2, .spent = 15000, .first_seen = 1000, .last_seen = 5000};
static struct cond_input in;

static int64_t count_cb(void *arg, const char *user, const char *type)
{
    CHECK(arg == &in);
    CHECK_STR(user, "u1");
    if (strcmp(type, "order.paid") == 0)
        return 2;
    return 0;
}

static void reset_input(void)
{
    in = (struct cond_input){.type = "order.paid",
                             .user = "u1",
                             .props = props,
                             .profile = &profile,
                             .count = count_cb,
                             .count_arg = &in};
}

/* Evaluates `field op value` where value is JSON text (NULL: no value). */
static int ev_cond(const char *field, enum cond_op op, const char *value)
{
    struct cond c = {.op = op};
    if (strncmp(field, "props.", 6) == 0) {
        c.field = F_PROPS;
        c.arg = (char *)field + 6;
    } else if (strcmp(field, "type") == 0) {
        c.field = F_TYPE;
    } else if (strcmp(field, "user.id") == 0) {
        c.field = F_USER_ID;
    } else if (strcmp(field, "user.events") == 0) {
        c.field = F_USER_EVENTS;
    } else if (strcmp(field, "user.orders") == 0) {
        c.field = F_USER_ORDERS;
    } else if (strcmp(field, "user.spent") == 0) {
        c.field = F_USER_SPENT;
    } else if (strcmp(field, "user.first_seen") == 0) {
        c.field = F_USER_FIRST_SEEN;
    } else if (strcmp(field, "user.last_seen") == 0) {
        c.field = F_USER_LAST_SEEN;
    } else if (strncmp(field, "user.count.", 11) == 0) {
        c.field = F_USER_COUNT;
        c.arg = (char *)field + 11;
    } else {
        fprintf(stderr, "bad field in test: %s\n", field);
        abort();
    }
    if (value) {
        json_error_t err;
        c.value = json_loads(value, JSON_DECODE_ANY, &err);
        if (!c.value) {
            fprintf(stderr, "bad value in test: %s: %s\n", value, err.text);
            abort();
        }
    }
    int r = cond_eval(&c, &in);
    json_decref(c.value);
    return r;
}

#define T(field, op, value, want) CHECK_INT(ev_cond(field, op, value), want)

static void setup_props(void)
{
    props = json_object();
    json_object_set_new(props, "i", json_integer(5));
    json_object_set_new(props, "d", json_real(5.5));
    json_object_set_new(props, "one", json_integer(1));
    json_object_set_new(props, "oned", json_real(1.0));
    json_object_set_new(props, "s", json_string("abc"));
    json_object_set_new(props, "empty", json_string(""));
    json_object_set_new(props, "nul1", json_stringn("a\0b", 3));
    json_object_set_new(props, "nul2", json_stringn("a\0c", 3));
    json_object_set_new(props, "utf", json_string("\xc3\xa9"));
    json_object_set_new(props, "t", json_true());
    json_object_set_new(props, "f", json_false());
    json_object_set_new(props, "null", json_null());
    json_object_set_new(props, "arr", json_pack("[i,i]", 1, 2));
    json_object_set_new(props, "obj", json_pack("{s:i}", "k", 1));
    json_object_set_new(props, "big", json_integer(9007199254740993LL));
    json_object_set_new(props, "big0", json_integer(9007199254740992LL));
    json_object_set_new(props, "max", json_integer(INT64_MAX));
    json_object_set_new(props, "min", json_integer(INT64_MIN));
    json_object_set_new(props, "zero", json_integer(0));
    json_object_set_new(props, "negzero", json_real(-0.0));
    json_object_set_new(props, "a", json_pack("{s:{s:s}}", "b", "c", "x"));
    json_object_set_new(props, "huge", json_real(1e300));
}

static void test_missing(void)
{
    static const char *missing[] = {"props.nope",    "props.null",  "props.a.nope",
                                    "props.a.b.c.d", "props.arr.0", "props.s.x"};
    for (size_t i = 0; i < sizeof(missing) / sizeof(missing[0]); i++) {
        const char *f = missing[i];
        T(f, OP_EQ, "1", 0);
        T(f, OP_EQ, "null", 0);
        T(f, OP_NE, "1", 1);
        T(f, OP_NE, "null", 1);
        T(f, OP_GT, "1", 0);
        T(f, OP_GTE, "1", 0);
        T(f, OP_LT, "1", 0);
        T(f, OP_LTE, "1", 0);
        T(f, OP_GT, "\"a\"", 0);
        T(f, OP_IN, "[1, null, \"a\"]", 0);
        T(f, OP_IN, "[]", 0);
        T(f, OP_NOT_IN, "[1, null]", 1);
        T(f, OP_NOT_IN, "[]", 1);
        T(f, OP_EXISTS, "true", 0);
        T(f, OP_EXISTS, NULL, 0);
        T(f, OP_EXISTS, "false", 1);
    }
    /* Present fields of every type exist. */
    static const char *present[] = {"props.i", "props.d",   "props.s",   "props.empty",
                                    "props.t", "props.f",   "props.arr", "props.obj",
                                    "props.a", "props.a.b", "props.zero"};
    for (size_t i = 0; i < sizeof(present) / sizeof(present[0]); i++) {
        T(present[i], OP_EXISTS, "true", 1);
        T(present[i], OP_EXISTS, NULL, 1);
        T(present[i], OP_EXISTS, "false", 0);
    }
    /* No props at all. */
    json_t *saved = in.props;
    in.props = NULL;
    T("props.i", OP_EXISTS, NULL, 0);
    T("props.i", OP_EQ, "5", 0);
    T("props.i", OP_NE, "5", 1);
    T("props.i", OP_NOT_IN, "[5]", 1);
    in.props = saved;
}

static void test_numbers(void)
{
    /* int vs int */
    T("props.i", OP_EQ, "5", 1);
    T("props.i", OP_EQ, "4", 0);
    T("props.i", OP_NE, "5", 0);
    T("props.i", OP_NE, "6", 1);
    T("props.i", OP_GT, "4", 1);
    T("props.i", OP_GT, "5", 0);
    T("props.i", OP_GTE, "5", 1);
    T("props.i", OP_GTE, "6", 0);
    T("props.i", OP_LT, "6", 1);
    T("props.i", OP_LT, "5", 0);
    T("props.i", OP_LTE, "5", 1);
    T("props.i", OP_LTE, "4", 0);
    T("props.i", OP_GT, "-5", 1);
    /* int vs double, both ways */
    T("props.one", OP_EQ, "1.0", 1);
    T("props.oned", OP_EQ, "1", 1);
    T("props.one", OP_NE, "1.0", 0);
    T("props.oned", OP_GTE, "1", 1);
    T("props.oned", OP_GT, "1", 0);
    T("props.i", OP_LT, "5.5", 1);
    T("props.i", OP_GT, "4.5", 1);
    T("props.d", OP_GT, "5", 1);
    T("props.d", OP_LT, "6", 1);
    T("props.d", OP_EQ, "5.5", 1);
    T("props.d", OP_EQ, "5", 0);
    T("props.d", OP_NE, "5", 1);
    T("props.d", OP_GTE, "5.5", 1);
    T("props.d", OP_LTE, "5.4", 0);
    T("props.zero", OP_EQ, "-0.0", 1);
    T("props.negzero", OP_EQ, "0", 1);
    T("props.negzero", OP_EQ, "0.0", 1);
    T("props.negzero", OP_LT, "0", 0);
    T("props.i", OP_LT, "1e300", 1);
    T("props.huge", OP_GT, "9223372036854775807", 1);
    T("props.huge", OP_EQ, "1e300", 1);

    /* Exactness beyond 2^53: 9007199254740993 is not 9007199254740992.0. */
    T("props.big", OP_EQ, "9007199254740992.0", 0);
    T("props.big", OP_NE, "9007199254740992.0", 1);
    T("props.big", OP_GT, "9007199254740992.0", 1);
    T("props.big", OP_GTE, "9007199254740992.0", 1);
    T("props.big", OP_LT, "9007199254740992.0", 0);
    T("props.big", OP_EQ, "9007199254740993", 1);
    T("props.big", OP_GT, "9007199254740992", 1);
    T("props.big", OP_IN, "[9007199254740992.0]", 0);
    T("props.big", OP_NOT_IN, "[9007199254740992.0]", 1);
    T("props.big", OP_IN, "[9007199254740993]", 1);
    T("props.big0", OP_EQ, "9007199254740992.0", 1);
    T("props.big0", OP_EQ, "9007199254740993", 0);
    T("props.big0", OP_LT, "9007199254740993", 1);
    /* 9007199254740993.0 reads as 9007199254740992.0. */
    T("props.big0", OP_EQ, "9007199254740993.0", 1);
    /* The ends of int64 against doubles. */
    T("props.max", OP_LT, "9223372036854775808.0", 1);
    T("props.max", OP_EQ, "9223372036854775808.0", 0);
    T("props.max", OP_EQ, "9223372036854775807", 1);
    T("props.max", OP_GT, "9223372036854774784.0", 1); /* largest double below 2^63 */
    T("props.max", OP_LT, "1e19", 1);
    T("props.min", OP_EQ, "-9223372036854775808.0", 1);
    T("props.min", OP_GT, "-9223372036854777856.0", 1); /* next double below -2^63 */
    T("props.min", OP_GT, "-1e19", 1);
    T("props.min", OP_LT, "-9223372036854775807", 1);
    T("props.min", OP_LT, "0.5", 1);
    /* Negative fractions. */
    json_object_set_new(props, "neg", json_integer(-2));
    T("props.neg", OP_GT, "-2.5", 1);
    T("props.neg", OP_LT, "-1.5", 1);
    T("props.neg", OP_EQ, "-2.0", 1);
    T("props.neg", OP_LT, "-2.0", 0);
    json_object_set_new(props, "negd", json_real(-2.5));
    T("props.negd", OP_LT, "-2", 1);
    T("props.negd", OP_GT, "-3", 1);
}

static void test_strings(void)
{
    T("props.s", OP_EQ, "\"abc\"", 1);
    T("props.s", OP_EQ, "\"ABC\"", 0);
    T("props.s", OP_NE, "\"abc\"", 0);
    T("props.s", OP_NE, "\"abd\"", 1);
    T("props.s", OP_GT, "\"abb\"", 1);
    T("props.s", OP_GT, "\"ab\"", 1); /* a prefix is smaller */
    T("props.s", OP_LT, "\"abcd\"", 1);
    T("props.s", OP_GT, "\"ABC\"", 1); /* bytes: 'a' > 'A' */
    T("props.s", OP_GTE, "\"abc\"", 1);
    T("props.s", OP_LTE, "\"abc\"", 1);
    T("props.s", OP_LT, "\"abc\"", 0);
    T("props.s", OP_GT, "\"b\"", 0);
    T("props.empty", OP_EQ, "\"\"", 1);
    T("props.empty", OP_LT, "\"a\"", 1);
    T("props.empty", OP_GTE, "\"\"", 1);
    T("props.utf", OP_GT, "\"z\"", 1); /* 0xc3 > 'z' */
    T("props.utf", OP_EQ, "\"\\u00e9\"", 1);
    T("props.utf", OP_EQ, "\"e\\u0301\"", 0); /* no normalization */
    /* Embedded NUL: compared by length-aware bytes. */
    T("props.nul1", OP_EQ, "\"a\"", 0);
    T("props.nul1", OP_GT, "\"a\"", 1);
    T("props.nul1", OP_LT, "\"a\\u0001\"", 1);
    T("props.nul1", OP_LT, "\"b\"", 1);
    {
        struct cond c = {.field = F_PROPS, .arg = "nul1", .op = OP_LT};
        c.value = json_stringn("a\0c", 3);
        CHECK_INT(cond_eval(&c, &in), 1);
        c.op = OP_EQ;
        CHECK_INT(cond_eval(&c, &in), 0);
        json_decref(c.value);
        c.value = json_stringn("a\0b", 3);
        CHECK_INT(cond_eval(&c, &in), 1);
        json_decref(c.value);
    }
    /* Strings against numbers: eq false, ne true, order false. */
    json_object_set_new(props, "s5", json_string("5"));
    T("props.s5", OP_EQ, "5", 0);
    T("props.s5", OP_NE, "5", 1);
    T("props.s5", OP_GT, "4", 0);
    T("props.s5", OP_LT, "6", 0);
    T("props.s5", OP_GTE, "5", 0);
    T("props.s5", OP_LTE, "5", 0);
    T("props.i", OP_EQ, "\"5\"", 0);
    T("props.i", OP_NE, "\"5\"", 1);
    T("props.i", OP_GT, "\"4\"", 0);
    T("props.i", OP_LTE, "\"9\"", 0);
}

static void test_bools_null_containers(void)
{
    T("props.t", OP_EQ, "true", 1);
    T("props.t", OP_EQ, "false", 0);
    T("props.f", OP_EQ, "false", 1);
    T("props.t", OP_NE, "false", 1);
    T("props.t", OP_NE, "true", 0);
    T("props.t", OP_GT, "false", 0);
    T("props.t", OP_GTE, "true", 0);
    T("props.t", OP_LTE, "true", 0);
    T("props.t", OP_EQ, "1", 0);
    T("props.one", OP_EQ, "true", 0);
    T("props.t", OP_EQ, "\"true\"", 0);
    T("props.t", OP_IN, "[false, true]", 1);
    T("props.t", OP_IN, "[1, \"true\"]", 0);
    T("props.f", OP_NOT_IN, "[true]", 1);
    /* A present value against null: eq false, ne true. */
    T("props.i", OP_EQ, "null", 0);
    T("props.i", OP_NE, "null", 1);
    T("props.i", OP_GT, "null", 0);
    /* Arrays and objects: eq/in false, ne/not_in true, order false. */
    T("props.arr", OP_EQ, "[1,2]", 0);
    T("props.arr", OP_NE, "[1,2]", 1);
    T("props.arr", OP_GT, "[1]", 0);
    T("props.arr", OP_LT, "1", 0);
    T("props.arr", OP_IN, "[[1,2]]", 0);
    T("props.arr", OP_NOT_IN, "[[1,2]]", 1);
    T("props.arr", OP_IN, "[1,2]", 0);
    T("props.obj", OP_EQ, "{\"k\":1}", 0);
    T("props.obj", OP_NE, "{\"k\":1}", 1);
    T("props.obj", OP_IN, "[{\"k\":1}]", 0);
    T("props.obj", OP_GTE, "{\"k\":1}", 0);
    /* A scalar field against an array or object value. */
    T("props.i", OP_EQ, "[5]", 0);
    T("props.i", OP_NE, "[5]", 1);
    T("props.i", OP_GT, "[4]", 0);
    T("props.i", OP_EQ, "{}", 0);
    /* Nested paths */
    T("props.a.b.c", OP_EQ, "\"x\"", 1);
    T("props.a.b", OP_EQ, "\"x\"", 0);
}

static void test_in(void)
{
    T("props.i", OP_IN, "[1, 5, 9]", 1);
    T("props.i", OP_IN, "[1, 9]", 0);
    T("props.i", OP_IN, "[5.0]", 1);
    T("props.i", OP_IN, "[\"5\"]", 0);
    T("props.i", OP_IN, "[]", 0);
    T("props.i", OP_IN, "[null, 5]", 1);
    T("props.i", OP_NOT_IN, "[1, 5, 9]", 0);
    T("props.i", OP_NOT_IN, "[1, 9]", 1);
    T("props.i", OP_NOT_IN, "[5.0]", 0);
    T("props.i", OP_NOT_IN, "[]", 1);
    T("props.d", OP_IN, "[5, 5.5]", 1);
    T("props.s", OP_IN, "[\"x\", \"abc\"]", 1);
    T("props.s", OP_IN, "[\"ABC\", \"ab\"]", 0);
    T("props.s", OP_NOT_IN, "[\"ABC\", \"ab\"]", 1);
    T("type", OP_IN, "[\"order.paid\", \"order.refunded\"]", 1);
    T("type", OP_NOT_IN, "[\"order.paid\"]", 0);
    T("user.id", OP_IN, "[\"u1\"]", 1);
    T("user.orders", OP_IN, "[1, 2]", 1);
    /* A non-array value (not produced by config): in false, not_in true. */
    T("props.i", OP_IN, "5", 0);
    T("props.i", OP_NOT_IN, "5", 1);
}

static void test_fields(void)
{
    T("type", OP_EQ, "\"order.paid\"", 1);
    T("type", OP_NE, "\"order.paid\"", 0);
    T("type", OP_GT, "\"order\"", 1);
    T("type", OP_EXISTS, NULL, 1);
    T("user.id", OP_EQ, "\"u1\"", 1);
    T("user.id", OP_EQ, "\"u2\"", 0);
    T("user.events", OP_EQ, "3", 1);
    T("user.orders", OP_EQ, "2", 1);
    T("user.orders", OP_EQ, "2.0", 1);
    T("user.spent", OP_GTE, "10000", 1);
    T("user.spent", OP_LT, "15000", 0);
    T("user.first_seen", OP_EQ, "1000", 1);
    T("user.last_seen", OP_EQ, "5000", 1);
    T("user.first_seen", OP_EXISTS, NULL, 1);
    T("user.count.order.paid", OP_EQ, "2", 1);
    T("user.count.user.signup", OP_EQ, "0", 1);
    T("user.count.user.signup", OP_EXISTS, NULL, 1);
    T("user.orders", OP_EQ, "\"2\"", 0);

    /* A user never seen: counts 0, no first_seen/last_seen. */
    in.profile = NULL;
    T("user.events", OP_EQ, "0", 1);
    T("user.orders", OP_EQ, "0", 1);
    T("user.spent", OP_EQ, "0", 1);
    T("user.events", OP_EXISTS, NULL, 1);
    T("user.first_seen", OP_EXISTS, NULL, 0);
    T("user.first_seen", OP_EXISTS, "false", 1);
    T("user.last_seen", OP_EXISTS, NULL, 0);
    T("user.first_seen", OP_LT, "99999", 0);
    T("user.first_seen", OP_GT, "-1", 0);
    T("user.last_seen", OP_NE, "5000", 1);
    T("user.last_seen", OP_NOT_IN, "[5000]", 1);
    /* A profile with no events yet has no first_seen either. */
    mktd_profile empty = {0};
    in.profile = &empty;
    T("user.first_seen", OP_EXISTS, NULL, 0);
    T("user.events", OP_EQ, "0", 1);
    in.profile = &profile;

    /* No count callback: 0. */
    in.count = NULL;
    T("user.count.order.paid", OP_EQ, "0", 1);
    reset_input();
}

static void test_when(void)
{
    struct campaign_cfg c = {0};
    /* Without `when`, everything matches. */
    CHECK_INT(when_matches(&c, &in), 1);

    char *types[] = {"order.paid", "order.refunded"};
    struct cond conds[2] = {
        {.field = F_PROPS, .arg = "i", .op = OP_GTE, .value = json_integer(5)},
        {.field = F_USER_ORDERS, .op = OP_EQ, .value = json_integer(2)},
    };
    c.has_when = 1;
    c.events = types;
    c.n_events = 2;
    CHECK_INT(when_matches(&c, &in), 1);
    in.type = "order.refunded";
    CHECK_INT(when_matches(&c, &in), 1);
    in.type = "user.signup";
    CHECK_INT(when_matches(&c, &in), 0);
    in.type = "order";
    CHECK_INT(when_matches(&c, &in), 0);
    in.type = "order.paid";

    c.conds = conds;
    c.n_conds = 2;
    CHECK_INT(when_matches(&c, &in), 1);
    conds[1].op = OP_NE;
    CHECK_INT(when_matches(&c, &in), 0);
    conds[1].op = OP_EQ;
    conds[0].arg = "nope";
    CHECK_INT(when_matches(&c, &in), 0);
    conds[0].op = OP_NE;
    CHECK_INT(when_matches(&c, &in), 1);
    in.type = "x";
    CHECK_INT(when_matches(&c, &in), 0);
    in.type = "order.paid";
    json_decref(conds[0].value);
    json_decref(conds[1].value);
}

/* when_explain: the same verdict as when_matches, and the first failure in
 * words (spec 10's not_matched details). */
static void test_explain(void)
{
    char buf[256];
    struct campaign_cfg c = {0};
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 1);
    CHECK_STR(buf, "");

    char *types[] = {"order.refunded", "user.signup"};
    struct cond conds[4] = {
        {.field = F_USER_ORDERS, .op = OP_EQ, .value = json_integer(2)},
        {.field = F_PROPS, .arg = "i", .op = OP_GTE, .value = json_integer(5)},
        {.field = F_PROPS, .arg = "s", .op = OP_IN, .value = json_pack("[s,s]", "abc", "x")},
        {.field = F_USER_COUNT, .arg = "order.paid", .op = OP_LT, .value = json_integer(9)},
    };
    c.has_when = 1;
    c.events = types;
    c.n_events = 2;
    c.conds = conds;
    c.n_conds = 4;
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 0);
    CHECK_STR(buf, "event order.paid not in when.event");
    types[0] = "order.paid";
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 1);
    CHECK_STR(buf, "");

    json_decref(conds[0].value);
    conds[0].value = json_integer(1);
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 0);
    CHECK_STR(buf, "user.orders eq 1: is 2");
    CHECK_INT(when_matches(&c, &in), 0);
    conds[0].op = OP_NE;
    conds[1].arg = "nope";
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 0);
    CHECK_STR(buf, "props.nope gte 5: missing");
    conds[1].arg = "null"; /* null counts as missing */
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 0);
    CHECK_STR(buf, "props.null gte 5: missing");
    conds[1].arg = "s"; /* a string is not comparable with a number */
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 0);
    CHECK_STR(buf, "props.s gte 5: is \"abc\"");
    conds[1].arg = "obj";
    conds[1].op = OP_EXISTS;
    json_decref(conds[1].value);
    conds[1].value = json_false();
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 0);
    CHECK_STR(buf, "props.obj exists false: is {\"k\":1}");
    conds[1].arg = "nope";
    json_decref(conds[1].value);
    conds[1].value = json_true();
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 0);
    CHECK_STR(buf, "props.nope exists: missing");
    conds[1].arg = "i";
    conds[2].arg = "utf";
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 0);
    CHECK_STR(buf, "props.utf in [\"abc\",\"x\"]: is \"\xc3\xa9\"");
    conds[2].arg = "s";
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 1);
    json_decref(conds[3].value);
    conds[3].value = json_integer(2);
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 0);
    CHECK_STR(buf, "user.count.order.paid lt 2: is 2");
    CHECK_INT(when_matches(&c, &in), 0);
    json_decref(conds[3].value);
    conds[3].value = json_integer(9);
    in.profile = NULL; /* a user never seen */
    conds[0].field = F_USER_FIRST_SEEN;
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 1);
    conds[0].op = OP_GT;
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 0);
    CHECK_STR(buf, "user.first_seen gt 1: missing");
    reset_input();
    /* long values are cut on a character boundary */
    json_object_set_new(props, "long",
                        json_string("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
                                    "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"));
    conds[0] = (struct cond){.field = F_PROPS, .arg = "long", .op = OP_EQ, .value = conds[0].value};
    CHECK_INT(when_explain(&c, &in, buf, sizeof buf), 0);
    CHECK(strstr(buf, "...") != NULL);
    json_t *j = json_string(buf); /* still UTF-8 */
    CHECK(j != NULL);
    json_decref(j);
    json_object_del(props, "long");
    for (size_t i = 0; i < 4; i++)
        json_decref(conds[i].value);
}

int main(void)
{
    setup_props();
    reset_input();
    test_missing();
    test_numbers();
    test_strings();
    test_bools_null_containers();
    test_in();
    test_fields();
    test_when();
    test_explain();
    json_decref(props);
    return check_done();
}
