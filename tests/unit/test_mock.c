/* The mock host, driven by a tiny plugin defined here. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/mock.h>

#include "check.h"

/* ---- the tiny plugin ---- */

static const mktd_host *H;

struct tiny {
    const char *tag;
    int64_t limit;
    int64_t delay;
    const char *fail_on;
    int react;
};

static int tiny_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    static const char *const keys[] = {"tag", "limit", "delay", "fail_on", "react", NULL};
    struct tiny t = {0};
    int bad = 0;
    bad |= H->check_keys(ctx, params, keys) < 0;
    bad |= H->get_str(ctx, params, "tag", 1, NULL, &t.tag) < 0;
    bad |= H->get_int(ctx, params, "limit", 0, -1, -1, 1000, &t.limit) < 0;
    bad |= H->get_duration(ctx, params, "delay", 0, 0, 0, 86400000, &t.delay) < 0;
    bad |= H->get_str(ctx, params, "fail_on", 0, NULL, &t.fail_on) < 0;
    bad |= H->get_bool(ctx, params, "react", 0, 0, &t.react) < 0;
    if (!bad && t.limit == 13)
        return H->config_error(ctx, H->node_get(params, "limit"), "unlucky limit %d", 13);
    if (bad)
        return -EINVAL;
    struct tiny *p = malloc(sizeof *p);
    *p = t;
    *data = p;
    return 0;
}

static void tiny_destroy(void *data)
{
    free(data);
}

static int emit_kind(mktd_ctx *ctx, const struct tiny *t, const char *what, const char *user,
                     mktd_obj *o)
{
    char kind[64];
    snprintf(kind, sizeof kind, "%s.%s", t->tag, what);
    return H->emit(ctx, kind, user, o);
}

static int64_t prop_int(mktd_ctx *ctx, const mktd_event *ev, const char *path, int64_t def)
{
    mktd_value v;
    return H->prop(ctx, ev, path, &v) == MKTD_T_INT ? v.i : def;
}

static const char *prop_str(mktd_ctx *ctx, const mktd_event *ev, const char *path, const char *def)
{
    mktd_value v;
    return H->prop(ctx, ev, path, &v) == MKTD_T_STRING ? v.s : def;
}

static int tiny_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    struct tiny *t = data;
    const char *u = ev->user;
    if (t->fail_on && strcmp(ev->type, t->fail_on) == 0) {
        /* Leave a trace in every store, then fail. */
        emit_kind(ctx, t, "doomed", u, NULL);
        H->state_put(ctx, u, "k", "doomed", 6);
        H->counter_add(ctx, u, "n", 5, -1, NULL);
        H->timer_set(ctx, u, "doom", ev->ts + 1);
        H->unique_claim(ctx, "codes", "DOOM");
        return -EIO;
    }
    if (ev->depth > 0) {
        if (t->react && (flags & MKTD_F_MATCH)) {
            mktd_obj *o = H->obj_new(ctx);
            H->obj_int(o, "depth", ev->depth);
            H->obj_str(o, "src", ev->source);
            return emit_kind(ctx, t, "echo", u, o);
        }
        return 0;
    }
    if (strcmp(ev->type, "probe") == 0) {
        mktd_obj *o = H->obj_new(ctx);
        H->obj_int(o, "flags", flags);
        H->obj_int(o, "ts", ev->ts);
        return emit_kind(ctx, t, "flags", u, o);
    }
    if (!(flags & MKTD_F_MATCH))
        return 0;
    if (strcmp(ev->type, "ping") == 0)
        return emit_kind(ctx, t, "ping", u, NULL);
    if (strcmp(ev->type, "count") == 0) {
        int64_t v = -1;
        int rc = H->counter_add(ctx, u, "n", prop_int(ctx, ev, "by", 1), t->limit, &v);
        mktd_obj *o = H->obj_new(ctx);
        H->obj_int(o, "rc", rc);
        H->obj_int(o, "value", v);
        H->obj_int(o, "get", H->counter_get(ctx, u, "n"));
        return emit_kind(ctx, t, "count", u, o);
    }
    if (strcmp(ev->type, "put") == 0) {
        const char *v = prop_str(ctx, ev, "v", "");
        return H->state_put(ctx, u, "k", v, strlen(v));
    }
    if (strcmp(ev->type, "get") == 0) {
        const char *v = NULL;
        size_t len = 0;
        int rc = H->state_get(ctx, u, "k", &v, &len);
        mktd_obj *o = H->obj_new(ctx);
        H->obj_str(o, "v", rc == 0 ? v : "-");
        H->obj_int(o, "len", rc == 0 ? (int64_t)len : -1);
        return emit_kind(ctx, t, "got", u, o);
    }
    if (strcmp(ev->type, "has") == 0) {
        /* val and len NULL: whether the key exists */
        mktd_obj *o = H->obj_new(ctx);
        H->obj_int(o, "rc", H->state_get(ctx, u, "k", NULL, NULL));
        return emit_kind(ctx, t, "has", u, o);
    }
    if (strcmp(ev->type, "del") == 0)
        return H->state_del(ctx, u, "k");
    if (strcmp(ev->type, "arm") == 0)
        return H->timer_set(ctx, u, prop_str(ctx, ev, "name", "t"),
                            ev->ts + t->delay + prop_int(ctx, ev, "after", 0));
    if (strcmp(ev->type, "disarm") == 0)
        return H->timer_cancel(ctx, u, prop_str(ctx, ev, "name", "t"));
    if (strcmp(ev->type, "claim") == 0) {
        const char *code = prop_str(ctx, ev, "code", "X");
        int rc = H->unique_claim(ctx, "codes", code);
        const char *owner = "-";
        H->unique_owner(ctx, "codes", code, &owner);
        mktd_obj *o = H->obj_new(ctx);
        H->obj_int(o, "rc", rc);
        H->obj_str(o, "owner", owner);
        return emit_kind(ctx, t, "claim", u, o);
    }
    if (strcmp(ev->type, "now") == 0) {
        mktd_obj *o = H->obj_new(ctx);
        H->obj_int(o, "now", H->now(ctx));
        H->obj_int(o, "ts", ev->ts);
        return emit_kind(ctx, t, "now", u, o);
    }
    if (strcmp(ev->type, "prof") == 0) {
        mktd_profile p;
        mktd_obj *o = H->obj_new(ctx);
        if (H->profile(ctx, prop_str(ctx, ev, "who", u), &p) == 0) {
            H->obj_int(o, "events", p.events);
            H->obj_int(o, "orders", p.orders);
            H->obj_int(o, "spent", p.spent);
            H->obj_int(o, "first", p.first_seen);
            H->obj_int(o, "last", p.last_seen);
        } else {
            H->obj_str(o, "none", "yes");
        }
        return emit_kind(ctx, t, "prof", u, o);
    }
    if (strcmp(ev->type, "who") == 0) {
        mktd_obj *o = H->obj_new(ctx);
        H->obj_str(o, "id", H->campaign_id(ctx));
        H->obj_int(o, "first", H->first_of_plugin(ctx));
        H->obj_int(o, "loaded_a", H->campaign_loaded(ctx, "a"));
        H->obj_int(o, "loaded_zz", H->campaign_loaded(ctx, "zz"));
        H->obj_int(o, "active_0", H->campaign_active(ctx, 0));
        return emit_kind(ctx, t, "who", u, o);
    }
    return 0;
}

static int tiny_timer(mktd_ctx *ctx, void *data, const char *user, const char *name, int64_t due,
                      unsigned flags)
{
    struct tiny *t = data;
    int64_t left = 0;
    mktd_obj *o = H->obj_new(ctx);
    H->obj_str(o, "name", name);
    H->obj_int(o, "due", due);
    H->obj_int(o, "now", H->now(ctx));
    H->obj_int(o, "flags", flags);
    H->obj_int(o, "gone", H->timer_get(ctx, user, name, &left) == -ENOENT);
    int rc = emit_kind(ctx, t, "timer", user, o);
    if (rc < 0)
        return rc;
    if (strcmp(name, "again") == 0)
        return H->timer_set(ctx, user, "t2", due);
    if (strcmp(name, "fail") == 0)
        return -EIO;
    return 0;
}

static int count_user(void *arg, const char *user, const mktd_profile *p)
{
    (void)user;
    (void)p;
    ++*(int *)arg;
    return 0;
}

static int tiny_load(mktd_ctx *ctx, void *data, int first)
{
    struct tiny *t = data;
    int users = 0;
    H->users_foreach(ctx, count_user, &users);
    mktd_obj *o = H->obj_new(ctx);
    H->obj_int(o, "first", first);
    H->obj_int(o, "users", users);
    return emit_kind(ctx, t, "load", "sys", o);
}

static const mktd_plugin tiny_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "tiny",
    .version = "1",
    .init = tiny_init,
    .destroy = tiny_destroy,
    .on_event = tiny_event,
    .on_timer = tiny_timer,
    .on_load = tiny_load,
};

static const mktd_plugin *tiny_entry(const mktd_host *host)
{
    H = host;
    return &tiny_plugin;
}

static const mktd_plugin other_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "other",
    .version = "1",
    .init = tiny_init,
    .destroy = tiny_destroy,
    .on_event = tiny_event,
};

static const mktd_plugin *other_entry(const mktd_host *host)
{
    H = host;
    return &other_plugin;
}

static const mktd_plugin future_plugin = {
    .abi_version = (uint32_t)((MKTD_ABI_MAJOR + 1) << 16),
    .struct_size = sizeof(mktd_plugin),
    .name = "future",
};

static const mktd_plugin *future_entry(const mktd_host *host)
{
    (void)host;
    return &future_plugin;
}

static const char *dump(mktd_mock *m, size_t from)
{
    return mktd_mock_dump(m, from);
}

/* ---- tests ---- */

static void test_config(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, tiny_entry, "a", "tag: a\nlimit: 3\ndelay: 90s\n"), 0);
    CHECK_STR(mktd_mock_errors(m), "");

    /* Several errors, each at its line and column. */
    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", "tag: b\nlimit: lots\nbogus: 1\n"), -EINVAL);
    const char *e = mktd_mock_errors(m);
    CHECK(strstr(e, "params:2:8:") != NULL);
    CHECK(strstr(e, "params:3:1:") != NULL);
    CHECK(strstr(e, "bogus") != NULL);

    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", "limit: 1\n"), -EINVAL);
    CHECK(strstr(mktd_mock_errors(m), "tag") != NULL);

    /* An error the plugin reports itself, at a node. */
    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", "tag: b\n\nlimit: 13\n"), -EINVAL);
    CHECK_STR(mktd_mock_errors(m), "params:3:8: unlucky limit 13");

    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", "tag: b\ndelay: soon\n"), -EINVAL);
    CHECK(strstr(mktd_mock_errors(m), "params:2:8:") != NULL);

    /* The params root must be a map; YAML syntax errors are reported. */
    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", "- tag\n- b\n"), -EINVAL);
    CHECK(strstr(mktd_mock_errors(m), "params:1:1:") != NULL);
    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", "tag: [b\n"), -EINVAL);
    CHECK(strstr(mktd_mock_errors(m), "params:") != NULL);

    /* No params: a required key is missing. */
    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", NULL), -EINVAL);
    CHECK(strlen(mktd_mock_errors(m)) > 0);

    /* A duplicate id, an id the daemon refuses and another ABI major are
     * refused. */
    CHECK_INT(mktd_mock_add(m, tiny_entry, "a", "tag: a\n"), -EINVAL);
    CHECK_INT(mktd_mock_add(m, tiny_entry, "B", "tag: b\n"), -EINVAL);
    CHECK(strstr(mktd_mock_errors(m), "campaign B: id: must be") != NULL);
    CHECK_INT(mktd_mock_add(m, future_entry, "f", NULL), -EINVAL);
    CHECK(strstr(mktd_mock_errors(m), "2.0") != NULL);

    /* Failed adds left nothing behind. */
    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", "tag: b\n"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e1\",\"type\":\"ping\",\"user\":\"u\",\"ts\":5}"), 0);
    CHECK_STR(dump(m, 0), "a.ping u {}\nb.ping u {}\n");
    mktd_mock_free(m);
}

static void test_campaign(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, tiny_entry, "a", "tag: a"), 0);
    CHECK_INT(mktd_mock_add(m, other_entry, "b", "tag: b"), 0);
    CHECK_INT(mktd_mock_add(m, tiny_entry, "c", "tag: c"), 0);
    mktd_mock_set_window(m, "c", 10, 20);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e1\",\"type\":\"who\",\"user\":\"u\",\"ts\":15}"), 0);
    CHECK_STR(dump(m, 0),
              "a.who u {\"id\":\"a\",\"first\":1,\"loaded_a\":1,\"loaded_zz\":0,\"active_0\":1}\n"
              "b.who u {\"id\":\"b\",\"first\":1,\"loaded_a\":1,\"loaded_zz\":0,\"active_0\":1}\n"
              "c.who u {\"id\":\"c\",\"first\":0,\"loaded_a\":1,\"loaded_zz\":0,\"active_0\":0}\n");

    /* on_load: first = 1 once per campaign; it sees every known user. */
    size_t n = mktd_mock_count(m);
    CHECK_INT(mktd_mock_load(m), 0);
    CHECK_STR(dump(m, n), "a.load sys {\"first\":1,\"users\":1}\n"
                          "c.load sys {\"first\":1,\"users\":1}\n");
    const mktd_mock_action *a = mktd_mock_action_at(m, n);
    CHECK(a && a->event_id == NULL);
    n = mktd_mock_count(m);
    CHECK_INT(mktd_mock_load(m), 0);
    CHECK_STR(dump(m, n), "a.load sys {\"first\":0,\"users\":1}\n"
                          "c.load sys {\"first\":0,\"users\":1}\n");
    mktd_mock_free(m);
}

static void test_flags(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, tiny_entry, "all", "tag: all"), 0);
    CHECK_INT(mktd_mock_add(m, tiny_entry, "other", "tag: other"), 0);
    CHECK_INT(mktd_mock_add(m, tiny_entry, "off", "tag: off"), 0);
    CHECK_INT(mktd_mock_add(m, tiny_entry, "win", "tag: win"), 0);
    CHECK_INT(mktd_mock_add(m, tiny_entry, "list", "tag: list"), 0);
    mktd_mock_set_when(m, "other", "order.paid");
    mktd_mock_set_enabled(m, "off", 0);
    mktd_mock_set_window(m, "win", 1000, 2000);
    mktd_mock_set_when(m, "list", "x, probe ,y");

    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e1\",\"type\":\"probe\",\"user\":\"u\",\"ts\":999}"),
              0);
    CHECK_STR(dump(m, 0), "all.flags u {\"flags\":3,\"ts\":999}\n"
                          "other.flags u {\"flags\":1,\"ts\":999}\n"
                          "off.flags u {\"flags\":0,\"ts\":999}\n"
                          "win.flags u {\"flags\":0,\"ts\":999}\n"
                          "list.flags u {\"flags\":3,\"ts\":999}\n");
    const mktd_mock_action *a = mktd_mock_action_at(m, 0);
    CHECK(a != NULL);
    if (a) {
        CHECK_INT(a->seq, 1);
        CHECK_INT(a->ts, 999);
        CHECK_STR(a->campaign, "all");
        CHECK_STR(a->event_id, "e1");
    }
    CHECK(mktd_mock_action_at(m, 5) == NULL);

    /* Window ends are inclusive; the window tests the event's own ts. */
    mktd_mock_clear(m);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e2\",\"type\":\"probe\",\"user\":\"u\",\"ts\":1000}"),
              0);
    CHECK(strstr(dump(m, 0), "win.flags u {\"flags\":3,\"ts\":1000}") != NULL);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e3\",\"type\":\"probe\",\"user\":\"u\",\"ts\":2001}"),
              0);
    CHECK(strstr(dump(m, 0), "win.flags u {\"flags\":0,\"ts\":2001}") != NULL);
    /* A late event keeps its ts for flags; its actions carry now. */
    size_t n = mktd_mock_count(m);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e4\",\"type\":\"probe\",\"user\":\"u\",\"ts\":1500}"),
              0);
    CHECK(strstr(dump(m, n), "win.flags u {\"flags\":3,\"ts\":1500}") != NULL);
    a = mktd_mock_action_at(m, n);
    CHECK(a && a->ts == 2001);
    CHECK_INT(mktd_mock_now(m), 2001);
    /* RFC 3339 ts; no ts takes now. */
    n = mktd_mock_count(m);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e5\",\"type\":\"now\",\"user\":\"u\","
                                 "\"ts\":\"1970-01-01T00:00:03Z\"}"),
              0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e6\",\"type\":\"now\",\"user\":\"u\"}"), 0);
    CHECK_STR(dump(m, n), "all.now u {\"now\":3000,\"ts\":3000}\n"
                          "all.now u {\"now\":3000,\"ts\":3000}\n");
    mktd_mock_free(m);
}

static void test_bad_lines(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, tiny_entry, "a", "tag: a"), 0);
    CHECK_INT(mktd_mock_event(m, "not json"), -EINVAL);
    CHECK_INT(mktd_mock_event(m, "[1]"), -EINVAL);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e\",\"type\":\"ping\"}"), -EINVAL);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e\",\"type\":\"ping\",\"user\":\"u\",\"ts\":-1}"),
              -EINVAL);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e\",\"type\":\"ping\",\"user\":\"u\",\"props\":3}"),
              -EINVAL);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e\",\"type\":\"order.paid\",\"user\":\"u\","
                                 "\"props\":{\"order_id\":\"o1\"}}"),
              -EINVAL);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e\",\"type\":\"order.paid\",\"user\":\"u\","
                                 "\"props\":{\"order_id\":\"o1\",\"amount\":1.5}}"),
              -EINVAL);
    CHECK_INT(mktd_mock_count(m), 0);
    /* An id is optional for the mock. */
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"ping\",\"user\":\"u\",\"props\":null}"), 0);
    const mktd_mock_action *a = mktd_mock_action_at(m, 0);
    CHECK(a && a->event_id != NULL);
    CHECK_INT(mktd_mock_event(m, "{\"id\":null,\"type\":\"ping\",\"user\":\"u\"}"), 0);
    CHECK_INT(mktd_mock_count(m), 2);
    /* An id played before is a duplicate: nothing happens. */
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"d1\",\"type\":\"ping\",\"user\":\"u\"}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"d1\",\"type\":\"ping\",\"user\":\"w\"}"),
              MKTD_MOCK_DUPLICATE);
    CHECK_INT(mktd_mock_count(m), 3);
    /* A repeated top-level key, as the daemon answers it. */
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"d2\",\"type\":\"ping\",\"user\":\"u\","
                                 "\"user\":\"v\"}"),
              -EINVAL);
    mktd_mock_free(m);
}

static void test_profile(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, tiny_entry, "a", "tag: a"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e1\",\"type\":\"prof\",\"user\":\"u\",\"ts\":500}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e2\",\"type\":\"order.paid\",\"user\":\"u\","
                                 "\"ts\":300,\"props\":{\"order_id\":\"o1\",\"amount\":250}}"),
              0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e3\",\"type\":\"order.paid\",\"user\":\"u\","
                                 "\"ts\":900,\"props\":{\"order_id\":\"o1\",\"amount\":50}}"),
              0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e4\",\"type\":\"prof\",\"user\":\"u\",\"ts\":700}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e5\",\"type\":\"prof\",\"user\":\"v\","
                                 "\"ts\":700,\"props\":{\"who\":\"nobody\"}}"),
              0);
    CHECK_STR(dump(m, 0),
              "a.prof u {\"events\":1,\"orders\":0,\"spent\":0,\"first\":500,\"last\":500}\n"
              "a.prof u {\"events\":4,\"orders\":2,\"spent\":300,\"first\":300,\"last\":900}\n"
              "a.prof v {\"none\":\"yes\"}\n");

    /* A profile set by the test, with the automatic one off. */
    mktd_mock_auto_profile(m, 0);
    mktd_profile p = {.events = 7, .orders = 2, .spent = 10, .first_seen = 1, .last_seen = 2};
    mktd_mock_set_profile(m, "w", &p);
    size_t n = mktd_mock_count(m);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e6\",\"type\":\"prof\",\"user\":\"w\"}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e7\",\"type\":\"prof\",\"user\":\"x\"}"), 0);
    CHECK_STR(dump(m, n),
              "a.prof w {\"events\":7,\"orders\":2,\"spent\":10,\"first\":1,\"last\":2}\n"
              "a.prof x {\"none\":\"yes\"}\n");
    mktd_mock_free(m);
}

static void test_state_counters(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, tiny_entry, "a", "tag: a\nlimit: 2"), 0);
    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", "tag: b"), 0);
    const char *count = "{\"type\":\"count\",\"user\":\"u\"}";
    CHECK_INT(mktd_mock_event(m, count), 0);
    CHECK_INT(mktd_mock_event(m, count), 0);
    CHECK_INT(mktd_mock_event(m, count), 0);
    CHECK_STR(dump(m, 0), "a.count u {\"rc\":0,\"value\":1,\"get\":1}\n"
                          "b.count u {\"rc\":0,\"value\":1,\"get\":1}\n"
                          "a.count u {\"rc\":0,\"value\":2,\"get\":2}\n"
                          "b.count u {\"rc\":0,\"value\":2,\"get\":2}\n"
                          "a.count u {\"rc\":1,\"value\":2,\"get\":2}\n"
                          "b.count u {\"rc\":0,\"value\":3,\"get\":3}\n");
    CHECK_INT(mktd_mock_counter(m, "a", "u", "n"), 2);
    CHECK_INT(mktd_mock_counter(m, "b", "u", "n"), 3);
    CHECK_INT(mktd_mock_counter(m, "a", "v", "n"), 0);
    CHECK_INT(mktd_mock_counter(m, "zz", "u", "n"), 0);
    /* A negative delta is within the limit. */
    mktd_mock_clear(m);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"count\",\"user\":\"u\",\"props\":{\"by\":-2}}"), 0);
    CHECK_STR(dump(m, 0), "a.count u {\"rc\":0,\"value\":0,\"get\":0}\n"
                          "b.count u {\"rc\":0,\"value\":1,\"get\":1}\n");

    /* State per campaign and user. */
    mktd_mock_clear(m);
    mktd_mock_set_when(m, "b", "get");
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"put\",\"user\":\"u\",\"props\":{\"v\":\"hello\"}}"),
              0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"get\",\"user\":\"u\"}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"get\",\"user\":\"v\"}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"del\",\"user\":\"u\"}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"del\",\"user\":\"u\"}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"get\",\"user\":\"u\"}"), 0);
    CHECK_STR(dump(m, 0), "a.got u {\"v\":\"hello\",\"len\":5}\n"
                          "b.got u {\"v\":\"-\",\"len\":-1}\n"
                          "a.got v {\"v\":\"-\",\"len\":-1}\n"
                          "b.got v {\"v\":\"-\",\"len\":-1}\n"
                          "a.got u {\"v\":\"-\",\"len\":-1}\n"
                          "b.got u {\"v\":\"-\",\"len\":-1}\n");

    /* state_get with val and len NULL: whether the key exists. */
    mktd_mock_clear(m);
    mktd_mock_set_when(m, "b", NULL);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"put\",\"user\":\"u\",\"props\":{\"v\":\"x\"}}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"has\",\"user\":\"u\"}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"has\",\"user\":\"v\"}"), 0);
    CHECK_STR(dump(m, 0), "a.has u {\"rc\":0}\n"
                          "b.has u {\"rc\":0}\n"
                          "a.has v {\"rc\":-2}\n"
                          "b.has v {\"rc\":-2}\n");

    /* Unique keys are database-wide. */
    mktd_mock_clear(m);
    mktd_mock_set_when(m, "b", NULL);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"claim\",\"user\":\"u\",\"props\":{\"code\":\"C1\"}}"),
              0);
    CHECK_STR(dump(m, 0), "a.claim u {\"rc\":0,\"owner\":\"a\"}\n"
                          "b.claim u {\"rc\":-17,\"owner\":\"a\"}\n");
    mktd_mock_free(m);
}

static void test_timers(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, tiny_entry, "a", "tag: a\ndelay: 1s"), 0);
    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", "tag: b\ndelay: 1s"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"arm\",\"user\":\"u2\",\"ts\":100}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"arm\",\"user\":\"u1\",\"ts\":100}"), 0);
    CHECK_INT(mktd_mock_event(
                  m, "{\"type\":\"arm\",\"user\":\"u3\",\"ts\":100,\"props\":{\"after\":-50}}"),
              0);
    /* A timer moved by a second set. */
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"arm\",\"user\":\"u4\",\"ts\":100,"
                                 "\"props\":{\"after\":5000,\"name\":\"late\"}}"),
              0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"arm\",\"user\":\"u4\",\"ts\":100,"
                                 "\"props\":{\"after\":4000,\"name\":\"late\"}}"),
              0);
    int64_t due = 0;
    CHECK_INT(mktd_mock_timer(m, "a", "u1", "t", &due), 0);
    CHECK_INT(due, 1100);
    CHECK_INT(mktd_mock_timer(m, "b", "u4", "late", &due), 0);
    CHECK_INT(due, 5100);
    CHECK_INT(mktd_mock_timer(m, "a", "u9", "t", &due), -ENOENT);
    CHECK_INT(mktd_mock_timer(m, "zz", "u1", "t", &due), -ENOENT);
    CHECK_INT(mktd_mock_count(m), 0);

    /* Due timers fire before the event: by due, campaign, user; stamped
     * with their due time. Disabled campaigns get them without ACTIVE. */
    mktd_mock_set_enabled(m, "b", 0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"e9\",\"type\":\"now\",\"user\":\"u\",\"ts\":2000}"), 0);
    CHECK_STR(dump(m, 0),
              "a.timer u3 {\"name\":\"t\",\"due\":1050,\"now\":1050,\"flags\":1,\"gone\":1}\n"
              "b.timer u3 {\"name\":\"t\",\"due\":1050,\"now\":1050,\"flags\":0,\"gone\":1}\n"
              "a.timer u1 {\"name\":\"t\",\"due\":1100,\"now\":1100,\"flags\":1,\"gone\":1}\n"
              "a.timer u2 {\"name\":\"t\",\"due\":1100,\"now\":1100,\"flags\":1,\"gone\":1}\n"
              "b.timer u1 {\"name\":\"t\",\"due\":1100,\"now\":1100,\"flags\":0,\"gone\":1}\n"
              "b.timer u2 {\"name\":\"t\",\"due\":1100,\"now\":1100,\"flags\":0,\"gone\":1}\n"
              "a.now u {\"now\":2000,\"ts\":2000}\n");
    const mktd_mock_action *a = mktd_mock_action_at(m, 0);
    CHECK(a && a->ts == 1050 && a->event_id == NULL);
    a = mktd_mock_action_at(m, 6);
    CHECK(a && a->ts == 2000 && a->event_id && strcmp(a->event_id, "e9") == 0);
    CHECK_INT(mktd_mock_timer(m, "a", "u1", "t", &due), -ENOENT);
    mktd_mock_set_enabled(m, "b", 1);

    /* Advance: timers due at or before `until`, then now = until. A timer
     * set while firing that is due fires too. */
    mktd_mock_clear(m);
    mktd_mock_set_when(m, "b", "none");
    CHECK_INT(
        mktd_mock_event(m, "{\"type\":\"arm\",\"user\":\"u\",\"props\":{\"name\":\"again\"}}"), 0);
    CHECK_INT(
        mktd_mock_event(m, "{\"type\":\"disarm\",\"user\":\"u4\",\"props\":{\"name\":\"late\"}}"),
        0);
    CHECK_INT(mktd_mock_timer(m, "a", "u", "again", &due), 0);
    CHECK_INT(due, 3000);
    CHECK_INT(mktd_mock_advance(m, 4000), 0);
    CHECK_INT(mktd_mock_now(m), 4000);
    CHECK_STR(dump(m, 0),
              "a.timer u {\"name\":\"again\",\"due\":3000,\"now\":3000,\"flags\":1,\"gone\":1}\n"
              "a.timer u {\"name\":\"t2\",\"due\":3000,\"now\":3000,\"flags\":1,\"gone\":1}\n");
    CHECK_INT(mktd_mock_timer(m, "a", "u4", "late", &due), -ENOENT);
    CHECK_INT(mktd_mock_timer(m, "b", "u4", "late", &due), 0);
    mktd_mock_clear(m);
    CHECK_INT(mktd_mock_advance(m, 5099), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(mktd_mock_advance(m, 5100), 0);
    CHECK_STR(dump(m, 0),
              "b.timer u4 {\"name\":\"late\",\"due\":5100,\"now\":5100,\"flags\":1,\"gone\":1}\n");

    /* Window: a timer due outside it comes without ACTIVE. */
    mktd_mock_clear(m);
    mktd_mock_set_window(m, "a", 0, 6000);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"arm\",\"user\":\"u\",\"ts\":5500}"), 0);
    CHECK_INT(mktd_mock_advance(m, 7000), 0);
    CHECK_STR(dump(m, 0),
              "a.timer u {\"name\":\"t\",\"due\":6500,\"now\":6500,\"flags\":0,\"gone\":1}\n");
    mktd_mock_free(m);
}

static void test_chain(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, tiny_entry, "a", "tag: a\nreact: true"), 0);
    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", "tag: b\nreact: true"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"p\",\"type\":\"ping\",\"user\":\"u\",\"ts\":10}"), 0);
    CHECK_STR(dump(m, 0), "a.ping u {}\n"
                          "b.ping u {}\n"
                          "b.echo u {\"depth\":1,\"src\":\"a\"}\n"
                          "a.echo u {\"depth\":1,\"src\":\"b\"}\n"
                          "a.echo u {\"depth\":2,\"src\":\"b\"}\n"
                          "b.echo u {\"depth\":2,\"src\":\"a\"}\n"
                          "b.echo u {\"depth\":3,\"src\":\"a\"}\n"
                          "a.echo u {\"depth\":3,\"src\":\"b\"}\n"
                          "a.echo u {\"depth\":4,\"src\":\"b\"}\n"
                          "b.echo u {\"depth\":4,\"src\":\"a\"}\n");
    CHECK_INT(mktd_mock_count(m), 10);
    for (size_t i = 0; i < mktd_mock_count(m); i++) {
        const mktd_mock_action *a = mktd_mock_action_at(m, i);
        CHECK(a->event_id && strcmp(a->event_id, "p") == 0);
        CHECK_INT(a->ts, 10);
        CHECK_INT(a->seq, (int64_t)i + 1);
    }

    /* Internal events match `when` by their kind. */
    mktd_mock_clear(m);
    mktd_mock_set_when(m, "b", "a.ping");
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"q\",\"type\":\"ping\",\"user\":\"u\",\"ts\":20}"), 0);
    CHECK_STR(dump(m, 0), "a.ping u {}\n"
                          "b.echo u {\"depth\":1,\"src\":\"a\"}\n"
                          "a.echo u {\"depth\":2,\"src\":\"b\"}\n");
    mktd_mock_free(m);

    /* A campaign does not see its own actions. */
    m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, tiny_entry, "a", "tag: a\nreact: true"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"ping\",\"user\":\"u\"}"), 0);
    CHECK_STR(dump(m, 0), "a.ping u {}\n");

    /* A timer's actions chain with the due time and no event id. */
    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", "tag: b\nreact: true"), 0);
    mktd_mock_set_when(m, "b", "a.timer");
    mktd_mock_set_when(m, "a", "arm");
    mktd_mock_clear(m);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"arm\",\"user\":\"u\",\"ts\":100}"), 0);
    CHECK_INT(mktd_mock_advance(m, 1000), 0);
    CHECK_STR(dump(m, 0),
              "a.timer u {\"name\":\"t\",\"due\":100,\"now\":100,\"flags\":1,\"gone\":1}\n"
              "b.echo u {\"depth\":1,\"src\":\"a\"}\n");
    const mktd_mock_action *a = mktd_mock_action_at(m, 1);
    CHECK(a && a->ts == 100 && a->event_id == NULL);
    mktd_mock_free(m);

    /* on_load's actions chain at once, not with the next event. */
    m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, tiny_entry, "a", "tag: a"), 0);
    CHECK_INT(mktd_mock_add(m, other_entry, "b", "tag: b\nreact: true"), 0);
    mktd_mock_set_when(m, "b", "a.load");
    CHECK_INT(mktd_mock_load(m), 0);
    CHECK_STR(dump(m, 0), "a.load sys {\"first\":1,\"users\":0}\n"
                          "b.echo sys {\"depth\":1,\"src\":\"a\"}\n");
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"z\",\"type\":\"ping\",\"user\":\"u\",\"ts\":5}"), 0);
    CHECK_STR(dump(m, 2), "a.ping u {}\n");
    mktd_mock_free(m);
}

static void test_rollback(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, tiny_entry, "a", "tag: a"), 0);
    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", "tag: b\nfail_on: boom"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"count\",\"user\":\"u\",\"ts\":100}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"arm\",\"user\":\"u\",\"ts\":100,"
                                 "\"props\":{\"after\":4900}}"),
              0);
    size_t n = mktd_mock_count(m);
    int64_t due;

    /* The failing event undoes the timers fired before it, its actions,
     * state, counters, timers, unique keys, profile and clock move. */
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"x\",\"type\":\"boom\",\"user\":\"u\",\"ts\":6000}"),
              -EIO);
    CHECK_INT(mktd_mock_count(m), n);
    CHECK_INT(mktd_mock_now(m), 100);
    CHECK_INT(mktd_mock_timer(m, "a", "u", "t", &due), 0);
    CHECK_INT(due, 5000);
    CHECK_INT(mktd_mock_timer(m, "b", "u", "doom", &due), -ENOENT);
    CHECK_INT(mktd_mock_counter(m, "b", "u", "n"), 1);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"get\",\"user\":\"u\"}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"prof\",\"user\":\"u\"}"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"claim\",\"user\":\"u\","
                                 "\"props\":{\"code\":\"DOOM\"}}"),
              0);
    CHECK_STR(dump(m, n),
              "a.got u {\"v\":\"-\",\"len\":-1}\n"
              "b.got u {\"v\":\"-\",\"len\":-1}\n"
              "a.prof u {\"events\":4,\"orders\":0,\"spent\":0,\"first\":100,\"last\":100}\n"
              "b.prof u {\"events\":4,\"orders\":0,\"spent\":0,\"first\":100,\"last\":100}\n"
              "a.claim u {\"rc\":0,\"owner\":\"a\"}\n"
              "b.claim u {\"rc\":-17,\"owner\":\"a\"}\n");

    /* The timer fires again before the next event. */
    n = mktd_mock_count(m);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"now\",\"user\":\"u\",\"ts\":6000}"), 0);
    CHECK_STR(dump(m, n),
              "a.timer u {\"name\":\"t\",\"due\":5000,\"now\":5000,\"flags\":1,\"gone\":1}\n"
              "b.timer u {\"name\":\"t\",\"due\":5000,\"now\":5000,\"flags\":1,\"gone\":1}\n"
              "a.now u {\"now\":6000,\"ts\":6000}\n"
              "b.now u {\"now\":6000,\"ts\":6000}\n");

    /* A failure deep in a chain undoes the whole event. */
    mktd_mock_free(m);
    m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, tiny_entry, "a", "tag: a"), 0);
    CHECK_INT(mktd_mock_add(m, tiny_entry, "b", "tag: b\nfail_on: a.ping"), 0);
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"ping\",\"user\":\"u\",\"ts\":50}"), -EIO);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(mktd_mock_now(m), 0);

    /* A failing timer is undone alone and set aside (spec 12): the advance
     * goes on, the timer does not come back. */
    CHECK_INT(mktd_mock_event(m, "{\"type\":\"arm\",\"user\":\"u\",\"ts\":50,"
                                 "\"props\":{\"name\":\"fail\"}}"),
              0);
    CHECK_INT(mktd_mock_advance(m, 100), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    CHECK_INT(mktd_mock_now(m), 100);
    CHECK_INT(mktd_mock_timer(m, "a", "u", "fail", &due), -ENOENT);
    CHECK_INT(mktd_mock_timer(m, "b", "u", "fail", &due), -ENOENT);
    CHECK_INT(mktd_mock_advance(m, 200), 0);
    CHECK_INT(mktd_mock_count(m), 0);
    mktd_mock_free(m);
}

/* ---- forget (mktd_mock_forget, the daemon's engine_forget) ---- */

/* A plugin that keeps the last user it saw campaign-wide ("last") and a
 * mark per user; on_forget rewrites "last", writes under the forgotten
 * user (which the host deletes after), and fails when params say so. */
static const mktd_host *FH;

static int fg_fail; /* the next on_forget fails */

static int fg_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    (void)ctx, (void)params;
    *data = NULL;
    return 0;
}

static int fg_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    (void)data, (void)flags;
    if (ev->depth)
        return 0;
    mktd_obj *o = FH->obj_new(ctx);
    FH->obj_str(o, "user", ev->user);
    FH->obj_str(o, "note", ev->user); /* not a user-id key: left as it is */
    int rc = FH->emit(ctx, "fg.seen", "observer", o);
    if (rc >= 0)
        rc = FH->state_put(ctx, NULL, "last", ev->user, strlen(ev->user));
    if (rc >= 0)
        rc = FH->state_put(ctx, ev->user, "mark", "1", 1);
    return rc < 0 ? rc : 0;
}

static int fg_forget(mktd_ctx *ctx, void *data, const char *user, const char *pseudonym)
{
    const char *v;
    size_t n;
    (void)data;
    /* the user's own state is still there to read */
    if (FH->state_get(ctx, user, "mark", &v, &n) != 0)
        return 0; /* never seen here */
    int rc = FH->state_get(ctx, NULL, "last", &v, &n);
    if (rc == 0 && strcmp(v, user) == 0)
        rc = FH->state_put(ctx, NULL, "last", pseudonym, strlen(pseudonym));
    if (rc >= 0)
        rc = FH->state_put(ctx, user, "scratch", "x", 1);
    if (rc >= 0 && fg_fail)
        rc = -EIO;
    return rc < 0 ? rc : 0;
}

static const mktd_plugin fg_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "forgetter",
    .version = "test",
    .init = fg_init,
    .on_event = fg_event,
    .on_forget = fg_forget,
};

static const mktd_plugin *fg_entry(const mktd_host *host)
{
    FH = host;
    return &fg_plugin;
}

static void test_forget(void)
{
    mktd_mock *m = mktd_mock_new();
    char ps[64], ps2[64], want[256];
    const char *v;
    CHECK_INT(mktd_mock_add(m, fg_entry, "fg", NULL), 0);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"a\",\"type\":\"x\",\"user\":\"u1\",\"ts\":5}"), 0);
    /* a failing on_forget undoes the whole forget */
    fg_fail = 1;
    CHECK_INT(mktd_mock_forget(m, "u1", ps, sizeof ps), -EIO);
    CHECK_STR(mktd_mock_action_at(m, 0)->payload, "{\"user\":\"u1\",\"note\":\"u1\"}");
    CHECK_INT(mktd_mock_state(m, "fg", NULL, "last", &v, NULL), 0);
    CHECK_STR(v, "u1");
    CHECK_INT(mktd_mock_state(m, "fg", "u1", "mark", &v, NULL), 0);
    CHECK_INT(mktd_mock_state(m, "fg", "u1", "scratch", &v, NULL), -ENOENT);
    /* then it works: the payload's user-id key names the pseudonym, the
     * other key stays; the campaign-wide state was rewritten; what the
     * plugin wrote under the user went with the rest */
    fg_fail = 0;
    CHECK_INT(mktd_mock_forget(m, "u1", ps, sizeof ps), 0);
    snprintf(want, sizeof want, "{\"user\":\"%s\",\"note\":\"u1\"}", ps);
    CHECK_STR(mktd_mock_action_at(m, 0)->payload, want);
    CHECK_INT(mktd_mock_state(m, "fg", NULL, "last", &v, NULL), 0);
    CHECK_STR(v, ps);
    CHECK_INT(mktd_mock_state(m, "fg", "u1", "mark", &v, NULL), -ENOENT);
    CHECK_INT(mktd_mock_state(m, "fg", "u1", "scratch", &v, NULL), -ENOENT);
    /* a keyed hash: the same user gets the same pseudonym, another not */
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"b\",\"type\":\"x\",\"user\":\"u1\",\"ts\":6}"), 0);
    CHECK_INT(mktd_mock_forget(m, "u1", ps2, sizeof ps2), 0);
    CHECK_STR(ps2, ps);
    CHECK_INT(mktd_mock_event(m, "{\"id\":\"c\",\"type\":\"x\",\"user\":\"u2\",\"ts\":7}"), 0);
    CHECK_INT(mktd_mock_forget(m, "u2", ps2, sizeof ps2), 0);
    CHECK(strcmp(ps2, ps) != 0);
    /* a user id out of range is refused */
    CHECK_INT(mktd_mock_forget(m, "", ps2, sizeof ps2), -EINVAL);
    mktd_mock_free(m);
}

int main(void)
{
    test_config();
    test_campaign();
    test_flags();
    test_bad_lines();
    test_profile();
    test_state_counters();
    test_timers();
    test_chain();
    test_rollback();
    test_forget();
    return check_done();
}
