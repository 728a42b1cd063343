/* Figures for GET /metrics (Prometheus text format). */
#ifndef MKTD_METRICS_H
#define MKTD_METRICS_H

#include <event2/buffer.h>
#include <stdint.h>

#include "engine.h"
#include "ingest.h"

#define METRICS_BUCKETS 12

struct metrics {
    uint64_t events[IN__COUNT];
    uint64_t commits, commit_failures, batch_events;
    uint64_t commit_us_bucket[METRICS_BUCKETS + 1]; /* cumulative at render */
    uint64_t commit_us_sum;
    uint64_t reloads_ok, reloads_failed;
    uint64_t connections_total;
    int connections;
};

void metrics_init(struct metrics *m);
int64_t metrics_now_us(void);
void metrics_status(struct metrics *m, enum ingest_status st);
void metrics_commit(struct metrics *m, int batch, int64_t us, int ok);
void metrics_render(const struct metrics *m, struct engine *e, struct evbuffer *out);

#endif
