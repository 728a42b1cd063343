/* mktd report: per campaign, actions by kind per UTC day, coupons,
 * referrals and reactivation's offer against holdout (spec 13 and 18;
 * docs/reports.md). The figures come from store/report_q.c's aggregates
 * and lib/stats.c; the report is built once as a JSON tree, from which the
 * text and HTML forms are rendered. */
#define _GNU_SOURCE
#include "cmd/report.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "lib/stats.h"
#include "lib/util.h"
#include "store/report_q.h"
#include "store/store.h"

#define DAY_MS 86400000LL
#define MIN_USERS 30
#define SRM_ALPHA 0.001

/* ---- the model, filled by the queries ---- */

struct rcamp {
    char *id, *plugin;
    int in_config, holdout_pct; /* holdout_pct -1: unknown */
    json_t *kinds;              /* kind -> total in the period */
    json_t *days;               /* "YYYY-MM-DD" -> {kind -> n} */
    struct rq_issued iss;
    int64_t redeemed, value_redeemed;
    json_t *reasons[2]; /* coupon.rejected, referral.rejected: reason -> n */
    int64_t comm_n, comm, claw_n, claw, rew_n, rew_referrer, rew_referee, rew_other;
    int64_t n[2], x[2]; /* offer, holdout */
};

struct model {
    struct rcamp *c;
    size_t n, cap;
    const char *only; /* --campaign */
};

static struct rcamp *camp(struct model *m, const char *id)
{
    if (m->only && strcmp(id, m->only) != 0)
        return NULL;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->c[i].id, id) == 0)
            return &m->c[i];
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 8;
        m->c = xrealloc(m->c, m->cap * sizeof(*m->c));
    }
    struct rcamp *c = &m->c[m->n++];
    memset(c, 0, sizeof(*c));
    c->id = xstrdup(id);
    c->holdout_pct = -1;
    c->kinds = json_object();
    c->days = json_object();
    c->reasons[0] = json_object();
    c->reasons[1] = json_object();
    return c;
}

static void model_free(struct model *m)
{
    for (size_t i = 0; i < m->n; i++) {
        struct rcamp *c = &m->c[i];
        free(c->id);
        free(c->plugin);
        json_decref(c->kinds);
        json_decref(c->days);
        json_decref(c->reasons[0]);
        json_decref(c->reasons[1]);
    }
    free(m->c);
}

static void add_count(json_t *obj, const char *key, int64_t n)
{
    json_t *v = json_object_get(obj, key);
    json_object_set_new(obj, key, json_integer((v ? json_integer_value(v) : 0) + n));
}

static void day_name(int64_t day, char *buf, size_t len)
{
    char ts[40];
    rfc3339_format(day * DAY_MS, ts, sizeof(ts));
    snprintf(buf, len, "%.10s", ts);
}

static void on_daily(void *arg, const char *campaign, const char *kind, int64_t day, int64_t n)
{
    struct rcamp *c = camp(arg, campaign);
    if (!c)
        return;
    add_count(c->kinds, kind, n);
    char name[16];
    day_name(day, name, sizeof(name));
    json_t *d = json_object_get(c->days, name);
    if (!d) {
        d = json_object();
        json_object_set_new(c->days, name, d);
    }
    add_count(d, kind, n);
}

static void on_reason(void *arg, const char *campaign, const char *kind, const char *reason,
                      int64_t n)
{
    struct rcamp *c = camp(arg, campaign);
    if (c)
        add_count(c->reasons[strcmp(kind, "coupon.rejected") == 0 ? 0 : 1], reason, n);
}

static void on_issued(void *arg, const char *campaign, const struct rq_issued *is)
{
    struct rcamp *c = camp(arg, campaign);
    if (c)
        c->iss = *is;
}

static void on_redeemed(void *arg, const char *campaign, int64_t n, int64_t value)
{
    struct rcamp *c = camp(arg, campaign);
    if (c) {
        c->redeemed = n;
        c->value_redeemed = value;
    }
}

static void on_amount(void *arg, const char *campaign, const char *kind, const char *role,
                      int64_t n, int64_t amount)
{
    struct rcamp *c = camp(arg, campaign);
    if (!c)
        return;
    if (strcmp(kind, "referral.commission") == 0) {
        c->comm_n += n;
        c->comm += amount;
    } else if (strcmp(kind, "referral.clawback") == 0) {
        c->claw_n += n;
        c->claw += amount;
    } else {
        c->rew_n += n;
        if (strcmp(role, "referrer") == 0)
            c->rew_referrer += amount;
        else if (strcmp(role, "referee") == 0)
            c->rew_referee += amount;
        else
            c->rew_other += amount;
    }
}

static void on_react(void *arg, const char *campaign, const char *group, int64_t n, int64_t x)
{
    struct rcamp *c = camp(arg, campaign);
    int g = strcmp(group, "offer") == 0 ? 0 : strcmp(group, "holdout") == 0 ? 1 : -1;
    if (c && g >= 0) {
        c->n[g] = n;
        c->x[g] = x;
    }
}

static void on_seen(void *arg, const char *id, const char *plugin)
{
    struct model *m = arg;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->c[i].id, id) == 0 && !m->c[i].plugin)
            m->c[i].plugin = xstrdup(plugin);
}

/* The campaigns of a config, in its order, with reactivation's
 * holdout_percent (default 0). */
static void from_config(struct model *m, const struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_campaigns; i++) {
        const struct campaign_cfg *cc = &cfg->campaigns[i];
        struct rcamp *c = camp(m, cc->id);
        if (!c)
            continue;
        c->in_config = 1;
        free(c->plugin);
        c->plugin = xstrdup(cc->plugin);
        int64_t v = 0;
        const struct ynode *h = ynode_get(cc->params, "holdout_percent");
        if (!h || ynode_resolve(h, &v, NULL, NULL) != YS_INT)
            v = 0;
        c->holdout_pct = v >= 0 && v <= 100 ? (int)v : -1;
    }
}

/* A campaign the config does not name: its plugin by the kinds it
 * recorded, when the database does not say. */
static const char *plugin_by_kinds(const struct rcamp *c)
{
    static const char *const known[] = {"coupon", "referral", "reactivation"};
    const char *k;
    json_t *v;
    json_object_foreach(c->kinds, k, v)
    {
        for (size_t i = 0; i < 3; i++) {
            size_t l = strlen(known[i]);
            if (strncmp(k, known[i], l) == 0 && k[l] == '.')
                return known[i];
        }
    }
    return "";
}

/* ---- the JSON report ---- */

static json_t *real_or_null(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *interval(double lo, double hi)
{
    if (!isfinite(lo) || !isfinite(hi))
        return json_null();
    return json_pack("[oo]", json_real(lo), json_real(hi));
}

static json_t *sorted_days(json_t *days)
{
    const char **names = xcalloc(json_object_size(days) + 1, sizeof(*names));
    size_t n = 0;
    const char *k;
    json_t *v;
    json_object_foreach(days, k, v) names[n++] = k;
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && strcmp(names[j - 1], names[j]) > 0; j--) {
            const char *t = names[j];
            names[j] = names[j - 1];
            names[j - 1] = t;
        }
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(
            a, json_pack("{sssO}", "day", names[i], "actions", json_object_get(days, names[i])));
    free(names);
    return a;
}

static json_t *coupon_json(const struct rcamp *c)
{
    int64_t rejected = 0;
    const char *k;
    json_t *v;
    json_object_foreach(c->reasons[0], k, v) rejected += json_integer_value(v);
    json_t *o = json_object();
    json_object_set_new(o, "issued", json_integer(c->iss.issued));
    json_object_set_new(o, "issued_percent", json_integer(c->iss.percent));
    json_object_set_new(o, "value_issued", json_integer(c->iss.value));
    json_object_set_new(o, "redeemed", json_integer(c->redeemed));
    json_object_set_new(o, "value_redeemed", json_integer(c->value_redeemed));
    json_object_set_new(o, "issued_redeemed", json_integer(c->iss.redeemed));
    json_object_set_new(o, "redemption_rate",
                        c->iss.issued ? json_real((double)c->iss.redeemed / (double)c->iss.issued)
                                      : json_null());
    json_object_set_new(o, "rejected", json_integer(rejected));
    json_object_set(o, "rejected_by_reason", c->reasons[0]);
    return o;
}

static json_t *referral_json(const struct rcamp *c)
{
    int64_t rejected = 0;
    const char *k;
    json_t *v;
    json_object_foreach(c->reasons[1], k, v) rejected += json_integer_value(v);
    json_t *bound = json_object_get(c->kinds, "referral.bound");
    json_t *o = json_object();
    json_object_set_new(o, "bound", json_integer(bound ? json_integer_value(bound) : 0));
    json_object_set_new(o, "rejected", json_integer(rejected));
    json_object_set(o, "rejected_by_reason", c->reasons[1]);
    json_object_set_new(o, "commissions", json_integer(c->comm_n));
    json_object_set_new(o, "commission_paid", json_integer(c->comm));
    json_object_set_new(o, "clawbacks", json_integer(c->claw_n));
    json_object_set_new(o, "clawed_back", json_integer(c->claw));
    json_object_set_new(o, "commission_net", json_integer(c->comm - c->claw));
    json_object_set_new(o, "rewards", json_integer(c->rew_n));
    json_object_set_new(o, "reward_paid",
                        json_integer(c->rew_referrer + c->rew_referee + c->rew_other));
    json_object_set_new(o, "reward_referrer", json_integer(c->rew_referrer));
    json_object_set_new(o, "reward_referee", json_integer(c->rew_referee));
    return o;
}

static json_t *group_json(int64_t n, int64_t x)
{
    json_t *o = json_pack("{sIsI}", "n", (json_int_t)n, "x", (json_int_t)x);
    if (n == 0) {
        json_object_set_new(o, "rate", json_null());
        json_object_set_new(o, "ci", json_null());
        return o;
    }
    double p = (double)x / (double)n;
    json_object_set_new(o, "rate", json_real(p));
    if (n >= 2) {
        /* the group's own interval: p +- t(0.975, n - 1) s / sqrt(n) */
        double s = sqrt(p * (1 - p) * (double)n / (double)(n - 1));
        double h = stats_t_quantile(0.975, (double)(n - 1)) * s / sqrt((double)n);
        json_object_set_new(o, "ci",
                            interval(fmax(0, p - h), fmin(1, p + h))); /* a rate's bounds */
    } else {
        json_object_set_new(o, "ci", json_null());
    }
    return o;
}

static json_t *reactivation_json(const struct rcamp *c)
{
    static const char *const names[2] = {"offer", "holdout"};
    json_t *o = json_object();
    json_object_set_new(o, "offer", group_json(c->n[0], c->x[0]));
    json_object_set_new(o, "holdout", group_json(c->n[1], c->x[1]));
    json_object_set_new(o, "holdout_percent",
                        c->holdout_pct >= 0 ? json_integer(c->holdout_pct) : json_null());
    /* not enough data: a group under 30 users, without a conversion, or
     * with no spread (everyone converted) */
    char why[160] = "";
    for (int g = 0; g < 2 && !why[0]; g++) {
        if (c->n[g] < MIN_USERS)
            snprintf(why, sizeof(why), "%s has %lld users (%d needed)", names[g],
                     (long long)c->n[g], MIN_USERS);
        else if (c->x[g] == 0)
            snprintf(why, sizeof(why), "%s has no conversion", names[g]);
        else if (c->x[g] == c->n[g])
            snprintf(why, sizeof(why), "%s has no spread (every user converted)", names[g]);
    }
    struct stats_welch w;
    if (!why[0] && stats_welch_binary(c->x[0], c->n[0], c->x[1], c->n[1], 0.05, &w) < 0)
        snprintf(why, sizeof(why), "no spread");
    json_object_set_new(o, "enough_data", json_boolean(!why[0]));
    json_object_set_new(o, "note", why[0] ? json_string(why) : json_null());
    if (!why[0]) {
        json_t *l = json_object();
        json_object_set_new(l, "absolute", json_real(w.diff));
        json_object_set_new(l, "absolute_ci", interval(w.lo, w.hi));
        json_object_set_new(l, "relative", real_or_null(w.rel));
        json_object_set_new(l, "relative_ci", interval(w.rel_lo, w.rel_hi));
        json_object_set_new(l, "se", json_real(w.se));
        json_object_set_new(l, "df", json_real(w.df));
        json_object_set_new(l, "t", json_real(w.t));
        json_object_set_new(l, "p_value", json_real(w.p));
        json_object_set_new(l, "chance_to_beat", json_real(w.beat));
        json_object_set_new(o, "lift", l);
    } else {
        json_object_set_new(o, "lift", json_null());
    }
    double chi2, p;
    if (c->holdout_pct > 0 && c->holdout_pct < 100 &&
        stats_srm(c->n[0], c->n[1], c->holdout_pct / 100.0, &chi2, &p) == 0) {
        int64_t all = c->n[0] + c->n[1];
        json_object_set_new(o, "srm",
                            json_pack("{sfsfsfsfsb}", "expected_holdout", c->holdout_pct / 100.0,
                                      "observed_holdout", (double)c->n[1] / (double)all, "chi2",
                                      chi2, "p_value", p, "flagged", p < SRM_ALPHA));
    } else {
        json_object_set_new(o, "srm", json_null());
    }
    return o;
}

static json_t *campaign_json(const struct rcamp *c)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(c->id));
    json_object_set_new(o, "plugin", json_string(c->plugin ? c->plugin : ""));
    json_object_set(o, "actions", c->kinds);
    json_object_set_new(o, "days", sorted_days(c->days));
    const char *p = c->plugin ? c->plugin : "";
    if (strcmp(p, "coupon") == 0)
        json_object_set_new(o, "coupon", coupon_json(c));
    else if (strcmp(p, "referral") == 0)
        json_object_set_new(o, "referral", referral_json(c));
    else if (strcmp(p, "reactivation") == 0)
        json_object_set_new(o, "reactivation", reactivation_json(c));
    return o;
}

/* Sorts each campaign's kinds by name (the queries' order is SQLite's). */
static json_t *sorted_object(json_t *obj)
{
    size_t n = json_object_size(obj);
    const char **keys = xcalloc(n + 1, sizeof(*keys));
    size_t i = 0;
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) keys[i++] = k;
    for (size_t a = 1; a < n; a++)
        for (size_t b = a; b > 0 && strcmp(keys[b - 1], keys[b]) > 0; b--) {
            const char *t = keys[b];
            keys[b] = keys[b - 1];
            keys[b - 1] = t;
        }
    json_t *out = json_object();
    for (i = 0; i < n; i++)
        json_object_set(out, keys[i], json_object_get(obj, keys[i]));
    free(keys);
    return out;
}

json_t *report_build(const struct report_opts *o, char *err, size_t errlen)
{
    struct config *cfg = NULL;
    const char *db = o->db_path;
    if (o->config_path) {
        struct errs errs = {0};
        cfg = config_load(o->config_path, &errs);
        if (!cfg) {
            char *msg = errs_join(&errs);
            snprintf(err, errlen, "%s", msg);
            free(msg);
            errs_free(&errs);
            return NULL;
        }
        errs_free(&errs);
        if (!db)
            db = cfg->database;
    }
    if (!db)
        db = "var/mktd.db";
    struct store *st;
    if (store_open_readonly(db, &st, err, errlen) < 0) {
        config_free(cfg);
        return NULL;
    }
    struct model m = {.only = o->campaign};
    struct rq_range r = {o->since, o->until, o->campaign};
    if (!cfg) {
        /* the config live at the period's end, as the database recorded it */
        char *text = NULL, *path = NULL;
        size_t len = 0;
        if (rq_config_at(st, o->until, &text, &len, &path) == 0) {
            struct errs errs = {0};
            cfg = config_load_string(path, text, len, &errs);
            errs_free(&errs);
        }
        free(text);
        free(path);
    }
    if (cfg)
        from_config(&m, cfg);
    config_free(cfg);
    int rc = rq_daily(st, &r, on_daily, &m);
    if (rc == 0)
        rc = rq_reasons(st, &r, on_reason, &m);
    if (rc == 0)
        rc = rq_coupons_issued(st, &r, on_issued, &m);
    if (rc == 0)
        rc = rq_coupons_redeemed(st, &r, on_redeemed, &m);
    if (rc == 0)
        rc = rq_amounts(st, &r, on_amount, &m);
    if (rc == 0)
        rc = rq_reactivation(st, &r, on_react, &m);
    if (rc == 0)
        rc = rq_campaigns(st, on_seen, &m);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", db, store_errmsg(st));
        store_close(st);
        model_free(&m);
        return NULL;
    }
    store_close(st);
    if (o->campaign && m.n == 0)
        camp(&m, o->campaign);
    json_t *out = json_object();
    json_object_set_new(out, "since", o->since > 0 ? json_integer(o->since) : json_null());
    json_object_set_new(out, "until", o->until < INT64_MAX ? json_integer(o->until) : json_null());
    json_t *arr = json_array();
    /* the config's campaigns in its order, then the others by id */
    for (int pass = 0; pass < 2; pass++) {
        size_t start = json_array_size(arr);
        for (size_t i = 0; i < m.n; i++) {
            struct rcamp *c = &m.c[i];
            if (c->in_config != !pass)
                continue;
            if (!c->plugin)
                c->plugin = xstrdup(plugin_by_kinds(c));
            json_t *sk = sorted_object(c->kinds);
            json_decref(c->kinds);
            c->kinds = sk;
            json_array_append_new(arr, campaign_json(c));
        }
        if (pass == 1) {
            size_t n = json_array_size(arr) - start;
            for (size_t a = 1; a < n; a++)
                for (size_t b = a; b > 0; b--) {
                    json_t *x = json_array_get(arr, start + b - 1),
                           *y = json_array_get(arr, start + b);
                    if (strcmp(json_string_value(json_object_get(x, "id")),
                               json_string_value(json_object_get(y, "id"))) <= 0)
                        break;
                    json_incref(x);
                    json_array_set(arr, start + b - 1, y);
                    json_array_set_new(arr, start + b, x);
                }
        }
    }
    json_object_set_new(out, "campaigns", arr);
    model_free(&m);
    return out;
}

/* ---- text ---- */

static int64_t ival(json_t *o, const char *k)
{
    return (int64_t)json_integer_value(json_object_get(o, k));
}

static double rval(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return v && json_is_number(v) ? json_number_value(v) : NAN;
}

static void period_text(json_t *rep, struct sbuf *b)
{
    char a[40], z[40];
    json_t *s = json_object_get(rep, "since"), *u = json_object_get(rep, "until");
    if (json_is_integer(s))
        rfc3339_format(json_integer_value(s), a, sizeof(a));
    else
        snprintf(a, sizeof(a), "the beginning");
    if (json_is_integer(u))
        rfc3339_format(json_integer_value(u), z, sizeof(z));
    else
        snprintf(z, sizeof(z), "now");
    sb_fmt(b, "from %s until %s (days are UTC)", a, z);
}

static void reasons_text(json_t *by, struct sbuf *b)
{
    if (!json_object_size(by))
        return;
    sb_str(b, " (");
    const char *k;
    json_t *v;
    int first = 1;
    json_object_foreach(by, k, v)
    {
        sb_fmt(b, "%s%s %lld", first ? "" : ", ", k, (long long)json_integer_value(v));
        first = 0;
    }
    sb_str(b, ")");
}

static void pct(struct sbuf *b, double v)
{
    if (isfinite(v))
        sb_fmt(b, "%.2f%%", 100 * v);
    else
        sb_str(b, "-");
}

static void text_reactivation(json_t *r, struct sbuf *b)
{
    sb_str(b, "  reactivation:   users  converted  rate     95% CI\n");
    static const char *const g[2] = {"offer", "holdout"};
    for (int i = 0; i < 2; i++) {
        json_t *o = json_object_get(r, g[i]);
        sb_fmt(b, "    %-12s %7lld  %9lld  ", g[i], (long long)ival(o, "n"),
               (long long)ival(o, "x"));
        size_t at = b->len;
        pct(b, rval(o, "rate"));
        sb_fmt(b, "%*s", (int)(9 - (b->len - at)) > 0 ? (int)(9 - (b->len - at)) : 1, "");
        json_t *ci = json_object_get(o, "ci");
        if (json_is_array(ci)) {
            pct(b, json_number_value(json_array_get(ci, 0)));
            sb_str(b, " .. ");
            pct(b, json_number_value(json_array_get(ci, 1)));
        }
        sb_str(b, "\n");
    }
    json_t *l = json_object_get(r, "lift");
    if (json_is_object(l)) {
        json_t *ci = json_object_get(l, "absolute_ci"), *rci = json_object_get(l, "relative_ci");
        sb_fmt(b, "    lift: %+.2f points (95%% CI %+.2f .. %+.2f)", 100 * rval(l, "absolute"),
               100 * json_number_value(json_array_get(ci, 0)),
               100 * json_number_value(json_array_get(ci, 1)));
        if (json_is_array(rci))
            sb_fmt(b, ", relative %+.1f%% (95%% CI %+.1f%% .. %+.1f%%)", 100 * rval(l, "relative"),
                   100 * json_number_value(json_array_get(rci, 0)),
                   100 * json_number_value(json_array_get(rci, 1)));
        sb_fmt(b, "\n    p-value %.4g (Welch t %.3f, df %.1f), chance to beat holdout ",
               rval(l, "p_value"), rval(l, "t"), rval(l, "df"));
        pct(b, rval(l, "chance_to_beat"));
        sb_str(b, "\n");
    } else {
        sb_fmt(b, "    not enough data: %s\n", json_string_value(json_object_get(r, "note")));
    }
    json_t *srm = json_object_get(r, "srm");
    if (json_is_object(srm)) {
        sb_str(b, "    sample ratio: holdout ");
        pct(b, rval(srm, "observed_holdout"));
        sb_str(b, " of users, ");
        pct(b, rval(srm, "expected_holdout"));
        sb_fmt(b, " expected: chi-square %.2f, p %.4g: %s\n", rval(srm, "chi2"),
               rval(srm, "p_value"),
               json_is_true(json_object_get(srm, "flagged"))
                   ? "MISMATCH (p < 0.001): the groups are not comparable"
                   : "ok");
    } else {
        json_t *h = json_object_get(r, "holdout_percent");
        sb_fmt(b, "    sample ratio: not checked (%s)\n",
               json_is_integer(h) ? "no holdout or no users" : "holdout_percent unknown");
    }
}

void report_text(json_t *rep, struct sbuf *b)
{
    sb_str(b, "mktd report ");
    period_text(rep, b);
    sb_str(b, "\n");
    json_t *arr = json_object_get(rep, "campaigns");
    if (!json_array_size(arr))
        sb_str(b, "\nno campaigns\n");
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c)
    {
        const char *plugin = json_string_value(json_object_get(c, "plugin"));
        sb_fmt(b, "\ncampaign %s (%s)\n", json_string_value(json_object_get(c, "id")),
               plugin && *plugin ? plugin : "unknown plugin");
        json_t *days = json_object_get(c, "days"), *totals = json_object_get(c, "actions");
        if (!json_array_size(days)) {
            sb_str(b, "  no actions in the period\n");
        } else {
            sb_str(b, "  actions by day:\n");
            size_t j;
            json_t *d;
            json_array_foreach(days, j, d)
            {
                sb_fmt(b, "    %s ", json_string_value(json_object_get(d, "day")));
                const char *k;
                json_t *v;
                json_object_foreach(json_object_get(d, "actions"), k, v)
                    sb_fmt(b, " %s %lld", k, (long long)json_integer_value(v));
                sb_str(b, "\n");
            }
            sb_str(b, "    total      ");
            const char *k;
            json_t *v;
            json_object_foreach(totals, k, v)
                sb_fmt(b, " %s %lld", k, (long long)json_integer_value(v));
            sb_str(b, "\n");
        }
        json_t *cp = json_object_get(c, "coupon");
        if (cp) {
            sb_fmt(b, "  coupons: issued %lld (value %lld", (long long)ival(cp, "issued"),
                   (long long)ival(cp, "value_issued"));
            if (ival(cp, "issued_percent"))
                sb_fmt(b, "; %lld percent coupons", (long long)ival(cp, "issued_percent"));
            sb_fmt(b, "), redeemed %lld (value %lld), rejected %lld",
                   (long long)ival(cp, "redeemed"), (long long)ival(cp, "value_redeemed"),
                   (long long)ival(cp, "rejected"));
            reasons_text(json_object_get(cp, "rejected_by_reason"), b);
            sb_str(b, "\n  redemption rate ");
            pct(b, rval(cp, "redemption_rate"));
            sb_fmt(b, " (%lld of the %lld issued in the period)\n",
                   (long long)ival(cp, "issued_redeemed"), (long long)ival(cp, "issued"));
        }
        json_t *rf = json_object_get(c, "referral");
        if (rf) {
            sb_fmt(b, "  referrals: bound %lld, rejected %lld", (long long)ival(rf, "bound"),
                   (long long)ival(rf, "rejected"));
            reasons_text(json_object_get(rf, "rejected_by_reason"), b);
            sb_fmt(b,
                   "\n  commission paid %lld (%lld actions), clawed back %lld (%lld actions), "
                   "net %lld\n  rewards %lld (%lld actions: referrers %lld, referees %lld)\n",
                   (long long)ival(rf, "commission_paid"), (long long)ival(rf, "commissions"),
                   (long long)ival(rf, "clawed_back"), (long long)ival(rf, "clawbacks"),
                   (long long)ival(rf, "commission_net"), (long long)ival(rf, "reward_paid"),
                   (long long)ival(rf, "rewards"), (long long)ival(rf, "reward_referrer"),
                   (long long)ival(rf, "reward_referee"));
        }
        json_t *ra = json_object_get(c, "reactivation");
        if (ra)
            text_reactivation(ra, b);
    }
}

/* ---- HTML ---- */

static void html_esc(struct sbuf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<':
            sb_str(b, "&lt;");
            break;
        case '>':
            sb_str(b, "&gt;");
            break;
        case '&':
            sb_str(b, "&amp;");
            break;
        case '"':
            sb_str(b, "&quot;");
            break;
        case '\'':
            sb_str(b, "&#39;");
            break;
        default:
            sb_add(b, s, 1);
        }
    }
}

static const char *const palette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                      "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
#define N_PALETTE (sizeof(palette) / sizeof(palette[0]))

/* Stacked bars: one per day, a colour per kind, with a legend. */
static void svg_days(struct sbuf *b, json_t *c)
{
    json_t *days = json_object_get(c, "days"), *totals = json_object_get(c, "actions");
    size_t nd = json_array_size(days), nk = json_object_size(totals);
    if (!nd)
        return;
    int64_t top = 1;
    size_t i;
    json_t *d;
    json_array_foreach(days, i, d)
    {
        int64_t sum = 0;
        const char *k;
        json_t *v;
        json_object_foreach(json_object_get(d, "actions"), k, v) sum += json_integer_value(v);
        if (sum > top)
            top = sum;
    }
    const int left = 50, plot_h = 160, bottom = 40, top_pad = 10;
    int bar = nd > 60 ? 6 : nd > 20 ? 12 : 28, gap = bar / 3 + 2;
    int plot_w = (int)nd * (bar + gap) + gap;
    int legend_h = (int)nk * 16 + 8;
    int w = left + plot_w + 20, h = top_pad + plot_h + bottom + legend_h;
    {
        /* wide enough for the legend's longest line ("kind (count)"), at
         * about 7 px a character of the 11 px legend font */
        const char *k;
        json_t *v;
        json_object_foreach(totals, k, v)
        {
            char n[32];
            int len = (int)strlen(k) +
                      snprintf(n, sizeof(n), " (%lld)", (long long)json_integer_value(v));
            if (left + 16 + 7 * len + 10 > w)
                w = left + 16 + 7 * len + 10;
        }
    }
    sb_fmt(b,
           "<svg class=\"chart days\" width=\"%d\" "
           "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\"><title>Actions per day</title>\n",
           w, h, w, h);
    int y0 = top_pad + plot_h;
    sb_fmt(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", left, y0,
           left + plot_w, y0);
    sb_fmt(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", left, top_pad,
           left, y0);
    sb_fmt(b, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"end\">%lld</text>\n", left - 4,
           top_pad + 4, (long long)top);
    sb_fmt(b, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"end\">0</text>\n", left - 4,
           y0 + 4);
    json_array_foreach(days, i, d)
    {
        int x = left + gap + (int)i * (bar + gap);
        double y = y0;
        size_t ki = 0;
        const char *k;
        json_t *v;
        json_object_foreach(totals, k, v)
        {
            json_t *n = json_object_get(json_object_get(d, "actions"), k);
            if (n) {
                double hh = (double)json_integer_value(n) * plot_h / (double)top;
                y -= hh;
                sb_fmt(b,
                       "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\">"
                       "<title>",
                       x, y, bar, hh, palette[ki % N_PALETTE]);
                html_esc(b, json_string_value(json_object_get(d, "day")));
                sb_str(b, " ");
                html_esc(b, k);
                sb_fmt(b, ": %lld</title></rect>\n", (long long)json_integer_value(n));
            }
            ki++;
        }
        if (nd <= 20 || i % (nd / 10 + 1) == 0) {
            sb_fmt(b,
                   "<text x=\"%d\" y=\"%d\" class=\"tick\" transform=\"rotate(-35 %d %d)\" "
                   "text-anchor=\"end\">",
                   x + bar / 2, y0 + 14, x + bar / 2, y0 + 14);
            html_esc(b, json_string_value(json_object_get(d, "day")) + 5);
            sb_str(b, "</text>\n");
        }
    }
    size_t ki = 0;
    const char *k;
    json_t *v;
    json_object_foreach(totals, k, v)
    {
        int y = y0 + bottom + (int)ki * 16;
        sb_fmt(b, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>", left, y,
               palette[ki % N_PALETTE]);
        sb_fmt(b, "<text x=\"%d\" y=\"%d\" class=\"legend\">", left + 16, y + 9);
        html_esc(b, k);
        sb_fmt(b, " (%lld)</text>\n", (long long)json_integer_value(v));
        ki++;
    }
    sb_str(b, "</svg>\n");
}

/* Offer and holdout conversion rates, each with its 95 % interval. */
static void svg_rates(struct sbuf *b, json_t *r)
{
    static const char *const g[2] = {"offer", "holdout"};
    double top = 0;
    for (int i = 0; i < 2; i++) {
        json_t *o = json_object_get(r, g[i]);
        json_t *ci = json_object_get(o, "ci");
        double v = json_is_array(ci) ? json_number_value(json_array_get(ci, 1)) : rval(o, "rate");
        if (isfinite(v) && v > top)
            top = v;
    }
    if (!(top > 0))
        top = 1;
    top = fmin(1.0, top * 1.1);
    const int left = 50, plot_h = 160, top_pad = 10, bar = 60, gap = 40;
    int w = left + 2 * (bar + gap) + gap, h = top_pad + plot_h + 30, y0 = top_pad + plot_h;
    sb_fmt(b,
           "<svg class=\"chart rates\" width=\"%d\" "
           "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\"><title>Conversion rate by group, "
           "95%% CI</title>\n",
           w, h, w, h);
    sb_fmt(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", left, y0, w - 10,
           y0);
    sb_fmt(b, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", left, top_pad,
           left, y0);
    sb_fmt(b, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"end\">%.1f%%</text>\n",
           left - 4, top_pad + 4, 100 * top);
    sb_fmt(b, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"end\">0%%</text>\n", left - 4,
           y0 + 4);
    for (int i = 0; i < 2; i++) {
        json_t *o = json_object_get(r, g[i]);
        double p = rval(o, "rate");
        int x = left + gap + i * (bar + gap);
        if (isfinite(p)) {
            double hh = p * plot_h / top;
            sb_fmt(b,
                   "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\">"
                   "<title>%s: %.2f%%</title></rect>\n",
                   x, y0 - hh, bar, hh, palette[i], g[i], 100 * p);
            json_t *ci = json_object_get(o, "ci");
            if (json_is_array(ci)) {
                double lo = fmax(0, json_number_value(json_array_get(ci, 0)));
                double hi = fmin(top, json_number_value(json_array_get(ci, 1)));
                double ylo = y0 - lo * plot_h / top, yhi = y0 - hi * plot_h / top;
                int cx = x + bar / 2;
                sb_fmt(b,
                       "<g class=\"ci\"><line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>"
                       "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>"
                       "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/></g>\n",
                       cx, ylo, cx, yhi, cx - 8, ylo, cx + 8, ylo, cx - 8, yhi, cx + 8, yhi);
            }
        }
        sb_fmt(b, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">%s</text>\n",
               x + bar / 2, y0 + 16, g[i]);
    }
    sb_str(b, "</svg>\n");
}

static void html_row(struct sbuf *b, const char *name, const char *fmt, ...) MKTD_PRINTF_FMT(3, 4);
static void html_row(struct sbuf *b, const char *name, const char *fmt, ...)
{
    char v[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    sb_str(b, "<tr><th>");
    html_esc(b, name);
    sb_str(b, "</th><td>");
    html_esc(b, v);
    sb_str(b, "</td></tr>\n");
}

static void html_reasons(struct sbuf *b, const char *name, json_t *by)
{
    const char *k;
    json_t *v;
    json_object_foreach(by, k, v)
    {
        char label[200];
        snprintf(label, sizeof(label), "%s: %s", name, k);
        html_row(b, label, "%lld", (long long)json_integer_value(v));
    }
}

static void fmt_pct(char *buf, size_t len, double v)
{
    if (isfinite(v))
        snprintf(buf, len, "%.2f%%", 100 * v);
    else
        snprintf(buf, len, "-");
}

void report_html(json_t *rep, struct sbuf *b)
{
    sb_str(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
              "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
              "<title>mktd report</title>\n<style>\n"
              "body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:70em}\n"
              "h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;"
              "padding-bottom:.2em;margin-top:2em}\n"
              "table{border-collapse:collapse;margin:.5em 0}th,td{padding:.2em .8em;"
              "text-align:left;border-bottom:1px solid #eee}td{font-variant-numeric:"
              "tabular-nums}\n"
              ".chart{display:block;margin:.5em 0}.axis{stroke:#888}.tick,.legend{font-size:"
              "11px;fill:#444}.ci line{stroke:#222;stroke-width:1.5}\n"
              ".flag{color:#b00;font-weight:bold}.note{color:#666}\n"
              /* a phone: charts shrink to the screen, tables scroll sideways */
              ".chart{max-width:100%;height:auto}table{display:block;overflow-x:auto;"
              "max-width:100%}\n"
              "@media (max-width:600px){body{margin:.8em}th,td{padding:.2em .5em}}\n"
              "</style></head><body>\n<h1>mktd report</h1>\n<p>");
    struct sbuf p = {0};
    period_text(rep, &p);
    html_esc(b, p.s);
    sb_free(&p);
    sb_str(b, "</p>\n");
    json_t *arr = json_object_get(rep, "campaigns");
    if (!json_array_size(arr))
        sb_str(b, "<p class=\"note\">No campaigns.</p>\n");
    size_t i;
    json_t *c;
    json_array_foreach(arr, i, c)
    {
        const char *plugin = json_string_value(json_object_get(c, "plugin"));
        sb_str(b, "<section class=\"campaign\"><h2>");
        html_esc(b, json_string_value(json_object_get(c, "id")));
        sb_str(b, " <small>(");
        html_esc(b, plugin && *plugin ? plugin : "unknown plugin");
        sb_str(b, ")</small></h2>\n");
        json_t *totals = json_object_get(c, "actions");
        if (!json_object_size(totals)) {
            sb_str(b, "<p class=\"note\">No actions in the period.</p>\n");
        } else {
            sb_str(b, "<h3>Actions per day</h3>\n");
            svg_days(b, c);
            sb_str(b, "<table class=\"totals\">\n");
            const char *k;
            json_t *v;
            json_object_foreach(totals, k, v)
                html_row(b, k, "%lld", (long long)json_integer_value(v));
            sb_str(b, "</table>\n");
        }
        char r1[32];
        json_t *cp = json_object_get(c, "coupon");
        if (cp) {
            sb_str(b, "<h3>Coupons</h3><table>\n");
            html_row(b, "issued", "%lld", (long long)ival(cp, "issued"));
            html_row(b, "value issued", "%lld", (long long)ival(cp, "value_issued"));
            html_row(b, "redeemed", "%lld", (long long)ival(cp, "redeemed"));
            html_row(b, "value redeemed", "%lld", (long long)ival(cp, "value_redeemed"));
            fmt_pct(r1, sizeof(r1), rval(cp, "redemption_rate"));
            html_row(b, "redemption rate", "%s (%lld of %lld issued in the period)", r1,
                     (long long)ival(cp, "issued_redeemed"), (long long)ival(cp, "issued"));
            html_row(b, "rejected", "%lld", (long long)ival(cp, "rejected"));
            html_reasons(b, "rejected", json_object_get(cp, "rejected_by_reason"));
            sb_str(b, "</table>\n");
        }
        json_t *rf = json_object_get(c, "referral");
        if (rf) {
            sb_str(b, "<h3>Referrals</h3><table>\n");
            html_row(b, "bound", "%lld", (long long)ival(rf, "bound"));
            html_row(b, "rejected", "%lld", (long long)ival(rf, "rejected"));
            html_reasons(b, "rejected", json_object_get(rf, "rejected_by_reason"));
            html_row(b, "commission paid", "%lld (%lld actions)",
                     (long long)ival(rf, "commission_paid"), (long long)ival(rf, "commissions"));
            html_row(b, "clawed back", "%lld (%lld actions)", (long long)ival(rf, "clawed_back"),
                     (long long)ival(rf, "clawbacks"));
            html_row(b, "commission net", "%lld", (long long)ival(rf, "commission_net"));
            html_row(b, "rewards", "%lld (%lld actions: referrers %lld, referees %lld)",
                     (long long)ival(rf, "reward_paid"), (long long)ival(rf, "rewards"),
                     (long long)ival(rf, "reward_referrer"), (long long)ival(rf, "reward_referee"));
            sb_str(b, "</table>\n");
        }
        json_t *ra = json_object_get(c, "reactivation");
        if (ra) {
            sb_str(b, "<h3>Reactivation: offer against holdout</h3>\n");
            svg_rates(b, ra);
            sb_str(b, "<table><tr><th>group</th><th>users</th><th>converted</th><th>rate</th>"
                      "<th>95% CI</th></tr>\n");
            static const char *const g[2] = {"offer", "holdout"};
            for (int k = 0; k < 2; k++) {
                json_t *o = json_object_get(ra, g[k]), *ci = json_object_get(o, "ci");
                char lo[32] = "-", hi[32] = "-";
                fmt_pct(r1, sizeof(r1), rval(o, "rate"));
                if (json_is_array(ci)) {
                    fmt_pct(lo, sizeof(lo), json_number_value(json_array_get(ci, 0)));
                    fmt_pct(hi, sizeof(hi), json_number_value(json_array_get(ci, 1)));
                }
                sb_fmt(b,
                       "<tr><th>%s</th><td>%lld</td><td>%lld</td><td>%s</td><td>%s .. %s</td>"
                       "</tr>\n",
                       g[k], (long long)ival(o, "n"), (long long)ival(o, "x"), r1, lo, hi);
            }
            sb_str(b, "</table>\n<table>\n");
            json_t *l = json_object_get(ra, "lift");
            if (json_is_object(l)) {
                json_t *ci = json_object_get(l, "absolute_ci"),
                       *rci = json_object_get(l, "relative_ci");
                html_row(b, "absolute lift", "%+.2f points (95%% CI %+.2f .. %+.2f)",
                         100 * rval(l, "absolute"), 100 * json_number_value(json_array_get(ci, 0)),
                         100 * json_number_value(json_array_get(ci, 1)));
                if (json_is_array(rci))
                    html_row(b, "relative lift", "%+.1f%% (95%% CI %+.1f%% .. %+.1f%%)",
                             100 * rval(l, "relative"),
                             100 * json_number_value(json_array_get(rci, 0)),
                             100 * json_number_value(json_array_get(rci, 1)));
                html_row(b, "p-value", "%.4g (Welch t %.3f, df %.1f)", rval(l, "p_value"),
                         rval(l, "t"), rval(l, "df"));
                fmt_pct(r1, sizeof(r1), rval(l, "chance_to_beat"));
                html_row(b, "chance to beat holdout", "%s", r1);
            } else {
                html_row(b, "not enough data", "%s",
                         json_string_value(json_object_get(ra, "note")));
            }
            json_t *srm = json_object_get(ra, "srm");
            if (json_is_object(srm)) {
                int flagged = json_is_true(json_object_get(srm, "flagged"));
                char a[32], e[32];
                fmt_pct(a, sizeof(a), rval(srm, "observed_holdout"));
                fmt_pct(e, sizeof(e), rval(srm, "expected_holdout"));
                sb_fmt(b, "<tr><th>sample ratio</th><td%s>", flagged ? " class=\"flag\"" : "");
                sb_fmt(b,
                       "holdout %s of users, %s expected: chi-square %.2f, p %.4g: %s</td></tr>\n",
                       a, e, rval(srm, "chi2"), rval(srm, "p_value"),
                       flagged ? "MISMATCH (p &lt; 0.001): the groups are not comparable" : "ok");
            } else {
                html_row(b, "sample ratio", "not checked");
            }
            sb_str(b, "</table>\n");
        }
        sb_str(b, "</section>\n");
    }
    sb_str(b, "</body></html>\n");
}

/* ---- the command line and the daemon's handler ---- */

int report_parse_time(const char *s, int64_t *ms)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s && !*end && errno == 0 && v >= 0) {
        *ms = v;
        return 0;
    }
    size_t n = strlen(s);
    if (n == 10 && s[4] == '-' && s[7] == '-') { /* a date: its midnight, UTC */
        char full[32];
        snprintf(full, sizeof(full), "%sT00:00:00Z", s);
        return rfc3339_parse(full, strlen(full), ms);
    }
    return rfc3339_parse(s, n, ms);
}

static int render(json_t *rep, const char *format, struct sbuf *out)
{
    if (strcmp(format, "json") == 0) {
        char *s = json_dumps(rep, JSON_INDENT(2));
        if (!s)
            return -1;
        sb_str(out, s);
        sb_str(out, "\n");
        free(s);
    } else if (strcmp(format, "html") == 0) {
        report_html(rep, out);
    } else if (strcmp(format, "text") == 0) {
        report_text(rep, out);
    } else {
        return -1;
    }
    return 0;
}

int report_serve(const char *db_path, const char *since, const char *until, const char *campaign,
                 int html, struct sbuf *out)
{
    struct report_opts o = {.db_path = db_path, .until = INT64_MAX, .campaign = campaign};
    const char *bad = NULL;
    if (since && report_parse_time(since, &o.since) < 0)
        bad = "since";
    else if (until && report_parse_time(until, &o.until) < 0)
        bad = "until";
    if (bad) {
        sb_fmt(out, "%s: expected RFC 3339, a date or Unix ms\n", bad);
        return 400;
    }
    if (o.until <= o.since) {
        sb_str(out, "until must be after since\n");
        return 400;
    }
    char err[512];
    json_t *rep = report_build(&o, err, sizeof(err));
    if (!rep) {
        sb_fmt(out, "report: %s\n", err);
        return 500;
    }
    render(rep, html ? "html" : "json", out);
    json_decref(rep);
    return 200;
}

int cli_report(const char *config_path, const char *db_path, const char *campaign,
               const char *since, const char *until, const char *format, const char *out_path)
{
    struct report_opts o = {.db_path = db_path,
                            .config_path = db_path ? NULL : config_path,
                            .until = INT64_MAX,
                            .campaign = campaign};
    if (since && report_parse_time(since, &o.since) < 0) {
        fprintf(stderr, "mktd report: --since %s: expected RFC 3339, a date or Unix ms\n", since);
        return 2;
    }
    if (until && report_parse_time(until, &o.until) < 0) {
        fprintf(stderr, "mktd report: --until %s: expected RFC 3339, a date or Unix ms\n", until);
        return 2;
    }
    if (o.until <= o.since) {
        fprintf(stderr, "mktd report: --until must be after --since\n");
        return 2;
    }
    format = format ? format : "text";
    if (strcmp(format, "text") && strcmp(format, "json") && strcmp(format, "html")) {
        fprintf(stderr, "mktd report: --format %s: expected text, json or html\n", format);
        return 2;
    }
    if (db_path && config_path) {
        /* --db names the database; -c still gives the campaigns' settings */
        o.config_path = config_path;
    }
    char err[512];
    json_t *rep = report_build(&o, err, sizeof(err));
    if (!rep) {
        fprintf(stderr, "mktd report: %s\n", err);
        return 2;
    }
    struct sbuf b = {0};
    render(rep, format, &b);
    json_decref(rep);
    FILE *f = out_path ? fopen(out_path, "w") : stdout;
    if (!f) {
        fprintf(stderr, "mktd report: %s: %s\n", out_path, strerror(errno));
        sb_free(&b);
        return 2;
    }
    size_t w = b.len ? fwrite(b.s, 1, b.len, f) : 0;
    int rc = w == b.len && fflush(f) == 0 ? 0 : 2;
    if (out_path && fclose(f) != 0)
        rc = 2;
    if (rc)
        fprintf(stderr, "mktd report: %s: write failed\n", out_path ? out_path : "stdout");
    sb_free(&b);
    return rc;
}
