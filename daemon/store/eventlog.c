/* The event log and a live database read for replay (eventlog.h). */
#include "store/eventlog.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lib/util.h"

/* ---- writing (the daemon) ---- */

int store_eventlog_write(struct store *s, const struct evlog_row *rows, size_t n)
{
    if (!n)
        return 0;
    sqlite3_stmt *st = store_cached(s, STORE_CACHED_EVENTLOG_INSERT,
                                    "INSERT INTO event_log(received_at, id, type, user, ts, body) "
                                    "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    if (!st)
        return -EIO;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct evlog_row *r = &rows[i];
        sqlite3_bind_int64(st, 1, r->received_at);
        sqlite3_bind_text(st, 2, r->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, r->type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, r->user, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, r->ts);
        sqlite3_bind_text(st, 6, r->body, (int)r->body_len, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE)
            rc = -EIO;
        sqlite3_reset(st);
    }
    sqlite3_clear_bindings(st); /* the rows' strings are the caller's */
    return rc;
}

int store_eventlog_prune(struct store *s, int64_t before, int limit)
{
    sqlite3 *db = store_sqlite(s);
    sqlite3_stmt *st = store_cached(s, STORE_CACHED_EVENTLOG_PRUNE,
                                    "DELETE FROM event_log WHERE seq IN (SELECT seq FROM event_log "
                                    "WHERE received_at < ?1 ORDER BY received_at LIMIT ?2)");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, before);
    sqlite3_bind_int(st, 2, limit);
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? sqlite3_changes(db) : -EIO;
}

/* ---- a live database, only read ---- */

struct livedb {
    sqlite3 *db;
};

/* path as a URI path: every byte outside [A-Za-z0-9/._~-] percent-encoded */
static void uri_path(struct sbuf *b, const char *path)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)path; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("/._~-", *p)) {
            sb_add(b, p, 1);
        } else {
            char e[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            sb_add(b, e, 3);
        }
    }
}

int livedb_open(const char *path, struct livedb **out, char *err, size_t errlen)
{
    struct stat sb;
    if (stat(path, &sb) < 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -errno;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s: not a database file", path);
        return -EINVAL;
    }
    /* A stopped daemon leaves no -wal file: SQLite would then want to make
     * one (and a -shm) to read in WAL mode, which a read-only folder
     * refuses and a writable one should not get. Immutable reads the file
     * as it is. With a -wal file there (a running daemon, or one killed),
     * mode=ro reads through it. */
    char *wal = xmalloc(strlen(path) + 5);
    sprintf(wal, "%s-wal", path);
    int has_wal = stat(wal, &sb) == 0;
    free(wal);
    struct sbuf uri = {0};
    sb_str(&uri, "file:");
    if (path[0] == '/')
        sb_str(&uri, "//"); /* file:///abs/path */
    uri_path(&uri, path);
    sb_str(&uri, has_wal ? "?mode=ro" : "?mode=ro&immutable=1");
    sb_add(&uri, "", 1);
    struct livedb *l = xcalloc(1, sizeof(*l));
    int rc = sqlite3_open_v2(uri.s, &l->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, NULL);
    sb_free(&uri);
    if (rc == SQLITE_OK) {
        sqlite3_busy_timeout(l->db, 5000);
        /* one snapshot for everything read */
        rc = sqlite3_exec(l->db, "BEGIN; SELECT count(*) FROM sqlite_master", NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s%s", path, l->db ? sqlite3_errmsg(l->db) : "cannot open",
                 has_wal ? " (a -wal file is beside it: it is read through its -shm file, "
                           "which must exist or be creatable)"
                         : "");
        livedb_close(l);
        return -EIO;
    }
    *out = l;
    return 0;
}

void livedb_close(struct livedb *l)
{
    if (!l)
        return;
    if (l->db && !sqlite3_get_autocommit(l->db))
        sqlite3_exec(l->db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(l->db);
    free(l);
}

const char *livedb_errmsg(struct livedb *l)
{
    return sqlite3_errmsg(l->db);
}

static sqlite3_stmt *prep(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

static const char *txt(sqlite3_stmt *st, int col)
{
    return (const char *)sqlite3_column_text(st, col);
}

int livedb_events(struct livedb *l, int64_t from, int64_t to,
                  int (*cb)(void *arg, const struct evlog_row *r), void *arg)
{
    sqlite3_stmt *st = prep(l->db, "SELECT seq, received_at, id, type, user, ts, body "
                                   "FROM event_log WHERE received_at BETWEEN ?1 AND ?2 "
                                   "ORDER BY seq");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct evlog_row r = {.seq = sqlite3_column_int64(st, 0),
                              .received_at = sqlite3_column_int64(st, 1),
                              .id = txt(st, 2),
                              .type = txt(st, 3),
                              .user = txt(st, 4),
                              .ts = sqlite3_column_int64(st, 5),
                              .body = txt(st, 6)};
        r.body_len = (size_t)sqlite3_column_bytes(st, 6);
        if (!r.id || !r.type || !r.user || !r.body)
            continue; /* NOT NULL columns: never */
        stop = cb(arg, &r);
    }
    sqlite3_finalize(st);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int livedb_event_count(struct livedb *l, int64_t from, int64_t to, int64_t *n)
{
    sqlite3_stmt *st =
        prep(l->db, "SELECT count(*) FROM event_log WHERE received_at BETWEEN ?1 AND ?2");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

int livedb_configs(struct livedb *l, struct livedb_config **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    sqlite3_stmt *st = prep(l->db, "SELECT seq, loaded_at, path, text FROM configs ORDER BY seq");
    if (!st)
        return -EIO;
    size_t cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            *out = xrealloc(*out, cap * sizeof(**out));
        }
        struct livedb_config *c = &(*out)[(*n)++];
        c->seq = sqlite3_column_int64(st, 0);
        c->loaded_at = sqlite3_column_int64(st, 1);
        c->path = xstrdup(txt(st, 2) ? txt(st, 2) : "");
        c->len = (size_t)sqlite3_column_bytes(st, 3);
        c->text = xmalloc(c->len + 1);
        if (c->len)
            memcpy(c->text, sqlite3_column_blob(st, 3), c->len);
        c->text[c->len] = 0;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        livedb_configs_free(*out, *n);
        *out = NULL;
        *n = 0;
        return -EIO;
    }
    return 0;
}

void livedb_configs_free(struct livedb_config *c, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(c[i].path);
        free(c[i].text);
    }
    free(c);
}

int livedb_used_codes(struct livedb *l, int64_t from, int64_t to,
                      void (*cb)(void *arg, const char *code), void *arg)
{
    sqlite3_stmt *st =
        prep(l->db, "SELECT DISTINCT json_extract(body, '$.props.code') FROM event_log "
                    "WHERE type = 'coupon.used' AND received_at BETWEEN ?1 AND ?2 "
                    "AND json_valid(body) AND json_type(body, '$.props.code') = 'text'");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, from);
    sqlite3_bind_int64(st, 2, to);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (txt(st, 0))
            cb(arg, txt(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int livedb_issued_codes(struct livedb *l,
                        void (*cb)(void *arg, const char *campaign, const char *user,
                                   const char *event_id, int64_t ts, const char *code),
                        void *arg)
{
    sqlite3_stmt *st = prep(l->db, "SELECT campaign, user, event_id, ts, "
                                   "json_extract(payload, '$.code') FROM actions "
                                   "WHERE kind = 'coupon.issued' AND json_valid(payload) "
                                   "AND json_type(payload, '$.code') = 'text' ORDER BY seq");
    if (!st)
        return -EIO;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (txt(st, 0) && txt(st, 1) && txt(st, 4))
            cb(arg, txt(st, 0), txt(st, 1), txt(st, 2), sqlite3_column_int64(st, 3), txt(st, 4));
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int livedb_clock(struct livedb *l, int64_t *clock)
{
    sqlite3_stmt *st =
        prep(l->db, "SELECT max(coalesce((SELECT value FROM meta WHERE key = 'clock_now'), 0),"
                    " coalesce((SELECT max(received_at) FROM event_log), 0),"
                    " coalesce((SELECT max(ts) FROM actions), 0))");
    if (!st)
        return -EIO;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *clock = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -EIO;
}

/* Copies the rows of a query on l into dst through an INSERT with as many
 * parameters as the query has columns. */
static int copy_rows(struct livedb *l, sqlite3 *dst, const char *select, const char *insert,
                     int64_t param, int64_t *max_first, char *err, size_t errlen)
{
    sqlite3_stmt *from = prep(l->db, select), *to = NULL;
    if (!from) {
        snprintf(err, errlen, "reading the live database: %s", sqlite3_errmsg(l->db));
        return -EIO;
    }
    if (sqlite3_bind_parameter_count(from) > 0)
        sqlite3_bind_int64(from, 1, param);
    if (!(to = prep(dst, insert))) {
        snprintf(err, errlen, "copying: %s", sqlite3_errmsg(dst));
        sqlite3_finalize(from);
        return -EIO;
    }
    int cols = sqlite3_column_count(from), rc;
    while ((rc = sqlite3_step(from)) == SQLITE_ROW) {
        for (int i = 0; i < cols; i++)
            sqlite3_bind_value(to, i + 1, sqlite3_column_value(from, i));
        if (max_first && sqlite3_column_int64(from, 0) > *max_first)
            *max_first = sqlite3_column_int64(from, 0);
        if (sqlite3_step(to) != SQLITE_DONE) {
            snprintf(err, errlen, "copying: %s", sqlite3_errmsg(dst));
            sqlite3_finalize(from);
            sqlite3_finalize(to);
            return -EIO;
        }
        sqlite3_reset(to);
    }
    if (rc != SQLITE_DONE)
        snprintf(err, errlen, "reading the live database: %s", sqlite3_errmsg(l->db));
    sqlite3_finalize(from);
    sqlite3_finalize(to);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int livedb_copy_state(struct livedb *l, struct store *dst, int64_t clock, int64_t actions_after,
                      int64_t *last_seq, char *err, size_t errlen)
{
    static const struct {
        const char *select, *insert;
    } tables[] = {
        {"SELECT user, kind, campaign, key, v, events, orders, spent, first_seen, last_seen "
         "FROM per_user",
         "INSERT INTO per_user(user, kind, campaign, key, v, events, orders, spent, first_seen, "
         "last_seen) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"},
        {"SELECT ns, key, campaign FROM uniques",
         "INSERT OR IGNORE INTO uniques(ns, key, campaign) VALUES (?1, ?2, ?3)"},
        {"SELECT id, plugin FROM campaigns",
         "INSERT OR IGNORE INTO campaigns(id, plugin) VALUES (?1, ?2)"},
        {"SELECT type FROM counted_types", "INSERT OR IGNORE INTO counted_types(type) VALUES (?1)"},
    };
    sqlite3 *db = store_sqlite(dst);
    *last_seq = 0;
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "copying: %s", sqlite3_errmsg(db));
        return -EIO;
    }
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < sizeof(tables) / sizeof(tables[0]); i++)
        rc = copy_rows(l, db, tables[i].select, tables[i].insert, 0, NULL, err, errlen);
    if (rc == 0)
        rc = copy_rows(l, db,
                       "SELECT seq, ts, campaign, kind, user, event_id, payload FROM actions "
                       "WHERE ts > ?1 ORDER BY seq",
                       "INSERT INTO actions(seq, ts, campaign, kind, user, event_id, payload) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                       actions_after, last_seq, err, errlen);
    if (rc == 0 && store_meta_set(dst, "clock_now", clock) < 0) {
        snprintf(err, errlen, "copying: %s", sqlite3_errmsg(db));
        rc = -EIO;
    }
    if (rc == 0 && sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "copying: %s", sqlite3_errmsg(db));
        rc = -EIO;
    }
    if (rc < 0)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int store_actions_by_user(struct store *s, int (*cb)(void *arg, const struct store_action *a),
                          void *arg)
{
    sqlite3_stmt *st = prep(store_sqlite(s), "SELECT seq, ts, campaign, kind, user, event_id, "
                                             "payload FROM actions ORDER BY user, ts, seq");
    if (!st)
        return -EIO;
    int rc, stop = 0;
    while (!stop && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_action a = {.seq = sqlite3_column_int64(st, 0),
                                 .ts = sqlite3_column_int64(st, 1)};
        a.campaign = txt(st, 2);
        a.campaign_len = (size_t)sqlite3_column_bytes(st, 2);
        a.kind = txt(st, 3);
        a.kind_len = (size_t)sqlite3_column_bytes(st, 3);
        a.user = txt(st, 4);
        a.user_len = (size_t)sqlite3_column_bytes(st, 4);
        a.event_id = txt(st, 5);
        a.event_id_len = a.event_id ? (size_t)sqlite3_column_bytes(st, 5) : 0;
        a.payload = txt(st, 6);
        a.payload_len = (size_t)sqlite3_column_bytes(st, 6);
        if (!a.campaign || !a.kind || !a.user || !a.payload)
            continue;
        stop = cb(arg, &a);
    }
    sqlite3_finalize(st);
    if (stop)
        return stop;
    return rc == SQLITE_DONE ? 0 : -EIO;
}
