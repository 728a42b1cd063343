/*
 * coupon — issue single-use coupon codes on matching events, and redeem them
 * on `coupon.used` (spec sections 3 and 9, "Coupon").
 *
 * What the campaign keeps, all through the host:
 *   unique key   ns "coupon", key = the code, owned by the issuing campaign
 *   state        campaign-wide "code:<code>" = "<redeemed> <expires_at>
 *                <min_spend> <owner user>" (the user last: it may hold spaces;
 *                redeemed 2: void, a code a cap kept out)
 *   counters     per user "issued" (coupons ever issued to the user),
 *                campaign-wide "budget" (coupons ever issued)
 *
 * on_forget gives the forgotten user's code records to the pseudonym (it
 * reads every code record of the campaign: forget is rare).
 *
 * With a budget it publishes the gauges `budget` and `budget_left` (coupons
 * it may still issue) for /metrics: on load and after each issue.
 *
 * In a dry run (is_dry) an issue claims no code and keeps no record: its
 * payload has "code": null. The counters still go up as in a real issue
 * (the host undoes them after the run), so a chain sees the same limits.
 * Each refusal, and each rejected code, is noted (note) for explanations.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/plugin.h>

#include "../common/discount.h"

#define COUPON_NS "coupon"
#define PREFIX_MAX 32
/* 13 characters of a 34-letter alphabet: 13 * log2(34) = 66.1 bits. */
#define CODE_CHARS 13
#define CLAIM_TRIES 16

static const char code_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ23456789";
#define ALPHABET_LEN 34
/* The largest multiple of 34 that fits in a byte: bytes at or above it are
 * drawn again, so that every character is equally likely. */
#define BYTE_LIMIT (256 - 256 % ALPHABET_LEN)

static const mktd_host *host;

struct coupon {
    int64_t value;   /* > 0 for a fixed discount, else 0 */
    int64_t percent; /* 1..100 for a percentage, else 0 */
    int64_t min_spend;
    int64_t valid_for; /* ms */
    int64_t per_user_limit;
    int64_t budget; /* -1: none */
    char prefix[PREFIX_MAX + 1];
};

/* What is kept for one issued code. */
/* redeemed: 0, 1, or REC_VOID for a code a cap kept out (never issued) */
#define REC_VOID 2
struct code_rec {
    int redeemed;
    int64_t expires_at;
    int64_t min_spend;
    const char *user; /* points into the state value */
};

static int64_t sat_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

/* ---- init ---- */

static int prefix_char_ok(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

static int parse_prefix(mktd_ctx *ctx, const mktd_node *params, struct coupon *c)
{
    const char *s = "";
    size_t len;

    if (host->get_str(ctx, params, "code_prefix", 0, "", &s) < 0)
        return -EINVAL;
    if (!s)
        s = "";
    len = strlen(s);
    if (len > PREFIX_MAX)
        return host->config_error(ctx, host->node_get(params, "code_prefix"),
                                  "code_prefix: at most %d characters, got %zu", PREFIX_MAX, len);
    for (size_t i = 0; i < len; i++) {
        if (!prefix_char_ok(s[i]))
            return host->config_error(ctx, host->node_get(params, "code_prefix"),
                                      "code_prefix: only A-Z, 0-9 and '-' are allowed, got '%s'",
                                      s);
    }
    memcpy(c->prefix, s, len + 1);
    return 0;
}

static int coupon_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    static const char *const allowed[] = {"value",          "percent", "min_spend",   "valid_for",
                                          "per_user_limit", "budget",  "code_prefix", NULL};
    struct coupon *c;
    int rc = 0;

    *data = NULL;
    /* Without params every lookup is missing: the errors name the campaign. */
    if (params && host->node_kind(params) != MKTD_NODE_MAP)
        return host->config_error(ctx, params, "params must be a map");

    c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;

    if (host->check_keys(ctx, params, allowed) < 0)
        rc = -EINVAL;
    if (plug_value_or_percent(host, ctx, params, &c->value, &c->percent) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, params, "min_spend", 0, 0, 0, INT64_MAX, &c->min_spend) < 0)
        rc = -EINVAL;
    if (host->get_duration(ctx, params, "valid_for", 1, 0, 1, INT64_MAX, &c->valid_for) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, params, "per_user_limit", 0, 1, 1, INT64_MAX, &c->per_user_limit) < 0)
        rc = -EINVAL;
    /* -1 (no budget) when absent; a given budget must be >= 1. */
    if (host->get_int(ctx, params, "budget", 0, -1, 1, INT64_MAX, &c->budget) < 0)
        rc = -EINVAL;
    if (parse_prefix(ctx, params, c) < 0)
        rc = -EINVAL;

    if (rc < 0) {
        free(c);
        return rc;
    }
    *data = c;
    return 0;
}

static void coupon_destroy(void *data)
{
    free(data);
}

/* The budget gauges, given the coupons issued so far. A gauge is a figure
 * for operators, never a reason to fail an event: errors are ignored. */
static void publish_budget(mktd_ctx *ctx, const struct coupon *c, int64_t spent)
{
    if (c->budget < 0)
        return;
    (void)host->gauge_set(ctx, "budget", c->budget);
    (void)host->gauge_set(ctx, "budget_left", c->budget > spent ? c->budget - spent : 0);
}

static int coupon_on_load(mktd_ctx *ctx, void *data, int first)
{
    const struct coupon *c = data;
    (void)first;
    if (c)
        publish_budget(ctx, c, host->counter_get(ctx, NULL, "budget"));
    return 0;
}

/* ---- code records ---- */

static int rec_key(char *buf, size_t size, const char *code)
{
    int n = snprintf(buf, size, "code:%s", code);
    return (n < 0 || (size_t)n >= size) ? -ENAMETOOLONG : 0;
}

/* 0 and *rec, -ENOENT, or another negative errno. */
static int rec_get(mktd_ctx *ctx, const char *code, struct code_rec *rec)
{
    char key[256];
    const char *val = NULL;
    size_t len = 0;
    int redeemed, used = 0;
    int64_t exp, min;
    int rc;

    if (rec_key(key, sizeof key, code) < 0)
        return -ENOENT;
    rc = host->state_get(ctx, NULL, key, &val, &len);
    if (rc < 0)
        return rc;
    /* The user follows the third number and one space, verbatim. */
    if (!val || sscanf(val, "%d %" SCNd64 " %" SCNd64 "%n", &redeemed, &exp, &min, &used) != 3 ||
        used <= 0 || (size_t)used >= len || val[used] != ' ')
        return -EBADMSG;
    rec->redeemed = redeemed;
    rec->expires_at = exp;
    rec->min_spend = min;
    rec->user = val + used + 1;
    return 0;
}

static int rec_put(mktd_ctx *ctx, const char *code, const struct code_rec *rec)
{
    char key[256];
    char *val = NULL;
    int n, rc;

    if (rec_key(key, sizeof key, code) < 0)
        return -ENAMETOOLONG;
    n = snprintf(NULL, 0, "%d %" PRId64 " %" PRId64 " %s", rec->redeemed, rec->expires_at,
                 rec->min_spend, rec->user);
    if (n < 0 || !(val = malloc((size_t)n + 1)))
        return -ENOMEM;
    snprintf(val, (size_t)n + 1, "%d %" PRId64 " %" PRId64 " %s", rec->redeemed, rec->expires_at,
             rec->min_spend, rec->user);
    rc = host->state_put(ctx, NULL, key, val, (size_t)n);
    free(val);
    return rc;
}

/* ---- redemption ---- */

static int reject(mktd_ctx *ctx, const mktd_event *ev, const char *code, const char *reason)
{
    host->note(ctx, "code %s rejected: %s", code, reason);
    mktd_obj *o = host->obj_new(ctx);
    if (!o)
        return -ENOMEM;
    host->obj_str(o, "code", code);
    host->obj_str(o, "reason", reason);
    return host->emit(ctx, "coupon.rejected", ev->user, o);
}

static int redeem(mktd_ctx *ctx, const mktd_event *ev, const char *code)
{
    struct code_rec rec;
    mktd_value amount, order;
    mktd_obj *o;
    int rc;

    rc = rec_get(ctx, code, &rec);
    if (rc == -ENOENT) {
        /* claimed by this campaign with no record here: in cluster mode,
         * issued in another partition, so to another user (spec 17) */
        host->note(ctx, "code %s was issued in another partition", code);
        return reject(ctx, ev, code, "not_owner");
    }
    if (rc == -EBADMSG) {
        host->log(ctx, MKTD_LOG_WARN, "code %s is claimed but has no usable record", code);
        return reject(ctx, ev, code, "unknown");
    }
    if (rc < 0)
        return rc;
    if (rec.redeemed == REC_VOID) /* kept out by a cap: never issued */
        return reject(ctx, ev, code, "unknown");

    if (strcmp(ev->user, rec.user) != 0)
        return reject(ctx, ev, code, "not_owner");
    if (ev->ts >= rec.expires_at)
        return reject(ctx, ev, code, "expired");
    if (rec.redeemed)
        return reject(ctx, ev, code, "used");
    if (host->prop(ctx, ev, "amount", &amount) == MKTD_T_INT && amount.i < rec.min_spend)
        return reject(ctx, ev, code, "min_spend");

    rec.redeemed = 1;
    rc = rec_put(ctx, code, &rec);
    if (rc < 0)
        return rc;
    o = host->obj_new(ctx);
    if (!o)
        return -ENOMEM;
    host->obj_str(o, "code", code);
    if (host->prop(ctx, ev, "order_id", &order) == MKTD_T_STRING)
        host->obj_str(o, "order_id", order.s);
    return host->emit(ctx, "coupon.redeemed", ev->user, o);
}

static int handle_used(mktd_ctx *ctx, const mktd_event *ev)
{
    mktd_value code;
    const char *owner = NULL;
    const char *self = host->campaign_id(ctx);
    int rc;

    if (host->prop(ctx, ev, "code", &code) != MKTD_T_STRING || !code.s || !code.s[0])
        return 0;
    rc = host->unique_owner(ctx, COUPON_NS, code.s, &owner);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    if (rc == 0 && owner && self && strcmp(owner, self) == 0)
        return redeem(ctx, ev, code.s);
    if ((rc == -ENOENT || !owner || !host->campaign_loaded(ctx, owner)) &&
        host->first_of_plugin(ctx))
        return reject(ctx, ev, code.s, "unknown");
    return 0;
}

/* ---- issue ---- */

/* prefix + CODE_CHARS characters of code_alphabet, each drawn uniformly:
 * one random byte per character, bytes >= BYTE_LIMIT drawn again. Only the
 * bytes still needed are asked for, so the host's stream maps to the code
 * one byte at a time. The bytes are the action's (random_for): in cluster
 * mode derived from it, so that a replayed partition issues the same
 * codes; each call draws new ones (a collision tries the next). */
static int make_code(mktd_ctx *ctx, const struct coupon *c, char *out, size_t size)
{
    size_t plen = strlen(c->prefix), n = 0;
    unsigned char buf[CODE_CHARS];

    if (plen + CODE_CHARS + 1 > size)
        return -ENAMETOOLONG;
    memcpy(out, c->prefix, plen);
    while (n < CODE_CHARS) {
        size_t want = CODE_CHARS - n;
        int rc = host->random_for(ctx, buf, want);
        if (rc < 0)
            return rc;
        for (size_t i = 0; i < want; i++) {
            if (buf[i] < BYTE_LIMIT)
                out[plen + n++] = code_alphabet[buf[i] % ALPHABET_LEN];
        }
    }
    out[plen + n] = '\0';
    return 0;
}

static int issue(mktd_ctx *ctx, const struct coupon *c, const mktd_event *ev)
{
    char code[PREFIX_MAX + CODE_CHARS + 1] = "";
    struct code_rec rec;
    int64_t now, spent;
    mktd_obj *o;
    int rc, tries;

    int dry = host->is_dry(ctx);

    if (c->budget >= 0 && host->counter_get(ctx, NULL, "budget") >= c->budget) {
        host->note(ctx, "budget spent");
        return 0;
    }
    /* the per-user limit checked and counted in one call (one lookup
     * fewer); what follows fails the whole event, which undoes it */
    rc = host->counter_add(ctx, ev->user, "issued", 1, c->per_user_limit, NULL);
    if (rc > 0)
        host->note(ctx, "per_user_limit reached");
    if (rc != 0)
        return rc < 0 ? rc : 0;

    for (tries = 0; !dry; tries++) {
        if (tries == CLAIM_TRIES)
            return -EEXIST;
        rc = make_code(ctx, c, code, sizeof code);
        if (rc < 0)
            return rc;
        rc = host->unique_claim(ctx, COUPON_NS, code);
        if (rc == 0)
            break;
        if (rc != -EEXIST)
            return rc;
    }

    rc = host->counter_add(ctx, NULL, "budget", 1, c->budget, &spent);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        /* in cluster mode, the pool the partitions share ran out under
         * this one (spec 17): as if the check above had said so (the code
         * claimed stays claimed, unused: it was never shown) */
        host->note(ctx, "budget spent");
        rc = host->counter_add(ctx, ev->user, "issued", -1, -1, NULL);
        return rc < 0 ? rc : 0;
    }
    publish_budget(ctx, c, spent);

    now = host->now(ctx);
    rec.redeemed = 0;
    rec.expires_at = sat_add(now, c->valid_for);
    rec.min_spend = c->min_spend;
    rec.user = ev->user;
    rc = dry ? 0 : rec_put(ctx, code, &rec);
    if (rc < 0)
        return rc;

    o = host->obj_new(ctx);
    if (!o)
        return -ENOMEM;
    if (dry)
        host->obj_json(o, "code", "null"); /* no code is claimed in a dry run */
    else
        host->obj_str(o, "code", code);
    if (c->percent > 0)
        host->obj_int(o, "percent", c->percent);
    else
        host->obj_int(o, "value", c->value);
    host->obj_int(o, "min_spend", c->min_spend);
    host->obj_int(o, "expires_at", rec.expires_at);
    rc = host->emit(ctx, "coupon.issued", ev->user, o);
    if (rc != MKTD_CAPPED)
        return rc;
    /* a cap kept it out: as if it had not been issued (its claimed code
     * stays claimed, its record void: it was never shown) */
    if ((rc = host->counter_add(ctx, ev->user, "issued", -1, -1, NULL)) < 0 ||
        (rc = host->counter_add(ctx, NULL, "budget", -1, -1, &spent)) < 0)
        return rc;
    publish_budget(ctx, c, spent);
    if (dry)
        return 0;
    rec.redeemed = REC_VOID;
    return rec_put(ctx, code, &rec);
}

static int coupon_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    const struct coupon *c = data;
    int rc;

    if (!c || !ev || !ev->type || !ev->user)
        return 0;
    if (ev->depth > 0 && ev->source) {
        const char *self = host->campaign_id(ctx);
        if (self && strcmp(ev->source, self) == 0)
            return 0; /* never our own actions */
    }
    /* Redemption first, whatever the flags say (spec 9, Coupon). */
    if (strcmp(ev->type, "coupon.used") == 0) {
        rc = handle_used(ctx, ev);
        if (rc < 0)
            return rc;
    }
    if (flags & MKTD_F_MATCH)
        return issue(ctx, c, ev);
    return 0;
}

/* ---- forget ---- */

struct forget_arg {
    mktd_ctx *ctx;
    const char *user, *pseudonym;
};

/* A code record owned by the forgotten user is owned by the pseudonym (so
 * the code stays unique and redeemed codes stay redeemed). */
static int forget_code(void *arg, const char *key, const char *val, size_t len)
{
    struct forget_arg *f = arg;
    struct code_rec rec;
    const char *code = key + 5; /* "code:" */
    (void)val, (void)len;
    if (rec_get(f->ctx, code, &rec) < 0 || strcmp(rec.user, f->user) != 0)
        return 0;
    rec.user = f->pseudonym;
    return rec_put(f->ctx, code, &rec);
}

static int coupon_on_forget(mktd_ctx *ctx, void *data, const char *user, const char *pseudonym)
{
    struct forget_arg f = {ctx, user, pseudonym};
    (void)data;
    if (!user || !pseudonym || !*user || !*pseudonym)
        return -EINVAL;
    return host->state_iter(ctx, NULL, "code:", forget_code, &f);
}

static const mktd_plugin coupon_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "coupon",
    .version = "1.0.0",
    .flags = MKTD_PLUGIN_WHEN_REQUIRED,
    .init = coupon_init,
    .destroy = coupon_destroy,
    .on_event = coupon_on_event,
    .on_timer = NULL,
    .on_load = coupon_on_load,
    .on_forget = coupon_on_forget,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *h)
{
    host = h;
    return &coupon_plugin;
}
