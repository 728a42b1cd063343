/*
 * The mock host: the whole host API in memory, playing events the way the
 * daemon does with `clock: event` (see mktd/mock.h).
 *
 * Stores are hash maps keyed by byte strings. Every change made while an
 * event (or an advance, or a load) is being played is written to an undo log
 * first, so that a failing callback can roll the whole play back.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <jansson.h>
#include <mktd/mock.h>

#include "config/yaml.h"
#include "engine/hostcommon.h"
#include "lib/util.h"

#define MOCK_MAX_DEPTH 4
#define MOCK_MAX_FIRINGS 1000000

/* ---- hash map over byte-string keys ---- */

struct ent {
    struct ent *next;
    uint64_t h;
    char *k; /* klen bytes plus a NUL */
    size_t klen;
    int64_t i;
    char *v; /* vlen bytes plus a NUL, or NULL */
    size_t vlen;
};

struct map {
    struct ent **b;
    size_t nb, n;
};

static uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 14695981039346656037ull;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static void ent_free(struct ent *e)
{
    if (!e)
        return;
    free(e->k);
    free(e->v);
    free(e);
}

static struct ent *ent_dup(const struct ent *e)
{
    struct ent *d = xcalloc(1, sizeof *d);
    d->h = e->h;
    d->k = xmalloc(e->klen + 1);
    memcpy(d->k, e->k, e->klen + 1);
    d->klen = e->klen;
    d->i = e->i;
    if (e->v) {
        d->v = xmalloc(e->vlen + 1);
        memcpy(d->v, e->v, e->vlen + 1);
        d->vlen = e->vlen;
    }
    return d;
}

static void ent_set_v(struct ent *e, const void *v, size_t len)
{
    free(e->v);
    e->v = xmalloc(len + 1);
    if (len)
        memcpy(e->v, v, len);
    e->v[len] = '\0';
    e->vlen = len;
}

static struct ent *map_find(const struct map *m, const void *k, size_t klen)
{
    if (!m->nb)
        return NULL;
    uint64_t h = hash_bytes(k, klen);
    for (struct ent *e = m->b[h % m->nb]; e; e = e->next)
        if (e->h == h && e->klen == klen && memcmp(e->k, k, klen) == 0)
            return e;
    return NULL;
}

static void map_link(struct map *m, struct ent *e)
{
    if (m->n + 1 > m->nb * 2) {
        size_t nb = m->nb ? m->nb * 4 : 64;
        struct ent **b = xcalloc(nb, sizeof *b);
        for (size_t i = 0; i < m->nb; i++) {
            struct ent *x = m->b[i];
            while (x) {
                struct ent *next = x->next;
                x->next = b[x->h % nb];
                b[x->h % nb] = x;
                x = next;
            }
        }
        free(m->b);
        m->b = b;
        m->nb = nb;
    }
    e->next = m->b[e->h % m->nb];
    m->b[e->h % m->nb] = e;
    m->n++;
}

/* The entry for k, created (i = 0, v = NULL) when missing. */
static struct ent *map_put(struct map *m, const void *k, size_t klen)
{
    struct ent *e = map_find(m, k, klen);
    if (e)
        return e;
    e = xcalloc(1, sizeof *e);
    e->h = hash_bytes(k, klen);
    e->k = xmalloc(klen + 1);
    memcpy(e->k, k, klen);
    e->k[klen] = '\0';
    e->klen = klen;
    map_link(m, e);
    return e;
}

static void map_del(struct map *m, const void *k, size_t klen)
{
    if (!m->nb)
        return;
    uint64_t h = hash_bytes(k, klen);
    for (struct ent **pp = &m->b[h % m->nb]; *pp; pp = &(*pp)->next) {
        struct ent *e = *pp;
        if (e->h == h && e->klen == klen && memcmp(e->k, k, klen) == 0) {
            *pp = e->next;
            ent_free(e);
            m->n--;
            return;
        }
    }
}

static void map_free(struct map *m)
{
    for (size_t i = 0; i < m->nb; i++) {
        struct ent *e = m->b[i];
        while (e) {
            struct ent *next = e->next;
            ent_free(e);
            e = next;
        }
    }
    free(m->b);
    memset(m, 0, sizeof *m);
}

/* Every entry, in an array the caller frees. */
static struct ent **map_entries(const struct map *m, size_t *n)
{
    struct ent **a = xmalloc((m->n ? m->n : 1) * sizeof *a);
    size_t k = 0;
    for (size_t i = 0; i < m->nb; i++)
        for (struct ent *e = m->b[i]; e; e = e->next)
            a[k++] = e;
    *n = k;
    return a;
}

/* ---- the mock ---- */

struct camp {
    char *id;
    size_t idx;
    mktd_plugin desc; /* the plugin's descriptor, zero-filled past its struct_size */
    void *data;
    int inited;
    struct ydoc *doc;
    int enabled;
    int64_t starts, ends;
    char **when; /* NULL: every type */
    size_t n_when;
    int loaded; /* on_load was called once */
};

struct action {
    mktd_mock_action pub;
    json_t *props; /* the payload, parsed */
};

struct undo {
    struct map *map;
    char *k;
    size_t klen;
    struct ent *old; /* NULL: the key did not exist */
};

struct mktd_mock {
    struct camp **camps;
    size_t n_camps;

    struct map state, counters, timers, uniques, profiles;

    struct action *acts;
    size_t n_acts, cap_acts;
    int64_t seq;

    int64_t now;
    int auto_profile;
    uint64_t serial; /* for events without an id */

    int txn;
    struct undo *undo;
    size_t n_undo, cap_undo;

    struct errs errs;
    char *errs_text;
    char *dump;
};

/* One pending internal event: an action to deliver, and its depth. */
struct pending {
    size_t act;
    int depth;
};

struct queue {
    struct pending *q;
    size_t n, head, cap;
};

struct mktd_ctx {
    struct ctx_base base;
    mktd_mock *m;
    struct camp *c;
    int64_t now;
    const char *event_id; /* recorded with actions; NULL for timers and loads */
    int depth;            /* of the event being handled; 0 for timers and loads */
    int can_act;          /* 0 during init */
    struct queue *queue;  /* where internal events of new actions go */
    void **arena;         /* strings handed out during the callback */
    size_t n_arena, cap_arena;
};

/* ---- undo log ---- */

static void undo_touch(mktd_mock *m, struct map *map, const void *k, size_t klen)
{
    if (!m->txn)
        return;
    if (m->n_undo == m->cap_undo) {
        m->cap_undo = m->cap_undo ? m->cap_undo * 2 : 64;
        m->undo = xrealloc(m->undo, m->cap_undo * sizeof *m->undo);
    }
    struct undo *u = &m->undo[m->n_undo++];
    struct ent *e = map_find(map, k, klen);
    u->map = map;
    u->k = xmalloc(klen + 1);
    memcpy(u->k, k, klen);
    u->k[klen] = '\0';
    u->klen = klen;
    u->old = e ? ent_dup(e) : NULL;
}

struct txn {
    int64_t now, seq;
    size_t n_acts;
};

static void action_clear(struct action *a)
{
    free((char *)a->pub.kind);
    free((char *)a->pub.user);
    free((char *)a->pub.event_id);
    free((char *)a->pub.payload);
    json_decref(a->props);
}

static void txn_begin(mktd_mock *m, struct txn *t)
{
    t->now = m->now;
    t->seq = m->seq;
    t->n_acts = m->n_acts;
    m->txn = 1;
    m->n_undo = 0;
}

static void txn_drop_log(mktd_mock *m)
{
    for (size_t i = 0; i < m->n_undo; i++) {
        free(m->undo[i].k);
        ent_free(m->undo[i].old);
    }
    m->n_undo = 0;
}

static void txn_commit(mktd_mock *m)
{
    txn_drop_log(m);
    m->txn = 0;
}

static void txn_rollback(mktd_mock *m, const struct txn *t)
{
    for (size_t i = m->n_undo; i-- > 0;) {
        struct undo *u = &m->undo[i];
        map_del(u->map, u->k, u->klen);
        if (u->old) {
            map_link(u->map, u->old);
            u->old = NULL;
        }
    }
    txn_drop_log(m);
    while (m->n_acts > t->n_acts)
        action_clear(&m->acts[--m->n_acts]);
    m->now = t->now;
    m->seq = t->seq;
    m->txn = 0;
}

/* ---- keys ---- */

/* Per-campaign keys: 4 bytes of campaign index, a byte telling whether a
 * user follows, the user, a NUL, then the name. */
static char *camp_key(const struct camp *c, const char *user, const char *name, size_t *len)
{
    size_t ul = user ? strlen(user) : 0, nl = strlen(name);
    char *k = xmalloc(4 + 1 + ul + 1 + nl + 1);
    uint32_t idx = (uint32_t)c->idx;
    k[0] = (char)(idx >> 24);
    k[1] = (char)(idx >> 16);
    k[2] = (char)(idx >> 8);
    k[3] = (char)idx;
    k[4] = user ? 1 : 0;
    if (ul)
        memcpy(k + 5, user, ul);
    k[5 + ul] = '\0';
    memcpy(k + 6 + ul, name, nl + 1);
    *len = 6 + ul + nl;
    return k;
}

static void camp_key_parts(const struct ent *e, size_t *idx, const char **user, const char **name)
{
    const unsigned char *k = (const unsigned char *)e->k;
    *idx = ((size_t)k[0] << 24) | ((size_t)k[1] << 16) | ((size_t)k[2] << 8) | k[3];
    *user = k[4] ? e->k + 5 : NULL;
    *name = e->k + 5 + strlen(e->k + 5) + 1;
}

static char *ns_key(const char *ns, const char *key, size_t *len)
{
    size_t nl = strlen(ns), kl = strlen(key);
    char *k = xmalloc(nl + 1 + kl + 1);
    memcpy(k, ns, nl + 1);
    memcpy(k + nl + 1, key, kl + 1);
    *len = nl + 1 + kl;
    return k;
}

/* ---- callback contexts ---- */

static void mock_logv(int level, const char *campaign, const char *fmt, va_list ap)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    const char *env = getenv("MKTD_MOCK_LOG");
    if (!env || strcmp(env, "1") != 0)
        return;
    fprintf(stderr, "mock %s [%s] ", level >= 0 && level <= 3 ? names[level] : "?",
            campaign ? campaign : "-");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

static void mock_note(const char *fmt, ...) MKTD_PRINTF(1, 2);

static void mock_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    mock_logv(MKTD_LOG_WARN, NULL, fmt, ap);
    va_end(ap);
}

static void ctx_init(mktd_ctx *x, mktd_mock *m, struct camp *c, int64_t now)
{
    memset(x, 0, sizeof *x);
    x->base.campaign_id = c->id;
    x->base.campaign_node = c->doc ? c->doc->root : NULL;
    x->base.logv = mock_logv;
    x->m = m;
    x->c = c;
    x->now = now;
    x->can_act = 1;
}

static void ctx_end(mktd_ctx *x)
{
    ctx_base_reset(&x->base);
    for (size_t i = 0; i < x->n_arena; i++)
        free(x->arena[i]);
    free(x->arena);
    x->arena = NULL;
    x->n_arena = x->cap_arena = 0;
}

static char *ctx_strndup(mktd_ctx *x, const char *s, size_t n)
{
    if (x->n_arena == x->cap_arena) {
        x->cap_arena = x->cap_arena ? x->cap_arena * 2 : 8;
        x->arena = xrealloc(x->arena, x->cap_arena * sizeof *x->arena);
    }
    char *p = xmalloc(n + 1);
    if (n)
        memcpy(p, s, n);
    p[n] = '\0';
    x->arena[x->n_arena++] = p;
    return p;
}

static int camp_active(const struct camp *c, int64_t ts)
{
    return c->enabled && ts >= c->starts && ts <= c->ends;
}

static int camp_matches(const struct camp *c, const char *type)
{
    if (!c->when)
        return 1;
    for (size_t i = 0; i < c->n_when; i++)
        if (strcmp(c->when[i], type) == 0)
            return 1;
    return 0;
}

static struct camp *camp_find(mktd_mock *m, const char *id)
{
    if (!id)
        return NULL;
    for (size_t i = 0; i < m->n_camps; i++)
        if (strcmp(m->camps[i]->id, id) == 0)
            return m->camps[i];
    return NULL;
}

/* ---- host API: the campaign ---- */

static const char *h_campaign_id(mktd_ctx *x)
{
    return x->c->id;
}

static int h_campaign_active(mktd_ctx *x, int64_t ts)
{
    return camp_active(x->c, ts);
}

static int h_campaign_loaded(mktd_ctx *x, const char *id)
{
    return camp_find(x->m, id) != NULL;
}

static int h_first_of_plugin(mktd_ctx *x)
{
    const char *name = x->c->desc.name ? x->c->desc.name : "";
    for (size_t i = 0; i < x->m->n_camps; i++) {
        const struct camp *c = x->m->camps[i];
        if (strcmp(c->desc.name ? c->desc.name : "", name) == 0)
            return c == x->c;
    }
    return 0;
}

/* ---- host API: actions ---- */

static int h_emit(mktd_ctx *x, const char *kind, const char *user, mktd_obj *payload)
{
    mktd_mock *m = x->m;
    if (!x->can_act || !kind || !*kind || !user || !*user)
        return -EINVAL;
    json_t *o = payload ? hostcommon_obj_json(payload) : json_object();
    if (!o)
        return -EINVAL;
    char *text = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (!text)
        return -ENOMEM;
    json_t *props = json_loads(text, JSON_DECODE_ANY, NULL);
    if (!props) {
        free(text);
        return -EINVAL;
    }
    if (m->n_acts == m->cap_acts) {
        m->cap_acts = m->cap_acts ? m->cap_acts * 2 : 32;
        m->acts = xrealloc(m->acts, m->cap_acts * sizeof *m->acts);
    }
    struct action *a = &m->acts[m->n_acts];
    memset(a, 0, sizeof *a);
    a->pub.seq = ++m->seq;
    a->pub.ts = x->now;
    a->pub.campaign = x->c->id;
    a->pub.kind = xstrdup(kind);
    a->pub.user = xstrdup(user);
    a->pub.event_id = x->event_id ? xstrdup(x->event_id) : NULL;
    a->pub.payload = text;
    a->props = props;
    if (x->queue && x->depth < MOCK_MAX_DEPTH) {
        struct queue *q = x->queue;
        if (q->n == q->cap) {
            q->cap = q->cap ? q->cap * 2 : 16;
            q->q = xrealloc(q->q, q->cap * sizeof *q->q);
        }
        q->q[q->n].act = m->n_acts;
        q->q[q->n].depth = x->depth + 1;
        q->n++;
    }
    m->n_acts++;
    return 0;
}

static int64_t h_now(mktd_ctx *x)
{
    return x->now;
}

/* ---- host API: profiles ---- */

static int profile_get(mktd_mock *m, const char *user, mktd_profile *out)
{
    struct ent *e = user ? map_find(&m->profiles, user, strlen(user)) : NULL;
    if (!e || !e->v || e->vlen != sizeof *out)
        return -ENOENT;
    if (out)
        memcpy(out, e->v, sizeof *out);
    return 0;
}

static void profile_put(mktd_mock *m, const char *user, const mktd_profile *p)
{
    size_t ul = strlen(user);
    undo_touch(m, &m->profiles, user, ul);
    ent_set_v(map_put(&m->profiles, user, ul), p, sizeof *p);
}

static int h_profile(mktd_ctx *x, const char *user, mktd_profile *out)
{
    return profile_get(x->m, user, out);
}

static int ent_cmp_key(const void *a, const void *b)
{
    const struct ent *x = *(const struct ent *const *)a, *y = *(const struct ent *const *)b;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int r = memcmp(x->k, y->k, n);
    if (r)
        return r;
    return x->klen < y->klen ? -1 : x->klen > y->klen;
}

static int h_users_foreach(mktd_ctx *x,
                           int (*cb)(void *arg, const char *user, const mktd_profile *p), void *arg)
{
    size_t n;
    struct ent **all = map_entries(&x->m->profiles, &n);
    qsort(all, n, sizeof *all, ent_cmp_key);
    /* Copies, so that the callback may do anything meanwhile. */
    struct ent **copy = xmalloc((n ? n : 1) * sizeof *copy);
    for (size_t i = 0; i < n; i++)
        copy[i] = ent_dup(all[i]);
    free(all);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        mktd_profile p;
        memcpy(&p, copy[i]->v, sizeof p);
        rc = cb(arg, copy[i]->k, &p);
    }
    for (size_t i = 0; i < n; i++)
        ent_free(copy[i]);
    free(copy);
    return rc;
}

/* ---- host API: state and counters ---- */

static int h_state_get(mktd_ctx *x, const char *user, const char *key, const char **val,
                       size_t *len)
{
    if (!key)
        return -EINVAL;
    size_t kl;
    char *k = camp_key(x->c, user, key, &kl);
    struct ent *e = map_find(&x->m->state, k, kl);
    free(k);
    if (!e)
        return -ENOENT;
    if (val)
        *val = ctx_strndup(x, e->v, e->vlen);
    if (len)
        *len = e->vlen;
    return 0;
}

static int h_state_put(mktd_ctx *x, const char *user, const char *key, const void *val, size_t len)
{
    if (!key || (!val && len))
        return -EINVAL;
    size_t kl;
    char *k = camp_key(x->c, user, key, &kl);
    undo_touch(x->m, &x->m->state, k, kl);
    ent_set_v(map_put(&x->m->state, k, kl), val, len);
    free(k);
    return 0;
}

static int h_state_del(mktd_ctx *x, const char *user, const char *key)
{
    if (!key)
        return -EINVAL;
    size_t kl;
    char *k = camp_key(x->c, user, key, &kl);
    if (map_find(&x->m->state, k, kl)) {
        undo_touch(x->m, &x->m->state, k, kl);
        map_del(&x->m->state, k, kl);
    }
    free(k);
    return 0;
}

static int h_counter_add(mktd_ctx *x, const char *user, const char *key, int64_t delta,
                         int64_t limit, int64_t *value)
{
    if (!key)
        return -EINVAL;
    size_t kl;
    char *k = camp_key(x->c, user, key, &kl);
    struct ent *e = map_find(&x->m->counters, k, kl);
    int64_t cur = e ? e->i : 0, next = sat_add(cur, delta);
    if (limit >= 0 && next > limit) {
        free(k);
        if (value)
            *value = cur;
        return 1;
    }
    undo_touch(x->m, &x->m->counters, k, kl);
    map_put(&x->m->counters, k, kl)->i = next;
    free(k);
    if (value)
        *value = next;
    return 0;
}

static int64_t counter_get(mktd_mock *m, struct camp *c, const char *user, const char *key)
{
    if (!key)
        return 0;
    size_t kl;
    char *k = camp_key(c, user, key, &kl);
    struct ent *e = map_find(&m->counters, k, kl);
    free(k);
    return e ? e->i : 0;
}

static int64_t h_counter_get(mktd_ctx *x, const char *user, const char *key)
{
    return counter_get(x->m, x->c, user, key);
}

/* ---- host API: timers ---- */

static int h_timer_set(mktd_ctx *x, const char *user, const char *name, int64_t due)
{
    if (!name)
        return -EINVAL;
    size_t kl;
    char *k = camp_key(x->c, user, name, &kl);
    undo_touch(x->m, &x->m->timers, k, kl);
    map_put(&x->m->timers, k, kl)->i = due;
    free(k);
    return 0;
}

static int h_timer_cancel(mktd_ctx *x, const char *user, const char *name)
{
    if (!name)
        return -EINVAL;
    size_t kl;
    char *k = camp_key(x->c, user, name, &kl);
    if (map_find(&x->m->timers, k, kl)) {
        undo_touch(x->m, &x->m->timers, k, kl);
        map_del(&x->m->timers, k, kl);
    }
    free(k);
    return 0;
}

static int timer_get(mktd_mock *m, struct camp *c, const char *user, const char *name, int64_t *due)
{
    if (!name)
        return -EINVAL;
    size_t kl;
    char *k = camp_key(c, user, name, &kl);
    struct ent *e = map_find(&m->timers, k, kl);
    free(k);
    if (!e)
        return -ENOENT;
    if (due)
        *due = e->i;
    return 0;
}

static int h_timer_get(mktd_ctx *x, const char *user, const char *name, int64_t *due)
{
    return timer_get(x->m, x->c, user, name, due);
}

/* ---- host API: unique keys, randomness ---- */

static int h_unique_claim(mktd_ctx *x, const char *ns, const char *key)
{
    if (!ns || !key)
        return -EINVAL;
    size_t kl;
    char *k = ns_key(ns, key, &kl);
    if (map_find(&x->m->uniques, k, kl)) {
        free(k);
        return -EEXIST;
    }
    undo_touch(x->m, &x->m->uniques, k, kl);
    ent_set_v(map_put(&x->m->uniques, k, kl), x->c->id, strlen(x->c->id));
    free(k);
    return 0;
}

static int h_unique_owner(mktd_ctx *x, const char *ns, const char *key, const char **campaign)
{
    if (!ns || !key)
        return -EINVAL;
    size_t kl;
    char *k = ns_key(ns, key, &kl);
    struct ent *e = map_find(&x->m->uniques, k, kl);
    free(k);
    if (!e)
        return -ENOENT;
    if (campaign)
        *campaign = ctx_strndup(x, e->v, e->vlen);
    return 0;
}

static int h_random_bytes(void *buf, size_t len)
{
    unsigned char *p = buf;
    while (len) {
        ssize_t r = getrandom(p, len, 0);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += r;
        len -= (size_t)r;
    }
    return 0;
}

/* ABI 1.1, minimal for now: no dry runs; gauges are accepted, not kept. */
static int h_is_dry(mktd_ctx *ctx)
{
    (void)ctx;
    return 0;
}

static int h_gauge_set(mktd_ctx *ctx, const char *name, int64_t value)
{
    (void)value;
    return ctx && name && *name ? 0 : -EINVAL;
}

/* ---- the host table ---- */

static mktd_host host_table;
static int host_ready;

const mktd_host *mktd_mock_host(void)
{
    if (!host_ready) {
        hostcommon_fill(&host_table);
        host_table.abi_version = MKTD_ABI_VERSION;
        host_table.struct_size = sizeof host_table;
        host_table.campaign_id = h_campaign_id;
        host_table.campaign_active = h_campaign_active;
        host_table.campaign_loaded = h_campaign_loaded;
        host_table.first_of_plugin = h_first_of_plugin;
        host_table.emit = h_emit;
        host_table.now = h_now;
        host_table.profile = h_profile;
        host_table.users_foreach = h_users_foreach;
        host_table.state_get = h_state_get;
        host_table.state_put = h_state_put;
        host_table.state_del = h_state_del;
        host_table.counter_add = h_counter_add;
        host_table.counter_get = h_counter_get;
        host_table.timer_set = h_timer_set;
        host_table.timer_cancel = h_timer_cancel;
        host_table.timer_get = h_timer_get;
        host_table.unique_claim = h_unique_claim;
        host_table.unique_owner = h_unique_owner;
        host_table.random_bytes = h_random_bytes;
        host_table.is_dry = h_is_dry;
        host_table.gauge_set = h_gauge_set;
        host_ready = 1;
    }
    return &host_table;
}

/* ---- lifetime ---- */

mktd_mock *mktd_mock_new(void)
{
    mktd_mock_host();
    mktd_mock *m = xcalloc(1, sizeof *m);
    m->auto_profile = 1;
    return m;
}

static void camp_free(struct camp *c)
{
    if (!c)
        return;
    if (c->inited && c->desc.destroy)
        c->desc.destroy(c->data);
    ydoc_free(c->doc);
    for (size_t i = 0; i < c->n_when; i++)
        free(c->when[i]);
    free(c->when);
    free(c->id);
    free(c);
}

void mktd_mock_free(mktd_mock *m)
{
    if (!m)
        return;
    for (size_t i = m->n_camps; i-- > 0;)
        camp_free(m->camps[i]);
    free(m->camps);
    map_free(&m->state);
    map_free(&m->counters);
    map_free(&m->timers);
    map_free(&m->uniques);
    map_free(&m->profiles);
    for (size_t i = 0; i < m->n_acts; i++)
        action_clear(&m->acts[i]);
    free(m->acts);
    txn_drop_log(m);
    free(m->undo);
    errs_free(&m->errs);
    free(m->errs_text);
    free(m->dump);
    free(m);
}

/* ---- campaigns ---- */

int mktd_mock_add(mktd_mock *m, mktd_plugin_entry_fn entry, const char *id, const char *params_yaml)
{
    errs_free(&m->errs);
    free(m->errs_text);
    m->errs_text = NULL;
    if (!id || !*id) {
        errs_add(&m->errs, "campaign: an id is required");
        return -EINVAL;
    }
    if (camp_find(m, id)) {
        errs_add(&m->errs, "campaign %s: duplicate id", id);
        return -EINVAL;
    }
    if (!entry) {
        errs_add(&m->errs, "campaign %s: no plugin entry", id);
        return -EINVAL;
    }
    const mktd_plugin *p = entry(mktd_mock_host());
    if (!p) {
        errs_add(&m->errs, "campaign %s: the plugin's entry returned no descriptor", id);
        return -EINVAL;
    }
    if (MKTD_ABI_MAJOR_OF(p->abi_version) != MKTD_ABI_MAJOR ||
        MKTD_ABI_MINOR_OF(p->abi_version) > MKTD_ABI_MINOR) {
        errs_add(&m->errs, "campaign %s: plugin %s is built for ABI %u.%u, the host has %u.%u", id,
                 p->name ? p->name : "?", MKTD_ABI_MAJOR_OF(p->abi_version),
                 MKTD_ABI_MINOR_OF(p->abi_version), (unsigned)MKTD_ABI_MAJOR,
                 (unsigned)MKTD_ABI_MINOR);
        return -EINVAL;
    }

    struct camp *c = xcalloc(1, sizeof *c);
    size_t sz = p->struct_size < sizeof c->desc ? p->struct_size : sizeof c->desc;
    memcpy(&c->desc, p, sz);
    c->id = xstrdup(id);
    c->idx = m->n_camps;
    c->enabled = 1;
    c->starts = INT64_MIN;
    c->ends = INT64_MAX;

    const struct ynode *params = NULL;
    if (params_yaml) {
        c->doc = ydoc_load_string("params", params_yaml, strlen(params_yaml), &m->errs);
        if (!c->doc) {
            if (!m->errs.n)
                errs_add(&m->errs, "params: cannot be read");
            camp_free(c);
            return -EINVAL;
        }
        params = c->doc->root;
        if (params && params->kind != Y_MAP) {
            yerr(&m->errs, params, "params must be a map");
            camp_free(c);
            return -EINVAL;
        }
    }

    /* In the list during init, for first_of_plugin and campaign_loaded. */
    m->camps = xrealloc(m->camps, (m->n_camps + 1) * sizeof *m->camps);
    m->camps[m->n_camps++] = c;

    int rc = 0;
    if (c->desc.init) {
        mktd_ctx x;
        ctx_init(&x, m, c, m->now);
        x.base.errs = &m->errs;
        /* Errors at a node read "params:LINE:COL: message"; without params,
         * "campaign ID: message". */
        if (params)
            x.base.campaign_id = NULL;
        x.can_act = 0;
        void *data = NULL;
        rc = c->desc.init(&x, (const mktd_node *)params, &data);
        ctx_end(&x);
        if (rc >= 0) {
            c->data = data;
            c->inited = 1;
        }
        if (rc >= 0 && m->errs.n)
            rc = -EINVAL;
        if (rc < 0 && !m->errs.n)
            errs_add(&m->errs, "campaign %s: plugin %s failed to start (%s)", id,
                     c->desc.name ? c->desc.name : "?", strerror(-rc));
    } else {
        c->inited = 1;
    }
    if (rc < 0) {
        m->n_camps--;
        camp_free(c);
        return -EINVAL;
    }
    return 0;
}

const char *mktd_mock_errors(mktd_mock *m)
{
    free(m->errs_text);
    m->errs_text = errs_join(&m->errs);
    return m->errs_text ? m->errs_text : "";
}

static struct camp *camp_or_warn(mktd_mock *m, const char *id)
{
    struct camp *c = camp_find(m, id);
    if (!c)
        fprintf(stderr, "mktd mock: no campaign '%s'\n", id ? id : "(null)");
    return c;
}

void mktd_mock_set_enabled(mktd_mock *m, const char *id, int enabled)
{
    struct camp *c = camp_or_warn(m, id);
    if (c)
        c->enabled = !!enabled;
}

void mktd_mock_set_window(mktd_mock *m, const char *id, int64_t starts, int64_t ends)
{
    struct camp *c = camp_or_warn(m, id);
    if (c) {
        c->starts = starts;
        c->ends = ends;
    }
}

void mktd_mock_set_when(mktd_mock *m, const char *id, const char *types)
{
    struct camp *c = camp_or_warn(m, id);
    if (!c)
        return;
    for (size_t i = 0; i < c->n_when; i++)
        free(c->when[i]);
    free(c->when);
    c->when = NULL;
    c->n_when = 0;
    if (!types)
        return;
    c->when = xcalloc(1, sizeof *c->when);
    const char *s = types;
    for (;;) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        const char *a = s, *b = s + n;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b > a) {
            c->when = xrealloc(c->when, (c->n_when + 1) * sizeof *c->when);
            c->when[c->n_when++] = xstrndup(a, (size_t)(b - a));
        }
        if (!e)
            break;
        s = e + 1;
    }
}

/* ---- playing ---- */

/* Delivers the internal events in q (from q->head on), breadth-first. */
static int run_queue(mktd_mock *m, struct queue *q, int64_t now, const char *event_id)
{
    while (q->head < q->n) {
        struct pending p = q->q[q->head++];
        const struct action *a = &m->acts[p.act];
        /* Copies: the action array may move while callbacks emit. */
        char *type = xstrdup(a->pub.kind), *user = xstrdup(a->pub.user);
        const char *source = a->pub.campaign;
        json_t *props = json_incref(a->props);
        mktd_event ev = {.id = NULL,
                         .type = type,
                         .user = user,
                         .ts = a->pub.ts,
                         .depth = p.depth,
                         .source = source,
                         .priv = props};
        int rc = 0;
        for (size_t i = 0; i < m->n_camps && rc >= 0; i++) {
            struct camp *c = m->camps[i];
            if (c->id == source || !c->desc.on_event)
                continue;
            unsigned flags = 0;
            if (camp_active(c, ev.ts)) {
                flags |= MKTD_F_ACTIVE;
                if (camp_matches(c, ev.type))
                    flags |= MKTD_F_MATCH;
            }
            mktd_ctx x;
            ctx_init(&x, m, c, now);
            x.event_id = event_id;
            x.depth = p.depth;
            x.queue = q;
            rc = c->desc.on_event(&x, c->data, &ev, flags);
            ctx_end(&x);
        }
        json_decref(props);
        free(type);
        free(user);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static void queue_free(struct queue *q)
{
    free(q->q);
    memset(q, 0, sizeof *q);
}

/* The next timer due at or before limit: by due, campaign, user, name. */
static struct ent *next_timer(mktd_mock *m, int64_t limit)
{
    struct ent *best = NULL;
    size_t bidx = 0;
    const char *buser = NULL, *bname = NULL;
    for (size_t i = 0; i < m->timers.nb; i++) {
        for (struct ent *e = m->timers.b[i]; e; e = e->next) {
            if (e->i > limit)
                continue;
            size_t idx;
            const char *user, *name;
            camp_key_parts(e, &idx, &user, &name);
            int better;
            if (!best || e->i != best->i) {
                better = !best || e->i < best->i;
            } else if (idx != bidx) {
                better = idx < bidx;
            } else if (!user != !buser) {
                better = !user;
            } else {
                int r = user ? strcmp(user, buser) : 0;
                better = r < 0 || (r == 0 && strcmp(name, bname) < 0);
            }
            if (better) {
                best = e;
                bidx = idx;
                buser = user;
                bname = name;
            }
        }
    }
    return best;
}

/* Fires every timer due at or before limit, each followed by its chain. */
static int fire_timers(mktd_mock *m, int64_t limit)
{
    for (long fired = 0;; fired++) {
        struct ent *e = next_timer(m, limit);
        if (!e)
            return 0;
        if (fired >= MOCK_MAX_FIRINGS)
            return -ELOOP;
        size_t idx;
        const char *u, *n;
        camp_key_parts(e, &idx, &u, &n);
        char *user = u ? xstrdup(u) : NULL, *name = xstrdup(n);
        int64_t due = e->i;
        undo_touch(m, &m->timers, e->k, e->klen);
        map_del(&m->timers, e->k, e->klen);

        int rc = 0;
        struct camp *c = idx < m->n_camps ? m->camps[idx] : NULL;
        if (c && c->desc.on_timer) {
            struct queue q = {0};
            mktd_ctx x;
            ctx_init(&x, m, c, due);
            x.queue = &q;
            rc = c->desc.on_timer(&x, c->data, user, name, due,
                                  camp_active(c, due) ? MKTD_F_ACTIVE : 0);
            ctx_end(&x);
            if (rc >= 0)
                rc = run_queue(m, &q, due, NULL);
            queue_free(&q);
        }
        free(user);
        free(name);
        if (rc < 0)
            return rc;
    }
}

static int str_ok(json_t *v, size_t max)
{
    return json_is_string(v) && json_string_length(v) >= 1 && json_string_length(v) <= max &&
           strlen(json_string_value(v)) == json_string_length(v);
}

/* The props the built-in event types need (spec section 1). */
static int check_builtin(const char *type, json_t *props)
{
    json_t *v;
#define PROP(k) ((v = props ? json_object_get(props, k) : NULL) && !json_is_null(v) ? v : NULL)
    if (strcmp(type, "user.signup") == 0) {
        if (PROP("referrer") && !str_ok(v, 128))
            return -EINVAL;
    } else if (strcmp(type, "order.paid") == 0) {
        if (!PROP("order_id") || !str_ok(v, 128))
            return -EINVAL;
        if (!PROP("amount") || !json_is_integer(v) || json_integer_value(v) < 0)
            return -EINVAL;
    } else if (strcmp(type, "order.refunded") == 0) {
        if (!PROP("order_id") || !str_ok(v, 128))
            return -EINVAL;
        if (PROP("amount") && (!json_is_integer(v) || json_integer_value(v) <= 0))
            return -EINVAL;
    } else if (strcmp(type, "coupon.used") == 0) {
        if (!PROP("code") || !str_ok(v, 128))
            return -EINVAL;
        if (PROP("order_id") && !str_ok(v, 128))
            return -EINVAL;
        if (PROP("amount") && (!json_is_integer(v) || json_integer_value(v) < 0))
            return -EINVAL;
    }
#undef PROP
    return 0;
}

static void profile_update(mktd_mock *m, const char *user, const char *type, int64_t ts,
                           json_t *props)
{
    mktd_profile p;
    if (profile_get(m, user, &p) < 0) {
        memset(&p, 0, sizeof p);
        p.first_seen = p.last_seen = ts;
    }
    p.events++;
    if (strcmp(type, "order.paid") == 0) {
        json_t *a = props ? json_object_get(props, "amount") : NULL;
        p.orders++;
        if (json_is_integer(a))
            p.spent = sat_add(p.spent, json_integer_value(a));
    }
    if (ts < p.first_seen)
        p.first_seen = ts;
    if (ts > p.last_seen)
        p.last_seen = ts;
    profile_put(m, user, &p);
}

int mktd_mock_event(mktd_mock *m, const char *json_line)
{
    if (!json_line)
        return -EINVAL;
    json_error_t jerr;
    json_t *root = json_loads(json_line, JSON_REJECT_DUPLICATES, &jerr);
    if (!root || !json_is_object(root)) {
        if (!root)
            mock_note("bad event line: %s", jerr.text);
        json_decref(root);
        return -EINVAL;
    }
    json_t *jid = json_object_get(root, "id"), *jtype = json_object_get(root, "type");
    json_t *juser = json_object_get(root, "user"), *jts = json_object_get(root, "ts");
    json_t *props = json_object_get(root, "props");
    int64_t ts = m->now;
    int bad = 0;
    if (jid && !json_is_null(jid) && !str_ok(jid, 128))
        bad = 1;
    if (!str_ok(jtype, 64) || !str_ok(juser, 128))
        bad = 1;
    if (jts && !json_is_null(jts)) {
        if (json_is_integer(jts) && json_integer_value(jts) >= 0)
            ts = json_integer_value(jts);
        else if (!json_is_string(jts) ||
                 rfc3339_parse(json_string_value(jts), json_string_length(jts), &ts) < 0 || ts < 0)
            bad = 1;
    }
    if (props && json_is_null(props))
        props = NULL;
    if (props && !json_is_object(props))
        bad = 1;
    if (!bad && check_builtin(json_string_value(jtype), props) < 0)
        bad = 1;
    if (bad) {
        mock_note("invalid event: %s", json_line);
        json_decref(root);
        return -EINVAL;
    }

    char idbuf[32];
    const char *id;
    if (jid && !json_is_null(jid)) {
        id = json_string_value(jid);
    } else {
        snprintf(idbuf, sizeof idbuf, "mock-%" PRIu64, ++m->serial);
        id = idbuf;
    }
    const char *type = json_string_value(jtype), *user = json_string_value(juser);

    struct txn t;
    txn_begin(m, &t);
    int64_t now = ts > m->now ? ts : m->now;
    int rc = fire_timers(m, now);
    if (rc >= 0) {
        m->now = now;
        if (m->auto_profile)
            profile_update(m, user, type, ts, props);
        mktd_event ev = {.id = id,
                         .type = type,
                         .user = user,
                         .ts = ts,
                         .depth = 0,
                         .source = NULL,
                         .priv = props};
        struct queue q = {0};
        for (size_t i = 0; i < m->n_camps && rc >= 0; i++) {
            struct camp *c = m->camps[i];
            if (!c->desc.on_event)
                continue;
            unsigned flags = 0;
            if (camp_active(c, ts)) {
                flags |= MKTD_F_ACTIVE;
                if (camp_matches(c, type))
                    flags |= MKTD_F_MATCH;
            }
            mktd_ctx x;
            ctx_init(&x, m, c, now);
            x.event_id = id;
            x.queue = &q;
            rc = c->desc.on_event(&x, c->data, &ev, flags);
            ctx_end(&x);
        }
        if (rc >= 0)
            rc = run_queue(m, &q, now, id);
        queue_free(&q);
    }
    if (rc < 0)
        txn_rollback(m, &t);
    else
        txn_commit(m);
    json_decref(root);
    return rc < 0 ? rc : 0;
}

int mktd_mock_advance(mktd_mock *m, int64_t until)
{
    int64_t limit = until > m->now ? until : m->now;
    struct txn t;
    txn_begin(m, &t);
    int rc = fire_timers(m, limit);
    if (rc < 0) {
        txn_rollback(m, &t);
        return rc;
    }
    m->now = limit;
    txn_commit(m);
    return 0;
}

int mktd_mock_load(mktd_mock *m)
{
    struct txn t;
    txn_begin(m, &t);
    int rc = 0;
    for (size_t i = 0; i < m->n_camps && rc >= 0; i++) {
        struct camp *c = m->camps[i];
        if (!c->desc.on_load)
            continue;
        struct queue q = {0};
        mktd_ctx x;
        ctx_init(&x, m, c, m->now);
        x.queue = &q;
        rc = c->desc.on_load(&x, c->data, !c->loaded);
        ctx_end(&x);
        if (rc >= 0)
            rc = run_queue(m, &q, m->now, NULL);
        queue_free(&q);
    }
    if (rc < 0) {
        txn_rollback(m, &t);
        return rc;
    }
    txn_commit(m);
    for (size_t i = 0; i < m->n_camps; i++)
        m->camps[i]->loaded = 1;
    return 0;
}

int64_t mktd_mock_now(mktd_mock *m)
{
    return m->now;
}

void mktd_mock_set_now(mktd_mock *m, int64_t now)
{
    m->now = now;
}

void mktd_mock_auto_profile(mktd_mock *m, int on)
{
    m->auto_profile = !!on;
}

void mktd_mock_set_profile(mktd_mock *m, const char *user, const mktd_profile *p)
{
    if (!user)
        return;
    if (!p) {
        map_del(&m->profiles, user, strlen(user));
        return;
    }
    profile_put(m, user, p);
}

/* ---- looking at the results ---- */

size_t mktd_mock_count(mktd_mock *m)
{
    return m->n_acts;
}

const mktd_mock_action *mktd_mock_action_at(mktd_mock *m, size_t i)
{
    return i < m->n_acts ? &m->acts[i].pub : NULL;
}

const char *mktd_mock_dump(mktd_mock *m, size_t from)
{
    struct sbuf b = {0};
    sb_str(&b, "");
    for (size_t i = from; i < m->n_acts; i++)
        sb_fmt(&b, "%s %s %s\n", m->acts[i].pub.kind, m->acts[i].pub.user, m->acts[i].pub.payload);
    free(m->dump);
    m->dump = b.s;
    return m->dump;
}

void mktd_mock_clear(mktd_mock *m)
{
    for (size_t i = 0; i < m->n_acts; i++)
        action_clear(&m->acts[i]);
    m->n_acts = 0;
}

int mktd_mock_timer(mktd_mock *m, const char *campaign, const char *user, const char *name,
                    int64_t *due)
{
    struct camp *c = camp_find(m, campaign);
    if (!c)
        return -ENOENT;
    return timer_get(m, c, user, name, due);
}

int64_t mktd_mock_counter(mktd_mock *m, const char *campaign, const char *user, const char *key)
{
    struct camp *c = camp_find(m, campaign);
    return c ? counter_get(m, c, user, key) : 0;
}

int mktd_mock_state(mktd_mock *m, const char *campaign, const char *user, const char *key,
                    const char **val, size_t *len)
{
    struct camp *c = camp_find(m, campaign);
    if (!c || !key)
        return -ENOENT;
    size_t kl;
    char *k = camp_key(c, user, key, &kl);
    struct ent *e = map_find(&m->state, k, kl);
    free(k);
    if (!e)
        return -ENOENT;
    if (val)
        *val = e->v;
    if (len)
        *len = e->vlen;
    return 0;
}
