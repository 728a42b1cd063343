/* The daemon's config (spec section 2), validated against its schema. */
#ifndef MKTD_CONFIG_H
#define MKTD_CONFIG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config/outputs.h"
#include "config/yaml.h"
#include "lib/util.h"

enum cond_op { OP_EQ, OP_NE, OP_GT, OP_GTE, OP_LT, OP_LTE, OP_IN, OP_NOT_IN, OP_EXISTS };

enum field_kind {
    F_PROPS,       /* props.<path>: arg = the path after "props." */
    F_TYPE,        /* type */
    F_USER_ID,     /* user.id */
    F_USER_EVENTS, /* user.events */
    F_USER_ORDERS,
    F_USER_SPENT,
    F_USER_FIRST_SEEN,
    F_USER_LAST_SEEN,
    F_USER_COUNT /* user.count.<type>: arg = the type */
};

struct cond {
    enum field_kind field;
    char *arg; /* path or type; NULL for other fields */
    enum cond_op op;
    json_t *value; /* the YAML value as JSON (core schema); in/not_in:
                      an array; exists: JSON true/false (absent value =
                      true) */
    const struct ynode *node;
};

struct campaign_cfg {
    char *id;             /* [a-z0-9_-]{1,64}, unique */
    char *plugin;         /* [a-z0-9_-]{1,64} */
    int enabled;          /* default 1 */
    int64_t starts, ends; /* INT64_MIN / INT64_MAX when absent */
    int has_when;
    char **events; /* when.event: one or more types */
    size_t n_events;
    struct cond *conds; /* when.all */
    size_t n_conds;
    const struct ynode *params;    /* NULL when absent; owned by the doc */
    const struct ynode *node;      /* the campaign's map */
    const struct ynode *when_node; /* NULL when absent */
    /* Set in code by the SDK's test kit, never from a file: without
     * `when` the campaign matches every event, even when its plugin
     * requires `when`. */
    int when_any;
    /* `group`: campaigns of one group exclude each other per event (spec
     * 11); NULL when absent. group_idx indexes config.groups, -1 without. */
    char *group;
    int group_idx;
};

/* Cluster mode (spec 17): `daemon.cluster`. */
struct cluster_cfg {
    char **nats; /* server URLs; NULL when there is no daemon.cluster */
    size_t n_nats;
    int partitions;      /* 1..1024, default 16; fixed for a stream's life */
    char *worker;        /* this worker's name; default: the host name */
    char *stream;        /* the events stream, default MKTD_EVENTS */
    char *actions;       /* the actions stream, default MKTD_ACTIONS */
    int replicas;        /* 1..5, default 3 */
    int64_t takeover_ms; /* cluster.takeover, default 10 s */
    int64_t snapshot_ms; /* cluster.snapshot: shard snapshots every, default 60 s; 0: none */
    char *snapshots;     /* the snapshot stream, default MKTD_SNAPSHOTS */
    int trim;            /* cluster.trim, default on: the event stream trimmed behind the
                            snapshots (docs/cluster.md, "Trimming the event stream") */
    char *secret_file;   /* resolved against the config's folder; required */
    char *secret;        /* its bytes, a trailing newline dropped; never empty */
    size_t secret_len;
};

/* A frequency cap across campaigns (top-level `caps:`, spec 11). */
struct cap_cfg {
    char *id;
    char **kinds; /* as written */
    size_t n_kinds;
    /* the kinds counted, as a JSON array for the store's query: kinds, plus
     * reactivation.holdout where reactivation.offer is named */
    char *kinds_json;
    int64_t max;
    int64_t per_ms;
    const struct ynode *node;
};

struct config {
    char *path;
    /* The folder relative paths in the config resolve against (spec 18):
     * for a file (config_load), its folder as an absolute path without
     * symbolic links; for a text (config_load_string), the folder of its
     * name as written, or NULL when the name has none (paths as written).
     * database, plugin_dirs, unix: listen addresses, tokens_file, tls
     * files and outputs' secret_file are resolved against it, defaults
     * included. */
    char *dir;
    int dir_real;           /* dir is absolute, without symbolic links */
    char *database_written; /* `database` as written (or the default) */
    struct ydoc *doc;
    char *text; /* the file as read, for the record */
    size_t text_len;

    char **listen; /* default {"tcp:127.0.0.1:7411"} */
    size_t n_listen;
    int listen_written; /* `listen` is in the file (a worker listens only then) */
    char *http;         /* NULL when absent */
    char *database;     /* default "var/mktd.db" */
    char **plugin_dirs; /* default {"build/plugins"} */
    size_t n_plugin_dirs;
    int clock_event;              /* clock: event */
    int max_batch;                /* commit.max_batch, default 1024, 1..1000000 */
    int max_delay_ms;             /* commit.max_delay_ms, default 2, 0..10000 */
    int sync_full;                /* commit.synchronous: full */
    int64_t max_event_bytes;      /* default 65536, 64..16 MiB */
    int max_connections;          /* default 1024, 1..1000000 */
    int64_t max_http_body;        /* default 16 MiB */
    int64_t max_future_ms;        /* default 1d */
    int64_t working_set;          /* limits.working_set: the engine's memory budget; 0: default */
    int log_level;                /* MKTD_LOG_*; default info */
    int64_t retention_actions_ms; /* daemon.retention.actions; 0: actions are kept for ever */
    int64_t event_log_keep_ms;    /* daemon.event_log.keep; 0: no event log (spec 13) */

    /* Safe to expose (spec 14); paths resolved against the config's folder */
    char *tokens_file;   /* daemon.auth.tokens_file; NULL: no auth */
    int socket_mode;     /* daemon.socket_mode ("0660"); 0: absent */
    char *socket_group;  /* daemon.socket_group; NULL: absent */
    char *tls_cert;      /* daemon.tls.cert; NULL: no daemon.tls */
    char *tls_key;       /* daemon.tls.key */
    char *tls_client_ca; /* daemon.tls.client_ca; NULL: absent */
    char *metrics;       /* daemon.metrics (HOST:PORT); NULL: absent */
    int64_t max_past_ms; /* limits.max_past; 0: absent */

    struct cluster_cfg cluster; /* cluster.nats NULL: a single daemon */

    struct campaign_cfg *campaigns;
    size_t n_campaigns;
    char **groups; /* the distinct `group` names, in order of first use */
    size_t n_groups;
    struct cap_cfg *caps;
    size_t n_caps;

    struct output_cfg *outputs; /* `outputs:` (config/outputs.h) */
    size_t n_outputs;

    /* Set in code by the SDK's test kit, never from a file: engine_swap
     * calls no on_load and records no campaign as seen (the kit swaps in a
     * new world for every change of its settings and loads on request). */
    int no_load;
};

/* Loads and validates path. On failure adds every problem found
 * ("FILE:LINE:COL: message") to errs and returns NULL. Plugin params are
 * not checked here (the plugins do that when campaigns are built). */
struct config *config_load(const char *path, struct errs *errs);
struct config *config_load_string(const char *name, const char *text, size_t len,
                                  struct errs *errs);
/* A text whose relative paths resolve against dir (as config.dir). */
struct config *config_load_string_in(const char *name, const char *dir, int real, const char *text,
                                     size_t len, struct errs *errs);
void config_free(struct config *c);
/* Keeps the campaigns keep() says yes to, in their order (groups, caps and
 * the rest stay as they are): cluster mode splits a config's campaigns
 * between the user partitions and the graph. How many are left. */
size_t config_keep_campaigns(struct config *c, int (*keep)(const struct campaign_cfg *cc));
/* Keeps the caps keep() says yes to (NULL: none), in their order: cluster
 * mode splits them between the graph and the user partitions. How many
 * are left. */
size_t config_keep_caps(struct config *c, int (*keep)(const struct cap_cfg *k));

/* Cluster mode's config messages (spec 18: config changes reach workers
 * through the stream). A config's top-level blocks other than `daemon`
 * (campaigns, caps, outputs), as its text has them: malloc'd, or NULL with
 * a message in err when the top level is not a block mapping. */
char *config_campaign_text(const struct config *c, size_t *len, char *err, size_t errlen);
/* The text of a config whose `daemon` block is base's own and whose other
 * blocks are those of text (a config_campaign_text; a daemon block in it
 * is dropped), malloc'd; NULL with err as above. */
char *config_splice(const struct config *base, const char *text, size_t len, size_t *out_len,
                    char *err, size_t errlen);

/* path resolved against the folder dir (NULL: as written; real: dir is
 * absolute without symbolic links, so leading ../ fold into it), malloc'd. */
char *config_resolve(const char *dir, int real, const char *path);
/* A secret file's bytes (a trailing newline or CRLF dropped), malloc'd
 * into *out: 0, or -1 with err saying why (unreadable, empty), naming the
 * config's folder dir when path was resolved against it. */
int config_read_secret(const char *path, const char *dir, char **out, size_t *len, char *err,
                       size_t errlen);
/* Section 18: before paths resolved against the config's folder, a
 * relative `database` was found from the current directory. When nothing
 * is at c->database but a database file is at that old place (a different
 * file), writes a message naming both paths and returns 1; 0 otherwise. */
int config_database_moved(const struct config *c, char *msg, size_t len);
/* " (resolved against the config's folder DIR)" when path lies under the
 * config's folder, "" otherwise: for messages that name a resolved path. */
const char *config_path_note(const struct config *c, const char *path, char *buf, size_t len);

/* "https:HOST:PORT" or "http:HOST:PORT" or "HOST:PORT" (an HTTP address):
 * HOST:PORT, and *tls set for https. */
const char *config_http_hostport(const char *addr, int *tls);
/* Whether the cap counts actions of this kind (reactivation.holdout counts
 * where reactivation.offer is named: the same decision). */
int cap_counts(const struct cap_cfg *cap, const char *kind);

#endif
