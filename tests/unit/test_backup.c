/* store/backup.h: a copy of a live database (written meanwhile by its own
 * connection) carries the applied sequence committed before it; a copy
 * passes its checks, a damaged or foreign file does not; a copy put in
 * place opens as a store. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "check.h"
#include "store/backup.h"
#include "store/store.h"

#define KEY "cluster_applied"

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* n rows of state and the applied sequence, in one transaction */
static void batch(struct store *st, int from, int n, int64_t applied)
{
    CHECK(store_begin(st) == 0);
    for (int i = from; i < from + n; i++) {
        char user[32], val[64];
        snprintf(user, sizeof(user), "u%d", i);
        snprintf(val, sizeof(val), "{\"n\":%d,\"pad\":\"................................\"}", i);
        CHECK(store_state_put(st, "c", user, "k", val, strlen(val)) == 0);
    }
    CHECK(store_meta_set(st, KEY, applied) == 0);
    CHECK(store_commit(st) == 0);
}

int main(void)
{
    char dir[] = "/tmp/mktd-backup-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char db[256], copy[256], other[256], err[512];
    snprintf(db, sizeof(db), "%s/shard.db", dir);
    snprintf(copy, sizeof(copy), "%s/shard.db.snap", dir);
    snprintf(other, sizeof(other), "%s/other.db", dir);

    struct store *st = NULL;
    CHECK(store_open(db, 0, &st, err, sizeof(err)) == 0);
    if (!st)
        return check_done();
    int64_t v = -2;
    CHECK(store_meta_peek(db, KEY, &v) == -ENOENT); /* no row yet */
    batch(st, 0, 5000, 41);
    CHECK(store_meta_peek(db, KEY, &v) == 0 && v == 41);
    /* an open transaction of the writer is not in the copy */
    CHECK(store_begin(st) == 0);
    CHECK(store_meta_set(st, KEY, 99) == 0);
    int64_t applied = -2;
    CHECK(store_backup(db, copy, KEY, &applied, err, sizeof(err)) == 0);
    CHECK_INT(applied, 41);
    CHECK(store_rollback(st) == 0);
    /* the writer goes on after a copy */
    batch(st, 5000, 10, 42);
    CHECK(store_meta_peek(db, KEY, &v) == 0 && v == 42);

    int64_t got = -2;
    CHECK(store_backup_check(copy, KEY, &got, err, sizeof(err)) == 0);
    CHECK_INT(got, 41);
    char sha[65], sha2[65];
    int64_t size = 0, size2 = 0;
    CHECK(store_file_sha256(copy, sha, &size, err, sizeof(err)) == 0);
    CHECK(size > 100000 && strlen(sha) == 64);
    CHECK(store_file_sha256(copy, sha2, &size2, err, sizeof(err)) == 0);
    CHECK(size2 == size && strcmp(sha, sha2) == 0);
    write_file(other, "abc");
    CHECK(store_file_sha256(other, sha2, &size2, err, sizeof(err)) == 0);
    CHECK_STR(sha2, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK_INT(size2, 3);

    /* not a database; no such file; a database without the row */
    write_file(other, "this is not a database, just some text of the right kind of length");
    CHECK(store_backup_check(other, KEY, &got, err, sizeof(err)) < 0);
    CHECK(strstr(err, "other.db") != NULL);
    CHECK(store_backup_check("/nonexistent/x.db", KEY, &got, err, sizeof(err)) < 0);
    CHECK(store_backup_check(copy, "no_such_key", &got, err, sizeof(err)) < 0);
    CHECK(strstr(err, "no applied sequence") != NULL);
    CHECK(store_file_sha256("/nonexistent/x.db", sha2, &size2, err, sizeof(err)) < 0);
    CHECK(store_backup("/nonexistent/x.db", other, KEY, &got, err, sizeof(err)) < 0);

    /* a copy with pages overwritten in the middle fails its check */
    char damaged[256];
    snprintf(damaged, sizeof(damaged), "%s/damaged.db", dir);
    CHECK(store_backup(db, damaged, KEY, &got, err, sizeof(err)) == 0);
    int fd = open(damaged, O_WRONLY);
    CHECK(fd >= 0);
    if (fd >= 0) {
        char junk[8192];
        memset(junk, 0x5a, sizeof(junk));
        CHECK(pwrite(fd, junk, sizeof(junk), size / 2 - (size / 2) % 4096) == sizeof(junk));
        close(fd);
    }
    CHECK(store_backup_check(damaged, KEY, &got, err, sizeof(err)) < 0);

    /* a schema version this mktd does not know */
    char newer[256];
    snprintf(newer, sizeof(newer), "%s/newer.db", dir);
    CHECK(store_backup(db, newer, KEY, &got, err, sizeof(err)) == 0);
    struct store *nst = NULL;
    CHECK(store_open(newer, 0, &nst, err, sizeof(err)) == 0);
    if (nst) {
        CHECK(sqlite3_exec(store_sqlite(nst), "PRAGMA user_version = 999", NULL, NULL, NULL) == 0);
        store_close(nst);
    }
    CHECK(store_backup_check(newer, KEY, &got, err, sizeof(err)) < 0);
    CHECK(strstr(err, "schema version 999") != NULL);

    /* the copy put in place of a closed shard opens at its sequence */
    store_close(st);
    CHECK(store_backup_install(copy, db, err, sizeof(err)) == 0);
    CHECK(access(copy, F_OK) != 0);
    char wal[300];
    snprintf(wal, sizeof(wal), "%s-wal", db);
    CHECK(access(wal, F_OK) != 0);
    st = NULL;
    CHECK(store_open(db, 0, &st, err, sizeof(err)) == 0);
    if (st) {
        CHECK(store_meta_get(st, KEY, &v) == 0 && v == 41);
        char *val = NULL;
        size_t len = 0;
        CHECK(store_state_get(st, "c", "u4999", "k", &val, &len) == 0 && val &&
              strstr(val, "4999"));
        free(val);
        CHECK(store_state_get(st, "c", "u5005", "k", &val, &len) != 0); /* after the copy */
        store_close(st);
    }
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    return check_done();
}
