/*
 * The daemon's event loop (libevent, one thread):
 *
 *   accept -> bufferevent read -> frame lines (size limit) -> ingest_line
 *   (decode, engine, into the open batch) -> answers wait in the sink ->
 *   commit (batch full, or the loop has nothing more to read) -> answers
 *   written back in order.
 *
 * A sink is where answers go: a socket connection or an HTTP request.
 * Backpressure: a batch never grows past commit.max_batch (it commits in
 * the middle of reading), and a connection whose client does not read its
 * answers stops being read until they drain.
 */
#define _GNU_SOURCE
#include "net/server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

#include "config/diff.h"
#include "config/lint.h"
#include "engine/engine.h"
#include "engine/plugins.h"
#include "lib/addr.h"
#include "lib/log.h"
#include "lib/notify.h"
#include "net/admin.h"
#include "net/auth.h"
#include "net/ingest.h"
#include "net/metrics.h"
#include "net/tls.h"
#include "out/out.h"
#include "out/retention.h"
#include "store/dblock.h"
#include "store/privacy.h"

#define OUT_HIGH (4u << 20)    /* stop reading a client with this much unread */
#define OUT_LOW (1u << 20)     /* and resume below this */
#define STOP_FLUSH_MS 4000     /* on stop, time given to clients to take their answers */
#define AUTH_LINE_TIMEOUT_S 10 /* from accept to the auth line (and a TLS handshake) */

struct server;

struct sink {
    struct server *srv;
    struct evbuffer *pending;   /* answers waiting for the commit */
    int dirty;                  /* in srv->dirty */
    int failed;                 /* a commit of its events failed */
    uint32_t counts[IN__COUNT]; /* statuses of the pending answers */
    unsigned flags;             /* INGEST_* applied to each line (HTTP ?dry=1&explain=1) */
    struct sink *next_dirty;
    void (*flush)(struct sink *); /* pending answers are committed: send them */
};

struct conn {
    struct sink sink; /* first */
    struct bufferevent *bev;
    struct framer fr; /* lines out of the byte stream */
    int closing;      /* peer finished sending: close once answered */
    int dead;         /* peer gone: free once not dirty */
    int paused;       /* not reading: client is not reading its answers */
    int busy;         /* inside conn_read_lines: do not free */
    struct conn *prev, *next;
    /* spec 14: who it is */
    int tls;                /* accepted on a tls: listener */
    int need_auth;          /* its first line must be {"auth":"TOKEN"} */
    int rejected;           /* failed to authenticate: answered, then closed */
    struct auth_wait *wait; /* its unauthorized answer, held back */
    char token[129];        /* the token's name once authenticated ("": none) */
    unsigned char hash[32]; /* its SHA-256 (by_cert: unused) */
    int by_cert;            /* authenticated by a client certificate's CN */
    char peer[64];          /* address, for the log and the throttle */
    int port;
    int eof;              /* the peer finished sending */
    int handshaken;       /* its TLS handshake is done */
    int spoke;            /* a non-blank line was taken */
    int shut;             /* rejected: our side is shut, lingering */
    struct event *linger; /* rejected: the longest we wait for the peer to go */
    unsigned scopes;      /* for control lines: AUTH_ALL on a Unix socket, else the token's */
    char who[136];        /* who sends them, for oplog: "uid:N" or the token's name */
};

struct http_req {
    struct sink sink; /* first */
    struct evhttp_request *req;
};

struct server {
    struct event_base *base;
    char *config_path;
    char reload_refused[512]; /* why reload_allowed said no */
    struct store *st;
    struct dblock *lock; /* one daemon per database */
    struct engine *eng;
    struct evconnlistener **ls;
    unsigned char *ls_kind; /* per listener: LS_* */
    size_t n_ls;
    struct evhttp *http;
    struct evhttp *metrics_http; /* daemon.metrics: /metrics and /v1/health, no auth */
    struct auth_gate auth;       /* daemon.auth: tokens, failed attempts */
    SSL_CTX *tls_ctx;            /* daemon.tls, once loaded */
    struct conn *conns;
    int n_conns;
    int listeners_off;
    struct sink *dirty;
    struct event *commit_ev, *timer_ev, *watchdog_ev, *stop_ev;
    struct event *accept_retry_ev; /* listeners paused after accept() failed */
    int64_t accept_warned_at;
    struct event *sig_hup, *sig_term, *sig_int;
    int stopping;
    int64_t stop_deadline;
    int64_t timer_retry_at; /* after a failed timer, not before this */
    int64_t dirty_t0;       /* when the first answer of those waiting came (us) */
    int sync_full;          /* commit.synchronous in force */
    /* the database cannot be written (spec section 12) */
    int unwritable;
    int64_t unwritable_since;    /* wall ms */
    int64_t unwritable_t0;       /* monotonic us */
    uint64_t unwritable_fails0;  /* store_write_failures when it began */
    char unwritable_reason[160]; /* the last failure's */
    struct event *probe_ev;      /* tries a write while another process holds the lock */
    int *act_fds;                /* sockets passed by the service manager, -1 once taken */
    size_t n_act_fds;
    struct metrics m;
    struct outs *outs; /* webhook outputs (out/out.h) */
    struct retention *retention;
    /* reports made on threads of their own (http_report) */
    int report_pipe[2];      /* finished jobs come back through it */
    struct event *report_ev; /* its read side */
    int reports_running;
};

static const struct config *cfg_of(struct server *s)
{
    return engine_config(s->eng);
}

/* RELOADING=1 with the CLOCK_MONOTONIC time the reload began, as systemd
 * expects of Type=notify-reload services (older versions ignore it). */
static void notify_reloading(void)
{
#ifdef HAVE_SYSTEMD
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
               (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000);
#endif
}

/* ---- answers and commits ---- */

static void mark_dirty(struct sink *k)
{
    if (k->dirty)
        return;
    if (!k->srv->dirty)
        k->srv->dirty_t0 = metrics_now_us();
    k->dirty = 1;
    k->next_dirty = k->srv->dirty;
    k->srv->dirty = k;
    event_active(k->srv->commit_ev, 0, 0);
}

static void reschedule_timer(struct server *s);

/* The sink's pending answers are sent: their statuses count. */
static void count_answers(struct sink *k)
{
    for (int i = 0; i < IN__COUNT; i++) {
        k->srv->m.events[i] += k->counts[i];
        k->counts[i] = 0;
    }
}

/* ---- a database that cannot be written ---- */

/* While the database cannot be written (another process holds its write
 * lock, the disk is full, an I/O error), the loop goes on: each event
 * tries and fails fast (answered internal), everyone else is served, and
 * the state is logged when it starts and when it ends, shown by
 * /v1/health (503) and /metrics. It ends at the first commit that works. */
#define LOCK_PATIENCE_US 100000 /* a lock held longer than this fails the batch */
#define PROBE_MS 200            /* while locked: a write is tried this often */

static void db_failed(struct server *s)
{
    int locked;
    const char *msg;
    uint64_t fails = store_write_failures(s->st, &locked, &msg);
    snprintf(s->unwritable_reason, sizeof(s->unwritable_reason), "%s",
             *msg ? msg : "commit failed");
    if (!s->unwritable) {
        s->unwritable = 1;
        s->m.db_unwritable = 1;
        s->unwritable_since = wall_ms();
        s->unwritable_t0 = metrics_now_us();
        s->unwritable_fails0 = fails ? fails - 1 : 0;
        store_lock_patience(s->st, 0);
        log_error("database %s cannot be written (%s): events are answered internal until a "
                  "write succeeds",
                  cfg_of(s)->database, s->unwritable_reason);
    }
    /* wall-clock timers wait too, rather than fail again at once */
    s->timer_retry_at = wall_ms() + 1000;
    /* A lock held by another process says nothing when it goes: a write is
     * tried now and then, so the state ends without waiting for an event.
     * (Other failures end at the next commit of events that works.) */
    if (locked && !evtimer_pending(s->probe_ev, NULL)) {
        struct timeval tv = {0, PROBE_MS * 1000};
        evtimer_add(s->probe_ev, &tv);
    }
}

static void db_written(struct server *s)
{
    if (!s->unwritable)
        return;
    s->unwritable = 0;
    s->m.db_unwritable = 0;
    store_lock_patience(s->st, LOCK_PATIENCE_US);
    evtimer_del(s->probe_ev);
    log_info("database %s can be written again, after %.1f s and %llu failed writes",
             cfg_of(s)->database, (double)(metrics_now_us() - s->unwritable_t0) / 1e6,
             (unsigned long long)(store_write_failures(s->st, NULL, NULL) - s->unwritable_fails0));
}

/* An empty write transaction, between batches: does the lock come? */
static void probe_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    if (!s->unwritable)
        return;
    if (engine_batch_size(s->eng)) { /* its commit tells */
        struct timeval tv = {0, PROBE_MS * 1000};
        evtimer_add(s->probe_ev, &tv);
        return;
    }
    if (store_try_write(s->st) == 0) {
        db_written(s);
        return;
    }
    db_failed(s);
}

/* Commits the open batch and sends every waiting answer. */
static void commit_and_flush(struct server *s)
{
    int n = engine_batch_size(s->eng);
    if (n > 0) {
        int64_t t0 = metrics_now_us();
        int rc = engine_commit(s->eng);
        metrics_commit(&s->m, n, metrics_now_us() - t0, rc >= 0);
        uint64_t acted = s->m.actions_committed;
        if (rc >= 0)
            metrics_actions_update(&s->m, s->eng, s->st);
        if (s->m.actions_committed != acted)
            outs_wake(s->outs); /* deliver them */
        if (rc == 0)            /* 1: nothing was written, which says nothing */
            db_written(s);
        if (rc < 0) {
            db_failed(s);
            /* Nothing of the batch happened: no answer may say ok (each
             * sink's flush says so in its own way). */
            for (struct sink *k = s->dirty; k; k = k->next_dirty)
                k->failed = 1;
        }
    }
    /* reverse the list: older sinks first (not required, but kind) */
    struct sink *k = s->dirty, *rev = NULL;
    s->dirty = NULL;
    while (k) {
        struct sink *next = k->next_dirty;
        k->next_dirty = rev;
        rev = k;
        k = next;
    }
    while (rev) {
        struct sink *next = rev->next_dirty;
        rev->dirty = 0;
        rev->next_dirty = NULL;
        rev->flush(rev);
        rev = next;
    }
    reschedule_timer(s);
}

static void commit_cb(evutil_socket_t fd, short what, void *arg)
{
    commit_and_flush(arg);
}

/* Commits when the batch is full, or when answers have waited
 * max_delay_ms while reads kept coming (answers that need no commit, such
 * as invalid_json, go out with the next commit too). */
static void commit_if_due(struct server *s)
{
    if (s->dirty && (engine_batch_size(s->eng) >= cfg_of(s)->max_batch ||
                     metrics_now_us() - s->dirty_t0 >= (int64_t)cfg_of(s)->max_delay_ms * 1000))
        commit_and_flush(s);
}

/* One line into the batch. */
static void take_line(struct sink *k, const char *line, size_t len)
{
    struct server *s = k->srv;
    uint64_t fails = store_write_failures(s->st, NULL, NULL);
    enum ingest_status st = ingest_line(s->eng, line, len, k->flags | INGEST_LIVE, k->pending);
    if (store_write_failures(s->st, NULL, NULL) != fails)
        db_failed(s); /* the batch could not begin */
    if (st == IN_NONE)
        return;
    k->counts[st]++;
    mark_dirty(k);
}

/* ---- wall-clock timers ---- */

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    uint64_t fails = store_write_failures(s->st, NULL, NULL);
    if (engine_advance(s->eng, wall_ms()) < 0) {
        if (store_write_failures(s->st, NULL, NULL) != fails)
            db_failed(s); /* the batch could not begin */
        else
            log_error("firing timers failed; they will be tried again in 1 s");
        s->timer_retry_at = wall_ms() + 1000;
    }
    commit_and_flush(s);
}

static void reschedule_timer(struct server *s)
{
    if (engine_clock_event(s->eng) || s->stopping)
        return;
    if (engine_next_due(s->eng) == INT64_MAX) {
        evtimer_del(s->timer_ev);
        return;
    }
    int64_t next = engine_next_due(s->eng);
    int64_t due = next > s->timer_retry_at ? next : s->timer_retry_at;
    int64_t delay = due - wall_ms();
    if (delay < 0)
        delay = 0;
    if (delay > 3600000)
        delay = 3600000;
    struct timeval tv = {.tv_sec = delay / 1000, .tv_usec = (delay % 1000) * 1000};
    evtimer_add(s->timer_ev, &tv);
}

/* ---- socket connections ---- */

static void conn_free(struct conn *c)
{
    struct server *s = c->sink.srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    auth_wait_cancel(&s->auth, c->wait);
    if (c->linger)
        event_free(c->linger);
    if (c->tls && !c->dead && !c->shut)
        tls_close_notify(c->bev);
    bufferevent_free(c->bev);
    evbuffer_free(c->sink.pending);
    free(c);
    s->n_conns--;
    s->m.connections = s->n_conns;
    if (s->listeners_off && !s->stopping && s->n_conns < cfg_of(s)->max_connections) {
        for (size_t i = 0; i < s->n_ls; i++)
            evconnlistener_enable(s->ls[i]);
        s->listeners_off = 0;
    }
}

#define LINGER_MS 2000

static void linger_cb(evutil_socket_t fd, short what, void *arg);
static void conn_maybe_close(struct conn *c);

/* A rejected connection: once its last answer is out, our side is shut
 * (TLS: close_notify, then FIN) and what the peer still sends is read and
 * dropped until it goes (or LINGER_MS pass). Closing with unread input
 * would reset the connection, and the peer could lose the answer. */
static void conn_linger(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    if (c->wait || evbuffer_get_length(bufferevent_get_output(c->bev)))
        return; /* the answer is held back, or not written yet */
    if (c->eof) {
        conn_free(c);
        return;
    }
    if (c->shut)
        return;
    c->shut = 1;
    if (c->tls)
        tls_close_notify(c->bev);
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    bufferevent_enable(c->bev, EV_READ);
    c->linger = evtimer_new(c->sink.srv->base, linger_cb, c);
    struct timeval tv = {LINGER_MS / 1000, (LINGER_MS % 1000) * 1000};
    evtimer_add(c->linger, &tv);
}

static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    c->dead = 1;
    conn_maybe_close(c);
}

static void conn_maybe_close(struct conn *c)
{
    if (c->sink.dirty || c->busy)
        return;
    if (c->rejected && !c->dead) {
        conn_linger(c);
        return;
    }
    if (c->dead || (c->closing && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 &&
                    evbuffer_get_length(bufferevent_get_input(c->bev)) == 0))
        conn_free(c);
}

/* One framing step's outcome, for any sink. */
static void take_frame(struct sink *k, enum frame fr, const char *line, size_t len)
{
    struct server *s = k->srv;
    if (fr == FRAME_LINE) {
        take_line(k, line, len);
    } else if (fr == FRAME_TOO_LARGE) {
        ingest_too_large(k->pending, cfg_of(s)->max_event_bytes);
        k->counts[IN_TOO_LARGE]++;
        mark_dirty(k);
    }
    commit_if_due(s);
}

/* ---- who a connection is (spec 14; the rules live in net/auth.c) ---- */

static void conn_authed(struct conn *c, const struct auth_token *t, int by_cert)
{
    c->need_auth = 0;
    c->by_cert = by_cert;
    snprintf(c->token, sizeof(c->token), "%s", t->name);
    memcpy(c->hash, t->hash, sizeof(c->hash));
    c->scopes = t->scopes;
    snprintf(c->who, sizeof(c->who), "%s", t->name);
    c->sink.flags = ingest_scope_flags(t->scopes);
    bufferevent_set_timeouts(c->bev, NULL, NULL);
    log_debug("connection from %s port %d: authenticated as %s%s", c->peer, c->port, t->name,
              by_cert ? " (client certificate)" : "");
}

/* The held-back (or immediate) answer to a failed attempt: then closed. */
static void conn_reject(void *arg)
{
    static const char no[] = AUTH_UNAUTHORIZED_LINE;
    struct conn *c = arg;
    c->wait = NULL;
    if (c->dead) {
        conn_maybe_close(c);
        return;
    }
    struct evbuffer *in = bufferevent_get_input(c->bev);
    evbuffer_drain(in, evbuffer_get_length(in));
    bufferevent_write(c->bev, no, sizeof(no) - 1);
    c->closing = 1;
    conn_maybe_close(c);
}

static void conn_fail(struct conn *c, const char *what)
{
    struct server *s = c->sink.srv;
    c->need_auth = 0;
    c->rejected = 1;
    bufferevent_disable(c->bev, EV_READ);
    c->wait =
        auth_gate_fail(&s->auth, c->peer, c->port, c->tls ? "tls" : "tcp", what, conn_reject, c);
}

/* The first line of a connection that must authenticate. */
static void conn_auth_line(struct conn *c, enum frame fr, const char *line, size_t len)
{
    const struct auth_token *t;
    const char *what;
    int rc = fr == FRAME_LINE ? auth_gate_line(&c->sink.srv->auth, line, len, &t, &what)
                              : (what = "the first line is too long", -1);
    if (rc < 0) {
        conn_fail(c, what);
    } else if (rc > 0) {
        conn_authed(c, t, 0);
        c->spoke = 1;
        struct sbuf b = {0};
        auth_ok_line(t->name, &b);
        bufferevent_write(c->bev, b.s, b.len);
        sb_free(&b);
    } /* else a blank line before it */
}

/* Where no token is needed (a Unix socket, no daemon.auth, a client
 * certificate), an auth line as the first line is answered ok (with the
 * certificate's token name, else null) and ignored: clients may carry
 * their tokens before auth is turned on. 1 when line was one. */
static int conn_auth_echo(struct conn *c, enum frame fr, const char *line, size_t len)
{
    if (c->spoke)
        return 0;
    int kind = fr == FRAME_LINE ? auth_line_kind(line, len) : -1;
    if (kind == 0)
        return 0; /* blank: no answer, not the first line yet */
    c->spoke = 1;
    if (kind < 0)
        return 0;
    struct sbuf b = {0};
    auth_ok_line(c->token[0] ? c->token : NULL, &b);
    bufferevent_write(c->bev, b.s, b.len);
    sb_free(&b);
    return 1;
}

/* A TLS handshake is done: a verified client certificate names its token. */
static void conn_tls_identity(struct conn *c)
{
    struct server *s = c->sink.srv;
    char cn[256];
    if (!c->need_auth)
        return;
    const struct auth_token *t = auth_gate_cert(&s->auth, c->bev, cn, sizeof(cn));
    if (t) {
        conn_authed(c, t, 1);
    } else if (cn[0]) {
        char what[320];
        snprintf(what, sizeof(what), "client certificate CN '%s' names no token", cn);
        conn_fail(c, what);
    }
}

/* After a reload: connections follow their token's new scopes; one whose
 * token is gone is closed once its answers are out. */
static void conns_recheck(struct server *s)
{
    struct conn *next;
    for (struct conn *c = s->conns; c; c = next) {
        next = c->next; /* c may be freed */
        if (!c->token[0] || c->dead || c->rejected)
            continue;
        const struct auth_token *t = c->by_cert ? auth_token_named(s->auth.tokens, c->token)
                                                : auth_token_by_hash(s->auth.tokens, c->hash);
        if (t && strcmp(t->name, c->token) == 0) {
            c->sink.flags = ingest_scope_flags(t->scopes);
            c->scopes = t->scopes;
            continue;
        }
        log_warn("connection from %s port %d: token %s is no longer in the tokens file; closed",
                 c->peer, c->port, c->token);
        c->token[0] = 0;
        c->rejected = 1;
        c->closing = 1;
        bufferevent_disable(c->bev, EV_READ);
        struct evbuffer *in = bufferevent_get_input(c->bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        conn_maybe_close(c);
    }
}

/* A control line (net/admin.h): forget or export, from a Unix socket
 * (its clients are admins by the socket's permissions) or a token with
 * scope admin, answered in its place among the connection's answers. 1
 * when line was one. */
static int conn_admin_line(struct conn *c, enum frame fr, const char *line, size_t len)
{
    char *user;
    const char *why;
    enum admin_op op = fr == FRAME_LINE ? admin_line(line, len, &user, &why) : ADMIN_NONE;
    if (op == ADMIN_NONE)
        return 0;
    struct server *s = c->sink.srv;
    struct sbuf b = {0};
    if (!user)
        admin_error(&b, "invalid", why);
    else if (!(c->scopes & AUTH_ADMIN))
        admin_error(&b, "forbidden",
                    "forget and export need a Unix socket or a token with scope admin");
    else if (s->stopping)
        admin_error(&b, "internal", "stopping");
    else {
        commit_and_flush(s); /* the answers before it go first */
        admin_run(s->eng, op, user, c->who, &b);
        reschedule_timer(s);
    }
    evbuffer_add(c->sink.pending, b.s, b.len);
    mark_dirty(&c->sink);
    commit_if_due(s);
    sb_free(&b);
    free(user);
    return 1;
}

/* Takes every line the connection has buffered (at end of stream, the last
 * one without its newline too), unless its client is behind on answers. */
static void conn_read_lines(struct conn *c, int eof)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    c->fr.max = cfg_of(c->sink.srv)->max_event_bytes;
    c->busy++;
    while (!c->dead && !c->rejected) {
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) > OUT_HIGH) {
            if (!c->paused) {
                c->paused = 1;
                bufferevent_disable(c->bev, EV_READ);
            }
            break;
        }
        size_t len, drain;
        struct evbuffer_ptr p = evbuffer_search(in, "\n", 1, NULL);
        enum frame fr = framer_step(&c->fr, evbuffer_get_length(in), p.pos, eof, &len, &drain);
        if (fr == FRAME_NONE)
            break;
        const char *line =
            fr == FRAME_LINE ? (const char *)evbuffer_pullup(in, (ssize_t)len) : NULL;
        if (c->need_auth)
            conn_auth_line(c, fr, line, len);
        else if (!conn_auth_echo(c, fr, line, len) && !conn_admin_line(c, fr, line, len))
            take_frame(&c->sink, fr, line, len);
        if (c->rejected)
            break; /* the input was dropped */
        evbuffer_drain(in, drain);
    }
    c->busy--;
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
    conn_read_lines(arg, 0);
    conn_maybe_close(arg);
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->paused && evbuffer_get_length(bufferevent_get_output(bev)) <= OUT_LOW) {
        c->paused = 0;
        if (!c->closing)
            bufferevent_enable(bev, EV_READ);
        conn_read_lines(c, c->closing);
    }
    conn_maybe_close(c);
}

/* A failed attempt whose answer has gone already. */
static void answered(void *arg) {}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    if (what & BEV_EVENT_CONNECTED) { /* a TLS handshake is done */
        c->handshaken = 1;
        conn_tls_identity(c);
        return;
    }
    if (c->tls && (what & BEV_EVENT_ERROR)) {
        char why[256], what_s[300];
        tls_bev_error(bev, why, sizeof(why));
        if (!c->handshaken && cfg_of(c->sink.srv)->tls_client_ca) {
            /* no certificate, or one client_ca did not sign: a failed
             * attempt (logged, counted, and it counts towards the
             * address's free ones; the handshake's alert was its answer,
             * which cannot wait) */
            snprintf(what_s, sizeof(what_s), "tls handshake: %s", why);
            auth_gate_fail(&c->sink.srv->auth, c->peer, c->port, "tls", what_s, answered, NULL);
        } else {
            log_msg(c->handshaken ? MKTD_LOG_DEBUG : MKTD_LOG_INFO, NULL,
                    "tls connection from %s port %d: %s", c->peer, c->port, why);
        }
    }
    if (what & BEV_EVENT_EOF) {
        c->eof = 1;
        c->closing = 1;
        bufferevent_disable(bev, EV_READ);
        conn_read_lines(c, 1); /* the last line may lack its newline */
        conn_maybe_close(c);
    } else if (what & (BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)) {
        if ((what & BEV_EVENT_TIMEOUT) && c->need_auth)
            log_info("connection from %s port %d: no auth line within %d s; closed", c->peer,
                     c->port, AUTH_LINE_TIMEOUT_S);
        c->dead = 1; /* its answers have nowhere to go; its events stay */
        bufferevent_disable(bev, EV_READ | EV_WRITE);
        conn_maybe_close(c);
    }
}

/* The sink's batch was not committed: each of its events is answered with
 * an error, naming why, so that it may be sent again. */
static void sink_uncommitted(struct sink *k)
{
    if (!k->failed)
        return;
    const char *why;
    store_write_failures(k->srv->st, NULL, &why);
    char detail[256];
    snprintf(detail, sizeof(detail), "not committed (%s); nothing of it was kept: send it again",
             *why ? why : "see the log");
    int n = ingest_uncommitted(k->pending, detail);
    k->counts[IN_INTERNAL] += (uint32_t)n;
    k->counts[IN_OK] = k->counts[IN_DUPLICATE] = 0;
    k->failed = 0;
}

static void conn_flush(struct sink *k)
{
    struct conn *c = (struct conn *)k;
    sink_uncommitted(k);
    count_answers(k);
    if (!c->dead)
        bufferevent_write_buffer(c->bev, k->pending);
    else
        evbuffer_drain(k->pending, evbuffer_get_length(k->pending));
    conn_maybe_close(c);
}

enum { LS_TCP, LS_UNIX, LS_TLS, LS_UNIX_PASSED /* by the service manager */ };

static void peer_name(const struct sockaddr *sa, int len, char *buf, size_t buflen, int *port)
{
    *port = 0;
    snprintf(buf, buflen, "unix");
    if (sa && sa->sa_family == AF_INET && len >= (int)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const void *)sa;
        evutil_inet_ntop(AF_INET, &in->sin_addr, buf, buflen);
        *port = ntohs(in->sin_port);
    } else if (sa && sa->sa_family == AF_INET6 && len >= (int)sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        evutil_inet_ntop(AF_INET6, &in6->sin6_addr, buf, buflen);
        *port = ntohs(in6->sin6_port);
    }
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct server *s = arg;
    if (s->stopping) {
        evutil_closesocket(fd);
        return;
    }
    int kind = LS_TCP;
    for (size_t i = 0; i < s->n_ls; i++)
        if (s->ls[i] == l)
            kind = s->ls_kind[i];
    struct bufferevent *bev = kind == LS_TLS
                                  ? tls_bev_accept(s->base, s->tls_ctx, fd)
                                  : bufferevent_socket_new(s->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        log_error("accept: cannot set up the connection%s", kind == LS_TLS ? " (tls)" : "");
        evutil_closesocket(fd);
        return;
    }
    struct conn *c = xcalloc(1, sizeof(*c));
    c->sink.srv = s;
    c->sink.pending = evbuffer_new();
    c->sink.flush = conn_flush;
    c->bev = bev;
    c->tls = kind == LS_TLS;
    c->need_auth = kind != LS_UNIX && kind != LS_UNIX_PASSED && s->auth.tokens;
    peer_name(sa, len, c->peer, sizeof(c->peer), &c->port);
    if (kind == LS_UNIX || kind == LS_UNIX_PASSED) {
        struct ucred cr;
        socklen_t crlen = sizeof(cr);
        c->scopes = AUTH_ALL;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) == 0)
            snprintf(c->who, sizeof(c->who), "uid:%u", (unsigned)cr.uid);
        else
            snprintf(c->who, sizeof(c->who), "unix");
    }
    if (c->need_auth) { /* a client that never authenticates does not hold a slot */
        struct timeval tv = {AUTH_LINE_TIMEOUT_S, 0};
        bufferevent_set_timeouts(c->bev, &tv, NULL);
    }
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, OUT_LOW, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    s->m.connections = s->n_conns;
    s->m.connections_total++;
    if (s->n_conns >= cfg_of(s)->max_connections && !s->listeners_off) {
        for (size_t i = 0; i < s->n_ls; i++)
            evconnlistener_disable(s->ls[i]);
        s->listeners_off = 1;
        log_warn("max_connections (%d) reached: not accepting until one closes",
                 cfg_of(s)->max_connections);
    }
}

/* ---- socket activation ---- */

/* Takes the sockets the service manager passed (LISTEN_FDS). */
static void activation_init(struct server *s)
{
#ifdef HAVE_SYSTEMD
    int n = sd_listen_fds(1);
    if (n < 0) {
        log_warn("sockets passed by the service manager cannot be used: %s", strerror(-n));
        return;
    }
    if (n == 0)
        return;
    s->act_fds = xcalloc((size_t)n, sizeof(*s->act_fds));
    for (int i = 0; i < n; i++)
        s->act_fds[i] = SD_LISTEN_FDS_START + i;
    s->n_act_fds = (size_t)n;
#else
    (void)s;
#endif
}

/* The passed listening socket bound to a, made non-blocking, or -1. */
static int activation_take(struct server *s, const struct addr *a)
{
#ifdef HAVE_SYSTEMD
    for (size_t i = 0; i < s->n_act_fds; i++) {
        int fd = s->act_fds[i];
        if (fd < 0)
            continue;
        int match = a->family == AF_UNIX
                        ? sd_is_socket_unix(fd, SOCK_STREAM, 1, a->un.sun_path, 0)
                        : sd_is_socket_sockaddr(fd, SOCK_STREAM, &a->sa.sa, a->len, 1);
        if (match > 0) {
            s->act_fds[i] = -1;
            evutil_make_socket_nonblocking(fd);
            evutil_make_socket_closeonexec(fd);
            return fd;
        }
    }
#else
    (void)s;
    (void)a;
#endif
    return -1;
}

/* Passed sockets that match no address of the config are closed. */
static void activation_done(struct server *s)
{
    for (size_t i = 0; i < s->n_act_fds; i++)
        if (s->act_fds[i] >= 0) {
            log_warn("socket passed by the service manager (fd %d) matches no `listen` or `http` "
                     "address; closed",
                     s->act_fds[i]);
            close(s->act_fds[i]);
        }
    free(s->act_fds);
    s->act_fds = NULL;
    s->n_act_fds = 0;
}

/* accept() failing (out of file descriptors, mostly) leaves the pending
 * connection in the backlog, so the listener would fire again at once and
 * spin. Instead every listener pauses for a moment; connections that close
 * meanwhile free descriptors. */
#define ACCEPT_RETRY_MS 100

static void http_listener_enable(struct evhttp_bound_socket *b, void *arg)
{
    if (*(int *)arg)
        evconnlistener_enable(evhttp_bound_socket_get_listener(b));
    else
        evconnlistener_disable(evhttp_bound_socket_get_listener(b));
}

static void accept_error_cb(struct evconnlistener *l, void *arg);

/* The error callback gets the listener's own argument, which for evhttp's
 * listeners is the struct evhttp: the server is found here instead. */
static struct server *accept_srv;

static void http_set_error_cb(struct evhttp_bound_socket *b, void *arg)
{
    evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(b), accept_error_cb);
}

static void accept_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    if (s->stopping)
        return;
    if (!s->listeners_off)
        for (size_t i = 0; i < s->n_ls; i++)
            evconnlistener_enable(s->ls[i]);
    int on = 1;
    if (s->http)
        evhttp_foreach_bound_socket(s->http, http_listener_enable, &on);
    if (s->metrics_http)
        evhttp_foreach_bound_socket(s->metrics_http, http_listener_enable, &on);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    struct server *s = accept_srv;
    int err = EVUTIL_SOCKET_ERROR();
    int64_t now = wall_ms();
    if (now - s->accept_warned_at >= 10000) {
        log_warn("accept: %s; not accepting connections for %d ms at a time until it passes",
                 strerror(err), ACCEPT_RETRY_MS);
        s->accept_warned_at = now;
    }
    for (size_t i = 0; i < s->n_ls; i++)
        evconnlistener_disable(s->ls[i]);
    int off = 0;
    if (s->http)
        evhttp_foreach_bound_socket(s->http, http_listener_enable, &off);
    if (s->metrics_http)
        evhttp_foreach_bound_socket(s->metrics_http, http_listener_enable, &off);
    struct timeval tv = {0, ACCEPT_RETRY_MS * 1000};
    evtimer_add(s->accept_retry_ev, &tv);
}

/* daemon.socket_mode and socket_group on a Unix socket we bound. */
static int socket_perms(const struct config *cfg, const char *path)
{
    char err[512];
    int rc =
        addr_socket_perms(path, (unsigned)cfg->socket_mode, cfg->socket_group, err, sizeof(err));
    if (rc < 0)
        log_error("%s", err);
    return rc;
}

static int listen_all(struct server *s, const struct config *cfg)
{
    s->ls = xcalloc(cfg->n_listen, sizeof(*s->ls));
    s->ls_kind = xcalloc(cfg->n_listen, 1);
    for (size_t i = 0; i < cfg->n_listen; i++) {
        struct addr a;
        char err[256];
        if (addr_parse(cfg->listen[i], &a, err, sizeof(err)) < 0) {
            log_error("listen %s: %s", cfg->listen[i], err);
            return -EINVAL;
        }
        unsigned flags = LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC;
        int fd = activation_take(s, &a);
        if (fd >= 0) {
            /* already bound and listening: backlog 0 leaves it as it is */
            struct evconnlistener *l = evconnlistener_new(s->base, accept_cb, s, flags, 0, fd);
            if (!l) {
                log_error("listen %s (passed socket): %s", cfg->listen[i], strerror(errno));
                close(fd);
                return -EIO;
            }
            s->ls_kind[s->n_ls] = a.family == AF_UNIX ? LS_UNIX_PASSED : a.tls ? LS_TLS : LS_TCP;
            s->ls[s->n_ls++] = l;
            log_info("listening on %s (socket passed by the service manager)", cfg->listen[i]);
            continue;
        }
        if (a.family == AF_UNIX && addr_unix_claim(&a, err, sizeof(err)) < 0) {
            log_error("listen %s: %s", cfg->listen[i], err);
            return -EADDRINUSE;
        }
        if (a.family != AF_UNIX)
            flags |= LEV_OPT_REUSEABLE;
        struct evconnlistener *l =
            evconnlistener_new_bind(s->base, accept_cb, s, flags, 128, &a.sa.sa, a.len);
        if (!l) {
            log_error("listen %s: %s", cfg->listen[i], strerror(errno));
            return -errno;
        }
        s->ls_kind[s->n_ls] = a.family == AF_UNIX ? LS_UNIX : a.tls ? LS_TLS : LS_TCP;
        s->ls[s->n_ls++] = l;
        if (a.family == AF_UNIX && socket_perms(cfg, a.un.sun_path) < 0)
            return -EPERM;
        log_info("listening on %s", cfg->listen[i]);
    }
    return 0;
}

/* ---- HTTP ---- */

/* An HTTP body's answers are sent whole, once all of it is committed. */
static void http_flush(struct sink *k) {}

static void http_events(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
        evhttp_send_error(req, 405, "POST only");
        return;
    }
    unsigned scopes;
    if (!auth_gate_http(&s->auth, req, AUTH_EVENTS | AUTH_DRY, &scopes))
        return; /* answered: 401 or 403 */
    if (s->stopping) {
        evhttp_send_error(req, 503, "stopping");
        return;
    }
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(body);
    if ((int64_t)n > cfg_of(s)->max_http_body) {
        evhttp_send_error(req, 413, "body larger than max_http_body");
        return;
    }
    int flags = ingest_query_flags(evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req)));
    if (flags < 0) {
        evhttp_send_error(req, 400, "dry and explain take 1 or 0");
        return;
    }
    flags |= (int)ingest_scope_flags(scopes);
    struct http_req h = {.sink = {.srv = s,
                                  .pending = evbuffer_new(),
                                  .flush = http_flush,
                                  .flags = (unsigned)flags},
                         .req = req};
    const char *p = (const char *)evbuffer_pullup(body, -1);
    struct framer fr = {.max = cfg_of(s)->max_event_bytes};
    size_t i = 0, len, drain;
    enum frame f;
    while (i < n) {
        const char *nl = memchr(p + i, '\n', n - i);
        f = framer_step(&fr, n - i, nl ? nl - (p + i) : -1, 1, &len, &drain);
        take_frame(&h.sink, f, p + i, len);
        i += drain;
    }
    /* Answer now: commit what this body put in the batch. */
    if (h.sink.dirty)
        commit_and_flush(s);
    sink_uncommitted(&h.sink); /* each line then says so, as on a socket */
    count_answers(&h.sink);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/x-ndjson");
    evhttp_send_reply(req, 200, "OK", h.sink.pending);
    evbuffer_free(h.sink.pending);
}

/* POST /v1/forget and /v1/export (also GET /v1/export): the user as
 * ?user=U or a body {"user":U}; scope admin; answered with the control
 * line's answer (net/admin.h) as a JSON body. */
static void http_admin(struct evhttp_request *req, struct server *s, enum admin_op op)
{
    char who[160], *user;
    if (!admin_http_begin(&s->auth, req, op, who, sizeof(who), &user))
        return;
    struct sbuf b = {0};
    int code = 200;
    if (!user) {
        admin_error(&b, "invalid", ADMIN_HTTP_USER_HELP);
        code = 400;
    } else if (s->stopping) {
        admin_error(&b, "internal", "stopping");
        code = 503;
    } else {
        commit_and_flush(s);
        if (admin_run(s->eng, op, user, who, &b) < 0)
            code = 500;
        reschedule_timer(s);
    }
    free(user);
    struct evbuffer *out = evbuffer_new();
    evbuffer_add(out, b.s, b.len);
    sb_free(&b);
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, code == 200 ? "OK" : "Error", out);
    evbuffer_free(out);
}

static void http_forget(struct evhttp_request *req, void *arg)
{
    http_admin(req, arg, ADMIN_FORGET);
}

static void http_export(struct evhttp_request *req, void *arg)
{
    http_admin(req, arg, ADMIN_EXPORT);
}

static void health_reply(struct server *s, struct evhttp_request *req)
{
    struct sbuf j = {0};
    const char *status = s->stopping ? "stopping" : s->unwritable ? "unwritable" : "ok";
    sb_fmt(&j, "{\"status\":\"%s\"", status);
    if (s->unwritable) {
        sb_str(&j, ",\"reason\":");
        sb_json_str(&j, s->unwritable_reason, strlen(s->unwritable_reason));
        sb_fmt(&j, ",\"since\":%lld", (long long)s->unwritable_since);
    }
    sb_fmt(&j, ",\"campaigns\":%zu,\"connections\":%d", engine_campaigns(s->eng), s->n_conns);
    metrics_health_json(&s->m, cfg_of(s), &j);
    sb_str(&j, "}\n");
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, j.s, j.len);
    sb_free(&j);
    int ok = !s->stopping && !s->unwritable;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, ok ? 200 : 503, ok ? "OK" : "Service Unavailable", b);
    evbuffer_free(b);
}

static void metrics_reply(struct server *s, struct evhttp_request *req)
{
    s->m.auth_failures = s->auth.failures;
    if (engine_batch_size(s->eng))
        commit_and_flush(s); /* figures of committed work only */
    struct evbuffer *b = evbuffer_new();
    metrics_render(&s->m, s->eng, s->st, b);
    metrics_render_config(&s->m, b);
    outs_metrics(s->outs, b);
    evbuffer_add_printf(
        b,
        "# HELP mktd_actions_pruned_total Actions deleted by retention since start.\n"
        "# TYPE mktd_actions_pruned_total counter\nmktd_actions_pruned_total %llu\n",
        (unsigned long long)retention_pruned(s->retention));
    evbuffer_add_printf(b,
                        "# HELP mktd_event_log_pruned_total Logged events deleted past "
                        "daemon.event_log.keep since start.\n"
                        "# TYPE mktd_event_log_pruned_total counter\n"
                        "mktd_event_log_pruned_total %llu\n",
                        (unsigned long long)retention_log_pruned(s->retention));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "text/plain; version=0.0.4");
    evhttp_send_reply(req, 200, "OK", b);
    evbuffer_free(b);
}

/* GET /v1/health and /metrics need scope read on the main HTTP address,
 * nothing on daemon.metrics. */
static void http_health(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    unsigned scopes;
    if (auth_gate_http(&s->auth, req, AUTH_READ, &scopes))
        health_reply(s, req);
}

static void http_metrics(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    unsigned scopes;
    if (auth_gate_http(&s->auth, req, AUTH_READ, &scopes))
        metrics_reply(s, req);
}

static void open_health(struct evhttp_request *req, void *arg)
{
    health_reply(arg, req);
}

static void open_metrics(struct evhttp_request *req, void *arg)
{
    metrics_reply(arg, req);
}

/* daemon.metrics: an HTTP address of its own for scraping, without auth. */
static int metrics_start(struct server *s, const struct config *cfg)
{
    char host[256];
    int port;
    if (!cfg->metrics)
        return 0;
    if (addr_host_port(cfg->metrics, host, sizeof(host), &port) < 0) {
        log_error("metrics %s: expected HOST:PORT", cfg->metrics);
        return -EINVAL;
    }
    s->metrics_http = evhttp_new(s->base);
    evhttp_set_allowed_methods(s->metrics_http, EVHTTP_REQ_GET);
    evhttp_set_cb(s->metrics_http, "/v1/health", open_health, s);
    evhttp_set_cb(s->metrics_http, "/metrics", open_metrics, s);
    if (!evhttp_bind_socket_with_handle(s->metrics_http, host, (ev_uint16_t)port)) {
        log_error("metrics %s: cannot bind: %s", cfg->metrics, strerror(errno));
        return -EIO;
    }
    log_info("metrics on %s", cfg->metrics);
    return 0;
}

static server_report_fn report_fn;

void server_set_report(server_report_fn fn)
{
    report_fn = fn;
}

/* A report made on a thread: it reads the database on a read-only
 * connection of its own (a million actions take seconds) while the loop
 * goes on; the finished job comes back through report_pipe. The request
 * stays valid until answered: libevent keeps a request its handler has not
 * answered when the client goes, and frees it at the answer. */
struct report_job {
    struct server *s;
    struct evhttp_request *req;
    char *db, *since, *until, *campaign;
    int html, status;
    struct sbuf out;
};

static char *dup_or_null(const char *v)
{
    return v ? xstrdup(v) : NULL;
}

static void report_answer(struct report_job *j)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, j->out.s ? j->out.s : "", j->out.len);
    int st = j->status;
    evhttp_add_header(evhttp_request_get_output_headers(j->req), "Content-Type",
                      st != 200 ? "text/plain; charset=utf-8"
                      : j->html ? "text/html; charset=utf-8"
                                : "application/json");
    evhttp_send_reply(j->req, st, st == 200 ? "OK" : st == 400 ? "Bad Request" : "Error", b);
    evbuffer_free(b);
    sb_free(&j->out);
    free(j->db);
    free(j->since);
    free(j->until);
    free(j->campaign);
    free(j);
}

static void *report_thread(void *arg)
{
    struct report_job *j = arg;
    j->status = report_fn(j->db, j->since, j->until, j->campaign, j->html, &j->out);
    int fd = j->s->report_pipe[1];
    ssize_t n;
    do
        n = write(fd, &j, sizeof(j)); /* a pointer: written whole */
    while (n < 0 && errno == EINTR);
    return NULL;
}

/* Answers the finished jobs; with wait, blocks until one has come. */
static void report_collect(struct server *s, int wait)
{
    struct report_job *j;
    for (;;) {
        if (wait) {
            struct pollfd p = {.fd = s->report_pipe[0], .events = POLLIN};
            if (poll(&p, 1, -1) < 0 && errno == EINTR)
                continue;
        }
        ssize_t n = read(s->report_pipe[0], &j, sizeof(j));
        if (n < 0 && errno == EINTR)
            continue;
        if (n != (ssize_t)sizeof(j))
            return;
        s->reports_running--;
        report_answer(j);
        if (wait)
            return;
    }
}

static void report_ready(evutil_socket_t fd, short what, void *arg)
{
    report_collect(arg, 0);
}

/* GET /report and /v1/report: figures of committed work. */
static void http_report(struct evhttp_request *req, void *arg)
{
    struct server *s = arg;
    unsigned scopes;
    if (!auth_gate_http(&s->auth, req, AUTH_READ, &scopes))
        return;
    if (evhttp_request_get_command(req) != EVHTTP_REQ_GET) {
        evhttp_send_error(req, 405, "GET only");
        return;
    }
    if (!report_fn) {
        evhttp_send_error(req, 404, "no report");
        return;
    }
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq kv = {0}; /* empty (the parser initializes it too) */
    if (q && *q && evhttp_parse_query_str(q, &kv) < 0) {
        evhttp_send_error(req, 400, "bad query");
        return;
    }
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    int html = path && strcmp(path, "/report") == 0;
    if (engine_batch_size(s->eng))
        commit_and_flush(s);
    struct report_job *j = xcalloc(1, sizeof(*j));
    j->s = s;
    j->req = req;
    j->html = html;
    j->db = xstrdup(cfg_of(s)->database);
    j->since = dup_or_null(evhttp_find_header(&kv, "since"));
    j->until = dup_or_null(evhttp_find_header(&kv, "until"));
    j->campaign = dup_or_null(evhttp_find_header(&kv, "campaign"));
    evhttp_clear_headers(&kv);
    if (s->report_pipe[0] < 0) {
        if (pipe2(s->report_pipe, O_CLOEXEC) < 0) {
            s->report_pipe[0] = s->report_pipe[1] = -1;
        } else {
            /* the loop's side only: a thread's write always completes */
            fcntl(s->report_pipe[0], F_SETFL, fcntl(s->report_pipe[0], F_GETFL) | O_NONBLOCK);
            s->report_ev =
                event_new(s->base, s->report_pipe[0], EV_READ | EV_PERSIST, report_ready, s);
            event_add(s->report_ev, NULL);
        }
    }
    pthread_t th;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (s->report_pipe[0] < 0 || pthread_create(&th, &at, report_thread, j) != 0) {
        /* no thread: made here, holding the loop meanwhile */
        j->status = report_fn(j->db, j->since, j->until, j->campaign, j->html, &j->out);
        report_answer(j);
    } else {
        s->reports_running++;
    }
    pthread_attr_destroy(&at);
}

static int http_start(struct server *s, const struct config *cfg)
{
    if (!cfg->http)
        return 0;
    char host[256];
    int port, https;
    const char *hp = config_http_hostport(cfg->http, &https);
    if (addr_host_port(hp, host, sizeof(host), &port) < 0) {
        log_error("http %s: expected HOST:PORT", cfg->http);
        return -EINVAL;
    }
    s->http = evhttp_new(s->base);
    evhttp_set_max_body_size(s->http, (ev_ssize_t)cfg->max_http_body);
    evhttp_set_allowed_methods(s->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_cb(s->http, "/v1/events", http_events, s);
    evhttp_set_cb(s->http, "/v1/health", http_health, s);
    evhttp_set_cb(s->http, "/metrics", http_metrics, s);
    if (https)
        evhttp_set_bevcb(s->http, tls_http_bevcb, &s->tls_ctx);
    evhttp_set_cb(s->http, "/report", http_report, s);
    evhttp_set_cb(s->http, "/v1/report", http_report, s);
    evhttp_set_cb(s->http, "/v1/forget", http_forget, s);
    evhttp_set_cb(s->http, "/v1/export", http_export, s);
    char spec[300], err[256];
    struct addr a;
    snprintf(spec, sizeof(spec), "tcp:%s", hp);
    int fd = addr_parse(spec, &a, err, sizeof(err)) == 0 ? activation_take(s, &a) : -1;
    if (fd >= 0) {
        if (!evhttp_accept_socket_with_handle(s->http, fd)) {
            log_error("http %s (passed socket): %s", cfg->http, strerror(errno));
            close(fd);
            return -EIO;
        }
        log_info("http on %s (socket passed by the service manager)", cfg->http);
        return 0;
    }
    if (!evhttp_bind_socket_with_handle(s->http, host, (ev_uint16_t)port)) {
        log_error("http %s: cannot bind: %s", cfg->http, strerror(errno));
        return -EIO;
    }
    log_info("http on %s", cfg->http);
    return 0;
}

/* ---- reload ---- */

/* Settings that only a restart may change (config/diff.c, which `mktd
 * check --running` shares). */
static int reload_allowed(struct server *s, const struct config *nc)
{
    struct config_change *ch;
    size_t n = config_diff(cfg_of(s), nc, &ch);
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        if (!ch[i].restart)
            continue;
        ok = 0;
        if (strncmp(ch[i].key, "campaign ", 9) == 0) {
            const struct campaign_cfg *nc_c = NULL, *oc_c = NULL;
            for (size_t j = 0; j < nc->n_campaigns; j++)
                if (strcmp(nc->campaigns[j].id, ch[i].key + 9) == 0)
                    nc_c = &nc->campaigns[j];
            for (size_t j = 0; j < cfg_of(s)->n_campaigns; j++)
                if (strcmp(cfg_of(s)->campaigns[j].id, ch[i].key + 9) == 0)
                    oc_c = &cfg_of(s)->campaigns[j];
            snprintf(s->reload_refused, sizeof(s->reload_refused),
                     "%s changed its plugin from %s to %s; that needs a restart", ch[i].key,
                     oc_c ? oc_c->plugin : "?", nc_c ? nc_c->plugin : "?");
        } else {
            snprintf(s->reload_refused, sizeof(s->reload_refused),
                     "`%s` changed; that needs a restart", ch[i].key);
        }
        log_error("reload refused: %s", s->reload_refused);
    }
    config_changes_free(ch, n);
    return ok;
}

/* The tokens file and the TLS context of a config, read before anything
 * is swapped in: a bad one fails the reload as a bad config does. */
static int reload_security(const struct config *nc, struct auth_tokens **tok, SSL_CTX **tls,
                           struct errs *errs)
{
    char err[512], note[4200];
    if (nc->tokens_file && !(*tok = auth_tokens_load(nc->tokens_file, err, sizeof(err)))) {
        errs_add(errs, "%s%s", err, config_path_note(nc, nc->tokens_file, note, sizeof(note)));
        return -1;
    }
    if (nc->tls_cert &&
        !(*tls = tls_server_ctx(nc->tls_cert, nc->tls_key, nc->tls_client_ca, err, sizeof(err)))) {
        errs_add(errs, "%s%s", err, config_path_note(nc, nc->tls_cert, note, sizeof(note)));
        return -1;
    }
    return 0;
}

/* A config refused on reload (or start), in oplog (spec 14): its hash
 * when the file can be read, and why. Between batches. */
static void oplog_config_error(struct server *s, const struct config *nc, const char *msg)
{
    struct sbuf t = {0};
    const char *text = NULL;
    size_t len = 0;
    if (nc && nc->text) {
        text = nc->text;
        len = nc->text_len;
    } else if (read_file(s->config_path, &t, NULL) == 0) {
        text = t.s ? t.s : "";
        len = t.len;
    }
    if (store_oplog_config(s->st, wall_ms(), engine_actor(s->eng), s->config_path, text, len, msg) <
        0)
        log_warn("oplog: %s", store_errmsg(s->st));
    sb_free(&t);
}

static void reload(struct server *s)
{
    if (s->stopping) {
        log_warn("reload ignored: stopping");
        return;
    }
    notify_reloading();
    int64_t t0 = metrics_now_us();
    log_info("reloading %s", s->config_path);
    struct errs errs = {0};
    struct config *nc = config_load(s->config_path, &errs);
    struct world *w = NULL;
    s->reload_refused[0] = 0;
    SSL_CTX *ntls = NULL;
    struct auth_tokens *ntok = NULL;
    if (nc && reload_allowed(s, nc) && reload_security(nc, &ntok, &ntls, &errs) == 0)
        w = world_build(nc, &errs);
    engine_set_actor(s->eng, "SIGHUP");
    if (!w) {
        for (size_t i = 0; i < errs.n; i++)
            log_error("%s", errs.msg[i]);
        log_error("reload failed; the running config stays");
        metrics_reload_result(&s->m, wall_ms(),
                              errs.n                 ? errs.msg[0]
                              : s->reload_refused[0] ? s->reload_refused
                                                     : "refused");
        commit_and_flush(s); /* between batches */
        char *msg = errs_join(&errs);
        oplog_config_error(s, nc,
                           msg && *msg            ? msg
                           : s->reload_refused[0] ? s->reload_refused
                                                  : "refused");
        free(msg);
        auth_tokens_free(ntok);
        SSL_CTX_free(ntls);
        if (nc)
            config_free(nc);
        errs_free(&errs);
        s->m.reloads_failed++;
        notify("READY=1");
        return;
    }
    errs_free(&errs);
    config_lint_log(nc);
    commit_and_flush(s); /* between batches */
    char err[512];
    if (engine_swap(s->eng, w, err, sizeof(err)) < 0) {
        log_error("reload failed: %s; the running config stays", err);
        metrics_reload_result(&s->m, wall_ms(), err);
        oplog_config_error(s, nc, err);
        world_free(w);
        auth_tokens_free(ntok);
        SSL_CTX_free(ntls);
        s->m.reloads_failed++;
    } else {
        /* the tokens file and the certificate are read again */
        auth_tokens_free(s->auth.tokens);
        s->auth.tokens = ntok;
        conns_recheck(s);
        if (ntls) {
            SSL_CTX_free(s->tls_ctx); /* connections hold their own reference */
            s->tls_ctx = ntls;
        }
        /* the listen list is the same (reload_allowed): ls[i] is listen[i] */
        for (size_t i = 0; i < nc->n_listen && i < s->n_ls; i++) {
            struct addr a;
            char aerr[256];
            if (s->ls_kind[i] == LS_UNIX && addr_parse(nc->listen[i], &a, aerr, sizeof(aerr)) == 0)
                socket_perms(nc, a.un.sun_path);
        }
        log_level = nc->log_level;
        engine_set_memory(s->eng, (size_t)nc->working_set);
        if (nc->sync_full != s->sync_full) {
            /* between batches: no transaction is open */
            if (store_set_synchronous(s->st, nc->sync_full) == 0)
                s->sync_full = nc->sync_full;
            else
                log_error("commit.synchronous: %s", store_errmsg(s->st));
        }
        if (s->http)
            evhttp_set_max_body_size(s->http, (ev_ssize_t)nc->max_http_body);
        outs_configure(s->outs, nc);
        retention_configure(s->retention, nc);
        log_info("reloaded: %zu campaigns in %.1f ms", world_campaigns(w),
                 (double)(metrics_now_us() - t0) / 1000.0);
        s->m.reloads_ok++;
        metrics_config_loaded(&s->m, nc, wall_ms());
        metrics_reload_result(&s->m, wall_ms(), NULL);
    }
    reschedule_timer(s);
    notify("READY=1");
}

/* ---- signals, stop, watchdog ---- */

static void stop_check(evutil_socket_t fd, short what, void *arg)
{
    struct server *s = arg;
    int pending = 0;
    for (struct conn *c = s->conns; c; c = c->next)
        if (!c->dead && evbuffer_get_length(bufferevent_get_output(c->bev)) > 0)
            pending++;
    if (!pending || wall_ms() >= s->stop_deadline) {
        if (pending)
            log_warn("stopping: %d connection(s) did not take all their answers in time", pending);
        event_base_loopexit(s->base, NULL);
        return;
    }
    struct timeval tv = {0, 20000};
    evtimer_add(s->stop_ev, &tv);
}

static void stop(struct server *s)
{
    if (s->stopping)
        return;
    s->stopping = 1;
    notify("STOPPING=1");
    log_info("stopping: committing what was read");
    for (size_t i = 0; i < s->n_ls; i++)
        evconnlistener_disable(s->ls[i]);
    /* What was read is committed and answered; nothing more is read. */
    for (struct conn *c = s->conns; c; c = c->next) {
        bufferevent_disable(c->bev, EV_READ);
        if (!c->dead)
            conn_read_lines(c, 0);
    }
    commit_and_flush(s);
    s->stop_deadline = wall_ms() + STOP_FLUSH_MS;
    stop_check(-1, 0, s);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct server *s = arg;
    if (sig == SIGHUP)
        reload(s);
    else
        stop(s);
}

static void watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
    notify("WATCHDOG=1");
}

static void start_watchdog(struct server *s)
{
    uint64_t usec = notify_watchdog_usec();
    if (usec > 0) {
        s->watchdog_ev = event_new(s->base, -1, EV_PERSIST, watchdog_cb, s);
        struct timeval tv = {.tv_sec = (time_t)(usec / 2 / 1000000),
                             .tv_usec = (suseconds_t)(usec / 2 % 1000000)};
        event_add(s->watchdog_ev, &tv);
        log_info("watchdog every %llu ms", (unsigned long long)(usec / 2000));
    }
}

/* ---- run ---- */

int server_run(const char *config_path)
{
    struct server srv, *s = &srv;
    memset(s, 0, sizeof(*s));
    s->report_pipe[0] = s->report_pipe[1] = -1;
    s->config_path = xstrdup(config_path);
    int code = 1;
    struct errs errs = {0};
    struct config *cfg = config_load(config_path, &errs);
    struct world *w = cfg ? world_build(cfg, &errs) : NULL;
    if (!w) {
        for (size_t i = 0; i < errs.n; i++)
            log_error("%s", errs.msg[i]);
        errs_free(&errs);
        if (cfg)
            config_free(cfg);
        free(s->config_path);
        return 1;
    }
    errs_free(&errs);
    log_level = cfg->log_level;
    config_lint_log(cfg);
    char err[512], note[4200];
    /* a relative database an older mktd found from the current directory
     * is not silently replaced by a new, empty one (spec 18) */
    if (config_database_moved(cfg, note, sizeof(note))) {
        log_error("%s", note);
        world_free(w);
        free(s->config_path);
        return 1;
    }
    addr_mkdir_parent(cfg->database);
    /* before the database is opened (a migration writes) and before any
     * socket is touched */
    if (dblock_take(cfg->database, &s->lock, err, sizeof(err)) < 0) {
        log_error("%s%s", err, config_path_note(cfg, cfg->database, note, sizeof(note)));
        world_free(w);
        free(s->config_path);
        return 1;
    }
    if (store_open(cfg->database, cfg->sync_full, &s->st, err, sizeof(err)) < 0 ||
        store_background_checkpoints(s->st, err, sizeof(err)) < 0) {
        store_close(s->st);
        dblock_release(s->lock);
        log_error("database %s%s", err, config_path_note(cfg, cfg->database, note, sizeof(note)));
        world_free(w);
        free(s->config_path);
        return 1;
    }
    struct engine_opts eo = {.clock_event = cfg->clock_event,
                             .memory_bytes = (size_t)cfg->working_set};
    if (engine_new(s->st, &eo, &s->eng, err, sizeof(err)) < 0) {
        log_error("%s", err);
        world_free(w);
        goto out;
    }
    if (engine_swap(s->eng, w, err, sizeof(err)) < 0) {
        log_error("%s", err);
        oplog_config_error(s, cfg, err);
        world_free(w);
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    struct event_config *ec = event_config_new();
    s->base = event_base_new_with_config(ec);
    event_config_free(ec);
    /* Every event has libevent's default priority, 1 of 0..2 (reads,
     * HTTP, listeners, timers, signals); the commit alone has 2, so it
     * runs once a loop turn finds nothing else to do: the batch takes
     * every line the sockets hold, up to commit.max_batch, or until
     * answers have waited max_delay_ms (commit_if_due). */
    event_base_priority_init(s->base, 3);
    s->commit_ev = event_new(s->base, -1, 0, commit_cb, s);
    event_priority_set(s->commit_ev, 2);
    s->timer_ev = evtimer_new(s->base, timer_cb, s);
    s->stop_ev = evtimer_new(s->base, stop_check, s);
    s->accept_retry_ev = evtimer_new(s->base, accept_retry_cb, s);
    s->probe_ev = evtimer_new(s->base, probe_cb, s);
    s->sig_hup = evsignal_new(s->base, SIGHUP, signal_cb, s);
    s->sig_term = evsignal_new(s->base, SIGTERM, signal_cb, s);
    s->sig_int = evsignal_new(s->base, SIGINT, signal_cb, s);
    event_add(s->sig_hup, NULL);
    event_add(s->sig_term, NULL);
    event_add(s->sig_int, NULL);
    s->sync_full = cfg->sync_full;
    metrics_init(&s->m, s->eng, s->st);
    metrics_config_loaded(&s->m, cfg, wall_ms());
    auth_gate_init(&s->auth, s->base);
    {
        struct errs serr = {0};
        int src = reload_security(cfg, &s->auth.tokens, &s->tls_ctx, &serr);
        for (size_t i = 0; i < serr.n; i++)
            log_error("%s", serr.msg[i]);
        errs_free(&serr);
        if (src < 0)
            goto out;
        if (s->auth.tokens)
            log_info("auth: %zu tokens from %s", s->auth.tokens->n, cfg->tokens_file);
    }
    if (outs_new(s->base, s->st, &s->outs, err, sizeof(err)) < 0) {
        log_error("%s", err);
        goto out;
    }
    outs_configure(s->outs, cfg);
    s->retention = retention_new(s->base, s->st, s->outs);
    retention_configure(s->retention, cfg);
    activation_init(s);
    int lrc = listen_all(s, cfg);
    if (lrc == 0)
        lrc = http_start(s, cfg);
    if (lrc == 0)
        lrc = metrics_start(s, cfg);
    activation_done(s);
    if (lrc < 0)
        goto out;
    accept_srv = s;
    for (size_t i = 0; i < s->n_ls; i++)
        evconnlistener_set_error_cb(s->ls[i], accept_error_cb);
    if (s->http)
        evhttp_foreach_bound_socket(s->http, http_set_error_cb, NULL);
    if (s->metrics_http)
        evhttp_foreach_bound_socket(s->metrics_http, http_set_error_cb, NULL);
    start_watchdog(s);
    reschedule_timer(s);
    /* from now on a lock held outside mktd fails a batch quickly */
    store_lock_patience(s->st, LOCK_PATIENCE_US);
    log_info("mktd ready: %zu campaigns, clock %s, database %s", engine_campaigns(s->eng),
             cfg->clock_event ? "event" : "wall", cfg->database);
    notify("READY=1");
    event_base_dispatch(s->base);
    /* Stopping is under way: a second signal must not cut the cleanup
     * short once the handlers go with the event base (freeing them puts
     * back the default action). Blocked, it is dropped at exit. */
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGHUP);
    sigprocmask(SIG_BLOCK, &block, NULL);
    commit_and_flush(s);
    code = 0;
    log_info("stopped");
out:
    auth_gate_free(&s->auth); /* answers held back go out now */
    while (s->conns)
        conn_free(s->conns);
    for (size_t i = 0; i < s->n_ls; i++)
        evconnlistener_free(s->ls[i]);
    free(s->ls);
    free(s->ls_kind);
    while (s->reports_running > 0) /* their requests go with evhttp */
        report_collect(s, 1);
    if (s->report_ev)
        event_free(s->report_ev);
    for (int i = 0; i < 2; i++)
        if (s->report_pipe[i] >= 0)
            close(s->report_pipe[i]);
    if (s->http)
        evhttp_free(s->http);
    if (s->metrics_http)
        evhttp_free(s->metrics_http);
    SSL_CTX_free(s->tls_ctx);
    struct event *evs[] = {s->commit_ev,   s->timer_ev,        s->stop_ev,
                           s->watchdog_ev, s->accept_retry_ev, s->probe_ev,
                           s->sig_hup,     s->sig_term,        s->sig_int};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i])
            event_free(evs[i]);
    retention_free(s->retention);
    outs_free(s->outs);
    if (s->base)
        event_base_free(s->base);
    engine_free(s->eng);
    metrics_free(&s->m);
    store_close(s->st);
    dblock_release(s->lock);
    plugins_unload_all();
    free(s->config_path);
    return code;
}
