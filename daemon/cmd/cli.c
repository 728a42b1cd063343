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
#include "engine/engine.h"
#include "engine/plugins.h"
#include "lib/addr.h"
#include "lib/util.h"

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
        printf("%s: ok, %zu campaigns\n", config_path, world_campaigns(w));
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

int cli_send(const char *address, const char *file, int verbose)
{
    int in = strcmp(file, "-") == 0 ? 0 : open(file, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        fprintf(stderr, "mktd send: %s: %s\n", file, strerror(errno));
        return 2;
    }
    char err[512];
    int fd = addr_connect(address, err, sizeof(err));
    if (fd < 0) {
        fprintf(stderr, "mktd send: %s\n", err);
        if (in)
            close(in);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    struct tally t = {0};
    static char out[1 << 16], ans[1 << 16];
    size_t out_len = 0, out_off = 0;
    int in_eof = 0, sock_eof = 0, wr_shut = 0, rc = 0;
    while (!sock_eof) {
        if (!in_eof && out_off == out_len) {
            ssize_t n = read(in, out, sizeof(out));
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
                tally_bytes(&t, ans, (size_t)n, verbose);
            else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                sock_eof = 1;
        }
        if ((p.revents & POLLOUT) && out_off < out_len) {
            ssize_t n = write(fd, out + out_off, out_len - out_off);
            if (n > 0)
                out_off += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "mktd send: %s: %s\n", address, strerror(errno));
                rc = 2;
                break;
            }
        }
    }
    if (t.line.len)
        tally_line(&t, t.line.s, t.line.len, verbose);
    close(fd);
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

int64_t print_actions(sqlite3 *db, int64_t since, const char *campaign, FILE *out)
{
    sqlite3_stmt *st;
    const char *q = "SELECT seq, ts, campaign, kind, user, event_id, payload FROM actions "
                    "WHERE seq > ?1 AND (?2 IS NULL OR campaign = ?2) ORDER BY seq";
    if (sqlite3_prepare_v2(db, q, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "mktd: %s\n", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, since);
    if (campaign)
        sqlite3_bind_text(st, 2, campaign, -1, SQLITE_STATIC);
    int64_t last = since;
    struct sbuf b = {0};
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        b.len = 0;
        last = sqlite3_column_int64(st, 0);
        sb_fmt(&b, "{\"seq\":%lld,\"ts\":%lld,\"campaign\":", (long long)last,
               (long long)sqlite3_column_int64(st, 1));
        for (int col = 2; col <= 5; col++) {
            static const char *const names[] = {"",           "",           "",
                                                ",\"kind\":", ",\"user\":", ",\"event_id\":"};
            sb_str(&b, names[col]);
            if (sqlite3_column_type(st, col) == SQLITE_NULL)
                sb_str(&b, "null");
            else
                sb_json_str(&b, (const char *)sqlite3_column_text(st, col),
                            (size_t)sqlite3_column_bytes(st, col));
        }
        sb_str(&b, ",\"payload\":");
        sb_str(&b, (const char *)sqlite3_column_text(st, 6));
        sb_str(&b, "}\n");
        fwrite(b.s, 1, b.len, out);
    }
    sb_free(&b);
    sqlite3_finalize(st);
    fflush(out);
    if (rc != SQLITE_DONE) {
        fprintf(stderr, "mktd: %s\n", sqlite3_errmsg(db));
        return -1;
    }
    return last;
}

int cli_actions(const char *db_path, int64_t since, const char *campaign, int follow)
{
    sqlite3 *db;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        fprintf(stderr, "mktd actions: %s: %s\n", db_path, db ? sqlite3_errmsg(db) : "cannot open");
        sqlite3_close(db);
        return 2;
    }
    sqlite3_busy_timeout(db, 5000);
    int64_t last = since;
    for (;;) {
        last = print_actions(db, last, campaign, stdout);
        if (last < 0 || !follow)
            break;
        struct timespec ts = {0, 200 * 1000000};
        nanosleep(&ts, NULL);
    }
    sqlite3_close(db);
    return last < 0 ? 2 : 0;
}
