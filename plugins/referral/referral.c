/*
 * referral — bind referees to referrers on `user.signup`, pay commission up
 * the referral chain on `order.paid`, a one-off reward on the referee's
 * first qualifying order, and claw commission back on `order.refunded`
 * (spec sections 3 and 9, "Referral").
 *
 * What the campaign keeps, all through the host:
 *   state     per user "ref" = "<binding ts> <referrer>" (the referrer last:
 *             it may hold spaces)
 *             campaign-wide "order:<order_id>" = an order record, see
 *             order_encode(): buyer, paid amount, refunded so far, and each
 *             commission (level, beneficiary, amount, clawed back so far)
 *             per referrer "kid:<referee>" = "" for each referee bound to it,
 *             so that forgetting a referrer finds its referees' bindings
 *             campaign-wide "kids" = "1" once every binding has its "kid:"
 *             key (on_load adds them to bindings made before they existed)
 *   counters  per referrer "bound:<day>" (bindings accepted on that local
 *             day), per referee "qualified" (qualifying orders)
 *
 * on_forget (spec 14): the forgotten user's referees are bound to its
 * pseudonym, its own referrer forgets it as a referee, and order records
 * name the pseudonym as buyer or beneficiary (every order record is read:
 * forget is rare).
 *
 * Only input events of an active campaign are looked at; internal events
 * (actions of other campaigns) are ignored.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/plugin.h>

#define DAY_MS 86400000LL
#define MAX_LEVELS 3
#define RATE_MAX 10000
/* The most links walked up a chain. A binding whose referrer's chain is
 * longer than this is refused as a cycle, so no accepted chain exceeds it. */
#define MAX_CHAIN 10000

static const mktd_host *host;

struct referral {
    int levels;               /* 1..MAX_LEVELS */
    int64_t rate[MAX_LEVELS]; /* basis points per level */
    int has_reward;           /* reward configured */
    int64_t reward_amount;    /* >= 0 */
    int64_t referrer_share;   /* percent, 0..100 */
    int64_t min_order;        /* >= 0 */
    int64_t window;           /* ms */
    int64_t daily_cap;        /* >= 1, or -1: none */
    int64_t utc_offset;       /* ms */
    int clawback;             /* bool */
};

/* A user's binding. */
struct binding {
    int64_t ts;
    const char *referrer; /* host-owned until the callback returns */
};

/* One commission an order earned. */
struct commission {
    int64_t level;
    int64_t amount;
    int64_t clawed;
    const char *beneficiary; /* points into the record's buffer */
};

/* What is kept for one order seen paid. */
struct order {
    char *buf; /* malloc'd copy of the state value the strings point into */
    const char *buyer;
    int64_t paid;
    int64_t refunded;
    int n;
    struct commission c[MAX_LEVELS];
};

static int64_t sat_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

/* floor(a * b / d) for a, b >= 0 and d > 0, without overflow. The result
 * is at most a whenever b <= d. */
static int64_t mul_div(int64_t a, int64_t b, int64_t d)
{
    __int128 p = (__int128)a * (__int128)b / d;

    return p > INT64_MAX ? INT64_MAX : (int64_t)p;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;

    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

/* A malloc'd "<prefix><s>", or NULL. */
static char *concat(const char *prefix, const char *s)
{
    size_t a = strlen(prefix), b = strlen(s);
    char *r = malloc(a + b + 1);

    if (!r)
        return NULL;
    memcpy(r, prefix, a);
    memcpy(r + a, s, b + 1);
    return r;
}

/* ---- init ---- */

/* 1 for a null scalar ("~", "null", or nothing at all). */
static int is_null(mktd_ctx *ctx, const mktd_node *n)
{
    char *json = NULL;
    int null;

    if (!n || host->node_kind(n) != MKTD_NODE_SCALAR)
        return 0;
    if (host->node_json(ctx, n, &json) < 0 || !json)
        return 0;
    null = strcmp(json, "null") == 0;
    free(json);
    return null;
}

/* The value of key in map, or NULL when absent or null (as the host's
 * get_* accessors read it). */
static const mktd_node *param(mktd_ctx *ctx, const mktd_node *map, const char *key)
{
    const mktd_node *n = host->node_get(map, key);

    return is_null(ctx, n) ? NULL : n;
}

/* "+hh:mm", "-hh:mm" or "Z" -> ms; 0 or -1. */
static int parse_utc_offset(const char *s, int64_t *out)
{
    int sign, hh, mm;

    if (strcmp(s, "Z") == 0 || strcmp(s, "z") == 0) {
        *out = 0;
        return 0;
    }
    if (strlen(s) != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':')
        return -1;
    for (int i = 1; i < 6; i++)
        if (i != 3 && (s[i] < '0' || s[i] > '9'))
            return -1;
    sign = s[0] == '-' ? -1 : 1;
    hh = (s[1] - '0') * 10 + (s[2] - '0');
    mm = (s[4] - '0') * 10 + (s[5] - '0');
    if (hh > 23 || mm > 59)
        return -1;
    *out = sign * ((int64_t)hh * 3600000 + (int64_t)mm * 60000);
    return 0;
}

static int init_commission(mktd_ctx *ctx, const mktd_node *params, struct referral *r)
{
    const mktd_node *n = param(ctx, params, "commission");
    size_t len;
    int rc = 0;

    if (!n)
        return host->config_error(ctx, params, "missing required key 'commission'");
    if (host->node_kind(n) != MKTD_NODE_SEQ)
        return host->config_error(ctx, n, "commission: expected a list of 1 to %d integers",
                                  MAX_LEVELS);
    len = host->node_len(n);
    if (len < 1 || len > MAX_LEVELS)
        return host->config_error(ctx, n, "commission: expected 1 to %d levels, got %zu",
                                  MAX_LEVELS, len);
    r->levels = (int)len;
    for (size_t i = 0; i < len; i++) {
        const mktd_node *item = host->node_at(n, i);
        int64_t v;

        if (host->node_int(ctx, item, &v) < 0) {
            rc = -EINVAL;
            continue;
        }
        if (v < 0 || v > RATE_MAX) {
            rc = host->config_error(ctx, item,
                                    "commission: level %zu rate %" PRId64
                                    " is out of range 0..%d (basis points)",
                                    i + 1, v, RATE_MAX);
            continue;
        }
        r->rate[i] = v;
    }
    return rc;
}

static int init_reward(mktd_ctx *ctx, const mktd_node *params, struct referral *r)
{
    static const char *const allowed[] = {"amount", "referrer_share", NULL};
    const mktd_node *n = param(ctx, params, "reward");
    int rc = 0;

    if (!n)
        return 0;
    if (host->node_kind(n) != MKTD_NODE_MAP)
        return host->config_error(ctx, n, "reward: expected a map {amount, referrer_share}");
    if (host->check_keys(ctx, n, allowed) != 0)
        rc = -EINVAL;
    if (host->get_int(ctx, n, "amount", 1, 0, 0, INT64_MAX, &r->reward_amount) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, n, "referrer_share", 1, 0, 0, 100, &r->referrer_share) < 0)
        rc = -EINVAL;
    r->has_reward = 1;
    return rc;
}

static int referral_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    static const char *const allowed[] = {"commission", "reward",     "min_order", "window",
                                          "daily_cap",  "utc_offset", "clawback",  NULL};
    struct referral r;
    struct referral *p;
    const char *s;
    int rc = 0;

    memset(&r, 0, sizeof r);
    r.daily_cap = -1;
    r.clawback = 1;
    if (!params || is_null(ctx, params))
        return host->config_error(ctx, NULL, "referral needs params with 'commission'");
    if (host->node_kind(params) != MKTD_NODE_MAP)
        return host->config_error(ctx, params, "params: expected a map");
    if (host->check_keys(ctx, params, allowed) != 0)
        rc = -EINVAL;
    if (init_commission(ctx, params, &r) < 0)
        rc = -EINVAL;
    if (init_reward(ctx, params, &r) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, params, "min_order", 0, 0, 0, INT64_MAX, &r.min_order) < 0)
        rc = -EINVAL;
    if (host->get_duration(ctx, params, "window", 0, 365 * DAY_MS, 0, INT64_MAX, &r.window) < 0)
        rc = -EINVAL;
    /* No cap: -1 (a default is not range-checked). */
    if (host->get_int(ctx, params, "daily_cap", 0, -1, 1, INT64_MAX, &r.daily_cap) < 0)
        rc = -EINVAL;
    if (host->get_str(ctx, params, "utc_offset", 0, "+00:00", &s) < 0) {
        rc = -EINVAL;
    } else if (parse_utc_offset(s, &r.utc_offset) < 0) {
        const mktd_node *n = host->node_get(params, "utc_offset");

        rc = host->config_error(ctx, n ? n : params,
                                "utc_offset: expected \"+hh:mm\", \"-hh:mm\" or \"Z\", got \"%s\"",
                                s);
    }
    if (host->get_bool(ctx, params, "clawback", 0, 1, &r.clawback) < 0)
        rc = -EINVAL;
    if (rc < 0)
        return -EINVAL;
    p = malloc(sizeof *p);
    if (!p)
        return -ENOMEM;
    *p = r;
    *data = p;
    return 0;
}

static void referral_destroy(void *data)
{
    free(data);
}

/* ---- encoding ---- */

/* Reads an int64 in decimal at *p (before end); advances *p. 0 or -1. */
static int read_i64(const char **p, const char *end, int64_t *out)
{
    const char *s = *p;
    int neg = 0;
    uint64_t v = 0, lim;

    if (s < end && *s == '-') {
        neg = 1;
        s++;
    }
    if (s >= end || *s < '0' || *s > '9')
        return -1;
    lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    while (s < end && *s >= '0' && *s <= '9') {
        unsigned d = (unsigned)(*s - '0');

        if (v > (lim - d) / 10)
            return -1;
        v = v * 10 + d;
        s++;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    *p = s;
    return 0;
}

static int expect(const char **p, const char *end, char c)
{
    if (*p >= end || **p != c)
        return -1;
    (*p)++;
    return 0;
}

/* A growing string. */
struct buf {
    char *s;
    size_t len, cap;
    int oom;
};

static void buf_add(struct buf *b, const void *p, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 128;
        char *s;

        while (cap < b->len + n + 1)
            cap *= 2;
        s = realloc(b->s, cap);
        if (!s) {
            b->oom = 1;
            return;
        }
        b->s = s;
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void buf_i64(struct buf *b, char sep, int64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%c%" PRId64, sep, v);

    buf_add(b, tmp, (size_t)n);
}

/* A string as "<sep><len>:<bytes>". */
static void buf_lstr(struct buf *b, char sep, const char *s)
{
    size_t len = strlen(s);
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%c%zu:", sep, len);

    buf_add(b, tmp, (size_t)n);
    buf_add(b, s, len);
}

/* Reads "<len>:<bytes>" in the writable buffer and NUL-terminates the
 * bytes in place: over the ';' that must follow, or, for the last field,
 * at the buffer's end (which holds a NUL). */
static int read_lstr(char **p, char *end, int last, const char **out)
{
    const char *q = *p;
    int64_t len;

    if (read_i64(&q, end, &len) < 0 || len < 1 || expect(&q, end, ':') < 0 || len > end - q)
        return -1;
    *out = q;
    *p = (char *)q + len;
    if (last)
        return *p == end ? 0 : -1;
    if (*p >= end || **p != ';')
        return -1;
    **p = '\0';
    (*p)++;
    return 0;
}

/*
 * An order record:
 *   "o;<paid>;<refunded>;<n>;<len>:<buyer>" then per commission
 *   ";<level>;<amount>;<clawed>;<len>:<beneficiary>"
 */
static char *order_encode(const struct order *o, size_t *len)
{
    struct buf b = {0};

    buf_add(&b, "o", 1);
    buf_i64(&b, ';', o->paid);
    buf_i64(&b, ';', o->refunded);
    buf_i64(&b, ';', o->n);
    buf_lstr(&b, ';', o->buyer);
    for (int i = 0; i < o->n; i++) {
        buf_i64(&b, ';', o->c[i].level);
        buf_i64(&b, ';', o->c[i].amount);
        buf_i64(&b, ';', o->c[i].clawed);
        buf_lstr(&b, ';', o->c[i].beneficiary);
    }
    if (b.oom) {
        free(b.s);
        return NULL;
    }
    *len = b.len;
    return b.s;
}

/* 0, or -1 for a value that is not a well-formed record. */
static int order_decode(const char *val, size_t len, struct order *o)
{
    char *p, *end;
    const char *q;
    int64_t n;

    memset(o, 0, sizeof *o);
    o->buf = malloc(len + 1);
    if (!o->buf)
        return -1;
    memcpy(o->buf, val, len);
    o->buf[len] = '\0';
    end = o->buf + len;
    q = o->buf;
    if (expect(&q, end, 'o') < 0 || expect(&q, end, ';') < 0 || read_i64(&q, end, &o->paid) < 0 ||
        expect(&q, end, ';') < 0 || read_i64(&q, end, &o->refunded) < 0 ||
        expect(&q, end, ';') < 0 || read_i64(&q, end, &n) < 0 || expect(&q, end, ';') < 0)
        goto bad;
    if (n < 0 || n > MAX_LEVELS || o->paid < 0 || o->refunded < 0 || o->refunded > o->paid)
        goto bad;
    o->n = (int)n;
    p = (char *)q;
    if (read_lstr(&p, end, o->n == 0, &o->buyer) < 0)
        goto bad;
    for (int i = 0; i < o->n; i++) {
        struct commission *c = &o->c[i];

        q = p;
        if (read_i64(&q, end, &c->level) < 0 || expect(&q, end, ';') < 0 ||
            read_i64(&q, end, &c->amount) < 0 || expect(&q, end, ';') < 0 ||
            read_i64(&q, end, &c->clawed) < 0 || expect(&q, end, ';') < 0)
            goto bad;
        if (c->level < 1 || c->level > MAX_LEVELS || c->amount < 0 || c->clawed < 0 ||
            c->clawed > c->amount)
            goto bad;
        p = (char *)q;
        if (read_lstr(&p, end, i == o->n - 1, &c->beneficiary) < 0)
            goto bad;
    }
    if (p != end)
        goto bad;
    return 0;
bad:
    free(o->buf);
    o->buf = NULL;
    return -1;
}

/* ---- state ---- */

/* 1 and *b when user is bound, 0 when not (or the record is unreadable),
 * or a negative error. */
static int get_binding(mktd_ctx *ctx, const char *user, struct binding *b)
{
    const char *val, *q, *end;
    size_t len;
    int rc = host->state_get(ctx, user, "ref", &val, &len);

    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    q = val;
    end = val + len;
    if (read_i64(&q, end, &b->ts) < 0 || expect(&q, end, ' ') < 0 || q >= end ||
        memchr(q, '\0', (size_t)(end - q))) {
        host->log(ctx, MKTD_LOG_WARN, "unreadable binding of user '%s' ignored", user);
        return 0;
    }
    b->referrer = q;
    return 1;
}

static int put_binding(mktd_ctx *ctx, const char *user, const char *referrer, int64_t ts)
{
    size_t rlen = strlen(referrer);
    char *v = malloc(rlen + 32);
    int n, rc;

    if (!v)
        return -ENOMEM;
    n = snprintf(v, 32, "%" PRId64 " ", ts);
    memcpy(v + n, referrer, rlen + 1);
    rc = host->state_put(ctx, user, "ref", v, (size_t)n + rlen);
    free(v);
    return rc;
}

/* The referrer's "kid:<referee>" key. */
static int put_kid(mktd_ctx *ctx, const char *referrer, const char *referee)
{
    char *key = concat("kid:", referee);
    int rc;

    if (!key)
        return -ENOMEM;
    rc = host->state_put(ctx, referrer, key, "", 0);
    free(key);
    return rc;
}

/* ---- binding ---- */

static int emit_rejected(mktd_ctx *ctx, const char *user, const char *referrer, const char *reason)
{
    mktd_obj *o = host->obj_new(ctx);

    host->note(ctx, "binding refused: %s", reason);
    host->obj_str(o, "referrer", referrer);
    host->obj_str(o, "reason", reason);
    return host->emit(ctx, "referral.rejected", user, o);
}

/* 1 when the chain of `from` (its referrer, that one's referrer, ...)
 * contains `target` or is longer than MAX_CHAIN; 0 when not; or < 0. */
static int chain_contains(mktd_ctx *ctx, const char *from, const char *target)
{
    const char *cur = from;

    for (int steps = 0; steps <= MAX_CHAIN; steps++) {
        struct binding b;
        int rc = get_binding(ctx, cur, &b);

        if (rc <= 0)
            return rc;
        if (steps == MAX_CHAIN)
            break;
        if (strcmp(b.referrer, target) == 0)
            return 1;
        cur = b.referrer;
    }
    host->log(ctx, MKTD_LOG_WARN, "chain of '%s' is longer than %d links", from, MAX_CHAIN);
    return 1;
}

static int on_signup(mktd_ctx *ctx, const struct referral *r, const mktd_event *ev)
{
    mktd_value v;
    const char *user = ev->user, *referrer;
    struct binding b;
    mktd_profile prof;
    mktd_obj *o;
    char key[48];
    int rc;

    if (host->prop(ctx, ev, "referrer", &v) != MKTD_T_STRING || v.len == 0) {
        host->note(ctx, "signup without a referrer");
        return 0;
    }
    referrer = v.s;

    if (strcmp(referrer, user) == 0)
        return emit_rejected(ctx, user, referrer, "self");
    rc = chain_contains(ctx, referrer, user);
    if (rc < 0)
        return rc;
    if (rc)
        return emit_rejected(ctx, user, referrer, "cycle");
    rc = get_binding(ctx, user, &b);
    if (rc < 0)
        return rc;
    if (rc)
        return emit_rejected(ctx, user, referrer, "already_bound");
    rc = host->profile(ctx, user, &prof);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    if (rc == 0 && prof.events > 1)
        return emit_rejected(ctx, user, referrer, "not_new");

    /* Bindings are counted per local day even without a cap, so that a cap
     * added on reload counts the day's earlier bindings. */
    snprintf(key, sizeof key, "bound:%" PRId64, floor_div(sat_add(ev->ts, r->utc_offset), DAY_MS));
    rc = host->counter_add(ctx, referrer, key, 1, r->daily_cap, NULL);
    if (rc < 0)
        return rc;
    if (rc == 1)
        return emit_rejected(ctx, user, referrer, "daily_cap");

    rc = put_binding(ctx, user, referrer, host->now(ctx));
    if (rc < 0)
        return rc;
    rc = put_kid(ctx, referrer, user);
    if (rc < 0)
        return rc;
    o = host->obj_new(ctx);
    host->obj_str(o, "referrer", referrer);
    return host->emit(ctx, "referral.bound", user, o);
}

/* ---- orders ---- */

static int put_order(mktd_ctx *ctx, const char *key, const struct order *o)
{
    size_t len;
    char *val = order_encode(o, &len);
    int rc;

    if (!val)
        return -ENOMEM;
    rc = host->state_put(ctx, NULL, key, val, len);
    free(val);
    return rc;
}

static int emit_reward(mktd_ctx *ctx, const char *user, const char *referee, const char *role,
                       int64_t amount)
{
    mktd_obj *o;

    if (amount <= 0)
        return 0;
    o = host->obj_new(ctx);
    host->obj_str(o, "referee", referee);
    host->obj_str(o, "role", role);
    host->obj_int(o, "amount", amount);
    return host->emit(ctx, "referral.reward", user, o);
}

static int on_paid(mktd_ctx *ctx, const struct referral *r, const mktd_event *ev)
{
    mktd_value oid, amt;
    const char *buyer = ev->user, *val;
    struct order o;
    struct binding b;
    size_t len;
    char *key;
    int rc, bound;

    if (host->prop(ctx, ev, "order_id", &oid) != MKTD_T_STRING || oid.len == 0 ||
        host->prop(ctx, ev, "amount", &amt) != MKTD_T_INT || amt.i < 0)
        return 0;
    key = concat("order:", oid.s);
    if (!key)
        return -ENOMEM;
    rc = host->state_get(ctx, NULL, key, &val, &len);
    if (rc != -ENOENT) {
        /* Seen before (or a lookup error): earns nothing. */
        if (rc == 0)
            host->note(ctx, "not a qualifying order: order_id seen before");
        free(key);
        return rc < 0 ? rc : 0;
    }

    memset(&o, 0, sizeof o);
    o.buyer = buyer;
    o.paid = amt.i;
    bound = get_binding(ctx, buyer, &b);
    if (bound < 0) {
        free(key);
        return bound;
    }
    if (!bound)
        host->note(ctx, "not a qualifying order: buyer not bound");
    else if (amt.i < r->min_order)
        host->note(ctx, "not a qualifying order: min_order");
    else if (ev->ts > sat_add(b.ts, r->window))
        host->note(ctx, "not a qualifying order: after window");
    if (bound && amt.i >= r->min_order && ev->ts <= sat_add(b.ts, r->window)) {
        const char *cur = b.referrer;
        int64_t first = 0;

        /* Commission up the chain; a missing ancestor ends it. */
        for (int level = 1; level <= r->levels && cur; level++) {
            int64_t c = mul_div(amt.i, r->rate[level - 1], RATE_MAX);
            struct binding up;

            if (c <= 0)
                host->note(ctx, "commission level %d: amount 0, not recorded", level);
            if (c > 0) {
                mktd_obj *p = host->obj_new(ctx);

                host->obj_str(p, "order_id", oid.s);
                host->obj_str(p, "buyer", buyer);
                host->obj_int(p, "level", level);
                host->obj_int(p, "rate_bp", r->rate[level - 1]);
                host->obj_int(p, "amount", c);
                rc = host->emit(ctx, "referral.commission", cur, p);
                if (rc < 0)
                    goto out;
                if (rc == MKTD_CAPPED) { /* not recorded: nothing to claw back */
                    rc = 0;
                    goto next;
                }
                o.c[o.n].level = level;
                o.c[o.n].amount = c;
                o.c[o.n].clawed = 0;
                o.c[o.n].beneficiary = cur;
                o.n++;
            }
        next:
            if (level == r->levels)
                break;
            rc = get_binding(ctx, cur, &up);
            if (rc < 0)
                goto out;
            cur = rc ? up.referrer : NULL;
            if (!cur)
                host->note(ctx, "commission level %d: no ancestor", level + 1);
        }

        /* The reward, on the referee's first qualifying order only. */
        rc = host->counter_add(ctx, buyer, "qualified", 1, -1, &first);
        if (rc < 0)
            goto out;
        if (first != 1 && r->has_reward)
            host->note(ctx, "reward: not the first qualifying order");
        if (first == 1 && r->has_reward) {
            int64_t share = mul_div(r->reward_amount, r->referrer_share, 100);

            rc = emit_reward(ctx, b.referrer, buyer, "referrer", share);
            if (rc < 0)
                goto out;
            rc = emit_reward(ctx, buyer, buyer, "referee", r->reward_amount - share);
            if (rc < 0)
                goto out;
        }
    }
    rc = put_order(ctx, key, &o);
out:
    free(key);
    return rc;
}

static int on_refunded(mktd_ctx *ctx, const struct referral *r, const mktd_event *ev)
{
    mktd_value oid, amt;
    mktd_type at;
    const char *val;
    struct order o;
    size_t len;
    int64_t left, refund;
    char *key;
    int rc;

    if (host->prop(ctx, ev, "order_id", &oid) != MKTD_T_STRING || oid.len == 0)
        return 0;
    at = host->prop(ctx, ev, "amount", &amt);
    if (at != MKTD_T_MISSING && (at != MKTD_T_INT || amt.i <= 0))
        return 0;
    key = concat("order:", oid.s);
    if (!key)
        return -ENOMEM;
    rc = host->state_get(ctx, NULL, key, &val, &len);
    if (rc < 0) {
        /* An order this campaign never saw paid: nothing to do. */
        if (rc == -ENOENT)
            host->note(ctx, "refund of an order never seen paid");
        free(key);
        return rc == -ENOENT ? 0 : rc;
    }
    if (order_decode(val, len, &o) < 0) {
        host->log(ctx, MKTD_LOG_WARN, "unreadable record of order '%s' ignored", oid.s);
        free(key);
        return 0;
    }

    left = o.paid - o.refunded;
    refund = at == MKTD_T_INT && amt.i < left ? amt.i : left;
    rc = 0;
    if (refund <= 0)
        host->note(ctx, "refund: nothing left of the order");
    else if (!r->clawback)
        host->note(ctx, "refund: clawback is off");
    if (refund > 0) {
        o.refunded += refund;
        for (int i = 0; r->clawback && i < o.n; i++) {
            struct commission *c = &o.c[i];
            int64_t claw = mul_div(c->amount, refund, o.paid);
            mktd_obj *p;

            if (claw > c->amount - c->clawed)
                claw = c->amount - c->clawed;
            if (claw <= 0)
                continue;
            p = host->obj_new(ctx);
            host->obj_str(p, "order_id", oid.s);
            host->obj_int(p, "level", c->level);
            host->obj_int(p, "amount", claw);
            rc = host->emit(ctx, "referral.clawback", c->beneficiary, p);
            if (rc < 0)
                goto out;
            c->clawed += claw;
        }
        rc = put_order(ctx, key, &o);
    }
out:
    free(o.buf);
    free(key);
    return rc;
}

static int referral_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    const struct referral *r = data;

    if (ev->depth != 0 || !(flags & MKTD_F_ACTIVE))
        return 0;
    if (strcmp(ev->type, "user.signup") == 0)
        return on_signup(ctx, r, ev);
    if (strcmp(ev->type, "order.paid") == 0)
        return on_paid(ctx, r, ev);
    if (strcmp(ev->type, "order.refunded") == 0)
        return on_refunded(ctx, r, ev);
    return 0;
}

/* ---- load: the referees index of bindings older than it ---- */

static int index_user(void *arg, const char *user, const mktd_profile *p)
{
    mktd_ctx *ctx = arg;
    struct binding b;
    int rc = get_binding(ctx, user, &b);

    (void)p;
    if (rc <= 0)
        return rc;
    return put_kid(ctx, b.referrer, user);
}

static int referral_on_load(mktd_ctx *ctx, void *data, int first)
{
    int rc = host->state_get(ctx, NULL, "kids", NULL, NULL);

    (void)data;
    if (rc != -ENOENT)
        return rc;
    if (!first) {
        host->log(ctx, MKTD_LOG_INFO, "indexing the referees of every referrer (once)");
        rc = host->users_foreach(ctx, index_user, ctx);
        if (rc < 0)
            return rc;
    }
    return host->state_put(ctx, NULL, "kids", "1", 1);
}

/* ---- forget ---- */

struct forget_arg {
    mktd_ctx *ctx;
    const char *user, *pseudonym;
};

/* A referee of the forgotten user: bound to the pseudonym instead. */
static int forget_kid(void *arg, const char *key, const char *val, size_t len)
{
    struct forget_arg *f = arg;
    const char *referee = key + 4; /* "kid:" */
    struct binding b;
    int rc = get_binding(f->ctx, referee, &b);

    (void)val, (void)len;
    if (rc <= 0 || strcmp(b.referrer, f->user) != 0)
        return rc < 0 ? rc : 0;
    return put_binding(f->ctx, referee, f->pseudonym, b.ts);
}

/* An order record naming the forgotten user as buyer or beneficiary. */
static int forget_order(void *arg, const char *key, const char *val, size_t len)
{
    struct forget_arg *f = arg;
    struct order o;
    int hit = 0, rc = 0;

    if (order_decode(val, len, &o) < 0)
        return 0;
    if (strcmp(o.buyer, f->user) == 0) {
        o.buyer = f->pseudonym;
        hit = 1;
    }
    for (int i = 0; i < o.n; i++)
        if (strcmp(o.c[i].beneficiary, f->user) == 0) {
            o.c[i].beneficiary = f->pseudonym;
            hit = 1;
        }
    if (hit)
        rc = put_order(f->ctx, key, &o);
    free(o.buf);
    return rc;
}

static int referral_on_forget(mktd_ctx *ctx, void *data, const char *user, const char *pseudonym)
{
    struct forget_arg f = {ctx, user, pseudonym};
    struct binding b;
    int rc;

    (void)data;
    if (!user || !pseudonym || !*user || !*pseudonym)
        return -EINVAL;
    /* its referees (its own state goes after this, with the host) */
    rc = host->state_iter(ctx, user, "kid:", forget_kid, &f);
    if (rc < 0)
        return rc;
    /* its referrer's index names it: gone */
    rc = get_binding(ctx, user, &b);
    if (rc < 0)
        return rc;
    if (rc) {
        char *key = concat("kid:", user);

        if (!key)
            return -ENOMEM;
        rc = host->state_del(ctx, b.referrer, key);
        free(key);
        if (rc < 0 && rc != -ENOENT)
            return rc;
    }
    return host->state_iter(ctx, NULL, "order:", forget_order, &f);
}

static const mktd_plugin referral_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "referral",
    .version = "1.0.0",
    .flags = MKTD_PLUGIN_WHEN_REFUSED,
    .init = referral_init,
    .destroy = referral_destroy,
    .on_event = referral_on_event,
    .on_timer = NULL,
    .on_load = referral_on_load,
    .on_forget = referral_on_forget,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *h)
{
    host = h;
    return &referral_plugin;
}
