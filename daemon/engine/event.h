/* Decoding and validation of one input line (spec sections 1 and 9). */
#ifndef MKTD_EVENT_H
#define MKTD_EVENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

enum ev_status { EV_OK = 0, EV_INVALID_JSON, EV_INVALID_EVENT };

#define EVENT_ID_MAX 128 /* bytes of an event's id, and of its user */

struct event {
    const char *id;   /* 1..128 bytes, no NUL */
    const char *type; /* 1..64 bytes of [a-z0-9_.-] */
    const char *user; /* 1..128 bytes, no NUL */
    int has_ts;
    int64_t ts;    /* ms >= 0, when has_ts */
    json_t *props; /* an object (borrowed from root), or NULL */
    json_t *root;  /* owns all of the above */
    int dry;       /* `dry: true`: evaluated, answered, then undone (spec 10) */
    int explain;   /* `explain: true`: the answer explains each campaign's decision */
    /* the line as received, for daemon.event_log (set by the caller of
     * event_decode; NULL: the log keeps root as compact JSON) */
    const char *line;
    size_t line_len;
};

struct decode_opts {
    int64_t wall_now_ms;   /* for max_future */
    int64_t max_future_ms; /* ts > wall_now + this: invalid_event */
    int64_t max_past_ms;   /* ts < wall_now - this: invalid_event; 0: no limit */
};

/* Decodes one line (no line ending; may contain anything). Returns EV_OK and
 * fills ev (release with event_clear), or an error status with a human
 * detail ("missing field: user") and *echo_id: the id to echo in the answer
 * (malloc'd) or NULL for JSON null. *echo_id is also set on EV_OK. */
enum ev_status event_decode(const char *line, size_t len, const struct decode_opts *o,
                            struct event *ev, char *detail, size_t detail_len, char **echo_id);
void event_clear(struct event *ev);

/* The tree jansson would give for a plain line (ASCII, no escapes, no real,
 * integers of up to 18 digits, no duplicate key, at most 64 levels, an
 * object at the top), or NULL for any other line: event_decode's fast path,
 * which leaves every other line to jansson. */
json_t *event_parse_plain(const char *s, size_t n);

/* Props lookup by dot path (object keys only); NULL when absent or null. */
json_t *props_path(json_t *props, const char *path);

#endif
