/* The YAML config as a tree of nodes, built from libyaml's event stream. */
#define _GNU_SOURCE
#include <yaml.h> /* libyaml (daemon/ is the include root, so this is not config/yaml.h) */

#include "config/yaml.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Deeper nesting than this is refused (the tree is walked recursively). */
#define YAML_MAX_DEPTH 200

struct builder {
    yaml_parser_t parser;
    struct ydoc *doc;
    struct errs *errs;
    const char *text; /* the input, for positions of reader errors */
    size_t len;
    int nerr;   /* errors found so far (syntax errors stop the parse) */
    int failed; /* a syntax error: stop */
};

static void berr_at(struct builder *b, int line, int col, const char *fmt, ...)
    MKTD_PRINTF_FMT(4, 5);

static void berr_at(struct builder *b, int line, int col, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    b->nerr++;
    if (b->errs)
        errs_add(b->errs, "%s:%d:%d: %s", b->doc->file, line, col, msg);
}

void yerr(struct errs *errs, const struct ynode *n, const char *fmt, ...)
{
    char *msg;
    va_list ap;
    if (!errs)
        return;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    va_end(ap);
    if (n)
        errs_add(errs, "%s:%d:%d: %s", n->file ? n->file : "?", n->line, n->col, msg);
    else
        errs_add(errs, "%s", msg);
    free(msg);
}

static void ynode_free(struct ynode *n)
{
    if (!n)
        return;
    free(n->str);
    for (size_t i = 0; i < n->n; i++) {
        if (n->kind == Y_SEQ) {
            ynode_free(n->items[i]);
        } else if (n->kind == Y_MAP) {
            ynode_free(n->keys[i]);
            ynode_free(n->vals[i]);
        }
    }
    free(n->items);
    free(n->keys);
    free(n->vals);
    free(n);
}

void ydoc_free(struct ydoc *d)
{
    if (!d)
        return;
    ynode_free(d->root);
    free(d->file);
    free(d);
}

static struct ynode *node_new(struct builder *b, enum ynode_kind kind, const yaml_mark_t *m)
{
    struct ynode *n = xcalloc(1, sizeof(*n));
    n->kind = kind;
    n->file = b->doc->file;
    n->line = (int)m->line + 1;
    n->col = (int)m->column + 1;
    return n;
}

static void syntax_error(struct builder *b)
{
    yaml_parser_t *p = &b->parser;
    const char *problem = p->problem ? p->problem : "invalid YAML";
    int line, col;
    if (p->error == YAML_MEMORY_ERROR) {
        berr_at(b, 1, 1, "out of memory while parsing");
        b->failed = 1;
        return;
    }
    if (p->error == YAML_READER_ERROR) {
        /* The reader gives a byte offset only: count lines and characters. */
        size_t end = p->problem_offset < b->len ? p->problem_offset : b->len;
        line = col = 1;
        for (size_t k = 0; k < end; k++) {
            unsigned char ch = (unsigned char)b->text[k];
            if (ch == '\n') {
                line++;
                col = 1;
            } else if ((ch & 0xc0) != 0x80) {
                col++;
            }
        }
        berr_at(b, line, col, "invalid input: %s", problem);
        b->failed = 1;
        return;
    }
    line = (int)p->problem_mark.line + 1;
    col = (int)p->problem_mark.column + 1;
    if (p->context && (p->context_mark.line != p->problem_mark.line ||
                       p->context_mark.column != p->problem_mark.column))
        berr_at(b, line, col, "syntax error: %s (%s at line %d, column %d)", problem, p->context,
                (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
    else if (p->context)
        berr_at(b, line, col, "syntax error: %s (%s)", problem, p->context);
    else
        berr_at(b, line, col, "syntax error: %s", problem);
    b->failed = 1;
}

/* Next event; 0, or -1 after reporting a syntax error. */
static int next_event(struct builder *b, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&b->parser, ev)) {
        syntax_error(b);
        return -1;
    }
    return 0;
}

static void check_anchor(struct builder *b, const yaml_char_t *anchor, const yaml_mark_t *m)
{
    if (anchor)
        berr_at(b, (int)m->line + 1, (int)m->column + 1,
                "anchors (&%s) are not supported; write the value out", (const char *)anchor);
}

/* Tags: "!" and "!!str" make a scalar a string; others are refused. */
static int check_tag(struct builder *b, const yaml_char_t *tag, const yaml_mark_t *m, int scalar)
{
    if (!tag)
        return 0;
    if (scalar && (strcmp((const char *)tag, "!") == 0 ||
                   strcmp((const char *)tag, "tag:yaml.org,2002:str") == 0))
        return 1;
    berr_at(b, (int)m->line + 1, (int)m->column + 1, "tag '%s' is not supported",
            (const char *)tag);
    return 0;
}

static struct ynode *parse_node(struct builder *b, yaml_event_t *ev, int depth);

static void push(struct ynode ***arr, size_t n, size_t *cap, struct ynode *v)
{
    if (n == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        *arr = xrealloc(*arr, *cap * sizeof(**arr));
    }
    (*arr)[n] = v;
}

static struct ynode *parse_seq(struct builder *b, struct ynode *n, int depth)
{
    size_t cap = 0;
    for (;;) {
        yaml_event_t ev;
        if (next_event(b, &ev) < 0)
            return n;
        if (ev.type == YAML_SEQUENCE_END_EVENT) {
            yaml_event_delete(&ev);
            return n;
        }
        struct ynode *item = parse_node(b, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (item)
            push(&n->items, n->n++, &cap, item);
        if (b->failed)
            return n;
    }
}

static struct ynode *parse_map(struct builder *b, struct ynode *n, int depth)
{
    size_t cap = 0;
    for (;;) {
        yaml_event_t ev;
        if (next_event(b, &ev) < 0)
            return n;
        if (ev.type == YAML_MAPPING_END_EVENT) {
            yaml_event_delete(&ev);
            return n;
        }
        struct ynode *key = parse_node(b, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (b->failed) {
            ynode_free(key);
            return n;
        }
        if (next_event(b, &ev) < 0) {
            ynode_free(key);
            return n;
        }
        struct ynode *val = parse_node(b, &ev, depth + 1);
        yaml_event_delete(&ev);
        if (!key || !val || b->failed) {
            ynode_free(key);
            ynode_free(val);
            if (b->failed)
                return n;
            continue;
        }
        if (key->kind != Y_SCALAR) {
            berr_at(b, key->line, key->col, "map keys must be scalars");
            ynode_free(key);
            ynode_free(val);
            continue;
        }
        int dup = 0;
        for (size_t i = 0; i < n->n; i++) {
            if (n->keys[i]->len == key->len && memcmp(n->keys[i]->str, key->str, key->len) == 0) {
                berr_at(b, key->line, key->col, "duplicate key '%s' (first at line %d, column %d)",
                        key->str, n->keys[i]->line, n->keys[i]->col);
                dup = 1;
                break;
            }
        }
        if (dup) {
            ynode_free(key);
            ynode_free(val);
            continue;
        }
        size_t kcap = cap;
        push(&n->keys, n->n, &kcap, key);
        push(&n->vals, n->n, &cap, val);
        n->n++;
    }
}

/* Builds the node that starts with ev (ev stays the caller's). */
static struct ynode *parse_node(struct builder *b, yaml_event_t *ev, int depth)
{
    struct ynode *n;
    if (depth > YAML_MAX_DEPTH) {
        berr_at(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                "nesting deeper than %d levels", YAML_MAX_DEPTH);
        b->failed = 1;
        return NULL;
    }
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        berr_at(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                "aliases (*%s) are not supported; write the value out",
                (const char *)ev->data.alias.anchor);
        /* A placeholder keeps the surrounding structure consistent. */
        n = node_new(b, Y_SCALAR, &ev->start_mark);
        n->str = xstrdup("");
        n->plain = 1;
        return n;
    case YAML_SCALAR_EVENT: {
        check_anchor(b, ev->data.scalar.anchor, &ev->start_mark);
        int as_str = check_tag(b, ev->data.scalar.tag, &ev->start_mark, 1);
        n = node_new(b, Y_SCALAR, &ev->start_mark);
        n->len = ev->data.scalar.length;
        n->str = xstrndup((const char *)ev->data.scalar.value, n->len);
        n->plain = !as_str && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        return n;
    }
    case YAML_SEQUENCE_START_EVENT:
        check_anchor(b, ev->data.sequence_start.anchor, &ev->start_mark);
        check_tag(b, ev->data.sequence_start.tag, &ev->start_mark, 0);
        n = node_new(b, Y_SEQ, &ev->start_mark);
        return parse_seq(b, n, depth);
    case YAML_MAPPING_START_EVENT:
        check_anchor(b, ev->data.mapping_start.anchor, &ev->start_mark);
        check_tag(b, ev->data.mapping_start.tag, &ev->start_mark, 0);
        n = node_new(b, Y_MAP, &ev->start_mark);
        return parse_map(b, n, depth);
    default:
        berr_at(b, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
                "unexpected YAML event");
        b->failed = 1;
        return NULL;
    }
}

static void parse_stream(struct builder *b)
{
    yaml_event_t ev;
    int docs = 0;
    for (;;) {
        if (next_event(b, &ev) < 0)
            return;
        yaml_event_type_t t = ev.type;
        if (t == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            return;
        }
        if (t == YAML_DOCUMENT_START_EVENT) {
            if (++docs > 1) {
                berr_at(b, (int)ev.start_mark.line + 1, (int)ev.start_mark.column + 1,
                        "more than one document; a config is one document");
                yaml_event_delete(&ev);
                return;
            }
        } else if (t == YAML_SCALAR_EVENT || t == YAML_SEQUENCE_START_EVENT ||
                   t == YAML_MAPPING_START_EVENT || t == YAML_ALIAS_EVENT) {
            struct ynode *n = parse_node(b, &ev, 1);
            if (b->doc->root)
                ynode_free(n); /* cannot happen: one root per document */
            else
                b->doc->root = n;
            if (b->failed) {
                yaml_event_delete(&ev);
                return;
            }
        }
        yaml_event_delete(&ev);
    }
}

struct ydoc *ydoc_load_string(const char *name, const char *text, size_t len, struct errs *errs)
{
    struct builder b;
    memset(&b, 0, sizeof(b));
    b.errs = errs;
    b.text = text ? text : "";
    b.len = text ? len : 0;
    b.doc = xcalloc(1, sizeof(*b.doc));
    b.doc->file = xstrdup(name ? name : "<config>");
    if (!yaml_parser_initialize(&b.parser)) {
        if (errs)
            errs_add(errs, "%s:1:1: out of memory", b.doc->file);
        ydoc_free(b.doc);
        return NULL;
    }
    yaml_parser_set_input_string(&b.parser, (const unsigned char *)(text ? text : ""),
                                 text ? len : 0);
    yaml_parser_set_encoding(&b.parser, YAML_UTF8_ENCODING);
    parse_stream(&b);
    yaml_parser_delete(&b.parser);
    if (b.nerr) {
        ydoc_free(b.doc);
        return NULL;
    }
    return b.doc;
}

struct ydoc *ydoc_load_file(const char *path, struct errs *errs)
{
    struct sbuf sb = {0};
    if (read_file(path, &sb, errs) < 0)
        return NULL;
    struct ydoc *d = ydoc_load_string(path, sb.s ? sb.s : "", sb.len, errs);
    sb_free(&sb);
    return d;
}

const struct ynode *ynode_get(const struct ynode *map, const char *key)
{
    if (!map || map->kind != Y_MAP || !key)
        return NULL;
    size_t kl = strlen(key);
    for (size_t i = 0; i < map->n; i++)
        if (map->keys[i]->len == kl && memcmp(map->keys[i]->str, key, kl) == 0)
            return map->vals[i];
    return NULL;
}

/* ---- core schema ---- */

static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Digits in base (8 or 16) after a prefix; unsigned magnitude. Returns 1 when
 * all characters are digits, with *over set when it exceeds INT64_MAX. */
static int parse_based(const char *s, size_t len, int base, int64_t *v, double *d, int *over)
{
    uint64_t acc = 0;
    double dacc = 0;
    if (len == 0)
        return 0;
    *over = 0;
    for (size_t i = 0; i < len; i++) {
        int x = hexval(s[i]);
        if (x < 0 || x >= base)
            return 0;
        dacc = dacc * base + x;
        if (!*over) {
            if (acc > ((uint64_t)INT64_MAX - (uint64_t)x) / (uint64_t)base)
                *over = 1;
            else
                acc = acc * (uint64_t)base + (uint64_t)x;
        }
    }
    *v = (int64_t)acc;
    *d = dacc;
    return 1;
}

static int match_float(const char *s, size_t len)
{
    size_t i = 0;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        i++;
    if (i < len && s[i] == '.') {
        i++;
        size_t st = i;
        while (i < len && is_digit(s[i]))
            i++;
        if (i == st)
            return 0;
    } else {
        size_t st = i;
        while (i < len && is_digit(s[i]))
            i++;
        if (i == st)
            return 0;
        if (i < len && s[i] == '.') {
            i++;
            while (i < len && is_digit(s[i]))
                i++;
        }
    }
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '-' || s[i] == '+'))
            i++;
        size_t st = i;
        while (i < len && is_digit(s[i]))
            i++;
        if (i == st)
            return 0;
    }
    return i == len;
}

static int eq_any(const char *s, const char *a, const char *b, const char *c)
{
    return strcmp(s, a) == 0 || strcmp(s, b) == 0 || strcmp(s, c) == 0;
}

enum yscalar ynode_resolve(const struct ynode *n, int64_t *i, double *d, int *b)
{
    int64_t iv = 0;
    double dv = 0;
    if (!n || n->kind != Y_SCALAR)
        return YS_NULL;
    if (!n->plain)
        return YS_STR;
    const char *s = n->str;
    size_t len = n->len;
    if (strlen(s) != len)
        return YS_STR; /* a NUL inside: cannot be anything else */
    if (len == 0 || strcmp(s, "~") == 0 || eq_any(s, "null", "Null", "NULL"))
        return YS_NULL;
    if (eq_any(s, "true", "True", "TRUE")) {
        if (b)
            *b = 1;
        return YS_BOOL;
    }
    if (eq_any(s, "false", "False", "FALSE")) {
        if (b)
            *b = 0;
        return YS_BOOL;
    }
    /* Decimal integers. */
    {
        size_t k = (s[0] == '-' || s[0] == '+') ? 1 : 0;
        if (k < len) {
            size_t j = k;
            while (j < len && is_digit(s[j]))
                j++;
            if (j == len) {
                errno = 0;
                long long v = strtoll(s, NULL, 10);
                if (errno == ERANGE) {
                    if (d)
                        *d = strtod(s, NULL);
                    return YS_FLOAT;
                }
                if (i)
                    *i = v;
                if (d)
                    *d = (double)v;
                return YS_INT;
            }
        }
    }
    if (len > 2 && s[0] == '0' && (s[1] == 'o' || s[1] == 'x')) {
        int over;
        if (parse_based(s + 2, len - 2, s[1] == 'o' ? 8 : 16, &iv, &dv, &over)) {
            if (over) {
                if (d)
                    *d = dv;
                return YS_FLOAT;
            }
            if (i)
                *i = iv;
            if (d)
                *d = (double)iv;
            return YS_INT;
        }
    }
    if (match_float(s, len)) {
        if (d)
            *d = strtod(s, NULL);
        return YS_FLOAT;
    }
    {
        const char *t = s;
        int neg = 0;
        if (*t == '-' || *t == '+') {
            neg = *t == '-';
            t++;
        }
        if (eq_any(t, ".inf", ".Inf", ".INF")) {
            if (d)
                *d = neg ? -INFINITY : INFINITY;
            return YS_FLOAT;
        }
        if (t == s && eq_any(s, ".nan", ".NaN", ".NAN")) {
            if (d)
                *d = NAN;
            return YS_FLOAT;
        }
    }
    return YS_STR;
}

char *yunknown_key(const struct ynode *map, const char *const *allowed, size_t *i)
{
    if (!map || map->kind != Y_MAP || !allowed)
        return NULL;
    for (; *i < map->n; (*i)++) {
        const struct ynode *k = map->keys[*i];
        int ok = 0;
        for (size_t a = 0; allowed[a] && !ok; a++)
            ok = strlen(allowed[a]) == k->len && memcmp(allowed[a], k->str, k->len) == 0;
        if (ok)
            continue;
        struct sbuf sb = {0};
        for (size_t a = 0; allowed[a]; a++) {
            if (a)
                sb_str(&sb, ", ");
            sb_str(&sb, allowed[a]);
        }
        char *msg = NULL;
        if (asprintf(&msg, "unknown key '%s' (allowed: %s)", k->str, sb.s ? sb.s : "none") < 0)
            abort();
        sb_free(&sb);
        return msg;
    }
    return NULL;
}

int ycheck_keys(struct errs *errs, const struct ynode *map, const char *const *allowed)
{
    int refused = 0;
    char *msg;
    for (size_t i = 0; (msg = yunknown_key(map, allowed, &i)) != NULL; i++) {
        yerr(errs, map->keys[i], "%s", msg);
        free(msg);
        refused++;
    }
    return refused;
}

/* ---- JSON ---- */

static json_t *scalar_json(const struct ynode *n)
{
    int64_t iv;
    double dv;
    int bv;
    json_t *j;
    switch (ynode_resolve(n, &iv, &dv, &bv)) {
    case YS_NULL:
        return json_null();
    case YS_BOOL:
        return json_boolean(bv);
    case YS_INT:
        return json_integer(iv);
    case YS_FLOAT:
        /* JSON has no infinities or NaN: those stay text. */
        if (isfinite(dv))
            return json_real(dv);
        break;
    case YS_STR:
        break;
    }
    j = json_stringn(n->str, n->len);
    return j ? j : json_null();
}

static json_t *node_json(const struct ynode *n)
{
    json_t *j;
    if (!n)
        return json_null();
    switch (n->kind) {
    case Y_SCALAR:
        return scalar_json(n);
    case Y_SEQ:
        j = json_array();
        for (size_t i = 0; i < n->n; i++)
            json_array_append_new(j, node_json(n->items[i]));
        return j;
    case Y_MAP:
        j = json_object();
        for (size_t i = 0; i < n->n; i++)
            json_object_setn_new(j, n->keys[i]->str, n->keys[i]->len, node_json(n->vals[i]));
        return j;
    }
    return json_null();
}

char *ynode_to_json(const struct ynode *n)
{
    json_t *j = node_json(n);
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_PRESERVE_ORDER);
    json_decref(j);
    if (!s)
        return xstrdup("null");
    return s;
}

json_t *ynode_to_jansson(const struct ynode *n)
{
    char *text = ynode_to_json(n);
    json_t *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    free(text);
    return j ? j : json_null();
}
