/* Retention (daemon.retention, spec 18 "Outputs and retention").
 *
 * A sweep walks the actions by seq, CHUNK at a time, each chunk one short
 * DELETE between the loop's other work (a zero timer in between), and
 * deletes those older than the retention. It stops at the smallest
 * position of the configured outputs (what they have not delivered stays)
 * and before the last action; from there it goes on every NEXT_MS (over
 * what came since, and what an output delivered since), and starts over
 * from the first action every SWEEP_MS (actions age meanwhile).
 *
 * daemon.event_log.keep (spec 13) prunes event_log the same way on a timer
 * of its own: CHUNK rows received before now - keep per delete, the next
 * chunk at once (a zero timer, so the loop serves clients in between)
 * while a chunk was full, else again after NEXT_MS. */
#include "out/retention.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>

#include "lib/log.h"
#include "lib/util.h"
#include "store/eventlog.h"

#define CHUNK RETENTION_CHUNK
#define START_MS 1000   /* the first sweep, after a start or a reload */
#define NEXT_MS 1000    /* a sweep that reached its bound goes on from there */
#define SWEEP_MS 600000 /* a sweep starts over from the first action */
#define ERROR_MS 10000  /* after the database refused */

struct retention {
    struct event_base *base;
    struct store *st;
    struct outs *outs;
    struct event *ev;
    int64_t keep_ms;      /* 0: off */
    int64_t cap_ms;       /* the longest cap window */
    int64_t cursor;       /* the sweep has looked at every seq up to here */
    uint64_t swept;       /* deleted by the sweep under way */
    uint64_t pruned;      /* since start */
    int64_t started;      /* wall ms the sweep under way started from the first action */
    struct event *log_ev; /* event_log's pruning */
    int64_t log_keep_ms;  /* daemon.event_log.keep; 0: off */
    uint64_t log_swept;   /* event_log rows deleted by the sweep under way */
    uint64_t log_pruned;  /* since start */
};

int64_t retention_cap_window_ms(const struct config *cfg)
{
    int64_t w = 0; /* a cap counts actions with ts in (ts - per, ts + per) */
    for (size_t i = 0; i < cfg->n_caps; i++)
        if (cfg->caps[i].per_ms > w)
            w = cfg->caps[i].per_ms;
    return w;
}

static void schedule(struct retention *r, int64_t ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(r->ev, &tv);
}

int retention_actions_step(struct store *st, int64_t keep_ms, int64_t cap_ms, int64_t bound,
                           int64_t now, int64_t *cursor, int *bounded)
{
    int64_t keep = keep_ms > cap_ms ? keep_ms : cap_ms, end, upto;
    if (store_action_last_seq(st, &end) < 0)
        return -EIO;
    int64_t max = end - 1; /* the last action stays */
    *bounded = bound < max;
    if (*bounded)
        max = bound;
    int n = store_actions_prune(st, *cursor, max, now - keep, RETENTION_CHUNK, &upto);
    if (n >= 0 && upto > *cursor)
        *cursor = upto;
    return n;
}

static void step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct retention *r = arg;
    if (!r->keep_ms)
        return;
    int64_t before = r->cursor;
    int held = 0;
    int n = retention_actions_step(r->st, r->keep_ms, r->cap_ms, outs_min_position(r->outs),
                                   wall_ms(), &r->cursor, &held);
    if (n < 0) {
        log_debug("retention: the database refused a delete; trying again later");
        schedule(r, ERROR_MS);
        return;
    }
    r->swept += (uint64_t)n;
    r->pruned += (uint64_t)n;
    if (r->cursor > before) { /* more to look at */
        schedule(r, 0);
        return;
    }
    if (r->swept)
        log_info("retention: %llu actions older than %lld h pruned%s", (unsigned long long)r->swept,
                 (long long)((r->keep_ms > r->cap_ms ? r->keep_ms : r->cap_ms) / 3600000),
                 held ? " (an output has not delivered the rest)" : "");
    r->swept = 0;
    if (wall_ms() - r->started >= SWEEP_MS) {
        r->cursor = 0;
        r->started = wall_ms();
    }
    schedule(r, NEXT_MS);
}

static void log_step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd, (void)what;
    struct retention *r = arg;
    if (!r->log_keep_ms)
        return;
    struct timeval now = {0, 0};
    int n = store_eventlog_prune(r->st, wall_ms() - r->log_keep_ms, CHUNK);
    if (n < 0) {
        log_debug("retention: the database refused an event_log delete; trying again later");
        now.tv_sec = ERROR_MS / 1000;
        evtimer_add(r->log_ev, &now);
        return;
    }
    r->log_swept += (uint64_t)n;
    r->log_pruned += (uint64_t)n;
    if (n == CHUNK) { /* more, after the loop's other work */
        evtimer_add(r->log_ev, &now);
        return;
    }
    if (r->log_swept)
        log_info("retention: %llu logged events older than %lld s pruned",
                 (unsigned long long)r->log_swept, (long long)(r->log_keep_ms / 1000));
    r->log_swept = 0;
    now.tv_sec = NEXT_MS / 1000;
    evtimer_add(r->log_ev, &now);
}

struct retention *retention_new(struct event_base *base, struct store *st, struct outs *outs)
{
    struct retention *r = xcalloc(1, sizeof(*r));
    r->base = base;
    r->st = st;
    r->outs = outs;
    r->ev = evtimer_new(base, step, r);
    r->log_ev = evtimer_new(base, log_step, r);
    return r;
}

void retention_free(struct retention *r)
{
    if (!r)
        return;
    event_free(r->ev);
    event_free(r->log_ev);
    free(r);
}

void retention_configure(struct retention *r, const struct config *cfg)
{
    r->keep_ms = cfg->retention_actions_ms;
    r->cap_ms = retention_cap_window_ms(cfg);
    r->cursor = 0;
    r->swept = 0;
    r->started = wall_ms();
    if (r->keep_ms)
        schedule(r, START_MS);
    else
        evtimer_del(r->ev);
    r->log_keep_ms = cfg->event_log_keep_ms;
    r->log_swept = 0;
    if (r->log_keep_ms) {
        struct timeval tv = {START_MS / 1000, 0};
        evtimer_add(r->log_ev, &tv);
    } else {
        evtimer_del(r->log_ev);
    }
}

uint64_t retention_log_pruned(const struct retention *r)
{
    return r ? r->log_pruned : 0;
}

uint64_t retention_pruned(const struct retention *r)
{
    return r ? r->pruned : 0;
}
