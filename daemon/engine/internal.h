/* What engine.c, host.c and the working set share, and nobody else sees:
 * the engine's fields, campaigns, and a plugin callback's context. */
#ifndef MKTD_ENGINE_INTERNAL_H
#define MKTD_ENGINE_INTERNAL_H

#include <jansson.h>
#include <mktd/plugin.h>
#include <stdint.h>

#include "engine/engine.h"
#include "engine/hostcommon.h"
#include "engine/plugins.h"
#include "store/eventlog.h"

struct campaign {
    const struct campaign_cfg *cfg;
    const struct plugin_mod *mod;
    void *data;
    size_t index;
    int first_of_plugin;
};

struct world {
    struct config *cfg;
    struct campaign *c;
    size_t n;
};

/* An internal event waiting to be evaluated (breadth-first). */
struct pending {
    int64_t ts;
    char *kind, *user, *source;
    json_t *props;
    int depth;
};

/* An action recorded in the open batch (written at commit). */
struct action {
    int64_t ts;
    const char *campaign; /* the running world's */
    char *kind, *user, *event_id, *payload;
};

/* A timer set aside in the open batch (written at commit). */
struct aside {
    char *campaign, *user, *name, *error;
    int64_t due, at;
};

struct engine {
    struct store *st;
    struct ws *ws; /* the working set: all reads and changes of per-user data */
    size_t ws_budget;
    struct world *w;
    int clock_event;
    int fixed_profiles;
    int ids_per_user;  /* engine_opts.ids_per_user */
    int64_t now;       /* the clock; under `clock: event` the largest ts so far */
    int64_t saved_now; /* the clock as the database has it */
    /* engine_commit_meta: meta rows the next commit writes (forces a write) */
    struct {
        char key[64];
        int64_t val;
    } commit_meta[ENGINE_COMMIT_META_MAX];
    int commit_meta_set; /* rows in commit_meta */
    int64_t next_due;    /* smallest timer due, INT64_MAX when none */
    char **counted;      /* types counted for user.count.<type> */
    size_t n_counted;
    /* the cause being evaluated */
    struct pending *q;
    size_t q_head, q_len, q_cap;
    int n_actions;           /* actions of the current input event and its chain */
    struct campaign *failed; /* the campaign whose plugin failed the event */
    int failed_rc;
    int io_failed; /* a store read or write failed: the event fails, whatever plugins say */
    /* the batch: many events, written in one transaction at commit */
    int in_batch;
    int txn; /* the write transaction is open */
    int batch_n;
    int64_t batch_now, batch_next_due;
    struct action *act;
    size_t n_act, cap_act;
    struct aside *aside;
    size_t n_aside, cap_aside;
    struct engine_stats stats;
    /* figures plugins publish (gauge_set); made on first use, shown from
     * the commit of the batch that set them (engine/gauges.h) */
    struct gauges *gauges;
    /* the input event being evaluated is a dry run (is_dry), and its
     * explanation's entries when one is asked (else NULL) */
    int dry;
    json_t *explain;
    /* groups (spec 11): for the chain being evaluated, the campaign that
     * took each group (by config.groups index), NULL while free */
    const char **taken;
    size_t n_taken;
    /* caps (spec 11): actions kept out by a cap in the open batch (cap id
     * and campaign id, the running world's), and the committed totals */
    struct capped {
        const char *cap, *campaign;
    } * capped;
    size_t n_capped, cap_capped;
    struct pair_counts capped_totals; /* by cap and campaign, committed */
    /* daemon.event_log (spec 13): the batch's accepted input events, each
     * one allocation from its id on, written at commit */
    struct evlog_row *logq;
    size_t n_logq, cap_logq;
    char actor[64]; /* who loads configs, for oplog (engine_set_actor; "" = "daemon") */
    /* random_for in cluster mode (engine/derive.h): the secret (NULL: the
     * cryptographic source), the partition, the timer whose chain runs
     * (NULL for an input event's), and the calls so far in the chain */
    char *secret;
    size_t secret_len;
    uint32_t partition;
    const struct timer_row *firing;
    uint32_t random_calls;
    /* cluster mode: the budgets' shared pool (engine/budget.c); NULL else */
    struct budget_pool pool;
    int has_pool;
    /* cluster mode: other partitions' unique keys, and the keys claimed
     * here since engine_claimed_take ("ns\0key\0campaign" each). A list
     * of its own, not the working set's changed unique entries: those
     * leave the changed list at every flush (due timers, users_foreach,
     * a config or forget message's commit: several in a worker's round)
     * and may be evicted at the commit before the worker takes them. */
    struct unique_registry registry;
    int has_registry;
    char **claimed;
    size_t n_claimed, cap_claimed;
    /* campaign names of delivered actions (engine_deliver), kept for the
     * engine's life: the batch's actions and capped counts point at them */
    char **foreign;
    size_t n_foreign;
};

/* Writes the working set into the open write transaction (opening it):
 * the store then answers ordered queries (timers, every user) as memory
 * stands. -EIO, and the event fails. */
int engine_flush(struct engine *e);

/* The campaign with this id in the running world, or NULL. */
struct campaign *engine_campaign(struct engine *e, const char *id);

/* The host API table handed to plugins (host.c). */
const mktd_host *host_table(void);

/* One plugin callback's context (host.c). */
struct mktd_ctx {
    struct ctx_base base;
    struct engine *e;
    struct campaign *c;
    int64_t now;          /* action ts */
    const char *event_id; /* the input event, NULL for timers */
    int depth;            /* depth of what is being handled */
    int dry;              /* a dry run (is_dry); zeroed by ctx_init, set by the engine */
};
void ctx_init(struct mktd_ctx *ctx, struct engine *e, struct campaign *c, int64_t now,
              const char *event_id, int depth);
/* Records an action and queues its internal event (host.c's emit). */
int engine_emit(struct engine *e, struct mktd_ctx *ctx, const char *kind, const char *user,
                json_t *payload);

#endif
