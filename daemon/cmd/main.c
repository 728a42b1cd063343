/* mktd: the daemon and its command line (spec section 6). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/plugin.h>

#include "cluster/cluster.h"
#include "cmd/cli.h"
#include "cmd/privacy.h"
#include "cmd/replay.h"
#include "cmd/report.h"
#include "config/config.h"
#include "lib/util.h"
#include "net/metrics.h"
#include "net/server.h"

#define DEFAULT_ADDRESS "tcp:127.0.0.1:7411"
#define DEFAULT_DB "var/mktd.db"

static void usage(FILE *f)
{
    fprintf(f,
            "usage:\n"
            "  mktd -c FILE                      run the daemon in the foreground\n"
            "  mktd check -c FILE                validate the config and load its plugins\n"
            "  mktd check --running -c FILE [--token T] [--ca PEM]\n"
            "                                    and compare with the config the running\n"
            "                                    daemon loaded: what needs a restart, what a\n"
            "                                    reload applies (exit 1 if a restart is needed)\n"
            "  mktd simulate -c FILE [--until TIME] [--from-db PATH] [--plugin-dir DIR] EVENTS\n"
            "                                    play an NDJSON file, print the actions\n"
            "                                    (--from-db: from a copy of PATH's state)\n"
            "  mktd replay [-c NEW.yaml] --db LIVE.db [--from TIME] [--to TIME] [--diff]\n"
            "              [--format text|json] [--plugin-dir DIR]\n"
            "                                    play the events LIVE.db logged through\n"
            "                                    NEW.yaml (or the configs live then); --diff:\n"
            "                                    compare with the live configs\n"
            "  mktd send [-c FILE] [-v] [--token TOKEN] [--ca FILE] [ADDRESS] FILE|-\n"
            "                                    send events, print a summary\n"
            "  mktd explain [-c FILE] [--token TOKEN] [--ca FILE] [ADDRESS] FILE|-|'JSON'\n"
            "                                    what events would do (sent dry), and why\n"
            "  mktd actions [-c FILE] [--db PATH] [--since SEQ] [--campaign ID] [--follow]\n"
            "                                    print actions as NDJSON\n"
            "  mktd timers [-c FILE] [--db PATH] [--failed]\n"
            "                                    print pending timers, or those set aside\n"
            "  mktd outputs [-c FILE] [--db PATH] [--from SEQ ID]\n"
            "                                    webhook outputs: position, lag, last success\n"
            "                                    and error; --from: deliver ID from SEQ on\n"
            "  mktd report [-c FILE | --db PATH] [--campaign ID] [--since T] [--until T]\n"
            "              [--format text|json|html] [-o FILE]\n"
            "                                    campaign figures over a period (T: RFC 3339,\n"
            "                                    a date or Unix ms)\n"
            "  mktd cluster init|status|actions|failed|reload -c FILE [--format text|json]\n"
            "                                    cluster mode: create the streams and\n"
            "                                    buckets; partitions, events and owners;\n"
            "                                    the actions stream as NDJSON; the events\n"
            "                                    a plugin failed, set aside; send FILE's\n"
            "                                    campaigns to every partition\n"
            "  mktd publish -c FILE FILE|-        publish events to the cluster's stream\n"
            "  mktd forget [-c FILE] [--db PATH] [--token TOKEN] [ADDRESS] USER\n"
            "                                    forget a user (through the daemon, else on\n"
            "                                    the database itself)\n"
            "  mktd export [-c FILE] [--db PATH] [--token TOKEN] [ADDRESS] USER\n"
            "                                    print all data kept about a user as JSON\n"
            "  mktd oplog [-c FILE] [--db PATH] [--format text|json]\n"
            "                                    config loads, forgets and exports\n"
            "  mktd --version\n");
}

/* The config's first listen address and database, for send and actions. */
static int from_config(const char *path, char **address, char **db)
{
    struct errs errs = {0};
    struct config *cfg = config_load(path, &errs);
    if (!cfg) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msg[i]);
        errs_free(&errs);
        return -1;
    }
    if (address && cfg->n_listen)
        *address = xstrdup(cfg->listen[0]);
    if (db)
        *db = xstrdup(cfg->database);
    config_free(cfg);
    return 0;
}

/* mktd outputs: the database (--db, or the config's) and the config's
 * outputs (for each one's filters), when -c is given. */
static int outputs_cmd(const char *config, const char *db, const char *from, const char *id,
                       size_t npos)
{
    struct config *cfg = NULL;
    if (npos > 1) {
        usage(stderr);
        return 2;
    }
    if (config) {
        struct errs errs = {0};
        cfg = config_load(config, &errs);
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msg[i]);
        errs_free(&errs);
        if (!cfg)
            return 2;
    }
    int code = cli_outputs(db ? db : cfg ? cfg->database : DEFAULT_DB, cfg, from, id);
    config_free(cfg);
    return code;
}

int main(int argc, char **argv)
{
    const char *cmd = argc > 1 && argv[1][0] != '-' ? argv[1] : "run";
    int first = strcmp(cmd, "run") == 0 && !(argc > 1 && strcmp(argv[1], "run") == 0) ? 1 : 2;
    const char *config = NULL, *db = NULL, *campaign = NULL, *until = NULL, *from = NULL;
    const char *token = NULL, *ca = NULL;
    const char *since_arg = NULL, *format = NULL, *out_path = NULL;
    const char *to_arg = NULL, *from_db = NULL;
    int do_diff = 0;
    char **pos = calloc((size_t)argc + 1, sizeof(char *));
    char **dirs = calloc((size_t)argc + 1, sizeof(char *));
    size_t npos = 0, ndirs = 0;
    long long since = 0;
    int follow = 0, verbose = 0, failed = 0, running = 0, code = 2;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        int more = i + 1 < argc;
        if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && more)
            config = argv[++i];
        else if (strcmp(a, "--db") == 0 && more)
            db = argv[++i];
        else if (strcmp(a, "--since") == 0 && more)
            since = strtoll(since_arg = argv[++i], NULL, 10);
        else if (strcmp(a, "--format") == 0 && more)
            format = argv[++i];
        else if (strcmp(a, "-o") == 0 && more)
            out_path = argv[++i];
        else if (strcmp(a, "--campaign") == 0 && more)
            campaign = argv[++i];
        else if (strcmp(a, "--from") == 0 && more)
            from = argv[++i];
        else if (strcmp(a, "--to") == 0 && more)
            to_arg = argv[++i];
        else if (strcmp(a, "--from-db") == 0 && more)
            from_db = argv[++i];
        else if (strcmp(a, "--diff") == 0)
            do_diff = 1;
        else if (strcmp(a, "--until") == 0 && more)
            until = argv[++i];
        else if (strcmp(a, "--token") == 0 && more)
            token = argv[++i];
        else if (strcmp(a, "--ca") == 0 && more)
            ca = argv[++i];
        else if (strcmp(a, "--plugin-dir") == 0 && more)
            dirs[ndirs++] = argv[++i];
        else if (strcmp(a, "--follow") == 0 || strcmp(a, "-f") == 0)
            follow = 1;
        else if (strcmp(a, "--failed") == 0)
            failed = 1;
        else if (strcmp(a, "--running") == 0)
            running = 1;
        else if (strcmp(a, "-v") == 0)
            verbose = 1;
        else if (strcmp(a, "--version") == 0) {
            printf("mktd %s (plugin ABI %d.%d)\n", metrics_version(), MKTD_ABI_MAJOR,
                   MKTD_ABI_MINOR);
            code = 0;
            goto out;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            code = 0;
            goto out;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "mktd: unknown option %s\n", a);
            usage(stderr);
            goto out;
        } else
            pos[npos++] = argv[i];
    }
    if (strcmp(cmd, "run") == 0 || strcmp(cmd, "check") == 0) {
        if (!config || npos) {
            usage(stderr);
            goto out;
        }
        server_set_report(report_serve);
        if (strcmp(cmd, "run") == 0 && cluster_configured(config))
            code = cluster_run(config); /* a worker of a cluster (spec 17) */
        else
            code = strcmp(cmd, "run") == 0 ? server_run(config)
                   : running               ? cli_check_running(config, token, ca)
                                           : cli_check(config);
    } else if (strcmp(cmd, "simulate") == 0) {
        if (!config || npos != 1) {
            usage(stderr);
            goto out;
        }
        code = cli_simulate(config, pos[0], until, from_db, dirs, ndirs);
    } else if (strcmp(cmd, "replay") == 0) {
        if (!db || npos) {
            usage(stderr);
            goto out;
        }
        code = cli_replay(config, db, from, to_arg, do_diff, format, dirs, ndirs);
    } else if (strcmp(cmd, "send") == 0 || strcmp(cmd, "explain") == 0) {
        char *address = NULL;
        if (npos < 1 || npos > 2) {
            usage(stderr);
            goto out;
        }
        if (npos == 2)
            address = xstrdup(pos[0]);
        else if (config && from_config(config, &address, NULL) < 0)
            goto out;
        const char *to = address ? address : DEFAULT_ADDRESS;
        if (!token)
            token = getenv("MKTD_TOKEN");
        cli_set_auth(token && *token ? token : NULL, ca);
        code =
            cmd[0] == 's' ? cli_send(to, pos[npos - 1], verbose) : cli_explain(to, pos[npos - 1]);
        free(address);
    } else if (strcmp(cmd, "actions") == 0 || strcmp(cmd, "timers") == 0) {
        char *cdb = NULL;
        if (npos) {
            usage(stderr);
            goto out;
        }
        if (!db && config && from_config(config, NULL, &cdb) < 0)
            goto out;
        const char *path = db ? db : cdb ? cdb : DEFAULT_DB;
        code =
            cmd[0] == 'a' ? cli_actions(path, since, campaign, follow) : cli_timers(path, failed);
        free(cdb);
    } else if (strcmp(cmd, "outputs") == 0) {
        code = outputs_cmd(config, db, from, npos ? pos[0] : NULL, npos);
    } else if (strcmp(cmd, "forget") == 0 || strcmp(cmd, "export") == 0) {
        if (npos < 1 || npos > 2) {
            usage(stderr);
            goto out;
        }
        if (!token)
            token = getenv("MKTD_TOKEN");
        cli_set_auth(token && *token ? token : NULL, ca);
        code = cli_privacy(cmd[0] == 'f' ? PRIVACY_FORGET : PRIVACY_EXPORT, config, db,
                           npos == 2 ? pos[0] : NULL, pos[npos - 1]);
    } else if (strcmp(cmd, "oplog") == 0) {
        char *cdb = NULL;
        if (npos) {
            usage(stderr);
            goto out;
        }
        if (!db && config && from_config(config, NULL, &cdb) < 0)
            goto out;
        code = cli_oplog(db ? db : cdb ? cdb : DEFAULT_DB, format);
        free(cdb);
    } else if (strcmp(cmd, "report") == 0) {
        if (npos) {
            usage(stderr);
            goto out;
        }
        code = cli_report(config, db, campaign, since_arg, until, format, out_path);
    } else if (strcmp(cmd, "cluster") == 0) {
        if (!config || npos != 1 ||
            (strcmp(pos[0], "init") && strcmp(pos[0], "status") && strcmp(pos[0], "actions") &&
             strcmp(pos[0], "failed") && strcmp(pos[0], "reload"))) {
            usage(stderr);
            goto out;
        }
        code = cli_cluster(pos[0], config, format);
    } else if (strcmp(cmd, "publish") == 0) {
        if (!config || npos != 1) {
            usage(stderr);
            goto out;
        }
        code = cli_publish(config, pos[0]);
    } else {
        fprintf(stderr, "mktd: unknown command %s\n", cmd);
        usage(stderr);
    }
out:
    free(pos);
    free(dirs);
    return code;
}
