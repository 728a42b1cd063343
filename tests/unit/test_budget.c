/* Budgets in cluster mode (engine/budget.c): a campaign-wide counter added
 * to with a limit takes its room from claims on a pool shared by the
 * partitions. Here the pool is a list in memory with the contract of
 * struct budget_pool; the cluster's own, on NATS, is tested end to end in
 * tests/integration/test_cluster_budget.py. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "engine/engine.h"
#include "engine/plugins.h"
#include "lib/util.h"

/* ---- the pool: claims in order, each starting where the one before ends */
struct fclaim {
    int partition;
    int64_t start, size;
};
static struct fclaim claims[64];
static int n_claims, calls;

struct fpool {
    int me, partitions, unreachable;
};

static int f_claim(void *arg, const char *campaign, const char *key, int64_t limit, int64_t need,
                   int64_t *next, int64_t *end, int64_t *got)
{
    struct fpool *p = arg;
    (void)campaign;
    (void)key;
    calls++;
    if (p->unreachable)
        return -EAGAIN;
    for (; *next < n_claims; (*next)++) {
        const struct fclaim *c = &claims[*next];
        *end = c->start + c->size;
        if (c->partition == p->me) {
            (*next)++;
            *got = c->size;
            return 0;
        }
    }
    if (*end >= limit)
        return 1;
    int64_t share = (limit - *end + 2 * p->partitions - 1) / (2 * p->partitions);
    int64_t size = need > share ? need : share;
    if (size > limit - *end)
        size = limit - *end;
    claims[n_claims++] = (struct fclaim){p->me, *end, size};
    *next = n_claims;
    *end += size;
    *got = size;
    return 0;
}

/* ---- a plugin that adds props.n to the campaign-wide counter "b" under
 * params.limit, and fails the event after it when props.fail is set */
static const mktd_host *H;
static int last_rc;
static int64_t last_v, last_get;

static int tb_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    (void)flags;
    int64_t limit = *(int64_t *)data;
    mktd_value n, fail;
    if (ev->depth > 0 || H->prop(ctx, ev, "n", &n) != MKTD_T_INT)
        return 0;
    last_rc = H->counter_add(ctx, NULL, "b", n.i, limit, &last_v);
    last_get = H->counter_get(ctx, NULL, "b");
    if (last_rc < 0)
        return last_rc;
    if (H->prop(ctx, ev, "fail", &fail) == MKTD_T_BOOL)
        return -EIO;
    return 0;
}

static int tb_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    int64_t *limit = xmalloc(sizeof(*limit));
    if (H->get_int(ctx, params, "limit", 1, 0, 0, INT64_MAX, limit) < 0) {
        free(limit);
        return -EINVAL;
    }
    *data = limit;
    return 0;
}

static const mktd_plugin *tb_entry(const mktd_host *host)
{
    static const mktd_plugin d = {.abi_version = MKTD_ABI_VERSION,
                                  .struct_size = sizeof(mktd_plugin),
                                  .name = "tb",
                                  .version = "1",
                                  .init = tb_init,
                                  .destroy = free,
                                  .on_event = tb_event};
    H = host;
    return &d;
}

/* ---- an engine over a new store, with the pool as partition me */
struct part {
    char path[64];
    struct store *st;
    struct engine *e;
    struct fpool fp;
    struct budget_pool ops;
    int seq;
};

static void part_open(struct part *p, int me, int partitions, int64_t limit)
{
    char yaml[256], err[256];
    struct errs errs = {0};
    snprintf(yaml, sizeof(yaml),
             "daemon:\n  database: x.db\ncampaigns:\n  - id: c\n    plugin: tb\n"
             "    params: {limit: %lld}\n",
             (long long)limit);
    if (!p->path[0]) {
        strcpy(p->path, "/tmp/mktd-budget-XXXXXX");
        int fd = mkstemp(p->path);
        CHECK(fd >= 0);
        close(fd);
        unlink(p->path);
    }
    CHECK(store_open(p->path, 0, &p->st, err, sizeof(err)) == 0);
    p->fp = (struct fpool){.me = me, .partitions = partitions};
    p->ops = (struct budget_pool){.claim = f_claim, .arg = &p->fp};
    struct engine_opts o = {.clock_event = 1, .partition = (uint32_t)me, .pool = &p->ops};
    CHECK(engine_new(p->st, &o, &p->e, err, sizeof(err)) == 0);
    struct config *cfg = config_load_string("t.yaml", yaml, strlen(yaml), &errs);
    struct world *w = cfg ? world_build(cfg, &errs) : NULL;
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msg[i]);
    errs_free(&errs);
    CHECK(w != NULL);
    CHECK(engine_swap(p->e, w, err, sizeof(err)) == 0);
}

static void part_close(struct part *p, int remove)
{
    engine_free(p->e);
    store_close(p->st);
    if (remove) {
        char wal[80];
        unlink(p->path);
        snprintf(wal, sizeof(wal), "%s-wal", p->path);
        unlink(wal);
        snprintf(wal, sizeof(wal), "%s-shm", p->path);
        unlink(wal);
    }
}

/* One event adding n (failing after the add when fail); its result. */
static enum eng_result take(struct part *p, int64_t n, int fail)
{
    char line[256], detail[256], *echo = NULL;
    struct event ev;
    int seq = ++p->seq;
    snprintf(line, sizeof(line),
             "{\"id\":\"e%d\",\"type\":\"page.view\",\"user\":\"u\",\"ts\":%d,"
             "\"props\":{\"n\":%lld%s}}",
             seq, 1000 + seq, (long long)n, fail ? ",\"fail\":true" : "");
    struct decode_opts o = {.wall_now_ms = 0, .max_future_ms = INT64_MAX / 4};
    CHECK(event_decode(line, strlen(line), &o, &ev, detail, sizeof(detail), &echo) == EV_OK);
    free(echo);
    int na = 0;
    last_rc = 99;
    enum eng_result r = engine_event(p->e, &ev, ev.ts, &na, NULL, detail, sizeof(detail));
    event_clear(&ev);
    CHECK(engine_commit(p->e) == 0);
    return r;
}

static int64_t counter(struct part *p)
{
    int64_t v = 0;
    return engine_counter(p->e, "c", NULL, "b", &v) == 0 ? v : 0;
}

int main(void)
{
    char err[256];
    CHECK(plugins_register(tb_entry, engine_host(), err, sizeof(err)) != NULL);

    /* limit 40 over 2 partitions: a claim is the room left over 4, at
     * least what the event needs */
    struct part a = {0}, b = {0};
    part_open(&a, 0, 2, 40);
    part_open(&b, 1, 2, 40);
    CHECK(take(&a, 1, 0) == ENG_OK);
    CHECK_INT(last_rc, 0);
    CHECK_INT(last_v, 1);
    CHECK_INT(n_claims, 1);
    CHECK_INT(claims[0].size, 10); /* 40 / 4 */
    /* within what it holds: no claim */
    for (int i = 0; i < 9; i++)
        CHECK(take(&a, 1, 0) == ENG_OK);
    CHECK_INT(n_claims, 1);
    CHECK_INT(counter(&a), 10);
    /* the pool has room: counter_get is the partition's own count */
    CHECK_INT(last_get, 10);
    /* b claims after a's claim; an add bigger than a share claims it whole */
    CHECK(take(&b, 12, 0) == ENG_OK);
    CHECK_INT(n_claims, 2);
    CHECK_INT(claims[1].partition, 1);
    CHECK_INT(claims[1].start, 10);
    CHECK_INT(claims[1].size, 12);
    /* a's next claim skips b's: 18 left, a quarter is 5 */
    CHECK(take(&a, 1, 0) == ENG_OK);
    CHECK_INT(n_claims, 3);
    CHECK_INT(claims[2].start, 22);
    CHECK_INT(claims[2].size, 5);

    /* an event that fails after claiming: undone, but the claim is a's and
     * the next need finds it again (no new claim) */
    CHECK_INT(counter(&a), 11);
    CHECK(take(&a, 6, 1) == ENG_INTERNAL); /* holds 15, needs 17: claims */
    CHECK_INT(n_claims, 4);
    CHECK_INT(counter(&a), 11);
    int before = calls;
    CHECK(take(&a, 6, 0) == ENG_OK);
    CHECK_INT(n_claims, 4); /* the same claim, found again */
    CHECK(calls > before);
    CHECK_INT(counter(&a), 17);

    /* the pool unreachable: the event fails, nothing counted */
    a.fp.unreachable = 1;
    CHECK(take(&a, 20, 0) == ENG_INTERNAL);
    CHECK_INT(last_rc, -EAGAIN);
    CHECK_INT(counter(&a), 17);
    a.fp.unreachable = 0;

    /* the pool runs out: refused, never past the limit; b then sees
     * limit - (its room left) */
    int64_t total_before = claims[n_claims - 1].start + claims[n_claims - 1].size;
    CHECK(total_before < 40);
    CHECK(take(&a, 30, 0) == ENG_OK); /* refused: past the limit, the pool not asked */
    CHECK_INT(last_rc, 1);
    CHECK_INT(n_claims, 4);
    CHECK(take(&a, 22, 0) == ENG_OK); /* refused: claimed to the end, still short */
    CHECK_INT(last_rc, 1);
    CHECK_INT(counter(&a), 17);
    CHECK_INT(claims[n_claims - 1].start + claims[n_claims - 1].size, 40);
    /* what a holds now: a's claims less its count; counter_get says so */
    int64_t held_a = 0;
    for (int i = 0; i < n_claims; i++)
        if (claims[i].partition == 0)
            held_a += claims[i].size;
    CHECK_INT(last_get, 40 - (held_a - 17));
    CHECK(take(&a, held_a - 17, 0) == ENG_OK); /* exactly its room */
    CHECK_INT(last_rc, 0);
    CHECK_INT(last_get, 40);
    before = calls;
    CHECK(take(&a, 1, 0) == ENG_OK);
    CHECK_INT(last_rc, 1);
    CHECK_INT(calls, before); /* spent at this limit: the pool is not asked again */
    /* b: 12 held, 12 used; the pool is spent */
    CHECK(take(&b, 1, 0) == ENG_OK);
    CHECK_INT(last_rc, 1);
    CHECK_INT(last_get, 40);
    int64_t sum = 0;
    for (int i = 0; i < n_claims; i++)
        sum += claims[i].size;
    CHECK_INT(sum, 40);
    CHECK_INT(counter(&a) + counter(&b), 40);

    /* a replay of partition 0 from nothing (a takeover without its shard):
     * the same events find a's claims in the same order and decide alike */
    int64_t a_count = counter(&a);
    int claims_before = n_claims;
    part_close(&a, 1);
    struct part r = {0};
    part_open(&r, 0, 2, 40);
    CHECK(take(&r, 1, 0) == ENG_OK);
    for (int i = 0; i < 9; i++)
        CHECK(take(&r, 1, 0) == ENG_OK);
    CHECK(take(&r, 1, 0) == ENG_OK);
    CHECK(take(&r, 6, 1) == ENG_INTERNAL);
    CHECK(take(&r, 6, 0) == ENG_OK);
    CHECK(take(&r, 30, 0) == ENG_OK);
    CHECK_INT(last_rc, 1);
    CHECK(take(&r, 22, 0) == ENG_OK);
    CHECK_INT(last_rc, 1);
    CHECK(take(&r, held_a - 17, 0) == ENG_OK);
    CHECK_INT(last_rc, 0);
    CHECK_INT(counter(&r), a_count);
    CHECK_INT(n_claims, claims_before); /* nothing new claimed */

    /* and across a reopen of the shard the room held is kept */
    part_close(&b, 0);
    part_open(&b, 1, 2, 40);
    CHECK(take(&b, 1, 0) == ENG_OK);
    CHECK_INT(last_rc, 1);
    CHECK_INT(counter(&b), 12);
    CHECK_INT(last_get, 40);
    /* a budget raised since: the pool has room again */
    part_close(&b, 0);
    part_open(&b, 1, 2, 60);
    CHECK(take(&b, 1, 0) == ENG_OK);
    CHECK_INT(last_rc, 0);
    CHECK_INT(claims[n_claims - 1].start, 40);
    CHECK_INT(claims[n_claims - 1].size, 5); /* 20 left over 4 */
    part_close(&r, 1);
    part_close(&b, 1);

    /* counter_get reads the count as it is until the partition finds the
     * pool spent: in an event since undone, it reads as it is again; a
     * reopened shard's first read finds the pool spent */
    n_claims = 0;
    struct part c = {0}, d = {0};
    part_open(&c, 0, 2, 10);
    part_open(&d, 1, 2, 10);
    CHECK(take(&d, 10, 0) == ENG_OK); /* d claims all of it */
    CHECK_INT(last_rc, 0);
    CHECK(take(&c, 0, 0) == ENG_OK); /* adds 0: no claim, a read */
    CHECK_INT(last_get, 0);
    CHECK(take(&c, 1, 1) == ENG_INTERNAL);
    CHECK_INT(last_rc, 1);
    CHECK_INT(last_get, 10); /* spent, no room held */
    CHECK(take(&c, 0, 0) == ENG_OK);
    CHECK_INT(last_get, 0); /* undone */
    CHECK(take(&c, 1, 0) == ENG_OK);
    CHECK_INT(last_rc, 1);
    CHECK_INT(last_get, 10);
    CHECK(take(&c, 0, 0) == ENG_OK);
    CHECK_INT(last_get, 10);
    part_close(&c, 0);
    part_open(&c, 0, 2, 10);
    CHECK(take(&c, 0, 0) == ENG_OK);
    CHECK_INT(last_get, 10);
    part_close(&c, 1);
    part_close(&d, 1);
    return check_done();
}
