/* A SQLite VFS over the default one that gathers the loop's WAL appends
 * in memory and writes each commit's frames with one write() instead of
 * two per page (see walbuf.c). */
#ifndef MKTD_WALBUF_H
#define MKTD_WALBUF_H

#define WALBUF_VFS "mktd-walbuf"

/* Registers the VFS (once; not as the default). 0, or a SQLite code. */
int walbuf_register(void);

#endif
