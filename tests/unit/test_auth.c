/* The tokens file, the auth line, bearer headers and the failed-attempt
 * throttle (net/auth.c). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config/config.h"
#include "lib/util.h"
#include "net/auth.h"

/* sha256("s3cret") and sha256("other") */
#define H_S3CRET "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"
#define H_OTHER "d9298a10d1b0735837dc4bd85dac641b0f3cef27a47e5d53a54f2f3f5b2fcffa"

static char err[512];

static struct auth_tokens *parse(const char *text)
{
    err[0] = 0;
    return auth_tokens_parse("tokens", text, strlen(text), err, sizeof(err));
}

#define BAD(text, msg)                                                                             \
    do {                                                                                           \
        struct auth_tokens *t_ = parse(text);                                                      \
        CHECK(t_ == NULL);                                                                         \
        CHECK_STR(err, msg);                                                                       \
        auth_tokens_free(t_);                                                                      \
    } while (0)

static void test_parse(void)
{
    struct auth_tokens *t =
        parse("# comment\n"
              "\n"
              "   \t\n"
              "  # indented comment\n"
              "shop events " H_S3CRET "\n"
              "tester\tdry,read,dry\t" H_OTHER "\r\n"
              "ops admin,events,read,dry 0EA3A70C8D1B2AD7A9C3FF7B2DD1CD1EF4B5BD3F6"
              "E0A43B4C3FE1A7F16D28AA2");
    CHECK(t != NULL);
    if (!t)
        return;
    CHECK_INT(t->n, 3);
    CHECK_STR(t->v[0].name, "shop");
    CHECK_INT(t->v[0].scopes, AUTH_EVENTS);
    CHECK_STR(t->v[1].name, "tester");
    CHECK_INT(t->v[1].scopes, AUTH_DRY | AUTH_READ);
    CHECK_INT(t->v[2].scopes, AUTH_ALL);
    CHECK_INT(t->v[2].hash[31], 0xa2);

    const struct auth_token *k = auth_token_check(t, "s3cret", 6);
    CHECK(k && strcmp(k->name, "shop") == 0);
    k = auth_token_check(t, "other", 5);
    CHECK(k && strcmp(k->name, "tester") == 0);
    CHECK(auth_token_check(t, "s3cre", 5) == NULL);
    CHECK(auth_token_check(t, "s3cret ", 7) == NULL);
    CHECK(auth_token_check(t, "", 0) == NULL);
    CHECK(auth_token_named(t, "ops") == &t->v[2]);
    CHECK(auth_token_named(t, "op") == NULL);
    CHECK(auth_token_by_hash(t, t->v[1].hash) == &t->v[1]);

    char buf[64];
    CHECK_STR(auth_scopes_str(t->v[1].scopes, buf, sizeof(buf)), "dry,read");
    CHECK_STR(auth_scopes_str(AUTH_ALL, buf, sizeof(buf)), "events,dry,read,admin");
    auth_tokens_free(t);

    /* an empty file: no tokens (nobody gets in) */
    t = parse("");
    CHECK(t != NULL && t->n == 0);
    auth_tokens_free(t);
    t = parse("# only comments\n\n");
    CHECK(t != NULL && t->n == 0);
    auth_tokens_free(t);
}

static void test_bad_lines(void)
{
    BAD("shop events\n", "tokens:1: expected NAME SCOPES SHA256HEX (three fields separated by "
                         "blanks), found fewer");
    BAD("\n\nshop events " H_S3CRET " extra\n",
        "tokens:3: expected NAME SCOPES SHA256HEX (three fields separated by blanks), found more");
    BAD("shop events,write " H_S3CRET "\n",
        "tokens:1: unknown scope 'write' (scopes are events, dry, read, admin, separated by "
        "commas)");
    BAD("shop events, " H_S3CRET "\n",
        "tokens:1: unknown scope '' (scopes are events, dry, read, admin, separated by commas)");
    BAD("shop Events " H_S3CRET "\n",
        "tokens:1: unknown scope 'Events' (scopes are events, dry, read, admin, separated by "
        "commas)");
    BAD("shop events abc\n", "tokens:1: the third field must be the token's SHA-256 as 64 hex "
                             "digits (printf %s TOKEN | sha256sum)");
    BAD("shop events " H_S3CRET "0\n", "tokens:1: the third field must be the token's SHA-256 as "
                                       "64 hex digits (printf %s TOKEN | sha256sum)");
    BAD("shop events "
        "0ea3a70c8d1b2ad7a9c3ff7b2dd1cd1ef4b5bd3f6e0a43b4c3fe1a7f16d28aZ1\n",
        "tokens:1: the SHA-256 must be 64 hex digits");
    BAD("shop events " H_S3CRET "\nshop read " H_OTHER "\n",
        "tokens:2: the same name as token shop");
    BAD("shop events " H_S3CRET "\nother read " H_S3CRET "\n",
        "tokens:2: the same SHA-256 as token shop");
    BAD("# x\nsh\001op events " H_S3CRET "\n",
        "tokens:2: the name must be 1-128 bytes without blanks or controls");
    {
        static const char nul[] = "shop events \0 " H_S3CRET "\n";
        struct auth_tokens *t = auth_tokens_parse("tokens", nul, sizeof(nul) - 1, err, sizeof(err));
        CHECK(t == NULL);
        CHECK_STR(err, "tokens:1: a NUL byte");
        auth_tokens_free(t);
    }
    /* a missing file */
    struct auth_tokens *t = auth_tokens_load("/nonexistent/tokens", err, sizeof(err));
    CHECK(t == NULL);
    CHECK(strstr(err, "/nonexistent/tokens") != NULL);
}

static void test_lines_and_headers(void)
{
    char *tok = NULL;
    CHECK_INT(auth_line_token("{\"auth\":\"abc\"}", 14, &tok), 0);
    CHECK_STR(tok, "abc");
    free(tok);
    tok = NULL;
    CHECK_INT(auth_line_token("{\"auth\":\"abc\"}\r", 15, &tok), 0);
    free(tok);
    tok = NULL;
    const char *bad[] = {"{\"auth\":\"\"}",
                         "{\"auth\":5}",
                         "{\"auth\":\"a\",\"id\":\"x\"}",
                         "{\"auth\":\"a\",\"auth\":\"b\"}",
                         "[\"auth\"]",
                         "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\"}",
                         "{\"auth\":\"a\\u0000b\"}",
                         "not json"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        CHECK_INT(auth_line_token(bad[i], strlen(bad[i]), &tok), -1);
        CHECK(tok == NULL);
    }
    const char *t;
    size_t n;
    CHECK_INT(auth_bearer("Bearer abc", &t, &n), 0);
    CHECK(n == 3 && memcmp(t, "abc", 3) == 0);
    CHECK_INT(auth_bearer("bearer   abc def  ", &t, &n), 0);
    CHECK(n == 7 && memcmp(t, "abc def", 7) == 0);
    CHECK_INT(auth_bearer("Basic abc", &t, &n), -1);
    CHECK_INT(auth_bearer("Bearer", &t, &n), -1);
    CHECK_INT(auth_bearer("Bearer   ", &t, &n), -1);
    CHECK_INT(auth_bearer("Bearerabc", &t, &n), -1);
    CHECK_INT(auth_bearer(NULL, &t, &n), -1);
    /* what events a token's scopes allow */
    CHECK(auth_allows_event(AUTH_EVENTS, 0) && auth_allows_event(AUTH_EVENTS, 1));
    CHECK(!auth_allows_event(AUTH_DRY, 0) && auth_allows_event(AUTH_DRY, 1));
    CHECK(!auth_allows_event(AUTH_READ | AUTH_ADMIN, 1));
}

static void test_gate_line(void)
{
    struct auth_gate g;
    auth_gate_init(&g, NULL);
    g.tokens = parse("shop events " H_S3CRET "\n");
    const struct auth_token *t = NULL;
    const char *what = NULL;
    CHECK_INT(auth_gate_line(&g, " \t\r", 3, &t, &what), 0);
    CHECK_INT(auth_gate_line(&g, "", 0, &t, &what), 0);
    const char *ok = "  {\"auth\": \"s3cret\"}\r";
    CHECK_INT(auth_gate_line(&g, ok, strlen(ok), &t, &what), 1);
    CHECK(t && strcmp(t->name, "shop") == 0);
    struct sbuf b = {0};
    auth_ok_line(t->name, &b);
    CHECK_STR(b.s, "{\"status\":\"ok\",\"auth\":\"shop\"}\n");
    b.len = 0;
    auth_ok_line(NULL, &b);
    CHECK_STR(b.s, "{\"status\":\"ok\",\"auth\":null}\n");
    sb_free(&b);
    CHECK_INT(auth_line_kind(" \r", 2), 0);
    CHECK_INT(auth_line_kind(ok, strlen(ok)), 1);
    CHECK_INT(auth_line_kind("{\"auth\":1}", 10), -1);
    CHECK_INT(auth_line_kind("{\"id\":\"x\"}", 10), -1);
    const char *bad = "{\"auth\":\"s3cre\"}";
    CHECK_INT(auth_gate_line(&g, bad, strlen(bad), &t, &what), -1);
    CHECK(t == NULL);
    CHECK_STR(what, "unknown token");
    const char *ev = "{\"id\":\"e1\",\"type\":\"t\",\"user\":\"u\"}";
    CHECK_INT(auth_gate_line(&g, ev, strlen(ev), &t, &what), -1);
    CHECK_STR(what, "the first line is not {\"auth\":\"TOKEN\"}");
    auth_gate_free(&g);
}

static void test_throttle(void)
{
    struct auth_throttle th = {0};
    int64_t t0 = 1000000;
    /* five at once per address and minute, then a second each */
    for (int i = 0; i < 5; i++)
        CHECK_INT(auth_throttle_fail(&th, "10.0.0.1", t0 + i), 0);
    CHECK_INT(auth_throttle_fail(&th, "10.0.0.1", t0 + 10), AUTH_FAIL_DELAY_MS);
    CHECK_INT(auth_throttle_fail(&th, "10.0.0.1", t0 + 20), AUTH_FAIL_DELAY_MS);
    /* another address is not slowed by the first one's failures */
    CHECK_INT(auth_throttle_fail(&th, "10.0.0.2", t0 + 30), 0);
    /* a minute after the window began, it starts over */
    CHECK_INT(auth_throttle_fail(&th, "10.0.0.1", t0 + AUTH_FAIL_WINDOW_MS), 0);
    for (int i = 0; i < 4; i++)
        CHECK_INT(auth_throttle_fail(&th, "10.0.0.1", t0 + AUTH_FAIL_WINDOW_MS + 1), 0);
    CHECK_INT(auth_throttle_fail(&th, "10.0.0.1", t0 + AUTH_FAIL_WINDOW_MS + 2),
              AUTH_FAIL_DELAY_MS);
    /* many addresses: the table stays bounded, and each new address still
     * gets its free attempts */
    char peer[32];
    for (int i = 0; i < 3 * AUTH_THROTTLE_SLOTS; i++) {
        snprintf(peer, sizeof(peer), "192.168.%d.%d", i / 256, i % 256);
        CHECK_INT(auth_throttle_fail(&th, peer, t0 + 100), 0);
    }
    CHECK_INT(th.n, AUTH_THROTTLE_SLOTS);
    auth_throttle_free(&th);
}

/* The config keys of spec 14 (config/config.c). */
static struct config *cfg(const char *name, const char *text, char **errors)
{
    struct errs e = {0};
    struct config *c = config_load_string(name, text, strlen(text), &e);
    *errors = errs_join(&e);
    errs_free(&e);
    return c;
}

#define CFG_OK(name, text, var)                                                                    \
    do {                                                                                           \
        char *e_;                                                                                  \
        var = cfg(name, text, &e_);                                                                \
        CHECK(var != NULL);                                                                        \
        if (!var)                                                                                  \
            fprintf(stderr, "  %s\n", e_);                                                         \
        free(e_);                                                                                  \
    } while (0)

#define CFG_BAD(text, expected)                                                                    \
    do {                                                                                           \
        char *e_;                                                                                  \
        struct config *c_ = cfg("t.yaml", text, &e_);                                              \
        CHECK(c_ == NULL);                                                                         \
        CHECK_STR(e_, expected);                                                                   \
        config_free(c_);                                                                           \
        free(e_);                                                                                  \
    } while (0)

static void test_config_keys(void)
{
    struct config *c;
    CFG_OK("/etc/mktd/mktd.yaml",
           "daemon:\n"
           "  listen: [\"tls:0.0.0.0:7411\", \"tcp:[::]:7413\", \"unix:m.sock\"]\n"
           "  http: \"https:0.0.0.0:7412\"\n"
           "  metrics: \"0.0.0.0:9100\"\n"
           "  auth: {tokens_file: tokens}\n"
           "  tls: {cert: tls/s.pem, key: /keys/s.key, client_ca: ../ca.pem}\n"
           "  socket_mode: \"0660\"\n"
           "  limits: {max_past: 7d}\n",
           c);
    if (c) {
        CHECK_STR(c->tokens_file, "/etc/mktd/tokens");
        CHECK_STR(c->tls_cert, "/etc/mktd/tls/s.pem");
        CHECK_STR(c->tls_key, "/keys/s.key");
        CHECK_STR(c->tls_client_ca, "/etc/mktd/../ca.pem");
        CHECK_STR(c->metrics, "0.0.0.0:9100");
        CHECK_STR(c->http, "https:0.0.0.0:7412");
        CHECK_INT(c->socket_mode, 0660);
        CHECK_INT(c->max_past_ms, 7 * 86400000LL);
        int tls = 0;
        CHECK_STR(config_http_hostport(c->http, &tls), "0.0.0.0:7412");
        CHECK_INT(tls, 1);
        CHECK_STR(config_http_hostport("http:[::1]:80", &tls), "[::1]:80");
        CHECK_INT(tls, 0);
    }
    config_free(c);
    /* a config without a folder: paths as written; loopback needs no auth */
    CFG_OK("mktd.yaml",
           "daemon:\n"
           "  listen: [\"tcp:127.1.2.3:1\", \"tcp:[::1]:2\", \"tcp:localhost:3\"]\n"
           "  http: \"http:127.0.0.1:4\"\n"
           "  tls: {cert: c.pem, key: k.pem}\n",
           c);
    if (c) {
        CHECK_STR(c->tls_cert, "c.pem");
        CHECK(c->tokens_file == NULL);
        CHECK_INT(c->socket_mode, 0);
        CHECK_INT(c->max_past_ms, 0);
    }
    config_free(c);

    CFG_BAD("daemon:\n  listen: [\"tcp:0.0.0.0:1\", \"tcp:[::]:2\", \"tcp:10.0.0.1:3\"]\n",
            "t.yaml:2:11: listen: 'tcp:0.0.0.0:1' is not a loopback address: it needs "
            "daemon.auth (tokens_file), or listen on 127.0.0.1\n"
            "t.yaml:2:11: listen: 'tcp:[::]:2' is not a loopback address: it needs daemon.auth "
            "(tokens_file), or listen on 127.0.0.1\n"
            "t.yaml:2:11: listen: 'tcp:10.0.0.1:3' is not a loopback address: it needs "
            "daemon.auth (tokens_file), or listen on 127.0.0.1");
    CFG_BAD("daemon:\n  listen: [\"tcp:127.0.0.1:1\"]\n  http: \"128.0.0.1:80\"\n",
            "t.yaml:3:9: http: '128.0.0.1:80' is not a loopback address: it needs daemon.auth "
            "(tokens_file), or listen on 127.0.0.1");
    CFG_BAD("daemon:\n  listen: [\"tls:127.0.0.1:1\"]\n  http: \"https:127.0.0.1:2\"\n",
            "t.yaml:2:11: listen: 'tls:127.0.0.1:1' needs daemon.tls (cert and key)\n"
            "t.yaml:3:9: http: 'https:127.0.0.1:2' needs daemon.tls (cert and key)");
    CFG_BAD("daemon:\n  socket_mode: 0660\n",
            "t.yaml:2:16: socket_mode: must be a quoted octal mode from \"0001\" to \"0777\", "
            "like \"0660\"");
    CFG_BAD("daemon:\n  socket_mode: \"0669\"\n",
            "t.yaml:2:16: socket_mode: must be a quoted octal mode from \"0001\" to \"0777\", "
            "like \"0660\"");
    CFG_BAD("daemon:\n  socket_mode: \"01777\"\n",
            "t.yaml:2:16: socket_mode: must be a quoted octal mode from \"0001\" to \"0777\", "
            "like \"0660\"");
    CFG_BAD("daemon:\n  socket_group: \"no such group\"\n",
            "t.yaml:2:17: socket_group: no group named 'no such group'");
    CFG_BAD("daemon:\n  tls: {cert: c.pem, client_ca: ca.pem}\n",
            "t.yaml:2:8: tls: needs both 'cert' and 'key' (PEM files)\n"
            "t.yaml:2:33: tls.client_ca: needs daemon.auth (a client certificate's CN names a "
            "token of its tokens file)");
    CFG_BAD("daemon:\n  auth: {tokens: x}\n",
            "t.yaml:2:10: unknown key 'tokens' (allowed: tokens_file)\n"
            "t.yaml:2:9: auth: missing required key 'tokens_file'");
    CFG_BAD("daemon:\n  metrics: \"https:127.0.0.1:9\"\n",
            "t.yaml:2:12: metrics: 'https:127.0.0.1:9' must be HOST:PORT (plain HTTP)");
    CFG_BAD("daemon:\n  limits: {max_past: 0}\n",
            "t.yaml:2:22: limits.max_past: must be more than 0");
    CFG_BAD("daemon:\n  limits: {max_past: soon}\n",
            "t.yaml:2:22: limits.max_past: must be a duration like 250ms, 90s, 15m, 12h or 7d "
            "(a plain integer is seconds)");
}

int main(void)
{
    test_config_keys();
    test_parse();
    test_bad_lines();
    test_lines_and_headers();
    test_gate_line();
    test_throttle();
    return check_done();
}
