/* Checkpoints off the event loop: a thread with its own connection copies
 * the WAL into the database while the loop keeps writing, and starts the
 * WAL over once it has caught up, so that the loop never waits for the
 * checkpoint's writes and fsyncs (see bench/README.md). */
#ifndef MKTD_CHECKPOINTER_H
#define MKTD_CHECKPOINTER_H

#include <stddef.h>
#include <stdint.h>

struct checkpointer;

/* Opens path (already in WAL mode) and starts the thread. */
int checkpointer_start(const char *path, struct checkpointer **out, char *err, size_t errlen);
/* From the writer's WAL hook: its WAL now holds `frames` frames. */
void checkpointer_note(struct checkpointer *c, int frames);
/* From the writer: a transaction of its own is open (1) or not (0). */
void checkpointer_writing(struct checkpointer *c, int open);
/* Whether the thread is starting the WAL over, when it holds (or waits
 * for) the writer lock: a writer that finds the lock taken then knows the
 * wait is short. */
int checkpointer_restarting(struct checkpointer *c);
/* Stops the thread (after the pass in progress) and closes its connection. */
void checkpointer_stop(struct checkpointer *c);

struct checkpointer_stats {
    uint64_t rounds, errors;
    uint64_t restarts; /* times the writer found the WAL started over */
    int wal_frames;    /* after the writer's last commit */
};
void checkpointer_stats(struct checkpointer *c, struct checkpointer_stats *out);

#endif
