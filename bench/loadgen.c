/*
 * loadgen — replays a realistic event mix against mktd (or bench/bare_ingest)
 * over N pipelined connections and reports answered events/s, answer latency
 * percentiles, errors by kind and the daemon's memory.
 *
 *   loadgen (--unix PATH | --tcp HOST:PORT) [--conns N] [--window W]
 *           [--rate EVENTS/S] [--duration S | --count N] [--warmup S]
 *           [--users N] [--new-users PCT] [--user-order random|seq]
 *           [--run-id ID] [--seed N] [--ids seq|random]
 *           [--ts-start MS] [--ts-step MS] [--mix KIND=W,...] [--pid PID]
 *           [--report-every N] [--drain-timeout S] [--quiet]
 *           [--flags dry|explain|dry,explain]
 *
 * Users: with the random order (default), --new-users percent of the events
 * (default 5) are the signup of a new user, until --users (default 1,000,000)
 * exist; the others come from a user drawn uniformly among those signed up.
 * With --user-order seq, event n is user n mod --users, so the first --users
 * events touch as many distinct users.
 *
 * The mix: a user's first event is a `user.signup` (60% name a referrer
 * among users already seen); later events are drawn by weight from
 * order.paid, order.refunded (of an earlier order of this run), coupon.used
 * (codes the shop reports; unknown to the daemon), page.view, app.open,
 * cart.add and search. Ids are "<run-id>-<n>" (--ids random: 32 hex digits
 * drawn from the seed and n), order ids "<run-id>-o<n>", users "u<index>".
 * ts = ts-start + n * ts-step, so with `clock: event` a run is
 * reproducible. The generator is bench/gen.h, shared with bare_sqlite:
 * the same options make the same events there.
 *
 * Latency of an event: from the moment its line is handed to the connection's
 * output buffer (written at the next turn of the loop) to the moment its
 * answer line is read. Answers come back in order, so each connection keeps
 * a ring of send times.
 *
 * With --pid, the daemon's RSS, CPU, run-queue wait and an estimate of its
 * WAL bytes per event: what its main thread (the event loop, which commits
 * and so appends the WAL) passed to write calls, less the answer bytes read
 * back; the checkpointer's copies into the database file are other threads.
 * --report-every N prints a PROGRESS line each N answers: the events/s and
 * WAL bytes per event of that stretch (a growth curve).
 *
 * SIGTERM or SIGINT ends sending early: the answers still due are awaited
 * and the figures printed as for a normal end.
 *
 * The last line of output is machine-readable: RESULT key=value ...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>

#include "gen.h"

/* Latency histogram: 1 µs bins below 10 ms, 100 µs bins up to 60 s, then an
 * overflow bin. */
#define HIST_FINE_US 10000
#define HIST_COARSE_US 100
#define HIST_MAX_US 60000000
#define HIST_BINS (HIST_FINE_US + (HIST_MAX_US - HIST_FINE_US) / HIST_COARSE_US)

enum answer_kind {
    A_OK,
    A_DUPLICATE,
    A_INVALID_JSON,
    A_INVALID_EVENT,
    A_TOO_LARGE,
    A_INTERNAL,
    A_OTHER,
    A__COUNT
};

static const char *const answer_name[A__COUNT] = {
    "ok", "duplicate", "invalid_json", "invalid_event", "too_large", "internal", "other"};

struct opts {
    const char *unix_path;
    const char *tcp;
    int conns;
    int window;
    double rate; /* 0: as fast as answers allow */
    double duration;
    uint64_t count;
    double warmup;
    struct gen_opts gen;
    uint64_t report_every; /* a PROGRESS line every N answers */
    int pid;
    int tid; /* the daemon's loop thread, for its write bytes: pid */
    double drain_timeout;
    int quiet;
    const char *flags; /* --flags: ",\"dry\":true" and/or ",\"explain\":true", or "" */
};

struct lg;

struct conn {
    struct lg *lg;
    struct bufferevent *bev;
    int64_t *sent_us; /* ring of send times of outstanding lines */
    uint32_t mask;
    uint64_t head, tail; /* outstanding = tail - head */
    int up, dead;
};

struct lg {
    struct opts o;
    struct event_base *base;
    struct conn *c;
    int n_up, n_dead;
    struct gen g;
    struct event *tick;
    struct event *sig_term, *sig_int;
    int64_t t_start, t_warm, t_stop, t_last_answer;
    int sending_done;
    uint64_t sent, answered, outstanding;
    uint64_t answered_window; /* answers read in [t_warm, t_stop] */
    uint64_t answers[A__COUNT];
    uint64_t actions;
    uint64_t lost, conn_errors, window_full;
    int64_t t_late;
    uint64_t backlog_max;
    uint32_t *hist;
    uint64_t hist_over, hist_n;
    int64_t lat_max;
    int rr;                     /* round robin for the rate mode */
    uint64_t cpu_ticks_start;   /* the daemon's cpu at the start */
    uint64_t run_ns0, wait_ns0; /* and its schedstat */
    uint64_t bytes_in;          /* answer bytes read */
    uint64_t wchar0;            /* the loop thread's write bytes at the start */
    int have_wchar;
    uint64_t next_mark; /* --report-every */
    int64_t mark_t;
    uint64_t mark_answered, mark_bytes_in, mark_wchar;
};

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* ---- the daemon's process ---- */

static int read_status_kb(int pid, const char *key, long *kb)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t kl = strlen(key);
    int found = -1;
    while (fgets(buf, sizeof(buf), f)) {
        if (strncmp(buf, key, kl) == 0 && buf[kl] == ':') {
            *kb = strtol(buf + kl + 1, NULL, 10);
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

/* utime + stime of a process, in clock ticks. */
static int read_cpu_ticks(int pid, uint64_t *ticks)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* after ") ": state(3) ... utime is field 14, stime 15 */
    unsigned long long ut = 0, st = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    *ticks = ut + st;
    return 0;
}

/* Time on a cpu and time runnable but waiting for one, in ns. */
static int read_schedstat(int pid, uint64_t *run_ns, uint64_t *wait_ns)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/schedstat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    unsigned long long r = 0, w = 0;
    int ok = fscanf(f, "%llu %llu", &r, &w) == 2;
    fclose(f);
    *run_ns = r;
    *wait_ns = w;
    return ok ? 0 : -1;
}

/* Bytes a thread has passed to write calls (wchar of /proc/PID/task/TID/io). */
static int read_wchar(int pid, int tid, uint64_t *out)
{
    char path[96], buf[128];
    snprintf(path, sizeof(path), "/proc/%d/task/%d/io", pid, tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int found = -1;
    while (fgets(buf, sizeof(buf), f)) {
        if (strncmp(buf, "wchar:", 6) == 0) {
            *out = strtoull(buf + 6, NULL, 10);
            found = 0;
            break;
        }
    }
    fclose(f);
    return found;
}

/* WAL bytes per event between two readings, or -1 */
static double wal_per_event(uint64_t wchar, uint64_t bytes_in, uint64_t events)
{
    if (!events || wchar < bytes_in)
        return -1;
    return (double)(wchar - bytes_in) / (double)events;
}

/* A PROGRESS line each time the answers pass a multiple of --report-every. */
static void progress(struct lg *lg, int64_t t)
{
    while (lg->o.report_every && lg->answered >= lg->next_mark) {
        uint64_t w = 0;
        double wpe = -1;
        if (lg->have_wchar && read_wchar(lg->o.pid, lg->o.tid, &w) == 0)
            wpe = wal_per_event(w - lg->mark_wchar, lg->bytes_in - lg->mark_bytes_in,
                                lg->answered - lg->mark_answered);
        long rss_kb = -1;
        if (lg->o.pid)
            read_status_kb(lg->o.pid, "VmRSS", &rss_kb);
        double dt = (double)(t - lg->mark_t) / 1e6, all = (double)(t - lg->t_start) / 1e6;
        printf("PROGRESS answered=%llu t_s=%.2f eps=%.0f cum_eps=%.0f wal_b_per_ev=%.0f "
               "rss_mb=%.1f\n",
               (unsigned long long)lg->answered, all,
               dt > 0 ? (double)(lg->answered - lg->mark_answered) / dt : 0,
               all > 0 ? (double)lg->answered / all : 0, wpe,
               rss_kb >= 0 ? (double)rss_kb / 1024 : -1.0);
        fflush(stdout);
        lg->mark_t = t;
        lg->mark_answered = lg->answered;
        lg->mark_bytes_in = lg->bytes_in;
        lg->mark_wchar = w;
        lg->next_mark += lg->o.report_every;
    }
}

/* ---- sending and answers ---- */

static void stop_if_done(struct lg *lg);

static int may_send(struct lg *lg)
{
    if (lg->sending_done)
        return 0;
    if (lg->o.count && lg->sent >= lg->o.count) {
        lg->sending_done = 1;
        if (!lg->t_stop)
            lg->t_stop = now_us();
        return 0;
    }
    return 1;
}

/* One line onto connection c. */
static void send_one(struct lg *lg, struct conn *c, int64_t t)
{
    struct gen_event ev;
    gen_next(&lg->g, &ev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (*lg->o.flags) { /* the line's last "}\n" closes the event: flags go before it */
        evbuffer_add(out, ev.line, ev.len - 2);
        evbuffer_add_printf(out, "%s}\n", lg->o.flags);
    } else {
        evbuffer_add(out, ev.line, ev.len);
    }
    c->sent_us[c->tail & c->mask] = t;
    c->tail++;
    lg->sent++;
    lg->outstanding++;
}

/* As fast as the window allows. */
static void pump(struct lg *lg, struct conn *c)
{
    if (lg->o.rate > 0 || !c->up || c->dead)
        return;
    int64_t t = now_us();
    while (c->tail - c->head < (uint64_t)lg->o.window && may_send(lg))
        send_one(lg, c, t);
}

static enum answer_kind classify(const char *s, size_t n, long *actions)
{
    const char *st = memmem(s, n, "\"status\":\"", 10);
    if (!st)
        return A_OTHER;
    st += 10;
    size_t rest = n - (size_t)(st - s);
    if (rest >= 3 && memcmp(st, "ok\"", 3) == 0) {
        const char *a = memmem(st, rest, "\"actions\":", 10);
        if (a)
            *actions = strtol(a + 10, NULL, 10);
        return A_OK;
    }
    if (rest >= 10 && memcmp(st, "duplicate\"", 10) == 0)
        return A_DUPLICATE;
    const char *e = memmem(s, n, "\"error\":\"", 9);
    if (!e)
        return A_OTHER;
    e += 9;
    rest = n - (size_t)(e - s);
    for (int k = A_INVALID_JSON; k < A_OTHER; k++) {
        size_t kl = strlen(answer_name[k]);
        if (rest > kl && memcmp(e, answer_name[k], kl) == 0 && e[kl] == '"')
            return (enum answer_kind)k;
    }
    return A_OTHER;
}

static void record(struct lg *lg, int64_t sent, int64_t t)
{
    lg->answered++;
    lg->outstanding--;
    lg->t_last_answer = t;
    if (t >= lg->t_warm && (!lg->t_stop || t <= lg->t_stop))
        lg->answered_window++;
    if (sent < lg->t_warm)
        return;
    int64_t us = t - sent;
    if (us < 0)
        us = 0;
    if (us > lg->lat_max)
        lg->lat_max = us;
    if (us >= HIST_MAX_US)
        lg->hist_over++;
    else if (us < HIST_FINE_US)
        lg->hist[us]++;
    else
        lg->hist[HIST_FINE_US + (us - HIST_FINE_US) / HIST_COARSE_US]++;
    lg->hist_n++;
}

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct lg *lg = c->lg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t have = evbuffer_get_length(in);
    if (!have)
        return;
    const char *p = (const char *)evbuffer_pullup(in, -1);
    size_t used = 0;
    int64_t t = now_us();
    for (;;) {
        const char *nl = memchr(p + used, '\n', have - used);
        if (!nl)
            break;
        size_t len = (size_t)(nl - (p + used));
        long actions = 0;
        enum answer_kind k = classify(p + used, len, &actions);
        lg->answers[k]++;
        lg->actions += (uint64_t)(actions > 0 ? actions : 0);
        if (c->head < c->tail) {
            record(lg, c->sent_us[c->head & c->mask], t);
            c->head++;
        }
        used += len + 1;
    }
    evbuffer_drain(in, used);
    lg->bytes_in += used;
    progress(lg, t);
    pump(lg, c);
    stop_if_done(lg);
}

static void conn_lost(struct lg *lg, struct conn *c)
{
    if (c->dead)
        return;
    c->dead = 1;
    lg->n_dead++;
    uint64_t out = c->tail - c->head;
    lg->lost += out;
    lg->outstanding -= out;
    c->head = c->tail;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    struct lg *lg = c->lg;
    if (what & BEV_EVENT_CONNECTED) {
        c->up = 1;
        lg->n_up++;
        if (lg->o.tcp) {
            int one = 1;
            setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
        if (lg->n_up == lg->o.conns) {
            lg->t_start = now_us();
            lg->t_warm = lg->t_start + (int64_t)(lg->o.warmup * 1e6);
            if (lg->o.pid) {
                read_cpu_ticks(lg->o.pid, &lg->cpu_ticks_start);
                read_schedstat(lg->o.pid, &lg->run_ns0, &lg->wait_ns0);
                lg->have_wchar = read_wchar(lg->o.pid, lg->o.tid, &lg->wchar0) == 0;
                lg->mark_wchar = lg->wchar0;
            }
            lg->mark_t = lg->t_start;
            lg->next_mark = lg->o.report_every;
            for (int i = 0; i < lg->o.conns; i++)
                pump(lg, &lg->c[i]);
        }
        return;
    }
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (!c->up)
            fprintf(stderr, "loadgen: connect: %s\n", strerror(EVUTIL_SOCKET_ERROR()));
        lg->conn_errors++;
        conn_lost(lg, c);
        if (!c->up) {
            event_base_loopbreak(lg->base);
            return;
        }
        stop_if_done(lg);
    }
}

static void stop_if_done(struct lg *lg)
{
    int all_dead = lg->n_dead == lg->o.conns;
    if ((lg->sending_done && lg->outstanding == 0) || all_dead) {
        if (!lg->t_stop)
            lg->t_stop = now_us();
        event_base_loopbreak(lg->base);
    }
}

/* Every millisecond: the offered rate, the duration, the drain deadline. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct lg *lg = arg;
    if (!lg->t_start)
        return;
    int64_t t = now_us();
    double el = (double)(t - lg->t_start) / 1e6;
    if (!lg->sending_done && lg->o.duration > 0 && el >= lg->o.duration) {
        lg->sending_done = 1;
        lg->t_stop = t;
    }
    if (lg->sending_done) {
        if ((double)(t - lg->t_stop) / 1e6 > lg->o.drain_timeout) {
            fprintf(stderr, "loadgen: %llu answers still missing after %.0f s; giving up\n",
                    (unsigned long long)lg->outstanding, lg->o.drain_timeout);
            lg->lost += lg->outstanding;
            event_base_loopbreak(lg->base);
            return;
        }
        stop_if_done(lg);
        return;
    }
    if (lg->o.rate > 0) {
        uint64_t due = (uint64_t)(el * lg->o.rate);
        uint64_t want = due > lg->sent ? due - lg->sent : 0;
        if (want > lg->backlog_max)
            lg->backlog_max = want;
        int blocked = 0;
        while (want > 0 && may_send(lg) && blocked < lg->o.conns) {
            struct conn *c = &lg->c[lg->rr];
            lg->rr = (lg->rr + 1) % lg->o.conns;
            if (c->dead || c->tail - c->head >= (uint64_t)lg->o.window) {
                blocked++;
                continue;
            }
            blocked = 0;
            send_one(lg, c, t);
            want--;
        }
        if (want > 0 && t - lg->t_late >= 1000000) {
            lg->window_full++; /* seconds with a backlog left over */
            lg->t_late = t;
        }
    }
}

/* SIGTERM, SIGINT: stop sending, drain, report. */
static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct lg *lg = arg;
    if (lg->sending_done)
        return;
    fprintf(stderr, "loadgen: signal %d: sending stopped after %llu events\n", (int)sig,
            (unsigned long long)lg->sent);
    lg->sending_done = 1;
    if (!lg->t_stop)
        lg->t_stop = now_us();
    stop_if_done(lg);
}

/* ---- percentiles ---- */

static double pct_ms(struct lg *lg, double q)
{
    if (!lg->hist_n)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)lg->hist_n);
    if (rank >= lg->hist_n)
        rank = lg->hist_n - 1;
    uint64_t acc = 0;
    for (int i = 0; i < HIST_BINS; i++) {
        acc += lg->hist[i];
        if (acc > rank)
            return (i < HIST_FINE_US ? i : HIST_FINE_US + (i - HIST_FINE_US) * HIST_COARSE_US) /
                   1000.0;
    }
    return HIST_MAX_US / 1000.0; /* in the overflow bin: at least */
}

/* ---- options ---- */

static void usage(void)
{
    fprintf(stderr, "usage: loadgen (--unix PATH | --tcp HOST:PORT) [--conns N] [--window W]\n"
                    "               [--rate EVENTS/S] [--duration S | --count N] [--warmup S]\n"
                    "               [--users N] [--new-users PCT] [--user-order random|seq]\n"
                    "               [--run-id ID] [--seed N] [--ids seq|random]\n"
                    "               [--ts-start MS] [--ts-step MS] [--mix KIND=W,...] [--pid PID]\n"
                    "               [--report-every N] [--drain-timeout S] [--quiet]\n"
                    "               [--flags dry|explain|dry,explain]\n"
                    "kinds for --mix: order refund coupon pageview app_open cart_add search\n");
    exit(2);
}

static void parse(int argc, char **argv, struct opts *o)
{
    o->conns = 4;
    o->window = 256;
    gen_opts_default(&o->gen);
    o->drain_timeout = 30;
    o->flags = "";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define ARG(name) (strcmp(a, name) == 0 && v && ++i)
        if (ARG("--unix"))
            o->unix_path = v;
        else if (ARG("--tcp"))
            o->tcp = v;
        else if (ARG("--conns"))
            o->conns = atoi(v);
        else if (ARG("--window"))
            o->window = atoi(v);
        else if (ARG("--rate"))
            o->rate = atof(v);
        else if (ARG("--duration"))
            o->duration = atof(v);
        else if (ARG("--count"))
            o->count = strtoull(v, NULL, 10);
        else if (ARG("--warmup"))
            o->warmup = atof(v);
        else if (ARG("--users"))
            o->gen.users = strtoull(v, NULL, 10);
        else if (ARG("--new-users"))
            o->gen.new_permille = (int)(atof(v) * 10 + 0.5);
        else if (ARG("--user-order"))
            o->gen.seq_users = strcmp(v, "seq") == 0;
        else if (ARG("--run-id"))
            o->gen.run_id = v;
        else if (ARG("--seed"))
            o->gen.seed = strtoull(v, NULL, 10);
        else if (ARG("--ids")) {
            if (strcmp(v, "seq") != 0 && strcmp(v, "random") != 0)
                usage();
            o->gen.random_ids = strcmp(v, "random") == 0;
        } else if (ARG("--report-every"))
            o->report_every = strtoull(v, NULL, 10);
        else if (ARG("--ts-start"))
            o->gen.ts_start = strtoll(v, NULL, 10);
        else if (ARG("--ts-step"))
            o->gen.ts_step = strtoll(v, NULL, 10);
        else if (ARG("--mix")) {
            if (gen_parse_mix(&o->gen, v) < 0)
                exit(2);
        } else if (ARG("--pid"))
            o->pid = o->tid = atoi(v);
        else if (ARG("--drain-timeout"))
            o->drain_timeout = atof(v);
        else if (strcmp(a, "--quiet") == 0)
            o->quiet = 1;
        else if (ARG("--flags")) {
            /* dry, explain or dry,explain: every event sent so */
            static char f[64];
            f[0] = 0;
            if (strstr(v, "dry"))
                strcat(f, ",\"dry\":true");
            if (strstr(v, "explain"))
                strcat(f, ",\"explain\":true");
            o->flags = f;
        } else
            usage();
#undef ARG
    }
    if ((!o->unix_path) == (!o->tcp) || o->conns < 1 || o->window < 1 || o->gen.users < 1 ||
        strlen(o->gen.run_id) > 64 || (!o->duration && !o->count))
        usage();
}

static int make_addr(const struct opts *o, struct sockaddr_storage *ss, int *len)
{
    memset(ss, 0, sizeof(*ss));
    if (o->unix_path) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        if (strlen(o->unix_path) >= sizeof(un->sun_path))
            return -1;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, o->unix_path);
        *len = (int)sizeof(*un);
        return 0;
    }
    char host[128];
    const char *colon = strrchr(o->tcp, ':');
    if (!colon || (size_t)(colon - o->tcp) >= sizeof(host))
        return -1;
    memcpy(host, o->tcp, (size_t)(colon - o->tcp));
    host[colon - o->tcp] = 0;
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
        return -1;
    *len = (int)sizeof(*in);
    return 0;
}

int main(int argc, char **argv)
{
    static struct lg L;
    struct lg *lg = &L;
    parse(argc, argv, &lg->o);
    const struct opts *o = &lg->o;

    if (gen_init(&lg->g, &o->gen) < 0)
        return 2;
    lg->hist = calloc(HIST_BINS, sizeof(*lg->hist));
    if (!lg->hist) {
        fprintf(stderr, "loadgen: out of memory\n");
        return 1;
    }

    struct sockaddr_storage ss;
    int slen;
    if (make_addr(o, &ss, &slen) < 0) {
        fprintf(stderr, "loadgen: bad address\n");
        return 2;
    }
    lg->base = event_base_new();
    lg->c = calloc((size_t)o->conns, sizeof(*lg->c));
    uint32_t ring = 1;
    while (ring < (uint32_t)o->window)
        ring <<= 1;
    for (int i = 0; i < o->conns; i++) {
        struct conn *c = &lg->c[i];
        c->lg = lg;
        c->mask = ring - 1;
        c->sent_us = calloc(ring, sizeof(*c->sent_us));
        c->bev = bufferevent_socket_new(lg->base, -1, BEV_OPT_CLOSE_ON_FREE);
        bufferevent_setcb(c->bev, read_cb, NULL, event_cb, c);
        bufferevent_enable(c->bev, EV_READ | EV_WRITE);
        if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&ss, slen) < 0) {
            fprintf(stderr, "loadgen: connect: %s\n", strerror(errno));
            return 1;
        }
    }
    lg->tick = event_new(lg->base, -1, EV_PERSIST, tick_cb, lg);
    struct timeval ms = {0, 1000};
    event_add(lg->tick, &ms);
    lg->sig_term = evsignal_new(lg->base, SIGTERM, signal_cb, lg);
    lg->sig_int = evsignal_new(lg->base, SIGINT, signal_cb, lg);
    event_add(lg->sig_term, NULL);
    event_add(lg->sig_int, NULL);

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    event_base_dispatch(lg->base);
    getrusage(RUSAGE_SELF, &ru1);
    if (!lg->t_start) {
        fprintf(stderr, "loadgen: could not connect\n");
        return 1;
    }
    /* duration: answers read between the warmup and the stop of sending;
     * count: every answer, from the start to the last answer */
    double window_s;
    if (o->count) {
        lg->answered_window = lg->answered;
        window_s = (double)(lg->t_last_answer - lg->t_start) / 1e6;
    } else {
        window_s = (double)((lg->t_stop ? lg->t_stop : now_us()) - lg->t_warm) / 1e6;
    }
    double eps = window_s > 0 ? (double)lg->answered_window / window_s : 0;
    double wall_s = (double)(now_us() - lg->t_start) / 1e6;
    double self_cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) +
                      (double)(ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
                      (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                      (double)(ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;

    long rss_kb = -1, hwm_kb = -1;
    double daemon_cpu = -1, run_s = 0, rq_pct = -1, wal_pe = -1;
    if (o->pid) {
        uint64_t wc1;
        if (lg->have_wchar && read_wchar(o->pid, o->tid, &wc1) == 0)
            wal_pe = wal_per_event(wc1 - lg->wchar0, lg->bytes_in, lg->answered);
        uint64_t t1;
        read_status_kb(o->pid, "VmRSS", &rss_kb);
        read_status_kb(o->pid, "VmHWM", &hwm_kb);
        uint64_t r1, w1;
        if (read_schedstat(o->pid, &r1, &w1) == 0 && wall_s > 0) {
            run_s = (double)(r1 - lg->run_ns0) / 1e9;
            rq_pct = (double)(w1 - lg->wait_ns0) / 1e9 / wall_s * 100;
        }
        if (read_cpu_ticks(o->pid, &t1) == 0 && wall_s > 0)
            daemon_cpu =
                (double)(t1 - lg->cpu_ticks_start) / (double)sysconf(_SC_CLK_TCK) / wall_s * 100;
    }
    uint64_t errors = 0;
    for (int k = A_DUPLICATE; k < A__COUNT; k++)
        errors += lg->answers[k];
    double p50 = pct_ms(lg, 0.50), p99 = pct_ms(lg, 0.99), p999 = pct_ms(lg, 0.999);
    double apm = lg->answers[A_OK] ? (double)lg->actions / (double)lg->answers[A_OK] : 0;

    if (!o->quiet) {
        printf("target      %s%s  conns %d  window %d  offered %s",
               o->unix_path ? "unix:" : "tcp:", o->unix_path ? o->unix_path : o->tcp, o->conns,
               o->window, o->rate > 0 ? "" : "full speed\n");
        if (o->rate > 0)
            printf("%.0f events/s\n", o->rate);
        printf("events      sent %llu  answered %llu  distinct users %llu  in %.2f s\n",
               (unsigned long long)lg->sent, (unsigned long long)lg->answered,
               (unsigned long long)lg->g.n_seen, wall_s);
        printf("mix        ");
        for (int k = 0; k < K__COUNT; k++)
            printf(" %s %llu", kind_name[k], (unsigned long long)lg->g.by_kind[k]);
        printf("\n");
        printf("throughput  %.0f answered events/s (over %.2f s%s)\n", eps, window_s,
               o->count ? "" : ", after the warmup");
        printf("latency     p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms  (%llu "
               "events)\n",
               p50, p99, p999, (double)lg->lat_max / 1000.0, (unsigned long long)lg->hist_n);
        printf("answers    ");
        for (int k = 0; k < A__COUNT; k++)
            printf(" %s %llu", answer_name[k], (unsigned long long)lg->answers[k]);
        printf("\n");
        printf("failures    unanswered %llu  connection errors %llu\n",
               (unsigned long long)lg->lost, (unsigned long long)lg->conn_errors);
        printf("actions     %.3f per ok event\n", apm);
        if (o->rate > 0)
            printf(
                "rate        seconds behind the offered rate %llu  largest backlog %llu events\n",
                (unsigned long long)lg->window_full, (unsigned long long)lg->backlog_max);
        if (o->pid)
            printf("daemon      pid %d  VmRSS %.1f MB  VmHWM %.1f MB  cpu %.0f%%  waiting for a "
                   "cpu %.0f%% of the time  %.0f answered events per cpu-second\n",
                   o->pid, (double)rss_kb / 1024, (double)hwm_kb / 1024, daemon_cpu, rq_pct,
                   run_s > 0 ? (double)lg->answered / run_s : 0);
        if (wal_pe >= 0)
            printf("wal         %.0f bytes per answered event (the loop thread's writes less "
                   "the answers)\n",
                   wal_pe);
        printf("loadgen     cpu %.0f%%\n", wall_s > 0 ? self_cpu / wall_s * 100 : 0);
    }
    printf("RESULT eps=%.0f p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f sent=%llu "
           "answered=%llu errors=%llu unanswered=%llu conn_errors=%llu users=%llu "
           "actions_per_event=%.4f rss_mb=%.1f hwm_mb=%.1f daemon_cpu=%.0f loadgen_cpu=%.0f "
           "behind_s=%llu backlog=%llu runq_pct=%.0f eps_per_cpu=%.0f wal_b_per_ev=%.0f\n",
           eps, p50, p99, p999, (double)lg->lat_max / 1000.0, (unsigned long long)lg->sent,
           (unsigned long long)lg->answered, (unsigned long long)errors,
           (unsigned long long)lg->lost, (unsigned long long)lg->conn_errors,
           (unsigned long long)lg->g.n_seen, apm, rss_kb >= 0 ? (double)rss_kb / 1024 : -1.0,
           hwm_kb >= 0 ? (double)hwm_kb / 1024 : -1.0, daemon_cpu,
           wall_s > 0 ? self_cpu / wall_s * 100 : 0, (unsigned long long)lg->window_full,
           (unsigned long long)lg->backlog_max, rq_pct,
           run_s > 0 ? (double)lg->answered / run_s : 0, wal_pe);

    for (int i = 0; i < o->conns; i++) {
        bufferevent_free(lg->c[i].bev);
        free(lg->c[i].sent_us);
    }
    free(lg->c);
    event_free(lg->tick);
    event_free(lg->sig_term);
    event_free(lg->sig_int);
    event_base_free(lg->base);
    free(lg->hist);
    gen_free(&lg->g);
    return (lg->lost || lg->conn_errors || errors) ? 3 : 0;
}
