/* mktd cluster actions: the actions stream read back, oldest first. */
#include <inttypes.h>
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
    jsOptions jo;
    jsOptions_Init(&jo);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = k->actions;
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.AckPolicy = js_AckNone;
    so.Config.InactiveThreshold = 30LL * 1000000000LL;
    do
        s = js_PullSubscribe(&sub, c->js, subject, NULL, &jo, &so, &jerr);
    while (s != NATS_OK && cluster_retry_until(deadline, s));
    if (s != NATS_OK) {
        cluster_errf(err, errlen, "consumer of the actions stream", s, jerr);
        return -1;
    }
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
