/* mktd replay (spec 13, 18): the events a daemon logged (daemon.event_log),
 * read from its database opened read-only, played in seq order through a
 * config against a throw-away database, time taken from the log: each event
 * with its logged ts and now = the largest received_at so far (the
 * engine's `clock: wall` rules, with the logged receipt times for the
 * machine's: timers due by then fire first, actions are stamped with it);
 * each under NEW.yaml (-c), or under the config that was live when it was
 * received. --diff plays them both ways and
 * compares: per campaign and kind the counts and money, then the users
 * whose actions differ.
 *
 * Coupon codes are drawn at random, so a replay issues other codes than the
 * daemon did: a logged coupon.used naming a code the daemon issued is
 * played with the code the replay issued for the same coupon (same
 * campaign, user and triggering event, or due time for a timer's), and
 * compared actions show every code as "*". */
#define _GNU_SOURCE
#include "cmd/replay.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd/cli.h"
#include "engine/engine.h"
#include "engine/event.h"
#include "engine/plugins.h"
#include "lib/util.h"
#include "store/eventlog.h"
#include "store/report_q.h"

#define WHO "mktd replay"
#define BATCH 1024
#define USERS_SHOWN 20
#define ACTIONS_SHOWN 10

/* ---- pure parts ---- */

long replay_config_at(const struct livedb_config *c, size_t n, int64_t t)
{
    long at = -1;
    for (size_t i = 0; i < n; i++)
        if (c[i].loaded_at <= t)
            at = (long)i; /* rows come by seq: the last one wins */
    return at >= 0 ? at : n ? 0 : -1;
}

json_t *replay_norm_action(int64_t ts, const char *campaign, const char *kind, const char *event_id,
                           const char *payload, size_t payload_len)
{
    json_t *p = json_loadb(payload, payload_len, 0, NULL);
    if (!p)
        return NULL;
    if (json_is_object(p) && json_is_string(json_object_get(p, "code")))
        json_object_set_new(p, "code", json_string("*"));
    return json_pack("{s:I, s:s, s:s, s:o, s:o}", "ts", (json_int_t)ts, "campaign", campaign,
                     "kind", kind, "event_id", event_id ? json_string(event_id) : json_null(),
                     "payload", p);
}

uint64_t replay_hash(uint64_t h, const json_t *a)
{
    char *text = json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS);
    for (const char *p = text ? text : ""; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 1099511628211ULL;
    }
    h ^= '\n'; /* actions apart */
    h *= 1099511628211ULL;
    free(text);
    return h;
}

char *replay_coupon_identity(const char *campaign, const char *user, const char *event_id,
                             int64_t ts, long ordinal)
{
    char *s = NULL;
    int n = event_id
                ? asprintf(&s,
                           "%s\x1f%s\x1f"
                           "e:%s\x1f%ld",
                           campaign, user, event_id, ordinal)
                : asprintf(&s, "%s\x1f%s\x1ft:%lld\x1f%ld", campaign, user, (long long)ts, ordinal);
    if (n < 0)
        abort();
    return s;
}

/* ---- one run over the log ---- */

struct run {
    struct livedb *live;
    int64_t from, to;
    int advance_to; /* --to: the clock moves there at the end */
    struct livedb_config *cfgs;
    size_t n_cfgs;
    json_t *used;   /* codes of the logged coupon.used events (a set) */
    json_t *issued; /* identity of a live coupon.issued whose code was used -> that code */
    json_t *wanted; /* those codes (a set): the coupon.used events to translate */
    char **dirs;
    size_t n_dirs;
};

struct side {
    const char *name;
    struct world *fixed; /* -c's world (taken by the engine), or NULL: the live configs */
    struct store *st;
    struct engine *e;
    long cfg_at;          /* the live config running, by index */
    int64_t max_received; /* the clock's floor */
    json_t *translate;    /* live code -> the code this run issued in its place */
    json_t *ordinals;     /* identity (ordinal 0) -> coupons of it seen so far */
    int64_t scanned;      /* actions looked at for codes, up to this seq */
    long events, errors;
};

static void add_used(void *arg, const char *code)
{
    json_object_set_new(arg, code, json_true());
}

struct issued_ctx {
    struct run *R;
    json_t *ordinals;
};

static long next_ordinal(json_t *ordinals, const char *campaign, const char *user,
                         const char *event_id, int64_t ts)
{
    char *key = replay_coupon_identity(campaign, user, event_id, ts, 0);
    json_int_t n = json_integer_value(json_object_get(ordinals, key));
    json_object_set_new(ordinals, key, json_integer(n + 1));
    free(key);
    return (long)n;
}

static void add_issued(void *arg, const char *campaign, const char *user, const char *event_id,
                       int64_t ts, const char *code)
{
    struct issued_ctx *c = arg;
    long k = next_ordinal(c->ordinals, campaign, user, event_id, ts);
    if (!json_object_get(c->R->used, code))
        return;
    char *id = replay_coupon_identity(campaign, user, event_id, ts, k);
    json_object_set_new(c->R->issued, id, json_string(code));
    free(id);
    json_object_set_new(c->R->wanted, code, json_true());
}

/* The codes this run issued for coupons whose live codes were used. */
struct scan_ctx {
    struct side *S;
    struct run *R;
};

static int scan_one(void *arg, const struct store_action *a)
{
    struct scan_ctx *c = arg;
    if (a->seq > c->S->scanned)
        c->S->scanned = a->seq;
    if (a->kind_len != 13 || memcmp(a->kind, "coupon.issued", 13) != 0)
        return 0;
    long k = next_ordinal(c->S->ordinals, a->campaign, a->user, a->event_id, a->ts);
    char *id = replay_coupon_identity(a->campaign, a->user, a->event_id, a->ts, k);
    json_t *live_code = json_object_get(c->R->issued, id);
    free(id);
    if (!live_code)
        return 0;
    json_t *p = json_loadb(a->payload, a->payload_len, 0, NULL);
    json_t *code = p ? json_object_get(p, "code") : NULL;
    if (json_is_string(code))
        json_object_set(c->S->translate, json_string_value(live_code), code);
    json_decref(p);
    return 0;
}

/* Commits the open batch, then learns the codes it issued. */
static int commit(struct run *R, struct side *S)
{
    int rc = engine_commit(S->e);
    if (rc < 0) {
        fprintf(stderr, WHO ": the throw-away database refused a commit: %s\n",
                store_errmsg(S->st));
        S->errors++;
        return -1;
    }
    if (json_object_size(R->issued)) {
        struct scan_ctx c = {S, R};
        if (store_actions_foreach(S->st, S->scanned, NULL, scan_one, &c) < 0)
            return -1;
    }
    return 0;
}

/* Swaps in the config live when an event received at t was. */
static int follow_config(struct run *R, struct side *S, int64_t t)
{
    long at = replay_config_at(R->cfgs, R->n_cfgs, t);
    if (at < 0) {
        fprintf(stderr, WHO ": the database records no config (table configs is empty): name one "
                            "with -c\n");
        return -1;
    }
    if (at == S->cfg_at)
        return 0;
    const struct livedb_config *c = &R->cfgs[at];
    struct errs errs = {0};
    struct config *cfg = config_load_string(c->path, c->text, c->len, &errs);
    char who[160];
    char when[40];
    rfc3339_format(c->loaded_at, when, sizeof(when));
    snprintf(who, sizeof(who), WHO ": the config loaded at %s (configs seq %lld): ", when,
             (long long)c->seq);
    for (size_t i = 0; !cfg && i < errs.n; i++)
        fprintf(stderr, "%s%s\n", who, errs.msg[i]);
    errs_free(&errs);
    struct world *w = cfg ? sim_world(who, cfg, R->dirs, R->n_dirs) : NULL;
    if (!w)
        return -1;
    if (!S->e) {
        int64_t printed;
        if (sim_start(WHO, w, NULL, 1, &S->st, &S->e, &printed) < 0)
            return -1;
    } else {
        char err[512];
        if (commit(R, S) < 0)
            return -1;
        if (engine_swap(S->e, w, err, sizeof(err)) < 0) {
            fprintf(stderr, "%s%s\n", who, err);
            world_free(w);
            return -1;
        }
    }
    S->cfg_at = at;
    return commit(R, S); /* on_load's actions */
}

struct play_ctx {
    struct run *R;
    struct side *S;
};

static int play(void *arg, const struct evlog_row *r)
{
    struct play_ctx *pc = arg;
    struct run *R = pc->R;
    struct side *S = pc->S;
    if (!S->fixed && follow_config(R, S, r->received_at) < 0)
        return -1;
    S->events++;
    /* now: the largest received_at so far (the daemon's wall clock), the
     * receipt time handed to the engine: the timers due by then fire
     * first, and the event's actions are stamped with it */
    if (r->received_at > S->max_received)
        S->max_received = r->received_at;
    struct decode_opts o = {.max_future_ms = INT64_MAX}; /* no limits on time in a replay */
    struct event ev;
    char detail[256] = "";
    char *echo = NULL;
    if (event_decode(r->body, r->body_len, &o, &ev, detail, sizeof(detail), &echo) != EV_OK) {
        fprintf(stderr, WHO ": logged event %lld (%s) does not decode: %s\n", (long long)r->seq,
                r->id, detail);
        free(echo);
        S->errors++;
        return 0;
    }
    free(echo);
    ev.has_ts = 1; /* as it was evaluated */
    ev.ts = r->ts;
    ev.dry = ev.explain = 0;
    json_t *code = ev.props ? json_object_get(ev.props, "code") : NULL;
    if (strcmp(ev.type, "coupon.used") == 0 && json_is_string(code) &&
        json_object_get(R->wanted, json_string_value(code))) {
        json_t *mine = json_object_get(S->translate, json_string_value(code));
        if (!mine) {
            /* the coupon may be in the open batch, or a timer due by now
             * (which the event would fire first) may issue it: fire them,
             * commit, and look at what was issued */
            if (engine_advance(S->e, S->max_received) < 0)
                S->errors++;
            if (commit(R, S) == 0)
                mine = json_object_get(S->translate, json_string_value(code));
        }
        if (mine)
            json_object_set(ev.props, "code", mine);
    }
    int n;
    switch (engine_event(S->e, &ev, S->max_received, &n, NULL, detail, sizeof(detail))) {
    case ENG_OK:
        break;
    case ENG_DUPLICATE: /* never: the log holds each accepted id once */
        break;
    default:
        fprintf(stderr,
                "{\"id\":\"%s\",\"status\":\"error\",\"error\":\"internal\",\"detail\":", ev.id);
        {
            struct sbuf b = {0};
            sb_json_str(&b, detail, strlen(detail));
            fprintf(stderr, "%.*s}\n", (int)b.len, b.s);
            sb_free(&b);
        }
        S->errors++;
        break;
    }
    event_clear(&ev);
    if (engine_batch_size(S->e) >= BATCH)
        commit(R, S);
    return 0;
}

/* Plays the log through one side; 0, or -1 (said why). */
static int run_side(struct run *R, struct side *S)
{
    S->cfg_at = -1;
    S->translate = json_object();
    S->ordinals = json_object();
    if (S->fixed) {
        int64_t printed;
        struct world *w = S->fixed;
        S->fixed = NULL;
        if (sim_start(WHO, w, NULL, 1, &S->st, &S->e, &printed) < 0)
            return -1;
        S->fixed = w; /* the engine runs it; kept as a mark */
        if (commit(R, S) < 0)
            return -1;
    }
    struct play_ctx pc = {R, S};
    int rc = livedb_events(R->live, R->from, R->to, play, &pc);
    if (rc == -EIO) {
        fprintf(stderr, WHO ": reading event_log: %s\n", livedb_errmsg(R->live));
        return -1;
    }
    if (rc)
        return -1;
    if (!S->e) /* nothing logged, and no config named */
        return 0;
    if (R->advance_to && engine_advance(S->e, R->to) < 0)
        S->errors++;
    return commit(R, S);
}

/* ---- --diff ---- */

struct tally {
    json_t *rows; /* "campaign\tkind" -> {campaign, kind, SIDE: {n, money}} */
    const char *side;
};

static json_t *row_of(struct tally *t, const char *campaign, const char *kind)
{
    char *key;
    if (asprintf(&key, "%s\t%s", campaign, kind) < 0)
        abort();
    json_t *row = json_object_get(t->rows, key);
    if (!row) {
        row = json_pack("{s:s, s:s}", "campaign", campaign, "kind", kind);
        json_object_set_new(t->rows, key, row);
    }
    free(key);
    json_t *side = json_object_get(row, t->side);
    if (!side) {
        side = json_pack("{s:I, s:n}", "n", (json_int_t)0, "money");
        json_object_set_new(row, t->side, side);
    }
    return side;
}

static void add_money(struct tally *t, const char *campaign, const char *kind, int64_t amount)
{
    json_t *side = row_of(t, campaign, kind);
    json_t *m = json_object_get(side, "money");
    json_object_set_new(side, "money",
                        json_integer((json_int_t)sat_add(json_integer_value(m), amount)));
}

static void count_cb(void *arg, const char *campaign, const char *kind, uint64_t n)
{
    struct tally *t = arg;
    json_object_set_new(row_of(t, campaign, kind), "n", json_integer((json_int_t)n));
}

static void issued_cb(void *arg, const char *campaign, const struct rq_issued *c)
{
    add_money(arg, campaign, "coupon.issued", c->value);
}

static void redeemed_cb(void *arg, const char *campaign, int64_t n, int64_t value)
{
    (void)n;
    add_money(arg, campaign, "coupon.redeemed", value);
}

static void amounts_cb(void *arg, const char *campaign, const char *kind, const char *role,
                       int64_t n, int64_t amount)
{
    (void)role, (void)n;
    add_money(arg, campaign, kind, amount);
}

/* Counts per campaign and kind and money (the reports' own sums, spec 13:
 * coupon value issued and redeemed, commission, clawback, rewards). */
static int tally_side(struct side *S, json_t *rows)
{
    struct tally t = {rows, S->name};
    struct rq_range all = {INT64_MIN, INT64_MAX, NULL};
    int64_t top = 0;
    if (!S->st)
        return 0;
    if (store_action_counts_since(S->st, 0, count_cb, &t, &top) < 0 ||
        rq_coupons_issued(S->st, &all, issued_cb, &t) < 0 ||
        rq_coupons_redeemed(S->st, &all, redeemed_cb, &t) < 0 ||
        rq_amounts(S->st, &all, amounts_cb, &t) < 0) {
        fprintf(stderr, WHO ": %s\n", store_errmsg(S->st));
        return -1;
    }
    return 0;
}

/* users' actions: pass 1 hashes each user's, pass 2 collects those shown */
struct users_ctx {
    json_t *hashes; /* user -> hash as hex string (pass 1) */
    json_t *shown;  /* user -> array of compared actions (pass 2), NULL in pass 1 */
    char *user;     /* the user under way (pass 1) */
    uint64_t h;
};

static void user_flush(struct users_ctx *c)
{
    if (!c->user)
        return;
    char hex[17];
    snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)c->h);
    json_object_set_new(c->hashes, c->user, json_string(hex));
    free(c->user);
    c->user = NULL;
}

static int users_cb(void *arg, const struct store_action *a)
{
    struct users_ctx *c = arg;
    json_t *list = NULL;
    if (c->shown && !(list = json_object_get(c->shown, a->user)))
        return 0;
    json_t *n =
        replay_norm_action(a->ts, a->campaign, a->kind, a->event_id, a->payload, a->payload_len);
    if (!n)
        n = json_pack("{s:I, s:s, s:s, s:s#}", "ts", (json_int_t)a->ts, "campaign", a->campaign,
                      "kind", a->kind, "payload", a->payload, (int)a->payload_len);
    if (list) {
        json_array_append(list, n);
    } else {
        if (!c->user || strcmp(c->user, a->user) != 0) {
            user_flush(c);
            c->user = xstrdup(a->user);
            c->h = 14695981039346656037ULL;
        }
        c->h = replay_hash(c->h, n);
    }
    json_decref(n);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void print_money(const json_t *m)
{
    if (json_is_integer(m))
        printf(" %13lld", (long long)json_integer_value(m));
    else
        printf(" %13s", "-");
}

static void print_actions_of(const char *side, const json_t *list)
{
    size_t i;
    json_t *a;
    if (!json_array_size(list)) {
        printf("    %-4s (none)\n", side);
        return;
    }
    json_array_foreach(list, i, a)
    {
        if (i == ACTIONS_SHOWN) {
            printf("    %-4s ... %zu more\n", side, json_array_size(list) - i);
            break;
        }
        char when[40];
        rfc3339_format(json_integer_value(json_object_get(a, "ts")), when, sizeof(when));
        char *p = json_dumps(json_object_get(a, "payload"), JSON_COMPACT | JSON_SORT_KEYS);
        printf("    %-4s %s %s %s %s\n", i ? "" : side, when,
               json_string_value(json_object_get(a, "campaign")),
               json_string_value(json_object_get(a, "kind")), p ? p : "");
        free(p);
    }
}

static int diff(struct run *R, struct side *L, struct side *N, int json_out, int64_t events)
{
    json_t *rows = json_object();
    int rc = -1;
    json_t *hl = json_object(), *hn = json_object(), *shown_l = json_object(),
           *shown_n = json_object(), *out = NULL;
    char **users = NULL;
    size_t n_users = 0, n_diff = 0;
    if (tally_side(L, rows) < 0 || tally_side(N, rows) < 0)
        goto out;
    struct users_ctx cl = {.hashes = hl}, cn = {.hashes = hn};
    if ((L->st && store_actions_by_user(L->st, users_cb, &cl) < 0) ||
        (N->st && store_actions_by_user(N->st, users_cb, &cn) < 0)) {
        free(cl.user);
        free(cn.user);
        fprintf(stderr, WHO ": reading the runs' actions failed\n");
        goto out;
    }
    user_flush(&cl);
    user_flush(&cn);
    /* the users whose actions differ, by id */
    users = xcalloc(json_object_size(hl) + json_object_size(hn) + 1, sizeof(char *));
    const char *u;
    json_t *v;
    json_object_foreach(hl, u, v)
    {
        json_t *o = json_object_get(hn, u);
        if (!o || strcmp(json_string_value(o), json_string_value(v)) != 0)
            users[n_users++] = (char *)u;
    }
    json_object_foreach(hn, u, v)
    {
        if (!json_object_get(hl, u))
            users[n_users++] = (char *)u;
    }
    n_diff = n_users;
    qsort(users, n_users, sizeof(char *), cmp_str);
    size_t shown = n_users < USERS_SHOWN ? n_users : USERS_SHOWN;
    for (size_t i = 0; i < shown; i++) {
        json_object_set_new(shown_l, users[i], json_array());
        json_object_set_new(shown_n, users[i], json_array());
    }
    struct users_ctx sl = {.hashes = hl, .shown = shown_l}, sn = {.hashes = hn, .shown = shown_n};
    if (shown && ((L->st && store_actions_by_user(L->st, users_cb, &sl) < 0) ||
                  (N->st && store_actions_by_user(N->st, users_cb, &sn) < 0))) {
        fprintf(stderr, WHO ": reading the runs' actions failed\n");
        goto out;
    }
    /* rows in campaign, kind order; a side without a row has n 0 */
    size_t n_rows = json_object_size(rows), k = 0;
    const char **keys = xcalloc(n_rows + 1, sizeof(char *));
    json_object_foreach(rows, u, v) keys[k++] = u;
    qsort(keys, n_rows, sizeof(char *), cmp_str);
    json_t *kinds = json_array();
    int differ = n_diff > 0;
    for (size_t i = 0; i < n_rows; i++) {
        json_t *row = json_object_get(rows, keys[i]);
        const char *sides[2] = {L->name, N->name};
        for (int s = 0; s < 2; s++)
            if (!json_object_get(row, sides[s]))
                json_object_set_new(row, sides[s],
                                    json_pack("{s:I, s:n}", "n", (json_int_t)0, "money"));
        json_t *a = json_object_get(row, L->name), *b = json_object_get(row, N->name);
        int same = json_equal(a, b);
        json_object_set_new(row, "differs", json_boolean(!same));
        differ |= !same;
        json_array_append(kinds, row);
    }
    free(keys);
    if (json_out) {
        json_t *ulist = json_array();
        for (size_t i = 0; i < shown; i++)
            json_array_append_new(ulist, json_pack("{s:s, s:O, s:O}", "user", users[i], L->name,
                                                   json_object_get(shown_l, users[i]), N->name,
                                                   json_object_get(shown_n, users[i])));
        out = json_pack("{s:I, s:b, s:o, s:I, s:o}", "events", (json_int_t)events, "differs",
                        differ, "kinds", kinds, "users_differ", (json_int_t)n_diff, "users", ulist);
        char *text = json_dumps(out, JSON_COMPACT);
        printf("%s\n", text ? text : "{}");
        free(text);
    } else {
        printf("%lld logged events replayed under %s and %s\n\n", (long long)events, L->name,
               N->name);
        printf("%-24s %-22s %8s %8s %13s %13s\n", "campaign", "kind", L->name, N->name,
               "money live", "money new");
        size_t i;
        json_t *row;
        json_array_foreach(kinds, i, row)
        {
            json_t *a = json_object_get(row, L->name), *b = json_object_get(row, N->name);
            printf("%-24s %-22s %8lld %8lld", json_string_value(json_object_get(row, "campaign")),
                   json_string_value(json_object_get(row, "kind")),
                   (long long)json_integer_value(json_object_get(a, "n")),
                   (long long)json_integer_value(json_object_get(b, "n")));
            print_money(json_object_get(a, "money"));
            print_money(json_object_get(b, "money"));
            printf("%s\n", json_is_true(json_object_get(row, "differs")) ? "  *" : "");
        }
        json_decref(kinds);
        if (!differ) {
            printf("\nno difference: every user's actions are the same under both\n");
        } else {
            printf("\nusers whose actions differ: %zu", n_diff);
            if (n_diff > shown)
                printf(" (the first %zu by id)", shown);
            printf("\n");
            for (size_t j = 0; j < shown; j++) {
                printf("  %s\n", users[j]);
                print_actions_of(L->name, json_object_get(shown_l, users[j]));
                print_actions_of(N->name, json_object_get(shown_n, users[j]));
            }
        }
    }
    (void)R;
    rc = 0;
out:
    json_decref(out);
    free(users);
    json_decref(rows);
    json_decref(hl);
    json_decref(hn);
    json_decref(shown_l);
    json_decref(shown_n);
    return rc;
}

/* ---- the command ---- */

int cli_replay(const char *config_path, const char *db_path, const char *from, const char *to,
               int do_diff, const char *format, char **plugin_dirs, size_t n_plugin_dirs)
{
    struct run R = {
        .from = INT64_MIN, .to = INT64_MAX, .dirs = plugin_dirs, .n_dirs = n_plugin_dirs};
    int json_out = 0;
    if (format && strcmp(format, "json") == 0)
        json_out = 1;
    else if (format && strcmp(format, "text") != 0) {
        fprintf(stderr, WHO ": --format %s: expected text or json\n", format);
        return 2;
    }
    if ((from && sim_parse_time(from, &R.from) < 0) || (to && sim_parse_time(to, &R.to) < 0)) {
        fprintf(stderr, WHO ": --from/--to %s: expected RFC 3339 or Unix ms\n",
                from && sim_parse_time(from, &R.from) < 0 ? from : to);
        return 2;
    }
    R.advance_to = to != NULL;
    if (do_diff && !config_path) {
        fprintf(stderr, WHO ": --diff compares the live configs with another: name it with -c\n");
        return 2;
    }
    char err[512];
    if (livedb_open(db_path, &R.live, err, sizeof(err)) < 0) {
        fprintf(stderr, WHO ": %s\n", err);
        return 2;
    }
    int code = 2;
    struct side L = {.name = "live"}, N = {.name = "new"};
    int64_t events = 0;
    if (livedb_configs(R.live, &R.cfgs, &R.n_cfgs) < 0 ||
        livedb_event_count(R.live, R.from, R.to, &events) < 0) {
        fprintf(stderr, WHO ": %s: %s%s\n", db_path, livedb_errmsg(R.live),
                strstr(livedb_errmsg(R.live), "no such table")
                    ? " (a database of an older mktd: it has no event log)"
                    : "");
        goto out;
    }
    if (!events)
        fprintf(stderr, WHO ": %s: no events logged%s (daemon.event_log keeps them)\n", db_path,
                from || to ? " in that period" : "");
    R.used = json_object();
    R.issued = json_object();
    R.wanted = json_object();
    if (livedb_used_codes(R.live, R.from, R.to, add_used, R.used) < 0) {
        fprintf(stderr, WHO ": %s\n", livedb_errmsg(R.live));
        goto out;
    }
    if (json_object_size(R.used)) {
        struct issued_ctx ic = {&R, json_object()};
        int rc = livedb_issued_codes(R.live, add_issued, &ic);
        json_decref(ic.ordinals);
        if (rc < 0) {
            fprintf(stderr, WHO ": %s\n", livedb_errmsg(R.live));
            goto out;
        }
    }
    struct side *main_side = &L;
    if (config_path) {
        struct errs errs = {0};
        struct config *cfg = config_load(config_path, &errs);
        for (size_t i = 0; !cfg && i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.msg[i]);
        errs_free(&errs);
        if (!cfg || !(N.fixed = sim_world(NULL, cfg, plugin_dirs, n_plugin_dirs)))
            goto out;
        main_side = &N;
    }
    if (run_side(&R, main_side) < 0)
        goto out;
    if (do_diff) {
        if (run_side(&R, &L) < 0)
            goto out;
        if (diff(&R, &L, &N, json_out, events) < 0)
            goto out;
    } else if (main_side->st) {
        print_actions(main_side->st, 0, NULL, stdout);
    }
    code = L.errors || N.errors ? 1 : 0;
out:
    if (N.fixed && !N.e)
        world_free(N.fixed); /* never handed to an engine */
    sim_end(L.st, L.e);
    sim_end(N.st, N.e);
    json_decref(L.translate);
    json_decref(L.ordinals);
    json_decref(N.translate);
    json_decref(N.ordinals);
    json_decref(R.used);
    json_decref(R.issued);
    json_decref(R.wanted);
    livedb_configs_free(R.cfgs, R.n_cfgs);
    livedb_close(R.live);
    plugins_unload_all();
    return code;
}
