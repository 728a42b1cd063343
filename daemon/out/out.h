/* Webhook outputs (spec section 15): committed actions POSTed as NDJSON to
 * each configured output, in seq order, at least once.
 *
 * Everything runs on the daemon's event loop: libcurl's multi interface is
 * driven by libevent (curl_multi_socket_action), so no thread is needed and
 * the store is touched only from the loop's thread, between batches. */
#ifndef MKTD_OUT_H
#define MKTD_OUT_H

#include <event2/buffer.h>
#include <event2/event.h>
#include <stdint.h>

#include "config/config.h"
#include "store/store.h"

struct outs;

/* The outputs of one daemon, delivering from store st on loop base. */
int outs_new(struct event_base *base, struct store *st, struct outs **out, char *err,
             size_t errlen);
/* Stops every delivery (a request in flight is dropped: it is sent again
 * later, its batch never having been acknowledged) and frees everything. */
void outs_free(struct outs *os);
/* Takes the config's outputs: new ones start at the current end of
 * actions (or where they stood, if known to the database); removed ones
 * stop; changed ones keep their position. The config may go afterwards. */
void outs_configure(struct outs *os, const struct config *cfg);
/* Some actions were committed: deliveries catch up soon (on the loop). */
void outs_wake(struct outs *os);
/* Figures for /metrics (Prometheus text format). */
void outs_metrics(struct outs *os, struct evbuffer *out);

/* One output's figures, as /metrics shows them (a daemon's outputs and a
 * cluster graph holder's alike). */
struct sbuf;
struct out_figures {
    const char *id;
    long long lag; /* actions after its position; < 0: not known here */
    unsigned long long delivered, failures;
    int64_t last_success_ms; /* 0: never */
};
/* The mktd_output_* families for rows[0..n) (nothing when n is 0). */
void out_metrics_text(struct sbuf *b, const struct out_figures *rows, size_t n);
/* The smallest position among the configured outputs (INT64_MAX when there
 * are none): retention keeps every action after it. */
int64_t outs_min_position(struct outs *os);

/* A POST of body (NDJSON actions first..last) to url as output id sends
 * it: the headers (Content-Type, X-Mktd-Output, X-Mktd-Seq,
 * X-Mktd-Signature: HMAC of body under secret) appended to *hdrs, which the
 * caller frees after the request, as body; libcurl's error text goes to
 * errbuf (CURL_ERROR_SIZE). NULL when libcurl has no handle. */
typedef void CURL;
struct curl_slist;
CURL *out_easy_new(const char *url, const char *id, int64_t first, int64_t last, const char *secret,
                   size_t secret_len, const struct sbuf *body, int64_t timeout_ms,
                   struct curl_slist **hdrs, char *errbuf);

/* "sha256=" and the hex HMAC-SHA256 of body under key, into hex (>= 72 bytes). */
void out_signature(const char *key, size_t key_len, const char *body, size_t len, char *hex);
/* A filter list as a JSON array of strings (malloc'd), NULL for none. */
char *out_filter_json(char *const *v, size_t n);

#endif
