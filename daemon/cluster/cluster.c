/* Cluster mode: the NATS connection, streams, buckets and partitions. */
#include "cluster/cluster.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <nats/nats.h>

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

/* Creates stream name over subject (prefix.*), or finds it as it is. */
static int ensure_stream(struct cluster *c, const char *name, const char *prefix,
                         int64_t dup_window_ms, FILE *out, char *err, size_t errlen)
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
    if (s == NATS_OK) {
        fprintf(out, "stream %s: ready (subjects %s, %" PRId64 " replicas, %" PRIu64 " messages)\n",
                name, subject, si->Config->Replicas, si->State.Msgs);
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

int cluster_init(struct cluster *c, FILE *out, char *err, size_t errlen)
{
    const struct cluster_cfg *k = c->cfg;
    kvStore *meta = NULL, *leases = NULL;
    int rc = -1;
    /* events: duplicates within 10 minutes are found by JetStream, older
     * ones by the partition's owner (its event-id filter) */
    if (ensure_stream(c, k->stream, CLUSTER_EVENTS_PREFIX, 600000, out, err, errlen) < 0 ||
        ensure_stream(c, k->actions, CLUSTER_ACTIONS_PREFIX, 3600000, out, err, errlen) < 0)
        return -1;
    if (cluster_bucket(c, "meta", 0, &meta, 1, err, errlen) < 0 ||
        cluster_bucket(c, "leases", k->takeover_ms, &leases, 1, err, errlen) < 0)
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
    return rc;
}

int cluster_status(struct cluster *c, FILE *out, int json, char *err, size_t errlen)
{
    const struct cluster_cfg *k = c->cfg;
    kvStore *meta = NULL, *leases = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    int rc = -1, n;
    uint64_t *msgs = NULL;
    char **owner = NULL;
    int64_t *applied = NULL, *published = NULL, *lag = NULL; /* -1: not known */
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
    do
        s = js_GetStreamInfo(&si, c->js, k->stream, &o, &jerr);
    while (s != NATS_OK && cluster_retry_until(deadline, s));
    if (s != NATS_OK) {
        cluster_errf(err, errlen, "stream info", s, jerr);
        goto out;
    }
    msgs = xcalloc((size_t)n, sizeof(*msgs));
    owner = xcalloc((size_t)n, sizeof(*owner));
    applied = xcalloc((size_t)n, sizeof(*applied));
    published = xcalloc((size_t)n, sizeof(*published));
    lag = xcalloc((size_t)n, sizeof(*lag));
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
    for (int p = 0; p < n; p++) {
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
        /* written by the partition's owners (app.p<N> now and then) */
        applied[p] = published[p] = lag[p] = -1;
        snprintf(key, sizeof(key), "app.p%d", p);
        if (kvStore_Get(&e, meta, key) == NATS_OK) {
            /* "<applied> <waiting>" (a worker of before lag: "<applied>") */
            char *end;
            applied[p] = strtoll(kvEntry_ValueString(e), &end, 10);
            if (*end == ' ')
                lag[p] = strtoll(end + 1, NULL, 10);
            kvEntry_Destroy(e);
        }
        snprintf(key, sizeof(key), "pub.p%d", p);
        if (kvStore_Get(&e, meta, key) == NATS_OK) {
            published[p] = strtoll(kvEntry_ValueString(e), NULL, 10);
            kvEntry_Destroy(e);
        }
    }
    if (json) {
        struct sbuf b = {0};
        sb_str(&b, "{\"stream\":");
        sb_json_str_or_null(&b, k->stream);
        sb_fmt(&b, ",\"events\":%" PRIu64 ",\"partitions\":[", si->State.Msgs);
        for (int p = 0; p < n; p++) {
            sb_fmt(&b, "%s{\"partition\":%d,\"events\":%" PRIu64 ",\"owner\":", p ? "," : "", p,
                   msgs[p]);
            sb_json_str_or_null(&b, owner[p]);
            if (applied[p] >= 0)
                sb_fmt(&b, ",\"applied_seq\":%" PRId64, applied[p]);
            if (lag[p] >= 0)
                sb_fmt(&b, ",\"lag\":%" PRId64, lag[p]);
            if (published[p] >= 0)
                sb_fmt(&b, ",\"actions_published\":%" PRId64, published[p]);
            sb_str(&b, "}");
        }
        fputs(b.s, out);
        sb_free(&b);
        fprintf(out, "]}\n");
    } else {
        fprintf(out, "stream %s: %" PRIu64 " events, %d partitions\n", k->stream, si->State.Msgs,
                n);
        fprintf(out, "%-10s %12s %12s %8s %10s  %s\n", "partition", "events", "applied_seq", "lag",
                "actions", "owner");
        for (int p = 0; p < n; p++) {
            char a[24] = "-", b[24] = "-", l[24] = "-";
            if (applied[p] >= 0)
                snprintf(a, sizeof(a), "%" PRId64, applied[p]);
            if (lag[p] >= 0)
                snprintf(l, sizeof(l), "%" PRId64, lag[p]);
            if (published[p] >= 0)
                snprintf(b, sizeof(b), "%" PRId64, published[p]);
            fprintf(out, "%-10d %12" PRIu64 " %12s %8s %10s  %s\n", p, msgs[p], a, l, b,
                    owner[p] ? owner[p] : "-");
        }
    }
    rc = 0;
out:
    if (owner)
        for (int p = 0; p < n; p++)
            free(owner[p]);
    free(owner);
    free(applied);
    free(published);
    free(lag);
    free(msgs);
    jsStreamInfo_Destroy(si);
    kvStore_Destroy(meta);
    kvStore_Destroy(leases);
    return rc;
}
