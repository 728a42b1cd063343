/* Webhook outputs: the config's `outputs:`, the store's positions and
 * filters, the body's rows and signature. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config/config.h"
#include "out/out.h"
#include "out/retention.h"
#include "store/store.h"

static char dir[] = "/tmp/mktd-outputs-XXXXXX";
static char cfg_path[64];

static void put_file(const char *name, const char *text)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    fputs(text, f);
    fclose(f);
}

static struct config *load(const char *text, char **errors)
{
    struct errs e = {0};
    struct config *c = config_load_string(cfg_path, text, strlen(text), &e);
    *errors = errs_join(&e);
    errs_free(&e);
    return c;
}

/* The errors, with the config's folder written as DIR. */
static char *errors_of(const char *text)
{
    char *errs;
    struct config *c = load(text, &errs);
    CHECK(c == NULL);
    config_free(c);
    struct sbuf b = {0};
    size_t n = strlen(dir);
    for (const char *p = errs; *p;) {
        if (strncmp(p, dir, n) == 0) {
            sb_str(&b, "DIR");
            p += n;
        } else {
            sb_add(&b, p, 1);
            p++;
        }
    }
    free(errs);
    return b.s ? b.s : xstrdup("");
}

#define OUT_ERR(text, expected)                                                                    \
    do {                                                                                           \
        char *got_ = errors_of(text);                                                              \
        CHECK_STR(got_, expected);                                                                 \
        free(got_);                                                                                \
    } while (0)

static void test_parse(void)
{
    char *errs;
    struct config *c =
        load("outputs:\n"
             "  - {id: crm, url: \"https://crm.example/hooks/mktd\", secret_file: s}\n"
             "  - id: wh_2\n"
             "    url: http://127.0.0.1:9/x\n"
             "    kinds: [coupon.issued, referral.reward]\n"
             "    campaigns: welcome\n"
             "    secret_file: sub/../s2\n"
             "    batch: 10000\n"
             "    timeout: 250ms\n",
             &errs);
    CHECK_STR(errs, "");
    free(errs);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK_INT(c->n_outputs, 2);
    struct output_cfg *o = &c->outputs[0];
    CHECK_STR(o->id, "crm");
    CHECK_STR(o->url, "https://crm.example/hooks/mktd");
    CHECK(o->kinds == NULL && o->campaigns == NULL);
    CHECK_INT(o->batch, 100);
    CHECK_INT(o->timeout_ms, 5000);
    CHECK_STR(o->secret, "key one"); /* the trailing newline goes */
    CHECK_INT(o->secret_len, 7);
    o = &c->outputs[1];
    CHECK_INT(o->n_kinds, 2);
    CHECK_STR(o->kinds[1], "referral.reward");
    CHECK_INT(o->n_campaigns, 1);
    CHECK_STR(o->campaigns[0], "welcome");
    CHECK_INT(o->batch, 10000);
    CHECK_INT(o->timeout_ms, 250);
    CHECK_STR(o->secret, "two\nlines");
    char want[128];
    snprintf(want, sizeof(want), "%s/sub/../s2", dir); /* the config's folder, not the cwd */
    CHECK_STR(o->secret_file, want);
    char *k = out_filter_json(o->kinds, o->n_kinds);
    CHECK_STR(k, "[\"coupon.issued\",\"referral.reward\"]");
    free(k);
    CHECK(out_filter_json(NULL, 0) == NULL);
    config_free(c);

    c = load("campaigns: []\n", &errs);
    CHECK(c && c->n_outputs == 0 && c->outputs == NULL);
    free(errs);
    config_free(c);
}

static void test_errors(void)
{
    OUT_ERR("outputs: {id: x}\n", "DIR/c.yaml:1:10: outputs: must be a list of outputs");
    OUT_ERR("outputs: [5]\n",
            "DIR/c.yaml:1:11: output #1: must be a map {id, url, secret_file, ...}");
    OUT_ERR("outputs:\n  - {url: \"http://h/\", secret_file: s}\n",
            "DIR/c.yaml:2:5: output #1: missing required key 'id'");
    OUT_ERR("outputs:\n  - {id: A, url: \"http://h/\", secret_file: s}\n",
            "DIR/c.yaml:2:10: output #1: id: must be 1-64 characters of [a-z0-9_-]");
    OUT_ERR("outputs:\n  - {id: a, url: \"http://h/\", secret_file: s, tls: 1}\n",
            "DIR/c.yaml:2:47: unknown key 'tls' (allowed: id, url, kinds, campaigns, "
            "secret_file, batch, timeout)");
    OUT_ERR("outputs:\n  - {id: a, url: \"http://h/\", secret_file: s}\n"
            "  - {id: a, url: \"http://h/\", secret_file: s}\n",
            "DIR/c.yaml:3:10: output #2: output id 'a' is used twice (first at line 2, column 10)");
    OUT_ERR("outputs:\n  - {id: a, url: \"ftp://h/\", secret_file: s}\n",
            "DIR/c.yaml:2:18: output a: url: 'ftp://h/' must be an http:// or https:// URL with a "
            "host");
    OUT_ERR("outputs:\n  - {id: a, url: \"http://\", secret_file: s}\n",
            "DIR/c.yaml:2:18: output a: url: 'http://' must be an http:// or https:// URL with a "
            "host");
    OUT_ERR("outputs:\n  - {id: a, url: \"http://h/a b\", secret_file: s}\n",
            "DIR/c.yaml:2:18: output a: url: 'http://h/a b' must be an http:// or https:// URL "
            "with a host");
    OUT_ERR("outputs:\n  - {id: a, secret_file: s}\n",
            "DIR/c.yaml:2:5: output a: missing required key 'url'");
    OUT_ERR("outputs:\n  - {id: a, url: \"http://h/\"}\n",
            "DIR/c.yaml:2:5: output a: missing required key 'secret_file'");
    OUT_ERR("outputs:\n  - {id: a, url: \"http://h/\", secret_file: nothere}\n",
            "DIR/c.yaml:2:44: output a: secret_file: DIR/nothere: cannot open: No such file or "
            "directory (resolved against the config's folder DIR)");
    OUT_ERR("outputs:\n  - {id: a, url: \"http://h/\", secret_file: empty}\n",
            "DIR/c.yaml:2:44: output a: secret_file: DIR/empty is empty (resolved against the "
            "config's folder DIR)");
    OUT_ERR("outputs:\n  - {id: a, url: \"http://h/\", secret_file: s, batch: 0}\n",
            "DIR/c.yaml:2:54: output a: batch: must be an integer from 1 to 10000");
    OUT_ERR("outputs:\n  - {id: a, url: \"http://h/\", secret_file: s, batch: 10001}\n",
            "DIR/c.yaml:2:54: output a: batch: must be an integer from 1 to 10000");
    OUT_ERR("outputs:\n  - {id: a, url: \"http://h/\", secret_file: s, timeout: soon}\n",
            "DIR/c.yaml:2:56: output a: timeout: must be a duration from 1ms to 1h, like 500ms, "
            "5s or 1m");
    OUT_ERR("outputs:\n  - {id: a, url: \"http://h/\", secret_file: s, kinds: []}\n",
            "DIR/c.yaml:2:54: output a: kinds: must name at least one (leave it out to take all)");
    OUT_ERR("outputs:\n  - {id: a, url: \"http://h/\", secret_file: s, campaigns: [x, {y: 1}]}\n",
            "DIR/c.yaml:2:62: output a: campaigns: must be a non-empty string");
    /* every problem at once */
    OUT_ERR("outputs:\n  - {id: a, url: 5, secret_file: s, batch: x}\n",
            "DIR/c.yaml:2:18: output a: url: '5' must be an http:// or https:// URL with a host\n"
            "DIR/c.yaml:2:44: output a: batch: must be an integer from 1 to 10000");
}

/* Retention keeps what the longest cap counts. */
static void test_cap_window(void)
{
    char *errs;
    struct config *c = load("caps:\n"
                            "  - {id: touches, kinds: [coupon.issued], max: 2, per: 7d}\n"
                            "  - {id: daily, kinds: [coupon.issued], max: 1, per: 1d}\n",
                            &errs);
    CHECK_STR(errs, "");
    free(errs);
    CHECK(c != NULL);
    if (c)
        CHECK_INT(retention_cap_window_ms(c), 7 * 86400000LL);
    config_free(c);
    c = load("daemon: {retention: {actions: 400d}}\n", &errs);
    CHECK(c && retention_cap_window_ms(c) == 0 && c->retention_actions_ms == 400 * 86400000LL);
    free(errs);
    config_free(c);
    OUT_ERR("daemon: {retention: {actions: 30m}}\n",
            "DIR/c.yaml:1:31: retention.actions: must be at least 1h");
    OUT_ERR("daemon: {retention: {events: 1d}}\n",
            "DIR/c.yaml:1:22: unknown key 'events' (allowed: actions)");
}

static int collect(void *arg, const struct store_action *a)
{
    struct sbuf *b = arg;
    store_action_json(b, a);
    return 0;
}

static void test_store(void)
{
    struct store *st;
    char err[256];
    CHECK(store_open(":memory:", 0, &st, err, sizeof(err)) == 0);
    int64_t seq, p = -1;
    const char *rows[][3] = {{"c1", "coupon.issued", "u1"},
                             {"c2", "referral.reward", "u2"},
                             {"c1", "coupon.redeemed", "u\"3"},
                             {"c2", "coupon.issued", "u4"}};
    for (int i = 0; i < 4; i++)
        CHECK(store_action_insert(st, 1000 + i, rows[i][0], rows[i][1], rows[i][2],
                                  i == 3 ? NULL : "e1", "{\"v\":1}", &seq) == 0);
    CHECK_INT(store_output_get(st, "x", &p), -ENOENT);
    CHECK(store_output_create(st, "x", 2) == 0);
    CHECK(store_output_create(st, "x", 4) == 0); /* known: stays */
    CHECK(store_output_get(st, "x", &p) == 0);
    CHECK_INT(p, 2);
    /* compare-and-set */
    CHECK_INT(store_output_advance(st, "x", 1, 3, 1, 5), 0);
    CHECK_INT(store_output_advance(st, "x", 2, 3, 1, 5), 1);
    CHECK(store_output_get(st, "x", &p) == 0 && p == 3);
    CHECK(store_output_rewind(st, "x", 0) == 0);
    CHECK_INT(store_output_rewind(st, "y", 0), -ENOENT);
    CHECK(store_output_failed(st, "x", "HTTP 500", 7) == 0);

    struct sbuf b = {0};
    CHECK(store_output_actions(st, 0, 4, NULL, NULL, 100, collect, &b) == 0);
    CHECK_STR(
        b.s,
        "{\"seq\":1,\"ts\":1000,\"campaign\":\"c1\",\"kind\":\"coupon.issued\",\"user\":\"u1\","
        "\"event_id\":\"e1\",\"payload\":{\"v\":1}}\n"
        "{\"seq\":2,\"ts\":1001,\"campaign\":\"c2\",\"kind\":\"referral.reward\",\"user\":"
        "\"u2\",\"event_id\":\"e1\",\"payload\":{\"v\":1}}\n"
        "{\"seq\":3,\"ts\":1002,\"campaign\":\"c1\",\"kind\":\"coupon.redeemed\",\"user\":"
        "\"u\\\"3\",\"event_id\":\"e1\",\"payload\":{\"v\":1}}\n"
        "{\"seq\":4,\"ts\":1003,\"campaign\":\"c2\",\"kind\":\"coupon.issued\",\"user\":\"u4\","
        "\"event_id\":null,\"payload\":{\"v\":1}}\n");
    b.len = 0;
    /* filters, the upper bound and the limit */
    CHECK(store_output_actions(st, 0, 4, "[\"coupon.issued\"]", NULL, 100, collect, &b) == 0);
    CHECK(strstr(b.s, "\"seq\":1,") && strstr(b.s, "\"seq\":4,") && !strstr(b.s, "\"seq\":2,"));
    b.len = 0;
    CHECK(store_output_actions(st, 0, 3, "[\"coupon.issued\"]", "[\"c2\"]", 100, collect, &b) == 0);
    CHECK_INT(b.len, 0);
    CHECK(store_output_actions(st, 1, 4, NULL, "[\"c1\",\"c2\"]", 1, collect, &b) == 0);
    CHECK(strncmp(b.s, "{\"seq\":2,", 9) == 0 && !strstr(b.s, "\"seq\":3,"));
    int64_t n = -1;
    CHECK(store_output_count(st, 0, 4, NULL, "[\"c1\"]", &n) == 0);
    CHECK_INT(n, 2);
    sb_free(&b);

    /* retention never passes max_seq */
    CHECK(store_outputs_min_position(st, "[\"x\",\"nope\"]", &p) == 0);
    CHECK_INT(p, 0);
    CHECK(store_outputs_min_position(st, "[\"nope\"]", &p) == 0);
    CHECK(p == INT64_MAX);
    int64_t upto = -1;
    CHECK_INT(store_actions_prune(st, 0, 3, 1002, 1, &upto), 1); /* looks at seq 1 only */
    CHECK_INT(upto, 1);
    CHECK_INT(store_actions_prune(st, 1, 3, 1002, 100, &upto), 1); /* 2; 3 is not older */
    CHECK_INT(upto, 3);
    CHECK_INT(store_actions_prune(st, 3, 3, 5000, 100, &upto), 0); /* nothing after 3 */
    CHECK_INT(upto, 3);
    CHECK_INT(store_actions_prune(st, 0, 4, 5000, 100, &upto), 2); /* 3 and 4 */
    CHECK_INT(upto, 4);
    CHECK(store_action_last_seq(st, &seq) == 0 && seq == 0);
    store_close(st);
}

static void test_signature(void)
{
    char hex[80];
    /* RFC 4231, test case 2 */
    const char *data = "what do ya want for nothing?";
    out_signature("Jefe", 4, data, strlen(data), hex);
    CHECK_STR(hex, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

int main(void)
{
    if (!mkdtemp(dir))
        return 2;
    snprintf(cfg_path, sizeof(cfg_path), "%s/c.yaml", dir);
    put_file("s", "key one\n");
    put_file("s2", "two\nlines\n");
    put_file("empty", "");
    char sub[64];
    snprintf(sub, sizeof(sub), "%s/sub", dir);
    mkdir(sub, 0700);
    test_parse();
    test_errors();
    test_store();
    test_cap_window();
    test_signature();
    const char *names[] = {"s", "s2", "empty"};
    for (size_t i = 0; i < 3; i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(sub);
    rmdir(dir);
    return check_done();
}
