/*
 * points — 积分 / 会员: loyalty points per yuan paid, and member tiers.
 *
 * Events in:
 *   order.paid      {order_id, amount}  earns floor(amount * points_per_yuan
 *                                       / 100) points (amount in fen), once
 *                                       per order id, when the campaign
 *                                       matches (MKTD_F_MATCH)
 *   order.refunded  {order_id, amount?} takes back points in proportion to
 *                                       the amount refunded, when the
 *                                       campaign is active (MKTD_F_ACTIVE)
 * Actions out:
 *   points.earned   {order_id, points, total}
 *   points.tier     {tier, total}       one per tier threshold crossed
 *   points.revoked  {order_id, points, total}
 *
 * What the campaign keeps, all through the host:
 *   counter  per user "total"   the user's points
 *   counter  per user "tier"    how many tiers the user has reached (a tier
 *                               once reached is kept)
 *   state    campaign-wide "order:<order_id>" = "<paid> <points> <refunded>
 *            <revoked> <user>" (the user last: it may hold spaces)
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
#define ORDER_KEY_MAX 160

static const mktd_host *host;

struct tier {
    char name[MAX_TIER_NAME + 1];
    int64_t at; /* points needed */
};

struct points {
    int64_t per_yuan;
    size_t n_tiers;
    struct tier tiers[MAX_TIERS];
};

/* What is kept for one paid order. */
struct order_rec {
    int64_t paid;     /* amount paid, fen */
    int64_t points;   /* points it earned */
    int64_t refunded; /* amount refunded so far */
    int64_t revoked;  /* points taken back so far */
    const char *user; /* the buyer; points into the state value */
};

/* ---- arithmetic that never overflows ---- */

static int64_t sat_mul(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return (a < 0) != (b < 0) ? INT64_MIN : INT64_MAX;
    return r;
}

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b < 0 ? INT64_MIN : INT64_MAX;
    return r;
}

/* floor(amount * per_yuan / 100) for amount >= 0, saturating. */
static int64_t points_for(int64_t amount, int64_t per_yuan)
{
    return sat_add(sat_mul(amount / 100, per_yuan), (amount % 100) * per_yuan / 100);
}

/* floor(a * b / c) for 0 <= a, 0 <= b <= c, c > 0: at most a. */
static int64_t share_of(int64_t a, int64_t b, int64_t c)
{
    __extension__ typedef unsigned __int128 u128;
    return (int64_t)((u128)a * (u128)b / (u128)c);
}

/* ---- init ---- */

/* 1 when n is absent or a YAML null (`tiers:` or `tiers: ~`): the host's
 * getters count those as absent, and so does this plugin. */
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
    if (!name[0] || strlen(name) > MAX_TIER_NAME)
        return host->config_error(ctx, host->node_get(t, "name"), "name: 1 to %d bytes, got %zu",
                                  MAX_TIER_NAME, strlen(name));
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
        return host->config_error(ctx, list, "tiers: must be a list of {name, at}");
    n = host->node_len(list);
    if (n > MAX_TIERS)
        return host->config_error(ctx, list, "tiers: at most %d tiers, got %zu", MAX_TIERS, n);
    for (size_t i = 0; i < n; i++)
        if (parse_tier(ctx, host->node_at(list, i), p) < 0)
            rc = -EINVAL;
    return rc;
}

static int points_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    static const char *const allowed[] = {"points_per_yuan", "tiers", NULL};
    struct points *p;
    int rc = 0;

    *data = NULL;
    if (params && host->node_kind(params) != MKTD_NODE_MAP)
        return host->config_error(ctx, params, "params must be a map");
    p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    /* Report every problem, not just the first. */
    if (host->check_keys(ctx, params, allowed) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, params, "points_per_yuan", 0, 1, 1, 1000000, &p->per_yuan) < 0)
        rc = -EINVAL;
    if (parse_tiers(ctx, params, p) < 0)
        rc = -EINVAL;
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

/* ---- order records ---- */

static int order_key(char *buf, size_t size, const char *order_id)
{
    int n = snprintf(buf, size, "order:%s", order_id);
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* 0 and *rec, -ENOENT, or another negative errno. */
static int order_get(mktd_ctx *ctx, const char *order_id, struct order_rec *rec)
{
    char key[ORDER_KEY_MAX];
    const char *val = NULL;
    size_t len = 0;
    int used = 0, rc;

    if (order_key(key, sizeof key, order_id) < 0)
        return -ENAMETOOLONG;
    rc = host->state_get(ctx, NULL, key, &val, &len);
    if (rc < 0)
        return rc;
    if (sscanf(val, "%" SCNd64 " %" SCNd64 " %" SCNd64 " %" SCNd64 "%n", &rec->paid, &rec->points,
               &rec->refunded, &rec->revoked, &used) != 4 ||
        used <= 0 || (size_t)used >= len || val[used] != ' ')
        return -EBADMSG;
    rec->user = val + used + 1;
    return 0;
}

static int order_put(mktd_ctx *ctx, const char *order_id, const struct order_rec *rec)
{
    char key[ORDER_KEY_MAX], head[100];
    size_t hl, ul = strlen(rec->user);
    char *val;
    int rc;

    if (order_key(key, sizeof key, order_id) < 0)
        return -ENAMETOOLONG;
    snprintf(head, sizeof head, "%" PRId64 " %" PRId64 " %" PRId64 " %" PRId64 " ", rec->paid,
             rec->points, rec->refunded, rec->revoked);
    hl = strlen(head);
    val = malloc(hl + ul);
    if (!val)
        return -ENOMEM;
    memcpy(val, head, hl);
    memcpy(val + hl, rec->user, ul);
    rc = host->state_put(ctx, NULL, key, val, hl + ul);
    free(val);
    return rc;
}

/* ---- actions ---- */

static int emit_points(mktd_ctx *ctx, const char *kind, const char *user, const char *order_id,
                       int64_t points, int64_t total)
{
    mktd_obj *o = host->obj_new(ctx);
    if (!o)
        return -ENOMEM;
    host->obj_str(o, "order_id", order_id);
    host->obj_int(o, "points", points);
    host->obj_int(o, "total", total);
    return host->emit(ctx, kind, user, o);
}

/* One points.tier per threshold that `total` reaches and the user had not
 * reached before, lowest first. */
static int climb(mktd_ctx *ctx, const struct points *p, const char *user, int64_t total)
{
    int64_t reached = host->counter_get(ctx, user, "tier");

    for (size_t i = (size_t)(reached > 0 ? reached : 0); i < p->n_tiers; i++) {
        mktd_obj *o;
        int rc;

        if (total < p->tiers[i].at)
            break;
        rc = host->counter_add(ctx, user, "tier", 1, -1, NULL);
        if (rc < 0)
            return rc;
        o = host->obj_new(ctx);
        if (!o)
            return -ENOMEM;
        host->obj_str(o, "tier", p->tiers[i].name);
        host->obj_int(o, "total", total);
        rc = host->emit(ctx, "points.tier", user, o);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* ---- events ---- */

static int on_paid(mktd_ctx *ctx, const struct points *p, const mktd_event *ev)
{
    struct order_rec rec;
    mktd_value order, amount;
    int64_t total = 0;
    int rc;

    if (host->prop(ctx, ev, "order_id", &order) != MKTD_T_STRING ||
        host->prop(ctx, ev, "amount", &amount) != MKTD_T_INT || amount.i < 0)
        return 0; /* the daemon refuses such events; be safe anyway */
    rc = order_get(ctx, order.s, &rec);
    if (rc == 0 || rc == -EBADMSG || rc == -ENAMETOOLONG)
        return 0; /* paid before: an order earns once */
    if (rc != -ENOENT)
        return rc;

    rec.paid = amount.i;
    rec.points = points_for(amount.i, p->per_yuan);
    rec.refunded = 0;
    rec.revoked = 0;
    rec.user = ev->user;
    rc = order_put(ctx, order.s, &rec);
    if (rc < 0 || rec.points == 0)
        return rc;
    rc = host->counter_add(ctx, ev->user, "total", rec.points, -1, &total);
    if (rc < 0)
        return rc;
    rc = emit_points(ctx, "points.earned", ev->user, order.s, rec.points, total);
    if (rc < 0)
        return rc;
    return climb(ctx, p, ev->user, total);
}

static int on_refunded(mktd_ctx *ctx, const mktd_event *ev)
{
    struct order_rec rec;
    mktd_value order, amount;
    int64_t left, r, target, take, total = 0;
    int rc;

    if (host->prop(ctx, ev, "order_id", &order) != MKTD_T_STRING)
        return 0;
    rc = order_get(ctx, order.s, &rec);
    if (rc == -ENOENT || rc == -ENAMETOOLONG)
        return 0; /* not an order this campaign saw paid */
    if (rc == -EBADMSG) {
        host->log(ctx, MKTD_LOG_WARN, "order %s: unreadable record, refund ignored", order.s);
        return 0;
    }
    if (rc < 0)
        return rc;

    /* The amount refunded: props.amount, else what is left; never more
     * than what is left. */
    left = rec.paid - rec.refunded;
    r = host->prop(ctx, ev, "amount", &amount) == MKTD_T_INT && amount.i > 0 ? amount.i : left;
    if (r > left)
        r = left;
    if (r <= 0)
        return 0;
    rec.refunded += r;
    /* Revoked points follow the refunded share of the order, so that the
     * order's points are all taken back once it is refunded in full. */
    target = share_of(rec.points, rec.refunded, rec.paid);
    take = target - rec.revoked;
    rec.revoked = target;
    rc = order_put(ctx, order.s, &rec);
    if (rc < 0 || take <= 0)
        return rc;
    rc = host->counter_add(ctx, rec.user, "total", -take, -1, &total);
    if (rc < 0)
        return rc;
    return emit_points(ctx, "points.revoked", rec.user, order.s, take, total);
}

static int points_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    const struct points *p = data;

    /* Input events only: an action of another campaign is never an order. */
    if (!p || ev->depth > 0 || !ev->type || !ev->user)
        return 0;
    if (strcmp(ev->type, "order.paid") == 0 && (flags & MKTD_F_MATCH))
        return on_paid(ctx, p, ev);
    if (strcmp(ev->type, "order.refunded") == 0 && (flags & MKTD_F_ACTIVE))
        return on_refunded(ctx, ev);
    return 0;
}

static const mktd_plugin points_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "loyalty",
    .version = "1.0.0",
    .flags = 0, /* `when` is optional */
    .init = points_init,
    .destroy = points_destroy,
    .on_event = points_on_event,
    .on_timer = NULL,
    .on_load = NULL,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *h)
{
    host = h;
    return &points_plugin;
}
