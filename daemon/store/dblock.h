/* One daemon per database (spec section 12): a daemon holds an exclusive
 * flock(2) on "<database>.lock" for as long as it runs, with its pid in
 * the file. The kernel drops the lock when the process ends, however it
 * ends, so a daemon killed with SIGKILL never blocks the next start. */
#ifndef MKTD_DBLOCK_H
#define MKTD_DBLOCK_H

#include <stddef.h>

struct dblock;

/* Takes the lock of database path db. -EBUSY when another process holds
 * it (err names the database and that process's pid); another -errno
 * when the lock file cannot be used. ":memory:" takes no lock (*out
 * NULL, 0). */
int dblock_take(const char *db, struct dblock **out, char *err, size_t errlen);
/* Whether a process holds the lock of database db: its pid, -1 when held
 * by a process that wrote none, 0 when not held (or no lock file). */
long dblock_holder(const char *db);
/* Empties the pid and lets the lock go (NULL: nothing). */
void dblock_release(struct dblock *l);

#endif
