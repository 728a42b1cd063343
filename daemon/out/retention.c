/* Retention (daemon.retention, spec 18 "Outputs and retention").
 *
 * A sweep walks the actions by seq, CHUNK at a time, each chunk one short
 * DELETE between the loop's other work (a zero timer in between), and
 * deletes those older than the retention. It stops at the smallest
 * position of the configured outputs (what they have not delivered stays)
 * and before the last action; from there it goes on every NEXT_MS (over
 * what came since, and what an output delivered since), and starts over
 * from the first action every SWEEP_MS (actions age meanwhile). */
#include "out/retention.h"

#include <stddef.h>
#include <stdlib.h>

#include "lib/log.h"
#include "lib/util.h"

#define CHUNK 1000
#define START_MS 1000   /* the first sweep, after a start or a reload */
#define NEXT_MS 1000    /* a sweep that reached its bound goes on from there */
#define SWEEP_MS 600000 /* a sweep starts over from the first action */
#define ERROR_MS 10000  /* after the database refused */

struct retention {
    struct event_base *base;
    struct store *st;
    struct outs *outs;
    struct event *ev;
    int64_t keep_ms; /* 0: off */
    int64_t cap_ms;  /* the longest cap window */
    int64_t cursor;  /* the sweep has looked at every seq up to here */
    uint64_t swept;  /* deleted by the sweep under way */
    uint64_t pruned; /* since start */
    int64_t started; /* wall ms the sweep under way started from the first action */
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

static void step(evutil_socket_t fd, short what, void *arg)
{
    struct retention *r = arg;
    if (!r->keep_ms)
        return;
    int64_t keep = r->keep_ms > r->cap_ms ? r->keep_ms : r->cap_ms;
    int64_t before = wall_ms() - keep, end, upto;
    if (store_action_last_seq(r->st, &end) < 0) {
        schedule(r, ERROR_MS);
        return;
    }
    int64_t bound = end - 1; /* the last action stays */
    int64_t outs = outs_min_position(r->outs);
    int held = outs < bound;
    if (held)
        bound = outs;
    int n = store_actions_prune(r->st, r->cursor, bound, before, CHUNK, &upto);
    if (n < 0) {
        log_debug("retention: the database refused a delete; trying again later");
        schedule(r, ERROR_MS);
        return;
    }
    r->swept += (uint64_t)n;
    r->pruned += (uint64_t)n;
    if (upto > r->cursor) { /* more to look at */
        r->cursor = upto;
        schedule(r, 0);
        return;
    }
    if (r->swept)
        log_info("retention: %llu actions older than %lld h pruned%s", (unsigned long long)r->swept,
                 (long long)(keep / 3600000),
                 held ? " (an output has not delivered the rest)" : "");
    r->swept = 0;
    if (wall_ms() - r->started >= SWEEP_MS) {
        r->cursor = 0;
        r->started = wall_ms();
    }
    schedule(r, NEXT_MS);
}

struct retention *retention_new(struct event_base *base, struct store *st, struct outs *outs)
{
    struct retention *r = xcalloc(1, sizeof(*r));
    r->base = base;
    r->st = st;
    r->outs = outs;
    r->ev = evtimer_new(base, step, r);
    return r;
}

void retention_free(struct retention *r)
{
    if (!r)
        return;
    event_free(r->ev);
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
}

uint64_t retention_pruned(const struct retention *r)
{
    return r ? r->pruned : 0;
}
