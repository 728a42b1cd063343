/* Decoding and validation of one input line (spec sections 1 and 9).
 *
 * The line is parsed by jansson with duplicate keys refused. Three rare
 * cases take a second look:
 *  - a duplicate key: parsed again with the last key winning, then the
 *    top-level keys are counted in the text, since only a repeat at the top
 *    level makes the event invalid;
 *  - an integer beyond int64: such literals get ".0" appended in a copy of
 *    the line, so that they are read as doubles while every other integer
 *    stays an integer;
 *  - an object key holding \u0000, which jansson cannot store: the escape
 *    is replaced by one of the same length in the copy, and the event is
 *    refused as invalid_event (it is valid JSON, but not one mktd accepts).
 */
#include "engine/event.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

#define MAX_DEPTH 64

static void set_detail(char *detail, size_t detail_len, const char *fmt, ...) MKTD_PRINTF_FMT(3, 4);

static void set_detail(char *detail, size_t detail_len, const char *fmt, ...)
{
    va_list ap;
    if (!detail || !detail_len)
        return;
    va_start(ap, fmt);
    vsnprintf(detail, detail_len, fmt, ap);
    va_end(ap);
}

/* jansson's message without its " near '...'" part (which quotes input
 * bytes, maybe not UTF-8), plus the byte position. */
static void json_detail(char *detail, size_t detail_len, const json_error_t *err)
{
    char msg[JSON_ERROR_TEXT_LENGTH];
    size_t n = strnlen(err->text, sizeof(msg) - 1);
    memcpy(msg, err->text, n);
    msg[n] = 0;
    char *near = strstr(msg, " near ");
    if (near)
        *near = 0;
    for (char *p = msg; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
    set_detail(detail, detail_len, "%s at byte %d", msg[0] ? msg : "invalid JSON", err->position);
}

static int is_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* The end of the string literal starting at s[i] == '"' (index after the
 * closing quote), or n when it is not closed. */
static size_t string_end(const char *s, size_t n, size_t i)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return n;
}

/* 1 when the digits d[0..n) (no sign, no leading zero) exceed int64 as a
 * positive (neg = 0) or negative (neg = 1) value. */
static int int_overflows(const char *d, size_t n, int neg)
{
    static const char max[] = "9223372036854775807";
    static const char min[] = "9223372036854775808";
    if (n != 19)
        return n > 19;
    return memcmp(d, neg ? min : max, 19) > 0;
}

/* A copy of s where integer literals beyond int64 end in ".0" and the
 * \u0000 escapes of object keys read \ufffd. Sets *nul_key when any key had
 * one. The copy is only meaningful for text that jansson then accepts. */
static char *rewrite(const char *s, size_t n, size_t *out_len, int *nul_key)
{
    /* Each rewritten integer has at least 20 digits and grows by 2. */
    char *o = xmalloc(n + n / 10 + 8);
    size_t j = 0, i = 0;
    while (i < n) {
        char c = s[i];
        if (c == '"') {
            size_t e = string_end(s, n, i);
            size_t start = j;
            memcpy(o + j, s + i, e - i);
            j += e - i;
            size_t k = e;
            while (k < n && is_ws(s[k]))
                k++;
            if (k < n && s[k] == ':') {
                /* A key: replace its \u0000 escapes. */
                for (size_t p = start + 1; p + 1 < j; p++) {
                    if (o[p] != '\\')
                        continue;
                    if (o[p + 1] == 'u' && p + 6 <= j && memcmp(o + p + 2, "0000", 4) == 0) {
                        memcpy(o + p + 2, "fffd", 4);
                        *nul_key = 1;
                        p += 5;
                    } else {
                        p++;
                    }
                }
            }
            i = e;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t e = i;
            while (e < n && (s[e] == '-' || s[e] == '+' || s[e] == '.' || s[e] == 'e' ||
                             s[e] == 'E' || (s[e] >= '0' && s[e] <= '9')))
                e++;
            int neg = c == '-';
            const char *d = s + i + neg;
            size_t dn = e - i - neg;
            int plain = dn > 0 && d[0] != '0';
            for (size_t p = 0; plain && p < dn; p++)
                if (d[p] < '0' || d[p] > '9')
                    plain = 0;
            memcpy(o + j, s + i, e - i);
            j += e - i;
            if (plain && int_overflows(d, dn, neg)) {
                memcpy(o + j, ".0", 2);
                j += 2;
            }
            i = e;
        } else {
            o[j++] = c;
            i++;
        }
    }
    *out_len = j;
    return o;
}

/* ---- the common case without jansson's lexer ----
 *
 * Most lines are plain: ASCII, no escapes, integers that fit in 18 digits,
 * no duplicate key, shallow. fast_parse builds for such a line the tree
 * jansson would (the same types, values and key order) at a fraction of
 * the cost of jansson's byte-by-byte lexer; anything else (a non-ASCII
 * byte, a backslash, a control byte, a real, a long or zero-led integer, a
 * duplicate key, nesting deeper than MAX_DEPTH, a line that is not an
 * object, any syntax error) makes it give up, and the line goes through
 * jansson as before, which also words every error. */

struct fp {
    const char *s, *end;
};

static void fp_ws(struct fp *f)
{
    while (f->s < f->end && is_ws(*f->s))
        f->s++;
}

/* A string without escapes at f->s (after its opening quote): its bytes
 * and length; NULL when it is not plain. */
static const char *fp_str(struct fp *f, size_t *n)
{
    const char *b = f->s;
    for (const char *p = b; p < f->end; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') {
            *n = (size_t)(p - b);
            f->s = p + 1;
            return b;
        }
        if (c < 0x20 || c >= 0x80 || c == '\\')
            return NULL;
    }
    return NULL;
}

static int fp_is_alnum(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static json_t *fp_value(struct fp *f, int level);

/* level: the level of the container being read (the root's is 1). */
static json_t *fp_object(struct fp *f, int level)
{
    json_t *o = json_object();
    fp_ws(f);
    if (f->s < f->end && *f->s == '}') {
        f->s++;
        return o;
    }
    for (;;) {
        size_t kn;
        const char *k;
        if (f->s >= f->end || *f->s != '"')
            goto bail;
        f->s++;
        if (!(k = fp_str(f, &kn)) || json_object_getn(o, k, kn))
            goto bail;
        fp_ws(f);
        if (f->s >= f->end || *f->s != ':')
            goto bail;
        f->s++;
        json_t *v = fp_value(f, level);
        if (!v || json_object_setn_new_nocheck(o, k, kn, v) < 0)
            goto bail;
        fp_ws(f);
        if (f->s < f->end && *f->s == ',') {
            f->s++;
            fp_ws(f);
            continue;
        }
        if (f->s < f->end && *f->s == '}') {
            f->s++;
            return o;
        }
        goto bail;
    }
bail:
    json_decref(o);
    return NULL;
}

static json_t *fp_array(struct fp *f, int level)
{
    json_t *a = json_array();
    fp_ws(f);
    if (f->s < f->end && *f->s == ']') {
        f->s++;
        return a;
    }
    for (;;) {
        json_t *v = fp_value(f, level);
        if (!v || json_array_append_new(a, v) < 0)
            break;
        fp_ws(f);
        if (f->s < f->end && *f->s == ',') {
            f->s++;
            continue;
        }
        if (f->s < f->end && *f->s == ']') {
            f->s++;
            return a;
        }
        break;
    }
    json_decref(a);
    return NULL;
}

/* A value inside a container of level `level`. */
static json_t *fp_value(struct fp *f, int level)
{
    fp_ws(f);
    if (f->s >= f->end)
        return NULL;
    char c = *f->s;
    if (c == '"') {
        size_t n;
        f->s++;
        const char *v = fp_str(f, &n);
        return v ? json_stringn_nocheck(v, n) : NULL;
    }
    if (c == '{' || c == '[') {
        if (level + 1 > MAX_DEPTH)
            return NULL;
        f->s++;
        return c == '{' ? fp_object(f, level + 1) : fp_array(f, level + 1);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        const char *p = f->s + (c == '-');
        const char *d = p;
        uint64_t v = 0; /* 19 digits at most: no overflow */
        while (p < f->end && *p >= '0' && *p <= '9' && p - d < 19)
            v = v * 10 + (uint64_t)(*p++ - '0');
        size_t nd = (size_t)(p - d);
        if (nd == 0 || nd > 18 || (d[0] == '0' && (nd > 1 || c == '-')))
            return NULL; /* zero-led, "-0", or long: jansson's */
        if (p < f->end && (*p == '.' || fp_is_alnum(*p)))
            return NULL; /* a real, or not a number */
        f->s = p;
        return json_integer(c == '-' ? -(json_int_t)v : (json_int_t)v);
    }
    static const struct {
        const char *w;
        size_t n;
    } lit[] = {{"true", 4}, {"false", 5}, {"null", 4}};
    for (size_t i = 0; i < 3; i++) {
        if ((size_t)(f->end - f->s) >= lit[i].n && memcmp(f->s, lit[i].w, lit[i].n) == 0) {
            const char *p = f->s + lit[i].n;
            if (p < f->end && fp_is_alnum(*p))
                return NULL;
            f->s = p;
            return i == 0 ? json_true() : i == 1 ? json_false() : json_null();
        }
    }
    return NULL;
}

json_t *event_parse_plain(const char *s, size_t n)
{
    struct fp f = {s, s + n};
    fp_ws(&f);
    if (f.s >= f.end || *f.s != '{')
        return NULL;
    f.s++;
    json_t *root = fp_object(&f, 1);
    if (!root)
        return NULL;
    fp_ws(&f);
    if (f.s != f.end) {
        json_decref(root);
        return NULL;
    }
    return root;
}

/* 1 when the literal s[0..n) (with quotes) decodes to "id". */
static int key_is_id(const char *s, size_t n)
{
    if (n == 4 && memcmp(s, "\"id\"", 4) == 0)
        return 1;
    /* Escaped forms: at most "\u0069\u0064". */
    if (n > 14 || !memchr(s, '\\', n))
        return 0;
    json_error_t err;
    json_t *k = json_loadb(s, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    int r = json_is_string(k) && json_string_length(k) == 2 &&
            memcmp(json_string_value(k), "id", 2) == 0;
    json_decref(k);
    return r;
}

/* Counts the keys of the top-level object of the valid JSON text s, and
 * those among them that decode to "id". */
static void count_top_keys(const char *s, size_t n, size_t *keys, size_t *ids)
{
    size_t depth = 0;
    int expect_key = 0;
    *keys = *ids = 0;
    for (size_t i = 0; i < n;) {
        char c = s[i];
        if (c == '"') {
            size_t e = string_end(s, n, i);
            if (depth == 1 && expect_key) {
                (*keys)++;
                if (key_is_id(s + i, e - i))
                    (*ids)++;
            }
            expect_key = 0;
            i = e;
            continue;
        }
        if (c == '{' || c == '[') {
            depth++;
            expect_key = depth == 1 && c == '{';
        } else if (c == '}' || c == ']') {
            if (depth)
                depth--;
            expect_key = 0;
        } else if (c == ',') {
            expect_key = depth == 1;
        } else if (!is_ws(c)) {
            expect_key = 0;
        }
        i++;
    }
}

/* 0 when no container of v sits deeper than MAX_DEPTH (v at `level`). */
static int check_depth(json_t *v, int level)
{
    if (json_is_object(v)) {
        if (level > MAX_DEPTH)
            return -1;
        const char *k;
        json_t *m;
        json_object_foreach(v, k, m)
        {
            if (check_depth(m, level + 1))
                return -1;
        }
    } else if (json_is_array(v)) {
        if (level > MAX_DEPTH)
            return -1;
        size_t i;
        json_t *m;
        json_array_foreach(v, i, m)
        {
            if (check_depth(m, level + 1))
                return -1;
        }
    }
    return 0;
}

/* A string of 1..max bytes without NUL. */
static int good_str(const json_t *v, size_t max)
{
    if (!json_is_string(v))
        return 0;
    size_t n = json_string_length(v);
    return n >= 1 && n <= max && !memchr(json_string_value(v), 0, n);
}

static int good_type(const json_t *v)
{
    if (!json_is_string(v))
        return 0;
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n < 1 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* A field that is absent or JSON null. */
static json_t *field(json_t *obj, const char *key)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_null(v) ? NULL : v;
}

enum prop_kind { P_STR, P_INT_GE0, P_INT_GT0 };

struct prop_rule {
    const char *name;
    enum prop_kind kind;
    int required;
};

struct type_rule {
    const char *type;
    struct prop_rule props[3];
    size_t n;
};

static const struct type_rule type_rules[] = {
    {"user.signup", {{"referrer", P_STR, 0}}, 1},
    {"order.paid", {{"order_id", P_STR, 1}, {"amount", P_INT_GE0, 1}}, 2},
    {"order.refunded", {{"order_id", P_STR, 1}, {"amount", P_INT_GT0, 0}}, 2},
    {"coupon.used", {{"code", P_STR, 1}, {"order_id", P_STR, 0}, {"amount", P_INT_GE0, 0}}, 3},
};

static int check_builtin(const char *type, json_t *props, char *detail, size_t detail_len)
{
    for (size_t t = 0; t < sizeof(type_rules) / sizeof(type_rules[0]); t++) {
        const struct type_rule *r = &type_rules[t];
        if (strcmp(r->type, type) != 0)
            continue;
        for (size_t i = 0; i < r->n; i++) {
            const struct prop_rule *p = &r->props[i];
            json_t *v = field(props, p->name);
            if (!v) {
                if (p->required) {
                    set_detail(detail, detail_len, "missing field: props.%s", p->name);
                    return -1;
                }
                continue;
            }
            switch (p->kind) {
            case P_STR:
                if (!good_str(v, 128)) {
                    set_detail(detail, detail_len,
                               "props.%s: must be a string of 1-128 bytes without \\u0000",
                               p->name);
                    return -1;
                }
                break;
            case P_INT_GE0:
            case P_INT_GT0: {
                int gt0 = p->kind == P_INT_GT0;
                if (!json_is_integer(v) || json_integer_value(v) < (gt0 ? 1 : 0)) {
                    set_detail(detail, detail_len, "props.%s: must be an integer %s", p->name,
                               gt0 ? "> 0" : ">= 0");
                    return -1;
                }
                break;
            }
            }
        }
        return 0;
    }
    return 0;
}

/* Checks the fields of the object root and fills ev. */
static enum ev_status check_fields(json_t *root, const struct decode_opts *o, struct event *ev,
                                   char *detail, size_t detail_len)
{
    static const char *const req[] = {"id", "type", "user"};
    for (size_t i = 0; i < 3; i++) {
        if (!field(root, req[i])) {
            set_detail(detail, detail_len, "missing field: %s", req[i]);
            return EV_INVALID_EVENT;
        }
    }
    json_t *id = field(root, "id"), *type = field(root, "type"), *user = field(root, "user");
    if (!good_str(id, EVENT_ID_MAX)) {
        set_detail(detail, detail_len,
                   "field 'id': must be a string of 1-128 bytes without \\u0000");
        return EV_INVALID_EVENT;
    }
    if (!good_type(type)) {
        set_detail(detail, detail_len,
                   "field 'type': must be a string of 1-64 bytes of [a-z0-9_.-]");
        return EV_INVALID_EVENT;
    }
    if (!good_str(user, EVENT_ID_MAX)) {
        set_detail(detail, detail_len,
                   "field 'user': must be a string of 1-128 bytes without \\u0000");
        return EV_INVALID_EVENT;
    }

    json_t *ts = field(root, "ts");
    int64_t ms = 0;
    if (ts) {
        if (json_is_integer(ts)) {
            ms = json_integer_value(ts);
        } else if (!json_is_string(ts) ||
                   rfc3339_parse(json_string_value(ts), json_string_length(ts), &ms) != 0) {
            set_detail(detail, detail_len,
                       "field 'ts': must be an integer (Unix ms) or an RFC 3339 string");
            return EV_INVALID_EVENT;
        }
        if (ms < 0) {
            set_detail(detail, detail_len, "field 'ts': must not be before 1970 (ts >= 0)");
            return EV_INVALID_EVENT;
        }
        if (o && ms > sat_add(o->wall_now_ms, o->max_future_ms)) {
            set_detail(detail, detail_len,
                       "field 'ts': more than limits.max_future (%" PRId64
                       " ms) ahead of the wall clock",
                       o->max_future_ms);
            return EV_INVALID_EVENT;
        }
        if (o && o->max_past_ms > 0 && ms < sat_add(o->wall_now_ms, -o->max_past_ms)) {
            set_detail(detail, detail_len,
                       "field 'ts': more than limits.max_past (%" PRId64
                       " ms) behind the wall clock; replay history with mktd simulate",
                       o->max_past_ms);
            return EV_INVALID_EVENT;
        }
    }

    json_t *props = field(root, "props");
    if (props && !json_is_object(props)) {
        set_detail(detail, detail_len, "field 'props': must be an object");
        return EV_INVALID_EVENT;
    }
    if (check_builtin(json_string_value(type), props, detail, detail_len))
        return EV_INVALID_EVENT;
    json_t *dry = field(root, "dry"), *explain = field(root, "explain");
    if ((dry && !json_is_boolean(dry)) || (explain && !json_is_boolean(explain))) {
        set_detail(detail, detail_len, "field '%s': must be true or false",
                   dry && !json_is_boolean(dry) ? "dry" : "explain");
        return EV_INVALID_EVENT;
    }

    ev->id = json_string_value(id);
    ev->type = json_string_value(type);
    ev->user = json_string_value(user);
    ev->has_ts = ts != NULL;
    ev->ts = ms;
    ev->props = props;
    ev->dry = json_is_true(dry);
    ev->explain = json_is_true(explain);
    return EV_OK;
}

enum ev_status event_decode(const char *line, size_t len, const struct decode_opts *o,
                            struct event *ev, char *detail, size_t detail_len, char **echo_id)
{
    size_t flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL;
    const char *text = line;
    size_t tlen = len;
    char *copy = NULL;
    int dup = 0, nul_key = 0;
    json_error_t err;
    json_t *root;
    enum ev_status st;

    memset(ev, 0, sizeof(*ev));
    *echo_id = NULL;
    if (detail && detail_len)
        detail[0] = 0;

    /* A raw NUL byte is never valid JSON; jansson may stop reading at it. */
    const char *nul = len ? memchr(line, 0, len) : NULL;
    if (nul) {
        set_detail(detail, detail_len, "NUL byte in input at byte %zu", (size_t)(nul - line));
        return EV_INVALID_JSON;
    }

    for (root = event_parse_plain(line, len); !root;) {
        root = json_loadb(text, tlen, flags, &err);
        if (root)
            break;
        enum json_error_code code = json_error_code(&err);
        if (code == json_error_duplicate_key && (flags & JSON_REJECT_DUPLICATES)) {
            flags &= ~(size_t)JSON_REJECT_DUPLICATES;
            dup = 1;
            continue;
        }
        if ((code == json_error_numeric_overflow || code == json_error_null_byte_in_key) && !copy) {
            copy = rewrite(line, len, &tlen, &nul_key);
            text = copy;
            continue;
        }
        json_detail(detail, detail_len, &err);
        free(copy);
        return EV_INVALID_JSON;
    }

    if (check_depth(root, 1)) {
        set_detail(detail, detail_len, "nesting deeper than %d levels", MAX_DEPTH);
        st = EV_INVALID_JSON;
        goto fail;
    }
    if (!json_is_object(root)) {
        set_detail(detail, detail_len, "not a JSON object");
        st = EV_INVALID_EVENT;
        goto fail;
    }

    size_t keys, ids;
    if (dup) {
        count_top_keys(text, tlen, &keys, &ids);
    } else {
        keys = json_object_size(root);
        ids = json_object_get(root, "id") != NULL;
    }
    json_t *id = json_object_get(root, "id");
    if (ids == 1 && good_str(id, EVENT_ID_MAX))
        *echo_id = xstrndup(json_string_value(id), json_string_length(id));

    st = EV_INVALID_EVENT;
    if (nul_key) {
        set_detail(detail, detail_len, "object keys containing \\u0000 are not supported");
        goto fail;
    }
    if (keys > json_object_size(root)) {
        set_detail(detail, detail_len, "duplicate key at the top level");
        goto fail;
    }
    st = check_fields(root, o, ev, detail, detail_len);
    if (st != EV_OK)
        goto fail;
    ev->root = root;
    free(copy);
    return EV_OK;

fail:
    json_decref(root);
    free(copy);
    memset(ev, 0, sizeof(*ev));
    return st;
}

void event_clear(struct event *ev)
{
    if (!ev)
        return;
    json_decref(ev->root);
    memset(ev, 0, sizeof(*ev));
}

json_t *props_path(json_t *props, const char *path)
{
    json_t *cur = props;
    const char *p = path;
    if (!cur || !path)
        return NULL;
    for (;;) {
        if (!json_is_object(cur))
            return NULL;
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        cur = json_object_getn(cur, p, n);
        if (!cur)
            return NULL;
        if (!dot)
            break;
        p = dot + 1;
    }
    return json_is_null(cur) ? NULL : cur;
}
