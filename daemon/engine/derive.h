/* Cluster mode's random_for (spec 17 and 18): bytes derived with
 * HMAC-SHA256 from the cluster's secret and the identity of the action
 * being decided, so that a partition replayed from its stream decides
 * alike (the same coupon codes). docs/cluster.md gives the layout. */
#ifndef MKTD_ENGINE_DERIVE_H
#define MKTD_ENGINE_DERIVE_H

#include <stddef.h>
#include <stdint.h>

enum derive_kind {
    DERIVE_EVENT = 'e', /* an input event and its chain: event_id */
    DERIVE_TIMER = 't', /* a timer and its chain: timer_campaign, timer_user, timer_name, due */
    DERIVE_OTHER = 'o', /* anything else (on_load, on_forget): now */
};

struct derive_id {
    uint32_t partition;
    enum derive_kind kind;
    const char *event_id;
    const char *timer_campaign, *timer_user, *timer_name; /* user "" for campaign-wide */
    int64_t due_or_now;                                   /* the timer's due; OTHER: the clock */
    const char *campaign;                                 /* the campaign asking */
    uint32_t counter; /* random_for calls before this one in the same chain */
};

/* len bytes into out: HMAC-SHA256(key, message || block) for block 0, 1,
 * ... concatenated and cut to len, where message is
 *   u32 partition, u8 kind,
 *   EVENT: str event_id | TIMER: str campaign, str user, str name, i64 due
 *   | OTHER: i64 now,
 *   str campaign, u32 counter
 * and block a u32; integers big-endian, str = u32 length then the bytes.
 * 0, or -EIO when the HMAC fails. */
int derive_bytes(const void *key, size_t key_len, const struct derive_id *id, void *out,
                 size_t len);

#endif
