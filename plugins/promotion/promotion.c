/*
 * promotion — automatic discounts without a code (满减, percent off): on a
 * matching event with props.amount >= min_spend, record the discount the
 * order earns; on the full refund of such an order, reverse it and return
 * the money to the budget (spec sections 16 and 18, "Plugins of section
 * 16", "Groups and caps").
 *
 * What the campaign keeps, all through the host:
 *   counters  campaign-wide "spent" (discount money recorded, net of
 *             reversals), per user "applied" (applications ever)
 *   state     per buyer "o:<order_id>" = "<discount> <amount> <refunded>
 *             <reversed>" for each order it applied to (refunded: the
 *             amount refunded so far; reversed: 0 or 1)
 *
 * With a budget it publishes the gauges `budget` and `budget_left` (money
 * it may still record) for /metrics: on load and after each change.
 *
 * A capped emit (MKTD_CAPPED) counts nothing: the order is not remembered,
 * the budget and per_user_limit are not touched. An event excluded by the
 * campaign's group (MKTD_F_EXCLUDED) applies nothing; refunds are handled
 * whatever the flags say. Each decision is noted (note) for explanations.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/plugin.h>

#include "../common/discount.h"

static const mktd_host *host;

struct promotion {
    int64_t value;   /* > 0 for a fixed discount, else 0 */
    int64_t percent; /* 1..100 for a percentage, else 0 */
    int64_t min_spend;
    int64_t max_discount;   /* -1: none */
    int64_t budget;         /* -1: none */
    int64_t per_user_limit; /* -1: none */
};

/* What is kept for one order the campaign applied to. */
struct order_rec {
    int64_t discount;
    int64_t amount;
    int64_t refunded;
    int reversed;
};

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* floor(amount * percent / 100) for amount >= 0 and percent 1..100,
 * exact and without overflow: amount = 100q + r. */
static int64_t percent_of(int64_t amount, int64_t percent)
{
    return amount / 100 * percent + amount % 100 * percent / 100;
}

/* ---- init ---- */

static int promotion_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    static const char *const allowed[] = {"value",  "percent",        "min_spend", "max_discount",
                                          "budget", "per_user_limit", NULL};
    struct promotion *p;
    int rc = 0;

    *data = NULL;
    /* Without params every lookup is missing: the errors name the campaign. */
    if (params && host->node_kind(params) != MKTD_NODE_MAP)
        return host->config_error(ctx, params, "params must be a map");

    p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;

    if (host->check_keys(ctx, params, allowed) < 0)
        rc = -EINVAL;
    if (plug_value_or_percent(host, ctx, params, &p->value, &p->percent) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, params, "min_spend", 0, 0, 0, INT64_MAX, &p->min_spend) < 0)
        rc = -EINVAL;
    /* -1 (none) when absent; a default is not range-checked. */
    if (host->get_int(ctx, params, "max_discount", 0, -1, 1, INT64_MAX, &p->max_discount) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, params, "budget", 0, -1, 1, INT64_MAX, &p->budget) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, params, "per_user_limit", 0, -1, 1, INT64_MAX, &p->per_user_limit) < 0)
        rc = -EINVAL;

    if (rc < 0) {
        free(p);
        return rc;
    }
    *data = p;
    return 0;
}

static void promotion_destroy(void *data)
{
    free(data);
}

/* The budget gauges, given the money spent so far. A gauge is a figure for
 * operators, never a reason to fail an event: errors are ignored. */
static void publish_budget(mktd_ctx *ctx, const struct promotion *p, int64_t spent)
{
    if (p->budget < 0)
        return;
    (void)host->gauge_set(ctx, "budget", p->budget);
    (void)host->gauge_set(ctx, "budget_left", p->budget > spent ? p->budget - spent : 0);
}

static int promotion_on_load(mktd_ctx *ctx, void *data, int first)
{
    const struct promotion *p = data;
    (void)first;
    if (p)
        publish_budget(ctx, p, host->counter_get(ctx, NULL, "spent"));
    return 0;
}

/* ---- order records ---- */

/* "o:<order_id>", malloc'd (an order id of another event type than
 * order.paid may be of any length), or NULL. */
static char *order_key(const char *order_id)
{
    size_t n = strlen(order_id);
    char *key = malloc(n + 3);

    if (key) {
        memcpy(key, "o:", 2);
        memcpy(key + 2, order_id, n + 1);
    }
    return key;
}

/* 0 and *rec, -ENOENT, -EBADMSG for a record that does not read, or
 * another negative errno (a failed read fails the event: it is never taken
 * as absent). */
static int order_get(mktd_ctx *ctx, const char *user, const char *order_id, struct order_rec *rec)
{
    char *key = order_key(order_id);
    const char *val = NULL;
    int reversed, rc;

    if (!key)
        return -ENOMEM;
    rc = host->state_get(ctx, user, key, &val, NULL);
    free(key);
    if (rc < 0)
        return rc;
    if (!val || sscanf(val, "%" SCNd64 " %" SCNd64 " %" SCNd64 " %d", &rec->discount, &rec->amount,
                       &rec->refunded, &reversed) != 4)
        return -EBADMSG;
    rec->reversed = reversed != 0;
    return 0;
}

static int order_put(mktd_ctx *ctx, const char *user, const char *order_id,
                     const struct order_rec *rec)
{
    char val[96];
    char *key;
    int n, rc;

    n = snprintf(val, sizeof val, "%" PRId64 " %" PRId64 " %" PRId64 " %d", rec->discount,
                 rec->amount, rec->refunded, rec->reversed ? 1 : 0);
    if (n < 0 || (size_t)n >= sizeof val)
        return -EOVERFLOW;
    if (!(key = order_key(order_id)))
        return -ENOMEM;
    rc = host->state_put(ctx, user, key, val, (size_t)n);
    free(key);
    return rc;
}

/* ---- reversal ---- */

/* An `order.refunded` of an order this campaign applied to: a full refund
 * (no amount, or at least what is left of the order) reverses the
 * discount; a partial one is counted towards what is left. */
static int on_refund(mktd_ctx *ctx, const struct promotion *p, const mktd_event *ev)
{
    mktd_value order, amount;
    struct order_rec rec;
    int64_t left, spent;
    mktd_obj *o;
    int rc, full;

    if (host->prop(ctx, ev, "order_id", &order) != MKTD_T_STRING || !order.s[0])
        return 0;
    rc = order_get(ctx, ev->user, order.s, &rec);
    if (rc == -ENOENT) {
        host->note(ctx, "refund of order %s: not an order it applied to", order.s);
        return 0;
    }
    if (rc == -EBADMSG) {
        host->log(ctx, MKTD_LOG_WARN, "order %s has an unreadable record; refund ignored", order.s);
        return 0;
    }
    if (rc < 0)
        return rc;
    if (rec.reversed) {
        host->note(ctx, "refund of order %s: already reversed", order.s);
        return 0;
    }
    left = rec.amount - rec.refunded;
    if (left <= 0) {
        host->note(ctx, "refund of order %s: nothing left to refund", order.s);
        return 0;
    }
    switch (host->prop(ctx, ev, "amount", &amount)) {
    case MKTD_T_MISSING:
        full = 1;
        rec.refunded = rec.amount;
        break;
    case MKTD_T_INT:
        if (amount.i <= 0) {
            host->note(ctx, "refund of order %s: amount %" PRId64 " is not positive", order.s,
                       amount.i);
            return 0;
        }
        /* a refund larger than what is left counts as what is left */
        full = amount.i >= left;
        rec.refunded = full ? rec.amount : rec.refunded + amount.i;
        break;
    default: /* an internal event's; an input refund's amount is checked */
        host->note(ctx, "refund of order %s: amount is not an integer", order.s);
        return 0;
    }
    if (!full) {
        host->note(ctx,
                   "partial refund of order %s: %" PRId64 " of %" PRId64 " left, discount kept",
                   order.s, amount.i, left);
        return order_put(ctx, ev->user, order.s, &rec);
    }

    o = host->obj_new(ctx);
    if (!o)
        return -ENOMEM;
    host->obj_str(o, "order_id", order.s);
    host->obj_int(o, "discount", rec.discount);
    rc = host->emit(ctx, "promotion.reversed", ev->user, o);
    if (rc < 0)
        return rc;
    if (rc == MKTD_CAPPED) {
        /* as if not emitted: the order is refunded but not reversed, and
         * the budget gets nothing back */
        host->note(ctx, "promotion.reversed of order %s capped: discount not returned", order.s);
        return order_put(ctx, ev->user, order.s, &rec);
    }
    rec.reversed = 1;
    rc = order_put(ctx, ev->user, order.s, &rec);
    if (rc < 0)
        return rc;
    rc = host->counter_add(ctx, NULL, "spent", -rec.discount, -1, &spent);
    if (rc < 0)
        return rc;
    host->note(ctx, "full refund of order %s: discount %" PRId64 " reversed", order.s,
               rec.discount);
    publish_budget(ctx, p, spent);
    return 0;
}

/* ---- application ---- */

/* Cuts *discount to the budget left (noting it). 0 when nothing is left. */
static int cut_to_left(mktd_ctx *ctx, const struct promotion *p, int64_t *discount, int *budget_cut)
{
    int64_t left = p->budget - host->counter_get(ctx, NULL, "spent");
    if (left <= 0) {
        host->note(ctx, "budget spent");
        return 0;
    }
    if (*discount > left) {
        host->note(ctx, "budget_cut: discount %" PRId64 " cut to the %" PRId64 " left", *discount,
                   left);
        *discount = left;
        *budget_cut = 1;
    }
    return 1;
}

static int apply(mktd_ctx *ctx, const struct promotion *p, const mktd_event *ev)
{
    mktd_value amount, order;
    const char *order_id = NULL;
    struct order_rec rec;
    int64_t discount, spent = 0;
    int budget_cut = 0;
    mktd_obj *o;
    int rc;

    switch (host->prop(ctx, ev, "amount", &amount)) {
    case MKTD_T_INT:
        break;
    case MKTD_T_MISSING:
        host->note(ctx, "no amount");
        return 0;
    default:
        host->note(ctx, "amount is not an integer");
        return 0;
    }
    if (amount.i < 0) {
        host->note(ctx, "amount %" PRId64 " is negative", amount.i);
        return 0;
    }
    if (host->prop(ctx, ev, "order_id", &order) == MKTD_T_STRING && order.s[0]) {
        order_id = order.s;
        rc = order_get(ctx, ev->user, order_id, &rec);
        if (rc == 0 || rc == -EBADMSG) {
            host->note(ctx, "order %s already applied", order_id);
            return 0;
        }
        if (rc != -ENOENT)
            return rc;
    }
    if (amount.i < p->min_spend) {
        host->note(ctx, "below min_spend: %" PRId64 " < %" PRId64, amount.i, p->min_spend);
        return 0;
    }
    if (p->per_user_limit >= 0 &&
        host->counter_get(ctx, ev->user, "applied") >= p->per_user_limit) {
        host->note(ctx, "per_user_limit reached");
        return 0;
    }

    discount = p->percent > 0 ? percent_of(amount.i, p->percent) : p->value;
    if (p->max_discount >= 0)
        discount = min64(discount, p->max_discount);
    discount = min64(discount, amount.i);
    if (discount <= 0) {
        host->note(ctx, "zero discount on amount %" PRId64, amount.i);
        return 0;
    }
    if (p->budget >= 0 && !cut_to_left(ctx, p, &discount, &budget_cut))
        return 0;
    /* the money taken before the emit (kept with or without a budget: a
     * budget added later counts it). In cluster mode the pool the
     * partitions share may run out here (spec 17); what is left is then
     * exact. */
    rc = host->counter_add(ctx, NULL, "spent", discount, p->budget, &spent);
    if (rc > 0) {
        if (!cut_to_left(ctx, p, &discount, &budget_cut))
            return 0;
        rc = host->counter_add(ctx, NULL, "spent", discount, p->budget, &spent);
        if (rc > 0)
            return -EAGAIN;
    }
    if (rc < 0)
        return rc;

    o = host->obj_new(ctx);
    if (!o)
        return -ENOMEM;
    host->obj_int(o, "amount", amount.i);
    host->obj_int(o, "discount", discount);
    if (order_id)
        host->obj_str(o, "order_id", order_id);
    if (budget_cut)
        host->obj_json(o, "budget_cut", "true");
    rc = host->emit(ctx, "promotion.applied", ev->user, o);
    if (rc < 0)
        return rc;
    if (rc == MKTD_CAPPED) { /* a capped action counts nothing */
        host->note(ctx, "promotion.applied capped: nothing counted");
        rc = host->counter_add(ctx, NULL, "spent", -discount, -1, NULL);
        return rc < 0 ? rc : 0;
    }
    rc = host->counter_add(ctx, ev->user, "applied", 1, p->per_user_limit, NULL);
    if (rc < 0)
        return rc;
    if (rc > 0)
        return -EAGAIN;
    if (order_id) {
        rec.discount = discount;
        rec.amount = amount.i;
        rec.refunded = 0;
        rec.reversed = 0;
        rc = order_put(ctx, ev->user, order_id, &rec);
        if (rc < 0)
            return rc;
    }
    host->note(ctx, "discount %" PRId64 " on amount %" PRId64, discount, amount.i);
    publish_budget(ctx, p, spent);
    return 0;
}

static int promotion_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    const struct promotion *p = data;
    int rc;

    if (!p || !ev || !ev->type || !ev->user)
        return 0;
    if (ev->depth > 0 && ev->source) {
        const char *self = host->campaign_id(ctx);
        if (self && strcmp(ev->source, self) == 0)
            return 0; /* never our own actions */
    }
    /* Reversals first, whatever the flags say (spec 18: they ignore groups,
     * windows and `enabled`). */
    if (strcmp(ev->type, "order.refunded") == 0) {
        rc = on_refund(ctx, p, ev);
        if (rc < 0)
            return rc;
    }
    /* Excluded by its group (MKTD_F_EXCLUDED, MATCH clear): nothing is
     * applied or remembered, and nothing noted, so that the explanation
     * says `skipped` and who took the group. */
    if (flags & MKTD_F_MATCH)
        return apply(ctx, p, ev);
    return 0;
}

static const mktd_plugin promotion_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "promotion",
    .version = "1.0.0",
    .flags = MKTD_PLUGIN_WHEN_REQUIRED,
    .init = promotion_init,
    .destroy = promotion_destroy,
    .on_event = promotion_on_event,
    .on_timer = NULL,
    .on_load = promotion_on_load,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *h)
{
    host = h;
    return &promotion_plugin;
}
