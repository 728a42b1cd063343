#define _GNU_SOURCE
#include "net/admin.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "lib/util.h"
#include "net/auth.h"

enum admin_op admin_line(const char *line, size_t len, char **user, const char **why)
{
    *user = NULL;
    *why = NULL;
    /* cheap first: most lines are events, which name neither key */
    if (!line || len < 8)
        return ADMIN_NONE;
    if (!memmem(line, len, "\"forget\"", 8) && !memmem(line, len, "\"export\"", 8))
        return ADMIN_NONE;
    json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, NULL);
    if (!json_is_object(j)) {
        json_decref(j);
        return ADMIN_NONE;
    }
    json_t *f = json_object_get(j, "forget"), *x = json_object_get(j, "export");
    enum admin_op op = f ? ADMIN_FORGET : x ? ADMIN_EXPORT : ADMIN_NONE;
    if (json_object_get(j, "id"))
        op = ADMIN_NONE; /* an event, whose unknown top-level keys are ignored */
    json_t *v = f ? f : x;
    if (op == ADMIN_NONE) {
        json_decref(j);
        return ADMIN_NONE;
    }
    if (f && x)
        *why = "a control line is either forget or export";
    else if (json_object_size(j) != 1)
        *why = "a control line has one key (forget or export)";
    else if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > 128 ||
             memchr(json_string_value(v), 0, json_string_length(v)))
        *why = "the user is a string of 1-128 bytes";
    else
        *user = xstrdup(json_string_value(v));
    json_decref(j);
    return op;
}

void admin_error(struct sbuf *out, const char *error, const char *detail)
{
    sb_fmt(out, "{\"status\":\"error\",\"error\":\"%s\",\"detail\":", error);
    sb_json_str(out, detail, strlen(detail));
    sb_str(out, "}\n");
}

int admin_run(struct engine *e, enum admin_op op, const char *user, const char *who,
              struct sbuf *out)
{
    char err[512] = "";
    if (op == ADMIN_FORGET) {
        char ps[64];
        int rc = engine_forget(e, user, who, ps, sizeof ps, err, sizeof err);
        if (rc < 0) {
            admin_error(out, rc == -EINVAL ? "invalid" : "internal", err);
            return -1;
        }
        sb_str(out, "{\"status\":\"ok\",\"forget\":");
        sb_json_str(out, user, strlen(user));
        sb_fmt(out, ",\"pseudonym\":\"%s\"}\n", ps);
        return 0;
    }
    char *json = NULL;
    int rc = engine_export(e, user, who, &json, err, sizeof err);
    if (rc < 0) {
        admin_error(out, rc == -EINVAL ? "invalid" : "internal", err);
        return -1;
    }
    admin_export_answer(out, json);
    free(json);
    return 0;
}

void admin_export_answer(struct sbuf *out, const char *json)
{
    sb_str(out, "{\"status\":\"ok\",\"export\":");
    sb_str(out, json);
    sb_str(out, "}\n");
}

static char *http_user(struct evhttp_request *req)
{
    char *user = NULL;
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq kv;
    if (q && *q && evhttp_parse_query_str(q, &kv) == 0) {
        const char *u = evhttp_find_header(&kv, "user");
        if (u)
            user = xstrdup(u);
        evhttp_clear_headers(&kv);
    }
    struct evbuffer *body = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(body);
    if (!user && n > 0 && n <= 65536) {
        json_t *j = json_loadb((const char *)evbuffer_pullup(body, -1), n, 0, NULL);
        json_t *u = json_object_get(j, "user");
        if (json_is_string(u) && strlen(json_string_value(u)) == json_string_length(u))
            user = xstrndup(json_string_value(u), json_string_length(u));
        json_decref(j);
    }
    if (user && (!*user || strlen(user) > 128)) {
        free(user);
        user = NULL;
    }
    return user;
}

int admin_http_begin(struct auth_gate *gate, struct evhttp_request *req, enum admin_op op,
                     char *who, size_t wholen, char **user)
{
    *user = NULL;
    enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
    if (cmd != EVHTTP_REQ_POST && !(op == ADMIN_EXPORT && cmd == EVHTTP_REQ_GET)) {
        evhttp_send_error(req, 405, op == ADMIN_EXPORT ? "GET or POST" : "POST only");
        return 0;
    }
    unsigned scopes;
    if (!auth_gate_http_as(gate, req, AUTH_ADMIN, &scopes, who, wholen))
        return 0; /* answered: 401 or 403 */
    if (!who[0])
        snprintf(who, wholen, "http");
    *user = http_user(req);
    return 1;
}
