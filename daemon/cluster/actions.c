/* mktd cluster actions and failed: what the workers published, read back. */
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "config/config.h"
#include "lib/util.h"

int cluster_actions(struct cluster *c, FILE *out, char *err, size_t errlen)
{
    const struct cluster_cfg *k = c->cfg;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsSubscription *sub = NULL;
    int64_t deadline = wall_ms() + CLUSTER_RETRY_MS;
    natsStatus s;
    do
        s = js_GetStreamInfo(&si, c->js, k->actions, NULL, &jerr);
    while (s != NATS_OK && cluster_retry_until(deadline, s));
    if (s != NATS_OK) {
        cluster_errf(err, errlen, "actions stream info (run mktd cluster init)", s, jerr);
        return -1;
    }
    uint64_t last = si->State.LastSeq, msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    if (msgs == 0)
        return 0;
    char subject[64];
    snprintf(subject, sizeof(subject), "%s.>", CLUSTER_ACTIONS_PREFIX);
    if (cluster_reader(c, k->actions, subject, 0, deadline, NULL, &sub,
                       "consumer of the actions stream", err, errlen) != NATS_OK)
        return -1;
    uint64_t seen = 0;
    int rc = 0;
    while (seen < last) {
        natsMsgList list = {0};
        s = natsSubscription_Fetch(&list, sub, 1024, 5000, &jerr);
        if (s != NATS_OK && list.Count == 0) {
            natsMsgList_Destroy(&list);
            if (s == NATS_TIMEOUT)
                break; /* nothing more: the last ones were removed */
            cluster_errf(err, errlen, "reading the actions stream", s, jerr);
            rc = -1;
            break;
        }
        for (int i = 0; i < list.Count; i++) {
            jsMsgMetaData *md = NULL;
            if (natsMsg_GetMetaData(&md, list.Msgs[i]) == NATS_OK) {
                seen = md->Sequence.Stream;
                jsMsgMetaData_Destroy(md);
            }
            fwrite(natsMsg_GetData(list.Msgs[i]), 1, (size_t)natsMsg_GetDataLength(list.Msgs[i]),
                   out);
            fputc('\n', out);
        }
        natsMsgList_Destroy(&list);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    fflush(out);
    return rc;
}

struct failed {
    int partition;
    uint64_t seq;
    char *json;
};

static int failed_cmp(const void *a, const void *b)
{
    const struct failed *x = a, *y = b;
    if (x->partition != y->partition)
        return x->partition < y->partition ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

int cluster_failed(struct cluster *c, FILE *out, int json, char *err, size_t errlen)
{
    kvStore *meta = NULL;
    if (cluster_bucket(c, "meta", 0, &meta, 0, err, errlen) < 0)
        return -1;
    kvKeysList kl = {0};
    natsStatus s = kvStore_Keys(&kl, meta, NULL);
    if (s == NATS_NOT_FOUND) { /* an empty bucket */
        kvStore_Destroy(meta);
        return 0;
    }
    if (s != NATS_OK) {
        cluster_errf(err, errlen, "listing the meta bucket", s, 0);
        kvStore_Destroy(meta);
        return -1;
    }
    size_t plen = strlen(CLUSTER_FAILED_PREFIX), n = 0;
    struct failed *f = xcalloc((size_t)kl.Count + 1, sizeof(*f));
    for (int i = 0; i < kl.Count; i++) {
        const char *key = kl.Keys[i];
        int part;
        uint64_t seq;
        if (strncmp(key, CLUSTER_FAILED_PREFIX, plen) != 0 ||
            sscanf(key + plen, "p%d.%" SCNu64, &part, &seq) != 2)
            continue;
        kvEntry *e = NULL;
        if (kvStore_Get(&e, meta, key) != NATS_OK)
            continue; /* deleted meanwhile */
        f[n].partition = part;
        f[n].seq = seq;
        f[n].json = xstrndup(kvEntry_ValueString(e), (size_t)kvEntry_ValueLen(e));
        kvEntry_Destroy(e);
        n++;
    }
    kvKeysList_Destroy(&kl);
    qsort(f, n, sizeof(*f), failed_cmp);
    for (size_t i = 0; i < n; i++) {
        if (json) {
            fprintf(out, "%s\n", f[i].json);
        } else {
            json_t *o = json_loads(f[i].json, 0, NULL);
            const char *id = o ? json_string_value(json_object_get(o, "id")) : NULL;
            const char *user = o ? json_string_value(json_object_get(o, "user")) : NULL;
            const char *error = o ? json_string_value(json_object_get(o, "error")) : NULL;
            char name[24];
            snprintf(name, sizeof(name),
                     f[i].partition == c->cfg->partitions ? "graph" : "partition %d",
                     f[i].partition);
            fprintf(out, "%s seq %" PRIu64 ": event %s of user %s: %s\n", name, f[i].seq,
                    id ? id : "?", user ? user : "?", error ? error : "?");
            json_decref(o);
        }
        free(f[i].json);
    }
    free(f);
    kvStore_Destroy(meta);
    return 0;
}
