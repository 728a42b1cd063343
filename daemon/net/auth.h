/* Who may talk to the daemon (spec sections 14 and 18, "Safe to expose"):
 * the tokens file (`daemon.auth.tokens_file`), scopes, the TCP auth line,
 * HTTP bearer tokens, and failed attempts (logged, counted, slowed down).
 *
 * Tokens file: one token a line, `NAME SCOPES SHA256HEX`, SCOPES being
 * comma-separated from events, dry, read, admin; blank lines and lines
 * starting with '#' are skipped. Only the SHA-256 of a token is kept; a
 * token offered is hashed and compared with every entry in constant time. */
#ifndef MKTD_AUTH_H
#define MKTD_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define AUTH_EVENTS 0x1u /* real and dry events */
#define AUTH_DRY 0x2u    /* dry events only */
#define AUTH_READ 0x4u   /* GET report, actions, metrics, health */
#define AUTH_ADMIN 0x8u  /* forget, export */
#define AUTH_ALL 0xfu    /* a Unix socket, or no auth configured */

struct auth_token {
    char *name;
    unsigned scopes;        /* AUTH_* */
    unsigned char hash[32]; /* SHA-256 of the token */
};

struct auth_tokens {
    struct auth_token *v;
    size_t n;
};

/* Parses a tokens file's text; name is used in errors ("NAME:LINE: ...").
 * NULL and a message in err on the first bad line. */
struct auth_tokens *auth_tokens_parse(const char *name, const char *text, size_t len, char *err,
                                      size_t errlen);
struct auth_tokens *auth_tokens_load(const char *path, char *err, size_t errlen);
void auth_tokens_free(struct auth_tokens *t);

/* The entry whose hash is the token's SHA-256, or NULL. Every entry is
 * compared (CRYPTO_memcmp), whichever matches. */
const struct auth_token *auth_token_check(const struct auth_tokens *t, const char *token,
                                          size_t len);
/* The entry with this SHA-256 (a connection's token after a reload), or
 * NULL; compared in constant time. */
const struct auth_token *auth_token_by_hash(const struct auth_tokens *t, const unsigned char *h);
/* The entry named name (a client certificate's CN), or NULL. */
const struct auth_token *auth_token_named(const struct auth_tokens *t, const char *name);

/* Whether scopes allow something needing any of `need`. */
static inline int auth_allows(unsigned scopes, unsigned need)
{
    return (scopes & need) != 0;
}
/* What a line needs: events, or (dry) events or dry. Real events from a
 * token with dry alone are answered `forbidden`. */
static inline int auth_allows_event(unsigned scopes, int dry)
{
    return (scopes & AUTH_EVENTS) || (dry && (scopes & AUTH_DRY));
}
/* "events,read" into buf. */
const char *auth_scopes_str(unsigned scopes, char *buf, size_t len);

/* The answer to a failed auth line, after which the connection closes. */
#define AUTH_UNAUTHORIZED_LINE "{\"status\":\"error\",\"error\":\"unauthorized\"}\n"

/* The TCP auth line `{"auth":"TOKEN"}` (no other key): 0 and the token
 * (malloc'd) or -1. */
int auth_line_token(const char *line, size_t len, char **token);
/* The token of an `Authorization: Bearer TOKEN` header value: 0 and a
 * pointer into it, or -1. */
int auth_bearer(const char *header, const char **token, size_t *len);

/* ---- failed attempts ---- */

#define AUTH_FREE_FAILS 5         /* per address and minute answered at once */
#define AUTH_FAIL_WINDOW_MS 60000 /* the minute */
#define AUTH_FAIL_DELAY_MS 1000   /* the wait of each one after those */
#define AUTH_THROTTLE_SLOTS 4096  /* addresses remembered */

struct auth_throttle_slot {
    char peer[64];     /* the address, without port */
    int64_t window_t0; /* ms: the window's first failure */
    uint32_t fails;    /* in the window */
};

struct auth_throttle {
    struct auth_throttle_slot *slots; /* open addressing by hash of peer */
    size_t n;
};

/* A failed attempt from peer at now_ms: how long its answer waits, 0 for the
 * first AUTH_FREE_FAILS within AUTH_FAIL_WINDOW_MS, AUTH_FAIL_DELAY_MS for
 * each one after. */
int64_t auth_throttle_fail(struct auth_throttle *t, const char *peer, int64_t now_ms);
void auth_throttle_free(struct auth_throttle *t);

/* ---- the daemon's side (libevent) ---- */

struct event_base;
struct evhttp_request;
struct bufferevent;
struct auth_wait;

struct auth_gate {
    struct event_base *base;
    struct auth_tokens *tokens; /* NULL: no daemon.auth, everything is allowed */
    struct auth_throttle throttle;
    uint64_t failures;       /* mktd_auth_failures_total */
    struct auth_wait *waits; /* answers held back */
};

void auth_gate_init(struct auth_gate *g, struct event_base *base);
/* Reads the tokens file (NULL: auth off) and swaps it in; on failure the
 * tokens in force stay and err says why. */
int auth_gate_load(struct auth_gate *g, const char *tokens_file, char *err, size_t errlen);
/* Sends every answer held back now (stopping), then frees all. */
void auth_gate_free(struct auth_gate *g);

/* A failed attempt from peer (address, port; what: a short reason for the
 * log): logged, counted, and answer(arg) runs now or, past the free
 * attempts, after AUTH_FAIL_DELAY_MS on a timer. Returns the hold (for
 * auth_wait_cancel, when arg goes away first) or NULL when answered now. */
struct auth_wait *auth_gate_fail(struct auth_gate *g, const char *peer, int port,
                                 const char *transport, const char *what, void (*answer)(void *arg),
                                 void *arg);
void auth_wait_cancel(struct auth_gate *g, struct auth_wait *w);

/* The first line of a connection that must authenticate: 1 and *t for a
 * known token, 0 for a blank line (skipped), -1 and *what (for the log) for
 * anything else. */
int auth_gate_line(struct auth_gate *g, const char *line, size_t len, const struct auth_token **t,
                   const char **what);
/* Appends {"status":"ok","auth":NAME} (NULL: null) and a newline. */
struct sbuf;
void auth_ok_line(const char *name, struct sbuf *b);
/* Where no token is needed: 1 when the line is an auth line (answered ok
 * and otherwise ignored), 0 when blank, -1 for anything else. */
int auth_line_kind(const char *line, size_t len);

/* An HTTP request needing any of the scopes in need: 1 to go on (*scopes
 * set: the token's, or AUTH_ALL without auth), 0 when it has been answered
 * (401 for no or a bad token, held back past the free attempts; 403 for a
 * token without the scope). A verified client certificate's CN names the
 * token as a bearer token does. */
int auth_gate_http(struct auth_gate *g, struct evhttp_request *req, unsigned need,
                   unsigned *scopes);
/* auth_gate_http, and the token's name into name ("" without auth). */
int auth_gate_http_as(struct auth_gate *g, struct evhttp_request *req, unsigned need,
                      unsigned *scopes, char *name, size_t namelen);
/* The token a verified client certificate names on bev (a TLS connection),
 * or NULL; *cn gets the CN (empty when there is none). */
const struct auth_token *auth_gate_cert(struct auth_gate *g, struct bufferevent *bev, char *cn,
                                        size_t cnlen);

#endif
