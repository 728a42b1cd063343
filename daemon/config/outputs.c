/* The config's `outputs:` (spec section 15), checked key by key. */
#define _GNU_SOURCE
#include "config/outputs.h"

#include "config/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct octx {
    struct errs *errs;
    int nerr;
    char prefix[96]; /* "output <id>: " or "output #N: " */
};

static void oerr(struct octx *c, const struct ynode *n, const char *fmt, ...) MKTD_PRINTF_FMT(3, 4);

static void oerr(struct octx *c, const struct ynode *n, const char *fmt, ...)
{
    char *msg;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    va_end(ap);
    c->nerr++;
    yerr(c->errs, n, "%s%s", c->prefix, msg);
    free(msg);
}

static int is_null(const struct ynode *n)
{
    return !n || (n->kind == Y_SCALAR && ynode_resolve(n, NULL, NULL, NULL) == YS_NULL);
}

static const struct ynode *get(const struct ynode *map, const char *key)
{
    const struct ynode *v = ynode_get(map, key);
    return is_null(v) ? NULL : v;
}

static int id_ok(const char *s, size_t n)
{
    if (n < 1 || n > 64 || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

/* A non-empty string without NUL, malloc'd. */
static char *want_string(struct octx *c, const struct ynode *n, const char *name)
{
    if (n->kind != Y_SCALAR || n->len == 0 || strlen(n->str) != n->len) {
        oerr(c, n, "%s: must be a non-empty string", name);
        return NULL;
    }
    return xstrndup(n->str, n->len);
}

/* A list of strings (a single string counts as a list of one). */
static void want_strings(struct octx *c, const struct ynode *n, const char *name, char ***out,
                         size_t *nout)
{
    const struct ynode *const *items = &n;
    size_t count = 1;
    if (n->kind == Y_SEQ) {
        items = (const struct ynode *const *)n->items;
        count = n->n;
        if (count == 0) {
            oerr(c, n, "%s: must name at least one (leave it out to take all)", name);
            return;
        }
    } else if (n->kind != Y_SCALAR) {
        oerr(c, n, "%s: must be a list of strings", name);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        char *s = want_string(c, items[i], name);
        if (!s)
            continue;
        *out = xrealloc(*out, (*nout + 1) * sizeof(**out));
        (*out)[(*nout)++] = s;
    }
}

static void read_secret(struct octx *c, const struct ynode *n, struct output_cfg *o,
                        const char *dir)
{
    char why[1024];
    if (config_read_secret(o->secret_file, dir, &o->secret, &o->secret_len, why, sizeof(why)) < 0)
        oerr(c, n, "secret_file: %s", why);
}

static void parse_output(struct octx *c, const struct ynode *m, size_t idx, const char *dir,
                         int dir_real, struct output_cfg *all, size_t *nall)
{
    static const char *const keys[] = {"id",          "url",   "kinds",   "campaigns",
                                       "secret_file", "batch", "timeout", NULL};
    struct output_cfg *o = &all[(*nall)++];
    const struct ynode *n;

    memset(o, 0, sizeof(*o));
    o->batch = 100;
    o->timeout_ms = 5000;
    o->node = m;
    snprintf(c->prefix, sizeof(c->prefix), "output #%zu: ", idx + 1);
    if (m->kind != Y_MAP) {
        oerr(c, m, "must be a map {id, url, secret_file, ...}");
        return;
    }
    if (!(n = get(m, "id"))) {
        oerr(c, m, "missing required key 'id'");
    } else if (n->kind != Y_SCALAR || !id_ok(n->str, n->len)) {
        oerr(c, n, "id: must be 1-64 characters of [a-z0-9_-]");
    } else {
        for (size_t i = 0; i + 1 < *nall; i++) {
            if (all[i].id && strcmp(all[i].id, n->str) == 0) {
                const struct ynode *first = ynode_get(all[i].node, "id");
                oerr(c, n, "output id '%s' is used twice (first at line %d, column %d)", n->str,
                     first->line, first->col);
                break;
            }
        }
        o->id = xstrdup(n->str);
        snprintf(c->prefix, sizeof(c->prefix), "output %s: ", o->id);
    }
    c->nerr += ycheck_keys(c->errs, m, keys);

    if (!(n = get(m, "url"))) {
        oerr(c, m, "missing required key 'url'");
    } else if ((o->url = want_string(c, n, "url"))) {
        size_t skip = strncmp(o->url, "http://", 7) == 0    ? 7
                      : strncmp(o->url, "https://", 8) == 0 ? 8
                                                            : 0;
        int bad = !skip || !o->url[skip] || o->url[skip] == '/';
        for (const char *p = o->url; !bad && *p; p++)
            if ((unsigned char)*p <= ' ' || *p == 0x7f)
                bad = 1;
        if (bad) {
            oerr(c, n, "url: '%s' must be an http:// or https:// URL with a host", o->url);
            free(o->url);
            o->url = NULL;
        }
    }
    if ((n = get(m, "kinds")))
        want_strings(c, n, "kinds", &o->kinds, &o->n_kinds);
    if ((n = get(m, "campaigns")))
        want_strings(c, n, "campaigns", &o->campaigns, &o->n_campaigns);
    if (!(n = get(m, "secret_file"))) {
        oerr(c, m, "missing required key 'secret_file'");
    } else {
        char *p = want_string(c, n, "secret_file");
        if (p) {
            o->secret_file = config_resolve(dir, dir_real, p);
            free(p);
            read_secret(c, n, o, dir);
        }
    }
    if ((n = get(m, "batch"))) {
        int64_t v;
        if (n->kind == Y_SCALAR && ynode_resolve(n, &v, NULL, NULL) == YS_INT && v >= 1 &&
            v <= 10000)
            o->batch = (int)v;
        else
            oerr(c, n, "batch: must be an integer from 1 to 10000");
    }
    if ((n = get(m, "timeout"))) {
        int64_t ms;
        if (n->kind == Y_SCALAR && duration_parse(n->str, n->len, &ms) == 0 && ms > 0 &&
            ms <= 3600000)
            o->timeout_ms = ms;
        else
            oerr(c, n, "timeout: must be a duration from 1ms to 1h, like 500ms, 5s or 1m");
    }
}

int outputs_cfg_parse(const struct ynode *n, const char *dir, int dir_real, struct errs *errs,
                      struct output_cfg **out, size_t *nout)
{
    struct octx c = {.errs = errs};
    *out = NULL;
    *nout = 0;
    if (is_null(n))
        return 0;
    if (n->kind != Y_SEQ) {
        oerr(&c, n, "outputs: must be a list of outputs");
        return c.nerr;
    }
    *out = xcalloc(n->n ? n->n : 1, sizeof(**out));
    for (size_t i = 0; i < n->n; i++) {
        parse_output(&c, n->items[i], i, dir, dir_real, *out, nout);
        c.prefix[0] = 0;
    }
    return c.nerr;
}

static char **strv_dup(char *const *v, size_t n)
{
    char **d = v ? xcalloc(n ? n : 1, sizeof(*d)) : NULL;
    for (size_t i = 0; v && i < n; i++)
        d[i] = xstrdup(v[i]);
    return d;
}

struct output_cfg *outputs_cfg_dup(const struct output_cfg *o, size_t n)
{
    struct output_cfg *d = n ? xcalloc(n, sizeof(*d)) : NULL;
    for (size_t i = 0; i < n; i++) {
        d[i] = o[i];
        d[i].id = xstrdup(o[i].id);
        d[i].url = xstrdup(o[i].url);
        d[i].kinds = strv_dup(o[i].kinds, o[i].n_kinds);
        d[i].campaigns = strv_dup(o[i].campaigns, o[i].n_campaigns);
        d[i].secret_file = o[i].secret_file ? xstrdup(o[i].secret_file) : NULL;
        d[i].secret = o[i].secret ? xstrndup(o[i].secret, o[i].secret_len) : NULL;
        d[i].node = NULL;
    }
    return d;
}

void outputs_cfg_free(struct output_cfg *o, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(o[i].id);
        free(o[i].url);
        for (size_t k = 0; k < o[i].n_kinds; k++)
            free(o[i].kinds[k]);
        free(o[i].kinds);
        for (size_t k = 0; k < o[i].n_campaigns; k++)
            free(o[i].campaigns[k]);
        free(o[i].campaigns);
        free(o[i].secret_file);
        if (o[i].secret)
            memset(o[i].secret, 0, o[i].secret_len);
        free(o[i].secret);
    }
    free(o);
}
