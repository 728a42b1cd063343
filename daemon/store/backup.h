/* Copies of a live shard (cluster mode's snapshots, docs/cluster.md): a
 * consistent copy made with SQLite's online backup API through a
 * connection of its own (a reader beside the writer: in WAL mode it does
 * not stop the writer), and the checks a copy passes before it replaces a
 * shard. The applied stream sequence travels inside the copy (meta). */
#ifndef MKTD_STORE_BACKUP_H
#define MKTD_STORE_BACKUP_H

#include <stddef.h>
#include <stdint.h>

/* Copies the database at src (being written by another connection,
 * maybe another thread) to dst (replaced), as of one read transaction;
 * *meta_val: the copy's meta row meta_key (-1 when it has none). 0, or -1
 * with err. */
int store_backup(const char *src, const char *dst, const char *meta_key, int64_t *meta_val,
                 char *err, size_t errlen);

/* Checks that the file at path is a mktd database a store can open: a
 * SQLite file passing quick_check, of a schema version this mktd knows,
 * with the meta row meta_key; its value in *meta_val. 0, or -1 with err. */
int store_backup_check(const char *path, const char *meta_key, int64_t *meta_val, char *err,
                       size_t errlen);

/* The meta row meta_key of the database at path, read-only: 0 and *val;
 * -ENOENT when there is no such file or row (or no schema yet); -EIO. */
int store_meta_peek(const char *path, const char *meta_key, int64_t *val);

/* Puts dst's replacement in place: removes dst and its -wal and -shm, then
 * renames src to dst. 0, or -1 with err. */
int store_backup_install(const char *src, const char *dst, char *err, size_t errlen);

/* SHA-256 of a file, in lowercase hex (65 bytes with the NUL); *size. 0,
 * or -1 with err. */
int store_file_sha256(const char *path, char hex[65], int64_t *size, char *err, size_t errlen);

#endif
