/* Budgets shared by the partitions of a cluster (engine/budget.h).
 *
 * A partition keeps, per campaign and counter, beside the counter itself
 * (what it has spent): the room it holds (the sum of its claims), where it
 * stands in the pool's list of claims (the next claim number and where the
 * one before it ends) and, once the pool is spent, the limit it ran out at.
 * They are campaign-wide counters of the working set under keys no plugin
 * writes, so they are undone with a failed event, committed with the batch
 * and restored with the shard: a partition replayed from its stream finds
 * its own claims again (budget_pool's contract) and decides alike. */
#include <errno.h>
#include <stdio.h>

#include "engine/budget.h"
#include "engine/internal.h"
#include "engine/ws.h"
#include "lib/util.h"

enum { HELD, NEXT, END, OUT, N_HIDDEN };
static const char *const hidden_name[N_HIDDEN] = {"held", "next", "end", "out"};

/* "\x1fpool.<what>\x1f<key>": a counter key no plugin writes. */
static int hidden_key(char *buf, size_t len, int what, const char *key)
{
    int n = snprintf(buf, len, "\x1fpool.%s\x1f%s", hidden_name[what], key);
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static int counter(struct engine *e, const char *campaign, const char *key, int64_t *v)
{
    *v = 0;
    int rc = ws_get_int(e->ws, WS_COUNTER, campaign, NULL, key, v);
    return rc == -ENOENT ? 0 : rc;
}

static int hidden_get(struct engine *e, const char *campaign, const char *key, int64_t *v)
{
    char k[512];
    int rc = 0;
    for (int i = 0; i < N_HIDDEN && rc == 0; i++)
        if ((rc = hidden_key(k, sizeof(k), i, key)) == 0)
            rc = counter(e, campaign, k, &v[i]);
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
    int rc = counter(e, campaign, key, &cur);
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
    int64_t cur, h[N_HIDDEN];
    int rc = counter(e, campaign, key, &cur);
    if (rc == 0)
        rc = hidden_get(e, campaign, key, h);
    if (rc < 0)
        return rc;
    /* spent: limit - value = the room held and unused */
    *value = h[OUT] ? sat_add(h[OUT] - 1, cur - h[HELD]) : cur;
    return 0;
}
