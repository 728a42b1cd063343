#define _GNU_SOURCE
#include "cmd/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "config/lint.h"
#include "engine/engine.h"
#include "engine/plugins.h"
#include "lib/addr.h"
#include "lib/util.h"
#include "store/store.h"

int cli_check(const char *config_path)
{
    struct errs errs = {0};
    struct config *cfg = config_load(config_path, &errs);
    struct world *w = cfg ? world_build(cfg, &errs) : NULL;
    int code = 0;
    if (!w) {
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msg[i]);
        if (cfg)
            config_free(cfg);
        code = 1;
    } else {
        struct errs warnings = {0};
        config_lint(cfg, &warnings);
        for (size_t i = 0; i < warnings.n; i++)
            fprintf(stderr, "%s\n", warnings.msg[i]);
        printf("%s: ok, %zu campaigns", config_path, world_campaigns(w));
        if (warnings.n)
            printf(", %zu warning%s", warnings.n, warnings.n == 1 ? "" : "s");
        printf("\n");
        errs_free(&warnings);
        world_free(w);
    }
    errs_free(&errs);
    plugins_unload_all();
    return code;
}

/* ---- send ---- */

struct tally {
    long ok, duplicate, error, actions;
    struct sbuf line;
};

static void tally_line(struct tally *t, const char *s, size_t n, int verbose)
{
    if (verbose)
        printf("%.*s\n", (int)n, s);
    if (memmem(s, n, "\"status\":\"ok\"", 13)) {
        t->ok++;
        const char *a = memmem(s, n, "\"actions\":", 10);
        if (a)
            t->actions += strtol(a + 10, NULL, 10);
    } else if (memmem(s, n, "\"status\":\"duplicate\"", 20)) {
        t->duplicate++;
    } else {
        t->error++;
        if (!verbose)
            fprintf(stderr, "%.*s\n", (int)n, s);
    }
}

static void tally_bytes(struct tally *t, const char *p, size_t n, int verbose)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '\n') {
            tally_line(t, t->line.s ? t->line.s : "", t->line.len, verbose);
            t->line.len = 0;
        } else {
            sb_add(&t->line, p + i, 1);
        }
    }
}

/* Sends what in_fd (or, when in_fd < 0, buf) holds to address, reading
 * answers meanwhile (a client that never read would stall the daemon's
 * answers and then itself); on_bytes gets what comes back. 0, or 2 when the
 * address cannot be reached or written. */
int cli_exchange(const char *who, const char *address, int in_fd, const char *buf, size_t buf_len,
                 void (*on_bytes)(void *arg, const char *p, size_t n), void *arg)
{
    char err[512];
    int fd = addr_connect(address, err, sizeof(err));
    if (fd < 0) {
        fprintf(stderr, "mktd %s: %s\n", who, err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    static char chunk[1 << 16], ans[1 << 16];
    const char *out = in_fd < 0 ? buf : chunk;
    size_t out_len = in_fd < 0 ? buf_len : 0, out_off = 0;
    int in_eof = in_fd < 0, sock_eof = 0, wr_shut = 0, rc = 0;
    while (!sock_eof) {
        if (!in_eof && out_off == out_len) {
            ssize_t n = read(in_fd, chunk, sizeof(chunk));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                in_eof = 1;
            } else {
                out_len = (size_t)n;
                out_off = 0;
            }
        }
        if (in_eof && out_off == out_len && !wr_shut) {
            shutdown(fd, SHUT_WR);
            wr_shut = 1;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN | (out_off < out_len ? POLLOUT : 0)};
        if (poll(&p, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            ssize_t n = read(fd, ans, sizeof(ans));
            if (n > 0)
                on_bytes(arg, ans, (size_t)n);
            else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                sock_eof = 1;
        }
        if ((p.revents & POLLOUT) && out_off < out_len) {
            ssize_t n = write(fd, out + out_off, out_len - out_off);
            if (n > 0)
                out_off += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "mktd %s: %s: %s\n", who, address, strerror(errno));
                rc = 2;
                break;
            }
        }
    }
    close(fd);
    return rc;
}

struct send_state {
    struct tally t;
    int verbose;
};

static void send_bytes(void *arg, const char *p, size_t n)
{
    struct send_state *s = arg;
    tally_bytes(&s->t, p, n, s->verbose);
}

int cli_send(const char *address, const char *file, int verbose)
{
    int in = strcmp(file, "-") == 0 ? 0 : open(file, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        fprintf(stderr, "mktd send: %s: %s\n", file, strerror(errno));
        return 2;
    }
    struct send_state ss = {.verbose = verbose};
    int rc = cli_exchange("send", address, in, NULL, 0, send_bytes, &ss);
    struct tally t = ss.t;
    if (t.line.len)
        tally_line(&t, t.line.s, t.line.len, verbose);
    if (in)
        close(in);
    sb_free(&t.line);
    printf("%ld answered: %ld ok (%ld actions), %ld duplicate, %ld error\n",
           t.ok + t.duplicate + t.error, t.ok, t.actions, t.duplicate, t.error);
    if (rc)
        return rc;
    return t.error ? 1 : 0;
}

/* ---- actions ---- */

struct print_ctx {
    FILE *out;
    struct sbuf b;
    int64_t last;
};

static int print_action(void *arg, const struct store_action *a)
{
    struct print_ctx *p = arg;
    struct sbuf *b = &p->b;
    const char *const names[] = {",\"kind\":", ",\"user\":", ",\"event_id\":"};
    const char *const vals[] = {a->campaign, a->kind, a->user, a->event_id};
    const size_t lens[] = {a->campaign_len, a->kind_len, a->user_len, a->event_id_len};
    b->len = 0;
    p->last = a->seq;
    sb_fmt(b, "{\"seq\":%lld,\"ts\":%lld,\"campaign\":", (long long)a->seq, (long long)a->ts);
    for (int i = 0; i < 4; i++) {
        if (i > 0)
            sb_str(b, names[i - 1]);
        if (!vals[i])
            sb_str(b, "null");
        else
            sb_json_str(b, vals[i], lens[i]);
    }
    sb_str(b, ",\"payload\":");
    sb_str(b, a->payload ? a->payload : "null");
    sb_str(b, "}\n");
    fwrite(b->s, 1, b->len, p->out);
    return 0;
}

int64_t print_actions(struct store *st, int64_t since, const char *campaign, FILE *out)
{
    struct print_ctx p = {.out = out, .last = since};
    int rc = store_actions_foreach(st, since, campaign, print_action, &p);
    sb_free(&p.b);
    fflush(out);
    if (rc < 0) {
        fprintf(stderr, "mktd: %s\n", store_errmsg(st));
        return -1;
    }
    return p.last;
}

int cli_actions(const char *db_path, int64_t since, const char *campaign, int follow)
{
    struct store *st;
    char err[512];
    if (store_open_readonly(db_path, &st, err, sizeof(err)) < 0) {
        fprintf(stderr, "mktd actions: %s\n", err);
        return 2;
    }
    int64_t last = since;
    for (;;) {
        last = print_actions(st, last, campaign, stdout);
        if (last < 0 || !follow)
            break;
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL);
    }
    store_close(st);
    return last < 0 ? 2 : 0;
}
