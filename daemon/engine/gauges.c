#include "engine/gauges.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"

/* One gauge; a slot exists from its first set, and is shown from the first
 * commit that applies a value to it. */
struct slot {
    char *campaign, *plugin, *name;
    int64_t value;
    int shown;
};

/* A value waiting for its batch's commit. */
struct pend {
    size_t slot;
    int64_t value;
};

struct gauges {
    struct slot *s;
    size_t n, cap;
    struct pend *p;
    size_t n_p, cap_p;
};

struct gauges *gauges_new(void)
{
    return xcalloc(1, sizeof(struct gauges));
}

static void slot_clear(struct slot *s)
{
    free(s->campaign);
    free(s->plugin);
    free(s->name);
}

void gauges_free(struct gauges *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++)
        slot_clear(&g->s[i]);
    free(g->s);
    free(g->p);
    free(g);
}

int gauges_set(struct gauges *g, const char *campaign, const char *plugin, const char *name,
               int64_t value)
{
    if (!g)
        return -ENOMEM;
    size_t i = 0;
    while (i < g->n && (strcmp(g->s[i].name, name) != 0 || strcmp(g->s[i].campaign, campaign) != 0))
        i++;
    if (i == g->n) {
        if (g->n == g->cap) {
            g->cap = g->cap ? 2 * g->cap : 8;
            g->s = xrealloc(g->s, g->cap * sizeof(*g->s));
        }
        g->s[i] = (struct slot){
            .campaign = xstrdup(campaign), .plugin = xstrdup(plugin), .name = xstrdup(name)};
        g->n++;
    }
    if (g->n_p == g->cap_p) {
        g->cap_p = g->cap_p ? 2 * g->cap_p : 16;
        g->p = xrealloc(g->p, g->cap_p * sizeof(*g->p));
    }
    g->p[g->n_p++] = (struct pend){.slot = i, .value = value};
    return 0;
}

size_t gauges_mark(const struct gauges *g)
{
    return g ? g->n_p : 0;
}

void gauges_drop(struct gauges *g, size_t mark)
{
    if (g && mark < g->n_p)
        g->n_p = mark;
}

void gauges_apply(struct gauges *g, int replace)
{
    if (!g)
        return;
    if (replace)
        for (size_t i = 0; i < g->n; i++)
            g->s[i].shown = 0;
    for (size_t i = 0; i < g->n_p; i++) {
        g->s[g->p[i].slot].value = g->p[i].value;
        g->s[g->p[i].slot].shown = 1;
    }
    g->n_p = 0;
    /* With nothing pending, slots never shown (a dropped first value) or
     * no longer shown (a reload) can go. */
    size_t k = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (g->s[i].shown)
            g->s[k++] = g->s[i];
        else
            slot_clear(&g->s[i]);
    }
    g->n = k;
}

void gauges_foreach(const struct gauges *g,
                    void (*cb)(void *arg, const char *campaign, const char *plugin,
                               const char *name, int64_t value),
                    void *arg)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n; i++)
        if (g->s[i].shown)
            cb(arg, g->s[i].campaign, g->s[i].plugin, g->s[i].name, g->s[i].value);
}
