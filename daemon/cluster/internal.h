/* What the files of daemon/cluster/ share; nothing outside includes it. */
#ifndef MKTD_CLUSTER_INTERNAL_H
#define MKTD_CLUSTER_INTERNAL_H

#include <nats/nats.h>

#include "cluster/cluster.h"

#define CLUSTER_EVENTS_PREFIX "mktd.events"
#define CLUSTER_ACTIONS_PREFIX "mktd.actions"

struct cluster {
    const struct cluster_cfg *cfg;
    natsConnection *nc;
    jsCtx *js;
};

/* How long a JetStream request is tried again while a stream's leader is
 * being elected (4.5-6 s seen when a server dies) or a server reconnected. */
#define CLUSTER_RETRY_MS 20000

/* Whether s may pass by itself (a timeout, no responders, a disconnect). */
int cluster_transient(natsStatus s);
/* When s is transient and deadline_ms (wall clock) not reached: waits a
 * little and returns 1 (try again); else 0. */
int cluster_retry_until(int64_t deadline_ms, natsStatus s);

/* "what: status (JetStream error N: the library's last error)" into err. */
void cluster_errf(char *err, size_t errlen, const char *what, natsStatus s, jsErrCode jerr);
/* The bucket of this cluster called what: "<stream>_<what>". */
void cluster_bucket_name(const struct cluster *c, const char *what, char *buf, size_t len);
/* Opens (or with create, creates; ttl_ms 0: entries never expire) the
 * bucket what. 0, or -1 with err. */
int cluster_bucket(struct cluster *c, const char *what, int64_t ttl_ms, kvStore **kv, int create,
                   char *err, size_t errlen);
/* The partition count kept in the meta bucket, or -1 with err. */
int cluster_stored_partitions(struct cluster *c, kvStore *meta, char *err, size_t errlen);

#endif
