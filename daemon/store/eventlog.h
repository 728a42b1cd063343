/* The event log (daemon.event_log, spec 13) and a live database read for
 * `mktd replay` and `mktd simulate --from-db`, which only ever read it. */
#ifndef MKTD_EVENTLOG_H
#define MKTD_EVENTLOG_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* One row of event_log. */
struct evlog_row {
    int64_t seq;         /* when read */
    int64_t received_at; /* wall ms the line arrived */
    int64_t ts;          /* the event's ts as evaluated (its own, or now without one) */
    const char *id, *type, *user;
    const char *body; /* the line as received (UTF-8 JSON) */
    size_t body_len;
};

/* Appends rows to event_log inside the open write transaction (the
 * engine's commit): 0, or -EIO. */
int store_eventlog_write(struct store *s, const struct evlog_row *rows, size_t n);
/* Deletes up to limit rows received before `before`, oldest first, in one
 * short statement: how many, or -EIO. */
int store_eventlog_prune(struct store *s, int64_t before, int limit);

/* ---- a live database, opened read-only ---- */
struct livedb;

/* Opens path for reading only (SQLite mode=ro; immutable when no -wal file
 * is beside it, so that nothing is created next to a database whose daemon
 * is stopped, in a folder that may not be writable). Everything read comes
 * from one snapshot. */
int livedb_open(const char *path, struct livedb **out, char *err, size_t errlen);
void livedb_close(struct livedb *l);
const char *livedb_errmsg(struct livedb *l);

/* Logged events with received_at in [from, to], in seq order; cb returns
 * non-zero to stop (that value is returned). */
int livedb_events(struct livedb *l, int64_t from, int64_t to,
                  int (*cb)(void *arg, const struct evlog_row *r), void *arg);
/* How many logged events there are in [from, to]. */
int livedb_event_count(struct livedb *l, int64_t from, int64_t to, int64_t *n);

/* The configs the daemon loaded (table configs), in seq order. */
struct livedb_config {
    int64_t seq, loaded_at;
    char *path, *text;
    size_t len;
};
int livedb_configs(struct livedb *l, struct livedb_config **out, size_t *n);
void livedb_configs_free(struct livedb_config *c, size_t n);

/* The codes of the coupon.used events logged in [from, to]. */
int livedb_used_codes(struct livedb *l, int64_t from, int64_t to,
                      void (*cb)(void *arg, const char *code), void *arg);
/* Every coupon.issued action: its identity and code. */
int livedb_issued_codes(struct livedb *l,
                        void (*cb)(void *arg, const char *campaign, const char *user,
                                   const char *event_id, int64_t ts, const char *code),
                        void *arg);

/* The largest of the stored clock (meta clock_now), the latest received_at
 * and the latest action ts; 0 for an empty database. */
int livedb_clock(struct livedb *l, int64_t *clock);

/* Copies the live state into dst, a fresh store, in one transaction:
 * profiles, counts, plugin state, counters and timers (per_user), claimed
 * codes (uniques), the campaigns seen and the counted types, the actions
 * with ts > actions_after (for frequency caps), and clock as the clock.
 * Event ids are not copied. *last_seq gets the largest seq copied (0 when
 * none). 0, or -EIO with err set. */
int livedb_copy_state(struct livedb *l, struct store *dst, int64_t clock, int64_t actions_after,
                      int64_t *last_seq, char *err, size_t errlen);

/* The actions of s by user (as bytes), then ts, then seq; cb returns
 * non-zero to stop. */
int store_actions_by_user(struct store *s, int (*cb)(void *arg, const struct store_action *a),
                          void *arg);

#endif
