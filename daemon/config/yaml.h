/* The YAML config as a tree of nodes that keep their file:line:col. */

#ifndef MKTD_YAML_H
#define MKTD_YAML_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/util.h"

enum ynode_kind { Y_SCALAR = 1, Y_SEQ = 2, Y_MAP = 3 }; /* = MKTD_NODE_* */

struct ynode {
    enum ynode_kind kind;
    const char *file; /* the document's file name (shared) */
    int line, col;    /* 1-based, where the node starts */
    /* Y_SCALAR */
    char *str; /* NUL-terminated text */
    size_t len;
    int plain; /* 1 for a plain scalar, 0 for quoted or block (always a string) */
    /* Y_SEQ: items[0..n); Y_MAP: keys[0..n) and vals[0..n) (keys are scalars) */
    size_t n;
    struct ynode **items;
    struct ynode **keys;
    struct ynode **vals;
};

struct ydoc {
    char *file;
    struct ynode *root; /* NULL for an empty document */
};

/* Parses a file (or text named `name`). On a syntax error (or a duplicate
 * map key, an alias, a second document) adds "FILE:LINE:COL: message" to
 * errs and returns NULL. */
struct ydoc *ydoc_load_file(const char *path, struct errs *errs);
struct ydoc *ydoc_load_string(const char *name, const char *text, size_t len, struct errs *errs);
void ydoc_free(struct ydoc *d);

/* The value under key in a map, or NULL (also when map is NULL or not a map). */
const struct ynode *ynode_get(const struct ynode *map, const char *key);

/* YAML 1.2 core schema resolution of a scalar. */
enum yscalar { YS_NULL, YS_BOOL, YS_INT, YS_FLOAT, YS_STR };
/* Resolves a scalar node; fills *i for YS_INT (in int64, else YS_FLOAT),
 * *d for YS_FLOAT and YS_INT, *b for YS_BOOL (any pointer may be NULL). A
 * non-scalar node gives YS_NULL. */
enum yscalar ynode_resolve(const struct ynode *n, int64_t *i, double *d, int *b);

/* Adds "FILE:LINE:COL: message" for node n to errs. */
void yerr(struct errs *errs, const struct ynode *n, const char *fmt, ...) MKTD_PRINTF_FMT(3, 4);

/* Refuses map keys not in the NULL-terminated list, naming the allowed
 * ones: "unknown key 'x' (allowed: a, b, c)". Returns the number refused. */
int ycheck_keys(struct errs *errs, const struct ynode *map, const char *const *allowed);
/* The message for the first key of map at or after *i not in allowed (its
 * index left in *i), malloc'd; NULL when there is none. */
char *yunknown_key(const struct ynode *map, const char *const *allowed, size_t *i);

/* A node as compact JSON text (scalars resolved by the core schema);
 * malloc'd. Used for `offer` payloads and condition values. */
char *ynode_to_json(const struct ynode *n);
/* The same as a jansson value (JSON null for NULL). */
json_t *ynode_to_jansson(const struct ynode *n);

#endif
