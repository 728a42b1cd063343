/* The store: schema, ids, actions, profile, state, counters, timers,
 * unique keys, savepoints. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include <sqlite3.h>

#include "store/checkpointer.h"
#include "store/store.h"

static struct store *open_mem(void)
{
    struct store *s;
    char err[256];
    if (store_open(":memory:", 0, &s, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    return s;
}

static void test_ids_and_actions(void)
{
    struct store *s = open_mem();
    CHECK_INT(store_begin(s), 0);
    CHECK_INT(store_event_remember(s, "e1"), 0);
    CHECK_INT(store_event_remember(s, "e1"), 1);
    int64_t a, b;
    CHECK_INT(store_action_insert(s, 5, "c", "k", "u", "e1", "{}", &a), 0);
    CHECK_INT(store_action_insert(s, 1, "c", "k", "u", NULL, "{\"x\":1}", &b), 0);
    CHECK(b > a); /* seq grows even when ts does not */
    CHECK_INT(store_commit(s), 0);
    store_close(s);
}

/* A rolled-back transaction leaves no id and no row behind. */
static void test_rollback(void)
{
    struct store *s = open_mem();
    store_begin(s);
    store_event_remember(s, "keep");
    CHECK_INT(store_commit(s), 0);
    store_begin(s);
    store_event_remember(s, "drop");
    struct store_row r = {.blob = "v", .len = 1};
    CHECK_INT(store_row_put(s, STORE_STATE, "c", "u", "k", &r, STORE_INSERT), 0);
    CHECK_INT(store_rollback(s), 0);
    CHECK_INT(store_event_seen(s, "drop"), 0);
    CHECK_INT(store_event_seen(s, "keep"), 1);
    CHECK_INT(store_row_get(s, STORE_STATE, "c", "u", "k", &r), -ENOENT);
    store_close(s);
}

/* Profiles round-trip through their row (the engine computes them). */
static void test_profile(void)
{
    struct store *s = open_mem();
    mktd_profile p;
    CHECK_INT(store_profile_get(s, "u", &p), -ENOENT);
    struct store_row r = {
        .profile = {
            .events = 3, .orders = 2, .spent = INT64_MAX, .first_seen = 50, .last_seen = 100}};
    CHECK_INT(store_row_put(s, STORE_PROFILE, "", "u", "", &r, STORE_INSERT), 0);
    CHECK_INT(store_profile_get(s, "u", &p), 0);
    CHECK(p.events == 3 && p.orders == 2 && p.spent == INT64_MAX && p.first_seen == 50 &&
          p.last_seen == 100);
    r.profile.events = 4;
    CHECK_INT(store_row_put(s, STORE_PROFILE, "", "u", "", &r, STORE_UPDATE), 0);
    CHECK_INT(store_profile_get(s, "u", &p), 0);
    CHECK_INT(p.events, 4);
    /* an update of a row that is not there inserts it */
    CHECK_INT(store_row_put(s, STORE_PROFILE, "", "v", "", &r, STORE_UPDATE), 0);
    CHECK_INT(store_profile_get(s, "v", &p), 0);
    CHECK_INT(store_count_get(s, "u", "page.view"), 0);
    store_count_inc(s, "u", "page.view");
    store_count_inc(s, "u", "page.view");
    CHECK_INT(store_count_get(s, "u", "page.view"), 2);
    store_close(s);
}

static void test_state_counters_uniques(void)
{
    struct store *s = open_mem();
    char *v;
    size_t n;
    CHECK_INT(store_state_put(s, "c", NULL, "k", "a\0b", 3), 0);
    CHECK_INT(store_state_get(s, "c", "", "k", &v, &n), 0); /* NULL user = "" */
    CHECK_INT(n, 3);
    CHECK(memcmp(v, "a\0b", 3) == 0);
    free(v);
    CHECK_INT(store_state_get(s, "other", NULL, "k", &v, &n), -ENOENT); /* per campaign */
    CHECK_INT(store_state_del(s, "c", NULL, "k"), 0);
    CHECK_INT(store_state_get(s, "c", NULL, "k", &v, &n), -ENOENT);
    CHECK_INT(store_counter_get(s, "c", "u", "n"), 0);
    store_counter_set(s, "c", "u", "n", 7);
    CHECK_INT(store_counter_get(s, "c", "u", "n"), 7);
    CHECK_INT(store_unique_claim(s, "coupon", "X", "c1"), 0);
    CHECK_INT(store_unique_claim(s, "coupon", "X", "c2"), -EEXIST);
    CHECK_INT(store_unique_claim(s, "other", "X", "c2"), 0);
    char *owner;
    CHECK_INT(store_unique_owner(s, "coupon", "X", &owner), 0);
    CHECK_STR(owner, "c1");
    free(owner);
    CHECK_INT(store_campaign_seen(s, "c1", "coupon"), 1);
    CHECK_INT(store_campaign_seen(s, "c1", "coupon"), 0);
    store_close(s);
}

static void test_timers_live(void)
{
    struct store *s = open_mem();
    store_timer_set(s, "a", "u2", "t", 30);
    store_timer_set(s, "a", "u1", "t", 30);
    store_timer_set(s, "b", "u1", "t", 20);
    store_timer_set(s, "gone", "u1", "t", 10);
    CHECK_INT(store_timer_min(s), INT64_MAX); /* nothing live yet */
    char *live[] = {"a", "b"};
    store_set_live(s, live, 2);
    CHECK_INT(store_timer_min(s), 20); /* "gone" waits */
    struct timer_row *rows;
    size_t n;
    CHECK_INT(store_timers_at(s, 20, &rows, &n), 0);
    CHECK_INT(n, 1);
    CHECK_STR(rows[0].campaign, "b");
    store_timer_rows_free(rows, n);
    store_timer_del(s, "b", "u1", "t");
    CHECK_INT(store_timers_at(s, 20, &rows, &n), 0);
    CHECK_INT(n, 0);
    CHECK_INT(store_timer_min(s), 30);
    CHECK_INT(store_timers_at(s, 10, &rows, &n), 0);
    CHECK_INT(n, 0); /* "gone" is not live */
    CHECK_INT(store_timers_at(s, 30, &rows, &n), 0);
    CHECK_INT(n, 2); /* both timers due at 30 */
    store_timer_rows_free(rows, n);
    CHECK_INT(store_timer_take(s, "a", "u1", "t", 29), 0); /* not at that due: stays */
    CHECK_INT(store_timer_take(s, "a", "u1", "t", 30), 1);
    CHECK_INT(store_timer_take(s, "a", "u1", "t", 30), 0); /* gone */
    store_timer_set(s, "a", "u1", "t", 40);                /* moves */
    int64_t due;
    CHECK_INT(store_timer_get(s, "a", "u1", "t", &due), 0);
    CHECK_INT(due, 40);
    store_close(s);
}

static void remove_db(const char *path)
{
    char p[300];
    unlink(path);
    snprintf(p, sizeof(p), "%s-wal", path);
    unlink(p);
    snprintf(p, sizeof(p), "%s-shm", path);
    unlink(p);
}

/* A store in a new file; path (a mkstemp template) gets its name. */
static struct store *open_file(char *path)
{
    close(mkstemp(path));
    unlink(path);
    struct store *s;
    char err[256];
    if (store_open(path, 0, &s, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    return s;
}

/* A connection of the test's own beside the store's (which it does not
 * expose), for looking at tables and pragmas. */
static sqlite3 *peek(const char *path)
{
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        fprintf(stderr, "%s: %s\n", path, db ? sqlite3_errmsg(db) : "cannot open");
        exit(1);
    }
    sqlite3_busy_timeout(db, 5000);
    return db;
}

static void test_reopen_and_schema(void)
{
    char path[] = "/tmp/mktd-store-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    struct store *s;
    char err[256];
    CHECK_INT(store_open(path, 1, &s, err, sizeof(err)), 0);
    store_begin(s);
    store_event_remember(s, "e1");
    store_meta_set(s, "clock_now", 123);
    store_commit(s);
    store_close(s);
    CHECK_INT(store_open(path, 0, &s, err, sizeof(err)), 0);
    CHECK_INT(store_event_remember(s, "e1"), 1);
    int64_t v = 0;
    CHECK_INT(store_meta_get(s, "clock_now", &v), 0);
    CHECK_INT(v, 123);
    store_close(s);
    sqlite3 *db = peek(path);
    CHECK_INT(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    CHECK(store_open(path, 0, &s, err, sizeof(err)) < 0); /* newer schema refused */
    CHECK(strstr(err, "99") != NULL);
    remove_db(path);
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* The loop writes without pause while the thread checkpoints: the WAL
 * starts over instead of growing with everything written, and nothing
 * written is lost. */
static int count_rows(sqlite3 *db, const char *sql);

/* n actions of ~1 KB (about 4 a page) in one commit, ids from *next. */
static int write_batch(struct store *s, int n, int *next)
{
    char payload[1001];
    memset(payload, 'x', 1000);
    payload[1000] = 0;
    if (store_begin(s) < 0)
        return -1;
    for (int i = 0; i < n; i++, (*next)++) {
        char id[32];
        snprintf(id, sizeof(id), "e%d", *next);
        int64_t seq;
        if (store_event_remember(s, id) < 0 ||
            store_action_insert(s, *next, "c", "k", "u", id, payload, &seq) < 0)
            return -1;
    }
    return store_commit(s);
}

/* The writer sees the WAL start over at its next commit: small commits
 * until it does (5 s at most). */
static int wait_restarts(struct store *s, uint64_t more_than)
{
    struct checkpointer_stats ck;
    for (int i = 0; i < 500; i++) {
        store_begin(s);
        store_meta_set(s, "tick", i);
        store_commit(s);
        store_checkpoint_stats(s, &ck);
        if (ck.restarts > more_than)
            return 1;
        usleep(10000);
    }
    return 0;
}

static void check_sound(const char *path, int rows)
{
    struct store *s;
    char err[256];
    CHECK_INT(store_open(path, 0, &s, err, sizeof(err)), 0);
    sqlite3 *db = peek(path);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db, "SELECT count(*) FROM actions", -1, &st, NULL);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(st, 0), rows);
    sqlite3_finalize(st);
    sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(db);
    store_close(s);
}

/* The loop writes without pause while the thread checkpoints: the WAL
 * starts over instead of growing with everything written, and nothing
 * written is lost. */
static void test_background_checkpoints(void)
{
    char path[] = "/tmp/mktd-store-XXXXXX", wal[300], err[256];
    struct store *s = open_file(path);
    snprintf(wal, sizeof(wal), "%s-wal", path);
    CHECK_INT(store_background_checkpoints(s, err, sizeof(err)), 0);
    struct checkpointer_stats ck;
    CHECK_INT(store_checkpoint_stats(s, &ck), 0);
    CHECK_INT(ck.restarts, 0);
    /* 100 commits of 400 write ~10,000 pages (40 MB) */
    long wal_max = 0;
    int n = 0, failed = 0;
    for (int b = 0; b < 100; b++) {
        failed += write_batch(s, 400, &n) != 0;
        long w = file_size(wal);
        if (w > wal_max)
            wal_max = w;
        usleep(2000); /* the loop's time between batches */
    }
    CHECK_INT(failed, 0);
    CHECK(wait_restarts(s, 0));
    store_checkpoint_stats(s, &ck);
    CHECK_INT(ck.errors, 0);
    CHECK(wal_max > 0 && wal_max < 100L * 1024 * 1024); /* it started over */
    store_close(s);
    check_sound(path, n);
    remove_db(path);
}

/* A reader's snapshot (a backup) pins the WAL: the loop keeps committing,
 * the reader keeps its snapshot, and the WAL starts over once it is gone. */
static void test_checkpoints_with_reader(void)
{
    char path[] = "/tmp/mktd-store-XXXXXX", err[256];
    struct store *s = open_file(path);
    CHECK_INT(store_background_checkpoints(s, err, sizeof(err)), 0);
    int n = 0, failed = 0;
    failed += write_batch(s, 10, &n) != 0;
    sqlite3 *reader;
    CHECK_INT(sqlite3_open_v2(path, &reader, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_exec(reader, "BEGIN", NULL, NULL, NULL);
    CHECK_INT(count_rows(reader, "SELECT count(*) FROM actions"), 10);
    for (int b = 0; b < 120; b++) {
        failed += write_batch(s, 400, &n) != 0;
        usleep(1000);
    }
    CHECK_INT(failed, 0);
    CHECK_INT(count_rows(reader, "SELECT count(*) FROM actions"), 10);
    struct checkpointer_stats ck;
    store_checkpoint_stats(s, &ck);
    uint64_t before = ck.restarts;
    sqlite3_exec(reader, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(reader);
    /* the thread comes back to the WAL once more frames arrive */
    int restarted = 0;
    for (int b = 0; b < 100 && !restarted; b++) {
        failed += write_batch(s, 400, &n) != 0;
        usleep(10000);
        store_checkpoint_stats(s, &ck);
        restarted = ck.restarts > before;
    }
    CHECK_INT(failed, 0);
    CHECK(restarted || wait_restarts(s, before));
    store_close(s);
    check_sound(path, n);
    remove_db(path);
}

static int count_rows(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -2;
    if (sqlite3_step(st) == SQLITE_ROW)
        n = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* The store's WAL appends are gathered in memory (walbuf.c): after every
 * commit, small or larger than the buffer, another connection (the plain
 * VFS) sees all of it, and the file stays sound. */
static void test_wal_gathering(void)
{
    char path[] = "/tmp/mktd-store-XXXXXX";
    struct store *s = open_file(path);
    sqlite3 *reader;
    CHECK_INT(sqlite3_open_v2(path, &reader, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    char payload[3001];
    memset(payload, 'y', 3000);
    payload[3000] = 0;
    int n = 0, bad = 0;
    /* 1, 2, 4, ... 2048 rows a commit: up to ~6 MB, several buffers */
    for (int size = 1; size <= 2048; size *= 2) {
        CHECK_INT(store_begin(s), 0);
        for (int i = 0; i < size; i++, n++) {
            char id[32];
            snprintf(id, sizeof(id), "w%d", n);
            int64_t seq;
            store_event_remember(s, id);
            store_action_insert(s, n, "c", "k", "u", id, payload + (n % 2000), &seq);
        }
        /* a page written twice in one transaction is rewritten in place */
        store_meta_set(s, "m", n);
        store_meta_set(s, "m", n + 1);
        CHECK_INT(store_commit(s), 0);
        if (count_rows(reader, "SELECT count(*) FROM actions") != n ||
            count_rows(reader, "SELECT count(*) FROM events") != n ||
            count_rows(reader, "SELECT value FROM meta WHERE key = 'm'") != n + 1)
            bad++;
    }
    CHECK_INT(bad, 0);
    /* a rolled-back transaction leaves nothing visible */
    CHECK_INT(store_begin(s), 0);
    store_event_remember(s, "gone");
    CHECK_INT(store_rollback(s), 0);
    CHECK_INT(count_rows(reader, "SELECT count(*) FROM events WHERE id = 'gone'"), 0);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(reader, "PRAGMA integrity_check", -1, &st, NULL);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(reader);
    store_close(s);
    remove_db(path);
}

/* A database of schema version 1 (a table per kind of per-user row), with
 * rows of every kind, is carried over whole to version 2 (one table). */
static const char v1_rows[] =
    "INSERT INTO events VALUES ('e1');"
    "INSERT INTO actions(ts, campaign, kind, user, event_id, payload)"
    "  VALUES (5, 'c', 'coupon.issued', 'u1', 'e1', '{}');"
    "INSERT INTO users VALUES ('u1', 3, 1, 500, 100, 300), ('u2', 1, 0, 0, 50, 50);"
    "INSERT INTO user_counts VALUES ('u1', 'page.view', 2);"
    "INSERT INTO counted_types VALUES ('page.view');"
    "INSERT INTO state VALUES ('c', 'u1', 'k', x'610062'), ('c', '', 'wide', 'w');"
    "INSERT INTO counters VALUES ('c', 'u1', 'issued', 1), ('c', '', 'budget', 7);"
    "INSERT INTO timers VALUES ('c', 'u1', 'later', 900), ('c', 'u2', 'soon', 400),"
    "  ('gone', 'u1', 'x', 10);"
    "INSERT INTO uniques VALUES ('code', 'ABC', 'c');"
    "PRAGMA user_version = 1;";

static void test_migrate_v1(void)
{
    char path[] = "/tmp/mktd-store-XXXXXX";
    close(mkstemp(path));
    unlink(path);
    sqlite3 *db;
    CHECK_INT(sqlite3_open(path, &db), SQLITE_OK);
    CHECK_INT(sqlite3_exec(db, store_migration(0), NULL, NULL, NULL), SQLITE_OK);
    CHECK_INT(sqlite3_exec(db, v1_rows, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    struct store *s;
    char err[256];
    CHECK_INT(store_open(path, 0, &s, err, sizeof(err)), 0);
    sqlite3 *own = peek(path);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(own, "PRAGMA user_version", -1, &st, NULL);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_INT(sqlite3_column_int(st, 0), STORE_SCHEMA_VERSION);
    sqlite3_finalize(st);

    CHECK_INT(store_event_remember(s, "e1"), 1);
    mktd_profile p;
    CHECK_INT(store_profile_get(s, "u1", &p), 0);
    CHECK(p.events == 3 && p.orders == 1 && p.spent == 500 && p.first_seen == 100 &&
          p.last_seen == 300);
    CHECK_INT(store_profile_get(s, "u3", &p), -ENOENT);
    CHECK_INT((int)store_count_get(s, "u1", "page.view"), 2);
    char *v;
    size_t len;
    CHECK_INT(store_state_get(s, "c", "u1", "k", &v, &len), 0);
    CHECK(len == 3 && memcmp(v, "a\0b", 3) == 0);
    free(v);
    CHECK_INT(store_state_get(s, "c", NULL, "wide", &v, &len), 0);
    CHECK(len == 1 && v[0] == 'w');
    free(v);
    CHECK_INT((int)store_counter_get(s, "c", "u1", "issued"), 1);
    CHECK_INT((int)store_counter_get(s, "c", NULL, "budget"), 7);
    int64_t due;
    CHECK_INT(store_timer_get(s, "c", "u1", "later", &due), 0);
    CHECK_INT((int)due, 900);
    char *live[] = {"c"};
    CHECK_INT(store_set_live(s, live, 1), 0);
    CHECK_INT((int)store_timer_min(s), 400); /* "gone" is not live */
    struct timer_row *rows;
    size_t n;
    CHECK_INT(store_timers_at(s, 400, &rows, &n), 0);
    CHECK(n == 1 && strcmp(rows[0].user, "u2") == 0 && strcmp(rows[0].name, "soon") == 0);
    store_timer_rows_free(rows, n);
    char *owner;
    CHECK_INT(store_unique_owner(s, "code", "ABC", &owner), 0);
    free(owner);

    /* the old names still read the same rows */
    CHECK_INT(count_rows(own, "SELECT count(*) FROM users"), 2);
    CHECK_INT(count_rows(own, "SELECT count(*) FROM users WHERE id = 'u1' AND events = 3 AND "
                              "orders = 1 AND spent = 500"),
              1);
    CHECK_INT(count_rows(own, "SELECT count(*) FROM user_counts WHERE n = 2"), 1);
    CHECK_INT(count_rows(own, "SELECT count(*) FROM state WHERE campaign = 'c'"), 2);
    CHECK_INT(count_rows(own, "SELECT count(*) FROM counters WHERE n = 7 AND user = ''"), 1);
    CHECK_INT(count_rows(own, "SELECT count(*) FROM timers WHERE name = 'later' AND due = 900"), 1);
    CHECK_INT(count_rows(own, "SELECT count(*) FROM actions"), 1);

    /* and the store goes on writing to them */
    store_begin(s);
    struct store_row r;
    CHECK_INT(store_row_get(s, STORE_PROFILE, "", "u1", "", &r), 0);
    CHECK(r.profile.events == 3 && r.profile.orders == 1 && r.profile.spent == 500);
    r.profile.events++;
    CHECK_INT(store_row_put(s, STORE_PROFILE, "", "u1", "", &r, STORE_UPDATE), 0);
    mktd_profile q;
    CHECK_INT(store_profile_get(s, "u1", &q), 0);
    CHECK_INT(q.events, 4);
    CHECK_INT(store_count_inc(s, "u1", "page.view"), 0);
    CHECK_INT((int)store_count_get(s, "u1", "page.view"), 3);
    CHECK_INT(store_commit(s), 0);
    sqlite3_prepare_v2(own, "PRAGMA integrity_check", -1, &st, NULL);
    CHECK_INT(sqlite3_step(st), SQLITE_ROW);
    CHECK_STR((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
    sqlite3_close(own);
    store_close(s);
    remove_db(path);
}

/* The readers of the actions table: `mktd actions` (read-only, beside
 * the daemon), simulate and /metrics. */
struct rows {
    char text[1024];
    int n;
};

static int row_cb(void *arg, const struct store_action *a)
{
    struct rows *r = arg;
    size_t len = strlen(r->text);
    snprintf(r->text + len, sizeof(r->text) - len, "%lld %lld %s %s %s %s %s (%zu);",
             (long long)a->seq, (long long)a->ts, a->campaign, a->kind, a->user,
             a->event_id ? a->event_id : "NULL", a->payload, a->payload_len);
    return ++r->n == 99 ? 7 : 0;
}

static void count_cb(void *arg, const char *campaign, const char *kind, uint64_t n)
{
    struct rows *r = arg;
    size_t len = strlen(r->text);
    snprintf(r->text + len, sizeof(r->text) - len, "%s/%s=%llu;", campaign, kind,
             (unsigned long long)n);
}

static void test_action_readers(void)
{
    char path[] = "/tmp/mktd-store-XXXXXX", err[256];
    close(mkstemp(path));
    unlink(path);
    struct store *s, *ro;
    CHECK(store_open_readonly(path, &ro, err, sizeof(err)) < 0); /* no database yet */
    CHECK(strstr(err, path) != NULL);
    CHECK_INT(store_open(path, 0, &s, err, sizeof(err)), 0);
    int64_t seq = -1, top = 0;
    CHECK_INT(store_action_last_seq(s, &seq), 0);
    CHECK_INT(seq, 0);
    CHECK_INT(store_set_synchronous(s, 1), 0);
    CHECK_INT(store_set_synchronous(s, 0), 0);
    store_begin(s);
    store_action_insert(s, 10, "c1", "k1", "u1", "e1", "{\"a\":1}", NULL);
    store_action_insert(s, 5, "c2", "k2", "u2", NULL, "{}", NULL);
    store_action_insert(s, 20, "c1", "k1", "u3", "e2", "{}", NULL);
    CHECK_INT(store_commit(s), 0);
    CHECK_INT(store_action_last_seq(s, &seq), 0);
    CHECK_INT(seq, 3);

    struct rows r = {"", 0};
    CHECK_INT(store_action_counts_since(s, 0, count_cb, &r, &top), 0);
    CHECK_STR(r.text, "c1/k1=2;c2/k2=1;");
    CHECK_INT(top, 3);
    r.text[0] = 0;
    top = 2;
    CHECK_INT(store_action_counts_since(s, 2, count_cb, &r, &top), 0);
    CHECK_STR(r.text, "c1/k1=1;");
    CHECK_INT(top, 3);
    r.text[0] = 0;
    CHECK_INT(store_action_counts_since(s, 3, count_cb, &r, &top), 0);
    CHECK_STR(r.text, "");
    CHECK_INT(top, 3);

    /* read-only, beside the writer */
    CHECK_INT(store_open_readonly(path, &ro, err, sizeof(err)), 0);
    r = (struct rows){"", 0};
    CHECK_INT(store_actions_foreach(ro, 0, NULL, row_cb, &r), 0);
    CHECK_STR(r.text, "1 10 c1 k1 u1 e1 {\"a\":1} (7);2 5 c2 k2 u2 NULL {} (2);"
                      "3 20 c1 k1 u3 e2 {} (2);");
    r = (struct rows){"", 0};
    CHECK_INT(store_actions_foreach(ro, 1, "c1", row_cb, &r), 0);
    CHECK_STR(r.text, "3 20 c1 k1 u3 e2 {} (2);");
    r = (struct rows){"", 98}; /* the callback's non-zero return stops the walk */
    CHECK_INT(store_actions_foreach(ro, 0, NULL, row_cb, &r), 7);
    CHECK_INT(r.n, 99);
    store_begin(s); /* what the writer adds later is read on the next walk */
    store_action_insert(s, 30, "c2", "k3", "u1", "e3", "{}", NULL);
    CHECK_INT(store_commit(s), 0);
    r = (struct rows){"", 0};
    CHECK_INT(store_actions_foreach(ro, 3, NULL, row_cb, &r), 0);
    CHECK_STR(r.text, "4 30 c2 k3 u1 e3 {} (2);");
    CHECK_INT(store_action_last_seq(ro, &seq), 0);
    CHECK_INT(seq, 4);
    store_close(ro);
    store_close(s);
    remove_db(path);
}

int main(void)
{
    test_action_readers();
    test_ids_and_actions();
    test_rollback();
    test_profile();
    test_state_counters_uniques();
    test_timers_live();
    test_reopen_and_schema();
    test_migrate_v1();
    test_background_checkpoints();
    test_checkpoints_with_reader();
    test_wal_gathering();
    return check_done();
}
