/* Cluster mode, shard snapshots (docs/cluster.md, "Snapshots"): a copy of
 * a partition's shard (store/backup.h) published in chunks on the
 * snapshot stream (subject mktd.snap.<p>) and recorded as snap.p<N> in the
 * meta bucket; a worker that opens a partition without its shard, or with
 * a shard behind the recorded snapshot, restores the snapshot first.
 * nats.c 3.4 has no object store: the chunks are plain stream messages. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/internal.h"
#include "config/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "store/backup.h"

#define CHUNK_BYTES (512 * 1024)
#define CHUNK_HEADROOM 4096 /* a chunk's headers and subject */
#define SNAP_MAX_CHUNKS 1000000
#define H_PARTITION "Mktd-Partition"
#define H_APPLIED "Mktd-Applied"
#define H_CHUNK "Mktd-Chunk"
#define H_CHUNKS "Mktd-Chunks"
#define H_SHA256 "Mktd-Sha256"

static void snap_key(int idx, char *buf, size_t len)
{
    snprintf(buf, len, "snap.p%d", idx);
}

/* A record of the meta bucket written, tried again for up to 5 s while
 * JetStream does not answer (a leader being elected). */
static natsStatus meta_put(kvStore *meta, const char *key, const char *v)
{
    uint64_t rev;
    int64_t deadline = wall_ms() + 5000;
    natsStatus s;
    do
        s = kvStore_Put(&rev, meta, key, v, (int)strlen(v));
    while (s != NATS_OK && cluster_retry_until(deadline, s));
    return s;
}

static void snap_subject(int idx, char *buf, size_t len)
{
    snprintf(buf, len, "%s.%d", CLUSTER_SNAP_PREFIX, idx);
}

int cluster_snap_get(kvStore *meta, int idx, struct snap_rec *r)
{
    char key[32];
    snap_key(idx, key, sizeof(key));
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, meta, key);
    if (s == NATS_NOT_FOUND)
        return -ENOENT;
    if (s != NATS_OK)
        return -1;
    json_error_t je;
    json_t *j = json_loadb(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e), 0, &je);
    kvEntry_Destroy(e);
    json_int_t seq = 0, chunks = 0, size = 0, applied = 0, ms = 0;
    const char *sha = NULL;
    int rc = -1;
    if (j &&
        json_unpack(j, "{s:I,s:I,s:I,s:s,s:I,s:I}", "seq", &seq, "chunks", &chunks, "size", &size,
                    "sha256", &sha, "applied", &applied, "ms", &ms) == 0 &&
        seq > 0 && chunks > 0 && chunks < SNAP_MAX_CHUNKS && size > 0 && applied >= 0 &&
        strlen(sha) == 64) {
        r->seq = (uint64_t)seq;
        r->chunks = (int)chunks;
        r->size = size;
        memcpy(r->sha256, sha, 65);
        r->applied = (uint64_t)applied;
        r->ms = ms;
        rc = 0;
    }
    json_decref(j);
    return rc;
}

static natsStatus publish_chunk(struct cluster *c, const char *subject, int idx, int64_t applied,
                                int i, int n, const char *sha, const char *data, int len,
                                uint64_t *seq)
{
    natsMsg *m = NULL;
    char v[4][32];
    snprintf(v[0], sizeof(v[0]), "%d", idx);
    snprintf(v[1], sizeof(v[1]), "%" PRId64, applied);
    snprintf(v[2], sizeof(v[2]), "%d", i);
    snprintf(v[3], sizeof(v[3]), "%d", n);
    natsStatus s = natsMsg_Create(&m, subject, NULL, data, len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, H_PARTITION, v[0]);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, H_APPLIED, v[1]);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, H_CHUNK, v[2]);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, H_CHUNKS, v[3]);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, H_SHA256, sha);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 10000;
    po.ExpectStream = c->cfg->snapshots;
    int64_t deadline = wall_ms() + CLUSTER_RETRY_MS;
    jsErrCode jerr = 0;
    while (s == NATS_OK) {
        jsPubAck *pa = NULL;
        s = js_PublishMsg(&pa, c->js, m, &po, &jerr);
        if (s == NATS_OK)
            *seq = pa->Sequence;
        jsPubAck_Destroy(pa);
        if (s == NATS_OK || !cluster_retry_until(deadline, s))
            break;
        s = NATS_OK;
    }
    natsMsg_Destroy(m);
    return s;
}

int cluster_snap_take(struct cluster *c, kvStore *meta, int idx, const char *shard, uint64_t since,
                      int (*still_ours)(void *arg, int idx), void *arg, uint64_t *applied_out)
{
    char tmp[4200], err[4800];
    snprintf(tmp, sizeof(tmp), "%s.snap", shard);
    int64_t t0 = wall_ms(), applied = -1;
    if (store_backup(shard, tmp, CLUSTER_APPLIED_KEY, &applied, err, sizeof(err)) < 0) {
        log_warn("partition %d: snapshot: %s", idx, err);
        return -1;
    }
    int64_t t_copy = wall_ms() - t0;
    if (applied < 0 || (uint64_t)applied <= since) {
        unlink(tmp);
        return 1; /* nothing new */
    }
    char sha[65];
    int64_t size = 0;
    char *data = NULL;
    int rc = -1;
    FILE *f = NULL;
    if (store_file_sha256(tmp, sha, &size, err, sizeof(err)) < 0 || size <= 0 || size > INT32_MAX) {
        log_warn("partition %d: snapshot: %s", idx, size > INT32_MAX ? "too large" : err);
        goto out;
    }
    /* a chunk and its headers within what the servers take in a message
     * (max_payload, 1 MB by default) */
    int64_t chunk = CHUNK_BYTES, most = natsConnection_GetMaxPayload(c->nc);
    if (most > 0 && most - CHUNK_HEADROOM < chunk)
        chunk = most - CHUNK_HEADROOM > 1024 ? most - CHUNK_HEADROOM : 1024;
    int64_t chunks = (size + chunk - 1) / chunk;
    if (chunks >= SNAP_MAX_CHUNKS) { /* a record restore would refuse */
        log_warn("partition %d: snapshot: %" PRId64 " bytes would take %" PRId64
                 " chunks of %" PRId64 " (max_payload); not taken",
                 idx, size, chunks, chunk);
        goto out;
    }
    int n = (int)chunks;
    char subject[64];
    snap_subject(idx, subject, sizeof(subject));
    data = xmalloc((size_t)chunk);
    f = fopen(tmp, "rb");
    if (!f) {
        log_warn("partition %d: snapshot: %s: %s", idx, tmp, strerror(errno));
        goto out;
    }
    int64_t t1 = wall_ms();
    uint64_t first = 0;
    for (int i = 0; i < n; i++) {
        size_t len = fread(data, 1, (size_t)chunk, f);
        if (len == 0 || ((int64_t)len < chunk && i < n - 1)) {
            log_warn("partition %d: snapshot: %s: short read", idx, tmp);
            goto out;
        }
        if (!still_ours(arg, idx)) {
            log_info("partition %d: snapshot abandoned: no longer this worker's", idx);
            goto out;
        }
        uint64_t seq = 0;
        natsStatus s = publish_chunk(c, subject, idx, applied, i, n, sha, data, (int)len, &seq);
        if (s != NATS_OK) {
            cluster_errf(err, sizeof(err), "publishing", s, 0);
            log_warn("partition %d: snapshot chunk %d of %d: %s", idx, i + 1, n, err);
            goto out;
        }
        if (i == 0)
            first = seq;
    }
    int64_t t_pub = wall_ms() - t1;
    /* recorded only while the partition is still ours, and never over a
     * newer snapshot */
    struct snap_rec old;
    if (cluster_snap_get(meta, idx, &old) == 0 && old.applied >= (uint64_t)applied) {
        log_info("partition %d: snapshot at %" PRId64 " not recorded: one at %" PRIu64 " is there",
                 idx, applied, old.applied);
        goto out;
    }
    if (!still_ours(arg, idx)) {
        log_info("partition %d: snapshot abandoned: no longer this worker's", idx);
        goto out;
    }
    char v[400], key[32];
    snprintf(v, sizeof(v),
             "{\"seq\":%" PRIu64 ",\"chunks\":%d,\"size\":%" PRId64 ",\"sha256\":\"%s\","
             "\"applied\":%" PRId64 ",\"ms\":%" PRId64 "}",
             first, n, size, sha, applied, wall_ms());
    snap_key(idx, key, sizeof(key));
    natsStatus s = meta_put(meta, key, v);
    if (s != NATS_OK) {
        log_warn("partition %d: recording the snapshot: %s", idx, natsStatus_GetText(s));
        goto out;
    }
    /* the older snapshots of the partition go (a partial newer one, of a
     * worker that died publishing it, goes with the next one recorded).
     * Nothing is older than the stream's first message: a purge "up to
     * sequence 1" would remove the whole subject, this snapshot too
     * (nats-server 2.9 reads sequence 1 as no sequence). */
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Purge.Subject = subject;
    o.Stream.Purge.Sequence = first;
    jsErrCode jerr = 0;
    s = first > 1 ? js_PurgeStream(c->js, c->cfg->snapshots, &o, &jerr) : NATS_OK;
    if (s != NATS_OK) {
        cluster_errf(err, sizeof(err), "purging older snapshots", s, jerr);
        log_warn("partition %d: %s", idx, err);
    }
    log_info("partition %d: snapshot at applied stream sequence %" PRId64 ": %" PRId64
             " bytes in %d chunks from stream sequence %" PRIu64 " (copy %" PRId64
             " ms, publish %" PRId64 " ms)",
             idx, applied, size, n, first, t_copy, t_pub);
    *applied_out = (uint64_t)applied;
    rc = 0;
out:
    if (f)
        fclose(f);
    free(data);
    unlink(tmp);
    return rc;
}

/* A header of m as an integer; -1 when absent or not one. */
static int64_t header_int(natsMsg *m, const char *name)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m, name, &v) != NATS_OK || !v || !*v)
        return -1;
    char *end;
    long long x = strtoll(v, &end, 10);
    return *end ? -1 : x;
}

/* Fetches the chunks of r into path and checks them. 0, or -1 with err. */
static int fetch_snapshot(struct cluster *c, int idx, const struct snap_rec *r, const char *path,
                          char *err, size_t errlen)
{
    char subject[64];
    snap_subject(idx, subject, sizeof(subject));
    /* the first chunk is there (else a consumer would wait for it) */
    natsMsg *fm = NULL;
    jsErrCode jerr = 0;
    int64_t deadline = wall_ms() + CLUSTER_RETRY_MS;
    natsStatus s;
    do
        s = js_GetMsg(&fm, c->js, c->cfg->snapshots, r->seq, NULL, &jerr);
    while (s != NATS_OK && cluster_retry_until(deadline, s));
    int first_ok = s == NATS_OK && strcmp(natsMsg_GetSubject(fm), subject) == 0;
    natsMsg_Destroy(fm);
    if (!first_ok) {
        if (s == NATS_OK || s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr)
            snprintf(err, errlen, "its first chunk (stream sequence %" PRIu64 ") is gone", r->seq);
        else
            cluster_errf(err, errlen, "its first chunk", s, jerr);
        return -1;
    }
    natsSubscription *sub = NULL;
    if (cluster_reader(c, c->cfg->snapshots, subject, r->seq, deadline, NULL, &sub, "consumer", err,
                       errlen) != NATS_OK)
        return -1;
    FILE *f = fopen(path, "wb");
    int rc = -1, got = 0;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    while (got < r->chunks) {
        natsMsgList list = {0};
        int want = r->chunks - got < 8 ? r->chunks - got : 8;
        s = natsSubscription_Fetch(&list, sub, want, 5000, &jerr);
        if (s != NATS_OK && list.Count == 0) {
            cluster_errf(err, errlen, "fetching chunks", s, jerr);
            if (cluster_retry_until(deadline, s))
                continue;
            goto out;
        }
        for (int i = 0; i < list.Count; i++) {
            natsMsg *m = list.Msgs[i];
            jsMsgMetaData *md = NULL;
            uint64_t sseq = 0, pending = 0;
            if (natsMsg_GetMetaData(&md, m) == NATS_OK) {
                sseq = md->Sequence.Stream;
                pending = md->NumPending;
                jsMsgMetaData_Destroy(md);
            }
            if (got + 1 < r->chunks && pending < (uint64_t)(r->chunks - got - 1)) {
                snprintf(err, errlen, "%d of its %d chunks are gone",
                         r->chunks - got - 1 - (int)pending, r->chunks);
                natsMsgList_Destroy(&list);
                goto out;
            }
            if (got == 0 && sseq != r->seq) {
                snprintf(err, errlen, "its first chunk (stream sequence %" PRIu64 ") is gone",
                         r->seq);
                natsMsgList_Destroy(&list);
                goto out;
            }
            if (header_int(m, H_PARTITION) != idx ||
                header_int(m, H_APPLIED) != (int64_t)r->applied || header_int(m, H_CHUNK) != got ||
                header_int(m, H_CHUNKS) != r->chunks) {
                snprintf(err, errlen, "chunk %d of %d (stream sequence %" PRIu64 ") is not one",
                         got + 1, r->chunks, sseq);
                natsMsgList_Destroy(&list);
                goto out;
            }
            int len = natsMsg_GetDataLength(m);
            if (len > 0 && fwrite(natsMsg_GetData(m), 1, (size_t)len, f) != (size_t)len) {
                snprintf(err, errlen, "%s: %s", path, strerror(errno));
                natsMsgList_Destroy(&list);
                goto out;
            }
            got++;
        }
        natsMsgList_Destroy(&list);
    }
    if (fclose(f) != 0) {
        f = NULL;
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        goto out;
    }
    f = NULL;
    char sha[65];
    int64_t size = 0;
    if (store_file_sha256(path, sha, &size, err, errlen) < 0)
        goto out;
    if (size != r->size || strcmp(sha, r->sha256) != 0) {
        snprintf(err, errlen,
                 "its chunks do not add up (%" PRId64 " bytes, SHA-256 %.12s...; "
                 "recorded %" PRId64 " bytes, %.12s...)",
                 size, sha, r->size, r->sha256);
        goto out;
    }
    int64_t applied = -1;
    if (store_backup_check(path, CLUSTER_APPLIED_KEY, &applied, err, errlen) < 0)
        goto out;
    if (applied != (int64_t)r->applied) {
        snprintf(err, errlen, "it holds applied sequence %" PRId64 ", recorded %" PRIu64, applied,
                 r->applied);
        goto out;
    }
    rc = 0;
out:
    if (f)
        fclose(f);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return rc;
}

int cluster_snap_restore(struct cluster *c, kvStore *meta, int idx, const char *shard)
{
    struct snap_rec r;
    int g = cluster_snap_get(meta, idx, &r);
    if (g == -ENOENT)
        return 0;
    if (g < 0) {
        log_warn("partition %d: the recorded snapshot cannot be read: replaying from the stream",
                 idx);
        return -1;
    }
    int64_t local = 0;
    int have = store_meta_peek(shard, CLUSTER_APPLIED_KEY, &local);
    if (have == 0 && local >= (int64_t)r.applied)
        return 0; /* the shard here is as new or newer */
    char tmp[4200], err[4800];
    snprintf(tmp, sizeof(tmp), "%s.restore", shard);
    int64_t t0 = wall_ms();
    if (fetch_snapshot(c, idx, &r, tmp, err, sizeof(err)) < 0 ||
        store_backup_install(tmp, shard, err, sizeof(err)) < 0) {
        unlink(tmp);
        log_warn("partition %d: snapshot at applied stream sequence %" PRIu64
                 " (stream sequence %" PRIu64 ") not usable: %s; replaying from the stream",
                 idx, r.applied, r.seq, err);
        return -1;
    }
    log_info("partition %d: restored from snapshot at applied stream sequence %" PRIu64 " (%" PRId64
             " bytes, %d chunks, %" PRId64 " ms; the shard here was at %" PRId64 ")",
             idx, r.applied, r.size, r.chunks, wall_ms() - t0, have == 0 ? local : 0);
    return 1;
}

/* ---- the event stream trimmed behind the snapshots ---- */

static void trim_key(int idx, char *buf, size_t len)
{
    snprintf(buf, len, "trim.p%d", idx);
}

int cluster_trim_get(kvStore *meta, int idx, struct trim_rec *r)
{
    char key[32];
    trim_key(idx, key, sizeof(key));
    memset(r, 0, sizeof(*r));
    kvEntry *e = NULL;
    natsStatus s = kvStore_Get(&e, meta, key);
    if (s == NATS_NOT_FOUND)
        return 0;
    if (s != NATS_OK)
        return -1;
    char *end;
    const char *v = kvEntry_ValueString(e);
    r->seq = strtoull(v, &end, 10);
    int rc = end != v && *end == ' ' ? 0 : -1;
    if (rc == 0)
        r->msgs = strtoull(end + 1, NULL, 10);
    kvEntry_Destroy(e);
    return rc;
}

uint64_t cluster_trim_max(kvStore *meta, int partitions, int *err)
{
    uint64_t max = 0;
    *err = 0;
    for (int p = 0; p < partitions; p++) {
        struct trim_rec r;
        if (cluster_trim_get(meta, p, &r) < 0)
            *err = 1;
        else if (r.seq > max)
            max = r.seq;
    }
    return max;
}

/* Purges subject's messages below seq from the event stream by the
 * JetStream API's purge request (js_PurgeStream does not say how many
 * went). How many went, or -1 with err. */
static int64_t purge_below(struct cluster *c, const char *subject, uint64_t seq, char *err,
                           size_t errlen)
{
    char api[256], body[160];
    snprintf(api, sizeof(api), "$JS.API.STREAM.PURGE.%s", c->cfg->stream);
    snprintf(body, sizeof(body), "{\"filter\":\"%s\",\"seq\":%" PRIu64 "}", subject, seq);
    natsMsg *reply = NULL;
    natsStatus s = natsConnection_RequestString(&reply, c->nc, api, body, 5000);
    if (s != NATS_OK) {
        cluster_errf(err, errlen, "purging the event stream", s, 0);
        return -1;
    }
    json_t *j = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
    json_t *purged = json_object_get(j, "purged");
    int64_t n = -1;
    if (json_is_true(json_object_get(j, "success")) && json_is_integer(purged))
        n = json_integer_value(purged);
    else
        snprintf(err, errlen, "purging the event stream: %.*s", natsMsg_GetDataLength(reply),
                 natsMsg_GetData(reply));
    json_decref(j);
    natsMsg_Destroy(reply);
    return n;
}

int cluster_trim(struct cluster *c, kvStore *meta, int idx, int partitions)
{
    struct snap_rec own, graph;
    struct trim_rec done;
    if (cluster_snap_get(meta, idx, &own) != 0 || cluster_snap_get(meta, partitions, &graph) != 0 ||
        cluster_trim_get(meta, idx, &done) < 0)
        return 0; /* (no snapshot of one of them yet) */
    uint64_t upto = own.applied < graph.applied ? own.applied : graph.applied;
    /* nats-server 2.9 reads a purge up to sequence 1 as a purge of the
     * whole subject */
    if (upto <= done.seq || upto < 1)
        return 0;
    char subject[64], err[512], key[32], v[64];
    cluster_event_subject((uint32_t)idx, subject, sizeof(subject));
    trim_key(idx, key, sizeof(key));
    /* the new bound recorded before the purge: a worker that dies between
     * the two leaves a record at or past what is gone (a shard behind it
     * is refused, never applied with events missing); the messages left
     * go with the next trim, and its count */
    snprintf(v, sizeof(v), "%" PRIu64 " %" PRIu64, upto, done.msgs);
    natsStatus s = meta_put(meta, key, v);
    if (s != NATS_OK) {
        log_warn("partition %d: recording the trim: %s", idx, natsStatus_GetText(s));
        return -1;
    }
    int64_t n = purge_below(c, subject, upto + 1, err, sizeof(err));
    if (n < 0) {
        log_warn("partition %d: %s", idx, err);
        return -1;
    }
    snprintf(v, sizeof(v), "%" PRIu64 " %" PRIu64, upto, done.msgs + (uint64_t)n);
    s = meta_put(meta, key, v);
    if (s != NATS_OK) {
        /* the messages are gone all the same: status counts them short
         * until the next trim records a total again */
        log_warn("partition %d: recording the trim: %s", idx, natsStatus_GetText(s));
        return -1;
    }
    log_info("partition %d: event stream trimmed up to stream sequence %" PRIu64 " (%" PRId64
             " messages; the partition's snapshot is at %" PRIu64 ", the graph's at %" PRIu64 ")",
             idx, upto, n, own.applied, graph.applied);
    return 1;
}
