#include "store/privacy.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "lib/util.h"
#include "store/store.h"

#define KEY_NAME "pseudonym"
#define KEY_BYTES 32

/* A statement on the store's connection; forget and export are rare, so
 * nothing is kept prepared. */
static sqlite3_stmt *prep(struct store *s, const char *q)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(store_sqlite(s), q, -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

static void bind_str(sqlite3_stmt *st, int i, const char *v)
{
    if (v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_TRANSIENT);
    else
        sqlite3_bind_null(st, i);
}

/* Runs q with up to two text parameters; 0 or -EIO. */
static int exec2(struct store *s, const char *q, const char *a, const char *b)
{
    sqlite3_stmt *st = prep(s, q);
    if (!st)
        return -EIO;
    bind_str(st, 1, a);
    if (b)
        bind_str(st, 2, b);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

/* ---- the key and pseudonyms ---- */

static int secret_get(struct store *s, unsigned char key[KEY_BYTES])
{
    sqlite3_stmt *st = prep(s, "SELECT value FROM secrets WHERE name = ?1");
    if (!st)
        return -EIO;
    bind_str(st, 1, KEY_NAME);
    int rc = sqlite3_step(st);
    int ret = -EIO;
    if (rc == SQLITE_ROW && sqlite3_column_bytes(st, 0) == KEY_BYTES) {
        memcpy(key, sqlite3_column_blob(st, 0), KEY_BYTES);
        ret = 0;
    } else if (rc == SQLITE_DONE) {
        ret = -ENOENT;
    }
    sqlite3_finalize(st);
    return ret;
}

static int secret_put(struct store *s, const unsigned char key[KEY_BYTES])
{
    sqlite3_stmt *st = prep(s, "INSERT OR REPLACE INTO secrets(name, value) VALUES (?1, ?2)");
    if (!st)
        return -EIO;
    bind_str(st, 1, KEY_NAME);
    sqlite3_bind_blob(st, 2, key, KEY_BYTES, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static int secret_make(struct store *s, unsigned char key[KEY_BYTES])
{
    size_t got = 0;
    while (got < KEY_BYTES) {
        ssize_t n = getrandom(key + got, KEY_BYTES - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    return secret_put(s, key);
}

int store_pseudonym_of(const unsigned char key[32], const char *user, char out[PSEUDONYM_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    if (!HMAC(EVP_sha256(), key, KEY_BYTES, (const unsigned char *)user, strlen(user), mac,
              &maclen) ||
        maclen < 16)
        return -EIO;
    memcpy(out, PSEUDONYM_PREFIX, sizeof(PSEUDONYM_PREFIX) - 1);
    for (int i = 0; i < 16; i++)
        snprintf(out + sizeof(PSEUDONYM_PREFIX) - 1 + 2 * i, 3, "%02x", mac[i]);
    out[PSEUDONYM_LEN] = 0;
    return 0;
}

int store_pseudonym(struct store *s, const char *user, char out[PSEUDONYM_LEN + 1])
{
    unsigned char key[KEY_BYTES];
    int rc = secret_get(s, key);
    if (rc == -ENOENT)
        rc = secret_make(s, key);
    if (rc < 0)
        return rc;
    return store_pseudonym_of(key, user, out);
}

int store_pseudonym_key_set(struct store *s, const unsigned char key[32])
{
    return secret_put(s, key);
}

/* ---- user ids in JSON ---- */

static int ends_with(const char *s, const char *tail)
{
    size_t a = strlen(s), b = strlen(tail);
    return a >= b && strcmp(s + a - b, tail) == 0;
}

int privacy_user_key(const char *key)
{
    static const char *const keys[] = {"referrer", "referee", "buyer",  "beneficiary",
                                       "user",     "users",   "member", "members"};
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if (strcmp(key, keys[i]) == 0)
            return 1;
    return ends_with(key, "_user") || ends_with(key, "_users");
}

static int is_user(json_t *v, const char *user)
{
    return json_is_string(v) && strcmp(json_string_value(v), user) == 0;
}

/* Puts pseudonym for user in obj's user-id keys (with pseudonym NULL:
 * only tells whether one names user). How many values it found. */
static int rewrite_obj(json_t *obj, const char *user, const char *pseudonym)
{
    const char *k;
    json_t *v;
    int n = 0;
    if (!json_is_object(obj))
        return 0;
    json_object_foreach(obj, k, v)
    {
        if (!privacy_user_key(k))
            continue;
        if (is_user(v, user)) {
            n++;
            if (pseudonym)
                json_object_set_new(obj, k, json_string(pseudonym));
        } else if (json_is_array(v)) {
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x)
            {
                if (is_user(x, user)) {
                    n++;
                    if (pseudonym)
                        json_array_set_new(v, i, json_string(pseudonym));
                }
            }
        }
    }
    return n;
}

/* The user id as it stands inside a JSON string (escaped, no quotes): a
 * text holding none of it names the user nowhere. */
static char *json_inner(const char *user)
{
    json_t *j = json_string(user);
    char *d = j ? json_dumps(j, JSON_ENCODE_ANY | JSON_COMPACT) : NULL;
    json_decref(j);
    if (!d)
        return xstrdup(user);
    size_t n = strlen(d);
    memmove(d, d + 1, n - 2);
    d[n - 2] = 0;
    return d;
}

struct row {
    int64_t seq;
    char *text;
};

/* Rows (seq, text) of q, whose ?1 is the escaped user id. */
static int rows_of(struct store *s, const char *q, const char *inner, struct row **out, size_t *n)
{
    sqlite3_stmt *st = prep(s, q);
    if (!st)
        return -EIO;
    bind_str(st, 1, inner);
    struct row *v = NULL;
    size_t k = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        v = xrealloc(v, (k + 1) * sizeof(*v));
        v[k].seq = sqlite3_column_int64(st, 0);
        const char *t = (const char *)sqlite3_column_text(st, 1);
        v[k].text = xstrdup(t ? t : "");
        k++;
    }
    sqlite3_finalize(st);
    *out = v;
    *n = k;
    return rc == SQLITE_DONE ? 0 : -EIO;
}

static void rows_free(struct row *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].text);
    free(v);
}

/* Rewrites the user-id keys of each row's JSON (the whole object, or its
 * props) and writes the changed ones back with upd (?1 text, ?2 seq). */
static int rewrite_rows(struct store *s, const char *sel, const char *upd, int props,
                        const char *user, const char *pseudonym, int64_t *changed)
{
    char *inner = json_inner(user);
    struct row *v;
    size_t n;
    int rc = rows_of(s, sel, inner, &v, &n);
    free(inner);
    if (rc < 0)
        return rc;
    sqlite3_stmt *st = prep(s, upd);
    if (!st) {
        rows_free(v, n);
        return -EIO;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *j = json_loads(v[i].text, JSON_DECODE_ANY, NULL);
        json_t *o = props ? json_object_get(j, "props") : j;
        if (o && rewrite_obj(o, user, pseudonym) > 0) {
            char *text = json_dumps(j, JSON_COMPACT);
            if (!text) {
                rc = -ENOMEM;
            } else {
                sqlite3_bind_text(st, 1, text, -1, SQLITE_TRANSIENT);
                sqlite3_bind_int64(st, 2, v[i].seq);
                if (sqlite3_step(st) != SQLITE_DONE)
                    rc = -EIO;
                sqlite3_reset(st);
                free(text);
                if (changed)
                    (*changed)++;
            }
        }
        json_decref(j);
    }
    sqlite3_finalize(st);
    rows_free(v, n);
    return rc;
}

/* 1 when this database forgot user (its pseudonym in *ps), 0 when not,
 * -EIO. */
static int was_forgotten(struct store *s, sqlite3_stmt *st, const char *user,
                         char ps[PSEUDONYM_LEN + 1])
{
    if (store_pseudonym(s, user, ps) < 0)
        return -EIO;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, ps, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -EIO;
}

/* The user ids in obj's user-id keys (strings, and strings in arrays). */
static void user_values(json_t *obj, json_t *out)
{
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v)
    {
        if (!privacy_user_key(k))
            continue;
        if (json_is_string(v)) {
            json_array_append(out, v);
        } else if (json_is_array(v)) {
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x)
            {
                if (json_is_string(x))
                    json_array_append(out, x);
            }
        }
    }
}

int store_forgotten_rewrite(struct store *s, char **user, char **payload)
{
    sqlite3_stmt *st = store_cached(s, STORE_CACHED_FORGOTTEN,
                                    "SELECT 1 FROM oplog WHERE op = 'forget' AND "
                                    "instr(detail, ?1) > 0 LIMIT 1");
    if (!st)
        return -EIO;
    char ps[PSEUDONYM_LEN + 1];
    int rc = was_forgotten(s, st, *user, ps), named = rc == 1;
    if (rc == 1) {
        free(*user);
        *user = xstrdup(ps);
    }
    json_t *obj = rc >= 0 ? json_loads(*payload, 0, NULL) : NULL;
    json_t *names = json_array();
    int changed = 0;
    if (json_is_object(obj))
        user_values(obj, names);
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        if (rc < 0)
            break;
        const char *name = json_string_value(v);
        int f = was_forgotten(s, st, name, ps);
        if (f < 0)
            rc = f;
        else if (f == 1)
            changed += rewrite_obj(obj, name, ps) > 0;
    }
    json_decref(names);
    if (rc >= 0 && changed) {
        char *text = json_dumps(obj, JSON_COMPACT);
        if (text) {
            free(*payload);
            *payload = text;
        } else {
            rc = -EIO;
        }
    }
    json_decref(obj);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st); /* ps was bound in place */
    return rc < 0 ? -EIO : named || changed;
}

int store_forget_user(struct store *s, const char *user, const char *pseudonym, int64_t *rewritten)
{
    int64_t n = 0;
    if (exec2(s, "DELETE FROM per_user WHERE user = ?1", user, NULL) < 0 ||
        exec2(s, "DELETE FROM failed_timers WHERE user = ?1", user, NULL) < 0 ||
        exec2(s, "DELETE FROM event_log WHERE user = ?1", user, NULL) < 0)
        return -EIO;
    sqlite3_stmt *st = prep(s, "UPDATE actions SET user = ?2 WHERE user = ?1");
    if (!st)
        return -EIO;
    bind_str(st, 1, user);
    bind_str(st, 2, pseudonym);
    int rc = sqlite3_step(st);
    n += sqlite3_changes(store_sqlite(s));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return -EIO;
    /* the payloads naming the user, whoever's action it is: a text
     * search first (most rows name nobody), then the keys themselves */
    if (rewrite_rows(s, "SELECT seq, payload FROM actions WHERE instr(payload, ?1) > 0",
                     "UPDATE actions SET payload = ?1 WHERE seq = ?2", 0, user, pseudonym,
                     &n) < 0 ||
        rewrite_rows(s, "SELECT seq, body FROM event_log WHERE instr(body, ?1) > 0",
                     "UPDATE event_log SET body = ?1 WHERE seq = ?2", 1, user, pseudonym, NULL) < 0)
        return -EIO;
    if (rewritten)
        *rewritten = n;
    return 0;
}

/* ---- export ---- */

/* A stored value as JSON: a string when it is UTF-8, else its hex. */
static json_t *blob_json(const void *p, size_t n)
{
    if (!p || !n)
        return json_string("");
    json_t *j = json_stringn(p, n);
    if (j)
        return j;
    char *hex = xmalloc(n * 2 + 1);
    hex[0] = 0;
    for (size_t i = 0; i < n; i++)
        snprintf(hex + 2 * i, 3, "%02x", ((const unsigned char *)p)[i]);
    j = json_pack("{s:s}", "hex", hex);
    free(hex);
    return j;
}

static json_t *text_json(sqlite3_stmt *st, int col)
{
    if (sqlite3_column_type(st, col) == SQLITE_NULL)
        return json_null();
    const char *t = (const char *)sqlite3_column_text(st, col);
    return blob_json(t, (size_t)sqlite3_column_bytes(st, col));
}

/* A JSON text column as its value (the text itself when it does not parse). */
static json_t *parsed(sqlite3_stmt *st, int col)
{
    const char *t = (const char *)sqlite3_column_text(st, col);
    json_t *j = t ? json_loads(t, JSON_DECODE_ANY, NULL) : NULL;
    return j ? j : text_json(st, col);
}

int store_export_user(struct store *s, const char *user, char **json)
{
    json_t *root = json_object(), *profile = json_null(), *counts = json_object();
    json_t *state = json_array(), *counters = json_array(), *timers = json_array();
    json_t *failed = json_array(), *actions = json_array(), *events = json_array();
    int ret = -EIO, rc;
    sqlite3_stmt *st = prep(s, "SELECT kind, campaign, key, v, events, orders, spent, "
                               "first_seen, last_seen FROM per_user WHERE user = ?1 "
                               "ORDER BY kind, campaign, key");
    if (!st)
        goto out;
    bind_str(st, 1, user);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        int kind = sqlite3_column_int(st, 0);
        const char *camp = (const char *)sqlite3_column_text(st, 1);
        const char *key = (const char *)sqlite3_column_text(st, 2);
        json_t *k = blob_json(key ? key : "", key ? (size_t)sqlite3_column_bytes(st, 2) : 0);
        switch (kind) {
        case STORE_PROFILE:
            json_decref(profile);
            profile = json_pack("{s:I,s:I,s:I,s:I,s:I}", "events",
                                (json_int_t)sqlite3_column_int64(st, 4), "orders",
                                (json_int_t)sqlite3_column_int64(st, 5), "spent",
                                (json_int_t)sqlite3_column_int64(st, 6), "first_seen",
                                (json_int_t)sqlite3_column_int64(st, 7), "last_seen",
                                (json_int_t)sqlite3_column_int64(st, 8));
            break;
        case STORE_COUNT:
            json_object_set_new(counts, json_is_string(k) ? json_string_value(k) : "",
                                json_integer(sqlite3_column_int64(st, 3)));
            break;
        case STORE_STATE:
            json_array_append_new(state, json_pack("{s:s,s:O,s:o}", "campaign", camp ? camp : "",
                                                   "key", k, "value",
                                                   blob_json(sqlite3_column_blob(st, 3),
                                                             (size_t)sqlite3_column_bytes(st, 3))));
            break;
        case STORE_COUNTER:
            json_array_append_new(counters,
                                  json_pack("{s:s,s:O,s:I}", "campaign", camp ? camp : "", "key", k,
                                            "value", (json_int_t)sqlite3_column_int64(st, 3)));
            break;
        case STORE_TIMER:
            json_array_append_new(timers,
                                  json_pack("{s:s,s:O,s:I}", "campaign", camp ? camp : "", "name",
                                            k, "due", (json_int_t)sqlite3_column_int64(st, 3)));
            break;
        default:
            break;
        }
        json_decref(k);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        goto out;

    st = prep(s, "SELECT campaign, name, due, failed_at, error FROM failed_timers "
                 "WHERE user = ?1 ORDER BY failed_at, campaign, name");
    if (!st)
        goto out;
    bind_str(st, 1, user);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(
            failed,
            json_pack("{s:o,s:o,s:I,s:I,s:o}", "campaign", text_json(st, 0), "name",
                      text_json(st, 1), "due", (json_int_t)sqlite3_column_int64(st, 2), "failed_at",
                      (json_int_t)sqlite3_column_int64(st, 3), "error", text_json(st, 4)));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        goto out;

    /* its own actions, and those whose payload names it */
    char *inner = json_inner(user);
    st = prep(s, "SELECT seq, ts, campaign, kind, user, event_id, payload FROM actions "
                 "WHERE user = ?1 OR instr(payload, ?2) > 0 ORDER BY seq");
    if (!st) {
        free(inner);
        goto out;
    }
    bind_str(st, 1, user);
    bind_str(st, 2, inner);
    free(inner);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *u = (const char *)sqlite3_column_text(st, 4);
        json_t *payload = parsed(st, 6);
        if ((!u || strcmp(u, user) != 0) && rewrite_obj(payload, user, NULL) == 0) {
            json_decref(payload);
            continue;
        }
        json_array_append_new(actions, json_pack("{s:I,s:I,s:o,s:o,s:o,s:o,s:o}", "seq",
                                                 (json_int_t)sqlite3_column_int64(st, 0), "ts",
                                                 (json_int_t)sqlite3_column_int64(st, 1),
                                                 "campaign", text_json(st, 2), "kind",
                                                 text_json(st, 3), "user", text_json(st, 4),
                                                 "event_id", text_json(st, 5), "payload", payload));
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        goto out;

    st = prep(s, "SELECT seq, received_at, id, type, ts, body FROM event_log WHERE user = ?1 "
                 "ORDER BY seq");
    if (!st)
        goto out;
    bind_str(st, 1, user);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        json_array_append_new(
            events,
            json_pack("{s:I,s:I,s:o,s:o,s:I,s:o}", "seq", (json_int_t)sqlite3_column_int64(st, 0),
                      "received_at", (json_int_t)sqlite3_column_int64(st, 1), "id",
                      text_json(st, 2), "type", text_json(st, 3), "ts",
                      (json_int_t)sqlite3_column_int64(st, 4), "body", parsed(st, 5)));
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        goto out;
    ret = 0;
out:
    json_object_set_new(root, "user", json_string(user));
    json_object_set_new(root, "profile", profile);
    json_object_set_new(root, "counts", counts);
    json_object_set_new(root, "state", state);
    json_object_set_new(root, "counters", counters);
    json_object_set_new(root, "timers", timers);
    json_object_set_new(root, "failed_timers", failed);
    json_object_set_new(root, "actions", actions);
    json_object_set_new(root, "events", events);
    *json = ret == 0 ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (ret == 0 && !*json)
        ret = -ENOMEM;
    return ret;
}

/* ---- the operations log ---- */

int store_oplog_add(struct store *s, int64_t at, const char *op, const char *who,
                    const char *detail)
{
    sqlite3_stmt *st = prep(s, "INSERT INTO oplog(at, op, who, detail) VALUES (?1, ?2, ?3, ?4)");
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, at);
    bind_str(st, 2, op);
    bind_str(st, 3, who);
    bind_str(st, 4, detail);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -EIO;
}

int store_oplog_config(struct store *s, int64_t at, const char *who, const char *path,
                       const char *text, size_t len, const char *error)
{
    json_t *d = json_object();
    json_object_set_new(d, "path", json_string(path ? path : ""));
    if (text) {
        char hash[17];
        store_config_hash(text, len, hash);
        json_object_set_new(d, "hash", json_string(hash));
    }
    json_object_set_new(d, "result", json_string(error ? "error" : "ok"));
    if (error)
        json_object_set_new(d, "message", json_string(error));
    char *detail = json_dumps(d, JSON_COMPACT);
    json_decref(d);
    int rc = detail ? store_oplog_add(s, at, "config", who, detail) : -ENOMEM;
    free(detail);
    return rc;
}

int store_oplog_list(const char *db_path, void (*cb)(void *arg, const struct store_oplog *r),
                     void *arg, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = -EIO;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK)
        goto out;
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_prepare_v2(db, "SELECT seq, at, op, who, detail FROM oplog ORDER BY seq", -1, &st,
                           NULL) != SQLITE_OK)
        goto out;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        struct store_oplog r = {
            .seq = sqlite3_column_int64(st, 0),
            .at = sqlite3_column_int64(st, 1),
            .op = (const char *)sqlite3_column_text(st, 2),
            .who = (const char *)sqlite3_column_text(st, 3),
            .detail = (const char *)sqlite3_column_text(st, 4),
        };
        cb(arg, &r);
    }
    if (step == SQLITE_DONE)
        rc = 0;
out:
    if (rc < 0)
        snprintf(err, errlen, "%s: %s", db_path, db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_finalize(st);
    sqlite3_close(db);
    return rc;
}
