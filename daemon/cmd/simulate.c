/* mktd simulate: an NDJSON file through a config, against a throw-away
 * database (empty, or a copy of a live one's state with --from-db), with
 * `clock: event`; prints the actions. The setup here is shared with mktd
 * replay (cmd/replay.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "cmd/replay.h"
#include "engine/engine.h"
#include "engine/plugins.h"
#include "lib/log.h"
#include "net/ingest.h"
#include "out/retention.h"
#include "store/eventlog.h"

int sim_parse_time(const char *s, int64_t *ms)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s && !*end && errno == 0 && v >= 0) {
        *ms = v;
        return 0;
    }
    return rfc3339_parse(s, strlen(s), ms);
}

struct world *sim_world(const char *who, struct config *cfg, char **plugin_dirs,
                        size_t n_plugin_dirs)
{
    struct errs errs = {0};
    if (n_plugin_dirs) {
        /* extra plugin directories first (the SDK's test kit) */
        cfg->plugin_dirs =
            xrealloc(cfg->plugin_dirs, (cfg->n_plugin_dirs + n_plugin_dirs) * sizeof(char *));
        memmove(cfg->plugin_dirs + n_plugin_dirs, cfg->plugin_dirs,
                cfg->n_plugin_dirs * sizeof(char *));
        for (size_t i = 0; i < n_plugin_dirs; i++)
            cfg->plugin_dirs[i] = xstrdup(plugin_dirs[i]);
        cfg->n_plugin_dirs += n_plugin_dirs;
    }
    cfg->clock_event = 1;
    cfg->event_log_keep_ms = 0; /* a throw-away run keeps no log */
    int level = cfg->log_level;
    struct world *w = world_build(cfg, &errs);
    if (!w) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s%s\n", who ? who : "", errs.msg[i]);
        errs_free(&errs);
        config_free(cfg);
        return NULL;
    }
    errs_free(&errs);
    log_level = level < MKTD_LOG_WARN ? level : MKTD_LOG_WARN;
    return w;
}

int sim_start(const char *who, struct world *w, struct livedb *from, int given_now,
              struct store **st, struct engine **e, int64_t *printed)
{
    char err[512];
    *st = NULL;
    *e = NULL;
    *printed = 0;
    if (store_open(":memory:", 0, st, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", who, err);
        world_free(w);
        return -1;
    }
    if (from) {
        /* the live state; the clock where the live database left it;
         * the actions a frequency cap may still count */
        int64_t clock = 0, window = retention_cap_window_ms(world_config(w));
        if (livedb_clock(from, &clock) < 0) {
            fprintf(stderr, "%s: reading the database: %s\n", who, livedb_errmsg(from));
            goto fail;
        }
        if (livedb_copy_state(from, *st, clock, window ? clock - window : INT64_MAX, printed, err,
                              sizeof(err)) < 0) {
            fprintf(stderr, "%s: %s\n", who, err);
            goto fail;
        }
    }
    /* given_now: the engine's `clock: wall` rules (now = the receipt time
     * handed in, timers due by it fire first), with the log's times */
    struct engine_opts eo = {.clock_event = !given_now};
    if (engine_new(*st, &eo, e, err, sizeof(err)) < 0)
        goto engine_fail;
    if (engine_swap(*e, w, err, sizeof(err)) < 0)
        goto engine_fail;
    /* the swap's own actions (on_load) count as the run's */
    return 0;
engine_fail:
    fprintf(stderr, "%s: %s\n", who, err);
fail:
    world_free(w);
    sim_end(*st, *e);
    *st = NULL;
    *e = NULL;
    return -1;
}

void sim_end(struct store *st, struct engine *e)
{
    engine_free(e);
    store_close(st);
}

int cli_simulate(const char *config_path, const char *events_path, const char *until,
                 const char *from_db, char **plugin_dirs, size_t n_plugin_dirs)
{
    int64_t until_ms = 0;
    if (until && sim_parse_time(until, &until_ms) < 0) {
        fprintf(stderr, "mktd simulate: --until %s: expected RFC 3339 or Unix ms\n", until);
        return 2;
    }
    FILE *in = strcmp(events_path, "-") == 0 ? stdin : fopen(events_path, "r");
    if (!in) {
        fprintf(stderr, "mktd simulate: %s: %s\n", events_path, strerror(errno));
        return 2;
    }
    struct errs errs = {0};
    struct config *cfg = config_load(config_path, &errs);
    for (size_t i = 0; !cfg && i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msg[i]);
    errs_free(&errs);
    struct world *w = cfg ? sim_world(NULL, cfg, plugin_dirs, n_plugin_dirs) : NULL;
    struct livedb *live = NULL;
    char err[512];
    if (w && from_db && livedb_open(from_db, &live, err, sizeof(err)) < 0) {
        fprintf(stderr, "mktd simulate: --from-db %s\n", err);
        world_free(w);
        w = NULL;
    }
    struct store *st;
    struct engine *e;
    int64_t printed;
    if (!w || sim_start("mktd simulate", w, live, 0, &st, &e, &printed) < 0) {
        livedb_close(live);
        if (in != stdin)
            fclose(in);
        plugins_unload_all();
        return 2;
    }
    livedb_close(live); /* everything of it is copied */
    struct evbuffer *answers = evbuffer_new();
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    long errors = 0;
    while ((n = getline(&line, &cap, in)) >= 0) {
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n')
            len--;
        enum ingest_status s = ingest_line(e, line, len, 0, answers);
        if (s != IN_NONE && s != IN_OK && s != IN_DUPLICATE) {
            errors++;
            size_t alen = evbuffer_get_length(answers);
            fprintf(stderr, "%.*s", (int)alen, (const char *)evbuffer_pullup(answers, -1));
        }
        evbuffer_drain(answers, evbuffer_get_length(answers));
        if (engine_batch_size(e) >= 1024 && engine_commit(e) < 0)
            errors++;
    }
    free(line);
    evbuffer_free(answers);
    if (until) {
        if (engine_advance(e, until_ms) < 0)
            errors++;
    }
    if (engine_commit(e) < 0)
        errors++;
    print_actions(st, printed, NULL, stdout);
    sim_end(st, e);
    plugins_unload_all();
    if (in != stdin)
        fclose(in);
    return errors ? 1 : 0;
}
