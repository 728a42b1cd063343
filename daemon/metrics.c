#include "metrics.h"

#include <inttypes.h>
#include <string.h>
#include <time.h>

/* Commit latency bucket bounds, microseconds. */
static const int64_t bounds[METRICS_BUCKETS] = {50,   100,   250,   500,   1000,   2500,
                                                5000, 10000, 25000, 50000, 100000, 1000000};

void metrics_init(struct metrics *m)
{
    memset(m, 0, sizeof(*m));
}

int64_t metrics_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void metrics_status(struct metrics *m, enum ingest_status st)
{
    if (st > IN_NONE && st < IN__COUNT)
        m->events[st]++;
}

void metrics_commit(struct metrics *m, int batch, int64_t us, int ok)
{
    if (!ok) {
        m->commit_failures++;
        return;
    }
    m->commits++;
    m->batch_events += (uint64_t)batch;
    m->commit_us_sum += (uint64_t)us;
    int i = 0;
    while (i < METRICS_BUCKETS && us > bounds[i])
        i++;
    m->commit_us_bucket[i]++;
}

void metrics_render(const struct metrics *m, struct engine *e, struct evbuffer *out)
{
    evbuffer_add_printf(out, "# HELP mktd_events_total Input lines answered, by status.\n"
                             "# TYPE mktd_events_total counter\n");
    for (int i = IN_OK; i < IN__COUNT; i++)
        evbuffer_add_printf(out, "mktd_events_total{status=\"%s\"} %" PRIu64 "\n",
                            ingest_status_name[i], m->events[i]);
    evbuffer_add_printf(out,
                        "# HELP mktd_commits_total Batches committed.\n"
                        "# TYPE mktd_commits_total counter\n"
                        "mktd_commits_total %" PRIu64 "\n"
                        "# HELP mktd_commit_failures_total Batches whose commit failed.\n"
                        "# TYPE mktd_commit_failures_total counter\n"
                        "mktd_commit_failures_total %" PRIu64 "\n"
                        "# HELP mktd_batch_events_total Events in committed batches.\n"
                        "# TYPE mktd_batch_events_total counter\n"
                        "mktd_batch_events_total %" PRIu64 "\n",
                        m->commits, m->commit_failures, m->batch_events);
    evbuffer_add_printf(out, "# HELP mktd_commit_seconds Commit latency.\n"
                             "# TYPE mktd_commit_seconds histogram\n");
    uint64_t cum = 0;
    for (int i = 0; i < METRICS_BUCKETS; i++) {
        cum += m->commit_us_bucket[i];
        evbuffer_add_printf(out, "mktd_commit_seconds_bucket{le=\"%g\"} %" PRIu64 "\n",
                            (double)bounds[i] / 1e6, cum);
    }
    cum += m->commit_us_bucket[METRICS_BUCKETS];
    evbuffer_add_printf(out,
                        "mktd_commit_seconds_bucket{le=\"+Inf\"} %" PRIu64 "\n"
                        "mktd_commit_seconds_sum %g\n"
                        "mktd_commit_seconds_count %" PRIu64 "\n",
                        cum, (double)m->commit_us_sum / 1e6, cum);
    evbuffer_add_printf(out,
                        "# HELP mktd_connections Open client connections.\n"
                        "# TYPE mktd_connections gauge\n"
                        "mktd_connections %d\n"
                        "# HELP mktd_connections_total Connections accepted.\n"
                        "# TYPE mktd_connections_total counter\n"
                        "mktd_connections_total %" PRIu64 "\n"
                        "# HELP mktd_reloads_total Config reloads, by outcome.\n"
                        "# TYPE mktd_reloads_total counter\n"
                        "mktd_reloads_total{outcome=\"ok\"} %" PRIu64 "\n"
                        "mktd_reloads_total{outcome=\"failed\"} %" PRIu64 "\n"
                        "# HELP mktd_plugin_errors_total Plugin callbacks that failed.\n"
                        "# TYPE mktd_plugin_errors_total counter\n"
                        "mktd_plugin_errors_total %" PRIu64 "\n"
                        "# HELP mktd_actions_recorded_total Actions recorded by this process.\n"
                        "# TYPE mktd_actions_recorded_total counter\n"
                        "mktd_actions_recorded_total %" PRIu64 "\n",
                        m->connections, m->connections_total, m->reloads_ok, m->reloads_failed,
                        e->plugin_errors, e->actions_total);
}
