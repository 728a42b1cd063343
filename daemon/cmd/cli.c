#define _GNU_SOURCE
#include "cmd/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/err.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "config/diff.h"
#include "config/lint.h"
#include "engine/engine.h"
#include "engine/plugins.h"
#include "lib/addr.h"
#include "lib/util.h"
#include "net/auth.h"
#include "net/metrics.h"
#include "net/tls.h"
#include "store/dblock.h"
#include "store/report_q.h"
#include "store/store.h"

/* The tokens file and the TLS files read as the daemon would (spec 14). */
static int check_security(const struct config *cfg)
{
    char err[512], note[4200];
    int rc = 0;
    if (cfg->tokens_file) {
        struct auth_tokens *t = auth_tokens_load(cfg->tokens_file, err, sizeof(err));
        if (!t) {
            fprintf(stderr, "%s%s\n", err,
                    config_path_note(cfg, cfg->tokens_file, note, sizeof(note)));
            rc = -1;
        }
        auth_tokens_free(t);
    }
    if (cfg->tls_cert) {
        SSL_CTX *ctx =
            tls_server_ctx(cfg->tls_cert, cfg->tls_key, cfg->tls_client_ca, err, sizeof(err));
        if (!ctx) {
            fprintf(stderr, "%s: %s%s\n", cfg->path, err,
                    config_path_note(cfg, cfg->tls_cert, note, sizeof(note)));
            rc = -1;
        }
        SSL_CTX_free(ctx);
    }
    if (config_database_moved(cfg, note, sizeof(note))) {
        fprintf(stderr, "%s: %s\n", cfg->path, note);
        rc = -1;
    }
    return rc;
}

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
    } else if (check_security(cfg) < 0) {
        world_free(w);
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

/* ---- check --running ---- */

static size_t curl_take(char *p, size_t size, size_t n, void *arg)
{
    sb_add(arg, p, size * n);
    return size * n;
}

/* GET /v1/health of the daemon at an HTTP address (HOST:PORT, http:,
 * https:): its JSON, or NULL with err. */
static json_t *get_health(const char *addr, const char *token, const char *ca, char *err,
                          size_t errlen)
{
    int tls = 0;
    const char *hp = config_http_hostport(addr, &tls);
    char url[600], auth[1100];
    snprintf(url, sizeof(url), "%s://%s/v1/health", tls ? "https" : "http", hp);
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(err, errlen, "%s: cannot start an HTTP request", url);
        return NULL;
    }
    struct sbuf body = {0};
    struct curl_slist *h = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_take);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (token) {
        snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
        h = curl_slist_append(h, auth);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    }
    if (ca)
        curl_easy_setopt(c, CURLOPT_CAINFO, ca);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    curl_slist_free_all(h);
    json_t *j = NULL;
    if (rc != CURLE_OK) {
        snprintf(err, errlen, "%s: %s", url, curl_easy_strerror(rc));
    } else if (status != 200 && status != 503) {
        snprintf(err, errlen, "%s: HTTP %ld%s", url, status,
                 status == 401 ? " (give a token of scope read with --token)" : "");
    } else if (!(j = json_loadb(body.s ? body.s : "", body.len, 0, NULL)) ||
               !json_is_object(json_object_get(j, "config"))) {
        snprintf(err, errlen, "%s: not an mktd health answer with its config", url);
        json_decref(j);
        j = NULL;
    }
    sb_free(&body);
    return j;
}

int cli_check_running(const char *config_path, const char *token, const char *ca)
{
    int code = cli_check(config_path);
    if (code)
        return code;
    struct errs errs = {0};
    struct config *nc = config_load(config_path, &errs), *oc = NULL;
    errs_free(&errs);
    if (!nc)
        return 1;
    /* the running daemon: the one holding this config's database, else the
     * one answering at its metrics or http address (the database changed) */
    char *db = NULL, sha[65] = "", found[700], err[700] = "";
    long pid = dblock_holder(nc->database);
    if (pid) {
        db = xstrdup(nc->database);
        if (pid > 0)
            snprintf(found, sizeof(found), "pid %ld, holding %s", pid, db);
        else
            snprintf(found, sizeof(found), "holding %s", db);
    }
    const char *addrs[] = {nc->metrics, nc->http};
    for (size_t i = 0; !db && i < 2; i++) {
        if (!addrs[i])
            continue;
        json_t *j = get_health(addrs[i], token, ca, err, sizeof(err));
        if (!j)
            continue;
        json_t *cj = json_object_get(j, "config");
        const char *d = json_string_value(json_object_get(cj, "database"));
        const char *h = json_string_value(json_object_get(cj, "sha256"));
        if (d && h) {
            db = xstrdup(d);
            snprintf(sha, sizeof(sha), "%s", h);
            snprintf(found, sizeof(found), "at %s, database %s", addrs[i], db);
        }
        json_decref(j);
    }
    if (!db) {
        fprintf(stderr, "%s: no running mktd found: no process holds its database %s, and %s%s%s\n",
                config_path, nc->database,
                nc->metrics || nc->http ? "no daemon answered at its metrics or http address"
                                        : "it has no metrics or http address to ask",
                err[0] ? ": " : "", err);
        config_free(nc);
        return 1;
    }
    struct store *st = NULL;
    char *text = NULL, *path = NULL;
    size_t len = 0;
    if (store_open_readonly(db, &st, err, sizeof(err)) < 0 ||
        rq_config_at(st, INT64_MAX, &text, &len, &path) < 0) {
        fprintf(stderr, "%s: the running daemon's config: database %s: %s\n", config_path, db,
                st ? store_errmsg(st) : err);
        code = 1;
        goto out;
    }
    char have[65];
    metrics_sha256_hex(text, len, have);
    if (sha[0] && strcmp(sha, have) != 0) {
        fprintf(stderr,
                "%s: the running daemon's config (sha256 %s) is not the last one its database "
                "%s recorded (sha256 %s)\n",
                config_path, sha, db, have);
        code = 1;
        goto out;
    }
    /* the text the daemon loaded, its paths resolved as this file's are
     * (it is this file as it was) */
    oc = config_load_string_in(path, nc->dir, nc->dir_real, text, len, &errs);
    if (!oc) {
        fprintf(stderr, "%s: the running daemon's config no longer loads:\n", config_path);
        for (size_t i = 0; i < errs.n; i++)
            fprintf(stderr, "  %s\n", errs.msg[i]);
        errs_free(&errs);
        code = 1;
        goto out;
    }
    errs_free(&errs);
    struct config_change *ch;
    size_t n = config_diff(oc, nc, &ch), nrestart = 0;
    for (size_t i = 0; i < n; i++)
        nrestart += ch[i].restart != 0;
    char mine[65];
    metrics_sha256_hex(nc->text, nc->text_len, mine);
    printf("running: mktd %s, config sha256 %.12s (this file: %.12s)\n", found, have, mine);
    if (!n)
        printf("no change: a reload applies nothing new%s\n",
               strcmp(mine, have) ? " (only comments or spacing differ)" : "");
    if (nrestart) {
        printf("needs a restart (a reload is refused):\n");
        for (size_t i = 0; i < n; i++)
            if (ch[i].restart)
                printf("  %s: %s\n", ch[i].key, ch[i].text);
    }
    if (n > nrestart) {
        printf("applies on reload:\n");
        for (size_t i = 0; i < n; i++)
            if (!ch[i].restart)
                printf("  %s: %s\n", ch[i].key, ch[i].text);
    }
    if (nc->tokens_file || nc->tls_cert)
        printf("a reload also reads the tokens file and the TLS files again\n");
    code = nrestart ? 1 : 0;
    config_changes_free(ch, n);
out:
    store_close(st);
    free(text);
    free(path);
    free(db);
    config_free(oc);
    config_free(nc);
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

/* --token and --ca (set by main before send or explain). */
static const char *cli_token, *cli_ca;

void cli_set_auth(const char *token, const char *ca)
{
    cli_token = token;
    cli_ca = ca;
}

/* One connection: a plain socket, or TLS over it. */
struct cconn {
    int fd;
    SSL *ssl;
};

/* read(2)/write(2) alike: >0 bytes, 0 end of stream, -1 with errno
 * (EAGAIN: try again once poll says so). */
static ssize_t cconn_io(struct cconn *c, int wr, void *p, size_t n)
{
    if (!c->ssl)
        return wr ? write(c->fd, p, n) : read(c->fd, p, n);
    ERR_clear_error();
    int r = wr ? SSL_write(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n))
               : SSL_read(c->ssl, p, (int)(n > INT32_MAX ? INT32_MAX : n));
    if (r > 0)
        return r;
    switch (SSL_get_error(c->ssl, r)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        if (errno == 0 || !wr)
            return 0; /* the peer closed without close_notify */
        return -1;
    default:
        if (!wr)
            return 0; /* an unexpected end: nothing more comes */
        errno = EPROTO;
        return -1;
    }
}

/* Writes all of p (blocking socket), for the auth line. */
static int cconn_write_all(struct cconn *c, const char *p, size_t n)
{
    while (n) {
        ssize_t w = cconn_io(c, 1, (void *)p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The first line back, when a token was sent, is the auth answer: it is
 * taken out of the stream here. */
struct auth_filter {
    void (*on_bytes)(void *arg, const char *p, size_t n);
    void *arg;
    int want; /* still reading the auth answer */
    int denied;
    struct sbuf line;
};

static void filter_bytes(struct auth_filter *f, const char *p, size_t n)
{
    if (f->want) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) + 1 : n;
        sb_add(&f->line, p, take);
        p += take;
        n -= take;
        if (!nl)
            return;
        f->want = 0;
        if (!memmem(f->line.s, f->line.len, "\"status\":\"ok\"", 13))
            f->denied = 1;
    }
    if (n && !f->denied)
        f->on_bytes(f->arg, p, n);
}

/* Sends what in_fd (or, when in_fd < 0, buf) holds to address, reading
 * answers meanwhile (a client that never read would stall the daemon's
 * answers and then itself); on_bytes gets what comes back. 0, or 2 when the
 * address cannot be reached or written, or the token is refused. */
int cli_exchange(const char *who, const char *address, int in_fd, const char *buf, size_t buf_len,
                 void (*on_bytes)(void *arg, const char *p, size_t n), void *arg)
{
    char err[512];
    struct addr a;
    if (addr_parse(address, &a, err, sizeof(err)) < 0) {
        fprintf(stderr, "mktd %s: %s: %s\n", who, address, err);
        return 2;
    }
    int fd = addr_connect(address, err, sizeof(err));
    if (fd < 0) {
        fprintf(stderr, "mktd %s: %s\n", who, err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct cconn cc = {.fd = fd};
    SSL_CTX *ctx = NULL;
    if (a.tls) {
        char host[256];
        int port;
        addr_host_port(address + 4, host, sizeof(host), &port);
        if (!(ctx = tls_client_ctx(cli_ca, err, sizeof(err))) ||
            !(cc.ssl = tls_client_connect(ctx, fd, host, err, sizeof(err)))) {
            fprintf(stderr, "mktd %s: %s: %s\n", who, address, err);
            SSL_CTX_free(ctx);
            close(fd);
            return 2;
        }
    }
    struct auth_filter f = {.on_bytes = on_bytes, .arg = arg};
    int rc = 0;
    if (cli_token) {
        struct sbuf line = {0};
        sb_str(&line, "{\"auth\":");
        sb_json_str(&line, cli_token, strlen(cli_token));
        sb_str(&line, "}\n");
        int w = cconn_write_all(&cc, line.s, line.len);
        sb_free(&line);
        if (w < 0) {
            fprintf(stderr, "mktd %s: %s: %s\n", who, address, strerror(errno));
            rc = 2;
            goto out;
        }
        f.want = 1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    static char chunk[1 << 16], ans[1 << 16];
    const char *out = in_fd < 0 ? buf : chunk;
    size_t out_len = in_fd < 0 ? buf_len : 0, out_off = 0;
    int in_eof = in_fd < 0, sock_eof = 0, wr_shut = 0;
    while (!sock_eof && !f.denied) {
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
            /* end of input: half-close (TLS: close_notify; answers still come) */
            if (cc.ssl) {
                ERR_clear_error();
                int r = SSL_shutdown(cc.ssl);
                int e = r < 0 ? SSL_get_error(cc.ssl, r) : 0;
                wr_shut = r >= 0 || (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ);
            } else {
                shutdown(fd, SHUT_WR);
                wr_shut = 1;
            }
        }
        int buffered = cc.ssl && SSL_pending(cc.ssl) > 0;
        struct pollfd p = {.fd = fd, .events = POLLIN | (out_off < out_len ? POLLOUT : 0)};
        if (!buffered && poll(&p, 1, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (buffered || (p.revents & (POLLIN | POLLHUP | POLLERR))) {
            ssize_t n = cconn_io(&cc, 0, ans, sizeof(ans));
            if (n > 0)
                filter_bytes(&f, ans, (size_t)n);
            else if (n == 0 || (errno != EAGAIN && errno != EINTR))
                sock_eof = 1;
        }
        if ((p.revents & POLLOUT) && out_off < out_len) {
            ssize_t n = cconn_io(&cc, 1, (void *)(out + out_off), out_len - out_off);
            if (n > 0)
                out_off += (size_t)n;
            else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                fprintf(stderr, "mktd %s: %s: %s\n", who, address, strerror(errno));
                rc = 2;
                break;
            }
        }
    }
    if (f.want || f.denied) {
        fprintf(stderr, "mktd %s: %s: the token was refused%s%.*s\n", who, address,
                f.line.len ? ": " : "",
                (int)(f.line.len && f.line.s[f.line.len - 1] == '\n' ? f.line.len - 1 : f.line.len),
                f.line.s ? f.line.s : "");
        rc = 2;
    }
out:
    sb_free(&f.line);
    if (cc.ssl)
        SSL_free(cc.ssl);
    SSL_CTX_free(ctx);
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
    p->b.len = 0;
    p->last = a->seq;
    store_action_json(&p->b, a);
    fwrite(p->b.s, 1, p->b.len, p->out);
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
