#include "check.h"
#include "lib/util.h"

#include <errno.h>
#include <stdlib.h>

static int64_t ts(const char *s)
{
    int64_t v = -1;
    if (rfc3339_parse(s, strlen(s), &v) != 0)
        return -999;
    return v;
}

static int64_t dur(const char *s)
{
    int64_t v;
    if (duration_parse(s, strlen(s), &v) != 0)
        return -1;
    return v;
}

int main(void)
{
    CHECK_INT(ts("1970-01-01T00:00:00Z"), 0);
    CHECK_INT(ts("2026-11-01T00:00:00Z"), 1793491200000LL);
    CHECK_INT(ts("2026-11-01t00:00:00z"), 1793491200000LL);
    CHECK_INT(ts("2026-11-01T08:00:00+08:00"), 1793491200000LL);
    CHECK_INT(ts("2026-10-31T19:00:00-05:00"), 1793491200000LL);
    CHECK_INT(ts("2026-11-01T00:00:00.5Z"), 1793491200500LL);
    CHECK_INT(ts("2026-11-01T00:00:00.123987Z"), 1793491200123LL); /* truncated */
    CHECK_INT(ts("2024-02-29T00:00:00Z"), 1709164800000LL);
    CHECK_INT(ts("2023-02-29T00:00:00Z"), -999);
    CHECK_INT(ts("2026-11-01T00:00:60Z"), -999); /* second 60 refused */
    CHECK_INT(ts("2026-11-01T24:00:00Z"), -999);
    CHECK_INT(ts("2026-11-01 00:00:00Z"), -999);
    CHECK_INT(ts("2026-11-01T00:00:00"), -999);
    CHECK_INT(ts("2026-11-01T00:00:00.Z"), -999);
    CHECK_INT(ts("2026-11-01T00:00:00+0800"), -999);
    CHECK_INT(ts("2026-11-01T00:00:00Zjunk"), -999);

    char buf[40];
    rfc3339_format(1793491200500LL, buf, sizeof(buf));
    CHECK_STR(buf, "2026-11-01T00:00:00.500Z");
    rfc3339_format(-1, buf, sizeof(buf));
    CHECK_STR(buf, "1969-12-31T23:59:59.999Z");

    CHECK_INT(dur("90s"), 90000);
    CHECK_INT(dur("15m"), 900000);
    CHECK_INT(dur("12h"), 43200000);
    CHECK_INT(dur("7d"), 604800000);
    CHECK_INT(dur("250ms"), 250);
    CHECK_INT(dur("30"), 30000);
    CHECK_INT(dur(""), -1);
    CHECK_INT(dur("d"), -1);
    CHECK_INT(dur("-5s"), -1);
    CHECK_INT(dur("5w"), -1);
    CHECK_INT(dur("99999999999999999999d"), -1);

    int64_t off;
    CHECK_INT(utc_offset_parse("+08:00", &off), 0);
    CHECK_INT(off, 8 * 3600000);
    CHECK_INT(utc_offset_parse("-05:30", &off), 0);
    CHECK_INT(off, -(5 * 3600000 + 30 * 60000));
    CHECK_INT(utc_offset_parse("+8:00", &off), -EINVAL);

    CHECK_INT(sat_add(INT64_MAX, 1), INT64_MAX);
    CHECK_INT(sat_add(INT64_MIN, -1), INT64_MIN);
    CHECK_INT(sat_add(2, 3), 5);

    struct sbuf b = {0};
    sb_json_str(&b, "a\"b\\c\n\x01", 7);
    CHECK_STR(b.s, "\"a\\\"b\\\\c\\n\\u0001\"");
    sb_free(&b);
    sb_label(&b, "a\"b\\c\nd");
    CHECK_STR(b.s, "a\\\"b\\\\c\\nd"); /* a\"b\\c\nd */
    sb_free(&b);
    struct pair_counts pc = {0};
    pair_counts_add(&pc, "c1", "k\"x", 2);
    pair_counts_add(&pc, "c1", "k\"x", 3);
    pair_counts_add(&pc, "c2", "k", 1);
    sb_pair_counts(&b, "m_total", "campaign", "kind", &pc);
    CHECK_STR(b.s, "m_total{campaign=\"c1\",kind=\"k\\\"x\"} 5\n"
                   "m_total{campaign=\"c2\",kind=\"k\"} 1\n");
    sb_free(&b);
    pair_counts_free(&pc);

    struct errs e = {0};
    errs_add(&e, "f:%d:%d: %s", 1, 2, "bad");
    errs_add(&e, "g");
    char *j = errs_join(&e);
    CHECK_STR(j, "f:1:2: bad\ng");
    free(j);
    errs_free(&e);
    return check_done();
}
