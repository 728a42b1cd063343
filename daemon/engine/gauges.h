/*
 * Figures that plugins publish for /metrics (the host call gauge_set), kept
 * by the engine per campaign and name.
 *
 * A value set while an event is evaluated is pending: it is shown once its
 * batch commits (gauges_apply) and dropped when the event or the batch is
 * undone (gauges_drop back to a mark taken before), so that /metrics never
 * shows a figure of work that did not happen. Every function takes a NULL
 * table as an empty one.
 */
#ifndef MKTD_ENGINE_GAUGES_H
#define MKTD_ENGINE_GAUGES_H

#include <stddef.h>
#include <stdint.h>

struct gauges;

struct gauges *gauges_new(void);
void gauges_free(struct gauges *g);

/* Records value for (campaign, name) as pending; plugin is the label shown
 * beside the campaign. -ENOMEM, or 0. */
int gauges_set(struct gauges *g, const char *campaign, const char *plugin, const char *name,
               int64_t value);
/* A mark to drop back to: the number of pending values. */
size_t gauges_mark(const struct gauges *g);
/* Forgets the values set since mark (0: every pending value). */
void gauges_drop(struct gauges *g, size_t mark);
/* Shows the pending values, the latest of each gauge winning. With
 * replace, every value shown before is forgotten first (a reload: plugins
 * publish again in on_load). */
void gauges_apply(struct gauges *g, int replace);
/* The shown values, in the order they first appeared. */
void gauges_foreach(const struct gauges *g,
                    void (*cb)(void *arg, const char *campaign, const char *plugin,
                               const char *name, int64_t value),
                    void *arg);

#endif
