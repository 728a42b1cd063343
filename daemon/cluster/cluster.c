/* Cluster mode: the NATS connection, streams, buckets and partitions. */
#include "cluster/cluster.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>
#include <openssl/evp.h>

#include "cluster/internal.h"
#include "config/config.h"
#include "lib/util.h"

#define NS_PER_MS 1000000LL

uint32_t cluster_partition(const char *user, size_t len, int partitions)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)user[i];
        h *= 16777619u;
    }
    return partitions > 0 ? h % (uint32_t)partitions : 0;
}

void cluster_event_subject(uint32_t p, char *buf, size_t len)
{
    snprintf(buf, len, "%s.%" PRIu32, CLUSTER_EVENTS_PREFIX, p);
}

static void put_str(EVP_MD_CTX *x, const char *s)
{
    size_t n = strlen(s);
    unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    EVP_DigestUpdate(x, len, sizeof(len));
    EVP_DigestUpdate(x, s, n);
}

void cluster_msg_id(const char *user, const char *id, char out[CLUSTER_MSG_ID_LEN + 1])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_MD_CTX *x = EVP_MD_CTX_new();
    if (!x || EVP_DigestInit_ex(x, EVP_sha256(), NULL) != 1)
        abort(); /* out of memory: as xmalloc */
    put_str(x, user);
    put_str(x, id);
    EVP_DigestFinal_ex(x, md, &n);
    EVP_MD_CTX_free(x);
    static const char hex[] = "0123456789abcdef";
    out[0] = 'e';
    out[1] = ':';
    for (int i = 0; i < 16; i++) {
        out[2 + 2 * i] = hex[md[i] >> 4];
        out[3 + 2 * i] = hex[md[i] & 15];
    }
    out[CLUSTER_MSG_ID_LEN] = 0;
}

natsStatus cluster_reader(struct cluster *c, const char *stream, const char *subject, uint64_t from,
                          int64_t deadline_ms, atomic_int *stop, natsSubscription **sub,
                          const char *what, char *err, size_t errlen)
{
    jsOptions jo;
    jsOptions_Init(&jo);
    int64_t left = deadline_ms - wall_ms();
    if (deadline_ms > 0 && left < 5000)
        jo.Wait = left > 500 ? left : 500;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream;
    so.Config.DeliverPolicy = from ? js_DeliverByStartSequence : js_DeliverAll;
    so.Config.OptStartSeq = from;
    so.Config.AckPolicy = js_AckNone;
    so.Config.FilterSubject = subject;
    so.Config.InactiveThreshold = 30LL * 1000000000LL;
    jsErrCode jerr = 0;
    natsStatus s;
    *sub = NULL;
    do
        s = js_PullSubscribe(sub, c->js, subject, NULL, &jo, &so, &jerr);
    while (s != NATS_OK && !(stop && atomic_load(stop)) && cluster_retry_until(deadline_ms, s));
    if (s != NATS_OK) {
        *sub = NULL;
        cluster_errf(err, errlen, what, s, jerr);
    }
    return s;
}

int cluster_first_at(struct cluster *c, const char *stream, const char *subject, uint64_t from,
                     uint64_t *seq)
{
    char api[256], body[200];
    snprintf(api, sizeof(api), "$JS.API.STREAM.MSG.GET.%s", stream);
    snprintf(body, sizeof(body), "{\"seq\":%" PRIu64 ",\"next_by_subj\":\"%s\"}", from, subject);
    natsMsg *reply = NULL;
    if (natsConnection_RequestString(&reply, c->nc, api, body, 5000) != NATS_OK)
        return -1;
    json_t *j = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
    json_t *found = json_object_get(json_object_get(j, "message"), "seq");
    json_t *code = json_object_get(json_object_get(j, "error"), "code");
    int rc = -1;
    if (json_is_integer(found)) {
        *seq = (uint64_t)json_integer_value(found);
        rc = 1;
    } else if (json_is_integer(code) && json_integer_value(code) == 404) {
        rc = 0;
    }
    json_decref(j);
    natsMsg_Destroy(reply);
    return rc;
}

/* "what: status (the library's last error)" into err. */
void cluster_errf(char *err, size_t errlen, const char *what, natsStatus s, jsErrCode jerr)
{
    const char *last = nats_GetLastError(NULL);
    if (jerr)
        snprintf(err, errlen, "%s: %s (JetStream error %d%s%s)", what, natsStatus_GetText(s),
                 (int)jerr, last && *last ? ": " : "", last ? last : "");
    else
        snprintf(err, errlen, "%s: %s%s%s", what, natsStatus_GetText(s), last && *last ? ": " : "",
                 last ? last : "");
}

struct cluster *cluster_connect(const struct cluster_cfg *k, char *err, size_t errlen)
{
    natsOptions *o = NULL;
    natsStatus s;
    struct cluster *c = xcalloc(1, sizeof(*c));
    c->cfg = k;
    char name[128];
    snprintf(name, sizeof(name), "mktd %s", k->worker);
    if ((s = natsOptions_Create(&o)) != NATS_OK ||
        (s = natsOptions_SetServers(o, (const char **)k->nats, (int)k->n_nats)) != NATS_OK ||
        (s = natsOptions_SetName(o, name)) != NATS_OK ||
        (s = natsOptions_SetTimeout(o, 2000)) != NATS_OK ||
        (s = natsOptions_SetMaxReconnect(o, -1)) != NATS_OK ||
        (s = natsOptions_SetReconnectWait(o, 250)) != NATS_OK) {
        cluster_errf(err, errlen, "NATS options", s, 0);
        goto fail;
    }
    if ((s = natsConnection_Connect(&c->nc, o)) != NATS_OK) {
        char what[512];
        snprintf(what, sizeof(what), "cannot connect to NATS (%s%s)", k->nats[0],
                 k->n_nats > 1 ? ", ..." : "");
        cluster_errf(err, errlen, what, s, 0);
        goto fail;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = 5000;
    if ((s = natsConnection_JetStream(&c->js, c->nc, &jo)) != NATS_OK) {
        cluster_errf(err, errlen, "JetStream", s, 0);
        goto fail;
    }
    natsOptions_Destroy(o);
    return c;
fail:
    natsOptions_Destroy(o);
    cluster_close(c);
    return NULL;
}

void cluster_close(struct cluster *c)
{
    if (!c)
        return;
    jsCtx_Destroy(c->js);
    if (c->nc) {
        natsConnection_FlushTimeout(c->nc, 1000);
        natsConnection_Destroy(c->nc);
    }
    free(c);
}

void cluster_bucket_name(const struct cluster *c, const char *what, char *buf, size_t len)
{
    snprintf(buf, len, "%s_%s", c->cfg->stream, what);
}

/* Creates stream name over subject (prefix.*), or finds it as it is; a
 * stream that differs only in its duplicate window gets the new window. */
static int ensure_stream(struct cluster *c, const char *name, const char *prefix,
                         int64_t dup_window_ms, uint64_t *msgs, FILE *out, char *err, size_t errlen)
{
    jsStreamConfig sc;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    char subject[64];
    snprintf(subject, sizeof(subject), "%s.*", prefix);
    const char *subjects[] = {subject};
    jsStreamConfig_Init(&sc);
    sc.Name = name;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    sc.Replicas = c->cfg->replicas;
    sc.Duplicates = dup_window_ms * NS_PER_MS;
    int64_t deadline = wall_ms() + CLUSTER_RETRY_MS;
    natsStatus s;
    do
        s = js_AddStream(&si, c->js, &sc, NULL, &jerr);
    while (s != NATS_OK && cluster_retry_until(deadline, s));
    const char *how = "ready";
    if (s != NATS_OK && jerr == JSStreamNameExistErr) {
        /* the same shape but another duplicate window (cluster.snapshot or
         * takeover changed): the window is updated */
        jsStreamInfo *have = NULL;
        jsErrCode j2 = 0;
        if (js_GetStreamInfo(&have, c->js, name, NULL, &j2) == NATS_OK) {
            const jsStreamConfig *hc = have->Config;
            if (hc->SubjectsLen == 1 && strcmp(hc->Subjects[0], subject) == 0 &&
                hc->Replicas == sc.Replicas && hc->Storage == sc.Storage &&
                hc->Duplicates != sc.Duplicates) {
                jerr = 0;
                s = js_UpdateStream(&si, c->js, &sc, NULL, &jerr);
                how = "duplicate window updated";
            }
            jsStreamInfo_Destroy(have);
        }
    }
    if (s == NATS_OK) {
        fprintf(out,
                "stream %s: %s (subjects %s, %" PRId64 " replicas, duplicate window %" PRId64
                " s, %" PRIu64 " messages)\n",
                name, how, subject, si->Config->Replicas,
                (int64_t)(si->Config->Duplicates / 1000000000LL), si->State.Msgs);
        if (msgs)
            *msgs = si->State.Msgs;
        jsStreamInfo_Destroy(si);
        return 0;
    }
    char what[256];
    if (jerr == JSStreamNameExistErr)
        snprintf(what, sizeof(what),
                 "stream %s exists with another configuration (mktd wants subjects %s, %d "
                 "replicas)",
                 name, subject, c->cfg->replicas);
    else
        snprintf(what, sizeof(what), "cannot create stream %s", name);
    cluster_errf(err, errlen, what, s, jerr);
    return -1;
}

int64_t cluster_actions_dup_window_ms(const struct cluster_cfg *k)
{
    int64_t w = k->snapshot_ms + k->takeover_ms;
    return w > 3600000 ? w : 3600000;
}

int cluster_transient(natsStatus s)
{
    return s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS || s == NATS_CONNECTION_DISCONNECTED ||
           s == NATS_STALE_CONNECTION;
}

int cluster_retry_until(int64_t deadline_ms, natsStatus s)
{
    if (!cluster_transient(s) || wall_ms() >= deadline_ms)
        return 0;
    nats_Sleep(250); /* a leader being elected, or a server being reconnected to */
    return 1;
}

char *cluster_ask(struct cluster *c, const char *subject, const char *header, const char *value,
                  const char *body, size_t len, int64_t wait_ms, natsStatus *st)
{
    int64_t deadline = wall_ms() + wait_ms;
    natsStatus s;
    for (;;) {
        natsMsg *reply = NULL, *req = NULL;
        s = natsMsg_Create(&req, subject, NULL, body, (int)len);
        if (s == NATS_OK && header)
            s = natsMsgHeader_Set(req, header, value);
        if (s == NATS_OK)
            s = natsConnection_RequestMsg(&reply, c->nc, req, 5000);
        natsMsg_Destroy(req);
        if (s == NATS_OK) {
            int n = natsMsg_GetDataLength(reply);
            const char *d = natsMsg_GetData(reply);
            char *a = xmalloc((size_t)n + 2);
            memcpy(a, d ? d : "", (size_t)n);
            if (n == 0 || a[n - 1] != '\n')
                a[n++] = '\n';
            a[n] = 0;
            natsMsg_Destroy(reply);
            return a;
        }
        if (wall_ms() >= deadline ||
            (s != NATS_NO_RESPONDERS && s != NATS_TIMEOUT && !cluster_transient(s)))
            break;
        nats_Sleep(200);
    }
    *st = s;
    return NULL;
}

int cluster_bucket(struct cluster *c, const char *what, int64_t ttl_ms, kvStore **kv, int create,
                   char *err, size_t errlen)
{
    char bucket[80];
    natsStatus s;
    cluster_bucket_name(c, what, bucket, sizeof(bucket));
    int64_t deadline = wall_ms() + CLUSTER_RETRY_MS;
again:
    if (create) {
        kvConfig kc;
        kvConfig_Init(&kc);
        kc.Bucket = bucket;
        kc.History = 1;
        kc.Replicas = c->cfg->replicas;
        kc.StorageType = js_FileStorage;
        kc.TTL = ttl_ms * NS_PER_MS;
        s = js_CreateKeyValue(kv, c->js, &kc);
    } else {
        s = js_KeyValue(kv, c->js, bucket);
    }
    if (s != NATS_OK && cluster_retry_until(deadline, s))
        goto again;
    if (s != NATS_OK) {
        char w[160];
        snprintf(w, sizeof(w), "%s key-value bucket %s%s", create ? "cannot create" : "no", bucket,
                 create ? "" : " (run mktd cluster init)");
        cluster_errf(err, errlen, w, s, 0);
        return -1;
    }
    return 0;
}

int cluster_stored_partitions(struct cluster *c, kvStore *meta, char *err, size_t errlen)
{
    kvEntry *e = NULL;
    int64_t deadline = wall_ms() + CLUSTER_RETRY_MS;
    natsStatus s;
    do
        s = kvStore_Get(&e, meta, "partitions");
    while (s != NATS_OK && cluster_retry_until(deadline, s));
    if (s != NATS_OK) {
        cluster_errf(err, errlen, "the cluster's partition count (run mktd cluster init)", s, 0);
        return -1;
    }
    int n = atoi(kvEntry_ValueString(e));
    kvEntry_Destroy(e);
    if (n < 1 || n > 1024) {
        snprintf(err, errlen, "the cluster's partition count in NATS is not valid (%d)", n);
        return -1;
    }
    return n;
}

int cluster_init(struct cluster *c, int *empty, FILE *out, char *err, size_t errlen)
{
    const struct cluster_cfg *k = c->cfg;
    kvStore *meta = NULL, *leases = NULL, *budgets = NULL, *codes = NULL;
    int rc = -1;
    /* events: duplicates within 10 minutes are found by JetStream, older
     * ones by the partition's owner (its event-id filter). Actions: an owner
     * that takes over from a snapshot publishes again what was applied
     * after it, up to a snapshot interval plus the takeover time late
     * (spec 18): the window covers that, and at least an hour. */
    uint64_t events = 0;
    if (ensure_stream(c, k->stream, CLUSTER_EVENTS_PREFIX, 600000, &events, out, err, errlen) < 0 ||
        ensure_stream(c, k->actions, CLUSTER_ACTIONS_PREFIX, cluster_actions_dup_window_ms(k), NULL,
                      out, err, errlen) < 0 ||
        ensure_stream(c, k->snapshots, CLUSTER_SNAP_PREFIX, 120000, NULL, out, err, errlen) < 0)
        return -1;
    *empty = events == 0;
    if (cluster_bucket(c, "meta", 0, &meta, 1, err, errlen) < 0 ||
        cluster_bucket(c, "leases", k->takeover_ms, &leases, 1, err, errlen) < 0 ||
        cluster_bucket(c, "budgets", 0, &budgets, 1, err, errlen) < 0 ||
        cluster_bucket(c, "codes", 0, &codes, 1, err, errlen) < 0)
        goto out;
    char v[16];
    uint64_t rev = 0;
    snprintf(v, sizeof(v), "%d", k->partitions);
    int64_t deadline = wall_ms() + CLUSTER_RETRY_MS;
    natsStatus s;
    do
        s = kvStore_Create(&rev, meta, "partitions", v, (int)strlen(v));
    while (s != NATS_OK && cluster_retry_until(deadline, s));
    if (s == NATS_OK) {
        fprintf(out, "partitions: %d\n", k->partitions);
    } else {
        int have = cluster_stored_partitions(c, meta, err, errlen);
        if (have < 0)
            goto out;
        if (have != k->partitions) {
            snprintf(err, errlen,
                     "stream %s was made with %d partitions; cluster.partitions says %d "
                     "(partitions are fixed for a stream's life)",
                     k->stream, have, k->partitions);
            goto out;
        }
        fprintf(out, "partitions: %d (as before)\n", have);
    }
    char b1[80], b2[80];
    cluster_bucket_name(c, "meta", b1, sizeof(b1));
    cluster_bucket_name(c, "leases", b2, sizeof(b2));
    fprintf(out, "buckets %s, %s: ready\n", b1, b2);
    rc = 0;
out:
    kvStore_Destroy(meta);
    kvStore_Destroy(leases);
    kvStore_Destroy(budgets);
    kvStore_Destroy(codes);
    return rc;
}

/* ,"snapshot":{...} of a partition's newest snapshot, if it has one */
static void snapshot_json(struct sbuf *b, const struct snap_rec *r, int64_t now)
{
    if (r->seq)
        sb_fmt(b,
               ",\"snapshot\":{\"applied_seq\":%" PRIu64 ",\"stream_seq\":%" PRIu64
               ",\"chunks\":%d,\"bytes\":%" PRId64 ",\"age_ms\":%" PRId64 "}",
               r->applied, r->seq, r->chunks, r->size, now - r->ms);
}

/* A partition's owner and how far it got (-1: not known), after
 * "owner": in status's JSON. */
static void owner_json(struct sbuf *b, const char *owner, int64_t applied, int64_t lag,
                       int64_t published, const struct snap_rec *snap, int64_t now)
{
    sb_json_str_or_null(b, owner);
    if (applied >= 0)
        sb_fmt(b, ",\"applied_seq\":%" PRId64, applied);
    if (lag >= 0)
        sb_fmt(b, ",\"lag\":%" PRId64, lag);
    if (published >= 0)
        sb_fmt(b, ",\"actions_published\":%" PRId64, published);
    snapshot_json(b, snap, now);
}

/* Each partition's trim record (zeros where none, or not read). */
static void read_trims(kvStore *meta, int n, struct trim_rec *t)
{
    for (int p = 0; p < n; p++)
        if (cluster_trim_get(meta, p, &t[p]) < 0)
            memset(&t[p], 0, sizeof(t[p]));
}

int cluster_status(struct cluster *c, FILE *out, int json, char *err, size_t errlen)
{
    const struct cluster_cfg *k = c->cfg;
    kvStore *meta = NULL, *leases = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    int rc = -1, n;
    uint64_t *msgs = NULL, total_ticks = 0;
    char **owner = NULL;
    int64_t *applied = NULL, *published = NULL, *lag = NULL; /* -1: not known */
    struct snap_rec *snap = NULL;                            /* seq 0: none recorded */
    uint64_t *ticks = NULL; /* tick messages applied by the owners */
    struct trim_rec *trim = NULL;
    uint64_t events = 0;
    if (cluster_bucket(c, "meta", 0, &meta, 0, err, errlen) < 0 ||
        (n = cluster_stored_partitions(c, meta, err, errlen)) < 0 ||
        cluster_bucket(c, "leases", 0, &leases, 0, err, errlen) < 0)
        goto out;
    jsOptions o;
    jsOptions_Init(&o);
    char filter[64];
    snprintf(filter, sizeof(filter), "%s.>", CLUSTER_EVENTS_PREFIX);
    o.Stream.Info.SubjectsFilter = filter;
    int64_t deadline = wall_ms() + CLUSTER_RETRY_MS;
    natsStatus s;
    /* the stream's messages per subject and the trims' counts of those
     * purged, read as of one moment: the trims read before and after the
     * stream's info, again while a trim came in between (its messages
     * would count twice, or not at all) */
    trim = xcalloc((size_t)n + 1, sizeof(*trim));
    struct trim_rec *after = xcalloc((size_t)n + 1, sizeof(*after));
    for (int round = 0;; round++) {
        read_trims(meta, n, trim);
        do
            s = js_GetStreamInfo(&si, c->js, k->stream, &o, &jerr);
        while (s != NATS_OK && cluster_retry_until(deadline, s));
        if (s != NATS_OK)
            break;
        read_trims(meta, n, after);
        if (round == 4 || memcmp(trim, after, (size_t)n * sizeof(*trim)) == 0)
            break;
        jsStreamInfo_Destroy(si);
        si = NULL;
    }
    free(after);
    if (s != NATS_OK) {
        cluster_errf(err, errlen, "stream info", s, jerr);
        goto out;
    }
    /* [n]: the graph partition (worker.c) */
    msgs = xcalloc((size_t)n + 1, sizeof(*msgs));
    owner = xcalloc((size_t)n + 1, sizeof(*owner));
    applied = xcalloc((size_t)n + 1, sizeof(*applied));
    published = xcalloc((size_t)n + 1, sizeof(*published));
    lag = xcalloc((size_t)n + 1, sizeof(*lag));
    snap = xcalloc((size_t)n + 1, sizeof(*snap));
    ticks = xcalloc((size_t)n + 1, sizeof(*ticks));
    if (si->State.Subjects) {
        size_t plen = strlen(CLUSTER_EVENTS_PREFIX);
        for (int i = 0; i < si->State.Subjects->Count; i++) {
            const jsStreamStateSubject *ss = &si->State.Subjects->List[i];
            if (strncmp(ss->Subject, CLUSTER_EVENTS_PREFIX, plen) != 0 || ss->Subject[plen] != '.')
                continue;
            long p = strtol(ss->Subject + plen + 1, NULL, 10);
            if (p >= 0 && p < n)
                msgs[p] = ss->Msgs;
        }
    }
    for (int p = 0; p <= n; p++) {
        char key[32];
        kvEntry *e = NULL;
        snprintf(key, sizeof(key), "p%d", p);
        natsStatus ls;
        do
            ls = kvStore_Get(&e, leases, key);
        while (ls != NATS_OK && cluster_retry_until(deadline, ls));
        if (ls == NATS_OK) {
            owner[p] = xstrdup(kvEntry_ValueString(e));
            kvEntry_Destroy(e);
        }
        /* written by the partition's owners (app.p<N> now and then, and
         * after each tick) */
        applied[p] = published[p] = lag[p] = -1;
        snprintf(key, sizeof(key), "app.p%d", p);
        if (kvStore_Get(&e, meta, key) == NATS_OK) {
            /* "<applied> <waiting> <ticks>" (a worker of before lag:
             * "<applied>"; of before ticks: "<applied> <waiting>") */
            char *end;
            applied[p] = strtoll(kvEntry_ValueString(e), &end, 10);
            if (*end == ' ')
                lag[p] = strtoll(end + 1, &end, 10);
            if (*end == ' ')
                ticks[p] = strtoull(end + 1, NULL, 10);
            kvEntry_Destroy(e);
        }
        /* the partition's messages (those in the stream, and those
         * trimmed behind the snapshots) are its events and its ticks
         * (configs, forgets and the graph's deliveries count as ticks; the
         * graph has no subject of its own) */
        if (p < n)
            msgs[p] += trim[p].msgs;
        uint64_t t = ticks[p] < msgs[p] ? ticks[p] : msgs[p];
        msgs[p] -= t;
        total_ticks += p < n ? t : 0;
        events += p < n ? msgs[p] : 0;
        snprintf(key, sizeof(key), "pub.p%d", p);
        if (kvStore_Get(&e, meta, key) == NATS_OK) {
            published[p] = strtoll(kvEntry_ValueString(e), NULL, 10);
            kvEntry_Destroy(e);
        }
        if (cluster_snap_get(meta, p, &snap[p]) != 0)
            snap[p].seq = 0;
    }
    /* budgets' pools (none listed from a cluster made before them) */
    struct pool_sum *pools = NULL;
    size_t n_pools = 0;
    kvStore *budgets = NULL;
    if (cluster_bucket(c, "budgets", 0, &budgets, 0, err, errlen) == 0) {
        cluster_pools(budgets, &pools, &n_pools);
        kvStore_Destroy(budgets);
    }
    err[0] = 0;
    int64_t now = wall_ms();
    if (json) {
        struct sbuf b = {0};
        sb_str(&b, "{\"stream\":");
        sb_json_str_or_null(&b, k->stream);
        sb_fmt(&b, ",\"events\":%" PRIu64 ",\"ticks\":%" PRIu64 ",\"partitions\":[", events,
               total_ticks);
        for (int p = 0; p < n; p++) {
            sb_fmt(&b,
                   "%s{\"partition\":%d,\"events\":%" PRIu64 ",\"ticks\":%" PRIu64 ",\"owner\":",
                   p ? "," : "", p, msgs[p], ticks[p]);
            owner_json(&b, owner[p], applied[p], lag[p], published[p], &snap[p], now);
            if (trim[p].seq)
                sb_fmt(&b, ",\"trimmed_seq\":%" PRIu64, trim[p].seq);
            sb_str(&b, "}");
        }
        sb_str(&b, "],\"graph\":{\"owner\":");
        owner_json(&b, owner[n], applied[n], lag[n], published[n], &snap[n], now);
        sb_str(&b, "},\"budgets\":[");
        for (size_t i = 0; i < n_pools; i++) {
            sb_str(&b, i ? ",{\"pool\":" : "{\"pool\":");
            sb_json_str_or_null(&b, pools[i].name);
            sb_fmt(&b, ",\"claimed\":%" PRId64 ",\"claims\":%" PRId64 ",\"limit\":%" PRId64 "}",
                   pools[i].claimed, pools[i].claims, pools[i].limit);
        }
        fputs(b.s, out);
        sb_free(&b);
        fprintf(out, "]}\n");
    } else {
        fprintf(out, "stream %s: %" PRIu64 " events, %" PRIu64 " ticks, %d partitions\n", k->stream,
                events, total_ticks, n);
        fprintf(out, "%-10s %12s %12s %8s %10s %12s %9s %12s  %s\n", "partition", "events",
                "applied_seq", "lag", "actions", "snapshot_seq", "snap_age", "trimmed_seq",
                "owner");
        for (int p = 0; p <= n; p++) {
            char a[24] = "-", b[24] = "-", l[24] = "-", sq[24] = "-", sa[24] = "-", name[24],
                 ev[24] = "-", tr[24] = "-";
            if (trim[p].seq)
                snprintf(tr, sizeof(tr), "%" PRIu64, trim[p].seq);
            snprintf(name, sizeof(name), p < n ? "%d" : "graph", p);
            if (p < n)
                snprintf(ev, sizeof(ev), "%" PRIu64, msgs[p]);
            if (snap[p].seq) {
                snprintf(sq, sizeof(sq), "%" PRIu64, snap[p].applied);
                snprintf(sa, sizeof(sa), "%" PRId64 "s", (now - snap[p].ms) / 1000);
            }
            if (applied[p] >= 0)
                snprintf(a, sizeof(a), "%" PRId64, applied[p]);
            if (lag[p] >= 0)
                snprintf(l, sizeof(l), "%" PRId64, lag[p]);
            if (published[p] >= 0)
                snprintf(b, sizeof(b), "%" PRId64, published[p]);
            fprintf(out, "%-10s %12s %12s %8s %10s %12s %9s %12s  %s\n", name, ev, a, l, b, sq, sa,
                    tr, owner[p] ? owner[p] : "-");
        }
        for (size_t i = 0; i < n_pools; i++)
            fprintf(out,
                    "budget %s: %" PRId64 " of %" PRId64 " claimed by partitions in %" PRId64
                    " claims\n",
                    pools[i].name, pools[i].claimed, pools[i].limit, pools[i].claims);
    }
    cluster_pools_free(pools, n_pools);
    rc = 0;
out:
    if (owner)
        for (int p = 0; p <= n; p++)
            free(owner[p]);
    free(owner);
    free(applied);
    free(published);
    free(lag);
    free(snap);
    free(ticks);
    free(trim);
    free(msgs);
    jsStreamInfo_Destroy(si);
    kvStore_Destroy(meta);
    kvStore_Destroy(leases);
    return rc;
}

int cluster_kv_token(const char *key, char *buf, size_t len)
{
    size_t n = strlen(key), i;
    int plain = n > 0;
    for (i = 0; i < n && plain; i++) {
        char c = key[i];
        plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-';
    }
    if (plain) {
        if (n + 1 > len)
            return -1;
        memcpy(buf, key, n + 1);
        return 0;
    }
    if (2 * n + 2 > len)
        return -1;
    buf[0] = '=';
    for (i = 0; i < n; i++)
        snprintf(buf + 1 + 2 * i, 3, "%02x", (unsigned char)key[i]);
    return 0;
}
