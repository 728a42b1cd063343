/* The tokens file, the auth line, bearer headers and the failed-attempt
 * throttle (net/auth.c). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
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

int main(void)
{
    test_parse();
    test_bad_lines();
    test_lines_and_headers();
    test_throttle();
    return check_done();
}
