#define _GNU_SOURCE
#include "lib/util.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    const int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = (unsigned)(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

static int is_leap(int64_t y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

int rfc3339_parse(const char *s, size_t len, int64_t *ms)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, mo, d, h, mi, sec, frac = 0;
    size_t p = 19;
    if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':')
        return -EINVAL;
    if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
        digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &sec))
        return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59)
        return -EINVAL;
    if (d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
        return -EINVAL;
    if (p < len && s[p] == '.') {
        size_t start = ++p;
        int scale = 100;
        while (p < len && s[p] >= '0' && s[p] <= '9') {
            frac += (s[p] - '0') * scale;
            scale /= 10;
            p++;
        }
        if (p == start)
            return -EINVAL;
    }
    int64_t off = 0;
    if (p < len && (s[p] == 'Z' || s[p] == 'z')) {
        p++;
    } else if (p + 6 == len && (s[p] == '+' || s[p] == '-') && s[p + 3] == ':') {
        int oh, om;
        if (digits(s + p + 1, 2, &oh) || digits(s + p + 4, 2, &om) || oh > 23 || om > 59)
            return -EINVAL;
        off = ((int64_t)oh * 60 + om) * 60000;
        if (s[p] == '-')
            off = -off;
        p += 6;
    } else {
        return -EINVAL;
    }
    if (p != len)
        return -EINVAL;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    *ms = ((days * 24 + h) * 60 + mi) * 60000 + (int64_t)sec * 1000 + frac - off;
    return 0;
}

void rfc3339_format(int64_t ms, char *buf, size_t len)
{
    int64_t days = ms / 86400000, rem = ms % 86400000;
    if (rem < 0) {
        rem += 86400000;
        days--;
    }
    int64_t y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    snprintf(buf, len, "%04lld-%02u-%02uT%02d:%02d:%02d.%03dZ", (long long)y, m, d,
             (int)(rem / 3600000), (int)(rem / 60000 % 60), (int)(rem / 1000 % 60),
             (int)(rem % 1000));
}

int duration_parse(const char *s, size_t len, int64_t *ms)
{
    size_t i = 0;
    int64_t v = 0;
    if (len == 0)
        return -EINVAL;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        if (v > (INT64_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (s[i] - '0');
        i++;
    }
    if (i == 0)
        return -EINVAL;
    int64_t mul;
    size_t ulen = len - i;
    const char *u = s + i;
    if (ulen == 0 || (ulen == 1 && u[0] == 's'))
        mul = 1000;
    else if (ulen == 2 && u[0] == 'm' && u[1] == 's')
        mul = 1;
    else if (ulen == 1 && u[0] == 'm')
        mul = 60000;
    else if (ulen == 1 && u[0] == 'h')
        mul = 3600000;
    else if (ulen == 1 && u[0] == 'd')
        mul = 86400000;
    else
        return -EINVAL;
    if (v > INT64_MAX / mul)
        return -EINVAL;
    *ms = v * mul;
    return 0;
}

int utc_offset_parse(const char *s, int64_t *ms)
{
    int h, m;
    if ((s[0] == 'Z' || s[0] == 'z') && s[1] == 0) {
        *ms = 0;
        return 0;
    }
    if ((s[0] != '+' && s[0] != '-') || strlen(s) != 6 || s[3] != ':' || digits(s + 1, 2, &h) ||
        digits(s + 4, 2, &m) || h > 23 || m > 59)
        return -EINVAL;
    *ms = ((int64_t)h * 60 + m) * 60000 * (s[0] == '-' ? -1 : 1);
    return 0;
}

int64_t sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        abort();
    return p;
}

void *xcalloc(size_t n, size_t sz)
{
    void *p = calloc(n ? n : 1, sz ? sz : 1);
    if (!p)
        abort();
    return p;
}

void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        abort();
    return p;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void errs_add(struct errs *e, const char *fmt, ...)
{
    va_list ap;
    char *msg;
    va_start(ap, fmt);
    if (vasprintf(&msg, fmt, ap) < 0)
        abort();
    va_end(ap);
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 8;
        e->msg = xrealloc(e->msg, e->cap * sizeof(*e->msg));
    }
    e->msg[e->n++] = msg;
}

void errs_free(struct errs *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->msg[i]);
    free(e->msg);
    memset(e, 0, sizeof(*e));
}

char *errs_join(const struct errs *e)
{
    struct sbuf b = {0};
    for (size_t i = 0; i < e->n; i++) {
        if (i)
            sb_add(&b, "\n", 1);
        sb_str(&b, e->msg[i]);
    }
    if (!b.s)
        return xstrdup("");
    return b.s;
}

void sb_add(struct sbuf *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->s = xrealloc(b->s, cap);
        b->cap = cap;
    }
    memcpy(b->s + b->len, p, n);
    b->len += n;
    b->s[b->len] = 0;
}

void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

void sb_fmt(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    char tmp[256];
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(tmp)) {
        sb_add(b, tmp, (size_t)n);
        return;
    }
    char *big = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb_add(b, big, (size_t)n);
    free(big);
}

void sb_label(struct sbuf *b, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            sb_fmt(b, "\\%c", *v);
        else if (*v == '\n')
            sb_add(b, "\\n", 2);
        else
            sb_add(b, v, 1);
    }
}

void sb_json_str_or_null(struct sbuf *b, const char *s)
{
    if (s)
        sb_json_str(b, s, strlen(s));
    else
        sb_str(b, "null");
}

void sb_json_str(struct sbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    sb_add(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sb_add(b, s + run, i - run);
        run = i + 1;
        char esc[7] = {'\\', 0};
        switch (c) {
        case '"':
            esc[1] = '"';
            break;
        case '\\':
            esc[1] = '\\';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            sb_add(b, esc, 6);
            continue;
        }
        sb_add(b, esc, 2);
    }
    sb_add(b, s + run, n - run);
    sb_add(b, "\"", 1);
}

void sb_free(struct sbuf *b)
{
    free(b->s);
    memset(b, 0, sizeof(*b));
}

int read_file(const char *path, struct sbuf *b, struct errs *errs)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        if (errs)
            errs_add(errs, "%s: cannot open: %s", path, strerror(e));
        return -e;
    }
    char buf[65536];
    size_t got;
    while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
        sb_add(b, buf, got);
    int e = ferror(f) ? errno : 0;
    fclose(f);
    if (e) {
        if (errs)
            errs_add(errs, "%s: cannot read: %s", path, strerror(e));
        sb_free(b);
        return -e;
    }
    return 0;
}

void pair_counts_add(struct pair_counts *t, const char *a, const char *b, uint64_t n)
{
    size_t i = 0;
    while (i < t->n && (strcmp(t->v[i].a, a) != 0 || strcmp(t->v[i].b, b) != 0))
        i++;
    if (i == t->n) {
        t->v = xrealloc(t->v, (t->n + 1) * sizeof(*t->v));
        t->v[t->n++] = (struct pair_count){xstrdup(a), xstrdup(b), 0};
    }
    t->v[i].n += n;
}

void pair_counts_free(struct pair_counts *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->v[i].a);
        free(t->v[i].b);
    }
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

void sb_pair_counts(struct sbuf *b, const char *metric, const char *label_a, const char *label_b,
                    const struct pair_counts *t)
{
    for (size_t i = 0; i < t->n; i++) {
        sb_fmt(b, "%s{%s=\"", metric, label_a);
        sb_label(b, t->v[i].a);
        sb_fmt(b, "\",%s=\"", label_b);
        sb_label(b, t->v[i].b);
        sb_fmt(b, "\"} %" PRIu64 "\n", t->v[i].n);
    }
}
