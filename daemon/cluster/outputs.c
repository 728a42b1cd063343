/* Cluster mode, webhook outputs (spec 15; docs/cluster.md, "Outputs"):
 * delivered from the actions stream by the worker that holds the graph
 * partition (one holder at a time, moved by its lease), each output's
 * position (the actions stream sequence it is done with) kept in the meta
 * bucket as out.<id>. As for one daemon: NDJSON bodies of up to `batch`
 * matching actions, in stream order, signed, at least once; a failure is
 * retried after 1 s, 2 s, 4 s ... up to 10 min with the same actions; a
 * new output starts at the stream's end. Which outputs there are follows
 * the graph partition's config (a `mktd cluster reload` changes them at
 * the graph's place in the stream). The requests are made with libcurl's
 * easy interface on a thread of their own. */
#include <curl/curl.h>
#include <inttypes.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "config/config.h"
#include "config/outputs.h"
#include "lib/log.h"
#include "lib/util.h"
#include "out/out.h"

#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS 600000
#define IDLE_MS 200

struct cout {
    const struct output_cfg *cfg;
    int loaded;   /* pos read from the meta bucket since the graph was taken */
    uint64_t pos; /* done with every action up to this stream sequence */
    natsSubscription *sub;
    /* the batch being delivered (kept for its retries): the matching
     * actions' lines, their first and last stream sequences, and the last
     * sequence read (cover: done with it once delivered) */
    struct sbuf body;
    uint64_t first, last, cover;
    long long lines;
    int failures;
    int64_t retry_at;
    /* for /metrics, under couts.mu: actions of the stream after pos (known
     * once read), delivered and failed since start, the last success */
    long long lag, pending, delivered_total, failures_total;
    int lag_known;
    int64_t last_success;
};

struct couts {
    struct cluster *c;
    const struct config *cfg; /* the worker's file: stream names */
    struct output_cfg *from;  /* the graph's outputs (each o[i].cfg); NULL: cfg's */
    size_t n_from;
    pthread_mutex_t mu;
    struct output_cfg *next; /* handed over by the graph, taken by the thread */
    size_t n_next;
    int have; /* outputs were handed over */
    kvStore *meta;
    int (*held)(void *arg);
    void *arg;
    struct cout *o;
    size_t n;
    pthread_t t;
    atomic_int stop;
    atomic_llong delivered, failures;
};

static void pos_key(const struct cout *o, char *buf, size_t len)
{
    snprintf(buf, len, "out.%s", o->cfg->id); /* ids are [a-z0-9_-] */
}

static void drop_sub(struct cout *o)
{
    if (o->sub) {
        natsSubscription_Unsubscribe(o->sub);
        natsSubscription_Destroy(o->sub);
        o->sub = NULL;
    }
}

static int save_pos(struct couts *os, struct cout *o)
{
    char key[96], v[32];
    pos_key(o, key, sizeof(key));
    snprintf(v, sizeof(v), "%" PRIu64, o->pos);
    uint64_t rev;
    return kvStore_Put(&rev, os->meta, key, v, (int)strlen(v)) == NATS_OK ? 0 : -1;
}

/* The output's position: the one recorded, or (a new output) the actions
 * stream's end, recorded. 0, or -1 (tried again later). */
static int load_pos(struct couts *os, struct cout *o)
{
    char key[96];
    pos_key(o, key, sizeof(key));
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, os->meta, key);
    if (s == NATS_OK) {
        o->pos = strtoull(kvEntry_ValueString(e), NULL, 10);
        kvEntry_Destroy(e);
        return 0;
    }
    if (s != NATS_NOT_FOUND)
        return -1;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, os->c->js, os->cfg->cluster.actions, NULL, &jerr) != NATS_OK)
        return -1;
    o->pos = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    if (save_pos(os, o) < 0)
        return -1;
    log_info("output %s: new, starting at the actions stream's end (sequence %" PRIu64 ")",
             o->cfg->id, o->pos);
    return 0;
}

static int listed(char *const *v, size_t n, const char *s)
{
    if (!v)
        return 1; /* no filter */
    for (size_t i = 0; s && i < n; i++)
        if (strcmp(v[i], s) == 0)
            return 1;
    return 0;
}

static void failed(struct couts *os, struct cout *o, uint64_t first, uint64_t last, const char *why)
{
    o->failures++;
    atomic_fetch_add(&os->failures, 1);
    pthread_mutex_lock(&os->mu);
    o->failures_total++;
    pthread_mutex_unlock(&os->mu);
    int64_t delay = RETRY_FIRST_MS;
    for (int i = 1; i < o->failures && delay < RETRY_MAX_MS; i++)
        delay *= 2;
    if (delay > RETRY_MAX_MS)
        delay = RETRY_MAX_MS;
    o->retry_at = wall_ms() + delay; /* the same batch again then */
    if (o->failures <= 3 || o->failures % 10 == 0)
        log_warn("output %s: delivering actions stream sequences %" PRIu64 "-%" PRIu64
                 " failed (%s); trying again in %" PRId64 " ms (try %d)",
                 o->cfg->id, first, last, why, delay, o->failures + 1);
}

static void set_lag(struct couts *os, struct cout *o, long long lag)
{
    pthread_mutex_lock(&os->mu);
    o->lag = lag;
    o->lag_known = 1;
    pthread_mutex_unlock(&os->mu);
}

/* Reads up to `batch` actions after the output's position into its
 * batch (the matching ones' lines). 1 read something, 0 nothing new. */
static int read_batch(struct couts *os, struct cout *o)
{
    const struct output_cfg *k = o->cfg;
    char err[512];
    if (!o->sub) {
        char subject[64];
        snprintf(subject, sizeof(subject), "%s.>", CLUSTER_ACTIONS_PREFIX);
        if (cluster_reader(os->c, os->cfg->cluster.actions, subject, o->pos + 1, wall_ms() + 2000,
                           &os->stop, &o->sub, "a consumer of the actions stream", err,
                           sizeof(err)) != NATS_OK) {
            log_warn("output %s: %s", k->id, err);
            return 0;
        }
    }
    jsFetchRequest req;
    jsFetchRequest_Init(&req);
    req.Batch = k->batch;
    req.NoWait = true;
    req.Expires = 100LL * 1000000LL;
    natsMsgList list = {0};
    natsStatus s = natsSubscription_FetchRequest(&list, o->sub, &req);
    if (s != NATS_OK && list.Count == 0) {
        natsMsgList_Destroy(&list);
        if (s != NATS_TIMEOUT && s != NATS_NOT_FOUND)
            drop_sub(o); /* made again next round, from pos + 1 */
        else
            set_lag(os, o, 0); /* nothing after its position */
        return 0;
    }
    o->body.len = 0;
    o->first = o->last = 0;
    o->lines = 0;
    o->cover = o->pos;
    long long read = 0, pending = 0;
    for (int i = 0; i < list.Count; i++) {
        jsMsgMetaData *md = NULL;
        if (natsMsg_GetMetaData(&md, list.Msgs[i]) != NATS_OK)
            continue;
        uint64_t seq = md->Sequence.Stream;
        pending = (long long)md->NumPending; /* after this one */
        jsMsgMetaData_Destroy(md);
        if (seq <= o->cover)
            continue;
        o->cover = seq;
        read++;
        const char *d = natsMsg_GetData(list.Msgs[i]);
        int n = natsMsg_GetDataLength(list.Msgs[i]);
        json_t *a = json_loadb(d ? d : "", (size_t)n, 0, NULL);
        int match =
            a && listed(k->kinds, k->n_kinds, json_string_value(json_object_get(a, "kind"))) &&
            listed(k->campaigns, k->n_campaigns, json_string_value(json_object_get(a, "campaign")));
        json_decref(a);
        if (!match)
            continue;
        if (!o->first)
            o->first = seq;
        o->last = seq;
        o->lines++;
        sb_add(&o->body, d, (size_t)n);
        sb_add(&o->body, "\n", 1);
    }
    natsMsgList_Destroy(&list);
    o->pending = pending;
    set_lag(os, o, read + pending);
    return o->cover > o->pos;
}

/* POSTs the output's batch. 0 delivered (2xx), -1 failed (retry set). */
static int post_batch(struct couts *os, struct cout *o)
{
    const struct output_cfg *k = o->cfg;
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE];
    CURL *easy = out_easy_new(k->url, k->id, (int64_t)o->first, (int64_t)o->last, k->secret,
                              k->secret_len, &o->body, k->timeout_ms, &hdrs, errbuf);
    CURLcode cc = easy ? curl_easy_perform(easy) : CURLE_OUT_OF_MEMORY;
    long code = 0;
    if (cc == CURLE_OK)
        curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(easy);
    curl_slist_free_all(hdrs);
    if (cc == CURLE_OK && code >= 200 && code <= 299) {
        atomic_fetch_add(&os->delivered, o->lines);
        pthread_mutex_lock(&os->mu);
        o->delivered_total += o->lines;
        o->last_success = wall_ms();
        pthread_mutex_unlock(&os->mu);
        o->failures = 0;
        o->retry_at = 0;
        return 0;
    }
    char why[CURL_ERROR_SIZE + 64];
    if (cc != CURLE_OK)
        snprintf(why, sizeof(why), "%s", errbuf[0] ? errbuf : curl_easy_strerror(cc));
    else
        snprintf(why, sizeof(why), "HTTP %ld", code);
    failed(os, o, o->first, o->last, why);
    return -1;
}

/* One round of output o: a batch read after its position (or the one
 * that failed, again), its matching actions POSTed, the position moved
 * past it. 1 when something was done, 0 idle or waiting. */
static int deliver(struct couts *os, struct cout *o)
{
    if (!o->loaded) {
        if (load_pos(os, o) < 0)
            return 0;
        o->loaded = 1;
        o->cover = o->pos; /* no batch */
    }
    if (o->cover <= o->pos && !read_batch(os, o))
        return 0;
    if (!os->held(os->arg))
        return 0; /* the graph went elsewhere meanwhile: its new holder delivers */
    if (o->body.len && post_batch(os, o) < 0)
        return 0;
    o->pos = o->cover;
    set_lag(os, o, o->pending);
    if (save_pos(os, o) < 0)
        log_warn("output %s: its position (%" PRIu64 ") not recorded now", o->cfg->id, o->pos);
    return 1;
}

/* The outputs of the config the graph handed over last (if any). One
 * dropped lets its subscription and batch go (its position stays in the
 * meta bucket); a new one reads its position there, or starts at the
 * stream's end, when first delivered. */
static void take_config(struct couts *os)
{
    pthread_mutex_lock(&os->mu);
    struct output_cfg *next = os->next;
    size_t n = os->n_next;
    int have = os->have;
    os->next = NULL;
    os->n_next = 0;
    os->have = 0;
    pthread_mutex_unlock(&os->mu);
    if (!have)
        return;
    /* an output of the same id and URL goes on as it was (its position,
     * its batch and its retries, its figures) under the new settings; the
     * others' subscriptions and batches are let go */
    size_t moved = 0;
    struct cout *o = n ? xcalloc(n, sizeof(*o)) : NULL;
    pthread_mutex_lock(&os->mu); /* (the metrics read os->o and its cfg) */
    for (size_t i = 0; i < n; i++) {
        const struct output_cfg *k = &next[i];
        for (size_t j = 0; j < os->n; j++)
            if (os->o[j].cfg && strcmp(os->o[j].cfg->id, k->id) == 0 &&
                strcmp(os->o[j].cfg->url, k->url) == 0) {
                o[i] = os->o[j];
                os->o[j].cfg = NULL; /* moved */
                moved++;
                break;
            }
        o[i].cfg = k;
    }
    int changed = moved != n || moved != os->n;
    struct cout *old = os->o;
    size_t n_old = os->n;
    struct output_cfg *from = os->from;
    size_t n_from = os->n_from;
    os->o = o;
    os->n = n;
    os->from = next;
    os->n_from = n;
    pthread_mutex_unlock(&os->mu);
    for (size_t j = 0; j < n_old; j++)
        if (old[j].cfg) {
            drop_sub(&old[j]);
            sb_free(&old[j].body);
        }
    free(old);
    outputs_cfg_free(from, n_from);
    if (changed)
        log_info("outputs: %zu, as the graph's config has them", os->n);
}

void cluster_outputs_follow(struct couts *os, struct output_cfg *o, size_t n)
{
    if (!os) {
        outputs_cfg_free(o, n);
        return;
    }
    pthread_mutex_lock(&os->mu);
    outputs_cfg_free(os->next, os->n_next);
    os->next = o;
    os->n_next = n;
    os->have = 1;
    pthread_mutex_unlock(&os->mu);
}

static void *outputs_main(void *arg)
{
    struct couts *os = arg;
    while (!atomic_load(&os->stop)) {
        int busy = 0;
        take_config(os);
        if (!os->held(os->arg)) {
            for (size_t i = 0; i < os->n; i++) { /* read again when held again */
                drop_sub(&os->o[i]);
                os->o[i].loaded = 0;
                os->o[i].retry_at = 0;
            }
            pthread_mutex_lock(&os->mu);
            for (size_t i = 0; i < os->n; i++)
                os->o[i].lag_known = 0; /* the holder's to say */
            pthread_mutex_unlock(&os->mu);
        } else {
            int64_t now = wall_ms();
            for (size_t i = 0; i < os->n && !atomic_load(&os->stop); i++)
                if (os->o[i].retry_at <= now)
                    busy |= deliver(os, &os->o[i]);
        }
        if (!busy)
            nats_Sleep(IDLE_MS);
    }
    for (size_t i = 0; i < os->n; i++) {
        drop_sub(&os->o[i]);
        sb_free(&os->o[i].body);
    }
    free(os->o);
    outputs_cfg_free(os->from, os->n_from);
    return NULL;
}

struct couts *cluster_outputs_start(struct cluster *c, const struct config *cfg, kvStore *meta,
                                    int (*held)(void *arg), void *arg)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    struct couts *os = xcalloc(1, sizeof(*os));
    os->c = c;
    os->cfg = cfg;
    os->meta = meta;
    os->held = held;
    os->arg = arg;
    /* the file's outputs until the graph hands over its config */
    os->n = cfg->n_outputs;
    os->o = os->n ? xcalloc(os->n, sizeof(*os->o)) : NULL;
    for (size_t i = 0; i < os->n; i++)
        os->o[i].cfg = &cfg->outputs[i];
    pthread_mutex_init(&os->mu, NULL);
    if (pthread_create(&os->t, NULL, outputs_main, os) != 0) {
        log_error("outputs: no thread");
        pthread_mutex_destroy(&os->mu);
        free(os->o);
        free(os);
        curl_global_cleanup();
        return NULL;
    }
    if (os->n)
        log_info("outputs: %zu, delivered from the actions stream while this worker holds the "
                 "graph",
                 os->n);
    return os;
}

void cluster_outputs_stop(struct couts *os)
{
    if (!os)
        return;
    atomic_store(&os->stop, 1);
    pthread_join(os->t, NULL);
    outputs_cfg_free(os->next, os->n_next);
    pthread_mutex_destroy(&os->mu);
    free(os);
    curl_global_cleanup();
}

void cluster_outputs_metrics(struct couts *os, struct sbuf *b)
{
    if (!os)
        return;
    pthread_mutex_lock(&os->mu);
    struct out_figures *rows = os->n ? xcalloc(os->n, sizeof *rows) : NULL;
    for (size_t i = 0; i < os->n; i++)
        rows[i] = (struct out_figures){
            .id = os->o[i].cfg->id,
            .lag = os->o[i].lag_known ? os->o[i].lag : -1,
            .delivered = (unsigned long long)os->o[i].delivered_total,
            .failures = (unsigned long long)os->o[i].failures_total,
            .last_success_ms = os->o[i].last_success,
        };
    out_metrics_text(b, rows, os->n);
    pthread_mutex_unlock(&os->mu);
    free(rows);
}

void cluster_outputs_counts(const struct couts *os, long long *delivered, long long *failures)
{
    *delivered = os ? atomic_load(&os->delivered) : 0;
    *failures = os ? atomic_load(&os->failures) : 0;
}
