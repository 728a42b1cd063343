/* The working set (ws.h): a hash table of entries with an LRU list, an undo
 * log and a list of changed entries. */
#include "engine/ws.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/bloom.h"
#include "lib/log.h"
#include "lib/util.h"

union ws_val {
    int64_t i;
    mktd_profile p;
    struct {
        char *s; /* malloc'd, NUL-terminated */
        size_t n;
    } str;
};

struct ws_ent {
    struct ws_ent *hnext;               /* hash chain */
    struct ws_ent *lru_prev, *lru_next; /* newest first; used ones go back to the front */
    uint64_t h;
    union ws_val v;
    uint8_t kind;
    uint8_t present;
    uint8_t dirty;  /* in w->dirty */
    uint8_t stored; /* the store has the row: STORED_NO, _YES, or _UNKNOWN */
    uint8_t ref;    /* used since eviction last passed it */
    uint8_t note;   /* the caller's (ws_get_int_note) */
    uint16_t ulen, clen, klen;
    char k[]; /* user \0 campaign \0 key \0 */
};

enum { STORED_NO = 0, STORED_YES = 1, STORED_UNKNOWN = 2 };

struct ws_undo {
    struct ws_ent *e;
    union ws_val v;
    uint64_t flushes; /* w->flushes when recorded */
    uint8_t present, dirty;
};

struct ws {
    struct store *st;
    size_t budget;
    struct ws_ent **tab;
    size_t mask; /* buckets - 1 */
    size_t n;
    size_t bytes;
    struct ws_ent *lru_head, *lru_tail;
    struct ws_undo *undo;
    size_t n_undo, cap_undo;
    struct ws_ent **dirty;
    size_t n_dirty, cap_dirty;
    uint64_t flushes;
    struct ws_ent **ids_seen; /* event-id entries made since the last commit */
    size_t n_ids_seen, cap_ids_seen;
    struct bloom *ids;  /* every remembered event id; NULL until ws_load_ids */
    struct bloom *uniq; /* every claimed unique key (namespace \0 key); likewise */
    char *kbuf;         /* the key being looked up */
    size_t kcap;
    struct ws_stats stats;
};

static int is_str(int kind)
{
    return kind == WS_STATE || kind == WS_UNIQUE;
}

static size_t ent_bytes(const struct ws_ent *e)
{
    size_t b = sizeof(*e) + (size_t)e->ulen + e->clen + e->klen + 3 + 16;
    if (is_str(e->kind) && e->present)
        b += e->v.str.n + 1 + 16;
    return b;
}

struct ws *ws_new(struct store *st, size_t budget_bytes)
{
    struct ws *w = xcalloc(1, sizeof(*w));
    w->st = st;
    w->budget = budget_bytes;
    w->mask = 1023;
    w->tab = xcalloc(w->mask + 1, sizeof(*w->tab));
    return w;
}

static void val_free(int kind, int present, union ws_val *v)
{
    if (is_str(kind) && present)
        free(v->str.s);
}

static void ent_free(struct ws_ent *e)
{
    val_free(e->kind, e->present, &e->v);
    free(e);
}

void ws_free(struct ws *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_undo; i++)
        val_free(w->undo[i].e->kind, w->undo[i].present, &w->undo[i].v);
    for (struct ws_ent *e = w->lru_head, *next; e; e = next) {
        next = e->lru_next;
        ent_free(e);
    }
    free(w->tab);
    free(w->undo);
    free(w->dirty);
    free(w->kbuf);
    free(w->ids_seen);
    bloom_free(w->ids);
    bloom_free(w->uniq);
    free(w);
}

/* ---- lookup ---- */

static uint64_t hash(int kind, const char *k, size_t n)
{
    uint64_t h = 1469598103934665603ULL ^ (uint64_t)kind;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)k[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

/* Lays the key out in w->kbuf; its length. */
static size_t key_build(struct ws *w, const char *campaign, const char *user, const char *key,
                        uint16_t *ul, uint16_t *cl, uint16_t *kl)
{
    if (!user)
        user = "";
    if (!campaign)
        campaign = "";
    if (!key)
        key = "";
    size_t u = strlen(user), c = strlen(campaign), k = strlen(key);
    if (u > UINT16_MAX || c > UINT16_MAX || k > UINT16_MAX)
        return 0;
    size_t n = u + c + k + 3;
    if (n > w->kcap) {
        w->kcap = n * 2;
        w->kbuf = xrealloc(w->kbuf, w->kcap);
    }
    memcpy(w->kbuf, user, u + 1);
    memcpy(w->kbuf + u + 1, campaign, c + 1);
    memcpy(w->kbuf + u + c + 2, key, k + 1);
    *ul = (uint16_t)u;
    *cl = (uint16_t)c;
    *kl = (uint16_t)k;
    return n;
}

static void lru_unlink(struct ws *w, struct ws_ent *e)
{
    if (e->lru_prev)
        e->lru_prev->lru_next = e->lru_next;
    else
        w->lru_head = e->lru_next;
    if (e->lru_next)
        e->lru_next->lru_prev = e->lru_prev;
    else
        w->lru_tail = e->lru_prev;
    e->lru_prev = e->lru_next = NULL;
}

static void lru_front(struct ws *w, struct ws_ent *e)
{
    if (w->lru_head == e)
        return;
    if (e->lru_prev || e->lru_next || w->lru_tail == e)
        lru_unlink(w, e);
    e->lru_next = w->lru_head;
    if (w->lru_head)
        w->lru_head->lru_prev = e;
    w->lru_head = e;
    if (!w->lru_tail)
        w->lru_tail = e;
}

static void grow(struct ws *w)
{
    size_t nb = (w->mask + 1) * 2;
    struct ws_ent **t = xcalloc(nb, sizeof(*t));
    for (size_t i = 0; i <= w->mask; i++) {
        for (struct ws_ent *e = w->tab[i], *next; e; e = next) {
            next = e->hnext;
            size_t b = e->h & (nb - 1);
            e->hnext = t[b];
            t[b] = e;
        }
    }
    free(w->tab);
    w->tab = t;
    w->mask = nb - 1;
}

/* Reads the entry's value from the store: 0 (present), -ENOENT, -EIO. */
static int load(struct ws *w, struct ws_ent *e)
{
    const char *user = e->k, *campaign = e->k + e->ulen + 1, *key = e->k + e->ulen + e->clen + 2;
    if (e->kind == WS_EVENT) {
        if (w->ids && !bloom_maybe(w->ids, key, e->klen))
            return -ENOENT; /* never remembered: no B-tree read */
        w->stats.id_reads++;
        int rc = store_event_seen(w->st, key);
        return rc < 0 ? -EIO : rc == 1 ? 0 : -ENOENT;
    }
    if (e->kind == WS_UNIQUE) {
        if (w->uniq && !bloom_maybe(w->uniq, campaign, (size_t)e->clen + 1 + e->klen))
            return -ENOENT; /* a new key (a fresh coupon code): no B-tree read */
        char *owner;
        int rc = store_unique_owner(w->st, campaign, key, &owner);
        if (rc == 0) {
            e->v.str.s = owner;
            e->v.str.n = strlen(owner);
        }
        return rc;
    }
    struct store_row r;
    int rc = store_row_get(w->st, e->kind, campaign, user, key, &r);
    if (rc < 0)
        return rc;
    if (e->kind == WS_PROFILE) {
        e->v.p = r.profile;
    } else if (e->kind == WS_STATE) {
        e->v.str.s = r.blob;
        e->v.str.n = r.len;
    } else {
        e->v.i = r.i;
    }
    return 0;
}

/* The entry for the key, read from the store when not in memory; NULL when
 * the store could not be read. */
static struct ws_ent *find(struct ws *w, int kind, const char *campaign, const char *user,
                           const char *key)
{
    uint16_t ul, cl, kl;
    size_t n = key_build(w, campaign, user, key, &ul, &cl, &kl);
    if (!n)
        return NULL; /* a key this long is refused */
    uint64_t h = hash(kind, w->kbuf, n);
    for (struct ws_ent *e = w->tab[h & w->mask]; e; e = e->hnext) {
        if (e->h == h && e->kind == kind && e->ulen == ul && e->clen == cl && e->klen == kl &&
            memcmp(e->k, w->kbuf, n) == 0) {
            w->stats.hits++;
            e->ref = 1; /* a second chance when eviction comes by: no list moves on a hit */
            return e;
        }
    }
    w->stats.misses++;
    struct ws_ent *e = xcalloc(1, sizeof(*e) + n);
    e->h = h;
    e->kind = (uint8_t)kind;
    e->ulen = ul;
    e->clen = cl;
    e->klen = kl;
    memcpy(e->k, w->kbuf, n);
    int rc = load(w, e);
    if (rc < 0 && rc != -ENOENT) {
        free(e);
        return NULL;
    }
    e->present = rc == 0;
    e->stored = rc == 0 ? STORED_YES : STORED_NO;
    if (kind == WS_EVENT) { /* dropped at the commit: the filter and the store know them */
        if (w->n_ids_seen == w->cap_ids_seen) {
            w->cap_ids_seen = w->cap_ids_seen ? w->cap_ids_seen * 2 : 256;
            w->ids_seen = xrealloc(w->ids_seen, w->cap_ids_seen * sizeof(*w->ids_seen));
        }
        w->ids_seen[w->n_ids_seen++] = e;
    }
    size_t b = h & w->mask;
    e->hnext = w->tab[b];
    w->tab[b] = e;
    lru_front(w, e);
    w->n++;
    w->bytes += ent_bytes(e);
    if (w->n > (w->mask + 1))
        grow(w);
    return e;
}

int ws_get_int_note(struct ws *w, int kind, const char *campaign, const char *user, const char *key,
                    int64_t *out, uint8_t *note)
{
    struct ws_ent *e = find(w, kind, campaign, user, key);
    if (!e)
        return -EIO;
    *note = e->note;
    if (!e->present)
        return -ENOENT;
    *out = e->v.i;
    return 0;
}

int ws_get_int(struct ws *w, int kind, const char *campaign, const char *user, const char *key,
               int64_t *out)
{
    uint8_t note;
    return ws_get_int_note(w, kind, campaign, user, key, out, &note);
}

int ws_set_note(struct ws *w, int kind, const char *campaign, const char *user, const char *key,
                uint8_t note)
{
    struct ws_ent *e = find(w, kind, campaign, user, key);
    if (!e)
        return -EIO;
    e->note = note;
    return 0;
}

int ws_get_str(struct ws *w, int kind, const char *campaign, const char *user, const char *key,
               const char **val, size_t *len)
{
    struct ws_ent *e = find(w, kind, campaign, user, key);
    if (!e)
        return -EIO;
    if (!e->present)
        return -ENOENT;
    if (val)
        *val = e->v.str.s;
    if (len)
        *len = e->v.str.n;
    return 0;
}

int ws_get_profile(struct ws *w, const char *user, mktd_profile *out)
{
    struct ws_ent *e = find(w, WS_PROFILE, "", user, "");
    if (!e)
        return -EIO;
    if (!e->present)
        return -ENOENT;
    *out = e->v.p;
    return 0;
}

/* ---- changes ---- */

/* e is to be written by the next flush. dirty: 0 not listed, 1 listed and
 * to be written, 2 listed but back to the value the store has. */
static void mark_dirty(struct ws *w, struct ws_ent *e)
{
    if (!e->dirty) {
        if (w->n_dirty == w->cap_dirty) {
            w->cap_dirty = w->cap_dirty ? w->cap_dirty * 2 : 256;
            w->dirty = xrealloc(w->dirty, w->cap_dirty * sizeof(*w->dirty));
        }
        w->dirty[w->n_dirty++] = e;
    }
    e->dirty = 1;
}

/* Records e's value in the undo log (which takes its string) and marks e
 * changed. */
static void before_change(struct ws *w, struct ws_ent *e)
{
    if (w->n_undo == w->cap_undo) {
        w->cap_undo = w->cap_undo ? w->cap_undo * 2 : 256;
        w->undo = xrealloc(w->undo, w->cap_undo * sizeof(*w->undo));
    }
    w->undo[w->n_undo++] = (struct ws_undo){
        .e = e, .v = e->v, .flushes = w->flushes, .present = e->present, .dirty = e->dirty};
    w->bytes -= ent_bytes(e);
    mark_dirty(w, e);
}

static struct ws_ent *change(struct ws *w, int kind, const char *campaign, const char *user,
                             const char *key)
{
    struct ws_ent *e = find(w, kind, campaign, user, key);
    if (e)
        before_change(w, e);
    return e;
}

int ws_put_int(struct ws *w, int kind, const char *campaign, const char *user, const char *key,
               int64_t v)
{
    struct ws_ent *e = change(w, kind, campaign, user, key);
    if (!e)
        return -EIO;
    e->v.i = v;
    e->present = 1;
    w->bytes += ent_bytes(e);
    return 0;
}

int ws_put_str(struct ws *w, int kind, const char *campaign, const char *user, const char *key,
               const void *val, size_t len)
{
    struct ws_ent *e = change(w, kind, campaign, user, key);
    if (!e)
        return -EIO;
    if (kind == WS_EVENT) { /* present is all there is to it */
        if (w->ids)
            bloom_add(w->ids, key, strlen(key)); /* an undo leaves a false positive */
        memset(&e->v, 0, sizeof(e->v));
        e->present = 1;
        w->bytes += ent_bytes(e);
        return 0;
    }
    if (kind == WS_UNIQUE && w->uniq)
        bloom_add(w->uniq, e->k + e->ulen + 1, (size_t)e->clen + 1 + e->klen);
    e->v.str.s = xmalloc(len + 1);
    if (len)
        memcpy(e->v.str.s, val, len);
    e->v.str.s[len] = 0;
    e->v.str.n = len;
    e->present = 1;
    w->bytes += ent_bytes(e);
    return 0;
}

int ws_put_profile(struct ws *w, const char *user, const mktd_profile *p)
{
    struct ws_ent *e = change(w, WS_PROFILE, "", user, "");
    if (!e)
        return -EIO;
    e->v.p = *p;
    e->present = 1;
    w->bytes += ent_bytes(e);
    return 0;
}

int ws_del(struct ws *w, int kind, const char *campaign, const char *user, const char *key)
{
    struct ws_ent *e = find(w, kind, campaign, user, key);
    if (!e)
        return -EIO;
    if (!e->present)
        return 0;
    before_change(w, e);
    memset(&e->v, 0, sizeof(e->v)); /* the undo log has the string */
    e->present = 0;
    w->bytes += ent_bytes(e);
    return 0;
}

/* ---- undo ---- */

size_t ws_mark(const struct ws *w)
{
    return w->n_undo;
}

void ws_undo_to(struct ws *w, size_t mark)
{
    while (w->n_undo > mark) {
        struct ws_undo *u = &w->undo[--w->n_undo];
        struct ws_ent *e = u->e;
        w->bytes -= ent_bytes(e);
        val_free(e->kind, e->present, &e->v);
        e->v = u->v;
        e->present = u->present;
        w->bytes += ent_bytes(e);
        if (u->flushes != w->flushes)
            mark_dirty(w, e); /* the store has the undone value: write again */
        else
            e->dirty = u->dirty ? u->dirty : 2; /* still listed since the change */
    }
}

/* ---- writing ---- */

/* Sort order: per_user rows by their primary key (user, kind, campaign,
 * key), then unique keys, then event ids. */
static int table_of(int kind)
{
    return kind <= WS_TIMER ? 0 : kind;
}

static int cmp_ent(const void *a, const void *b)
{
    const struct ws_ent *x = *(struct ws_ent *const *)a, *y = *(struct ws_ent *const *)b;
    int tx = table_of(x->kind), ty = table_of(y->kind);
    if (tx != ty)
        return tx < ty ? -1 : 1;
    int c = strcmp(x->k, y->k); /* user */
    if (c)
        return c;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    c = strcmp(x->k + x->ulen + 1, y->k + y->ulen + 1); /* campaign */
    if (c)
        return c;
    return strcmp(x->k + x->ulen + x->clen + 2, y->k + y->ulen + y->clen + 2);
}

static int write_ent(struct ws *w, struct ws_ent *e)
{
    const char *user = e->k, *campaign = e->k + e->ulen + 1, *key = e->k + e->ulen + e->clen + 2;
    switch (e->kind) {
    case WS_EVENT:
        return e->present && store_event_remember(w->st, key) < 0 ? -EIO : 0;
    case WS_UNIQUE:
        if (e->present) {
            int rc = store_unique_claim(w->st, campaign, key, e->v.str.s);
            return rc == -EEXIST ? 0 : rc;
        }
        return store_unique_release(w->st, campaign, key);
    default:
        break;
    }
    if (!e->present) {
        if (e->stored == STORED_NO)
            return 0;
        int rc = store_row_del(w->st, e->kind, campaign, user, key);
        e->stored = rc == 0 ? STORED_NO : STORED_UNKNOWN;
        return rc;
    }
    struct store_row r = {0};
    if (e->kind == WS_PROFILE) {
        r.profile = e->v.p;
    } else if (e->kind == WS_STATE) {
        r.blob = e->v.str.s;
        r.len = e->v.str.n;
    } else {
        r.i = e->v.i;
    }
    int how = e->stored == STORED_YES  ? STORE_UPDATE
              : e->stored == STORED_NO ? STORE_INSERT
                                       : STORE_UPSERT;
    int rc = store_row_put(w->st, e->kind, campaign, user, key, &r, how);
    e->stored = rc == 0 ? STORED_YES : STORED_UNKNOWN;
    return rc;
}

int ws_flush(struct ws *w)
{
    /* entries undone to their clean value (dirty 2) need no write */
    size_t k = 0;
    for (size_t i = 0; i < w->n_dirty; i++) {
        struct ws_ent *e = w->dirty[i];
        if (e->dirty == 1)
            w->dirty[k++] = e;
        e->dirty = 0;
    }
    w->n_dirty = k;
    if (w->n_dirty > 1)
        qsort(w->dirty, w->n_dirty, sizeof(*w->dirty), cmp_ent);
    for (size_t i = 0; i < w->n_dirty; i++) {
        if (write_ent(w, w->dirty[i]) < 0) {
            /* the caller rolls back; every entry stays to be written */
            for (size_t j = 0; j < w->n_dirty; j++)
                w->dirty[j]->dirty = 1;
            return -EIO;
        }
    }
    w->stats.flushed_rows += w->n_dirty;
    w->n_dirty = 0;
    w->flushes++;
    return 0;
}

static void forget_undo(struct ws *w)
{
    for (size_t i = 0; i < w->n_undo; i++)
        val_free(w->undo[i].e->kind, w->undo[i].present, &w->undo[i].v);
    w->n_undo = 0;
    if (w->cap_undo > 65536) {
        w->cap_undo = 256;
        w->undo = xrealloc(w->undo, w->cap_undo * sizeof(*w->undo));
    }
}

/* Takes e out of memory (it is read again when needed). */
static void forget(struct ws *w, struct ws_ent *e)
{
    struct ws_ent **p = &w->tab[e->h & w->mask];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    lru_unlink(w, e);
    w->bytes -= ent_bytes(e);
    w->n--;
    ent_free(e);
}

/* Drops e to keep the budget (counted). */
static void evict(struct ws *w, struct ws_ent *e)
{
    w->stats.evictions++;
    forget(w, e);
}

/* Event ids need no place in memory once written: a new id is told by the
 * filter, a repeated one by the store. */
static void drop_ids(struct ws *w)
{
    for (size_t i = 0; i < w->n_ids_seen; i++)
        if (!w->ids_seen[i]->dirty)
            forget(w, w->ids_seen[i]); /* not an eviction: ids never stay */
    w->n_ids_seen = 0;
}

/* At most this many entries are looked at per commit, so that the first
 * commit over the budget does not stall the loop going over all of them. */
#define EVICT_LOOKS 8192

void ws_committed(struct ws *w)
{
    forget_undo(w);
    drop_ids(w);
    /* CLOCK: the oldest entry goes unless it was used since it last came
     * by, then it goes back to the front */
    size_t looked = 0;
    while (w->bytes > w->budget && w->lru_tail && looked++ < EVICT_LOOKS) {
        struct ws_ent *e = w->lru_tail;
        if (e->dirty) /* not written yet (cannot happen after a flush) */
            break;
        if (e->ref) {
            e->ref = 0;
            lru_front(w, e);
            continue;
        }
        evict(w, e);
    }
}

void ws_rolled_back(struct ws *w)
{
    /* what the store has now is what it had before the batch, which the
     * entries written since no longer know */
    for (size_t i = 0; i < w->n_undo; i++)
        w->undo[i].e->stored = STORED_UNKNOWN;
    ws_undo_to(w, 0);
    for (size_t i = 0; i < w->n_dirty; i++)
        w->dirty[i]->dirty = 0;
    w->n_dirty = 0;
    forget_undo(w);
    drop_ids(w);
}

void ws_drop_user(struct ws *w, const char *user)
{
    size_t ul = strlen(user);
    for (size_t b = 0; b <= w->mask; b++) {
        struct ws_ent *e = w->tab[b], *next;
        for (; e; e = next) {
            next = e->hnext;
            if (e->kind <= WS_TIMER && e->ulen == ul && memcmp(e->k, user, ul) == 0 && !e->dirty)
                forget(w, e);
        }
    }
}

void ws_clear(struct ws *w)
{
    forget_undo(w);
    w->n_ids_seen = 0;
    for (size_t i = 0; i < w->n_dirty; i++)
        w->dirty[i]->dirty = 0;
    w->n_dirty = 0;
    while (w->lru_tail)
        evict(w, w->lru_tail);
}

static void add_id(void *arg, const char *id, size_t len)
{
    bloom_add(arg, id, len);
}

static void add_unique(void *arg, const char *ns, const char *key)
{
    size_t a = strlen(ns), b = strlen(key);
    char *k = xmalloc(a + b + 1);
    memcpy(k, ns, a + 1);
    memcpy(k + a + 1, key, b);
    bloom_add(arg, k, a + 1 + b);
    free(k);
}

int ws_load_ids(struct ws *w)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct bloom *b = bloom_new((size_t)1 << 20), *u = bloom_new((size_t)1 << 16);
    if (store_events_foreach(w->st, add_id, b) < 0 ||
        store_uniques_foreach(w->st, add_unique, u) < 0) {
        bloom_free(b);
        bloom_free(u);
        return -EIO;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (s >= 1)
        log_info("remembered event ids read in %.1f s (%zu MB of filter)", s, bloom_bytes(b) >> 20);
    bloom_free(w->ids);
    w->ids = b;
    bloom_free(w->uniq);
    w->uniq = u;
    return 0;
}

size_t ws_dirty(const struct ws *w)
{
    return w->n_dirty;
}

void ws_set_budget(struct ws *w, size_t budget_bytes)
{
    w->budget = budget_bytes;
}

void ws_stats(const struct ws *w, struct ws_stats *out)
{
    *out = w->stats;
    out->filter_bytes = w->ids ? bloom_bytes(w->ids) : 0;
    out->entries = w->n;
    out->bytes = w->bytes;
}
