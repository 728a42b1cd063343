/* Retention (daemon.retention): old actions are deleted in the background,
 * in small deletes between batches, never one an output has not delivered,
 * one within the longest cap window, or the last one (seq stays strictly
 * increasing: SQLite would give a deleted largest seq out again). */
#ifndef MKTD_RETENTION_H
#define MKTD_RETENTION_H

#include <event2/event.h>
#include <stdint.h>

#include "config/config.h"
#include "out/out.h"
#include "store/store.h"

struct retention;

struct retention *retention_new(struct event_base *base, struct store *st, struct outs *outs);
void retention_free(struct retention *r);
/* Takes daemon.retention (and what else bounds it) from the config. */
void retention_configure(struct retention *r, const struct config *cfg);
/* Actions pruned since start. */
uint64_t retention_pruned(const struct retention *r);
/* event_log rows pruned since start (daemon.event_log.keep). */
uint64_t retention_log_pruned(const struct retention *r);

/* Actions looked at per delete. */
#define RETENTION_CHUNK 1000

/* One pruning step, for a caller without a loop of its own (a cluster
 * worker's apply thread) as for the daemon's: looks at up to
 * RETENTION_CHUNK actions after *cursor, below the last one and at most
 * bound (what every reader of the actions is done with), and deletes
 * those older than now - max(keep_ms, cap_ms). *cursor moves over what was
 * looked at (it stays when the sweep reached its end); *bounded: bound
 * held it back. How many went, or -EIO. */
int retention_actions_step(struct store *st, int64_t keep_ms, int64_t cap_ms, int64_t bound,
                           int64_t now, int64_t *cursor, int *bounded);

/* The longest window over which frequency caps (spec 11) count a user's
 * actions (the largest `per`), in ms: retention keeps every action younger
 * than it. 0 when the config has no caps. */
int64_t retention_cap_window_ms(const struct config *cfg);

#endif
