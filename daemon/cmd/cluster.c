/* mktd cluster init|status|actions|failed|reload and mktd publish (spec 17). */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cluster/cluster.h"
#include "cmd/cli.h"
#include "config/config.h"
#include "engine/engine.h"

/* The config, which must have daemon.cluster; NULL after saying why. */
static struct config *cluster_config(const char *path)
{
    struct errs errs = {0};
    struct config *cfg = config_load(path, &errs);
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msg[i]);
    errs_free(&errs);
    if (cfg && !cfg->cluster.nats) {
        fprintf(stderr, "%s: no daemon.cluster: this config is for a single daemon\n", path);
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* mktd cluster reload: the config's campaigns, checked as the daemon would
 * build them (plugins loaded, params checked), into every partition. */
static int reload(struct cluster *c, const char *config_path, const struct config *cfg, char *err,
                  size_t errlen)
{
    struct errs errs = {0};
    struct config *check = config_load(config_path, &errs);
    struct world *w = check ? world_build(check, &errs) : NULL;
    for (size_t i = 0; i < errs.n; i++)
        fprintf(stderr, "%s\n", errs.msg[i]);
    errs_free(&errs);
    if (!w) {
        config_free(check);
        snprintf(err, errlen, "%s: not published (the campaigns do not build)", config_path);
        return -1;
    }
    world_free(w);
    size_t len = 0;
    char *text = config_campaign_text(cfg, &len, err, errlen);
    int rc = text ? cluster_reload(c, text, len, stdout, err, errlen) : -1;
    free(text);
    return rc;
}

/* mktd cluster init; on a new event stream, the config's campaigns (if
 * any) go in first (a reload), so that a replay from sequence 1 starts on
 * them whatever the workers' files say by then. */
static int init(struct cluster *c, const char *config_path, const struct config *cfg, char *err,
                size_t errlen)
{
    int empty = 0;
    if (cluster_init(c, &empty, stdout, err, errlen) < 0)
        return -1;
    if (empty && cfg->n_campaigns && reload(c, config_path, cfg, err, errlen) < 0) {
        fprintf(stderr,
                "mktd cluster init: the campaigns were not published (%s); run mktd "
                "cluster reload once they build\n",
                err);
        err[0] = 0;
    }
    return 0;
}

int cli_cluster(const char *sub, const char *config_path, const char *format)
{
    int json = format && strcmp(format, "json") == 0;
    if (format && !json && strcmp(format, "text") != 0) {
        fprintf(stderr, "mktd cluster: --format is text or json\n");
        return 2;
    }
    struct config *cfg = cluster_config(config_path);
    if (!cfg)
        return 2;
    char err[1024] = "";
    int rc = 2;
    struct cluster *c = cluster_connect(&cfg->cluster, err, sizeof(err));
    if (c) {
        rc = strcmp(sub, "init") == 0      ? init(c, config_path, cfg, err, sizeof(err))
             : strcmp(sub, "actions") == 0 ? cluster_actions(c, stdout, err, sizeof(err))
             : strcmp(sub, "failed") == 0  ? cluster_failed(c, stdout, json, err, sizeof(err))
             : strcmp(sub, "reload") == 0  ? reload(c, config_path, cfg, err, sizeof(err))
                                           : cluster_status(c, stdout, json, err, sizeof(err));
        rc = rc < 0 ? 1 : 0;
    }
    if (*err)
        fprintf(stderr, "mktd cluster %s: %s\n", sub, err);
    cluster_close(c);
    config_free(cfg);
    return rc;
}

int cli_publish(const char *config_path, const char *file)
{
    struct config *cfg = cluster_config(config_path);
    if (!cfg)
        return 2;
    int fd = strcmp(file, "-") == 0 ? 0 : open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror(file);
        config_free(cfg);
        return 2;
    }
    char err[1024] = "";
    int rc = 2;
    long ok = 0, dup = 0, bad = 0;
    struct cluster *c = cluster_connect(&cfg->cluster, err, sizeof(err));
    if (c) {
        struct publish_limits lim = {cfg->max_event_bytes, cfg->max_future_ms, cfg->max_past_ms};
        int r = cluster_publish(c, fd, &lim, NULL, stdout, &ok, &dup, &bad, err, sizeof(err));
        fprintf(stderr, "%ld published, %ld duplicate, %ld not published\n", ok, dup, bad);
        rc = r < 0 ? 2 : bad ? 1 : 0;
    }
    if (*err)
        fprintf(stderr, "mktd publish: %s\n", err);
    cluster_close(c);
    if (fd > 0)
        close(fd);
    config_free(cfg);
    return rc;
}
