/* Budgets shared by the partitions of a cluster (engine/budget.h).
 *
 * A partition keeps, per campaign and counter, beside the counter itself
 * (what it has spent): the room it holds (the sum of its claims), where it
 * stands in the pool's list of claims (the next claim number and where the
 * one before it ends) and, once the pool is spent, the limit it ran out at.
 * They are campaign-wide counters of the working set under keys no plugin
 * writes, so they are undone with a failed event, committed with the batch
 * and restored with the shard: a partition replayed from its stream finds
 * its own claims again (budget_pool's contract) and decides alike.
 *
 * A read (budget_get) needs them only once the pool is spent: the
 * counter's note in the working set says whether it is, so that reading a
 * counter with no "out" costs what it costs outside cluster mode. */
#include <errno.h>
#include <string.h>

#include "engine/budget.h"
#include "engine/internal.h"
#include "engine/ws.h"
#include "lib/util.h"

enum { HELD, NEXT, END, OUT, N_HIDDEN };
static const struct {
    const char *s;
    size_t n;
} hidden_name[N_HIDDEN] = {{"held", 4}, {"next", 4}, {"end", 3}, {"out", 3}};

/* "\x1fpool.<what>\x1f<key>": a counter key no plugin writes. */
static int hidden_key(char *buf, size_t len, int what, const char *key)
{
    static const char pre[] = "\x1fpool.";
    size_t a = sizeof(pre) - 1, b = hidden_name[what].n, c = strlen(key);
    if (a + b + 1 + c + 1 > len)
        return -ENAMETOOLONG;
    memcpy(buf, pre, a);
    memcpy(buf + a, hidden_name[what].s, b);
    buf[a + b] = '\x1f';
    memcpy(buf + a + b + 1, key, c + 1);
    return 0;
}

/* What the working set's note on a counter (ws_get_int_note) says of its
 * budget: nothing yet (the entry just came into memory), no "out" (the
 * count reads as it is: a counter never added to with a limit, or a pool
 * with room), or "out" (the pool is spent, or was in an event since
 * undone). Only budget_add sets "out", and it notes it then: a note of no
 * "out" stays true; one of "out" may only be stale after an undo, which
 * costs reads, never a wrong answer. */
enum { NOTE_UNSEEN = 0, NOTE_ROOM, NOTE_OUT };

static int counter(struct engine *e, const char *campaign, const char *key, int64_t *v)
{
    *v = 0;
    int rc = ws_get_int(e->ws, WS_COUNTER, campaign, NULL, key, v);
    return rc == -ENOENT ? 0 : rc;
}

/* counter(), and the counter's note */
static int counter_noted(struct engine *e, const char *campaign, const char *key, int64_t *v,
                         uint8_t *note)
{
    *v = 0;
    int rc = ws_get_int_note(e->ws, WS_COUNTER, campaign, NULL, key, v, note);
    return rc == -ENOENT ? 0 : rc;
}

static int hidden_one(struct engine *e, const char *campaign, const char *key, int what, int64_t *v)
{
    char k[512];
    int rc = hidden_key(k, sizeof(k), what, key);
    return rc < 0 ? rc : counter(e, campaign, k, v);
}

static int hidden_get(struct engine *e, const char *campaign, const char *key, int64_t *v)
{
    int rc = 0;
    for (int i = 0; i < N_HIDDEN && rc == 0; i++)
        rc = hidden_one(e, campaign, key, i, &v[i]);
    return rc;
}

static int hidden_put(struct engine *e, const char *campaign, const char *key, const int64_t *v,
                      const int64_t *was)
{
    char k[512];
    int rc = 0;
    for (int i = 0; i < N_HIDDEN && rc == 0; i++)
        if (v[i] != was[i] && (rc = hidden_key(k, sizeof(k), i, key)) == 0)
            rc = ws_put_int(e->ws, WS_COUNTER, campaign, NULL, k, v[i]);
    return rc;
}

int budget_add(struct engine *e, const char *campaign, const char *key, int64_t delta,
               int64_t limit, int64_t *value)
{
    int64_t cur, h[N_HIDDEN], was[N_HIDDEN];
    uint8_t note;
    int rc = counter_noted(e, campaign, key, &cur, &note);
    if (rc == 0)
        rc = hidden_get(e, campaign, key, h);
    if (rc < 0)
        return rc;
    for (int i = 0; i < N_HIDDEN; i++)
        was[i] = h[i];
    int64_t next = sat_add(cur, delta);
    int refused = next > limit;
    /* claims until the room held covers it, or the pool is spent (at this
     * limit: a budget raised since may have room again) */
    while (!refused && next > h[HELD]) {
        if (h[OUT] && h[OUT] - 1 >= limit) {
            refused = 1;
            break;
        }
        int64_t got = 0;
        rc = e->pool.claim(e->pool.arg, campaign, key, limit, next - h[HELD], &h[NEXT], &h[END],
                           &got);
        if (rc < 0)
            return rc;
        if (rc == 1) {
            h[OUT] = sat_add(limit, 1);
            refused = 1;
        } else {
            h[HELD] = sat_add(h[HELD], got);
        }
    }
    /* what was claimed is kept even when refused: it is this partition's */
    if ((rc = hidden_put(e, campaign, key, h, was)) < 0)
        return rc;
    uint8_t now = h[OUT] ? NOTE_OUT : NOTE_ROOM;
    if (note != now && (rc = ws_set_note(e->ws, WS_COUNTER, campaign, NULL, key, now)) < 0)
        return rc;
    if (refused) {
        if (value)
            *value = cur;
        return 1;
    }
    if ((rc = ws_put_int(e->ws, WS_COUNTER, campaign, NULL, key, next)) < 0)
        return rc;
    if (value)
        *value = next;
    return 0;
}

int budget_get(struct engine *e, const char *campaign, const char *key, int64_t *value)
{
    int64_t cur, held = 0, out = 0;
    uint8_t note;
    int rc = counter_noted(e, campaign, key, &cur, &note);
    if (rc == 0 && note == NOTE_UNSEEN) {
        /* first sight since the entry came into memory (a counter of a
         * reopened shard too): its "out", if any, says */
        if ((rc = hidden_one(e, campaign, key, OUT, &out)) == 0)
            rc = ws_set_note(e->ws, WS_COUNTER, campaign, NULL, key, out ? NOTE_OUT : NOTE_ROOM);
    } else if (rc == 0 && note == NOTE_OUT) {
        rc = hidden_one(e, campaign, key, OUT, &out);
    }
    if (rc == 0 && out)
        rc = hidden_one(e, campaign, key, HELD, &held);
    if (rc < 0)
        return rc;
    /* spent: limit - value = the room held and unused */
    *value = out ? sat_add(out - 1, cur - held) : cur;
    return 0;
}
