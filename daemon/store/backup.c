/* Copies of a live shard and their checks (backup.h). */
#include "store/backup.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sqlite3.h>

#include "store/store.h"

/* The meta row key of db: 0, -ENOENT, -EIO. */
static int meta_read(sqlite3 *db, const char *key, int64_t *val)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?1", -1, &st, NULL) != SQLITE_OK)
        return sqlite3_errcode(db) == SQLITE_ERROR ? -ENOENT : -EIO; /* no meta table */
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    int out = rc == SQLITE_ROW ? 0 : rc == SQLITE_DONE ? -ENOENT : -EIO;
    if (rc == SQLITE_ROW)
        *val = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return out;
}

int store_backup(const char *src, const char *dst, const char *meta_key, int64_t *meta_val,
                 char *err, size_t errlen)
{
    sqlite3 *from = NULL, *to = NULL;
    int rc = -1;
    unlink(dst);
    if (sqlite3_open_v2(src, &from, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", src, from ? sqlite3_errmsg(from) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(from, 5000);
    if (sqlite3_open_v2(dst, &to, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", dst, to ? sqlite3_errmsg(to) : "out of memory");
        goto out;
    }
    /* one step of every page: the copy is the source as of one read
     * transaction (a writer on another connection goes on meanwhile) */
    sqlite3_backup *b = sqlite3_backup_init(to, "main", from, "main");
    if (!b) {
        snprintf(err, errlen, "backup of %s: %s", src, sqlite3_errmsg(to));
        goto out;
    }
    int s = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (s != SQLITE_DONE) {
        snprintf(err, errlen, "backup of %s: %s", src, sqlite3_errstr(s));
        goto out;
    }
    /* the copy on its own: no WAL beside it */
    if (sqlite3_exec(to, "PRAGMA journal_mode = DELETE", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", dst, sqlite3_errmsg(to));
        goto out;
    }
    *meta_val = -1;
    if (meta_read(to, meta_key, meta_val) == -EIO) {
        snprintf(err, errlen, "%s: %s", dst, sqlite3_errmsg(to));
        goto out;
    }
    rc = 0;
out:
    sqlite3_close(from);
    if (sqlite3_close(to) != SQLITE_OK && rc == 0) {
        snprintf(err, errlen, "%s: cannot close", dst);
        rc = -1;
    }
    if (rc < 0)
        unlink(dst);
    return rc;
}

int store_backup_check(const char *path, const char *meta_key, int64_t *meta_val, char *err,
                       size_t errlen)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
        goto out;
    }
    int version = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        snprintf(err, errlen, "%s: not a database (%s)", path, sqlite3_errmsg(db));
        goto out;
    }
    version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    st = NULL;
    if (version < 1 || version > STORE_SCHEMA_VERSION) {
        snprintf(err, errlen, "%s: schema version %d (this mktd knows 1 to %d)", path, version,
                 STORE_SCHEMA_VERSION);
        goto out;
    }
    if (sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &st, NULL) != SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        snprintf(err, errlen, "%s: quick_check: %s", path, sqlite3_errmsg(db));
        goto out;
    }
    const char *ok = (const char *)sqlite3_column_text(st, 0);
    if (!ok || strcmp(ok, "ok") != 0) {
        snprintf(err, errlen, "%s: damaged (%s)", path, ok ? ok : "?");
        goto out;
    }
    sqlite3_finalize(st);
    st = NULL;
    int m = meta_read(db, meta_key, meta_val);
    if (m < 0) {
        snprintf(err, errlen, "%s: %s", path,
                 m == -ENOENT ? "no applied sequence in it" : sqlite3_errmsg(db));
        goto out;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}

int store_meta_peek(const char *path, const char *meta_key, int64_t *val)
{
    if (access(path, F_OK) != 0)
        return -ENOENT;
    sqlite3 *db = NULL;
    int rc = -EIO;
    if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK) {
        sqlite3_busy_timeout(db, 5000);
        rc = meta_read(db, meta_key, val);
    }
    sqlite3_close(db);
    return rc;
}

int store_backup_install(const char *src, const char *dst, char *err, size_t errlen)
{
    static const char *const side[] = {"-wal", "-shm", "-journal"};
    char p[4200];
    for (size_t i = 0; i < sizeof(side) / sizeof(side[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", dst, side[i]);
        if (unlink(p) != 0 && errno != ENOENT) {
            snprintf(err, errlen, "%s: %s", p, strerror(errno));
            return -1;
        }
    }
    if (rename(src, dst) != 0) {
        snprintf(err, errlen, "%s -> %s: %s", src, dst, strerror(errno));
        return -1;
    }
    return 0;
}

int store_file_sha256(const char *path, char hex[65], int64_t *size, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int rc = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ? 0 : -1;
    unsigned char buf[65536];
    size_t n;
    *size = 0;
    while (rc == 0 && (n = fread(buf, 1, sizeof(buf), f)) > 0) {
        if (!EVP_DigestUpdate(ctx, buf, n))
            rc = -1;
        *size += (int64_t)n;
    }
    if (ferror(f))
        rc = -1;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (rc == 0 && !EVP_DigestFinal_ex(ctx, md, &len))
        rc = -1;
    EVP_MD_CTX_free(ctx);
    fclose(f);
    if (rc < 0) {
        snprintf(err, errlen, "%s: cannot read it to hash it", path);
        return -1;
    }
    for (unsigned int i = 0; i < len && i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}
