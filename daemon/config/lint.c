/* Warnings about a valid config that will not do what it says (see lint.h). */
#include "config/lint.h"

#include <string.h>

#include "config/yaml.h"
#include "lib/log.h"

/* The input events the built-in plugins read, with the props they type
 * (spec sections 1 and 16): "name:i" an integer, "name:s" a string. */
static const struct {
    const char *type;
    const char *props[4];
} builtin_events[] = {
    {"user.signup", {"referrer:s"}},
    {"order.paid", {"order_id:s", "amount:i"}},
    {"order.refunded", {"order_id:s", "amount:i"}},
    {"coupon.used", {"code:s", "order_id:s", "amount:i"}},
    {"group.open", {"group_id:s", "product:s"}},
    {"group.join", {"group_id:s"}},
    {"points.redeem", {"points:i", "order_id:s"}},
    {"checkin", {NULL}},
};

/* The action kinds each built-in plugin records. */
static const struct {
    const char *plugin;
    const char *kinds[7];
} builtin_kinds[] = {
    {"coupon", {"coupon.issued", "coupon.redeemed", "coupon.rejected"}},
    {"referral",
     {"referral.bound", "referral.rejected", "referral.reward", "referral.commission",
      "referral.clawback"}},
    {"reactivation", {"reactivation.offer", "reactivation.holdout", "reactivation.converted"}},
    {"promotion", {"promotion.applied", "promotion.reversed"}},
    {"groupbuy", {"groupbuy.success", "groupbuy.expired", "groupbuy.rejected"}},
    {"points",
     {"points.earned", "points.redeemed", "points.rejected", "points.expired", "points.reversed",
      "tier.changed"}},
    {"checkin", {"checkin.reward"}},
};

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int builtin_plugin(const char *plugin)
{
    for (size_t i = 0; i < N(builtin_kinds); i++)
        if (strcmp(builtin_kinds[i].plugin, plugin) == 0)
            return (int)i;
    return -1;
}

/* Whether a campaign of the config records actions of this kind: a
 * built-in's own kinds; for another plugin, kinds named after it
 * ("<plugin>.<what>", the convention the SDK asks of authors). */
static int emitted(const struct config *cfg, const char *kind)
{
    for (size_t i = 0; i < cfg->n_campaigns; i++) {
        const char *p = cfg->campaigns[i].plugin;
        if (!p)
            continue;
        int b = builtin_plugin(p);
        if (b < 0) {
            size_t n = strlen(p);
            if (strncmp(kind, p, n) == 0 && kind[n] == '.')
                return 1;
            continue;
        }
        for (size_t k = 0; k < N(builtin_kinds[b].kinds) && builtin_kinds[b].kinds[k]; k++)
            if (strcmp(builtin_kinds[b].kinds[k], kind) == 0)
                return 1;
    }
    return 0;
}

static int builtin_event(const char *type)
{
    for (size_t i = 0; i < N(builtin_events); i++)
        if (strcmp(builtin_events[i].type, type) == 0)
            return (int)i;
    return -1;
}

/* Levenshtein distance, capped: enough to suggest "order.paid" for
 * "order.payed". */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 99;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* The closest known name to s within 3 edits: built-in event types and the
 * built-ins' kinds; NULL when none. */
static const char *nearest(const char *s)
{
    const char *best = NULL;
    size_t bd = 4;
    for (size_t i = 0; i < N(builtin_events); i++) {
        size_t d = distance(s, builtin_events[i].type);
        if (d < bd)
            bd = d, best = builtin_events[i].type;
    }
    for (size_t i = 0; i < N(builtin_kinds); i++)
        for (size_t k = 0; k < N(builtin_kinds[i].kinds) && builtin_kinds[i].kinds[k]; k++) {
            size_t d = distance(s, builtin_kinds[i].kinds[k]);
            if (d < bd)
                bd = d, best = builtin_kinds[i].kinds[k];
        }
    return best;
}

static void unknown_name(struct errs *w, const struct ynode *at, const char *what, const char *name,
                         int is_event)
{
    for (size_t i = 0; i < N(builtin_kinds); i++)
        for (size_t k = 0; k < N(builtin_kinds[i].kinds) && builtin_kinds[i].kinds[k]; k++)
            if (strcmp(builtin_kinds[i].kinds[k], name) == 0) {
                yerr(w, at, "warning: %s '%s' is recorded by the plugin %s, which no campaign uses",
                     what, name, builtin_kinds[i].plugin);
                return;
            }
    const char *near = nearest(name);
    const char *is = is_event ? "neither an event the built-in plugins use nor an action kind "
                                "of a configured plugin"
                              : "not an action kind of any configured plugin";
    if (near)
        yerr(w, at, "warning: %s '%s' is %s; did you mean '%s'?", what, name, is, near);
    else
        yerr(w, at, "warning: %s '%s' is %s", what, name, is);
}

/* The node of a string list's i-th item (the node itself for a scalar). */
static const struct ynode *item_node(const struct ynode *n, size_t i)
{
    if (!n)
        return NULL;
    if (n->kind == Y_SEQ)
        return i < n->n ? n->items[i] : n;
    return n;
}

/* 'i' or 's' for a field whose type is known, else 0. props.<name> is
 * typed when every type `when.event` names is a built-in event with that
 * prop. */
static char field_type(const struct campaign_cfg *cc, const struct cond *k)
{
    switch (k->field) {
    case F_USER_EVENTS:
    case F_USER_ORDERS:
    case F_USER_SPENT:
    case F_USER_FIRST_SEEN:
    case F_USER_LAST_SEEN:
    case F_USER_COUNT:
        return 'i';
    case F_TYPE:
    case F_USER_ID:
        return 's';
    case F_PROPS:
        break;
    }
    if (!cc->n_events)
        return 0;
    char t = 0;
    for (size_t i = 0; i < cc->n_events; i++) {
        int b = builtin_event(cc->events[i]);
        if (b < 0)
            return 0;
        char here = 0;
        for (size_t p = 0; p < N(builtin_events[b].props) && builtin_events[b].props[p]; p++) {
            const char *spec = builtin_events[b].props[p];
            size_t n = strlen(spec) - 2;
            if (strlen(k->arg) == n && strncmp(spec, k->arg, n) == 0)
                here = spec[n + 1];
        }
        if (!here || (t && here != t))
            return 0;
        t = here;
    }
    return t;
}

static const char *type_name(char t)
{
    return t == 'i' ? "an integer" : "a string";
}

/* One operand against the field's type. */
static void check_operand(struct errs *w, const struct ynode *at, const struct campaign_cfg *cc,
                          const struct cond *k, char t, const json_t *v)
{
    if (!((t == 'i' && json_is_string(v)) || (t == 's' && json_is_number(v)) || json_is_boolean(v)))
        return;
    const struct ynode *f = ynode_get(k->node, "field");
    const char *field = f && f->kind == Y_SCALAR ? f->str : "the field";
    if (json_is_string(v))
        yerr(w, at, "warning: campaign %s: %s is %s, so the string \"%s\" never matches it%s",
             cc->id, field, type_name(t), json_string_value(v),
             t == 'i' ? " (write the number without quotes)" : "");
    else
        yerr(w, at, "warning: campaign %s: %s is %s, so this value never matches it", cc->id, field,
             type_name(t));
}

static void check_conds(struct errs *w, const struct campaign_cfg *cc)
{
    for (size_t i = 0; i < cc->n_conds; i++) {
        const struct cond *k = &cc->conds[i];
        if (k->op == OP_EXISTS || !k->value)
            continue;
        char t = field_type(cc, k);
        if (!t)
            continue;
        const struct ynode *vn = ynode_get(k->node, "value");
        if (json_is_array(k->value)) {
            for (size_t j = 0; j < json_array_size(k->value); j++)
                check_operand(w, item_node(vn, j), cc, k, t, json_array_get(k->value, j));
        } else {
            check_operand(w, vn ? vn : k->node, cc, k, t, k->value);
        }
    }
}

void config_lint(const struct config *cfg, struct errs *warnings)
{
    for (size_t i = 0; i < cfg->n_campaigns; i++) {
        const struct campaign_cfg *cc = &cfg->campaigns[i];
        const struct ynode *ev = cc->when_node ? ynode_get(cc->when_node, "event") : NULL;
        for (size_t e = 0; e < cc->n_events; e++)
            if (builtin_event(cc->events[e]) < 0 && !emitted(cfg, cc->events[e]))
                unknown_name(warnings, item_node(ev, e), "when.event", cc->events[e], 1);
        check_conds(warnings, cc);
    }
    for (size_t i = 0; i < cfg->n_caps; i++) {
        const struct cap_cfg *cap = &cfg->caps[i];
        const struct ynode *kn = ynode_get(cap->node, "kinds");
        for (size_t k = 0; k < cap->n_kinds; k++)
            if (!emitted(cfg, cap->kinds[k]))
                unknown_name(warnings, item_node(kn, k), "caps: kind", cap->kinds[k], 0);
    }
}

void config_lint_log(const struct config *cfg)
{
    struct errs w = {0};
    config_lint(cfg, &w);
    for (size_t i = 0; i < w.n; i++)
        log_warn("%s", w.msg[i]);
    errs_free(&w);
}
