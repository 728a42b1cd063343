/*
 * bare_sqlite — the storage limit of this machine: what the daemon must at
 * least write per event, with no daemon. Per event one row into events(id)
 * and, on average, --actions-per-event rows into actions (the daemon's two
 * tables, same schema), with prepared statements, in transactions of
 * --batch events, journal_mode WAL and the chosen synchronous mode.
 *
 *   bare_sqlite --db PATH [--count N] [--batch N] [--sync normal|full]
 *               [--actions-per-event X] [--run-id ID] [--users N]
 *
 * --users N also upserts the event's user profile row (the daemon's users
 * table and statement) for users u0..u(N-1): a second, informational figure.
 * Prints events/s and rows/s; the last line is RESULT key=value ...
 */
#define _GNU_SOURCE
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS actions ("
    "  seq      INTEGER PRIMARY KEY,"
    "  ts       INTEGER NOT NULL,"
    "  campaign TEXT NOT NULL,"
    "  kind     TEXT NOT NULL,"
    "  user     TEXT NOT NULL,"
    "  event_id TEXT,"
    "  payload  TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS users (id TEXT PRIMARY KEY, events INTEGER NOT NULL,"
    "  orders INTEGER NOT NULL, spent INTEGER NOT NULL, first_seen INTEGER NOT NULL,"
    "  last_seen INTEGER NOT NULL) WITHOUT ROWID;";

static const char profile_sql[] =
    "INSERT INTO users(id, events, orders, spent, first_seen, last_seen) "
    "VALUES (?1, 1, ?2, ?3, ?4, ?4) ON CONFLICT(id) DO UPDATE SET "
    "events = events + 1, orders = orders + ?2, "
    "spent = CASE WHEN spent > 9223372036854775807 - ?3 THEN 9223372036854775807 "
    "ELSE spent + ?3 END, "
    "first_seen = min(first_seen, ?4), last_seen = max(last_seen, ?4) "
    "RETURNING events, orders, spent, first_seen, last_seen";

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void die(sqlite3 *db, const char *what)
{
    fprintf(stderr, "bare_sqlite: %s: %s\n", what, db ? sqlite3_errmsg(db) : "?");
    exit(1);
}

static void step_done(sqlite3 *db, sqlite3_stmt *st, const char *what)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        ;
    if (rc != SQLITE_DONE)
        die(db, what);
    sqlite3_reset(st);
}

int main(int argc, char **argv)
{
    const char *path = NULL, *run_id = "r", *sync = "normal";
    long long count = 500000, batch = 1024, users = 0;
    double ape = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            goto usage;
        if (strcmp(a, "--db") == 0)
            path = v;
        else if (strcmp(a, "--count") == 0)
            count = atoll(v);
        else if (strcmp(a, "--batch") == 0)
            batch = atoll(v);
        else if (strcmp(a, "--sync") == 0)
            sync = v;
        else if (strcmp(a, "--actions-per-event") == 0)
            ape = atof(v);
        else if (strcmp(a, "--run-id") == 0)
            run_id = v;
        else if (strcmp(a, "--users") == 0)
            users = atoll(v);
        else
            goto usage;
        i++;
    }
    if (!path || count < 1 || batch < 1 || ape < 0 ||
        (strcmp(sync, "normal") != 0 && strcmp(sync, "full") != 0))
        goto usage;

    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(db, path);
    char pragmas[256];
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s; PRAGMA temp_store = MEMORY;"
             "PRAGMA cache_size = -16000;",
             strcmp(sync, "full") == 0 ? "FULL" : "NORMAL");
    if (sqlite3_exec(db, pragmas, NULL, NULL, NULL) != SQLITE_OK)
        die(db, "pragmas");
    if (sqlite3_exec(db, schema, NULL, NULL, NULL) != SQLITE_OK)
        die(db, "schema");
    sqlite3_stmt *begin, *commit, *ev, *act, *prof = NULL;
    if (sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO events(id) VALUES (?1)", -1, &ev, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO actions(ts, campaign, kind, user, event_id, payload) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                           -1, &act, NULL) != SQLITE_OK ||
        (users > 0 && sqlite3_prepare_v2(db, profile_sql, -1, &prof, NULL) != SQLITE_OK))
        die(db, "prepare");

    uint64_t rng = 88172645463325252ULL;
    double owed = 0; /* actions due so that the average is ape */
    long long rows = 0, n_actions = 0;
    char id[96], user[32], payload[160];
    const int64_t ts0 = 1767225600000LL;
    double t0 = now_s();
    for (long long n = 0; n < count; n++) {
        if (n % batch == 0)
            step_done(db, begin, "begin");
        snprintf(id, sizeof(id), "%s-%lld", run_id, n);
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        snprintf(user, sizeof(user), "u%llu", (unsigned long long)(rng % 100000));
        sqlite3_bind_text(ev, 1, id, -1, SQLITE_STATIC);
        step_done(db, ev, "insert event");
        rows++;
        if (prof) {
            snprintf(user, sizeof(user), "u%llu", (unsigned long long)(rng % (uint64_t)users));
            sqlite3_bind_text(prof, 1, user, -1, SQLITE_STATIC);
            sqlite3_bind_int64(prof, 2, 0);
            sqlite3_bind_int64(prof, 3, 0);
            sqlite3_bind_int64(prof, 4, ts0 + n);
            step_done(db, prof, "upsert profile");
            rows++;
        }
        for (owed += ape; owed >= 1; owed -= 1) {
            snprintf(payload, sizeof(payload),
                     "{\"code\":\"NEW-%013llu\",\"value\":2000,\"min_spend\":10000,"
                     "\"expires_at\":%lld}",
                     (unsigned long long)(rng % 10000000000000ULL),
                     (long long)(ts0 + n + 604800000LL));
            sqlite3_bind_int64(act, 1, ts0 + n);
            sqlite3_bind_text(act, 2, "first-order-coupon", -1, SQLITE_STATIC);
            sqlite3_bind_text(act, 3, "coupon.issued", -1, SQLITE_STATIC);
            sqlite3_bind_text(act, 4, user, -1, SQLITE_STATIC);
            sqlite3_bind_text(act, 5, id, -1, SQLITE_STATIC);
            sqlite3_bind_text(act, 6, payload, -1, SQLITE_STATIC);
            step_done(db, act, "insert action");
            rows++;
            n_actions++;
        }
        if (n % batch == batch - 1 || n == count - 1)
            step_done(db, commit, "commit");
    }
    double el = now_s() - t0;
    printf("bare_sqlite: %lld events (%lld action rows%s) in %.3f s, batch %lld, WAL, "
           "synchronous %s\n",
           count, n_actions, prof ? ", profile upserts" : "", el, batch, sync);
    printf("bare_sqlite: %.0f events/s, %.0f rows/s\n", count / el, rows / el);
    printf("RESULT eps=%.0f rows_per_s=%.0f events=%lld actions=%lld sync=%s batch=%lld\n",
           count / el, rows / el, count, n_actions, sync, batch);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_finalize(ev);
    sqlite3_finalize(act);
    sqlite3_finalize(prof);
    sqlite3_close(db);
    return 0;
usage:
    fprintf(stderr, "usage: bare_sqlite --db PATH [--count N] [--batch N] [--sync normal|full]\n"
                    "                   [--actions-per-event X] [--run-id ID] [--users N]\n");
    return 2;
}
