/* What `mktd simulate` and `mktd replay` share: a config made ready for a
 * throw-away run (`clock: event`, no event log, extra plugin dirs), the
 * engine over a throw-away database (empty, or a copy of a live one's
 * state), and the pure parts of replay, which the unit tests call. */
#ifndef MKTD_REPLAY_H
#define MKTD_REPLAY_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

struct config;
struct world;
struct store;
struct engine;
struct livedb;
struct livedb_config;

/* TIME as RFC 3339 or Unix ms: 0, or -1. */
int sim_parse_time(const char *s, int64_t *ms);

/* Builds cfg's campaigns for a throw-away run (the world takes cfg); on
 * failure prints the errors (prefixed with `who`, when the config is not a
 * file) and returns NULL, having freed cfg. */
struct world *sim_world(const char *who, struct config *cfg, char **plugin_dirs,
                        size_t n_plugin_dirs);

/* An engine running w over a throw-away database: empty, or (from not
 * NULL) a copy of from's state, whose clock starts at the largest of its
 * stored clock, latest received_at and latest action ts, with its actions
 * within the longest cap window of w's config. The clock is the events'
 * (`clock: event`), or with given_now (replay) the receipt time each event
 * is handed with: now is then exactly that, whatever the event's ts.
 * *printed gets the seq after which the run's own actions start. On
 * failure prints why (after who), frees w and returns -1. */
int sim_start(const char *who, struct world *w, struct livedb *from, int given_now,
              struct store **st, struct engine **e, int64_t *printed);
/* Ends a run (engine, store). */
void sim_end(struct store *st, struct engine *e);

int cli_replay(const char *config_path, const char *db_path, const char *from, const char *to,
               int diff, const char *format, char **plugin_dirs, size_t n_plugin_dirs);

/* ---- pure parts (tests/unit/test_replay.c) ---- */

/* The config live at time t: the last one (by seq) loaded at or before t,
 * else the first one; -1 when there is none. */
long replay_config_at(const struct livedb_config *c, size_t n, int64_t t);
/* An action as compared between two runs: {ts, campaign, kind, event_id,
 * payload}, a coupon code in the payload shown as "*" (codes are drawn at
 * random: two runs never agree on them). New reference; NULL when payload
 * is not JSON. */
json_t *replay_norm_action(int64_t ts, const char *campaign, const char *kind, const char *event_id,
                           const char *payload, size_t payload_len);
/* A running FNV-1a 64 hash of a user's compared actions. */
uint64_t replay_hash(uint64_t h, const json_t *norm_action);
/* The identity by which a replayed coupon.issued is matched to the live
 * one (its code then stands for the live code in logged coupon.used
 * events): campaign, user, the triggering event id (or, timer-driven, the
 * ts) and how many of that identity came before. malloc'd. */
char *replay_coupon_identity(const char *campaign, const char *user, const char *event_id,
                             int64_t ts, long ordinal);

#endif
