/* Unit tests: the YAML tree (yaml.c), the config schema (config.c) and the
 * host's config/property/object accessors (hostcommon.c). */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config/config.h"
#include "config/diff.h"
#include "config/yaml.h"
#include "engine/hostcommon.h"
#include "lib/util.h"

struct mktd_ctx {
    struct ctx_base base;
};

/* ---- helpers ---- */

static struct ydoc *yload(const char *text, struct errs *e)
{
    return ydoc_load_string("t.yaml", text, strlen(text), e);
}

/* Loads a config that must fail; returns the joined errors (malloc'd). */
static char *cfg_errors(const char *text)
{
    struct errs e = {0};
    struct config *c = config_load_string("t.yaml", text, strlen(text), &e);
    char *s;
    if (c) {
        config_free(c);
        s = xstrdup("(loaded)");
    } else {
        s = errs_join(&e);
    }
    errs_free(&e);
    return s;
}

static struct config *cfg_ok(const char *text)
{
    struct errs e = {0};
    struct config *c = config_load_string("t.yaml", text, strlen(text), &e);
    if (!c) {
        char *s = errs_join(&e);
        fprintf(stderr, "unexpected config errors:\n%s\n", s);
        free(s);
    }
    errs_free(&e);
    return c;
}

/* The config fails with exactly the given error lines ('\n'-joined). */
#define CFG_ERR(text, expected)                                                                    \
    do {                                                                                           \
        char *got_ = cfg_errors(text);                                                             \
        CHECK_STR(got_, expected);                                                                 \
        free(got_);                                                                                \
    } while (0)

/* The document fails to parse with exactly these errors. */
#define YAML_ERR(text, expected)                                                                   \
    do {                                                                                           \
        struct errs e_ = {0};                                                                      \
        struct ydoc *d_ = yload(text, &e_);                                                        \
        CHECK(d_ == NULL);                                                                         \
        ydoc_free(d_);                                                                             \
        char *got_ = errs_join(&e_);                                                               \
        CHECK_STR(got_, expected);                                                                 \
        free(got_);                                                                                \
        errs_free(&e_);                                                                            \
    } while (0)

/* Parses "v: <text>" and resolves the value. */
static enum yscalar res(const char *text, int64_t *i, double *d, int *b)
{
    struct errs e = {0};
    struct sbuf sb = {0};
    sb_fmt(&sb, "v: %s\n", text);
    struct ydoc *doc = yload(sb.s, &e);
    enum yscalar r = (enum yscalar) - 1;
    if (doc)
        r = ynode_resolve(ynode_get(doc->root, "v"), i, d, b);
    ydoc_free(doc);
    sb_free(&sb);
    errs_free(&e);
    return r;
}

/* ---- YAML ---- */

static void test_resolve(void)
{
    int64_t i = 0;
    double d = 0;
    int b = -1;

    CHECK_INT(res("", NULL, NULL, NULL), YS_NULL);
    CHECK_INT(res("~", NULL, NULL, NULL), YS_NULL);
    CHECK_INT(res("null", NULL, NULL, NULL), YS_NULL);
    CHECK_INT(res("Null", NULL, NULL, NULL), YS_NULL);
    CHECK_INT(res("NULL", NULL, NULL, NULL), YS_NULL);
    CHECK_INT(res("nULL", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("\"null\"", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("''", NULL, NULL, NULL), YS_STR);

    CHECK_INT(res("true", NULL, NULL, &b), YS_BOOL);
    CHECK_INT(b, 1);
    CHECK_INT(res("True", NULL, NULL, &b), YS_BOOL);
    CHECK_INT(res("TRUE", NULL, NULL, &b), YS_BOOL);
    CHECK_INT(res("false", NULL, NULL, &b), YS_BOOL);
    CHECK_INT(b, 0);
    CHECK_INT(res("False", NULL, NULL, &b), YS_BOOL);
    CHECK_INT(res("FALSE", NULL, NULL, &b), YS_BOOL);
    CHECK_INT(res("yes", NULL, NULL, &b), YS_STR); /* YAML 1.1 only */
    CHECK_INT(res("on", NULL, NULL, &b), YS_STR);
    CHECK_INT(res("tRue", NULL, NULL, &b), YS_STR);
    CHECK_INT(res("'true'", NULL, NULL, &b), YS_STR);

    CHECK_INT(res("0", &i, &d, NULL), YS_INT);
    CHECK_INT(i, 0);
    CHECK_INT(res("10000", &i, &d, NULL), YS_INT);
    CHECK_INT(i, 10000);
    CHECK(d == 10000.0);
    CHECK_INT(res("-42", &i, NULL, NULL), YS_INT);
    CHECK_INT(i, -42);
    CHECK_INT(res("+7", &i, NULL, NULL), YS_INT);
    CHECK_INT(i, 7);
    CHECK_INT(res("007", &i, NULL, NULL), YS_INT);
    CHECK_INT(i, 7);
    CHECK_INT(res("0o17", &i, NULL, NULL), YS_INT);
    CHECK_INT(i, 15);
    CHECK_INT(res("0x1F", &i, NULL, NULL), YS_INT);
    CHECK_INT(i, 31);
    CHECK_INT(res("0xff", &i, NULL, NULL), YS_INT);
    CHECK_INT(i, 255);
    CHECK_INT(res("9223372036854775807", &i, NULL, NULL), YS_INT);
    CHECK(i == INT64_MAX);
    CHECK_INT(res("-9223372036854775808", &i, NULL, NULL), YS_INT);
    CHECK(i == INT64_MIN);
    CHECK_INT(res("9223372036854775808", NULL, &d, NULL), YS_FLOAT);
    CHECK(d == 9223372036854775808.0);
    CHECK_INT(res("-9223372036854775809", NULL, &d, NULL), YS_FLOAT);
    CHECK_INT(res("0x8000000000000000", NULL, &d, NULL), YS_FLOAT);
    CHECK(d == 9223372036854775808.0);
    CHECK_INT(res("0x", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("0o8", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("0xg", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("-0x1", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("1_000", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("\"123\"", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("'123'", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("!!str 123", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("|\n  123\n", NULL, NULL, NULL), YS_STR);

    CHECK_INT(res("1.5", NULL, &d, NULL), YS_FLOAT);
    CHECK(d == 1.5);
    CHECK_INT(res("-.5", NULL, &d, NULL), YS_FLOAT);
    CHECK(d == -0.5);
    CHECK_INT(res("5.", NULL, &d, NULL), YS_FLOAT);
    CHECK(d == 5.0);
    CHECK_INT(res("1e3", NULL, &d, NULL), YS_FLOAT);
    CHECK(d == 1000.0);
    CHECK_INT(res("+2.5E-1", NULL, &d, NULL), YS_FLOAT);
    CHECK(d == 0.25);
    CHECK_INT(res("100.0", &i, &d, NULL), YS_FLOAT);
    CHECK_INT(res(".inf", NULL, &d, NULL), YS_FLOAT);
    CHECK(isinf(d) && d > 0);
    CHECK_INT(res("-.Inf", NULL, &d, NULL), YS_FLOAT);
    CHECK(isinf(d) && d < 0);
    CHECK_INT(res("+.INF", NULL, &d, NULL), YS_FLOAT);
    CHECK_INT(res(".NaN", NULL, &d, NULL), YS_FLOAT);
    CHECK(isnan(d));
    CHECK_INT(res("-.nan", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res(".", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("1e", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("e3", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("1.2.3", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("2026-11-01T00:00:00Z", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("12:30", NULL, NULL, NULL), YS_STR);
    CHECK_INT(res("90s", NULL, NULL, NULL), YS_STR);

    /* Non-scalars resolve as null. */
    CHECK_INT(res("[1]", NULL, NULL, NULL), YS_NULL);
    CHECK_INT(ynode_resolve(NULL, NULL, NULL, NULL), YS_NULL);
}

static void test_positions(void)
{
    struct errs e = {0};
    const char *text = "a: 1\n"
                       "b:\n"
                       "  - x\n"
                       "  - {k: \"v\", n: [1, 2]}\n"
                       "c: |\n"
                       "  text\n";
    struct ydoc *d = yload(text, &e);
    CHECK(d != NULL);
    CHECK_INT(e.n, 0);
    if (!d)
        return;
    const struct ynode *r = d->root;
    CHECK_INT(r->kind, Y_MAP);
    CHECK_INT(r->line, 1);
    CHECK_INT(r->col, 1);
    CHECK_INT(r->n, 3);
    CHECK_STR(r->keys[1]->str, "b");
    CHECK_INT(r->keys[1]->line, 2);
    const struct ynode *a = ynode_get(r, "a");
    CHECK_INT(a->line, 1);
    CHECK_INT(a->col, 4);
    CHECK_INT(a->plain, 1);
    const struct ynode *b = ynode_get(r, "b");
    CHECK_INT(b->kind, Y_SEQ);
    CHECK_INT(b->line, 3);
    CHECK_INT(b->col, 3);
    CHECK_INT(b->n, 2);
    CHECK_INT(b->items[0]->line, 3);
    CHECK_INT(b->items[0]->col, 5);
    const struct ynode *m = b->items[1];
    CHECK_INT(m->kind, Y_MAP);
    CHECK_INT(m->line, 4);
    CHECK_INT(m->col, 5);
    const struct ynode *k = ynode_get(m, "k");
    CHECK_STR(k->str, "v");
    CHECK_INT(k->plain, 0);
    CHECK_INT(k->col, 9);
    const struct ynode *n = ynode_get(m, "n");
    CHECK_INT(n->kind, Y_SEQ);
    CHECK_INT(n->col, 17);
    CHECK_INT(n->items[1]->col, 21);
    const struct ynode *c = ynode_get(r, "c");
    CHECK_STR(c->str, "text\n");
    CHECK_INT(c->plain, 0);
    CHECK_INT(c->line, 5);
    CHECK(ynode_get(r, "zz") == NULL);
    CHECK(ynode_get(a, "a") == NULL);
    CHECK(ynode_get(NULL, "a") == NULL);
    CHECK_STR(r->file, "t.yaml");
    ydoc_free(d);

    /* Empty documents. */
    d = yload("", &e);
    CHECK(d != NULL && d->root == NULL);
    ydoc_free(d);
    d = yload("# only a comment\n", &e);
    CHECK(d != NULL && d->root == NULL);
    ydoc_free(d);
    d = yload("---\n...\n", &e);
    CHECK(d != NULL);
    CHECK(d && (d->root == NULL || ynode_resolve(d->root, NULL, NULL, NULL) == YS_NULL));
    ydoc_free(d);
    CHECK_INT(e.n, 0);
    errs_free(&e);
}

static void test_yaml_errors(void)
{
    YAML_ERR("a: 1\nb: 2\na: 3\n", "t.yaml:3:1: duplicate key 'a' (first at line 1, column 1)");
    YAML_ERR("x: {k: 1, k: 2}\n", "t.yaml:1:11: duplicate key 'k' (first at line 1, column 5)");
    YAML_ERR("a: &x 1\nb: *x\n", "t.yaml:1:4: anchors (&x) are not supported; write the value out\n"
                                 "t.yaml:2:4: aliases (*x) are not supported; write the value out");
    YAML_ERR("a: 1\n---\nb: 2\n", "t.yaml:2:1: more than one document; a config is one document");
    YAML_ERR("? [a]\n: 1\n", "t.yaml:1:3: map keys must be scalars");
    YAML_ERR("{[1]: 2}\n", "t.yaml:1:2: map keys must be scalars");
    YAML_ERR("a: !!int 5\n", "t.yaml:1:4: tag 'tag:yaml.org,2002:int' is not supported");
    YAML_ERR("a: [1, 2\n", "t.yaml:2:1: syntax error: did not find expected ',' or ']' (while "
                           "parsing a flow sequence at line 1, column 4)");
    YAML_ERR("a: 1\n b: 2\n", "t.yaml:2:3: syntax error: mapping values are not allowed in this "
                              "context");
    YAML_ERR("a:\n  - 1\n  b: 2\n", "t.yaml:3:3: syntax error: did not find expected '-' "
                                    "indicator (while parsing a block collection at line 2, "
                                    "column 3)");
    YAML_ERR("a: \"x\n", "t.yaml:2:1: syntax error: found unexpected end of stream (while "
                         "scanning a quoted scalar at line 1, column 4)");

    /* Garbage never crashes, and always gives one error with a position. */
    static const char *const garbage[] = {
        "\x01\x02\x03", "a: \xff\xfe\n",   "\xc3(",   "a: b: c: [\n", "]]]]",
        "{{{{",         "- - - -\n  x: :", "\t- a\n", "a: 'x",        "&a [*a]",
    };
    for (size_t k = 0; k < sizeof(garbage) / sizeof(garbage[0]); k++) {
        struct errs e = {0};
        struct ydoc *d = yload(garbage[k], &e);
        CHECK(d == NULL);
        CHECK(e.n >= 1);
        CHECK(e.n >= 1 && strncmp(e.msg[0], "t.yaml:", 7) == 0);
        ydoc_free(d);
        errs_free(&e);
    }
    /* Text with a NUL byte inside. */
    {
        struct errs e = {0};
        struct ydoc *d = ydoc_load_string("t.yaml", "a: 1\0b: 2", 9, &e);
        CHECK(d == NULL);
        CHECK(e.n == 1 && strstr(e.msg[0], "invalid input") != NULL);
        ydoc_free(d);
        errs_free(&e);
    }
    /* Deep nesting is refused, not recursed into. */
    {
        struct sbuf sb = {0};
        for (int k = 0; k < 100000; k++)
            sb_str(&sb, "[");
        struct errs e = {0};
        struct ydoc *d = ydoc_load_string("t.yaml", sb.s, sb.len, &e);
        CHECK(d == NULL);
        CHECK_STR(e.n ? e.msg[0] : NULL, "t.yaml:1:201: nesting deeper than 200 levels");
        ydoc_free(d);
        errs_free(&e);
        sb_free(&sb);
    }
    /* Missing files. */
    {
        struct errs e = {0};
        CHECK(ydoc_load_file("/nonexistent/x.yaml", &e) == NULL);
        CHECK_STR(e.n ? e.msg[0] : NULL,
                  "/nonexistent/x.yaml: cannot open: No such file or directory");
        errs_free(&e);
        CHECK(config_load("/nonexistent/x.yaml", &e) == NULL);
        CHECK_INT(e.n, 1);
        errs_free(&e);
    }
}

static void test_check_keys_and_json(void)
{
    struct errs e = {0};
    struct ydoc *d = yload("a: 1\nzz: 2\nb: 3\nqq: x\n", &e);
    static const char *const allowed[] = {"a", "b", "c", NULL};
    CHECK_INT(ycheck_keys(&e, d->root, allowed), 2);
    CHECK_INT(e.n, 2);
    CHECK_STR(e.msg[0], "t.yaml:2:1: unknown key 'zz' (allowed: a, b, c)");
    CHECK_STR(e.msg[1], "t.yaml:4:1: unknown key 'qq' (allowed: a, b, c)");
    CHECK_INT(ycheck_keys(&e, NULL, allowed), 0);
    CHECK_INT(ycheck_keys(&e, ynode_get(d->root, "a"), allowed), 0);
    ydoc_free(d);
    errs_free(&e);

    d = yload("z: 1\n"
              "a: [true, False, ~, 1.5, -3, \"7\", 0x10, x y, '', .inf]\n"
              "m: {k: v, \"n\": {}}\n"
              "big: 99999999999999999999\n"
              "q: \"a\\\"b\\u00e9\"\n",
              &e);
    CHECK(d != NULL);
    char *j = ynode_to_json(d->root);
    CHECK_STR(j, "{\"z\":1,\"a\":[true,false,null,1.5,-3,\"7\",16,\"x y\",\"\",\".inf\"],"
                 "\"m\":{\"k\":\"v\",\"n\":{}},\"big\":1e20,\"q\":\"a\\\"b\xc3\xa9\"}");
    free(j);
    j = ynode_to_json(NULL);
    CHECK_STR(j, "null");
    free(j);
    json_t *jj = ynode_to_jansson(ynode_get(d->root, "a"));
    CHECK(json_is_array(jj) && json_array_size(jj) == 10);
    CHECK(json_is_integer(json_array_get(jj, 4)) &&
          json_integer_value(json_array_get(jj, 4)) == -3);
    CHECK(json_is_real(json_array_get(jj, 3)));
    CHECK(json_is_string(json_array_get(jj, 5)));
    json_decref(jj);
    ydoc_free(d);
    errs_free(&e);
}

/* ---- config ---- */

static const char *const full_config =
    "daemon:\n"
    "  listen: [\"tcp:127.0.0.1:7411\", \"unix:var/mktd.sock\", \"tcp:[::1]:9000\"]\n"
    "  http: \"127.0.0.1:7412\"\n"
    "  database: var/test.db\n"
    "  plugin_dirs: [build/plugins, /usr/lib/mktd]\n"
    "  clock: event\n"
    "  commit: {max_batch: 10, max_delay_ms: 0, synchronous: full}\n"
    "  limits: {max_event_bytes: 128, max_connections: 3, max_http_body: 1000,\n"
    "           max_future: 2h}\n"
    "  log: {level: debug}\n"
    "campaigns:\n"
    "  - id: first-order-coupon\n"
    "    plugin: coupon\n"
    "    enabled: false\n"
    "    starts: 2026-11-01T00:00:00Z\n"
    "    ends: 2026-12-31T23:59:59Z\n"
    "    when:\n"
    "      event: order.paid\n"
    "      all:\n"
    "        - {field: props.amount, op: gte, value: 10000}\n"
    "        - {field: user.orders, op: eq, value: 1}\n"
    "        - {field: props.a.b, op: in, value: [x, 2, 2.5, true]}\n"
    "        - {field: user.count.order.paid, op: lt, value: \"3\"}\n"
    "        - {field: props.vip, op: exists}\n"
    "        - {field: type, op: exists, value: false}\n"
    "        - {field: user.id, op: not_in, value: []}\n"
    "    params: {value: 500, valid_for: 7d}\n"
    "  - id: ref_1\n"
    "    plugin: referral\n"
    "    starts: 0\n"
    "    ends: 1000\n"
    "  - id: win\n"
    "    plugin: reactivation\n"
    "    when: {event: [a.b, c-d, e_f]}\n";

static void test_config_full(void)
{
    struct config *c = cfg_ok(full_config);
    CHECK(c != NULL);
    if (!c)
        return;
    CHECK_STR(c->path, "t.yaml");
    CHECK_INT(c->text_len, strlen(full_config));
    CHECK_STR(c->text, full_config);
    CHECK_INT(c->n_listen, 3);
    CHECK_STR(c->listen[1], "unix:var/mktd.sock");
    CHECK_STR(c->listen[2], "tcp:[::1]:9000");
    CHECK_STR(c->http, "127.0.0.1:7412");
    CHECK_STR(c->database, "var/test.db");
    CHECK_INT(c->n_plugin_dirs, 2);
    CHECK_STR(c->plugin_dirs[1], "/usr/lib/mktd");
    CHECK_INT(c->clock_event, 1);
    CHECK_INT(c->max_batch, 10);
    CHECK_INT(c->max_delay_ms, 0);
    CHECK_INT(c->sync_full, 1);
    CHECK_INT(c->max_event_bytes, 128);
    CHECK_INT(c->max_connections, 3);
    CHECK_INT(c->max_http_body, 1000);
    CHECK_INT(c->max_future_ms, 7200000);
    CHECK_INT(c->log_level, MKTD_LOG_DEBUG);
    CHECK_INT(c->n_campaigns, 3);

    struct campaign_cfg *k = &c->campaigns[0];
    CHECK_STR(k->id, "first-order-coupon");
    CHECK_STR(k->plugin, "coupon");
    CHECK_INT(k->enabled, 0);
    CHECK_INT(k->starts, 1793491200000LL);
    CHECK_INT(k->ends, 1798761599000LL);
    CHECK_INT(k->has_when, 1);
    CHECK(k->when_node != NULL);
    CHECK_INT(k->n_events, 1);
    CHECK_STR(k->events[0], "order.paid");
    CHECK_INT(k->n_conds, 7);
    CHECK_INT(k->conds[0].field, F_PROPS);
    CHECK_STR(k->conds[0].arg, "amount");
    CHECK_INT(k->conds[0].op, OP_GTE);
    CHECK(json_is_integer(k->conds[0].value) && json_integer_value(k->conds[0].value) == 10000);
    CHECK_INT(k->conds[0].node->line, 20);
    CHECK_INT(k->conds[0].node->col, 11);
    CHECK_INT(k->conds[1].field, F_USER_ORDERS);
    CHECK(k->conds[1].arg == NULL);
    CHECK_INT(k->conds[1].op, OP_EQ);
    CHECK_INT(k->conds[2].field, F_PROPS);
    CHECK_STR(k->conds[2].arg, "a.b");
    CHECK_INT(k->conds[2].op, OP_IN);
    char *j = json_dumps(k->conds[2].value, JSON_COMPACT);
    CHECK_STR(j, "[\"x\",2,2.5,true]");
    free(j);
    CHECK_INT(k->conds[3].field, F_USER_COUNT);
    CHECK_STR(k->conds[3].arg, "order.paid");
    CHECK_INT(k->conds[3].op, OP_LT);
    CHECK(json_is_string(k->conds[3].value));
    CHECK_INT(k->conds[4].op, OP_EXISTS);
    CHECK(json_is_true(k->conds[4].value));
    CHECK_INT(k->conds[5].field, F_TYPE);
    CHECK(json_is_false(k->conds[5].value));
    CHECK_INT(k->conds[6].field, F_USER_ID);
    CHECK_INT(k->conds[6].op, OP_NOT_IN);
    CHECK(json_is_array(k->conds[6].value) && json_array_size(k->conds[6].value) == 0);
    CHECK(k->params != NULL && k->params->kind == Y_MAP);
    CHECK_INT(k->node->line, 12);
    CHECK_INT(k->node->col, 5);

    k = &c->campaigns[1];
    CHECK_STR(k->id, "ref_1");
    CHECK_INT(k->enabled, 1);
    CHECK_INT(k->starts, 0);
    CHECK_INT(k->ends, 1000);
    CHECK_INT(k->has_when, 0);
    CHECK(k->when_node == NULL);
    CHECK(k->params == NULL);

    k = &c->campaigns[2];
    CHECK_INT(k->n_events, 3);
    CHECK_STR(k->events[2], "e_f");
    CHECK_INT(k->n_conds, 0);
    CHECK(k->starts == INT64_MIN && k->ends == INT64_MAX);
    config_free(c);
}

static void check_defaults(const struct config *c)
{
    CHECK_INT(c->n_listen, 1);
    CHECK_STR(c->listen[0], "tcp:127.0.0.1:7411");
    CHECK(c->http == NULL);
    CHECK_STR(c->database, "var/mktd.db");
    CHECK_INT(c->n_plugin_dirs, 1);
    CHECK_STR(c->plugin_dirs[0], "build/plugins");
    CHECK_INT(c->clock_event, 0);
    CHECK_INT(c->max_batch, 1024);
    CHECK_INT(c->max_delay_ms, 2);
    CHECK_INT(c->sync_full, 0);
    CHECK_INT(c->max_event_bytes, 65536);
    CHECK_INT(c->max_connections, 1024);
    CHECK_INT(c->max_http_body, 16777216);
    CHECK_INT(c->max_future_ms, 86400000);
    CHECK_INT(c->log_level, MKTD_LOG_INFO);
    CHECK_INT(c->n_campaigns, 0);
}

static void test_config_defaults(void)
{
    static const char *const texts[] = {
        "",
        "# nothing\n",
        "{}\n",
        "daemon:\ncampaigns:\n",
        "daemon: {}\ncampaigns: []\n",
        "daemon: {commit: {}, limits: ~, log: {level: ~}}\n",
    };
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct config *c = cfg_ok(texts[i]);
        CHECK(c != NULL);
        if (c)
            check_defaults(c);
        config_free(c);
    }
    struct config *c = cfg_ok("daemon: {listen: \"unix:/run/m.sock\", plugin_dirs: p, "
                              "limits: {max_future: 90}, log: {level: warn}}\n");
    CHECK(c != NULL);
    if (c) {
        CHECK_INT(c->n_listen, 1);
        CHECK_STR(c->listen[0], "unix:/run/m.sock");
        CHECK_INT(c->n_plugin_dirs, 1);
        CHECK_STR(c->plugin_dirs[0], "p");
        CHECK_INT(c->max_future_ms, 90000);
        CHECK_INT(c->log_level, MKTD_LOG_WARN);
    }
    config_free(c);
    c = cfg_ok("daemon: {listen: [], http: \"[::1]:80\", limits: {max_future: 250ms}, "
               "log: {level: error}}\n");
    CHECK(c != NULL);
    if (c) {
        CHECK_INT(c->n_listen, 0);
        CHECK_STR(c->http, "[::1]:80");
        CHECK_INT(c->max_future_ms, 250);
        CHECK_INT(c->log_level, MKTD_LOG_ERROR);
    }
    config_free(c);
    /* Limits at their bounds. */
    c = cfg_ok("daemon:\n"
               "  commit: {max_batch: 1000000, max_delay_ms: 10000}\n"
               "  limits: {max_event_bytes: 16777216, max_connections: 1000000,\n"
               "           max_http_body: 1073741824, max_future: 0}\n");
    CHECK(c != NULL);
    if (c) {
        CHECK_INT(c->max_batch, 1000000);
        CHECK_INT(c->max_event_bytes, 16777216);
        CHECK_INT(c->max_http_body, 1073741824);
        CHECK_INT(c->max_future_ms, 0);
    }
    config_free(c);
}

static void test_config_daemon_errors(void)
{
    CFG_ERR("- a\n", "t.yaml:1:1: the config must be a map with keys daemon and campaigns");
    CFG_ERR("daemon: {}\nextra: 1\n",
            "t.yaml:2:1: unknown key 'extra' (allowed: daemon, campaigns, caps, outputs)");
    CFG_ERR("daemon: 5\n", "t.yaml:1:9: daemon: must be a map");
    CFG_ERR("daemon:\n  listn: x\n",
            "t.yaml:2:3: unknown key 'listn' (allowed: listen, http, database, plugin_dirs, "
            "clock, commit, limits, log, auth, tls, metrics, socket_mode, socket_group, retention, "
            "cluster, event_log)");
    CFG_ERR("daemon:\n  commit:\n    max_batch: 0\n",
            "t.yaml:3:16: commit.max_batch: must be an integer from 1 to 1000000");
    CFG_ERR("daemon:\n  commit: {max_batch: 1000001}\n",
            "t.yaml:2:23: commit.max_batch: must be an integer from 1 to 1000000");
    CFG_ERR("daemon:\n  commit: {max_batch: \"10\"}\n",
            "t.yaml:2:23: commit.max_batch: must be an integer from 1 to 1000000");
    CFG_ERR("daemon:\n  commit: {max_batch: 1.5}\n",
            "t.yaml:2:23: commit.max_batch: must be an integer from 1 to 1000000");
    CFG_ERR("daemon:\n  commit: {max_delay_ms: -1}\n",
            "t.yaml:2:26: commit.max_delay_ms: must be an integer from 0 to 10000");
    CFG_ERR("daemon:\n  commit: {synchronous: off}\n",
            "t.yaml:2:25: commit.synchronous: must be normal or full");
    CFG_ERR("daemon:\n  commit: {batch: 1}\n",
            "t.yaml:2:12: unknown key 'batch' (allowed: max_batch, max_delay_ms, synchronous)");
    CFG_ERR("daemon:\n  commit: [1]\n", "t.yaml:2:11: commit: must be a map");
    CFG_ERR("daemon:\n  clock: system\n", "t.yaml:2:10: clock: must be wall or event");
    CFG_ERR("daemon:\n  log: {level: verbose}\n",
            "t.yaml:2:16: log.level: must be error, warn, info or debug");
    CFG_ERR("daemon:\n  log: {lvl: info}\n", "t.yaml:2:9: unknown key 'lvl' (allowed: level)");
    CFG_ERR("daemon:\n  limits: {max_event_bytes: 63}\n",
            "t.yaml:2:29: limits.max_event_bytes: must be an integer from 64 to 16777216");
    CFG_ERR("daemon:\n  limits: {max_connections: 0}\n",
            "t.yaml:2:29: limits.max_connections: must be an integer from 1 to 1000000");
    CFG_ERR("daemon:\n  limits: {max_http_body: 1073741825}\n",
            "t.yaml:2:27: limits.max_http_body: must be an integer from 1 to 1073741824");
    CFG_ERR("daemon:\n  limits: {max_future: 1w}\n",
            "t.yaml:2:24: limits.max_future: must be a duration like 250ms, 90s, 15m, 12h or 7d "
            "(a plain integer is seconds)");
    CFG_ERR("daemon:\n  limits: {max_future: -5}\n",
            "t.yaml:2:24: limits.max_future: must be a duration like 250ms, 90s, 15m, 12h or 7d "
            "(a plain integer is seconds)");
    CFG_ERR("daemon:\n  limits: {max_body: 5}\n",
            "t.yaml:2:12: unknown key 'max_body' (allowed: max_event_bytes, max_connections, "
            "max_http_body, max_future, working_set, max_past)");
    CFG_ERR("daemon:\n  listen: [\"tcp:127.0.0.1:0\", \"udp:x:1\", \"tcp::80\", \"unix:\"]\n",
            "t.yaml:2:12: listen: 'tcp:127.0.0.1:0' must be tcp:HOST:PORT, tls:HOST:PORT (port "
            "1-65535, IPv6 "
            "as [ADDR]) or unix:PATH\n"
            "t.yaml:2:31: listen: 'udp:x:1' must be tcp:HOST:PORT, tls:HOST:PORT (port 1-65535, "
            "IPv6 as [ADDR]) "
            "or unix:PATH\n"
            "t.yaml:2:42: listen: 'tcp::80' must be tcp:HOST:PORT, tls:HOST:PORT (port 1-65535, "
            "IPv6 as [ADDR]) "
            "or unix:PATH\n"
            "t.yaml:2:53: listen: 'unix:' must be tcp:HOST:PORT, tls:HOST:PORT (port 1-65535, IPv6 "
            "as [ADDR]) or "
            "unix:PATH");
    CFG_ERR("daemon:\n  listen: [\"tcp:::1:80\", \"tcp:h:65536\", \"tcp:h:8x\"]\n",
            "t.yaml:2:12: listen: 'tcp:::1:80' must be tcp:HOST:PORT, tls:HOST:PORT (port 1-65535, "
            "IPv6 as "
            "[ADDR]) or unix:PATH\n"
            "t.yaml:2:26: listen: 'tcp:h:65536' must be tcp:HOST:PORT, tls:HOST:PORT (port "
            "1-65535, IPv6 as "
            "[ADDR]) or unix:PATH\n"
            "t.yaml:2:41: listen: 'tcp:h:8x' must be tcp:HOST:PORT, tls:HOST:PORT (port 1-65535, "
            "IPv6 as "
            "[ADDR]) or unix:PATH");
    CFG_ERR("daemon:\n  listen: {a: 1}\n",
            "t.yaml:2:11: listen: must be a string or a list of strings");
    CFG_ERR("daemon:\n  listen: [[x]]\n", "t.yaml:2:12: listen: must be a string");
    CFG_ERR("daemon:\n  listen: []\n",
            "t.yaml:2:11: listen: empty, and no http address: no way to send events");
    CFG_ERR("daemon:\n  http: \"localhost\"\n",
            "t.yaml:2:9: http: 'localhost' must be HOST:PORT or https:HOST:PORT (port 1-65535, "
            "IPv6 as [ADDR])");
    CFG_ERR("daemon:\n  database: \"\"\n",
            "t.yaml:2:13: database: must be a non-empty string without NUL");
    CFG_ERR("daemon:\n  database: [a]\n", "t.yaml:2:13: database: must be a string");
    CFG_ERR("daemon:\n  plugin_dirs: [a, {b: 1}]\n", "t.yaml:2:20: plugin_dirs: must be a string");
    {
        /* A unix socket path longer than sun_path. */
        struct sbuf sb = {0};
        sb_str(&sb, "daemon: {listen: \"unix:");
        for (int i = 0; i < 120; i++)
            sb_str(&sb, "p");
        sb_str(&sb, "\"}\n");
        char *got = cfg_errors(sb.s);
        CHECK(strncmp(got, "t.yaml:1:18: listen: 'unix:ppp", 30) == 0);
        free(got);
        sb_free(&sb);
    }
    /* All errors are collected, in document order. */
    CFG_ERR("daemon:\n"
            "  clock: x\n"
            "  commit: {max_batch: 0, max_delay_ms: 99999, synchronous: y}\n"
            "  bogus: 1\n"
            "campaigns: 5\n",
            "t.yaml:4:3: unknown key 'bogus' (allowed: listen, http, database, plugin_dirs, "
            "clock, commit, limits, log, auth, tls, metrics, socket_mode, socket_group, retention, "
            "cluster, event_log)\n"
            "t.yaml:2:10: clock: must be wall or event\n"
            "t.yaml:3:23: commit.max_batch: must be an integer from 1 to 1000000\n"
            "t.yaml:3:40: commit.max_delay_ms: must be an integer from 0 to 10000\n"
            "t.yaml:3:60: commit.synchronous: must be normal or full\n"
            "t.yaml:5:12: campaigns: must be a list of campaigns");
    /* Syntax errors come out of config_load_string as they are. */
    CFG_ERR("daemon: {\n",
            "t.yaml:2:1: syntax error: did not find expected node content (while parsing a flow "
            "node)");
}

static void test_config_campaign_errors(void)
{
    CFG_ERR("campaigns:\n  - id: a\n", "t.yaml:2:5: campaign a: missing required key 'plugin'");
    CFG_ERR("campaigns:\n  - plugin: x\n", "t.yaml:2:5: campaign #1: missing required key 'id'");
    CFG_ERR("campaigns:\n  - 5\n", "t.yaml:2:5: campaign #1: must be a map {id, plugin, ...}");
    CFG_ERR("campaigns:\n  - {id: A, plugin: x}\n",
            "t.yaml:2:10: campaign #1: id: must be 1-64 characters of [a-z0-9_-]");
    CFG_ERR("campaigns:\n  - {id: \"a.b\", plugin: x}\n",
            "t.yaml:2:10: campaign #1: id: must be 1-64 characters of [a-z0-9_-]");
    CFG_ERR("campaigns:\n  - {id: [a], plugin: x}\n",
            "t.yaml:2:10: campaign #1: id: must be 1-64 characters of [a-z0-9_-]");
    CFG_ERR("campaigns:\n"
            "  - {id: a12345678901234567890123456789012345678901234567890123456789012345, "
            "plugin: x}\n",
            "t.yaml:2:10: campaign #1: id: must be 1-64 characters of [a-z0-9_-]");
    CFG_ERR("campaigns:\n  - {id: a, plugin: Coupon}\n",
            "t.yaml:2:21: campaign a: plugin: must be 1-64 characters of [a-z0-9_-]");
    CFG_ERR("campaigns:\n"
            "  - {id: a, plugin: x}\n"
            "  - {id: b, plugin: x}\n"
            "  - {id: a, plugin: y}\n",
            "t.yaml:4:10: campaign id 'a' is used twice (first at line 2, column 10)");
    CFG_ERR("campaigns:\n  - {id: a, plugin: x, enable: true}\n",
            "t.yaml:2:24: unknown key 'enable' (allowed: id, plugin, enabled, starts, ends, "
            "when, params, group)");
    CFG_ERR("campaigns:\n  - {id: a, plugin: x, enabled: yes}\n",
            "t.yaml:2:33: campaign a: enabled: must be true or false");
    CFG_ERR("campaigns:\n  - {id: a, plugin: x, starts: 2026-13-01T00:00:00Z}\n",
            "t.yaml:2:32: campaign a: starts: must be an RFC 3339 date-time (like "
            "2026-11-01T00:00:00Z) or Unix ms");
    CFG_ERR("campaigns:\n  - {id: a, plugin: x, ends: 1.5}\n",
            "t.yaml:2:30: campaign a: ends: must be an RFC 3339 date-time (like "
            "2026-11-01T00:00:00Z) or Unix ms");
    CFG_ERR("campaigns:\n"
            "  - id: a\n"
            "    plugin: x\n"
            "    starts: 2026-12-01T00:00:00Z\n"
            "    ends: 2026-11-01T00:00:00Z\n",
            "t.yaml:5:11: campaign a: ends: must not be before starts");
    {
        /* starts == ends is allowed. */
        struct config *c = cfg_ok("campaigns: [{id: a, plugin: x, starts: 5, ends: 5}]\n");
        CHECK(c != NULL);
        config_free(c);
    }
    CFG_ERR("campaigns:\n  - {id: a, plugin: x, when: [x]}\n",
            "t.yaml:2:30: campaign a: when: must be a map {event, all}");
    CFG_ERR("campaigns:\n  - {id: a, plugin: x, when: {all: []}}\n",
            "t.yaml:2:30: campaign a: when: missing required key 'event'");
    CFG_ERR("campaigns:\n  - {id: a, plugin: x, when: {event: x, any: []}}\n",
            "t.yaml:2:41: unknown key 'any' (allowed: event, all)");
    CFG_ERR("campaigns:\n  - {id: a, plugin: x, when: {event: []}}\n",
            "t.yaml:2:38: campaign a: when.event: must name at least one event type");
    CFG_ERR("campaigns:\n  - {id: a, plugin: x, when: {event: [ok, Bad, \"\"]}}\n",
            "t.yaml:2:43: campaign a: when.event: 'Bad' is not an event type (1-64 of "
            "[a-z0-9_.-])\n"
            "t.yaml:2:48: campaign a: when.event: must be a non-empty string without NUL");
    CFG_ERR("campaigns:\n  - {id: a, plugin: x, when: {event: x, all: {field: type}}}\n",
            "t.yaml:2:46: campaign a: when.all: must be a list of conditions");

    /* Conditions. */
#define C1(cond) "campaigns:\n  - {id: a, plugin: x, when: {event: x, all: [" cond "]}}\n"
    /* The condition's '{' is at column 47. */
    CFG_ERR(C1("x"), "t.yaml:2:47: campaign a: when.all: each condition must be a map "
                     "{field, op, value}");
    CFG_ERR(C1("{op: eq, value: 1}"),
            "t.yaml:2:47: campaign a: condition: missing required key 'field'");
    CFG_ERR(C1("{field: type, value: 1}"),
            "t.yaml:2:47: campaign a: condition: missing required key 'op'");
    CFG_ERR(C1("{field: type, op: eq}"),
            "t.yaml:2:47: campaign a: condition: missing required key 'value' (op eq)");
    CFG_ERR(C1("{field: type, op: eq, value: 1, extra: 2}"),
            "t.yaml:2:79: unknown key 'extra' (allowed: field, op, value)");
    CFG_ERR(C1("{field: props., op: eq, value: 1}"),
            "t.yaml:2:55: campaign a: field: 'props.' is not one of props.<path>, type, user.id, "
            "user.events, user.orders, user.spent, user.first_seen, user.last_seen, "
            "user.count.<type>");
    CFG_ERR(C1("{field: props.a..b, op: eq, value: 1}"),
            "t.yaml:2:55: campaign a: field: 'props.a..b' is not one of props.<path>, type, "
            "user.id, user.events, user.orders, user.spent, user.first_seen, user.last_seen, "
            "user.count.<type>");
    CFG_ERR(C1("{field: user.age, op: eq, value: 1}"),
            "t.yaml:2:55: campaign a: field: 'user.age' is not one of props.<path>, type, "
            "user.id, user.events, user.orders, user.spent, user.first_seen, user.last_seen, "
            "user.count.<type>");
    CFG_ERR(C1("{field: user.count.Order, op: eq, value: 1}"),
            "t.yaml:2:55: campaign a: field: 'user.count.Order' is not one of props.<path>, "
            "type, user.id, user.events, user.orders, user.spent, user.first_seen, "
            "user.last_seen, user.count.<type>");
    CFG_ERR(C1("{field: type, op: like, value: 1}"),
            "t.yaml:2:65: campaign a: op: must be eq, ne, gt, gte, lt, lte, in, not_in or exists");
    CFG_ERR(C1("{field: type, op: in, value: x}"),
            "t.yaml:2:76: campaign a: value: op in needs a list");
    CFG_ERR(C1("{field: type, op: not_in, value: {a: 1}}"),
            "t.yaml:2:80: campaign a: value: op not_in needs a list");
    CFG_ERR(C1("{field: type, op: eq, value: [1]}"),
            "t.yaml:2:76: campaign a: value: op eq takes a single value, not a list");
    CFG_ERR(C1("{field: type, op: ne, value: {}}"),
            "t.yaml:2:76: campaign a: value: op ne takes a single value, not a map");
    CFG_ERR(C1("{field: type, op: eq, value: ~}"),
            "t.yaml:2:76: campaign a: value: null never matches (a null property counts as "
            "missing); use op exists");
    CFG_ERR(C1("{field: type, op: gt, value: true}"),
            "t.yaml:2:76: campaign a: value: op gt compares numbers or strings, not true/false");
    CFG_ERR(C1("{field: type, op: eq, value: .nan}"),
            "t.yaml:2:76: campaign a: value: infinite and NaN numbers are not supported");
    CFG_ERR(C1("{field: type, op: in, value: [a, ~, [b]]}"),
            "t.yaml:2:80: campaign a: value: null never matches (a null property counts as "
            "missing); use op exists\n"
            "t.yaml:2:83: campaign a: value: op in takes a single value, not a list");
    CFG_ERR(C1("{field: type, op: exists, value: 1}"),
            "t.yaml:2:80: campaign a: value: op exists takes true or false");
#undef C1

    /* Every campaign problem at once. */
    CFG_ERR("campaigns:\n"
            "  - id: Bad\n"
            "    plugin: \"\"\n"
            "    enabled: 2\n"
            "    color: red\n"
            "  - id: ok\n"
            "    plugin: p\n"
            "    when:\n"
            "      event: X\n"
            "      all:\n"
            "        - {field: nope, op: eq, value: 1}\n"
            "        - {field: type, op: eq}\n",
            "t.yaml:2:9: campaign #1: id: must be 1-64 characters of [a-z0-9_-]\n"
            "t.yaml:5:5: unknown key 'color' (allowed: id, plugin, enabled, starts, ends, when, "
            "params, group)\n"
            "t.yaml:3:13: campaign #1: plugin: must be 1-64 characters of [a-z0-9_-]\n"
            "t.yaml:4:14: campaign #1: enabled: must be true or false\n"
            "t.yaml:9:14: campaign ok: when.event: 'X' is not an event type (1-64 of "
            "[a-z0-9_.-])\n"
            "t.yaml:11:19: campaign ok: field: 'nope' is not one of props.<path>, type, user.id, "
            "user.events, user.orders, user.spent, user.first_seen, user.last_seen, "
            "user.count.<type>\n"
            "t.yaml:12:11: campaign ok: condition: missing required key 'value' (op eq)");
}

static void test_config_misc(void)
{
    /* Values: numbers keep their kind; quoted scalars are strings. */
    struct config *c = cfg_ok("campaigns:\n"
                              "  - id: a\n"
                              "    plugin: x\n"
                              "    enabled: ~\n"
                              "    when:\n"
                              "      event: \"123\"\n"
                              "      all:\n"
                              "        - {field: props.p, op: eq, value: 1.0}\n"
                              "        - {field: props.p, op: eq, value: \"1\"}\n"
                              "        - {field: props.p, op: ne, value: false}\n"
                              "        - {field: user.spent, op: lte, value: 0x10}\n"
                              "        - {field: user.first_seen, op: gt, value: -1}\n"
                              "        - {field: user.last_seen, op: exists, value: ~}\n"
                              "        - {field: user.events, op: gte, value: 1e2}\n"
                              "    params: [1, 2]\n");
    CHECK(c != NULL);
    if (c) {
        struct campaign_cfg *k = &c->campaigns[0];
        CHECK_INT(k->enabled, 1);
        CHECK_STR(k->events[0], "123");
        CHECK(json_is_real(k->conds[0].value) && json_real_value(k->conds[0].value) == 1.0);
        CHECK(json_is_string(k->conds[1].value));
        CHECK(json_is_false(k->conds[2].value));
        CHECK(json_is_integer(k->conds[3].value) && json_integer_value(k->conds[3].value) == 16);
        CHECK_INT(k->conds[3].field, F_USER_SPENT);
        CHECK_INT(k->conds[4].field, F_USER_FIRST_SEEN);
        CHECK_INT(k->conds[5].field, F_USER_LAST_SEEN);
        CHECK(json_is_true(k->conds[5].value));
        CHECK_INT(k->conds[6].field, F_USER_EVENTS);
        CHECK(json_is_real(k->conds[6].value));
        CHECK(k->params && k->params->kind == Y_SEQ);
    }
    config_free(c);

    /* RFC 3339 with an offset, and an integer ms window. */
    c = cfg_ok("campaigns:\n"
               "  - {id: a, plugin: x, starts: 2026-11-01T08:00:00+08:00, ends: "
               "\"2026-11-01T00:00:00.5z\"}\n"
               "  - {id: b, plugin: x, starts: -1000, ends: 1700000000000}\n");
    CHECK(c != NULL);
    if (c) {
        CHECK_INT(c->campaigns[0].starts, 1793491200000LL);
        CHECK_INT(c->campaigns[0].ends, 1793491200500LL);
        CHECK_INT(c->campaigns[1].starts, -1000);
        CHECK_INT(c->campaigns[1].ends, 1700000000000LL);
    }
    config_free(c);

    /* A file on disk. */
    char path[] = "/tmp/test_config_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd >= 0) {
        const char *t = "daemon: {clock: event}\ncampaigns: [{id: a, plugin: b}]\n";
        CHECK(write(fd, t, strlen(t)) == (ssize_t)strlen(t));
        close(fd);
        struct errs e = {0};
        c = config_load(path, &e);
        CHECK(c != NULL);
        if (c) {
            CHECK_STR(c->path, path);
            CHECK_STR(c->text, t);
            CHECK_INT(c->clock_event, 1);
            CHECK_STR(c->campaigns[0].node->file, path);
        }
        config_free(c);
        errs_free(&e);
        unlink(path);
    }
    config_free(NULL);
    ydoc_free(NULL);
}

/* ---- hostcommon ---- */

static char logged[512];
static int logged_level = -1;

static void test_logv(int level, const char *campaign, const char *fmt, va_list ap)
{
    char msg[400];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    snprintf(logged, sizeof(logged), "[%s] %s", campaign ? campaign : "-", msg);
    logged_level = level;
}

static void test_host_config(void)
{
    mktd_host h;
    memset(&h, 0, sizeof(h));
    hostcommon_fill(&h);
    struct errs e = {0};
    struct ydoc *d = yload("campaign:\n"
                           "  id: c1\n"
                           "  params:\n"
                           "    n: 5\n"
                           "    big: 1000\n"
                           "    q: \"5\"\n"
                           "    f: 1.5\n"
                           "    s: hello\n"
                           "    num: 2026\n"
                           "    nul: ~\n"
                           "    b: true\n"
                           "    bq: \"true\"\n"
                           "    dur: 7d\n"
                           "    dsec: 90\n"
                           "    dbad: 7 days\n"
                           "    list: [1, two]\n"
                           "    map: {x: 1, y: [a]}\n"
                           "    zero: \"a\\0b\"\n",
                           &e);
    CHECK(d != NULL);
    if (!d)
        return;
    const struct ynode *camp = ynode_get(d->root, "campaign");
    const mktd_node *p = (const mktd_node *)ynode_get(camp, "params");
    struct mktd_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.base.campaign_id = "c1";
    ctx.base.campaign_node = camp;
    ctx.base.errs = &e;
    ctx.base.logv = test_logv;
    mktd_ctx *cx = &ctx;

    /* Navigation. */
    CHECK_INT(h.node_kind(p), MKTD_NODE_MAP);
    CHECK_INT(h.node_len(p), 15);
    CHECK_INT(h.node_line(p), 4);
    CHECK_INT(h.node_col(p), 5);
    const mktd_node *list = h.node_get(p, "list");
    CHECK_INT(h.node_kind(list), MKTD_NODE_SEQ);
    CHECK_INT(h.node_len(list), 2);
    CHECK_INT(h.node_kind(h.node_at(list, 1)), MKTD_NODE_SCALAR);
    CHECK(h.node_at(list, 2) == NULL);
    CHECK(h.node_at(p, 0) == NULL);
    CHECK_INT(h.node_col(h.node_at(list, 1)), 15);
    CHECK_INT(h.node_line(h.node_at(list, 1)), 16);
    const char *s = NULL;
    CHECK_INT(h.node_str(cx, h.node_key_at(p, 0), &s), 0);
    CHECK_STR(s, "n");
    CHECK_INT(h.node_kind(h.node_value_at(p, 0)), MKTD_NODE_SCALAR);
    CHECK(h.node_key_at(p, 15) == NULL);
    CHECK(h.node_value_at(list, 0) == NULL);
    CHECK(h.node_get(p, "absent") == NULL);
    CHECK(h.node_get(NULL, "n") == NULL);
    CHECK_INT(h.node_kind(NULL), 0);
    CHECK_INT(h.node_len(NULL), 0);
    CHECK_INT(h.node_line(NULL), 0);
    CHECK_INT(h.node_len(h.node_get(p, "n")), 0);
    CHECK_INT(e.n, 0);

    /* Typed scalars. */
    int64_t i = 0;
    int b = -1;
    CHECK_INT(h.node_int(cx, h.node_get(p, "n"), &i), 0);
    CHECK_INT(i, 5);
    CHECK_INT(h.node_int(cx, h.node_get(p, "q"), &i), -EINVAL);
    CHECK_INT(h.node_int(cx, h.node_get(p, "f"), &i), -EINVAL);
    CHECK_INT(h.node_int(cx, list, &i), -EINVAL);
    CHECK_INT(e.n, 3);
    CHECK_STR(e.msg[0], "t.yaml:6:8: campaign c1: must be an integer (got '5')");
    CHECK_STR(e.msg[1], "t.yaml:7:8: campaign c1: must be an integer (got '1.5')");
    CHECK_STR(e.msg[2], "t.yaml:16:11: campaign c1: must be an integer");
    errs_free(&e);

    CHECK_INT(h.node_str(cx, h.node_get(p, "s"), &s), 0);
    CHECK_STR(s, "hello");
    CHECK_INT(h.node_str(cx, h.node_get(p, "num"), &s), 0);
    CHECK_STR(s, "2026");
    CHECK_INT(h.node_str(cx, h.node_get(p, "nul"), &s), -EINVAL);
    CHECK_INT(h.node_str(cx, h.node_get(p, "map"), &s), -EINVAL);
    CHECK_INT(h.node_str(cx, h.node_get(p, "zero"), &s), -EINVAL);
    CHECK_INT(h.node_str(cx, NULL, &s), -EINVAL);
    CHECK_INT(e.n, 4);
    CHECK_STR(e.msg[0], "t.yaml:10:10: campaign c1: must be a string");
    CHECK_STR(e.msg[1], "t.yaml:17:10: campaign c1: must be a string");
    CHECK_STR(e.msg[2], "t.yaml:18:11: campaign c1: must not contain NUL");
    CHECK_STR(e.msg[3], "t.yaml:2:3: campaign c1: must be a string");
    errs_free(&e);

    CHECK_INT(h.node_bool(cx, h.node_get(p, "b"), &b), 0);
    CHECK_INT(b, 1);
    CHECK_INT(h.node_bool(cx, h.node_get(p, "bq"), &b), -EINVAL);
    CHECK_STR(e.n ? e.msg[0] : NULL, "t.yaml:12:9: campaign c1: must be true or false");
    errs_free(&e);

    CHECK_INT(h.node_duration(cx, h.node_get(p, "dur"), &i), 0);
    CHECK_INT(i, 7 * 86400000LL);
    CHECK_INT(h.node_duration(cx, h.node_get(p, "dsec"), &i), 0);
    CHECK_INT(i, 90000);
    CHECK_INT(h.node_duration(cx, h.node_get(p, "dbad"), &i), -EINVAL);
    CHECK_STR(e.n ? e.msg[0] : NULL, "t.yaml:15:11: campaign c1: must be a duration like 90s, "
                                     "15m, 12h or 7d (got '7 days')");
    errs_free(&e);

    char *js = NULL;
    CHECK_INT(h.node_json(cx, h.node_get(p, "map"), &js), 0);
    CHECK_STR(js, "{\"x\":1,\"y\":[\"a\"]}");
    free(js);

    /* Lookups with defaults and ranges. */
    CHECK_INT(h.get_int(cx, p, "n", 1, 0, 1, 10, &i), 0);
    CHECK_INT(i, 5);
    CHECK_INT(h.get_int(cx, p, "absent", 0, 42, 1, 10, &i), 0);
    CHECK_INT(i, 42);
    CHECK_INT(h.get_int(cx, p, "nul", 0, 43, 1, 10, &i), 0);
    CHECK_INT(i, 43);
    CHECK_INT(h.get_int(cx, NULL, "n", 0, 44, 1, 10, &i), 0);
    CHECK_INT(i, 44);
    CHECK_INT(h.get_int(cx, p, "big", 0, 1, 1, 100, &i), -EINVAL);
    CHECK_INT(h.get_int(cx, p, "big", 0, 1, 2000, INT64_MAX, &i), -EINVAL);
    CHECK_INT(h.get_int(cx, p, "n", 0, 1, INT64_MIN, 4, &i), -EINVAL);
    CHECK_INT(h.get_int(cx, p, "q", 0, 1, INT64_MIN, INT64_MAX, &i), -EINVAL);
    CHECK_INT(h.get_int(cx, p, "absent", 1, 0, 1, 10, &i), -EINVAL);
    CHECK_INT(h.get_int(cx, NULL, "value", 1, 0, 1, 10, &i), -EINVAL);
    CHECK_INT(e.n, 6);
    CHECK_STR(e.msg[0], "t.yaml:5:10: campaign c1: big: must be an integer from 1 to 100 (got "
                        "'1000')");
    CHECK_STR(e.msg[1], "t.yaml:5:10: campaign c1: big: must be an integer >= 2000 (got '1000')");
    CHECK_STR(e.msg[2], "t.yaml:4:8: campaign c1: n: must be an integer <= 4 (got '5')");
    CHECK_STR(e.msg[3], "t.yaml:6:8: campaign c1: q: must be an integer (got '5')");
    CHECK_STR(e.msg[4], "t.yaml:4:5: campaign c1: missing required key 'absent'");
    CHECK_STR(e.msg[5], "t.yaml:2:3: campaign c1: missing required key 'value'");
    errs_free(&e);

    CHECK_INT(h.get_duration(cx, p, "dur", 1, 0, 0, INT64_MAX, &i), 0);
    CHECK_INT(i, 604800000);
    CHECK_INT(h.get_duration(cx, p, "absent", 0, 1234, 0, INT64_MAX, &i), 0);
    CHECK_INT(i, 1234);
    CHECK_INT(h.get_duration(cx, p, "dur", 1, 0, 60000, 86400000, &i), -EINVAL);
    CHECK_INT(h.get_duration(cx, p, "dsec", 1, 0, 3600000, INT64_MAX, &i), -EINVAL);
    CHECK_INT(h.get_duration(cx, p, "dsec", 1, 0, 0, 1500, &i), -EINVAL);
    CHECK_INT(h.get_duration(cx, p, "s", 1, 0, 0, INT64_MAX, &i), -EINVAL);
    CHECK_INT(h.get_duration(cx, p, "nope", 1, 0, 0, INT64_MAX, &i), -EINVAL);
    CHECK_INT(e.n, 5);
    CHECK_STR(e.msg[0], "t.yaml:13:10: campaign c1: dur: must be a duration from 1m to 1d (got "
                        "'7d')");
    CHECK_STR(e.msg[1], "t.yaml:14:11: campaign c1: dsec: must be a duration of at least 1h "
                        "(got '90')");
    CHECK_STR(e.msg[2], "t.yaml:14:11: campaign c1: dsec: must be a duration of at most 1500ms "
                        "(got '90')");
    CHECK_STR(e.msg[3], "t.yaml:8:8: campaign c1: s: must be a duration like 90s, 15m, 12h or 7d "
                        "(got 'hello')");
    CHECK_STR(e.msg[4], "t.yaml:4:5: campaign c1: missing required key 'nope'");
    errs_free(&e);

    CHECK_INT(h.get_bool(cx, p, "b", 0, 0, &b), 0);
    CHECK_INT(b, 1);
    CHECK_INT(h.get_bool(cx, p, "absent", 0, 1, &b), 0);
    CHECK_INT(b, 1);
    CHECK_INT(h.get_bool(cx, p, "absent", 0, 0, &b), 0);
    CHECK_INT(b, 0);
    CHECK_INT(h.get_bool(cx, p, "n", 0, 0, &b), -EINVAL);
    CHECK_STR(e.n ? e.msg[0] : NULL, "t.yaml:4:8: campaign c1: n: must be true or false");
    errs_free(&e);

    CHECK_INT(h.get_str(cx, p, "s", 1, NULL, &s), 0);
    CHECK_STR(s, "hello");
    CHECK_INT(h.get_str(cx, p, "absent", 0, "dflt", &s), 0);
    CHECK_STR(s, "dflt");
    CHECK_INT(h.get_str(cx, p, "absent", 0, NULL, &s), 0);
    CHECK(s == NULL);
    CHECK_INT(h.get_str(cx, p, "list", 0, NULL, &s), -EINVAL);
    CHECK_INT(h.get_str(cx, p, "absent", 1, NULL, &s), -EINVAL);
    CHECK_INT(e.n, 2);
    CHECK_STR(e.msg[0], "t.yaml:16:11: campaign c1: list: must be a string");
    CHECK_STR(e.msg[1], "t.yaml:4:5: campaign c1: missing required key 'absent'");
    errs_free(&e);

    /* check_keys and config_error. */
    static const char *const allowed[] = {"n",  "big", "q",    "f",    "s",    "num", "nul", "b",
                                          "bq", "dur", "dsec", "dbad", "list", "map", NULL};
    CHECK_INT(h.check_keys(cx, p, allowed), -EINVAL);
    CHECK_INT(e.n, 1);
    CHECK_STR(e.msg[0], "t.yaml:18:5: campaign c1: unknown key 'zero' (allowed: n, big, q, f, "
                        "s, num, nul, b, bq, dur, dsec, dbad, list, map)");
    errs_free(&e);
    static const char *const xy[] = {"x", "y", NULL};
    CHECK_INT(h.check_keys(cx, h.node_get(p, "map"), xy), 0);
    CHECK_INT(h.check_keys(cx, NULL, xy), 0);
    CHECK_INT(h.check_keys(cx, h.node_get(p, "nul"), xy), 0);
    CHECK_INT(h.check_keys(cx, list, xy), -EINVAL);
    CHECK_STR(e.n ? e.msg[0] : NULL, "t.yaml:16:11: campaign c1: must be a map");
    errs_free(&e);

    CHECK_INT(h.config_error(cx, h.node_get(p, "s"), "bad %s %d", "thing", 7), -EINVAL);
    CHECK_INT(h.config_error(cx, NULL, "whole campaign"), -EINVAL);
    CHECK_INT(e.n, 2);
    CHECK_STR(e.msg[0], "t.yaml:8:8: campaign c1: bad thing 7");
    CHECK_STR(e.msg[1], "t.yaml:2:3: campaign c1: whole campaign");
    errs_free(&e);

    /* Without an error list, errors are logged. */
    ctx.base.errs = NULL;
    CHECK_INT(h.config_error(cx, NULL, "lost %d", 1), -EINVAL);
    CHECK_STR(logged, "[c1] t.yaml:2:3: campaign c1: lost 1");
    CHECK_INT(logged_level, MKTD_LOG_ERROR);
    ctx.base.campaign_node = NULL;
    h.config_error(cx, NULL, "nowhere");
    CHECK_STR(logged, "[c1] campaign c1: nowhere");
    h.log(cx, MKTD_LOG_WARN, "hello %s", "there");
    CHECK_STR(logged, "[c1] hello there");
    CHECK_INT(logged_level, MKTD_LOG_WARN);

    ctx_base_reset(&ctx.base);
    ydoc_free(d);
    errs_free(&e);
}

static void test_host_props(void)
{
    mktd_host h;
    memset(&h, 0, sizeof(h));
    hostcommon_fill(&h);
    struct mktd_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.base.campaign_id = "c1";
    mktd_ctx *cx = &ctx;

    json_t *props = json_loads("{\"amount\": 10000, \"r\": 1.5, \"s\": \"h\\u00e9\", \"b\": "
                               "false, \"n\": null, \"a\": [1, 2, 3], \"o\": {\"x\": {\"y\": "
                               "\"deep\"}, \"k\": 1}, \"dot.key\": 1, \"big\": 100.0}",
                               0, NULL);
    CHECK(props != NULL);
    mktd_event ev = {"e1", "order.paid", "u1", 5, 0, NULL, props};
    mktd_value v;

    CHECK_INT(h.prop(cx, &ev, "amount", &v), MKTD_T_INT);
    CHECK_INT(v.i, 10000);
    CHECK(v.d == 10000.0);
    CHECK_INT(h.prop(cx, &ev, "r", &v), MKTD_T_DOUBLE);
    CHECK(v.d == 1.5);
    CHECK_INT(h.prop(cx, &ev, "big", &v), MKTD_T_DOUBLE);
    CHECK_INT(h.prop(cx, &ev, "s", &v), MKTD_T_STRING);
    CHECK_STR(v.s, "h\xc3\xa9");
    CHECK_INT(v.len, 3);
    CHECK_INT(h.prop(cx, &ev, "b", &v), MKTD_T_BOOL);
    CHECK_INT(v.b, 0);
    CHECK_INT(h.prop(cx, &ev, "n", &v), MKTD_T_MISSING);
    CHECK_INT(h.prop(cx, &ev, "absent", &v), MKTD_T_MISSING);
    CHECK_INT(h.prop(cx, &ev, "a", &v), MKTD_T_ARRAY);
    CHECK_INT(v.len, 3);
    CHECK_INT(h.prop(cx, &ev, "a.0", &v), MKTD_T_MISSING); /* object keys only */
    CHECK_INT(h.prop(cx, &ev, "o", &v), MKTD_T_OBJECT);
    CHECK_INT(v.len, 2);
    CHECK_INT(h.prop(cx, &ev, "o.x.y", &v), MKTD_T_STRING);
    CHECK_STR(v.s, "deep");
    CHECK_INT(h.prop(cx, &ev, "o.x.y.z", NULL), MKTD_T_MISSING);
    CHECK_INT(h.prop(cx, &ev, "o.k", NULL), MKTD_T_INT);
    CHECK_INT(h.prop(cx, &ev, "dot.key", NULL), MKTD_T_MISSING);
    CHECK_INT(h.prop(cx, &ev, "", NULL), MKTD_T_MISSING);
    CHECK_INT(h.prop(cx, &ev, "o.", NULL), MKTD_T_MISSING);
    CHECK_INT(h.prop(cx, &ev, NULL, NULL), MKTD_T_MISSING);
    mktd_event ev0 = {"e2", "x", "u1", 5, 0, NULL, NULL};
    CHECK_INT(h.prop(cx, &ev0, "amount", &v), MKTD_T_MISSING);
    CHECK(h.prop_json(cx, &ev0, "amount") == NULL);

    CHECK_STR(h.prop_json(cx, &ev, "o"), "{\"x\":{\"y\":\"deep\"},\"k\":1}");
    CHECK_STR(h.prop_json(cx, &ev, "s"), "\"h\xc3\xa9\"");
    CHECK_STR(h.prop_json(cx, &ev, "amount"), "10000");
    CHECK_STR(h.prop_json(cx, &ev, "r"), "1.5");
    CHECK(h.prop_json(cx, &ev, "n") == NULL);
    CHECK(h.prop_json(cx, &ev, "zz") == NULL);

    /* Payload objects: order kept, freed by the reset unless taken. */
    mktd_obj *o = h.obj_new(cx);
    CHECK(o != NULL);
    h.obj_str(o, "code", "ABC");
    h.obj_int(o, "value", 500);
    h.obj_int(o, "neg", INT64_MIN);
    CHECK_INT(h.obj_json(o, "offer", "{\"b\":1,\"a\":[true,null]}"), 0);
    CHECK_INT(h.obj_json(o, "bad", "{nope"), -EINVAL);
    CHECK_INT(h.obj_json(o, "num", "2.5"), 0);
    h.obj_str(o, "bytes", "\xff");
    h.obj_str(o, "code", "DEF"); /* replaces, keeps the position */
    h.obj_str(NULL, "x", "y");
    h.obj_int(NULL, "x", 1);
    CHECK_INT(h.obj_json(NULL, "x", "1"), -EINVAL);
    json_t *j = hostcommon_obj_json(o);
    char *text = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    CHECK_STR(text, "{\"code\":\"DEF\",\"value\":500,\"neg\":-9223372036854775808,\"offer\":"
                    "{\"b\":1,\"a\":[true,null]},\"num\":2.5,\"bytes\":null}");
    free(text);
    mktd_obj *o2 = h.obj_new(cx); /* never emitted: freed by the reset */
    h.obj_str(o2, "k", "v");
    ctx_base_reset(&ctx.base);
    CHECK(ctx.base.pool == NULL);
    /* The taken reference outlives the reset. */
    CHECK_INT(json_object_size(j), 6);
    json_decref(j);
    ctx_base_reset(&ctx.base);

    j = hostcommon_obj_json(NULL);
    CHECK(json_is_object(j) && json_object_size(j) == 0);
    json_decref(j);
    json_decref(props);
}

/* ---- paths resolve against the config's folder (spec 18) ---- */

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void test_config_paths(void)
{
    char top[] = "/tmp/test_paths_XXXXXX";
    CHECK(mkdtemp(top) != NULL);
    char sub[300], cfgp[400], link[300], p[9000], oldcwd[4096];
    snprintf(sub, sizeof(sub), "%s/etc", top);
    CHECK(mkdir(sub, 0700) == 0);
    snprintf(cfgp, sizeof(cfgp), "%s/mktd.yaml", sub);
    write_text(cfgp, "daemon:\n"
                     "  listen: [\"unix:../run/m.sock\", \"tcp:127.0.0.1:1\", \"unix:/abs.sock\"]\n"
                     "  database: ../var/m.db\n"
                     "  plugin_dirs: [plugins, ./p2, /usr/lib/p, \"..\"]\n"
                     "  auth: {tokens_file: ./tokens}\n");
    CHECK(getcwd(oldcwd, sizeof(oldcwd)) != NULL);
    /* loaded from elsewhere, through a relative path with a symbolic link */
    snprintf(link, sizeof(link), "%s/l", top);
    CHECK(symlink("etc", link) == 0);
    CHECK(chdir(top) == 0);
    struct errs e = {0};
    struct config *c = config_load("l/mktd.yaml", &e);
    CHECK(c != NULL);
    char real[4096];
    CHECK(realpath(top, real) != NULL); /* /tmp may itself be a link */
    if (c) {
        snprintf(p, sizeof(p), "%s/etc", real);
        CHECK_STR(c->dir, p);
        CHECK_STR(c->path, "l/mktd.yaml"); /* messages name the file as given */
        snprintf(p, sizeof(p), "%s/var/m.db", real);
        CHECK_STR(c->database, p);
        CHECK_STR(c->database_written, "../var/m.db");
        snprintf(p, sizeof(p), "unix:%s/run/m.sock", real);
        CHECK_STR(c->listen[0], p);
        CHECK_STR(c->listen[1], "tcp:127.0.0.1:1");
        CHECK_STR(c->listen[2], "unix:/abs.sock");
        snprintf(p, sizeof(p), "%s/etc/plugins", real);
        CHECK_STR(c->plugin_dirs[0], p);
        snprintf(p, sizeof(p), "%s/etc/p2", real);
        CHECK_STR(c->plugin_dirs[1], p);
        CHECK_STR(c->plugin_dirs[2], "/usr/lib/p");
        CHECK_STR(c->plugin_dirs[3], real);
        snprintf(p, sizeof(p), "%s/etc/tokens", real);
        CHECK_STR(c->tokens_file, p);
        char note[9000];
        snprintf(p, sizeof(p), " (resolved against the config's folder %s/etc)", real);
        CHECK_STR(config_path_note(c, c->tokens_file, note, sizeof(note)), p);
        CHECK_STR(config_path_note(c, "/usr/lib/p", note, sizeof(note)), "");
        /* no database anywhere: nothing moved */
        CHECK_INT(config_database_moved(c, note, sizeof(note)), 0);
    }
    config_free(c);
    errs_free(&e);

    /* an empty file: the defaults, beside it */
    write_text(cfgp, "");
    c = config_load(cfgp, &e);
    CHECK(c != NULL);
    if (c) {
        snprintf(p, sizeof(p), "%s/etc/var/mktd.db", real);
        CHECK_STR(c->database, p);
        CHECK_STR(c->database_written, "var/mktd.db");
    }
    config_free(c);

    /* SQLite's throw-away database is not a path */
    write_text(cfgp, "daemon: {database: \":memory:\"}\n");
    c = config_load(cfgp, &e);
    CHECK(c != NULL);
    if (c)
        CHECK_STR(c->database, ":memory:");
    config_free(c);

    /* defaults resolve there too */
    write_text(cfgp, "daemon: {clock: event}\n");
    c = config_load(cfgp, &e);
    CHECK(c != NULL);
    if (c) {
        snprintf(p, sizeof(p), "%s/etc/var/mktd.db", real);
        CHECK_STR(c->database, p);
        snprintf(p, sizeof(p), "%s/etc/build/plugins", real);
        CHECK_STR(c->plugin_dirs[0], p);
    }
    config_free(c);

    /* an install whose relative database was found from the current
     * directory: the old file is there, the new place is empty */
    write_text(cfgp, "daemon: {database: var/m.db}\n");
    CHECK(mkdir("var", 0700) == 0);
    write_text("var/m.db", "x");
    c = config_load(cfgp, &e);
    CHECK(c != NULL);
    if (c) {
        char msg[5000];
        CHECK_INT(config_database_moved(c, msg, sizeof(msg)), 1);
        snprintf(p, sizeof(p), "database: %s/etc/var/m.db does not exist, but %s/var/m.db does",
                 real, real);
        CHECK(strncmp(msg, p, strlen(p)) == 0);
        if (strncmp(msg, p, strlen(p)) != 0)
            fprintf(stderr, "  got: %s\n", msg);
        /* once moved, nothing to say */
        snprintf(p, sizeof(p), "%s/etc/var", top);
        CHECK(mkdir(p, 0700) == 0);
        snprintf(p, sizeof(p), "%s/etc/var/m.db", top);
        write_text(p, "x");
        CHECK_INT(config_database_moved(c, msg, sizeof(msg)), 0);
        unlink(p);
        snprintf(p, sizeof(p), "%s/etc/var", top);
        rmdir(p);
    }
    config_free(c);
    /* the config in the current directory: the same place, nothing moved */
    CHECK(chdir(sub) == 0);
    CHECK(mkdir("var", 0700) == 0);
    write_text("var/m.db", "x");
    c = config_load("mktd.yaml", &e);
    CHECK(c != NULL);
    if (c) {
        char msg[5000];
        CHECK_INT(config_database_moved(c, msg, sizeof(msg)), 0);
    }
    config_free(c);
    errs_free(&e);

    unlink("var/m.db");
    rmdir("var");
    CHECK(chdir(oldcwd) == 0);
    snprintf(p, sizeof(p), "%s/var/m.db", top);
    unlink(p);
    snprintf(p, sizeof(p), "%s/var", top);
    rmdir(p);
    unlink(cfgp);
    unlink(link);
    rmdir(sub);
    rmdir(top);

    /* a long folder: a resolved Unix socket path that does not fit */
    char name[200];
    snprintf(name, sizeof(name), "/%0120d/m.yaml", 0);
    const char *t = "daemon: {listen: [\"unix:s.sock\"]}\n";
    c = config_load_string(name, t, strlen(t), &e);
    CHECK(c == NULL);
    CHECK(e.n == 1 && strstr(e.msg[0], "longer than the 107 bytes a Unix socket path may have"));
    errs_free(&e);
}

/* daemon.cluster: its defaults and values; a change of it needs a restart. */
static void test_config_cluster(void)
{
    /* the secret file, relative to the config's folder (a trailing newline
     * is not part of it) */
    char dir[] = "/tmp/test_cluster_XXXXXX", secret[64];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(secret, sizeof(secret), "%s/cluster.secret", dir);
    FILE *f = fopen(secret, "w");
    CHECK(f != NULL);
    if (f) {
        fputs("s3cret\n", f);
        fclose(f);
    }
    const char *a = "daemon:\n  cluster:\n    nats: [\"nats://127.0.0.1:4222\", "
                    "\"nats://h2:4223\"]\n    partitions: 16\n    worker: w1\n"
                    "    secret_file: cluster.secret\n"
                    "campaigns: []\n";
    const char *b = "daemon:\n  cluster:\n    nats: [\"nats://127.0.0.1:4222\"]\n"
                    "    partitions: 8\n    worker: w1\n    takeover: 3s\n"
                    "    secret_file: cluster.secret\n"
                    "campaigns: []\n";
    const char *none = "daemon:\n  cluster:\n    nats: [\"nats://127.0.0.1:4222\"]\n"
                       "campaigns: []\n";
    struct errs e = {0};
    struct config *ca = config_load_string_in("a.yaml", dir, 0, a, strlen(a), &e);
    struct config *cb = config_load_string_in("b.yaml", dir, 0, b, strlen(b), &e);
    CHECK_INT((int)e.n, 0);
    errs_free(&e);
    /* cluster mode needs the secret */
    struct config *cn = config_load_string_in("n.yaml", dir, 0, none, strlen(none), &e);
    CHECK(cn == NULL);
    CHECK(e.n == 1 && strstr(e.msg[0], "cluster.secret_file: required"));
    errs_free(&e);
    config_free(cn);
    if (!ca || !cb) {
        config_free(ca);
        config_free(cb);
        unlink(secret);
        rmdir(dir);
        return;
    }
    CHECK_INT((int)ca->cluster.secret_len, 6);
    CHECK(ca->cluster.secret && memcmp(ca->cluster.secret, "s3cret", 6) == 0);
    CHECK_STR(ca->cluster.secret_file, secret);
    CHECK_INT((int)ca->cluster.n_nats, 2);
    CHECK_STR(ca->cluster.nats[1], "nats://h2:4223");
    CHECK_INT(ca->cluster.partitions, 16);
    CHECK_INT(ca->cluster.replicas, 3);
    CHECK_STR(ca->cluster.stream, "MKTD_EVENTS");
    CHECK_STR(ca->cluster.actions, "MKTD_ACTIONS");
    CHECK(ca->cluster.takeover_ms == 10000);
    CHECK(cb->cluster.takeover_ms == 3000);
    CHECK(ca->cluster.snapshot_ms == 60000);
    CHECK_STR(ca->cluster.snapshots, "MKTD_SNAPSHOTS");
    CHECK_INT(ca->cluster.trim, 1);
    struct config_change *v;
    size_t n = config_diff(ca, cb, &v);
    CHECK_INT((int)n, 1);
    if (n == 1) {
        CHECK_STR(v[0].key, "cluster");
        CHECK_INT(v[0].restart, 1);
    }
    config_changes_free(v, n);
    n = config_diff(ca, ca, &v);
    CHECK_INT((int)n, 0);
    config_changes_free(v, n);
    /* cluster.snapshot and cluster.snapshots: parsed, checked, and a change
     * of either alone needs a restart like every cluster key */
    const char *s = "daemon:\n  cluster:\n    nats: [\"nats://127.0.0.1:4222\", "
                    "\"nats://h2:4223\"]\n    partitions: 16\n    worker: w1\n"
                    "    snapshot: 1s\n    snapshots: SNAPS\n    secret_file: cluster.secret\n"
                    "campaigns: []\n";
    struct config *cs = config_load_string_in("s.yaml", dir, 0, s, strlen(s), &e);
    CHECK_INT((int)e.n, 0);
    errs_free(&e);
    if (cs) {
        CHECK(cs->cluster.snapshot_ms == 1000);
        CHECK_STR(cs->cluster.snapshots, "SNAPS");
        n = config_diff(ca, cs, &v);
        CHECK_INT((int)n, 1);
        if (n == 1) {
            CHECK_STR(v[0].key, "cluster");
            CHECK_INT(v[0].restart, 1);
        }
        config_changes_free(v, n);
        config_free(cs);
    }
    static const struct {
        const char *body, *want;
    } bad[] = {
        {"snapshot: 500ms", "cluster.snapshot: must be 0 (no snapshots) or from 1s to 24h"},
        {"snapshot: 2d", "cluster.snapshot: must be 0 (no snapshots) or from 1s to 24h"},
        {"snapshot: soon", "cluster.snapshot: must be a duration"},
        {"snapshots: MKTD_EVENTS", "snapshots must be a stream of its own"},
        {"snapshots: MKTD_ACTIONS", "snapshots must be a stream of its own"},
        {"snapshots: a.b", "cluster.snapshots: 'a.b' must be 1-32 of [A-Za-z0-9_-]"},
        {"trim: sometimes", "bad.yaml:4:11: cluster.trim: must be true or false"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char y[512];
        snprintf(y, sizeof(y),
                 "daemon:\n  cluster:\n    nats: [\"nats://127.0.0.1:4222\"]\n    %s\n"
                 "    secret_file: cluster.secret\ncampaigns: []\n",
                 bad[i].body);
        struct config *c = config_load_string_in("bad.yaml", dir, 0, y, strlen(y), &e);
        CHECK(c == NULL);
        CHECK(e.n == 1 && strstr(e.msg[0], bad[i].want));
        if (e.n != 1 || !strstr(e.msg[0], bad[i].want))
            fprintf(stderr, "%s: %s\n", bad[i].body, e.n ? e.msg[0] : "(no error)");
        errs_free(&e);
        config_free(c);
    }
    /* 0: no snapshots */
    const char *z = "daemon:\n  cluster:\n    nats: [\"nats://127.0.0.1:4222\"]\n"
                    "    snapshot: 0\n    secret_file: cluster.secret\ncampaigns: []\n";
    struct config *cz = config_load_string_in("z.yaml", dir, 0, z, strlen(z), &e);
    CHECK(cz && cz->cluster.snapshot_ms == 0);
    errs_free(&e);
    config_free(cz);
    /* trim: false keeps every event in the stream */
    const char *t = "daemon:\n  cluster:\n    nats: [\"nats://127.0.0.1:4222\"]\n"
                    "    trim: false\n    secret_file: cluster.secret\ncampaigns: []\n";
    struct config *ct = config_load_string_in("t.yaml", dir, 0, t, strlen(t), &e);
    CHECK(ct && ct->cluster.trim == 0);
    errs_free(&e);
    config_free(ct);
    config_free(ca);
    config_free(cb);
    unlink(secret);
    rmdir(dir);
}

/* Config messages (cluster mode): the campaign blocks of a config, and a
 * worker's daemon block spliced with another config's campaigns. */
static void test_config_messages(void)
{
    static const char a[] = "# a comment\n"
                            "daemon:\n  database: /var/lib/mktd/w1.db\n  log: {level: warn}\n"
                            "campaigns:\n  - id: one\n    plugin: coupon\n"
                            "caps:\n  - {id: c1, kinds: [coupon.issued], max: 1, per: 1d}\n";
    static const char b[] = "campaigns:\n  - id: two\n    plugin: points\n"
                            "daemon:\n  database: /elsewhere.db\n";
    struct errs errs = {0};
    char err[256];
    size_t n = 0;
    struct config *ca = config_load_string("/etc/mktd/a.yaml", a, strlen(a), &errs);
    struct config *cb = config_load_string("/etc/mktd/b.yaml", b, strlen(b), &errs);
    CHECK(ca && cb);
    if (!ca || !cb)
        goto out;
    char *t = config_campaign_text(ca, &n, err, sizeof(err));
    CHECK_STR(t, "campaigns:\n  - id: one\n    plugin: coupon\n"
                 "caps:\n  - {id: c1, kinds: [coupon.issued], max: 1, per: 1d}\n");
    CHECK_INT(n, t ? strlen(t) : 0);
    free(t);
    /* a's daemon block, b's campaigns (b's daemon block dropped) */
    char *sp = config_splice(ca, b, strlen(b), &n, err, sizeof(err));
    CHECK_STR(sp, "daemon:\n  database: /var/lib/mktd/w1.db\n  log: {level: warn}\n"
                  "campaigns:\n  - id: two\n    plugin: points\n");
    struct config *cs = sp ? config_load_string("/etc/mktd/a.yaml", sp, n, &errs) : NULL;
    CHECK(cs && cs->n_campaigns == 1 && strcmp(cs->campaigns[0].id, "two") == 0 &&
          strcmp(cs->database, "/var/lib/mktd/w1.db") == 0 && cs->n_caps == 0);
    config_free(cs);
    free(sp);
    /* an empty message: no campaigns */
    sp = config_splice(ca, "", 0, &n, err, sizeof(err));
    CHECK_STR(sp, "daemon:\n  database: /var/lib/mktd/w1.db\n  log: {level: warn}\n");
    free(sp);
    /* a top level in flow style cannot be cut into blocks */
    static const char flow[] = "{campaigns: []}\n";
    sp = config_splice(ca, flow, strlen(flow), &n, err, sizeof(err));
    CHECK(sp == NULL && strstr(err, "block mapping"));
    free(sp);
out:
    config_free(ca);
    config_free(cb);
    errs_free(&errs);
}

int main(void)
{
    test_resolve();
    test_config_messages();
    test_positions();
    test_yaml_errors();
    test_check_keys_and_json();
    test_config_full();
    test_config_defaults();
    test_config_daemon_errors();
    test_config_campaign_errors();
    test_config_misc();
    test_config_paths();
    test_config_cluster();
    test_host_config();
    test_host_props();
    return check_done();
}
