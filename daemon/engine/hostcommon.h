/*
 * The parts of the host API that do not depend on where a plugin runs:
 * config accessors over YAML nodes, event properties, and JSON payload
 * objects. The host (host.c) fills its mktd_host table from here, and
 * its mktd_ctx begins with a struct ctx_base. (The SDK's test kit runs
 * the same host.)
 */
#ifndef MKTD_HOSTCOMMON_H
#define MKTD_HOSTCOMMON_H

#include <jansson.h>
#include <mktd/plugin.h>
#include <stdarg.h>

#include "config/yaml.h"
#include "lib/util.h"

/* The first member of every mktd_ctx. */
struct ctx_base {
    const char *campaign_id;
    const struct ynode *campaign_node; /* config_error(ctx, NULL, ...) points here */
    struct errs *errs;                 /* config errors go here (init only); may be NULL */
    json_t *pool;                      /* objects and strings handed out during one callback */
    /* Where log lines go: the host's logger. */
    void (*logv)(int level, const char *campaign, const char *fmt, va_list ap);
    /* note(): how many the callback made (counted, never formatted), and
     * when an explanation is asked (notes set by the caller) their text */
    int n_notes;
    json_t *notes;
};

/* A mktd_event's priv is the event's props object (json_t *, may be NULL). */

/* Fills the table's config, event, payload and log members (note too: a
 * debug log line for now). The caller fills the rest (campaign, actions,
 * clock, profile, state, counters, timers, unique keys, random, is_dry,
 * gauge_set). */
void hostcommon_fill(mktd_host *h);

/* Call after each callback: releases what it handed out (and its notes). */
void ctx_base_reset(struct ctx_base *b);

/* The JSON object behind a mktd_obj, and a new reference to it. */
json_t *hostcommon_obj_json(mktd_obj *o);

#endif
