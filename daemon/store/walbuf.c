/*
 * WAL write gathering.
 *
 * SQLite appends a frame to the WAL as two writes, its 24-byte header and
 * then the page, so a commit of 100 pages costs 200 pwrite() calls, each
 * touching one or two pages of the kernel's cache. This VFS forwards
 * everything to the default VFS, except that appends to a WAL file are
 * kept in a buffer and written with one call:
 *
 *   - when the commit frame's page has been appended (the header says
 *     "commit" in its database-size field), before xWrite returns, so a
 *     commit's frames are in the file before SQLite publishes them in the
 *     wal-index, where other connections (the checkpointer) look;
 *   - before anything else touches the file: a read, sync, truncate, size,
 *     close, or a write that is not the next append;
 *   - when the buffer is full;
 *   - and, as a safety net, at every shared-memory barrier or lock of the
 *     database file, which SQLite issues when it publishes frames.
 *
 * A crash can lose only appends of a transaction that had not committed
 * yet: nothing was answered for it. Nothing changes on disk: the WAL holds
 * the same bytes in the same places.
 */
#define _GNU_SOURCE
#include "store/walbuf.h"

#include <sqlite3.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

#define BUF_CAP (1 << 20)
/* The default VFS writes at most 128 KiB - 1 per call (it never expects
 * more than a page): larger buffers go in pieces of 64 KiB. */
#define CHUNK (1 << 16)
#define FRAME_HDR 24

struct wfile {
    sqlite3_file base;
    sqlite3_file *real; /* the default VFS's file, right after this struct */
    int is_wal;
    struct wfile *wal; /* on a database file: its WAL, while open */
    struct wfile *db;  /* on a WAL: its database file */
    /* WAL only: appends not written yet, bytes [off, off + len) */
    unsigned char *buf;
    int len;
    sqlite3_int64 off;
    int commit_next; /* the last append was a commit frame's header */
};

static sqlite3_vfs *base_vfs;
static sqlite3_io_methods methods;

static int flush(struct wfile *f)
{
    if (!f || f->len == 0)
        return SQLITE_OK;
    int rc = SQLITE_OK;
    for (int done = 0; done < f->len && rc == SQLITE_OK; done += CHUNK) {
        int n = f->len - done < CHUNK ? f->len - done : CHUNK;
        rc = f->real->pMethods->xWrite(f->real, f->buf + done, n, f->off + done);
    }
    f->off += f->len;
    f->len = 0;
    return rc;
}

static int x_close(sqlite3_file *pf)
{
    struct wfile *f = (struct wfile *)pf;
    int rc = flush(f);
    if (f->is_wal && f->db)
        f->db->wal = NULL;
    if (!f->is_wal && f->wal)
        f->wal->db = NULL;
    free(f->buf);
    int rc2 = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
    return rc != SQLITE_OK ? rc : rc2;
}

static int x_read(sqlite3_file *pf, void *p, int n, sqlite3_int64 off)
{
    struct wfile *f = (struct wfile *)pf;
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, p, n, off);
}

/* A frame header whose database-size field is set ends a transaction. */
static int is_commit_header(const void *p, int n)
{
    const unsigned char *h = p;
    return n == FRAME_HDR && (h[4] | h[5] | h[6] | h[7]) != 0;
}

static int x_write(sqlite3_file *pf, const void *p, int n, sqlite3_int64 off)
{
    struct wfile *f = (struct wfile *)pf;
    if (!f->is_wal)
        return f->real->pMethods->xWrite(f->real, p, n, off);
    int rc;
    if (f->len > 0 && (off != f->off + f->len || f->len + n > BUF_CAP))
        if ((rc = flush(f)) != SQLITE_OK)
            return rc;
    if (n > BUF_CAP)
        return f->real->pMethods->xWrite(f->real, p, n, off);
    if (f->len == 0)
        f->off = off;
    memcpy(f->buf + f->len, p, (size_t)n);
    f->len += n;
    int commit = f->commit_next;
    f->commit_next = is_commit_header(p, n);
    return commit ? flush(f) : SQLITE_OK;
}

static int x_truncate(sqlite3_file *pf, sqlite3_int64 size)
{
    struct wfile *f = (struct wfile *)pf;
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int x_sync(sqlite3_file *pf, int flags)
{
    struct wfile *f = (struct wfile *)pf;
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int x_file_size(sqlite3_file *pf, sqlite3_int64 *size)
{
    struct wfile *f = (struct wfile *)pf;
    int rc = flush(f);
    return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

/* The database file's shared-memory calls: SQLite publishes frames in the
 * wal-index with them, so the WAL's appends must be in the file first. A
 * barrier cannot report an error: a WAL that cannot be written then is a
 * failing disk, and stopping is safer than publishing missing frames. */
static void flush_wal_or_die(struct wfile *f)
{
    if (f->wal && flush(f->wal) != SQLITE_OK) {
        log_error("writing the WAL failed; stopping before the database is harmed");
        abort();
    }
}

static int x_shm_lock(sqlite3_file *pf, int offset, int n, int flags)
{
    struct wfile *f = (struct wfile *)pf;
    flush_wal_or_die(f);
    if (f->real->pMethods->iVersion < 2)
        return SQLITE_IOERR_SHMLOCK;
    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void x_shm_barrier(sqlite3_file *pf)
{
    struct wfile *f = (struct wfile *)pf;
    flush_wal_or_die(f);
    if (f->real->pMethods->iVersion >= 2)
        f->real->pMethods->xShmBarrier(f->real);
}

/* The rest is forwarded as it is. */
#define REAL(pf) (((struct wfile *)(pf))->real)
static int x_lock(sqlite3_file *pf, int l)
{
    return REAL(pf)->pMethods->xLock(REAL(pf), l);
}
static int x_unlock(sqlite3_file *pf, int l)
{
    return REAL(pf)->pMethods->xUnlock(REAL(pf), l);
}
static int x_check_reserved(sqlite3_file *pf, int *out)
{
    return REAL(pf)->pMethods->xCheckReservedLock(REAL(pf), out);
}
static int x_file_control(sqlite3_file *pf, int op, void *arg)
{
    return REAL(pf)->pMethods->xFileControl(REAL(pf), op, arg);
}
static int x_sector_size(sqlite3_file *pf)
{
    return REAL(pf)->pMethods->xSectorSize(REAL(pf));
}
static int x_device_characteristics(sqlite3_file *pf)
{
    return REAL(pf)->pMethods->xDeviceCharacteristics(REAL(pf));
}
/* Files of the default VFS without shared memory or memory mapping (not
 * the database or WAL) get the answers SQLite expects of such files. */
static int x_shm_map(sqlite3_file *pf, int pg, int sz, int extend, void volatile **pp)
{
    if (REAL(pf)->pMethods->iVersion < 2)
        return SQLITE_IOERR_SHMMAP;
    return REAL(pf)->pMethods->xShmMap(REAL(pf), pg, sz, extend, pp);
}
static int x_shm_unmap(sqlite3_file *pf, int del)
{
    if (REAL(pf)->pMethods->iVersion < 2)
        return SQLITE_OK;
    return REAL(pf)->pMethods->xShmUnmap(REAL(pf), del);
}
static int x_fetch(sqlite3_file *pf, sqlite3_int64 off, int n, void **pp)
{
    if (REAL(pf)->pMethods->iVersion < 3) {
        *pp = NULL;
        return SQLITE_OK;
    }
    return REAL(pf)->pMethods->xFetch(REAL(pf), off, n, pp);
}
static int x_unfetch(sqlite3_file *pf, sqlite3_int64 off, void *p)
{
    if (REAL(pf)->pMethods->iVersion < 3)
        return SQLITE_OK;
    return REAL(pf)->pMethods->xUnfetch(REAL(pf), off, p);
}

static int x_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *pf, int flags,
                  int *out_flags)
{
    (void)vfs;
    struct wfile *f = (struct wfile *)pf;
    memset(f, 0, sizeof(*f));
    f->real = (sqlite3_file *)(f + 1);
    int rc = base_vfs->xOpen(base_vfs, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK || !f->real->pMethods)
        return rc; /* pMethods stays NULL: SQLite will not call us */
    if ((flags & SQLITE_OPEN_WAL) && name) {
        f->buf = malloc(BUF_CAP);
        if (!f->buf) {
            f->real->pMethods->xClose(f->real);
            return SQLITE_NOMEM;
        }
        f->is_wal = 1;
        f->db = (struct wfile *)sqlite3_database_file_object(name);
        if (f->db->base.pMethods == &methods)
            f->db->wal = f;
        else
            f->db = NULL;
    }
    pf->pMethods = &methods;
    return SQLITE_OK;
}

int walbuf_register(void)
{
    static sqlite3_vfs vfs;
    if (base_vfs)
        return SQLITE_OK;
    sqlite3_vfs *b = sqlite3_vfs_find(NULL);
    if (!b)
        return SQLITE_ERROR;
    vfs = *b;
    vfs.pNext = NULL;
    vfs.zName = WALBUF_VFS;
    vfs.szOsFile = (int)sizeof(struct wfile) + b->szOsFile;
    vfs.xOpen = x_open;
    methods = (sqlite3_io_methods){
        .iVersion = 3,
        .xClose = x_close,
        .xRead = x_read,
        .xWrite = x_write,
        .xTruncate = x_truncate,
        .xSync = x_sync,
        .xFileSize = x_file_size,
        .xLock = x_lock,
        .xUnlock = x_unlock,
        .xCheckReservedLock = x_check_reserved,
        .xFileControl = x_file_control,
        .xSectorSize = x_sector_size,
        .xDeviceCharacteristics = x_device_characteristics,
        .xShmMap = x_shm_map,
        .xShmLock = x_shm_lock,
        .xShmBarrier = x_shm_barrier,
        .xShmUnmap = x_shm_unmap,
        .xFetch = x_fetch,
        .xUnfetch = x_unfetch,
    };
    base_vfs = b;
    int rc = sqlite3_vfs_register(&vfs, 0);
    if (rc != SQLITE_OK)
        base_vfs = NULL;
    return rc;
}
