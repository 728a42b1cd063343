/*
 * The SDK's test kit: the daemon's own engine over a throw-away in-memory
 * database (see mktd/mock.h). What is here is bookkeeping only: the
 * campaigns a test added, turned into a config and a world for the engine
 * at every change; event lines through the daemon's decoder; the actions
 * read back from the store.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <mktd/mock.h>

#include "config/config.h"
#include "engine/engine.h"
#include "engine/event.h"
#include "engine/plugins.h"
#include "lib/log.h"
#include "lib/util.h"
#include "store/store.h"

/* The name the generated config goes by. */
#define CFG_NAME "mktd-mock"

struct camp {
    char *id;
    char *plugin;     /* the descriptor's name */
    struct ydoc *doc; /* the params, or NULL */
    int enabled;      /* default 1 */
    int64_t starts;   /* INT64_MIN: none */
    int64_t ends;     /* INT64_MAX: none */
    char *when;       /* comma-separated types; NULL: every event */
    char *group;      /* `group`, or NULL */
    int line;         /* where its map starts in the generated config */
};

struct mktd_mock {
    struct store *st;
    struct engine *e;
    struct camp **camps;
    size_t n_camps;
    int auto_profile;
    uint64_t serial; /* ids for events without one */

    mktd_mock_action *acts;
    size_t n_acts, cap_acts;
    int64_t read_seq; /* actions up to this seq are read */

    struct errs errs;
    char *errs_text;
    char *dump;
    char **vals; /* mktd_mock_state's answers, until the next play */
    size_t n_vals;
    char *caps; /* the top-level `caps:` list as YAML, or NULL */
};

static void note(const char *fmt, ...) MKTD_PRINTF_FMT(1, 2);

static void note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(MKTD_LOG_WARN, NULL, fmt, ap);
    va_end(ap);
}

const mktd_host *mktd_mock_host(void)
{
    return engine_host();
}

static struct camp *camp_find(mktd_mock *m, const char *id)
{
    for (size_t i = 0; id && i < m->n_camps; i++)
        if (strcmp(m->camps[i]->id, id) == 0)
            return m->camps[i];
    return NULL;
}

static void camp_free(struct camp *c)
{
    if (!c)
        return;
    free(c->id);
    free(c->plugin);
    ydoc_free(c->doc);
    free(c->when);
    free(c->group);
    free(c);
}

/* ---- the config and the world ---- */

/* s as a YAML double-quoted scalar (JSON's string syntax). */
static void yaml_quoted(struct sbuf *b, const char *s)
{
    json_t *j = json_string(s);
    char *q = j ? json_dumps(j, JSON_ENCODE_ANY) : NULL;
    sb_str(b, q ? q : "\"\"");
    free(q);
    json_decref(j);
}

static void when_list(struct sbuf *b, const char *types)
{
    sb_str(b, "    when: {event: [");
    int n = 0;
    const char *s = types;
    for (;;) {
        const char *end = strchr(s, ',');
        const char *a = s, *z = end ? end : s + strlen(s);
        while (a < z && (*a == ' ' || *a == '\t'))
            a++;
        while (z > a && (z[-1] == ' ' || z[-1] == '\t'))
            z--;
        if (z > a) {
            char *t = xstrndup(a, (size_t)(z - a));
            sb_str(b, n++ ? ", " : "");
            yaml_quoted(b, t);
            free(t);
        }
        if (!end)
            break;
        s = end + 1;
    }
    sb_str(b, "]}\n");
}

static int lines_of(const struct sbuf *b)
{
    int n = 1;
    for (size_t i = 0; i < b->len; i++)
        n += b->s[i] == '\n';
    return n;
}

/* The config of the campaigns, as YAML; params are hung in afterwards. */
static char *config_text(mktd_mock *m)
{
    struct sbuf b = {0};
    sb_str(&b, "daemon:\n  clock: event\n  database: \":memory:\"\n");
    sb_str(&b, m->n_camps ? "campaigns:\n" : "campaigns: []\n");
    for (size_t i = 0; i < m->n_camps; i++) {
        struct camp *c = m->camps[i];
        c->line = lines_of(&b);
        sb_str(&b, "  - id: ");
        yaml_quoted(&b, c->id);
        sb_str(&b, "\n    plugin: ");
        yaml_quoted(&b, c->plugin);
        sb_fmt(&b, "\n    enabled: %s\n", c->enabled ? "true" : "false");
        if (c->starts != INT64_MIN)
            sb_fmt(&b, "    starts: %" PRId64 "\n", c->starts);
        if (c->ends != INT64_MAX)
            sb_fmt(&b, "    ends: %" PRId64 "\n", c->ends);
        if (c->group) {
            sb_str(&b, "    group: ");
            yaml_quoted(&b, c->group);
            sb_str(&b, "\n");
        }
        if (c->when)
            when_list(&b, c->when);
    }
    if (m->caps) {
        sb_str(&b, "caps: ");
        sb_str(&b, m->caps);
        sb_str(&b, "\n");
    }
    return b.s;
}

/* The part of msg after "campaign ID: " when it starts so, else NULL. */
static const char *after_campaign(mktd_mock *m, const char *msg, struct camp **which)
{
    if (strncmp(msg, "campaign ", 9) != 0)
        return NULL;
    const char *id = msg + 9, *colon = strstr(id, ": ");
    if (!colon)
        return NULL;
    for (size_t i = 0; i < m->n_camps; i++) {
        struct camp *c = m->camps[i];
        if (strlen(c->id) == (size_t)(colon - id) && memcmp(c->id, id, (size_t)(colon - id)) == 0) {
            *which = c;
            return colon + 2;
        }
    }
    return NULL;
}

/* The engine's errors, as a test reads them: "params:LINE:COL: message"
 * at the params node concerned (the params root for the campaign as a
 * whole), else "campaign ID: message" (the generated config's places mean
 * nothing to the test). */
static void map_errors(mktd_mock *m, const struct errs *raw)
{
    for (size_t i = 0; i < raw->n; i++) {
        const char *msg = raw->msg[i], *rest;
        struct camp *c = NULL;
        int line, col, off = 0;
        if (strncmp(msg, "params:", 7) == 0 &&
            sscanf(msg, "params:%d:%d: %n", &line, &col, &off) == 2 && off > 0) {
            rest = after_campaign(m, msg + off, &c);
            errs_add(&m->errs, "params:%d:%d: %s", line, col, rest ? rest : msg + off);
        } else if (strncmp(msg, CFG_NAME ":", sizeof(CFG_NAME)) == 0 &&
                   sscanf(msg + sizeof(CFG_NAME), "%d:%d: %n", &line, &col, &off) == 2 && off > 0) {
            const char *text = msg + sizeof(CFG_NAME) + off;
            size_t k;
            int o2 = 0;
            rest = after_campaign(m, text, &c);
            if (rest && c->doc && c->doc->root && line == c->line && col == 5)
                errs_add(&m->errs, "params:%d:%d: %s", c->doc->root->line, c->doc->root->col, rest);
            else if (sscanf(text, "campaign #%zu: %n", &k, &o2) == 1 && o2 > 0 && k >= 1 &&
                     k <= m->n_camps)
                errs_add(&m->errs, "campaign %s: %s", m->camps[k - 1]->id, text + o2);
            else
                errs_add(&m->errs, "%s", text);
        } else {
            errs_add(&m->errs, "%s", msg);
        }
    }
}

/* A world of the campaigns as they are set; NULL with the errors in
 * m->errs. load: swapping it in calls on_load. */
static struct world *build(mktd_mock *m, int load)
{
    struct errs raw = {0};
    char *text = config_text(m);
    struct config *cfg = config_load_string(CFG_NAME, text, strlen(text), &raw);
    free(text);
    struct world *w = NULL;
    if (cfg) {
        cfg->no_load = !load;
        for (size_t i = 0; i < cfg->n_campaigns; i++) {
            const struct camp *c = m->camps[i];
            cfg->campaigns[i].params = c->doc ? c->doc->root : NULL;
            cfg->campaigns[i].when_any = c->when == NULL;
        }
        w = world_build(cfg, &raw);
        if (!w)
            config_free(cfg);
    }
    map_errors(m, &raw);
    errs_free(&raw);
    return w;
}

static void drop_vals(mktd_mock *m)
{
    for (size_t i = 0; i < m->n_vals; i++)
        free(m->vals[i]);
    free(m->vals);
    m->vals = NULL;
    m->n_vals = 0;
}

static void errs_clear(mktd_mock *m)
{
    errs_free(&m->errs);
    free(m->errs_text);
    m->errs_text = NULL;
}

/* Swaps in a world of the current settings. */
static int rebuild(mktd_mock *m, int load)
{
    errs_clear(m);
    struct world *w = build(m, load);
    if (!w)
        return -EINVAL;
    char err[1024];
    int rc = engine_swap(m->e, w, err, sizeof err);
    if (rc < 0) {
        errs_add(&m->errs, "%s", err);
        world_free(w);
    }
    return rc;
}

/* ---- actions ---- */

static int keep_action(void *arg, const struct store_action *a)
{
    mktd_mock *m = arg;
    if (m->n_acts == m->cap_acts) {
        m->cap_acts = m->cap_acts ? m->cap_acts * 2 : 32;
        m->acts = xrealloc(m->acts, m->cap_acts * sizeof(*m->acts));
    }
    mktd_mock_action *p = &m->acts[m->n_acts++];
    p->seq = a->seq;
    p->ts = a->ts;
    p->campaign = xstrdup(a->campaign);
    p->kind = xstrdup(a->kind);
    p->user = xstrdup(a->user);
    p->event_id = a->event_id ? xstrdup(a->event_id) : NULL;
    p->payload = xstrdup(a->payload);
    m->read_seq = a->seq;
    return 0;
}

static void read_actions(mktd_mock *m)
{
    if (store_actions_foreach(m->st, m->read_seq, NULL, keep_action, m) < 0)
        note("mock: reading actions: %s", store_errmsg(m->st));
}

static void action_clear(mktd_mock_action *a)
{
    free((char *)a->campaign);
    free((char *)a->kind);
    free((char *)a->user);
    free((char *)a->event_id);
    free((char *)a->payload);
}

/* ---- lifetime ---- */

static int open_engine(mktd_mock *m)
{
    struct engine_opts o = {.clock_event = 1, .fixed_profiles = !m->auto_profile};
    char err[512];
    if (engine_new(m->st, &o, &m->e, err, sizeof err) < 0) {
        fprintf(stderr, "mktd mock: %s\n", err);
        return -EIO;
    }
    return 0;
}

mktd_mock *mktd_mock_new(void)
{
    const char *env = getenv("MKTD_MOCK_LOG");
    log_level = env && strcmp(env, "1") == 0 ? MKTD_LOG_DEBUG : -1;
    mktd_mock *m = xcalloc(1, sizeof(*m));
    m->auto_profile = 1;
    char err[512];
    if (store_open(":memory:", 0, &m->st, err, sizeof err) < 0) {
        fprintf(stderr, "mktd mock: %s\n", err);
        free(m);
        return NULL;
    }
    if (open_engine(m) < 0 || rebuild(m, 0) < 0) {
        mktd_mock_free(m);
        return NULL;
    }
    return m;
}

void mktd_mock_free(mktd_mock *m)
{
    if (!m)
        return;
    engine_free(m->e);
    store_close(m->st);
    for (size_t i = 0; i < m->n_camps; i++)
        camp_free(m->camps[i]);
    free(m->camps);
    mktd_mock_clear(m);
    free(m->acts);
    errs_clear(m);
    free(m->dump);
    free(m->caps);
    drop_vals(m);
    free(m);
}

/* ---- campaigns ---- */

int mktd_mock_add(mktd_mock *m, mktd_plugin_entry_fn entry, const char *id, const char *params_yaml)
{
    errs_clear(m);
    if (!id || !*id) {
        errs_add(&m->errs, "campaign: an id is required");
        return -EINVAL;
    }
    if (camp_find(m, id)) {
        errs_add(&m->errs, "campaign %s: duplicate id", id);
        return -EINVAL;
    }
    char err[1024];
    const struct plugin_mod *mod = plugins_register(entry, engine_host(), err, sizeof err);
    if (!mod) {
        errs_add(&m->errs, "campaign %s: %s", id, err);
        return -EINVAL;
    }
    struct ydoc *doc = NULL;
    if (params_yaml) {
        doc = ydoc_load_string("params", params_yaml, strlen(params_yaml), &m->errs);
        if (!doc) {
            if (!m->errs.n)
                errs_add(&m->errs, "params: cannot be read");
            return -EINVAL;
        }
    }
    struct camp *c = xcalloc(1, sizeof(*c));
    c->id = xstrdup(id);
    c->plugin = xstrdup(mod->name);
    c->doc = doc;
    c->enabled = 1;
    c->starts = INT64_MIN;
    c->ends = INT64_MAX;
    m->camps = xrealloc(m->camps, (m->n_camps + 1) * sizeof(*m->camps));
    m->camps[m->n_camps++] = c;
    if (rebuild(m, 0) < 0) {
        m->n_camps--;
        camp_free(c);
        return -EINVAL;
    }
    return 0;
}

const char *mktd_mock_errors(mktd_mock *m)
{
    free(m->errs_text);
    m->errs_text = errs_join(&m->errs);
    return m->errs_text ? m->errs_text : "";
}

static struct camp *camp_or_warn(mktd_mock *m, const char *id)
{
    struct camp *c = camp_find(m, id);
    if (!c)
        fprintf(stderr, "mktd mock: no campaign '%s'\n", id ? id : "(null)");
    return c;
}

/* After a change of c's settings (saved in old): the new world, or, when
 * the daemon would refuse the config, the old settings back. */
static void settle(mktd_mock *m, struct camp *c, const struct camp *old)
{
    if (rebuild(m, 0) == 0)
        return;
    fprintf(stderr, "mktd mock: campaign %s: setting refused, kept as it was:\n%s\n", c->id,
            mktd_mock_errors(m));
    c->enabled = old->enabled;
    c->starts = old->starts;
    c->ends = old->ends;
}

void mktd_mock_set_enabled(mktd_mock *m, const char *id, int enabled)
{
    struct camp *c = camp_or_warn(m, id);
    if (!c)
        return;
    struct camp old = *c;
    c->enabled = !!enabled;
    settle(m, c, &old);
}

void mktd_mock_set_window(mktd_mock *m, const char *id, int64_t starts, int64_t ends)
{
    struct camp *c = camp_or_warn(m, id);
    if (!c)
        return;
    struct camp old = *c;
    c->starts = starts;
    c->ends = ends;
    settle(m, c, &old);
}

void mktd_mock_set_when(mktd_mock *m, const char *id, const char *types)
{
    struct camp *c = camp_or_warn(m, id);
    if (!c)
        return;
    char *old = c->when;
    c->when = types ? xstrdup(types) : NULL;
    if (rebuild(m, 0) == 0) {
        free(old);
        return;
    }
    fprintf(stderr, "mktd mock: campaign %s: `when` refused, kept as it was:\n%s\n", c->id,
            mktd_mock_errors(m));
    free(c->when);
    c->when = old;
}

void mktd_mock_set_group(mktd_mock *m, const char *id, const char *group)
{
    struct camp *c = camp_or_warn(m, id);
    if (!c)
        return;
    char *old = c->group;
    c->group = group ? xstrdup(group) : NULL;
    if (rebuild(m, 0) == 0) {
        free(old);
        return;
    }
    fprintf(stderr, "mktd mock: campaign %s: `group` refused, kept as it was:\n%s\n", c->id,
            mktd_mock_errors(m));
    free(c->group);
    c->group = old;
}

int mktd_mock_set_caps(mktd_mock *m, const char *yaml)
{
    char *old = m->caps;
    m->caps = yaml ? xstrdup(yaml) : NULL;
    if (rebuild(m, 0) == 0) {
        free(old);
        return 0;
    }
    fprintf(stderr, "mktd mock: `caps` refused, kept as they were:\n%s\n", mktd_mock_errors(m));
    free(m->caps);
    m->caps = old;
    return -EINVAL;
}

int mktd_mock_load(mktd_mock *m)
{
    drop_vals(m);
    int rc = rebuild(m, 1);
    read_actions(m);
    if (rc < 0 && m->errs.n)
        note("mock: %s", mktd_mock_errors(m));
    return rc;
}

/* ---- the profile and the clock ---- */

void mktd_mock_auto_profile(mktd_mock *m, int on)
{
    if (!!on == m->auto_profile)
        return;
    /* An engine of the other kind over the same database. */
    int64_t now = engine_now(m->e);
    engine_free(m->e);
    m->e = NULL;
    m->auto_profile = !!on;
    if (open_engine(m) < 0)
        abort();
    engine_set_now(m->e, now);
    if (rebuild(m, 0) < 0)
        fprintf(stderr, "mktd mock: %s\n", mktd_mock_errors(m));
}

void mktd_mock_set_profile(mktd_mock *m, const char *user, const mktd_profile *p)
{
    if (user && p && engine_set_profile(m->e, user, p) < 0)
        fprintf(stderr, "mktd mock: set_profile: %s\n", store_errmsg(m->st));
}

int64_t mktd_mock_now(mktd_mock *m)
{
    return engine_now(m->e);
}

void mktd_mock_set_now(mktd_mock *m, int64_t now)
{
    engine_set_now(m->e, now);
}

/* ---- playing ---- */

/* line with an id of the mock's own in place of a missing or null one. */
static char *with_id(mktd_mock *m, const char *line)
{
    json_t *root = json_loads(line, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        return NULL;
    }
    char id[32];
    snprintf(id, sizeof id, "mock-%" PRIu64, ++m->serial);
    json_object_set_new(root, "id", json_string(id));
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    return s;
}

int mktd_mock_event(mktd_mock *m, const char *json_line)
{
    drop_vals(m);
    if (!json_line)
        return -EINVAL;
    struct event ev;
    char detail[512], *echo = NULL, *line2 = NULL;
    /* As the daemon reads a line, without max_future (tests use fixed
     * times). */
    enum ev_status s =
        event_decode(json_line, strlen(json_line), NULL, &ev, detail, sizeof detail, &echo);
    free(echo);
    echo = NULL;
    if (s == EV_INVALID_EVENT && strcmp(detail, "missing field: id") == 0 &&
        (line2 = with_id(m, json_line))) {
        s = event_decode(line2, strlen(line2), NULL, &ev, detail, sizeof detail, &echo);
        free(echo);
    }
    if (s != EV_OK) {
        note("mock: %s: %s", s == EV_INVALID_JSON ? "invalid_json" : "invalid_event", detail);
        free(line2);
        return -EINVAL;
    }
    int n_actions;
    enum eng_result r = engine_event(m->e, &ev, wall_ms(), &n_actions, NULL, detail, sizeof detail);
    int rc = engine_commit(m->e);
    event_clear(&ev);
    free(line2);
    read_actions(m);
    if (r == ENG_INTERNAL) {
        note("mock: internal: %s", detail);
        return -EIO;
    }
    if (rc < 0)
        return rc;
    return r == ENG_DUPLICATE ? MKTD_MOCK_DUPLICATE : 0;
}

int mktd_mock_advance(mktd_mock *m, int64_t until)
{
    drop_vals(m);
    int rc = engine_advance(m->e, until);
    int crc = engine_commit(m->e);
    read_actions(m);
    return rc < 0 ? rc : crc < 0 ? crc : 0;
}

/* ---- looking at the results ---- */

size_t mktd_mock_count(mktd_mock *m)
{
    return m->n_acts;
}

const mktd_mock_action *mktd_mock_action_at(mktd_mock *m, size_t i)
{
    return i < m->n_acts ? &m->acts[i] : NULL;
}

const char *mktd_mock_dump(mktd_mock *m, size_t from)
{
    struct sbuf b = {0};
    sb_str(&b, "");
    for (size_t i = from; i < m->n_acts; i++)
        sb_fmt(&b, "%s %s %s\n", m->acts[i].kind, m->acts[i].user, m->acts[i].payload);
    free(m->dump);
    m->dump = b.s;
    return m->dump;
}

void mktd_mock_clear(mktd_mock *m)
{
    for (size_t i = 0; i < m->n_acts; i++)
        action_clear(&m->acts[i]);
    m->n_acts = 0;
}

int mktd_mock_timer(mktd_mock *m, const char *campaign, const char *user, const char *name,
                    int64_t *due)
{
    int64_t d;
    if (!campaign || !name)
        return -ENOENT;
    int rc = engine_timer(m->e, campaign, user, name, &d);
    if (rc == 0 && due)
        *due = d;
    return rc;
}

int64_t mktd_mock_counter(mktd_mock *m, const char *campaign, const char *user, const char *key)
{
    int64_t v = 0;
    if (!campaign || !key || engine_counter(m->e, campaign, user, key, &v) < 0)
        return 0;
    return v;
}

int mktd_mock_state(mktd_mock *m, const char *campaign, const char *user, const char *key,
                    const char **val, size_t *len)
{
    char *v;
    size_t n;
    if (!campaign || !key)
        return -ENOENT;
    int rc = engine_state(m->e, campaign, user, key, &v, &n);
    if (rc < 0)
        return rc;
    m->vals = xrealloc(m->vals, (m->n_vals + 1) * sizeof(*m->vals));
    m->vals[m->n_vals++] = v;
    if (val)
        *val = v;
    if (len)
        *len = n;
    return 0;
}

/* ---- forget ---- */

/* A recorded action read again: its user and payload as the store has
 * them now. */
static int reread_action(void *arg, const struct store_action *a)
{
    mktd_mock *m = arg;
    size_t lo = 0, hi = m->n_acts;
    while (lo < hi) { /* kept in seq order */
        size_t mid = lo + (hi - lo) / 2;
        if (m->acts[mid].seq < a->seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < m->n_acts && m->acts[lo].seq == a->seq) {
        free((char *)m->acts[lo].user);
        free((char *)m->acts[lo].payload);
        m->acts[lo].user = xstrdup(a->user);
        m->acts[lo].payload = xstrdup(a->payload);
    }
    return 0;
}

int mktd_mock_forget(mktd_mock *m, const char *user, char *pseudonym, size_t size)
{
    char err[512], ps[64];
    drop_vals(m);
    int rc = engine_forget(m->e, user, "mock", ps, sizeof ps, err, sizeof err);
    if (rc < 0) {
        note("mock: forget: %s", err);
        return rc;
    }
    if (pseudonym && size)
        snprintf(pseudonym, size, "%s", ps);
    int64_t from = m->n_acts ? m->acts[0].seq - 1 : m->read_seq;
    if (store_actions_foreach(m->st, from, NULL, reread_action, m) < 0)
        note("mock: reading actions: %s", store_errmsg(m->st));
    read_actions(m); /* any recorded by on_forget */
    return 0;
}
