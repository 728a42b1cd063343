/*
 * The engine: the clock, timers, the user profile, campaigns in config
 * order, and chaining of actions as internal events (spec sections 2-4, 12).
 *
 * Sealed: the rest of the daemon holds an opaque struct engine and uses only
 * what is declared here. The engine owns the batch and everything inside it
 * (the working set of per-user data, the undo log, the pending actions);
 * the store sees it only at commit.
 */
#ifndef MKTD_ENGINE_H
#define MKTD_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include <mktd/plugin.h>

#include "config/config.h"
#include "engine/event.h"
#include "store/store.h"

struct engine;
/* A loaded config with its campaigns built (plugins loaded, params
 * checked): swapped in whole. */
struct world;

/* Builds every campaign of cfg (loading plugins, checking `when`, calling
 * init). On failure adds FILE:LINE:COL messages to errs and returns NULL.
 * The world takes cfg on success. */
struct world *world_build(struct config *cfg, struct errs *errs);
void world_free(struct world *w);
size_t world_campaigns(const struct world *w);
const struct config *world_config(const struct world *w);

/* Cluster mode (spec 17): the pool that campaign-wide counters added to
 * with a limit (budgets) share across partitions (engine/budget.c).
 *
 * claim(arg, campaign, key, limit, need, next, end, got) finds this
 * partition's next claim on the pool of campaign's counter key, looking
 * from claim number *next on (*end: where claim *next - 1 ends): a claim
 * of this partition already there (made by an event since undone, or by
 * an earlier owner whose shard did not keep it), else a new one of at
 * least need units (at most what is left under limit). 0 with *got > 0
 * and *next, *end moved past it; 1 when the pool is spent (nothing more
 * under limit); -EAGAIN when the pool cannot be reached in time (the event
 * fails). */
struct budget_pool {
    int (*claim)(void *arg, const char *campaign, const char *key, int64_t limit, int64_t need,
                 int64_t *next, int64_t *end, int64_t *got);
    void *arg;
};

/* Cluster mode: unique keys (coupon codes) claimed in other partitions
 * (engine/host.c). lookup(arg, ns, key, campaign, len) gives the claiming
 * campaign of a key this partition's shard does not hold: 0, -ENOENT, or
 * -EAGAIN when it cannot be asked (the event fails). */
struct unique_registry {
    int (*lookup)(void *arg, const char *ns, const char *key, char *campaign, size_t len);
    void *arg;
};

struct engine_opts {
    int clock_event;     /* `clock: event` */
    size_t memory_bytes; /* the working set's budget; 0: the default */
    int fixed_profiles;  /* events leave profiles alone (the SDK's test kit sets them) */
    /* cluster mode: random_for derives its bytes from this secret and the
     * action's identity, partition included (engine/derive.h); NULL: the
     * cryptographic source. The engine keeps a copy. */
    const char *secret;
    size_t secret_len;
    uint32_t partition;
    /* cluster mode: budgets come from this pool; NULL: each budget is this
     * engine's alone */
    const struct budget_pool *pool;
    /* cluster mode: unique keys of the other partitions; NULL: none */
    const struct unique_registry *registry;
    /* cluster mode: event ids are unique per user (spec 18), so that an
     * event is remembered as its id, 0x1f and its user's pseudonym (the
     * store's key; never the user id, which a forget must not leave
     * behind); 0: an id is unique across users */
    int ids_per_user;
};

/* An engine over st (which it borrows). No world runs until engine_swap. */
int engine_new(struct store *st, const struct engine_opts *o, struct engine **out, char *err,
               size_t errlen);
void engine_free(struct engine *e);

/* Makes w the running world, in its own transaction (campaign records,
 * counted types, on_load, the config's record). On failure the old world
 * stays and w is left to the caller. Call between batches. */
int engine_swap(struct engine *e, struct world *w, char *err, size_t errlen);
/* The running world's config (NULL before the first swap). */
const struct config *engine_config(const struct engine *e);
size_t engine_campaigns(const struct engine *e);

enum eng_result { ENG_OK, ENG_DUPLICATE, ENG_INTERNAL };

/* What an event hands back besides its result, when it asks (spec 10).
 * Both NULL otherwise; the caller owns them. */
struct eng_report {
    /* a dry event: its own and chained actions, in order, as objects
     * {ts, campaign, kind, user, event_id, payload} */
    json_t *actions;
    /* explain: one entry per campaign decision, in evaluation order */
    json_t *explain;
};

/* One decoded, valid input event into the batch (a batch opens with its
 * first event). receipt_ms is the wall time the line arrived. *n_actions
 * gets the actions the event caused (chain included). Its effects are kept
 * only once engine_commit succeeds.
 *
 * ev->dry: evaluated exactly as the next real event would be (duplicate
 * check, due timers, clock, profile, campaigns, chains), then all of it is
 * undone: nothing stays of it, the id is not remembered, and a timer that
 * fails inside it is not set aside. ev->explain: rep->explain gets the
 * decisions. rep may be NULL (nothing is reported). */
enum eng_result engine_event(struct engine *e, const struct event *ev, int64_t receipt_ms,
                             int *n_actions, struct eng_report *rep, char *detail,
                             size_t detail_len);
/* Cluster mode (spec 17): an action a campaign of the graph partition
 * decided for a user of this partition, delivered through the stream. It
 * is recorded with the open batch like the partition's own actions (no
 * campaign here runs on it), unless one of the user's caps keeps it out
 * (spec 11; counted as capped by that cap and the action's campaign). key
 * names the delivery for good: a second delivery of one key is not
 * recorded again. 0 recorded, 1 capped, 2 delivered before, -EIO (nothing
 * of it kept). */
struct delivered {
    const char *key;
    int64_t ts;
    const char *campaign, *kind, *user;
    const char *event_id; /* NULL: none */
    const char *payload;  /* a JSON object's text */
    int *named_forgotten; /* NULL, or set to 1 when it named a user forgotten here */
};
int engine_deliver(struct engine *e, const struct delivered *d);
/* Fires every timer due at or before until and moves the clock there
 * (`clock: event`), as part of the batch. */
int engine_advance(struct engine *e, int64_t until);
/* Events (and advances) in the open batch; 0 when none is open. */
int engine_batch_size(const struct engine *e);
/* Writes the batch in one transaction: 0, or 1 when it had nothing to
 * write (so the database was not touched). On failure nothing of it
 * happened (memory is put back as it was) and -EIO is returned. */
int engine_commit(struct engine *e);
/* A meta row (key < 64 bytes) the next engine_commit writes inside its
 * transaction, even when the batch changed nothing else (cluster mode: the
 * partition's applied stream sequence, kept with the effects). Once; up to
 * ENGINE_COMMIT_META_MAX keys a commit (a key set again keeps the last). */
#define ENGINE_COMMIT_META_MAX 4
void engine_commit_meta(struct engine *e, const char *key, int64_t val);

/* The smallest due time of a pending timer, INT64_MAX when none. */
int64_t engine_next_due(const struct engine *e);
int engine_clock_event(const struct engine *e);

/* The working set's memory budget (limits.working_set; 0: the default). */
void engine_set_memory(struct engine *e, size_t bytes);

struct engine_stats {
    uint64_t actions_total; /* actions committed since start */
    uint64_t plugin_errors; /* callbacks that failed */
    uint64_t timers_failed; /* timers set aside */
    /* the working set: entries and bytes now; lookups found in memory or
     * read from the store; entries dropped for the budget; rows written */
    uint64_t ws_entries, ws_bytes, ws_budget, ws_hits, ws_misses, ws_evictions, ws_rows_written;
    uint64_t id_reads, id_filter_bytes; /* event ids looked up in the store; the filter */
};
void engine_stats(const struct engine *e, struct engine_stats *out);

/* The figures plugins publish with gauge_set, as of the last commit: cb is
 * called once per campaign and gauge name. A reload keeps only what the new
 * config's plugins publish again (in on_load). */
void engine_gauges_foreach(struct engine *e,
                           void (*cb)(void *arg, const char *campaign, const char *plugin,
                                      const char *name, int64_t value),
                           void *arg);

/* Actions frequency caps kept out since start (committed batches), per cap
 * id and campaign id. */
void engine_capped_foreach(struct engine *e,
                           void (*cb)(void *arg, const char *cap, const char *campaign, uint64_t n),
                           void *arg);
/* The same, each count since the last call, then set to 0 (cluster mode
 * adds the partitions' counts up as they are committed). */
void engine_capped_take(struct engine *e,
                        void (*cb)(void *arg, const char *cap, const char *campaign, uint64_t n),
                        void *arg);

/* Cluster mode (with a registry): the unique keys claimed since the last
 * call, each handed to cb once (keys claimed by an event since undone
 * too: they are claimed again when it is). */
void engine_claimed_take(struct engine *e,
                         void (*cb)(void *arg, const char *ns, const char *key,
                                    const char *campaign),
                         void *arg);

/* ---- direct looks and settings, for the SDK's test kit and tests ---- */
/* 0 and the value, or -ENOENT; they see the batch's own changes. */
int engine_timer(struct engine *e, const char *campaign, const char *user, const char *name,
                 int64_t *due);
int engine_counter(struct engine *e, const char *campaign, const char *user, const char *key,
                   int64_t *value);
/* *val is malloc'd (NUL-terminated). user NULL: campaign-wide. */
int engine_state(struct engine *e, const char *campaign, const char *user, const char *key,
                 char **val, size_t *len);
/* Sets a user's profile as if the events behind it had been seen. */
int engine_set_profile(struct engine *e, const char *user, const mktd_profile *p);
/* The clock, and setting it (between batches; the next commit keeps it). */
int64_t engine_now(const struct engine *e);
void engine_set_now(struct engine *e, int64_t now);
/* ---- personal data (spec 14; docs/operations.md, "Personal data") ---- */
/* Who loads configs from now on, as oplog records it ("daemon" until set;
 * "cli:uid:N" when the command line opened the database itself). */
void engine_set_actor(struct engine *e, const char *who);
const char *engine_actor(const struct engine *e);
/* Forgets user, in one transaction after committing the open batch: its
 * per-user rows, failed timers and logged events go; actions and logged
 * events name the pseudonym instead (store/privacy.h); every campaign's
 * on_forget rewrites its own state; the working set drops the user; oplog
 * gets {"pseudonym","actions"} with who. 0 and pseudonym, or -EINVAL /
 * -EIO with err (nothing was forgotten). Call between batches. */
int engine_forget(struct engine *e, const char *user, const char *who, char *pseudonym, size_t plen,
                  char *err, size_t errlen);
/* Everything kept about user as JSON (*json malloc'd), after committing
 * the open batch; oplog gets the export with who and the user's
 * pseudonym. 0, or -EINVAL / -EIO with err. */
int engine_export(struct engine *e, const char *user, const char *who, char **json, char *err,
                  size_t errlen);

/* The host table plugins are handed (for plugins_register). */
const mktd_host *engine_host(void);

#endif
