/*
 * mktd plugin SDK — the one header a rule plugin needs.
 *
 * A plugin is a shared object named <name>.so in one of the config's
 * plugin_dirs. It exports one symbol, mktd_plugin_entry(), which receives the
 * host's API table and returns the plugin's descriptor. Everything a plugin
 * keeps (state, counters, timers, actions) goes through the host, so that one
 * event's effects commit or roll back together. Plugins never touch SQLite.
 *
 * ABI policy (see sdk/README.md): a plugin built against ABI major M, minor m
 * loads in a host of major M and minor >= m. Within a major version the host
 * table and the descriptor only grow at their end; struct_size tells each
 * side how much of the other it may read.
 *
 * ABI 1.1 appends note, is_dry and gauge_set to the host table. A plugin
 * built against 1.0 still loads and sees none of it; a plugin that uses
 * them declares 1.1 (MKTD_ABI_VERSION does) and loads in hosts of 1.1 on.
 *
 * Return convention: 0 or a negative errno value, unless a function says
 * otherwise. Strings handed to a callback by the host are valid until the
 * callback returns unless stated otherwise.
 */
#ifndef MKTD_PLUGIN_H
#define MKTD_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define MKTD_ABI_MAJOR 1
#define MKTD_ABI_MINOR 1
#define MKTD_ABI_VERSION ((uint32_t)((MKTD_ABI_MAJOR << 16) | MKTD_ABI_MINOR))
#define MKTD_ABI_MAJOR_OF(v) ((unsigned)((v) >> 16))
#define MKTD_ABI_MINOR_OF(v) ((unsigned)((v)&0xffffu))

#if defined(__GNUC__)
#define MKTD_EXPORT __attribute__((visibility("default")))
#define MKTD_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define MKTD_EXPORT
#define MKTD_PRINTF(f, a)
#endif

/* Opaque handles. */
typedef struct mktd_ctx mktd_ctx;   /* one callback's context */
typedef struct mktd_node mktd_node; /* a node of the YAML config */
typedef struct mktd_obj mktd_obj;   /* a JSON object being built */

/* Log levels. */
enum { MKTD_LOG_ERROR = 0, MKTD_LOG_WARN = 1, MKTD_LOG_INFO = 2, MKTD_LOG_DEBUG = 3 };

/* JSON value types, for event properties. */
typedef enum mktd_type {
    MKTD_T_MISSING = 0, /* absent, or JSON null */
    MKTD_T_BOOL,
    MKTD_T_INT,    /* a JSON number without fraction or exponent, in int64 */
    MKTD_T_DOUBLE, /* any other number */
    MKTD_T_STRING,
    MKTD_T_ARRAY,
    MKTD_T_OBJECT
} mktd_type;

typedef struct mktd_value {
    mktd_type type;
    int b;         /* MKTD_T_BOOL */
    int64_t i;     /* MKTD_T_INT */
    double d;      /* MKTD_T_DOUBLE (also set for MKTD_T_INT) */
    const char *s; /* MKTD_T_STRING: NUL-terminated, no NUL inside */
    size_t len;    /* MKTD_T_STRING: bytes; ARRAY/OBJECT: element count */
} mktd_value;

/* An event as a plugin sees it: an input event (depth 0) or the internal
 * event of an action (depth 1..4, source = the recording campaign). */
typedef struct mktd_event {
    const char *id;     /* input event id; NULL for internal events */
    const char *type;   /* event type, or the action kind */
    const char *user;   /* acting user */
    int64_t ts;         /* the event's own ts (internal: its action's ts) */
    int depth;          /* 0 = input event */
    const char *source; /* internal events: campaign id that recorded it */
    const void *priv;   /* host's; do not touch */
} mktd_event;

/* The user profile kept by the daemon (spec section 2). */
typedef struct mktd_profile {
    int64_t events;     /* events so far, the current one included */
    int64_t orders;     /* order.paid count */
    int64_t spent;      /* sum of paid amounts, saturating */
    int64_t first_seen; /* ms; valid when events > 0 */
    int64_t last_seen;  /* ms; valid when events > 0 */
} mktd_profile;

/* Flags passed to on_event and on_timer. */
#define MKTD_F_ACTIVE 0x1u /* enabled, and ts within starts..ends */
#define MKTD_F_MATCH 0x2u  /* ACTIVE, and the campaign's `when` holds (or it has none) */
/* ABI 1.1: ACTIVE and `when` holds, but another campaign of this one's
 * `group` has already recorded an action for this event or its chain; MATCH
 * is clear. The campaign keeps its own bookkeeping (seen orders, refunds,
 * redemptions) and records nothing for the event itself. */
#define MKTD_F_EXCLUDED 0x4u

/* ABI 1.1: what emit returns when a frequency cap (config `caps:`) keeps the
 * action from being recorded. The plugin goes on as if it had not emitted
 * (a 1.0 plugin gets 0). */
#define MKTD_CAPPED 1

/* Node kinds of the YAML config. */
enum { MKTD_NODE_SCALAR = 1, MKTD_NODE_SEQ = 2, MKTD_NODE_MAP = 3 };

/* The host's API table. Appended to, never reordered. */
typedef struct mktd_host {
    uint32_t abi_version; /* MKTD_ABI_VERSION of the host */
    uint32_t struct_size; /* sizeof(mktd_host) in the host */

    /* ---- logging; each line names the campaign ---- */
    void (*log)(mktd_ctx *ctx, int level, const char *fmt, ...) MKTD_PRINTF(3, 4);

    /* ---- config (valid in init; nodes live until destroy) ---- */
    /* The child of a map by key, or NULL. */
    const mktd_node *(*node_get)(const mktd_node *map, const char *key);
    int (*node_kind)(const mktd_node *n);
    size_t (*node_len)(const mktd_node *n); /* seq items or map pairs */
    const mktd_node *(*node_at)(const mktd_node *seq, size_t i);
    const mktd_node *(*node_key_at)(const mktd_node *map, size_t i);
    const mktd_node *(*node_value_at)(const mktd_node *map, size_t i);
    int (*node_line)(const mktd_node *n);
    int (*node_col)(const mktd_node *n);
    /* Records "FILE:LINE:COL: message" for node `at` (or the campaign when
     * NULL) and returns -EINVAL. */
    int (*config_error)(mktd_ctx *ctx, const mktd_node *at, const char *fmt, ...) MKTD_PRINTF(3, 4);
    /* Refuses keys of `map` not in the NULL-terminated `allowed` list, listing
     * the allowed ones. NULL map: 0. */
    int (*check_keys)(mktd_ctx *ctx, const mktd_node *map, const char *const *allowed);
    /* Typed scalars; each reports its own error at the node's line:col.
     * Integers follow the YAML 1.2 core schema (a quoted scalar is a string). */
    int (*node_int)(mktd_ctx *ctx, const mktd_node *n, int64_t *out);
    int (*node_str)(mktd_ctx *ctx, const mktd_node *n, const char **out);
    int (*node_bool)(mktd_ctx *ctx, const mktd_node *n, int *out);
    /* "90s", "15m", "12h", "7d", "250ms", or an integer number of seconds. */
    int (*node_duration)(mktd_ctx *ctx, const mktd_node *n, int64_t *out_ms);
    /* A node (map, seq or scalar) as compact JSON; malloc'd, free() it. */
    int (*node_json)(mktd_ctx *ctx, const mktd_node *n, char **out);
    /* Map lookups with defaults and ranges: a missing key gives `def`, or an
     * error when `required`; a value out of [min, max] is an error. */
    int (*get_int)(mktd_ctx *ctx, const mktd_node *map, const char *key, int required, int64_t def,
                   int64_t min, int64_t max, int64_t *out);
    int (*get_duration)(mktd_ctx *ctx, const mktd_node *map, const char *key, int required,
                        int64_t def_ms, int64_t min_ms, int64_t max_ms, int64_t *out_ms);
    int (*get_bool)(mktd_ctx *ctx, const mktd_node *map, const char *key, int required, int def,
                    int *out);
    int (*get_str)(mktd_ctx *ctx, const mktd_node *map, const char *key, int required,
                   const char *def, const char **out);

    /* ---- the campaign ---- */
    const char *(*campaign_id)(mktd_ctx *ctx);
    /* Enabled, and ts within starts..ends. */
    int (*campaign_active)(mktd_ctx *ctx, int64_t ts);
    /* 1 when a campaign with this id is in the running config. */
    int (*campaign_loaded)(mktd_ctx *ctx, const char *id);
    /* 1 when this is the first campaign of its plugin in config order. */
    int (*first_of_plugin)(mktd_ctx *ctx);

    /* ---- events ---- */
    /* A property by dot path into props. Returns the type (MISSING when
     * absent or null) and fills *out when out is not NULL. */
    mktd_type (*prop)(mktd_ctx *ctx, const mktd_event *ev, const char *path, mktd_value *out);
    /* A property as compact JSON text (any type), or NULL when missing. */
    const char *(*prop_json)(mktd_ctx *ctx, const mktd_event *ev, const char *path);

    /* ---- actions ---- */
    /* A new, empty JSON object, owned by ctx until emitted or the callback ends. */
    mktd_obj *(*obj_new)(mktd_ctx *ctx);
    void (*obj_str)(mktd_obj *o, const char *key, const char *val);
    void (*obj_int)(mktd_obj *o, const char *key, int64_t val);
    /* A JSON text as the value; returns -EINVAL when it does not parse. */
    int (*obj_json)(mktd_obj *o, const char *key, const char *json);
    /* Record an action: ts = now(ctx), event_id = the input event (NULL for a
     * timer). Consumes payload (NULL means {}). The action's internal event
     * is evaluated by the other campaigns after this callback. */
    int (*emit)(mktd_ctx *ctx, const char *kind, const char *user, mktd_obj *payload);

    /* ---- the clock ---- */
    /* The action ts: the daemon's now for events, the due time for timers. */
    int64_t (*now)(mktd_ctx *ctx);

    /* ---- the user profile ---- */
    /* 0, or -ENOENT for a user never seen. */
    int (*profile)(mktd_ctx *ctx, const char *user, mktd_profile *out);
    /* Calls cb for every known user (in no set order); a non-zero return
     * from cb stops and is returned. Meant for on_load. */
    int (*users_foreach)(mktd_ctx *ctx,
                         int (*cb)(void *arg, const char *user, const mktd_profile *p), void *arg);

    /* ---- keyed state, per campaign and user (user NULL: campaign-wide) ---- */
    /* 0 and *val (NUL-terminated, in ctx) or -ENOENT. val and len may be
     * NULL: whether the key exists. */
    int (*state_get)(mktd_ctx *ctx, const char *user, const char *key, const char **val,
                     size_t *len);
    int (*state_put)(mktd_ctx *ctx, const char *user, const char *key, const void *val, size_t len);
    int (*state_del)(mktd_ctx *ctx, const char *user, const char *key);

    /* ---- counters, per campaign and user (user NULL: campaign-wide) ---- */
    /* Adds delta unless the result would exceed limit (limit < 0: none).
     * Returns 0 when applied, 1 when refused; *value gets the counter's
     * value afterwards (may be NULL). A counter never set is 0. */
    int (*counter_add)(mktd_ctx *ctx, const char *user, const char *key, int64_t delta,
                       int64_t limit, int64_t *value);
    int64_t (*counter_get)(mktd_ctx *ctx, const char *user, const char *key);

    /* ---- timers, per campaign, user and name ---- */
    /* Sets (or moves) the timer; on_timer gets it when the clock reaches due. */
    int (*timer_set)(mktd_ctx *ctx, const char *user, const char *name, int64_t due);
    int (*timer_cancel)(mktd_ctx *ctx, const char *user, const char *name);
    /* 0 and *due, or -ENOENT. */
    int (*timer_get)(mktd_ctx *ctx, const char *user, const char *name, int64_t *due);

    /* ---- database-wide unique keys (e.g. coupon codes) ---- */
    /* Claims key in namespace ns for this campaign: 0, or -EEXIST. */
    int (*unique_claim)(mktd_ctx *ctx, const char *ns, const char *key);
    /* 0 and *campaign (the claiming campaign's id), or -ENOENT. */
    int (*unique_owner)(mktd_ctx *ctx, const char *ns, const char *key, const char **campaign);

    /* ---- randomness from a cryptographic source ---- */
    int (*random_bytes)(void *buf, size_t len);

    /* ---- ABI 1.1 ---- */
    /* The plugin's reason for a decision ("budget spent", "not_owner"), in
     * a sentence. Costs next to nothing when nobody listens: the text is
     * formatted only when someone reads it (for now the daemon's log at
     * level debug, naming the campaign). Usable in every callback. */
    void (*note)(mktd_ctx *ctx, const char *fmt, ...) MKTD_PRINTF(2, 3);
    /* 1 when the event being evaluated is a dry run: its effects are undone
     * after it, whatever it does. A plugin skips claims that would show
     * outside the run (coupon: no code is claimed). 0 otherwise. */
    int (*is_dry)(mktd_ctx *ctx);
    /* Publishes a figure of the campaign's own for /metrics, as
     * mktd_plugin_gauge{campaign,plugin,name} (coupon: budget_left).
     * name is 1-64 bytes of [a-z0-9_]. A value set during an event shows
     * once its batch commits, and never when the event fails. A reload
     * forgets every gauge: publish in on_load, then whenever it changes.
     * 0, -EINVAL for a bad name, -EPERM in init. */
    int (*gauge_set)(mktd_ctx *ctx, const char *name, int64_t value);
    /* len random bytes for the action being decided (a coupon code): from
     * the cryptographic source on one daemon; in cluster mode derived (an
     * HMAC) from the event, so that a replayed partition decides alike.
     * Prefer it to random_bytes for anything that ends up in an action. */
    int (*random_for)(mktd_ctx *ctx, void *buf, size_t len);
    /* Campaign-wide timers, not tied to a user (a group-buy's expiry):
     * on_timer gets user NULL. Same rules as timer_set/timer_cancel. */
    int (*timer_campaign_set)(mktd_ctx *ctx, const char *name, int64_t due);
    int (*timer_campaign_cancel)(mktd_ctx *ctx, const char *name);
    /* The campaign's state keys for user (NULL: campaign-wide) that start
     * with prefix ("" for all), in byte order of the key, with their values
     * (NUL-terminated, valid during the call): what the event has written
     * so far included. A non-zero return from cb stops and is returned.
     * -EPERM in init. Keep the lists short (a group's members, a user's
     * points lots): each call reads them all. */
    int (*state_iter)(mktd_ctx *ctx, const char *user, const char *prefix,
                      int (*cb)(void *arg, const char *key, const char *val, size_t len),
                      void *arg);
} mktd_host;

/* Plugin flags. */
#define MKTD_PLUGIN_WHEN_REQUIRED 0x1u /* the campaign must have `when` */
#define MKTD_PLUGIN_WHEN_REFUSED 0x2u  /* the campaign must not have `when` */

/* The descriptor a plugin returns. Appended to, never reordered. */
typedef struct mktd_plugin {
    uint32_t abi_version; /* MKTD_ABI_VERSION the plugin was built with */
    uint32_t struct_size; /* sizeof(mktd_plugin) when it was built */
    const char *name;     /* equals the file name without .so */
    const char *version;  /* the plugin's own version, free text */
    uint32_t flags;       /* MKTD_PLUGIN_* */

    /* Build one campaign from its params (NULL when absent). Report every
     * problem with config_error and return -EINVAL. *data is the campaign's. */
    int (*init)(mktd_ctx *ctx, const mktd_node *params, void **data);
    /* Free what init made. May be NULL. */
    void (*destroy)(void *data);
    /* Every event (input, and internal ones not recorded by this campaign),
     * with MKTD_F_* flags. A negative return fails the input event with
     * error `internal` and undoes all of its effects. May be NULL. */
    int (*on_event)(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags);
    /* A timer fell due; flags has MKTD_F_ACTIVE when the campaign is enabled
     * and `due` is within its window. The timer is gone before the call. */
    int (*on_timer)(mktd_ctx *ctx, void *data, const char *user, const char *name, int64_t due,
                    unsigned flags);
    /* After a config holding this campaign is loaded (start or reload);
     * first is 1 when the campaign id is new to the database. May be NULL. */
    int (*on_load)(mktd_ctx *ctx, void *data, int first);
    /* ABI 1.1: the user is forgotten (spec 14: `mktd forget`): rewrite
     * every place of the campaign's own state that names user (a member
     * list, a key of campaign-wide state, another user's state) to
     * pseudonym. The user's own per-user state, counters and timers are
     * still readable here (to find where else the user is named) and the
     * host deletes them, and anything written under the user, right
     * after, in the same transaction. Record no actions. May be NULL. A
     * negative return fails the forget, undoing it all. */
    int (*on_forget)(mktd_ctx *ctx, void *data, const char *user, const char *pseudonym);
} mktd_plugin;

/* The entry symbol every plugin exports. The host table outlives the plugin. */
typedef const mktd_plugin *(*mktd_plugin_entry_fn)(const mktd_host *host);
#define MKTD_ENTRY_SYMBOL "mktd_plugin_entry"

#ifdef __cplusplus
}
#endif
#endif /* MKTD_PLUGIN_H */
