/* Cluster mode on NATS JetStream (spec 17): the connection, the streams
 * and buckets a cluster keeps, and which partition a user belongs to.
 * The way of an event and the reasons are in docs/cluster.md.
 *
 * Every call here blocks on the network (JetStream requests): never call
 * them on the daemon's event loop. */
#ifndef MKTD_CLUSTER_H
#define MKTD_CLUSTER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct cluster_cfg;
struct cluster;

/* The partition of a user: FNV-1a 32 of the id's bytes mod partitions. */
uint32_t cluster_partition(const char *user, size_t len, int partitions);

/* The subject events of partition p are published to: mktd.events.<p>. */
void cluster_event_subject(uint32_t p, char *buf, size_t len);
/* An event's Nats-Msg-Id: "e:" and 32 hex digits of SHA-256 over the
 * user's and the id's lengths and bytes, since event ids are unique per
 * user (spec 18; two users' ids collide with odds of 2^-128, and the id
 * of a tick or a config message is longer). */
#define CLUSTER_MSG_ID_LEN 34
void cluster_msg_id(const char *user, const char *id, char out[CLUSTER_MSG_ID_LEN + 1]);

/* Connects to the servers of k (NATS client threads start here). NULL and
 * a message in err when no server answers. */
struct cluster *cluster_connect(const struct cluster_cfg *k, char *err, size_t errlen);
void cluster_close(struct cluster *c);

/* mktd cluster init: creates what is missing (the events, actions and
 * snapshot streams, the meta, lease and budget buckets), checks what
 * exists against the config (partitions are fixed for a stream's life),
 * and says what it did on out; *empty: the event stream holds no message
 * yet. 0, or -1 with err. */
int cluster_init(struct cluster *c, int *empty, FILE *out, char *err, size_t errlen);

/* mktd cluster status: partitions, events per partition, owners, the
 * newest snapshot of each (applied sequence, age) (text, or
 * one JSON object when json). 0, or -1 with err. */
int cluster_status(struct cluster *c, FILE *out, int json, char *err, size_t errlen);

/* mktd publish: reads NDJSON from fd, checks every line as a daemon does
 * (section 1; max_event_bytes, max_future and max_past of max_* below),
 * publishes the valid ones to their partitions with Nats-Msg-Id of the
 * event's user and id (cluster_msg_id), and writes one answer per line to out, in input order, once
 * JetStream stored it: {"id","status":"ok","partition","seq"}, or
 * "duplicate" (the stream has seen the user's id), or the error of section 1;
 * a dry line is sent to its partition's owner and answered with what the
 * owner answers (mktd.dry.<p>, request-reply), a real explained one error
 * "unsupported"; a control line (forget, export) is run through the cluster
 * (cluster_forget, cluster_export) and answered as one daemon answers it.
 * Counts go to
 * *n_ok, *n_dup, *n_err. 0, or -1 with err when publishing failed (the
 * lines not answered were not stored). */
struct publish_limits {
    int64_t max_event_bytes, max_future_ms, max_past_ms;
};
/* A gateway's connection (gateway.c), or NULL for mktd publish: the bytes
 * already read from fd (after an auth line), and answers written and
 * flushed as soon as they are known rather than as the input is read. */
struct publish_conn {
    const char *pre;
    size_t pre_len;
    int pre_only;    /* the input is pre alone (an HTTP body): fd is not read */
    int partitions;  /* > 0: the stream's partitions, checked before
                        (cluster_check_partitions); else looked up */
    unsigned flags;  /* INGEST_DRY, INGEST_EXPLAIN (HTTP ?dry=1&explain=1) win over
                        the lines'; INGEST_DRY_ONLY: a real line is answered
                        forbidden (a token with scope dry alone); INGEST_NO_EVENTS:
                        every event is (admin alone) */
    int control;     /* control lines ({"forget":U}, {"export":U}; net/admin.h):
                        CONTROL_RUN (run through the cluster, answered in their
                        place), CONTROL_FORBIDDEN (no scope admin), or 0 (none:
                        such a line is an event, as in an HTTP body) */
    const char *who; /* who sends them (the shards' oplog); NULL: "cli:uid:N" */
};
#define CONTROL_RUN 1
#define CONTROL_FORBIDDEN 2
/* The stream's partition count (from the meta bucket) when it is the
 * config's, else -1 with err. */
int cluster_check_partitions(struct cluster *c, char *err, size_t errlen);
int cluster_publish(struct cluster *c, int fd, const struct publish_limits *lim,
                    const struct publish_conn *conn, FILE *out, long *n_ok, long *n_dup,
                    long *n_err, char *err, size_t errlen);

/* mktd cluster reload: publishes a config's campaigns (text: its
 * config_campaign_text) to every partition as a config message, which
 * each partition's owner applies at that point of the partition (spec 18).
 * 0, or -1 with err (the partitions published before it are said on out). */
int cluster_reload(struct cluster *c, const char *text, size_t len, FILE *out, char *err,
                   size_t errlen);

/* mktd forget with a cluster config: publishes a forget message for user
 * (who: the actor, for the shards' oplog) to every partition; each owner
 * forgets the user where the message stands in its partition (the user's
 * own partition also deletes the user's earlier messages from the stream),
 * with one pseudonym in all of them. Waits up to wait_ms for every owner
 * to have applied it and writes one JSON line on out: {"forget","status"
 * ("ok", or "queued" when some have not yet),"pseudonym","partition","seq",
 * "partitions","waiting"}. 0 (all applied), 1 (queued; err says so), or -1
 * with err. */
int cluster_forget(struct cluster *c, const char *user, const char *who, int64_t wait_ms, FILE *out,
                   char *err, size_t errlen);
/* mktd export with a cluster config (and the HTTP gateway's /v1/export):
 * the user's data, asked of the owner of the user's partition and of the
 * graph's (who: the actor, for their shards' oplog), as one JSON object:
 * the partition's export as one daemon's (spec 14), with "partition" and
 * "graph" (the graph shard's export). Malloc'd, or NULL with err when an
 * owner did not answer in time or failed. */
char *cluster_export(struct cluster *c, const char *user, const char *who, char *err,
                     size_t errlen);
/* The key behind pseudonyms in every shard: HMAC-SHA256 of the cluster's
 * secret and a fixed label. */
void cluster_pseudonym_key(const struct cluster_cfg *k, unsigned char out[32]);

/* The worker (docs/cluster.md, "The design of the workers"): whether the
 * config at path has daemon.cluster, and running as a worker until SIGTERM
 * or SIGINT (leases released on the way out). Exit code. */
int cluster_configured(const char *config_path);
int cluster_run(const char *config_path);
struct config;
int cluster_worker_run(struct cluster *c, const char *config_path, const struct config *cfg);

/* mktd cluster actions: the actions stream, one JSON object a line (the
 * action as mktd actions prints it, with its partition), oldest first.
 * 0, or -1 with err. */
int cluster_actions(struct cluster *c, FILE *out, char *err, size_t errlen);

/* mktd cluster failed: the events a plugin failed, set aside by the
 * partitions' owners (spec 18), one JSON object a line ({"partition",
 * "seq","id","type","user","error","at","worker"}) by partition and
 * stream sequence, or a line of text each. 0, or -1 with err. */
int cluster_failed(struct cluster *c, FILE *out, int json, char *err, size_t errlen);

#endif
