/* The engine's working set (engine/ws.c) over a real store: read-through,
 * undo, flush, rollback, eviction, store errors; and the event-id filter
 * (lib/bloom.c). */
#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "engine/ws.h"
#include "lib/bloom.h"
#include "store/store.h"

static struct store *open_store(const char *path)
{
    struct store *s;
    char err[256];
    if (store_open(path, 0, &s, err, sizeof(err)) < 0) {
        fprintf(stderr, "store_open: %s\n", err);
        exit(1);
    }
    return s;
}

/* The value the store itself has (not the working set). */
static int64_t stored_int(struct store *s, int kind, const char *c, const char *u, const char *k)
{
    struct store_row r;
    return store_row_get(s, kind, c, u, k, &r) == 0 ? r.i : -1;
}

static void commit(struct store *s, struct ws *w)
{
    CHECK_INT(store_begin(s), 0);
    CHECK_INT(ws_flush(w), 0);
    CHECK_INT(store_commit(s), 0);
    ws_committed(w);
}

static void test_read_through_and_undo(void)
{
    struct store *s = open_store(":memory:");
    struct store_row r = {.i = 7};
    CHECK_INT(store_row_put(s, STORE_COUNTER, "c", "u1", "n", &r, STORE_UPSERT), 0);
    struct ws *w = ws_new(s, 1 << 20);
    int64_t v = 0;
    CHECK_INT(ws_get_int(w, WS_COUNTER, "c", "u1", "n", &v), 0);
    CHECK_INT(v, 7);
    CHECK_INT(ws_get_int(w, WS_COUNTER, "c", "u2", "n", &v), -ENOENT);
    /* an event changes things, then fails: all of it is undone */
    size_t mark = ws_mark(w);
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", "u1", "n", 8), 0);
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", "u1", "n", 9), 0);
    CHECK_INT(ws_put_str(w, WS_STATE, "c", "u2", "k", "hello", 5), 0);
    CHECK_INT(ws_del(w, WS_COUNTER, "c", "u1", "n"), 0);
    CHECK_INT(ws_get_int(w, WS_COUNTER, "c", "u1", "n", &v), -ENOENT);
    ws_undo_to(w, mark);
    CHECK_INT(ws_get_int(w, WS_COUNTER, "c", "u1", "n", &v), 0);
    CHECK_INT(v, 7);
    CHECK_INT(ws_get_str(w, WS_STATE, "c", "u2", "k", NULL, NULL), -ENOENT);
    /* a kept change reaches the store only with the flush */
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", "u1", "n", 10), 0);
    CHECK_INT(stored_int(s, STORE_COUNTER, "c", "u1", "n"), 7);
    commit(s, w);
    CHECK_INT(stored_int(s, STORE_COUNTER, "c", "u1", "n"), 10);
    struct ws_stats st;
    ws_stats(w, &st);
    CHECK_INT(st.flushed_rows, 1); /* the undone state row was not written */
    ws_free(w);
    store_close(s);
}

static void test_undo_after_flush_writes_again(void)
{
    struct store *s = open_store(":memory:");
    struct ws *w = ws_new(s, 1 << 20);
    CHECK_INT(store_begin(s), 0);
    size_t mark = ws_mark(w);
    CHECK_INT(ws_put_int(w, WS_TIMER, "c", "u1", "t", 100), 0);
    CHECK_INT(ws_flush(w), 0); /* as before a timer query in the batch */
    CHECK_INT(stored_int(s, STORE_TIMER, "c", "u1", "t"), 100);
    ws_undo_to(w, mark);
    int64_t v;
    CHECK_INT(ws_get_int(w, WS_TIMER, "c", "u1", "t", &v), -ENOENT);
    CHECK_INT(ws_flush(w), 0);
    CHECK_INT(store_commit(s), 0);
    ws_committed(w);
    CHECK_INT(stored_int(s, STORE_TIMER, "c", "u1", "t"), -1); /* deleted again */
    ws_free(w);
    store_close(s);
}

static void test_rollback(void)
{
    struct store *s = open_store(":memory:");
    struct ws *w = ws_new(s, 1 << 20);
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", "", "budget", 5), 0);
    commit(s, w);
    CHECK_INT(store_begin(s), 0);
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", "", "budget", 6), 0);
    CHECK_INT(ws_put_str(w, WS_UNIQUE, "code", "", "ABC", "c", 1), 0);
    CHECK_INT(ws_put_str(w, WS_EVENT, "", "", "e1", "", 0), 0);
    CHECK_INT(ws_flush(w), 0);
    CHECK_INT(store_rollback(s), 0); /* the commit failed */
    ws_rolled_back(w);
    int64_t v = 0;
    CHECK_INT(ws_get_int(w, WS_COUNTER, "c", "", "budget", &v), 0);
    CHECK_INT(v, 5);
    CHECK_INT(ws_get_str(w, WS_UNIQUE, "code", "", "ABC", NULL, NULL), -ENOENT);
    CHECK_INT(ws_get_str(w, WS_EVENT, "", "", "e1", NULL, NULL), -ENOENT);
    CHECK_INT(stored_int(s, STORE_COUNTER, "c", "", "budget"), 5);
    /* the next batch writes whatever the failed one had left in the store */
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", "", "budget", 7), 0);
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", "u9", "new", 1), 0);
    commit(s, w);
    CHECK_INT(stored_int(s, STORE_COUNTER, "c", "", "budget"), 7);
    CHECK_INT(stored_int(s, STORE_COUNTER, "c", "u9", "new"), 1);
    /* a row deleted, then the delete undone after it reached the store */
    CHECK_INT(store_begin(s), 0);
    size_t mark = ws_mark(w);
    CHECK_INT(ws_del(w, WS_COUNTER, "c", "u9", "new"), 0);
    CHECK_INT(ws_flush(w), 0);
    CHECK_INT(stored_int(s, STORE_COUNTER, "c", "u9", "new"), -1);
    ws_undo_to(w, mark);
    CHECK_INT(ws_flush(w), 0);
    CHECK_INT(store_commit(s), 0);
    ws_committed(w);
    CHECK_INT(stored_int(s, STORE_COUNTER, "c", "u9", "new"), 1);
    ws_free(w);
    store_close(s);
}

static void test_eviction_keeps_values(void)
{
    struct store *s = open_store(":memory:");
    struct ws *w = ws_new(s, 64 * 1024); /* a few hundred entries */
    char u[32];
    for (int round = 0; round < 3; round++) {
        CHECK_INT(store_begin(s), 0);
        for (int i = 0; i < 5000; i++) {
            snprintf(u, sizeof(u), "user-%d", i);
            int64_t v = 0;
            int rc = ws_get_int(w, WS_COUNTER, "c", u, "n", &v);
            CHECK(rc == 0 || (rc == -ENOENT && round == 0));
            if (rc == 0 && v != round)
                CHECK_INT(v, round);
            CHECK_INT(ws_put_int(w, WS_COUNTER, "c", u, "n", round + 1), 0);
        }
        CHECK_INT(ws_flush(w), 0);
        CHECK_INT(store_commit(s), 0);
        ws_committed(w);
        /* each commit looks at a bounded number of entries: the set comes
         * under its budget within a few commits */
        ws_committed(w);
        ws_committed(w);
        struct ws_stats st;
        ws_stats(w, &st);
        CHECK(st.bytes <= 64 * 1024);
    }
    struct ws_stats st;
    ws_stats(w, &st);
    CHECK(st.evictions > 0);
    ws_free(w);
    store_close(s);
}

/* A store that cannot be read gives -EIO, never "absent". */
static void test_read_error_is_not_absent(void)
{
    char path[] = "/tmp/mktd-ws-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    struct store *s = open_store(path);
    struct ws *w = ws_new(s, 1 << 20);
    sqlite3 *other;
    CHECK_INT(sqlite3_open(path, &other), SQLITE_OK);
    CHECK_INT(sqlite3_exec(other, "ALTER TABLE per_user RENAME TO per_user_gone", NULL, NULL, NULL),
              SQLITE_OK);
    int64_t v = 42;
    CHECK_INT(ws_get_int(w, WS_COUNTER, "c", "", "budget", &v), -EIO);
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", "", "budget", 1), -EIO);
    CHECK_INT(sqlite3_exec(other, "ALTER TABLE per_user_gone RENAME TO per_user", NULL, NULL, NULL),
              SQLITE_OK);
    CHECK_INT(ws_get_int(w, WS_COUNTER, "c", "", "budget", &v), -ENOENT);
    sqlite3_close(other);
    ws_free(w);
    store_close(s);
    unlink(path);
    char side[512];
    snprintf(side, sizeof(side), "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof(side), "%s-shm", path);
    unlink(side);
}

/* Remembered ids are found after a restart (through the filter), new ones
 * cost no store read. */
static void test_event_ids(void)
{
    struct store *s = open_store(":memory:");
    struct ws *w = ws_new(s, 1 << 20);
    CHECK_INT(ws_load_ids(w), 0);
    CHECK_INT(ws_put_str(w, WS_EVENT, "", "", "seen-1", "", 0), 0);
    CHECK_INT(ws_put_str(w, WS_UNIQUE, "coupon", "", "CODE1", "camp", 4), 0);
    commit(s, w);
    ws_free(w);
    w = ws_new(s, 1 << 20);
    CHECK_INT(ws_load_ids(w), 0);
    CHECK_INT(ws_get_str(w, WS_EVENT, "", "", "seen-1", NULL, NULL), 0);
    /* a claimed key is found through its filter, an unclaimed one is not */
    const char *owner = NULL;
    CHECK_INT(ws_get_str(w, WS_UNIQUE, "coupon", "", "CODE1", &owner, NULL), 0);
    CHECK_STR(owner, "camp");
    CHECK_INT(ws_get_str(w, WS_UNIQUE, "coupon", "", "CODE2", NULL, NULL), -ENOENT);
    CHECK_INT(ws_get_str(w, WS_UNIQUE, "other", "", "CODE1", NULL, NULL), -ENOENT);
    char id[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(id, sizeof(id), "new-%d", i);
        CHECK(ws_get_str(w, WS_EVENT, "", "", id, NULL, NULL) == -ENOENT);
    }
    struct ws_stats st;
    ws_stats(w, &st);
    CHECK(st.id_reads >= 1 && st.id_reads < 30); /* seen-1 and a few false positives */
    ws_free(w);
    store_close(s);
}

static void test_bloom(void)
{
    struct bloom *b = bloom_new(1000);
    char k[32];
    for (int i = 0; i < 20000; i++) { /* several layers */
        snprintf(k, sizeof(k), "in-%d", i);
        bloom_add(b, k, strlen(k));
    }
    int missing = 0, fp = 0;
    for (int i = 0; i < 20000; i++) {
        snprintf(k, sizeof(k), "in-%d", i);
        missing += !bloom_maybe(b, k, strlen(k));
        snprintf(k, sizeof(k), "out-%d", i);
        fp += bloom_maybe(b, k, strlen(k));
    }
    CHECK_INT(missing, 0);
    CHECK(fp < 20000 / 20); /* under 5% with its 5 layers */
    bloom_free(b);
}

/* ws_drop_user (forget): the user's entries go, so that what the store
 * now lacks is read again as absent; other users' entries, a user whose id
 * the forgotten one's is a prefix of, and event ids stay. */
static void test_drop_user(void)
{
    struct store *s = open_store(":memory:");
    struct ws *w = ws_new(s, 1 << 20);
    int64_t v;
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", "u1", "n", 5), 0);
    CHECK_INT(ws_put_int(w, WS_TIMER, "c", "u1", "t", 9), 0);
    CHECK_INT(ws_put_str(w, WS_STATE, "c", "u1", "k", "v", 1), 0);
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", "u10", "n", 6), 0);
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", "u2", "n", 7), 0);
    CHECK_INT(ws_put_str(w, WS_EVENT, "", "", "e1", "", 0), 0);
    commit(s, w);
    /* the store forgets u1 behind the working set's back, as forget does */
    CHECK_INT(
        sqlite3_exec(store_sqlite(s), "DELETE FROM per_user WHERE user = 'u1'", NULL, NULL, NULL),
        SQLITE_OK);
    CHECK_INT(ws_get_int(w, WS_COUNTER, "c", "u1", "n", &v), 0); /* stale until dropped */
    ws_drop_user(w, "u1");
    CHECK_INT(ws_get_int(w, WS_COUNTER, "c", "u1", "n", &v), -ENOENT);
    CHECK_INT(ws_get_int(w, WS_TIMER, "c", "u1", "t", &v), -ENOENT);
    CHECK_INT(ws_get_str(w, WS_STATE, "c", "u1", "k", NULL, NULL), -ENOENT);
    CHECK_INT(ws_get_int(w, WS_COUNTER, "c", "u10", "n", &v), 0);
    CHECK_INT(v, 6);
    CHECK_INT(ws_get_int(w, WS_COUNTER, "c", "u2", "n", &v), 0);
    CHECK_INT(v, 7);
    CHECK_INT(ws_get_str(w, WS_EVENT, "", "", "e1", NULL, NULL), 0);
    /* nothing is written back for u1 */
    commit(s, w);
    CHECK_INT(stored_int(s, STORE_COUNTER, "c", "u1", "n"), -1);
    ws_free(w);
    store_close(s);
}

/* The caller's note beside an entry: kept through undo and rollback, 0
 * again once the entry is read from the store anew. */
static void test_notes(void)
{
    struct store *s = open_store(":memory:");
    struct ws *w = ws_new(s, 1 << 20);
    int64_t v = 0;
    uint8_t note = 9;
    CHECK_INT(ws_get_int_note(w, WS_COUNTER, "c", NULL, "n", &v, &note), -ENOENT);
    CHECK_INT(note, 0);
    CHECK_INT(ws_set_note(w, WS_COUNTER, "c", NULL, "n", 2), 0); /* absent, noted */
    CHECK_INT(ws_get_int_note(w, WS_COUNTER, "c", NULL, "n", &v, &note), -ENOENT);
    CHECK_INT(note, 2);
    size_t mark = ws_mark(w);
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", NULL, "n", 5), 0);
    CHECK_INT(ws_set_note(w, WS_COUNTER, "c", NULL, "n", 3), 0);
    ws_undo_to(w, mark);
    CHECK_INT(ws_get_int_note(w, WS_COUNTER, "c", NULL, "n", &v, &note), -ENOENT);
    CHECK_INT(note, 3);
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", NULL, "n", 6), 0);
    CHECK_INT(store_begin(s), 0);
    CHECK_INT(ws_flush(w), 0);
    CHECK_INT(store_rollback(s), 0);
    ws_rolled_back(w);
    CHECK_INT(ws_get_int_note(w, WS_COUNTER, "c", NULL, "n", &v, &note), -ENOENT);
    CHECK_INT(note, 3);
    CHECK_INT(ws_put_int(w, WS_COUNTER, "c", NULL, "n", 7), 0);
    commit(s, w);
    CHECK_INT(ws_get_int_note(w, WS_COUNTER, "c", NULL, "n", &v, &note), 0);
    CHECK_INT(v, 7);
    CHECK_INT(note, 3);
    /* dropped to keep the budget, then read again */
    ws_set_budget(w, 64 * 1024);
    char u[32];
    for (int round = 0; round < 3; round++) {
        CHECK_INT(store_begin(s), 0);
        for (int i = 0; i < 5000; i++) {
            snprintf(u, sizeof(u), "user-%d", i);
            CHECK_INT(ws_put_int(w, WS_COUNTER, "c", u, "n", round), 0);
        }
        CHECK_INT(ws_flush(w), 0);
        CHECK_INT(store_commit(s), 0);
        ws_committed(w);
        ws_committed(w);
    }
    CHECK_INT(ws_get_int_note(w, WS_COUNTER, "c", NULL, "n", &v, &note), 0);
    CHECK_INT(v, 7);
    CHECK_INT(note, 0);
    ws_free(w);
    /* a new working set (an engine over a reopened shard) has no note */
    w = ws_new(s, 1 << 20);
    CHECK_INT(ws_get_int_note(w, WS_COUNTER, "c", NULL, "n", &v, &note), 0);
    CHECK_INT(v, 7);
    CHECK_INT(note, 0);
    ws_free(w);
    store_close(s);
}

int main(void)
{
    test_read_through_and_undo();
    test_undo_after_flush_writes_again();
    test_rollback();
    test_eviction_keeps_values();
    test_notes();
    test_read_error_is_not_absent();
    test_event_ids();
    test_bloom();
    test_drop_user();
    return check_done();
}
