#define _GNU_SOURCE
#include "net/auth.h"

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"
#include "net/tls.h"

/* ---- the tokens file ---- */

static const struct {
    const char *name;
    unsigned bit;
} scope_names[] = {
    {"events", AUTH_EVENTS}, {"dry", AUTH_DRY}, {"read", AUTH_READ}, {"admin", AUTH_ADMIN}};

const char *auth_scopes_str(unsigned scopes, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = 0;
    for (size_t i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++) {
        if (!(scopes & scope_names[i].bit))
            continue;
        int n = snprintf(buf + at, len - at, "%s%s", at ? "," : "", scope_names[i].name);
        if (n < 0 || (size_t)n >= len - at)
            break;
        at += (size_t)n;
    }
    return buf;
}

/* A token's name: what a certificate's CN may be, without blanks. */
static int name_ok(const char *s, size_t n)
{
    if (n < 1 || n > 128)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == 0x7f)
            return 0;
    }
    return 1;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

void auth_tokens_free(struct auth_tokens *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].name);
        OPENSSL_cleanse(t->v[i].hash, sizeof(t->v[i].hash));
    }
    free(t->v);
    free(t);
}

/* The next blank-separated field of [*p, end): its start and length. */
static int next_field(const char **p, const char *end, const char **f, size_t *n)
{
    const char *s = *p;
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    const char *e = s;
    while (e < end && *e != ' ' && *e != '\t')
        e++;
    *p = e;
    *f = s;
    *n = (size_t)(e - s);
    return e > s;
}

static int parse_line(const char *name, int lineno, const char *s, const char *end,
                      struct auth_token *tok, char *err, size_t errlen)
{
    const char *f[4];
    size_t n[4];
    int k = 0;
    const char *p = s;
    while (k < 4 && next_field(&p, end, &f[k], &n[k]))
        k++;
    if (k != 3) {
        snprintf(err, errlen,
                 "%s:%d: expected NAME SCOPES SHA256HEX (three fields separated by blanks), found "
                 "%s",
                 name, lineno, k < 3 ? "fewer" : "more");
        return -1;
    }
    if (!name_ok(f[0], n[0])) {
        snprintf(err, errlen, "%s:%d: the name must be 1-128 bytes without blanks or controls",
                 name, lineno);
        return -1;
    }
    unsigned scopes = 0;
    const char *q = f[1], *qe = f[1] + n[1];
    while (q <= qe) {
        const char *c = memchr(q, ',', (size_t)(qe - q));
        if (!c)
            c = qe;
        size_t len = (size_t)(c - q);
        unsigned bit = 0;
        for (size_t i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++)
            if (strlen(scope_names[i].name) == len && memcmp(scope_names[i].name, q, len) == 0)
                bit = scope_names[i].bit;
        if (!bit) {
            snprintf(err, errlen,
                     "%s:%d: unknown scope '%.*s' (scopes are events, dry, read, admin, "
                     "separated by commas)",
                     name, lineno, (int)(len > 64 ? 64 : len), q);
            return -1;
        }
        scopes |= bit;
        q = c + 1;
    }
    if (n[2] != 64) {
        snprintf(err, errlen,
                 "%s:%d: the third field must be the token's SHA-256 as 64 hex digits (printf "
                 "%%s TOKEN | sha256sum)",
                 name, lineno);
        return -1;
    }
    for (int i = 0; i < 32; i++) {
        int hi = hexval(f[2][2 * i]), lo = hexval(f[2][2 * i + 1]);
        if (hi < 0 || lo < 0) {
            snprintf(err, errlen, "%s:%d: the SHA-256 must be 64 hex digits", name, lineno);
            return -1;
        }
        tok->hash[i] = (unsigned char)(hi << 4 | lo);
    }
    tok->name = xstrndup(f[0], n[0]);
    tok->scopes = scopes;
    return 0;
}

struct auth_tokens *auth_tokens_parse(const char *name, const char *text, size_t len, char *err,
                                      size_t errlen)
{
    struct auth_tokens *t = xcalloc(1, sizeof(*t));
    const char *p = text, *end = text + len;
    int lineno = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        lineno++;
        const char *s = p, *e = le;
        p = nl ? nl + 1 : end;
        if (e > s && e[-1] == '\r')
            e--;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        if (s == e || *s == '#')
            continue;
        if (memchr(s, 0, (size_t)(e - s))) {
            snprintf(err, errlen, "%s:%d: a NUL byte", name, lineno);
            goto fail;
        }
        struct auth_token tok = {0};
        if (parse_line(name, lineno, s, e, &tok, err, errlen) < 0)
            goto fail;
        for (size_t i = 0; i < t->n; i++) {
            const char *why = strcmp(t->v[i].name, tok.name) == 0       ? "name"
                              : memcmp(t->v[i].hash, tok.hash, 32) == 0 ? "SHA-256"
                                                                        : NULL;
            if (why) {
                snprintf(err, errlen, "%s:%d: the same %s as token %s", name, lineno, why,
                         t->v[i].name);
                free(tok.name);
                goto fail;
            }
        }
        t->v = xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
        t->v[t->n++] = tok;
    }
    return t;
fail:
    auth_tokens_free(t);
    return NULL;
}

struct auth_tokens *auth_tokens_load(const char *path, char *err, size_t errlen)
{
    struct sbuf sb = {0};
    struct errs errs = {0};
    if (read_file(path, &sb, &errs) < 0) {
        snprintf(err, errlen, "%s", errs.n ? errs.msg[0] : path);
        errs_free(&errs);
        sb_free(&sb);
        return NULL;
    }
    struct auth_tokens *t = auth_tokens_parse(path, sb.s ? sb.s : "", sb.len, err, errlen);
    if (sb.s)
        OPENSSL_cleanse(sb.s, sb.len);
    sb_free(&sb);
    return t;
}

const struct auth_token *auth_token_check(const struct auth_tokens *t, const char *token,
                                          size_t len)
{
    if (!t || len == 0)
        return NULL;
    unsigned char h[32];
    SHA256((const unsigned char *)token, len, h);
    const struct auth_token *found = NULL;
    for (size_t i = 0; i < t->n; i++) /* no early exit */
        if (CRYPTO_memcmp(h, t->v[i].hash, sizeof(h)) == 0)
            found = &t->v[i];
    OPENSSL_cleanse(h, sizeof(h));
    return found;
}

const struct auth_token *auth_token_by_hash(const struct auth_tokens *t, const unsigned char *h)
{
    const struct auth_token *found = NULL;
    for (size_t i = 0; t && i < t->n; i++)
        if (CRYPTO_memcmp(h, t->v[i].hash, 32) == 0)
            found = &t->v[i];
    return found;
}

const struct auth_token *auth_token_named(const struct auth_tokens *t, const char *name)
{
    if (!t || !name)
        return NULL;
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->v[i].name, name) == 0)
            return &t->v[i];
    return NULL;
}

int auth_line_token(const char *line, size_t len, char **token)
{
    if (len > 0 && line[len - 1] == '\r')
        len--;
    json_error_t je;
    json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
    int rc = -1;
    json_t *a = root && json_is_object(root) && json_object_size(root) == 1
                    ? json_object_get(root, "auth")
                    : NULL;
    if (a && json_is_string(a) && json_string_length(a) > 0 &&
        strlen(json_string_value(a)) == json_string_length(a)) {
        *token = xstrndup(json_string_value(a), json_string_length(a));
        rc = 0;
    }
    json_decref(root);
    return rc;
}

int auth_bearer(const char *h, const char **token, size_t *len)
{
    if (!h || strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t'))
        return -1;
    h += 6;
    while (*h == ' ' || *h == '\t')
        h++;
    size_t n = strlen(h);
    while (n && (h[n - 1] == ' ' || h[n - 1] == '\t'))
        n--;
    if (!n)
        return -1;
    *token = h;
    *len = n;
    return 0;
}

/* ---- failed attempts ---- */

#define PROBES 16

static uint64_t fnv(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

int64_t auth_throttle_fail(struct auth_throttle *t, const char *peer, int64_t now_ms)
{
    if (!t->slots) {
        t->n = AUTH_THROTTLE_SLOTS;
        t->slots = xcalloc(t->n, sizeof(*t->slots));
    }
    char key[sizeof(t->slots[0].peer)];
    snprintf(key, sizeof(key), "%s", peer && *peer ? peer : "?");
    uint64_t h = fnv(key);
    struct auth_throttle_slot *use = NULL, *spare = NULL;
    for (size_t i = 0; i < PROBES; i++) {
        struct auth_throttle_slot *sl = &t->slots[(h + i) % t->n];
        if (sl->peer[0] && strcmp(sl->peer, key) == 0) {
            use = sl;
            break;
        }
        int stale = !sl->peer[0] || now_ms - sl->window_t0 >= AUTH_FAIL_WINDOW_MS;
        int spare_stale =
            spare && (!spare->peer[0] || now_ms - spare->window_t0 >= AUTH_FAIL_WINDOW_MS);
        if (!spare || (stale && !spare_stale) ||
            (stale == spare_stale && sl->window_t0 < spare->window_t0))
            spare = sl;
    }
    if (!use) { /* a new address takes a free or stale slot, else the probed oldest */
        use = spare;
        memset(use, 0, sizeof(*use));
        snprintf(use->peer, sizeof(use->peer), "%s", key);
        use->window_t0 = now_ms;
    }
    if (now_ms - use->window_t0 >= AUTH_FAIL_WINDOW_MS || now_ms < use->window_t0) {
        use->window_t0 = now_ms;
        use->fails = 0;
    }
    if (use->fails < UINT32_MAX)
        use->fails++;
    return use->fails > AUTH_FREE_FAILS ? AUTH_FAIL_DELAY_MS : 0;
}

void auth_throttle_free(struct auth_throttle *t)
{
    free(t->slots);
    t->slots = NULL;
    t->n = 0;
}

/* ---- the daemon's side ---- */

struct auth_wait {
    struct auth_gate *g;
    struct event *ev;
    void (*answer)(void *arg);
    void *arg;
    struct auth_wait *prev, *next;
};

void auth_gate_init(struct auth_gate *g, struct event_base *base)
{
    memset(g, 0, sizeof(*g));
    g->base = base;
}

int auth_gate_load(struct auth_gate *g, const char *tokens_file, char *err, size_t errlen)
{
    struct auth_tokens *t = NULL;
    if (tokens_file && !(t = auth_tokens_load(tokens_file, err, errlen)))
        return -1;
    auth_tokens_free(g->tokens);
    g->tokens = t;
    return 0;
}

static void wait_unlink(struct auth_gate *g, struct auth_wait *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        g->waits = w->next;
    if (w->next)
        w->next->prev = w->prev;
    event_free(w->ev);
    free(w);
}

static void wait_cb(evutil_socket_t fd, short what, void *arg)
{
    struct auth_wait *w = arg;
    void (*answer)(void *) = w->answer;
    void *a = w->arg;
    wait_unlink(w->g, w);
    answer(a);
}

void auth_wait_cancel(struct auth_gate *g, struct auth_wait *w)
{
    if (w)
        wait_unlink(g, w);
}

void auth_gate_free(struct auth_gate *g)
{
    while (g->waits)
        wait_cb(-1, 0, g->waits);
    auth_tokens_free(g->tokens);
    g->tokens = NULL;
    auth_throttle_free(&g->throttle);
}

struct auth_wait *auth_gate_fail(struct auth_gate *g, const char *peer, int port,
                                 const char *transport, const char *what, void (*answer)(void *arg),
                                 void *arg)
{
    g->failures++;
    int64_t delay = auth_throttle_fail(&g->throttle, peer, wall_ms());
    log_warn("auth: failed attempt from %s port %d (%s): %s%s", peer && *peer ? peer : "?", port,
             transport, what, delay ? "; answered after a delay" : "");
    if (!delay) {
        answer(arg);
        return NULL;
    }
    struct auth_wait *w = xcalloc(1, sizeof(*w));
    w->g = g;
    w->answer = answer;
    w->arg = arg;
    w->ev = evtimer_new(g->base, wait_cb, w);
    w->next = g->waits;
    if (g->waits)
        g->waits->prev = w;
    g->waits = w;
    struct timeval tv = {.tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000};
    evtimer_add(w->ev, &tv);
    return w;
}

const struct auth_token *auth_gate_cert(struct auth_gate *g, struct bufferevent *bev, char *cn,
                                        size_t cnlen)
{
    cn[0] = 0;
    if (!bev || tls_peer_cn(bev, cn, cnlen) != 1)
        return NULL;
    return auth_token_named(g->tokens, cn);
}

static int blank_line(const char *line, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
            return 0;
    return 1;
}

int auth_gate_line(struct auth_gate *g, const char *line, size_t len, const struct auth_token **t,
                   const char **what)
{
    if (blank_line(line, len))
        return 0;
    char *tok;
    *t = NULL;
    if (auth_line_token(line, len, &tok) < 0) {
        *what = "the first line is not {\"auth\":\"TOKEN\"}";
        return -1;
    }
    *t = auth_token_check(g->tokens, tok, strlen(tok));
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    if (!*t) {
        *what = "unknown token";
        return -1;
    }
    return 1;
}

void auth_ok_line(const char *name, struct sbuf *b)
{
    sb_str(b, "{\"status\":\"ok\",\"auth\":");
    sb_json_str_or_null(b, name);
    sb_str(b, "}\n");
}

int auth_line_kind(const char *line, size_t len)
{
    if (blank_line(line, len))
        return 0;
    char *tok;
    if (len > 1024 || auth_line_token(line, len, &tok) < 0)
        return -1;
    OPENSSL_cleanse(tok, strlen(tok));
    free(tok);
    return 1;
}

static void http_answer(struct evhttp_request *req, int code, const char *reason,
                        const char *detail)
{
    struct sbuf j = {0};
    sb_fmt(&j, "{\"status\":\"error\",\"error\":\"%s\",\"detail\":", reason);
    sb_json_str(&j, detail, strlen(detail));
    sb_str(&j, "}\n");
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, j.s, j.len);
    sb_free(&j);
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", "application/json");
    if (code == 401)
        evhttp_add_header(h, "WWW-Authenticate", "Bearer realm=\"mktd\"");
    evhttp_send_reply(req, code, code == 401 ? "Unauthorized" : "Forbidden", b);
    evbuffer_free(b);
}

static void http_unauthorized(void *arg)
{
    http_answer(arg, 401, "unauthorized",
                "a token is needed: Authorization: Bearer TOKEN (or a client certificate)");
}

static int gate_http(struct auth_gate *g, struct evhttp_request *req, unsigned need,
                     unsigned *scopes, const struct auth_token **who);

int auth_gate_http(struct auth_gate *g, struct evhttp_request *req, unsigned need, unsigned *scopes)
{
    const struct auth_token *who;
    return gate_http(g, req, need, scopes, &who);
}

int auth_gate_http_as(struct auth_gate *g, struct evhttp_request *req, unsigned need,
                      unsigned *scopes, char *name, size_t namelen)
{
    const struct auth_token *who = NULL;
    int rc = gate_http(g, req, need, scopes, &who);
    if (rc)
        snprintf(name, namelen, "%s", who ? who->name : "");
    return rc;
}

static int gate_http(struct auth_gate *g, struct evhttp_request *req, unsigned need,
                     unsigned *scopes, const struct auth_token **who)
{
    *who = NULL;
    if (!g->tokens) {
        *scopes = AUTH_ALL;
        return 1;
    }
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    char cn[256];
    const struct auth_token *t =
        auth_gate_cert(g, evcon ? evhttp_connection_get_bufferevent(evcon) : NULL, cn, sizeof(cn));
    const char *what = NULL;
    if (!t) {
        const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
        const char *tok;
        size_t len;
        if (cn[0]) {
            what = "client certificate's CN names no token";
        } else if (!h) {
            what = "no Authorization header";
        } else if (auth_bearer(h, &tok, &len) < 0) {
            what = "Authorization is not Bearer TOKEN";
        } else if (!(t = auth_token_check(g->tokens, tok, len))) {
            what = "unknown token";
        }
    }
    if (!t) {
        char *addr = NULL;
        ev_uint16_t port = 0;
        if (evcon)
            evhttp_connection_get_peer(evcon, &addr, &port);
        char w[320];
        snprintf(w, sizeof(w), "%s%s%s (%s)", what, cn[0] ? " " : "", cn,
                 evhttp_request_get_uri(req) ? evhttp_request_get_uri(req) : "?");
        auth_gate_fail(g, addr, port, "http", w, http_unauthorized, req);
        return 0;
    }
    if (!auth_allows(t->scopes, need)) {
        char have[64], want[64], d[256];
        snprintf(d, sizeof(d), "token %s has scopes %s; this needs one of %s", t->name,
                 auth_scopes_str(t->scopes, have, sizeof(have)),
                 auth_scopes_str(need, want, sizeof(want)));
        http_answer(req, 403, "forbidden", d);
        return 0;
    }
    *scopes = t->scopes;
    *who = t;
    return 1;
}
