/* Personal data in cluster mode (spec 14 and 18; docs/cluster.md,
 * "Forgetting a user" and "Exporting a user"):
 *
 * - forget: a forget message to every partition (each owner forgets the
 *   user in its shard where the message stands, worker.c), and the user's
 *   messages erased from the event stream by the owner of the user's
 *   partition and the graph's, each erasing what both have applied;
 * - export: the user's data asked of the owner of the user's partition and
 *   of the graph's, by request-reply (mktd.dry.<p>, header Mktd-Export). */
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "cluster/internal.h"
#include "config/config.h"
#include "lib/log.h"
#include "lib/util.h"
#include "net/admin.h"
#include "store/privacy.h"

/* Whether message m is an event of user (1), or a graph's action
 * delivered to user (2); 0 otherwise (ticks, configs and forgets carry a
 * header of their own and are no events). */
static int of_user(natsMsg *m, const char *user)
{
    const char *h = NULL;
    if (natsMsgHeader_Get(m, CLUSTER_CONFIG_HEADER, &h) == NATS_OK ||
        natsMsgHeader_Get(m, CLUSTER_FORGET_HEADER, &h) == NATS_OK ||
        natsMsgHeader_Get(m, CLUSTER_TICK_HEADER, &h) == NATS_OK)
        return 0;
    int delivered = natsMsgHeader_Get(m, CLUSTER_ACTION_HEADER, &h) == NATS_OK;
    json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
    const char *u = json_string_value(json_object_get(j, "user"));
    int yes = u && strcmp(u, user) == 0;
    json_decref(j);
    return yes ? 1 + delivered : 0;
}

int cluster_erase_msg(struct cluster *c, int idx, uint64_t seq)
{
    int64_t deadline = wall_ms() + CLUSTER_RETRY_MS;
    jsErrCode jerr = 0;
    natsStatus s;
    do
        s = js_EraseMsg(c->js, c->cfg->stream, seq, NULL, &jerr);
    while (s != NATS_OK && cluster_retry_until(deadline, s));
    if (s == NATS_OK)
        return 0;
    char err[512];
    cluster_errf(err, sizeof(err), "erasing a message", s, jerr);
    log_error("partition %d: stream sequence %" PRIu64 ": %s", idx, seq, err);
    return -1;
}

int cluster_erase_user(struct cluster *c, int idx, const char *user, uint64_t deliveries_before,
                       uint64_t events_before, int *deliveries)
{
    uint64_t before = deliveries_before > events_before ? deliveries_before : events_before;
    char subject[64], err[512];
    cluster_event_subject((uint32_t)idx, subject, sizeof(subject));
    natsSubscription *sub = NULL;
    natsStatus s = cluster_reader(c, c->cfg->stream, subject, 0, 0, NULL, &sub,
                                  "a consumer to erase from", err, sizeof(err));
    if (s != NATS_OK) {
        log_error("partition %d: %s", idx, err);
        return -1;
    }
    uint64_t *seqs = NULL;
    uint8_t *kind = NULL; /* of_user's answer for each */
    size_t n = 0, cap = 0;
    int done = 0, rc = 0;
    *deliveries = 0;
    while (!done) {
        jsFetchRequest req;
        jsFetchRequest_Init(&req);
        req.Batch = 512;
        req.NoWait = true;
        req.Expires = 2000LL * 1000000LL;
        natsMsgList list = {0};
        s = natsSubscription_FetchRequest(&list, sub, &req);
        if (s != NATS_OK && list.Count == 0) {
            natsMsgList_Destroy(&list);
            if (s != NATS_NOT_FOUND && s != NATS_TIMEOUT) {
                log_error("partition %d: reading the stream to erase: %s", idx,
                          natsStatus_GetText(s));
                rc = -1;
            }
            break;
        }
        for (int i = 0; i < list.Count && !done; i++) {
            jsMsgMetaData *md = NULL;
            if (natsMsg_GetMetaData(&md, list.Msgs[i]) != NATS_OK)
                continue;
            uint64_t seq = md->Sequence.Stream;
            jsMsgMetaData_Destroy(md);
            int mine = seq < before ? of_user(list.Msgs[i], user) : 0;
            if (seq >= (mine == 2 ? deliveries_before : events_before))
                mine = 0;
            if (seq >= before) {
                done = 1;
            } else if (mine) {
                if (n == cap) {
                    cap = cap ? 2 * cap : 64;
                    seqs = xrealloc(seqs, cap * sizeof(*seqs));
                    kind = xrealloc(kind, cap);
                }
                kind[n] = (uint8_t)mine;
                seqs[n++] = seq;
            }
        }
        natsMsgList_Destroy(&list);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    size_t erased = 0;
    for (size_t i = 0; i < n; i++) {
        if (cluster_erase_msg(c, idx, seqs[i]) == 0) {
            erased++;
            *deliveries += kind[i] == 2;
        } else {
            rc = -1;
        }
    }
    free(seqs);
    free(kind);
    return rc < 0 ? -1 : (int)erased;
}

void cluster_pseudonym_key(const struct cluster_cfg *k, unsigned char out[32])
{
    static const char label[] = "mktd pseudonym key";
    unsigned int len = 32;
    HMAC(EVP_sha256(), k->secret, (int)k->secret_len, (const unsigned char *)label,
         sizeof(label) - 1, out, &len);
}

uint64_t cluster_applied_of(kvStore *meta, int p)
{
    char key[32];
    kvEntry *e = NULL;
    snprintf(key, sizeof(key), "app.p%d", p);
    if (kvStore_Get(&e, meta, key) != NATS_OK)
        return 0;
    uint64_t a = strtoull(kvEntry_ValueString(e), NULL, 10);
    kvEntry_Destroy(e);
    return a;
}

/* Whether partition p's owner recorded an applied sequence >= seq. */
static int applied_past(kvStore *meta, int p, uint64_t seq)
{
    return cluster_applied_of(meta, p) >= seq;
}

int cluster_forget(struct cluster *c, const char *user, const char *who, int64_t wait_ms, FILE *out,
                   char *err, size_t errlen)
{
    kvStore *meta = NULL;
    int n = cluster_partitions_of(c, err, errlen), rc = -1;
    if (n < 0 || cluster_bucket(c, "meta", 0, &meta, 0, err, errlen) < 0)
        return -1;
    uint64_t *seqs = xcalloc((size_t)n, sizeof(*seqs));
    if (cluster_publish_all(c, n, "forget", CLUSTER_FORGET_HEADER, who, user, strlen(user), seqs,
                            out, err, errlen) < 0)
        goto done;
    /* every owner applies it where it stands; wait for them to say so */
    int64_t deadline = wall_ms() + wait_ms;
    int waiting = n;
    while (waiting && wall_ms() < deadline) {
        waiting = 0;
        for (int p = 0; p < n; p++)
            waiting += !applied_past(meta, p, seqs[p]);
        /* and the graph partition (worker.c), which applies partition 0's copy */
        waiting += !applied_past(meta, n, seqs[0]);
        if (waiting)
            nats_Sleep(200);
    }
    unsigned char key[32];
    char ps[PSEUDONYM_LEN + 1];
    cluster_pseudonym_key(c->cfg, key);
    if (store_pseudonym_of(key, user, ps) < 0)
        snprintf(ps, sizeof(ps), "?");
    uint32_t home = cluster_partition(user, strlen(user), n);
    struct sbuf b = {0};
    sb_str(&b, "{\"forget\":");
    sb_json_str(&b, user, strlen(user));
    sb_fmt(&b,
           ",\"status\":\"%s\",\"pseudonym\":\"%s\",\"partition\":%u,\"seq\":%" PRIu64
           ",\"partitions\":%d,\"waiting\":%d}\n",
           waiting ? "queued" : "ok", ps, home, seqs[home], n, waiting);
    fputs(b.s, out);
    sb_free(&b);
    if (waiting)
        snprintf(err, errlen,
                 "%d partitions have not applied the forget yet: their owners apply it when they "
                 "reach it (mktd cluster status)",
                 waiting);
    rc = waiting ? 1 : 0;
done:
    free(seqs);
    kvStore_Destroy(meta);
    return rc;
}

/* How long an export waits for each owner (one may be taking the
 * partition over). */
#define EXPORT_WAIT_MS 15000

/* The export object of an owner's answer line, or NULL (*why says why). */
static json_t *export_of(const char *line, const char *who, char *why, size_t whylen)
{
    json_t *j = json_loads(line, 0, NULL);
    const char *status = json_string_value(json_object_get(j, "status"));
    json_t *x = json_object_get(j, "export");
    if (status && strcmp(status, "ok") == 0 && json_is_object(x)) {
        json_incref(x);
        json_decref(j);
        return x;
    }
    const char *e = json_string_value(json_object_get(j, "error"));
    const char *d = json_string_value(json_object_get(j, "detail"));
    snprintf(why, whylen, "%s answered %s%s%s", who, e ? e : "no export", d ? ": " : "",
             d ? d : "");
    json_decref(j);
    return NULL;
}

char *cluster_export(struct cluster *c, const char *user, const char *who, char *err, size_t errlen)
{
    int n = cluster_partitions_of(c, err, errlen);
    if (n < 0)
        return NULL;
    uint32_t home = cluster_partition(user, strlen(user), n);
    char subjects[2][64], names[2][40];
    snprintf(subjects[0], sizeof(subjects[0]), "%s.%" PRIu32, CLUSTER_DRY_PREFIX, home);
    snprintf(subjects[1], sizeof(subjects[1]), "%s.%s", CLUSTER_DRY_PREFIX, CLUSTER_DRY_GRAPH);
    snprintf(names[0], sizeof(names[0]), "partition %" PRIu32 "'s owner", home);
    snprintf(names[1], sizeof(names[1]), "the graph's owner");
    json_t *parts[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        natsStatus s = NATS_OK;
        char *a = cluster_ask(c, subjects[i], CLUSTER_EXPORT_HEADER, who, user, strlen(user),
                              EXPORT_WAIT_MS, &s);
        if (!a) {
            snprintf(err, errlen, "%s did not answer (%s)", names[i], natsStatus_GetText(s));
            break;
        }
        parts[i] = export_of(a, names[i], err, errlen);
        free(a);
        if (!parts[i])
            break;
    }
    char *out = NULL;
    if (parts[0] && parts[1]) {
        /* the user's partition's data as one daemon exports it, with the
         * partition, and the graph's (referral, group-buys) beside it */
        json_object_del(parts[1], "user");
        json_object_set_new(parts[0], "partition", json_integer(home));
        json_object_set(parts[0], "graph", parts[1]);
        out = json_dumps(parts[0], JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (!out)
            snprintf(err, errlen, "no memory");
    }
    json_decref(parts[0]);
    json_decref(parts[1]);
    return out;
}

int cluster_control(struct cluster *c, int forget, const char *user, const char *who,
                    struct sbuf *out)
{
    char err[1024] = "";
    if (forget) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        int rc =
            f ? cluster_forget(c, user, who, c->cfg->takeover_ms + 10000, f, err, sizeof(err)) : -1;
        if (f)
            fclose(f);
        if (rc >= 0 && text && len)
            sb_add(out, text, len); /* {"forget",..."status":"ok"|"queued",...} */
        else
            admin_error(out, "internal", err[0] ? err : "no memory");
        free(text);
        return rc >= 0 && text && len ? rc : -1;
    }
    char *json = cluster_export(c, user, who, err, sizeof(err));
    if (!json) {
        admin_error(out, "internal", err);
        return -1;
    }
    admin_export_answer(out, json);
    free(json);
    return 0;
}
