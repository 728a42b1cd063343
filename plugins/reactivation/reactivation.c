/*
 * reactivation — win back users who went quiet.
 *
 * Every user with an activity gets one timer, "attempt", set to the moment
 * their next win-back attempt falls due. An activity moves the timer (and
 * checks for a conversion first); a fired attempt records an offer or a
 * holdout and sets the timer for the next attempt. Nothing about a user is
 * kept in process memory: everything lives in the campaign's keyed state, so
 * it commits and rolls back with the event, and survives reloads.
 *
 * Per-user state, key "s": "1 A K T0 G P" (decimal integers)
 *   A   the last activity (ms)
 *   K   the number of the pending (next) attempt in the current spell
 *   T0  the ts of the latest offer or holdout in the spell (valid when G != 0)
 *   G   0 none yet, 1 offer, 2 holdout
 *   P   the moment of the previous attempt (made or skipped), or INT64_MIN
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/plugin.h>

#define DAY_MS INT64_C(86400000)
#define MINUTE_MS INT64_C(60000)
#define TIMER_NAME "attempt"
#define STATE_KEY "s"

enum { GROUP_NONE = 0, GROUP_OFFER = 1, GROUP_HOLDOUT = 2 };

static const mktd_host *H;

struct params {
    int64_t inactive_for;   /* ms, > 0 */
    int64_t cooldown;       /* ms, > 0 */
    int64_t max_attempts;   /* >= 1 */
    int64_t holdout;        /* percent, 0..50 */
    int64_t convert_within; /* ms, >= 0 */
    char **activity;        /* NULL: every type counts */
    size_t n_activity;
    int quiet;          /* quiet hours configured (and from != to) */
    int64_t quiet_from; /* ms after local midnight */
    int64_t quiet_to;   /* ms after local midnight */
    int64_t quiet_off;  /* utc offset, ms */
    char *offer;        /* JSON text */
    int backfill;
};

/* Per user. The pending attempt is due at d; the timer itself may sit at
 * an earlier x (it is not moved on every activity: when it fires before d
 * it is simply set again to d). NO_TIME: none. */
struct ustate {
    int64_t a;  /* last activity */
    int64_t k;  /* number of the pending attempt */
    int64_t t0; /* latest offer or holdout of the spell */
    int g;      /* its group */
    int64_t p;  /* moment of the previous attempt, INT64_MIN: none */
    int64_t d;  /* due time of the pending attempt, NO_TIME: none */
    int64_t x;  /* where the timer is set, NO_TIME: none */
};

#define NO_TIME INT64_MIN

/* ---- arithmetic ---- */

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

static int64_t sat_mul(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return ((a < 0) != (b < 0)) ? INT64_MIN : INT64_MAX;
    return r;
}

static int64_t floor_mod(int64_t a, int64_t m)
{
    int64_t r = a % m;
    return r < 0 ? r + m : r;
}

/* FNV-1a, 32 bits. */
static uint32_t fnv1a(uint32_t h, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* The holdout bucket (0..99) of "<campaign>:<user>". */
static int bucket_of(const char *campaign, const char *user)
{
    uint32_t h = 2166136261u;
    h = fnv1a(h, campaign, strlen(campaign));
    h = fnv1a(h, ":", 1);
    h = fnv1a(h, user, strlen(user));
    return (int)(h % 100u);
}

/* A moment inside quiet hours moves to their end. */
static int64_t shift_quiet(const struct params *p, int64_t t)
{
    if (!p->quiet || t > INT64_MAX - 2 * DAY_MS || t < INT64_MIN + 2 * DAY_MS)
        return t;
    int64_t tod = floor_mod(t + p->quiet_off, DAY_MS);
    if (p->quiet_from < p->quiet_to) {
        if (tod >= p->quiet_from && tod < p->quiet_to)
            return t + (p->quiet_to - tod);
        return t;
    }
    /* from > to: the quiet hours span midnight */
    if (tod >= p->quiet_from)
        return t + (DAY_MS - tod) + p->quiet_to;
    if (tod < p->quiet_to)
        return t + (p->quiet_to - tod);
    return t;
}

/* The shifted moment of attempt k after last activity a. */
static int64_t attempt_moment(const struct params *p, int64_t a, int64_t k)
{
    int64_t t = sat_add(a, p->inactive_for);
    t = sat_add(t, sat_mul(k - 1, p->cooldown));
    return shift_quiet(p, t);
}

/* ---- state ---- */

/* The state is text: "2 a k t0 g p d x" (format 2), decimal integers
 * separated by one space, exactly as state_store writes it. Read and
 * written by hand: sscanf and snprintf cost more than the rest of an
 * activity event's work in this plugin. */
#define STATE_FIELDS 7

/* Reads the next " <int64>" at *s (before end); 0 or -1. */
static int take_int(const char **s, const char *end, int64_t *out)
{
    const char *p = *s;
    if (p >= end || *p != ' ')
        return -1;
    p++;
    int neg = p < end && *p == '-';
    p += neg;
    if (p >= end || *p < '0' || *p > '9')
        return -1;
    uint64_t v = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (lim - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
    *s = p;
    return 0;
}

/* Writes " <v>" at p; returns the end. */
static char *put_int(char *p, int64_t v)
{
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    *p++ = ' ';
    if (v < 0)
        *p++ = '-';
    while (n)
        *p++ = tmp[--n];
    return p;
}

/* 1 and *st when the user has state, 0 when not, -errno on failure. */
static int state_load(mktd_ctx *ctx, const char *user, struct ustate *st)
{
    const char *val = NULL;
    size_t len = 0;
    int rc = H->state_get(ctx, user, STATE_KEY, &val, &len);
    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    int64_t f[STATE_FIELDS];
    const char *p = val + 1, *end = val + len;
    int ok = len > 0 && val[0] == '2';
    for (int i = 0; ok && i < STATE_FIELDS; i++)
        ok = take_int(&p, end, &f[i]) == 0;
    if (!ok || p != end || f[3] < GROUP_NONE || f[3] > GROUP_HOLDOUT || f[1] < 1) {
        H->log(ctx, MKTD_LOG_WARN, "user %s: unreadable state '%.*s'; starting afresh", user,
               (int)(len > 200 ? 200 : len), val);
        return 0;
    }
    st->a = f[0];
    st->k = f[1];
    st->t0 = f[2];
    st->g = (int)f[3];
    st->p = f[4];
    st->d = f[5];
    st->x = f[6];
    return 1;
}

static int state_store(mktd_ctx *ctx, const char *user, const struct ustate *st)
{
    char buf[2 + STATE_FIELDS * 22];
    char *p = buf;
    *p++ = '2';
    const int64_t f[STATE_FIELDS] = {st->a, st->k, st->t0, st->g, st->p, st->d, st->x};
    for (int i = 0; i < STATE_FIELDS; i++)
        p = put_int(p, f[i]);
    return H->state_put(ctx, user, STATE_KEY, buf, (size_t)(p - buf));
}

/* Sets the timer for the first attempt numbered st->k or later whose moment
 * is later than the previous attempt's; the ones in between are skipped and
 * keep their numbers. Stores the state. */
static int schedule_from(mktd_ctx *ctx, const struct params *p, const char *user, struct ustate *st)
{
    int rc;
    while (st->k <= p->max_attempts) {
        int64_t m = attempt_moment(p, st->a, st->k);
        if (st->p == INT64_MIN || m > st->p) {
            st->d = m;
            /* a timer already set no later than m stays: it fires early and
             * is set again then, which spares a write per activity */
            if (st->x == NO_TIME || st->x > m) {
                rc = H->timer_set(ctx, user, TIMER_NAME, m);
                if (rc < 0)
                    return rc;
                st->x = m;
            }
            return state_store(ctx, user, st);
        }
        st->k++;
    }
    /* the spell has no attempts left */
    st->d = NO_TIME;
    if (st->x != NO_TIME) {
        rc = H->timer_cancel(ctx, user, TIMER_NAME);
        if (rc < 0 && rc != -ENOENT)
            return rc;
        st->x = NO_TIME;
    }
    return state_store(ctx, user, st);
}

/* Starts a new spell after an activity at a. */
static int start_spell(mktd_ctx *ctx, const struct params *p, const char *user, int64_t a,
                       int64_t timer_at)
{
    struct ustate st = {
        .a = a, .k = 1, .t0 = 0, .g = GROUP_NONE, .p = INT64_MIN, .d = NO_TIME, .x = timer_at};
    return schedule_from(ctx, p, user, &st);
}

/* ---- config ---- */

static int valid_type(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* "HH:MM", 00:00..23:59 -> ms after midnight. */
static int parse_hhmm(const char *s, int64_t *ms)
{
    if (strlen(s) != 5 || s[2] != ':')
        return -EINVAL;
    for (int i = 0; i < 5; i++)
        if (i != 2 && (s[i] < '0' || s[i] > '9'))
            return -EINVAL;
    int h = (s[0] - '0') * 10 + (s[1] - '0');
    int m = (s[3] - '0') * 10 + (s[4] - '0');
    if (h > 23 || m > 59)
        return -EINVAL;
    *ms = (int64_t)(h * 60 + m) * MINUTE_MS;
    return 0;
}

/* "+hh:mm", "-hh:mm" (up to 23:59) or "Z" -> ms. */
static int parse_offset(const char *s, int64_t *ms)
{
    if (strcmp(s, "Z") == 0 || strcmp(s, "z") == 0) {
        *ms = 0;
        return 0;
    }
    if (s[0] != '+' && s[0] != '-')
        return -EINVAL;
    int64_t v;
    if (parse_hhmm(s + 1, &v) < 0)
        return -EINVAL;
    *ms = s[0] == '-' ? -v : v;
    return 0;
}

/* 1 when n is absent or a YAML null (`key:` with no value). */
static int is_null(mktd_ctx *ctx, const mktd_node *n)
{
    if (!n)
        return 1;
    if (H->node_kind(n) != MKTD_NODE_SCALAR)
        return 0;
    char *json = NULL;
    if (H->node_json(ctx, n, &json) < 0 || !json)
        return 0;
    int null = strcmp(json, "null") == 0;
    free(json);
    return null;
}

static void params_free(struct params *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->n_activity; i++)
        free(p->activity[i]);
    free(p->activity);
    free(p->offer);
    free(p);
}

static int add_activity(mktd_ctx *ctx, struct params *p, const mktd_node *n)
{
    const char *s = NULL;
    if (H->node_str(ctx, n, &s) < 0)
        return -EINVAL;
    if (!valid_type(s))
        return H->config_error(
            ctx, n, "activity: '%s' is not an event type (1-64 bytes of [a-z0-9_.-])", s);
    char *copy = strdup(s);
    if (!copy)
        return -ENOMEM;
    p->activity[p->n_activity++] = copy;
    return 0;
}

static int init_activity(mktd_ctx *ctx, struct params *p, const mktd_node *n)
{
    int kind = H->node_kind(n);
    size_t len = kind == MKTD_NODE_SEQ ? H->node_len(n) : 1;
    if (kind == MKTD_NODE_MAP)
        return H->config_error(ctx, n, "activity: expected an event type or a list of them");
    if (len == 0)
        return H->config_error(ctx, n,
                               "activity: the list is empty (leave it out to count "
                               "every event type)");
    p->activity = calloc(len, sizeof *p->activity);
    if (!p->activity)
        return -ENOMEM;
    if (kind == MKTD_NODE_SCALAR)
        return add_activity(ctx, p, n);
    int rc = 0;
    for (size_t i = 0; i < len; i++) {
        const mktd_node *item = H->node_at(n, i);
        if (H->node_kind(item) != MKTD_NODE_SCALAR) {
            rc = H->config_error(ctx, item, "activity: expected an event type");
            continue;
        }
        int r = add_activity(ctx, p, item);
        if (r < 0)
            rc = r;
    }
    return rc;
}

static int init_quiet(mktd_ctx *ctx, struct params *p, const mktd_node *q)
{
    static const char *const allowed[] = {"from", "to", "utc_offset", NULL};
    if (H->node_kind(q) != MKTD_NODE_MAP)
        return H->config_error(ctx, q,
                               "quiet_hours: expected a map {from: \"HH:MM\", to: \"HH:MM\", "
                               "utc_offset: \"+hh:mm\"}");
    int rc = 0;
    if (H->check_keys(ctx, q, allowed) < 0)
        rc = -EINVAL;
    const char *from = NULL, *to = NULL, *off = NULL;
    int64_t from_ms = 0, to_ms = 0, off_ms = 0;
    if (H->get_str(ctx, q, "from", 1, NULL, &from) < 0)
        rc = -EINVAL;
    else if (parse_hhmm(from, &from_ms) < 0)
        rc = H->config_error(ctx, H->node_get(q, "from"),
                             "quiet_hours.from: '%s' is not a time of day \"HH:MM\"", from);
    if (H->get_str(ctx, q, "to", 1, NULL, &to) < 0)
        rc = -EINVAL;
    else if (parse_hhmm(to, &to_ms) < 0)
        rc = H->config_error(ctx, H->node_get(q, "to"),
                             "quiet_hours.to: '%s' is not a time of day \"HH:MM\"", to);
    if (H->get_str(ctx, q, "utc_offset", 0, "+00:00", &off) < 0)
        rc = -EINVAL;
    else if (parse_offset(off, &off_ms) < 0)
        rc = H->config_error(ctx, H->node_get(q, "utc_offset"),
                             "quiet_hours.utc_offset: '%s' is not an offset \"+hh:mm\"", off);
    if (rc < 0)
        return rc;
    p->quiet = from_ms != to_ms;
    p->quiet_from = from_ms;
    p->quiet_to = to_ms;
    p->quiet_off = off_ms;
    return 0;
}

static int r_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    static const char *const allowed[] = {
        "inactive_for",   "activity",    "cooldown", "max_attempts", "holdout_percent",
        "convert_within", "quiet_hours", "offer",    "backfill",     NULL};
    *data = NULL;
    if (!params)
        return H->config_error(ctx, NULL, "reactivation needs params (at least inactive_for)");
    if (H->node_kind(params) != MKTD_NODE_MAP)
        return H->config_error(ctx, params, "params: expected a map");

    struct params *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    int rc = 0;
    if (H->check_keys(ctx, params, allowed) < 0)
        rc = -EINVAL;
    if (H->get_duration(ctx, params, "inactive_for", 1, 0, 1, INT64_MAX, &p->inactive_for) < 0)
        rc = -EINVAL;
    int64_t cd_def = p->inactive_for > 0 ? p->inactive_for : DAY_MS;
    if (H->get_duration(ctx, params, "cooldown", 0, cd_def, 1, INT64_MAX, &p->cooldown) < 0)
        rc = -EINVAL;
    if (H->get_int(ctx, params, "max_attempts", 0, 1, 1, INT32_MAX, &p->max_attempts) < 0)
        rc = -EINVAL;
    if (H->get_int(ctx, params, "holdout_percent", 0, 0, 0, 50, &p->holdout) < 0)
        rc = -EINVAL;
    if (H->get_duration(ctx, params, "convert_within", 0, 7 * DAY_MS, 0, INT64_MAX,
                        &p->convert_within) < 0)
        rc = -EINVAL;
    if (H->get_bool(ctx, params, "backfill", 0, 0, &p->backfill) < 0)
        rc = -EINVAL;

    const mktd_node *n = H->node_get(params, "activity");
    if (!is_null(ctx, n)) {
        int r = init_activity(ctx, p, n);
        if (r < 0)
            rc = r;
    }
    n = H->node_get(params, "quiet_hours");
    if (!is_null(ctx, n)) {
        int r = init_quiet(ctx, p, n);
        if (r < 0)
            rc = r;
    }
    /* a key with no value counts as absent, as for the host's accessors */
    n = H->node_get(params, "offer");
    if (!is_null(ctx, n)) {
        if (H->node_json(ctx, n, &p->offer) < 0 || !p->offer)
            rc = -EINVAL;
    }
    if (rc == 0 && !p->offer) {
        p->offer = strdup("{}");
        if (!p->offer)
            rc = -ENOMEM;
    }
    if (rc < 0) {
        params_free(p);
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    *data = p;
    return 0;
}

static void r_destroy(void *data)
{
    params_free(data);
}

/* ---- events and timers ---- */

static int counts_as_activity(const struct params *p, const char *type)
{
    if (!p->activity)
        return 1;
    for (size_t i = 0; i < p->n_activity; i++)
        if (strcmp(p->activity[i], type) == 0)
            return 1;
    return 0;
}

static int r_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    const struct params *p = data;
    if (ev->depth != 0 || !(flags & MKTD_F_ACTIVE))
        return 0;
    if (!counts_as_activity(p, ev->type)) {
        H->note(ctx, "%s is not an activity", ev->type);
        return 0;
    }
    const int64_t t = ev->ts;
    struct ustate st;
    int have = state_load(ctx, ev->user, &st);
    if (have < 0)
        return have;
    if (have) {
        if (t <= st.a) {
            H->note(ctx, "not later than the last activity");
            return 0;
        }
        if (st.g != GROUP_NONE && !(t >= st.t0 && t - st.t0 <= p->convert_within))
            H->note(ctx, "no conversion: %s",
                    t < st.t0 ? "before the last attempt" : "after convert_within");
        if (st.g != GROUP_NONE && t >= st.t0 && t - st.t0 <= p->convert_within) {
            mktd_obj *o = H->obj_new(ctx);
            if (!o)
                return -ENOMEM;
            H->obj_str(o, "group", st.g == GROUP_OFFER ? "offer" : "holdout");
            H->obj_int(o, "after_ms", t - st.t0);
            int rc = H->emit(ctx, "reactivation.converted", ev->user, o);
            if (rc < 0)
                return rc;
        }
    }
    return start_spell(ctx, p, ev->user, t, have ? st.x : NO_TIME);
}

static int r_on_timer(mktd_ctx *ctx, void *data, const char *user, const char *name, int64_t due,
                      unsigned flags)
{
    const struct params *p = data;
    if (strcmp(name, TIMER_NAME) != 0)
        return 0;
    struct ustate st;
    int have = state_load(ctx, user, &st);
    if (have <= 0)
        return have; /* no spell to act on */
    st.x = NO_TIME;  /* the timer is gone */
    if (st.d != NO_TIME && due < st.d) {
        /* early: the attempt is due later (activity came since) */
        H->note(ctx, "early: activity came since; the attempt is due at %" PRId64, st.d);
        int rc = H->timer_set(ctx, user, TIMER_NAME, st.d);
        if (rc < 0)
            return rc;
        st.x = st.d;
        return state_store(ctx, user, &st);
    }
    if (st.d == NO_TIME) {
        H->note(ctx, "no attempt pending");
        return state_store(ctx, user, &st); /* nothing pending */
    }
    if (st.k > p->max_attempts) {
        /* max_attempts was lowered by a reload: no more attempts this spell */
        H->note(ctx, "max_attempts reached");
        return state_store(ctx, user, &st);
    }
    if (!(flags & MKTD_F_ACTIVE))
        H->note(ctx, "attempt %" PRId64 " skipped: campaign inactive at its time", st.k);
    if (flags & MKTD_F_ACTIVE) {
        const char *cid = H->campaign_id(ctx);
        int holdout = bucket_of(cid, user) < p->holdout;
        if (holdout)
            H->note(ctx, "holdout: bucket %d below holdout_percent %" PRId64, bucket_of(cid, user),
                    p->holdout);
        mktd_obj *o = H->obj_new(ctx);
        if (!o)
            return -ENOMEM;
        H->obj_int(o, "attempt", st.k);
        H->obj_int(o, "inactive_ms", due - st.a);
        if (!holdout) {
            int rc = H->obj_json(o, "offer", p->offer);
            if (rc < 0)
                return rc;
        }
        int rc = H->emit(ctx, holdout ? "reactivation.holdout" : "reactivation.offer", user, o);
        if (rc < 0)
            return rc;
        if (rc != MKTD_CAPPED) { /* a capped attempt is used up, with no decision */
            st.t0 = due;
            st.g = holdout ? GROUP_HOLDOUT : GROUP_OFFER;
        }
    }
    /* made, or skipped for good (disabled or outside the window) */
    if (st.p == INT64_MIN || due > st.p)
        st.p = due;
    st.k++;
    return schedule_from(ctx, p, user, &st);
}

/* ---- backfill ---- */

struct backfill_arg {
    mktd_ctx *ctx;
    const struct params *p;
};

static int backfill_user(void *arg, const char *user, const mktd_profile *prof)
{
    struct backfill_arg *b = arg;
    if (prof->events <= 0)
        return 0;
    struct ustate st;
    int have = state_load(b->ctx, user, &st);
    if (have < 0)
        return have;
    if (have && st.a >= prof->last_seen)
        return 0;
    return start_spell(b->ctx, b->p, user, prof->last_seen, have ? st.x : NO_TIME);
}

static int r_on_load(mktd_ctx *ctx, void *data, int first)
{
    const struct params *p = data;
    if (!first || !p->backfill)
        return 0;
    struct backfill_arg b = {ctx, p};
    return H->users_foreach(ctx, backfill_user, &b);
}

static const mktd_plugin plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "reactivation",
    .version = "1.0.0",
    .flags = MKTD_PLUGIN_WHEN_REFUSED,
    .init = r_init,
    .destroy = r_destroy,
    .on_event = r_on_event,
    .on_timer = r_on_timer,
    .on_load = r_on_load,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *host)
{
    H = host;
    return &plugin;
}
