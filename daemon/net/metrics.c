#include "net/metrics.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "config/config.h"
#include "lib/util.h"
#include "mktd_gitversion.h"
#include "store/checkpointer.h"

/* Commit latency bucket bounds, microseconds. */
static const int64_t bounds[METRICS_BUCKETS] = {50,   100,   250,   500,   1000,   2500,
                                                5000, 10000, 25000, 50000, 100000, 1000000};
/* Batch size bucket bounds, events. */
static const int64_t batch_bounds[METRICS_BUCKETS] = {1,   2,   5,   10,   20,   50,
                                                      100, 200, 500, 1000, 2000, 5000};

void metrics_init(struct metrics *m, struct engine *e, struct store *store)
{
    struct engine_stats es;
    engine_stats(e, &es);
    memset(m, 0, sizeof(*m));
    if (store_action_last_seq(store, &m->action_seq) < 0)
        m->action_seq = 0;
    m->engine_actions = es.actions_total;
}

void metrics_free(struct metrics *m)
{
    pair_counts_free(&m->actions);
}

static void count_actions(void *arg, const char *camp, const char *kind, uint64_t n)
{
    struct metrics *m = arg;
    pair_counts_add(&m->actions, camp, kind, n);
    m->actions_committed += n;
}

void metrics_actions_update(struct metrics *m, struct engine *e, struct store *store)
{
    struct engine_stats es;
    engine_stats(e, &es);
    if (es.actions_total == m->engine_actions || engine_batch_size(e))
        return;
    m->engine_actions = es.actions_total;
    int64_t top = m->action_seq;
    store_action_counts_since(store, m->action_seq, count_actions, m, &top);
    m->action_seq = top;
}

int64_t metrics_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
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
    i = 0;
    while (i < METRICS_BUCKETS && batch > batch_bounds[i])
        i++;
    m->batch_bucket[i]++;
}

/* A label value: backslash, quote and newline escaped. */
static void add_label(struct evbuffer *out, const char *v)
{
    struct sbuf b = {0};
    sb_label(&b, v);
    evbuffer_add(out, b.s, b.len);
    sb_free(&b);
}

static void render_gauge(void *arg, const char *campaign, const char *plugin, const char *name,
                         int64_t value)
{
    struct evbuffer *out = arg;
    evbuffer_add_printf(out, "mktd_plugin_gauge{campaign=\"");
    add_label(out, campaign);
    evbuffer_add_printf(out, "\",plugin=\"");
    add_label(out, plugin);
    evbuffer_add_printf(out, "\",name=\"");
    add_label(out, name);
    evbuffer_add_printf(out, "\"} %" PRId64 "\n", value);
}

static void render_capped(void *arg, const char *cap, const char *campaign, uint64_t n)
{
    struct evbuffer *out = arg;
    evbuffer_add_printf(out, "mktd_actions_capped_total{cap=\"");
    add_label(out, cap);
    evbuffer_add_printf(out, "\",campaign=\"");
    add_label(out, campaign);
    evbuffer_add_printf(out, "\"} %" PRIu64 "\n", n);
}

void metrics_render(const struct metrics *m, struct engine *e, struct store *store,
                    struct evbuffer *out)
{
    struct engine_stats es;
    engine_stats(e, &es);
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
    evbuffer_add_printf(out, "# HELP mktd_batch_events Events per committed batch.\n"
                             "# TYPE mktd_batch_events histogram\n");
    cum = 0;
    for (int i = 0; i < METRICS_BUCKETS; i++) {
        cum += m->batch_bucket[i];
        evbuffer_add_printf(out, "mktd_batch_events_bucket{le=\"%" PRId64 "\"} %" PRIu64 "\n",
                            batch_bounds[i], cum);
    }
    cum += m->batch_bucket[METRICS_BUCKETS];
    evbuffer_add_printf(out,
                        "mktd_batch_events_bucket{le=\"+Inf\"} %" PRIu64 "\n"
                        "mktd_batch_events_sum %" PRIu64 "\n"
                        "mktd_batch_events_count %" PRIu64 "\n",
                        cum, m->batch_events, cum);
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
                        "# HELP mktd_actions_recorded_total Actions committed by this process.\n"
                        "# TYPE mktd_actions_recorded_total counter\n"
                        "mktd_actions_recorded_total %" PRIu64 "\n",
                        m->connections, m->connections_total, m->reloads_ok, m->reloads_failed,
                        es.plugin_errors, m->actions_committed);
    evbuffer_add_printf(out,
                        "# HELP mktd_auth_failures_total Failed authentication attempts.\n"
                        "# TYPE mktd_auth_failures_total counter\n"
                        "mktd_auth_failures_total %" PRIu64 "\n",
                        m->auth_failures);
    evbuffer_add_printf(
        out,
        "# HELP mktd_timers_failed_total Timers set aside because their callback failed (mktd "
        "timers --failed).\n"
        "# TYPE mktd_timers_failed_total counter\n"
        "mktd_timers_failed_total %" PRIu64 "\n"
        "# HELP mktd_working_set_entries Per-user rows held in memory.\n"
        "# TYPE mktd_working_set_entries gauge\n"
        "mktd_working_set_entries %" PRIu64 "\n"
        "# HELP mktd_working_set_bytes Memory the working set counts against its budget.\n"
        "# TYPE mktd_working_set_bytes gauge\n"
        "mktd_working_set_bytes %" PRIu64 "\n"
        "# HELP mktd_working_set_budget_bytes The working set's budget (limits.working_set).\n"
        "# TYPE mktd_working_set_budget_bytes gauge\n"
        "mktd_working_set_budget_bytes %" PRIu64 "\n"
        "# HELP mktd_working_set_lookups_total Lookups of per-user rows, by where they were "
        "found.\n"
        "# TYPE mktd_working_set_lookups_total counter\n"
        "mktd_working_set_lookups_total{found=\"memory\"} %" PRIu64 "\n"
        "mktd_working_set_lookups_total{found=\"store\"} %" PRIu64 "\n"
        "# HELP mktd_working_set_evictions_total Rows dropped from memory to keep the budget.\n"
        "# TYPE mktd_working_set_evictions_total counter\n"
        "mktd_working_set_evictions_total %" PRIu64 "\n"
        "# HELP mktd_working_set_rows_written_total Rows written at commits.\n"
        "# TYPE mktd_working_set_rows_written_total counter\n"
        "mktd_working_set_rows_written_total %" PRIu64 "\n"
        "# HELP mktd_event_id_reads_total Event ids looked up in the database (the filter said "
        "maybe).\n"
        "# TYPE mktd_event_id_reads_total counter\n"
        "mktd_event_id_reads_total %" PRIu64 "\n"
        "# HELP mktd_event_id_filter_bytes The remembered-id filter's size.\n"
        "# TYPE mktd_event_id_filter_bytes gauge\n"
        "mktd_event_id_filter_bytes %" PRIu64 "\n",
        es.timers_failed, es.ws_entries, es.ws_bytes, es.ws_budget, es.ws_hits, es.ws_misses,
        es.ws_evictions, es.ws_rows_written, es.id_reads, es.id_filter_bytes);
    evbuffer_add_printf(out, "# HELP mktd_actions_total Actions committed by this process, by "
                             "campaign and kind.\n"
                             "# TYPE mktd_actions_total counter\n");
    struct sbuf b = {0};
    sb_pair_counts(&b, "mktd_actions_total", "campaign", "kind", &m->actions);
    evbuffer_add(out, b.s, b.len);
    sb_free(&b);
    uint64_t waits, wait_us;
    store_lock_waits(store, &waits, &wait_us);
    evbuffer_add_printf(out,
                        "# HELP mktd_db_lock_waits_total Times a transaction waited for a lock "
                        "held by another connection (the checkpointer, a backup).\n"
                        "# TYPE mktd_db_lock_waits_total counter\n"
                        "mktd_db_lock_waits_total %" PRIu64 "\n"
                        "# HELP mktd_db_lock_wait_seconds_total Time spent in those waits.\n"
                        "# TYPE mktd_db_lock_wait_seconds_total counter\n"
                        "mktd_db_lock_wait_seconds_total %.6f\n",
                        waits, (double)wait_us / 1e6);
    evbuffer_add_printf(out,
                        "# HELP mktd_db_unwritable 1 while the database cannot be written "
                        "(locked by another process, disk full, I/O error).\n"
                        "# TYPE mktd_db_unwritable gauge\n"
                        "mktd_db_unwritable %d\n"
                        "# HELP mktd_db_write_failures_total Transactions that could not begin "
                        "or commit.\n"
                        "# TYPE mktd_db_write_failures_total counter\n"
                        "mktd_db_write_failures_total %" PRIu64 "\n",
                        m->db_unwritable, store_write_failures(store, NULL, NULL));
    struct checkpointer_stats ck;
    if (store_checkpoint_stats(store, &ck) == 0)
        evbuffer_add_printf(out,
                            "# HELP mktd_checkpoint_rounds_total Background checkpoint rounds.\n"
                            "# TYPE mktd_checkpoint_rounds_total counter\n"
                            "mktd_checkpoint_rounds_total %" PRIu64 "\n"
                            "# HELP mktd_wal_restarts_total Times the WAL started over.\n"
                            "# TYPE mktd_wal_restarts_total counter\n"
                            "mktd_wal_restarts_total %" PRIu64 "\n"
                            "# HELP mktd_checkpoint_errors_total Checkpoint rounds that failed.\n"
                            "# TYPE mktd_checkpoint_errors_total counter\n"
                            "mktd_checkpoint_errors_total %" PRIu64 "\n"
                            "# HELP mktd_wal_frames Pages in the WAL after the last commit.\n"
                            "# TYPE mktd_wal_frames gauge\n"
                            "mktd_wal_frames %d\n",
                            ck.rounds, ck.restarts, ck.errors, ck.wal_frames);
    /* each plugin reports its own figures (gauge_set) */
    evbuffer_add_printf(out,
                        "# HELP mktd_plugin_gauge Figures plugins publish, by campaign, plugin "
                        "and name (coupon: budget, budget_left).\n"
                        "# TYPE mktd_plugin_gauge gauge\n");
    engine_gauges_foreach(e, render_gauge, out);
    evbuffer_add_printf(out, "# HELP mktd_actions_capped_total Actions a frequency cap kept out, "
                             "by cap and campaign.\n"
                             "# TYPE mktd_actions_capped_total counter\n");
    engine_capped_foreach(e, render_capped, out);
}

/* ---- the config running, the last reload, the build ---- */

const char *metrics_version(void)
{
    return MKTD_GIT_DESCRIBE[0] ? MKTD_VERSION_STRING " (git " MKTD_GIT_DESCRIBE ")"
                                : MKTD_VERSION_STRING;
}

void metrics_sha256_hex(const char *text, size_t len, char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(text, len, md, &n, EVP_sha256(), NULL))
        n = 0;
    for (unsigned int i = 0; i < n && i < 32; i++)
        sprintf(out + 2 * i, "%02x", md[i]);
    out[2 * (n < 32 ? n : 32)] = 0;
}

void metrics_config_loaded(struct metrics *m, const struct config *c, int64_t now_ms)
{
    metrics_sha256_hex(c->text ? c->text : "", c->text ? c->text_len : 0, m->config_sha256);
    m->config_loaded_ms = now_ms;
}

void metrics_reload_result(struct metrics *m, int64_t now_ms, const char *error)
{
    m->reload_ms = now_ms;
    m->reload_ok = error == NULL;
    snprintf(m->reload_error, sizeof(m->reload_error), "%s", error ? error : "");
}

void metrics_render_config(const struct metrics *m, struct evbuffer *out)
{
    evbuffer_add_printf(out,
                        "# HELP mktd_build_info The running mktd's version (git: git describe "
                        "at build time, empty from a release tarball).\n"
                        "# TYPE mktd_build_info gauge\n"
                        "mktd_build_info{version=\"%s\",git=\"%s\"} 1\n"
                        "# HELP mktd_config_info The config running: SHA-256 of its text.\n"
                        "# TYPE mktd_config_info gauge\n"
                        "mktd_config_info{sha256=\"%s\"} 1\n"
                        "# HELP mktd_config_loaded_timestamp_seconds When the config running "
                        "was loaded.\n"
                        "# TYPE mktd_config_loaded_timestamp_seconds gauge\n"
                        "mktd_config_loaded_timestamp_seconds %.3f\n",
                        MKTD_VERSION_STRING, MKTD_GIT_DESCRIBE, m->config_sha256,
                        (double)m->config_loaded_ms / 1000.0);
    if (m->reload_ms)
        evbuffer_add_printf(out,
                            "# HELP mktd_last_reload_timestamp_seconds When the last reload "
                            "ended.\n"
                            "# TYPE mktd_last_reload_timestamp_seconds gauge\n"
                            "mktd_last_reload_timestamp_seconds %.3f\n"
                            "# HELP mktd_last_reload_success Whether the last reload worked "
                            "(1) or was refused (0).\n"
                            "# TYPE mktd_last_reload_success gauge\n"
                            "mktd_last_reload_success %d\n",
                            (double)m->reload_ms / 1000.0, m->reload_ok);
}

void metrics_health_json(const struct metrics *m, const struct config *c, struct sbuf *j)
{
    sb_str(j, ",\"version\":");
    const char *v = metrics_version();
    sb_json_str(j, v, strlen(v));
    sb_fmt(j, ",\"config\":{\"sha256\":\"%s\",\"loaded_at\":%lld,\"path\":", m->config_sha256,
           (long long)m->config_loaded_ms);
    sb_json_str(j, c->path, strlen(c->path));
    sb_str(j, ",\"database\":");
    sb_json_str(j, c->database, strlen(c->database));
    sb_str(j, "},\"last_reload\":");
    if (!m->reload_ms) {
        sb_str(j, "null");
        return;
    }
    sb_fmt(j, "{\"at\":%lld,\"result\":\"%s\"", (long long)m->reload_ms,
           m->reload_ok ? "ok" : "error");
    if (!m->reload_ok) {
        sb_str(j, ",\"error\":");
        sb_json_str(j, m->reload_error, strlen(m->reload_error));
    }
    sb_str(j, "}");
}
