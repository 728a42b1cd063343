/* Figures for GET /metrics (Prometheus text format). */
#ifndef MKTD_METRICS_H
#define MKTD_METRICS_H

#include <event2/buffer.h>
#include <stdint.h>

#include "engine/engine.h"
#include "lib/util.h"
#include "net/ingest.h"

#define METRICS_BUCKETS 12

struct metrics {
    uint64_t events[IN__COUNT];
    uint64_t commits, commit_failures, batch_events;
    uint64_t commit_us_bucket[METRICS_BUCKETS + 1]; /* cumulative at render */
    uint64_t commit_us_sum;
    uint64_t batch_bucket[METRICS_BUCKETS + 1]; /* batch sizes */
    uint64_t reloads_ok, reloads_failed;
    uint64_t connections_total;
    uint64_t auth_failures; /* failed authentication attempts (spec 14) */
    int connections;
    int db_unwritable; /* the database cannot be written (spec section 12) */
    /* actions committed since start, read after each commit that may have
     * added some (rows past action_seq) */
    struct pair_counts actions; /* by campaign and kind */
    int64_t action_seq;
    uint64_t actions_committed;
    uint64_t engine_actions; /* engine.actions_total at the last update */
    /* the config running and the last reload (/v1/health, /metrics) */
    char config_sha256[65];   /* SHA-256 of the config's text (the configs table's text) */
    int64_t config_loaded_ms; /* when it was loaded, Unix ms */
    int64_t reload_ms;        /* the last reload, Unix ms; 0: none yet */
    int reload_ok;
    char reload_error[512]; /* the last reload's first error, when it failed */
};

struct config;
/* The version: "0.1.0", or "0.1.0 (git DESCRIBE)" when built from git. */
const char *metrics_version(void);
/* SHA-256 of text as 64 hex digits (out: 65 bytes). */
void metrics_sha256_hex(const char *text, size_t len, char *out);
/* A config was loaded at now_ms (at start or by a reload). */
void metrics_config_loaded(struct metrics *m, const struct config *c, int64_t now_ms);
/* A reload ended at now_ms: error NULL when it worked. */
void metrics_reload_result(struct metrics *m, int64_t now_ms, const char *error);
/* mktd_build_info, mktd_config_info, mktd_config_loaded_timestamp_seconds,
 * mktd_last_reload_*. */
void metrics_render_config(const struct metrics *m, struct evbuffer *out);
/* ,"version":..,"config":{..},"last_reload":{..} for /v1/health's JSON. */
void metrics_health_json(const struct metrics *m, const struct config *c, struct sbuf *j);

/* Starts counting actions from the database's last one. */
void metrics_init(struct metrics *m, struct engine *e, struct store *store);
void metrics_free(struct metrics *m);
int64_t metrics_now_us(void);
void metrics_commit(struct metrics *m, int batch, int64_t us, int ok);
/* After a commit: counts the actions it made (cheap when there are none). */
void metrics_actions_update(struct metrics *m, struct engine *e, struct store *store);
void metrics_render(const struct metrics *m, struct engine *e, struct store *store,
                    struct evbuffer *out);

#endif
