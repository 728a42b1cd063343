/* ABI 1.1's host calls and rules on the real engine (the SDK's test kit):
 * state_iter, campaign-wide timers, random_for, groups (MKTD_F_EXCLUDED)
 * and frequency caps (MKTD_CAPPED), driven by a tiny plugin defined here. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/mock.h>

#include "check.h"

static const mktd_host *H;

static const char *prop_str(mktd_ctx *ctx, const mktd_event *ev, const char *path, const char *def)
{
    mktd_value v;
    return H->prop(ctx, ev, path, &v) == MKTD_T_STRING ? v.s : def;
}

static int64_t prop_int(mktd_ctx *ctx, const mktd_event *ev, const char *path, int64_t def)
{
    mktd_value v;
    return H->prop(ctx, ev, path, &v) == MKTD_T_INT ? v.i : def;
}

/* state_iter's callback: "key=value," for each key; deletes each key seen
 * when asked (a change while iterating). */
struct seen {
    mktd_ctx *ctx;
    const char *user;
    int del;
    int stop_after;
    char buf[512];
};

static int seen_cb(void *arg, const char *key, const char *val, size_t len)
{
    struct seen *s = arg;
    size_t n = strlen(s->buf);
    snprintf(s->buf + n, sizeof s->buf - n, "%s=%.*s,", key, (int)len, val);
    if (s->del && H->state_del(s->ctx, s->user, key) < 0)
        return -EIO;
    return --s->stop_after == 0 ? 7 : 0;
}

static int t_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    (void)data;
    const char *u = ev->user;
    const char *who = prop_int(ctx, ev, "wide", 0) ? NULL : u;
    if (ev->depth > 0)
        return 0;
    if (strcmp(ev->type, "put") == 0) {
        const char *k = prop_str(ctx, ev, "k", "k"), *v = prop_str(ctx, ev, "v", "");
        return H->state_put(ctx, who, k, v, strlen(v));
    }
    if (strcmp(ev->type, "iter") == 0 || strcmp(ev->type, "putiter") == 0) {
        if (ev->type[0] == 'p') { /* written in this very event, then read */
            const char *k = prop_str(ctx, ev, "k", "k"), *v = prop_str(ctx, ev, "v", "");
            int rc = H->state_put(ctx, who, k, v, strlen(v));
            if (rc < 0)
                return rc;
        }
        struct seen s = {.ctx = ctx,
                         .user = who,
                         .del = (int)prop_int(ctx, ev, "del", 0),
                         .stop_after = (int)prop_int(ctx, ev, "stop", 0)};
        int rc = H->state_iter(ctx, who, prop_str(ctx, ev, "p", ""), seen_cb, &s);
        mktd_obj *o = H->obj_new(ctx);
        H->obj_str(o, "keys", s.buf);
        H->obj_int(o, "rc", rc);
        return H->emit(ctx, "t.iter", u, o);
    }
    if (strcmp(ev->type, "ctimer") == 0)
        return H->timer_campaign_set(ctx, prop_str(ctx, ev, "name", "c"),
                                     prop_int(ctx, ev, "due", 0));
    if (strcmp(ev->type, "cancel") == 0)
        return H->timer_campaign_cancel(ctx, prop_str(ctx, ev, "name", "c"));
    if (strcmp(ev->type, "rand") == 0) {
        unsigned char a[16] = {0}, b[16] = {0};
        int rc = H->random_for(ctx, a, sizeof a);
        if (rc == 0)
            rc = H->random_for(ctx, b, sizeof b);
        mktd_obj *o = H->obj_new(ctx);
        H->obj_int(o, "rc", rc);
        H->obj_int(o, "differ", memcmp(a, b, sizeof a) != 0);
        return H->emit(ctx, "t.rand", u, o);
    }
    if (strcmp(ev->type, "give") == 0) {
        /* what the flags were, kept as bookkeeping whatever they are */
        char f[16];
        snprintf(f, sizeof f, "%u", flags);
        int rc = H->state_put(ctx, u, "flags", f, strlen(f));
        if (rc < 0 || !(flags & MKTD_F_MATCH))
            return rc;
        rc = H->emit(ctx, prop_str(ctx, ev, "kind", "t.given"), u, NULL);
        if (rc < 0)
            return rc;
        snprintf(f, sizeof f, "%d", rc);
        return H->state_put(ctx, u, "emit_rc", f, strlen(f)); /* MKTD_CAPPED or 0 */
    }
    return 0;
}

static int t_timer(mktd_ctx *ctx, void *data, const char *user, const char *name, int64_t due,
                   unsigned flags)
{
    (void)data;
    (void)flags;
    mktd_obj *o = H->obj_new(ctx);
    H->obj_str(o, "name", name);
    H->obj_int(o, "due", due);
    H->obj_int(o, "user_null", user == NULL);
    return H->emit(ctx, "t.timer", user ? user : "campaign", o);
}

static int t_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    (void)ctx;
    (void)params;
    *data = NULL;
    return 0;
}

static const mktd_plugin *t_entry(const mktd_host *host)
{
    static const mktd_plugin d = {.abi_version = MKTD_ABI_VERSION,
                                  .struct_size = sizeof(mktd_plugin),
                                  .name = "t11",
                                  .version = "1",
                                  .init = t_init,
                                  .on_event = t_event,
                                  .on_timer = t_timer};
    H = host;
    return &d;
}

static int play(mktd_mock *m, const char *line)
{
    return mktd_mock_event(m, line);
}

/* The payload of the last action. */
static const char *last(mktd_mock *m)
{
    size_t n = mktd_mock_count(m);
    return n ? mktd_mock_action_at(m, n - 1)->payload : "(none)";
}

static const char *state(mktd_mock *m, const char *campaign, const char *user, const char *key)
{
    const char *v;
    size_t len;
    return mktd_mock_state(m, campaign, user, key, &v, &len) == 0 ? v : "(absent)";
}

static void test_state_iter(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, t_entry, "a", NULL), 0);
    CHECK_INT(mktd_mock_add(m, t_entry, "b", NULL), 0);
    /* keys in byte order; only the prefix; only this user and campaign */
    CHECK_INT(play(m, "{\"type\":\"put\",\"user\":\"u1\",\"ts\":1,\"props\":{\"k\":\"lot:02\","
                      "\"v\":\"two\"}}"),
              0);
    CHECK_INT(play(m, "{\"type\":\"put\",\"user\":\"u1\",\"ts\":2,\"props\":{\"k\":\"lot:01\","
                      "\"v\":\"one\"}}"),
              0);
    CHECK_INT(play(m, "{\"type\":\"put\",\"user\":\"u1\",\"ts\":3,\"props\":{\"k\":\"lou\","
                      "\"v\":\"x\"}}"),
              0);
    CHECK_INT(play(m, "{\"type\":\"put\",\"user\":\"u2\",\"ts\":4,\"props\":{\"k\":\"lot:00\","
                      "\"v\":\"other user\"}}"),
              0);
    CHECK_INT(play(m, "{\"type\":\"iter\",\"user\":\"u1\",\"ts\":5,\"props\":{\"p\":\"lot:\"}}"),
              0);
    /* campaigns a and b both put, so each sees its own two */
    CHECK_STR(last(m), "{\"keys\":\"lot:01=one,lot:02=two,\",\"rc\":0}");
    CHECK_INT(play(m, "{\"type\":\"iter\",\"user\":\"u1\",\"ts\":6}"), 0);
    CHECK_STR(last(m), "{\"keys\":\"lot:01=one,lot:02=two,lou=x,\",\"rc\":0}");
    /* written in the same event: seen */
    CHECK_INT(play(m, "{\"type\":\"putiter\",\"user\":\"u1\",\"ts\":7,\"props\":{\"k\":\"lot:00\","
                      "\"v\":\"zero\",\"p\":\"lot:\"}}"),
              0);
    CHECK_STR(last(m), "{\"keys\":\"lot:00=zero,lot:01=one,lot:02=two,\",\"rc\":0}");
    /* a non-zero return stops and is returned */
    CHECK_INT(play(m, "{\"type\":\"iter\",\"user\":\"u1\",\"ts\":8,\"props\":{\"p\":\"lot:\","
                      "\"stop\":2}}"),
              0);
    CHECK_STR(last(m), "{\"keys\":\"lot:00=zero,lot:01=one,\",\"rc\":7}");
    /* deleting while iterating: every key seen once, all gone after */
    CHECK_INT(play(m, "{\"type\":\"iter\",\"user\":\"u1\",\"ts\":9,\"props\":{\"p\":\"lot:\","
                      "\"del\":1}}"),
              0);
    CHECK_STR(last(m), "{\"keys\":\"lot:00=zero,lot:01=one,lot:02=two,\",\"rc\":0}");
    CHECK_STR(state(m, "a", "u1", "lot:01"), "(absent)");
    CHECK_STR(state(m, "a", "u1", "lou"), "x");
    CHECK_INT(play(m, "{\"type\":\"iter\",\"user\":\"u1\",\"ts\":10,\"props\":{\"p\":\"lot:\"}}"),
              0);
    CHECK_STR(last(m), "{\"keys\":\"\",\"rc\":0}");
    /* campaign-wide state (user NULL), apart from every user's */
    CHECK_INT(play(m, "{\"type\":\"put\",\"user\":\"u3\",\"ts\":11,\"props\":{\"wide\":1,"
                      "\"k\":\"g:1\",\"v\":\"w\"}}"),
              0);
    CHECK_INT(play(m, "{\"type\":\"iter\",\"user\":\"u3\",\"ts\":12,\"props\":{\"wide\":1}}"), 0);
    CHECK_STR(last(m), "{\"keys\":\"g:1=w,\",\"rc\":0}");
    CHECK_INT(play(m, "{\"type\":\"iter\",\"user\":\"u3\",\"ts\":13}"), 0);
    CHECK_STR(last(m), "{\"keys\":\"\",\"rc\":0}");
    /* a prefix ending in 0xff bytes still bounds the range */
    CHECK_INT(play(m, "{\"type\":\"put\",\"user\":\"u4\",\"ts\":14,\"props\":{\"k\":\"a\\u00ff\","
                      "\"v\":\"1\"}}"),
              0);
    CHECK_INT(play(m, "{\"type\":\"put\",\"user\":\"u4\",\"ts\":15,\"props\":{\"k\":\"b\","
                      "\"v\":\"2\"}}"),
              0);
    CHECK_INT(play(m, "{\"type\":\"iter\",\"user\":\"u4\",\"ts\":16,\"props\":{\"p\":\"a\"}}"), 0);
    CHECK_STR(last(m), "{\"keys\":\"a\xc3\xbf=1,\",\"rc\":0}");
    mktd_mock_free(m);
}

static void test_campaign_timers(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, t_entry, "a", NULL), 0);
    CHECK_INT(play(m, "{\"type\":\"ctimer\",\"user\":\"u1\",\"ts\":1000,\"props\":{\"name\":"
                      "\"exp\",\"due\":5000}}"),
              0);
    int64_t due = 0;
    /* a timer of no user: the kit looks it up as user NULL */
    CHECK_INT(mktd_mock_timer(m, "a", NULL, "exp", &due), 0);
    CHECK_INT(due, 5000);
    CHECK_INT(mktd_mock_timer(m, "a", "u1", "exp", &due), -ENOENT);
    size_t n = mktd_mock_count(m);
    CHECK_INT(mktd_mock_advance(m, 5000), 0);
    CHECK_INT(mktd_mock_count(m), n + 1);
    CHECK_STR(mktd_mock_action_at(m, n)->user, "campaign");
    CHECK_STR(last(m), "{\"name\":\"exp\",\"due\":5000,\"user_null\":1}");
    /* cancelled: never fires */
    CHECK_INT(play(m, "{\"type\":\"ctimer\",\"user\":\"u1\",\"ts\":6000,\"props\":{\"name\":"
                      "\"x\",\"due\":7000}}"),
              0);
    CHECK_INT(play(m, "{\"type\":\"cancel\",\"user\":\"u2\",\"ts\":6001,\"props\":{\"name\":"
                      "\"x\"}}"),
              0);
    n = mktd_mock_count(m);
    CHECK_INT(mktd_mock_advance(m, 9000), 0);
    CHECK_INT(mktd_mock_count(m), n);
    /* random_for gives fresh bytes each time */
    CHECK_INT(play(m, "{\"type\":\"rand\",\"user\":\"u1\",\"ts\":9001}"), 0);
    CHECK_STR(last(m), "{\"rc\":0,\"differ\":1}");
    mktd_mock_free(m);
}

static void test_groups(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, t_entry, "a", NULL), 0);
    CHECK_INT(mktd_mock_add(m, t_entry, "b", NULL), 0);
    CHECK_INT(mktd_mock_add(m, t_entry, "c", NULL), 0);
    mktd_mock_set_group(m, "a", "g");
    mktd_mock_set_group(m, "b", "g");
    /* a records for the event: b (same group) is excluded, c is not */
    CHECK_INT(play(m, "{\"type\":\"give\",\"user\":\"u1\",\"ts\":1}"), 0);
    CHECK_STR(mktd_mock_dump(m, 0), "t.given u1 {}\nt.given u1 {}\n");
    CHECK_STR(mktd_mock_action_at(m, 0)->campaign, "a");
    CHECK_STR(mktd_mock_action_at(m, 1)->campaign, "c");
    char want[16];
    snprintf(want, sizeof want, "%u", MKTD_F_ACTIVE | MKTD_F_EXCLUDED);
    CHECK_STR(state(m, "b", "u1", "flags"), want); /* called, MATCH clear */
    snprintf(want, sizeof want, "%u", MKTD_F_ACTIVE | MKTD_F_MATCH);
    CHECK_STR(state(m, "a", "u1", "flags"), want);
    /* a disabled: b gets the event */
    mktd_mock_set_enabled(m, "a", 0);
    CHECK_INT(play(m, "{\"type\":\"give\",\"user\":\"u1\",\"ts\":2}"), 0);
    CHECK_STR(mktd_mock_action_at(m, 2)->campaign, "b");
    CHECK_STR(mktd_mock_action_at(m, 3)->campaign, "c");
    /* a refused group name */
    mktd_mock_set_group(m, "c", "Bad Name");
    CHECK(strstr(mktd_mock_errors(m), "group: must be 1-64 characters") != NULL);
    mktd_mock_free(m);
}

static void test_caps(void)
{
    mktd_mock *m = mktd_mock_new();
    CHECK_INT(mktd_mock_add(m, t_entry, "a", NULL), 0);
    CHECK_INT(mktd_mock_add(m, t_entry, "b", NULL), 0);
    CHECK_INT(mktd_mock_set_caps(m, "[{id: touches, kinds: [t.x, t.y], max: 2, per: 10s}]"), 0);
    /* a then b each emit t.x: 2 recorded, the event's second is a's own
     * first... a: t.x (1), b: t.x (2) */
    CHECK_INT(play(m, "{\"type\":\"give\",\"user\":\"u1\",\"ts\":1000,\"props\":{\"kind\":"
                      "\"t.x\"}}"),
              0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_STR(state(m, "b", "u1", "emit_rc"), "0");
    /* both kinds count together, across campaigns: the next is capped */
    CHECK_INT(play(m, "{\"type\":\"give\",\"user\":\"u1\",\"ts\":5000,\"props\":{\"kind\":"
                      "\"t.y\"}}"),
              0);
    CHECK_INT(mktd_mock_count(m), 2);
    CHECK_STR(state(m, "a", "u1", "emit_rc"), "1"); /* MKTD_CAPPED */
    CHECK_STR(state(m, "b", "u1", "emit_rc"), "1");
    /* another user is not capped; a kind no cap names is not either */
    CHECK_INT(play(m, "{\"type\":\"give\",\"user\":\"u2\",\"ts\":5001,\"props\":{\"kind\":"
                      "\"t.y\"}}"),
              0);
    CHECK_INT(mktd_mock_count(m), 4);
    CHECK_INT(play(m, "{\"type\":\"give\",\"user\":\"u1\",\"ts\":5002,\"props\":{\"kind\":"
                      "\"t.z\"}}"),
              0);
    CHECK_INT(mktd_mock_count(m), 6);
    /* the window rolls: (ts - 10s, ts + 10s); at 11000 the actions at 1000
     * are out of it */
    CHECK_INT(play(m, "{\"type\":\"give\",\"user\":\"u1\",\"ts\":10999,\"props\":{\"kind\":"
                      "\"t.x\"}}"),
              0);
    CHECK_INT(mktd_mock_count(m), 6);
    CHECK_INT(play(m, "{\"type\":\"give\",\"user\":\"u1\",\"ts\":11000,\"props\":{\"kind\":"
                      "\"t.x\"}}"),
              0);
    CHECK_INT(mktd_mock_count(m), 8);
    /* both sides: an action dated before one recorded later counts it */
    CHECK_INT(play(m, "{\"type\":\"give\",\"user\":\"u3\",\"ts\":50000,\"props\":{\"kind\":"
                      "\"t.x\"}}"),
              0);
    CHECK_INT(mktd_mock_count(m), 10);
    CHECK_INT(play(m, "{\"type\":\"give\",\"user\":\"u3\",\"ts\":45000,\"props\":{\"kind\":"
                      "\"t.x\"}}"),
              0);
    CHECK_INT(mktd_mock_count(m), 10);
    /* bad caps are refused with the place */
    CHECK_INT(mktd_mock_set_caps(m, "[{id: t, kinds: [], max: 1, per: 1d}]"), -EINVAL);
    CHECK(strstr(mktd_mock_errors(m), "kinds: must name at least one action kind") != NULL);
    CHECK_INT(mktd_mock_set_caps(m, "[{id: t, kinds: [a], max: -1, per: 0s}]"), -EINVAL);
    CHECK(strstr(mktd_mock_errors(m), "max: must be an integer from 0") != NULL);
    CHECK(strstr(mktd_mock_errors(m), "per: must be a duration above 0") != NULL);
    mktd_mock_free(m);
}

int main(void)
{
    test_state_iter();
    test_campaign_timers();
    test_groups();
    test_caps();
    return check_done();
}
