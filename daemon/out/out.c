/*
 * Webhook outputs (spec section 15).
 *
 * Each output has a position: the largest seq it is done with (delivered
 * and answered 2xx, or not matching its filters). A delivery reads up to
 * `batch` matching actions after it, POSTs them as one NDJSON body, and on
 * a 2xx answer moves the position, in the database, with a compare-and-set
 * (`mktd outputs --from` may have rewound it meanwhile: then the new
 * position wins). Anything else is retried after 1 s, 2 s, 4 s ... up to
 * 10 min, the same batch again from the same position: at least once, in
 * seq order, nothing skipped.
 *
 * One request per output at a time; every output on its own. libcurl's
 * multi interface runs on the daemon's libevent loop: curl says which
 * sockets to watch (sock_cb) and when to call it back (timer_cb), and the
 * loop calls curl_multi_socket_action when they are ready. A receiver that
 * hangs costs a socket and a timer, never the loop.
 *
 * Deliveries wake after a commit that recorded actions (outs_wake), when a
 * retry falls due, and once a second while idle (to see a rewind made by
 * `mktd outputs --from`).
 */
#define _GNU_SOURCE
#include "out/out.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/util.h"

#define RETRY_FIRST_MS 1000
#define RETRY_MAX_MS 600000
#define IDLE_MS 1000 /* an idle output looks at its position this often */
#define SKIP_WRITE_MS                                                                              \
    1000 /* a position moved over unmatched actions is written at most this often */

struct outs;

struct out {
    struct outs *os;
    struct out *next;
    char *id, *url;
    char *kinds_json, *campaigns_json; /* NULL: all */
    char *secret;
    size_t secret_len;
    int batch;
    int64_t timeout_ms;

    int known;          /* its row exists in the database */
    int64_t pos;        /* done with every action up to here */
    int64_t pos_db;     /* the position the database holds */
    int64_t skip_saved; /* wall ms of the last write of a skip */

    /* the request in flight */
    CURL *easy;
    struct curl_slist *hdrs;
    struct sbuf body;
    int64_t first, last, cover, count;
    char errbuf[CURL_ERROR_SIZE];

    int failures;     /* in a row */
    int64_t retry_at; /* wall ms; 0: none */
    struct event *timer;

    uint64_t delivered_total, failures_total;
    int64_t last_success; /* wall ms; 0: never */
};

struct sock {
    struct event *ev;
    curl_socket_t fd;
    struct sock *prev, *next;
};

struct outs {
    struct event_base *base;
    struct store *st;
    CURLM *multi;
    struct event *curl_timer, *wake_ev;
    struct out *list;
    struct sock *socks;
    int curl_inited;
};

static void tick(struct out *o);

/* ---- formats ---- */

void out_signature(const char *key, size_t key_len, const char *body, size_t len, char *hex)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)body, len, md, &md_len))
        md_len = 0;
    memcpy(hex, "sha256=", 7);
    for (unsigned int i = 0; i < md_len && i < 32; i++)
        snprintf(hex + 7 + 2 * i, 3, "%02x", md[i]);
    hex[7 + 2 * (md_len < 32 ? md_len : 32)] = 0;
}

char *out_filter_json(char *const *v, size_t n)
{
    if (!v || !n)
        return NULL;
    struct sbuf b = {0};
    sb_str(&b, "[");
    for (size_t i = 0; i < n; i++) {
        if (i)
            sb_str(&b, ",");
        sb_json_str(&b, v[i], strlen(v[i]));
    }
    sb_str(&b, "]");
    return b.s;
}

/* ---- libcurl on the loop ---- */

static void check_done(struct outs *os);

static void sock_ev_cb(evutil_socket_t fd, short what, void *arg)
{
    struct outs *os = arg;
    int action = (what & EV_READ ? CURL_CSELECT_IN : 0) | (what & EV_WRITE ? CURL_CSELECT_OUT : 0);
    int running;
    curl_multi_socket_action(os->multi, fd, action, &running);
    check_done(os);
}

static void sock_free(struct outs *os, struct sock *k)
{
    if (k->prev)
        k->prev->next = k->next;
    else
        os->socks = k->next;
    if (k->next)
        k->next->prev = k->prev;
    event_free(k->ev);
    free(k);
}

static int sock_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    struct outs *os = userp;
    struct sock *k = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (k) {
            curl_multi_assign(os->multi, fd, NULL);
            sock_free(os, k);
        }
        return 0;
    }
    short kind = (short)((what & CURL_POLL_IN ? EV_READ : 0) |
                         (what & CURL_POLL_OUT ? EV_WRITE : 0) | EV_PERSIST);
    if (!k) {
        k = xcalloc(1, sizeof(*k));
        k->fd = fd;
        k->next = os->socks;
        if (os->socks)
            os->socks->prev = k;
        os->socks = k;
        curl_multi_assign(os->multi, fd, k);
    } else {
        event_free(k->ev);
    }
    k->ev = event_new(os->base, fd, kind, sock_ev_cb, os);
    event_add(k->ev, NULL);
    return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
    struct outs *os = userp;
    if (timeout_ms < 0) {
        evtimer_del(os->curl_timer);
        return 0;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    evtimer_add(os->curl_timer, &tv);
    return 0;
}

static void curl_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct outs *os = arg;
    int running;
    curl_multi_socket_action(os->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(os);
}

static size_t discard_cb(char *p, size_t size, size_t n, void *arg)
{
    return size * n;
}

/* ---- one output ---- */

static void schedule(struct out *o, int64_t delay_ms)
{
    if (delay_ms < 0)
        delay_ms = 0;
    struct timeval tv = {.tv_sec = delay_ms / 1000, .tv_usec = (delay_ms % 1000) * 1000};
    evtimer_add(o->timer, &tv);
}

static void request_clear(struct out *o)
{
    if (o->easy) {
        curl_multi_remove_handle(o->os->multi, o->easy);
        curl_easy_cleanup(o->easy);
        o->easy = NULL;
    }
    curl_slist_free_all(o->hdrs);
    o->hdrs = NULL;
    o->body.len = 0;
    o->count = 0;
}

static int add_row(void *arg, const struct store_action *a)
{
    struct out *o = arg;
    if (!o->count)
        o->first = a->seq;
    o->last = a->seq;
    o->count++;
    store_action_json(&o->body, a);
    return 0;
}

CURL *out_easy_new(const char *url, const char *id, int64_t first, int64_t last, const char *secret,
                   size_t secret_len, const struct sbuf *body, int64_t timeout_ms,
                   struct curl_slist **hdrs, char *errbuf)
{
    char h[128 + 64], sig[80];
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    *hdrs = curl_slist_append(*hdrs, "Content-Type: application/x-ndjson");
    *hdrs = curl_slist_append(*hdrs, "Expect:"); /* no 100-continue round trip */
    snprintf(h, sizeof(h), "X-Mktd-Output: %s", id);
    *hdrs = curl_slist_append(*hdrs, h);
    snprintf(h, sizeof(h), "X-Mktd-Seq: %lld-%lld", (long long)first, (long long)last);
    *hdrs = curl_slist_append(*hdrs, h);
    out_signature(secret, secret_len, body->s, body->len, sig);
    snprintf(h, sizeof(h), "X-Mktd-Signature: %s", sig);
    *hdrs = curl_slist_append(*hdrs, h);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->s);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "mktd/" MKTD_VERSION_STRING);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)timeout_ms);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
    errbuf[0] = 0;
    return c;
}

static int start_request(struct out *o)
{
    o->easy = out_easy_new(o->url, o->id, o->first, o->last, o->secret, o->secret_len, &o->body,
                           o->timeout_ms, &o->hdrs, o->errbuf);
    if (!o->easy)
        return -ENOMEM;
    curl_easy_setopt(o->easy, CURLOPT_PRIVATE, o);
    if (curl_multi_add_handle(o->os->multi, o->easy) != CURLM_OK)
        return -EIO;
    return 0;
}

static void failed(struct out *o, const char *why)
{
    int64_t now = wall_ms();
    o->failures++;
    o->failures_total++;
    int64_t delay = RETRY_FIRST_MS;
    for (int i = 1; i < o->failures && delay < RETRY_MAX_MS; i++)
        delay *= 2;
    if (delay > RETRY_MAX_MS)
        delay = RETRY_MAX_MS;
    o->retry_at = now + delay;
    if (o->failures == 1 || o->failures % 10 == 0)
        log_warn(
            "output %s: delivering seq %lld-%lld failed (%s); trying again in %lld ms (try %d)",
            o->id, (long long)o->first, (long long)o->last, why, (long long)delay, o->failures + 1);
    if (store_output_failed(o->os->st, o->id, why, now) < 0)
        log_debug("output %s: its error could not be recorded now", o->id);
    schedule(o, delay);
}

/* Moves the database's position from pos_db to `to`; 1 moved, 0 rewound
 * meanwhile (pos taken from the database), <0 not written. */
static int advance(struct out *o, int64_t to, int64_t n, int64_t at)
{
    int rc = store_output_advance(o->os->st, o->id, o->pos_db, to, n, at);
    if (rc == 1) {
        o->pos = o->pos_db = to;
    } else if (rc == 0) {
        int64_t p;
        if (store_output_get(o->os->st, o->id, &p) == 0) {
            log_info("output %s: rewound to %lld", o->id, (long long)p);
            o->pos = o->pos_db = p;
        }
    }
    return rc;
}

static void request_done(struct out *o, CURLcode res)
{
    long code = 0;
    curl_easy_getinfo(o->easy, CURLINFO_RESPONSE_CODE, &code);
    char why[CURL_ERROR_SIZE + 64];
    if (res != CURLE_OK)
        snprintf(why, sizeof(why), "%s", o->errbuf[0] ? o->errbuf : curl_easy_strerror(res));
    else
        snprintf(why, sizeof(why), "HTTP %ld", code);
    int64_t count = o->count;
    request_clear(o);
    if (res != CURLE_OK || code < 200 || code > 299) {
        failed(o, why);
        return;
    }
    int64_t now = wall_ms();
    int rc = advance(o, o->cover, count, now);
    if (rc < 0) {
        /* delivered, but not recorded: it goes again (at least once) */
        failed(o, "delivered, but the position could not be written");
        return;
    }
    o->failures = 0;
    o->retry_at = 0;
    o->delivered_total += (uint64_t)count;
    o->last_success = now;
    tick(o); /* more may wait */
}

static void check_done(struct outs *os)
{
    CURLMsg *m;
    int left;
    while ((m = curl_multi_info_read(os->multi, &left))) {
        if (m->msg != CURLMSG_DONE)
            continue;
        struct out *o = NULL;
        curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&o);
        CURLcode res = m->data.result;
        if (o && o->easy == m->easy_handle)
            request_done(o, res);
    }
}

/* Sends the next batch, if there is one and nothing stands in the way. */
static void tick(struct out *o)
{
    struct store *st = o->os->st;
    if (o->easy)
        return;
    int64_t now = wall_ms();
    if (o->retry_at && now < o->retry_at) {
        schedule(o, o->retry_at - now);
        return;
    }
    int64_t end, p;
    if (store_action_last_seq(st, &end) < 0)
        goto later;
    if (!o->known) {
        int rc = store_output_get(st, o->id, &p);
        if (rc == -ENOENT) { /* new: it starts at the current end */
            if (store_output_create(st, o->id, end) < 0)
                goto later;
            rc = store_output_get(st, o->id, &p);
            if (rc == 0)
                log_info("output %s: new, starting after seq %lld", o->id, (long long)p);
        }
        if (rc < 0)
            goto later;
        o->known = 1;
        o->pos = o->pos_db = p;
    } else {
        if (store_output_get(st, o->id, &p) < 0)
            goto later;
        if (p != o->pos_db) { /* mktd outputs --from */
            log_info("output %s: rewound to %lld", o->id, (long long)p);
            o->pos = o->pos_db = p;
        }
    }
    o->body.len = 0;
    o->count = 0;
    if (store_output_actions(st, o->pos, end, o->kinds_json, o->campaigns_json, o->batch, add_row,
                             o) < 0) {
        o->count = 0;
        goto later;
    }
    if (o->count == 0) {
        /* nothing of its own up to end: done with all of it */
        if (end > o->pos)
            o->pos = end;
        if (o->pos != o->pos_db && now - o->skip_saved >= SKIP_WRITE_MS) {
            o->skip_saved = now;
            advance(o, o->pos, 0, 0);
        }
        schedule(o, IDLE_MS);
        return;
    }
    /* a short batch holds every match up to end */
    o->cover = o->count < o->batch ? end : o->last;
    if (start_request(o) < 0) {
        request_clear(o);
        failed(o, "the request could not be made");
    }
    return;
later:
    /* the database cannot be read or written now (it says why elsewhere) */
    schedule(o, IDLE_MS);
}

static void out_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    tick(arg);
}

static void out_free(struct out *o)
{
    request_clear(o);
    sb_free(&o->body);
    if (o->timer)
        event_free(o->timer);
    free(o->id);
    free(o->url);
    free(o->kinds_json);
    free(o->campaigns_json);
    if (o->secret)
        memset(o->secret, 0, o->secret_len);
    free(o->secret);
    free(o);
}

/* ---- all of them ---- */

static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    struct outs *os = arg;
    for (struct out *o = os->list; o; o = o->next)
        tick(o);
}

int outs_new(struct event_base *base, struct store *st, struct outs **out, char *err, size_t errlen)
{
    struct outs *os = xcalloc(1, sizeof(*os));
    os->base = base;
    os->st = st;
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        snprintf(err, errlen, "outputs: libcurl cannot start");
        free(os);
        return -EIO;
    }
    os->curl_inited = 1;
    os->multi = curl_multi_init();
    if (!os->multi) {
        snprintf(err, errlen, "outputs: libcurl cannot start");
        outs_free(os);
        return -EIO;
    }
    curl_multi_setopt(os->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
    curl_multi_setopt(os->multi, CURLMOPT_SOCKETDATA, os);
    curl_multi_setopt(os->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
    curl_multi_setopt(os->multi, CURLMOPT_TIMERDATA, os);
    os->curl_timer = evtimer_new(base, curl_timeout_cb, os);
    os->wake_ev = event_new(base, -1, 0, wake_cb, os);
    /* once the reads that are ready are done: the loop's lowest priority,
     * the commit's (net/server.c) */
    event_priority_set(os->wake_ev, 2);
    *out = os;
    return 0;
}

void outs_free(struct outs *os)
{
    if (!os)
        return;
    while (os->list) {
        struct out *o = os->list;
        os->list = o->next;
        out_free(o);
    }
    if (os->multi)
        curl_multi_cleanup(os->multi);
    while (os->socks)
        sock_free(os, os->socks);
    if (os->curl_timer)
        event_free(os->curl_timer);
    if (os->wake_ev)
        event_free(os->wake_ev);
    if (os->curl_inited)
        curl_global_cleanup();
    free(os);
}

static void set_cfg(struct out *o, const struct output_cfg *c)
{
    free(o->url);
    free(o->kinds_json);
    free(o->campaigns_json);
    if (o->secret)
        memset(o->secret, 0, o->secret_len);
    free(o->secret);
    o->url = xstrdup(c->url);
    o->kinds_json = out_filter_json(c->kinds, c->n_kinds);
    o->campaigns_json = out_filter_json(c->campaigns, c->n_campaigns);
    o->secret = xstrndup(c->secret, c->secret_len);
    o->secret_len = c->secret_len;
    o->batch = c->batch;
    o->timeout_ms = c->timeout_ms;
}

static void seed_last_success(void *arg, const struct store_output *r)
{
    struct out *o = arg;
    if (strcmp(r->id, o->id) == 0)
        o->last_success = r->last_success;
}

void outs_configure(struct outs *os, const struct config *cfg)
{
    /* removed ones stop */
    struct out **pp = &os->list;
    while (*pp) {
        struct out *o = *pp;
        int keep = 0;
        for (size_t i = 0; i < cfg->n_outputs && !keep; i++)
            keep = strcmp(cfg->outputs[i].id, o->id) == 0;
        if (keep) {
            pp = &o->next;
            continue;
        }
        log_info("output %s: removed from the config; its deliveries stop", o->id);
        *pp = o->next;
        out_free(o);
    }
    /* new ones start, changed ones take their settings (in config order) */
    struct out *list = NULL, **tail = &list;
    for (size_t i = 0; i < cfg->n_outputs; i++) {
        const struct output_cfg *c = &cfg->outputs[i];
        struct out *o = NULL;
        for (pp = &os->list; *pp; pp = &(*pp)->next) {
            if (strcmp((*pp)->id, c->id) == 0) {
                o = *pp;
                *pp = o->next;
                break;
            }
        }
        if (!o) {
            o = xcalloc(1, sizeof(*o));
            o->os = os;
            o->id = xstrdup(c->id);
            o->timer = evtimer_new(os->base, out_timer_cb, o);
            store_outputs_list(os->st, seed_last_success, o);
        }
        set_cfg(o, c);
        if (!o->known)
            tick(o); /* recorded now: it delivers what is recorded from now on */
        o->next = NULL;
        *tail = o;
        tail = &o->next;
    }
    os->list = list;
    outs_wake(os);
}

void outs_wake(struct outs *os)
{
    if (os && os->list)
        event_active(os->wake_ev, 0, 0);
}

int64_t outs_min_position(struct outs *os)
{
    int64_t min = INT64_MAX;
    for (struct out *o = os->list; o; o = o->next) {
        int64_t p = o->known ? o->pos_db : 0;
        if (!o->known && store_output_get(os->st, o->id, &p) < 0)
            p = 0; /* not started yet: nothing may go */
        if (p < min)
            min = p;
    }
    return min;
}

void out_metrics_text(struct sbuf *b, const struct out_figures *rows, size_t n)
{
    static const struct {
        const char *name, *type, *help;
    } fam[] = {
        {"mktd_output_lag", "gauge",
         "Actions recorded after the output's position (matching its filters or not)."},
        {"mktd_output_delivered_total", "counter",
         "Actions delivered (answered 2xx) since this process began delivering to the output."},
        {"mktd_output_failures_total", "counter",
         "Deliveries that failed (not 2xx, timeout, connection error) since this process began "
         "delivering to the output."},
        {"mktd_output_last_success_timestamp_seconds", "gauge",
         "When a delivery last succeeded (0: never)."},
    };
    for (size_t f = 0; n && f < sizeof(fam) / sizeof(fam[0]); f++) {
        sb_fmt(b, "# HELP %s %s\n# TYPE %s %s\n", fam[f].name, fam[f].help, fam[f].name,
               fam[f].type);
        for (size_t i = 0; i < n; i++) {
            const struct out_figures *r = &rows[i];
            if (f == 0 && r->lag < 0)
                continue; /* not known here */
            sb_fmt(b, "%s{output=\"%s\"} ", fam[f].name, r->id);
            if (f == 0)
                sb_fmt(b, "%lld\n", r->lag);
            else if (f == 1 || f == 2)
                sb_fmt(b, "%llu\n", f == 1 ? r->delivered : r->failures);
            else
                sb_fmt(b, "%.3f\n", (double)r->last_success_ms / 1000.0);
        }
    }
}

void outs_metrics(struct outs *os, struct evbuffer *out)
{
    if (!os || !os->list)
        return;
    int64_t end = 0;
    store_action_last_seq(os->st, &end);
    size_t n = 0;
    for (struct out *o = os->list; o; o = o->next)
        n++;
    struct out_figures *rows = xcalloc(n, sizeof *rows);
    n = 0;
    for (struct out *o = os->list; o; o = o->next)
        rows[n++] = (struct out_figures){
            .id = o->id,
            .lag = o->known && end > o->pos ? (long long)(end - o->pos) : 0,
            .delivered = o->delivered_total,
            .failures = o->failures_total,
            .last_success_ms = o->last_success,
        };
    struct sbuf b = {0};
    out_metrics_text(&b, rows, n);
    evbuffer_add(out, b.s, b.len);
    sb_free(&b);
    free(rows);
}
