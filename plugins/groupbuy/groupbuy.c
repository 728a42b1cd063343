/*
 * groupbuy — 拼团: a user opens a group for a product, others join it, and
 * when it reaches `size` members within `window` of its opening every member
 * gets `groupbuy.success`; when the window ends first, `groupbuy.expired`
 * (spec sections 16 and 18, "Plugins of section 16").
 *
 * What the campaign keeps, all through the host (see README.md, "State"):
 *   unique key   ns "groupbuy", key = the group id, owned by the campaign
 *                that opened it: a group id is never used twice in the
 *                database, and every campaign knows whose a group is
 *   state        campaign-wide "g:<group id>" = "<S> <open> <due> <n>
 *                <product>": S o(pen), s(ucceeded) or x (expired); open =
 *                the opening's ts; due = open + window (fixed at opening);
 *                n = members so far; product = JSON text, last (it may hold
 *                spaces)
 *                campaign-wide "m:<len>:<group id>:<user>" = "<k>" for each
 *                member of an open group, k = 1 for the opener, 2, 3... in
 *                order of joining; <len> is the group id's length in bytes,
 *                so that one group's prefix never matches another's keys.
 *                The member keys go when the group ends; its "g:" record
 *                stays for good (reasons for late joins).
 *   timer        campaign-wide "x:<group id>", due at open + window: the
 *                expiry
 *
 * Events: input events only (depth 0). `group.open` opens a group when the
 * campaign matches it (MKTD_F_MATCH: `when` is optional and chooses which
 * openings this campaign takes); `group.join` goes to the campaign that
 * owns the group whatever its `when` says (like a coupon's redemption), as
 * long as it is active. A join for a group that no campaign of the running
 * config opened is answered `unknown_group` by the first groupbuy campaign
 * in config order only (first_of_plugin), as coupon answers unknown codes.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/plugin.h>

#define GROUPBUY_NS "groupbuy"
#define GROUP_ID_MAX 128
#define KEY_MAX 512

static const mktd_host *host;

struct groupbuy {
    int64_t size;   /* 2..100 */
    int64_t window; /* ms, > 0 */
    int64_t reward; /* >= 0 */
};

/* A group's record ("g:<id>"). */
struct group {
    char status; /* 'o', 's' or 'x' */
    int64_t open;
    int64_t due;
    int64_t n;
    const char *product; /* JSON text; points into the state value */
};

/* One member, as read from the member keys. */
struct member {
    char *user;
    int64_t k;
};

struct members {
    struct member *v;
    size_t n, cap;
    size_t skip; /* bytes of key before the user: "m:<len>:<id>:" */
};

static int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* ---- init ---- */

static int gb_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    static const char *const allowed[] = {"size", "window", "reward", NULL};
    struct groupbuy *g;
    int rc = 0;

    *data = NULL;
    if (!params)
        return host->config_error(ctx, NULL, "groupbuy needs params (size and window)");
    if (host->node_kind(params) != MKTD_NODE_MAP)
        return host->config_error(ctx, params, "params must be a map");
    g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    if (host->check_keys(ctx, params, allowed) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, params, "size", 1, 0, 2, 100, &g->size) < 0)
        rc = -EINVAL;
    if (host->get_duration(ctx, params, "window", 1, 0, 1, INT64_MAX, &g->window) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, params, "reward", 0, 0, 0, INT64_MAX, &g->reward) < 0)
        rc = -EINVAL;
    if (rc < 0) {
        free(g);
        return rc;
    }
    *data = g;
    return 0;
}

static void gb_destroy(void *data)
{
    free(data);
}

/* ---- keys ---- */

static int fit(int n, size_t size)
{
    return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

static int group_key(char *buf, size_t size, const char *id)
{
    return fit(snprintf(buf, size, "g:%s", id), size);
}

static int timer_name(char *buf, size_t size, const char *id)
{
    return fit(snprintf(buf, size, "x:%s", id), size);
}

/* "m:<len>:<id>:" alone (user NULL), or with the user. */
static int member_key(char *buf, size_t size, const char *id, const char *user)
{
    return fit(snprintf(buf, size, "m:%zu:%s:%s", strlen(id), id, user ? user : ""), size);
}

/* ---- the group record ---- */

/* 0 and *g, -ENOENT, -EBADMSG for an unreadable record, or another error. */
static int group_get(mktd_ctx *ctx, const char *id, struct group *g)
{
    char key[KEY_MAX], st;
    const char *val = NULL;
    size_t len = 0;
    int used = 0, rc;

    if ((rc = group_key(key, sizeof key, id)) < 0)
        return rc;
    rc = host->state_get(ctx, NULL, key, &val, &len);
    if (rc < 0)
        return rc;
    if (!val ||
        sscanf(val, "%c %" SCNd64 " %" SCNd64 " %" SCNd64 "%n", &st, &g->open, &g->due, &g->n,
               &used) != 4 ||
        used <= 0 || (size_t)used >= len || val[used] != ' ' ||
        (st != 'o' && st != 's' && st != 'x'))
        return -EBADMSG;
    g->status = st;
    g->product = val + used + 1;
    return 0;
}

static int group_put(mktd_ctx *ctx, const char *id, const struct group *g)
{
    char key[KEY_MAX], head[96];
    size_t hl, pl = strlen(g->product);
    char *val;
    int rc;

    if ((rc = group_key(key, sizeof key, id)) < 0)
        return rc;
    snprintf(head, sizeof head, "%c %" PRId64 " %" PRId64 " %" PRId64 " ", g->status, g->open,
             g->due, g->n);
    hl = strlen(head);
    val = malloc(hl + pl);
    if (!val)
        return -ENOMEM;
    memcpy(val, head, hl);
    memcpy(val + hl, g->product, pl);
    rc = host->state_put(ctx, NULL, key, val, hl + pl);
    free(val);
    return rc;
}

/* ---- members ---- */

static void members_free(struct members *ms)
{
    for (size_t i = 0; i < ms->n; i++)
        free(ms->v[i].user);
    free(ms->v);
    ms->v = NULL;
    ms->n = ms->cap = 0;
}

static int collect_member(void *arg, const char *key, const char *val, size_t len)
{
    struct members *ms = arg;
    int64_t k = 0;
    (void)len;
    if (strlen(key) <= ms->skip || sscanf(val, "%" SCNd64, &k) != 1)
        return 0; /* not a member key of this shape: left alone */
    if (ms->n == ms->cap) {
        size_t cap = ms->cap ? ms->cap * 2 : 8;
        struct member *v = realloc(ms->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        ms->v = v;
        ms->cap = cap;
    }
    char *user = strdup(key + ms->skip);
    if (!user)
        return -ENOMEM;
    ms->v[ms->n].user = user;
    ms->v[ms->n].k = k;
    ms->n++;
    return 0;
}

static int by_join_order(const void *a, const void *b)
{
    const struct member *x = a, *y = b;
    if (x->k != y->k)
        return x->k < y->k ? -1 : 1;
    return strcmp(x->user, y->user);
}

/* The group's members in order of joining (the opener first). */
static int members_load(mktd_ctx *ctx, const char *id, struct members *ms)
{
    char prefix[KEY_MAX];
    int rc;

    memset(ms, 0, sizeof *ms);
    if ((rc = member_key(prefix, sizeof prefix, id, NULL)) < 0)
        return rc;
    ms->skip = strlen(prefix);
    rc = host->state_iter(ctx, NULL, prefix, collect_member, ms);
    if (rc < 0) {
        members_free(ms);
        return rc;
    }
    if (ms->n > 1)
        qsort(ms->v, ms->n, sizeof *ms->v, by_join_order);
    return 0;
}

/* Deletes the group's member keys (it has ended). */
static int members_drop(mktd_ctx *ctx, const char *id, const struct members *ms)
{
    char key[KEY_MAX];
    for (size_t i = 0; i < ms->n; i++) {
        int rc = member_key(key, sizeof key, id, ms->v[i].user);
        if (rc == 0)
            rc = host->state_del(ctx, NULL, key);
        if (rc < 0 && rc != -ENOENT)
            return rc;
    }
    return 0;
}

/* ---- actions ---- */

static int reject(mktd_ctx *ctx, const mktd_event *ev, const char *id, const char *reason)
{
    host->note(ctx, "group %s: %s rejected: %s", id, ev->type, reason);
    mktd_obj *o = host->obj_new(ctx);
    if (!o)
        return -ENOMEM;
    host->obj_str(o, "group_id", id);
    host->obj_str(o, "reason", reason);
    int rc = host->emit(ctx, "groupbuy.rejected", ev->user, o);
    if (rc == MKTD_CAPPED)
        host->note(ctx, "the rejection was capped");
    return rc == MKTD_CAPPED ? 0 : rc;
}

/* Ends a group: `kind` (groupbuy.success or .expired) for every member,
 * when `record`; the member keys go either way. */
static int finish(mktd_ctx *ctx, const struct groupbuy *p, const char *id, const struct group *g,
                  const char *kind, int record)
{
    struct members ms;
    int rc = members_load(ctx, id, &ms);
    if (rc < 0)
        return rc;
    for (size_t i = 0; record && i < ms.n; i++) {
        mktd_obj *o = host->obj_new(ctx);
        if (!o) {
            rc = -ENOMEM;
            break;
        }
        host->obj_str(o, "group_id", id);
        rc = host->obj_json(o, "product", g->product);
        if (rc < 0)
            break;
        host->obj_int(o, "members", g->n);
        if (strcmp(kind, "groupbuy.success") == 0)
            host->obj_int(o, "reward", p->reward);
        rc = host->emit(ctx, kind, ms.v[i].user, o);
        if (rc < 0)
            break;
        if (rc == MKTD_CAPPED) /* kept out for that member; the others go on */
            host->note(ctx, "%s for %s was capped", kind, ms.v[i].user);
        rc = 0;
    }
    if (rc == 0)
        rc = members_drop(ctx, id, &ms);
    members_free(&ms);
    return rc;
}

/* ---- events ---- */

/* The event's group_id: a string of 1..GROUP_ID_MAX bytes, else NULL (and
 * a note: such an event is ignored). */
static const char *group_id_of(mktd_ctx *ctx, const mktd_event *ev)
{
    mktd_value v;
    if (host->prop(ctx, ev, "group_id", &v) != MKTD_T_STRING || v.len < 1 || v.len > GROUP_ID_MAX) {
        host->note(ctx, "%s without a group_id of 1-%d bytes: ignored", ev->type, GROUP_ID_MAX);
        return NULL;
    }
    return v.s;
}

/* Who owns the group id: 0 and *owner, or -ENOENT, or an error. */
static int owner_of(mktd_ctx *ctx, const char *id, const char **owner)
{
    *owner = NULL;
    int rc = host->unique_owner(ctx, GROUPBUY_NS, id, owner);
    if (rc == 0 && !*owner)
        return -ENOENT;
    return rc;
}

static int is_self(mktd_ctx *ctx, const char *owner)
{
    const char *self = host->campaign_id(ctx);
    return owner && self && strcmp(owner, self) == 0;
}

static int on_open(mktd_ctx *ctx, const struct groupbuy *p, const mktd_event *ev, unsigned flags)
{
    const char *id = group_id_of(ctx, ev), *owner;
    struct group g;
    char key[KEY_MAX], tname[KEY_MAX];
    int rc;

    if (!id)
        return 0;
    rc = owner_of(ctx, id, &owner);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    if (rc == 0) {
        /* the id was seen before: its owner answers, or, when the owner is
         * gone from the config, the first groupbuy campaign */
        if (is_self(ctx, owner) ||
            (!host->campaign_loaded(ctx, owner) && host->first_of_plugin(ctx))) {
            if (!(flags & MKTD_F_ACTIVE)) {
                host->note(ctx, "group %s: inactive, the opening is not answered", id);
                return 0;
            }
            if (flags & MKTD_F_EXCLUDED) {
                host->note(ctx, "group %s: excluded by the campaign's group", id);
                return 0;
            }
            return reject(ctx, ev, id, "already_open");
        }
        host->note(ctx, "group %s belongs to campaign %s", id, owner);
        return 0;
    }
    if (flags & MKTD_F_EXCLUDED) {
        host->note(ctx, "group %s not opened: excluded by the campaign's group", id);
        return 0;
    }
    if (!(flags & MKTD_F_MATCH))
        return 0;

    if ((rc = group_key(key, sizeof key, id)) < 0 || (rc = timer_name(tname, sizeof tname, id)) < 0)
        return rc;
    /* a dry run claims too: the claim is undone with the rest of the run */
    rc = host->unique_claim(ctx, GROUPBUY_NS, id);
    if (rc < 0)
        return rc == -EEXIST ? -EAGAIN : rc; /* checked above */
    g.status = 'o';
    g.open = ev->ts;
    g.due = sat_add(ev->ts, p->window);
    g.n = 1;
    g.product = host->prop_json(ctx, ev, "product");
    if (!g.product)
        g.product = "null";
    if ((rc = group_put(ctx, id, &g)) < 0)
        return rc;
    if ((rc = member_key(key, sizeof key, id, ev->user)) < 0 ||
        (rc = host->state_put(ctx, NULL, key, "1", 1)) < 0)
        return rc;
    if ((rc = host->timer_campaign_set(ctx, tname, g.due)) < 0)
        return rc;
    host->note(ctx, "group %s opened, 1 of %" PRId64 ", until %" PRId64, id, p->size, g.due);
    return 0;
}

/* The group is full: success for every member, and the expiry goes. */
static int complete(mktd_ctx *ctx, const struct groupbuy *p, const char *id, struct group *g)
{
    char tname[KEY_MAX];
    int rc;

    g->status = 's';
    host->note(ctx, "group %s: full with %" PRId64 " members", id, g->n);
    if ((rc = group_put(ctx, id, g)) < 0 || (rc = timer_name(tname, sizeof tname, id)) < 0)
        return rc;
    rc = host->timer_campaign_cancel(ctx, tname);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    return finish(ctx, p, id, g, "groupbuy.success", 1);
}

static int join_own(mktd_ctx *ctx, const struct groupbuy *p, const mktd_event *ev, const char *id)
{
    struct group g;
    char key[KEY_MAX], num[24];
    int rc = group_get(ctx, id, &g);

    if (rc == -ENOENT || rc == -EBADMSG) {
        host->log(ctx, MKTD_LOG_WARN, "group %s is claimed but has no usable record", id);
        return reject(ctx, ev, id, "unknown_group");
    }
    if (rc < 0)
        return rc;
    if (ev->ts < g.open) /* the group did not exist yet at the join's time */
        return reject(ctx, ev, id, "unknown_group");
    if (ev->ts >= g.due || g.status == 'x')
        return reject(ctx, ev, id, "expired");
    if (g.status == 'o' && g.n >= p->size) {
        /* `size` was lowered by a reload: the group has enough members
         * already; it succeeds now, without the joiner */
        if ((rc = complete(ctx, p, id, &g)) < 0)
            return rc;
    }
    if (g.status != 'o')
        return reject(ctx, ev, id, "full");
    if ((rc = member_key(key, sizeof key, id, ev->user)) < 0)
        return rc;
    rc = host->state_get(ctx, NULL, key, NULL, NULL);
    if (rc == 0)
        return reject(ctx, ev, id, "already_member");
    if (rc != -ENOENT)
        return rc;

    g.n++;
    snprintf(num, sizeof num, "%" PRId64, g.n);
    if ((rc = host->state_put(ctx, NULL, key, num, strlen(num))) < 0)
        return rc;
    if (g.n < p->size) {
        host->note(ctx, "group %s: %" PRId64 " of %" PRId64, id, g.n, p->size);
        return group_put(ctx, id, &g);
    }
    return complete(ctx, p, id, &g);
}

static int on_join(mktd_ctx *ctx, const struct groupbuy *p, const mktd_event *ev, unsigned flags)
{
    const char *id = group_id_of(ctx, ev), *owner;
    int rc;

    if (!id)
        return 0;
    rc = owner_of(ctx, id, &owner);
    if (rc < 0 && rc != -ENOENT)
        return rc;
    if (rc == 0 && is_self(ctx, owner)) {
        if (!(flags & MKTD_F_ACTIVE)) {
            host->note(ctx, "group %s: inactive, the join is not answered", id);
            return 0;
        }
        return join_own(ctx, p, ev, id);
    }
    if (rc == 0 && host->campaign_loaded(ctx, owner)) {
        host->note(ctx, "group %s belongs to campaign %s", id, owner);
        return 0;
    }
    /* no campaign of the running config opened it: the first answers */
    if (!host->first_of_plugin(ctx))
        return 0;
    return reject(ctx, ev, id, "unknown_group");
}

static int gb_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    const struct groupbuy *p = data;

    if (!p || !ev || ev->depth != 0 || !ev->type || !ev->user)
        return 0;
    if (strcmp(ev->type, "group.open") == 0)
        return on_open(ctx, p, ev, flags);
    if (strcmp(ev->type, "group.join") == 0)
        return on_join(ctx, p, ev, flags);
    return 0;
}

static int gb_on_timer(mktd_ctx *ctx, void *data, const char *user, const char *name, int64_t due,
                       unsigned flags)
{
    const struct groupbuy *p = data;
    struct group g;
    int rc;

    (void)due;
    if (!p || user || strncmp(name, "x:", 2) != 0)
        return 0;
    const char *id = name + 2;
    rc = group_get(ctx, id, &g);
    if (rc == -ENOENT || rc == -EBADMSG) {
        host->log(ctx, MKTD_LOG_WARN, "expiry of group %s, which has no usable record", id);
        return 0;
    }
    if (rc < 0)
        return rc;
    if (g.status != 'o') {
        host->note(ctx, "group %s has already ended", id);
        return 0;
    }
    g.status = 'x';
    if ((rc = group_put(ctx, id, &g)) < 0)
        return rc;
    if (!(flags & MKTD_F_ACTIVE))
        host->note(ctx, "group %s expired while the campaign was inactive: nothing recorded", id);
    else
        host->note(ctx, "group %s expired with %" PRId64 " of %" PRId64, id, g.n, p->size);
    return finish(ctx, p, id, &g, "groupbuy.expired", (flags & MKTD_F_ACTIVE) != 0);
}

/* ---- forget ---- */

struct forget_arg {
    mktd_ctx *ctx;
    const char *user, *pseudonym;
};

/* A member key "m:<len>:<id>:<user>" naming the forgotten user is moved to
 * the pseudonym, keeping its place in the joining order. */
static int forget_member(void *arg, const char *key, const char *val, size_t len)
{
    struct forget_arg *f = arg;
    char *end = NULL, nkey[KEY_MAX];
    unsigned long long idlen = strtoull(key + 2, &end, 10);

    if (!end || *end != ':' || strlen(end + 1) < idlen + 1 || end[1 + idlen] != ':')
        return 0;
    const char *user = end + 2 + idlen;
    if (strcmp(user, f->user) != 0)
        return 0;
    int n = snprintf(nkey, sizeof nkey, "%.*s%s", (int)(user - key), key, f->pseudonym);
    if (n < 0 || (size_t)n >= sizeof nkey)
        return -ENAMETOOLONG;
    int rc = host->state_put(f->ctx, NULL, nkey, val, len);
    if (rc == 0)
        rc = host->state_del(f->ctx, NULL, key);
    return rc;
}

static int gb_on_forget(mktd_ctx *ctx, void *data, const char *user, const char *pseudonym)
{
    struct forget_arg f = {ctx, user, pseudonym};
    (void)data;
    if (!user || !pseudonym || !*user || !*pseudonym)
        return -EINVAL;
    return host->state_iter(ctx, NULL, "m:", forget_member, &f);
}

static const mktd_plugin groupbuy_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "groupbuy",
    .version = "1.0.0",
    .flags = 0, /* `when` is optional: it chooses the openings */
    .init = gb_init,
    .destroy = gb_destroy,
    .on_event = gb_on_event,
    .on_timer = gb_on_timer,
    .on_load = NULL,
    .on_forget = gb_on_forget,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *h)
{
    host = h;
    return &groupbuy_plugin;
}
