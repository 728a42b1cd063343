#include "store/store.h"

#include <errno.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "lib/util.h"
#include "store/checkpointer.h"
#include "store/walbuf.h"

/* Every statement the daemon runs, prepared once. */
enum {
    Q_BEGIN,
    Q_COMMIT,
    Q_ROLLBACK,
    Q_EVENT_INSERT,
    Q_ACTION_INSERT,
    Q_PROFILE_GET,
    Q_USERS_ALL,
    Q_COUNT_INC,
    Q_COUNT_GET,
    Q_COUNTED_ADD,
    Q_COUNTED_LIST,
    Q_META_GET,
    Q_META_SET,
    Q_STATE_GET,
    Q_STATE_PUT,
    Q_STATE_DEL,
    Q_COUNTER_GET,
    Q_COUNTER_SET,
    Q_TIMER_SET,
    Q_TIMER_DEL,
    Q_TIMER_GET,
    Q_TIMER_MIN,
    Q_TIMERS_AT,
    Q_TIMERS_UPTO,
    Q_TIMER_TAKE,
    Q_UNIQUE_CLAIM,
    Q_UNIQUE_OWNER,
    Q_CAMPAIGN_SEEN,
    Q_CONFIG_RECORD,
    Q_CONFIG_LAST,
    Q_LIVE_CLEAR,
    Q_LIVE_ADD,
    Q_EVENT_SEEN,
    Q_UNIQUE_DEL,
    Q_TIMER_FAILED_ADD,
    Q_STATE_PREFIX,
    Q_CAP_COUNT,
    Q__COUNT
};

static const char *const sql[Q__COUNT] = {
    [Q_BEGIN] = "BEGIN IMMEDIATE",
    [Q_COMMIT] = "COMMIT",
    [Q_ROLLBACK] = "ROLLBACK",
    [Q_EVENT_INSERT] = "INSERT OR IGNORE INTO events(id) VALUES (?1)",
    [Q_ACTION_INSERT] = "INSERT INTO actions(ts, campaign, kind, user, event_id, payload) "
                        "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [Q_PROFILE_GET] = "SELECT events, orders, spent, first_seen, last_seen FROM per_user "
                      "WHERE user = ?1 AND kind = 0 AND campaign = '' AND key = ''",
    [Q_USERS_ALL] = "SELECT user, events, orders, spent, first_seen, last_seen FROM per_user "
                    "WHERE kind = 0",
    [Q_COUNT_INC] = "INSERT INTO per_user(user, kind, campaign, key, v) VALUES (?1, 1, '', ?2, 1) "
                    "ON CONFLICT DO UPDATE SET v = v + 1",
    [Q_COUNT_GET] =
        "SELECT v FROM per_user WHERE user = ?1 AND kind = 1 AND campaign = '' AND key = ?2",
    [Q_COUNTED_ADD] = "INSERT OR IGNORE INTO counted_types(type) VALUES (?1)",
    [Q_COUNTED_LIST] = "SELECT type FROM counted_types ORDER BY type",
    [Q_META_GET] = "SELECT value FROM meta WHERE key = ?1",
    [Q_META_SET] = "INSERT INTO meta(key, value) VALUES (?1, ?2) "
                   "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    /* state (kind 2), counters (3) and timers (4): ?1 campaign, ?2 user, ?3 key */
    [Q_STATE_GET] =
        "SELECT v FROM per_user WHERE user = ?2 AND kind = 2 AND campaign = ?1 AND key = ?3",
    [Q_STATE_PUT] = "INSERT INTO per_user(user, kind, campaign, key, v) VALUES (?2, 2, ?1, ?3, ?4) "
                    "ON CONFLICT DO UPDATE SET v = excluded.v",
    [Q_STATE_DEL] =
        "DELETE FROM per_user WHERE user = ?2 AND kind = 2 AND campaign = ?1 AND key = ?3",
    [Q_COUNTER_GET] =
        "SELECT v FROM per_user WHERE user = ?2 AND kind = 3 AND campaign = ?1 AND key = ?3",
    [Q_COUNTER_SET] =
        "INSERT INTO per_user(user, kind, campaign, key, v) VALUES (?2, 3, ?1, ?3, ?4) "
        "ON CONFLICT DO UPDATE SET v = excluded.v",
    [Q_TIMER_SET] = "INSERT INTO per_user(user, kind, campaign, key, v) VALUES (?2, 4, ?1, ?3, ?4) "
                    "ON CONFLICT DO UPDATE SET v = excluded.v",
    [Q_TIMER_DEL] =
        "DELETE FROM per_user WHERE user = ?2 AND kind = 4 AND campaign = ?1 AND key = ?3",
    [Q_TIMER_GET] =
        "SELECT v FROM per_user WHERE user = ?2 AND kind = 4 AND campaign = ?1 AND key = ?3",
    /* in due order through per_user_timers_due (the + keeps the planner from
     * reading every timer of a live campaign) */
    [Q_TIMER_MIN] =
        "SELECT v FROM per_user WHERE kind = 4 AND +campaign IN (SELECT campaign FROM live) "
        "ORDER BY v LIMIT 1",
    [Q_TIMER_TAKE] =
        "DELETE FROM per_user WHERE user = ?2 AND kind = 4 AND campaign = ?1 AND key = ?3 "
        "AND v = ?4",
    [Q_TIMERS_AT] = "SELECT campaign, user, key, v FROM per_user WHERE kind = 4 AND v = ?1 "
                    "AND campaign IN (SELECT campaign FROM live)",
    [Q_TIMERS_UPTO] = "SELECT campaign, user, key, v FROM per_user WHERE kind = 4 AND v <= ?1 "
                      "AND +campaign IN (SELECT campaign FROM live) ORDER BY v LIMIT ?2",
    [Q_UNIQUE_CLAIM] = "INSERT OR IGNORE INTO uniques(ns, key, campaign) VALUES (?1, ?2, ?3)",
    [Q_UNIQUE_OWNER] = "SELECT campaign FROM uniques WHERE ns = ?1 AND key = ?2",
    [Q_CAMPAIGN_SEEN] = "INSERT OR IGNORE INTO campaigns(id, plugin) VALUES (?1, ?2)",
    [Q_LIVE_CLEAR] = "DELETE FROM live",
    [Q_LIVE_ADD] = "INSERT OR IGNORE INTO live(campaign) VALUES (?1)",
    [Q_CONFIG_RECORD] = "INSERT INTO configs(loaded_at, path, hash, text) VALUES (?1, ?2, ?3, ?4)",
    [Q_CONFIG_LAST] = "SELECT path, text FROM configs ORDER BY seq DESC LIMIT 1",
    [Q_EVENT_SEEN] = "SELECT 1 FROM events WHERE id = ?1",
    [Q_UNIQUE_DEL] = "DELETE FROM uniques WHERE ns = ?1 AND key = ?2",
    [Q_TIMER_FAILED_ADD] =
        "INSERT INTO failed_timers(campaign, user, name, due, failed_at, error) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO UPDATE SET due = excluded.due, "
        "failed_at = excluded.failed_at, error = excluded.error",
    /* ?4 .. ?5: the keys starting with the prefix (?5 NULL: no upper end) */
    [Q_STATE_PREFIX] = "SELECT key, v FROM per_user WHERE user = ?1 AND kind = 2 AND campaign = ?2 "
                       "AND key >= ?3 AND (?4 IS NULL OR key < ?4) ORDER BY key",
    [Q_CAP_COUNT] = "SELECT count(*) FROM actions WHERE user = ?1 AND ts > ?2 AND ts < ?3 "
                    "AND kind IN (SELECT value FROM json_each(?4))",
};

/* Schema migrations: migrations[i] takes version i to i + 1. */
static const char *const migrations[] = {
    "CREATE TABLE IF NOT EXISTS actions ("
    "  seq      INTEGER PRIMARY KEY,"
    "  ts       INTEGER NOT NULL,"
    "  campaign TEXT NOT NULL,"
    "  kind     TEXT NOT NULL,"
    "  user     TEXT NOT NULL,"
    "  event_id TEXT,"
    "  payload  TEXT NOT NULL);"
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER) WITHOUT ROWID;"
    "CREATE TABLE events (id TEXT PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE users (id TEXT PRIMARY KEY, events INTEGER NOT NULL, orders INTEGER NOT NULL,"
    "  spent INTEGER NOT NULL, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL)"
    "  WITHOUT ROWID;"
    "CREATE TABLE user_counts (user TEXT NOT NULL, type TEXT NOT NULL, n INTEGER NOT NULL,"
    "  PRIMARY KEY (user, type)) WITHOUT ROWID;"
    "CREATE TABLE counted_types (type TEXT PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE state (campaign TEXT NOT NULL, user TEXT NOT NULL, key TEXT NOT NULL,"
    "  value BLOB NOT NULL, PRIMARY KEY (campaign, user, key)) WITHOUT ROWID;"
    "CREATE TABLE counters (campaign TEXT NOT NULL, user TEXT NOT NULL, key TEXT NOT NULL,"
    "  n INTEGER NOT NULL, PRIMARY KEY (campaign, user, key)) WITHOUT ROWID;"
    "CREATE TABLE timers (campaign TEXT NOT NULL, user TEXT NOT NULL, name TEXT NOT NULL,"
    "  due INTEGER NOT NULL, PRIMARY KEY (campaign, user, name)) WITHOUT ROWID;"
    "CREATE INDEX timers_due ON timers(due);"
    "CREATE TABLE uniques (ns TEXT NOT NULL, key TEXT NOT NULL, campaign TEXT NOT NULL,"
    "  PRIMARY KEY (ns, key)) WITHOUT ROWID;"
    "CREATE TABLE campaigns (id TEXT PRIMARY KEY, plugin TEXT NOT NULL) WITHOUT ROWID;"
    "CREATE TABLE configs (seq INTEGER PRIMARY KEY, loaded_at INTEGER NOT NULL,"
    "  path TEXT NOT NULL, hash TEXT NOT NULL, text TEXT NOT NULL);",

    /* 2: everything kept per user in one table keyed by user first, so an
     * event's profile, plugin state, counters and timers share a page: a
     * batch then writes one page per user it touches, not one per table.
     * kind: 0 profile (the five columns), 1 count of an event type (key),
     * 2 state, 3 counter, 4 timer (key its name, v its due). The old names
     * remain as views for reading. */
    "CREATE TABLE per_user (user TEXT NOT NULL, kind INTEGER NOT NULL, campaign TEXT NOT NULL,"
    "  key TEXT NOT NULL, v, events INTEGER, orders INTEGER, spent INTEGER,"
    "  first_seen INTEGER, last_seen INTEGER,"
    "  PRIMARY KEY (user, kind, campaign, key)) WITHOUT ROWID;"
    "INSERT INTO per_user(user, kind, campaign, key, events, orders, spent, first_seen, last_seen)"
    "  SELECT id, 0, '', '', events, orders, spent, first_seen, last_seen FROM users;"
    "INSERT INTO per_user(user, kind, campaign, key, v) SELECT user, 1, '', type, n FROM "
    "user_counts;"
    "INSERT INTO per_user(user, kind, campaign, key, v) SELECT user, 2, campaign, key, value FROM "
    "state;"
    "INSERT INTO per_user(user, kind, campaign, key, v) SELECT user, 3, campaign, key, n FROM "
    "counters;"
    "INSERT INTO per_user(user, kind, campaign, key, v) SELECT user, 4, campaign, name, due FROM "
    "timers;"
    "DROP TABLE users; DROP TABLE user_counts; DROP TABLE state; DROP TABLE counters;"
    "DROP TABLE timers;"
    "CREATE INDEX per_user_timers_due ON per_user(v) WHERE kind = 4;"
    "CREATE VIEW users AS SELECT user AS id, events, orders, spent, first_seen, last_seen"
    "  FROM per_user WHERE kind = 0;"
    "CREATE VIEW user_counts AS SELECT user, key AS type, v AS n FROM per_user WHERE kind = 1;"
    "CREATE VIEW state AS SELECT campaign, user, key, v AS value FROM per_user WHERE kind = 2;"
    "CREATE VIEW counters AS SELECT campaign, user, key, v AS n FROM per_user WHERE kind = 3;"
    "CREATE VIEW timers AS SELECT campaign, user, key AS name, v AS due FROM per_user WHERE kind = "
    "4;",

    /* 3: timers whose callback failed, set aside with the error (spec 12) */
    "CREATE TABLE failed_timers (campaign TEXT NOT NULL, user TEXT NOT NULL, name TEXT NOT NULL,"
    "  due INTEGER NOT NULL, failed_at INTEGER NOT NULL, error TEXT NOT NULL,"
    "  PRIMARY KEY (campaign, user, name)) WITHOUT ROWID;",

    /* 4: the tables of v1.1's reports, outputs and operations log, and an
     * index that lets a frequency cap count a user's recent actions (spec
     * 11). event_log: accepted input events kept for replay (spec 13);
     * oplog: config loads, forget and export (spec 14); outputs: each
     * webhook output's position in actions (spec 15). */
    "CREATE INDEX actions_user_ts ON actions(user, ts);"
    "CREATE TABLE event_log (seq INTEGER PRIMARY KEY, received_at INTEGER NOT NULL,"
    "  id TEXT NOT NULL, type TEXT NOT NULL, user TEXT NOT NULL, ts INTEGER NOT NULL,"
    "  body TEXT NOT NULL);"
    "CREATE INDEX event_log_received ON event_log(received_at);"
    "CREATE TABLE oplog (seq INTEGER PRIMARY KEY, at INTEGER NOT NULL, op TEXT NOT NULL,"
    "  who TEXT NOT NULL, detail TEXT NOT NULL);"
    "CREATE TABLE outputs (id TEXT PRIMARY KEY, position INTEGER NOT NULL,"
    "  delivered INTEGER NOT NULL DEFAULT 0, last_success INTEGER, last_error TEXT,"
    "  last_error_at INTEGER) WITHOUT ROWID;",

    /* 5: per-database secrets, such as the key behind forget's pseudonyms
     * (store/privacy.c; spec 14) */
    "CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;",
};

const char *store_migration(int v)
{
    return v >= 0 && (size_t)v < sizeof(migrations) / sizeof(migrations[0]) ? migrations[v] : NULL;
}

struct store {
    sqlite3 *db;
    sqlite3_stmt *q[Q__COUNT];
    struct checkpointer *ck;           /* NULL: SQLite checkpoints on commit */
    uint64_t lock_waits, lock_wait_us; /* waits for another connection's lock */
    struct timespec wait_start;        /* of the wait in progress */
    sqlite3_stmt *rd[4];     /* the readers' statements (end of this file), prepared on first use */
    sqlite3_stmt *row[5][5]; /* per_user rows by kind and ROW_*, prepared on first use */
    int64_t patience_us;     /* see store_lock_patience */
    uint64_t write_failures; /* begins and commits that failed */
    int write_errcode;       /* the last one's SQLite code */
    char write_errmsg[160];  /* and message */
    sqlite3_stmt *outq[12];  /* outputs' statements (store_output_*), prepared on first use */
    sqlite3_stmt *cached[STORE_CACHED_N]; /* store_cached's (other files of store/) */
};

sqlite3_stmt *store_cached(struct store *s, int slot, const char *text)
{
    if (slot < 0 || slot >= (int)(sizeof(s->cached) / sizeof(s->cached[0])))
        return NULL;
    if (!s->cached[slot] && sqlite3_prepare_v3(s->db, text, -1, SQLITE_PREPARE_PERSISTENT,
                                               &s->cached[slot], NULL) != SQLITE_OK)
        return NULL;
    return s->cached[slot];
}

const char *store_errmsg(struct store *s)
{
    return sqlite3_errmsg(s->db);
}

static int migrate(struct store *s, char *err, size_t errlen)
{
    sqlite3_stmt *st;
    int version = 0;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK)
        goto fail;
    if (sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    int target = (int)(sizeof(migrations) / sizeof(migrations[0]));
    if (version > target) {
        snprintf(err, errlen, "database schema version %d is newer than this mktd knows (%d)",
                 version, target);
        return -EINVAL;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int from = version;
    if (from > 0 && from < target)
        log_info("migrating the database from schema version %d to %d (a large database "
                 "takes a while)",
                 from, target);
    for (; version < target; version++) {
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", version + 1);
        if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(s->db, migrations[version], NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(s->db, pragma, NULL, NULL, NULL) != SQLITE_OK ||
            sqlite3_exec(s->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
            snprintf(err, errlen, "migrating the database to version %d: %s", version + 1,
                     sqlite3_errmsg(s->db));
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            return -EIO;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (from > 0 && from < target)
        log_info("database migrated to schema version %d in %.1f s", target,
                 (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    return 0;
fail:
    snprintf(err, errlen, "%s", sqlite3_errmsg(s->db));
    return -EIO;
}

static int wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    (void)db, (void)name;
    checkpointer_note(arg, frames);
    return SQLITE_OK;
}

/* How long a transaction waits for the writer lock (in 100 us steps).
 * The checkpointer holds it only to start the WAL over, briefly and for a
 * bounded time: that is waited out, for about 5 s at most. Anyone else (a
 * process outside mktd in a write transaction) may hold it for as long as
 * it likes: that is waited for as long as store_lock_patience says (5 s
 * unless told otherwise; the daemon's loop waits far less, so that a
 * batch fails fast, its events answered internal, and the loop goes on
 * serving everyone else). /metrics shows the waits. */
#define CHECKPOINTER_WAIT_US 5000000LL

void store_lock_patience(struct store *s, int64_t us)
{
    s->patience_us = us;
}

static int busy_cb(void *arg, int tries)
{
    struct store *s = arg;
    struct timespec a, b, ts = {0, 100 * 1000L};
    clock_gettime(CLOCK_MONOTONIC, &a);
    int ckpt = s->ck && checkpointer_restarting(s->ck);
    if (tries == 0) {
        if (s->patience_us <= 0 && !ckpt)
            return 0; /* SQLITE_BUSY: the batch fails, its clients send again */
        s->lock_waits++;
        s->wait_start = a;
    } else {
        int64_t waited = (int64_t)(a.tv_sec - s->wait_start.tv_sec) * 1000000 +
                         (a.tv_nsec - s->wait_start.tv_nsec) / 1000;
        if (waited > (ckpt ? CHECKPOINTER_WAIT_US : s->patience_us))
            return 0;
    }
    nanosleep(&ts, NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    s->lock_wait_us += (uint64_t)((b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000);
    return 1;
}

uint64_t store_write_failures(struct store *s, int *locked, const char **msg)
{
    if (locked) {
        int c = s->write_errcode & 0xff;
        *locked = c == SQLITE_BUSY || c == SQLITE_LOCKED;
    }
    if (msg)
        *msg = s->write_errmsg;
    return s->write_failures;
}

void store_lock_waits(struct store *s, uint64_t *waits, uint64_t *us)
{
    *waits = s->lock_waits;
    *us = s->lock_wait_us;
}

int store_background_checkpoints(struct store *s, char *err, size_t errlen)
{
    const char *path = sqlite3_db_filename(s->db, "main");
    if (s->ck || !path || !*path) /* in memory: no WAL */
        return 0;
    if (checkpointer_start(path, &s->ck, err, errlen) < 0)
        return -EIO;
    sqlite3_wal_hook(s->db, wal_hook, s->ck); /* replaces wal_autocheckpoint */
    return 0;
}

int store_checkpoint_stats(struct store *s, struct checkpointer_stats *out)
{
    if (!s->ck)
        return -ENOENT;
    checkpointer_stats(s->ck, out);
    return 0;
}

int store_open(const char *path, int sync_full, struct store **out, char *err, size_t errlen)
{
    struct store *s = xcalloc(1, sizeof(*s));
    s->patience_us = 5000000;
    /* Each connection is used by one thread only (the loop, or the
     * checkpointer): no per-call locking, no global memory statistics. */
    static int configured;
    if (!configured++)
        sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    if (walbuf_register() != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot set up the WAL writer", path);
        goto fail;
    }
    if (sqlite3_open_v2(path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        WALBUF_VFS) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_handler(s->db, busy_cb, s);
    char pragmas[384];
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s; PRAGMA foreign_keys = OFF;"
             "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -65536;"
             /* checkpoint every ~4 MB of WAL (SQLite's default): larger
              * gains throughput but each checkpoint then stalls the loop
              * longer (see bench/README.md) */
             "PRAGMA wal_autocheckpoint = 1000;",
             sync_full ? "FULL" : "NORMAL");
    if (sqlite3_exec(s->db, pragmas, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (migrate(s, err, errlen) < 0)
        goto fail;
    /* The campaigns of the running config: timers of others wait. */
    if (sqlite3_exec(s->db, "CREATE TEMP TABLE live (campaign TEXT PRIMARY KEY) WITHOUT ROWID",
                     NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    for (int i = 0; i < Q__COUNT; i++) {
        if (sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->q[i], NULL) !=
            SQLITE_OK) {
            snprintf(err, errlen, "%s: preparing statement %d: %s", path, i, sqlite3_errmsg(s->db));
            goto fail;
        }
    }
    *out = s;
    return 0;
fail:
    store_close(s);
    return -EIO;
}

void store_close(struct store *s)
{
    if (!s)
        return;
    checkpointer_stop(s->ck);
    for (int i = 0; i < Q__COUNT; i++)
        sqlite3_finalize(s->q[i]);
    for (size_t i = 0; i < sizeof(s->rd) / sizeof(s->rd[0]); i++)
        sqlite3_finalize(s->rd[i]); /* readers' statements */
    for (size_t i = 0; i < sizeof(s->outq) / sizeof(s->outq[0]); i++)
        sqlite3_finalize(s->outq[i]);
    for (size_t i = 0; i < sizeof(s->cached) / sizeof(s->cached[0]); i++)
        sqlite3_finalize(s->cached[i]);
    for (int k = 0; k < 5; k++)
        for (int o = 0; o < 5; o++)
            sqlite3_finalize(s->row[k][o]);
    sqlite3_close(s->db);
    free(s);
}

/* Runs a statement that returns no row (or whose rows are ignored). */
static int run(struct store *s, sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    while (rc == SQLITE_ROW)
        rc = sqlite3_step(st);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static void done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* Binds the (campaign, user, key) triple every per-campaign table uses. */
static sqlite3_stmt *ckey(struct store *s, int q, const char *campaign, const char *user,
                          const char *key)
{
    sqlite3_stmt *st = s->q[q];
    bind_text(st, 1, campaign);
    bind_text(st, 2, user ? user : "");
    bind_text(st, 3, key);
    return st;
}

/* The checkpointer tries to start the WAL over only while no transaction
 * of ours holds the writer lock. */
static int txn(struct store *s, int q)
{
    int rc = run(s, s->q[q]);
    if (rc < 0 && q != Q_ROLLBACK) {
        s->write_failures++;
        s->write_errcode = sqlite3_extended_errcode(s->db);
        snprintf(s->write_errmsg, sizeof(s->write_errmsg), "%s failed: %s",
                 q == Q_BEGIN ? "begin" : "commit", sqlite3_errmsg(s->db));
    }
    if (s->ck)
        checkpointer_writing(s->ck, !sqlite3_get_autocommit(s->db));
    return rc;
}

int store_begin(struct store *s)
{
    return txn(s, Q_BEGIN);
}
int store_commit(struct store *s)
{
    return txn(s, Q_COMMIT);
}
int store_rollback(struct store *s)
{
    return txn(s, Q_ROLLBACK);
}
int store_event_remember(struct store *s, const char *id)
{
    sqlite3_stmt *st = s->q[Q_EVENT_INSERT];
    bind_text(st, 1, id);
    if (run(s, st) < 0)
        return -EIO;
    return sqlite3_changes(s->db) == 1 ? 0 : 1;
}

int store_action_insert(struct store *s, int64_t ts, const char *campaign, const char *kind,
                        const char *user, const char *event_id, const char *payload, int64_t *seq)
{
    sqlite3_stmt *st = s->q[Q_ACTION_INSERT];
    sqlite3_bind_int64(st, 1, ts);
    bind_text(st, 2, campaign);
    bind_text(st, 3, kind);
    bind_text(st, 4, user);
    bind_text(st, 5, event_id);
    bind_text(st, 6, payload);
    if (run(s, st) < 0)
        return -EIO;
    if (seq)
        *seq = sqlite3_last_insert_rowid(s->db);
    return 0;
}

static void read_profile(sqlite3_stmt *st, int col, mktd_profile *p)
{
    p->events = sqlite3_column_int64(st, col);
    p->orders = sqlite3_column_int64(st, col + 1);
    p->spent = sqlite3_column_int64(st, col + 2);
    p->first_seen = sqlite3_column_int64(st, col + 3);
    p->last_seen = sqlite3_column_int64(st, col + 4);
}

int store_profile_get(struct store *s, const char *user, mktd_profile *out)
{
    sqlite3_stmt *st = s->q[Q_PROFILE_GET];
    bind_text(st, 1, user);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        read_profile(st, 0, out);
    done(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int store_users_foreach(struct store *s, int (*cb)(void *, const char *, const mktd_profile *),
                        void *arg)
{
    /* A separate statement: the callback may use the prepared ones. */
    sqlite3_stmt *st = s->q[Q_USERS_ALL];
    int rc, ret = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        mktd_profile p;
        read_profile(st, 1, &p);
        ret = cb(arg, (const char *)sqlite3_column_text(st, 0), &p);
        if (ret)
            break;
    }
    done(st);
    if (ret)
        return ret;
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_count_inc(struct store *s, const char *user, const char *type)
{
    sqlite3_stmt *st = s->q[Q_COUNT_INC];
    bind_text(st, 1, user);
    bind_text(st, 2, type);
    return run(s, st);
}

int64_t store_count_get(struct store *s, const char *user, const char *type)
{
    sqlite3_stmt *st = s->q[Q_COUNT_GET];
    bind_text(st, 1, user);
    bind_text(st, 2, type);
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    done(st);
    return n;
}

int store_counted_add(struct store *s, const char *type)
{
    sqlite3_stmt *st = s->q[Q_COUNTED_ADD];
    bind_text(st, 1, type);
    return run(s, st);
}

int store_counted_list(struct store *s, char ***types, size_t *n)
{
    sqlite3_stmt *st = s->q[Q_COUNTED_LIST];
    char **v = NULL;
    size_t k = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        v = xrealloc(v, (k + 1) * sizeof(*v));
        v[k++] = xstrdup((const char *)sqlite3_column_text(st, 0));
    }
    done(st);
    *types = v;
    *n = k;
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_meta_get(struct store *s, const char *key, int64_t *val)
{
    sqlite3_stmt *st = s->q[Q_META_GET];
    bind_text(st, 1, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *val = sqlite3_column_int64(st, 0);
    done(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int store_meta_set(struct store *s, const char *key, int64_t val)
{
    sqlite3_stmt *st = s->q[Q_META_SET];
    bind_text(st, 1, key);
    sqlite3_bind_int64(st, 2, val);
    return run(s, st);
}

int store_state_get(struct store *s, const char *campaign, const char *user, const char *key,
                    char **val, size_t *len)
{
    sqlite3_stmt *st = ckey(s, Q_STATE_GET, campaign, user, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        size_t n = (size_t)sqlite3_column_bytes(st, 0);
        const void *p = sqlite3_column_blob(st, 0);
        *val = xmalloc(n + 1);
        if (n)
            memcpy(*val, p, n);
        (*val)[n] = 0;
        if (len)
            *len = n;
    }
    done(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int store_state_put(struct store *s, const char *campaign, const char *user, const char *key,
                    const void *val, size_t len)
{
    sqlite3_stmt *st = ckey(s, Q_STATE_PUT, campaign, user, key);
    sqlite3_bind_blob(st, 4, len ? val : "", (int)len, SQLITE_STATIC);
    return run(s, st);
}

int store_state_del(struct store *s, const char *campaign, const char *user, const char *key)
{
    return run(s, ckey(s, Q_STATE_DEL, campaign, user, key));
}

int64_t store_counter_get(struct store *s, const char *campaign, const char *user, const char *key)
{
    sqlite3_stmt *st = ckey(s, Q_COUNTER_GET, campaign, user, key);
    int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    done(st);
    return n;
}

int store_counter_set(struct store *s, const char *campaign, const char *user, const char *key,
                      int64_t v)
{
    sqlite3_stmt *st = ckey(s, Q_COUNTER_SET, campaign, user, key);
    sqlite3_bind_int64(st, 4, v);
    return run(s, st);
}

int store_timer_set(struct store *s, const char *campaign, const char *user, const char *name,
                    int64_t due)
{
    sqlite3_stmt *st = ckey(s, Q_TIMER_SET, campaign, user, name);
    sqlite3_bind_int64(st, 4, due);
    return run(s, st);
}

int store_timer_del(struct store *s, const char *campaign, const char *user, const char *name)
{
    return run(s, ckey(s, Q_TIMER_DEL, campaign, user, name));
}

int store_timer_get(struct store *s, const char *campaign, const char *user, const char *name,
                    int64_t *due)
{
    sqlite3_stmt *st = ckey(s, Q_TIMER_GET, campaign, user, name);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *due = sqlite3_column_int64(st, 0);
    done(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int64_t store_timer_min(struct store *s)
{
    sqlite3_stmt *st = s->q[Q_TIMER_MIN];
    int64_t v = INT64_MAX;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        v = sqlite3_column_int64(st, 0);
    done(st);
    return v;
}

/* The rows of a Q_TIMERS_* statement: campaign, user, name, due. */
static int timer_rows(sqlite3_stmt *st, struct timer_row **rows, size_t *n)
{
    struct timer_row *v = NULL;
    size_t k = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (k == cap) {
            cap = cap ? cap * 2 : 16;
            v = xrealloc(v, cap * sizeof(*v));
        }
        v[k].campaign = xstrdup((const char *)sqlite3_column_text(st, 0));
        v[k].user = xstrdup((const char *)sqlite3_column_text(st, 1));
        v[k].name = xstrdup((const char *)sqlite3_column_text(st, 2));
        v[k].due = sqlite3_column_int64(st, 3);
        k++;
    }
    done(st);
    *rows = v;
    *n = k;
    if (rc != SQLITE_DONE) {
        store_timer_rows_free(v, k);
        *rows = NULL;
        *n = 0;
        return -EIO;
    }
    return 0;
}

int store_timers_at(struct store *s, int64_t due, struct timer_row **rows, size_t *n)
{
    sqlite3_bind_int64(s->q[Q_TIMERS_AT], 1, due);
    return timer_rows(s->q[Q_TIMERS_AT], rows, n);
}

static void timer_row_clear(struct timer_row *r)
{
    free(r->campaign);
    free(r->user);
    free(r->name);
}

void store_timer_rows_free(struct timer_row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++)
        timer_row_clear(&rows[i]);
    free(rows);
}

int store_timers_upto(struct store *s, int64_t until, size_t limit, struct timer_row **rows,
                      size_t *n)
{
    sqlite3_bind_int64(s->q[Q_TIMERS_UPTO], 1, until);
    sqlite3_bind_int64(s->q[Q_TIMERS_UPTO], 2, (sqlite3_int64)limit);
    if (timer_rows(s->q[Q_TIMERS_UPTO], rows, n) < 0)
        return -EIO;
    if (*n < limit || *n == 0)
        return 0;
    int64_t last = (*rows)[*n - 1].due;
    if ((*rows)[0].due == last) {
        /* one group fills the read: all of it */
        store_timer_rows_free(*rows, *n);
        return store_timers_at(s, last, rows, n);
    }
    /* the last group may go on past the read: it waits for the next */
    while ((*rows)[*n - 1].due == last)
        timer_row_clear(&(*rows)[--*n]);
    return 0;
}

int store_unique_claim(struct store *s, const char *ns, const char *key, const char *campaign)
{
    sqlite3_stmt *st = s->q[Q_UNIQUE_CLAIM];
    bind_text(st, 1, ns);
    bind_text(st, 2, key);
    bind_text(st, 3, campaign);
    if (run(s, st) < 0)
        return -EIO;
    return sqlite3_changes(s->db) == 1 ? 0 : -EEXIST;
}

int store_unique_owner(struct store *s, const char *ns, const char *key, char **campaign)
{
    sqlite3_stmt *st = s->q[Q_UNIQUE_OWNER];
    bind_text(st, 1, ns);
    bind_text(st, 2, key);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *campaign = xstrdup((const char *)sqlite3_column_text(st, 0));
    done(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int store_campaign_seen(struct store *s, const char *id, const char *plugin)
{
    sqlite3_stmt *st = s->q[Q_CAMPAIGN_SEEN];
    bind_text(st, 1, id);
    bind_text(st, 2, plugin);
    if (run(s, st) < 0)
        return -EIO;
    return sqlite3_changes(s->db) == 1 ? 1 : 0;
}

/* A short, stable fingerprint of a config text (FNV-1a 64), as hex. */
static void fingerprint(const char *text, size_t len, char out[17])
{
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)text[i];
        h *= 1099511628211ULL;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

void store_config_hash(const char *text, size_t len, char out[17])
{
    fingerprint(text, len, out);
}

int store_config_record(struct store *s, const char *path, const char *text, size_t len, int64_t at)
{
    char hash[17];
    fingerprint(text, len, hash);
    sqlite3_stmt *st = s->q[Q_CONFIG_RECORD];
    sqlite3_bind_int64(st, 1, at);
    bind_text(st, 2, path);
    bind_text(st, 3, hash);
    sqlite3_bind_text(st, 4, text, (int)len, SQLITE_STATIC);
    return run(s, st);
}

int store_config_last(struct store *s, char **path, char **text, size_t *len)
{
    sqlite3_stmt *st = s->q[Q_CONFIG_LAST];
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *p = (const char *)sqlite3_column_text(st, 0);
        const char *t = (const char *)sqlite3_column_text(st, 1);
        *len = (size_t)sqlite3_column_bytes(st, 1);
        *path = xstrdup(p ? p : "");
        *text = xstrndup(t ? t : "", *len);
    }
    done(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int store_set_live(struct store *s, char *const *ids, size_t n)
{
    if (run(s, s->q[Q_LIVE_CLEAR]) < 0)
        return -EIO;
    for (size_t i = 0; i < n; i++) {
        bind_text(s->q[Q_LIVE_ADD], 1, ids[i]);
        if (run(s, s->q[Q_LIVE_ADD]) < 0)
            return -EIO;
    }
    return 0;
}

int store_timer_take(struct store *s, const char *campaign, const char *user, const char *name,
                     int64_t due)
{
    sqlite3_stmt *st = ckey(s, Q_TIMER_TAKE, campaign, user, name);
    sqlite3_bind_int64(st, 4, due);
    if (run(s, st) < 0)
        return -EIO;
    return sqlite3_changes(s->db) == 1 ? 1 : 0;
}

/* ---- the engine's working set ---- */

/* The statements for per_user rows, one set per kind with the kind written
 * in: bound as a parameter, it would make SQLite prepare the statement
 * again whenever its value changes (the partial index on timers depends on
 * it). */
enum { ROW_GET, ROW_UPSERT, ROW_INSERT, ROW_UPDATE, ROW_DEL };

static const char *const row_sql[] = {
    [ROW_GET] = "SELECT v, events, orders, spent, first_seen, last_seen FROM per_user "
                "WHERE user = ?1 AND kind = %d AND campaign = ?3 AND key = ?4",
    [ROW_UPSERT] = "INSERT INTO per_user(user, kind, campaign, key, v, events, orders, spent, "
                   "first_seen, last_seen) VALUES (?1, %d, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) "
                   "ON CONFLICT DO UPDATE SET v = excluded.v, events = excluded.events, "
                   "orders = excluded.orders, spent = excluded.spent, "
                   "first_seen = excluded.first_seen, last_seen = excluded.last_seen",
    [ROW_INSERT] = "INSERT INTO per_user(user, kind, campaign, key, v, events, orders, spent, "
                   "first_seen, last_seen) VALUES (?1, %d, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [ROW_UPDATE] = "UPDATE per_user SET v = ?5, events = ?6, orders = ?7, spent = ?8, "
                   "first_seen = ?9, last_seen = ?10 "
                   "WHERE user = ?1 AND kind = %d AND campaign = ?3 AND key = ?4",
    [ROW_DEL] = "DELETE FROM per_user WHERE user = ?1 AND kind = %d AND campaign = ?3 AND key = ?4",
};

/* The statement with the row's key bound (?1 user, ?3 campaign, ?4 key);
 * NULL when it cannot be prepared. */
static sqlite3_stmt *row_stmt(struct store *s, int kind, int op, const char *campaign,
                              const char *user, const char *key)
{
    if (kind < 0 || kind > 4)
        return NULL;
    sqlite3_stmt **st = &s->row[kind][op];
    if (!*st) {
        char q[512];
        snprintf(q, sizeof(q), row_sql[op], kind);
        if (sqlite3_prepare_v3(s->db, q, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
            return NULL;
    }
    bind_text(*st, 1, user);
    bind_text(*st, 3, campaign);
    bind_text(*st, 4, key);
    return *st;
}

int store_row_get(struct store *s, int kind, const char *campaign, const char *user,
                  const char *key, struct store_row *out)
{
    sqlite3_stmt *st = row_stmt(s, kind, ROW_GET, campaign, user, key);
    if (!st)
        return -EIO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        memset(out, 0, sizeof(*out));
        if (kind == STORE_PROFILE) {
            read_profile(st, 1, &out->profile);
        } else if (kind == STORE_STATE) {
            size_t n = (size_t)sqlite3_column_bytes(st, 0);
            const void *p = sqlite3_column_blob(st, 0);
            out->blob = xmalloc(n + 1);
            if (n)
                memcpy(out->blob, p, n);
            out->blob[n] = 0;
            out->len = n;
        } else {
            out->i = sqlite3_column_int64(st, 0);
        }
    }
    done(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int store_row_put(struct store *s, int kind, const char *campaign, const char *user,
                  const char *key, const struct store_row *r, int how)
{
    int op = how == STORE_INSERT ? ROW_INSERT : how == STORE_UPDATE ? ROW_UPDATE : ROW_UPSERT;
    sqlite3_stmt *st = row_stmt(s, kind, op, campaign, user, key);
    if (!st)
        return -EIO;
    if (kind == STORE_PROFILE) {
        sqlite3_bind_int64(st, 6, r->profile.events);
        sqlite3_bind_int64(st, 7, r->profile.orders);
        sqlite3_bind_int64(st, 8, r->profile.spent);
        sqlite3_bind_int64(st, 9, r->profile.first_seen);
        sqlite3_bind_int64(st, 10, r->profile.last_seen);
    } else if (kind == STORE_STATE) {
        sqlite3_bind_blob(st, 5, r->len ? (const void *)r->blob : "", (int)r->len, SQLITE_STATIC);
    } else {
        sqlite3_bind_int64(st, 5, r->i);
    }
    int rc = run(s, st);
    if (rc == 0 && op == ROW_UPDATE && sqlite3_changes(s->db) == 0)
        return store_row_put(s, kind, campaign, user, key, r, STORE_INSERT); /* not there */
    return rc;
}

int store_row_del(struct store *s, int kind, const char *campaign, const char *user,
                  const char *key)
{
    sqlite3_stmt *st = row_stmt(s, kind, ROW_DEL, campaign, user, key);
    return st ? run(s, st) : -EIO;
}

int store_event_seen(struct store *s, const char *id)
{
    sqlite3_stmt *st = s->q[Q_EVENT_SEEN];
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    done(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

int store_unique_release(struct store *s, const char *ns, const char *key)
{
    sqlite3_stmt *st = s->q[Q_UNIQUE_DEL];
    bind_text(st, 1, ns);
    bind_text(st, 2, key);
    return run(s, st);
}

int store_timer_next(struct store *s, int64_t *due)
{
    sqlite3_stmt *st = s->q[Q_TIMER_MIN];
    *due = INT64_MAX;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *due = sqlite3_column_int64(st, 0);
    done(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -EIO;
}

int store_timer_set_aside(struct store *s, const char *campaign, const char *user, const char *name,
                          int64_t due, int64_t at, const char *error)
{
    sqlite3_stmt *st = s->q[Q_TIMER_FAILED_ADD];
    bind_text(st, 1, campaign);
    bind_text(st, 2, user);
    bind_text(st, 3, name);
    sqlite3_bind_int64(st, 4, due);
    sqlite3_bind_int64(st, 5, at);
    bind_text(st, 6, error);
    return run(s, st);
}

int store_timers_list(const char *db_path, int failed, store_timer_cb cb, void *arg, char *err,
                      size_t errlen)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = -EIO;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        goto out;
    sqlite3_busy_timeout(db, 5000);
    const char *q = failed
                        ? "SELECT campaign, user, name, due, failed_at, error FROM failed_timers "
                          "ORDER BY failed_at, campaign, user, name"
                        : "SELECT campaign, user, key, v, NULL, NULL FROM per_user WHERE kind = 4 "
                          "ORDER BY v, campaign, user, key";
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK)
        goto out;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_timer t = {
            .campaign = (const char *)sqlite3_column_text(st, 0),
            .user = (const char *)sqlite3_column_text(st, 1),
            .name = (const char *)sqlite3_column_text(st, 2),
            .due = sqlite3_column_int64(st, 3),
            .failed_at = sqlite3_column_int64(st, 4),
            .error = (const char *)sqlite3_column_text(st, 5),
        };
        cb(arg, &t);
    }
    if (step == SQLITE_DONE)
        rc = 0;
out:
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", db_path, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

int store_events_foreach(struct store *s, void (*cb)(void *arg, const char *id, size_t len),
                         void *arg)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT id FROM events", -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cb(arg, (const char *)sqlite3_column_text(st, 0), (size_t)sqlite3_column_bytes(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_uniques_foreach(struct store *s, void (*cb)(void *arg, const char *ns, const char *key),
                          void *arg)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT ns, key FROM uniques", -1, &st, NULL) != SQLITE_OK)
        return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cb(arg, (const char *)sqlite3_column_text(st, 0), (const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* ---- settings and readers outside the engine's batches ---- */

int store_set_synchronous(struct store *s, int full)
{
    const char *q = full ? "PRAGMA synchronous = FULL" : "PRAGMA synchronous = NORMAL";
    return sqlite3_exec(s->db, q, NULL, NULL, NULL) == SQLITE_OK ? 0 : -EIO;
}

int store_open_readonly(const char *path, struct store **out, char *err, size_t errlen)
{
    struct store *s = xcalloc(1, sizeof(*s));
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, s->db ? sqlite3_errmsg(s->db) : "cannot open");
        store_close(s);
        return -EIO;
    }
    sqlite3_busy_timeout(s->db, 5000); /* the daemon's commits are short */
    *out = s;
    return 0;
}

struct sqlite3 *store_sqlite(struct store *s)
{
    return s->db;
}

enum { R_ACTIONS, R_LAST_SEQ, R_COUNTS, R__COUNT };
_Static_assert(R__COUNT <= sizeof(((struct store *)0)->rd) / sizeof(sqlite3_stmt *),
               "struct store has a slot for each reader's statement");

static const char *const rd_sql[R__COUNT] = {
    [R_ACTIONS] = "SELECT seq, ts, campaign, kind, user, event_id, payload FROM actions "
                  "WHERE seq > ?1 AND (?2 IS NULL OR campaign = ?2) ORDER BY seq",
    [R_LAST_SEQ] = "SELECT coalesce(max(seq), 0) FROM actions",
    [R_COUNTS] = "SELECT campaign, kind, count(*), max(seq) FROM actions WHERE seq > ?1 "
                 "GROUP BY campaign, kind",
};

static sqlite3_stmt *reader(struct store *s, int r)
{
    if (!s->rd[r] && sqlite3_prepare_v3(s->db, rd_sql[r], -1, SQLITE_PREPARE_PERSISTENT, &s->rd[r],
                                        NULL) != SQLITE_OK)
        return NULL;
    return s->rd[r];
}

/* A text column, NULL for SQL NULL. */
static const char *col_text(sqlite3_stmt *st, int col, size_t *len)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL) {
        *len = 0;
        return NULL;
    }
    const char *t = (const char *)sqlite3_column_text(st, col);
    *len = (size_t)sqlite3_column_bytes(st, col);
    return t;
}

int store_actions_foreach(struct store *s, int64_t since, const char *campaign,
                          int (*cb)(void *arg, const struct store_action *a), void *arg)
{
    sqlite3_stmt *st = reader(s, R_ACTIONS);
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, since);
    bind_text(st, 2, campaign);
    int rc = SQLITE_DONE, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_action a = {.seq = sqlite3_column_int64(st, 0),
                                 .ts = sqlite3_column_int64(st, 1)};
        a.campaign = col_text(st, 2, &a.campaign_len);
        a.kind = col_text(st, 3, &a.kind_len);
        a.user = col_text(st, 4, &a.user_len);
        a.event_id = col_text(st, 5, &a.event_id_len);
        a.payload = col_text(st, 6, &a.payload_len);
        stop = cb(arg, &a);
    }
    done(st);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_action_last_seq(struct store *s, int64_t *seq)
{
    sqlite3_stmt *st = reader(s, R_LAST_SEQ);
    if (!st)
        return -EIO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *seq = sqlite3_column_int64(st, 0);
    done(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

int store_action_counts_since(struct store *s, int64_t since,
                              void (*cb)(void *arg, const char *campaign, const char *kind,
                                         uint64_t n),
                              void *arg, int64_t *top)
{
    sqlite3_stmt *st = reader(s, R_COUNTS);
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, since);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *camp = (const char *)sqlite3_column_text(st, 0);
        const char *kind = (const char *)sqlite3_column_text(st, 1);
        uint64_t n = (uint64_t)sqlite3_column_int64(st, 2);
        int64_t seq = sqlite3_column_int64(st, 3);
        if (!camp || !kind)
            continue;
        if (seq > *top)
            *top = seq;
        cb(arg, camp, kind, n);
    }
    done(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_try_write(struct store *s)
{
    if (store_begin(s) == 0 && store_commit(s) == 0)
        return 0;
    if (!sqlite3_get_autocommit(s->db))
        store_rollback(s);
    return -EIO;
}

int store_state_prefix(struct store *s, const char *campaign, const char *user, const char *prefix,
                       int (*cb)(void *arg, const char *key, const char *val, size_t len),
                       void *arg)
{
    sqlite3_stmt *st = s->q[Q_STATE_PREFIX];
    size_t n = strlen(prefix);
    /* the first key past every key with the prefix: its last byte below 0xff
     * raised by one, the bytes after it dropped; none when all are 0xff */
    char *upper = xstrdup(prefix);
    while (n > 0 && (unsigned char)upper[n - 1] == 0xff)
        n--;
    upper[n] = 0;
    if (n > 0)
        upper[n - 1] = (char)((unsigned char)upper[n - 1] + 1);
    bind_text(st, 1, user ? user : "");
    bind_text(st, 2, campaign);
    bind_text(st, 3, prefix);
    if (n > 0)
        bind_text(st, 4, upper);
    else
        sqlite3_bind_null(st, 4);
    /* every row is read before cb runs: cb may change the state, or iterate
     * again */
    struct kv {
        char *key, *val;
        size_t len;
    } *rows = NULL;
    size_t nrows = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (nrows == cap) {
            cap = cap ? cap * 2 : 16;
            rows = xrealloc(rows, cap * sizeof(*rows));
        }
        size_t len = (size_t)sqlite3_column_bytes(st, 1);
        const void *v = sqlite3_column_blob(st, 1);
        char *copy = xmalloc(len + 1); /* NUL-terminated, as state_get gives it */
        if (len)
            memcpy(copy, v, len);
        copy[len] = 0;
        rows[nrows++] = (struct kv){xstrdup((const char *)sqlite3_column_text(st, 0)), copy, len};
    }
    done(st);
    free(upper);
    int ret = rc == SQLITE_DONE ? 0 : -EIO;
    for (size_t i = 0; i < nrows; i++) {
        if (ret == 0)
            ret = cb(arg, rows[i].key, rows[i].val, rows[i].len);
        free(rows[i].key);
        free(rows[i].val);
    }
    free(rows);
    return ret;
}

int store_cap_count(struct store *s, const char *user, const char *kinds_json, int64_t after,
                    int64_t before, int64_t *n)
{
    sqlite3_stmt *st = s->q[Q_CAP_COUNT];
    bind_text(st, 1, user);
    sqlite3_bind_int64(st, 2, after);
    sqlite3_bind_int64(st, 3, before);
    bind_text(st, 4, kinds_json);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *n = sqlite3_column_int64(st, 0);
    done(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

/* ---- outputs (spec section 15) ---- */

enum {
    O_GET,
    O_CREATE,
    O_ADVANCE,
    O_FAILED,
    O_REWIND,
    O_ACTIONS,
    O_LIST,
    O_COUNT,
    O_PRUNE_UPTO,
    O_PRUNE,
    O_MIN_POS,
    O__COUNT
};
_Static_assert(O__COUNT <= sizeof(((struct store *)0)->outq) / sizeof(sqlite3_stmt *),
               "struct store has a slot for each output statement");

/* Filters are JSON arrays of strings, or NULL for all. */
#define OUT_FILTER                                                                                 \
    "(?3 IS NULL OR kind IN (SELECT value FROM json_each(?3))) AND "                               \
    "(?4 IS NULL OR campaign IN (SELECT value FROM json_each(?4)))"

static const char *const out_sql[O__COUNT] = {
    [O_GET] = "SELECT position FROM outputs WHERE id = ?1",
    [O_CREATE] = "INSERT OR IGNORE INTO outputs(id, position) VALUES (?1, ?2)",
    [O_ADVANCE] = "UPDATE outputs SET position = ?3, delivered = delivered + ?4, "
                  "last_success = CASE WHEN ?5 > 0 THEN ?5 ELSE last_success END "
                  "WHERE id = ?1 AND position = ?2",
    [O_FAILED] = "UPDATE outputs SET last_error = ?2, last_error_at = ?3 WHERE id = ?1",
    [O_REWIND] = "UPDATE outputs SET position = ?2 WHERE id = ?1",
    [O_ACTIONS] = "SELECT seq, ts, campaign, kind, user, event_id, payload FROM actions "
                  "WHERE seq > ?1 AND seq <= ?2 AND " OUT_FILTER " ORDER BY seq LIMIT ?5",
    [O_LIST] = "SELECT id, position, delivered, last_success, last_error, last_error_at "
               "FROM outputs ORDER BY id",
    [O_COUNT] = "SELECT count(*) FROM actions WHERE seq > ?1 AND seq <= ?2 AND " OUT_FILTER,
    [O_PRUNE_UPTO] = "SELECT max(seq) FROM (SELECT seq FROM actions WHERE seq > ?1 AND seq <= ?2 "
                     "ORDER BY seq LIMIT ?3)",
    [O_PRUNE] = "DELETE FROM actions WHERE seq > ?1 AND seq <= ?2 AND ts < ?3",
    [O_MIN_POS] = "SELECT min(position) FROM outputs WHERE id IN (SELECT value FROM json_each(?1))",
};

static sqlite3_stmt *out_stmt(struct store *s, int q)
{
    if (!s->outq[q] && sqlite3_prepare_v3(s->db, out_sql[q], -1, SQLITE_PREPARE_PERSISTENT,
                                          &s->outq[q], NULL) != SQLITE_OK)
        return NULL;
    return s->outq[q];
}

/* Writes here are single statements outside the engine's batches; one
 * made while a batch's transaction is open would join it: refused. */
static sqlite3_stmt *out_write(struct store *s, int q)
{
    if (!sqlite3_get_autocommit(s->db))
        return NULL;
    return out_stmt(s, q);
}

int store_output_get(struct store *s, const char *id, int64_t *position)
{
    sqlite3_stmt *st = out_stmt(s, O_GET);
    if (!st)
        return -EIO;
    bind_text(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *position = sqlite3_column_int64(st, 0);
    done(st);
    return rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
}

int store_output_create(struct store *s, const char *id, int64_t position)
{
    sqlite3_stmt *st = out_write(s, O_CREATE);
    if (!st)
        return -EIO;
    bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, position);
    return run(s, st);
}

int store_output_advance(struct store *s, const char *id, int64_t from, int64_t to, int64_t n,
                         int64_t at)
{
    sqlite3_stmt *st = out_write(s, O_ADVANCE);
    if (!st)
        return -EIO;
    bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, from);
    sqlite3_bind_int64(st, 3, to);
    sqlite3_bind_int64(st, 4, n);
    sqlite3_bind_int64(st, 5, at);
    if (run(s, st) < 0)
        return -EIO;
    return sqlite3_changes(s->db) > 0 ? 1 : 0;
}

int store_output_failed(struct store *s, const char *id, const char *error, int64_t at)
{
    sqlite3_stmt *st = out_write(s, O_FAILED);
    if (!st)
        return -EIO;
    bind_text(st, 1, id);
    bind_text(st, 2, error);
    sqlite3_bind_int64(st, 3, at);
    return run(s, st);
}

int store_output_rewind(struct store *s, const char *id, int64_t position)
{
    sqlite3_stmt *st = out_write(s, O_REWIND);
    if (!st)
        return -EIO;
    bind_text(st, 1, id);
    sqlite3_bind_int64(st, 2, position);
    if (run(s, st) < 0)
        return -EIO;
    return sqlite3_changes(s->db) > 0 ? 0 : -ENOENT;
}

static void bind_filters(sqlite3_stmt *st, const char *kinds_json, const char *campaigns_json)
{
    bind_text(st, 3, kinds_json);
    bind_text(st, 4, campaigns_json);
}

int store_output_actions(struct store *s, int64_t after, int64_t upto, const char *kinds_json,
                         const char *campaigns_json, int limit,
                         int (*cb)(void *arg, const struct store_action *a), void *arg)
{
    sqlite3_stmt *st = out_stmt(s, O_ACTIONS);
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, upto);
    bind_filters(st, kinds_json, campaigns_json);
    sqlite3_bind_int(st, 5, limit);
    int rc = SQLITE_DONE, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_action a = {.seq = sqlite3_column_int64(st, 0),
                                 .ts = sqlite3_column_int64(st, 1)};
        a.campaign = col_text(st, 2, &a.campaign_len);
        a.kind = col_text(st, 3, &a.kind_len);
        a.user = col_text(st, 4, &a.user_len);
        a.event_id = col_text(st, 5, &a.event_id_len);
        a.payload = col_text(st, 6, &a.payload_len);
        stop = cb(arg, &a);
    }
    done(st);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_output_count(struct store *s, int64_t after, int64_t upto, const char *kinds_json,
                       const char *campaigns_json, int64_t *n)
{
    sqlite3_stmt *st = out_stmt(s, O_COUNT);
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, upto);
    bind_filters(st, kinds_json, campaigns_json);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *n = sqlite3_column_int64(st, 0);
    done(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

int store_outputs_list(struct store *s, void (*cb)(void *arg, const struct store_output *o),
                       void *arg)
{
    sqlite3_stmt *st = out_stmt(s, O_LIST);
    if (!st)
        return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        size_t len;
        struct store_output o = {.position = sqlite3_column_int64(st, 1),
                                 .delivered = sqlite3_column_int64(st, 2),
                                 .last_success = sqlite3_column_int64(st, 3),
                                 .last_error_at = sqlite3_column_int64(st, 5)};
        o.id = col_text(st, 0, &len);
        o.last_error = col_text(st, 4, &len);
        if (o.id)
            cb(arg, &o);
    }
    done(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_outputs_min_position(struct store *s, const char *ids_json, int64_t *pos)
{
    sqlite3_stmt *st = out_stmt(s, O_MIN_POS);
    if (!st)
        return -EIO;
    bind_text(st, 1, ids_json);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *pos = sqlite3_column_type(st, 0) == SQLITE_NULL ? INT64_MAX : sqlite3_column_int64(st, 0);
    done(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

int store_actions_prune(struct store *s, int64_t after, int64_t max_seq, int64_t before_ts,
                        int limit, int64_t *upto)
{
    sqlite3_stmt *st = out_stmt(s, O_PRUNE_UPTO);
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, max_seq);
    sqlite3_bind_int(st, 3, limit);
    int rc = sqlite3_step(st);
    *upto = after;
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL)
        *upto = sqlite3_column_int64(st, 0);
    done(st);
    if (rc != SQLITE_ROW)
        return -EIO;
    if (*upto == after)
        return 0;
    if (!(st = out_write(s, O_PRUNE)))
        return -EIO;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, *upto);
    sqlite3_bind_int64(st, 3, before_ts);
    if (run(s, st) < 0)
        return -EIO;
    return sqlite3_changes(s->db);
}
