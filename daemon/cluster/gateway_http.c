/* Cluster mode, the gateway's HTTP (spec 17 and 18; docs/protocol.md,
 * "HTTP"): a worker whose config names `http` (http or https, with
 * daemon.tls) takes POST /v1/events there
 * and answers each line of the body as `mktd publish` does, once
 * JetStream stored it (dry lines by their partition's owner; ?dry=1 and
 * ?explain=1 apply to every line; a token with scope dry alone gets its
 * real lines answered forbidden), POST /v1/forget and /v1/export (scope
 * admin, through the cluster: privacy.c), GET /v1/health and GET /metrics
 * (the worker's figures, from the worker).
 *
 * HTTP_THREADS threads share the listening socket, each with an event base
 * and an evhttp of its own: JetStream calls block, so a thread serves one
 * request at a time while the others take the next ones. Each thread has
 * its own auth gate (its failed attempts slow down its own answers).
 * Forgets and exports wait for the owners (up to takeover + 10 s): each
 * runs on a thread of its own (ADMIN_AT_ONCE at most; more are answered
 * 503, busy), and its answer is sent by the HTTP thread that took the
 * request, so that thread goes on serving events meanwhile. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "cluster/internal.h"
#include "config/config.h"
#include "lib/addr.h"
#include "lib/log.h"
#include "lib/util.h"
#include "net/admin.h"
#include "net/auth.h"
#include "net/ingest.h"
#include "net/tls.h"

#define HTTP_THREADS 4 /* `http`; `metrics` has one */
/* Forgets and exports served at once (each may wait for the owners up to
 * takeover + 10 s): the other threads stay free for events and health. */
#define ADMIN_AT_ONCE (HTTP_THREADS / 2)

/* A forget or an export being served on a thread of its own. */
struct admin_job {
    struct http_thread *t;
    struct evhttp_request *req; /* NULL once its connection closed */
    int forget;
    char *user;
    char who[160];
    struct sbuf b; /* the answer */
    int rc;
    int detached;           /* req left by its connection: ours to free */
    struct admin_job *next; /* in t->done */
};

struct http_thread {
    struct gateway_http *h;
    struct event_base *base;
    struct evhttp *http;
    struct auth_gate auth;
    struct event *stop_ev, *done_ev;
    int wake[2];            /* a byte when a job is done */
    pthread_mutex_t mu;     /* done */
    struct admin_job *done; /* answered by this thread */
    pthread_t t;
    int running, mu_ready;
};

struct gateway_http {
    struct cluster *c;
    const struct config *cfg;
    int fd;           /* the listening socket (each thread's evhttp has a dup) */
    SSL_CTX *tls_ctx; /* https: daemon.tls; NULL: plain http */
    int open;         /* `metrics`: no auth, GET /metrics and /v1/health alone */
    int n_threads;
    atomic_int partitions; /* the stream's, once checked (0: not yet) */
    atomic_int admin;      /* forgets and exports being served (admin_job) */
    atomic_int jobs;       /* admin threads still running */
    atomic_int stopping;   /* no new forget or export */
    gateway_metrics_fn metrics;
    void *metrics_arg;
    int stop[2]; /* readable once the gateway stops: every thread leaves */
    struct http_thread th[HTTP_THREADS];
};

static void reply(struct evhttp_request *req, int code, const char *type, const char *body,
                  size_t len)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", type);
    evhttp_send_reply(req, code,
                      code == 200   ? "OK"
                      : code == 202 ? "Accepted"
                      : code == 400 ? "Bad Request"
                                    : "Service Unavailable",
                      b);
    evbuffer_free(b);
}

static void on_events(struct evhttp_request *req, void *arg)
{
    struct http_thread *t = arg;
    struct gateway_http *h = t->h;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_send_error(req, 405, "POST only");
        return;
    }
    unsigned scopes;
    if (!auth_gate_http(&t->auth, req, AUTH_EVENTS | AUTH_DRY, &scopes))
        return; /* answered: 401 or 403 */
    int flags = ingest_query_flags(evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)));
    if (flags < 0) {
        evhttp_send_error(req, 400, "dry and explain take 1 or 0");
        return;
    }
    flags |= (int)ingest_scope_flags(scopes);
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(body);
    const struct config *cfg = h->cfg;
    char err[512] = "";
    /* checked once, not at every request */
    int partitions = atomic_load(&h->partitions);
    if (partitions <= 0 && (partitions = cluster_check_partitions(h->c, err, sizeof(err))) > 0)
        atomic_store(&h->partitions, partitions);
    struct publish_limits lim = {cfg->max_event_bytes, cfg->max_future_ms, cfg->max_past_ms};
    struct publish_conn pc = {.pre = n ? (const char *)evbuffer_pullup(body, -1) : "",
                              .pre_len = n,
                              .pre_only = 1,
                              .partitions = partitions,
                              .flags = (unsigned)flags};
    char *answers = NULL;
    size_t len = 0;
    long ok = 0, dup = 0, bad = 0;
    FILE *out = open_memstream(&answers, &len);
    int rc =
        out ? cluster_publish(h->c, -1, &lim, &pc, out, &ok, &dup, &bad, err, sizeof(err)) : -1;
    if (out)
        fclose(out);
    if (rc == 0) {
        reply(req, 200, "application/x-ndjson", answers, len);
    } else {
        /* what was stored is answered duplicate when the body comes again */
        log_warn("gateway: http: %s", err[0] ? err : strerror(errno));
        struct sbuf b = {0};
        sb_str(&b, "{\"status\":\"error\",\"error\":\"internal\",\"detail\":");
        sb_json_str_or_null(&b, err[0] ? err : "no memory");
        sb_str(&b, "}\n");
        reply(req, 503, "application/json", b.s, b.len);
        sb_free(&b);
    }
    free(answers);
}

/* The connection of a job's request went: the request with it. */
static void on_admin_gone(struct evhttp_connection *evcon, void *arg)
{
    (void)evcon;
    struct admin_job *j = arg;
    /* freed with the connection, or (a client's EOF before the answer)
     * left to whoever answers it */
    if (j->req && !evhttp_request_get_connection(j->req))
        j->detached = 1;
    else
        j->req = NULL;
}

/* The job no longer answers its request: the close callback goes, or the
 * request its connection left is freed. */
static void job_let_go(struct admin_job *j)
{
    if (!j->req)
        return;
    if (j->detached)
        evhttp_request_free(j->req);
    else
        evhttp_connection_set_closecb(evhttp_request_get_connection(j->req), NULL, NULL);
    j->req = NULL;
}

static void *admin_main(void *arg)
{
    struct admin_job *j = arg;
    struct http_thread *t = j->t;
    j->rc = cluster_control(t->h->c, j->forget, j->user, j->who, &j->b);
    pthread_mutex_lock(&t->mu);
    j->next = t->done;
    t->done = j;
    pthread_mutex_unlock(&t->mu);
    ssize_t w = write(t->wake[1], "x", 1);
    (void)w;
    atomic_fetch_sub(&t->h->jobs, 1);
    return NULL;
}

/* An admin request answered with error (and detail) at once. */
static void admin_refuse(struct evhttp_request *req, int code, const char *error,
                         const char *detail)
{
    struct sbuf b = {0};
    admin_error(&b, error, detail);
    reply(req, code, "application/json", b.s, b.len);
    sb_free(&b);
}

/* Jobs done: each answered (unless its client went), then freed. */
static void on_admin_done(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct http_thread *t = arg;
    char buf[64];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
    pthread_mutex_lock(&t->mu);
    struct admin_job *j = t->done;
    t->done = NULL;
    pthread_mutex_unlock(&t->mu);
    while (j) {
        struct admin_job *next = j->next;
        int code = j->rc == 0 ? 200 : j->rc == 1 ? 202 : 503; /* 1: a forget queued */
        if (code == 503)
            log_warn("gateway: http: %s: %.*s", j->forget ? "forget" : "export", (int)j->b.len - 1,
                     j->b.s);
        struct evhttp_request *req = j->detached ? NULL : j->req;
        job_let_go(j);
        if (req)
            reply(req, code, "application/json", j->b.s, j->b.len);
        atomic_fetch_sub(&t->h->admin, 1);
        sb_free(&j->b);
        free(j->user);
        free(j);
        j = next;
    }
}

/* POST /v1/forget and /v1/export (GET too for an export), scope admin:
 * the user as ?user=U or a body {"user":U}, as one daemon takes them; a
 * forget goes through the stream to every partition and is answered once
 * their owners applied it ("queued", 202, when some have not yet), an
 * export is asked of the owners (privacy.c); both on a thread of their
 * own (admin_main). */
static void on_admin(struct evhttp_request *req, struct http_thread *t, int forget)
{
    char who[160], *user;
    if (!admin_http_begin(&t->auth, req, forget ? ADMIN_FORGET : ADMIN_EXPORT, who, sizeof(who),
                          &user))
        return;
    if (!user) {
        admin_refuse(req, 400, "invalid", ADMIN_HTTP_USER_HELP);
        return;
    }
    /* counted before stopping is read: either the stop sees this job and
     * waits for it, or this sees the stop */
    atomic_fetch_add(&t->h->jobs, 1);
    int stopping = atomic_load(&t->h->stopping);
    if (stopping || atomic_fetch_add(&t->h->admin, 1) >= ADMIN_AT_ONCE) {
        if (!stopping) {
            atomic_fetch_sub(&t->h->admin, 1);
            evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        }
        atomic_fetch_sub(&t->h->jobs, 1);
        admin_refuse(req, 503, "internal",
                     stopping ? "stopping"
                              : "busy: as many forgets and exports as this gateway serves at "
                                "once are in progress; try again in a moment");
        free(user);
        return;
    }
    struct admin_job *j = xcalloc(1, sizeof(*j));
    j->t = t;
    j->req = req;
    j->forget = forget;
    j->user = user;
    snprintf(j->who, sizeof(j->who), "%s", who);
    evhttp_connection_set_closecb(evhttp_request_get_connection(req), on_admin_gone, j);
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &at, admin_main, j);
    pthread_attr_destroy(&at);
    if (rc != 0) {
        evhttp_connection_set_closecb(evhttp_request_get_connection(req), NULL, NULL);
        atomic_fetch_sub(&t->h->jobs, 1);
        atomic_fetch_sub(&t->h->admin, 1);
        admin_refuse(req, 503, "internal", "no thread to serve it");
        free(user);
        free(j);
    }
}

static void on_forget(struct evhttp_request *req, void *arg)
{
    on_admin(req, arg, 1);
}

static void on_export(struct evhttp_request *req, void *arg)
{
    on_admin(req, arg, 0);
}

static void on_health(struct evhttp_request *req, void *arg)
{
    struct http_thread *t = arg;
    unsigned scopes;
    if (!t->h->open && !auth_gate_http(&t->auth, req, AUTH_READ, &scopes))
        return;
    int up = natsConnection_Status(t->h->c->nc) == NATS_CONN_STATUS_CONNECTED;
    struct sbuf b = {0};
    sb_fmt(&b, "{\"status\":\"%s\",\"worker\":", up ? "ok" : "unavailable");
    sb_json_str_or_null(&b, t->h->cfg->cluster.worker);
    sb_fmt(&b, ",\"nats\":\"%s\"}\n", up ? "connected" : "not connected");
    reply(req, up ? 200 : 503, "application/json", b.s, b.len);
    sb_free(&b);
}

static void on_metrics(struct evhttp_request *req, void *arg)
{
    struct http_thread *t = arg;
    unsigned scopes;
    if (!t->h->open && !auth_gate_http(&t->auth, req, AUTH_READ, &scopes))
        return;
    struct sbuf b = {0};
    if (t->h->metrics)
        t->h->metrics(t->h->metrics_arg, &b);
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, b.s ? b.s : "", b.len);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
    sb_free(&b);
}

/* Stop: the answers written last get 100 ms to go out. */
static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct http_thread *t = arg;
    event_del(t->stop_ev);
    struct timeval tv = {0, 100000};
    event_base_loopexit(t->base, &tv);
}

static void *thread_main(void *arg)
{
    struct http_thread *t = arg;
    event_base_dispatch(t->base);
    return NULL;
}

/* The loops have stopped and no admin thread runs: jobs not answered go
 * (their requests go with the evhttp). */
static void thread_drop_jobs(struct http_thread *t)
{
    struct admin_job *j = t->done;
    t->done = NULL;
    while (j) {
        struct admin_job *next = j->next;
        job_let_go(j);
        sb_free(&j->b);
        free(j->user);
        free(j);
        j = next;
    }
}

static void thread_free(struct http_thread *t)
{
    thread_drop_jobs(t);
    if (t->stop_ev)
        event_free(t->stop_ev);
    if (t->done_ev)
        event_free(t->done_ev);
    if (t->http)
        evhttp_free(t->http);
    if (t->base) {
        auth_gate_free(&t->auth);
        event_base_free(t->base);
    }
    for (int i = 0; i < 2; i++)
        if (t->wake[i] >= 0)
            close(t->wake[i]);
    if (t->mu_ready)
        pthread_mutex_destroy(&t->mu);
    memset(t, 0, sizeof(*t));
    t->wake[0] = t->wake[1] = -1;
}

static int thread_start(struct gateway_http *h, struct http_thread *t)
{
    char err[512];
    t->h = h;
    pthread_mutex_init(&t->mu, NULL);
    t->mu_ready = 1;
    if (pipe2(t->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        t->wake[0] = t->wake[1] = -1;
        return -1;
    }
    if (!(t->base = event_base_new()))
        return -1;
    auth_gate_init(&t->auth, t->base);
    if (auth_gate_load(&t->auth, h->open ? NULL : h->cfg->tokens_file, err, sizeof(err)) < 0) {
        log_error("gateway: http: %s", err);
        return -1;
    }
    t->http = evhttp_new(t->base);
    int fd = dup(h->fd);
    if (!t->http || fd < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    evhttp_set_max_body_size(t->http, (ev_ssize_t)h->cfg->max_http_body);
    evhttp_set_allowed_methods(t->http, EVHTTP_REQ_GET | (h->open ? 0 : EVHTTP_REQ_POST));
    if (!h->open) {
        evhttp_set_cb(t->http, "/v1/events", on_events, t);
        evhttp_set_cb(t->http, "/v1/forget", on_forget, t);
        evhttp_set_cb(t->http, "/v1/export", on_export, t);
    }
    evhttp_set_cb(t->http, "/v1/health", on_health, t);
    evhttp_set_cb(t->http, "/metrics", on_metrics, t);
    if (h->tls_ctx)
        evhttp_set_bevcb(t->http, tls_http_bevcb, &h->tls_ctx);
    if (!evhttp_accept_socket_with_handle(t->http, fd)) {
        close(fd);
        return -1;
    }
    t->stop_ev = event_new(t->base, h->stop[0], EV_READ | EV_PERSIST, on_stop, t);
    if (!t->stop_ev || event_add(t->stop_ev, NULL) < 0)
        return -1;
    t->done_ev = event_new(t->base, t->wake[0], EV_READ | EV_PERSIST, on_admin_done, t);
    if (!t->done_ev || event_add(t->done_ev, NULL) < 0)
        return -1;
    if (pthread_create(&t->t, NULL, thread_main, t) != 0)
        return -1;
    t->running = 1;
    return 0;
}

int cluster_gateway_http_start(struct cluster *c, const struct config *cfg, const char *addr,
                               int open, gateway_metrics_fn metrics, void *metrics_arg,
                               struct gateway_http **out)
{
    *out = NULL;
    struct gateway_http *h = xcalloc(1, sizeof(*h));
    h->c = c;
    h->cfg = cfg;
    h->open = open;
    h->n_threads = open ? 1 : HTTP_THREADS;
    h->metrics = metrics;
    h->metrics_arg = metrics_arg;
    h->stop[0] = h->stop[1] = -1;
    for (int i = 0; i < HTTP_THREADS; i++)
        h->th[i].wake[0] = h->th[i].wake[1] = -1;
    char spec[300], err[512];
    int https = 0;
    snprintf(spec, sizeof(spec), "tcp:%s", config_http_hostport(addr, &https));
    struct addr a;
    if (addr_parse(spec, &a, err, sizeof(err)) < 0 ||
        (h->fd = addr_listen(&a, err, sizeof(err))) < 0) {
        log_error("gateway: http %s: %s", addr, err);
        h->fd = -1;
        goto fail;
    }
    evutil_make_socket_nonblocking(h->fd);
    if (https && !(h->tls_ctx = tls_server_ctx(cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca, err,
                                               sizeof(err)))) {
        log_error("gateway: http %s: %s", addr, err);
        goto fail;
    }
    if (pipe2(h->stop, O_CLOEXEC) < 0)
        goto fail;
    for (int i = 0; i < h->n_threads; i++) {
        if (thread_start(h, &h->th[i]) < 0) {
            log_error("gateway: http %s: a thread could not start", addr);
            goto fail;
        }
    }
    log_info("gateway: %s on %s", open ? "metrics" : "http", addr);
    *out = h;
    return 0;
fail:
    cluster_gateway_http_stop(h);
    return -1;
}

void cluster_gateway_http_stop(struct gateway_http *h)
{
    if (!h)
        return;
    /* a forget or an export still waiting for the owners ends within its
     * own limits and is answered; no new one starts */
    atomic_store(&h->stopping, 1);
    while (atomic_load(&h->jobs) > 0)
        usleep(10000);
    /* a request being served is answered first: each thread leaves its
     * loop once back in it (and its last answers written) */
    if (h->stop[1] >= 0) {
        ssize_t w = write(h->stop[1], "x", 1);
        (void)w;
    }
    for (int i = 0; i < HTTP_THREADS; i++)
        if (h->th[i].running)
            pthread_join(h->th[i].t, NULL);
    while (atomic_load(&h->jobs) > 0) /* (none should be left) */
        usleep(10000);
    for (int i = 0; i < HTTP_THREADS; i++)
        thread_free(&h->th[i]);
    if (h->fd >= 0)
        close(h->fd);
    SSL_CTX_free(h->tls_ctx);
    if (h->stop[0] >= 0) {
        close(h->stop[0]);
        close(h->stop[1]);
    }
    free(h);
}
