/*
 * mktd test kit (mock host) — run a plugin in a unit test, without the
 * daemon.
 *
 * Link with libmktd_mock (pkg-config mktd-mock, or the CMake target
 * mktd::mock). The test kit runs the daemon's own engine over a throw-away
 * in-memory database, as `mktd` runs with `clock: event`:
 *
 *   - before an event with ts T, timers due at or before max(now, T) fire in
 *     order of due time, then campaign order, then user id (bytes);
 *   - now becomes max(now, T) (an event without ts takes now);
 *   - the user's profile is updated (unless mktd_mock_auto_profile(m, 0));
 *   - campaigns see the event in the order they were added, with
 *     MKTD_F_ACTIVE (enabled and ts in window) and MKTD_F_MATCH (active and
 *     its `when` types, see mktd_mock_set_when, include the type);
 *   - actions become internal events seen by the other campaigns,
 *     breadth-first, to depth 4;
 *   - when a callback fails, the event's actions, state, counters, timers,
 *     unique keys and clock move are undone (the daemon's savepoint).
 *
 * The campaigns added make a config, checked by the daemon's config loader
 * and swapped in at every change of their settings.
 */
#ifndef MKTD_MOCK_H
#define MKTD_MOCK_H

#include <mktd/plugin.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct mktd_mock mktd_mock;

typedef struct mktd_mock_action {
    int64_t seq; /* the actions table's seq: 1, 2, ... in recording order */
    int64_t ts;
    const char *campaign;
    const char *kind;
    const char *user;
    const char *event_id; /* NULL for timer-driven actions */
    const char *payload;  /* compact JSON, keys in the order the plugin added them */
} mktd_mock_action;

/* The host table plugins are handed (the daemon's). */
const mktd_host *mktd_mock_host(void);

mktd_mock *mktd_mock_new(void);
void mktd_mock_free(mktd_mock *m);

/* Adds a campaign running plugin p (from its entry function, called with
 * mktd_mock_host(); the plugin goes by its descriptor's name). id is a
 * campaign id as the config takes it ([a-z0-9_-], 1-64). params_yaml is
 * the YAML text of the `params:` map, or NULL when the campaign has none.
 * Returns 0, or -EINVAL with the errors ("params:LINE:COL: message" or
 * "campaign ID: message", one per line) in mktd_mock_errors(). */
int mktd_mock_add(mktd_mock *m, mktd_plugin_entry_fn entry, const char *id,
                  const char *params_yaml);
const char *mktd_mock_errors(mktd_mock *m);

/* Campaign settings; by default enabled, no window, `when` matches all.
 * A setting the daemon refuses (a `when` for a plugin that takes none) is
 * printed and left as it was; its errors are in mktd_mock_errors(). */
void mktd_mock_set_enabled(mktd_mock *m, const char *id, int enabled);
void mktd_mock_set_window(mktd_mock *m, const char *id, int64_t starts, int64_t ends);
/* Comma-separated event types the campaign's `when` names; NULL: all. */
void mktd_mock_set_when(mktd_mock *m, const char *id, const char *types);
/* The campaign's `group` (spec 11); NULL: none. */
void mktd_mock_set_group(mktd_mock *m, const char *id, const char *group);
/* The config's top-level `caps:` as a YAML flow list, e.g.
 * "[{id: touches, kinds: [coupon.issued], max: 1, per: 7d}]"; NULL: none.
 * 0, or -EINVAL (printed; the caps stay as they were). */
int mktd_mock_set_caps(mktd_mock *m, const char *yaml);

/* Calls every campaign's on_load (first = 1 the first time for an id);
 * settings changes do not. Returns 0 or the failing on_load's error. */
int mktd_mock_load(mktd_mock *m);

/* Profile handling: automatic (default) or set by the test. */
void mktd_mock_auto_profile(mktd_mock *m, int on);
/* Sets user's profile (p NULL: nothing happens). */
void mktd_mock_set_profile(mktd_mock *m, const char *user, const mktd_profile *p);

/* mktd_mock_event's answer to an id played before: nothing happened. */
#define MKTD_MOCK_DUPLICATE 1

/* Plays one NDJSON event line ({"id","type","user","ts","props"}) as the
 * daemon reads it (spec sections 1 and 9; `id` may be left out: the mock
 * then makes one up; `limits.max_future` does not apply). Returns 0,
 * MKTD_MOCK_DUPLICATE for an id seen before, -EINVAL for a line the daemon
 * would answer invalid_json or invalid_event, or -EIO when a plugin failed
 * (the daemon's `internal`: the event is undone whole). */
int mktd_mock_event(mktd_mock *m, const char *json_line);
/* Fires every timer due at or before `until`, then sets now to it. */
int mktd_mock_advance(mktd_mock *m, int64_t until);
int64_t mktd_mock_now(mktd_mock *m);
void mktd_mock_set_now(mktd_mock *m, int64_t now);

/* Recorded actions. */
size_t mktd_mock_count(mktd_mock *m);
const mktd_mock_action *mktd_mock_action_at(mktd_mock *m, size_t i);
/* All actions from index `from` as lines "kind user payload\n" (campaign
 * and ts left out), for compact assertions. Owned by the mock. */
const char *mktd_mock_dump(mktd_mock *m, size_t from);
void mktd_mock_clear(mktd_mock *m);

/* Direct looks at what a campaign keeps, for assertions. */
int mktd_mock_timer(mktd_mock *m, const char *campaign, const char *user, const char *name,
                    int64_t *due);
int64_t mktd_mock_counter(mktd_mock *m, const char *campaign, const char *user, const char *key);
/* A campaign's state value (user NULL: campaign-wide): 0 and *val (owned by
 * the mock, valid until the next event) or -ENOENT. */
int mktd_mock_state(mktd_mock *m, const char *campaign, const char *user, const char *key,
                    const char **val, size_t *len);

/* Forgets user as `mktd forget` does (spec 14): the user's own state,
 * counters, timers and profile go, recorded actions name the pseudonym
 * ("forgotten:" + 32 hex digits, written to pseudonym when not NULL; size
 * at least 43) instead, and every campaign's on_forget runs, all in one
 * transaction: a failing on_forget undoes it all. The actions already
 * read (mktd_mock_action_at, mktd_mock_dump) are read again. 0, or the
 * error (-EIO when a plugin or the store failed). */
int mktd_mock_forget(mktd_mock *m, const char *user, char *pseudonym, size_t size);

#ifdef __cplusplus
}
#endif
#endif /* MKTD_MOCK_H */
