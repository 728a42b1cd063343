/* Host API members that do not depend on where a plugin runs: config
 * nodes, event properties and payload objects. */
#define _GNU_SOURCE
#include "engine/hostcommon.h"

#include "engine/event.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BASE(ctx) ((struct ctx_base *)(void *)(ctx))
#define YN(n) ((const struct ynode *)(const void *)(n))
#define MN(n) ((const mktd_node *)(const void *)(n))

/* ---- logging and errors ---- */

static void vlog(struct ctx_base *b, int level, const char *fmt, va_list ap)
{
    if (b->logv) {
        b->logv(level, b->campaign_id, fmt, ap);
    } else {
        fprintf(stderr, "campaign %s: ", b->campaign_id ? b->campaign_id : "-");
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
    }
}

static void call_logv(struct ctx_base *b, int level, const char *fmt, ...) MKTD_PRINTF(3, 4);

static void call_logv(struct ctx_base *b, int level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(b, level, fmt, ap);
    va_end(ap);
}

static void h_log(mktd_ctx *ctx, int level, const char *fmt, ...)
{
    va_list ap;
    if (!ctx || !fmt)
        return;
    va_start(ap, fmt);
    vlog(BASE(ctx), level, fmt, ap);
    va_end(ap);
}

/* Records msg at node n (or the campaign's node). */
static int report(struct ctx_base *b, const struct ynode *n, const char *msg)
{
    const struct ynode *at = n ? n : b->campaign_node;
    const char *id = b->campaign_id;
    char *full;
    int r;
    if (at)
        r = id ? asprintf(&full, "%s:%d:%d: campaign %s: %s", at->file ? at->file : "?", at->line,
                          at->col, id, msg)
               : asprintf(&full, "%s:%d:%d: %s", at->file ? at->file : "?", at->line, at->col, msg);
    else
        r = id ? asprintf(&full, "campaign %s: %s", id, msg) : asprintf(&full, "%s", msg);
    if (r < 0)
        abort();
    if (b->errs)
        errs_add(b->errs, "%s", full);
    else
        call_logv(b, MKTD_LOG_ERROR, "%s", full);
    free(full);
    return -EINVAL;
}

static int verr(struct ctx_base *b, const struct ynode *n, const char *fmt, va_list ap)
{
    char *msg;
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    report(b, n, msg);
    free(msg);
    return -EINVAL;
}

static int err(struct ctx_base *b, const struct ynode *n, const char *fmt, ...) MKTD_PRINTF(3, 4);

static int err(struct ctx_base *b, const struct ynode *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    verr(b, n, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static int h_config_error(mktd_ctx *ctx, const mktd_node *at, const char *fmt, ...)
{
    va_list ap;
    if (!ctx)
        return -EINVAL;
    va_start(ap, fmt);
    verr(BASE(ctx), YN(at), fmt ? fmt : "invalid", ap);
    va_end(ap);
    return -EINVAL;
}

/* ---- nodes ---- */

static const mktd_node *h_node_get(const mktd_node *map, const char *key)
{
    return MN(ynode_get(YN(map), key));
}

static int h_node_kind(const mktd_node *n)
{
    return n ? (int)YN(n)->kind : 0;
}

static size_t h_node_len(const mktd_node *n)
{
    const struct ynode *y = YN(n);
    return y && (y->kind == Y_SEQ || y->kind == Y_MAP) ? y->n : 0;
}

static const mktd_node *h_node_at(const mktd_node *seq, size_t i)
{
    const struct ynode *y = YN(seq);
    return y && y->kind == Y_SEQ && i < y->n ? MN(y->items[i]) : NULL;
}

static const mktd_node *h_node_key_at(const mktd_node *map, size_t i)
{
    const struct ynode *y = YN(map);
    return y && y->kind == Y_MAP && i < y->n ? MN(y->keys[i]) : NULL;
}

static const mktd_node *h_node_value_at(const mktd_node *map, size_t i)
{
    const struct ynode *y = YN(map);
    return y && y->kind == Y_MAP && i < y->n ? MN(y->vals[i]) : NULL;
}

static int h_node_line(const mktd_node *n)
{
    return n ? YN(n)->line : 0;
}

static int h_node_col(const mktd_node *n)
{
    return n ? YN(n)->col : 0;
}

static int is_null(const struct ynode *n)
{
    return !n || (n->kind == Y_SCALAR && ynode_resolve(n, NULL, NULL, NULL) == YS_NULL);
}

static int h_check_keys(mktd_ctx *ctx, const mktd_node *map, const char *const *allowed)
{
    struct ctx_base *b = BASE(ctx);
    const struct ynode *m = YN(map);
    int refused = 0;
    if (!ctx || is_null(m) || !allowed)
        return 0;
    if (m->kind != Y_MAP)
        return err(b, m, "must be a map");
    char *msg;
    for (size_t i = 0; (msg = yunknown_key(m, allowed, &i)) != NULL; i++) {
        report(b, m->keys[i], msg);
        free(msg);
        refused++;
    }
    return refused ? -EINVAL : 0;
}

/* "key: " or "" for messages. */
static const char *pre(const char *key, char *buf, size_t len)
{
    if (!key)
        return "";
    snprintf(buf, len, "%s: ", key);
    return buf;
}

static void fmt_range_int(char *buf, size_t len, int64_t min, int64_t max)
{
    if (min == INT64_MIN && max == INT64_MAX)
        snprintf(buf, len, "an integer");
    else if (max == INT64_MAX)
        snprintf(buf, len, "an integer >= %lld", (long long)min);
    else if (min == INT64_MIN)
        snprintf(buf, len, "an integer <= %lld", (long long)max);
    else
        snprintf(buf, len, "an integer from %lld to %lld", (long long)min, (long long)max);
}

static void fmt_dur(char *buf, size_t len, int64_t ms)
{
    if (ms != 0 && ms % 86400000 == 0)
        snprintf(buf, len, "%lldd", (long long)(ms / 86400000));
    else if (ms != 0 && ms % 3600000 == 0)
        snprintf(buf, len, "%lldh", (long long)(ms / 3600000));
    else if (ms != 0 && ms % 60000 == 0)
        snprintf(buf, len, "%lldm", (long long)(ms / 60000));
    else if (ms % 1000 == 0)
        snprintf(buf, len, "%llds", (long long)(ms / 1000));
    else
        snprintf(buf, len, "%lldms", (long long)ms);
}

static void fmt_range_dur(char *buf, size_t len, int64_t min, int64_t max)
{
    char a[32], z[32];
    fmt_dur(a, sizeof(a), min);
    fmt_dur(z, sizeof(z), max);
    if (min <= 0 && max == INT64_MAX)
        snprintf(buf, len, "a duration like 90s, 15m, 12h or 7d");
    else if (max == INT64_MAX)
        snprintf(buf, len, "a duration of at least %s", a);
    else if (min <= 0)
        snprintf(buf, len, "a duration of at most %s", z);
    else
        snprintf(buf, len, "a duration from %s to %s", a, z);
}

static int n_int(struct ctx_base *b, const struct ynode *n, const char *key, int64_t min,
                 int64_t max, int64_t *out)
{
    char p[128], what[96];
    int64_t v;
    if (n && n->kind == Y_SCALAR && ynode_resolve(n, &v, NULL, NULL) == YS_INT && v >= min &&
        v <= max) {
        if (out)
            *out = v;
        return 0;
    }
    fmt_range_int(what, sizeof(what), min, max);
    if (n && n->kind == Y_SCALAR)
        return err(b, n, "%smust be %s (got '%s')", pre(key, p, sizeof(p)), what, n->str);
    return err(b, n, "%smust be %s", pre(key, p, sizeof(p)), what);
}

static int n_duration(struct ctx_base *b, const struct ynode *n, const char *key, int64_t min,
                      int64_t max, int64_t *out)
{
    char p[128], what[128];
    int64_t v;
    if (n && n->kind == Y_SCALAR && duration_parse(n->str, n->len, &v) == 0 && v >= min &&
        v <= max) {
        if (out)
            *out = v;
        return 0;
    }
    fmt_range_dur(what, sizeof(what), min, max);
    if (n && n->kind == Y_SCALAR)
        return err(b, n, "%smust be %s (got '%s')", pre(key, p, sizeof(p)), what, n->str);
    return err(b, n, "%smust be %s", pre(key, p, sizeof(p)), what);
}

static int n_bool(struct ctx_base *b, const struct ynode *n, const char *key, int *out)
{
    char p[128];
    int v;
    if (n && n->kind == Y_SCALAR && ynode_resolve(n, NULL, NULL, &v) == YS_BOOL) {
        if (out)
            *out = v;
        return 0;
    }
    return err(b, n, "%smust be true or false", pre(key, p, sizeof(p)));
}

/* Any scalar but null reads as its text; NUL inside is refused. */
static int n_str(struct ctx_base *b, const struct ynode *n, const char *key, const char **out)
{
    char p[128];
    if (n && n->kind == Y_SCALAR && !is_null(n)) {
        if (strlen(n->str) != n->len)
            return err(b, n, "%smust not contain NUL", pre(key, p, sizeof(p)));
        if (out)
            *out = n->str;
        return 0;
    }
    return err(b, n, "%smust be a string", pre(key, p, sizeof(p)));
}

static int h_node_int(mktd_ctx *ctx, const mktd_node *n, int64_t *out)
{
    return ctx ? n_int(BASE(ctx), YN(n), NULL, INT64_MIN, INT64_MAX, out) : -EINVAL;
}

static int h_node_str(mktd_ctx *ctx, const mktd_node *n, const char **out)
{
    return ctx ? n_str(BASE(ctx), YN(n), NULL, out) : -EINVAL;
}

static int h_node_bool(mktd_ctx *ctx, const mktd_node *n, int *out)
{
    return ctx ? n_bool(BASE(ctx), YN(n), NULL, out) : -EINVAL;
}

static int h_node_duration(mktd_ctx *ctx, const mktd_node *n, int64_t *out_ms)
{
    return ctx ? n_duration(BASE(ctx), YN(n), NULL, 0, INT64_MAX, out_ms) : -EINVAL;
}

static int h_node_json(mktd_ctx *ctx, const mktd_node *n, char **out)
{
    (void)ctx;
    if (!out)
        return -EINVAL;
    *out = ynode_to_json(YN(n));
    return 0;
}

/* The value of key in map, NULL when absent or null. */
static const struct ynode *lookup(const mktd_node *map, const char *key)
{
    const struct ynode *v = ynode_get(YN(map), key);
    return is_null(v) ? NULL : v;
}

static int missing(struct ctx_base *b, const mktd_node *map, const char *key)
{
    return err(b, YN(map), "missing required key '%s'", key);
}

/* The value under key, for the get_* accessors: 1 and *v when present; 0
 * when absent and not required (the caller's default stands); else the
 * error. */
static int get_value(mktd_ctx *ctx, const mktd_node *map, const char *key, int required,
                     const struct ynode **v)
{
    if (!ctx)
        return -EINVAL;
    *v = lookup(map, key);
    if (*v)
        return 1;
    return required ? missing(BASE(ctx), map, key) : 0;
}

static int h_get_int(mktd_ctx *ctx, const mktd_node *map, const char *key, int required,
                     int64_t def, int64_t min, int64_t max, int64_t *out)
{
    const struct ynode *v;
    if (out)
        *out = def;
    int rc = get_value(ctx, map, key, required, &v);
    return rc <= 0 ? rc : n_int(BASE(ctx), v, key, min, max, out);
}

static int h_get_duration(mktd_ctx *ctx, const mktd_node *map, const char *key, int required,
                          int64_t def_ms, int64_t min_ms, int64_t max_ms, int64_t *out_ms)
{
    const struct ynode *v;
    if (out_ms)
        *out_ms = def_ms;
    int rc = get_value(ctx, map, key, required, &v);
    return rc <= 0 ? rc : n_duration(BASE(ctx), v, key, min_ms, max_ms, out_ms);
}

static int h_get_bool(mktd_ctx *ctx, const mktd_node *map, const char *key, int required, int def,
                      int *out)
{
    const struct ynode *v;
    if (out)
        *out = def;
    int rc = get_value(ctx, map, key, required, &v);
    return rc <= 0 ? rc : n_bool(BASE(ctx), v, key, out);
}

static int h_get_str(mktd_ctx *ctx, const mktd_node *map, const char *key, int required,
                     const char *def, const char **out)
{
    const struct ynode *v;
    if (out)
        *out = def;
    int rc = get_value(ctx, map, key, required, &v);
    return rc <= 0 ? rc : n_str(BASE(ctx), v, key, out);
}

/* ---- event properties ---- */

static json_t *pool(struct ctx_base *b)
{
    if (!b->pool)
        b->pool = json_array();
    return b->pool;
}

static json_t *walk(const mktd_event *ev, const char *path)
{
    json_t *props = ev ? (json_t *)(void *)ev->priv : NULL;
    return path && *path ? props_path(props, path) : NULL;
}

static mktd_type h_prop(mktd_ctx *ctx, const mktd_event *ev, const char *path, mktd_value *out)
{
    mktd_value v;
    json_t *j = walk(ev, path);
    (void)ctx;
    memset(&v, 0, sizeof(v));
    if (!j) {
        v.type = MKTD_T_MISSING;
    } else if (json_is_boolean(j)) {
        v.type = MKTD_T_BOOL;
        v.b = json_is_true(j);
    } else if (json_is_integer(j)) {
        v.type = MKTD_T_INT;
        v.i = json_integer_value(j);
        v.d = (double)v.i;
    } else if (json_is_real(j)) {
        v.type = MKTD_T_DOUBLE;
        v.d = json_real_value(j);
    } else if (json_is_string(j)) {
        v.type = MKTD_T_STRING;
        v.s = json_string_value(j);
        v.len = json_string_length(j);
    } else if (json_is_array(j)) {
        v.type = MKTD_T_ARRAY;
        v.len = json_array_size(j);
    } else {
        v.type = MKTD_T_OBJECT;
        v.len = json_object_size(j);
    }
    if (out)
        *out = v;
    return v.type;
}

static const char *h_prop_json(mktd_ctx *ctx, const mktd_event *ev, const char *path)
{
    json_t *j = walk(ev, path), *s;
    char *text;
    if (!j || !ctx)
        return NULL;
    text = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    if (!text)
        return NULL;
    s = json_string(text);
    free(text);
    if (!s)
        return NULL;
    json_array_append_new(pool(BASE(ctx)), s);
    return json_string_value(s);
}

/* ---- payload objects ---- */

static mktd_obj *h_obj_new(mktd_ctx *ctx)
{
    json_t *o = json_object();
    if (!o)
        return NULL;
    if (ctx)
        json_array_append_new(pool(BASE(ctx)), o); /* the pool holds the only reference */
    return (mktd_obj *)(void *)o;
}

static void h_obj_str(mktd_obj *o, const char *key, const char *val)
{
    json_t *j = (json_t *)(void *)o;
    json_t *v;
    if (!json_is_object(j) || !key)
        return;
    v = val ? json_string(val) : json_null();
    if (!v) /* not UTF-8: the key stays, as null */
        v = json_null();
    json_object_set_new(j, key, v);
}

static void h_obj_int(mktd_obj *o, const char *key, int64_t val)
{
    json_t *j = (json_t *)(void *)o;
    if (!json_is_object(j) || !key)
        return;
    json_object_set_new(j, key, json_integer(val));
}

static int h_obj_json(mktd_obj *o, const char *key, const char *text)
{
    json_t *j = (json_t *)(void *)o;
    json_error_t e;
    json_t *v;
    if (!json_is_object(j) || !key || !text)
        return -EINVAL;
    v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!v)
        return -EINVAL;
    if (json_object_set_new(j, key, v) < 0)
        return -EINVAL;
    return 0;
}

json_t *hostcommon_obj_json(mktd_obj *o)
{
    json_t *j = (json_t *)(void *)o;
    if (!j)
        return json_object();
    return json_incref(j);
}

void ctx_base_reset(struct ctx_base *b)
{
    if (!b)
        return;
    json_decref(b->pool);
    b->pool = NULL;
    json_decref(b->notes);
    b->notes = NULL;
}

static void h_note(mktd_ctx *ctx, const char *fmt, ...);

void hostcommon_fill(mktd_host *h)
{
    h->log = h_log;
    h->note = h_note; /* ABI 1.1 */
    h->node_get = h_node_get;
    h->node_kind = h_node_kind;
    h->node_len = h_node_len;
    h->node_at = h_node_at;
    h->node_key_at = h_node_key_at;
    h->node_value_at = h_node_value_at;
    h->node_line = h_node_line;
    h->node_col = h_node_col;
    h->config_error = h_config_error;
    h->check_keys = h_check_keys;
    h->node_int = h_node_int;
    h->node_str = h_node_str;
    h->node_bool = h_node_bool;
    h->node_duration = h_node_duration;
    h->node_json = h_node_json;
    h->get_int = h_get_int;
    h->get_duration = h_get_duration;
    h->get_bool = h_get_bool;
    h->get_str = h_get_str;
    h->prop = h_prop;
    h->prop_json = h_prop_json;
    h->obj_new = h_obj_new;
    h->obj_str = h_obj_str;
    h->obj_int = h_obj_int;
    h->obj_json = h_obj_json;
}

/* ---- ABI 1.1 ---- */

/* A plugin's reason for a decision: counted always; formatted only when an
 * explanation collects it (b->notes) or the host's logger is at level
 * debug (it drops the line before formatting otherwise). */
static void h_note(mktd_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    if (!ctx || !fmt)
        return;
    struct ctx_base *b = BASE(ctx);
    b->n_notes++;
    if (!b->notes) {
        if (b->logv) {
            va_start(ap, fmt);
            b->logv(MKTD_LOG_DEBUG, b->campaign_id, fmt, ap);
            va_end(ap);
        }
        return;
    }
    char *s = NULL;
    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    json_t *j = json_string(s);
    json_array_append_new(b->notes, j ? j : json_string("(a note that is not UTF-8)"));
    if (b->logv)
        call_logv(b, MKTD_LOG_DEBUG, "%s", s);
    free(s);
}
