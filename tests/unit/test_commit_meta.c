/* What cluster mode asks of the engine. engine_commit_meta: a meta row
 * written inside the batch's own transaction (cluster mode keeps a
 * partition's applied stream sequence with the effects), even when the
 * batch changed nothing else, once. engine_opts.ids_per_user: event ids
 * unique per user (spec 18), remembered without the user id. engine_deliver:
 * a graph campaign's action recorded in its user's partition, once per
 * key, under the user's caps, naming the pseudonyms of users forgotten
 * there before it came. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "engine/engine.h"
#include "lib/util.h"
#include "store/privacy.h"
#include "store/store.h"

static void remove_db(const char *path)
{
    char more[300];
    unlink(path);
    snprintf(more, sizeof(more), "%s-wal", path);
    unlink(more);
    snprintf(more, sizeof(more), "%s-shm", path);
    unlink(more);
}

/* A fresh database at a temporary path (path: its template, filled in),
 * with a pseudonym key of key_byte bytes unless key_byte is 0. */
static struct store *temp_store(char *path, int key_byte)
{
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    unlink(path);
    struct store *st = NULL;
    char err[256];
    CHECK(store_open(path, 0, &st, err, sizeof(err)) == 0);
    if (key_byte) {
        unsigned char key[32];
        memset(key, key_byte, sizeof(key));
        CHECK_INT(store_pseudonym_key_set(st, key), 0);
    }
    return st;
}

static struct engine *engine_with(struct store *st, const char *yaml, int ids_per_user)
{
    struct errs errs = {0};
    struct config *cfg = config_load_string("t.yaml", yaml, strlen(yaml), &errs);
    CHECK(cfg != NULL);
    struct world *w = cfg ? world_build(cfg, &errs) : NULL;
    CHECK(w != NULL);
    errs_free(&errs);
    struct engine *e = NULL;
    struct engine_opts o = {.clock_event = 1, .ids_per_user = ids_per_user};
    char err[256];
    CHECK(engine_new(st, &o, &e, err, sizeof(err)) == 0);
    CHECK(engine_swap(e, w, err, sizeof(err)) == 0);
    return e;
}

static struct engine *engine_over(struct store *st, int ids_per_user)
{
    return engine_with(st, "daemon:\n  database: x.db\ncampaigns: []\n", ids_per_user);
}

static void event(struct engine *e, const char *id, const char *user, int64_t ts,
                  enum eng_result want)
{
    struct event ev;
    char detail[256], *echo = NULL;
    char line[256];
    snprintf(line, sizeof(line), "{\"id\":\"%s\",\"type\":\"page.view\",\"user\":\"%s\"}", id,
             user);
    struct decode_opts o = {.wall_now_ms = 0, .max_future_ms = INT64_MAX / 4};
    CHECK(event_decode(line, strlen(line), &o, &ev, detail, sizeof(detail), &echo) == EV_OK);
    free(echo);
    ev.has_ts = 1;
    ev.ts = ts;
    int n = 0;
    CHECK(engine_advance(e, ts) == 0);
    CHECK(engine_event(e, &ev, ts, &n, NULL, detail, sizeof(detail)) == want);
    event_clear(&ev);
}

static void test_with_the_batch(void)
{
    char path[] = "/tmp/mktd-commit-meta-XXXXXX";
    struct store *st = temp_store(path, 0);
    char err[256];
    struct engine *e = engine_over(st, 0);
    int64_t v = 0;
    CHECK(store_meta_get(st, "cluster_applied", &v) == -ENOENT);

    event(e, "e1", "u1", 1000, ENG_OK);
    engine_commit_meta(e, "cluster_applied", 7);
    CHECK_INT(engine_commit(e), 0);
    CHECK(store_meta_get(st, "cluster_applied", &v) == 0);
    CHECK_INT(v, 7);

    /* a batch of nothing but duplicates still writes it (a commit of 0) */
    event(e, "e1", "u1", 1000, ENG_DUPLICATE);
    engine_commit_meta(e, "cluster_applied", 9);
    CHECK_INT(engine_commit(e), 0);
    CHECK(store_meta_get(st, "cluster_applied", &v) == 0);
    CHECK_INT(v, 9);

    /* once: the next commit leaves it alone */
    event(e, "e2", "u2", 2000, ENG_OK);
    CHECK_INT(engine_commit(e), 0);
    CHECK(store_meta_get(st, "cluster_applied", &v) == 0);
    CHECK_INT(v, 9);

    /* and without any event: still written */
    engine_commit_meta(e, "cluster_applied", 11);
    CHECK_INT(engine_commit(e), 0);
    CHECK(store_meta_get(st, "cluster_applied", &v) == 0);
    CHECK_INT(v, 11);

    /* two keys in one commit (the applied sequence and the ticks); a key
     * set twice keeps its last value */
    engine_commit_meta(e, "cluster_applied", 12);
    engine_commit_meta(e, "cluster_ticks", 1);
    engine_commit_meta(e, "cluster_applied", 13);
    CHECK_INT(engine_commit(e), 0);
    CHECK(store_meta_get(st, "cluster_applied", &v) == 0);
    CHECK_INT(v, 13);
    CHECK(store_meta_get(st, "cluster_ticks", &v) == 0);
    CHECK_INT(v, 1);
    engine_free(e);
    store_close(st);

    /* it survives a reopen, as the shard's truth */
    CHECK(store_open(path, 0, &st, err, sizeof(err)) == 0);
    CHECK(store_meta_get(st, "cluster_applied", &v) == 0);
    CHECK_INT(v, 13);
    store_close(st);
    remove_db(path);
}

/* The events table's keys, one after another with '|' between. */
static void event_keys(struct store *st, char *out, size_t len)
{
    sqlite3_stmt *q = NULL;
    out[0] = 0;
    CHECK(sqlite3_prepare_v2(store_sqlite(st), "SELECT id FROM events ORDER BY id", -1, &q, NULL) ==
          SQLITE_OK);
    while (q && sqlite3_step(q) == SQLITE_ROW) {
        size_t n = strlen(out);
        snprintf(out + n, len - n, "%s%s", n ? "|" : "", (const char *)sqlite3_column_text(q, 0));
    }
    sqlite3_finalize(q);
}

static int by_text(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void test_ids_per_user(void)
{
    char path[] = "/tmp/mktd-ids-per-user-XXXXXX";
    struct store *st = temp_store(path, 7);
    char err[256];
    unsigned char key[32];
    memset(key, 7, sizeof(key));
    struct engine *e = engine_over(st, 1);
    /* the same id for two users is two events; for one user, a duplicate,
     * in the batch and after its commit */
    event(e, "e1", "u1", 1000, ENG_OK);
    event(e, "e1", "u2", 1000, ENG_OK);
    event(e, "e1", "u1", 1000, ENG_DUPLICATE);
    CHECK_INT(engine_commit(e), 0);
    event(e, "e1", "u2", 2000, ENG_DUPLICATE);
    event(e, "e1", "u3", 2000, ENG_OK);
    CHECK_INT(engine_commit(e), 0);
    /* remembered as the id, 0x1f and the user's pseudonym: never the
     * user id */
    char ps1[PSEUDONYM_LEN + 1], ps2[PSEUDONYM_LEN + 1], ps3[PSEUDONYM_LEN + 1];
    CHECK_INT(store_pseudonym(st, "u1", ps1), 0);
    CHECK_INT(store_pseudonym(st, "u2", ps2), 0);
    CHECK_INT(store_pseudonym(st, "u3", ps3), 0);
    const char *ps[] = {ps1, ps2, ps3};
    char want[3][200], got[1024];
    for (int i = 0; i < 3; i++)
        snprintf(want[i], sizeof(want[i]), "e1\x1f%s", ps[i]);
    qsort(want, 3, sizeof(want[0]), by_text);
    char all[1024];
    snprintf(all, sizeof(all), "%s|%s|%s", want[0], want[1], want[2]);
    event_keys(st, got, sizeof(got));
    CHECK_STR(got, all);
    CHECK(strstr(got, "u1") == NULL && strstr(got, "u2") == NULL);
    engine_free(e);
    store_close(st);

    /* reopened: the ids are known again (read into the filter at start) */
    CHECK(store_open(path, 0, &st, err, sizeof(err)) == 0);
    CHECK_INT(store_pseudonym_key_set(st, key), 0);
    e = engine_over(st, 1);
    event(e, "e1", "u3", 3000, ENG_DUPLICATE);
    event(e, "e1", "u4", 3000, ENG_OK);
    CHECK_INT(engine_commit(e), 0);
    engine_free(e);
    store_close(st);

    /* one daemon (ids_per_user 0): an id is unique across users */
    char path2[] = "/tmp/mktd-ids-global-XXXXXX";
    st = temp_store(path2, 0);
    e = engine_over(st, 0);
    event(e, "e1", "u1", 1000, ENG_OK);
    event(e, "e1", "u2", 1000, ENG_DUPLICATE);
    CHECK_INT(engine_commit(e), 0);
    event_keys(st, got, sizeof(got));
    CHECK_STR(got, "e1");
    engine_free(e);
    store_close(st);
    remove_db(path);
    remove_db(path2);
}

static int capped_n;

static void count_capped(void *arg, const char *cap, const char *campaign, uint64_t n)
{
    (void)arg;
    CHECK_STR(cap, "commissions");
    CHECK_STR(campaign, "invite");
    capped_n += (int)n;
}

/* The actions table as "user kind payload" lines. */
static void actions_text(struct store *st, char *out, size_t len)
{
    sqlite3_stmt *q = NULL;
    out[0] = 0;
    CHECK(sqlite3_prepare_v2(store_sqlite(st),
                             "SELECT user, kind, payload, campaign FROM actions ORDER BY seq", -1,
                             &q, NULL) == SQLITE_OK);
    while (q && sqlite3_step(q) == SQLITE_ROW) {
        size_t n = strlen(out);
        snprintf(out + n, len - n, "%s %s %s %s\n", (const char *)sqlite3_column_text(q, 0),
                 (const char *)sqlite3_column_text(q, 1), (const char *)sqlite3_column_text(q, 2),
                 (const char *)sqlite3_column_text(q, 3));
    }
    sqlite3_finalize(q);
}

static int named_forgotten; /* the last delivery named a user forgotten here */

static int deliver(struct engine *e, const char *key, int64_t ts, const char *kind,
                   const char *user, const char *payload)
{
    named_forgotten = 0;
    struct delivered d = {.key = key,
                          .ts = ts,
                          .campaign = "invite",
                          .kind = kind,
                          .user = user,
                          .event_id = "g1",
                          .payload = payload,
                          .named_forgotten = &named_forgotten};
    return engine_deliver(e, &d);
}

static void test_deliver(void)
{
    char path[] = "/tmp/mktd-deliver-XXXXXX";
    struct store *st = temp_store(path, 9);
    char err[256];
    struct engine *e = engine_with(st,
                                   "daemon:\n  database: x.db\ncampaigns: []\ncaps:\n"
                                   "  - {id: commissions, kinds: [referral.commission], max: 1, "
                                   "per: 1d}\n",
                                   1);
    /* recorded; the same key again is not; the user's cap applies */
    CHECK_INT(deliver(e, "graph:1", 1000, "referral.commission", "bob", "{\"amount\":5}"), 0);
    CHECK_INT(deliver(e, "graph:1", 1000, "referral.commission", "bob", "{\"amount\":5}"), 2);
    CHECK_INT(deliver(e, "graph:2", 2000, "referral.commission", "bob", "{\"amount\":6}"), 1);
    CHECK_INT(deliver(e, "graph:3", 2000, "referral.bound", "amy", "{\"referrer\":\"bob\"}"), 0);
    CHECK_INT(engine_commit(e), 0);
    /* after the commit too; and a commission of another day is recorded */
    CHECK_INT(deliver(e, "graph:1", 1000, "referral.commission", "bob", "{\"amount\":5}"), 2);
    CHECK_INT(deliver(e, "graph:4", 1000 + 2 * 86400000LL, "referral.commission", "bob",
                      "{\"amount\":7}"),
              0);
    CHECK_INT(engine_commit(e), 0);
    char got[2048];
    actions_text(st, got, sizeof(got));
    CHECK_STR(got, "bob referral.commission {\"amount\":5} invite\n"
                   "amy referral.bound {\"referrer\":\"bob\"} invite\n"
                   "bob referral.commission {\"amount\":7} invite\n");
    capped_n = 0;
    engine_capped_foreach(e, count_capped, NULL);
    CHECK_INT(capped_n, 1);

    /* bob forgotten here; then an action naming bob comes (published by
     * the graph before it applied the forget): it names the pseudonym */
    char ps[PSEUDONYM_LEN + 1];
    CHECK_INT(engine_forget(e, "bob", "test", ps, sizeof(ps), err, sizeof(err)), 0);
    CHECK_INT(named_forgotten, 0);
    CHECK_INT(deliver(e, "graph:5", 5000, "referral.bound", "cy",
                      "{\"referrer\":\"bob\",\"note\":\"bob\"}"),
              0);
    CHECK_INT(named_forgotten, 1); /* in its payload */
    CHECK_INT(deliver(e, "graph:6", 5000, "referral.reward", "bob", "{\"referee\":\"cy\"}"), 0);
    CHECK_INT(named_forgotten, 1); /* as its user */
    CHECK_INT(deliver(e, "graph:7", 5000, "referral.bound", "dee", "{\"referrer\":\"cy\"}"), 0);
    CHECK_INT(named_forgotten, 0);
    CHECK_INT(engine_commit(e), 0);
    actions_text(st, got, sizeof(got));
    char want[2048];
    snprintf(want, sizeof(want),
             "%s referral.commission {\"amount\":5} invite\n"
             "amy referral.bound {\"referrer\":\"%s\"} invite\n"
             "%s referral.commission {\"amount\":7} invite\n"
             "cy referral.bound {\"referrer\":\"%s\",\"note\":\"bob\"} invite\n"
             "%s referral.reward {\"referee\":\"cy\"} invite\n"
             "dee referral.bound {\"referrer\":\"cy\"} invite\n",
             ps, ps, ps, ps, ps);
    CHECK_STR(got, want);
    engine_free(e);
    store_close(st);
    remove_db(path);
}

int main(void)
{
    test_with_the_batch();
    test_ids_per_user();
    test_deliver();
    return check_done();
}
