#define _GNU_SOURCE
#include "store/dblock.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/util.h"

struct dblock {
    int fd;
    char *path;
};

/* The lock file's path: beside the database as the file system resolves
 * it, so that two spellings of one database (relative, through a symbolic
 * link) share one lock. */
static char *lock_path(const char *db)
{
    char buf[PATH_MAX], out[PATH_MAX + 16];
    if (realpath(db, buf)) {
        snprintf(out, sizeof(out), "%s.lock", buf);
        return xstrdup(out);
    }
    /* not created yet: resolve its folder */
    char *d = xstrdup(db), *b = xstrdup(db);
    if (realpath(dirname(d), buf))
        snprintf(out, sizeof(out), "%s/%s.lock", strcmp(buf, "/") == 0 ? "" : buf, basename(b));
    else
        snprintf(out, sizeof(out), "%s.lock", db);
    free(d);
    free(b);
    return xstrdup(out);
}

/* The pid the holder wrote, or 0. The holder writes it right after taking
 * the lock: an empty file is read again for a moment. */
static long holder_pid(int fd)
{
    for (int i = 0; i < 50; i++) {
        char buf[32];
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        if (n > 0) {
            buf[n] = 0;
            long pid = strtol(buf, NULL, 10);
            if (pid > 0)
                return pid;
        }
        struct timespec ts = {0, 2 * 1000 * 1000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int dblock_take(const char *db, struct dblock **out, char *err, size_t errlen)
{
    *out = NULL;
    if (!*db || strcmp(db, ":memory:") == 0)
        return 0;
    char *path = lock_path(db);
    for (;;) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
            int e = errno;
            snprintf(err, errlen, "database %s: lock file %s: %s", db, path, strerror(e));
            free(path);
            return -e;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
            int e = errno;
            if (e == EWOULDBLOCK) {
                long pid = holder_pid(fd);
                if (pid > 0)
                    snprintf(err, errlen,
                             "database %s is in use by another mktd (pid %ld, lock %s): one "
                             "daemon per database",
                             db, pid, path);
                else
                    snprintf(err, errlen,
                             "database %s is in use by another process (lock %s): one daemon "
                             "per database",
                             db, path);
                e = EBUSY;
            } else {
                snprintf(err, errlen, "database %s: lock file %s: %s", db, path, strerror(e));
            }
            close(fd);
            free(path);
            return -e;
        }
        /* The file may have been replaced (removed by hand) between open
         * and flock: the lock counts only on the file the path names. */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(path, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            char pid[32];
            int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());
            if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
                int e = errno;
                snprintf(err, errlen, "database %s: lock file %s: %s", db, path, strerror(e));
                close(fd);
                free(path);
                return -e;
            }
            struct dblock *l = xcalloc(1, sizeof(*l));
            l->fd = fd;
            l->path = path;
            *out = l;
            return 0;
        }
        close(fd);
    }
}

long dblock_holder(const char *db)
{
    if (!*db || strcmp(db, ":memory:") == 0)
        return 0;
    char *path = lock_path(db);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(path);
    if (fd < 0)
        return 0;
    long pid = 0;
    if (flock(fd, LOCK_SH | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            pid = (pid = holder_pid(fd)) > 0 ? pid : -1;
    } else {
        flock(fd, LOCK_UN);
    }
    close(fd);
    return pid;
}

void dblock_release(struct dblock *l)
{
    if (!l)
        return;
    /* the file stays (removing it would race with a daemon starting) */
    if (ftruncate(l->fd, 0) < 0) {
        /* the lock goes with the descriptor all the same */
    }
    close(l->fd);
    free(l->path);
    free(l);
}
