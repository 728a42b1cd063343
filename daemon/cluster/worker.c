/* Cluster mode, the worker: takes a fair share of the partitions with
 * leases, applies each owned partition's events to its own SQLite shard
 * (the applied stream sequence committed with the effects), and publishes
 * the shard's actions to the actions stream (docs/cluster.md, "The design
 * of the workers").
 *
 * Threads of its own: the main thread keeps the leases (register, renew,
 * take, release), the census thread counts the live workers, the apply
 * thread owns every shard, engine and consumer, the snapshot thread
 * copies and publishes the shards now and then (snapshot.c), and a signal
 * thread turns SIGTERM/SIGINT into a stop (and refuses SIGHUP). They
 * share only the partitions' lease and snapshot states, under one mutex.
 * The lease thread tells systemd READY=1, STOPPING=1 and WATCHDOG=1. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/internal.h"
#include "config/config.h"
#include "engine/engine.h"
#include "engine/event.h"
#include "lib/addr.h"
#include "lib/log.h"
#include "lib/notify.h"
#include "lib/util.h"
#include "net/admin.h"
#include "net/ingest.h"
#include "out/retention.h"
#include "store/dblock.h"
#include "store/eventlog.h"
#include "store/privacy.h"
#include "store/store.h"

#define FETCH_BATCH 512
#define APPLIED_KEY CLUSTER_APPLIED_KEY
#define TICKS_KEY                                                                                  \
    "cluster_ticks" /* ticks and config messages applied (status: events = messages - these) */
#define TICK_QUIET_MS 1000    /* a partition this long without a message may get a tick */
#define CONSUMER_TRY_MS 2000  /* making a partition's consumer: tried this long, */
#define CONSUMER_RETRY_MS 500 /* then again after this pause, other partitions meanwhile */

/* A partition's lease, as the lease thread and the apply thread see it. */
enum lease {
    L_NONE,     /* not ours */
    L_OWNED,    /* ours: apply it while valid_until allows */
    L_RELEASE,  /* the lease thread wants it closed, then deleted */
    L_RELEASED, /* closed by the apply thread: the lease thread deletes the key */
    L_LOST,     /* renewal failed or ran late: closed, key left to expire */
};

struct part {
    /* under w->mu */
    enum lease state;
    uint64_t rev;
    int64_t valid_until;   /* wall ms: stop applying before this */
    int shard_open;        /* the apply thread has the shard open */
    uint64_t committed;    /* its applied sequence, as committed */
    uint64_t lag;          /* messages waiting after it, when committed */
    int snapping;          /* the snapshot thread is copying the shard */
    uint64_t snap_applied; /* applied sequence of the newest snapshot known */
    /* the apply thread's */
    int open;
    struct store *st;
    struct engine *e;
    natsSubscription *sub;
    uint64_t applied;          /* last stream sequence in the shard */
    uint64_t cseq;             /* last consumer sequence seen */
    int64_t published;         /* last action seq published (acknowledged) */
    int64_t prune_at;          /* daemon.retention: the next look at old actions (wall ms) */
    int64_t prune_cursor;      /* the sweep has looked at every action seq up to here */
    int64_t prune_sweep;       /* when it last started from the first action (wall ms) */
    int64_t queued;            /* last action seq published asynchronously */
    int64_t app_put_ms;        /* when app.p<N> was last written */
    uint64_t app_put;          /* the applied sequence it then said */
    uint64_t pending;          /* messages waiting after the last one fetched */
    int stalled;               /* the consumer does not answer: not deleted */
    int64_t sub_made_ms;       /* when the consumer was made */
    int64_t sub_retry_at;      /* none could be made: when to try again */
    int sub_fails;             /* tries that failed in a row */
    uint64_t ticks;            /* tick messages applied (meta cluster_ticks) */
    int64_t quiet_since;       /* wall ms of the last message applied (or of opening) */
    int64_t tick_at;           /* wall ms of the last tick appended */
    struct pool_part pool;     /* budgets shared with the other partitions */
    struct codes_part codes;   /* unique keys claimed in other partitions */
    struct reach reach;        /* whether they were out of reach during an event */
    natsSubscription *dry;     /* mktd.dry.<p> while the shard is open */
    int graph_active;          /* the graph, with campaigns to run: it reads every partition */
    int graph_reads;           /* its config has a graph campaign: the graph reads every
                                  partition, this one's events too */
    struct sbuf explained;     /* explanations asked for by the batch's events (inbox, NUL,
                                  answer line, NUL; ...): sent once it is committed */
    uint64_t *erase;           /* the batch's deliveries that named a user forgotten here: */
    size_t n_erase, cap_erase; /* erased from the stream once it is committed */
};

struct worker {
    struct cluster *c;
    const char *config_path;
    const struct config *cfg;
    int n;  /* user partitions */
    int np; /* n + 1: p[n] is the graph (docs/cluster.md, "The graph partition") */
    struct part *p;
    kvStore *leases, *meta, *budgets, *codes;
    char codes_bucket[80]; /* its full name, for publishing to it */
    jsCtx *pjs;            /* actions, published asynchronously */
    atomic_int pub_failed;
    int pub_any, pub_redo; /* this round published something; must redo it */
    pthread_mutex_t mu;
    atomic_int stop;
    atomic_int apply_done;
    atomic_int snap_now; /* a forget asks for snapshots at once (older ones name the user) */
    atomic_llong apply_round_ms; /* when the apply thread last began a round */
    /* dry requests, from NATS's threads to the apply thread (which waits
     * on dry_cv between idle rounds) */
    pthread_mutex_t dry_mu;
    pthread_cond_t dry_cv;
    natsMsg **dry_q;
    size_t dry_n, dry_cap;
    /* the census: live workers, partitions with a lease (under mu) */
    int workers;
    char *taken;
    int64_t census_at;
    int64_t margin_ms; /* stop applying this long before a lease could expire */
    /* the apply thread's: when a consumer was last found gone with its
     * server; consumers made before then are made again */
    int64_t consumers_gone_ms;
    /* counters for GET /metrics on the gateway (worker_metrics) */
    atomic_llong n_applied, n_remade, n_lost, n_aside, n_dry, n_skips;
    struct couts *outs; /* webhook outputs, delivered while the graph is ours */
    /* actions caps kept out, by cap and campaign, over every partition
     * applied here (under mu) */
    struct pair_counts capped;
};

/* ---- the graph partition ---- */

/* Referral decides across users (a referee's binding checks the
 * referrer's chain for a cycle and the referrer's daily cap; an order pays
 * the buyer's ancestors), and so does a group-buy (its members join from
 * any partition), so their campaigns, and those chained on their actions,
 * run in one place that sees every user: the graph, p[n], with a
 * shard, a lease, snapshots and actions of its own. It reads the whole
 * event stream in stream order (the partitions' events are its input, as
 * a single daemon's connections are), and the user partitions leave its
 * campaigns out. While none of its campaigns is configured it follows only
 * partition 0's subject, where every config message also goes, so that it
 * costs nearly nothing and starts at the config that brings one. */
static int is_graph(const struct worker *w, int idx)
{
    return idx == w->n;
}

/* The graph's plugins (a group-buy's members are users of any partition,
 * as a referral's are), and a campaign chained on their actions. */
static const char *const graph_plugins[] = {"referral", "groupbuy"};

/* An action kind of the graph's plugins ("referral.commission"). */
static int graph_kind(const char *kind)
{
    for (size_t k = 0; k < sizeof(graph_plugins) / sizeof(graph_plugins[0]); k++) {
        size_t n = strlen(graph_plugins[k]);
        if (strncmp(kind, graph_plugins[k], n) == 0 && kind[n] == '.')
            return 1;
    }
    return 0;
}

static int graph_campaign(const struct campaign_cfg *cc)
{
    for (size_t k = 0; k < sizeof(graph_plugins) / sizeof(graph_plugins[0]); k++)
        if (strcmp(cc->plugin, graph_plugins[k]) == 0)
            return 1;
    for (size_t i = 0; i < cc->n_events; i++)
        if (graph_kind(cc->events[i]))
            return 1;
    return 0;
}

static int user_campaign(const struct campaign_cfg *cc)
{
    return !graph_campaign(cc);
}

/* A cap whose kinds only the graph's plugins emit (referral.*,
 * groupbuy.*): every action it counts is the graph's, so the graph
 * decides it when its campaign emits, as one daemon does (the plugin is
 * told MKTD_CAPPED: a capped commission is not clawed back). A cap with
 * other kinds too counts actions of both sides: it decides in the user's
 * partition, where the graph's actions are delivered (docs/cluster.md,
 * "Where its actions go"). */
static int graph_cap(const struct cap_cfg *k)
{
    for (size_t i = 0; i < k->n_kinds; i++)
        if (!graph_kind(k->kinds[i]))
            return 0;
    return k->n_kinds > 0;
}

static int user_cap(const struct cap_cfg *k)
{
    return !graph_cap(k);
}

/* A partition's shard: <database>.p<N>, the graph's <database>.graph. */
static void shard_path(const struct worker *w, int idx, char *buf, size_t len)
{
    if (is_graph(w, idx))
        snprintf(buf, len, "%s.graph", w->cfg->database);
    else
        snprintf(buf, len, "%s.p%d", w->cfg->database, idx);
}

/* Whether a config or forget message (which go to every partition) is
 * the one partition idx applies: the graph takes partition 0's copy. */
static int message_for(const struct worker *w, int idx, natsMsg *m)
{
    if (!is_graph(w, idx))
        return 1;
    char subject[64];
    cluster_event_subject(0, subject, sizeof(subject));
    const char *got = natsMsg_GetSubject(m);
    return got && strcmp(got, subject) == 0;
}

/* ---- the apply thread ---- */

static int may_apply(struct worker *w, int idx);

/* ---- dry runs by request-reply (spec 18) ---- */

/* A request on mktd.dry.<p> (a NATS thread): queued for the apply
 * thread, which owns the engines. */
static void on_dry(natsConnection *nc, natsSubscription *sub, natsMsg *m, void *closure)
{
    (void)nc;
    (void)sub;
    struct worker *w = closure;
    pthread_mutex_lock(&w->dry_mu);
    if (w->dry_n == w->dry_cap) {
        w->dry_cap = w->dry_cap ? 2 * w->dry_cap : 16;
        w->dry_q = xrealloc(w->dry_q, w->dry_cap * sizeof(*w->dry_q));
    }
    w->dry_q[w->dry_n++] = m;
    pthread_cond_signal(&w->dry_cv);
    pthread_mutex_unlock(&w->dry_mu);
}

/* The partition a dry request's subject names (mktd.dry.<p>, or
 * mktd.dry.graph: n), or -1. */
static long dry_partition(const struct worker *w, const char *subject)
{
    const char *dot = subject ? strrchr(subject, '.') : NULL;
    if (!dot)
        return -1;
    if (strcmp(dot + 1, CLUSTER_DRY_GRAPH) == 0)
        return w->n;
    char *end = NULL;
    long idx = strtol(dot + 1, &end, 10);
    return end == dot + 1 || *end || idx < 0 || idx >= w->n ? -1 : idx;
}

/* An export request (CLUSTER_EXPORT_HEADER): the user's data in the
 * shard, as one daemon answers the control line (net/admin.h). */
static void export_user(struct part *p, natsMsg *m, const char *who, struct evbuffer *out)
{
    int n = natsMsg_GetDataLength(m);
    char *user = xstrndup(natsMsg_GetData(m) ? natsMsg_GetData(m) : "", (size_t)n);
    struct sbuf b = {0};
    if (strlen(user) != (size_t)n)
        admin_error(&b, "invalid", "a user id holds no NUL byte");
    else
        admin_run(p->e, ADMIN_EXPORT, user, who, &b);
    evbuffer_add(out, b.s, b.len);
    sb_free(&b);
    free(user);
}

/* Answers the queued dry requests (and exports): each line evaluated dry (whatever it
 * says: nothing reaches a shard but through the stream) by its
 * partition's engine (or the graph's), between batches, and the answer
 * line sent back. A request for a partition no longer held here gets no
 * answer: its sender asks again and reaches the new owner. */
static void serve_dry(struct worker *w)
{
    pthread_mutex_lock(&w->dry_mu);
    natsMsg **q = w->dry_q;
    size_t n = w->dry_n;
    w->dry_q = NULL;
    w->dry_n = w->dry_cap = 0;
    pthread_mutex_unlock(&w->dry_mu);
    struct evbuffer *out = n ? evbuffer_new() : NULL;
    for (size_t i = 0; i < n; i++) {
        natsMsg *m = q[i];
        long idx = dry_partition(w, natsMsg_GetSubject(m));
        const char *reply = natsMsg_GetReply(m);
        if (idx >= 0 && reply && w->p[idx].open && may_apply(w, (int)idx)) {
            struct part *p = &w->p[idx];
            evbuffer_drain(out, evbuffer_get_length(out));
            const char *explain = NULL, *who = NULL;
            unsigned flags = INGEST_DRY;
            if (natsMsgHeader_Get(m, CLUSTER_EXPORT_HEADER, &who) == NATS_OK) {
                export_user(p, m, who, out);
            } else {
                if (natsMsgHeader_Get(m, CLUSTER_EXPLAIN_HEADER, &explain) == NATS_OK)
                    flags |= INGEST_EXPLAIN;
                ingest_line(p->e, natsMsg_GetData(m) ? natsMsg_GetData(m) : "",
                            (size_t)natsMsg_GetDataLength(m), flags, out);
            }
            if (engine_batch_size(p->e) && engine_commit(p->e) < 0)
                log_warn("partition %ld: a dry run's batch: %s", idx, store_errmsg(p->st));
            size_t len = evbuffer_get_length(out);
            int64_t max = natsConnection_GetMaxPayload(w->c->nc);
            if (max > 0 && (int64_t)len > max) {
                /* one message cannot hold it: said so, rather than no
                 * answer (asked again and again, then a timeout) */
                char why[300];
                snprintf(why, sizeof(why),
                         "the answer is %zu bytes, more than a NATS message holds (max_payload "
                         "%" PRId64 ")%s",
                         len, max,
                         who ? "; export the user from the shard with mktd export --db" : "");
                log_warn("partition %ld: %s", idx, why);
                struct sbuf b = {0};
                admin_error(&b, "internal", why);
                evbuffer_drain(out, len);
                evbuffer_add(out, b.s, b.len);
                sb_free(&b);
                len = evbuffer_get_length(out);
            }
            if (len && natsConnection_Publish(w->c->nc, reply, evbuffer_pullup(out, -1),
                                              (int)len) != NATS_OK)
                log_warn("partition %ld: a dry run's or export's answer not sent", idx);
            atomic_fetch_add(&w->n_dry, 1);
        }
        natsMsg_Destroy(m);
    }
    if (out)
        evbuffer_free(out);
    free(q);
}

static void on_action_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)pa;
    struct worker *w = closure;
    if (pae)
        atomic_fetch_add(&w->pub_failed, 1);
    natsMsg_Destroy(msg);
}

/* The action as `mktd actions` prints it, with "partition" first (-1:
 * "graph"). */
static void action_json(struct sbuf *b, int partition, const struct store_action *a)
{
    b->len = 0;
    if (partition < 0)
        sb_str(b, "{\"partition\":\"graph\",");
    else
        sb_fmt(b, "{\"partition\":%d,", partition);
    size_t at = b->len;
    store_action_json(b, a); /* {"seq":...}\n: its '{' and newline go */
    memmove(b->s + at, b->s + at + 1, b->len - at - 1);
    b->len -= 2;
    b->s[b->len] = 0;
}

struct pub_ctx {
    struct worker *w;
    int partition;
    int sync; /* one at a time, waiting for each acknowledgement */
    int64_t last;
    int64_t deadline;
    struct sbuf b;
};

static int publish_action(void *arg, const struct store_action *a)
{
    struct pub_ctx *x = arg;
    char subject[300], id[64], seq[32] = "";
    int graph = x->partition == x->w->n;
    if (graph) { /* to the user's partition, which records it */
        cluster_event_subject(cluster_partition(a->user, a->user_len, x->w->n), subject,
                              sizeof(subject));
        snprintf(id, sizeof(id), "graph:%lld", (long long)a->seq);
        snprintf(seq, sizeof(seq), "%lld", (long long)a->seq);
    } else {
        snprintf(subject, sizeof(subject), "%s.%.*s", CLUSTER_ACTIONS_PREFIX, (int)a->campaign_len,
                 a->campaign);
        snprintf(id, sizeof(id), "%d:%lld", x->partition, (long long)a->seq);
    }
    action_json(&x->b, graph ? -1 : x->partition, a);
    natsStatus s;
    natsMsg *m = NULL;
    s = natsMsg_Create(&m, subject, NULL, x->b.s, (int)x->b.len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
    if (s == NATS_OK && graph)
        s = natsMsgHeader_Set(m, CLUSTER_ACTION_HEADER, seq);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 5000;
    if (s == NATS_OK && x->sync) {
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;
        do
            s = js_PublishMsg(&pa, x->w->c->js, m, &po, &jerr);
        while (s != NATS_OK && !atomic_load(&x->w->stop) && cluster_retry_until(x->deadline, s));
        jsPubAck_Destroy(pa);
    } else if (s == NATS_OK) {
        s = js_PublishMsgAsync(x->w->pjs, &m, &po);
    }
    natsMsg_Destroy(m); /* NULL when the library took it */
    if (s != NATS_OK)
        return 1;
    x->last = a->seq;
    return 0;
}

struct code_ctx {
    struct worker *w;
    int idx, failed;
};

static void register_code(void *arg, const char *ns, const char *key, const char *campaign)
{
    struct code_ctx *x = arg;
    if (cluster_code_publish(x->w->pjs, x->w->codes_bucket, x->idx, ns, key, campaign) < 0)
        x->failed++;
    else
        x->w->pub_any = 1; /* acknowledged with the round's actions */
}

/* The unique keys the partition claimed, made known to the others (after
 * the commit: a key of an event since undone is claimed again when it is,
 * so registering it too does no harm). */
static void register_codes(struct worker *w, int idx)
{
    struct code_ctx x = {.w = w, .idx = idx};
    engine_claimed_take(w->p[idx].e, register_code, &x);
    if (x.failed)
        log_warn("partition %d: %d codes not registered (their redemption in another partition "
                 "is answered unknown)",
                 idx, x.failed);
}

/* Publishes the shard's actions past p->queued without waiting (their
 * acknowledgements are waited for once a round, in finish_publishing). */
static void queue_actions(struct worker *w, int idx)
{
    struct part *p = &w->p[idx];
    struct pub_ctx x = {.w = w, .partition = idx, .last = p->queued};
    if (store_actions_foreach(p->st, p->queued, NULL, publish_action, &x) != 0)
        w->pub_redo = 1; /* published again one by one at the end of the round */
    sb_free(&x.b);
    p->queued = x.last;
    if (x.last > p->published)
        w->pub_any = 1;
}

/* The round's acknowledgements; when one failed, every partition's range
 * is published again one by one (the message id keeps one copy). Then
 * each owner records how far its partition's actions went (pub.p<N>). */
static void finish_publishing(struct worker *w)
{
    if (!w->pub_any && !w->pub_redo)
        return;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 15000;
    natsStatus s = js_PublishAsyncComplete(w->pjs, &po);
    int redo = w->pub_redo || s != NATS_OK || atomic_load(&w->pub_failed);
    w->pub_any = w->pub_redo = 0;
    atomic_store(&w->pub_failed, 0);
    for (int idx = 0; idx < w->np; idx++) {
        struct part *p = &w->p[idx];
        if (!p->open || (p->queued <= p->published && !redo))
            continue;
        int64_t last = p->queued;
        if (redo) {
            struct pub_ctx x = {.w = w,
                                .partition = idx,
                                .sync = 1,
                                .last = p->published,
                                .deadline = wall_ms() + CLUSTER_RETRY_MS};
            if (store_actions_foreach(p->st, p->published, NULL, publish_action, &x) != 0)
                log_warn("partition %d: publishing actions failed; trying again", idx);
            sb_free(&x.b);
            last = x.last;
            p->queued = last; /* what was not published is queued again next round */
        }
        if (last <= p->published)
            continue;
        p->published = last;
        if (!may_apply(w, idx))
            continue; /* the lease may be another's by now: its key too */
        char key[32], v[32];
        snprintf(key, sizeof(key), "pub.p%d", idx);
        snprintf(v, sizeof(v), "%" PRId64, p->published);
        uint64_t rev;
        int64_t deadline = wall_ms() + 5000;
        do
            s = kvStore_Put(&rev, w->meta, key, v, (int)strlen(v));
        while (s != NATS_OK && cluster_retry_until(deadline, s));
        if (s != NATS_OK)
            log_warn("partition %d: recording published actions: %s", idx, natsStatus_GetText(s));
    }
}

/* An event a plugin failed (spec 18): undone by the engine, and set aside
 * as fail.p<N>.<stream seq> in the meta bucket with its error, for `mktd
 * cluster failed`; the partition goes on. Written again, to the same key,
 * by an owner that applies the event again after a takeover. */
static void set_aside(struct worker *w, int idx, uint64_t sseq, const struct event *ev,
                      const char *error)
{
    char key[64];
    snprintf(key, sizeof(key), CLUSTER_FAILED_PREFIX "p%d.%" PRIu64, idx, sseq);
    struct sbuf b = {0};
    if (is_graph(w, idx))
        sb_fmt(&b, "{\"partition\":\"graph\",\"seq\":%" PRIu64 ",\"id\":", sseq);
    else
        sb_fmt(&b, "{\"partition\":%d,\"seq\":%" PRIu64 ",\"id\":", idx, sseq);
    sb_json_str_or_null(&b, ev->id);
    sb_str(&b, ",\"type\":");
    sb_json_str_or_null(&b, ev->type);
    sb_str(&b, ",\"user\":");
    sb_json_str_or_null(&b, ev->user);
    sb_str(&b, ",\"error\":");
    sb_json_str_or_null(&b, error);
    sb_fmt(&b, ",\"at\":%" PRId64 ",\"worker\":", wall_ms());
    sb_json_str_or_null(&b, w->cfg->cluster.worker);
    sb_str(&b, "}");
    uint64_t rev;
    int64_t deadline = wall_ms() + 2000;
    natsStatus s;
    do
        s = kvStore_Put(&rev, w->meta, key, b.s, (int)b.len);
    while (s != NATS_OK && cluster_retry_until(deadline, s));
    if (s != NATS_OK)
        log_error("partition %d: stream sequence %" PRIu64 ": not set aside (%s)", idx, sseq,
                  natsStatus_GetText(s));
    sb_free(&b);
}

/* app.p<N> = "<applied stream seq> <messages waiting after it> <ticks
 * applied>", as the owner last saw them (mktd cluster status: applied_seq,
 * lag, and events = messages less ticks) */
static void put_applied_at(struct worker *w, int idx, uint64_t applied)
{
    struct part *p = &w->p[idx];
    char key[32], v[48];
    snprintf(key, sizeof(key), "app.p%d", idx);
    snprintf(v, sizeof(v), "%" PRIu64 " %" PRIu64 " %" PRIu64, applied, p->pending, p->ticks);
    uint64_t rev;
    if (kvStore_Put(&rev, w->meta, key, v, (int)strlen(v)) == NATS_OK) {
        p->app_put_ms = wall_ms();
        p->app_put = applied;
    }
}

static void put_applied(struct worker *w, int idx)
{
    put_applied_at(w, idx, w->p[idx].applied);
}

/* delete: the ephemeral consumer too (else its server drops it once it
 * has been idle for InactiveThreshold; a consumer whose server is gone
 * cannot be deleted anyway). */
static void drop_consumer(struct part *p, int delete)
{
    if (p->sub) {
        if (delete)
            natsSubscription_Unsubscribe(p->sub);
        natsSubscription_Destroy(p->sub);
        p->sub = NULL;
    }
}

/* A fresh ephemeral consumer of partition idx from applied + 1, tried
 * for CONSUMER_TRY_MS. Without one the partition stays open and its lease
 * kept: the apply thread tries again after CONSUMER_RETRY_MS, and the
 * other partitions go on meanwhile (JetStream electing a leader after a
 * server died took 5-20 s). 0, or -1 (none made). */
/* The subjects partition idx reads: its own, or for the graph every
 * partition's (partition 0's alone while it has no campaign). */
static void consumer_subject(const struct worker *w, int idx, char *buf, size_t len)
{
    if (is_graph(w, idx) && w->p[idx].graph_active)
        snprintf(buf, len, "%s.>", CLUSTER_EVENTS_PREFIX);
    else
        cluster_event_subject(is_graph(w, idx) ? 0 : (uint32_t)idx, buf, len);
}

static int open_consumer(struct worker *w, int idx)
{
    struct part *p = &w->p[idx];
    drop_consumer(p, !p->stalled);
    p->stalled = 0;
    char subject[64];
    consumer_subject(w, idx, subject, sizeof(subject));
    char err[512];
    if (cluster_reader(w->c, w->cfg->cluster.stream, subject, p->applied + 1,
                       wall_ms() + CONSUMER_TRY_MS, &w->stop, &p->sub, "consumer", err,
                       sizeof(err)) != NATS_OK) {
        if (p->sub_fails++ % 10 == 0)
            log_warn("partition %d: %s; tried again (%d %s)", idx, err, p->sub_fails,
                     p->sub_fails == 1 ? "try" : "tries");
        p->sub_retry_at = wall_ms() + CONSUMER_RETRY_MS;
        return -1;
    }
    if (p->sub_fails)
        log_info("partition %d: consumer made after %d failed %s", idx, p->sub_fails,
                 p->sub_fails == 1 ? "try" : "tries");
    p->sub_fails = 0;
    p->sub_made_ms = wall_ms();
    atomic_fetch_add(&w->n_remade, 1);
    p->cseq = 0;
    p->pending = 0;
    return 0;
}

/* Whether partition idx's lease is still ours (held or being released)
 * and cannot have run out: then its records in the buckets are ours to
 * write. */
static int lease_valid(struct worker *w, int idx)
{
    pthread_mutex_lock(&w->mu);
    enum lease st = w->p[idx].state;
    int ok = (st == L_OWNED || st == L_RELEASE) && wall_ms() + w->margin_ms < w->p[idx].valid_until;
    pthread_mutex_unlock(&w->mu);
    return ok;
}

static void close_part(struct worker *w, int idx)
{
    struct part *p = &w->p[idx];
    if (!p->open)
        return;
    /* its actions in flight acknowledged and recorded, and where it
     * stopped, while the lease is ours; a lease lost leaves both to the
     * next owner, which publishes again from pub.p<N> (message ids keep
     * one copy): no wait on buckets that may be out of reach */
    int ours = lease_valid(w, idx);
    if (ours)
        finish_publishing(w);
    drop_consumer(p, ours && !p->stalled); /* else left to expire: its server may be gone */
    if (p->dry) {
        natsSubscription_Unsubscribe(p->dry);
        natsSubscription_Destroy(p->dry);
        p->dry = NULL;
    }
    pthread_mutex_lock(&w->mu);
    p->shard_open = 0;
    pthread_mutex_unlock(&w->mu);
    if (p->e && engine_batch_size(p->e))
        engine_commit(p->e);
    engine_free(p->e);
    store_close(p->st);
    p->e = NULL;
    p->st = NULL;
    p->open = 0;
    sb_free(&p->explained); /* uncommitted: their events are applied again */
    free(p->erase);         /* so are these deliveries */
    p->erase = NULL;
    p->n_erase = p->cap_erase = 0;
    if (ours)
        put_applied(w, idx);
    log_info("partition %d: closed at stream sequence %" PRIu64, idx, p->applied);
}

/* The config a partition runs on: the config file's, or, once the shard
 * applied a config message (name: how the shard records it, text: its
 * config), the file's daemon block with the message's other blocks
 * (campaigns, caps, outputs). NULL after logging why. */
static struct config *partition_config(struct worker *w, int idx, const char *name,
                                       const char *text, size_t len, struct errs *errs)
{
    struct config *cfg = config_load(w->config_path, errs);
    if (cfg && text) {
        char err[512];
        size_t n = 0;
        char *spliced = config_splice(cfg, text, len, &n, err, sizeof(err));
        struct config *file = cfg;
        cfg = spliced ? config_load_string_in(name, file->dir, file->dir_real, spliced, n, errs)
                      : NULL;
        if (!spliced)
            log_error("partition %d: %s: %s", idx, name, err);
        free(spliced);
        config_free(file);
    }
    return cfg;
}

/* The graph's webhook outputs, as its config has them. */
struct graph_outputs {
    struct output_cfg *o;
    size_t n;
};

/* The world a partition runs on (partition_config), with the campaigns
 * of its side (the graph's or the user partitions'), and for the graph a
 * copy of the config's webhook outputs in *outs (follow_outputs). NULL
 * after logging why. */
static struct world *build_world(struct worker *w, int idx, const char *name, const char *text,
                                 size_t len, struct graph_outputs *outs)
{
    struct errs errs = {0};
    struct config *cfg = partition_config(w, idx, name, text, len, &errs);
    *outs = (struct graph_outputs){0};
    int reads = 0;
    for (size_t i = 0; cfg && i < cfg->n_campaigns; i++)
        reads |= graph_campaign(&cfg->campaigns[i]);
    if (cfg && is_graph(w, idx)) {
        outs->o = outputs_cfg_dup(cfg->outputs, cfg->n_outputs);
        outs->n = cfg->n_outputs;
    }
    if (cfg) {
        config_keep_campaigns(cfg, is_graph(w, idx) ? graph_campaign : user_campaign);
        config_keep_caps(cfg, is_graph(w, idx) ? graph_cap : user_cap);
    }
    struct world *wd = cfg ? world_build(cfg, &errs) : NULL;
    for (size_t i = 0; i < errs.n; i++)
        log_error("partition %d: %s", idx, errs.msg[i]);
    errs_free(&errs);
    if (!wd && cfg)
        config_free(cfg);
    if (wd)
        w->p[idx].graph_reads = reads;
    return wd;
}

/* The graph's config says which webhook outputs there are: once the
 * graph runs on a config (opened, or a config message applied), the
 * outputs take its list; otherwise the copy goes. */
static void follow_outputs(struct worker *w, int idx, struct graph_outputs *outs, int applied)
{
    if (is_graph(w, idx) && applied)
        cluster_outputs_follow(w->outs, outs->o, outs->n);
    else
        outputs_cfg_free(outs->o, outs->n);
    *outs = (struct graph_outputs){0};
}

/* How a shard records a config that came through the stream. */
static int from_stream(const char *path)
{
    return strncmp(path, CLUSTER_CONFIG_PATH, strlen(CLUSTER_CONFIG_PATH)) == 0;
}

/* Whether the event stream still holds what partition idx needs after
 * applied: the partition's trimmed messages (the graph: every
 * partition's) must be at or below it. A shard behind a trim (its
 * snapshot could not be restored) is not applied: it would miss events.
 * 0, or -1 (logged). */
static int trimmed_past(struct worker *w, int idx, uint64_t applied)
{
    struct trim_rec r = {0};
    int64_t deadline = wall_ms() + CONSUMER_TRY_MS;
    int bad;
    do {
        if (is_graph(w, idx))
            r.seq = cluster_trim_max(w->meta, w->n, &bad);
        else
            bad = cluster_trim_get(w->meta, idx, &r) < 0;
    } while (bad && wall_ms() < deadline && (nats_Sleep(100), 1));
    if (bad) {
        log_warn("partition %d: how far the event stream was trimmed could not be read: not "
                 "opened yet",
                 idx);
        return -1;
    }
    if (r.seq > applied) {
        log_error("partition %d: the event stream was trimmed up to stream sequence %" PRIu64
                  " and the shard is at %" PRIu64 " (its snapshot was not restored): not applied, "
                  "since events would be missed (docs/cluster.md, \"Trimming the event stream\")",
                  idx, r.seq, applied);
        return -1;
    }
    return 0;
}

/* The shard, a world and an engine of its own, and a consumer from the
 * shard's applied sequence + 1. */
static int open_part(struct worker *w, int idx)
{
    struct part *p = &w->p[idx];
    char path[4096], err[512];
    const struct config *cfg = w->cfg;
    shard_path(w, idx, path, sizeof(path));
    /* a snapshot newer than the shard here (or no shard): restored first,
     * once the snapshot thread is done with a copy of an earlier opening */
    struct snap_rec rec;
    uint64_t snap_applied = cluster_snap_get(w->meta, idx, &rec) == 0 ? rec.applied : 0;
    if (w->cfg->cluster.snapshot_ms > 0) {
        for (;;) {
            pthread_mutex_lock(&w->mu);
            int busy = p->snapping;
            pthread_mutex_unlock(&w->mu);
            if (!busy)
                break;
            nats_Sleep(20);
        }
        cluster_snap_restore(w->c, w->meta, idx, path);
    }
    if (store_open(path, cfg->sync_full, &p->st, err, sizeof(err)) < 0) {
        log_error("partition %d: database %s", idx, err);
        return -1;
    }
    /* pseudonyms alike in every shard (a forget reaches them all) */
    unsigned char pk[32];
    cluster_pseudonym_key(&w->cfg->cluster, pk);
    if (store_pseudonym_key_set(p->st, pk) < 0)
        log_warn("partition %d: the pseudonyms' key not set: %s", idx, store_errmsg(p->st));
    memset(pk, 0, sizeof(pk));
    /* the campaigns of the newest config message the shard applied, if
     * any: a config change is where the stream put it, not where the file
     * on this machine stands */
    char *cpath = NULL, *ctext = NULL;
    size_t clen = 0;
    int streamed = store_config_last(p->st, &cpath, &ctext, &clen) == 0 && from_stream(cpath);
    struct graph_outputs outs;
    struct world *wd =
        build_world(w, idx, streamed ? cpath : NULL, streamed ? ctext : NULL, clen, &outs);
    follow_outputs(w, idx, &outs, wd != NULL);
    free(cpath);
    free(ctext);
    if (!wd) {
        store_close(p->st);
        p->st = NULL;
        return -1;
    }
    /* random_for: HMAC of the cluster's secret and the action (spec 17);
     * budgets claimed from the pool the partitions share */
    p->reach = (struct reach){.wait_ms = w->margin_ms};
    cluster_pool_init(&p->pool, w->budgets, idx, w->n, &p->reach);
    cluster_codes_init(&p->codes, w->codes, idx, &p->reach);
    struct engine_opts eo = {.clock_event = 1,
                             .memory_bytes = (size_t)cfg->working_set,
                             .secret = w->cfg->cluster.secret,
                             .secret_len = w->cfg->cluster.secret_len,
                             .partition = (uint32_t)idx,
                             .pool = &p->pool.ops,
                             .registry = &p->codes.ops,
                             .ids_per_user = 1};
    if (engine_new(p->st, &eo, &p->e, err, sizeof(err)) < 0) {
        log_error("partition %d: %s", idx, err);
        world_free(wd);
        goto fail;
    }
    if (engine_swap(p->e, wd, err, sizeof(err)) < 0) {
        log_error("partition %d: %s", idx, err);
        world_free(wd);
        goto fail;
    }
    p->graph_active = is_graph(w, idx) && engine_campaigns(p->e) > 0;
    int64_t applied = 0;
    if (store_meta_get(p->st, APPLIED_KEY, &applied) < 0)
        applied = 0;
    p->applied = (uint64_t)applied;
    if (trimmed_past(w, idx, p->applied) < 0)
        goto fail;
    int64_t ticks = 0;
    if (store_meta_get(p->st, TICKS_KEY, &ticks) < 0)
        ticks = 0;
    p->ticks = (uint64_t)ticks;
    p->quiet_since = wall_ms();
    /* actions already published, by this worker or an owner before it */
    char key[32];
    kvEntry *ke = NULL;
    snprintf(key, sizeof(key), "pub.p%d", idx);
    p->published = 0;
    if (kvStore_Get(&ke, w->meta, key) == NATS_OK) {
        p->published = strtoll(kvEntry_ValueString(ke), NULL, 10);
        kvEntry_Destroy(ke);
    }
    p->sub_fails = 0;
    open_consumer(w, idx); /* when none is made, apply_batch tries again */
    char subject[64];
    if (is_graph(w, idx))
        snprintf(subject, sizeof(subject), "%s.%s", CLUSTER_DRY_PREFIX, CLUSTER_DRY_GRAPH);
    else
        snprintf(subject, sizeof(subject), "%s.%d", CLUSTER_DRY_PREFIX, idx);
    if (natsConnection_Subscribe(&p->dry, w->c->nc, subject, on_dry, w) != NATS_OK)
        log_warn("partition %d: dry runs not served here: %s", idx, nats_GetLastError(NULL));
    p->open = 1;
    pthread_mutex_lock(&w->mu);
    p->shard_open = 1;
    p->committed = p->applied;
    p->snap_applied = snap_applied;
    pthread_mutex_unlock(&w->mu);
    log_info("partition %d%s: applying from stream sequence %" PRIu64 " (actions published up to "
             "%" PRId64 ")",
             idx,
             !is_graph(w, idx) ? ""
             : p->graph_active ? " (the graph, reading every partition)"
                               : " (the graph, no campaign of its own: following config messages)",
             p->applied + 1, p->published);
    p->queued = p->published;
    queue_actions(w, idx); /* committed but not yet published by a worker before */
    return 0;
fail:
    drop_consumer(p, !p->stalled);
    engine_free(p->e);
    store_close(p->st);
    p->e = NULL;
    p->st = NULL;
    return -1;
}

/* Whether partition idx may still be applied (its lease is ours and cannot
 * have run out). */
static int may_apply(struct worker *w, int idx)
{
    pthread_mutex_lock(&w->mu);
    int ok = w->p[idx].state == L_OWNED && wall_ms() + w->margin_ms < w->p[idx].valid_until;
    pthread_mutex_unlock(&w->mu);
    return ok;
}

/* A real event that asked for its explanation (header CLUSTER_EXPLAIN_TO,
 * spec 10 and 18): its answer line kept for the inbox the header names,
 * as a single daemon would answer it, with "graph":true when the graph
 * explains it too (its campaigns, which this partition leaves out). */
static void explain_keep(struct worker *w, int idx, const char *to, const struct event *ev,
                         enum eng_result r, const struct eng_report *rep, const char *detail)
{
    struct part *p = &w->p[idx];
    struct sbuf *b = &p->explained;
    sb_add(b, to, strlen(to) + 1);
    sb_str(b, "{\"id\":");
    sb_json_str_or_null(b, ev->id);
    if (r == ENG_DUPLICATE) {
        sb_str(b, ",\"status\":\"duplicate\"");
    } else if (r == ENG_INTERNAL) {
        struct sbuf d = {0};
        sb_fmt(&d, "set aside (mktd cluster failed): %s", detail);
        sb_str(b, ",\"status\":\"error\",\"error\":\"internal\",\"detail\":");
        sb_json_str(b, d.s, d.len);
        sb_free(&d);
    } else {
        char *x =
            rep->explain ? json_dumps(rep->explain, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        sb_fmt(b, ",\"status\":\"ok\",\"explain\":%s", x ? x : "[]");
        free(x);
        if (!is_graph(w, idx) && p->graph_reads)
            sb_str(b, ",\"graph\":true");
    }
    sb_add(b, "}\n", 3); /* with its NUL */
}

/* The kept explanations sent (their events are committed) and dropped. */
static void explain_send(struct worker *w, int idx)
{
    struct part *p = &w->p[idx];
    int64_t max = natsConnection_GetMaxPayload(w->c->nc);
    for (size_t at = 0; at < p->explained.len;) {
        const char *to = p->explained.s + at, *line = to + strlen(to) + 1;
        size_t len = strlen(line);
        at = (size_t)(line - p->explained.s) + len + 1;
        char big[300];
        if (max > 0 && (int64_t)len > max - 1024) { /* said so, rather than no answer */
            snprintf(
                big, sizeof(big),
                "{\"status\":\"error\",\"error\":\"internal\",\"detail\":\"the "
                "explanation is %zu bytes, more than a NATS message holds (max_payload %" PRId64
                ")\"}\n",
                len, max);
            line = big;
            len = strlen(big);
        }
        natsMsg *m = NULL;
        natsStatus s = natsMsg_Create(&m, to, NULL, line, (int)len);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, CLUSTER_EXPLAINED_BY,
                                  is_graph(w, idx) ? "graph" : "partition");
        if (s == NATS_OK)
            s = natsConnection_PublishMsg(w->c->nc, m);
        if (s != NATS_OK)
            log_warn("partition %d: an explanation not sent: %s", idx, natsStatus_GetText(s));
        natsMsg_Destroy(m);
    }
    p->explained.len = 0;
}

/* A partition's capped actions since its last commit, added to the worker's
 * counts (under mu). */
static void add_capped(void *arg, const char *cap, const char *campaign, uint64_t n)
{
    struct worker *w = arg;
    pair_counts_add(&w->capped, cap, campaign, n);
}

/* Commits the open batch with sseq as the applied sequence. 0, or -1. */
static int commit_upto(struct worker *w, int idx, uint64_t sseq)
{
    struct part *p = &w->p[idx];
    engine_commit_meta(p->e, APPLIED_KEY, (int64_t)sseq);
    if (engine_commit(p->e) < 0) {
        log_error("partition %d: commit failed: %s", idx, store_errmsg(p->st));
        return -1;
    }
    p->applied = sseq;
    pthread_mutex_lock(&w->mu);
    p->committed = sseq;
    p->lag = p->pending;
    engine_capped_take(p->e, add_capped, w); /* the worker's counts (/metrics) */
    pthread_mutex_unlock(&w->mu);
    explain_send(w, idx);
    return 0;
}

/* A config message at stream sequence sseq (before: the message ahead of
 * it): what came before it is committed, the partition swaps to the
 * message's campaigns (recorded in the shard, so that a reopening keeps
 * them), and the message counts as applied. A config that does not build
 * here (a plugin missing on this machine) is logged and skipped: the
 * partition goes on with the campaigns it had. 0, or -1 (a commit failed). */
static int apply_config(struct worker *w, int idx, natsMsg *m, uint64_t sseq, uint64_t before)
{
    struct part *p = &w->p[idx];
    char name[200], err[512];
    snprintf(name, sizeof(name), "%s%s/p%d@%" PRIu64, CLUSTER_CONFIG_PATH, w->cfg->cluster.stream,
             idx, sseq);
    if (commit_upto(w, idx, before) < 0)
        return -1;
    const char *text = natsMsg_GetData(m);
    struct graph_outputs outs;
    struct world *wd = build_world(w, idx, name, text ? text : "",
                                   text ? (size_t)natsMsg_GetDataLength(m) : 0, &outs);
    if (wd && engine_swap(p->e, wd, err, sizeof(err)) < 0) {
        log_error("partition %d: %s: %s", idx, name, err);
        world_free(wd);
        wd = NULL;
    }
    follow_outputs(w, idx, &outs, wd != NULL);
    if (wd) {
        log_info("partition %d: config applied at stream sequence %" PRIu64 ": %zu campaigns", idx,
                 sseq, engine_campaigns(p->e));
    } else
        log_error("partition %d: config at stream sequence %" PRIu64 " not applied; the "
                  "campaigns before it go on",
                  idx, sseq);
    return commit_upto(w, idx, sseq);
}

/* A forget message at stream sequence sseq (spec 18; before: the message
 * ahead of it): what came before it is committed, the user is forgotten
 * in this shard (the engine rewrites every place naming the user to the
 * pseudonym, the same in every shard), and the message counts as applied.
 * The owner of the user's own partition then erases the user's earlier
 * events from the stream, and snapshots are taken at once, so that none
 * older names the user for long. 0, or -1 (a commit failed). */
static int apply_forget(struct worker *w, int idx, natsMsg *m, const char *who, uint64_t sseq,
                        uint64_t before)
{
    struct part *p = &w->p[idx];
    int len = natsMsg_GetDataLength(m);
    if (commit_upto(w, idx, before) < 0)
        return -1;
    char user[129], ps[64], err[256];
    if (len < 1 || len > 128 || !natsMsg_GetData(m)) {
        log_warn("partition %d: stream sequence %" PRIu64 ": a forget without a valid user", idx,
                 sseq);
        return commit_upto(w, idx, sseq);
    }
    memcpy(user, natsMsg_GetData(m), (size_t)len);
    user[len] = 0;
    if (is_graph(w, idx)) {
        /* the graph's actions go to their users' partitions by the user
         * id, which the forget is about to rewrite: those not published
         * yet are published first */
        queue_actions(w, idx);
        finish_publishing(w);
    }
    if (engine_forget(p->e, user, who, ps, sizeof(ps), err, sizeof(err)) < 0) {
        log_error("partition %d: forget at stream sequence %" PRIu64 ": %s", idx, sseq, err);
        return commit_upto(w, idx, sseq);
    }
    if (commit_upto(w, idx, sseq) < 0)
        return -1;
    /* The user's events leave the stream once both their readers are
     * past them: the user's partition and, while a graph campaign runs,
     * the graph (which reads every partition). The user's partition
     * erases those the graph has applied (all of them, but when the graph
     * is behind) and, leaving some, marks the pseudonym (erase.<hex>);
     * the graph, at its forget (partition 0's copy, published before the
     * others), erases what a mark says was left, up to where the user's
     * partition stands. Each says where it stands before it looks at the
     * other. The deliveries to the user have the one reader. */
    int home = (int)cluster_partition(user, (size_t)len, w->n), erased = 0, deliveries = 0;
    char mark[96];
    const char *hex = strchr(ps, ':');
    snprintf(mark, sizeof(mark), "erase.%s", hex ? hex + 1 : ps);
    if (home == idx) {
        uint64_t events_before = sseq;
        if (p->graph_reads) {
            /* the message before the forget: mktd forget waits for the
             * forget itself, which comes once the erasing is done */
            put_applied_at(w, idx, before);
            uint64_t rev;
            char v[24];
            snprintf(v, sizeof(v), "%" PRIu64, sseq);
            if (kvStore_Put(&rev, w->meta, mark, v, (int)strlen(v)) != NATS_OK)
                log_warn("partition %d: %s: the mark for the graph not written", idx, ps);
            uint64_t g = cluster_applied_of(w->meta, w->n);
            if (g < events_before)
                events_before = g + 1;
        }
        erased = cluster_erase_user(w->c, home, user, sseq, events_before, &deliveries);
        if (p->graph_reads && events_before == sseq && erased >= 0)
            kvStore_Delete(w->meta, mark); /* nothing left for the graph */
    } else if (is_graph(w, idx) && p->graph_active) {
        put_applied_at(w, idx, before);
        kvEntry *e = NULL;
        if (kvStore_Get(&e, w->meta, mark) == NATS_OK) {
            kvEntry_Destroy(e);
            uint64_t other = cluster_applied_of(w->meta, home), events_before = sseq;
            if (other < events_before)
                events_before = other + 1;
            int none = 0;
            erased = cluster_erase_user(w->c, home, user, 0, events_before, &none);
            if (erased >= 0)
                kvStore_Delete(w->meta, mark);
        }
    }
    /* the deliveries erased were counted with the ticks (status's events
     * are the messages less the ticks); the batch's commit records it */
    p->ticks -= (uint64_t)deliveries <= p->ticks ? (uint64_t)deliveries : p->ticks;
    /* the user id goes no further than this function */
    memset(user, 0, sizeof(user));
    log_info("partition %d: %s forgotten at stream sequence %" PRIu64 " (by %s)%s", idx, ps, sseq,
             who,
             erased > 0    ? "; their events erased from the stream"
             : erased == 0 ? ""
                           : "; erasing their events failed");
    atomic_store(&w->snap_now, 1);
    return 0;
}

/* The committed deliveries that named a user forgotten here, erased from
 * the stream (the partition is their one reader). One that cannot be is
 * logged, and left to the trim. */
static void erase_named(struct worker *w, int idx)
{
    struct part *p = &w->p[idx];
    size_t n = 0;
    for (size_t i = 0; i < p->n_erase; i++)
        n += cluster_erase_msg(w->c, idx, p->erase[i]) == 0;
    if (p->n_erase)
        log_info("partition %d: %zu of %zu deliveries naming a forgotten user erased from the "
                 "stream",
                 idx, n, p->n_erase);
    p->n_erase = 0;
}

/* A graph campaign's action for a user of this partition (spec 18): into
 * the batch at the message's time ms, where the user's caps apply. Once per
 * graph action seq (a delivery published again after the graph's takeover
 * is not recorded twice). -1 when the shard could not be read: applied
 * again later. */
static int apply_delivered(struct worker *w, int idx, natsMsg *m, const char *seq, uint64_t sseq,
                           int64_t ms)
{
    if (engine_advance(w->p[idx].e, ms) < 0)
        log_error("partition %d: stream sequence %" PRIu64 ": timers failed", idx, sseq);
    json_error_t jerr;
    json_t *a = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, &jerr);
    json_t *ts = json_object_get(a, "ts"), *payload = json_object_get(a, "payload");
    const char *campaign = json_string_value(json_object_get(a, "campaign"));
    const char *kind = json_string_value(json_object_get(a, "kind"));
    const char *user = json_string_value(json_object_get(a, "user"));
    char *text = json_is_object(payload) ? json_dumps(payload, JSON_COMPACT) : NULL;
    int rc = 0;
    if (!json_is_integer(ts) || !campaign || !kind || !user || !text) {
        log_warn("partition %d: stream sequence %" PRIu64 ": a delivered action that is not one; "
                 "skipped",
                 idx, sseq);
    } else {
        char key[48];
        snprintf(key, sizeof(key), "graph:%s", seq);
        int named_forgotten = 0;
        struct delivered d = {.key = key,
                              .ts = json_integer_value(ts),
                              .campaign = campaign,
                              .kind = kind,
                              .user = user,
                              .event_id = json_string_value(json_object_get(a, "event_id")),
                              .payload = text,
                              .named_forgotten = &named_forgotten};
        rc = engine_deliver(w->p[idx].e, &d);
        if (rc >= 0 && named_forgotten) {
            /* the message names them still: it goes once committed */
            struct part *p = &w->p[idx];
            if (p->n_erase == p->cap_erase) {
                p->cap_erase = p->cap_erase ? 2 * p->cap_erase : 8;
                p->erase = xrealloc(p->erase, p->cap_erase * sizeof(*p->erase));
            }
            p->erase[p->n_erase++] = sseq;
        }
        if (rc == 1)
            log_debug("partition %d: %s for %s from the graph (%s) capped", idx, kind, user, key);
        else if (rc < 0)
            log_warn("partition %d: stream sequence %" PRIu64 ": a delivered action: database "
                     "error",
                     idx, sseq);
    }
    free(text);
    json_decref(a);
    return rc < 0 ? -1 : 0;
}

/* How many messages wait for a partition's consumer (one round trip):
 * NATS_OK, or the status when the consumer does not answer (its server
 * is gone: an ephemeral consumer has one replica). */
static natsStatus consumer_waiting(struct part *p, uint64_t *waiting)
{
    jsConsumerInfo *ci = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 2000;
    jsErrCode jerr = 0;
    natsStatus s = natsSubscription_GetConsumerInfo(&ci, p->sub, &jo, &jerr);
    *waiting = s == NATS_OK ? ci->NumPending : 0;
    jsConsumerInfo_Destroy(ci);
    return s;
}

/* A consumer that does not answer, or is no more: made again. When it
 * does not answer, its server is gone, and the consumers made before now
 * may well have been on that server too (when a server was killed, the
 * partitions' consumers were seen to go all at once): they are made again
 * on their turns, without asking each first, since an ask costs its whole
 * wait when the server is gone. */
static int consumer_gone(struct worker *w, int idx, const char *what, natsStatus s)
{
    struct part *p = &w->p[idx];
    p->stalled = 1; /* not deleted: its server is gone, or it is */
    if (cluster_transient(s))
        w->consumers_gone_ms = wall_ms();
    log_warn("partition %d: %s: %s; a new consumer from %" PRIu64, idx, what, natsStatus_GetText(s),
             p->applied + 1);
    open_consumer(w, idx);
    return 0;
}

/* Whether the fetch in list starts past a message of the partition's
 * subjects that it has not applied: nats-server before 2.9.13 moves every
 * consumer of a stream to the first message left by a purge of one
 * subject (a trim of another partition), whatever its filter, so that a
 * consumer behind it would skip messages without a gap in its own
 * sequence (upstream pull request 3838). When the first message fetched
 * is not the next one, the stream is asked which is; a fetch that cannot
 * be checked is not applied either. */
static int skipped(struct worker *w, int idx, const natsMsgList *list)
{
    struct part *p = &w->p[idx];
    jsMsgMetaData *md = NULL;
    if (list->Count < 1 || natsMsg_GetMetaData(&md, list->Msgs[0]) != NATS_OK)
        return 0; /* (the loop below treats it) */
    uint64_t first = md->Sequence.Stream;
    jsMsgMetaData_Destroy(md);
    if (first <= p->applied + 1)
        return 0;
    char subject[64];
    consumer_subject(w, idx, subject, sizeof(subject));
    uint64_t next = 0;
    int r = cluster_first_at(w->c, w->cfg->cluster.stream, subject, p->applied + 1, &next);
    if (r == 1 && next >= first)
        return 0;
    if (r == 0) /* (none: the fetched one was removed since) */
        return 0;
    if (r < 0)
        log_warn("partition %d: the stream did not say which message comes after %" PRIu64
                 ": a new consumer from %" PRIu64,
                 idx, p->applied, p->applied + 1);
    else
        log_warn("partition %d: its consumer went on at stream sequence %" PRIu64 " past %" PRIu64
                 " (moved by a purge of another subject): a new consumer from "
                 "%" PRIu64,
                 idx, first, next, p->applied + 1);
    atomic_fetch_add(&w->n_skips, 1);
    return 1;
}

/* One fetch of partition idx applied and committed: the messages applied,
 * or -1 when the partition must be closed (and opened again). */
static int apply_batch(struct worker *w, int idx)
{
    struct part *p = &w->p[idx];
    /* a partition gone quiet says where it stopped within a second */
    if (p->app_put != p->applied && wall_ms() - p->app_put_ms >= 1000)
        put_applied(w, idx);
    if (!p->sub) { /* none could be made: tried again after a pause */
        if (wall_ms() < p->sub_retry_at || open_consumer(w, idx) < 0)
            return 0;
    } else if (p->sub_made_ms < w->consumers_gone_ms) {
        log_info("partition %d: its consumer is older than one found gone: a new consumer from "
                 "%" PRIu64,
                 idx, p->applied + 1);
        p->stalled = 1;
        if (open_consumer(w, idx) < 0)
            return 0;
    }
    if (p->pending == 0) {
        /* caught up when last seen: the consumer is asked first (one
         * round trip), since an empty fetch waits out its whole expiry,
         * and a round over idle partitions would then hold up a busy one
         * (the graph, catching up, got 512 events a round: 350/s) */
        uint64_t waiting;
        natsStatus is = consumer_waiting(p, &waiting);
        if (is != NATS_OK)
            return consumer_gone(w, idx, "consumer info", is);
        if (waiting == 0)
            return 0;
    }
    jsFetchRequest req;
    jsFetchRequest_Init(&req);
    req.Batch = FETCH_BATCH;
    req.NoWait = true;
    req.Expires = 100LL * 1000000LL;
    natsMsgList list = {0};
    int64_t tf = wall_ms();
    natsStatus s = natsSubscription_FetchRequest(&list, p->sub, &req);
    int64_t ta = wall_ms();
    if (s != NATS_OK && list.Count == 0) {
        natsMsgList_Destroy(&list);
        if (s == NATS_NOT_FOUND) { /* nothing new: the server said so at once */
            return 0;
        }
        /* no answer: an empty fetch, or the consumer's server is gone (an
         * ephemeral consumer has one replica). Its info says which. */
        if (s == NATS_TIMEOUT) {
            uint64_t waiting;
            natsStatus is = consumer_waiting(p, &waiting);
            if (is == NATS_OK)
                return 0;
            return consumer_gone(w, idx, "fetch", is);
        }
        log_warn("partition %d: fetch: %s; a new consumer from %" PRIu64, idx,
                 natsStatus_GetText(s), p->applied + 1);
        open_consumer(w, idx);
        return 0;
    }
    if (skipped(w, idx, &list)) {
        natsMsgList_Destroy(&list);
        open_consumer(w, idx);
        return 0;
    }
    int applied = 0, gap = 0;
    uint64_t last = p->applied, ticks = 0;
    for (int i = 0; i < list.Count; i++) {
        natsMsg *m = list.Msgs[i];
        jsMsgMetaData *md = NULL;
        if (natsMsg_GetMetaData(&md, m) != NATS_OK) {
            gap = 1;
            break;
        }
        uint64_t sseq = md->Sequence.Stream, cseq = md->Sequence.Consumer;
        p->pending = md->NumPending;
        int64_t ms = md->Timestamp / 1000000;
        jsMsgMetaData_Destroy(md);
        if (cseq != p->cseq + 1 || sseq <= last) {
            log_warn("partition %d: consumer sequence %" PRIu64 " after %" PRIu64
                     ", stream sequence %" PRIu64 " after %" PRIu64
                     ": a new consumer from %" PRIu64,
                     idx, cseq, p->cseq, sseq, last, last + 1);
            gap = 1;
            break;
        }
        p->cseq = cseq;
        uint64_t before = last;
        last = sseq;
        applied++;
        const char *tick = NULL;
        if (natsMsgHeader_Get(m, CLUSTER_TICK_HEADER, &tick) == NATS_OK) {
            /* a tick: time passes (due timers fire), nothing else; it is
             * no event (no id, not in events or the event log) */
            ticks++;
            if (is_graph(w, idx) && !p->graph_active)
                continue;
            if (engine_advance(p->e, ms) < 0)
                log_error("partition %d: tick at stream sequence %" PRIu64 ": timers failed", idx,
                          sseq);
            continue;
        }
        const char *chash = NULL;
        if (natsMsgHeader_Get(m, CLUSTER_CONFIG_HEADER, &chash) == NATS_OK) {
            ticks++; /* no event either: counted with the ticks */
            if (!message_for(w, idx, m))
                continue;
            int was = p->graph_active;
            if (apply_config(w, idx, m, sseq, before) < 0) {
                natsMsgList_Destroy(&list);
                return -1;
            }
            if (is_graph(w, idx)) {
                p->graph_active = engine_campaigns(p->e) > 0;
                if (p->graph_active != was) {
                    /* the graph now reads every partition, or only
                     * partition 0's subject, from the next message on */
                    log_info("partition %d (the graph): %s from stream sequence %" PRIu64, idx,
                             p->graph_active ? "reading every partition"
                                             : "no campaign of its own: following config messages",
                             sseq + 1);
                    gap = 1;
                    break;
                }
            }
            continue;
        }
        const char *who = NULL;
        if (natsMsgHeader_Get(m, CLUSTER_FORGET_HEADER, &who) == NATS_OK) {
            if (!message_for(w, idx, m)) {
                ticks++;
                continue;
            }
            if (apply_forget(w, idx, m, who, sseq, before) < 0) {
                natsMsgList_Destroy(&list);
                return -1;
            }
            ticks++;
            continue;
        }
        const char *dseq = NULL;
        if (natsMsgHeader_Get(m, CLUSTER_ACTION_HEADER, &dseq) == NATS_OK) {
            size_t erasing = p->n_erase;
            if (!is_graph(w, idx) && apply_delivered(w, idx, m, dseq, sseq, ms) < 0) {
                last = before; /* tried again from a new consumer */
                gap = 1;
                break;
            }
            /* no event (the graph's own, read back: nothing to do); one to
             * be erased is no message at all */
            ticks += p->n_erase == erasing;
            continue;
        }
        if (is_graph(w, idx) && !p->graph_active) {
            ticks++; /* partition 0's event, left to it */
            continue;
        }
        struct event ev;
        char detail[256], *echo = NULL;
        struct decode_opts o = {.wall_now_ms = 0, .max_future_ms = INT64_MAX / 4, .max_past_ms = 0};
        enum ev_status st = event_decode(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), &o,
                                         &ev, detail, sizeof(detail), &echo);
        free(echo);
        if (st != EV_OK) {
            log_warn("partition %d: stream sequence %" PRIu64 " skipped: %s", idx, sseq, detail);
            continue;
        }
        if (ev.dry) {
            event_clear(&ev);
            continue;
        }
        /* explained when its sender waits for it (an explain of the
         * line alone, without the header, is no one's to read) */
        const char *to = NULL;
        if (natsMsgHeader_Get(m, CLUSTER_EXPLAIN_TO, &to) != NATS_OK || !to || !*to)
            to = NULL;
        ev.explain = to != NULL;
        struct eng_report rep = {0};
        if (!ev.has_ts) {
            ev.has_ts = 1;
            ev.ts = ms;
        }
        int n_actions = 0;
        if (engine_advance(p->e, ms) < 0)
            log_error("partition %d: stream sequence %" PRIu64 ": timers failed", idx, sseq);
        p->reach.down = NULL;
        enum eng_result r =
            engine_event(p->e, &ev, ms, &n_actions, to ? &rep : NULL, detail, sizeof(detail));
        if (to && !(r == ENG_INTERNAL && p->reach.down))
            explain_keep(w, idx, to, &ev, r, &rep, detail);
        json_decref(rep.actions);
        json_decref(rep.explain);
        if (r == ENG_INTERNAL) {
            if (p->reach.down) {
                /* the budgets' pool or the code registry was out of
                 * reach: no fault of the event's. What came before it is
                 * committed; it is tried again from a new consumer. */
                log_warn("partition %d: stream sequence %" PRIu64 ", event %s: %s out of reach; "
                         "tried again",
                         idx, sseq, ev.id, p->reach.down);
                event_clear(&ev);
                last = before;
                gap = 1;
                break;
            }
            log_error("partition %d: stream sequence %" PRIu64 ", event %s: %s; set aside", idx,
                      sseq, ev.id, detail);
            set_aside(w, idx, sseq, &ev, detail);
            atomic_fetch_add(&w->n_aside, 1);
        }
        event_clear(&ev);
    }
    natsMsgList_Destroy(&list);
    if (applied) {
        if (ticks)
            engine_commit_meta(p->e, TICKS_KEY, (int64_t)(p->ticks + ticks));
        if (commit_upto(w, idx, last) < 0)
            return -1;
        p->ticks += ticks;
        erase_named(w, idx);
        atomic_fetch_add(&w->n_applied, applied);
        p->quiet_since = wall_ms();
        queue_actions(w, idx);
        register_codes(w, idx);
        /* at once after a tick, so that status's events (messages less
         * ticks) are exact when the partition is quiet */
        if (ticks || wall_ms() - p->app_put_ms >= 1000)
            put_applied(w, idx);
        log_debug("partition %d: %d events: fetch %" PRId64 " ms, apply and commit %" PRId64 " ms",
                  idx, applied, ta - tf, wall_ms() - ta);
    }
    if (gap)
        open_consumer(w, idx); /* when none is made, tried again on a later round */
    return applied;
}

/* A tick's message id: never an event id (those are 1-128 bytes), the
 * same when its publish is tried again. */
static void tick_id(int idx, int64_t ms, char *buf, size_t len)
{
    int n = snprintf(buf, len, "tick:%d:%" PRId64 ":", idx, ms);
    while (n < 130 && (size_t)n + 1 < len)
        buf[n++] = '-';
    buf[n] = 0;
}

/* daemon.retention and daemon.event_log.keep in cluster mode: a shard's
 * actions older than the retention pruned as one daemon prunes them
 * (out/retention.c), and never one not yet published to the actions
 * stream; its logged events likewise. Between batches, every PRUNE_MS,
 * up to PRUNE_CHUNKS deletes at a time; a sweep that reached the end
 * goes on from there (over what was published since), and starts over
 * from the first action every PRUNE_SWEEP_MS (actions age meanwhile). */
#define PRUNE_MS 5000
#define PRUNE_CHUNKS 10
#define PRUNE_SWEEP_MS 60000
static void prune(struct worker *w, int idx)
{
    struct part *p = &w->p[idx];
    const struct config *cfg = w->cfg;
    int64_t now = wall_ms();
    if ((!cfg->retention_actions_ms && !cfg->event_log_keep_ms) || now < p->prune_at)
        return;
    p->prune_at = now + PRUNE_MS;
    /* what is old is by the partition's clock (the stream's time), not
     * this machine's: a replay far behind prunes what the first run
     * pruned at that point, so caps count the same actions */
    int64_t stream_now = engine_now(p->e);
    int64_t gone = 0, logged = 0;
    for (int k = 0; k < PRUNE_CHUNKS && cfg->retention_actions_ms; k++) {
        int64_t before = p->prune_cursor;
        int bounded;
        int n = retention_actions_step(p->st, cfg->retention_actions_ms,
                                       retention_cap_window_ms(engine_config(p->e)), p->published,
                                       stream_now, &p->prune_cursor, &bounded);
        if (n < 0)
            break;
        gone += n;
        if (p->prune_cursor == before) { /* the end: what comes is looked at next time */
            if (now - p->prune_sweep >= PRUNE_SWEEP_MS) { /* and, now and then, from the start */
                p->prune_cursor = 0;
                p->prune_sweep = now;
            }
            break;
        }
    }
    for (int k = 0; k < PRUNE_CHUNKS && cfg->event_log_keep_ms; k++) {
        int n = store_eventlog_prune(p->st, stream_now - cfg->event_log_keep_ms, RETENTION_CHUNK);
        logged += n > 0 ? n : 0;
        if (n < RETENTION_CHUNK)
            break;
    }
    if (gone || logged)
        log_info("partition %d: retention: %" PRId64 " actions and %" PRId64
                 " logged events pruned",
                 idx, gone, logged);
}

/* Appends a tick to a quiet partition of ours whose next timer is due by
 * the wall clock, at most once a TICK_QUIET_MS: applying it (this worker,
 * or any replay of the partition) advances the clock to its JetStream
 * timestamp, so the timer fires without a new event. Ticks only when a
 * timer is due: a tick without one would change nothing. */
static void maybe_tick(struct worker *w, int idx)
{
    struct part *p = &w->p[idx];
    int64_t now = wall_ms();
    if (is_graph(w, idx) || p->pending || now - p->quiet_since < TICK_QUIET_MS ||
        now - p->tick_at < TICK_QUIET_MS || engine_next_due(p->e) > now || !may_apply(w, idx))
        return;
    p->tick_at = now;
    char subject[64], id[160], v[32];
    cluster_event_subject((uint32_t)idx, subject, sizeof(subject));
    tick_id(idx, now, id, sizeof(id));
    snprintf(v, sizeof(v), "%" PRId64, now);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, NULL, 0);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, CLUSTER_TICK_HEADER, v);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = id;
    po.MaxWait = 2000;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    if (s == NATS_OK)
        s = js_PublishMsg(&pa, w->c->js, m, &po, &jerr);
    if (s != NATS_OK)
        log_debug("partition %d: tick: %s (tried again in a second)", idx, natsStatus_GetText(s));
    else
        log_debug("partition %d: tick at stream sequence %" PRIu64 " (%" PRId64 " ms)", idx,
                  pa->Sequence, wall_ms() - now);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
}

static void *apply_main(void *arg)
{
    struct worker *w = arg;
    int idle = 0; /* rounds without a message: the pause grows to 100 ms */
    while (!atomic_load(&w->stop)) {
        int any = 0;
        atomic_store(&w->apply_round_ms, wall_ms());
        serve_dry(w);
        for (int i = 0; i < w->np && !atomic_load(&w->stop); i++) {
            struct part *p = &w->p[i];
            pthread_mutex_lock(&w->mu);
            enum lease st = p->state;
            int valid = wall_ms() + w->margin_ms < p->valid_until;
            if (st == L_OWNED && !valid) {
                p->state = st = L_LOST; /* renewals late: stop before the lease can run out */
                atomic_fetch_add(&w->n_lost, 1);
                log_warn("partition %d: lease not renewed in time: stopped", i);
            }
            pthread_mutex_unlock(&w->mu);
            if (p->open && st != L_OWNED)
                close_part(w, i);
            if (!p->open && st == L_OWNED && open_part(w, i) < 0) {
                pthread_mutex_lock(&w->mu);
                p->state = L_RELEASE; /* let another worker try */
                pthread_mutex_unlock(&w->mu);
                st = L_RELEASE;
            }
            if (!p->open && st == L_RELEASE) {
                pthread_mutex_lock(&w->mu);
                p->state = L_RELEASED;
                pthread_mutex_unlock(&w->mu);
            }
            if (!p->open || !may_apply(w, i))
                continue;
            int r = apply_batch(w, i);
            if (r < 0) {
                close_part(w, i);
                pthread_mutex_lock(&w->mu);
                if (p->state == L_OWNED)
                    p->state = L_RELEASE;
                pthread_mutex_unlock(&w->mu);
            } else if (r > 0) {
                any = 1;
            } else {
                maybe_tick(w, i);
            }
            if (p->open)
                prune(w, i);
        }
        finish_publishing(w);
        idle = any ? 0 : idle + 1;
        if (idle) { /* a pause, cut short by a dry request */
            int64_t ms = idle < 5 ? 20 * idle : 100;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += (ts.tv_nsec + ms * 1000000) / 1000000000;
            ts.tv_nsec = (ts.tv_nsec + ms * 1000000) % 1000000000;
            pthread_mutex_lock(&w->dry_mu);
            if (!w->dry_n)
                pthread_cond_timedwait(&w->dry_cv, &w->dry_mu, &ts);
            pthread_mutex_unlock(&w->dry_mu);
        }
    }
    for (int i = 0; i < w->np; i++)
        close_part(w, i);
    serve_dry(w); /* (none answered: their partitions are closed) */
    atomic_store(&w->apply_done, 1);
    return NULL;
}

/* ---- GET /metrics on the gateway ---- */

static void metric_head(struct sbuf *b, const char *name, const char *type, const char *help)
{
    sb_fmt(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The worker's figures in Prometheus's text format (a gateway thread:
 * what the apply thread keeps is read under mu, or from atomics). */
static void worker_metrics(void *arg, struct sbuf *b)
{
    struct worker *w = arg;
    pthread_mutex_lock(&w->mu);
    int owned = 0, graph = 0, workers = w->workers;
    for (int i = 0; i < w->np; i++)
        if (w->p[i].shard_open)
            *(is_graph(w, i) ? &graph : &owned) += 1;
    metric_head(b, "mktd_cluster_partitions_owned", "gauge",
                "User partitions this worker applies now.");
    sb_fmt(b, "mktd_cluster_partitions_owned %d\n", owned);
    metric_head(b, "mktd_cluster_graph_owned", "gauge", "1 while this worker applies the graph.");
    sb_fmt(b, "mktd_cluster_graph_owned %d\n", graph);
    metric_head(b, "mktd_cluster_live_workers", "gauge", "Workers the last census saw.");
    sb_fmt(b, "mktd_cluster_live_workers %d\n", workers);
    static const struct {
        const char *name, *help;
        size_t off;
    } per[] = {
        {"mktd_cluster_applied_seq",
         "Last stream sequence committed in the partition's shard, per partition held.",
         offsetof(struct part, committed)},
        {"mktd_cluster_lag",
         "Messages waiting for the partition after its last commit, per partition held.",
         offsetof(struct part, lag)},
    };
    for (size_t k = 0; k < sizeof(per) / sizeof(per[0]); k++) {
        metric_head(b, per[k].name, "gauge", per[k].help);
        for (int i = 0; i < w->np; i++) {
            if (!w->p[i].shard_open)
                continue;
            uint64_t v = *(const uint64_t *)((const char *)&w->p[i] + per[k].off);
            if (is_graph(w, i))
                sb_fmt(b, "%s{partition=\"graph\"} %" PRIu64 "\n", per[k].name, v);
            else
                sb_fmt(b, "%s{partition=\"%d\"} %" PRIu64 "\n", per[k].name, i, v);
        }
    }
    metric_head(b, "mktd_actions_capped_total", "counter",
                "Actions a frequency cap kept out, by cap and campaign, in the partitions "
                "applied here.");
    sb_pair_counts(b, "mktd_actions_capped_total", "cap", "campaign", &w->capped);
    pthread_mutex_unlock(&w->mu);
    static const struct {
        const char *name, *help;
        size_t off;
    } counters[] = {
        {"mktd_cluster_messages_applied_total",
         "Stream messages applied and committed (events, ticks, config and forget messages).",
         offsetof(struct worker, n_applied)},
        {"mktd_cluster_consumers_made_total",
         "Consumers made (at each opening, and again after a gap or a server's loss).",
         offsetof(struct worker, n_remade)},
        {"mktd_cluster_leases_lost_total", "Leases lost or stopped for late renewals.",
         offsetof(struct worker, n_lost)},
        {"mktd_cluster_events_set_aside_total", "Events a plugin failed, set aside.",
         offsetof(struct worker, n_aside)},
        {"mktd_cluster_dry_runs_total", "Dry runs answered for the gateways and publishers.",
         offsetof(struct worker, n_dry)},
        {"mktd_cluster_consumer_skips_total",
         "Fetches not applied since their consumer had gone past a message of its subjects "
         "(moved by a purge of another subject), or the stream could not say.",
         offsetof(struct worker, n_skips)},
    };
    for (size_t k = 0; k < sizeof(counters) / sizeof(counters[0]); k++) {
        atomic_llong *v = (atomic_llong *)((char *)w + counters[k].off);
        metric_head(b, counters[k].name, "counter", counters[k].help);
        sb_fmt(b, "%s %lld\n", counters[k].name, (long long)atomic_load(v));
    }
    long long delivered, failures;
    cluster_outputs_counts(w->outs, &delivered, &failures);
    metric_head(b, "mktd_cluster_output_delivered_total", "counter",
                "Actions this worker delivered to the outputs (while it held the graph).");
    sb_fmt(b, "mktd_cluster_output_delivered_total %lld\n", delivered);
    metric_head(b, "mktd_cluster_output_failures_total", "counter",
                "Output requests that failed and are tried again.");
    sb_fmt(b, "mktd_cluster_output_failures_total %lld\n", failures);
    cluster_outputs_metrics(w->outs, b);
    metric_head(b, "mktd_cluster_nats_connected", "gauge", "1 while the NATS connection is up.");
    sb_fmt(b, "mktd_cluster_nats_connected %d\n",
           natsConnection_Status(w->c->nc) == NATS_CONN_STATUS_CONNECTED);
}

/* ---- the outputs (outputs.c) ---- */

/* Outputs are delivered by the graph's holder. */
static int holds_graph(void *arg)
{
    struct worker *w = arg;
    return !atomic_load(&w->stop) && may_apply(w, w->n);
}

/* ---- the snapshot thread ---- */

static int snap_still_ours(void *arg, int idx)
{
    struct worker *w = arg;
    return !atomic_load(&w->stop) && may_apply(w, idx);
}

/* Every cluster.snapshot: each partition held whose applied sequence moved
 * since its newest snapshot is copied and published (snapshot.c). The copy
 * is made through a connection of its own, so the apply thread goes on. */
static void *snapshot_main(void *arg)
{
    struct worker *w = arg;
    int64_t period = w->cfg->cluster.snapshot_ms;
    int64_t next = wall_ms() + period;
    while (!atomic_load(&w->stop)) {
        if (wall_ms() < next && !atomic_exchange(&w->snap_now, 0)) {
            nats_Sleep(20);
            continue;
        }
        for (int i = 0; i < w->np && !atomic_load(&w->stop); i++) {
            struct part *p = &w->p[i];
            pthread_mutex_lock(&w->mu);
            int held = p->state == L_OWNED && p->shard_open;
            int due = held && p->committed > p->snap_applied;
            uint64_t since = p->snap_applied;
            if (due)
                p->snapping = 1;
            pthread_mutex_unlock(&w->mu);
            /* what the snapshots now cover goes from the event stream
             * (the graph's snapshot may have moved since this one's) */
            int trim = w->cfg->cluster.trim && !is_graph(w, i);
            if (held && trim && !due && snap_still_ours(w, i))
                cluster_trim(w->c, w->meta, i, w->n);
            if (!due)
                continue;
            char path[4096];
            shard_path(w, i, path, sizeof(path));
            uint64_t applied = 0;
            int r = cluster_snap_take(w->c, w->meta, i, path, since, snap_still_ours, w, &applied);
            pthread_mutex_lock(&w->mu);
            p->snapping = 0;
            if (r == 0 && applied > p->snap_applied)
                p->snap_applied = applied;
            pthread_mutex_unlock(&w->mu);
            if (r == 0 && trim && snap_still_ours(w, i))
                cluster_trim(w->c, w->meta, i, w->n);
        }
        next = wall_ms() + period;
    }
    return NULL;
}

/* ---- the lease thread (main) ---- */

static void lease_key(int idx, char *buf, size_t len)
{
    snprintf(buf, len, "p%d", idx);
}

/* The census (a thread of its own, since listing a bucket creates a
 * consumer, which can take most of a second): live workers are the w.<name>
 * keys of the leases bucket (entries expire after `takeover`), and the
 * partitions that have a lease. */
static void census(struct worker *w, char *taken)
{
    kvKeysList kl = {0};
    kvWatchOptions o;
    kvWatchOptions_Init(&o);
    o.Timeout = 2000;
    natsStatus s = kvStore_Keys(&kl, w->leases, &o);
    if (s != NATS_OK && s != NATS_NOT_FOUND)
        return;
    int n = 0;
    memset(taken, 0, (size_t)w->np);
    for (int i = 0; i < kl.Count; i++) {
        const char *k = kl.Keys[i];
        if (strncmp(k, "w.", 2) == 0) {
            int seen = 0; /* a key listed twice (a put while listing) counts once */
            for (int j = 0; j < i && !seen; j++)
                seen = strcmp(kl.Keys[j], k) == 0;
            n += !seen;
        } else if (k[0] == 'p') {
            char *end;
            long p = strtol(k + 1, &end, 10);
            if (!*end && p >= 0 && p < w->np)
                taken[p] = 1;
        }
    }
    pthread_mutex_lock(&w->mu);
    if (n != w->workers) {
        struct sbuf b = {0};
        for (int i = 0; i < kl.Count; i++)
            if (strncmp(kl.Keys[i], "w.", 2) == 0)
                sb_fmt(&b, " %s", kl.Keys[i] + 2);
        log_info("%d live workers:%s", n, b.s ? b.s : "");
        sb_free(&b);
    }
    w->workers = n;
    memcpy(w->taken, taken, (size_t)w->np);
    w->census_at = wall_ms();
    pthread_mutex_unlock(&w->mu);
    kvKeysList_Destroy(&kl);
}

static void *census_main(void *arg)
{
    struct worker *w = arg;
    char *taken = xcalloc((size_t)w->np, 1);
    int64_t period = w->cfg->cluster.takeover_ms / 3;
    while (!atomic_load(&w->stop)) {
        int64_t t0 = wall_ms();
        census(w, taken);
        while (!atomic_load(&w->stop) && wall_ms() < t0 + period)
            nats_Sleep(20);
    }
    free(taken);
    return NULL;
}

/* Deletes the lease key if it is still at revision rev (ours): a delete
 * marker published with the last revision expected, so that a lease that
 * expired and was taken by another worker is left to that worker. */
static natsStatus lease_delete(struct worker *w, const char *key, uint64_t rev)
{
    char bucket[80], subject[200];
    cluster_bucket_name(w->c, "leases", bucket, sizeof(bucket));
    snprintf(subject, sizeof(subject), "$KV.%s.%s", bucket, key);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, NULL, 0);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "KV-Operation", "DEL");
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.ExpectLastSubjectSeq = rev;
    po.MaxWait = 5000;
    int64_t deadline = wall_ms() + 5000;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    while (s == NATS_OK || cluster_retry_until(deadline, s)) {
        s = js_PublishMsg(&pa, w->c->js, m, &po, &jerr);
        if (s == NATS_OK)
            break;
    }
    if (s != NATS_OK)
        log_debug("deleting lease %s at revision %" PRIu64 ": %s (JetStream error %d: %s)", key,
                  rev, natsStatus_GetText(s), (int)jerr, nats_GetLastError(NULL));
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    return s;
}

/* Takes partition i's lease when it is free (not ours, not in the
 * census, and created here first: create-only has one winner). 1 taken. */
static int take_lease(struct worker *w, int i, const char *taken)
{
    pthread_mutex_lock(&w->mu);
    enum lease st = w->p[i].state;
    pthread_mutex_unlock(&w->mu);
    if (st != L_NONE || taken[i])
        return 0;
    char key[32];
    uint64_t rev;
    lease_key(i, key, sizeof(key));
    int64_t t0 = wall_ms();
    const char *me = w->cfg->cluster.worker;
    if (kvStore_Create(&rev, w->leases, key, me, (int)strlen(me)) != NATS_OK)
        return 0; /* another worker's */
    pthread_mutex_lock(&w->mu);
    w->p[i].state = L_OWNED;
    w->p[i].rev = rev;
    w->p[i].valid_until = t0 + w->cfg->cluster.takeover_ms;
    pthread_mutex_unlock(&w->mu);
    return 1;
}

static void lease_round(struct worker *w, char *taken)
{
    const char *me = w->cfg->cluster.worker;
    int len = (int)strlen(me);
    int64_t ttl = w->cfg->cluster.takeover_ms;
    char key[80];
    uint64_t rev;
    /* this worker is alive */
    snprintf(key, sizeof(key), "w.%s", me);
    if (kvStore_Put(&rev, w->leases, key, me, len) != NATS_OK)
        log_warn("registering worker %s: %s", me, nats_GetLastError(NULL));
    /* renew (a partition being released is still ours until its key is
     * deleted), release, forget */
    int owned = 0; /* user partitions (the graph is not in the share) */
    for (int i = 0; i < w->np; i++) {
        struct part *p = &w->p[i];
        lease_key(i, key, sizeof(key));
        pthread_mutex_lock(&w->mu);
        enum lease st = p->state;
        uint64_t last = p->rev;
        pthread_mutex_unlock(&w->mu);
        if (st == L_OWNED || st == L_RELEASE) {
            int64_t t0 = wall_ms();
            natsStatus s = kvStore_Update(&rev, w->leases, key, me, len, last);
            kvEntry *ke = NULL;
            if (s != NATS_OK && !cluster_transient(s) &&
                kvStore_Get(&ke, w->leases, key) == NATS_OK) {
                /* a renewal whose answer was lost still renewed: the key is
                 * ours at a newer revision, written when it says */
                if (kvEntry_Operation(ke) == kvOp_Put && strcmp(kvEntry_ValueString(ke), me) == 0 &&
                    kvEntry_Revision(ke) > last) {
                    s = NATS_OK;
                    rev = kvEntry_Revision(ke);
                    t0 = kvEntry_Created(ke) / 1000000;
                }
                kvEntry_Destroy(ke);
            }
            pthread_mutex_lock(&w->mu);
            if (s == NATS_OK && p->state != L_NONE && p->state != L_LOST) {
                p->rev = rev;
                p->valid_until = t0 + ttl;
                owned += p->state == L_OWNED && !is_graph(w, i);
            } else if (s == NATS_OK) {
                /* given up meanwhile */
            } else if (!cluster_transient(s)) {
                log_warn("partition %d: lease lost (%s)", i, natsStatus_GetText(s));
                if (p->state == L_OWNED) {
                    p->state = L_LOST;
                    atomic_fetch_add(&w->n_lost, 1);
                }
            } else {
                owned += p->state == L_OWNED && !is_graph(w, i); /* tried again next round; the
                                                 apply thread watches the time */
            }
            pthread_mutex_unlock(&w->mu);
        } else if (st == L_RELEASED) {
            natsStatus s = lease_delete(w, key, last);
            pthread_mutex_lock(&w->mu);
            p->state = L_NONE;
            pthread_mutex_unlock(&w->mu);
            if (s == NATS_OK)
                log_info("partition %d: released", i);
            else
                log_info("partition %d: released (its key: %s)", i, natsStatus_GetText(s));
        } else if (st == L_LOST) {
            pthread_mutex_lock(&w->mu);
            p->state = L_NONE; /* left to expire */
            pthread_mutex_unlock(&w->mu);
        }
    }
    if (atomic_load(&w->stop))
        return;
    pthread_mutex_lock(&w->mu);
    int workers = w->workers;
    memcpy(taken, w->taken, (size_t)w->np);
    pthread_mutex_unlock(&w->mu);
    if (workers <= 0)
        return; /* no census yet */
    int share = (w->n + workers - 1) / workers;
    /* above the share: the highest partitions go back */
    for (int i = w->n - 1; i >= 0 && owned > share; i--) {
        pthread_mutex_lock(&w->mu);
        if (w->p[i].state == L_OWNED) {
            w->p[i].state = L_RELEASE;
            owned--;
            log_info("partition %d: releasing (share %d of %d workers)", i, share, workers);
        }
        pthread_mutex_unlock(&w->mu);
    }
    /* below it: take free partitions, starting at a place of this worker's */
    uint32_t start = cluster_partition(me, (size_t)len, w->n);
    for (int k = 0; k < w->n && owned < share; k++) {
        int i = (int)((start + (uint32_t)k) % (uint32_t)w->n);
        if (take_lease(w, i, taken)) {
            owned++;
            log_info("partition %d: taken (share %d of %d workers)", i, share, workers);
        }
    }
    /* the graph: whoever finds it free first; never moved for the share */
    if (take_lease(w, w->n, taken))
        log_info("partition %d (the graph): taken", w->n);
}

/* WATCHDOG=1 every half of WatchdogSec=, from the lease thread, but only
 * while the apply thread goes round: a worker stuck in a plugin is killed
 * (and its leases run out), not kept alive by its lease thread. */
static void watchdog(struct worker *w, int64_t *last_ms)
{
    uint64_t usec = notify_watchdog_usec();
    if (usec == 0)
        return;
    int64_t half = (int64_t)(usec / 2000), now = wall_ms();
    if (now - *last_ms < half || now - atomic_load(&w->apply_round_ms) > half)
        return;
    *last_ms = now;
    notify("WATCHDOG=1");
}

/* SIGTERM and SIGINT stop the worker. SIGHUP (systemctl reload) is
 * refused with a warning: a worker applies its config at a partition's
 * open, and a reload must reach every partition at the same point of its
 * stream (spec 18), which a signal to one worker cannot do. */
static void *signal_main(void *arg)
{
    struct worker *w = arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    int sig = 0;
    while (sigwait(&set, &sig) == 0 && sig == SIGHUP)
        log_warn("reload: not applied by a signal in cluster mode: `mktd cluster reload -c FILE` "
                 "sends the campaigns to every partition (docs/cluster.md, \"Changing the "
                 "campaigns\")");
    atomic_store(&w->stop, 1);
    return NULL;
}

int cluster_worker_run(struct cluster *c, const char *config_path, const struct config *cfg)
{
    char err[1024];
    struct worker *w = xcalloc(1, sizeof(*w));
    w->c = c;
    w->cfg = cfg;
    w->config_path = config_path;
    pthread_mutex_init(&w->mu, NULL);
    pthread_mutex_init(&w->dry_mu, NULL);
    pthread_cond_init(&w->dry_cv, NULL);
    w->margin_ms = cfg->cluster.takeover_ms / 3;
    int rc = 1, n;
    if (cluster_bucket(c, "meta", 0, &w->meta, 0, err, sizeof(err)) < 0 ||
        (n = cluster_stored_partitions(c, w->meta, err, sizeof(err))) < 0 ||
        cluster_bucket(c, "leases", 0, &w->leases, 0, err, sizeof(err)) < 0 ||
        cluster_bucket(c, "budgets", 0, &w->budgets, 0, err, sizeof(err)) < 0 ||
        cluster_bucket(c, "codes", 0, &w->codes, 0, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
    }
    if (n != cfg->cluster.partitions) {
        log_error("stream %s has %d partitions; cluster.partitions says %d", cfg->cluster.stream, n,
                  cfg->cluster.partitions);
        goto out;
    }
    w->n = n;
    w->np = n + 1;
    cluster_bucket_name(c, "codes", w->codes_bucket, sizeof(w->codes_bucket));
    w->p = xcalloc((size_t)w->np, sizeof(*w->p));
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 10000;
    jo.PublishAsync.MaxPending = 1024;
    jo.PublishAsync.AckHandler = on_action_ack;
    jo.PublishAsync.AckHandlerClosure = w;
    jo.PublishAsync.StallWait = 10000;
    natsStatus s = natsConnection_JetStream(&w->pjs, c->nc, &jo);
    if (s != NATS_OK) {
        cluster_errf(err, sizeof(err), "JetStream", s, 0);
        log_error("%s", err);
        goto out;
    }
    /* (before the gateway, whose HTTP threads read the outputs' counts) */
    w->outs = cluster_outputs_start(c, cfg, w->meta, holds_graph, w);
    struct gateway *gw = NULL;
    if (cluster_gateway_start(c, cfg, worker_metrics, w, &gw) < 0) {
        cluster_outputs_stop(w->outs);
        goto out;
    }
    pthread_t sig_t, apply_t, snap_t;
    atomic_store(&w->apply_round_ms, wall_ms());
    pthread_create(&sig_t, NULL, signal_main, w);
    pthread_create(&apply_t, NULL, apply_main, w);
    int snapshots = cfg->cluster.snapshot_ms > 0;
    if (snapshots)
        pthread_create(&snap_t, NULL, snapshot_main, w);
    log_info("worker %s: %d partitions, takeover %" PRId64 " ms, snapshots every %" PRId64 " ms",
             cfg->cluster.worker, n, cfg->cluster.takeover_ms, cfg->cluster.snapshot_ms);
    char *taken = xcalloc((size_t)w->np, 1);
    w->taken = xcalloc((size_t)w->np, 1);
    pthread_t census_t;
    pthread_create(&census_t, NULL, census_main, w);
    int64_t period = cfg->cluster.takeover_ms / 4;
    if (period < 100)
        period = 100;
    /* leases are renewed until the apply thread is done (on a stop it
     * finishes its round and closes every shard first) */
    int64_t wd_ms = 0;
    int ready = 0, stopping_told = 0;
    while (!atomic_load(&w->apply_done)) {
        int64_t t0 = wall_ms();
        lease_round(w, taken);
        if (!ready) { /* registered: a worker the others count */
            notify("READY=1");
            ready = 1;
        }
        int stopping = atomic_load(&w->stop);
        if (stopping && !stopping_told) {
            notify("STOPPING=1");
            stopping_told = 1;
        }
        watchdog(w, &wd_ms);
        while (!atomic_load(&w->apply_done) && stopping == atomic_load(&w->stop) &&
               wall_ms() < t0 + period)
            nats_Sleep(20);
    }
    /* stop: the gateway's clients get their answers; the apply thread
     * commits and closes every shard, then the leases go, so that others
     * take the partitions at once */
    cluster_gateway_stop(gw);
    cluster_outputs_stop(w->outs);
    pthread_join(apply_t, NULL);
    if (snapshots)
        pthread_join(snap_t, NULL);
    for (int i = 0; i < w->np; i++) {
        if (w->p[i].state == L_OWNED || w->p[i].state == L_RELEASE || w->p[i].state == L_RELEASED) {
            char key[32];
            lease_key(i, key, sizeof(key));
            natsStatus ds = lease_delete(w, key, w->p[i].rev);
            if (ds == NATS_OK)
                log_info("partition %d: lease given back", i);
            else
                log_warn("partition %d: lease not given back (%s): it expires after takeover", i,
                         natsStatus_GetText(ds));
        }
    }
    char key[80];
    snprintf(key, sizeof(key), "w.%s", cfg->cluster.worker);
    kvStore_Delete(w->leases, key);
    pthread_join(census_t, NULL); /* (a listing may take its timeout) */
    free(taken);
    free(w->taken);
    pthread_kill(sig_t, SIGTERM); /* when the stop came from elsewhere */
    pthread_join(sig_t, NULL);
    log_info("worker %s: stopped", cfg->cluster.worker);
    rc = 0;
out:
    jsCtx_Destroy(w->pjs);
    kvStore_Destroy(w->meta);
    kvStore_Destroy(w->leases);
    kvStore_Destroy(w->budgets);
    kvStore_Destroy(w->codes);
    free(w->p);
    for (size_t i = 0; i < w->dry_n; i++) /* came as the partitions closed */
        natsMsg_Destroy(w->dry_q[i]);
    free(w->dry_q);
    pair_counts_free(&w->capped);
    pthread_mutex_destroy(&w->mu);
    pthread_mutex_destroy(&w->dry_mu);
    pthread_cond_destroy(&w->dry_cv);
    free(w);
    return rc;
}

int cluster_configured(const char *config_path)
{
    struct errs errs = {0};
    struct config *cfg = config_load(config_path, &errs);
    errs_free(&errs);
    int yes = cfg && cfg->cluster.nats;
    if (cfg)
        config_free(cfg);
    return yes;
}

int cluster_run(const char *config_path)
{
    /* SIGTERM and SIGINT go to the signal thread alone: blocked before any
     * thread (NATS's included) starts */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct errs errs = {0};
    struct config *cfg = config_load(config_path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        log_error("%s", errs.msg[i]);
    errs_free(&errs);
    if (!cfg)
        return 1;
    log_level = cfg->log_level;
    char err[1024];
    /* the worker's shards are <database>.p<N>: one worker per database */
    struct dblock *lock = NULL;
    addr_mkdir_parent(cfg->database);
    if (dblock_take(cfg->database, &lock, err, sizeof(err)) < 0) {
        log_error("%s", err);
        config_free(cfg);
        return 1;
    }
    struct cluster *c = cluster_connect(&cfg->cluster, err, sizeof(err));
    int rc = 1;
    if (!c)
        log_error("%s", err);
    else
        rc = cluster_worker_run(c, config_path, cfg);
    cluster_close(c);
    dblock_release(lock);
    config_free(cfg);
    return rc;
}
