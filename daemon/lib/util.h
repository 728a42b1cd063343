/* Small shared helpers: time parsing, error lists, growing strings. */
#ifndef MKTD_UTIL_H
#define MKTD_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define MKTD_PRINTF_FMT(f, a) __attribute__((format(printf, f, a)))

/* Wall clock in Unix ms. */
int64_t wall_ms(void);

/* RFC 3339 date-time ("2026-11-01T00:00:00Z", "...T08:00:00.5+08:00"):
 * T/t, Z/z, +-hh:mm; fractions finer than a ms are truncated; second 60 is
 * refused. Returns 0 and *ms (may be negative before 1970), or -EINVAL. */
int rfc3339_parse(const char *s, size_t len, int64_t *ms);
/* Formats ms as "2026-11-01T00:00:00.000Z" into buf (>= 32 bytes). */
void rfc3339_format(int64_t ms, char *buf, size_t len);

/* Durations: "250ms", "90s", "15m", "12h", "7d", or digits = seconds.
 * Returns 0 and *ms, or -EINVAL (also on overflow or a negative value). */
int duration_parse(const char *s, size_t len, int64_t *ms);

/* "+08:00", "-05:30", "Z" -> offset in ms; 0 or -EINVAL. */
int utc_offset_parse(const char *s, int64_t *ms);

/* Saturating int64 addition. */
int64_t sat_add(int64_t a, int64_t b);

/* Reads a whole file into b (NUL-terminated). Returns 0, or -errno and adds
 * "PATH: cannot open|read: reason" to errs (when not NULL). */
struct sbuf;
struct errs;
int read_file(const char *path, struct sbuf *b, struct errs *errs);

/* A list of error messages, each already "FILE:LINE:COL: message". */
struct errs {
    char **msg;
    size_t n, cap;
};
void errs_add(struct errs *e, const char *fmt, ...) MKTD_PRINTF_FMT(2, 3);
void errs_free(struct errs *e);
/* All messages joined with '\n' (malloc'd). */
char *errs_join(const struct errs *e);

/* A growing NUL-terminated byte string. */
struct sbuf {
    char *s;
    size_t len, cap;
};
void sb_add(struct sbuf *b, const void *p, size_t n);
void sb_str(struct sbuf *b, const char *s);
void sb_fmt(struct sbuf *b, const char *fmt, ...) MKTD_PRINTF_FMT(2, 3);
/* Appends s (n bytes) as a JSON string literal with quotes. */
void sb_json_str(struct sbuf *b, const char *s, size_t n);
/* Appends s (NUL-terminated) as a JSON string literal, or null for NULL. */
void sb_json_str_or_null(struct sbuf *b, const char *s);
/* Appends v as the value of a Prometheus label (\\, \" and \n escaped;
 * no quotes). */
void sb_label(struct sbuf *b, const char *v);
void sb_free(struct sbuf *b);

/* malloc that aborts on failure; strdup likewise. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t sz);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);

/* Counts by a pair of names (a cap and a campaign, a campaign and a kind),
 * in the order the pairs first came. */
struct pair_counts {
    struct pair_count {
        char *a, *b;
        uint64_t n;
    } * v;
    size_t n;
};
void pair_counts_add(struct pair_counts *t, const char *a, const char *b, uint64_t n);
void pair_counts_free(struct pair_counts *t);
/* Appends one Prometheus sample per pair: metric{label_a="a",label_b="b"} n. */
void sb_pair_counts(struct sbuf *b, const char *metric, const char *label_a, const char *label_b,
                    const struct pair_counts *t);

#endif
