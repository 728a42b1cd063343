/* A scalable Bloom filter of byte strings: "certainly not added" or "maybe
 * added". Full layers stay; a new one of twice the size takes further
 * additions, so the false-positive rate stays about 1% per layer. */
#ifndef MKTD_BLOOM_H
#define MKTD_BLOOM_H

#include <stddef.h>
#include <stdint.h>

struct bloom;

/* A filter sized for `expected` additions before its first new layer. */
struct bloom *bloom_new(size_t expected);
void bloom_free(struct bloom *b);
void bloom_add(struct bloom *b, const void *s, size_t n);
/* 0: never added; 1: maybe added. */
int bloom_maybe(const struct bloom *b, const void *s, size_t n);
size_t bloom_bytes(const struct bloom *b);

#endif
