/* mktd forget, mktd export, mktd oplog (spec 14; docs/operations.md,
 * "Personal data").
 *
 * forget and export go through the running daemon: over its Unix socket
 * (the config's first unix: listen address, or ADDRESS; a tcp:/tls:
 * address with --token, whose token has scope admin) as a control line.
 * When no daemon answers there and the database's lock is free, the
 * command opens the database itself (forget then needs -c FILE: the
 * config's plugins rewrite their own state). */
#define _GNU_SOURCE
#include "cmd/privacy.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "cmd/cli.h"
#include "config/config.h"
#include "engine/engine.h"
#include "engine/plugins.h"
#include "lib/addr.h"
#include "lib/util.h"
#include "store/dblock.h"
#include "store/privacy.h"
#include "store/store.h"

static void collect(void *arg, const char *p, size_t n)
{
    sb_add(arg, p, n);
}

/* The daemon's answer line (the one with a status), printed: an export as
 * its JSON object, a forget as the answer. 0, or 1 for an error answer. */
static int print_answer(const char *cmd, const struct sbuf *b)
{
    const char *p = b->s ? b->s : "";
    json_t *ans = NULL;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        json_t *j = json_loadb(p, n, 0, NULL);
        if (json_object_get(j, "forget") || json_object_get(j, "export") ||
            json_object_get(j, "error")) {
            json_decref(ans);
            ans = j;
        } else {
            json_decref(j);
        }
        p += n + (nl ? 1 : 0);
    }
    if (!ans) {
        fprintf(stderr, "mktd %s: the daemon gave no answer\n", cmd);
        return 1;
    }
    const char *status = json_string_value(json_object_get(ans, "status"));
    int code = status && strcmp(status, "ok") == 0 ? 0 : 1;
    json_t *ex = json_object_get(ans, "export");
    char *text = json_dumps(code == 0 && ex ? ex : ans, JSON_COMPACT);
    fprintf(code ? stderr : stdout, "%s\n", text ? text : "");
    free(text);
    json_decref(ans);
    return code;
}

/* The address forget and export are sent to: ADDRESS, else the config's
 * first unix: listen address, else NULL. */
static const char *daemon_address(const char *address, const struct config *cfg)
{
    if (address)
        return address;
    for (size_t i = 0; cfg && i < cfg->n_listen; i++)
        if (strncmp(cfg->listen[i], "unix:", 5) == 0)
            return cfg->listen[i];
    return NULL;
}

/* Whether something listens at address (a refused or absent socket: no). */
static int daemon_listens(const char *address)
{
    char err[256];
    int fd = addr_connect(address, err, sizeof(err));
    if (fd < 0)
        return 0;
    close(fd);
    return 1;
}

/* Without a daemon: the database opened here, under its lock. */
static int offline(const char *cmd, enum privacy_op op, const char *user, struct config *cfg,
                   const char *db)
{
    char err[512], who[64];
    struct dblock *lock = NULL;
    struct store *st = NULL;
    struct engine *e = NULL;
    struct world *w = NULL;
    int code = 2;
    snprintf(who, sizeof(who), "cli:uid:%u", (unsigned)getuid());
    if (access(db, F_OK) != 0) {
        fprintf(stderr, "mktd %s: %s: no such database (and no daemon answers)\n", cmd, db);
        if (cfg)
            config_free(cfg);
        return 2;
    }
    if (dblock_take(db, &lock, err, sizeof(err)) < 0) {
        fprintf(stderr,
                "mktd %s: %s; a running daemon is asked through its socket (a unix: listen "
                "address of the config, or ADDRESS; tcp: with --token of scope admin)\n",
                cmd, err);
        if (cfg)
            config_free(cfg);
        return 2;
    }
    if (op == PRIVACY_FORGET && !cfg) {
        fprintf(stderr,
                "mktd %s: no daemon answers; forgetting without one needs -c FILE (the "
                "config's plugins rewrite their own state)\n",
                cmd);
        dblock_release(lock);
        return 2;
    }
    if (op == PRIVACY_EXPORT && cfg) { /* only its database was needed */
        config_free(cfg);
        cfg = NULL;
    }
    if (store_open(db, cfg ? cfg->sync_full : 0, &st, err, sizeof(err)) < 0) {
        fprintf(stderr, "mktd %s: database %s\n", cmd, err);
        goto out;
    }
    struct engine_opts eo = {.clock_event = cfg ? cfg->clock_event : 0};
    if (engine_new(st, &eo, &e, err, sizeof(err)) < 0) {
        fprintf(stderr, "mktd %s: %s\n", cmd, err);
        goto out;
    }
    engine_set_actor(e, who);
    if (op == PRIVACY_FORGET) {
        struct errs errs = {0};
        w = world_build(cfg, &errs);
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msg[i]);
        errs_free(&errs);
        if (!w)
            goto out; /* cfg is freed below */
        cfg = NULL;   /* the world has it */
        if (engine_swap(e, w, err, sizeof(err)) < 0) {
            fprintf(stderr, "mktd %s: %s\n", cmd, err);
            world_free(w);
            goto out;
        }
        char ps[64];
        if (engine_forget(e, user, who, ps, sizeof(ps), err, sizeof(err)) < 0) {
            fprintf(stderr, "mktd %s: %s\n", cmd, err);
            code = 1;
            goto out;
        }
        struct sbuf b = {0};
        sb_str(&b, "{\"status\":\"ok\",\"forget\":");
        sb_json_str(&b, user, strlen(user));
        sb_fmt(&b, ",\"pseudonym\":\"%s\"}", ps);
        printf("%s\n", b.s);
        sb_free(&b);
        code = 0;
    } else {
        char *json = NULL;
        if (engine_export(e, user, who, &json, err, sizeof(err)) < 0) {
            fprintf(stderr, "mktd %s: %s\n", cmd, err);
            code = 1;
            goto out;
        }
        printf("%s\n", json);
        free(json);
        code = 0;
    }
out:
    if (cfg)
        config_free(cfg);
    engine_free(e);
    store_close(st);
    dblock_release(lock);
    plugins_unload_all();
    return code;
}

/* With a cluster config: a forget goes through the stream to every
 * partition (spec 18); an export is asked of the owners of the user's
 * partition and of the graph (docs/cluster.md, "Exporting a user"). */
static int cluster_privacy(const char *cmd, enum privacy_op op, const char *user,
                           const struct config *cfg)
{
    char err[1024] = "", who[64];
    snprintf(who, sizeof(who), "cli:uid:%u", (unsigned)getuid());
    struct cluster *c = cluster_connect(&cfg->cluster, err, sizeof(err));
    int rc = -1;
    if (c && op == PRIVACY_FORGET) {
        rc = cluster_forget(c, user, who, cfg->cluster.takeover_ms + 10000, stdout, err,
                            sizeof(err));
    } else if (c) {
        char *json = cluster_export(c, user, who, err, sizeof(err));
        if (json) {
            printf("%s\n", json);
            free(json);
            rc = 0;
        }
    }
    if (*err)
        fprintf(stderr, "mktd %s: %s\n", cmd, err);
    cluster_close(c);
    return rc < 0 ? 2 : rc;
}

int cli_privacy(enum privacy_op op, const char *config_path, const char *db_path,
                const char *address, const char *user)
{
    const char *cmd = op == PRIVACY_FORGET ? "forget" : "export";
    struct config *cfg = NULL;
    if (!user || !*user || strlen(user) > 128) {
        fprintf(stderr, "mktd %s: the user is 1-128 bytes\n", cmd);
        return 2;
    }
    if (config_path) {
        struct errs errs = {0};
        cfg = config_load(config_path, &errs);
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msg[i]);
        errs_free(&errs);
        if (!cfg)
            return 2;
    }
    if (cfg && cfg->cluster.nats && !db_path && !address) {
        int code = cluster_privacy(cmd, op, user, cfg);
        config_free(cfg);
        return code;
    }
    const char *to = daemon_address(address, cfg);
    if (to && (address || daemon_listens(to))) {
        struct sbuf line = {0}, ans = {0};
        sb_fmt(&line, "{\"%s\":", cmd);
        sb_json_str(&line, user, strlen(user));
        sb_str(&line, "}\n");
        int rc = cli_exchange(cmd, to, -1, line.s, line.len, collect, &ans);
        sb_free(&line);
        int code = rc ? rc : print_answer(cmd, &ans);
        sb_free(&ans);
        if (cfg)
            config_free(cfg);
        return code;
    }
    char *db = xstrdup(db_path ? db_path : cfg ? cfg->database : "var/mktd.db");
    int code = offline(cmd, op, user, cfg, db);
    free(db);
    return code;
}

/* ---- oplog ---- */

struct oplog_out {
    int json;
};

static void oplog_row(void *arg, const struct store_oplog *r)
{
    struct oplog_out *o = arg;
    if (o->json) {
        json_t *d = r->detail ? json_loads(r->detail, 0, NULL) : NULL;
        json_t *row =
            json_pack("{s:I,s:I,s:s,s:s,s:o}", "seq", (json_int_t)r->seq, "at", (json_int_t)r->at,
                      "op", r->op ? r->op : "", "who", r->who ? r->who : "", "detail",
                      d ? d : json_string(r->detail ? r->detail : ""));
        char *text = row ? json_dumps(row, JSON_COMPACT) : NULL;
        printf("%s\n", text ? text : "{}");
        free(text);
        json_decref(row);
        return;
    }
    char at[40];
    rfc3339_format(r->at, at, sizeof(at));
    printf("%-6lld %s  %-8s %-16s %s\n", (long long)r->seq, at, r->op ? r->op : "",
           r->who ? r->who : "", r->detail ? r->detail : "");
}

int cli_oplog(const char *db_path, const char *format)
{
    struct oplog_out o = {0};
    char err[512];
    if (format && strcmp(format, "json") == 0)
        o.json = 1;
    else if (format && strcmp(format, "text") != 0) {
        fprintf(stderr, "mktd oplog: --format takes text or json\n");
        return 2;
    }
    if (access(db_path, F_OK) != 0) {
        fprintf(stderr, "mktd oplog: %s: no such database\n", db_path);
        return 2;
    }
    if (store_oplog_list(db_path, oplog_row, &o, err, sizeof(err)) < 0) {
        fprintf(stderr, "mktd oplog: %s\n", err);
        return 2;
    }
    return 0;
}
