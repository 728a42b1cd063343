/* What the files of daemon/cluster/ share; nothing outside includes it. */
#ifndef MKTD_CLUSTER_INTERNAL_H
#define MKTD_CLUSTER_INTERNAL_H

#include <nats/nats.h>
#include <stdatomic.h>

#include "cluster/cluster.h"
#include "engine/engine.h"

#define CLUSTER_EVENTS_PREFIX "mktd.events"
#define CLUSTER_ACTIONS_PREFIX "mktd.actions"
#define CLUSTER_SNAP_PREFIX "mktd.snap"
/* Dry runs (spec 18): a request on mktd.dry.<p>, the line as body, is
 * evaluated dry by partition p's owner, which answers with the answer
 * line a single daemon gives (core NATS request-reply, not the stream);
 * on mktd.dry.graph by the graph's owner, for the graph's campaigns. */
#define CLUSTER_DRY_PREFIX "mktd.dry"
#define CLUSTER_DRY_GRAPH "graph"
/* A dry request with this header is explained, whatever its line says
 * (HTTP ?explain=1). */
#define CLUSTER_EXPLAIN_HEADER "Mktd-Explain"
/* A real event published with this header (an inbox) asked for its
 * explanation (spec 10): the owner of its partition, and the graph's when
 * a graph campaign runs, send their answer lines there once the event is
 * committed, with header CLUSTER_EXPLAINED_BY ("partition" or "graph"). */
#define CLUSTER_EXPLAIN_TO "Mktd-Explain-To"
#define CLUSTER_EXPLAINED_BY "Mktd-Explained-By"
/* A request on mktd.dry.<p> with this header (who asked, for the shard's
 * oplog) is an export (spec 14): the user id as body, answered with the
 * control line's answer, {"status":"ok","export":{...}} (net/admin.h). */
#define CLUSTER_EXPORT_HEADER "Mktd-Export"
/* The shard's meta row of the last applied stream sequence. */
#define CLUSTER_APPLIED_KEY "cluster_applied"
/* A config message (spec 18: config changes reach the workers through the
 * stream, one message per partition): this header (the config's hash) and
 * the config's campaigns as body (config_campaign_text). A shard records
 * the config it applied under the path "nats:<stream>/p<N>@<seq>". */
#define CLUSTER_CONFIG_HEADER "Mktd-Config"
#define CLUSTER_CONFIG_PATH "nats:"
/* A forget message: this header (who asked), the user id as body. */
#define CLUSTER_FORGET_HEADER "Mktd-Forget"
/* An action a campaign of the graph decided for a user (spec 18: applied
 * in the user's own partition, where the user's caps apply): published by
 * the graph on the subject of the user's partition with this header (the
 * graph's action seq) and message id graph:<seq>, the action as `mktd
 * actions` prints it as body. The user's partition records it and
 * publishes it to the actions stream as one of its own. */
#define CLUSTER_ACTION_HEADER "Mktd-Action"
/* A tick (worker.c): this header, the wall ms it was made at. */
#define CLUSTER_TICK_HEADER "Mktd-Tick"
/* Events a plugin failed, set aside in the meta bucket: fail.p<N>.<seq> */
#define CLUSTER_FAILED_PREFIX "fail."

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

/* The stream sequence of stream's first message on subject (a filter) at
 * or after from (the JetStream API's message get, next by subject): 1 and
 * *seq, 0 when there is none, -1 when JetStream did not say. */
int cluster_first_at(struct cluster *c, const char *stream, const char *subject, uint64_t from,
                     uint64_t *seq);

/* An ephemeral pull consumer of stream's messages on subject (a filter)
 * from stream sequence from (0: the first), without acknowledgements,
 * dropped by its server after 30 s idle. Tried again until deadline_ms
 * (wall clock) while JetStream does not answer, unless *stop (NULL: none)
 * is set; one try waits no longer than the deadline (at least 500 ms). NATS_OK and *sub, or the
 * status and a message in err ("what:
 * ..."). */
natsStatus cluster_reader(struct cluster *c, const char *stream, const char *subject, uint64_t from,
                          int64_t deadline_ms, atomic_int *stop, natsSubscription **sub,
                          const char *what, char *err, size_t errlen);

/* "what: status (JetStream error N: the library's last error)" into err. */
void cluster_errf(char *err, size_t errlen, const char *what, natsStatus s, jsErrCode jerr);
/* The bucket of this cluster called what: "<stream>_<what>". */
void cluster_bucket_name(const struct cluster *c, const char *what, char *buf, size_t len);
/* Opens (or with create, creates; ttl_ms 0: entries never expire) the
 * bucket what. 0, or -1 with err. */
int cluster_bucket(struct cluster *c, const char *what, int64_t ttl_ms, kvStore **kv, int create,
                   char *err, size_t errlen);
/* A string as one token of a key-value key: itself when made of
 * [A-Za-z0-9_-], else "=" and its bytes in hex ('=' starts no plain
 * token). 0, or -1 when buf is too small. */
int cluster_kv_token(const char *s, char *buf, size_t len);
/* The partition count kept in the meta bucket, or -1 with err. */
int cluster_stored_partitions(struct cluster *c, kvStore *meta, char *err, size_t errlen);

/* A request to the owner behind subject (mktd.dry.<p>: dry runs and
 * exports), with header (NULL: none) = value and body: the answer's text
 * (malloc'd, ending in one newline), or NULL and *st when no owner
 * answered within wait_ms (one may be taking the partition over: asked
 * again every 200 ms meanwhile). */
char *cluster_ask(struct cluster *c, const char *subject, const char *header, const char *value,
                  const char *body, size_t len, int64_t wait_ms, natsStatus *st);

/* The actions stream's duplicate window: max(1 h, snapshot + takeover). */
int64_t cluster_actions_dup_window_ms(const struct cluster_cfg *k);

/* A partition's snapshot as recorded in the meta bucket (snap.p<N>), JSON:
 * {"seq","chunks","size","sha256","applied","ms"}. */
struct snap_rec {
    uint64_t seq;     /* stream sequence of the first chunk */
    int chunks;       /* how many */
    int64_t size;     /* bytes of the whole file */
    char sha256[65];  /* of the whole file */
    uint64_t applied; /* the shard's applied stream sequence */
    int64_t ms;       /* when it was recorded (wall clock) */
};
/* Reads snap.p<idx>: 0, -ENOENT (none), -1 (unreadable). */
int cluster_snap_get(kvStore *meta, int idx, struct snap_rec *r);
/* Snapshots partition idx's shard at path (snapshot.c): a copy, published
 * in chunks on the snapshot stream, recorded as snap.p<idx>, older ones
 * purged. still_ours(arg, idx) is asked before each chunk and before the
 * record. 0 and *applied (the copy's applied sequence), 1 when the copy
 * is not past since (nothing published), -1 failed or abandoned (logged). */
int cluster_snap_take(struct cluster *c, kvStore *meta, int idx, const char *shard, uint64_t since,
                      int (*still_ours)(void *arg, int idx), void *arg, uint64_t *applied);
/* Before partition idx's shard at path is opened: when snap.p<idx> is
 * newer than the shard (or there is no shard), the snapshot's chunks are
 * fetched, checked (SHA-256, a database of a known schema carrying that
 * applied sequence) and put in its place. 1 restored, 0 nothing to do, -1
 * the snapshot is not usable (logged; the shard is left as it was). */
int cluster_snap_restore(struct cluster *c, kvStore *meta, int idx, const char *shard);

/* The event stream trimmed behind the snapshots (snapshot.c;
 * docs/cluster.md, "Trimming the event stream"): partition p's messages
 * up to min(p's snapshot, the graph's snapshot) are purged, since a
 * takeover restores the snapshots and reads only what came after them.
 * Recorded as trim.p<N> = "<seq> <messages purged in all>". */
struct trim_rec {
    uint64_t seq;  /* messages of the partition up to this are gone (0: none) */
    uint64_t msgs; /* how many, over every trim */
};
/* Reads trim.p<idx> (all zero when there is none). 0, or -1 unreadable. */
int cluster_trim_get(kvStore *meta, int idx, struct trim_rec *r);
/* The highest trim.p<N>.seq of the user partitions (*err set when one
 * could not be read). */
uint64_t cluster_trim_max(kvStore *meta, int partitions, int *err);
/* Trims partition idx (of partitions; the graph is partitions) behind its
 * and the graph's recorded snapshots. 1 trimmed, 0 nothing to do, -1
 * failed (logged). */
int cluster_trim(struct cluster *c, kvStore *meta, int idx, int partitions);

/* A partition's buckets asked during an event (the budgets' pool, the
 * code registry): how long one out of reach is tried, and what was out of
 * reach, so that the event is tried again rather than set aside. */
struct reach {
    int64_t wait_ms;
    const char *down; /* NULL, or "budget pool" or "code registry" */
};

/* The code registry (codes.c) as one partition asks it. */
struct codes_part {
    struct unique_registry ops; /* handed to the partition's engine */
    kvStore *kv;                /* the "codes" bucket */
    struct reach *reach;        /* the partition's */
    int partition;              /* whose keys these are not */
};
void cluster_codes_init(struct codes_part *cp, kvStore *kv, int partition, struct reach *reach);
/* Registers a unique key of partition in the bucket (name: its full
 * name) without waiting: published on js, acknowledged with the actions.
 * 0, or -1 when it could not be queued. */
int cluster_code_publish(jsCtx *js, const char *bucket, int partition, const char *ns,
                         const char *key, const char *campaign);

/* Webhook outputs in cluster mode (outputs.c), delivered from the
 * actions stream on a thread of their own while held(arg) says this
 * worker holds the graph partition; positions in the meta bucket
 * (out.<id>). cfg: the worker's file (its outputs until the graph's
 * config comes, and the stream names). Which outputs there are is the
 * graph's config: cluster_outputs_follow hands over (owns) the outputs
 * o[0..n) of the config the graph partition runs on, each time it changes
 * (opened, or a config message applied). */
struct couts;
struct couts *cluster_outputs_start(struct cluster *c, const struct config *cfg, kvStore *meta,
                                    int (*held)(void *arg), void *arg);
void cluster_outputs_follow(struct couts *os, struct output_cfg *o, size_t n);
void cluster_outputs_stop(struct couts *os);
/* Each output's lag, deliveries, failures and last success, as one
 * daemon's /metrics names them (nothing for NULL or no outputs). */
void cluster_outputs_metrics(struct couts *os, struct sbuf *b);
/* Actions delivered and requests failed so far (zeros for NULL). */
void cluster_outputs_counts(const struct couts *os, long long *delivered, long long *failures);

/* A control line's work through the cluster (privacy.c), its answer
 * appended to out as one daemon answers it (net/admin.h): a forget (to
 * every partition, waiting up to takeover + 10 s for them) or an export.
 * 0 done, 1 a forget queued (some partitions have not applied it yet),
 * -1 failed (an error answer). */
struct sbuf;
int cluster_control(struct cluster *c, int forget, const char *user, const char *who,
                    struct sbuf *out);

/* The gateway's tls: connections (gateway_tls.c): TLS on the client's
 * socket fd (taken) terminated by a thread of its own, the plain bytes
 * passed through a socketpair whose other end is *plain. Waits up to
 * wait_ms for the handshake: 0, *plain, *out and cn (the CN of a client
 * certificate verified against client_ca, else ""), or -1 with err. */
struct tls_pipe;
typedef struct ssl_ctx_st SSL_CTX;
int gateway_tls_start(SSL_CTX *ctx, int fd, int64_t wait_ms, int *plain, char *cn, size_t cnlen,
                      struct tls_pipe **out, char *err, size_t errlen);
/* Once *plain is shut down: waits for the last answers to reach the client
 * (close_notify sent) and frees the pipe. */
void gateway_tls_end(struct tls_pipe *p);

/* Publishes one message to every partition's subject (publish.c): body,
 * header name = value, Nats-Msg-Id "<kind>:<ms>:<nonce>:<p>:" padded
 * past any event id (the call's own random nonce: the same when a publish
 * is tried again, never another call's). seqs[p] gets each
 * stream sequence. 0, or -1 with err (partitions before the one that
 * failed are said on out). */
int cluster_publish_all(struct cluster *c, int n, const char *kind, const char *name,
                        const char *value, const char *body, size_t len, uint64_t *seqs, FILE *out,
                        char *err, size_t errlen);
/* The stream's partition count (the meta bucket's), or -1 with err. */
int cluster_partitions_of(struct cluster *c, char *err, size_t errlen);

/* Partition p's applied stream sequence as its owner last recorded it
 * (app.p<N> in the meta bucket; p = partitions: the graph's), 0 when not
 * known (privacy.c). */
uint64_t cluster_applied_of(kvStore *meta, int p);

/* Erases the event stream's message seq (overwritten, then removed;
 * partition idx's, for the log). 0, or -1 (logged). */
int cluster_erase_msg(struct cluster *c, int idx, uint64_t seq);

/* Erases from the event stream partition idx's events of user with a
 * stream sequence below events_before, and the graph's actions delivered
 * to user below deliveries_before (*deliveries gets how many of those)
 * (privacy.c). How many in all, or -1 (logged). */
int cluster_erase_user(struct cluster *c, int idx, const char *user, uint64_t deliveries_before,
                       uint64_t events_before, int *deliveries);

/* The budgets' shared pool (budgets.c) as one partition uses it. */
struct pool_part {
    struct budget_pool ops; /* handed to the partition's engine */
    kvStore *kv;            /* the "budgets" bucket */
    int idx, partitions;
    struct reach *reach; /* the partition's */
};
void cluster_pool_init(struct pool_part *pp, kvStore *kv, int idx, int partitions,
                       struct reach *reach);
/* One claim of the pool, as its key's value says. */
struct claim {
    int partition;
    int64_t start, size, limit;
};
/* 0, or -1 when v is no claim. */
int cluster_claim_parse(const char *v, struct claim *c);
/* A pool's claims summed up, for `mktd cluster status`. */
struct pool_sum {
    char *name; /* "<campaign>.<counter>" */
    int64_t claimed, claims;
    int64_t end, limit; /* where the last claim ends, and its limit */
};
/* Every pool of the bucket. 0, or -1 when it cannot be listed. */
int cluster_pools(kvStore *kv, struct pool_sum **out, size_t *n);
void cluster_pools_free(struct pool_sum *p, size_t n);

/* The gateway (gateway.c): with `listen` in the worker's config, clients'
 * NDJSON events on its tcp: and unix: addresses, and with `http`, POST
 * /v1/events bodies (gateway_http.c), published and answered as mktd
 * publish does. 0 (*g NULL when there is nothing to listen on), or -1
 * (logged: an address cannot be bound, the tokens file unreadable). */
struct gateway;
struct sbuf;
/* The worker's figures for GET /metrics (Prometheus's text), from a
 * gateway thread. */
typedef void (*gateway_metrics_fn)(void *arg, struct sbuf *out);
int cluster_gateway_start(struct cluster *c, const struct config *cfg, gateway_metrics_fn metrics,
                          void *metrics_arg, struct gateway **g);
/* Stops accepting, ends every connection's input, waits for their
 * answers, and frees it all (g may be NULL). */
void cluster_gateway_stop(struct gateway *g);
/* The HTTP part on addr (`http`: events, health and metrics with auth;
 * or, open, `metrics`: GET /metrics and /v1/health alone, without auth, as
 * a single daemon serves them); stopped after the request each thread
 * serves is answered. */
struct gateway_http;
int cluster_gateway_http_start(struct cluster *c, const struct config *cfg, const char *addr,
                               int open, gateway_metrics_fn metrics, void *metrics_arg,
                               struct gateway_http **h);
void cluster_gateway_http_stop(struct gateway_http *h);

#endif
