/* engine_commit_meta: a meta row written inside the batch's own
 * transaction (cluster mode keeps a partition's applied stream sequence
 * with the effects), even when the batch changed nothing else, once. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "engine/engine.h"
#include "lib/util.h"

static struct engine *engine_over(struct store *st)
{
    static const char yaml[] = "daemon:\n  database: x.db\ncampaigns: []\n";
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
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    close(fd);
    unlink(path);
    struct store *st;
    char err[256];
    CHECK(store_open(path, 0, &st, err, sizeof(err)) == 0);
    struct engine *e = engine_over(st);
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
    char more[300];
    unlink(path);
    snprintf(more, sizeof(more), "%s-wal", path);
    unlink(more);
    snprintf(more, sizeof(more), "%s-shm", path);
    unlink(more);
}

int main(void)
{
    test_with_the_batch();
    return check_done();
}
