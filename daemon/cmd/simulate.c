/* mktd simulate: an NDJSON file through a config, against a throw-away
 * database, with `clock: event`; prints the actions. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "engine/engine.h"
#include "engine/plugins.h"
#include "lib/log.h"
#include "net/ingest.h"

static int parse_until(const char *s, int64_t *ms)
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

int cli_simulate(const char *config_path, const char *events_path, const char *until,
                 char **plugin_dirs, size_t n_plugin_dirs)
{
    int64_t until_ms = 0;
    if (until && parse_until(until, &until_ms) < 0) {
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
    if (cfg && n_plugin_dirs) {
        /* extra plugin directories first (the SDK's test kit) */
        cfg->plugin_dirs =
            xrealloc(cfg->plugin_dirs, (cfg->n_plugin_dirs + n_plugin_dirs) * sizeof(char *));
        memmove(cfg->plugin_dirs + n_plugin_dirs, cfg->plugin_dirs,
                cfg->n_plugin_dirs * sizeof(char *));
        for (size_t i = 0; i < n_plugin_dirs; i++)
            cfg->plugin_dirs[i] = xstrdup(plugin_dirs[i]);
        cfg->n_plugin_dirs += n_plugin_dirs;
    }
    if (cfg)
        cfg->clock_event = 1;
    struct world *w = cfg ? world_build(cfg, &errs) : NULL;
    if (!w) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msg[i]);
        errs_free(&errs);
        if (cfg)
            config_free(cfg);
        if (in != stdin)
            fclose(in);
        plugins_unload_all();
        return 2;
    }
    errs_free(&errs);
    log_level = cfg->log_level < MKTD_LOG_WARN ? cfg->log_level : MKTD_LOG_WARN;
    struct store *st;
    struct engine *e = NULL;
    char err[512];
    int code = 0;
    if (store_open(":memory:", 0, &st, err, sizeof(err)) < 0) {
        fprintf(stderr, "mktd simulate: %s\n", err);
        world_free(w);
        fclose(in);
        return 2;
    }
    struct engine_opts eo = {.clock_event = 1};
    if (engine_new(st, &eo, &e, err, sizeof(err)) < 0 || engine_swap(e, w, err, sizeof(err)) < 0) {
        fprintf(stderr, "mktd simulate: %s\n", err);
        world_free(w);
        code = 2;
        goto out;
    }
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
    print_actions(st, 0, NULL, stdout);
    code = errors ? 1 : 0;
out:
    engine_free(e);
    store_close(st);
    plugins_unload_all();
    if (in != stdin)
        fclose(in);
    return code;
}
