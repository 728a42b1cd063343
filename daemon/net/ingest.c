#include "net/ingest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "engine/event.h"
#include "net/auth.h"
#include "store/store.h"

const char *const ingest_status_name[IN__COUNT] = {
    [IN_NONE] = "none",
    [IN_OK] = "ok",
    [IN_DUPLICATE] = "duplicate",
    [IN_INVALID_JSON] = "invalid_json",
    [IN_INVALID_EVENT] = "invalid_event",
    [IN_TOO_LARGE] = "too_large",
    [IN_INTERNAL] = "internal",
    [IN_FORBIDDEN] = "forbidden",
};

/* Appends ,"key":<v as compact JSON>. */
static void add_json(struct sbuf *b, const char *key, json_t *v)
{
    char *text = json_dumps(v, JSON_COMPACT);
    sb_fmt(b, ",\"%s\":%s", key, text ? text : "[]");
    free(text);
}

static void answer(struct evbuffer *out, const char *id, enum ingest_status st, int n_actions,
                   const struct eng_report *rep, const char *detail)
{
    struct sbuf b = {0};
    sb_str(&b, "{\"id\":");
    sb_json_str_or_null(&b, id);
    switch (st) {
    case IN_OK:
        sb_str(&b, ",\"status\":\"ok\"");
        if (rep && rep->actions) {
            sb_str(&b, ",\"dry\":true");
            add_json(&b, "actions", rep->actions);
        } else {
            sb_fmt(&b, ",\"actions\":%d", n_actions);
        }
        if (rep && rep->explain)
            add_json(&b, "explain", rep->explain);
        sb_str(&b, "}\n");
        break;
    case IN_DUPLICATE:
        sb_str(&b, ",\"status\":\"duplicate\"}\n");
        break;
    default:
        sb_fmt(&b, ",\"status\":\"error\",\"error\":\"%s\",\"detail\":", ingest_status_name[st]);
        sb_json_str(&b, detail ? detail : "", detail ? strlen(detail) : 0);
        sb_str(&b, "}\n");
        break;
    }
    evbuffer_add(out, b.s, b.len);
    sb_free(&b);
}

void ingest_too_large(struct evbuffer *out, int64_t limit)
{
    char detail[96];
    snprintf(detail, sizeof(detail), "line longer than max_event_bytes (%lld)", (long long)limit);
    answer(out, NULL, IN_TOO_LARGE, 0, NULL, detail);
}

static int blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return 0;
    return 1;
}

enum ingest_status ingest_line(struct engine *e, const char *line, size_t len, unsigned flags,
                               struct evbuffer *out)
{
    const struct config *cfg = engine_config(e);
    if (len > 0 && line[len - 1] == '\r')
        len--;
    if (blank(line, len))
        return IN_NONE;
    if ((int64_t)len > cfg->max_event_bytes) {
        ingest_too_large(out, cfg->max_event_bytes);
        return IN_TOO_LARGE;
    }
    int64_t now = wall_ms();
    int live = (flags & INGEST_LIVE) != 0;
    struct decode_opts o = {.wall_now_ms = now,
                            .max_future_ms = live ? cfg->max_future_ms : INT64_MAX,
                            .max_past_ms = live ? cfg->max_past_ms : 0};
    struct event ev;
    char detail[256] = "";
    char *echo = NULL;
    enum ingest_status st;
    int n_actions = 0;
    struct eng_report rep = {0};
    switch (event_decode(line, len, &o, &ev, detail, sizeof(detail), &echo)) {
    case EV_OK:
        ev.line = line; /* kept as received by daemon.event_log */
        ev.line_len = len;
        /* the request's flags (HTTP ?dry=1&explain=1) win over the line's */
        ev.dry |= (flags & INGEST_DRY) != 0;
        ev.explain |= (flags & INGEST_EXPLAIN) != 0;
        if ((flags & INGEST_NO_EVENTS) || ((flags & INGEST_DRY_ONLY) && !ev.dry)) {
            snprintf(detail, sizeof(detail), "%s",
                     flags & INGEST_NO_EVENTS
                         ? "this token may not send events (it needs scope events or dry)"
                         : "this token may send dry events only (scope dry): send it with "
                           "\"dry\":true");
            st = IN_FORBIDDEN;
            event_clear(&ev);
            break;
        }
        switch (engine_event(e, &ev, now, &n_actions, &rep, detail, sizeof(detail))) {
        case ENG_OK:
            st = IN_OK;
            break;
        case ENG_DUPLICATE:
            st = IN_DUPLICATE;
            break;
        default:
            st = IN_INTERNAL;
            break;
        }
        event_clear(&ev);
        break;
    case EV_INVALID_JSON:
        st = IN_INVALID_JSON;
        break;
    default:
        st = IN_INVALID_EVENT;
        break;
    }
    answer(out, echo, st, n_actions, &rep, detail);
    json_decref(rep.actions);
    json_decref(rep.explain);
    free(echo);
    return st;
}

/* Our own answer line's id token ("null" or a JSON string) at s: its
 * length, or 0 when the line is not one of ours. */
static size_t id_token(const char *s, size_t n)
{
    if (n >= 4 && memcmp(s, "null", 4) == 0)
        return 4;
    if (n < 2 || s[0] != '"')
        return 0;
    for (size_t i = 1; i < n; i++) {
        if (s[i] == '\\')
            i++;
        else if (s[i] == '"')
            return i + 1;
    }
    return 0;
}

int ingest_uncommitted(struct evbuffer *answers, const char *detail)
{
    static const char head[] = "{\"id\":";
    static const char ok[] = ",\"status\":\"ok\"", dup[] = ",\"status\":\"duplicate\"";
    size_t len = evbuffer_get_length(answers);
    const char *p = len ? (const char *)evbuffer_pullup(answers, -1) : NULL;
    struct evbuffer *out = evbuffer_new();
    int n = 0;
    while (len) {
        const char *nl = memchr(p, '\n', len);
        size_t line = nl ? (size_t)(nl - p) + 1 : len;
        size_t id = line > sizeof(head) - 1 && memcmp(p, head, sizeof(head) - 1) == 0
                        ? id_token(p + sizeof(head) - 1, line - (sizeof(head) - 1))
                        : 0;
        const char *rest = p + sizeof(head) - 1 + id;
        size_t left = id ? line - (sizeof(head) - 1) - id : 0;
        if (id && ((left >= sizeof(ok) - 1 && memcmp(rest, ok, sizeof(ok) - 1) == 0) ||
                   (left >= sizeof(dup) - 1 && memcmp(rest, dup, sizeof(dup) - 1) == 0))) {
            struct sbuf b = {0};
            sb_str(&b, head);
            sb_add(&b, p + sizeof(head) - 1, id);
            sb_fmt(&b, ",\"status\":\"error\",\"error\":\"%s\",\"detail\":",
                   ingest_status_name[IN_INTERNAL]);
            sb_json_str(&b, detail, strlen(detail));
            sb_str(&b, "}\n");
            evbuffer_add(out, b.s, b.len);
            sb_free(&b);
            n++;
        } else {
            evbuffer_add(out, p, line);
        }
        p += line;
        len -= line;
    }
    evbuffer_drain(answers, evbuffer_get_length(answers));
    evbuffer_add_buffer(answers, out);
    evbuffer_free(out);
    return n;
}

int ingest_query_flags(const char *query)
{
    static const struct {
        const char *name;
        unsigned flag;
    } known[] = {{"dry", INGEST_DRY}, {"explain", INGEST_EXPLAIN}};
    struct evkeyvalq kv;
    int flags = 0;
    if (!query || !*query)
        return 0;
    if (evhttp_parse_query_str(query, &kv) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]) && flags >= 0; i++) {
        const char *v = evhttp_find_header(&kv, known[i].name);
        if (!v || strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
            continue;
        if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
            flags |= (int)known[i].flag;
        else
            flags = -1;
    }
    evhttp_clear_headers(&kv);
    return flags;
}

unsigned ingest_scope_flags(unsigned scopes)
{
    if (scopes & AUTH_EVENTS)
        return 0;
    return scopes & AUTH_DRY ? INGEST_DRY_ONLY : INGEST_NO_EVENTS;
}
