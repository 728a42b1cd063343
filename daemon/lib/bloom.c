/* Each layer: m bits (a power of two), k = 7 probes by double hashing of
 * one 64-bit hash, sized at 10 bits per addition (~0.8% false positives). */
#include "lib/bloom.h"

#include <stdlib.h>

#include "lib/util.h"

#define PROBES 7
#define BITS_PER_ITEM 10

struct layer {
    uint64_t *bits;
    uint64_t mask; /* m - 1 */
    size_t n, cap;
};

struct bloom {
    struct layer *l;
    size_t n_layers;
};

static void layer_init(struct layer *l, size_t cap)
{
    uint64_t m = 64;
    while (m < (uint64_t)cap * BITS_PER_ITEM)
        m <<= 1;
    l->bits = xcalloc((size_t)(m / 64), sizeof(uint64_t));
    l->mask = m - 1;
    l->n = 0;
    l->cap = cap;
}

struct bloom *bloom_new(size_t expected)
{
    struct bloom *b = xcalloc(1, sizeof(*b));
    b->l = xcalloc(1, sizeof(*b->l));
    layer_init(&b->l[0], expected ? expected : 1024);
    b->n_layers = 1;
    return b;
}

void bloom_free(struct bloom *b)
{
    if (!b)
        return;
    for (size_t i = 0; i < b->n_layers; i++)
        free(b->l[i].bits);
    free(b->l);
    free(b);
}

/* FNV-1a, then a 64-bit finalizer so that both halves are well mixed. */
static uint64_t hash(const void *s, size_t n)
{
    const unsigned char *p = s;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

void bloom_add(struct bloom *b, const void *s, size_t n)
{
    struct layer *l = &b->l[b->n_layers - 1];
    if (l->n >= l->cap) {
        size_t cap = l->cap * 2;
        b->l = xrealloc(b->l, (b->n_layers + 1) * sizeof(*b->l));
        l = &b->l[b->n_layers++];
        layer_init(l, cap);
    }
    uint64_t h = hash(s, n), h1 = h, h2 = (h >> 32) | (h << 32) | 1;
    for (int i = 0; i < PROBES; i++) {
        uint64_t bit = (h1 + (uint64_t)i * h2) & l->mask;
        l->bits[bit / 64] |= (uint64_t)1 << (bit % 64);
    }
    l->n++;
}

int bloom_maybe(const struct bloom *b, const void *s, size_t n)
{
    uint64_t h = hash(s, n), h1 = h, h2 = (h >> 32) | (h << 32) | 1;
    for (size_t j = 0; j < b->n_layers; j++) {
        const struct layer *l = &b->l[j];
        int all = 1;
        for (int i = 0; i < PROBES && all; i++) {
            uint64_t bit = (h1 + (uint64_t)i * h2) & l->mask;
            all = (l->bits[bit / 64] >> (bit % 64)) & 1;
        }
        if (all)
            return 1;
    }
    return 0;
}

size_t bloom_bytes(const struct bloom *b)
{
    size_t t = 0;
    for (size_t i = 0; i < b->n_layers; i++)
        t += (size_t)(b->l[i].mask + 1) / 8;
    return t;
}
