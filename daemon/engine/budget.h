/* Budgets shared by the partitions of a cluster (spec 17): a campaign-wide
 * counter added to with a limit takes its room from claims on a pool common
 * to every partition (struct budget_pool, engine/engine.h). Outside cluster
 * mode the host adds against the limit directly and none of this runs. */
#ifndef MKTD_ENGINE_BUDGET_H
#define MKTD_ENGINE_BUDGET_H

#include <stdint.h>

struct engine;

/* counter_add(NULL, key, delta > 0, limit >= 0) in cluster mode: adds when
 * the partition holds room for it, claiming more from the pool when it
 * does not. 0 added (*value: the counter after), 1 refused (*value: as it
 * was), -EIO (the shard) or -EAGAIN (the pool): the event fails. */
int budget_add(struct engine *e, const char *campaign, const char *key, int64_t delta,
               int64_t limit, int64_t *value);

/* counter_get(NULL, key) in cluster mode. While the pool has room, the
 * partition's own count; once the pool is spent, the count that leaves
 * exactly the partition's unused room under the limit it ran out at (so a
 * plugin's "limit - value" is what it can still add). 0, or -EIO. */
int budget_get(struct engine *e, const char *campaign, const char *key, int64_t *value);

#endif
