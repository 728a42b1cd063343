/* store/privacy.c: pseudonyms, what forget deletes and rewrites, export,
 * the operations log. */
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "store/privacy.h"
#include "store/store.h"

static struct store *open_mem(void)
{
    struct store *s;
    char err[256];
    CHECK_INT(store_open(":memory:", 0, &s, err, sizeof err), 0);
    return s;
}

static void exec(struct store *s, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(store_sqlite(s), sql, NULL, NULL, &msg);
    CHECK_INT(rc, SQLITE_OK);
    if (msg)
        fprintf(stderr, "  %s\n", msg);
    sqlite3_free(msg);
}

/* The first column of the first row of q, as text ("" when none). */
static const char *one(struct store *s, const char *q)
{
    static char buf[1024];
    sqlite3_stmt *st;
    buf[0] = 0;
    if (sqlite3_prepare_v2(store_sqlite(s), q, -1, &st, NULL) != SQLITE_OK)
        return "(bad query)";
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, sizeof buf, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return buf;
}

static void test_pseudonym(void)
{
    struct store *a = open_mem(), *b = open_mem();
    char p1[PSEUDONYM_LEN + 1], p2[PSEUDONYM_LEN + 1], p3[PSEUDONYM_LEN + 1];
    CHECK_INT(store_pseudonym(a, "u1", p1), 0);
    CHECK_INT(strlen(p1), 42);
    CHECK_INT(strncmp(p1, "forgotten:", 10), 0);
    CHECK_INT(strspn(p1 + 10, "0123456789abcdef"), 32);
    CHECK_INT(store_pseudonym(a, "u1", p2), 0);
    CHECK_STR(p2, p1); /* the key is kept */
    CHECK_STR(one(a, "SELECT count(*) FROM secrets"), "1");
    CHECK_STR(one(a, "SELECT length(value) FROM secrets"), "32");
    CHECK_INT(store_pseudonym(a, "u2", p2), 0);
    CHECK(strcmp(p1, p2) != 0);
    CHECK_INT(store_pseudonym(b, "u1", p3), 0);
    CHECK(strcmp(p1, p3) != 0); /* a key per database */
    store_close(a);
    store_close(b);
}

static void test_user_keys(void)
{
    CHECK(privacy_user_key("referrer"));
    CHECK(privacy_user_key("referee"));
    CHECK(privacy_user_key("buyer"));
    CHECK(privacy_user_key("members"));
    CHECK(privacy_user_key("gift_user"));
    CHECK(privacy_user_key("team_users"));
    CHECK(!privacy_user_key("code"));
    CHECK(!privacy_user_key("user_count"));
    CHECK(!privacy_user_key("_user_x"));
}

static void test_forget_rows(void)
{
    struct store *s = open_mem();
    int64_t n = 0;
    exec(s, "INSERT INTO per_user(user, kind, campaign, key, v) VALUES "
            "('u1', 2, 'c', 'k', 'v'), ('u1', 3, 'c', 'n', 4), ('u1', 4, 'c', 't', 99), "
            "('u2', 2, 'c', 'k', 'u1');"
            "INSERT INTO per_user(user, kind, campaign, key, events, orders, spent, first_seen, "
            "last_seen) VALUES ('u1', 0, '', '', 3, 1, 500, 1, 2);"
            "INSERT INTO failed_timers VALUES ('c', 'u1', 't', 5, 6, 'boom'),"
            " ('c', 'u2', 't', 5, 6, 'boom');"
            "INSERT INTO actions(ts, campaign, kind, user, event_id, payload) VALUES "
            "(1, 'c', 'k.a', 'u1', 'e1', '{\"code\":\"u1\"}'),"
            "(2, 'c', 'k.b', 'u2', 'e2', '{\"referrer\":\"u1\",\"members\":[\"u3\",\"u1\"],"
            "\"gift_user\":\"u1\",\"x\":\"u1\",\"members_n\":2}'),"
            "(3, 'c', 'k.c', 'u2', 'e3', '{\"buyer\":\"u10\"}');"
            "INSERT INTO event_log(received_at, id, type, user, ts, body) VALUES "
            "(1, 'e1', 'x', 'u1', 1, '{\"id\":\"e1\",\"user\":\"u1\"}'),"
            "(2, 'e2', 'user.signup', 'u2', 2, "
            "'{\"id\":\"e2\",\"type\":\"user.signup\",\"user\":\"u2\",\"props\":{\"referrer\":"
            "\"u1\"}}');"
            "INSERT INTO events(id) VALUES ('e1'), ('e2');");
    char *json = NULL;
    CHECK_INT(store_export_user(s, "u1", &json), 0);
    json_t *x = json_loads(json ? json : "", 0, NULL);
    CHECK(x != NULL);
    CHECK_INT(json_integer_value(json_object_get(json_object_get(x, "profile"), "spent")), 500);
    CHECK_INT(json_array_size(json_object_get(x, "state")), 1);
    CHECK_INT(json_array_size(json_object_get(x, "counters")), 1);
    CHECK_INT(json_array_size(json_object_get(x, "timers")), 1);
    CHECK_INT(json_array_size(json_object_get(x, "failed_timers")), 1);
    /* its own action and the one naming it in a user-id key, not u10's */
    CHECK_INT(json_array_size(json_object_get(x, "actions")), 2);
    CHECK_INT(json_array_size(json_object_get(x, "events")), 1);
    json_decref(x);
    free(json);

    CHECK_INT(store_begin(s), 0);
    CHECK_INT(store_forget_user(s, "u1", "forgotten:p", &n), 0);
    CHECK_INT(store_commit(s), 0);
    CHECK_INT(n, 2); /* the user column of one, the payload of another */
    CHECK_STR(one(s, "SELECT count(*) FROM per_user WHERE user = 'u1'"), "0");
    CHECK_STR(one(s, "SELECT v FROM per_user WHERE user = 'u2'"), "u1"); /* not a payload */
    CHECK_STR(one(s, "SELECT count(*) FROM failed_timers"), "1");
    CHECK_STR(one(s, "SELECT user || ' ' || payload FROM actions WHERE seq = 1"),
              "forgotten:p {\"code\":\"u1\"}"); /* code is no user-id key */
    CHECK_STR(one(s, "SELECT payload FROM actions WHERE seq = 2"),
              "{\"referrer\":\"forgotten:p\",\"members\":[\"u3\",\"forgotten:p\"],"
              "\"gift_user\":\"forgotten:p\",\"x\":\"u1\",\"members_n\":2}");
    CHECK_STR(one(s, "SELECT payload FROM actions WHERE seq = 3"), "{\"buyer\":\"u10\"}");
    CHECK_STR(one(s, "SELECT count(*) FROM event_log"), "1");
    CHECK_STR(one(s, "SELECT body FROM event_log"),
              "{\"id\":\"e2\",\"type\":\"user.signup\",\"user\":\"u2\","
              "\"props\":{\"referrer\":\"forgotten:p\"}}");
    CHECK_STR(one(s, "SELECT count(*) FROM events"), "2"); /* ids stay remembered */
    CHECK_STR(one(s, "PRAGMA integrity_check"), "ok");
    store_close(s);
}

static void test_oplog(void)
{
    struct store *s = open_mem();
    CHECK_INT(store_oplog_add(s, 5, "export", "uid:0", "{\"user\":\"forgotten:p\"}"), 0);
    CHECK_INT(store_oplog_config(s, 6, "SIGHUP", "/etc/mktd.yaml", "a: 1\n", 5, NULL), 0);
    CHECK_INT(store_oplog_config(s, 7, "SIGHUP", "/etc/mktd.yaml", NULL, 0, "x:1:1: bad"), 0);
    char hash[17];
    store_config_hash("a: 1\n", 5, hash);
    char want[128];
    snprintf(want, sizeof want, "{\"path\":\"/etc/mktd.yaml\",\"hash\":\"%s\",\"result\":\"ok\"}",
             hash);
    CHECK_STR(one(s, "SELECT detail FROM oplog WHERE seq = 2"), want);
    CHECK_STR(one(s, "SELECT detail FROM oplog WHERE seq = 3"),
              "{\"path\":\"/etc/mktd.yaml\",\"result\":\"error\",\"message\":\"x:1:1: bad\"}");
    CHECK_STR(one(s, "SELECT op || ' ' || who || ' ' || at FROM oplog WHERE seq = 1"),
              "export uid:0 5");
    store_close(s);
}

int main(void)
{
    test_pseudonym();
    test_user_keys();
    test_forget_rows();
    test_oplog();
    return check_done();
}
