/*
 * bare_sqlite — the bare-SQLite loop: what storing an event costs at the
 * least on this machine, with no daemon. Per event:
 *
 *   - its id into events(id TEXT PRIMARY KEY) WITHOUT ROWID;
 *   - an upsert of its user's row in
 *     users(id TEXT PRIMARY KEY, events, last_seen) WITHOUT ROWID;
 *   - on average --actions-per-event (default 0.3) rows into the actions
 *     table of the spec (section 5), for the event's user and id;
 *
 * with prepared statements, in transactions of --batch (1,024) events,
 * journal_mode WAL, synchronous NORMAL (or FULL), a 64 MB page cache
 * (cache_size = -65536) and SQLite's automatic checkpoints at 1,000 pages
 * (--autocheckpoint N: at N pages; 0: none, the WAL grows to the end).
 *
 * The events come from loadgen's generator (bench/gen.h) with the same
 * options (--users, --new-users, --user-order, --run-id, --seed, --ids,
 * --ts-start, --ts-step, --mix), so a bare run writes the same event ids
 * and user ids as a mktd run fed by loadgen with those options.
 *
 *   bare_sqlite --db PATH [--count N] [--batch N] [--sync normal|full]
 *               [--actions-per-event X] [--cache-mb N] [--no-users]
 *               [--autocheckpoint PAGES] [--report-every N]
 *               [generator options as loadgen's]
 *
 * Each batch's events are generated before its transaction starts; the
 * figures count the time spent in SQLite only. WAL bytes are counted from
 * the frames each commit appends (page size + 24 bytes each). --no-users
 * leaves out the user upsert (the loop of earlier rounds: events and
 * actions only). --report-every N prints a PROGRESS line each N events: the
 * events/s and WAL bytes per event of that stretch. The last line is
 * RESULT key=value ...
 */
#define _GNU_SOURCE
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gen.h"

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
    "  last_seen INTEGER NOT NULL) WITHOUT ROWID;";

static const char user_sql[] = "INSERT INTO users(id, events, last_seen) VALUES (?1, 1, ?2) "
                               "ON CONFLICT(id) DO UPDATE SET events = events + 1, "
                               "last_seen = max(last_seen, excluded.last_seen)";

/* Frames appended to the WAL, counted at each commit. */
struct wal_count {
    int autocheckpoint; /* pages; 0: never */
    int prev;           /* frames in the WAL after the last commit */
    uint64_t frames;
    uint64_t checkpoints;
};

/* Replaces SQLite's own automatic-checkpoint hook and does what it does (a
 * passive checkpoint at 1,000 pages by default), counting frames on the way. After a
 * checkpoint that copied every frame, the next transaction writes the WAL
 * from its start again. */
static int wal_hook(void *arg, sqlite3 *db, const char *name, int npages)
{
    struct wal_count *w = arg;
    w->frames += (uint64_t)(npages >= w->prev ? npages - w->prev : npages);
    w->prev = npages;
    if (w->autocheckpoint > 0 && npages >= w->autocheckpoint) {
        int nlog = 0, done = 0;
        if (sqlite3_wal_checkpoint_v2(db, name, SQLITE_CHECKPOINT_PASSIVE, &nlog, &done) ==
                SQLITE_OK &&
            done == nlog)
            w->prev = 0;
        w->checkpoints++;
    }
    return SQLITE_OK;
}

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

static double file_mb(const char *path, const char *suffix)
{
    char p[4096];
    struct stat st;
    snprintf(p, sizeof(p), "%s%s", path, suffix);
    return stat(p, &st) == 0 ? (double)st.st_size / 1048576.0 : 0;
}

/* One batch's events, generated before its transaction. */
struct pending {
    char id[96];
    char user[24];
    int64_t ts;
};

static void usage(void)
{
    fprintf(stderr, "usage: bare_sqlite --db PATH [--count N] [--batch N] [--sync normal|full]\n"
                    "                   [--actions-per-event X] [--cache-mb N] [--no-users]\n"
                    "                   [--autocheckpoint PAGES] [--report-every N]\n"
                    "                   [--users N] [--new-users PCT]\n"
                    "                   [--user-order random|seq] [--run-id ID] [--seed N]\n"
                    "                   [--ids seq|random] [--ts-start MS] [--ts-step MS]\n"
                    "                   [--mix KIND=W,...]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *path = NULL, *sync = "normal";
    long long count = 500000, batch = 1024, cache_mb = 64, report_every = 0, autockpt = 1000;
    int no_users = 0;
    double ape = 0.3;
    struct gen_opts go;
    gen_opts_default(&go);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--no-users") == 0) {
            no_users = 1;
            continue;
        }
        if (!v)
            usage();
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
        else if (strcmp(a, "--cache-mb") == 0)
            cache_mb = atoll(v);
        else if (strcmp(a, "--autocheckpoint") == 0)
            autockpt = atoll(v);
        else if (strcmp(a, "--report-every") == 0)
            report_every = atoll(v);
        else if (strcmp(a, "--users") == 0)
            go.users = strtoull(v, NULL, 10);
        else if (strcmp(a, "--new-users") == 0)
            go.new_permille = (int)(atof(v) * 10 + 0.5);
        else if (strcmp(a, "--user-order") == 0)
            go.seq_users = strcmp(v, "seq") == 0;
        else if (strcmp(a, "--run-id") == 0)
            go.run_id = v;
        else if (strcmp(a, "--seed") == 0)
            go.seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--ids") == 0) {
            if (strcmp(v, "seq") != 0 && strcmp(v, "random") != 0)
                usage();
            go.random_ids = strcmp(v, "random") == 0;
        } else if (strcmp(a, "--ts-start") == 0)
            go.ts_start = strtoll(v, NULL, 10);
        else if (strcmp(a, "--ts-step") == 0)
            go.ts_step = strtoll(v, NULL, 10);
        else if (strcmp(a, "--mix") == 0) {
            if (gen_parse_mix(&go, v) < 0)
                return 2;
        } else
            usage();
        i++;
    }
    if (!path || count < 1 || batch < 1 || ape < 0 || cache_mb < 1 || report_every < 0 ||
        autockpt < 0 || autockpt > 1000000000 || go.users < 1 || strlen(go.run_id) > 64 ||
        (strcmp(sync, "normal") != 0 && strcmp(sync, "full") != 0))
        usage();
    static struct gen g;
    if (gen_init(&g, &go) < 0)
        return 2;

    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        die(db, path);
    char pragmas[256];
    snprintf(pragmas, sizeof(pragmas),
             "PRAGMA journal_mode = WAL; PRAGMA synchronous = %s; PRAGMA temp_store = MEMORY;"
             "PRAGMA cache_size = -%lld;",
             strcmp(sync, "full") == 0 ? "FULL" : "NORMAL", cache_mb * 1024);
    if (sqlite3_exec(db, pragmas, NULL, NULL, NULL) != SQLITE_OK)
        die(db, "pragmas");
    if (sqlite3_exec(db, schema, NULL, NULL, NULL) != SQLITE_OK)
        die(db, "schema");
    sqlite3_stmt *begin, *commit, *ev, *act, *usr = NULL, *q;
    if (sqlite3_prepare_v2(db, "BEGIN IMMEDIATE", -1, &begin, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "COMMIT", -1, &commit, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, "INSERT OR IGNORE INTO events(id) VALUES (?1)", -1, &ev, NULL) !=
            SQLITE_OK ||
        sqlite3_prepare_v2(db,
                           "INSERT INTO actions(ts, campaign, kind, user, event_id, payload) "
                           "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                           -1, &act, NULL) != SQLITE_OK ||
        (!no_users && sqlite3_prepare_v2(db, user_sql, -1, &usr, NULL) != SQLITE_OK))
        die(db, "prepare");
    long long page_size = 4096;
    if (sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &q, NULL) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW)
        page_size = sqlite3_column_int64(q, 0);
    sqlite3_finalize(q);
    struct wal_count wc = {.autocheckpoint = (int)autockpt};
    sqlite3_wal_hook(db, wal_hook, &wc);

    struct pending *pend = calloc((size_t)batch, sizeof(*pend));
    if (!pend) {
        fprintf(stderr, "bare_sqlite: out of memory\n");
        return 1;
    }
    double owed = 0; /* actions due so that the average is ape */
    long long rows = 0, n_actions = 0;
    char payload[160];
    double t_sql = 0, t_gen = 0;
    long long mark_n = 0, next_mark = report_every;
    double mark_t = 0;
    uint64_t mark_frames = 0;
    struct gen_event ge;
    for (long long n = 0; n < count;) {
        long long b = count - n < batch ? count - n : batch;
        double t0 = now_s();
        for (long long i = 0; i < b; i++) {
            gen_next(&g, &ge);
            struct pending *p = &pend[i];
            memcpy(p->id, ge.id, ge.id_len);
            p->id[ge.id_len] = 0;
            snprintf(p->user, sizeof(p->user), "u%llu", (unsigned long long)ge.user);
            p->ts = ge.ts;
        }
        double t1 = now_s();
        step_done(db, begin, "begin");
        for (long long i = 0; i < b; i++) {
            struct pending *p = &pend[i];
            sqlite3_bind_text(ev, 1, p->id, -1, SQLITE_STATIC);
            step_done(db, ev, "insert event");
            rows++;
            if (usr) {
                sqlite3_bind_text(usr, 1, p->user, -1, SQLITE_STATIC);
                sqlite3_bind_int64(usr, 2, p->ts);
                step_done(db, usr, "upsert user");
                rows++;
            }
            for (owed += ape; owed >= 1; owed -= 1) {
                snprintf(
                    payload, sizeof(payload),
                    "{\"code\":\"NEW-%013llu\",\"value\":2000,\"min_spend\":10000,"
                    "\"expires_at\":%lld}",
                    (unsigned long long)((uint64_t)(n + i) * 2654435761ULL % 10000000000000ULL),
                    (long long)(p->ts + 604800000LL));
                sqlite3_bind_int64(act, 1, p->ts);
                sqlite3_bind_text(act, 2, "first-order-coupon", -1, SQLITE_STATIC);
                sqlite3_bind_text(act, 3, "coupon.issued", -1, SQLITE_STATIC);
                sqlite3_bind_text(act, 4, p->user, -1, SQLITE_STATIC);
                sqlite3_bind_text(act, 5, p->id, -1, SQLITE_STATIC);
                sqlite3_bind_text(act, 6, payload, -1, SQLITE_STATIC);
                step_done(db, act, "insert action");
                rows++;
                n_actions++;
            }
        }
        step_done(db, commit, "commit");
        double t2 = now_s();
        t_gen += t1 - t0;
        t_sql += t2 - t1;
        n += b;
        if (report_every && n >= next_mark) {
            /* batches need not end on a multiple: the stretch is what it is */
            double dt = t_sql - mark_t;
            long long de = n - mark_n;
            printf("PROGRESS events=%lld t_s=%.2f eps=%.0f cum_eps=%.0f wal_b_per_ev=%.0f "
                   "db_mb=%.0f\n",
                   n, t_sql, dt > 0 ? (double)de / dt : 0, t_sql > 0 ? (double)n / t_sql : 0,
                   (double)(wc.frames - mark_frames) * (double)(page_size + 24) / (double)de,
                   file_mb(path, "") + file_mb(path, "-wal"));
            fflush(stdout);
            mark_n = n;
            mark_t = t_sql;
            mark_frames = wc.frames;
            while (next_mark <= n)
                next_mark += report_every;
        }
    }
    double wal_pe = (double)wc.frames * (double)(page_size + 24) / (double)count;
    printf("bare_sqlite: %lld events over %llu users (%lld action rows%s) in %.3f s of SQLite "
           "(%.3f s generating), batch %lld, WAL, synchronous %s, cache %lld MB, automatic "
           "checkpoints at %lld pages\n",
           count, (unsigned long long)g.n_seen, n_actions, usr ? ", user upserts" : "", t_sql,
           t_gen, batch, sync, cache_mb, autockpt);
    printf("bare_sqlite: %.0f events/s, %.0f rows/s, %.0f WAL bytes per event (%llu frames, "
           "%llu checkpoints), database %.0f MB\n",
           count / t_sql, rows / t_sql, wal_pe, (unsigned long long)wc.frames,
           (unsigned long long)wc.checkpoints, file_mb(path, ""));
    printf("RESULT eps=%.0f rows_per_s=%.0f events=%lld actions=%lld users=%llu sync=%s "
           "batch=%lld wal_b_per_ev=%.0f sql_s=%.3f gen_s=%.3f db_mb=%.0f\n",
           count / t_sql, rows / t_sql, count, n_actions, (unsigned long long)g.n_seen, sync, batch,
           wal_pe, t_sql, t_gen, file_mb(path, ""));
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_finalize(ev);
    sqlite3_finalize(act);
    sqlite3_finalize(usr);
    sqlite3_close(db);
    free(pend);
    gen_free(&g);
    return 0;
}
