/* One input line to one answer line: framing rules, decoding, the engine,
 * and the answer's format (spec section 1). Shared by the sockets, HTTP and
 * `mktd simulate`. */
#ifndef MKTD_INGEST_H
#define MKTD_INGEST_H

#include <event2/buffer.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/engine.h"
#include "net/framer.h"

enum ingest_status {
    IN_NONE = 0, /* blank line: no answer */
    IN_OK,
    IN_DUPLICATE,
    IN_INVALID_JSON,
    IN_INVALID_EVENT,
    IN_TOO_LARGE,
    IN_INTERNAL,
    IN_FORBIDDEN, /* the connection's token may not send this event (spec 18) */
    IN__COUNT
};
extern const char *const ingest_status_name[IN__COUNT];

/* Flags a whole request applies to each of its lines (HTTP ?dry=1,
 * ?explain=1), whatever the line says. */
#define INGEST_DRY 0x1u
#define INGEST_EXPLAIN 0x2u
/* Set by the daemon: live ingestion, where limits.max_future and max_past
 * apply to an explicit ts (never in simulate). */
#define INGEST_LIVE 0x4u
/* The sender's token has scope dry alone: a real event is answered
 * `forbidden` and never reaches the engine. */
#define INGEST_DRY_ONLY 0x8u
/* The sender's token has neither events nor dry: every event is forbidden. */
#define INGEST_NO_EVENTS 0x10u
/* The INGEST_* flags of what a token's scopes (net/auth.h: AUTH_EVENTS,
 * AUTH_DRY) allow of events: 0, INGEST_DRY_ONLY or INGEST_NO_EVENTS. */
unsigned ingest_scope_flags(unsigned scopes);

/* The flags of an HTTP request's query (POST /v1/events?dry=1&explain=1:
 * 1/true or 0/false; absent: 0; NULL or "": none), or -1 for another
 * value. */
int ingest_query_flags(const char *query);

/* Handles one line (its '\n' removed; a trailing '\r' is dropped here),
 * opening the engine's batch when an event is evaluated, and appends the
 * answer line to out. A dry event's answer lists its actions ("dry":true);
 * an explained one carries "explain". */
enum ingest_status ingest_line(struct engine *e, const char *line, size_t len, unsigned flags,
                               struct evbuffer *out);
/* Appends the answer for a line longer than the limit. */
void ingest_too_large(struct evbuffer *out, int64_t limit);
/* The batch behind these answers was not committed: every ok or duplicate
 * answer among them becomes error `internal` with detail (the event had no
 * effect; the client sends it again). Returns how many changed. */
int ingest_uncommitted(struct evbuffer *answers, const char *detail);

#endif
