/* The daemon's config (spec section 2): schema checks over the YAML tree.
 *
 * Every problem is reported at its own node and checking goes on, so that
 * one run shows all of them. A value that is null (`key:`, `key: ~`) counts
 * as absent. */
#define _GNU_SOURCE
#include "config/config.h"

#include <ctype.h>
#include <errno.h>
#include <grp.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <mktd/plugin.h>

struct cctx {
    struct errs *errs;
    int nerr;
    const char *camp; /* "campaign <id>: " prefix, or "" */
};

static void cerr(struct cctx *c, const struct ynode *n, const char *fmt, ...) MKTD_PRINTF_FMT(3, 4);

static void cerr(struct cctx *c, const struct ynode *n, const char *fmt, ...)
{
    char *msg;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    va_end(ap);
    c->nerr++;
    yerr(c->errs, n, "%s%s", c->camp, msg);
    free(msg);
}

static int check_keys(struct cctx *c, const struct ynode *map, const char *const *allowed)
{
    int n = ycheck_keys(c->errs, map, allowed);
    c->nerr += n;
    return n;
}

static int is_null(const struct ynode *n)
{
    return !n || (n->kind == Y_SCALAR && ynode_resolve(n, NULL, NULL, NULL) == YS_NULL);
}

/* The value under key; NULL when absent or null. */
static const struct ynode *get(const struct ynode *map, const char *key)
{
    const struct ynode *v = ynode_get(map, key);
    return is_null(v) ? NULL : v;
}

/* A map, or NULL for absent/null; an error for anything else. */
static const struct ynode *want_map(struct cctx *c, const struct ynode *n, const char *name)
{
    if (is_null(n))
        return NULL;
    if (n->kind != Y_MAP) {
        cerr(c, n, "%s: must be a map", name);
        return NULL;
    }
    return n;
}

static int get_int_range(struct cctx *c, const struct ynode *n, const char *name, int64_t min,
                         int64_t max, int64_t *out)
{
    int64_t v;
    if (n->kind == Y_SCALAR && ynode_resolve(n, &v, NULL, NULL) == YS_INT && v >= min && v <= max) {
        *out = v;
        return 0;
    }
    cerr(c, n, "%s: must be an integer from %lld to %lld", name, (long long)min, (long long)max);
    return -1;
}

static void set_int(struct cctx *c, const struct ynode *map, const char *key, const char *name,
                    int64_t min, int64_t max, int *out)
{
    const struct ynode *n = get(map, key);
    int64_t v;
    if (n && get_int_range(c, n, name, min, max, &v) == 0)
        *out = (int)v;
}

static void set_int64(struct cctx *c, const struct ynode *map, const char *key, const char *name,
                      int64_t min, int64_t max, int64_t *out)
{
    const struct ynode *n = get(map, key);
    int64_t v;
    if (n && get_int_range(c, n, name, min, max, &v) == 0)
        *out = v;
}

/* A non-empty string without NUL; malloc'd into *out. */
static int get_string(struct cctx *c, const struct ynode *n, const char *name, char **out)
{
    if (n->kind != Y_SCALAR || is_null(n)) {
        cerr(c, n, "%s: must be a string", name);
        return -1;
    }
    if (n->len == 0 || strlen(n->str) != n->len) {
        cerr(c, n, "%s: must be a non-empty string without NUL", name);
        return -1;
    }
    *out = xstrndup(n->str, n->len);
    return 0;
}

/* One of the NULL-terminated names; returns its index or -1. */
static int get_enum(struct cctx *c, const struct ynode *n, const char *name,
                    const char *const *names)
{
    if (n->kind == Y_SCALAR) {
        for (int i = 0; names[i]; i++)
            if (strcmp(n->str, names[i]) == 0 && strlen(names[i]) == n->len)
                return i;
    }
    struct sbuf sb = {0};
    for (int i = 0; names[i]; i++) {
        if (i)
            sb_str(&sb, names[i + 1] ? ", " : " or ");
        sb_str(&sb, names[i]);
    }
    cerr(c, n, "%s: must be %s", name, sb.s);
    sb_free(&sb);
    return -1;
}

static int get_duration(struct cctx *c, const struct ynode *n, const char *name, int64_t *out)
{
    int64_t ms;
    if (n->kind == Y_SCALAR && duration_parse(n->str, n->len, &ms) == 0) {
        *out = ms;
        return 0;
    }
    cerr(c, n,
         "%s: must be a duration like 250ms, 90s, 15m, 12h or 7d (a plain integer is seconds)",
         name);
    return -1;
}

/* A size: an integer number of bytes, or a string like "64MB", "512KB",
 * "1GB" (powers of 1024), within [min, max]. */
static int get_size(struct cctx *c, const struct ynode *n, const char *name, int64_t min,
                    int64_t max, int64_t *out)
{
    int64_t v = -1;
    if (n->kind == Y_SCALAR && !is_null(n)) {
        const char *s = n->str;
        char *end;
        errno = 0;
        long long x = strtoll(s, &end, 10);
        int64_t mul = 0;
        if (end != s && errno == 0 && x >= 0) {
            if (*end == 0)
                mul = 1;
            else if (strcmp(end, "KB") == 0)
                mul = 1024;
            else if (strcmp(end, "MB") == 0)
                mul = 1024 * 1024;
            else if (strcmp(end, "GB") == 0)
                mul = 1024 * 1024 * 1024;
        }
        if (mul && x <= INT64_MAX / mul)
            v = (int64_t)x * mul;
    }
    if (v < min || v > max) {
        cerr(c, n, "%s: must be a size from %lld to %lld bytes, like 64MB, 512KB or 1GB", name,
             (long long)min, (long long)max);
        return -1;
    }
    *out = v;
    return 0;
}

static int get_bool(struct cctx *c, const struct ynode *n, const char *name, int *out)
{
    int b;
    if (n->kind == Y_SCALAR && ynode_resolve(n, NULL, NULL, &b) == YS_BOOL) {
        *out = b;
        return 0;
    }
    cerr(c, n, "%s: must be true or false", name);
    return -1;
}

static void strv_push(char ***v, size_t *n, char *s)
{
    *v = xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[(*n)++] = s;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* A string or a list of strings, each checked by ok (NULL: any). */
static int get_strings(struct cctx *c, const struct ynode *n, const char *name,
                       int (*ok)(const char *s), const char *what, char ***out, size_t *nout)
{
    char **v = NULL;
    size_t nv = 0;
    int bad = 0;
    const struct ynode *const *items = &n;
    size_t count = 1;
    if (n->kind == Y_SEQ) {
        items = (const struct ynode *const *)n->items;
        count = n->n;
    } else if (n->kind != Y_SCALAR) {
        cerr(c, n, "%s: must be a string or a list of strings", name);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        char *s;
        if (get_string(c, items[i], name, &s) < 0) {
            bad = 1;
            continue;
        }
        if (ok && !ok(s)) {
            cerr(c, items[i], "%s: '%s' %s", name, s, what);
            free(s);
            bad = 1;
            continue;
        }
        strv_push(&v, &nv, s);
    }
    if (bad) {
        strv_free(v, nv);
        return -1;
    }
    *out = v;
    *nout = nv;
    return 0;
}

/* ---- addresses ---- */

static int port_ok(const char *p)
{
    long v = 0;
    if (!*p || strlen(p) > 5)
        return 0;
    for (const char *q = p; *q; q++) {
        if (*q < '0' || *q > '9')
            return 0;
        v = v * 10 + (*q - '0');
    }
    return v >= 1 && v <= 65535;
}

/* HOST:PORT, HOST being a name, an IPv4 address or [IPv6]. */
static int host_port_ok(const char *s)
{
    if (s[0] == '[') {
        const char *e = strchr(s, ']');
        if (!e || e == s + 1 || e[1] != ':')
            return 0;
        return port_ok(e + 2);
    }
    const char *colon = strchr(s, ':');
    if (!colon || colon == s || strchr(colon + 1, ':'))
        return 0;
    return port_ok(colon + 1);
}

static int listen_ok(const char *s)
{
    if (strncmp(s, "tcp:", 4) == 0 || strncmp(s, "tls:", 4) == 0)
        return host_port_ok(s + 4);
    if (strncmp(s, "unix:", 5) == 0) {
        size_t n = strlen(s + 5);
        return n > 0 && n < sizeof(((struct sockaddr_un *)0)->sun_path);
    }
    return 0;
}

/* ---- names ---- */

static int id_ok_n(const char *s, size_t n)
{
    if (n < 1 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
            return 0;
    }
    return 1;
}

static int type_ok_n(const char *s, size_t n)
{
    if (n < 1 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-' ||
              ch == '.'))
            return 0;
    }
    return 1;
}

static int type_ok(const char *s)
{
    return type_ok_n(s, strlen(s));
}

/* ---- safe to expose (spec 14) ---- */

const char *config_http_hostport(const char *addr, int *tls)
{
    int t = strncmp(addr, "https:", 6) == 0;
    if (tls)
        *tls = t;
    if (t)
        return addr + 6;
    if (strncmp(addr, "http:", 5) == 0)
        return addr + 5;
    return addr;
}

/* A path as written in the config, resolved against the config's folder
 * when relative (malloc'd). Against a real folder (config_load: absolute,
 * no symbolic links) leading "./" and "../" are folded into it, which is
 * what the kernel would make of them. */
char *config_resolve(const char *dir, int real, const char *p)
{
    if (p[0] == '/' || !dir)
        return xstrdup(p);
    size_t dn = strlen(dir);
    for (;;) {
        if (!real)
            break;
        if (strncmp(p, "./", 2) == 0) {
            p += 2;
        } else if (strcmp(p, ".") == 0) {
            p += 1;
        } else if (strncmp(p, "../", 3) == 0 || strcmp(p, "..") == 0) {
            while (dn > 1 && dir[dn - 1] != '/')
                dn--;
            if (dn > 1)
                dn--; /* the slash, unless it is the root's */
            p += p[2] ? 3 : 2;
        } else {
            break;
        }
        while (*p == '/')
            p++;
    }
    struct sbuf b = {0};
    sb_add(&b, dir, dn);
    if (*p) {
        if (!(dn == 1 && dir[0] == '/'))
            sb_str(&b, "/");
        sb_str(&b, p);
    } else if (!b.s) {
        sb_str(&b, "/");
    }
    return b.s;
}

int config_read_secret(const char *path, const char *dir, char **out, size_t *len, char *err,
                       size_t errlen)
{
    /* a relative path says where it was looked for */
    int rel = dir && strncmp(path, dir, strlen(dir)) == 0;
    const char *note = rel ? " (resolved against the config's folder " : "";
    struct sbuf sb = {0};
    struct errs e = {0};
    if (read_file(path, &sb, &e) < 0) {
        snprintf(err, errlen, "%s%s%s%s", e.n ? e.msg[0] : "cannot be read", note, rel ? dir : "",
                 rel ? ")" : "");
        errs_free(&e);
        sb_free(&sb);
        return -1;
    }
    errs_free(&e);
    size_t n = sb.len;
    if (n && sb.s[n - 1] == '\n')
        n--;
    if (n && sb.s[n - 1] == '\r')
        n--;
    if (n == 0) {
        snprintf(err, errlen, "%s is empty%s%s%s", path, note, rel ? dir : "", rel ? ")" : "");
        sb_free(&sb);
        return -1;
    }
    *out = xstrndup(sb.s, n);
    *len = n;
    memset(sb.s, 0, sb.len);
    sb_free(&sb);
    return 0;
}

static char *resolve_path(const struct config *cfg, const char *p)
{
    return config_resolve(cfg->dir, cfg->dir_real, p);
}

/* database, plugin_dirs and unix: listen addresses, written or default,
 * resolved against the config's folder. */
static void resolve_daemon_paths(struct cctx *c, const struct ynode *d, struct config *cfg)
{
    /* ":memory:" is SQLite's name for a throw-away database, not a path */
    char *p = strcmp(cfg->database, ":memory:") == 0 ? xstrdup(cfg->database)
                                                     : resolve_path(cfg, cfg->database);
    free(cfg->database);
    cfg->database = p;
    for (size_t i = 0; i < cfg->n_plugin_dirs; i++) {
        p = resolve_path(cfg, cfg->plugin_dirs[i]);
        free(cfg->plugin_dirs[i]);
        cfg->plugin_dirs[i] = p;
    }
    for (size_t i = 0; i < cfg->n_listen; i++) {
        const char *a = cfg->listen[i];
        if (strncmp(a, "unix:", 5) != 0 || a[5] == '/')
            continue;
        char *r = resolve_path(cfg, a + 5);
        if (strlen(r) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
            cerr(c, d ? ynode_get(d, "listen") : NULL,
                 "listen: '%s' resolves to %s (against the config's folder), longer than the "
                 "%zu bytes a Unix socket path may have",
                 a, r, sizeof(((struct sockaddr_un *)0)->sun_path) - 1);
            free(r);
            continue;
        }
        struct sbuf b = {0};
        sb_fmt(&b, "unix:%s", r);
        free(r);
        free(cfg->listen[i]);
        cfg->listen[i] = b.s;
    }
}

const char *config_path_note(const struct config *c, const char *path, char *buf, size_t len)
{
    size_t dn = c && c->dir ? strlen(c->dir) : 0;
    if (!dn || !path || strncmp(path, c->dir, dn) != 0 ||
        (path[dn] != '/' && c->dir[dn - 1] != '/'))
        return "";
    snprintf(buf, len, " (resolved against the config's folder %s)", c->dir);
    return buf;
}

int config_database_moved(const struct config *c, char *msg, size_t len)
{
    const char *old = c->database_written;
    struct stat st;
    if (!old || old[0] == '/' || strcmp(old, ":memory:") == 0 || !c->dir)
        return 0;
    if (stat(c->database, &st) == 0 || errno != ENOENT)
        return 0;
    if (stat(old, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    char cwd[4096];
    if (!getcwd(cwd, sizeof(cwd)))
        snprintf(cwd, sizeof(cwd), ".");
    snprintf(msg, len,
             "database: %s does not exist, but %s/%s does: relative paths in %s now resolve "
             "against the config's folder (%s), not the current directory. Refusing to start "
             "with a new, empty database: move the database (with its -wal and -shm files) to "
             "%s, or write its absolute path in `database`",
             c->database, cwd, old, c->path, c->dir, c->database);
    return 1;
}

static void get_path(struct cctx *c, const struct ynode *map, const char *key, const char *name,
                     const struct config *cfg, char **out)
{
    const struct ynode *n = get(map, key);
    char *s;
    if (n && get_string(c, n, name, &s) == 0) {
        *out = resolve_path(cfg, s);
        free(s);
    }
}

/* HOST of HOST:PORT is a loopback address: 127.0.0.0/8, ::1, localhost. */
static int loopback(const char *hostport)
{
    char host[256];
    const char *colon = strrchr(hostport, ':');
    size_t n = colon ? (size_t)(colon - hostport) : strlen(hostport);
    if (n >= sizeof(host))
        return 0;
    memcpy(host, hostport, n);
    host[n] = 0;
    if (strcmp(host, "localhost") == 0 || strcmp(host, "[::1]") == 0)
        return 1;
    int a, b, cc, dd;
    char tail;
    return sscanf(host, "%d.%d.%d.%d%c", &a, &b, &cc, &dd, &tail) == 4 && a == 127 && b >= 0 &&
           b <= 255 && cc >= 0 && cc <= 255 && dd >= 0 && dd <= 255;
}

static void parse_security(struct cctx *c, const struct ynode *d, struct config *cfg)
{
    static const char *const auth_keys[] = {"tokens_file", NULL};
    static const char *const tls_keys[] = {"cert", "key", "client_ca", NULL};
    const struct ynode *n, *m;

    if ((m = want_map(c, ynode_get(d, "auth"), "auth"))) {
        check_keys(c, m, auth_keys);
        get_path(c, m, "tokens_file", "auth.tokens_file", cfg, &cfg->tokens_file);
        if (!get(m, "tokens_file"))
            cerr(c, m, "auth: missing required key 'tokens_file'");
    }
    const struct ynode *tls = want_map(c, ynode_get(d, "tls"), "tls");
    if (tls) {
        check_keys(c, tls, tls_keys);
        get_path(c, tls, "cert", "tls.cert", cfg, &cfg->tls_cert);
        get_path(c, tls, "key", "tls.key", cfg, &cfg->tls_key);
        get_path(c, tls, "client_ca", "tls.client_ca", cfg, &cfg->tls_client_ca);
        if (!get(tls, "cert") || !get(tls, "key"))
            cerr(c, tls, "tls: needs both 'cert' and 'key' (PEM files)");
        if ((n = get(tls, "client_ca")) && !get(d, "auth"))
            cerr(c, n,
                 "tls.client_ca: needs daemon.auth (a client certificate's CN names a token of "
                 "its tokens file)");
    }
    if ((n = get(d, "socket_mode"))) {
        int quoted = n->kind == Y_SCALAR && !n->plain;
        long v = -1;
        if (quoted && n->len >= 3 && n->len <= 4 && strspn(n->str, "01234567") == n->len)
            v = strtol(n->str, NULL, 8);
        if (v <= 0 || v > 0777)
            cerr(c, n,
                 "socket_mode: must be a quoted octal mode from \"0001\" to \"0777\", like "
                 "\"0660\"");
        else
            cfg->socket_mode = (int)v;
    }
    if ((n = get(d, "socket_group"))) {
        char *s;
        if (get_string(c, n, "socket_group", &s) == 0) {
            if (!getgrnam(s)) {
                cerr(c, n, "socket_group: no group named '%s'", s);
                free(s);
            } else {
                cfg->socket_group = s;
            }
        }
    }
    if ((n = get(d, "metrics"))) {
        char *s;
        if (get_string(c, n, "metrics", &s) == 0) {
            int t;
            const char *hp = config_http_hostport(s, &t);
            if (t || !host_port_ok(hp)) {
                cerr(c, n, "metrics: '%s' must be HOST:PORT (plain HTTP)", s);
                free(s);
            } else {
                cfg->metrics = xstrdup(hp);
                free(s);
            }
        }
    }
    if ((m = ynode_get(d, "limits")) && m->kind == Y_MAP && (n = get(m, "max_past"))) {
        int64_t ms;
        if (get_duration(c, n, "limits.max_past", &ms) == 0) {
            if (ms <= 0)
                cerr(c, n, "limits.max_past: must be more than 0");
            else
                cfg->max_past_ms = ms;
        }
    }
    /* TLS addresses need daemon.tls; a non-loopback address needs auth */
    int https = 0;
    if (cfg->http)
        config_http_hostport(cfg->http, &https);
    for (size_t i = 0; i < cfg->n_listen; i++) {
        const char *a = cfg->listen[i];
        int is_tls = strncmp(a, "tls:", 4) == 0;
        if (is_tls && !tls)
            cerr(c, ynode_get(d, "listen"), "listen: '%s' needs daemon.tls (cert and key)", a);
        if ((is_tls || strncmp(a, "tcp:", 4) == 0) && !loopback(a + 4) && !cfg->tokens_file)
            cerr(c, ynode_get(d, "listen"),
                 "listen: '%s' is not a loopback address: it needs daemon.auth "
                 "(tokens_file), or listen on 127.0.0.1",
                 a);
    }
    if (cfg->http) {
        const struct ynode *hn = ynode_get(d, "http");
        if (https && !tls)
            cerr(c, hn, "http: '%s' needs daemon.tls (cert and key)", cfg->http);
        if (!loopback(config_http_hostport(cfg->http, NULL)) && !cfg->tokens_file)
            cerr(c, hn,
                 "http: '%s' is not a loopback address: it needs daemon.auth (tokens_file), "
                 "or listen on 127.0.0.1",
                 cfg->http);
    }
}

/* ---- cluster mode (spec 17) ---- */

/* A NATS stream or key-value name: [A-Za-z0-9_-]{1,32}. */
static int stream_name_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > 32)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return 0;
    return 1;
}

static int nats_url_ok(const char *s)
{
    const char *hp = strncmp(s, "nats://", 7) == 0  ? s + 7
                     : strncmp(s, "tls://", 6) == 0 ? s + 6
                                                    : s;
    const char *at = strrchr(hp, '@'); /* user:password@ */
    return host_port_ok(at ? at + 1 : hp);
}

static void parse_cluster(struct cctx *c, const struct ynode *d, struct config *cfg)
{
    static const char *const keys[] = {"nats",      "partitions",  "worker",   "stream",
                                       "actions",   "replicas",    "takeover", "snapshot",
                                       "snapshots", "secret_file", "trim",     NULL};
    struct cluster_cfg *k = &cfg->cluster;
    const struct ynode *m = want_map(c, ynode_get(d, "cluster"), "cluster"), *n;
    if (!m)
        return;
    check_keys(c, m, keys);
    k->partitions = 16;
    k->replicas = 3;
    k->takeover_ms = 10000;
    k->stream = xstrdup("MKTD_EVENTS");
    k->actions = xstrdup("MKTD_ACTIONS");
    k->snapshot_ms = 60000;
    k->snapshots = xstrdup("MKTD_SNAPSHOTS");
    k->trim = 1;
    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
        snprintf(host, sizeof(host), "mktd");
    for (char *p = host; *p; p++) /* a worker name is a KV value and a consumer name */
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-')
            *p = '-';
    k->worker = xstrdup(host);

    if (!(n = get(m, "nats")))
        cerr(c, m, "cluster.nats: required (the NATS servers' URLs, nats://HOST:PORT)");
    else if (get_strings(c, n, "cluster.nats", nats_url_ok, "must be nats://HOST:PORT", &k->nats,
                         &k->n_nats) == 0 &&
             k->n_nats == 0)
        cerr(c, n, "cluster.nats: needs at least one URL");
    set_int(c, m, "partitions", "cluster.partitions", 1, 1024, &k->partitions);
    set_int(c, m, "replicas", "cluster.replicas", 1, 5, &k->replicas);
    if ((n = get(m, "takeover")) && get_duration(c, n, "cluster.takeover", &k->takeover_ms) == 0 &&
        (k->takeover_ms < 1000 || k->takeover_ms > 3600000))
        cerr(c, n, "cluster.takeover: must be from 1s to 1h");
    if ((n = get(m, "snapshot")) && get_duration(c, n, "cluster.snapshot", &k->snapshot_ms) == 0 &&
        k->snapshot_ms != 0 && (k->snapshot_ms < 1000 || k->snapshot_ms > 86400000))
        cerr(c, n, "cluster.snapshot: must be 0 (no snapshots) or from 1s to 24h");
    if ((n = get(m, "trim")))
        get_bool(c, n, "cluster.trim", &k->trim);
    static const char *const names[] = {"worker", "stream", "actions", "snapshots"};
    char **dst[] = {&k->worker, &k->stream, &k->actions, &k->snapshots};
    for (int i = 0; i < 4; i++) {
        char *s, what[32];
        snprintf(what, sizeof(what), "cluster.%s", names[i]);
        if ((n = get(m, names[i])) && get_string(c, n, what, &s) == 0) {
            if (!stream_name_ok(s)) {
                cerr(c, n, "%s: '%s' must be 1-32 of [A-Za-z0-9_-]", what, s);
                free(s);
            } else {
                free(*dst[i]);
                *dst[i] = s;
            }
        }
    }
    if (strcmp(k->stream, k->actions) == 0)
        cerr(c, m, "cluster: stream and actions must be different streams");
    if (strcmp(k->snapshots, k->stream) == 0 || strcmp(k->snapshots, k->actions) == 0)
        cerr(c, m, "cluster: snapshots must be a stream of its own (not stream or actions)");
    /* the key of the action-derived random bytes (coupon codes): every
     * worker of a cluster needs the same one */
    get_path(c, m, "secret_file", "cluster.secret_file", cfg, &k->secret_file);
    char why[1024];
    if (!get(m, "secret_file"))
        cerr(c, m,
             "cluster.secret_file: required (a file of secret bytes, the same for every worker: "
             "coupon codes are derived from it)");
    else if (k->secret_file && config_read_secret(k->secret_file, cfg->dir, &k->secret,
                                                  &k->secret_len, why, sizeof(why)) < 0)
        cerr(c, get(m, "secret_file"), "cluster.secret_file: %s", why);
    /* time comes from the stream in cluster mode (spec 18) */
    if ((n = get(d, "clock")))
        cerr(c, n, "clock: not allowed with daemon.cluster (time comes from the event stream)");
}

static void cluster_cfg_free(struct cluster_cfg *k)
{
    strv_free(k->nats, k->n_nats);
    free(k->worker);
    free(k->stream);
    free(k->actions);
    free(k->snapshots);
    free(k->secret_file);
    if (k->secret)
        memset(k->secret, 0, k->secret_len);
    free(k->secret);
}

/* ---- daemon ---- */

/* daemon.event_log: {keep: DURATION}: accepted input events kept for
 * replay (spec 13); absent: none are. */
static void parse_event_log(struct cctx *c, const struct ynode *d, struct config *cfg)
{
    static const char *const event_log_keys[] = {"keep", NULL};
    const struct ynode *m = want_map(c, ynode_get(d, "event_log"), "event_log"), *n;
    if (!m)
        return;
    check_keys(c, m, event_log_keys);
    if (!(n = get(m, "keep")))
        cerr(c, m, "event_log: keep is required (how long events are kept, like 30d)");
    else if (get_duration(c, n, "event_log.keep", &cfg->event_log_keep_ms) == 0 &&
             cfg->event_log_keep_ms < 1000) {
        cerr(c, n, "event_log.keep: must be at least 1s");
        cfg->event_log_keep_ms = 0;
    }
}

static void parse_daemon(struct cctx *c, const struct ynode *d, struct config *cfg)
{
    static const char *const keys[] = {
        "listen",       "http",      "database", "plugin_dirs", "clock",   "commit",
        "limits",       "log",       "auth",     "tls",         "metrics", "socket_mode",
        "socket_group", "retention", "cluster",  "event_log",   NULL};
    static const char *const commit_keys[] = {"max_batch", "max_delay_ms", "synchronous", NULL};
    static const char *const limit_keys[] = {"max_event_bytes",
                                             "max_connections",
                                             "max_http_body",
                                             "max_future",
                                             "working_set",
                                             "max_past",
                                             NULL};
    static const char *const log_keys[] = {"level", NULL};
    static const char *const clocks[] = {"wall", "event", NULL};
    static const char *const syncs[] = {"normal", "full", NULL};
    static const char *const levels[] = {"error", "warn", "info", "debug", NULL};
    const struct ynode *n, *m;
    int i;

    d = want_map(c, d, "daemon");
    if (!d)
        return;
    check_keys(c, d, keys);

    if ((n = get(d, "listen"))) {
        char **v;
        size_t nv;
        if (get_strings(c, n, "listen", listen_ok,
                        "must be tcp:HOST:PORT, tls:HOST:PORT (port 1-65535, IPv6 as [ADDR]) or "
                        "unix:PATH",
                        &v, &nv) == 0) {
            strv_free(cfg->listen, cfg->n_listen);
            cfg->listen = v;
            cfg->n_listen = nv;
            cfg->listen_written = 1;
        }
    }
    if ((n = get(d, "http"))) {
        char *s;
        if (get_string(c, n, "http", &s) == 0) {
            if (host_port_ok(config_http_hostport(s, NULL))) {
                cfg->http = s;
            } else {
                cerr(c, n,
                     "http: '%s' must be HOST:PORT or https:HOST:PORT (port 1-65535, IPv6 as "
                     "[ADDR])",
                     s);
                free(s);
            }
        }
    }
    if (cfg->n_listen == 0 && !cfg->http)
        cerr(c, ynode_get(d, "listen"),
             "listen: empty, and no http address: no way to send events");
    if ((n = get(d, "database"))) {
        char *s;
        if (get_string(c, n, "database", &s) == 0) {
            free(cfg->database);
            cfg->database = s;
        }
    }
    if ((n = get(d, "plugin_dirs"))) {
        char **v;
        size_t nv;
        if (get_strings(c, n, "plugin_dirs", NULL, NULL, &v, &nv) == 0) {
            strv_free(cfg->plugin_dirs, cfg->n_plugin_dirs);
            cfg->plugin_dirs = v;
            cfg->n_plugin_dirs = nv;
        }
    }
    if ((n = get(d, "clock")) && (i = get_enum(c, n, "clock", clocks)) >= 0)
        cfg->clock_event = i == 1;

    if ((m = want_map(c, ynode_get(d, "commit"), "commit"))) {
        check_keys(c, m, commit_keys);
        set_int(c, m, "max_batch", "commit.max_batch", 1, 1000000, &cfg->max_batch);
        set_int(c, m, "max_delay_ms", "commit.max_delay_ms", 0, 10000, &cfg->max_delay_ms);
        if ((n = get(m, "synchronous")) && (i = get_enum(c, n, "commit.synchronous", syncs)) >= 0)
            cfg->sync_full = i == 1;
    }
    if ((m = want_map(c, ynode_get(d, "limits"), "limits"))) {
        check_keys(c, m, limit_keys);
        set_int64(c, m, "max_event_bytes", "limits.max_event_bytes", 64, 16777216,
                  &cfg->max_event_bytes);
        set_int(c, m, "max_connections", "limits.max_connections", 1, 1000000,
                &cfg->max_connections);
        set_int64(c, m, "max_http_body", "limits.max_http_body", 1, 1073741824,
                  &cfg->max_http_body);
        if ((n = get(m, "max_future")))
            get_duration(c, n, "limits.max_future", &cfg->max_future_ms);
        if ((n = get(m, "working_set")))
            get_size(c, n, "limits.working_set", (int64_t)1 << 20, (int64_t)1 << 40,
                     &cfg->working_set);
    }
    if ((m = want_map(c, ynode_get(d, "retention"), "retention"))) {
        static const char *const retention_keys[] = {"actions", NULL};
        check_keys(c, m, retention_keys);
        if ((n = get(m, "actions")) &&
            get_duration(c, n, "retention.actions", &cfg->retention_actions_ms) == 0 &&
            cfg->retention_actions_ms < 3600000) {
            cerr(c, n, "retention.actions: must be at least 1h");
        }
    }
    parse_event_log(c, d, cfg);
    if ((m = want_map(c, ynode_get(d, "log"), "log"))) {
        check_keys(c, m, log_keys);
        if ((n = get(m, "level")) && (i = get_enum(c, n, "log.level", levels)) >= 0) {
            static const int lv[] = {MKTD_LOG_ERROR, MKTD_LOG_WARN, MKTD_LOG_INFO, MKTD_LOG_DEBUG};
            cfg->log_level = lv[i];
        }
    }
    parse_security(c, d, cfg);
    parse_cluster(c, d, cfg);
}

/* ---- conditions ---- */

static const char *const op_names[] = {"eq",  "ne", "gt",     "gte",    "lt",
                                       "lte", "in", "not_in", "exists", NULL};

static int parse_field(const char *s, size_t len, struct cond *k)
{
    static const struct {
        const char *name;
        enum field_kind kind;
    } simple[] = {
        {"type", F_TYPE},
        {"user.id", F_USER_ID},
        {"user.events", F_USER_EVENTS},
        {"user.orders", F_USER_ORDERS},
        {"user.spent", F_USER_SPENT},
        {"user.first_seen", F_USER_FIRST_SEEN},
        {"user.last_seen", F_USER_LAST_SEEN},
    };
    if (strlen(s) != len)
        return -1;
    for (size_t i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
        if (strcmp(s, simple[i].name) == 0) {
            k->field = simple[i].kind;
            return 0;
        }
    }
    if (strncmp(s, "props.", 6) == 0) {
        const char *p = s + 6;
        size_t n = strlen(p);
        if (n == 0 || p[0] == '.' || p[n - 1] == '.' || strstr(p, ".."))
            return -1;
        k->field = F_PROPS;
        k->arg = xstrdup(p);
        return 0;
    }
    if (strncmp(s, "user.count.", 11) == 0 && type_ok(s + 11)) {
        k->field = F_USER_COUNT;
        k->arg = xstrdup(s + 11);
        return 0;
    }
    return -1;
}

/* A scalar usable as a comparison operand: its JSON, or NULL after an error. */
static json_t *operand(struct cctx *c, const struct ynode *v, enum cond_op op)
{
    double d;
    enum yscalar t;
    if (v->kind != Y_SCALAR) {
        cerr(c, v, "value: op %s takes a single value, not a %s", op_names[op],
             v->kind == Y_SEQ ? "list" : "map");
        return NULL;
    }
    t = ynode_resolve(v, NULL, &d, NULL);
    if (t == YS_NULL) {
        cerr(c, v, "value: null never matches (a null property counts as missing); use op exists");
        return NULL;
    }
    if (t == YS_FLOAT && !isfinite(d)) {
        cerr(c, v, "value: infinite and NaN numbers are not supported");
        return NULL;
    }
    if (t == YS_BOOL && (op == OP_GT || op == OP_GTE || op == OP_LT || op == OP_LTE)) {
        cerr(c, v, "value: op %s compares numbers or strings, not true/false", op_names[op]);
        return NULL;
    }
    return ynode_to_jansson(v);
}

static int parse_cond(struct cctx *c, const struct ynode *m, struct cond *k)
{
    static const char *const keys[] = {"field", "op", "value", NULL};
    const struct ynode *f, *o, *v;
    int bad = 0, op;

    k->node = m;
    if (m->kind != Y_MAP) {
        cerr(c, m, "when.all: each condition must be a map {field, op, value}");
        return -1;
    }
    if (check_keys(c, m, keys))
        bad = 1;
    f = get(m, "field");
    o = get(m, "op");
    v = ynode_get(m, "value");
    if (!f) {
        cerr(c, m, "condition: missing required key 'field'");
        bad = 1;
    } else if (f->kind != Y_SCALAR || parse_field(f->str, f->len, k) < 0) {
        cerr(c, f,
             "field: '%s' is not one of props.<path>, type, user.id, user.events, user.orders, "
             "user.spent, user.first_seen, user.last_seen, user.count.<type>",
             f->kind == Y_SCALAR ? f->str : "(not a scalar)");
        bad = 1;
    }
    if (!o) {
        cerr(c, m, "condition: missing required key 'op'");
        return -1;
    }
    op = get_enum(c, o, "op", op_names);
    if (op < 0)
        return -1;
    k->op = (enum cond_op)op;

    if (k->op == OP_EXISTS) {
        int b = 1;
        if (!is_null(v) && (v->kind != Y_SCALAR || ynode_resolve(v, NULL, NULL, &b) != YS_BOOL)) {
            cerr(c, v, "value: op exists takes true or false");
            return -1;
        }
        k->value = json_boolean(b);
        return bad ? -1 : 0;
    }
    if (!v) {
        cerr(c, m, "condition: missing required key 'value' (op %s)", op_names[op]);
        return -1;
    }
    if (k->op == OP_IN || k->op == OP_NOT_IN) {
        if (v->kind != Y_SEQ) {
            cerr(c, v, "value: op %s needs a list", op_names[op]);
            return -1;
        }
        json_t *arr = json_array();
        for (size_t i = 0; i < v->n; i++) {
            json_t *j = operand(c, v->items[i], k->op);
            if (!j)
                bad = 1;
            else
                json_array_append_new(arr, j);
        }
        k->value = arr;
        return bad ? -1 : 0;
    }
    k->value = operand(c, v, k->op);
    return bad || !k->value ? -1 : 0;
}

/* ---- campaigns ---- */

static int get_time(struct cctx *c, const struct ynode *n, const char *name, int64_t *out)
{
    int64_t v;
    if (n->kind == Y_SCALAR) {
        enum yscalar t = ynode_resolve(n, &v, NULL, NULL);
        if (t == YS_INT) {
            *out = v;
            return 0;
        }
        if (t == YS_STR && rfc3339_parse(n->str, n->len, &v) == 0) {
            *out = v;
            return 0;
        }
    }
    cerr(c, n, "%s: must be an RFC 3339 date-time (like 2026-11-01T00:00:00Z) or Unix ms", name);
    return -1;
}

static void parse_when(struct cctx *c, const struct ynode *w, struct campaign_cfg *cc)
{
    static const char *const keys[] = {"event", "all", NULL};
    const struct ynode *ev, *all;

    cc->when_node = w;
    if (w->kind != Y_MAP) {
        cerr(c, w, "when: must be a map {event, all}");
        return;
    }
    cc->has_when = 1;
    check_keys(c, w, keys);
    ev = get(w, "event");
    if (!ev) {
        cerr(c, w, "when: missing required key 'event'");
    } else if (ev->kind == Y_SEQ && ev->n == 0) {
        cerr(c, ev, "when.event: must name at least one event type");
    } else {
        get_strings(c, ev, "when.event", type_ok, "is not an event type (1-64 of [a-z0-9_.-])",
                    &cc->events, &cc->n_events);
    }
    all = get(w, "all");
    if (!all)
        return;
    if (all->kind != Y_SEQ) {
        cerr(c, all, "when.all: must be a list of conditions");
        return;
    }
    cc->conds = xcalloc(all->n ? all->n : 1, sizeof(*cc->conds));
    for (size_t i = 0; i < all->n; i++) {
        struct cond *k = &cc->conds[cc->n_conds++];
        parse_cond(c, all->items[i], k);
    }
}

/* `group: NAME` (spec 11); referral and reactivation take none (spec 18:
 * their decisions are not per order, and a holdout must stay comparable). */
static void parse_group(struct cctx *c, const struct ynode *n, struct campaign_cfg *cc,
                        struct config *cfg)
{
    if (n->kind != Y_SCALAR || !id_ok_n(n->str, n->len)) {
        cerr(c, n, "group: must be 1-64 characters of [a-z0-9_-]");
        return;
    }
    if (cc->plugin &&
        (strcmp(cc->plugin, "referral") == 0 || strcmp(cc->plugin, "reactivation") == 0)) {
        cerr(c, n, "group: a %s campaign cannot be in a group", cc->plugin);
        return;
    }
    cc->group = xstrdup(n->str);
    for (size_t i = 0; i < cfg->n_groups; i++)
        if (strcmp(cfg->groups[i], cc->group) == 0) {
            cc->group_idx = (int)i;
            return;
        }
    cc->group_idx = (int)cfg->n_groups;
    strv_push(&cfg->groups, &cfg->n_groups, xstrdup(cc->group));
}

static void parse_campaign(struct cctx *c, const struct ynode *m, size_t idx, struct config *cfg)
{
    static const char *const keys[] = {"id",   "plugin", "enabled", "starts", "ends",
                                       "when", "params", "group",   NULL};
    struct campaign_cfg *cc = &cfg->campaigns[cfg->n_campaigns++];
    const struct ynode *n, *sn, *en;
    char prefix[96];

    cc->enabled = 1;
    cc->group_idx = -1;
    cc->starts = INT64_MIN;
    cc->ends = INT64_MAX;
    cc->node = m;

    snprintf(prefix, sizeof(prefix), "campaign #%zu: ", idx + 1);
    c->camp = prefix;
    if (m->kind != Y_MAP) {
        cerr(c, m, "must be a map {id, plugin, ...}");
        c->camp = "";
        return;
    }
    n = get(m, "id");
    if (!n) {
        cerr(c, m, "missing required key 'id'");
    } else if (n->kind != Y_SCALAR || !id_ok_n(n->str, n->len)) {
        cerr(c, n, "id: must be 1-64 characters of [a-z0-9_-]");
    } else {
        for (size_t i = 0; i + 1 < cfg->n_campaigns; i++) {
            if (cfg->campaigns[i].id && strcmp(cfg->campaigns[i].id, n->str) == 0) {
                const struct ynode *first = ynode_get(cfg->campaigns[i].node, "id");
                c->camp = "";
                cerr(c, n, "campaign id '%s' is used twice (first at line %d, column %d)", n->str,
                     first->line, first->col);
                c->camp = prefix;
                break;
            }
        }
        cc->id = xstrdup(n->str);
        snprintf(prefix, sizeof(prefix), "campaign %s: ", cc->id);
    }
    check_keys(c, m, keys);

    n = get(m, "plugin");
    if (!n)
        cerr(c, m, "missing required key 'plugin'");
    else if (n->kind != Y_SCALAR || !id_ok_n(n->str, n->len))
        cerr(c, n, "plugin: must be 1-64 characters of [a-z0-9_-]");
    else
        cc->plugin = xstrdup(n->str);

    if ((n = get(m, "enabled")))
        get_bool(c, n, "enabled", &cc->enabled);
    sn = get(m, "starts");
    en = get(m, "ends");
    int ok_s = sn && get_time(c, sn, "starts", &cc->starts) == 0;
    int ok_e = en && get_time(c, en, "ends", &cc->ends) == 0;
    if (ok_s && ok_e && cc->starts > cc->ends)
        cerr(c, en, "ends: must not be before starts");
    if ((n = get(m, "when")))
        parse_when(c, n, cc);
    cc->params = get(m, "params");
    if ((n = get(m, "group")))
        parse_group(c, n, cc, cfg);
    c->camp = "";
}

/* ---- caps (spec 11) ---- */

int cap_counts(const struct cap_cfg *cap, const char *kind)
{
    for (size_t i = 0; i < cap->n_kinds; i++)
        if (strcmp(cap->kinds[i], kind) == 0 || (strcmp(cap->kinds[i], "reactivation.offer") == 0 &&
                                                 strcmp(kind, "reactivation.holdout") == 0))
            return 1;
    return 0;
}

static void parse_cap(struct cctx *c, const struct ynode *m, struct config *cfg)
{
    static const char *const keys[] = {"id", "kinds", "max", "per", NULL};
    struct cap_cfg *cap = &cfg->caps[cfg->n_caps];
    const struct ynode *n;
    if (m->kind != Y_MAP) {
        cerr(c, m, "caps: each cap must be a map {id, kinds, max, per}");
        return;
    }
    cfg->n_caps++;
    cap->node = m;
    check_keys(c, m, keys);
    if (!(n = get(m, "id"))) {
        cerr(c, m, "caps: missing required key 'id'");
    } else if (n->kind != Y_SCALAR || !id_ok_n(n->str, n->len)) {
        cerr(c, n, "caps: id: must be 1-64 characters of [a-z0-9_-]");
    } else {
        for (size_t i = 0; i + 1 < cfg->n_caps; i++) {
            if (cfg->caps[i].id && strcmp(cfg->caps[i].id, n->str) == 0) {
                const struct ynode *first = ynode_get(cfg->caps[i].node, "id");
                cerr(c, n, "caps: id '%s' is used twice (first at line %d, column %d)", n->str,
                     first->line, first->col);
                break;
            }
        }
        cap->id = xstrdup(n->str);
    }
    if (!(n = get(m, "kinds"))) {
        cerr(c, m, "caps: missing required key 'kinds'");
    } else if (get_strings(c, n, "caps: kinds", type_ok,
                           "is not an action kind ([a-z0-9_.-], 1-64 characters)", &cap->kinds,
                           &cap->n_kinds) == 0 &&
               cap->n_kinds == 0) {
        cerr(c, n, "caps: kinds: must name at least one action kind");
    }
    if (!(n = get(m, "max")))
        cerr(c, m, "caps: missing required key 'max'");
    else
        get_int_range(c, n, "caps: max", 0, 1000000000, &cap->max);
    if (!(n = get(m, "per"))) {
        cerr(c, m, "caps: missing required key 'per'");
    } else if (get_duration(c, n, "caps: per", &cap->per_ms) == 0 && cap->per_ms <= 0) {
        cerr(c, n, "caps: per: must be a duration above 0 (like 7d)");
    }
    json_t *kinds = json_array();
    for (size_t i = 0; i < cap->n_kinds; i++) {
        json_array_append_new(kinds, json_string(cap->kinds[i]));
        if (strcmp(cap->kinds[i], "reactivation.offer") == 0)
            json_array_append_new(kinds, json_string("reactivation.holdout"));
    }
    cap->kinds_json = json_dumps(kinds, JSON_COMPACT);
    json_decref(kinds);
}

static void parse_caps(struct cctx *c, const struct ynode *n, struct config *cfg)
{
    if (is_null(n))
        return;
    if (n->kind != Y_SEQ) {
        cerr(c, n,
             "caps: must be a list of caps like {id: touches, kinds: [coupon.issued], "
             "max: 2, per: 7d}");
        return;
    }
    cfg->caps = xcalloc(n->n ? n->n : 1, sizeof(*cfg->caps));
    for (size_t i = 0; i < n->n; i++)
        parse_cap(c, n->items[i], cfg);
}

/* ---- the whole ---- */

static void campaign_clear(struct campaign_cfg *cc)
{
    free(cc->id);
    free(cc->plugin);
    strv_free(cc->events, cc->n_events);
    for (size_t i = 0; i < cc->n_conds; i++) {
        free(cc->conds[i].arg);
        json_decref(cc->conds[i].value);
    }
    free(cc->conds);
    free(cc->group);
}

size_t config_keep_campaigns(struct config *c, int (*keep)(const struct campaign_cfg *cc))
{
    size_t n = 0;
    for (size_t i = 0; i < c->n_campaigns; i++) {
        if (keep(&c->campaigns[i]))
            c->campaigns[n++] = c->campaigns[i];
        else
            campaign_clear(&c->campaigns[i]);
    }
    c->n_campaigns = n;
    return n;
}

static void cap_clear(struct cap_cfg *k)
{
    free(k->id);
    strv_free(k->kinds, k->n_kinds);
    free(k->kinds_json);
}

size_t config_keep_caps(struct config *c, int (*keep)(const struct cap_cfg *k))
{
    size_t n = 0;
    for (size_t i = 0; i < c->n_caps; i++) {
        if (keep && keep(&c->caps[i]))
            c->caps[n++] = c->caps[i];
        else
            cap_clear(&c->caps[i]);
    }
    c->n_caps = n;
    return n;
}

void config_free(struct config *c)
{
    if (!c)
        return;
    free(c->path);
    ydoc_free(c->doc);
    free(c->text);
    strv_free(c->listen, c->n_listen);
    free(c->http);
    free(c->database);
    free(c->database_written);
    free(c->dir);
    free(c->tokens_file);
    free(c->socket_group);
    free(c->tls_cert);
    free(c->tls_key);
    free(c->tls_client_ca);
    free(c->metrics);
    cluster_cfg_free(&c->cluster);
    strv_free(c->plugin_dirs, c->n_plugin_dirs);
    for (size_t i = 0; i < c->n_campaigns; i++)
        campaign_clear(&c->campaigns[i]);
    free(c->campaigns);
    outputs_cfg_free(c->outputs, c->n_outputs);
    strv_free(c->groups, c->n_groups);
    config_keep_caps(c, NULL);
    free(c->caps);
    free(c);
}

/* dir: the folder relative paths resolve against (NULL: that of name as
 * written); real: dir is absolute without symbolic links. */
static struct config *load_text(const char *name, const char *dir, int real, const char *text,
                                size_t len, struct errs *errs)
{
    static const char *const keys[] = {"daemon", "campaigns", "caps", "outputs", NULL};
    struct errs local = {0};
    struct cctx c = {errs ? errs : &local, 0, ""};
    struct config *cfg = xcalloc(1, sizeof(*cfg));
    const struct ynode *root, *camps;

    if (!name)
        name = "<config>";
    cfg->path = xstrdup(name);
    if (dir) {
        cfg->dir = xstrdup(dir);
        cfg->dir_real = real;
    } else if (strrchr(name, '/')) {
        cfg->dir = xstrndup(name, (size_t)(strrchr(name, '/') - name));
        if (!cfg->dir[0]) {
            free(cfg->dir);
            cfg->dir = xstrdup("/");
        }
    }
    cfg->text = xmalloc(len + 1);
    if (len)
        memcpy(cfg->text, text, len);
    cfg->text[len] = 0;
    cfg->text_len = len;

    strv_push(&cfg->listen, &cfg->n_listen, xstrdup("tcp:127.0.0.1:7411"));
    cfg->database = xstrdup("var/mktd.db");
    strv_push(&cfg->plugin_dirs, &cfg->n_plugin_dirs, xstrdup("build/plugins"));
    cfg->max_batch = 1024;
    cfg->max_delay_ms = 2;
    cfg->max_event_bytes = 65536;
    cfg->max_connections = 1024;
    cfg->max_http_body = 16777216;
    cfg->max_future_ms = 86400000;
    cfg->log_level = MKTD_LOG_INFO;

    cfg->doc = ydoc_load_string(name, cfg->text, len, c.errs);
    if (!cfg->doc) {
        c.nerr++;
        goto out;
    }
    root = cfg->doc->root;
    if (is_null(root))
        goto out;
    if (root->kind != Y_MAP) {
        cerr(&c, root, "the config must be a map with keys daemon and campaigns");
        goto out;
    }
    check_keys(&c, root, keys);
    parse_daemon(&c, ynode_get(root, "daemon"), cfg);

    camps = ynode_get(root, "campaigns");
    if (!is_null(camps)) {
        if (camps->kind != Y_SEQ) {
            cerr(&c, camps, "campaigns: must be a list of campaigns");
        } else {
            cfg->campaigns = xcalloc(camps->n ? camps->n : 1, sizeof(*cfg->campaigns));
            for (size_t i = 0; i < camps->n; i++)
                parse_campaign(&c, camps->items[i], i, cfg);
        }
    }
    c.nerr += outputs_cfg_parse(ynode_get(root, "outputs"), cfg->dir, cfg->dir_real, c.errs,
                                &cfg->outputs, &cfg->n_outputs);
    parse_caps(&c, ynode_get(root, "caps"), cfg);
out:
    if (!c.nerr) {
        /* written or default (an empty file too), against the folder */
        const struct ynode *r = cfg->doc ? cfg->doc->root : NULL;
        const struct ynode *d = r && r->kind == Y_MAP ? ynode_get(r, "daemon") : NULL;
        cfg->database_written = xstrdup(cfg->database);
        resolve_daemon_paths(&c, d && d->kind == Y_MAP ? d : NULL, cfg);
    }
    errs_free(&local);
    if (c.nerr) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

struct config *config_load_string(const char *name, const char *text, size_t len, struct errs *errs)
{
    return load_text(name, NULL, 0, text, len, errs);
}

struct config *config_load_string_in(const char *name, const char *dir, int real, const char *text,
                                     size_t len, struct errs *errs)
{
    return load_text(name, dir, real, text, len, errs);
}

struct config *config_load(const char *path, struct errs *errs)
{
    struct sbuf sb = {0};
    if (read_file(path, &sb, errs) < 0)
        return NULL;
    /* the file's folder, absolute and without symbolic links (spec 18) */
    const char *slash = strrchr(path, '/');
    char *folder = slash ? xstrndup(path, (size_t)(slash - path)) : xstrdup(".");
    char *real = realpath(folder[0] ? folder : "/", NULL);
    struct config *c =
        load_text(path, real ? real : folder, real != NULL, sb.s ? sb.s : "", sb.len, errs);
    free(real);
    free(folder);
    sb_free(&sb);
    return c;
}

/* ---- config messages (cluster mode) ---- */

/* Appends to b the top-level blocks of the block mapping doc/text: the
 * daemon block when daemon, else every other one. A block runs from its
 * key's line to the next key's. 0, or -1 when the top level is not a
 * block mapping. */
static int top_blocks(const struct ydoc *doc, const char *text, size_t len, int daemon,
                      struct sbuf *b)
{
    const struct ynode *root = doc ? doc->root : NULL;
    if (!root)
        return 0;
    if (root->kind != Y_MAP)
        return -1;
    /* the offset of each line's start, 1-based */
    size_t n_lines = 1;
    for (size_t i = 0; i < len; i++)
        n_lines += text[i] == '\n';
    size_t *at = xmalloc((n_lines + 2) * sizeof(*at));
    size_t line = 1;
    at[1] = 0;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            at[++line] = i + 1;
    at[n_lines + 1] = len;
    int rc = 0;
    for (size_t k = 0; k < root->n && rc == 0; k++) {
        const struct ynode *key = root->keys[k];
        int next = k + 1 < root->n ? root->keys[k + 1]->line : (int)n_lines + 1;
        if (key->col != 1 || key->line < 1 || next <= key->line || (size_t)next > n_lines + 1) {
            rc = -1;
            break;
        }
        if ((strcmp(key->str, "daemon") == 0) != daemon)
            continue;
        size_t from = at[key->line], to = at[next];
        sb_add(b, text + from, to - from);
        if (to > from && text[to - 1] != '\n')
            sb_add(b, "\n", 1);
    }
    free(at);
    return rc;
}

char *config_campaign_text(const struct config *c, size_t *len, char *err, size_t errlen)
{
    struct sbuf b = {0};
    if (top_blocks(c->doc, c->text, c->text_len, 0, &b) < 0) {
        snprintf(err, errlen, "%s: the top level must be a block mapping (key: value lines)",
                 c->path);
        sb_free(&b);
        return NULL;
    }
    *len = b.len;
    return b.s ? b.s : xstrdup("");
}

char *config_splice(const struct config *base, const char *text, size_t len, size_t *out_len,
                    char *err, size_t errlen)
{
    struct sbuf b = {0};
    struct errs errs = {0};
    struct ydoc *doc = ydoc_load_string("<config message>", text, len, &errs);
    int ok = (doc || len == 0) && top_blocks(base->doc, base->text, base->text_len, 1, &b) == 0 &&
             top_blocks(doc, text, len, 0, &b) == 0;
    if (!ok) {
        snprintf(err, errlen, "%s", errs.n ? errs.msg[0] : "the top level must be a block mapping");
        sb_free(&b);
        b.s = NULL;
    } else {
        *out_len = b.len;
        if (!b.s)
            b.s = xstrdup("");
    }
    ydoc_free(doc);
    errs_free(&errs);
    return b.s;
}
