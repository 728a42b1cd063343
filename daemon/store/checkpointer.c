/*
 * The background checkpointer.
 *
 * The loop's connection has no automatic checkpoints; its WAL hook tells
 * this thread how many frames the WAL holds after each commit. The thread
 * runs a PASSIVE checkpoint (it never blocks the writer) whenever PASS
 * frames are waiting. PASSIVE alone never lets the WAL start over while
 * the writer keeps appending, so once the WAL is past RESTART frames the
 * thread keeps copying until nothing is left (later: at most TAIL frames)
 * and then tries a RESTART checkpoint without waiting: it gets the writer
 * lock only when the loop is between two batches, and then holds it only
 * to copy that tail (nothing to copy: no fsync either); the loop's next
 * transaction writes the WAL from its start.
 * When the writer outruns it past HARD frames, the restart waits for the
 * lock (the loop then waits for it in turn). A long WAL left when the
 * writer pauses is started over after IDLE_S.
 */
#define _GNU_SOURCE
#include "store/checkpointer.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "lib/util.h"

enum {
    PASS = 4000,        /* ~16 MB: a pass starts when this much waits */
    RESTART = 8192,     /* ~32 MB: then start the WAL over */
    HARD = 8 * RESTART, /* ~256 MB: start it over even if the loop must wait long */
    TAIL = 64,          /* at most this much left to copy when the restart takes the lock */
    POLL_US = 100,      /* between two tries to find the writer idle */
    TRIES = 5000,       /* ~0.5 s of tries, then back to passes */
    STUCK = 100,        /* tries without gain: a reader holds the WAL */
    FORCE_TRIES = 2000, /* a forced restart waits ~0.2 s at most */
    IDLE_S = 1,         /* a pause of the writer that lets a long WAL start over */
};

struct checkpointer {
    sqlite3 *db;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    int force;      /* the WAL is past HARD: the restart waits for the writer lock */
    int frames;     /* the WAL's frames after the writer's last commit */
    int noted;      /* the writer committed since the last round began */
    int writing;    /* the writer is inside a transaction (holds its lock) */
    int backfilled; /* frames the last pass copied (counted from the WAL's start) */
    int restarting; /* in a RESTART checkpoint: it may hold the writer lock */
    struct checkpointer_stats stats;
};

static void sleep_us(long us)
{
    struct timespec ts = {0, us * 1000L};
    nanosleep(&ts, NULL);
}

/* Only a forced restart waits for the writer lock (or readers). */
static int busy_cb(void *arg, int tries)
{
    struct checkpointer *c = arg;
    if (!c->force || tries >= FORCE_TRIES)
        return 0;
    sleep_us(POLL_US);
    return 1;
}

/* Frames waiting to be copied: a WAL that started over (fewer frames than
 * were copied) waits whole. */
static int waiting(const struct checkpointer *c)
{
    return c->frames >= c->backfilled ? c->frames - c->backfilled : c->frames;
}

static int ckpt(struct checkpointer *c, int mode, int *nlog, int *done)
{
    int restart = mode == SQLITE_CHECKPOINT_RESTART;
    if (restart)
        __atomic_store_n(&c->restarting, 1, __ATOMIC_RELEASE);
    int rc = sqlite3_wal_checkpoint_v2(c->db, "main", mode, nlog, done);
    if (restart)
        __atomic_store_n(&c->restarting, 0, __ATOMIC_RELEASE);
    return rc;
}

/* One round: a pass, then, when the WAL is long, passes until a RESTART
 * finds the writer idle with at most TAIL frames left. A reader (a backup,
 * `mktd actions`) pins the frames after its snapshot: when passes stop
 * gaining, the round ends and the WAL grows until the reader is done, as
 * it would with SQLite's own checkpoints. Returns the SQLite code;
 * *restarted when the WAL will start over, *pinned when a reader holds it. */
static int round_(struct checkpointer *c, int *done, int *restarted, int *pinned)
{
    int nlog = 0, stuck = 0;
    *restarted = *pinned = 0;
    int rc = ckpt(c, SQLITE_CHECKPOINT_PASSIVE, &nlog, done);
    if (rc != SQLITE_OK || nlog < RESTART)
        return rc;
    for (int i = 0; i < TRIES && stuck < STUCK && !__atomic_load_n(&c->stop, __ATOMIC_RELAXED);
         i++) {
        /* What is left, as of the writer's last commit (nlog is as of
         * the pass's start). A restart that finds nothing left to copy
         * holds the lock for microseconds; one with a tail holds it
         * through two fsyncs, so a tail is accepted only later. */
        int latest = __atomic_load_n(&c->frames, __ATOMIC_RELAXED);
        if (latest < *done) { /* the writer started the WAL over itself */
            *restarted = 1;
            return SQLITE_OK;
        }
        int tail = i < TRIES / 2 ? 0 : TAIL;
        int mode = latest - *done <= tail ? SQLITE_CHECKPOINT_RESTART : SQLITE_CHECKPOINT_PASSIVE;
        if (mode == SQLITE_CHECKPOINT_RESTART && __atomic_load_n(&c->writing, __ATOMIC_ACQUIRE)) {
            /* mid-batch: its commit would slip in before the restart */
            sleep_us(POLL_US);
            continue;
        }
        int before = *done;
        rc = ckpt(c, mode, &nlog, done);
        if (rc == SQLITE_OK && mode == SQLITE_CHECKPOINT_RESTART) {
            *restarted = 1;
            return rc;
        }
        if (rc != SQLITE_OK && rc != SQLITE_BUSY)
            return rc;
        stuck = *done == before && nlog - *done > TAIL ? stuck + 1 : 0;
        if (mode == SQLITE_CHECKPOINT_RESTART || *done == before)
            sleep_us(POLL_US); /* the writer is busy, or a reader holds frames */
    }
    *pinned = stuck >= STUCK;
    if (nlog >= HARD && !*pinned) {
        /* the writer outruns the passes: wait for the lock (the loop waits
         * for this restart's tail in turn) */
        c->force = 1;
        rc = ckpt(c, SQLITE_CHECKPOINT_RESTART, &nlog, done);
        c->force = 0;
        *restarted = rc == SQLITE_OK;
    }
    return rc == SQLITE_BUSY ? SQLITE_OK : rc; /* busy: tried again next round */
}

static void *run(void *arg)
{
    struct checkpointer *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        /* A round when PASS frames wait, or, once the writer has paused
         * for IDLE_S with a long WAL, to start it over while it is idle. */
        while (!c->stop && waiting(c) < PASS) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += IDLE_S;
            if (pthread_cond_timedwait(&c->cv, &c->mu, &until) == ETIMEDOUT && c->noted &&
                c->frames >= RESTART)
                break;
        }
        if (c->stop)
            break;
        c->noted = 0;
        int before = c->backfilled;
        pthread_mutex_unlock(&c->mu);
        int done = -1, restarted, pinned;
        int rc = round_(c, &done, &restarted, &pinned);
        pthread_mutex_lock(&c->mu);
        c->stats.rounds++;
        if (rc == SQLITE_OK && restarted) {
            /* all copied: the writer's next commit starts the WAL over */
            c->backfilled = c->frames;
        } else if (rc == SQLITE_OK && done >= 0) {
            /* no gain (a reader holds the frames): wait for PASS more */
            c->backfilled = pinned || done == before ? c->frames : done;
        } else {
            /* copied nothing we know of: wait for PASS more frames */
            c->stats.errors++;
            log_warn("background checkpoint: %s", sqlite3_errmsg(c->db));
            c->backfilled = c->frames;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

int checkpointer_start(const char *path, struct checkpointer **out, char *err, size_t errlen)
{
    struct checkpointer *c = xcalloc(1, sizeof(*c));
    if (sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
            SQLITE_OK ||
        sqlite3_exec(c->db,
                     "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;"
                     "SELECT count(*) FROM sqlite_schema;",
                     NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: checkpoint connection: %s", path,
                 c->db ? sqlite3_errmsg(c->db) : "out of memory");
        sqlite3_close(c->db);
        free(c);
        return -EIO;
    }
    sqlite3_busy_handler(c->db, busy_cb, c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    /* signals are the loop's */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&c->th, NULL, run, c);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, errlen, "checkpoint thread: %s", strerror(rc));
        sqlite3_close(c->db);
        pthread_mutex_destroy(&c->mu);
        pthread_cond_destroy(&c->cv);
        free(c);
        return -rc;
    }
    *out = c;
    return 0;
}

void checkpointer_note(struct checkpointer *c, int frames)
{
    pthread_mutex_lock(&c->mu);
    /* fewer frames than last time: the WAL started over (after a restart
     * of ours, or because a pass had copied it all when the writer began) */
    if (frames < c->frames)
        c->stats.restarts++;
    __atomic_store_n(&c->frames, frames, __ATOMIC_RELAXED);
    c->noted = 1;
    if (waiting(c) >= PASS)
        pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void checkpointer_writing(struct checkpointer *c, int open)
{
    __atomic_store_n(&c->writing, open, __ATOMIC_RELEASE);
}

int checkpointer_restarting(struct checkpointer *c)
{
    return __atomic_load_n(&c->restarting, __ATOMIC_ACQUIRE);
}

void checkpointer_stop(struct checkpointer *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    __atomic_store_n(&c->stop, 1, __ATOMIC_RELAXED);
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    pthread_join(c->th, NULL);
    sqlite3_close(c->db);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

void checkpointer_stats(struct checkpointer *c, struct checkpointer_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->stats;
    out->wal_frames = c->frames;
    pthread_mutex_unlock(&c->mu);
}
