/* Cluster mode, the gateway (spec 17 and 18): a worker whose config names
 * `listen` addresses takes NDJSON events from clients on them (tcp:, tls:
 * and unix:) and answers each line as `mktd publish` does, once JetStream
 * has stored it: {"id","status":"ok","partition","seq"}, "duplicate", or
 * the errors of section 1; dry lines by their partition's owner, control
 * lines (forget, export) through the cluster (publish.c).
 *
 * One thread accepts; each connection is a thread of its own that runs
 * cluster_publish on its socket, with answers written as the
 * acknowledgements come (on tls: addresses, through a thread that
 * terminates TLS: gateway_tls.c). With daemon.auth, a TCP client's first
 * line is the auth line (docs/protocol.md, "Authentication"), unless its
 * client certificate names a token; on a Unix socket, or without auth, an
 * auth line first is answered ok and skipped. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cluster/internal.h"
#include "config/config.h"
#include "lib/addr.h"
#include "lib/log.h"
#include "lib/util.h"
#include "net/auth.h"
#include "net/ingest.h"
#include "net/tls.h"

#define AUTH_WAIT_MS 10000 /* a connection's time to send its first line */
#define FIRST_LINE_MAX 4096
#define STOP_FLUSH_MS 5000 /* a stop's time for the last answers to go out */

struct conn {
    struct gateway *g;
    int fd;  /* the client's socket, or (tls:) the plain end of its TLS pipe; -1: closed */
    int tcp; /* tcp: or tls: */
    int tls;
    char peer[64];
    pthread_t t;
    atomic_int done;
    struct conn *next;
};

struct gateway {
    struct cluster *c;
    const struct config *cfg;
    struct auth_tokens *tokens; /* NULL: no auth */
    SSL_CTX *tls_ctx;           /* daemon.tls, when a listen address is tls: */
    struct auth_throttle throttle;
    int *fds, *tcp, *tls;
    char **paths; /* Unix sockets bound (removed at the stop), else NULL */
    size_t n;
    int wake[2]; /* the stop, to the accepting thread */
    pthread_t accept_t;
    pthread_mutex_t mu; /* conns, n_conns, throttle */
    struct conn *conns;
    int n_conns;
    struct gateway_http *http;    /* `http`: POST /v1/events (gateway_http.c) */
    struct gateway_http *metrics; /* `metrics`: GET /metrics without auth */
};

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The first non-blank line: reads until a newline (or AUTH_WAIT_MS, or
 * FIRST_LINE_MAX bytes without one, or the end). 1 and the line's bounds
 * in buf, 0 no line came, -1 too long; *len: the bytes read in all, which
 * are published when they are no auth line. */
static int first_line(int fd, char *buf, size_t *len, size_t *ls, size_t *le)
{
    int64_t deadline = wall_ms() + AUTH_WAIT_MS;
    size_t n = 0, start = 0;
    for (;;) {
        *len = n;
        for (size_t i = start; i < n; i++) {
            if (buf[i] != '\n')
                continue;
            if (auth_line_kind(buf + start, i - start) == 0) { /* blank: skipped */
                start = i + 1;
                continue;
            }
            *ls = start;
            *le = i;
            return 1;
        }
        if (n == FIRST_LINE_MAX)
            return -1;
        int64_t left = deadline - wall_ms();
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0)
            return 0;
        ssize_t r = read(fd, buf + n, FIRST_LINE_MAX - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) { /* the end: what came is the line, if anything */
            *len = n;
            *ls = start;
            *le = n;
            return n > start && auth_line_kind(buf + start, n - start) != 0;
        }
        n += (size_t)r;
    }
}

/* The answer to an auth line taken (name: the token's, NULL where none
 * is needed), and what to publish: the bytes after that line. 0, or -1
 * when the client is gone. */
static int auth_taken(struct conn *k, const char *name, const char *buf, size_t len, size_t le,
                      const char **pre, size_t *pre_len)
{
    struct sbuf b = {0};
    auth_ok_line(name, &b);
    int w = write_all(k->fd, b.s, b.len);
    sb_free(&b);
    *pre = le + 1 <= len ? buf + le + 1 : buf + len;
    *pre_len = len - (size_t)(*pre - buf);
    return w;
}

/* The connection's first line, as docs/protocol.md says: an auth line is
 * answered and taken off; anything else stays for publishing (*pre, *pre_len:
 * what to publish first; *scopes: the token's, AUTH_ALL where none is
 * needed). 0 to go on, -1 to close. */
static int authenticate(struct conn *k, const char *cn, char *buf, const char **pre,
                        size_t *pre_len, unsigned *scopes, char *who, size_t wholen)
{
    struct gateway *g = k->g;
    size_t len = 0, ls = 0, le = 0;
    int got = first_line(k->fd, buf, &len, &ls, &le);
    int need = g->tokens && k->tcp;
    *pre = buf;
    *pre_len = len;
    /* without tokens, TCP clients may send events and dry runs, not
     * forget or export (a Unix socket's clients are admins by its
     * permissions), as for one daemon */
    *scopes = k->tcp && !g->tokens ? AUTH_ALL & ~AUTH_ADMIN : AUTH_ALL;
    /* a client certificate verified against client_ca whose CN names a
     * token: that token's, without an auth line (spec 18) */
    const struct auth_token *byc = need && cn[0] ? auth_token_named(g->tokens, cn) : NULL;
    if (byc && auth_allows(byc->scopes, AUTH_EVENTS | AUTH_DRY | AUTH_ADMIN)) {
        need = 0;
        *scopes = byc->scopes;
        snprintf(who, wholen, "%s", byc->name);
    }
    size_t end = got == 1 && le > ls && buf[le - 1] == '\r' ? le - 1 : le; /* without CR */
    if (got == 1 && !need)
        return auth_line_kind(buf + ls, end - ls) == 1
                   ? auth_taken(k, byc ? byc->name : NULL, buf, len, le, pre, pre_len)
                   : 0;
    if (!need)
        return 0; /* no line: cluster_publish reads on */
    const char *why = got == 0 ? "no auth line in time" : "no auth line";
    const struct auth_token *t = NULL;
    char *token = NULL;
    if (got == 1) {
        if (auth_line_token(buf + ls, end - ls, &token) == 0) {
            t = auth_token_check(g->tokens, token, strlen(token));
            /* a token with scope dry alone: its real lines are answered
             * forbidden, its dry ones served; with admin alone, every
             * event is forbidden, control lines served */
            why = !t ? "unknown token"
                  : !auth_allows(t->scopes, AUTH_EVENTS | AUTH_DRY | AUTH_ADMIN)
                      ? "the token lacks scopes events, dry and admin"
                      : NULL;
            free(token);
        }
    }
    if (!why) {
        *scopes = t->scopes;
        snprintf(who, wholen, "%s", t->name);
        return auth_taken(k, t->name, buf, len, le, pre, pre_len);
    }
    pthread_mutex_lock(&g->mu);
    int64_t delay = auth_throttle_fail(&g->throttle, k->peer, wall_ms());
    pthread_mutex_unlock(&g->mu);
    log_warn("gateway: connection from %s refused: %s", k->peer, why);
    if (delay > 0)
        nats_Sleep(delay);
    write_all(k->fd, AUTH_UNAUTHORIZED_LINE, strlen(AUTH_UNAUTHORIZED_LINE));
    return -1;
}

/* A tls: connection: its TLS terminated by a pipe (gateway_tls.c), whose
 * plain end becomes k->fd. 0, or -1 (logged; the client's socket closed). */
static int tls_open(struct conn *k, struct tls_pipe **pipe, char *cn, size_t cnlen)
{
    struct gateway *g = k->g;
    int plain = -1;
    char err[512];
    /* the pipe is given a copy of the socket: k->fd stays ours until it
     * is replaced under the lock, so a stop (which shuts k->fd down under
     * it, ending a handshake too) never reaches a number closed and
     * reused meanwhile */
    pthread_mutex_lock(&g->mu);
    int fd = k->fd;
    pthread_mutex_unlock(&g->mu);
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    int rc = copy < 0 ? (snprintf(err, sizeof(err), "dup: %s", strerror(errno)), -1)
                      : gateway_tls_start(g->tls_ctx, copy, AUTH_WAIT_MS, &plain, cn, cnlen, pipe,
                                          err, sizeof(err));
    pthread_mutex_lock(&g->mu);
    k->fd = plain; /* the client's socket is the pipe's (or closed) */
    close(fd);
    pthread_mutex_unlock(&g->mu);
    if (rc < 0)
        log_warn("gateway: TLS connection from %s: %s", k->peer, err);
    return rc;
}

static void *conn_main(void *arg)
{
    struct conn *k = arg;
    struct gateway *g = k->g;
    struct tls_pipe *pipe = NULL;
    char cn[160] = "";
    if (k->tls && tls_open(k, &pipe, cn, sizeof(cn)) < 0) {
        atomic_store(&k->done, 1);
        return NULL;
    }
    char *buf = xmalloc(FIRST_LINE_MAX);
    const char *pre = NULL;
    size_t pre_len = 0;
    int dup_fd = -1;
    FILE *out = NULL;
    unsigned scopes = 0;
    /* who sends (the shards' oplog, for forget and export): the token's
     * name, a Unix client's uid, or the peer */
    char who[160];
    struct ucred cr;
    socklen_t crlen = sizeof(cr);
    if (!k->tcp && getsockopt(k->fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) == 0)
        snprintf(who, sizeof(who), "uid:%u", (unsigned)cr.uid);
    else
        snprintf(who, sizeof(who), "%s", k->peer);
    if (authenticate(k, cn, buf, &pre, &pre_len, &scopes, who, sizeof(who)) == 0 &&
        (dup_fd = dup(k->fd)) >= 0 && (out = fdopen(dup_fd, "w"))) {
        const struct config *cfg = g->cfg;
        struct publish_limits lim = {cfg->max_event_bytes, cfg->max_future_ms, cfg->max_past_ms};
        struct publish_conn pc = {.pre = pre,
                                  .pre_len = pre_len,
                                  .flags = ingest_scope_flags(scopes),
                                  .control = auth_allows(scopes, AUTH_ADMIN) ? CONTROL_RUN
                                                                             : CONTROL_FORBIDDEN,
                                  .who = who};
        long ok = 0, dup = 0, bad = 0;
        char err[512] = "";
        if (cluster_publish(g->c, k->fd, &lim, &pc, out, &ok, &dup, &bad, err, sizeof(err)) < 0)
            log_warn("gateway: connection from %s: %s", k->peer, err);
        log_debug("gateway: connection from %s closed: %ld stored, %ld duplicates, %ld refused",
                  k->peer, ok, dup, bad);
    }
    if (out)
        fclose(out);
    else if (dup_fd >= 0)
        close(dup_fd);
    free(buf);
    shutdown(k->fd, SHUT_RDWR);
    gateway_tls_end(pipe); /* the last answers out, close_notify */
    atomic_store(&k->done, 1);
    return NULL;
}

/* Joins the connections that ended (all, with every). */
static void reap(struct gateway *g, int every)
{
    pthread_mutex_lock(&g->mu);
    struct conn **pp = &g->conns;
    while (*pp) {
        struct conn *k = *pp;
        if (!every && !atomic_load(&k->done)) {
            pp = &k->next;
            continue;
        }
        *pp = k->next;
        g->n_conns--;
        pthread_mutex_unlock(&g->mu);
        pthread_join(k->t, NULL);
        if (k->fd >= 0)
            close(k->fd);
        free(k);
        pthread_mutex_lock(&g->mu);
    }
    pthread_mutex_unlock(&g->mu);
}

static void take(struct gateway *g, size_t i)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    int fd = accept4(g->fds[i], (struct sockaddr *)&ss, &sl, SOCK_CLOEXEC);
    if (fd < 0) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
            log_warn("gateway: accept on %s: %s", g->cfg->listen[i], strerror(errno));
        if (errno == EMFILE || errno == ENFILE)
            nats_Sleep(100);
        return;
    }
    pthread_mutex_lock(&g->mu);
    int full = g->n_conns >= g->cfg->max_connections;
    pthread_mutex_unlock(&g->mu);
    if (full) {
        log_warn("gateway: max_connections (%d) reached: a connection on %s closed",
                 g->cfg->max_connections, g->cfg->listen[i]);
        close(fd);
        return;
    }
    struct conn *k = xcalloc(1, sizeof(*k));
    k->g = g;
    k->fd = fd;
    k->tcp = g->tcp[i];
    k->tls = g->tls[i];
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, k->peer, sizeof(k->peer));
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, k->peer, sizeof(k->peer));
    else
        snprintf(k->peer, sizeof(k->peer), "%s", g->cfg->listen[i]);
    if (pthread_create(&k->t, NULL, conn_main, k) != 0) {
        log_warn("gateway: no thread for a connection on %s", g->cfg->listen[i]);
        close(fd);
        free(k);
        return;
    }
    pthread_mutex_lock(&g->mu);
    k->next = g->conns;
    g->conns = k;
    g->n_conns++;
    pthread_mutex_unlock(&g->mu);
}

static void *accept_main(void *arg)
{
    struct gateway *g = arg;
    struct pollfd *pf = xcalloc(g->n + 1, sizeof(*pf));
    for (size_t i = 0; i < g->n; i++)
        pf[i] = (struct pollfd){.fd = g->fds[i], .events = POLLIN};
    pf[g->n] = (struct pollfd){.fd = g->wake[0], .events = POLLIN};
    for (;;) {
        int r = poll(pf, g->n + 1, 1000);
        if (r < 0 && errno != EINTR)
            break;
        if (pf[g->n].revents)
            break;
        for (size_t i = 0; i < g->n && r > 0; i++)
            if (pf[i].revents & POLLIN)
                take(g, i);
        reap(g, 0);
    }
    free(pf);
    return NULL;
}

static void gateway_free(struct gateway *g)
{
    for (size_t i = 0; i < g->n; i++) {
        if (g->fds[i] >= 0)
            close(g->fds[i]);
        if (g->paths[i]) {
            unlink(g->paths[i]);
            free(g->paths[i]);
        }
    }
    free(g->fds);
    free(g->tcp);
    free(g->tls);
    if (g->tls_ctx)
        SSL_CTX_free(g->tls_ctx);
    free(g->paths);
    if (g->wake[0] >= 0) {
        close(g->wake[0]);
        close(g->wake[1]);
    }
    cluster_gateway_http_stop(g->http);
    cluster_gateway_http_stop(g->metrics);
    auth_tokens_free(g->tokens);
    auth_throttle_free(&g->throttle);
    pthread_mutex_destroy(&g->mu);
    free(g);
}

int cluster_gateway_start(struct cluster *c, const struct config *cfg, gateway_metrics_fn metrics,
                          void *metrics_arg, struct gateway **out)
{
    *out = NULL;
    size_t n_listen = cfg->listen_written ? cfg->n_listen : 0;
    if (n_listen == 0 && !cfg->http && !cfg->metrics)
        return 0;
    struct gateway *g = xcalloc(1, sizeof(*g));
    g->c = c;
    g->cfg = cfg;
    g->wake[0] = g->wake[1] = -1;
    pthread_mutex_init(&g->mu, NULL);
    g->fds = xcalloc(n_listen + 1, sizeof(*g->fds));
    g->tcp = xcalloc(n_listen + 1, sizeof(*g->tcp));
    g->tls = xcalloc(n_listen + 1, sizeof(*g->tls));
    g->paths = xcalloc(n_listen + 1, sizeof(*g->paths));
    char err[512];
    if (cfg->tokens_file && !(g->tokens = auth_tokens_load(cfg->tokens_file, err, sizeof(err)))) {
        log_error("gateway: %s", err);
        goto fail;
    }
    for (size_t i = 0; i < n_listen; i++, g->n++) {
        struct addr a;
        g->fds[i] = -1;
        if (addr_parse(cfg->listen[i], &a, err, sizeof(err)) < 0 ||
            (g->fds[i] = addr_listen(&a, err, sizeof(err))) < 0) {
            log_error("gateway: listen %s: %s", cfg->listen[i], err);
            g->n++;
            goto fail;
        }
        g->tcp[i] = a.family != AF_UNIX;
        g->tls[i] = a.tls;
        if (a.tls && !g->tls_ctx &&
            !(g->tls_ctx = tls_server_ctx(cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca, err,
                                          sizeof(err)))) {
            log_error("gateway: listen %s: %s", cfg->listen[i], err);
            g->n++;
            goto fail;
        }
        if (a.family == AF_UNIX) {
            g->paths[i] = xstrdup(a.un.sun_path);
            if (addr_socket_perms(a.un.sun_path, (unsigned)cfg->socket_mode, cfg->socket_group, err,
                                  sizeof(err)) < 0) {
                log_error("gateway: %s", err);
                g->n++;
                goto fail;
            }
        }
        log_info("gateway: listening on %s", cfg->listen[i]);
    }
    if (pipe2(g->wake, O_CLOEXEC) < 0 || pthread_create(&g->accept_t, NULL, accept_main, g) != 0) {
        log_error("gateway: %s", strerror(errno));
        goto fail;
    }
    if ((cfg->http &&
         cluster_gateway_http_start(c, cfg, cfg->http, 0, metrics, metrics_arg, &g->http) < 0) ||
        (cfg->metrics && cluster_gateway_http_start(c, cfg, cfg->metrics, 1, metrics, metrics_arg,
                                                    &g->metrics) < 0)) {
        cluster_gateway_stop(g);
        return -1;
    }
    *out = g;
    return 0;
fail:
    gateway_free(g);
    return -1;
}

void cluster_gateway_stop(struct gateway *g)
{
    if (!g)
        return;
    ssize_t w = write(g->wake[1], "x", 1);
    (void)w;
    pthread_join(g->accept_t, NULL);
    /* clients still connected: their input ends here; what they sent is
     * published and answered first */
    pthread_mutex_lock(&g->mu);
    for (struct conn *k = g->conns; k; k = k->next)
        if (k->fd >= 0)
            shutdown(k->fd, SHUT_RD);
    pthread_mutex_unlock(&g->mu);
    /* a client that reads none of its answers would hold its connection's
     * thread in a write for good: after STOP_FLUSH_MS its socket is shut
     * down both ways (the write fails, the thread ends) */
    int64_t until = wall_ms() + STOP_FLUSH_MS;
    for (;;) {
        int left = 0;
        pthread_mutex_lock(&g->mu);
        for (struct conn *k = g->conns; k; k = k->next)
            left += !atomic_load(&k->done);
        pthread_mutex_unlock(&g->mu);
        if (!left || wall_ms() >= until)
            break;
        poll(NULL, 0, 50);
    }
    pthread_mutex_lock(&g->mu);
    for (struct conn *k = g->conns; k; k = k->next)
        if (!atomic_load(&k->done) && k->fd >= 0) {
            log_warn("gateway: %s still has answers to take after %d ms: its connection is "
                     "closed",
                     k->peer, STOP_FLUSH_MS);
            shutdown(k->fd, SHUT_RDWR);
        }
    pthread_mutex_unlock(&g->mu);
    reap(g, 1);
    gateway_free(g);
}
