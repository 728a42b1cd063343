/* The aggregate queries behind `mktd report` (report_q.h). */
#include "store/report_q.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "store/store.h"

/* ?1 since, ?2 until, ?3 campaign or NULL: the period's rows of one kind set */
#define PERIOD "ts >= ?1 AND ts < ?2 AND (?3 IS NULL OR campaign = ?3)"

static sqlite3_stmt *prep(struct store *s, const char *sql, const struct rq_range *r)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(store_sqlite(s), sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return NULL;
    }
    if (r) {
        sqlite3_bind_int64(st, 1, r->since);
        sqlite3_bind_int64(st, 2, r->until);
        if (r->campaign)
            sqlite3_bind_text(st, 3, r->campaign, -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(st, 3);
    }
    return st;
}

static const char *txt(sqlite3_stmt *st, int col)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    return t ? t : "";
}

static int finish(sqlite3_stmt *st, int rc)
{
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int rq_daily(struct store *s, const struct rq_range *r,
             void (*cb)(void *arg, const char *campaign, const char *kind, int64_t day, int64_t n),
             void *arg)
{
    sqlite3_stmt *st =
        prep(s,
             "SELECT campaign, kind, ts / 86400000 AS day, count(*) FROM actions "
             "WHERE " PERIOD " GROUP BY campaign, day, kind ORDER BY campaign, day, kind",
             r);
    if (!st)
        return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cb(arg, txt(st, 0), txt(st, 1), sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3));
    return finish(st, rc);
}

int rq_reasons(struct store *s, const struct rq_range *r,
               void (*cb)(void *arg, const char *campaign, const char *kind, const char *reason,
                          int64_t n),
               void *arg)
{
    sqlite3_stmt *st = prep(
        s,
        "SELECT campaign, kind, coalesce(CAST(json_extract(payload, '$.reason') AS TEXT), ''), "
        "count(*) FROM actions WHERE kind IN ('coupon.rejected', 'referral.rejected') AND " PERIOD
        " AND json_valid(payload) GROUP BY 1, 2, 3",
        r);
    if (!st)
        return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cb(arg, txt(st, 0), txt(st, 1), txt(st, 2), sqlite3_column_int64(st, 3));
    return finish(st, rc);
}

/* A coupon's fixed value: an integer `value`, else 0. */
#define VALUE_OF(p)                                                                                \
    "CASE WHEN json_type(" p ", '$.value') = 'integer' THEN json_extract(" p ", '$.value') "       \
    "ELSE 0 END"

int rq_coupons_issued(struct store *s, const struct rq_range *r,
                      void (*cb)(void *arg, const char *campaign, const struct rq_issued *c),
                      void *arg)
{
    sqlite3_stmt *st = prep(
        s,
        "WITH iss AS MATERIALIZED (SELECT campaign, json_extract(payload, '$.code') AS "
        "code, " VALUE_OF(
            "payload") " AS v, json_type(payload, '$.percent') IS NOT NULL AS pct "
                       "FROM actions WHERE kind = 'coupon.issued' AND " PERIOD
                       " AND json_valid(payload)), "
                       "red AS MATERIALIZED (SELECT DISTINCT campaign, json_extract(payload, "
                       "'$.code') AS code "
                       "FROM actions WHERE kind = 'coupon.redeemed' AND ts < ?2 "
                       "AND (?3 IS NULL OR campaign = ?3) AND json_valid(payload)) "
                       "SELECT iss.campaign, count(*), sum(iss.v), sum(iss.pct), count(red.code) "
                       "FROM iss LEFT JOIN red ON red.campaign = iss.campaign AND red.code = "
                       "iss.code GROUP BY iss.campaign",
        r);
    if (!st)
        return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct rq_issued c = {sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2),
                              sqlite3_column_int64(st, 3), sqlite3_column_int64(st, 4)};
        cb(arg, txt(st, 0), &c);
    }
    return finish(st, rc);
}

int rq_coupons_redeemed(struct store *s, const struct rq_range *r,
                        void (*cb)(void *arg, const char *campaign, int64_t n, int64_t value),
                        void *arg)
{
    sqlite3_stmt *st = prep(
        s,
        "WITH red AS MATERIALIZED (SELECT campaign, json_extract(payload, '$.code') AS code FROM "
        "actions "
        "WHERE kind = 'coupon.redeemed' AND " PERIOD " AND json_valid(payload)), "
        "iss AS MATERIALIZED (SELECT campaign, json_extract(payload, '$.code') AS code, " VALUE_OF(
            "payload") " AS v FROM actions WHERE kind = 'coupon.issued' AND ts < ?2 "
                       "AND campaign IN (SELECT campaign FROM red) AND json_valid(payload)) "
                       "SELECT red.campaign, count(*), coalesce(sum(iss.v), 0) FROM red "
                       "LEFT JOIN iss ON iss.campaign = red.campaign AND iss.code = red.code "
                       "GROUP BY red.campaign",
        r);
    if (!st)
        return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cb(arg, txt(st, 0), sqlite3_column_int64(st, 1), sqlite3_column_int64(st, 2));
    return finish(st, rc);
}

int rq_amounts(struct store *s, const struct rq_range *r,
               void (*cb)(void *arg, const char *campaign, const char *kind, const char *role,
                          int64_t n, int64_t amount),
               void *arg)
{
    sqlite3_stmt *st =
        prep(s,
             "SELECT campaign, kind, coalesce(CAST(json_extract(payload, '$.role') AS TEXT), ''), "
             "count(*), coalesce(sum(CASE WHEN json_type(payload, '$.amount') = 'integer' THEN "
             "json_extract(payload, '$.amount') END), 0) FROM actions WHERE kind IN "
             "('referral.commission', 'referral.clawback', 'referral.reward') AND " PERIOD
             " AND json_valid(payload) GROUP BY 1, 2, 3",
             r);
    if (!st)
        return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cb(arg, txt(st, 0), txt(st, 1), txt(st, 2), sqlite3_column_int64(st, 3),
           sqlite3_column_int64(st, 4));
    return finish(st, rc);
}

int rq_reactivation(struct store *s, const struct rq_range *r,
                    void (*cb)(void *arg, const char *campaign, const char *group, int64_t n,
                               int64_t x),
                    void *arg)
{
    sqlite3_stmt *st =
        prep(s,
             "WITH dec AS MATERIALIZED (SELECT DISTINCT campaign, user, substr(kind, 14) AS g FROM "
             "actions "
             "WHERE kind IN ('reactivation.offer', 'reactivation.holdout') AND " PERIOD "), "
             "conv AS MATERIALIZED (SELECT DISTINCT campaign, user, CAST(json_extract(payload, "
             "'$.group') AS TEXT) "
             "AS g FROM actions WHERE kind = 'reactivation.converted' AND " PERIOD
             " AND json_valid(payload)) "
             "SELECT dec.campaign, dec.g, count(*), count(conv.user) FROM dec LEFT JOIN conv "
             "ON conv.campaign = dec.campaign AND conv.user = dec.user AND conv.g = dec.g "
             "GROUP BY dec.campaign, dec.g",
             r);
    if (!st)
        return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cb(arg, txt(st, 0), txt(st, 1), sqlite3_column_int64(st, 2), sqlite3_column_int64(st, 3));
    return finish(st, rc);
}

int rq_campaigns(struct store *s, void (*cb)(void *arg, const char *id, const char *plugin),
                 void *arg)
{
    sqlite3_stmt *st = prep(s, "SELECT id, plugin FROM campaigns ORDER BY id", NULL);
    if (!st)
        return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        cb(arg, txt(st, 0), txt(st, 1));
    return finish(st, rc);
}

int rq_config_at(struct store *s, int64_t until, char **text, size_t *len, char **path)
{
    sqlite3_stmt *st = prep(s,
                            "SELECT text, path FROM configs ORDER BY loaded_at < ?1 DESC, "
                            "CASE WHEN loaded_at < ?1 THEN -seq ELSE seq END LIMIT 1",
                            NULL);
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, until);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *len = (size_t)sqlite3_column_bytes(st, 0);
        *text = xmalloc(*len + 1);
        memcpy(*text, txt(st, 0), *len);
        (*text)[*len] = 0;
        *path = xstrdup(txt(st, 1));
        sqlite3_finalize(st);
        return 0;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? -ENOENT : -EIO;
}
