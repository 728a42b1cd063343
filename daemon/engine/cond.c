/* Campaign matching: `when.event` and `when.all` conditions (spec 2, 9). */
#include "engine/cond.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/event.h"

/* A value a condition looks at. */
enum vkind { V_MISSING, V_INT, V_REAL, V_STR, V_BOOL, V_OTHER };

struct val {
    enum vkind k;
    int64_t i;
    double d;
    const char *s;
    size_t len;
    int b;
};

static struct val val_of_json(const json_t *j)
{
    struct val v = {.k = V_MISSING};
    switch (json_typeof(j)) {
    case JSON_INTEGER:
        v.k = V_INT;
        v.i = json_integer_value(j);
        break;
    case JSON_REAL:
        v.k = V_REAL;
        v.d = json_real_value(j);
        break;
    case JSON_STRING:
        v.k = V_STR;
        v.s = json_string_value(j);
        v.len = json_string_length(j);
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        v.k = V_BOOL;
        v.b = json_is_true(j);
        break;
    case JSON_OBJECT:
    case JSON_ARRAY:
        v.k = V_OTHER;
        break;
    case JSON_NULL:
        break;
    }
    return v;
}

static struct val val_json(const json_t *j)
{
    if (!j)
        return (struct val){.k = V_MISSING};
    return val_of_json(j);
}

static struct val val_int(int64_t i)
{
    return (struct val){.k = V_INT, .i = i};
}

static struct val val_str(const char *s)
{
    if (!s)
        return (struct val){.k = V_MISSING};
    return (struct val){.k = V_STR, .s = s, .len = strlen(s)};
}

static struct val resolve(const struct cond *c, const struct cond_input *in)
{
    const mktd_profile *p = in->profile;
    switch (c->field) {
    case F_PROPS:
        return val_json(props_path(in->props, c->arg ? c->arg : ""));
    case F_TYPE:
        return val_str(in->type);
    case F_USER_ID:
        return val_str(in->user);
    case F_USER_EVENTS:
        return val_int(p ? p->events : 0);
    case F_USER_ORDERS:
        return val_int(p ? p->orders : 0);
    case F_USER_SPENT:
        return val_int(p ? p->spent : 0);
    case F_USER_FIRST_SEEN:
        if (!p || p->events <= 0)
            return (struct val){.k = V_MISSING};
        return val_int(p->first_seen);
    case F_USER_LAST_SEEN:
        if (!p || p->events <= 0)
            return (struct val){.k = V_MISSING};
        return val_int(p->last_seen);
    case F_USER_COUNT:
        if (!in->count || !c->arg || !in->user)
            return val_int(0);
        return val_int(in->count(in->count_arg, in->user, c->arg));
    }
    return (struct val){.k = V_MISSING};
}

#define CMP_NONE 2 /* not comparable */

static int sign_i(int64_t a, int64_t b)
{
    return (a > b) - (a < b);
}

/* Compares an int64 with a double exactly. */
static int cmp_int_real(int64_t i, double d)
{
    if (isnan(d))
        return CMP_NONE;
    if (d >= 9223372036854775808.0) /* 2^63 */
        return -1;
    if (d < -9223372036854775808.0)
        return 1;
    double t = trunc(d); /* in [-2^63, 2^63): exact as int64 */
    int64_t ti = (int64_t)t;
    if (i != ti)
        return sign_i(i, ti);
    double frac = d - t;
    return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

/* -1, 0, 1, or CMP_NONE when a and b are not two numbers or two strings. */
static int cmp(const struct val *a, const struct val *b)
{
    if (a->k == V_INT && b->k == V_INT)
        return sign_i(a->i, b->i);
    if (a->k == V_INT && b->k == V_REAL)
        return cmp_int_real(a->i, b->d);
    if (a->k == V_REAL && b->k == V_INT) {
        int r = cmp_int_real(b->i, a->d);
        return r == CMP_NONE ? r : -r;
    }
    if (a->k == V_REAL && b->k == V_REAL) {
        if (isnan(a->d) || isnan(b->d))
            return CMP_NONE;
        return (a->d > b->d) - (a->d < b->d);
    }
    if (a->k == V_STR && b->k == V_STR) {
        size_t n = a->len < b->len ? a->len : b->len;
        int r = n ? memcmp(a->s, b->s, n) : 0;
        if (r)
            return r < 0 ? -1 : 1;
        return (a->len > b->len) - (a->len < b->len);
    }
    return CMP_NONE;
}

static int eq(const struct val *a, const struct val *b)
{
    if (a->k == V_BOOL && b->k == V_BOOL)
        return !a->b == !b->b;
    return cmp(a, b) == 0;
}

/* 1 when some element of the array arr equals v. */
static int in_array(const struct val *v, const json_t *arr)
{
    size_t i;
    json_t *e;
    if (!json_is_array(arr))
        return 0;
    json_array_foreach(arr, i, e)
    {
        struct val w = val_of_json(e);
        if (eq(v, &w))
            return 1;
    }
    return 0;
}

int cond_eval(const struct cond *c, const struct cond_input *in)
{
    struct val v = resolve(c, in);
    if (c->op == OP_EXISTS) {
        int want = !json_is_false(c->value);
        return (v.k != V_MISSING) == want;
    }
    if (v.k == V_MISSING)
        return c->op == OP_NE || c->op == OP_NOT_IN;
    if (c->op == OP_IN)
        return in_array(&v, c->value);
    if (c->op == OP_NOT_IN)
        return !in_array(&v, c->value);

    struct val w = val_json(c->value);
    if (c->op == OP_EQ)
        return eq(&v, &w);
    if (c->op == OP_NE)
        return !eq(&v, &w);
    int r = cmp(&v, &w);
    if (r == CMP_NONE)
        return 0;
    switch (c->op) {
    case OP_GT:
        return r > 0;
    case OP_GTE:
        return r >= 0;
    case OP_LT:
        return r < 0;
    case OP_LTE:
        return r <= 0;
    default:
        return 0;
    }
}

/* The one implementation of `when`: 1 on a match; else 0, with *failed the
 * first condition that failed, or NULL when the event type did. */
static int when_check(const struct campaign_cfg *c, const struct cond_input *in,
                      const struct cond **failed)
{
    *failed = NULL;
    if (!c->has_when)
        return 1;
    if (c->n_events) {
        size_t i;
        for (i = 0; i < c->n_events; i++)
            if (in->type && strcmp(c->events[i], in->type) == 0)
                break;
        if (i == c->n_events)
            return 0;
    }
    for (size_t i = 0; i < c->n_conds; i++)
        if (!cond_eval(&c->conds[i], in)) {
            *failed = &c->conds[i];
            return 0;
        }
    return 1;
}

int when_matches(const struct campaign_cfg *c, const struct cond_input *in)
{
    const struct cond *failed;
    return when_check(c, in, &failed);
}

/* ---- explaining ---- */

#define SHOW_MAX 96 /* the most bytes of a value shown */

/* JSON text of v, cut at SHOW_MAX bytes (on a character boundary, with
 * "..."), into buf. */
static void show_json(const json_t *v, char *buf, size_t len)
{
    char *s = v ? json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    const char *t = s ? s : "?";
    size_t n = strlen(t);
    if (n > SHOW_MAX) {
        n = SHOW_MAX;
        while (n > 0 && ((unsigned char)t[n] & 0xc0) == 0x80)
            n--;
        snprintf(buf, len, "%.*s...", (int)n, t);
    } else {
        snprintf(buf, len, "%s", t);
    }
    free(s);
}

/* The value c looks at, as JSON (a new reference), or NULL when missing. */
static json_t *seen_json(const struct cond *c, const struct cond_input *in)
{
    if (c->field == F_PROPS) {
        json_t *j = props_path(in->props, c->arg ? c->arg : "");
        return j ? json_incref(j) : NULL;
    }
    struct val v = resolve(c, in);
    switch (v.k) {
    case V_INT:
        return json_integer(v.i);
    case V_STR:
        return json_stringn(v.s, v.len);
    default: /* the other fields are integers or strings */
        return NULL;
    }
}

static const char *const op_name[] = {"eq",  "ne", "gt",     "gte",   "lt",
                                      "lte", "in", "not_in", "exists"};

static void field_name(const struct cond *c, char *buf, size_t len)
{
    static const char *const simple[] = {
        [F_TYPE] = "type",
        [F_USER_ID] = "user.id",
        [F_USER_EVENTS] = "user.events",
        [F_USER_ORDERS] = "user.orders",
        [F_USER_SPENT] = "user.spent",
        [F_USER_FIRST_SEEN] = "user.first_seen",
        [F_USER_LAST_SEEN] = "user.last_seen",
    };
    if (c->field == F_PROPS)
        snprintf(buf, len, "props.%s", c->arg ? c->arg : "");
    else if (c->field == F_USER_COUNT)
        snprintf(buf, len, "user.count.%s", c->arg ? c->arg : "");
    else
        snprintf(buf, len, "%s", simple[c->field]);
}

int when_explain(const struct campaign_cfg *c, const struct cond_input *in, char *buf, size_t len)
{
    const struct cond *f;
    if (len)
        buf[0] = 0;
    if (when_check(c, in, &f))
        return 1;
    if (!f) {
        snprintf(buf, len, "event %s not in when.event", in->type ? in->type : "?");
        return 0;
    }
    char field[160], want[SHOW_MAX + 8] = "", seen[SHOW_MAX + 8];
    field_name(f, field, sizeof field);
    if (f->op != OP_EXISTS) {
        want[0] = ' ';
        show_json(f->value, want + 1, sizeof want - 1);
    } else if (json_is_false(f->value)) {
        snprintf(want, sizeof want, " false");
    }
    json_t *v = seen_json(f, in);
    int have = v != NULL;
    if (have)
        show_json(v, seen, sizeof seen);
    json_decref(v);
    snprintf(buf, len, "%s %s%s: %s%s", field, op_name[f->op], want, have ? "is " : "",
             have ? seen : "missing");
    return 0;
}
