/*
 * probe — a plugin for tests that exercises the whole host API.
 *
 * Params (all optional; unknown keys are refused):
 *   emit_on: [type, ...]  a type or a list of types; a matched event of one
 *                         of them (input or internal) records a hit
 *   limit: N              the most hits per user (default: no limit)
 *   remember: bool        hits store props.value (as JSON) per user and show
 *                         the previous one
 *   timer_after: duration arms a timer on matched `probe.arm` events
 *   rearm_after: duration a timer named "t" that falls due sets the user's
 *                         timer "r" this long after its due time
 *   chain: bool           matched internal events record `probe.chain`
 *   fail_on: [type, ...]  matched events of these types fail as props.fail
 *   fail_timers: [name, ...] timers of these names fail when they fall due,
 *                         after recording what `props.fail` records
 *
 * The probe acts only on events flagged MKTD_F_MATCH (so `enabled`,
 * `starts`/`ends` and `when` decide). On such an event, in this order:
 *
 *   - props.fail is true, or the type is in fail_on: records action `probe.doomed`, per-user state
 *     "doomed", timer "doomed" (now + 1s) and counter "doomed", then fails
 *     with -EIO: the host must undo all of it.
 *   - type `probe.arm` (with timer_after): sets the timer named props.name
 *     (default "t") of the event's user, due at props.due (an integer) or
 *     now + timer_after.
 *   - type `probe.disarm`: cancels the timer named props.name (default "t")
 *     and records `probe.disarmed` {"name", "had": its due, or -1}.
 *   - type in emit_on: adds 1 to the per-user counter "hits" under `limit`
 *     and records, for props.to (a string) or else the event's user,
 *     `probe.hit` (or `probe.limited` when the counter refused) with payload
 *       {"n": per-user hits after, "total": campaign-wide hits after,
 *        "seen": type, "depth": depth, "ts": the event's ts,
 *        "now": host now, "events": user.events of the event's user
 *        (-1 when never seen), "from": the source campaign (internal
 *        events only), "prev": the remembered value before (remember only;
 *        null when none)}
 *   - chain, and an internal event: records `probe.chain`
 *       {"depth", "kind": the event's type, "from": its source campaign}
 *
 * A timer that falls due records `probe.timer` {"due", "name", "now"} for
 * its user when the flags say MKTD_F_ACTIVE, and nothing otherwise; one
 * named in fail_timers records `probe.doomed`, state, a timer, a counter and
 * the gauge `doomed` as a failing event does, then fails with -EPROTO.
 *
 * ABI 1.1: each matched event gets a note "matched TYPE of USER (dry D)"
 * (D from is_dry), each active timer "timer NAME fell due (dry D)"; a hit publishes the gauge
 * `hits` (the campaign-wide total) and a doomed event the gauge `doomed` = 1, which must never
 * show. on_load checks that gauge_set refuses a bad name (-EINVAL) and init that it refuses to run
 * there (-EPERM); either failing fails the load.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/plugin.h>

#define MAX_TYPES 16
#define TYPE_MAX 64

static const mktd_host *host;

struct probe {
    char emit_on[MAX_TYPES][TYPE_MAX + 1];
    size_t n_emit_on;
    char fail_on[MAX_TYPES][TYPE_MAX + 1];
    size_t n_fail_on;
    char fail_timers[MAX_TYPES][TYPE_MAX + 1];
    size_t n_fail_timers;
    int64_t limit; /* -1: none */
    int remember;
    int has_timer;
    int64_t timer_after; /* ms */
    int64_t rearm_after; /* ms, -1: none */
    int chain;
};

static int add_type(mktd_ctx *ctx, const char *key, char (*types)[TYPE_MAX + 1], size_t *n_types,
                    const mktd_node *n)
{
    const char *s;
    if (host->node_str(ctx, n, &s) < 0)
        return -EINVAL;
    if (!s || !*s || strlen(s) > TYPE_MAX)
        return host->config_error(ctx, n, "%s: a type is 1-%d bytes", key, TYPE_MAX);
    if (*n_types == MAX_TYPES)
        return host->config_error(ctx, n, "%s: at most %d types", key, MAX_TYPES);
    strcpy(types[(*n_types)++], s);
    return 0;
}

/* A type or a list of types under key. */
static int parse_types(mktd_ctx *ctx, const mktd_node *params, const char *key,
                       char (*types)[TYPE_MAX + 1], size_t *n_types)
{
    const mktd_node *n = host->node_get(params, key);
    int rc = 0;
    if (!n)
        return 0;
    if (host->node_kind(n) == MKTD_NODE_SCALAR)
        return add_type(ctx, key, types, n_types, n);
    if (host->node_kind(n) != MKTD_NODE_SEQ)
        return host->config_error(ctx, n, "%s: a type or a list of types", key);
    for (size_t i = 0; i < host->node_len(n); i++)
        if (add_type(ctx, key, types, n_types, host->node_at(n, i)) < 0)
            rc = -EINVAL;
    return rc;
}

static int probe_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    static const char *const keys[] = {"emit_on",     "limit",       "remember",
                                       "timer_after", "chain",       "fail_on",
                                       "rearm_after", "fail_timers", NULL};
    struct probe *p = calloc(1, sizeof(*p));
    int rc = 0;
    if (!p)
        return -ENOMEM;
    p->limit = -1;
    if (host->check_keys(ctx, params, keys) < 0)
        rc = -EINVAL;
    if (parse_types(ctx, params, "emit_on", p->emit_on, &p->n_emit_on) < 0)
        rc = -EINVAL;
    if (parse_types(ctx, params, "fail_timers", p->fail_timers, &p->n_fail_timers) < 0)
        rc = -EINVAL;
    if (parse_types(ctx, params, "fail_on", p->fail_on, &p->n_fail_on) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, params, "limit", 0, -1, 0, INT64_MAX, &p->limit) < 0)
        rc = -EINVAL;
    if (host->get_bool(ctx, params, "remember", 0, 0, &p->remember) < 0)
        rc = -EINVAL;
    if (host->get_bool(ctx, params, "chain", 0, 0, &p->chain) < 0)
        rc = -EINVAL;
    p->has_timer = host->node_get(params, "timer_after") != NULL;
    if (host->get_duration(ctx, params, "timer_after", 0, 0, 0, INT64_MAX / 4, &p->timer_after) < 0)
        rc = -EINVAL;
    p->rearm_after = -1;
    if (host->node_get(params, "rearm_after") &&
        host->get_duration(ctx, params, "rearm_after", 1, 0, 0, INT64_MAX / 4, &p->rearm_after) < 0)
        rc = -EINVAL;
    if (host->gauge_set(ctx, "hits", 0) != -EPERM)
        rc = host->config_error(ctx, NULL, "gauge_set ran in init");
    if (rc < 0) {
        free(p);
        return rc;
    }
    host->log(ctx, MKTD_LOG_DEBUG, "probe ready: %zu types, limit %lld", p->n_emit_on,
              (long long)p->limit);
    *data = p;
    return 0;
}

static void probe_destroy(void *data)
{
    free(data);
}

static const char *str_prop(mktd_ctx *ctx, const mktd_event *ev, const char *path, const char *def)
{
    mktd_value v;
    return host->prop(ctx, ev, path, &v) == MKTD_T_STRING ? v.s : def;
}

static int has_type(const char (*types)[TYPE_MAX + 1], size_t n_types, const char *type)
{
    for (size_t i = 0; i < n_types; i++)
        if (strcmp(types[i], type) == 0)
            return 1;
    return 0;
}

/* Records what a failure must take back, then fails with err. */
static int doom_user(mktd_ctx *ctx, const char *user, const char *seen, int err)
{
    mktd_obj *o = host->obj_new(ctx);
    int rc;
    host->obj_str(o, "seen", seen);
    if ((rc = host->emit(ctx, "probe.doomed", user, o)) < 0)
        return rc;
    if ((rc = host->state_put(ctx, user, "doomed", "1", 1)) < 0)
        return rc;
    if ((rc = host->timer_set(ctx, user, "doomed", host->now(ctx) + 1000)) < 0)
        return rc;
    if ((rc = host->counter_add(ctx, user, "doomed", 1, -1, NULL)) < 0)
        return rc;
    if ((rc = host->gauge_set(ctx, "doomed", 1)) < 0)
        return rc;
    return err;
}

static int doom(mktd_ctx *ctx, const mktd_event *ev)
{
    return doom_user(ctx, ev->user, ev->type, -EIO);
}

static int arm(mktd_ctx *ctx, const struct probe *p, const mktd_event *ev)
{
    mktd_value v;
    int64_t due = host->now(ctx) + p->timer_after;
    if (host->prop(ctx, ev, "due", &v) == MKTD_T_INT)
        due = v.i;
    return host->timer_set(ctx, ev->user, str_prop(ctx, ev, "name", "t"), due);
}

static int disarm(mktd_ctx *ctx, const mktd_event *ev)
{
    const char *name = str_prop(ctx, ev, "name", "t");
    int64_t due = -1;
    int rc = host->timer_get(ctx, ev->user, name, &due);
    mktd_obj *o;
    if (rc == -ENOENT)
        due = -1;
    else if (rc < 0)
        return rc;
    if ((rc = host->timer_cancel(ctx, ev->user, name)) < 0 && rc != -ENOENT)
        return rc;
    o = host->obj_new(ctx);
    host->obj_str(o, "name", name);
    host->obj_int(o, "had", due);
    return host->emit(ctx, "probe.disarmed", ev->user, o);
}

static int remember(mktd_ctx *ctx, const mktd_event *ev, mktd_obj *o)
{
    const char *prev, *val = host->prop_json(ctx, ev, "value");
    int rc = host->state_get(ctx, ev->user, "value", &prev, NULL);
    if (rc == -ENOENT)
        prev = "null";
    else if (rc < 0)
        return rc;
    if ((rc = host->obj_json(o, "prev", prev)) < 0)
        return rc;
    if (val && (rc = host->state_put(ctx, ev->user, "value", val, strlen(val))) < 0)
        return rc;
    return 0;
}

static int hit(mktd_ctx *ctx, const struct probe *p, const mktd_event *ev)
{
    mktd_obj *o = host->obj_new(ctx);
    mktd_profile prof;
    int64_t n = 0, total = 0;
    int rc = host->counter_add(ctx, ev->user, "hits", 1, p->limit, &n);
    const char *kind = rc == 1 ? "probe.limited" : "probe.hit";
    if (rc < 0)
        return rc;
    if (rc == 0 && (rc = host->counter_add(ctx, NULL, "hits", 1, -1, &total)) < 0)
        return rc;
    if (rc == 1)
        total = host->counter_get(ctx, NULL, "hits");
    if (rc == 0 && (rc = host->gauge_set(ctx, "hits", total)) < 0)
        return rc;
    host->obj_int(o, "n", n);
    host->obj_int(o, "total", total);
    host->obj_str(o, "seen", ev->type);
    host->obj_int(o, "depth", ev->depth);
    host->obj_int(o, "ts", ev->ts);
    host->obj_int(o, "now", host->now(ctx));
    rc = host->profile(ctx, ev->user, &prof);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    host->obj_int(o, "events", rc == 0 ? prof.events : -1);
    if (ev->source)
        host->obj_str(o, "from", ev->source);
    if (p->remember && (rc = remember(ctx, ev, o)) < 0)
        return rc;
    return host->emit(ctx, kind, str_prop(ctx, ev, "to", ev->user), o);
}

static int chain(mktd_ctx *ctx, const mktd_event *ev)
{
    mktd_obj *o = host->obj_new(ctx);
    host->obj_int(o, "depth", ev->depth);
    host->obj_str(o, "kind", ev->type);
    host->obj_str(o, "from", ev->source ? ev->source : "");
    return host->emit(ctx, "probe.chain", ev->user, o);
}

static int probe_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    const struct probe *p = data;
    mktd_value v;
    int rc;
    if (!(flags & MKTD_F_MATCH))
        return 0;
    host->note(ctx, "matched %s of %s (dry %d)", ev->type, ev->user, host->is_dry(ctx));
    if ((host->prop(ctx, ev, "fail", &v) == MKTD_T_BOOL && v.b) ||
        has_type(p->fail_on, p->n_fail_on, ev->type))
        return doom(ctx, ev);
    if (p->has_timer && strcmp(ev->type, "probe.arm") == 0 && (rc = arm(ctx, p, ev)) < 0)
        return rc;
    if (strcmp(ev->type, "probe.disarm") == 0 && (rc = disarm(ctx, ev)) < 0)
        return rc;
    if (has_type(p->emit_on, p->n_emit_on, ev->type) && (rc = hit(ctx, p, ev)) < 0)
        return rc;
    if (p->chain && ev->depth > 0 && (rc = chain(ctx, ev)) < 0)
        return rc;
    return 0;
}

static int probe_on_timer(mktd_ctx *ctx, void *data, const char *user, const char *name,
                          int64_t due, unsigned flags)
{
    const struct probe *p = data;
    mktd_obj *o;
    if (!(flags & MKTD_F_ACTIVE))
        return 0;
    host->note(ctx, "timer %s fell due (dry %d)", name, host->is_dry(ctx));
    if (has_type(p->fail_timers, p->n_fail_timers, name))
        return doom_user(ctx, user, name, -EPROTO);
    if (p->rearm_after >= 0 && strcmp(name, "t") == 0) {
        int rc = host->timer_set(ctx, user, "r", due + p->rearm_after);
        if (rc < 0)
            return rc;
    }
    o = host->obj_new(ctx);
    host->obj_int(o, "due", due);
    host->obj_str(o, "name", name);
    host->obj_int(o, "now", host->now(ctx));
    return host->emit(ctx, "probe.timer", user, o);
}

static int probe_on_load(mktd_ctx *ctx, void *data, int first)
{
    (void)data;
    host->log(ctx, MKTD_LOG_DEBUG, "probe loaded (%s)", first ? "new" : "known");
    if (host->gauge_set(ctx, "Bad-Name", 1) != -EINVAL || host->gauge_set(ctx, "", 1) != -EINVAL) {
        host->log(ctx, MKTD_LOG_ERROR, "gauge_set took a bad name");
        return -EPROTO;
    }
    return 0;
}

static const mktd_plugin probe_desc = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "probe",
    .version = "1",
    .flags = 0,
    .init = probe_init,
    .destroy = probe_destroy,
    .on_event = probe_on_event,
    .on_timer = probe_on_timer,
    .on_load = probe_on_load,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *h)
{
    host = h;
    return &probe_desc;
}
