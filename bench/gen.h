/*
 * gen.h — the event generator shared by loadgen and bare_sqlite, so that
 * both write the same event ids, users and times for the same options.
 *
 * Users: with the random order (default), new_permille of the events are
 * the signup of a new user, until `users` exist; the others come from a
 * user drawn uniformly among those signed up. With the seq order, event n
 * is user n mod `users`, so the first `users` events touch as many
 * distinct users.
 *
 * The mix: a user's first event is a `user.signup` (60% name a referrer
 * among users already seen); later events are drawn by weight from
 * order.paid, order.refunded (of an earlier order of this run), coupon.used
 * (codes the shop reports; unknown to the daemon), page.view, app.open,
 * cart.add and search. Ids are "<run-id>-<n>", or with random_ids 32 hex
 * digits drawn from (seed, n), distinct for distinct n; order ids
 * "<run-id>-o<n>", users "u<index>". ts = ts_start + n * ts_step, so with
 * `clock: event` a run is reproducible.
 */
#ifndef MKTD_BENCH_GEN_H
#define MKTD_BENCH_GEN_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum kind {
    K_SIGNUP,
    K_ORDER,
    K_REFUND,
    K_COUPON,
    K_PAGE_VIEW,
    K_APP_OPEN,
    K_CART_ADD,
    K_SEARCH,
    K__COUNT
};

static const char *const kind_name[K__COUNT] = {"signup",   "order",    "refund",   "coupon",
                                                "pageview", "app_open", "cart_add", "search"};

struct gen_opts {
    uint64_t users;
    int seq_users;
    int new_permille; /* random order: events that are a new user's signup */
    int random_ids;   /* ids of 32 hex digits instead of <run-id>-<n> */
    const char *run_id;
    uint64_t seed;
    int64_t ts_start, ts_step;
    int weight[K__COUNT]; /* of the events after a user's first */
};

struct order {
    uint64_t user, n;
    int64_t amount;
};

#define ORDER_RING 65536

struct gen {
    struct gen_opts o;
    uint64_t rng;
    uint64_t n; /* events generated */
    uint8_t *seen;
    uint64_t n_seen;
    struct order orders[ORDER_RING];
    uint64_t n_orders;
    int total_weight;
    uint64_t by_kind[K__COUNT];
};

/* One generated event: its line (newline included) and the fields a store
 * keys on. */
struct gen_event {
    char line[512];
    size_t len;
    const char *id; /* into line */
    size_t id_len;
    uint64_t user;
    int64_t ts;
    enum kind kind;
};

static inline void gen_opts_default(struct gen_opts *o)
{
    static const int w[K__COUNT] = {0, 120, 15, 25, 550, 150, 100, 40};
    memset(o, 0, sizeof(*o));
    o->users = 1000000;
    o->new_permille = 50;
    o->run_id = "r";
    o->seed = 1;
    o->ts_start = 1767225600000LL; /* 2026-01-01T00:00:00Z */
    o->ts_step = 1;
    memcpy(o->weight, w, sizeof(w));
}

/* --mix KIND=W,... */
static inline int gen_parse_mix(struct gen_opts *o, const char *spec)
{
    char *dup = strdup(spec), *save = NULL;
    if (!dup)
        return -1;
    for (char *tok = strtok_r(dup, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            goto bad;
        *eq = 0;
        int k;
        for (k = 1; k < K__COUNT; k++)
            if (strcmp(tok, kind_name[k]) == 0)
                break;
        if (k == K__COUNT)
            goto bad;
        o->weight[k] = atoi(eq + 1);
        if (o->weight[k] < 0)
            goto bad;
    }
    free(dup);
    return 0;
bad:
    fprintf(stderr, "bad --mix %s\n", spec);
    free(dup);
    return -1;
}

/* 0, or -1 (message printed) */
static inline int gen_init(struct gen *g, const struct gen_opts *o)
{
    memset(g, 0, sizeof(*g));
    g->o = *o;
    g->rng = o->seed * 0x9E3779B97F4A7C15ULL + 1;
    for (int k = 1; k < K__COUNT; k++)
        g->total_weight += o->weight[k];
    if (g->total_weight <= 0) {
        fprintf(stderr, "the mix has no weight\n");
        return -1;
    }
    g->seen = calloc((size_t)(o->users / 8 + 1), 1);
    if (!g->seen) {
        fprintf(stderr, "out of memory\n");
        return -1;
    }
    return 0;
}

static inline void gen_free(struct gen *g)
{
    free(g->seen);
    g->seen = NULL;
}

static inline uint64_t gen_rnd(struct gen *g)
{
    /* xorshift64* */
    uint64_t x = g->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    g->rng = x;
    return x * 2685821657736338717ULL;
}

static inline uint64_t gen_rnd_below(struct gen *g, uint64_t n)
{
    return n ? (gen_rnd(g) >> 11) % n : 0;
}

/* splitmix64's finaliser: a bijection of 64-bit values */
static inline uint64_t gen_mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

struct gen_line_buf {
    char *p;
};

static inline void gen_put(struct gen_line_buf *l, const char *s)
{
    size_t n = strlen(s);
    memcpy(l->p, s, n);
    l->p += n;
}

static inline void gen_put_u(struct gen_line_buf *l, uint64_t v)
{
    char tmp[24];
    int i = 0;
    do {
        tmp[i++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (i)
        *l->p++ = tmp[--i];
}

static inline void gen_put_i(struct gen_line_buf *l, int64_t v)
{
    if (v < 0) {
        *l->p++ = '-';
        gen_put_u(l, (uint64_t)(-v));
    } else {
        gen_put_u(l, (uint64_t)v);
    }
}

static inline void gen_put_hex(struct gen_line_buf *l, uint64_t v)
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--)
        *l->p++ = hex[(v >> (i * 4)) & 15];
}

static inline int gen_seen_get(const struct gen *g, uint64_t u)
{
    return (g->seen[u >> 3] >> (u & 7)) & 1;
}

static inline void gen_seen_set(struct gen *g, uint64_t u)
{
    g->seen[u >> 3] |= (uint8_t)(1u << (u & 7));
}

static inline enum kind gen_draw_kind(struct gen *g)
{
    int r = (int)gen_rnd_below(g, (uint64_t)g->total_weight);
    for (int k = 1; k < K__COUNT; k++) {
        if (r < g->o.weight[k])
            return (enum kind)k;
        r -= g->o.weight[k];
    }
    return K_PAGE_VIEW;
}

/* The next event. */
static inline void gen_next(struct gen *g, struct gen_event *ev)
{
    static const char code_chars[] = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    const struct gen_opts *o = &g->o;
    uint64_t n = g->n++;
    uint64_t user;
    if (o->seq_users)
        user = n % o->users;
    else if (g->n_seen < o->users &&
             (g->n_seen == 0 || gen_rnd_below(g, 1000) < (uint64_t)o->new_permille))
        user = g->n_seen; /* a new user */
    else
        user = gen_rnd_below(g, g->n_seen);
    enum kind k;
    if (!gen_seen_get(g, user)) {
        gen_seen_set(g, user);
        g->n_seen++;
        k = K_SIGNUP;
    } else {
        k = gen_draw_kind(g);
        if (k == K_REFUND && g->n_orders == 0)
            k = K_PAGE_VIEW;
    }
    struct order *ord = NULL;
    if (k == K_REFUND) {
        uint64_t have = g->n_orders < ORDER_RING ? g->n_orders : ORDER_RING;
        ord = &g->orders[(g->n_orders - 1 - gen_rnd_below(g, have)) % ORDER_RING];
        user = ord->user;
    }
    g->by_kind[k]++;
    int64_t ts = o->ts_start + (int64_t)n * o->ts_step;
    ev->user = user;
    ev->ts = ts;
    ev->kind = k;

    struct gen_line_buf lb = {ev->line}, *l = &lb;
    gen_put(l, "{\"id\":\"");
    ev->id = l->p;
    if (o->random_ids) {
        uint64_t key = o->seed * 0xD1B54A32D192ED03ULL + n;
        gen_put_hex(l, gen_mix64(key * 2));
        gen_put_hex(l, gen_mix64(key * 2 + 1));
    } else {
        gen_put(l, o->run_id);
        gen_put(l, "-");
        gen_put_u(l, n);
    }
    ev->id_len = (size_t)(l->p - ev->id);
    gen_put(l, "\",\"type\":\"");
    switch (k) {
    case K_SIGNUP:
        gen_put(l, "user.signup");
        break;
    case K_ORDER:
        gen_put(l, "order.paid");
        break;
    case K_REFUND:
        gen_put(l, "order.refunded");
        break;
    case K_COUPON:
        gen_put(l, "coupon.used");
        break;
    case K_PAGE_VIEW:
        gen_put(l, "page.view");
        break;
    case K_APP_OPEN:
        gen_put(l, "app.open");
        break;
    case K_CART_ADD:
        gen_put(l, "cart.add");
        break;
    default:
        gen_put(l, "search");
        break;
    }
    gen_put(l, "\",\"user\":\"u");
    gen_put_u(l, user);
    gen_put(l, "\",\"ts\":");
    gen_put_i(l, ts);
    gen_put(l, ",\"props\":{");
    switch (k) {
    case K_SIGNUP: {
        uint64_t ref = 0;
        int has_ref = 0;
        if (gen_rnd_below(g, 100) < 60 && g->n_seen > 1) {
            for (int tries = 0; tries < 4 && !has_ref; tries++) {
                ref = o->seq_users ? gen_rnd_below(g, n < o->users ? n : o->users)
                                   : gen_rnd_below(g, g->n_seen);
                has_ref = ref != user && gen_seen_get(g, ref);
            }
        }
        if (has_ref) {
            gen_put(l, "\"referrer\":\"u");
            gen_put_u(l, ref);
            gen_put(l, "\",\"channel\":\"invite\"");
        } else {
            gen_put(l, "\"channel\":\"organic\"");
        }
        break;
    }
    case K_ORDER: {
        int64_t amount = gen_rnd_below(g, 100) < 30 ? 10000 + (int64_t)gen_rnd_below(g, 40000)
                                                    : 1000 + (int64_t)gen_rnd_below(g, 9000);
        uint64_t on = g->n_orders++;
        struct order *slot = &g->orders[on % ORDER_RING];
        slot->user = user;
        slot->n = on;
        slot->amount = amount;
        gen_put(l, "\"order_id\":\"");
        gen_put(l, o->run_id);
        gen_put(l, "-o");
        gen_put_u(l, on);
        gen_put(l, "\",\"amount\":");
        gen_put_i(l, amount);
        gen_put(l, ",\"currency\":\"CNY\",\"items\":");
        gen_put_u(l, 1 + gen_rnd_below(g, 5));
        break;
    }
    case K_REFUND:
        gen_put(l, "\"order_id\":\"");
        gen_put(l, o->run_id);
        gen_put(l, "-o");
        gen_put_u(l, ord->n);
        gen_put(l, "\"");
        if (gen_rnd_below(g, 100) < 30 && ord->amount > 1) {
            gen_put(l, ",\"amount\":");
            gen_put_i(l, 1 + (int64_t)gen_rnd_below(g, (uint64_t)ord->amount / 2));
        }
        gen_put(l, ",\"reason\":\"return\"");
        break;
    case K_COUPON: {
        gen_put(l, "\"code\":\"NEW-");
        for (int i = 0; i < 13; i++)
            *l->p++ = code_chars[gen_rnd_below(g, sizeof(code_chars) - 1)];
        gen_put(l, "\",\"amount\":");
        gen_put_i(l, 5000 + (int64_t)gen_rnd_below(g, 20000));
        break;
    }
    case K_PAGE_VIEW:
        gen_put(l, "\"path\":\"/p/");
        gen_put_u(l, gen_rnd_below(g, 50000));
        gen_put(l, "\",\"referrer_url\":\"https://search.example/\",\"ms_on_page\":");
        gen_put_u(l, gen_rnd_below(g, 60000));
        break;
    case K_APP_OPEN:
        gen_put(l, gen_rnd_below(g, 2) ? "\"platform\":\"ios\",\"version\":\"5.2.1\""
                                       : "\"platform\":\"android\",\"version\":\"5.2.0\"");
        break;
    case K_CART_ADD:
        gen_put(l, "\"sku\":\"SKU-");
        gen_put_u(l, gen_rnd_below(g, 100000));
        gen_put(l, "\",\"qty\":");
        gen_put_u(l, 1 + gen_rnd_below(g, 3));
        gen_put(l, ",\"price\":");
        gen_put_u(l, 100 + gen_rnd_below(g, 20000));
        break;
    default:
        gen_put(l, "\"q\":\"winter jacket\",\"results\":");
        gen_put_u(l, gen_rnd_below(g, 500));
        break;
    }
    gen_put(l, "}}\n");
    ev->len = (size_t)(l->p - ev->line);
}

#endif
