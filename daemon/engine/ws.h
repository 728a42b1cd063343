/*
 * The working set: the per-user data campaigns evaluate against (profile,
 * counts, plugin state, counters, timers), database-wide unique keys and
 * remembered event ids, held in memory.
 *
 * - Read through: a key not in memory is read from the store once (a row
 *   that is not there is remembered as absent too).
 * - Every change is written to an undo log first, so that a failed event
 *   (ws_undo_to) or a failed commit (ws_rollback) puts memory back as it was.
 * - Changed entries are written to the store by ws_flush, once each, sorted
 *   by key (per_user's primary key order: user, kind, campaign, key).
 * - Bounded: after a commit, the least recently used entries are dropped
 *   until the set fits its budget (they are read again when needed).
 *
 * A failed store read is -EIO, never "absent".
 */
#ifndef MKTD_WS_H
#define MKTD_WS_H

#include <mktd/plugin.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

/* Kinds: the store's per_user kinds, then the other two tables. */
enum {
    WS_PROFILE = STORE_PROFILE, /* campaign "", key "" */
    WS_COUNT = STORE_COUNT,     /* campaign "", key: the event type */
    WS_STATE = STORE_STATE,
    WS_COUNTER = STORE_COUNTER,
    WS_TIMER = STORE_TIMER, /* key: the timer's name; value: due */
    WS_UNIQUE = 5,          /* campaign: the namespace, user "", value: the owner */
    WS_EVENT = 6,           /* key: an input event id; present = remembered */
};

struct ws;

struct ws_stats {
    uint64_t entries, bytes, hits, misses, evictions, flushed_rows;
    uint64_t id_reads;     /* event ids looked up in the store (the filter said maybe) */
    uint64_t filter_bytes; /* the event-id filter's size */
};

struct ws *ws_new(struct store *st, size_t budget_bytes);
void ws_free(struct ws *w);

/* Reads. user NULL means campaign-wide (""). 0 and the value, -ENOENT when
 * absent, -EIO when the store could not be read. */
int ws_get_int(struct ws *w, int kind, const char *campaign, const char *user, const char *key,
               int64_t *out);
/* *val stays valid until this entry changes or the batch ends. */
int ws_get_str(struct ws *w, int kind, const char *campaign, const char *user, const char *key,
               const char **val, size_t *len);
int ws_get_profile(struct ws *w, const char *user, mktd_profile *out);

/* A byte the caller keeps beside an entry (present or absent), for what
 * it has learned of the key: 0 whenever the entry comes into memory (read
 * from the store, or read again after it was dropped); undo and rollback
 * leave it as it is. ws_get_int_note is ws_get_int, and *note (set unless
 * -EIO); ws_set_note: 0, or -EIO. */
int ws_get_int_note(struct ws *w, int kind, const char *campaign, const char *user, const char *key,
                    int64_t *out, uint8_t *note);
int ws_set_note(struct ws *w, int kind, const char *campaign, const char *user, const char *key,
                uint8_t note);

/* Changes (undoable). 0, or -EIO when the old value could not be read. */
int ws_put_int(struct ws *w, int kind, const char *campaign, const char *user, const char *key,
               int64_t v);
int ws_put_str(struct ws *w, int kind, const char *campaign, const char *user, const char *key,
               const void *val, size_t len);
int ws_put_profile(struct ws *w, const char *user, const mktd_profile *p);
int ws_del(struct ws *w, int kind, const char *campaign, const char *user, const char *key);

/* The undo log's length now; ws_undo_to(w, mark) takes back every change
 * made since. */
size_t ws_mark(const struct ws *w);
void ws_undo_to(struct ws *w, size_t mark);

/* Writes every changed entry to the store, inside the caller's open
 * transaction. The undo log stays: a later undo marks entries changed again. */
int ws_flush(struct ws *w);
/* After the transaction committed: forgets the undo log and drops entries
 * over the budget. */
void ws_committed(struct ws *w);
/* After the transaction rolled back: every change since the last commit is
 * taken back, so memory equals the store again. */
void ws_rolled_back(struct ws *w);

/* Drops the entries of user's per-user rows (profile, counts, state,
 * counters, timers), which the store no longer has (forget). Only with
 * nothing changed since the last commit (no undo log). */
void ws_drop_user(struct ws *w, const char *user);

/* Drops every entry (nothing may be changed): the store is the truth. */
void ws_clear(struct ws *w);

/* Reads every remembered event id and every claimed unique key into
 * filters, so that an id never seen, or a fresh coupon code, costs no store
 * read. */
int ws_load_ids(struct ws *w);

/* Entries changed since the last flush (some may be back to their stored
 * value). */
size_t ws_dirty(const struct ws *w);
/* A new budget, kept from the next commit on. */
void ws_set_budget(struct ws *w, size_t budget_bytes);
void ws_stats(const struct ws *w, struct ws_stats *out);

#endif
