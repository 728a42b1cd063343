#define _GNU_SOURCE
#include "config/diff.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/yaml.h"
#include "lib/util.h"

struct changes {
    struct config_change *v;
    size_t n;
};

static void add(struct changes *c, int restart, const char *key, const char *fmt, ...)
    MKTD_PRINTF_FMT(4, 5);

static void add(struct changes *c, int restart, const char *key, const char *fmt, ...)
{
    va_list ap;
    char *text;
    va_start(ap, fmt);
    if (vasprintf(&text, fmt, ap) < 0)
        abort();
    va_end(ap);
    c->v = xrealloc(c->v, (c->n + 1) * sizeof(*c->v));
    c->v[c->n++] = (struct config_change){xstrdup(key), text, restart};
}

static const char *or_none(const char *s)
{
    return s ? s : "(none)";
}

static int same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static char *joined(char *const *v, size_t n)
{
    struct sbuf b = {0};
    sb_str(&b, "[");
    for (size_t i = 0; i < n; i++)
        sb_fmt(&b, "%s%s", i ? ", " : "", v[i]);
    sb_str(&b, "]");
    return b.s;
}

/* A node as JSON ("null" when absent), to compare what was written. */
static char *as_json(const struct ynode *n)
{
    return n ? ynode_to_json(n) : xstrdup("null");
}

static const struct ynode *section(const struct config *c, const char *key)
{
    if (!c->doc || !c->doc->root || c->doc->root->kind != Y_MAP)
        return NULL;
    return ynode_get(c->doc->root, key);
}

static const struct ynode *daemon_key(const struct config *c, const char *key)
{
    const struct ynode *d = section(c, "daemon");
    return d && d->kind == Y_MAP ? ynode_get(d, key) : NULL;
}

static int same_node(const struct ynode *a, const struct ynode *b)
{
    char *x = as_json(a), *y = as_json(b);
    int same = strcmp(x, y) == 0;
    free(x);
    free(y);
    return same;
}

static const struct campaign_cfg *campaign(const struct config *c, const char *id)
{
    for (size_t i = 0; i < c->n_campaigns; i++)
        if (strcmp(c->campaigns[i].id, id) == 0)
            return &c->campaigns[i];
    return NULL;
}

size_t config_diff(const struct config *oc, const struct config *nc, struct config_change **out)
{
    struct changes c = {0};

    /* Only a restart: what the daemon opened or bound at start. */
    if (strcmp(oc->database, nc->database) != 0)
        add(&c, 1, "database", "%s -> %s", oc->database, nc->database);
    if (oc->clock_event != nc->clock_event)
        add(&c, 1, "clock", "%s -> %s", oc->clock_event ? "event" : "wall",
            nc->clock_event ? "event" : "wall");
    int same_listen = oc->n_listen == nc->n_listen;
    for (size_t i = 0; same_listen && i < oc->n_listen; i++)
        same_listen = strcmp(oc->listen[i], nc->listen[i]) == 0;
    if (!same_listen) {
        char *a = joined(oc->listen, oc->n_listen), *b = joined(nc->listen, nc->n_listen);
        add(&c, 1, "listen", "%s -> %s", a, b);
        free(a);
        free(b);
    }
    if (!same_str(oc->http, nc->http))
        add(&c, 1, "http", "%s -> %s", or_none(oc->http), or_none(nc->http));
    if (!same_str(oc->metrics, nc->metrics))
        add(&c, 1, "metrics", "%s -> %s", or_none(oc->metrics), or_none(nc->metrics));
    if (!oc->tokens_file != !nc->tokens_file)
        add(&c, 1, "auth", "turned %s", nc->tokens_file ? "on" : "off");
    if (!oc->tls_cert != !nc->tls_cert)
        add(&c, 1, "tls", "turned %s", nc->tls_cert ? "on" : "off");
    if (!same_node(daemon_key(oc, "cluster"), daemon_key(nc, "cluster")))
        add(&c, 1, "cluster", "changed (cluster.partitions never changes for a stream)");
    for (size_t i = 0; i < nc->n_campaigns; i++) {
        const struct campaign_cfg *o = campaign(oc, nc->campaigns[i].id);
        if (o && strcmp(o->plugin, nc->campaigns[i].plugin) != 0) {
            char key[128];
            snprintf(key, sizeof(key), "campaign %s", o->id);
            add(&c, 1, key, "plugin %s -> %s", o->plugin, nc->campaigns[i].plugin);
        }
    }

    /* Applied by a reload. */
    static const char *const live[] = {"plugin_dirs",  "auth",      "tls",    "socket_mode",
                                       "socket_group", "commit",    "limits", "log",
                                       "retention",    "event_log", NULL};
    for (size_t i = 0; live[i]; i++) {
        const char *k = live[i];
        if ((strcmp(k, "auth") == 0 && !oc->tokens_file != !nc->tokens_file) ||
            (strcmp(k, "tls") == 0 && !oc->tls_cert != !nc->tls_cert))
            continue; /* listed above */
        if (!same_node(daemon_key(oc, k), daemon_key(nc, k)))
            add(&c, 0, k, "%s",
                strcmp(k, "plugin_dirs") == 0
                    ? "changed (a plugin already loaded stays loaded until a restart)"
                    : "changed");
    }
    for (size_t i = 0; i < oc->n_campaigns; i++)
        if (!campaign(nc, oc->campaigns[i].id)) {
            char key[128];
            snprintf(key, sizeof(key), "campaign %s", oc->campaigns[i].id);
            add(&c, 0, key, "removed");
        }
    for (size_t i = 0; i < nc->n_campaigns; i++) {
        const struct campaign_cfg *n = &nc->campaigns[i], *o = campaign(oc, n->id);
        char key[128];
        snprintf(key, sizeof(key), "campaign %s", n->id);
        if (!o)
            add(&c, 0, key, "added");
        else if (strcmp(o->plugin, n->plugin) == 0 && !same_node(o->node, n->node))
            add(&c, 0, key, "changed");
    }
    int order = oc->n_campaigns == nc->n_campaigns;
    for (size_t i = 0; order && i < oc->n_campaigns; i++)
        order = strcmp(oc->campaigns[i].id, nc->campaigns[i].id) == 0;
    if (!order && oc->n_campaigns == nc->n_campaigns)
        add(&c, 0, "campaigns", "order changed");
    if (!same_node(section(oc, "caps"), section(nc, "caps")))
        add(&c, 0, "caps", "changed");
    if (!same_node(section(oc, "outputs"), section(nc, "outputs")))
        add(&c, 0, "outputs", "changed");
    *out = c.v;
    return c.n;
}

void config_changes_free(struct config_change *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(v[i].key);
        free(v[i].text);
    }
    free(v);
}
