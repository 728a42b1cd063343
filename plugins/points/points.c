/*
 * points — 积分 and tiers: points earned on paid orders, redeemed, expired
 * and reversed by lots, and member tiers by the points earned within a
 * window (spec sections 16 and 18, "Plugins of section 16").
 *
 * What the campaign keeps, all through the host (see README.md, "State"):
 *   state    per user "lot:<ts>:<order_id>" = "<earned> <left> <counted>":
 *            one lot per order that earned points; ts is the points.earned
 *            action's ts, zero-padded to 19 digits so that the keys sort
 *            oldest first (state_iter reads them in that order); earned =
 *            the points the order earned (0 once reversed); left = the
 *            points of the lot still in the balance; counted = 1 while
 *            the lot counts towards the tier (inside tier_window). A lot
 *            goes when nothing is left of it and it no longer counts.
 *            campaign-wide "order:<order_id>" = "<paid> <refunded> <points>
 *            <expired> <done> <lot ts> <user>" for every order.paid seen
 *            (points 0 when it earned none); expired = points of its lot
 *            that expired; done = 1 once reversed; user last (it may hold
 *            spaces).
 *   counters per user "balance" (the sum of the lots' left), "tier_sum"
 *            (points earned within tier_window, net of reversals), "tier"
 *            (0 none, i + 1 for tiers[i])
 *   timers   per user "expire" (the oldest lot with points left falls due)
 *            and "tier" (the oldest counted lot leaves tier_window)
 *
 * The earning path reads no list: one state_get (the order), counters and
 * two timer_get. Only redemption, reversal and the timers read the user's
 * lots (state_iter), which stay few: a lot goes once it is spent, expired
 * or reversed and out of the tier window.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/plugin.h>

#define MAX_TIERS 32
#define MAX_TIER_NAME 64
#define ID_MAX 128
#define KEY_MAX 200
#define LOT_PREFIX "lot:"
#define ORDER_PREFIX "order:"
#define NO_WINDOW INT64_MAX

static const mktd_host *host;

struct tier {
    char name[MAX_TIER_NAME + 1];
    int64_t at;
};

struct points {
    int64_t rate;         /* points per 100 yuan (10000 fen) */
    int64_t expire_after; /* ms, NO_WINDOW: never */
    int64_t tier_window;  /* ms, NO_WINDOW: all points ever earned */
    size_t n_tiers;
    struct tier tiers[MAX_TIERS];
};

/* One lot, as read from its key and value. */
struct lot {
    int64_t ts;
    char *key;         /* the whole state key */
    const char *order; /* the order id, inside key */
    int64_t earned, left;
    int counted;
    int dirty;
};

struct lots {
    struct lot *v;
    size_t n, cap;
};

/* What is kept for one order. */
struct order_rec {
    int64_t paid, refunded, points, expired;
    int done;
    int64_t lot_ts; /* -1: no lot */
    const char *user;
};

/* ---- arithmetic ---- */

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* floor(amount * rate / 10000) for amount, rate >= 0, saturating. */
static int64_t points_for(int64_t amount, int64_t rate)
{
    __extension__ typedef unsigned __int128 u128;
    u128 p = (u128)amount * (u128)rate / 10000u;
    return p > (u128)INT64_MAX ? INT64_MAX : (int64_t)p;
}

/* ---- init ---- */

static int is_absent(mktd_ctx *ctx, const mktd_node *n)
{
    char *json = NULL;
    int null;
    if (!n)
        return 1;
    if (host->node_kind(n) != MKTD_NODE_SCALAR || host->node_json(ctx, n, &json) < 0)
        return 0;
    null = json && strcmp(json, "null") == 0;
    free(json);
    return null;
}

static int parse_tier(mktd_ctx *ctx, const mktd_node *t, struct points *p)
{
    static const char *const allowed[] = {"name", "at", NULL};
    const struct tier *prev = p->n_tiers ? &p->tiers[p->n_tiers - 1] : NULL;
    const char *name = NULL;
    int64_t at = 0;
    int rc = 0;

    if (host->node_kind(t) != MKTD_NODE_MAP)
        return host->config_error(ctx, t, "tiers: each tier is a map {name, at}");
    if (host->check_keys(ctx, t, allowed) < 0)
        rc = -EINVAL;
    if (host->get_str(ctx, t, "name", 1, NULL, &name) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, t, "at", 1, 0, 1, INT64_MAX, &at) < 0)
        rc = -EINVAL;
    if (rc < 0)
        return rc;
    if (!name || !name[0] || strlen(name) > MAX_TIER_NAME)
        return host->config_error(ctx, host->node_get(t, "name"), "name: 1 to %d bytes, got %zu",
                                  MAX_TIER_NAME, name ? strlen(name) : 0);
    for (size_t j = 0; j < p->n_tiers; j++)
        if (strcmp(p->tiers[j].name, name) == 0)
            return host->config_error(ctx, host->node_get(t, "name"),
                                      "name: tier '%s' is given twice", name);
    if (prev && at <= prev->at)
        return host->config_error(ctx, host->node_get(t, "at"),
                                  "at: tiers go up: %" PRId64 " is not above %" PRId64
                                  " (tier '%s')",
                                  at, prev->at, prev->name);
    snprintf(p->tiers[p->n_tiers].name, sizeof p->tiers[0].name, "%s", name);
    p->tiers[p->n_tiers].at = at;
    p->n_tiers++;
    return 0;
}

static int parse_tiers(mktd_ctx *ctx, const mktd_node *params, struct points *p)
{
    const mktd_node *list = host->node_get(params, "tiers");
    size_t n;
    int rc = 0;

    if (is_absent(ctx, list))
        return 0;
    if (host->node_kind(list) != MKTD_NODE_SEQ)
        return host->config_error(ctx, list, "tiers: a list of {name, at}");
    n = host->node_len(list);
    if (n == 0)
        return host->config_error(ctx, list, "tiers: the list is empty (leave it out for none)");
    if (n > MAX_TIERS)
        return host->config_error(ctx, list, "tiers: at most %d tiers, got %zu", MAX_TIERS, n);
    for (size_t i = 0; i < n; i++)
        if (parse_tier(ctx, host->node_at(list, i), p) < 0)
            rc = -EINVAL;
    return rc;
}

static int points_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    static const char *const allowed[] = {"rate", "expire_after", "tiers", "tier_window", NULL};
    struct points *p;
    int rc = 0;

    *data = NULL;
    if (!params)
        return host->config_error(ctx, NULL, "points needs params (at least rate)");
    if (host->node_kind(params) != MKTD_NODE_MAP)
        return host->config_error(ctx, params, "params must be a map");
    p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    if (host->check_keys(ctx, params, allowed) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, params, "rate", 1, 0, 1, 1000000000, &p->rate) < 0)
        rc = -EINVAL;
    if (host->get_duration(ctx, params, "expire_after", 0, NO_WINDOW, 1, INT64_MAX,
                           &p->expire_after) < 0)
        rc = -EINVAL;
    if (host->get_duration(ctx, params, "tier_window", 0, NO_WINDOW, 1, INT64_MAX,
                           &p->tier_window) < 0)
        rc = -EINVAL;
    if (parse_tiers(ctx, params, p) < 0)
        rc = -EINVAL;
    if (rc == 0 && p->tier_window != NO_WINDOW && p->n_tiers == 0)
        rc = host->config_error(ctx, host->node_get(params, "tier_window"),
                                "tier_window: needs tiers");
    if (rc < 0) {
        free(p);
        return rc;
    }
    *data = p;
    return 0;
}

static void points_destroy(void *data)
{
    free(data);
}

/* ---- keys and records ---- */

static int fit(int n, size_t size)
{
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int lot_key(char *buf, size_t size, int64_t ts, const char *order)
{
    return fit(snprintf(buf, size, LOT_PREFIX "%019" PRId64 ":%s", ts, order), size);
}

static int order_key(char *buf, size_t size, const char *order)
{
    return fit(snprintf(buf, size, ORDER_PREFIX "%s", order), size);
}

/* Parses an order record's value: 0, or -EBADMSG. */
static int order_parse(const char *val, size_t len, struct order_rec *r)
{
    int done = 0, used = 0;
    if (!val ||
        sscanf(val, "%" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64 " %d %" SCNd64 "%n", &r->paid,
               &r->refunded, &r->points, &r->expired, &done, &r->lot_ts, &used) != 6 ||
        used <= 0 || (size_t)used >= len || val[used] != ' ')
        return -EBADMSG;
    r->done = done != 0;
    r->user = val + used + 1;
    return 0;
}

static int order_get(mktd_ctx *ctx, const char *order, struct order_rec *r)
{
    char key[KEY_MAX];
    const char *val = NULL;
    size_t len = 0;
    int rc = order_key(key, sizeof key, order);
    if (rc < 0)
        return rc;
    rc = host->state_get(ctx, NULL, key, &val, &len);
    if (rc < 0)
        return rc;
    return order_parse(val, len, r);
}

static int order_put(mktd_ctx *ctx, const char *order, const struct order_rec *r)
{
    char key[KEY_MAX], head[160];
    size_t hl, ul = strlen(r->user);
    char *val;
    int rc = order_key(key, sizeof key, order);
    if (rc < 0)
        return rc;
    snprintf(head, sizeof head, "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " %d %" PRId64 " ",
             r->paid, r->refunded, r->points, r->expired, r->done ? 1 : 0, r->lot_ts);
    hl = strlen(head);
    val = malloc(hl + ul);
    if (!val)
        return -ENOMEM;
    memcpy(val, head, hl);
    memcpy(val + hl, r->user, ul);
    rc = host->state_put(ctx, NULL, key, val, hl + ul);
    free(val);
    return rc;
}

static int lot_put(mktd_ctx *ctx, const char *user, const char *key, int64_t earned, int64_t left,
                   int counted)
{
    char val[80];
    snprintf(val, sizeof val, "%" PRId64 " %" PRId64 " %d", earned, left, counted ? 1 : 0);
    return host->state_put(ctx, user, key, val, strlen(val));
}

/* ---- lots ---- */

static void lots_free(struct lots *ls)
{
    for (size_t i = 0; i < ls->n; i++)
        free(ls->v[i].key);
    free(ls->v);
    memset(ls, 0, sizeof *ls);
}

static int collect_lot(void *arg, const char *key, const char *val, size_t len)
{
    struct lots *ls = arg;
    struct lot l = {0};
    const char *k = key + strlen(LOT_PREFIX);
    int counted = 0;
    (void)len;
    if (strlen(k) < 21 || k[19] != ':' ||
        sscanf(val, "%" SCNd64 " %" SCNd64 " %d", &l.earned, &l.left, &counted) != 3 ||
        sscanf(k, "%19" SCNd64, &l.ts) != 1)
        return 0; /* not a lot of this shape: left alone */
    if (ls->n == ls->cap) {
        size_t cap = ls->cap ? ls->cap * 2 : 8;
        struct lot *v = realloc(ls->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        ls->v = v;
        ls->cap = cap;
    }
    l.key = strdup(key);
    if (!l.key)
        return -ENOMEM;
    l.order = l.key + strlen(LOT_PREFIX) + 20;
    l.counted = counted != 0;
    ls->v[ls->n++] = l;
    return 0;
}

/* The user's lots, oldest first (the key order). */
static int lots_load(mktd_ctx *ctx, const char *user, struct lots *ls)
{
    memset(ls, 0, sizeof *ls);
    int rc = host->state_iter(ctx, user, LOT_PREFIX, collect_lot, ls);
    if (rc < 0)
        lots_free(ls);
    return rc;
}

/* A lot is kept while points are left in it or it counts for the tier. */
static int lots_store(mktd_ctx *ctx, const char *user, const struct lots *ls)
{
    for (size_t i = 0; i < ls->n; i++) {
        const struct lot *l = &ls->v[i];
        int rc;
        if (!l->dirty)
            continue;
        if (l->left <= 0 && !l->counted)
            rc = host->state_del(ctx, user, l->key);
        else
            rc = lot_put(ctx, user, l->key, l->earned, l->left, l->counted);
        if (rc < 0 && rc != -ENOENT)
            return rc;
    }
    return 0;
}

/* Takes up to want points from the lots with points left, oldest first,
 * skipping index skip; returns what was taken. */
static int64_t lots_take(struct lots *ls, int64_t want, size_t skip)
{
    int64_t taken = 0;
    for (size_t i = 0; i < ls->n && taken < want; i++) {
        struct lot *l = &ls->v[i];
        if (i == skip || l->left <= 0)
            continue;
        int64_t t = l->left < want - taken ? l->left : want - taken;
        l->left -= t;
        l->dirty = 1;
        taken += t;
    }
    return taken;
}

/* ---- timers ---- */

/* The expiry timer at the oldest lot with points left (none: cancelled). */
static int schedule_expiry(mktd_ctx *ctx, const struct points *p, const char *user,
                           const struct lots *ls)
{
    int rc;
    for (size_t i = 0; p->expire_after != NO_WINDOW && i < ls->n; i++)
        if (ls->v[i].left > 0)
            return host->timer_set(ctx, user, "expire", sat_add(ls->v[i].ts, p->expire_after));
    rc = host->timer_cancel(ctx, user, "expire");
    return rc == -ENOENT ? 0 : rc;
}

/* The tier timer at the oldest counted lot (none: cancelled). */
static int schedule_tier(mktd_ctx *ctx, const struct points *p, const char *user,
                         const struct lots *ls)
{
    int rc;
    for (size_t i = 0; p->n_tiers && p->tier_window != NO_WINDOW && i < ls->n; i++)
        if (ls->v[i].counted)
            return host->timer_set(ctx, user, "tier", sat_add(ls->v[i].ts, p->tier_window));
    rc = host->timer_cancel(ctx, user, "tier");
    return rc == -ENOENT ? 0 : rc;
}

/* Sets the named timer to due unless one is set already (earlier). */
static int timer_ensure(mktd_ctx *ctx, const char *user, const char *name, int64_t due)
{
    int64_t cur;
    int rc = host->timer_get(ctx, user, name, &cur);
    if (rc == 0)
        return 0;
    if (rc != -ENOENT)
        return rc;
    return host->timer_set(ctx, user, name, due);
}

/* ---- actions ---- */

static int emit_points(mktd_ctx *ctx, const char *kind, const char *user, const char *order,
                       int64_t points, int64_t balance)
{
    mktd_obj *o = host->obj_new(ctx);
    if (!o)
        return -ENOMEM;
    if (order)
        host->obj_str(o, "order_id", order);
    host->obj_int(o, "points", points);
    host->obj_int(o, "balance", balance);
    int rc = host->emit(ctx, kind, user, o);
    if (rc == MKTD_CAPPED)
        host->note(ctx, "%s for %s was capped", kind, user);
    return rc;
}

/* The tier of sum: 0 for none, i + 1 for tiers[i]. */
static int64_t tier_of(const struct points *p, int64_t sum)
{
    int64_t t = 0;
    for (size_t i = 0; i < p->n_tiers && sum >= p->tiers[i].at; i++)
        t = (int64_t)i + 1;
    return t;
}

static void obj_tier(mktd_obj *o, const struct points *p, const char *key, int64_t t)
{
    if (t > 0 && (size_t)t <= p->n_tiers)
        host->obj_str(o, key, p->tiers[t - 1].name);
    else
        host->obj_json(o, key, "null");
}

/* Re-evaluates the user's tier after tier_sum changed: tier.changed when
 * it moved. When record is 0 (the campaign is inactive) nothing changes:
 * the next evaluation while active announces it. */
static int reevaluate(mktd_ctx *ctx, const struct points *p, const char *user, int record)
{
    if (!p->n_tiers)
        return 0;
    int64_t sum = host->counter_get(ctx, user, "tier_sum");
    int64_t cur = host->counter_get(ctx, user, "tier");
    int64_t next = tier_of(p, sum);
    if (next == cur)
        return 0;
    if (!record) {
        host->note(ctx, "tier of %s would change, but the campaign is inactive", user);
        return 0;
    }
    int rc = host->counter_add(ctx, user, "tier", next - cur, -1, NULL);
    if (rc < 0)
        return rc;
    mktd_obj *o = host->obj_new(ctx);
    if (!o)
        return -ENOMEM;
    obj_tier(o, p, "from", cur);
    obj_tier(o, p, "to", next);
    host->note(ctx, "tier of %s: %" PRId64 " points within the window", user, sum);
    rc = host->emit(ctx, "tier.changed", user, o);
    if (rc == MKTD_CAPPED) /* the tier is a fact of the points: it stays */
        host->note(ctx, "tier.changed for %s was capped", user);
    return rc == MKTD_CAPPED ? 0 : rc;
}

/* ---- events ---- */

static const char *order_id_of(mktd_ctx *ctx, const mktd_event *ev)
{
    mktd_value v;
    if (host->prop(ctx, ev, "order_id", &v) != MKTD_T_STRING || v.len < 1 || v.len > ID_MAX) {
        host->note(ctx, "%s without an order_id of 1-%d bytes: ignored", ev->type, ID_MAX);
        return NULL;
    }
    return v.s;
}

static int on_paid(mktd_ctx *ctx, const struct points *p, const mktd_event *ev, unsigned flags)
{
    const char *order = order_id_of(ctx, ev);
    struct order_rec rec;
    mktd_value amount;
    int64_t pts = 0, now = host->now(ctx), balance;
    char key[KEY_MAX];
    int rc;

    if (!order)
        return 0;
    if (host->prop(ctx, ev, "amount", &amount) != MKTD_T_INT || amount.i < 0) {
        host->note(ctx, "order.paid without an amount: ignored");
        return 0;
    }
    rc = order_get(ctx, order, &rec);
    if (rc == 0 || rc == -EBADMSG) {
        host->note(ctx, "order %s was seen paid before: it earns nothing", order);
        return 0;
    }
    if (rc != -ENOENT)
        return rc;
    if (flags & MKTD_F_EXCLUDED)
        host->note(ctx, "order %s earns nothing: excluded by the campaign's group", order);
    else if (flags & MKTD_F_MATCH)
        pts = points_for(amount.i, p->rate);
    if ((flags & MKTD_F_MATCH) && pts == 0)
        host->note(ctx, "order %s earns 0 points", order);

    if (pts > 0) {
        balance = sat_add(host->counter_get(ctx, ev->user, "balance"), pts);
        rc = emit_points(ctx, "points.earned", ev->user, order, pts, balance);
        if (rc < 0)
            return rc;
        if (rc == MKTD_CAPPED)
            pts = 0; /* as if not earned */
    }
    rec = (struct order_rec){.paid = amount.i, .points = pts, .lot_ts = -1, .user = ev->user};
    if (pts > 0) {
        /* a lot counts (and is kept) while inside tier_window; without a
         * window every point ever earned counts, and tier_sum alone says so */
        int counted = p->n_tiers > 0 && p->tier_window != NO_WINDOW;
        rec.lot_ts = now;
        if ((rc = lot_key(key, sizeof key, now, order)) < 0 ||
            (rc = lot_put(ctx, ev->user, key, pts, pts, counted)) < 0 ||
            (rc = host->counter_add(ctx, ev->user, "balance", pts, -1, NULL)) < 0)
            return rc;
        if (p->expire_after != NO_WINDOW &&
            (rc = timer_ensure(ctx, ev->user, "expire", sat_add(now, p->expire_after))) < 0)
            return rc;
        if (p->n_tiers && (rc = host->counter_add(ctx, ev->user, "tier_sum", pts, -1, NULL)) < 0)
            return rc;
        if (counted && (rc = timer_ensure(ctx, ev->user, "tier", sat_add(now, p->tier_window))) < 0)
            return rc;
    }
    if ((rc = order_put(ctx, order, &rec)) < 0)
        return rc;
    return pts > 0 ? reevaluate(ctx, p, ev->user, 1) : 0;
}

static int on_redeem(mktd_ctx *ctx, const struct points *p, const mktd_event *ev)
{
    const char *order = order_id_of(ctx, ev);
    mktd_value want;
    struct lots ls;
    int rc;

    if (!order)
        return 0;
    if (host->prop(ctx, ev, "points", &want) != MKTD_T_INT || want.i < 1) {
        host->note(ctx, "points.redeem without points (an integer >= 1): ignored");
        return 0;
    }
    int64_t balance = host->counter_get(ctx, ev->user, "balance");
    if (balance < want.i) {
        host->note(ctx, "insufficient: %" PRId64 " asked, %" PRId64 " in the balance", want.i,
                   balance);
        mktd_obj *o = host->obj_new(ctx);
        if (!o)
            return -ENOMEM;
        host->obj_str(o, "order_id", order);
        host->obj_int(o, "points", want.i);
        host->obj_str(o, "reason", "insufficient");
        rc = host->emit(ctx, "points.rejected", ev->user, o);
        if (rc == MKTD_CAPPED)
            host->note(ctx, "points.rejected for %s was capped", ev->user);
        return rc == MKTD_CAPPED ? 0 : rc;
    }
    rc = emit_points(ctx, "points.redeemed", ev->user, order, want.i, balance - want.i);
    if (rc != 0)
        return rc == MKTD_CAPPED ? 0 : rc; /* capped: nothing was redeemed */
    if ((rc = lots_load(ctx, ev->user, &ls)) < 0)
        return rc;
    int64_t taken = lots_take(&ls, want.i, (size_t)-1);
    if (taken != want.i)
        host->log(ctx, MKTD_LOG_WARN,
                  "user %s: the lots hold %" PRId64 " of the %" PRId64 " points redeemed", ev->user,
                  taken, want.i);
    rc = lots_store(ctx, ev->user, &ls);
    if (rc == 0)
        rc = host->counter_add(ctx, ev->user, "balance", -want.i, -1, NULL);
    if (rc == 0)
        rc = schedule_expiry(ctx, p, ev->user, &ls);
    lots_free(&ls);
    return rc;
}

static int on_refund(mktd_ctx *ctx, const struct points *p, const mktd_event *ev)
{
    const char *order = order_id_of(ctx, ev);
    struct order_rec rec;
    mktd_value amount;
    struct lots ls;
    int rc;

    if (!order)
        return 0;
    rc = order_get(ctx, order, &rec);
    if (rc == -ENOENT || rc == -EBADMSG) {
        host->note(ctx, "order %s was not seen paid: nothing to reverse", order);
        return 0;
    }
    if (rc < 0)
        return rc;
    if (rec.done) {
        host->note(ctx, "order %s is refunded already", order);
        return 0;
    }
    int64_t left_to_refund = rec.paid - rec.refunded;
    if (host->prop(ctx, ev, "amount", &amount) == MKTD_T_INT && amount.i > 0 &&
        amount.i < left_to_refund) {
        rec.refunded += amount.i;
        host->note(ctx, "order %s: a partial refund; its points stay", order);
        return order_put(ctx, order, &rec);
    }
    rec.refunded = rec.paid;
    rec.done = 1;
    int64_t owed = rec.points - rec.expired; /* what expired is gone already */
    if (owed <= 0) {
        host->note(ctx, "order %s: nothing to reverse (%" PRId64 " points, %" PRId64 " expired)",
                   order, rec.points, rec.expired);
        return order_put(ctx, order, &rec);
    }
    /* the buyer's lots; the record's user is the buyer */
    char *user = strdup(rec.user);
    if (!user)
        return -ENOMEM;
    if ((rc = order_put(ctx, order, &rec)) < 0 || (rc = lots_load(ctx, user, &ls)) < 0) {
        free(user);
        return rc;
    }
    size_t own = (size_t)-1;
    for (size_t i = 0; i < ls.n; i++)
        if (ls.v[i].ts == rec.lot_ts && strcmp(ls.v[i].order, order) == 0)
            own = i;
    int64_t taken = 0, untier = 0;
    if (p->n_tiers && p->tier_window == NO_WINDOW)
        untier = rec.points; /* it counts for good, whether its lot is kept or not */
    if (own != (size_t)-1) {
        struct lot *l = &ls.v[own];
        taken = l->left < owed ? l->left : owed;
        l->left -= taken;
        if (l->counted && p->n_tiers && p->tier_window != NO_WINDOW)
            untier = l->earned;
        l->earned = 0;
        l->counted = 0;
        l->dirty = 1;
    }
    /* then from the rest of the balance, oldest first: never below 0 */
    taken += lots_take(&ls, owed - taken, own);
    int64_t balance = host->counter_get(ctx, user, "balance") - taken;
    rc = lots_store(ctx, user, &ls);
    if (rc == 0 && taken > 0)
        rc = host->counter_add(ctx, user, "balance", -taken, -1, NULL);
    if (rc == 0 && untier > 0)
        rc = host->counter_add(ctx, user, "tier_sum", -untier, -1, NULL);
    if (rc == 0)
        rc = schedule_expiry(ctx, p, user, &ls);
    if (rc == 0)
        rc = schedule_tier(ctx, p, user, &ls);
    if (rc == 0 && taken == 0)
        host->note(ctx, "order %s: the balance is empty, nothing reversed", order);
    if (rc == 0 && taken > 0) {
        /* capped or not, the points are gone: the balance is the truth */
        rc = emit_points(ctx, "points.reversed", user, order, taken, balance);
        if (rc == MKTD_CAPPED)
            rc = 0;
    }
    if (rc == 0 && untier > 0)
        rc = reevaluate(ctx, p, user, 1);
    lots_free(&ls);
    free(user);
    return rc;
}

static int points_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    const struct points *p = data;

    if (!p || !ev || ev->depth != 0 || !ev->type || !ev->user)
        return 0;
    if (!(flags & MKTD_F_ACTIVE))
        return 0;
    if (strcmp(ev->type, "order.paid") == 0)
        return on_paid(ctx, p, ev, flags);
    if (strcmp(ev->type, "points.redeem") == 0)
        return on_redeem(ctx, p, ev);
    if (strcmp(ev->type, "order.refunded") == 0)
        return on_refund(ctx, p, ev);
    return 0;
}

/* ---- timers ---- */

/* Lots due at or before `due` expire; nothing is recorded while inactive. */
static int fire_expiry(mktd_ctx *ctx, const struct points *p, const char *user, int64_t due,
                       int record)
{
    struct lots ls;
    int64_t total = 0;
    int rc = lots_load(ctx, user, &ls);
    if (rc < 0)
        return rc;
    for (size_t i = 0; p->expire_after != NO_WINDOW && i < ls.n && rc == 0; i++) {
        struct lot *l = &ls.v[i];
        struct order_rec rec;
        if (l->left <= 0 || sat_add(l->ts, p->expire_after) > due)
            continue;
        rc = order_get(ctx, l->order, &rec);
        if (rc == 0) {
            char *u = strdup(rec.user);
            if (!u) {
                rc = -ENOMEM;
                break;
            }
            rec.user = u;
            rec.expired = sat_add(rec.expired, l->left);
            rc = order_put(ctx, l->order, &rec);
            free(u);
        } else if (rc == -ENOENT || rc == -EBADMSG) {
            rc = 0;
        }
        total += l->left;
        l->left = 0;
        l->dirty = 1;
    }
    if (rc == 0)
        rc = lots_store(ctx, user, &ls);
    if (rc == 0 && total > 0)
        rc = host->counter_add(ctx, user, "balance", -total, -1, NULL);
    if (rc == 0)
        rc = schedule_expiry(ctx, p, user, &ls);
    if (rc == 0 && total > 0) {
        if (record) {
            rc = emit_points(ctx, "points.expired", user, NULL, total,
                             host->counter_get(ctx, user, "balance"));
            if (rc == MKTD_CAPPED) /* the points are gone all the same */
                rc = 0;
        } else {
            host->note(ctx, "%" PRId64 " points of %s expired while the campaign was inactive",
                       total, user);
        }
    }
    lots_free(&ls);
    return rc;
}

/* Lots that left tier_window by `due` stop counting. */
static int fire_tier(mktd_ctx *ctx, const struct points *p, const char *user, int64_t due,
                     int record)
{
    struct lots ls;
    int64_t gone = 0;
    int rc = lots_load(ctx, user, &ls);
    if (rc < 0)
        return rc;
    for (size_t i = 0; p->tier_window != NO_WINDOW && i < ls.n; i++) {
        struct lot *l = &ls.v[i];
        if (!l->counted || sat_add(l->ts, p->tier_window) > due)
            continue;
        gone += l->earned;
        l->counted = 0;
        l->dirty = 1;
    }
    rc = lots_store(ctx, user, &ls);
    if (rc == 0 && gone > 0)
        rc = host->counter_add(ctx, user, "tier_sum", -gone, -1, NULL);
    if (rc == 0)
        rc = schedule_tier(ctx, p, user, &ls);
    if (rc == 0)
        rc = reevaluate(ctx, p, user, record);
    lots_free(&ls);
    return rc;
}

static int points_on_timer(mktd_ctx *ctx, void *data, const char *user, const char *name,
                           int64_t due, unsigned flags)
{
    const struct points *p = data;
    if (!p || !user)
        return 0;
    int record = (flags & MKTD_F_ACTIVE) != 0;
    if (strcmp(name, "expire") == 0)
        return fire_expiry(ctx, p, user, due, record);
    if (strcmp(name, "tier") == 0)
        return fire_tier(ctx, p, user, due, record);
    return 0;
}

/* ---- forget ---- */

struct forget_arg {
    mktd_ctx *ctx;
    const char *user, *pseudonym;
};

/* An order record naming the forgotten user names the pseudonym instead
 * (the user's lots, counters and timers are the host's to delete). */
static int forget_order(void *arg, const char *key, const char *val, size_t len)
{
    struct forget_arg *f = arg;
    struct order_rec rec;
    if (order_parse(val, len, &rec) < 0 || strcmp(rec.user, f->user) != 0)
        return 0;
    rec.user = f->pseudonym;
    return order_put(f->ctx, key + strlen(ORDER_PREFIX), &rec);
}

static int points_on_forget(mktd_ctx *ctx, void *data, const char *user, const char *pseudonym)
{
    struct forget_arg f = {ctx, user, pseudonym};
    (void)data;
    if (!user || !pseudonym || !*user || !*pseudonym)
        return -EINVAL;
    return host->state_iter(ctx, NULL, ORDER_PREFIX, forget_order, &f);
}

static const mktd_plugin points_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "points",
    .version = "1.0.0",
    .flags = 0, /* `when` is optional: it chooses the orders that earn */
    .init = points_init,
    .destroy = points_destroy,
    .on_event = points_on_event,
    .on_timer = points_on_timer,
    .on_load = NULL,
    .on_forget = points_on_forget,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *h)
{
    host = h;
    return &points_plugin;
}
