/* The event log (written at the engine's commit, pruned oldest first), a
 * live database's state copied for simulate --from-db, and the pure parts
 * of mktd replay: which config was live when, how actions are compared,
 * how a replayed coupon is matched to the daemon's. */
#include <event2/buffer.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "cmd/replay.h"
#include "config/diff.h"
#include "engine/engine.h"
#include "lib/util.h"
#include "net/ingest.h"
#include "store/eventlog.h"

static struct engine *engine_with(struct store *st, const char *yaml)
{
    struct errs errs = {0};
    struct config *cfg = config_load_string("t.yaml", yaml, strlen(yaml), &errs);
    CHECK(cfg != NULL);
    struct world *w = cfg ? world_build(cfg, &errs) : NULL;
    CHECK(w != NULL);
    errs_free(&errs);
    struct engine *e = NULL;
    struct engine_opts o = {.clock_event = 1};
    char err[256];
    CHECK(engine_new(st, &o, &e, err, sizeof(err)) == 0);
    CHECK(engine_swap(e, w, err, sizeof(err)) == 0);
    return e;
}

static int64_t count(struct store *st, const char *sql)
{
    sqlite3_stmt *q;
    int64_t n = -1;
    if (sqlite3_prepare_v2(store_sqlite(st), sql, -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        n = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    return n;
}

static void feed(struct engine *e, const char *const *lines)
{
    struct evbuffer *out = evbuffer_new();
    for (; *lines; lines++)
        ingest_line(e, *lines, strlen(*lines), 0, out);
    CHECK(engine_commit(e) >= 0);
    evbuffer_free(out);
}

static const char *const LINES[] = {
    "{\"id\":\"a\", \"type\":\"t\",\"user\":\"u1\",\"ts\":1000}",
    "{\"id\":\"a\",\"type\":\"t\",\"user\":\"u1\",\"ts\":1000}",      /* duplicate */
    "{\"id\":\"b\",\"type\":\"t\"}",                                  /* error */
    "{\"id\":\"c\",\"type\":\"t\",\"user\":\"u2\",\"dry\":true}",     /* dry */
    "{\"id\":\"d\",\"type\":\"t\",\"user\":\"u2\",\"ts\":500}\r",     /* CRLF */
    "{\"id\":\"e\",\"type\":\"t\",\"user\":\"u3\",\"explain\":true}", /* no ts */
    NULL,
};

static void test_written_at_commit(void)
{
    struct store *st;
    char err[256];
    CHECK(store_open(":memory:", 0, &st, err, sizeof(err)) == 0);
    struct engine *e = engine_with(st, "daemon: {event_log: {keep: 1d}}\ncampaigns: []\n");
    struct evbuffer *out = evbuffer_new();
    ingest_line(e, LINES[0], strlen(LINES[0]), 0, out);
    /* nothing before the commit */
    CHECK_INT(count(st, "SELECT count(*) FROM event_log"), 0);
    CHECK(engine_commit(e) == 0);
    CHECK_INT(count(st, "SELECT count(*) FROM event_log"), 1);
    evbuffer_free(out);
    feed(e, LINES + 1);
    CHECK_INT(count(st, "SELECT count(*) FROM event_log"), 3);
    sqlite3_stmt *q;
    CHECK(sqlite3_prepare_v2(store_sqlite(st),
                             "SELECT id, user, ts, body FROM event_log ORDER BY seq", -1, &q,
                             NULL) == SQLITE_OK);
    const char *want[][4] = {
        {"a", "u1", "1000", "{\"id\":\"a\", \"type\":\"t\",\"user\":\"u1\",\"ts\":1000}"},
        {"d", "u2", "500", "{\"id\":\"d\",\"type\":\"t\",\"user\":\"u2\",\"ts\":500}"},
        /* without ts (clock: event): now, the largest ts so far */
        {"e", "u3", "1000", "{\"id\":\"e\",\"type\":\"t\",\"user\":\"u3\",\"explain\":true}"},
    };
    for (int i = 0; i < 3 && sqlite3_step(q) == SQLITE_ROW; i++) {
        CHECK_STR((const char *)sqlite3_column_text(q, 0), want[i][0]);
        CHECK_STR((const char *)sqlite3_column_text(q, 1), want[i][1]);
        CHECK_STR((const char *)sqlite3_column_text(q, 2), want[i][2]);
        CHECK_STR((const char *)sqlite3_column_text(q, 3), want[i][3]);
    }
    sqlite3_finalize(q);

    /* pruning: oldest received first, at most `limit` a time */
    CHECK(sqlite3_exec(store_sqlite(st),
                       "UPDATE event_log SET received_at = CASE id WHEN 'a' THEN 10 WHEN 'd' "
                       "THEN 5 ELSE 99 END",
                       NULL, NULL, NULL) == SQLITE_OK);
    CHECK_INT(store_eventlog_prune(st, 50, 1), 1);
    CHECK_INT(count(st, "SELECT count(*) FROM event_log WHERE id = 'd'"), 0);
    CHECK_INT(store_eventlog_prune(st, 50, 10), 1);
    CHECK_INT(store_eventlog_prune(st, 50, 10), 0);
    CHECK_INT(count(st, "SELECT count(*) FROM event_log"), 1);
    engine_free(e);
    store_close(st);
}

static void test_off(void)
{
    struct store *st;
    char err[256];
    CHECK(store_open(":memory:", 0, &st, err, sizeof(err)) == 0);
    struct engine *e = engine_with(st, "campaigns: []\n");
    feed(e, LINES);
    CHECK_INT(count(st, "SELECT count(*) FROM events"), 3);
    CHECK_INT(count(st, "SELECT count(*) FROM event_log"), 0);
    engine_free(e);
    store_close(st);
}

/* A file database with state, read through livedb into a fresh store. */
static void test_copy_state(void)
{
    char path[] = "/tmp/mktd-test-replay-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    unlink(path);
    struct store *st;
    char err[256];
    CHECK(store_open(path, 0, &st, err, sizeof(err)) == 0);
    struct engine *e = engine_with(st, "daemon: {event_log: {keep: 1d}}\ncampaigns: []\n");
    feed(e, LINES);
    CHECK(sqlite3_exec(store_sqlite(st),
                       "INSERT INTO per_user(user, kind, campaign, key, v) VALUES "
                       "('u1', 4, 'c', 'tm', 7000), ('u1', 2, 'c', 'k', x'00ff');"
                       "INSERT INTO uniques VALUES ('codes', 'ABC', 'c');"
                       "INSERT INTO actions(ts, campaign, kind, user, payload) VALUES "
                       "(100, 'c', 'k', 'u1', '{}'), (2500, 'c', 'k', 'u2', '{}');"
                       "UPDATE event_log SET received_at = 2000",
                       NULL, NULL, NULL) == SQLITE_OK);
    int64_t users = count(st, "SELECT count(*) FROM per_user");
    engine_free(e);
    store_close(st);

    struct livedb *l;
    CHECK(livedb_open(path, &l, err, sizeof(err)) == 0);
    int64_t clock = 0;
    CHECK(livedb_clock(l, &clock) == 0);
    /* the latest action ts: above the stored clock (1000) and received_at */
    CHECK_INT(clock, 2500);
    struct store *dst;
    CHECK(store_open(":memory:", 0, &dst, err, sizeof(err)) == 0);
    int64_t last = -1;
    CHECK(livedb_copy_state(l, dst, 4242, 1000, &last, err, sizeof(err)) == 0);
    CHECK_INT(last, 2);
    CHECK_INT(count(dst, "SELECT count(*) FROM per_user"), users);
    CHECK_INT(count(dst, "SELECT v FROM per_user WHERE kind = 4 AND user = 'u1'"), 7000);
    CHECK_INT(count(dst, "SELECT length(v) FROM per_user WHERE kind = 2 AND user = 'u1'"), 2);
    CHECK_INT(count(dst, "SELECT typeof(v) = 'blob' FROM per_user WHERE kind = 2"), 1);
    CHECK_INT(count(dst, "SELECT count(*) FROM uniques WHERE key = 'ABC'"), 1);
    CHECK_INT(count(dst, "SELECT count(*) FROM events"), 0); /* not the ids */
    CHECK_INT(count(dst, "SELECT count(*) FROM event_log"), 0);
    CHECK_INT(count(dst, "SELECT count(*) FROM actions"), 1); /* ts > 1000 only */
    CHECK_INT(count(dst, "SELECT value FROM meta WHERE key = 'clock_now'"), 4242);
    livedb_close(l);
    store_close(dst);
    unlink(path);

    /* a missing file is said so, and not made */
    CHECK(livedb_open(path, &l, err, sizeof(err)) < 0);
    CHECK(strstr(err, path) != NULL);
    CHECK(access(path, F_OK) < 0);
}

static void test_config_at(void)
{
    struct livedb_config c[] = {{.seq = 1, .loaded_at = 100},
                                {.seq = 2, .loaded_at = 200},
                                {.seq = 3, .loaded_at = 150}, /* the wall clock stepped back */
                                {.seq = 4, .loaded_at = 300}};
    CHECK_INT(replay_config_at(c, 0, 500), -1);
    CHECK_INT(replay_config_at(c, 4, 50), 0); /* before any: the first */
    CHECK_INT(replay_config_at(c, 4, 100), 0);
    CHECK_INT(replay_config_at(c, 4, 199), 2);
    CHECK_INT(replay_config_at(c, 4, 200), 2); /* the last by seq loaded by then */
    CHECK_INT(replay_config_at(c, 4, 299), 2);
    CHECK_INT(replay_config_at(c, 4, 300), 3);
}

static char *dump(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(j);
    return s;
}

static void test_norm(void)
{
    const char *p = "{\"code\":\"ABCD\",\"value\":500}";
    char *s = dump(replay_norm_action(7, "c", "coupon.issued", "e1", p, strlen(p)));
    CHECK_STR(s, "{\"campaign\":\"c\",\"event_id\":\"e1\",\"kind\":\"coupon.issued\","
                 "\"payload\":{\"code\":\"*\",\"value\":500},\"ts\":7}");
    free(s);
    p = "{\"code\":null}"; /* a dry run's: left */
    s = dump(replay_norm_action(7, "c", "k", NULL, p, strlen(p)));
    CHECK_STR(s, "{\"campaign\":\"c\",\"event_id\":null,\"kind\":\"k\",\"payload\":{\"code\":null},"
                 "\"ts\":7}");
    free(s);
    CHECK(replay_norm_action(7, "c", "k", NULL, "{", 1) == NULL);

    /* two runs' codes differ, key order too: the same hash */
    const char *p1 = "{\"code\":\"AAA\",\"value\":1}", *p2 = "{\"value\":1,\"code\":\"BBB\"}",
               *p3 = "{\"value\":2,\"code\":\"AAA\"}";
    json_t *a = replay_norm_action(1, "c", "k", "e", p1, strlen(p1));
    json_t *b = replay_norm_action(1, "c", "k", "e", p2, strlen(p2));
    json_t *d = replay_norm_action(1, "c", "k", "e", p3, strlen(p3));
    uint64_t h0 = 14695981039346656037ULL;
    CHECK(replay_hash(h0, a) == replay_hash(h0, b));
    CHECK(replay_hash(h0, a) != replay_hash(h0, d));
    /* order of a user's actions counts */
    CHECK(replay_hash(replay_hash(h0, a), d) != replay_hash(replay_hash(h0, d), a));
    json_decref(a);
    json_decref(b);
    json_decref(d);
}

static void test_identity(void)
{
    char *a = replay_coupon_identity("c", "u", "e1", 5, 0);
    char *b = replay_coupon_identity("c", "u", "e1", 6, 0); /* an event's: ts does not count */
    char *c = replay_coupon_identity("c", "u", NULL, 5, 0); /* a timer's: ts does */
    char *d = replay_coupon_identity("c", "u", NULL, 6, 0);
    char *f = replay_coupon_identity("c", "u", "e1", 5, 1);
    CHECK_STR(a, b);
    CHECK(strcmp(a, c) != 0);
    CHECK(strcmp(c, d) != 0);
    CHECK(strcmp(a, f) != 0);
    free(a);
    free(b);
    free(c);
    free(d);
    free(f);
}

/* daemon.event_log: parsed, and a change of it is applied by a reload */
static void test_config_key(void)
{
    const char *a = "daemon: {event_log: {keep: 30d}}\ncampaigns: []\n";
    const char *b = "campaigns: []\n";
    struct errs e = {0};
    struct config *ca = config_load_string("/etc/mktd/a.yaml", a, strlen(a), &e);
    struct config *cb = config_load_string("/etc/mktd/b.yaml", b, strlen(b), &e);
    CHECK_INT((int)e.n, 0);
    errs_free(&e);
    if (!ca || !cb) {
        config_free(ca);
        config_free(cb);
        return;
    }
    CHECK(ca->event_log_keep_ms == 30LL * 86400000);
    CHECK(cb->event_log_keep_ms == 0);
    struct config_change *v;
    size_t n = config_diff(ca, cb, &v);
    CHECK_INT((int)n, 1);
    if (n == 1) {
        CHECK_STR(v[0].key, "event_log");
        CHECK_INT(v[0].restart, 0);
    }
    config_changes_free(v, n);
    config_free(ca);
    config_free(cb);
}

int main(void)
{
    test_config_key();
    test_written_at_commit();
    test_off();
    test_copy_state();
    test_config_at();
    test_norm();
    test_identity();
    return check_done();
}
