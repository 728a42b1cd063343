/* The budgets' shared pool (spec 17; engine/engine.h, struct budget_pool):
 * a list of claims per campaign and counter in the key-value bucket
 * "<stream>_budgets", one key per claim: "<campaign>.<counter>.<n>" =
 * "<partition> <start> <size> <limit>". Claim n starts where claim n - 1
 * ends, and is made with create-only, which is exact under races (one
 * winner) where compare-and-set by several writers on one key is not
 * (nats-server 2.9.10, upstream issue 4320): the claims never overlap and
 * never pass the limit, so a budget is never exceeded. A claim is never
 * given back: what a partition holds unused when the pool runs out stays
 * unused.
 *
 * Claims shrink as the pool empties (the room left over twice the
 * partitions, at least what the event needs), so that little is left held
 * where no event needs it. docs/cluster.md, "Budgets", has the picture. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster/internal.h"
#include "lib/log.h"
#include "lib/util.h"

int cluster_claim_parse(const char *v, struct claim *c)
{
    int n = sscanf(v, "%d %" SCNd64 " %" SCNd64 " %" SCNd64, &c->partition, &c->start, &c->size,
                   &c->limit);
    if (n != 4 || c->start < 0 || c->size <= 0)
        return -1;
    return 0;
}

/* The size of a new claim starting at end: what is left over twice the
 * partitions, at least need, at most what is left. */
static int64_t claim_size(int64_t end, int64_t limit, int64_t need, int partitions)
{
    int64_t left = limit - end;
    int64_t share = (left + 2 * (int64_t)partitions - 1) / (2 * (int64_t)partitions);
    int64_t size = need > share ? need : share;
    return size < left ? size : left;
}

static int pool_claim(void *arg, const char *campaign, const char *key, int64_t limit, int64_t need,
                      int64_t *next, int64_t *end, int64_t *got)
{
    struct pool_part *pp = arg;
    char tok[256], k[400], v[96];
    if (cluster_kv_token(key, tok, sizeof(tok)) < 0)
        return -ENAMETOOLONG;
    int64_t deadline = wall_ms() + pp->reach->wait_ms;
    for (;;) {
        snprintf(k, sizeof(k), "%s.%s.%" PRId64, campaign, tok, *next);
        kvEntry *e = NULL;
        natsStatus s = kvStore_Get(&e, pp->kv, k);
        if (s == NATS_OK) {
            struct claim c;
            int ok = cluster_claim_parse(kvEntry_ValueString(e), &c) == 0;
            kvEntry_Destroy(e);
            if (!ok) {
                log_error("budget pool: claim %s unreadable", k);
                pp->reach->down = "budget pool";
                return -EAGAIN;
            }
            *next += 1;
            *end = c.start + c.size;
            if (c.partition == pp->idx) { /* ours, not yet in the shard */
                *got = c.size;
                return 0;
            }
            continue;
        }
        if (s == NATS_NOT_FOUND) {
            if (*end >= limit)
                return 1;
            int64_t size = claim_size(*end, limit, need, pp->partitions);
            int n = snprintf(v, sizeof(v), "%d %" PRId64 " %" PRId64 " %" PRId64, pp->idx, *end,
                             size, limit);
            uint64_t rev;
            s = kvStore_Create(&rev, pp->kv, k, v, n);
            if (s == NATS_OK) {
                *next += 1;
                *end += size;
                *got = size;
                return 0;
            }
            /* taken meanwhile (or not known yet where it was read): read again */
        }
        if (wall_ms() >= deadline) {
            log_error("budget pool: claim %s: %s", k, natsStatus_GetText(s));
            pp->reach->down = "budget pool";
            return -EAGAIN;
        }
        nats_Sleep(cluster_transient(s) ? 250 : 5);
    }
}

void cluster_pool_init(struct pool_part *pp, kvStore *kv, int idx, int partitions,
                       struct reach *reach)
{
    memset(pp, 0, sizeof(*pp));
    pp->ops.claim = pool_claim;
    pp->ops.arg = pp;
    pp->kv = kv;
    pp->idx = idx;
    pp->partitions = partitions;
    pp->reach = reach;
}

/* "<campaign>.<token>" back to "<campaign>.<counter>" (a hex token decoded). */
static char *pool_name(const char *key, size_t len)
{
    const char *dot = memchr(key, '.', len);
    if (!dot || dot[1] != '=')
        return xstrndup(key, len);
    size_t head = (size_t)(dot - key) + 1, hex = len - head - 1;
    char *s = xmalloc(head + hex / 2 + 1), *o = s + head;
    memcpy(s, key, head);
    for (size_t i = 0; i + 1 < hex; i += 2) {
        unsigned v = 0;
        sscanf(dot + 2 + i, "%2x", &v);
        *o++ = (char)v;
    }
    *o = 0;
    return s;
}

int cluster_pools(kvStore *kv, struct pool_sum **out, size_t *n)
{
    kvKeysList keys = {0};
    *out = NULL;
    *n = 0;
    natsStatus s = kvStore_Keys(&keys, kv, NULL);
    if (s == NATS_NOT_FOUND)
        return 0;
    if (s != NATS_OK)
        return -1;
    for (int i = 0; i < keys.Count; i++) {
        const char *k = keys.Keys[i], *last = strrchr(k, '.');
        kvEntry *e = NULL;
        struct claim c;
        if (!last || kvStore_Get(&e, kv, k) != NATS_OK)
            continue;
        int ok = cluster_claim_parse(kvEntry_ValueString(e), &c) == 0;
        kvEntry_Destroy(e);
        if (!ok)
            continue;
        char *name = pool_name(k, (size_t)(last - k));
        size_t j;
        for (j = 0; j < *n && strcmp((*out)[j].name, name) != 0; j++)
            ;
        if (j == *n) {
            *out = xrealloc(*out, (*n + 1) * sizeof(**out));
            memset(&(*out)[j], 0, sizeof(**out));
            (*out)[j].name = name;
            (*n)++;
        } else {
            free(name);
        }
        struct pool_sum *p = &(*out)[j];
        p->claimed += c.size;
        p->claims++;
        if (c.start + c.size > p->end) {
            p->end = c.start + c.size;
            p->limit = c.limit;
        }
    }
    kvKeysList_Destroy(&keys);
    return 0;
}

void cluster_pools_free(struct pool_sum *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(p[i].name);
    free(p);
}
