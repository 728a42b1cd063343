/*
 * The way an event travels, once it is decoded and valid:
 *
 *   engine_event: savepoint -> remember id (or duplicate) -> fire due timers
 *   -> move the clock -> update the profile -> campaigns in config order ->
 *   the internal events of their actions, breadth-first, to depth 4 ->
 *   release (or roll back whole when a plugin failed).
 *
 * Timers fire the same way (fire_timers), with the due time as their now.
 */
#define _GNU_SOURCE
#include "engine/engine.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/cond.h"
#include "lib/log.h"

#define MAX_DEPTH 4

/* ---- worlds ---- */

static int campaign_init(struct campaign *c, struct errs *errs)
{
    const struct campaign_cfg *cc = c->cfg;
    const mktd_plugin *d = &c->mod->d;
    if ((d->flags & MKTD_PLUGIN_WHEN_REQUIRED) && !cc->has_when) {
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

static void free_counted(struct engine *e)
{
    for (size_t i = 0; i < e->n_counted; i++)
        free(e->counted[i]);
    free(e->counted);
    e->counted = NULL;
    e->n_counted = 0;
}

int engine_open(struct engine *e, struct store *st, int clock_event)
{
    memset(e, 0, sizeof(*e));
    e->st = st;
    e->clock_event = clock_event;
    if (store_meta_get(st, "clock_now", &e->now) < 0)
        e->now = 0;
    e->saved_now = e->now;
    e->next_due = store_timer_min(st);
    if (store_counted_list(st, &e->counted, &e->n_counted) < 0)
        return -EIO;
    return 0;
}

void engine_close(struct engine *e)
{
    world_free(e->w);
    e->w = NULL;
    free_counted(e);
    for (size_t i = e->q_head; i < e->q_len; i++) {
        free(e->q[i].kind);
        free(e->q[i].user);
        free(e->q[i].source);
        json_decref(e->q[i].props);
    }
    free(e->q);
}

int engine_swap(struct engine *e, struct world *w, char *err, size_t errlen)
{
    struct store *st = e->st;
    if (store_begin(st) < 0) {
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
    for (size_t i = 0; i < w->n; i++) {
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
        if (rc < 0) {
            e->w = old;
            snprintf(err, errlen, "campaign %s: plugin %s failed to load (error %d)", c->cfg->id,
                     c->cfg->plugin, rc);
            store_rollback(st);
            e->next_due = store_timer_min(st);
            return rc;
        }
    }
    if (store_commit(st) < 0) {
        e->w = old;
        snprintf(err, errlen, "database: %s", store_errmsg(st));
        store_rollback(st);
        return -EIO;
    }
    world_free(old);
    free_counted(e);
    store_counted_list(st, &e->counted, &e->n_counted);
    e->next_due = store_timer_min(st);
    return 0;
dberr:
    snprintf(err, errlen, "database: %s", store_errmsg(st));
    store_rollback(st);
    return -EIO;
}

/* ---- evaluation ---- */

static int64_t count_cb(void *arg, const char *user, const char *type)
{
    return store_count_get(((struct engine *)arg)->st, user, type);
}

static int in_window(const struct campaign_cfg *cc, int64_t ts)
{
    return cc->enabled && ts >= cc->starts && ts <= cc->ends;
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
        if (ev->source && strcmp(ev->source, c->cfg->id) == 0)
            continue; /* blind to its own actions */
        unsigned flags = 0;
        if (in_window(c->cfg, ev->ts)) {
            flags |= MKTD_F_ACTIVE;
            if (c->cfg->has_when && c->cfg->n_conds && !have_profile) {
                in.profile = store_profile_get(e->st, ev->user, &prof) == 0 ? &prof : NULL;
                have_profile = 1;
            }
            if (when_matches(c->cfg, &in))
                flags |= MKTD_F_MATCH;
        }
        struct mktd_ctx ctx;
        ctx_init(&ctx, e, c, now, event_id, ev->depth);
        int rc = c->mod->d.on_event(&ctx, c->data, ev, flags);
        ctx_base_reset(&ctx.base);
        if (rc < 0) {
            e->plugin_errors++;
            e->failed = c;
            log_msg(MKTD_LOG_ERROR, c->cfg->id, "plugin %s failed on %s event of user %s (%d)",
                    c->cfg->plugin, ev->type, ev->user, rc);
            return rc;
        }
    }
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

int engine_emit(struct engine *e, struct mktd_ctx *ctx, const char *kind, const char *user,
                json_t *payload)
{
    char *text = json_dumps(payload, JSON_COMPACT);
    if (!text)
        return -ENOMEM;
    int rc = store_action_insert(e->st, ctx->now, ctx->c->cfg->id, kind, user, ctx->event_id, text,
                                 NULL);
    free(text);
    if (rc < 0)
        return rc;
    e->n_actions++;
    e->actions_total++;
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

/* The live timers due next, at or before until, in firing order. */
static int next_timers(struct engine *e, int64_t until, struct timer_row **rows, size_t *n)
{
    if (store_timers_upto(e->st, until, TIMER_BATCH, rows, n) < 0)
        return -EIO;
    if (*n > 1)
        qsort_r(*rows, *n, sizeof(**rows), cmp_timer, e);
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
            rc = store_timer_take(e->st, rows[i].campaign, rows[i].user, rows[i].name, rows[i].due);
            if (rc < 0)
                break;
            if (rc == 0) /* an earlier callback moved or cancelled it */
                continue;
            rc = 0;
            if (!c || !c->mod->d.on_timer)
                continue;
            unsigned flags = in_window(c->cfg, rows[i].due) ? MKTD_F_ACTIVE : 0;
            struct mktd_ctx ctx;
            ctx_init(&ctx, e, c, rows[i].due, NULL, 0);
            rc = c->mod->d.on_timer(&ctx, c->data, rows[i].user, rows[i].name, rows[i].due, flags);
            ctx_base_reset(&ctx.base);
            if (rc < 0) {
                e->plugin_errors++;
                e->failed = c;
                log_msg(MKTD_LOG_ERROR, c->cfg->id, "plugin %s failed on timer %s of user %s (%d)",
                        c->cfg->plugin, rows[i].name, rows[i].user, rc);
                break;
            }
            rc = run_chain(e, NULL);
        }
        store_timer_rows_free(rows, n);
        if (rc < 0)
            return rc;
        e->next_due = store_timer_min(e->st);
    }
    return 0;
}

/* The clock moves in memory; the batch's commit stores it. */
static int set_now(struct engine *e, int64_t now)
{
    e->now = now;
    return 0;
}

int engine_advance(struct engine *e, int64_t until)
{
    int64_t target = e->clock_event && e->now > until ? e->now : until;
    int64_t old_now = e->now;
    if (store_savepoint(e->st) < 0)
        return -EIO;
    int rc = fire_timers(e, target);
    if (rc == 0 && e->clock_event)
        rc = set_now(e, target);
    queue_clear(e);
    if (rc < 0) {
        /* all or nothing, as for an event: the timers fire again later */
        store_rollback_to(e->st);
        e->now = old_now;
        e->next_due = store_timer_min(e->st);
        return rc;
    }
    return store_release(e->st);
}

static void count_types(struct engine *e, const char *user, const char *type, int *rc)
{
    for (size_t i = 0; i < e->n_counted && *rc == 0; i++)
        if (strcmp(e->counted[i], type) == 0)
            *rc = store_count_inc(e->st, user, type);
}

enum eng_result engine_event(struct engine *e, const struct event *ev, int64_t receipt_ms,
                             int *n_actions, char *detail, size_t detail_len)
{
    struct store *st = e->st;
    *n_actions = 0;
    if (store_savepoint(st) < 0)
        goto dberr;
    int seen = store_event_remember(st, ev->id);
    if (seen < 0) {
        store_rollback_to(st);
        goto dberr;
    }
    if (seen == 1) {
        store_release(st);
        return ENG_DUPLICATE;
    }
    int64_t old_now = e->now;
    int64_t ts, target;
    if (e->clock_event) {
        ts = ev->has_ts ? ev->ts : e->now;
        target = ts > e->now ? ts : e->now;
    } else {
        ts = ev->has_ts ? ev->ts : receipt_ms;
        target = receipt_ms;
    }
    e->failed = NULL;
    int rc = fire_timers(e, target);
    if (rc == 0)
        rc = set_now(e, target);
    e->n_actions = 0;
    mktd_profile prof;
    if (rc == 0) {
        int is_order = strcmp(ev->type, "order.paid") == 0;
        int64_t amount = 0;
        if (is_order) {
            json_t *a = ev->props ? json_object_get(ev->props, "amount") : NULL;
            amount = json_is_integer(a) ? json_integer_value(a) : 0;
        }
        rc = store_profile_update(st, ev->user, ts, is_order, amount, &prof);
        count_types(e, ev->user, ev->type, &rc);
    }
    if (rc == 0) {
        mktd_event mev = {.id = ev->id,
                          .type = ev->type,
                          .user = ev->user,
                          .ts = ts,
                          .depth = 0,
                          .source = NULL,
                          .priv = ev->props};
        rc = dispatch(e, &mev, ev->props, &prof, e->now, ev->id);
        if (rc == 0)
            rc = run_chain(e, ev->id);
    }
    queue_clear(e);
    if (rc < 0) {
        store_rollback_to(st);
        e->now = old_now;
        e->next_due = store_timer_min(st);
        if (e->failed)
            snprintf(detail, detail_len,
                     "campaign %s (plugin %s) failed; nothing of the event was kept",
                     e->failed->cfg->id, e->failed->cfg->plugin);
        else
            snprintf(detail, detail_len, "database error: %s", store_errmsg(st));
        return ENG_INTERNAL;
    }
    if (store_release(st) < 0)
        goto dberr;
    *n_actions = e->n_actions;
    return ENG_OK;
dberr:
    snprintf(detail, detail_len, "database error: %s", store_errmsg(st));
    return ENG_INTERNAL;
}

int engine_batch_begin(struct engine *e)
{
    if (e->in_batch)
        return 0;
    if (store_begin(e->st) < 0)
        return -EIO;
    e->in_batch = 1;
    e->batch_n = 0;
    e->batch_now = e->now;
    return 0;
}

int engine_batch_commit(struct engine *e)
{
    if (!e->in_batch)
        return 0;
    e->in_batch = 0;
    int rc = 0;
    if (e->clock_event && e->now != e->saved_now)
        rc = store_meta_set(e->st, "clock_now", e->now);
    if (rc == 0 && store_commit(e->st) == 0) {
        e->saved_now = e->now;
        return 0;
    }
    log_debug("commit failed: %s", store_errmsg(e->st)); /* the server logs the state */
    store_rollback(e->st);
    e->now = e->batch_now;
    e->next_due = store_timer_min(e->st);
    return -EIO;
}
