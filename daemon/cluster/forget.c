/* Forget in cluster mode (spec 18): the user's messages erased from the
 * event stream. The owner of the user's partition calls it once the forget
 * message is applied (worker.c); the shards are forgotten by the engine. */
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/internal.h"
#include "lib/log.h"
#include "lib/util.h"

/* Whether message m is an event of user (ticks, configs and forgets carry
 * a header of their own and are no events). */
static int of_user(natsMsg *m, const char *user)
{
    const char *h = NULL;
    if (natsMsgHeader_Get(m, CLUSTER_CONFIG_HEADER, &h) == NATS_OK ||
        natsMsgHeader_Get(m, CLUSTER_FORGET_HEADER, &h) == NATS_OK ||
        natsMsgHeader_Get(m, CLUSTER_TICK_HEADER, &h) == NATS_OK)
        return 0;
    json_t *j = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
    const char *u = json_string_value(json_object_get(j, "user"));
    int yes = u && strcmp(u, user) == 0;
    json_decref(j);
    return yes;
}

int cluster_erase_user(struct cluster *c, int idx, const char *user, uint64_t before)
{
    char subject[64], err[512];
    cluster_event_subject((uint32_t)idx, subject, sizeof(subject));
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    natsStatus s = cluster_reader(c, c->cfg->stream, subject, 0, 0, NULL, &sub,
                                  "a consumer to erase from", err, sizeof(err));
    if (s != NATS_OK) {
        log_error("partition %d: %s", idx, err);
        return -1;
    }
    uint64_t *seqs = NULL;
    size_t n = 0, cap = 0;
    int done = 0, rc = 0;
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
            if (seq >= before) {
                done = 1;
            } else if (of_user(list.Msgs[i], user)) {
                if (n == cap) {
                    cap = cap ? 2 * cap : 64;
                    seqs = xrealloc(seqs, cap * sizeof(*seqs));
                }
                seqs[n++] = seq;
            }
        }
        natsMsgList_Destroy(&list);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    /* erased: overwritten, then removed */
    size_t erased = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t deadline = wall_ms() + CLUSTER_RETRY_MS;
        do
            s = js_EraseMsg(c->js, c->cfg->stream, seqs[i], NULL, &jerr);
        while (s != NATS_OK && cluster_retry_until(deadline, s));
        if (s == NATS_OK) {
            erased++;
        } else {
            cluster_errf(err, sizeof(err), "erasing a message", s, jerr);
            log_error("partition %d: stream sequence %" PRIu64 ": %s", idx, seqs[i], err);
            rc = -1;
        }
    }
    free(seqs);
    return rc < 0 ? -1 : (int)erased;
}
