/* The SQLite store: every table the daemon keeps (spec section 5 and the
 * state behind the host API). One writer connection; the caller brackets
 * work in batches (a transaction) and events (a savepoint). */
#ifndef MKTD_STORE_H
#define MKTD_STORE_H

#include <mktd/plugin.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_SCHEMA_VERSION 2

/* The SQL that takes schema version v (0: an empty database) to v + 1;
 * NULL past the last. Tests build databases of older versions with it. */
const char *store_migration(int v);

struct store;

/* Opens (creating the file and parent-less path as needed) and migrates.
 * path ":memory:" gives a throw-away database. */
int store_open(const char *path, int sync_full, struct store **out, char *err, size_t errlen);
void store_close(struct store *s);
/* Moves checkpoints to a thread of their own (the daemon's store; see
 * checkpointer.h). */
int store_background_checkpoints(struct store *s, char *err, size_t errlen);
struct checkpointer_stats;
/* Times this connection waited for another's lock, and for how long. */
void store_lock_waits(struct store *s, uint64_t *waits, uint64_t *us);
/* How long a begin waits for a lock held by another process (not the
 * checkpointer, which is waited out): 5 s after store_open; 0 fails at once. */
void store_lock_patience(struct store *s, int64_t us);
/* Begins and commits that failed so far; the last one's SQLite (extended)
 * code and message ("commit failed: database or disk is full"). */
uint64_t store_write_failures(struct store *s, int *code, const char **msg);
/* -ENOENT when checkpoints are SQLite's own. */
int store_checkpoint_stats(struct store *s, struct checkpointer_stats *out);
const char *store_errmsg(struct store *s);

int store_begin(struct store *s);
int store_commit(struct store *s);
int store_rollback(struct store *s);
int store_savepoint(struct store *s);
int store_release(struct store *s);
int store_rollback_to(struct store *s); /* and release */

/* 0 newly remembered, 1 seen before, <0 error. */
int store_event_remember(struct store *s, const char *id);

int store_action_insert(struct store *s, int64_t ts, const char *campaign, const char *kind,
                        const char *user, const char *event_id, const char *payload, int64_t *seq);

/* Profile: updated for an input event, read for conditions and plugins. */
int store_profile_update(struct store *s, const char *user, int64_t ts, int is_order,
                         int64_t amount, mktd_profile *out);
int store_profile_get(struct store *s, const char *user, mktd_profile *out); /* -ENOENT */
int store_users_foreach(struct store *s, int (*cb)(void *, const char *, const mktd_profile *),
                        void *arg);
int store_count_inc(struct store *s, const char *user, const char *type);
int64_t store_count_get(struct store *s, const char *user, const char *type);
/* Types counted for user.count.<type>: once named, counted for good. */
int store_counted_add(struct store *s, const char *type);
/* Fills *types (malloc'd array of malloc'd strings). */
int store_counted_list(struct store *s, char ***types, size_t *n);

int store_meta_get(struct store *s, const char *key, int64_t *val); /* -ENOENT */
int store_meta_set(struct store *s, const char *key, int64_t val);

/* Keyed state; user "" is campaign-wide. *val is malloc'd. */
int store_state_get(struct store *s, const char *campaign, const char *user, const char *key,
                    char **val, size_t *len);
int store_state_put(struct store *s, const char *campaign, const char *user, const char *key,
                    const void *val, size_t len);
int store_state_del(struct store *s, const char *campaign, const char *user, const char *key);

int64_t store_counter_get(struct store *s, const char *campaign, const char *user, const char *key);
int store_counter_set(struct store *s, const char *campaign, const char *user, const char *key,
                      int64_t v);

int store_timer_set(struct store *s, const char *campaign, const char *user, const char *name,
                    int64_t due);
int store_timer_del(struct store *s, const char *campaign, const char *user, const char *name);
int store_timer_get(struct store *s, const char *campaign, const char *user, const char *name,
                    int64_t *due);
/* The campaign ids whose timers fire (the running config's). */
int store_set_live(struct store *s, char *const *ids, size_t n);
/* Smallest due of the live campaigns' timers; INT64_MAX when none. */
int64_t store_timer_min(struct store *s);

struct timer_row {
    int64_t due;
    char *campaign, *user, *name;
};
/* The live timers due at `due` (store_timer_min gives the next one). */
int store_timers_at(struct store *s, int64_t due, struct timer_row **rows, size_t *n);
/* The live timers due at or before `until`, in due order: whole groups of
 * one due time, about `limit` rows (more when one group is larger). */
int store_timers_upto(struct store *s, int64_t until, size_t limit, struct timer_row **rows,
                      size_t *n);
void store_timer_rows_free(struct timer_row *rows, size_t n);
/* Deletes the timer if it is still set to due: 1, or 0 when it was moved
 * or cancelled meanwhile. */
int store_timer_take(struct store *s, const char *campaign, const char *user, const char *name,
                     int64_t due);

int store_unique_claim(struct store *s, const char *ns, const char *key, const char *campaign);
int store_unique_owner(struct store *s, const char *ns, const char *key, char **campaign);

/* 1 when the campaign id was new (and is now recorded), 0 when known. */
int store_campaign_seen(struct store *s, const char *id, const char *plugin);
int store_config_record(struct store *s, const char *path, const char *text, size_t len,
                        int64_t at);

struct sqlite3 *store_db(struct store *s);

#endif
