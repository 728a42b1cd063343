/* The host API table as the daemon implements it: every plugin call lands
 * here and goes to the engine (actions, clock) or the store (state). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "engine/budget.h"
#include "engine/derive.h"
#include "engine/gauges.h"
#include "engine/hostcommon.h"
#include "engine/internal.h"
#include "engine/ws.h"
#include "lib/log.h"

static void ctx_logv(int level, const char *campaign, const char *fmt, va_list ap)
{
    log_vmsg(level, campaign, fmt, ap);
}

void ctx_init(struct mktd_ctx *ctx, struct engine *e, struct campaign *c, int64_t now,
              const char *event_id, int depth)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->base.campaign_id = c->cfg->id;
    ctx->base.campaign_node = c->cfg->node;
    ctx->base.logv = ctx_logv;
    ctx->e = e;
    ctx->c = c;
    ctx->now = now;
    ctx->event_id = event_id;
    ctx->depth = depth;
}

/* A copy of bytes, alive until the callback returns. */
static const char *keep(struct mktd_ctx *ctx, const char *bytes, size_t len)
{
    if (!ctx->base.pool)
        ctx->base.pool = json_array();
    json_t *s = json_stringn_nocheck(bytes, len);
    if (!s)
        return NULL;
    json_array_append_new(ctx->base.pool, s);
    return json_string_value(s);
}

/* Plugins may call store functions only while the engine runs them (not
 * from init). */
#define NEED_ENGINE(ctx, ret)                                                                      \
    do {                                                                                           \
        if (!(ctx)->e)                                                                             \
            return ret;                                                                            \
    } while (0)

static const char *h_campaign_id(mktd_ctx *ctx)
{
    return ctx->c->cfg->id;
}

static int h_campaign_active(mktd_ctx *ctx, int64_t ts)
{
    const struct campaign_cfg *cc = ctx->c->cfg;
    return cc->enabled && ts >= cc->starts && ts <= cc->ends;
}

static int h_campaign_loaded(mktd_ctx *ctx, const char *id)
{
    NEED_ENGINE(ctx, 0);
    return engine_campaign(ctx->e, id) != NULL;
}

static int h_first_of_plugin(mktd_ctx *ctx)
{
    return ctx->c->first_of_plugin;
}

static int h_emit(mktd_ctx *ctx, const char *kind, const char *user, mktd_obj *payload)
{
    NEED_ENGINE(ctx, -EPERM);
    if (!kind || !*kind || !user || !*user)
        return -EINVAL;
    json_t *p = payload ? hostcommon_obj_json(payload) : json_object();
    int rc = engine_emit(ctx->e, ctx, kind, user, p);
    json_decref(p);
    return rc;
}

static int64_t h_now(mktd_ctx *ctx)
{
    return ctx->now;
}

/* A storage error fails the event whatever the plugin makes of it (spec
 * 12): it is never taken as "absent" or 0. */
static int io(mktd_ctx *ctx, int rc)
{
    if (rc == -EIO)
        ctx->e->io_failed = 1;
    return rc;
}

static int h_profile(mktd_ctx *ctx, const char *user, mktd_profile *out)
{
    NEED_ENGINE(ctx, -EPERM);
    if (!user || !out)
        return -EINVAL;
    return io(ctx, ws_get_profile(ctx->e->ws, user, out));
}

static int h_users_foreach(mktd_ctx *ctx, int (*cb)(void *, const char *, const mktd_profile *),
                           void *arg)
{
    NEED_ENGINE(ctx, -EPERM);
    /* the store has every profile once the working set is written */
    if (engine_flush(ctx->e) < 0)
        return -EIO;
    return store_users_foreach(ctx->e->st, cb, arg);
}

/* val (and len) may be NULL: "does it exist". */
static int h_state_get(mktd_ctx *ctx, const char *user, const char *key, const char **val,
                       size_t *len)
{
    NEED_ENGINE(ctx, -EPERM);
    if (!key)
        return -EINVAL;
    const char *v;
    size_t n;
    int rc = io(ctx, ws_get_str(ctx->e->ws, WS_STATE, ctx->c->cfg->id, user, key, &v, &n));
    if (rc < 0)
        return rc;
    if (len)
        *len = n;
    if (!val) /* only whether it exists */
        return 0;
    *val = keep(ctx, v, n); /* one copy, kept until the callback returns */
    return *val ? 0 : -ENOMEM;
}

static int h_state_put(mktd_ctx *ctx, const char *user, const char *key, const void *val,
                       size_t len)
{
    NEED_ENGINE(ctx, -EPERM);
    if (!key || (!val && len))
        return -EINVAL;
    return io(ctx, ws_put_str(ctx->e->ws, WS_STATE, ctx->c->cfg->id, user, key, val, len));
}

static int h_state_del(mktd_ctx *ctx, const char *user, const char *key)
{
    NEED_ENGINE(ctx, -EPERM);
    if (!key)
        return -EINVAL;
    return io(ctx, ws_del(ctx->e->ws, WS_STATE, ctx->c->cfg->id, user, key));
}

static int h_counter_add(mktd_ctx *ctx, const char *user, const char *key, int64_t delta,
                         int64_t limit, int64_t *value)
{
    NEED_ENGINE(ctx, -EPERM);
    if (!key)
        return -EINVAL;
    /* cluster mode: a budget's room is claimed from the shared pool */
    if (ctx->e->has_pool && !user && limit >= 0 && delta > 0) {
        int rc = budget_add(ctx->e, ctx->c->cfg->id, key, delta, limit, value);
        return rc == -EIO ? io(ctx, rc) : rc;
    }
    int64_t cur = 0;
    int rc = io(ctx, ws_get_int(ctx->e->ws, WS_COUNTER, ctx->c->cfg->id, user, key, &cur));
    if (rc == -EIO)
        return rc;
    int64_t next = sat_add(cur, delta);
    if (limit >= 0 && next > limit) {
        if (value)
            *value = cur;
        return 1;
    }
    rc = io(ctx, ws_put_int(ctx->e->ws, WS_COUNTER, ctx->c->cfg->id, user, key, next));
    if (rc < 0)
        return rc;
    if (value)
        *value = next;
    return 0;
}

/* A counter never set is 0; a counter that cannot be read fails the event
 * (the 0 returned then is never acted on: the event is undone). */
static int64_t h_counter_get(mktd_ctx *ctx, const char *user, const char *key)
{
    NEED_ENGINE(ctx, 0);
    int64_t v = 0;
    if (!key)
        return 0;
    if (ctx->e->has_pool && !user)
        return io(ctx, budget_get(ctx->e, ctx->c->cfg->id, key, &v)) < 0 ? 0 : v;
    if (io(ctx, ws_get_int(ctx->e->ws, WS_COUNTER, ctx->c->cfg->id, user, key, &v)) < 0)
        return 0;
    return v;
}

static int h_timer_set(mktd_ctx *ctx, const char *user, const char *name, int64_t due)
{
    NEED_ENGINE(ctx, -EPERM);
    if (!name)
        return -EINVAL;
    int rc = io(ctx, ws_put_int(ctx->e->ws, WS_TIMER, ctx->c->cfg->id, user, name, due));
    if (rc == 0 && due < ctx->e->next_due)
        ctx->e->next_due = due;
    return rc;
}

static int h_timer_cancel(mktd_ctx *ctx, const char *user, const char *name)
{
    NEED_ENGINE(ctx, -EPERM);
    if (!name)
        return -EINVAL;
    return io(ctx, ws_del(ctx->e->ws, WS_TIMER, ctx->c->cfg->id, user, name));
}

static int h_timer_get(mktd_ctx *ctx, const char *user, const char *name, int64_t *due)
{
    NEED_ENGINE(ctx, -EPERM);
    if (!name || !due)
        return -EINVAL;
    return io(ctx, ws_get_int(ctx->e->ws, WS_TIMER, ctx->c->cfg->id, user, name, due));
}

static int h_unique_claim(mktd_ctx *ctx, const char *ns, const char *key)
{
    NEED_ENGINE(ctx, -EPERM);
    if (!ns || !key)
        return -EINVAL;
    int rc = io(ctx, ws_get_str(ctx->e->ws, WS_UNIQUE, ns, "", key, NULL, NULL));
    if (rc == 0)
        return -EEXIST;
    if (rc != -ENOENT)
        return rc;
    const char *id = ctx->c->cfg->id;
    rc = io(ctx, ws_put_str(ctx->e->ws, WS_UNIQUE, ns, "", key, id, strlen(id)));
    struct engine *e = ctx->e;
    if (rc == 0 && e->has_registry && !ctx->dry) {
        /* made known to the other partitions after the commit */
        size_t a = strlen(ns) + 1, b = strlen(key) + 1, c = strlen(id) + 1;
        char *rec = xmalloc(a + b + c);
        memcpy(rec, ns, a);
        memcpy(rec + a, key, b);
        memcpy(rec + a + b, id, c);
        if (e->n_claimed == e->cap_claimed) {
            e->cap_claimed = e->cap_claimed ? 2 * e->cap_claimed : 64;
            e->claimed = xrealloc(e->claimed, e->cap_claimed * sizeof(*e->claimed));
        }
        e->claimed[e->n_claimed++] = rec;
    }
    return rc;
}

static int h_unique_owner(mktd_ctx *ctx, const char *ns, const char *key, const char **campaign)
{
    NEED_ENGINE(ctx, -EPERM);
    if (!ns || !key || !campaign)
        return -EINVAL;
    const char *owner;
    size_t n;
    int rc = io(ctx, ws_get_str(ctx->e->ws, WS_UNIQUE, ns, "", key, &owner, &n));
    if (rc == -ENOENT && ctx->e->has_registry) {
        /* cluster mode: claimed in another partition? */
        char other[128];
        rc = ctx->e->registry.lookup(ctx->e->registry.arg, ns, key, other, sizeof(other));
        if (rc < 0)
            return rc;
        *campaign = keep(ctx, other, strlen(other));
        return *campaign ? 0 : -ENOMEM;
    }
    if (rc < 0)
        return rc;
    *campaign = keep(ctx, owner, n);
    return *campaign ? 0 : -ENOMEM;
}

/* Bytes from the kernel's CSPRNG, fetched a pool at a time (one syscall
 * per pool, not per coupon code); each byte is handed out once and wiped.
 * Plugins run on the loop's thread only. */
static int h_random_bytes(void *buf, size_t len)
{
    static unsigned char pool[256]; /* getrandom fills up to 256 bytes whole */
    static size_t pos, end;
    unsigned char *p = buf;
    while (len > 0) {
        if (pos == end) {
            ssize_t n = getrandom(pool, sizeof(pool), 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return -errno;
            }
            pos = 0;
            end = (size_t)n;
            continue;
        }
        size_t k = len < end - pos ? len : end - pos;
        memcpy(p, pool + pos, k);
        memset(pool + pos, 0, k);
        pos += k;
        p += k;
        len -= k;
    }
    return 0;
}

static void host_fill_1_1(mktd_host *h); /* ABI 1.1 members, at the end of this file */

const mktd_host *host_table(void)
{
    static mktd_host h;
    if (h.abi_version)
        return &h;
    hostcommon_fill(&h);
    h.campaign_id = h_campaign_id;
    h.campaign_active = h_campaign_active;
    h.campaign_loaded = h_campaign_loaded;
    h.first_of_plugin = h_first_of_plugin;
    h.emit = h_emit;
    h.now = h_now;
    h.profile = h_profile;
    h.users_foreach = h_users_foreach;
    h.state_get = h_state_get;
    h.state_put = h_state_put;
    h.state_del = h_state_del;
    h.counter_add = h_counter_add;
    h.counter_get = h_counter_get;
    h.timer_set = h_timer_set;
    h.timer_cancel = h_timer_cancel;
    h.timer_get = h_timer_get;
    h.unique_claim = h_unique_claim;
    h.unique_owner = h_unique_owner;
    h.random_bytes = h_random_bytes;
    host_fill_1_1(&h);
    h.struct_size = sizeof(h);
    h.abi_version = MKTD_ABI_VERSION;
    return &h;
}

/* ---- ABI 1.1 (note comes from hostcommon.c) ---- */

static int h_is_dry(mktd_ctx *ctx)
{
    return ctx->dry;
}

/* 1-64 bytes of [a-z0-9_]: a gauge name is a label value, kept plain. */
static int gauge_name_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (n == 64 ||
            !((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
            return 0;
    return n > 0;
}

static int h_gauge_set(mktd_ctx *ctx, const char *name, int64_t value)
{
    NEED_ENGINE(ctx, -EPERM);
    if (!name || !gauge_name_ok(name))
        return -EINVAL;
    struct engine *e = ctx->e;
    if (!e->gauges)
        e->gauges = gauges_new();
    return gauges_set(e->gauges, ctx->c->cfg->id, ctx->c->cfg->plugin, name, value);
}

/* One daemon: the cryptographic source. Cluster mode (an engine with a
 * secret): HMAC-SHA256 of the secret and the action's identity, so that a
 * replayed partition draws the same bytes (engine/derive.h): the chain's
 * input event id, or the timer that started it, the campaign asking, and
 * how many calls came before in the chain (a code that collides draws
 * again with the next count). */
static int h_random_for(mktd_ctx *ctx, void *buf, size_t len)
{
    struct engine *e = ctx->e;
    if (!buf && len)
        return -EINVAL;
    if (!e || !e->secret)
        return h_random_bytes(buf, len);
    struct derive_id id = {
        .partition = e->partition, .campaign = ctx->c->cfg->id, .counter = e->random_calls++};
    if (ctx->event_id) {
        id.kind = DERIVE_EVENT;
        id.event_id = ctx->event_id;
    } else if (e->firing) {
        id.kind = DERIVE_TIMER;
        id.timer_campaign = e->firing->campaign;
        id.timer_user = e->firing->user;
        id.timer_name = e->firing->name;
        id.due_or_now = e->firing->due;
    } else {
        id.kind = DERIVE_OTHER;
        id.due_or_now = ctx->now;
    }
    return derive_bytes(e->secret, e->secret_len, &id, buf, len);
}

static int h_timer_campaign_set(mktd_ctx *ctx, const char *name, int64_t due)
{
    return h_timer_set(ctx, NULL, name, due);
}

static int h_timer_campaign_cancel(mktd_ctx *ctx, const char *name)
{
    return h_timer_cancel(ctx, NULL, name);
}

/* The working set is written into the open transaction first, so that the
 * store's ordered rows are what memory holds (as users_foreach does). */
static int h_state_iter(mktd_ctx *ctx, const char *user, const char *prefix,
                        int (*cb)(void *, const char *, const char *, size_t), void *arg)
{
    NEED_ENGINE(ctx, -EPERM);
    if (!cb)
        return -EINVAL;
    if (engine_flush(ctx->e) < 0)
        return io(ctx, -EIO);
    int rc = store_state_prefix(ctx->e->st, ctx->c->cfg->id, user, prefix ? prefix : "", cb, arg);
    return io(ctx, rc);
}

static void host_fill_1_1(mktd_host *h)
{
    h->is_dry = h_is_dry;
    h->gauge_set = h_gauge_set;
    h->random_for = h_random_for;
    h->timer_campaign_set = h_timer_campaign_set;
    h->timer_campaign_cancel = h_timer_campaign_cancel;
    h->state_iter = h_state_iter;
}
