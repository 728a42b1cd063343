/* The engine: the clock, timers, the user profile, campaigns in config
 * order, and chaining of actions as internal events (spec sections 2-4). */
#ifndef MKTD_ENGINE_H
#define MKTD_ENGINE_H

#include <jansson.h>
#include <mktd/plugin.h>
#include <stdint.h>

#include "config/config.h"
#include "engine/event.h"
#include "engine/hostcommon.h"
#include "engine/plugins.h"
#include "store/store.h"

struct campaign {
    const struct campaign_cfg *cfg;
    const struct plugin_mod *mod;
    void *data;
    size_t index;
    int first_of_plugin;
};

/* A loaded config with its campaigns built: swapped in whole. */
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

struct engine {
    struct store *st;
    struct world *w;
    int clock_event;
    int64_t now;       /* the clock; under `clock: event` the largest ts so far */
    int64_t saved_now; /* the clock as the database has it */
    int64_t next_due;  /* smallest timer due, INT64_MAX when none */
    char **counted;    /* types counted for user.count.<type> */
    size_t n_counted;
    /* the cause being evaluated */
    struct pending *q;
    size_t q_head, q_len, q_cap;
    int n_actions;           /* actions of the current input event and its chain */
    struct campaign *failed; /* the campaign whose plugin failed the event */
    /* the batch: one transaction for many events */
    int in_batch;
    int batch_n;
    int64_t batch_now;
    /* figures for /metrics */
    uint64_t actions_total, plugin_errors;
};

enum eng_result { ENG_OK, ENG_DUPLICATE, ENG_INTERNAL };

/* Builds every campaign of cfg (loading plugins, checking `when`, calling
 * init). On failure adds FILE:LINE:COL messages to errs and returns NULL.
 * The world takes cfg on success. */
struct world *world_build(struct config *cfg, struct errs *errs);
void world_free(struct world *w);

int engine_open(struct engine *e, struct store *st, int clock_event);
void engine_close(struct engine *e);
/* Makes w the running world, in its own transaction (campaign records,
 * counted types, on_load, the config's record). On failure the old world
 * stays and w is left to the caller. */
int engine_swap(struct engine *e, struct world *w, char *err, size_t errlen);

/* Opens the batch's transaction unless it is open. */
int engine_batch_begin(struct engine *e);
/* Commits the batch (when open). On failure the batch is rolled back, the
 * clock restored, and -EIO returned: nothing of it happened. */
int engine_batch_commit(struct engine *e);

/* Within a batch transaction: one input event, under a savepoint.
 * receipt_ms is the wall time the line arrived. *n_actions gets the actions
 * the event caused (chain included). */
enum eng_result engine_event(struct engine *e, const struct event *ev, int64_t receipt_ms,
                             int *n_actions, char *detail, size_t detail_len);
/* Within a batch transaction: fires every timer due at or before until and
 * moves the clock there (`clock: event`). */
int engine_advance(struct engine *e, int64_t until);

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
};
void ctx_init(struct mktd_ctx *ctx, struct engine *e, struct campaign *c, int64_t now,
              const char *event_id, int depth);
/* Records an action and queues its internal event (host.c's emit). */
int engine_emit(struct engine *e, struct mktd_ctx *ctx, const char *kind, const char *user,
                json_t *payload);

#endif
