/* mktd outputs: each webhook output's position, lag, last success and last
 * error (spec section 15); --from rewinds one. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "config/config.h"
#include "out/out.h"
#include "store/store.h"

struct row {
    char *id, *last_error;
    int64_t position, delivered, last_success, last_error_at;
};

struct rows {
    struct row *v;
    size_t n;
};

static void take_row(void *arg, const struct store_output *o)
{
    struct rows *r = arg;
    r->v = xrealloc(r->v, (r->n + 1) * sizeof(*r->v));
    r->v[r->n++] = (struct row){.id = xstrdup(o->id),
                                .last_error = o->last_error ? xstrdup(o->last_error) : NULL,
                                .position = o->position,
                                .delivered = o->delivered,
                                .last_success = o->last_success,
                                .last_error_at = o->last_error_at};
}

static void when(int64_t ms, char *buf, size_t len)
{
    if (ms > 0)
        rfc3339_format(ms, buf, len);
    else
        snprintf(buf, len, "-");
}

static const struct output_cfg *configured(const struct config *cfg, const char *id)
{
    for (size_t i = 0; cfg && i < cfg->n_outputs; i++)
        if (strcmp(cfg->outputs[i].id, id) == 0)
            return &cfg->outputs[i];
    return NULL;
}

int cli_outputs(const char *db_path, const struct config *cfg, const char *from, const char *id)
{
    struct store *st;
    char err[512];
    if (from) {
        char *end;
        errno = 0;
        long long seq = strtoll(from, &end, 10);
        if (!id || end == from || *end || errno || seq < 0) {
            fprintf(stderr,
                    "mktd outputs: --from takes a seq (an integer >= 0) and an output id\n");
            return 2;
        }
        if (store_open(db_path, 0, &st, err, sizeof(err)) < 0) {
            fprintf(stderr, "mktd outputs: %s\n", err);
            return 2;
        }
        /* the output delivers seq and what follows it */
        int rc = store_output_rewind(st, id, seq > 0 ? seq - 1 : 0);
        if (rc == -ENOENT)
            fprintf(stderr,
                    "mktd outputs: no output %s in %s (an output is recorded when the daemon "
                    "first runs with it)\n",
                    id, db_path);
        else if (rc < 0)
            fprintf(stderr, "mktd outputs: %s\n", store_errmsg(st));
        else
            printf("output %s: delivers from seq %lld on\n", id, seq > 0 ? seq : 1);
        store_close(st);
        return rc < 0 ? 2 : 0;
    }
    if (id) {
        fprintf(stderr, "mktd outputs: an output id goes with --from SEQ\n");
        return 2;
    }
    if (store_open_readonly(db_path, &st, err, sizeof(err)) < 0) {
        fprintf(stderr, "mktd outputs: %s\n", err);
        return 2;
    }
    struct rows r = {0};
    int64_t end = 0;
    int code = 0;
    if (store_outputs_list(st, take_row, &r) < 0 || store_action_last_seq(st, &end) < 0) {
        fprintf(stderr, "mktd outputs: %s\n", store_errmsg(st));
        code = 2;
        goto out;
    }
    printf("%-20s %10s %10s %10s %-24s %s\n", "OUTPUT", "POSITION", "LAG", "DELIVERED",
           "LAST_SUCCESS", "LAST_ERROR");
    for (size_t i = 0; i < r.n; i++) {
        struct row *o = &r.v[i];
        const struct output_cfg *c = configured(cfg, o->id);
        /* with the config: the matching actions not yet delivered; without
         * it: every action after the position */
        int64_t lag = end > o->position ? end - o->position : 0;
        if (c) {
            char *k = out_filter_json(c->kinds, c->n_kinds);
            char *m = out_filter_json(c->campaigns, c->n_campaigns);
            if (store_output_count(st, o->position, end, k, m, &lag) < 0)
                lag = -1;
            free(k);
            free(m);
        }
        char ok[40], bad[40];
        when(o->last_success, ok, sizeof(ok));
        when(o->last_error_at, bad, sizeof(bad));
        printf("%-20s %10lld %10lld %10lld %-24s", o->id, (long long)o->position, (long long)lag,
               (long long)o->delivered, ok);
        if (o->last_error)
            printf(" %s %s", bad, o->last_error);
        else
            printf(" -");
        if (cfg && !c)
            printf(" (not in the config)");
        printf("\n");
    }
    for (size_t i = 0; cfg && i < cfg->n_outputs; i++) {
        int found = 0;
        for (size_t j = 0; j < r.n && !found; j++)
            found = strcmp(r.v[j].id, cfg->outputs[i].id) == 0;
        if (!found)
            printf("%-20s %10s %10s %10s %-24s - (not started: the daemon has not run with it)\n",
                   cfg->outputs[i].id, "-", "-", "-", "-");
    }
out:
    for (size_t i = 0; i < r.n; i++) {
        free(r.v[i].id);
        free(r.v[i].last_error);
    }
    free(r.v);
    store_close(st);
    return code;
}
