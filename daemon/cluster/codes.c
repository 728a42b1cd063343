/* The code registry (spec 17): unique keys (coupon codes) claimed in one
 * partition made known to the others, so that a `coupon.used` of a code
 * issued in another partition is rejected `not_owner`, not `unknown`.
 * Keys of the bucket "<stream>_codes": "<ns>.<key>" (each a key-value
 * token) = "<partition> <campaign>". An owner registers its partition's
 * new keys after each commit, published without waiting like its actions;
 * a partition asks the bucket only for a key its own shard does not
 * hold. A key the bucket gives to the partition asking is free to it: its
 * shard is the truth, and a shard without the key is one replayed from
 * before the claim (after a takeover), which claims it again as it did
 * (the same code, drawn from the same HMAC). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster/internal.h"
#include "lib/log.h"
#include "lib/util.h"

static int code_key(const char *ns, const char *key, char *buf, size_t len)
{
    char a[200], b[300];
    if (cluster_kv_token(ns, a, sizeof(a)) < 0 || cluster_kv_token(key, b, sizeof(b)) < 0)
        return -1;
    int n = snprintf(buf, len, "%s.%s", a, b);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

static int registry_lookup(void *arg, const char *ns, const char *key, char *campaign, size_t len)
{
    struct codes_part *cp = arg;
    char k[520];
    if (code_key(ns, key, k, sizeof(k)) < 0)
        return -ENOENT;
    kvEntry *e = NULL;
    int64_t deadline = wall_ms() + cp->reach->wait_ms;
    natsStatus s;
    do
        s = kvStore_Get(&e, cp->kv, k);
    while (s != NATS_OK && s != NATS_NOT_FOUND && cluster_retry_until(deadline, s));
    if (s == NATS_NOT_FOUND)
        return -ENOENT;
    if (s != NATS_OK) {
        log_error("code registry: %s: %s", k, natsStatus_GetText(s));
        cp->reach->down = "code registry";
        return -EAGAIN;
    }
    int partition = -1, used = 0;
    const char *v = kvEntry_ValueString(e);
    int ok =
        sscanf(v, "%d %n", &partition, &used) == 1 && used > 0 && v[used] && strlen(v + used) < len;
    if (ok && partition == cp->partition)
        ok = 0; /* this partition's own claim: see above */
    if (ok)
        snprintf(campaign, len, "%s", v + used);
    kvEntry_Destroy(e);
    return ok ? 0 : -ENOENT;
}

void cluster_codes_init(struct codes_part *cp, kvStore *kv, int partition, struct reach *reach)
{
    memset(cp, 0, sizeof(*cp));
    cp->partition = partition;
    cp->ops.lookup = registry_lookup;
    cp->ops.arg = cp;
    cp->kv = kv;
    cp->reach = reach;
}

int cluster_code_publish(jsCtx *js, const char *bucket, int partition, const char *ns,
                         const char *key, const char *campaign)
{
    char k[520], subject[700], v[160];
    if (code_key(ns, key, k, sizeof(k)) < 0)
        return -1;
    snprintf(subject, sizeof(subject), "$KV.%s.%s", bucket, k);
    int n = snprintf(v, sizeof(v), "%d %s", partition, campaign);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, v, n);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 5000;
    if (s == NATS_OK)
        s = js_PublishMsgAsync(js, &m, &po);
    natsMsg_Destroy(m); /* NULL when the library took it */
    return s == NATS_OK ? 0 : -1;
}
