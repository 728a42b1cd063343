/* The SQLite store: every table the daemon keeps (spec section 5 and the
 * state behind the host API). One writer connection; the caller brackets
 * work in batches (a transaction); events are undone in the engine's
 * memory, never here. */
#ifndef MKTD_STORE_H
#define MKTD_STORE_H

#include <mktd/plugin.h>
#include <stddef.h>
#include <stdint.h>

#define STORE_SCHEMA_VERSION 5

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
/* Begins and commits that failed so far; whether the last one failed for a
 * lock held by another connection, and its message ("commit failed:
 * database or disk is full"). */
uint64_t store_write_failures(struct store *s, int *locked, const char **msg);
/* An empty write transaction (between batches): 0 when the database can be
 * written again. */
int store_try_write(struct store *s);
/* -ENOENT when checkpoints are SQLite's own. */
int store_checkpoint_stats(struct store *s, struct checkpointer_stats *out);
const char *store_errmsg(struct store *s);

int store_begin(struct store *s);
int store_commit(struct store *s);
int store_rollback(struct store *s);

/* 0 newly remembered, 1 seen before, <0 error. */
int store_event_remember(struct store *s, const char *id);

int store_action_insert(struct store *s, int64_t ts, const char *campaign, const char *kind,
                        const char *user, const char *event_id, const char *payload, int64_t *seq);

/* Profiles: kept by the engine (its working set), read here for on_load. */
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
/* The newest config recorded: its path and text (malloc'd). 0, -ENOENT
 * (none), or -EIO. */
int store_config_last(struct store *s, char **path, char **text, size_t *len);
/* The configs table's hash of a config text: FNV-1a 64, 16 hex digits. */
void store_config_hash(const char *text, size_t len, char out[17]);

/* ---- outside the engine's batches ---- */

/* commit.synchronous: FULL (1) or NORMAL (0). Call with no transaction open. */
int store_set_synchronous(struct store *s, int full);

/* Opens an existing database read-only, for a reader beside the daemon
 * (`mktd actions`): no migration, no writes; a lock held by the daemon is
 * waited for up to 5 s. Only the readers below work on it; store_close. */
int store_open_readonly(const char *path, struct store **out, char *err, size_t errlen);
/* The connection itself, for the other readers of daemon/store/ (report_q.c). */
struct sqlite3 *store_sqlite(struct store *s);
/* For the other files of store/: the statement of slot on s's connection,
 * prepared from sql on first use and kept until store_close (each slot
 * always with the same sql); NULL when it cannot be. */
enum {
    STORE_CACHED_EVENTLOG_INSERT, /* eventlog.c */
    STORE_CACHED_EVENTLOG_PRUNE,
    STORE_CACHED_FORGOTTEN, /* privacy.c */
    STORE_CACHED_N
};
struct sqlite3_stmt *store_cached(struct store *s, int slot, const char *sql);

/* One row of the actions table (spec section 5). The strings are valid
 * during the callback; each is NULL for SQL NULL (event_id of a timer's
 * action), with its length in bytes. */
struct store_action {
    int64_t seq, ts;
    const char *campaign, *kind, *user, *event_id, *payload;
    size_t campaign_len, kind_len, user_len, event_id_len, payload_len;
};
/* Calls cb for every action with seq > since (of one campaign, when not
 * NULL), by seq. A non-zero return from cb stops and is returned; else 0,
 * or -EIO (store_errmsg says why). */
int store_actions_foreach(struct store *s, int64_t since, const char *campaign,
                          int (*cb)(void *arg, const struct store_action *a), void *arg);
/* Appends a as one JSON line ({"seq","ts","campaign","kind","user",
 * "event_id","payload"} and a newline), as `mktd actions` prints it. */
struct sbuf;
void store_action_json(struct sbuf *b, const struct store_action *a);
/* The largest action seq, 0 when there is none. */
int store_action_last_seq(struct store *s, int64_t *seq);
/* Calls cb once per campaign and kind with the number of actions of seq >
 * since; *top is raised to the largest seq counted (left as it is when
 * none). 0 or -EIO. */
int store_action_counts_since(struct store *s, int64_t since,
                              void (*cb)(void *arg, const char *campaign, const char *kind,
                                         uint64_t n),
                              void *arg, int64_t *top);

/* ---- the engine's working set: per_user rows by their whole key ---- */
/* The kinds of per_user rows (the column `kind`). */
enum { STORE_PROFILE = 0, STORE_COUNT = 1, STORE_STATE = 2, STORE_COUNTER = 3, STORE_TIMER = 4 };
struct store_row {
    int64_t i;            /* COUNT, COUNTER: the value; TIMER: the due time */
    char *blob;           /* STATE: malloc'd, NUL-terminated (get); borrowed (put) */
    size_t len;           /* STATE: bytes */
    mktd_profile profile; /* PROFILE */
};
/* 0 and *out, -ENOENT when there is no such row, -EIO when it cannot be read. */
int store_row_get(struct store *s, int kind, const char *campaign, const char *user,
                  const char *key, struct store_row *out);
/* Writes the row: STORE_UPSERT inserts or replaces it; STORE_INSERT and
 * STORE_UPDATE, when the caller knows whether it is there, cost one B-tree
 * search instead of two. */
enum { STORE_UPSERT = 0, STORE_INSERT = 1, STORE_UPDATE = 2 };
int store_row_put(struct store *s, int kind, const char *campaign, const char *user,
                  const char *key, const struct store_row *r, int how);
int store_row_del(struct store *s, int kind, const char *campaign, const char *user,
                  const char *key);
/* 1 when the event id was remembered by a committed batch, 0 when not, -EIO. */
int store_event_seen(struct store *s, const char *id);
/* Calls cb for every remembered event id (to seed a filter at start). */
int store_events_foreach(struct store *s, void (*cb)(void *arg, const char *id, size_t len),
                         void *arg);
/* Calls cb for every claimed unique key (to seed a filter at start). */
int store_uniques_foreach(struct store *s, void (*cb)(void *arg, const char *ns, const char *key),
                          void *arg);
/* Takes back a claim (a claim made in a batch that a later failure undid). */
int store_unique_release(struct store *s, const char *ns, const char *key);
/* The smallest due of the live campaigns' timers (INT64_MAX when none); -EIO. */
int store_timer_next(struct store *s, int64_t *due);
/* A timer as `mktd timers` shows it: pending, or set aside (failed_at > 0,
 * error). */
struct store_timer {
    const char *campaign, *user, *name, *error;
    int64_t due, failed_at;
};
typedef void (*store_timer_cb)(void *arg, const struct store_timer *t);
/* Opens db_path read-only and calls cb for every pending timer (by due
 * time) or, with failed, every timer set aside (by when it failed). */
int store_timers_list(const char *db_path, int failed, store_timer_cb cb, void *arg, char *err,
                      size_t errlen);
/* Keeps a failed timer aside with its error (spec 12; `mktd timers --failed`). */
int store_timer_set_aside(struct store *s, const char *campaign, const char *user, const char *name,
                          int64_t due, int64_t at, const char *error);

/* ---- outputs (spec section 15): each webhook output's position ---- */
/* Writes here are single statements made between the engine's batches
 * (-EIO while a batch's transaction is open). Filters are JSON arrays of
 * strings (kinds, campaigns), or NULL for all. */
/* 0 and *position, -ENOENT when the output has no row yet, -EIO. */
int store_output_get(struct store *s, const char *id, int64_t *position);
/* Records a new output at position (nothing when it has a row). */
int store_output_create(struct store *s, const char *id, int64_t position);
/* Moves the output from position `from` to `to`, n actions more delivered,
 * last success at `at` (0: not a delivery). 1 when moved, 0 when its
 * position is no longer `from` (rewound meanwhile), -EIO. */
int store_output_advance(struct store *s, const char *id, int64_t from, int64_t to, int64_t n,
                         int64_t at);
int store_output_failed(struct store *s, const char *id, const char *error, int64_t at);
/* Sets the position (`mktd outputs --from`): 0, -ENOENT, -EIO. */
int store_output_rewind(struct store *s, const char *id, int64_t position);
/* Up to limit actions with after < seq <= upto matching the filters, by seq. */
int store_output_actions(struct store *s, int64_t after, int64_t upto, const char *kinds_json,
                         const char *campaigns_json, int limit,
                         int (*cb)(void *arg, const struct store_action *a), void *arg);
/* How many actions with after < seq <= upto match the filters. */
int store_output_count(struct store *s, int64_t after, int64_t upto, const char *kinds_json,
                       const char *campaigns_json, int64_t *n);
/* One row of the outputs table; strings valid during the callback. */
struct store_output {
    const char *id, *last_error;                              /* last_error: NULL when none */
    int64_t position, delivered, last_success, last_error_at; /* 0: never */
};
int store_outputs_list(struct store *s, void (*cb)(void *arg, const struct store_output *o),
                       void *arg);
/* The smallest position among the outputs named in ids_json (a JSON array);
 * INT64_MAX when none of them has a row. */
int store_outputs_min_position(struct store *s, const char *ids_json, int64_t *pos);
/* Retention: looks at up to limit actions with after < seq <= max_seq (by
 * seq) and deletes those of them with ts < before_ts. *upto: the last seq
 * looked at (after when there was none). Returns how many went, or -EIO. */
int store_actions_prune(struct store *s, int64_t after, int64_t max_seq, int64_t before_ts,
                        int limit, int64_t *upto);
/* Calls cb for the campaign's state keys of user (NULL: campaign-wide)
 * starting with prefix, in key order, as the store has them (flush the
 * working set first). A non-zero return from cb stops and is returned;
 * -EIO when the rows cannot be read. */
int store_state_prefix(struct store *s, const char *campaign, const char *user, const char *prefix,
                       int (*cb)(void *arg, const char *key, const char *val, size_t len),
                       void *arg);
/* *n: the user's recorded actions of the kinds (a JSON array of strings)
 * with after < ts < before (a frequency cap's window). 0 or -EIO. */
int store_cap_count(struct store *s, const char *user, const char *kinds_json, int64_t after,
                    int64_t before, int64_t *n);

#endif
