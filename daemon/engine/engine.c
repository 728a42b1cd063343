/*
 * The way an event travels, once it is decoded and valid (engine_event):
 *
 *   duplicate? (the working set remembers ids) -> fire due timers -> move
 *   the clock -> update the profile -> campaigns in config order -> the
 *   internal events of their actions, breadth-first, to depth 4 -> the id
 *   is remembered; or, when a plugin failed, everything since the event's
 *   mark in the undo log is taken back.
 *
 * Everything happens in memory (ws.c); engine_commit writes the batch in
 * one transaction: changed rows sorted by key, then the actions in order.
 * Timers fire the same way (fire_timers), with the due time as their now;
 * a timer that fails is undone alone and set aside (spec 12).
 */
#define _GNU_SOURCE
#include "engine/internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cond.h"
#include "engine/gauges.h"
#include "engine/ws.h"
#include "lib/log.h"
#include "store/privacy.h"

#define MAX_DEPTH 4

static int write_actions(struct engine *e);
static void log_clear(struct engine *e);
static void log_push(struct engine *e, const struct event *ev, int64_t received_at, int64_t ts);

/* ---- worlds ---- */

static int campaign_init(struct campaign *c, struct errs *errs)
{
    const struct campaign_cfg *cc = c->cfg;
    const mktd_plugin *d = &c->mod->d;
    if ((d->flags & MKTD_PLUGIN_WHEN_REQUIRED) && !cc->has_when && !cc->when_any) {
        yerr(errs, cc->node, "campaign %s: plugin %s requires `when`", cc->id, cc->plugin);
        return -EINVAL;
    }
    if ((d->flags & MKTD_PLUGIN_WHEN_REFUSED) && cc->has_when) {
        yerr(errs, cc->when_node ? cc->when_node : cc->node,
             "campaign %s: plugin %s takes no `when` (its inputs are fixed)", cc->id, cc->plugin);
        return -EINVAL;
    }
    struct mktd_ctx ctx;
    ctx_init(&ctx, NULL, c, 0, NULL, 0);
    ctx.base.errs = errs;
    size_t before = errs->n;
    int rc = d->init(&ctx, (const mktd_node *)cc->params, &c->data);
    ctx_base_reset(&ctx.base);
    if (rc < 0 && errs->n == before)
        yerr(errs, cc->node, "campaign %s: plugin %s refused its params (error %d)", cc->id,
             cc->plugin, rc);
    if (rc >= 0 && errs->n > before) {
        /* reported problems but returned success: refuse anyway */
        if (d->destroy)
            d->destroy(c->data);
        c->data = NULL;
        return -EINVAL;
    }
    return rc < 0 ? rc : 0;
}

struct world *world_build(struct config *cfg, struct errs *errs)
{
    struct world *w = xcalloc(1, sizeof(*w));
    w->c = xcalloc(cfg->n_campaigns ? cfg->n_campaigns : 1, sizeof(*w->c));
    size_t before = errs->n;
    for (size_t i = 0; i < cfg->n_campaigns; i++) {
        struct campaign *c = &w->c[w->n];
        c->cfg = &cfg->campaigns[i];
        c->index = i;
        char err[1024];
        c->mod = plugins_load(c->cfg->plugin, cfg->plugin_dirs, cfg->n_plugin_dirs, host_table(),
                              err, sizeof(err));
        if (!c->mod) {
            const struct ynode *at = ynode_get(c->cfg->node, "plugin");
            yerr(errs, at ? at : c->cfg->node, "%s", err);
            continue;
        }
        c->first_of_plugin = 1;
        for (size_t j = 0; j < w->n; j++)
            if (w->c[j].mod == c->mod)
                c->first_of_plugin = 0;
        if (campaign_init(c, errs) < 0)
            continue;
        w->n++;
    }
    if (errs->n > before) {
        world_free(w);
        return NULL;
    }
    w->cfg = cfg;
    return w;
}

void world_free(struct world *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n; i++)
        if (w->c[i].mod->d.destroy)
            w->c[i].mod->d.destroy(w->c[i].data);
    free(w->c);
    config_free(w->cfg);
    free(w);
}

struct campaign *engine_campaign(struct engine *e, const char *id)
{
    if (!e->w)
        return NULL;
    for (size_t i = 0; i < e->w->n; i++)
        if (strcmp(e->w->c[i].cfg->id, id) == 0)
            return &e->w->c[i];
    return NULL;
}

/* ---- the engine ---- */

/* Default working-set budget: sized so that the daemon stays under ~150 MB
 * of RSS with SQLite's 64 MB page cache. */
#define WS_DEFAULT_BUDGET ((size_t)48 << 20)

static void free_counted(struct engine *e)
{
    for (size_t i = 0; i < e->n_counted; i++)
        free(e->counted[i]);
    free(e->counted);
    e->counted = NULL;
    e->n_counted = 0;
}

int engine_new(struct store *st, const struct engine_opts *o, struct engine **out, char *err,
               size_t errlen)
{
    struct engine *e = xcalloc(1, sizeof(*e));
    e->st = st;
    e->clock_event = o->clock_event;
    e->ws_budget = o->memory_bytes ? o->memory_bytes : WS_DEFAULT_BUDGET;
    e->ws = ws_new(st, e->ws_budget);
    e->fixed_profiles = o->fixed_profiles;
    e->ids_per_user = o->ids_per_user;
    if (o->secret && o->secret_len) {
        e->secret = xmalloc(o->secret_len);
        memcpy(e->secret, o->secret, o->secret_len);
        e->secret_len = o->secret_len;
    }
    e->partition = o->partition;
    if (o->pool) {
        e->pool = *o->pool;
        e->has_pool = 1;
    }
    if (o->registry) {
        e->registry = *o->registry;
        e->has_registry = 1;
    }
    int rc = store_meta_get(st, "clock_now", &e->now);
    if (rc == -ENOENT) {
        e->now = 0;
        rc = 0;
    }
    e->saved_now = e->now;
    if (rc < 0 || store_timer_next(st, &e->next_due) < 0 || ws_load_ids(e->ws) < 0 ||
        store_counted_list(st, &e->counted, &e->n_counted) < 0) {
        snprintf(err, errlen, "database: %s", store_errmsg(st));
        engine_free(e);
        return -EIO;
    }
    *out = e;
    return 0;
}

static void pending_free(struct pending *p)
{
    free(p->kind);
    free(p->user);
    free(p->source);
    json_decref(p->props);
}

static void queue_clear(struct engine *e)
{
    for (size_t i = e->q_head; i < e->q_len; i++)
        pending_free(&e->q[i]);
    e->q_head = e->q_len = 0;
}

static void actions_truncate(struct engine *e, size_t n)
{
    while (e->n_act > n) {
        struct action *a = &e->act[--e->n_act];
        free(a->kind);
        free(a->user);
        free(a->event_id);
        free(a->payload);
    }
}

static void aside_clear(struct engine *e)
{
    for (size_t i = 0; i < e->n_aside; i++) {
        free(e->aside[i].campaign);
        free(e->aside[i].user);
        free(e->aside[i].name);
        free(e->aside[i].error);
    }
    e->n_aside = 0;
}

/* Drops the set-asides from n on (a dry run's: nothing of it stays). */
static void aside_truncate(struct engine *e, size_t n)
{
    while (e->n_aside > n) {
        struct aside *a = &e->aside[--e->n_aside];
        free(a->campaign);
        free(a->user);
        free(a->name);
        free(a->error);
        e->stats.timers_failed--;
    }
}

void engine_free(struct engine *e)
{
    if (!e)
        return;
    world_free(e->w);
    free_counted(e);
    gauges_free(e->gauges); /* plugin gauges */
    queue_clear(e);
    free(e->q);
    actions_truncate(e, 0);
    free(e->act);
    log_clear(e);
    free(e->logq);
    aside_clear(e);
    free(e->aside);
    json_decref(e->explain);
    free(e->taken);
    free(e->capped);
    pair_counts_free(&e->capped_totals);
    ws_free(e->ws);
    if (e->secret)
        memset(e->secret, 0, e->secret_len);
    free(e->secret);
    for (size_t i = 0; i < e->n_claimed; i++)
        free(e->claimed[i]);
    free(e->claimed);
    for (size_t i = 0; i < e->n_foreign; i++)
        free(e->foreign[i]);
    free(e->foreign);
    free(e);
}

const struct config *engine_config(const struct engine *e)
{
    return e->w ? e->w->cfg : NULL;
}

size_t engine_campaigns(const struct engine *e)
{
    return e->w ? e->w->n : 0;
}

size_t world_campaigns(const struct world *w)
{
    return w->n;
}

const struct config *world_config(const struct world *w)
{
    return w->cfg;
}

int64_t engine_next_due(const struct engine *e)
{
    return e->next_due;
}

int engine_clock_event(const struct engine *e)
{
    return e->clock_event;
}

int engine_batch_size(const struct engine *e)
{
    return e->in_batch ? e->batch_n : 0;
}

void engine_stats(const struct engine *e, struct engine_stats *out)
{
    *out = e->stats;
    struct ws_stats w;
    ws_stats(e->ws, &w);
    out->ws_entries = w.entries;
    out->ws_bytes = w.bytes;
    out->ws_hits = w.hits;
    out->ws_misses = w.misses;
    out->ws_evictions = w.evictions;
    out->ws_rows_written = w.flushed_rows;
    out->ws_budget = e->ws_budget;
    out->id_reads = w.id_reads;
    out->id_filter_bytes = w.filter_bytes;
}

void engine_set_memory(struct engine *e, size_t bytes)
{
    e->ws_budget = bytes ? bytes : WS_DEFAULT_BUDGET;
    ws_set_budget(e->ws, e->ws_budget);
}

/* The write transaction opens only when something is to be written (a
 * flush before a timer query, or the commit): evaluation reads outside it,
 * so the writer lock is held briefly and the checkpointer finds the gaps
 * it needs to start the WAL over. */
static int write_begin(struct engine *e)
{
    if (e->txn)
        return 0;
    if (store_begin(e->st) < 0)
        return -EIO;
    e->txn = 1;
    return 0;
}

static void write_end(struct engine *e, int commit_ok)
{
    if (!commit_ok && e->txn)
        store_rollback(e->st);
    e->txn = 0;
}

int engine_flush(struct engine *e)
{
    if (write_begin(e) < 0 || ws_flush(e->ws) < 0) {
        e->io_failed = 1;
        return -EIO;
    }
    return 0;
}

/* Re-reads the next timer's due time after the working set was written. */
static int refresh_next_due(struct engine *e)
{
    if (engine_flush(e) < 0 || store_timer_next(e->st, &e->next_due) < 0) {
        e->io_failed = 1;
        return -EIO;
    }
    return 0;
}

static int run_chain(struct engine *e, const char *event_id);
static void queue_clear(struct engine *e);

int engine_swap(struct engine *e, struct world *w, char *err, size_t errlen)
{
    struct store *st = e->st;
    if (e->in_batch && engine_commit(e) < 0) {
        snprintf(err, errlen, "database: the open batch could not be committed");
        return -EIO;
    }
    size_t gmark = gauges_mark(e->gauges); /* gauges of on_load: shown once this commits */
    if (write_begin(e) < 0) {
        snprintf(err, errlen, "database: %s", store_errmsg(st));
        return -EIO;
    }
    for (size_t i = 0; i < w->cfg->n_campaigns; i++)
        for (size_t j = 0; j < w->cfg->campaigns[i].n_conds; j++) {
            const struct cond *c = &w->cfg->campaigns[i].conds[j];
            if (c->field == F_USER_COUNT && store_counted_add(st, c->arg) < 0)
                goto dberr;
        }
    if (store_config_record(st, w->cfg->path, w->cfg->text ? w->cfg->text : "", w->cfg->text_len,
                            wall_ms()) < 0)
        goto dberr;
    if (store_oplog_config(st, wall_ms(), engine_actor(e), w->cfg->path,
                           w->cfg->text ? w->cfg->text : "", w->cfg->text_len, NULL) < 0)
        goto dberr;
    char **ids = xcalloc(w->n ? w->n : 1, sizeof(*ids));
    for (size_t i = 0; i < w->n; i++)
        ids[i] = w->c[i].cfg->id;
    int live_rc = store_set_live(st, ids, w->n);
    free(ids);
    if (live_rc < 0)
        goto dberr;
    /* on_load sees the new world as the running one. */
    struct world *old = e->w;
    e->w = w;
    e->io_failed = 0;
    for (size_t i = 0; i < w->n && !w->cfg->no_load; i++) {
        struct campaign *c = &w->c[i];
        int first = store_campaign_seen(st, c->cfg->id, c->cfg->plugin);
        if (first < 0) {
            e->w = old;
            goto dberr;
        }
        if (!c->mod->d.on_load)
            continue;
        struct mktd_ctx ctx;
        ctx_init(&ctx, e, c, e->now, NULL, 0);
        int rc = c->mod->d.on_load(&ctx, c->data, first);
        ctx_base_reset(&ctx.base);
        /* its actions' internal events, now (not with the next event's) */
        if (rc >= 0 && !e->io_failed)
            rc = run_chain(e, NULL);
        queue_clear(e);
        if (rc < 0 || e->io_failed) {
            e->w = old;
            if (e->io_failed)
                snprintf(err, errlen, "campaign %s: database: %s", c->cfg->id, store_errmsg(st));
            else
                snprintf(err, errlen, "campaign %s: plugin %s failed to load (error %d)",
                         c->cfg->id, c->cfg->plugin, rc);
            gauges_drop(e->gauges, gmark);
            write_end(e, 0);
            ws_rolled_back(e->ws);
            queue_clear(e);
            actions_truncate(e, 0);
            store_timer_next(st, &e->next_due);
            return rc < 0 ? rc : -EIO;
        }
    }
    if (ws_flush(e->ws) < 0 || write_actions(e) < 0 || store_commit(st) < 0) {
        e->w = old;
        snprintf(err, errlen, "database: %s", store_errmsg(st));
        gauges_drop(e->gauges, gmark);
        write_end(e, 0);
        ws_rolled_back(e->ws);
        actions_truncate(e, 0);
        store_timer_next(st, &e->next_due);
        return -EIO;
    }
    write_end(e, 1);
    ws_committed(e->ws);
    e->stats.actions_total += e->n_act;
    actions_truncate(e, 0);
    gauges_apply(e->gauges, 1); /* the new world's gauges replace the old one's */
    world_free(old);
    free_counted(e);
    store_counted_list(st, &e->counted, &e->n_counted);
    store_timer_next(st, &e->next_due);
    return 0;
dberr:
    snprintf(err, errlen, "database: %s", store_errmsg(st));
    gauges_drop(e->gauges, gmark);
    write_end(e, 0);
    return -EIO;
}

/* ---- evaluation ---- */

static int64_t count_cb(void *arg, const char *user, const char *type)
{
    struct engine *e = arg;
    int64_t n = 0;
    int rc = ws_get_int(e->ws, WS_COUNT, "", user, type, &n);
    if (rc == -EIO)
        e->io_failed = 1;
    return rc == 0 ? n : 0;
}

static int in_window(const struct campaign_cfg *cc, int64_t ts)
{
    return cc->enabled && ts >= cc->starts && ts <= cc->ends;
}

/* ---- explaining (spec 10) ---- */

/* Whether campaign decisions are wanted: for an explanation, or for the
 * log at level debug (one line each). Otherwise nothing of them is made. */
static int explaining(const struct engine *e)
{
    return e->explain || log_level >= MKTD_LOG_DEBUG;
}

static const char *inactive_why(const struct campaign_cfg *cc, int64_t ts)
{
    if (!cc->enabled)
        return "disabled";
    return ts < cc->starts ? "before starts" : "after ends";
}

/* One campaign's decision on an event (ev) or a timer (name, user, depth
 * 0): an entry of the explanation and a debug line. With detail NULL the
 * outcome is `ran`, with n actions and the notes (taken; NULL: none). */
static void decided(struct engine *e, const struct campaign *c, const mktd_event *ev,
                    const char *name, const char *user, const char *outcome, const char *detail,
                    int n, json_t *notes)
{
    int depth = ev ? ev->depth : 0;
    if (e->explain) {
        json_t *x = json_object();
        json_object_set_new(x, "depth", json_integer(depth));
        if (ev) {
            json_object_set_new(x, "event", json_string(ev->type));
        } else {
            json_object_set_new(x, "timer", json_string(name));
            json_object_set_new(x, "user", json_string(user));
        }
        json_object_set_new(x, "campaign", json_string(c->cfg->id));
        json_object_set_new(x, "outcome", json_string(outcome));
        if (detail) {
            json_object_set_new(x, "detail", json_string(detail));
        } else {
            json_object_set_new(x, "actions", json_integer(n));
            json_object_set_new(x, "notes", notes ? json_incref(notes) : json_array());
        }
        json_array_append_new(e->explain, x);
    }
    json_decref(notes);
    if (log_level < MKTD_LOG_DEBUG)
        return;
    const char *what = ev ? "event" : "timer", *which = ev ? ev->type : name;
    const char *who = ev ? ev->user : user;
    if (detail)
        log_msg(MKTD_LOG_DEBUG, c->cfg->id, "%s %s of user %s (depth %d): %s: %s", what, which, who,
                depth, outcome, detail);
    else
        log_msg(MKTD_LOG_DEBUG, c->cfg->id, "%s %s of user %s (depth %d): %s: %d action(s)", what,
                which, who, depth, outcome, n);
}

/* After a campaign's on_event: `ran` when it was called matched, or acted
 * or noted on its own path (a redemption, a refund); else why not. */
static void event_decided(struct engine *e, const struct campaign *c, const mktd_event *ev,
                          const struct cond_input *in, unsigned flags, const char *taker, int n,
                          struct ctx_base *b)
{
    if ((flags & MKTD_F_MATCH) || n > 0 || b->n_notes > 0) {
        decided(e, c, ev, NULL, NULL, "ran", NULL, n, b->notes);
        b->notes = NULL;
    } else if (taker) {
        char why[160];
        snprintf(why, sizeof why, "group %s taken by %s", c->cfg->group, taker);
        decided(e, c, ev, NULL, NULL, "skipped", why, 0, NULL);
    } else if (!(flags & MKTD_F_ACTIVE)) {
        decided(e, c, ev, NULL, NULL, "inactive", inactive_why(c->cfg, ev->ts), 0, NULL);
    } else {
        char why[512];
        when_explain(c->cfg, in, why, sizeof why);
        decided(e, c, ev, NULL, NULL, "not_matched", why, 0, NULL);
    }
}

/* After a timer's callback: `ran` when the campaign was active at the due
 * time, or acted or noted anyway; else `inactive`. */
static void timer_decided(struct engine *e, const struct campaign *c, const struct timer_row *r,
                          unsigned flags, int n, struct ctx_base *b)
{
    if ((flags & MKTD_F_ACTIVE) || n > 0 || b->n_notes > 0) {
        decided(e, c, NULL, r->name, r->user, "ran", NULL, n, b->notes);
        b->notes = NULL;
    } else {
        decided(e, c, NULL, r->name, r->user, "inactive", inactive_why(c->cfg, r->due), 0, NULL);
    }
}

/* A dry event's actions from index from on, for its answer. */
static json_t *actions_json(const struct engine *e, size_t from)
{
    json_t *arr = json_array();
    for (size_t i = from; i < e->n_act; i++) {
        const struct action *a = &e->act[i];
        json_t *payload = json_loads(a->payload, 0, NULL);
        json_array_append_new(arr, json_pack("{s:I,s:s,s:s,s:s,s:o,s:o}", "ts", (json_int_t)a->ts,
                                             "campaign", a->campaign, "kind", a->kind, "user",
                                             a->user, "event_id",
                                             a->event_id ? json_string(a->event_id) : json_null(),
                                             "payload", payload ? payload : json_object()));
    }
    return arr;
}

/* An event of any depth, to every campaign in config order. */
static int dispatch(struct engine *e, const mktd_event *ev, json_t *props,
                    const mktd_profile *known_profile, int64_t now, const char *event_id)
{
    struct cond_input in = {.type = ev->type,
                            .user = ev->user,
                            .props = props,
                            .profile = known_profile,
                            .count = count_cb,
                            .count_arg = e};
    mktd_profile prof;
    int have_profile = known_profile != NULL;
    for (size_t i = 0; i < e->w->n; i++) {
        struct campaign *c = &e->w->c[i];
        if (!c->mod->d.on_event)
            continue;
        if (ev->source && strcmp(ev->source, c->cfg->id) == 0) {
            if (explaining(e))
                decided(e, c, ev, NULL, NULL, "skipped", "own action", 0, NULL);
            continue; /* blind to its own actions */
        }
        unsigned flags = 0;
        if (in_window(c->cfg, ev->ts)) {
            flags |= MKTD_F_ACTIVE;
            if (c->cfg->has_when && c->cfg->n_conds && !have_profile) {
                int rc = ws_get_profile(e->ws, ev->user, &prof);
                if (rc == -EIO) {
                    e->io_failed = 1;
                    return rc;
                }
                in.profile = rc == 0 ? &prof : NULL;
                have_profile = 1;
            }
            if (when_matches(c->cfg, &in))
                flags |= MKTD_F_MATCH;
            if (e->io_failed)
                return -EIO;
        }
        /* another campaign of its group recorded an action for this chain:
         * called all the same, for its bookkeeping, but not matched */
        int g = c->cfg->group_idx;
        const char *taker = g >= 0 && (flags & MKTD_F_MATCH) ? e->taken[g] : NULL;
        if (taker)
            flags = (flags & ~MKTD_F_MATCH) |
                    (MKTD_ABI_MINOR_OF(c->mod->d.abi_version) >= 1 ? MKTD_F_EXCLUDED : 0);
        struct mktd_ctx ctx;
        ctx_init(&ctx, e, c, now, event_id, ev->depth);
        ctx.dry = e->dry;
        if (e->explain)
            ctx.base.notes = json_array();
        size_t acts = e->n_act;
        int rc = c->mod->d.on_event(&ctx, c->data, ev, flags);
        if (rc >= 0 && !e->io_failed && explaining(e))
            event_decided(e, c, ev, &in, flags, taker, (int)(e->n_act - acts), &ctx.base);
        if (g >= 0 && (flags & MKTD_F_MATCH) && e->n_act > acts && !e->taken[g])
            e->taken[g] = c->cfg->id; /* a recorded action takes the group */
        ctx_base_reset(&ctx.base);
        if (e->io_failed)
            return -EIO; /* a storage error, whatever the plugin made of it */
        if (rc < 0) {
            e->stats.plugin_errors++;
            e->failed = c;
            e->failed_rc = rc;
            log_msg(MKTD_LOG_ERROR, c->cfg->id, "plugin %s failed on %s event of user %s (%d)",
                    c->cfg->plugin, ev->type, ev->user, rc);
            return rc;
        }
    }
    return 0;
}

/* Evaluates queued internal events breadth-first. */
static int run_chain(struct engine *e, const char *event_id)
{
    int rc = 0;
    while (e->q_head < e->q_len) {
        struct pending p = e->q[e->q_head++];
        mktd_event ev = {.id = NULL,
                         .type = p.kind,
                         .user = p.user,
                         .ts = p.ts,
                         .depth = p.depth,
                         .source = p.source,
                         .priv = p.props};
        rc = dispatch(e, &ev, p.props, NULL, p.ts, event_id);
        pending_free(&p);
        if (rc < 0)
            break;
    }
    queue_clear(e);
    return rc;
}

/* ---- groups and caps (spec 11) ---- */

/* A new chain (an input event's, or a timer's): every group is free, and
 * random_for counts its calls from 0. */
static void groups_reset(struct engine *e)
{
    e->random_calls = 0;
    size_t n = e->w->cfg->n_groups;
    if (n > e->n_taken) {
        e->taken = xrealloc(e->taken, n * sizeof(*e->taken));
        e->n_taken = n;
    }
    if (n)
        memset(e->taken, 0, n * sizeof(*e->taken));
}

/* The first cap (in config order) that keeps user from one more action of
 * kind at ts, or NULL. It counts the user's actions of the cap's kinds with
 * ts within per either side: recorded in the open batch (memory) and
 * committed before (the store). -EIO in *err when the store fails. */
static const struct cap_cfg *capped_by(struct engine *e, const char *kind, const char *user,
                                       int64_t ts, int *err)
{
    const struct config *cfg = e->w->cfg;
    for (size_t i = 0; i < cfg->n_caps; i++) {
        const struct cap_cfg *cap = &cfg->caps[i];
        if (!cap_counts(cap, kind))
            continue;
        int64_t lo = sat_add(ts, -cap->per_ms), hi = sat_add(ts, cap->per_ms), n = 0;
        for (size_t j = 0; j < e->n_act; j++) {
            const struct action *a = &e->act[j];
            if (a->ts > lo && a->ts < hi && strcmp(a->user, user) == 0 && cap_counts(cap, a->kind))
                n++;
        }
        if (n < cap->max) {
            int64_t stored = 0;
            if (store_cap_count(e->st, user, cap->kinds_json, lo, hi, &stored) < 0) {
                *err = -EIO;
                return NULL;
            }
            n += stored;
        }
        if (n >= cap->max)
            return cap;
    }
    return NULL;
}

static void capped_add(struct engine *e, const char *cap, const char *campaign)
{
    if (e->n_capped == e->cap_capped) {
        e->cap_capped = e->cap_capped ? e->cap_capped * 2 : 16;
        e->capped = xrealloc(e->capped, e->cap_capped * sizeof(*e->capped));
    }
    e->capped[e->n_capped++] = (struct capped){cap, campaign};
}

/* At commit: the batch's capped actions into the totals /metrics shows. */
static void capped_fold(struct engine *e)
{
    for (size_t i = 0; i < e->n_capped; i++)
        pair_counts_add(&e->capped_totals, e->capped[i].cap, e->capped[i].campaign, 1);
    e->n_capped = 0;
}

void engine_capped_foreach(struct engine *e,
                           void (*cb)(void *arg, const char *cap, const char *campaign, uint64_t n),
                           void *arg)
{
    for (size_t i = 0; i < e->capped_totals.n; i++)
        cb(arg, e->capped_totals.v[i].a, e->capped_totals.v[i].b, e->capped_totals.v[i].n);
}

void engine_capped_take(struct engine *e,
                        void (*cb)(void *arg, const char *cap, const char *campaign, uint64_t n),
                        void *arg)
{
    for (size_t i = 0; i < e->capped_totals.n; i++) {
        struct pair_count *r = &e->capped_totals.v[i];
        if (r->n)
            cb(arg, r->a, r->b, r->n);
        r->n = 0;
    }
}

/* One more action in the batch (its strings now the batch's). */
static void act_push(struct engine *e, struct action a)
{
    if (e->n_act == e->cap_act) {
        e->cap_act = e->cap_act ? e->cap_act * 2 : 64;
        e->act = xrealloc(e->act, e->cap_act * sizeof(*e->act));
    }
    e->act[e->n_act++] = a;
}

int engine_emit(struct engine *e, struct mktd_ctx *ctx, const char *kind, const char *user,
                json_t *payload)
{
    if (e->w->cfg->n_caps) {
        int err = 0;
        const struct cap_cfg *cap = capped_by(e, kind, user, ctx->now, &err);
        if (err) {
            e->io_failed = 1;
            return err;
        }
        if (cap) {
            capped_add(e, cap->id, ctx->c->cfg->id);
            host_table()->note(ctx, "capped by %s", cap->id);
            return MKTD_ABI_MINOR_OF(ctx->c->mod->d.abi_version) >= 1
                       ? MKTD_CAPPED
                       : 0; /* 1.0 plugins see none */
        }
    }
    char *text = json_dumps(payload, JSON_COMPACT);
    if (!text)
        return -ENOMEM;
    act_push(e, (struct action){.ts = ctx->now,
                                .campaign = ctx->c->cfg->id,
                                .kind = xstrdup(kind),
                                .user = xstrdup(user),
                                .event_id = ctx->event_id ? xstrdup(ctx->event_id) : NULL,
                                .payload = text});
    e->n_actions++;
    if (ctx->depth + 1 > MAX_DEPTH)
        return 0;
    if (e->q_len == e->q_cap) {
        if (e->q_head > 0) {
            memmove(e->q, e->q + e->q_head, (e->q_len - e->q_head) * sizeof(*e->q));
            e->q_len -= e->q_head;
            e->q_head = 0;
        }
        if (e->q_len == e->q_cap) {
            e->q_cap = e->q_cap ? e->q_cap * 2 : 16;
            e->q = xrealloc(e->q, e->q_cap * sizeof(*e->q));
        }
    }
    struct pending *p = &e->q[e->q_len++];
    p->ts = ctx->now;
    p->kind = xstrdup(kind);
    p->user = xstrdup(user);
    p->source = xstrdup(ctx->c->cfg->id);
    p->props = json_incref(payload);
    p->depth = ctx->depth + 1;
    return 0;
}

static int cmp_timer(const void *a, const void *b, void *arg)
{
    const struct timer_row *x = a, *y = b;
    struct engine *e = arg;
    if (x->due != y->due)
        return x->due < y->due ? -1 : 1;
    struct campaign *cx = engine_campaign(e, x->campaign), *cy = engine_campaign(e, y->campaign);
    size_t ix = cx ? cx->index : SIZE_MAX, iy = cy ? cy->index : SIZE_MAX;
    if (ix != iy)
        return ix < iy ? -1 : 1;
    return strcmp(x->user, y->user); /* bytes: UTF-8 compares as unsigned */
}

/* Timers are read this many at a time (a query or two per timer cost as
 * much as firing it). */
#define TIMER_BATCH 256

/* The live timers due next, at or before until, in firing order. The
 * working set is written first, so that the store's order is current. */
static int next_timers(struct engine *e, int64_t until, struct timer_row **rows, size_t *n)
{
    if (engine_flush(e) < 0 || store_timers_upto(e->st, until, TIMER_BATCH, rows, n) < 0) {
        e->io_failed = 1;
        return -EIO;
    }
    if (*n > 1)
        qsort_r(*rows, *n, sizeof(**rows), cmp_timer, e);
    return 0;
}

/* Takes the timer (it is gone before its callback): 1, or 0 when it was
 * moved or cancelled meanwhile, or -EIO. */
static int timer_take(struct engine *e, const struct timer_row *r)
{
    int64_t due;
    int rc = ws_get_int(e->ws, WS_TIMER, r->campaign, r->user, r->name, &due);
    if (rc == -ENOENT || (rc == 0 && due != r->due))
        return 0;
    if (rc == 0)
        rc = ws_del(e->ws, WS_TIMER, r->campaign, r->user, r->name);
    return rc < 0 ? -EIO : 1;
}

/* A timer whose callback (or chain) failed: gone for good, with its error
 * kept for `mktd timers --failed`. Its row goes with the batch's commit. */
static void set_aside(struct engine *e, const struct timer_row *r, const char *error)
{
    if (e->n_aside == e->cap_aside) {
        e->cap_aside = e->cap_aside ? e->cap_aside * 2 : 8;
        e->aside = xrealloc(e->aside, e->cap_aside * sizeof(*e->aside));
    }
    e->aside[e->n_aside++] = (struct aside){.campaign = xstrdup(r->campaign),
                                            .user = xstrdup(r->user),
                                            .name = xstrdup(r->name),
                                            .due = r->due,
                                            .at = wall_ms(),
                                            .error = xstrdup(error)};
    e->stats.timers_failed++;
}

/* Set-asides survive the undo of the event being evaluated: after an undo
 * to mark, the timers set aside since are taken again. */
static void reapply_asides(struct engine *e, size_t from)
{
    for (size_t i = from; i < e->n_aside; i++)
        ws_del(e->ws, WS_TIMER, e->aside[i].campaign, e->aside[i].user, e->aside[i].name);
}

/* One due timer: its callback and chain. A failure of either is undone
 * alone and the timer set aside; a storage error fails the caller. */
static int fire_one(struct engine *e, struct campaign *c, const struct timer_row *r)
{
    size_t mark = ws_mark(e->ws), amark = e->n_act, gmark = gauges_mark(e->gauges);
    size_t cmark = e->n_capped;
    unsigned flags = in_window(c->cfg, r->due) ? MKTD_F_ACTIVE : 0;
    size_t xmark = e->explain ? json_array_size(e->explain) : 0;
    struct mktd_ctx ctx;
    ctx_init(&ctx, e, c, r->due, NULL, 0);
    ctx.dry = e->dry;
    if (e->explain)
        ctx.base.notes = json_array();
    e->failed = NULL;
    groups_reset(e); /* the timer's chain is a chain of its own */
    e->firing = r;   /* random_for: the timer is the chain's identity */
    /* a campaign-wide timer is a timer of user "": a 1.1 plugin gets NULL
     * for it, a 1.0 plugin "" as it always did */
    const char *user = r->user[0] || MKTD_ABI_MINOR_OF(c->mod->d.abi_version) < 1 ? r->user : NULL;
    int rc = c->mod->d.on_timer(&ctx, c->data, user, r->name, r->due, flags);
    if (rc >= 0 && !e->io_failed && explaining(e))
        timer_decided(e, c, r, flags, (int)(e->n_act - amark), &ctx.base);
    ctx_base_reset(&ctx.base);
    if (rc < 0 && !e->io_failed) {
        e->stats.plugin_errors++;
        e->failed = c;
        e->failed_rc = rc;
    }
    if (rc >= 0 && !e->io_failed)
        rc = run_chain(e, NULL);
    e->firing = NULL;
    queue_clear(e);
    if (e->io_failed)
        return -EIO;
    if (rc >= 0)
        return 0;
    struct campaign *f = e->failed ? e->failed : c;
    char error[256];
    if (f == c)
        snprintf(error, sizeof(error), "plugin %s failed on timer %s (error %d)", c->cfg->plugin,
                 r->name, e->failed_rc);
    else
        snprintf(error, sizeof(error), "campaign %s (plugin %s) failed in its chain (error %d)",
                 f->cfg->id, f->cfg->plugin, e->failed_rc);
    ws_undo_to(e->ws, mark);
    actions_truncate(e, amark);
    gauges_drop(e->gauges, gmark);
    e->n_capped = cmark;
    e->failed = NULL;
    log_msg(MKTD_LOG_ERROR, c->cfg->id, "timer %s of user %s set aside: %s", r->name, r->user,
            error);
    set_aside(e, r, error);
    if (e->explain) { /* its decisions were undone with it */
        while (json_array_size(e->explain) > xmark)
            json_array_remove(e->explain, json_array_size(e->explain) - 1);
        decided(e, c, NULL, r->name, r->user, "failed", error, 0, NULL);
    }
    return 0;
}

/* Fires every timer due at or before until: by due time, then config
 * order, then user id. Timers of campaigns not in the config wait. A timer
 * set while firing (e->next_due drops to it) at or before the next group's
 * due time sends the loop back to the store for a fresh read. */
static int fire_timers(struct engine *e, int64_t until)
{
    while (e->next_due <= until) {
        struct timer_row *rows;
        size_t n;
        int rc = next_timers(e, until, &rows, &n);
        if (rc < 0)
            return rc;
        e->next_due = INT64_MAX; /* from here: the earliest timer set meanwhile */
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (i > 0 && rows[i].due != rows[i - 1].due && e->next_due <= rows[i].due)
                break;
            struct campaign *c = engine_campaign(e, rows[i].campaign);
            rc = timer_take(e, &rows[i]);
            if (rc <= 0)
                continue;
            rc = 0;
            if (c && c->mod->d.on_timer)
                rc = fire_one(e, c, &rows[i]);
        }
        store_timer_rows_free(rows, n);
        if (rc < 0)
            return rc;
        if (refresh_next_due(e) < 0)
            return -EIO;
    }
    return 0;
}

/* A batch opens with its first event (in memory: the write transaction
 * waits for the commit). */
static void batch_begin(struct engine *e)
{
    if (e->in_batch)
        return;
    e->in_batch = 1;
    e->batch_n = 0;
    e->batch_now = e->now;
    e->batch_next_due = e->next_due;
}

/* Takes back everything since the marks (a failed event or advance); the
 * timers set aside meanwhile stay set aside. */
static void undo_to(struct engine *e, size_t mark, size_t amark, size_t aside_mark, size_t gmark,
                    size_t cmark, int64_t old_now, int64_t old_next_due)
{
    ws_undo_to(e->ws, mark);
    e->n_capped = cmark;
    gauges_drop(e->gauges, gmark);
    actions_truncate(e, amark);
    reapply_asides(e, aside_mark);
    e->now = old_now;
    e->next_due = old_next_due;
    queue_clear(e);
}

int engine_advance(struct engine *e, int64_t until)
{
    int64_t target = e->clock_event && e->now > until ? e->now : until;
    batch_begin(e);
    e->batch_n++;
    size_t mark = ws_mark(e->ws), amark = e->n_act, aside_mark = e->n_aside;
    size_t gmark = gauges_mark(e->gauges), cmark = e->n_capped;
    int64_t old_now = e->now, old_next_due = e->next_due;
    e->io_failed = 0;
    int rc = fire_timers(e, target);
    if (rc == 0 && e->clock_event)
        e->now = target;
    queue_clear(e);
    if (rc < 0) {
        /* a storage error: the timers fire again later */
        undo_to(e, mark, amark, aside_mark, gmark, cmark, old_now, old_next_due);
        return rc;
    }
    return 0;
}

static int count_types(struct engine *e, const char *user, const char *type)
{
    for (size_t i = 0; i < e->n_counted; i++) {
        if (strcmp(e->counted[i], type) != 0)
            continue;
        int64_t n = 0;
        int rc = ws_get_int(e->ws, WS_COUNT, "", user, type, &n);
        if (rc == -EIO || ws_put_int(e->ws, WS_COUNT, "", user, type, n + 1) < 0)
            return -EIO;
    }
    return 0;
}

/* The profile with this event counted in. */
static int profile_update(struct engine *e, const struct event *ev, int64_t ts, mktd_profile *p)
{
    int is_order = strcmp(ev->type, "order.paid") == 0;
    int64_t add = 0;
    if (is_order) {
        json_t *a = ev->props ? json_object_get(ev->props, "amount") : NULL;
        add = json_is_integer(a) && json_integer_value(a) > 0 ? json_integer_value(a) : 0;
    }
    int rc = ws_get_profile(e->ws, ev->user, p);
    if (rc == -ENOENT) {
        *p = (mktd_profile){.first_seen = ts, .last_seen = ts};
    } else if (rc < 0) {
        return rc;
    }
    p->events++;
    p->orders += is_order ? 1 : 0;
    p->spent = p->spent > INT64_MAX - add ? INT64_MAX : p->spent + add;
    p->first_seen = ts < p->first_seen ? ts : p->first_seen;
    p->last_seen = ts > p->last_seen ? ts : p->last_seen;
    return ws_put_profile(e->ws, ev->user, p);
}

/* The namespace of delivered actions' keys among the unique keys: not a
 * name a plugin can claim in (those are checked names). */
#define DELIVERED_NS "mktd:delivered"

static const char *foreign_name(struct engine *e, const char *name)
{
    for (size_t i = 0; i < e->n_foreign; i++)
        if (strcmp(e->foreign[i], name) == 0)
            return e->foreign[i];
    e->foreign = xrealloc(e->foreign, (e->n_foreign + 1) * sizeof(*e->foreign));
    return e->foreign[e->n_foreign++] = xstrdup(name);
}

int engine_deliver(struct engine *e, const struct delivered *d)
{
    batch_begin(e);
    size_t mark = ws_mark(e->ws);
    int rc = ws_get_str(e->ws, WS_UNIQUE, DELIVERED_NS, "", d->key, NULL, NULL);
    if (rc == 0)
        return 2;
    if (rc != -ENOENT || ws_put_str(e->ws, WS_UNIQUE, DELIVERED_NS, "", d->key, "", 0) < 0) {
        ws_undo_to(e->ws, mark);
        return -EIO;
    }
    /* a user it names may have been forgotten here before it came */
    char *user = xstrdup(d->user), *payload = xstrdup(d->payload);
    const struct cap_cfg *cap = NULL;
    int err = store_forgotten_rewrite(e->st, &user, &payload);
    if (err == 1 && d->named_forgotten)
        *d->named_forgotten = 1;
    err = err < 0 ? err : 0;
    if (err == 0 && e->w->cfg->n_caps)
        cap = capped_by(e, d->kind, user, d->ts, &err);
    if (err || cap) {
        free(user);
        free(payload);
        if (err) {
            ws_undo_to(e->ws, mark);
            return -EIO;
        }
        capped_add(e, cap->id, foreign_name(e, d->campaign));
        return 1;
    }
    act_push(e, (struct action){.ts = d->ts,
                                .campaign = foreign_name(e, d->campaign),
                                .kind = xstrdup(d->kind),
                                .user = user,
                                .event_id = d->event_id ? xstrdup(d->event_id) : NULL,
                                .payload = payload});
    return 0;
}

enum eng_result engine_event(struct engine *e, const struct event *ev, int64_t receipt_ms,
                             int *n_actions, struct eng_report *rep, char *detail,
                             size_t detail_len)
{
    *n_actions = 0;
    if (rep)
        rep->actions = rep->explain = NULL;
    batch_begin(e);
    e->batch_n++;
    e->io_failed = 0;
    e->failed = NULL;
    /* the key the event is remembered by: its id, or in cluster mode its
     * id and its user's pseudonym (the pseudonym has a fixed length and no
     * 0x1f, so that two keys are equal only for the same id and user) */
    char keybuf[EVENT_ID_MAX + 1 + PSEUDONYM_LEN + 1];
    const char *key = ev->id;
    if (e->ids_per_user) {
        char ps[PSEUDONYM_LEN + 1];
        if (store_pseudonym(e->st, ev->user, ps) < 0) {
            snprintf(detail, detail_len, "database error: %s", store_errmsg(e->st));
            return ENG_INTERNAL;
        }
        snprintf(keybuf, sizeof(keybuf), "%s\x1f%s", ev->id, ps);
        key = keybuf;
    }
    const char *dup_val;
    int seen = ws_get_str(e->ws, WS_EVENT, "", "", key, &dup_val, NULL);
    if (seen == 0)
        return ENG_DUPLICATE;
    if (seen != -ENOENT) {
        snprintf(detail, detail_len, "database error: %s", store_errmsg(e->st));
        return ENG_INTERNAL;
    }
    size_t mark = ws_mark(e->ws), amark = e->n_act, aside_mark = e->n_aside;
    int64_t old_now = e->now, old_next_due = e->next_due;
    int64_t ts, target;
    if (e->clock_event) {
        ts = ev->has_ts ? ev->ts : e->now;
        target = ts > e->now ? ts : e->now;
    } else {
        ts = ev->has_ts ? ev->ts : receipt_ms;
        target = receipt_ms;
    }
    size_t gmark = gauges_mark(e->gauges); /* gauges set by this event */
    size_t cmark = e->n_capped;
    e->dry = ev->dry;
    e->explain = rep && ev->explain ? json_array() : NULL;
    int rc = fire_timers(e, target);
    if (rc == 0)
        e->now = target;
    e->n_actions = 0;
    size_t own = e->n_act; /* the event's own actions start here */
    mktd_profile prof;
    if (rc == 0 && !e->fixed_profiles)
        rc = profile_update(e, ev, ts, &prof);
    if (rc == 0)
        rc = count_types(e, ev->user, ev->type);
    if (rc == 0) {
        mktd_event mev = {.id = ev->id,
                          .type = ev->type,
                          .user = ev->user,
                          .ts = ts,
                          .depth = 0,
                          .source = NULL,
                          .priv = ev->props};
        groups_reset(e);
        rc = dispatch(e, &mev, ev->props, e->fixed_profiles ? NULL : &prof, e->now, ev->id);
        if (rc == 0)
            rc = run_chain(e, ev->id);
    }
    if (rc == 0 && !ev->dry)
        rc = ws_put_str(e->ws, WS_EVENT, "", "", key, "", 0);
    if (rc == 0 && !ev->dry && e->w && e->w->cfg->event_log_keep_ms > 0)
        log_push(e, ev, receipt_ms, ts);
    queue_clear(e);
    json_t *explain = e->explain;
    e->explain = NULL;
    e->dry = 0;
    if (rc < 0) {
        json_decref(explain);
        undo_to(e, mark, amark, aside_mark, gmark, cmark, old_now, old_next_due);
        if (e->failed && !e->io_failed)
            snprintf(detail, detail_len,
                     "campaign %s (plugin %s) failed; nothing of the event was kept",
                     e->failed->cfg->id, e->failed->cfg->plugin);
        else
            snprintf(detail, detail_len, "database error: %s; nothing of the event was kept",
                     store_errmsg(e->st));
        return ENG_INTERNAL;
    }
    *n_actions = e->n_actions;
    if (ev->dry) {
        /* answered as it would have been; nothing of it stays, not even a
         * timer that failed in it */
        if (rep)
            rep->actions = actions_json(e, own);
        aside_truncate(e, aside_mark);
        undo_to(e, mark, amark, aside_mark, gmark, cmark, old_now, old_next_due);
    }
    if (rep)
        rep->explain = explain;
    else
        json_decref(explain);
    return ENG_OK;
}

/* daemon.event_log: an accepted input event, kept for the commit. */
static void log_push(struct engine *e, const struct event *ev, int64_t received_at, int64_t ts)
{
    char *dumped = NULL;
    const char *body = ev->line;
    size_t blen = ev->line_len;
    if (!body) {
        body = dumped = json_dumps(ev->root, JSON_COMPACT);
        blen = dumped ? strlen(dumped) : 0;
    }
    if (!body)
        return;
    size_t il = strlen(ev->id), tl = strlen(ev->type), ul = strlen(ev->user);
    char *buf = xmalloc(il + tl + ul + blen + 4);
    struct evlog_row r = {.received_at = received_at, .ts = ts, .body_len = blen};
    r.id = memcpy(buf, ev->id, il + 1);
    r.type = memcpy(buf + il + 1, ev->type, tl + 1);
    r.user = memcpy(buf + il + tl + 2, ev->user, ul + 1);
    char *b = buf + il + tl + ul + 3;
    memcpy(b, body, blen);
    b[blen] = 0;
    r.body = b;
    free(dumped);
    if (e->n_logq == e->cap_logq) {
        e->cap_logq = e->cap_logq ? e->cap_logq * 2 : 64;
        e->logq = xrealloc(e->logq, e->cap_logq * sizeof(*e->logq));
    }
    e->logq[e->n_logq++] = r;
}

static void log_clear(struct engine *e)
{
    for (size_t i = 0; i < e->n_logq; i++)
        free((char *)e->logq[i].id); /* the row's one allocation */
    e->n_logq = 0;
}

static int write_actions(struct engine *e)
{
    for (size_t i = 0; i < e->n_act; i++) {
        const struct action *a = &e->act[i];
        if (store_action_insert(e->st, a->ts, a->campaign, a->kind, a->user, a->event_id,
                                a->payload, NULL) < 0)
            return -EIO;
    }
    return 0;
}

void engine_commit_meta(struct engine *e, const char *key, int64_t val)
{
    int i = 0;
    while (i < e->commit_meta_set && strcmp(e->commit_meta[i].key, key) != 0)
        i++;
    if (i == ENGINE_COMMIT_META_MAX)
        abort(); /* a caller's bug: a handful of keys at most */
    snprintf(e->commit_meta[i].key, sizeof(e->commit_meta[i].key), "%s", key);
    e->commit_meta[i].val = val;
    if (i == e->commit_meta_set)
        e->commit_meta_set++;
}

int engine_commit(struct engine *e)
{
    if (!e->in_batch && !e->commit_meta_set)
        return 0;
    e->in_batch = 0;
    if (!e->commit_meta_set && !e->txn && !ws_dirty(e->ws) && !e->n_act && !e->n_aside &&
        !e->n_logq && !(e->clock_event && e->now != e->saved_now)) {
        gauges_apply(e->gauges, 0);
        capped_fold(e); /* every capped action was a dry run's, or undone */
        return 1;       /* nothing to write (duplicates, events that changed nothing) */
    }
    int rc = write_begin(e);
    if (rc == 0)
        rc = ws_flush(e->ws);
    if (rc == 0)
        rc = write_actions(e);
    if (rc == 0)
        rc = store_eventlog_write(e->st, e->logq, e->n_logq);
    log_clear(e);
    for (size_t i = 0; rc == 0 && i < e->n_aside; i++) {
        const struct aside *a = &e->aside[i];
        rc = store_timer_set_aside(e->st, a->campaign, a->user, a->name, a->due, a->at, a->error);
    }
    if (rc == 0 && e->clock_event && e->now != e->saved_now)
        rc = store_meta_set(e->st, "clock_now", e->now);
    for (int i = 0; rc == 0 && i < e->commit_meta_set; i++)
        rc = store_meta_set(e->st, e->commit_meta[i].key, e->commit_meta[i].val);
    e->commit_meta_set = 0;
    if (rc == 0 && store_commit(e->st) == 0) {
        write_end(e, 1);
        ws_committed(e->ws);
        e->saved_now = e->now;
        e->stats.actions_total += e->n_act;
        actions_truncate(e, 0);
        aside_clear(e);
        capped_fold(e);
        gauges_apply(e->gauges, 0); /* the batch's gauges show from now on */
        return 0;
    }
    log_debug("commit failed: %s", store_errmsg(e->st)); /* the server logs the state */
    gauges_drop(e->gauges, 0);
    write_end(e, 0);
    ws_rolled_back(e->ws);
    actions_truncate(e, 0);
    aside_clear(e);
    e->n_capped = 0;
    e->now = e->batch_now;
    e->next_due = e->batch_next_due;
    return -EIO;
}

/* ---- direct looks, for the SDK's test kit and tests ---- */

int engine_timer(struct engine *e, const char *campaign, const char *user, const char *name,
                 int64_t *due)
{
    return ws_get_int(e->ws, WS_TIMER, campaign, user, name, due);
}

int engine_counter(struct engine *e, const char *campaign, const char *user, const char *key,
                   int64_t *value)
{
    int rc = ws_get_int(e->ws, WS_COUNTER, campaign, user, key, value);
    if (rc == -ENOENT)
        *value = 0;
    return rc == -ENOENT ? 0 : rc;
}

int engine_state(struct engine *e, const char *campaign, const char *user, const char *key,
                 char **val, size_t *len)
{
    const char *v;
    size_t n;
    int rc = ws_get_str(e->ws, WS_STATE, campaign, user, key, &v, &n);
    if (rc < 0)
        return rc;
    *val = xmalloc(n + 1);
    memcpy(*val, v, n + 1);
    if (len)
        *len = n;
    return 0;
}

int engine_set_profile(struct engine *e, const char *user, const mktd_profile *p)
{
    batch_begin(e);
    int rc = ws_put_profile(e->ws, user, p);
    if (rc == 0)
        e->batch_n++;
    return rc;
}

/* ---- plugin gauges ---- */

void engine_gauges_foreach(struct engine *e,
                           void (*cb)(void *arg, const char *campaign, const char *plugin,
                                      const char *name, int64_t value),
                           void *arg)
{
    gauges_foreach(e->gauges, cb, arg);
}

int64_t engine_now(const struct engine *e)
{
    return e->now;
}

void engine_set_now(struct engine *e, int64_t now)
{
    e->now = now;
}

const mktd_host *engine_host(void)
{
    return host_table();
}

/* ---- personal data (spec 14): forget and export ---- */

void engine_set_actor(struct engine *e, const char *who)
{
    snprintf(e->actor, sizeof(e->actor), "%s", who ? who : "");
}

const char *engine_actor(const struct engine *e)
{
    return e->actor[0] ? e->actor : "daemon";
}

int engine_forget(struct engine *e, const char *user, const char *who, char *pseudonym, size_t plen,
                  char *err, size_t errlen)
{
    struct store *st = e->st;
    char ps[PSEUDONYM_LEN + 1];
    int64_t rewritten = 0;
    if (!user || !*user || strlen(user) > 128) {
        snprintf(err, errlen, "a user id is 1-128 bytes");
        return -EINVAL;
    }
    if (!e->w) {
        snprintf(err, errlen, "no config is loaded");
        return -EINVAL;
    }
    /* what was evaluated so far is written first: the forget sees it all */
    if (e->in_batch && engine_commit(e) < 0) {
        snprintf(err, errlen, "database: the open batch could not be committed: %s",
                 store_errmsg(st));
        return -EIO;
    }
    size_t gmark = gauges_mark(e->gauges);
    if (write_begin(e) < 0) {
        snprintf(err, errlen, "database: %s", store_errmsg(st));
        return -EIO;
    }
    if (store_pseudonym(st, user, ps) < 0)
        goto dberr;
    /* the plugins first, while the user's own state is still there to
     * tell them where else it is named (a referrer's referees) */
    e->io_failed = 0;
    for (size_t i = 0; i < e->w->n; i++) {
        struct campaign *c = &e->w->c[i];
        if (!c->mod->d.on_forget)
            continue;
        struct mktd_ctx ctx;
        ctx_init(&ctx, e, c, e->now, NULL, 0);
        int rc = c->mod->d.on_forget(&ctx, c->data, user, ps);
        ctx_base_reset(&ctx.base);
        if (rc < 0 || e->io_failed) {
            if (e->io_failed)
                snprintf(err, errlen, "campaign %s: database: %s", c->cfg->id, store_errmsg(st));
            else
                snprintf(err, errlen, "campaign %s: plugin %s failed to forget (error %d)",
                         c->cfg->id, c->cfg->plugin, rc);
            log_error("forget: %s; nothing was forgotten", err);
            e->stats.plugin_errors += rc < 0;
            goto undo;
        }
    }
    queue_clear(e); /* on_forget's actions (if any) are kept, not evaluated */
    /* then every row of the user goes (what on_forget wrote under it too),
     * and actions and logged events name the pseudonym */
    if (ws_flush(e->ws) < 0 || write_actions(e) < 0 ||
        store_forget_user(st, user, ps, &rewritten) < 0)
        goto dberr;
    json_t *d = json_pack("{s:s,s:I}", "pseudonym", ps, "actions", (json_int_t)rewritten);
    char *detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    int orc = detail ? store_oplog_add(st, wall_ms(), "forget", who ? who : "", detail) : -EIO;
    free(detail);
    if (orc < 0 || store_commit(st) < 0)
        goto dberr;
    write_end(e, 1);
    ws_committed(e->ws);
    ws_drop_user(e->ws, user); /* the store no longer has them */
    e->stats.actions_total += e->n_act;
    actions_truncate(e, 0);
    gauges_apply(e->gauges, 0);
    store_timer_next(st, &e->next_due);
    if (pseudonym)
        snprintf(pseudonym, plen, "%s", ps);
    log_info("forget: a user is now %s (%lld action rows rewritten; asked by %s)", ps,
             (long long)rewritten, who ? who : "");
    return 0;
dberr:
    snprintf(err, errlen, "database: %s", store_errmsg(st));
    log_error("forget: %s; nothing was forgotten", err);
undo:
    write_end(e, 0);
    ws_rolled_back(e->ws);
    queue_clear(e);
    actions_truncate(e, 0);
    gauges_drop(e->gauges, gmark);
    store_timer_next(st, &e->next_due);
    return -EIO;
}

int engine_export(struct engine *e, const char *user, const char *who, char **json, char *err,
                  size_t errlen)
{
    struct store *st = e->st;
    char ps[PSEUDONYM_LEN + 1];
    *json = NULL;
    if (!user || !*user || strlen(user) > 128) {
        snprintf(err, errlen, "a user id is 1-128 bytes");
        return -EINVAL;
    }
    if (e->in_batch && engine_commit(e) < 0) {
        snprintf(err, errlen, "database: the open batch could not be committed: %s",
                 store_errmsg(st));
        return -EIO;
    }
    /* the oplog names the user by its pseudonym: a later forget leaves
     * nothing of the id behind */
    if (write_begin(e) < 0)
        goto dberr;
    json_t *d = NULL;
    char *detail = NULL;
    int rc = store_pseudonym(st, user, ps);
    if (rc == 0) {
        d = json_pack("{s:s}", "user", ps);
        detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
        json_decref(d);
        rc = detail ? store_oplog_add(st, wall_ms(), "export", who ? who : "", detail) : -EIO;
        free(detail);
    }
    if (rc == 0)
        rc = store_export_user(st, user, json);
    if (rc < 0 || store_commit(st) < 0) {
        free(*json);
        *json = NULL;
        goto dberr;
    }
    write_end(e, 1);
    return 0;
dberr:
    snprintf(err, errlen, "database: %s", store_errmsg(st));
    write_end(e, 0);
    return -EIO;
}

void engine_claimed_take(struct engine *e,
                         void (*cb)(void *arg, const char *ns, const char *key,
                                    const char *campaign),
                         void *arg)
{
    for (size_t i = 0; i < e->n_claimed; i++) {
        const char *ns = e->claimed[i], *key = ns + strlen(ns) + 1;
        cb(arg, ns, key, key + strlen(key) + 1);
        free(e->claimed[i]);
    }
    e->n_claimed = 0;
}
