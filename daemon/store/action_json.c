/* A row of the actions table as one JSON line (spec section 5): what
 * `mktd actions` prints and what outputs deliver. */
#include "lib/util.h"
#include "store/store.h"

void store_action_json(struct sbuf *b, const struct store_action *a)
{
    const char *const names[] = {",\"kind\":", ",\"user\":", ",\"event_id\":"};
    const char *const vals[] = {a->campaign, a->kind, a->user, a->event_id};
    const size_t lens[] = {a->campaign_len, a->kind_len, a->user_len, a->event_id_len};
    sb_fmt(b, "{\"seq\":%lld,\"ts\":%lld,\"campaign\":", (long long)a->seq, (long long)a->ts);
    for (int i = 0; i < 4; i++) {
        if (i > 0)
            sb_str(b, names[i - 1]);
        if (!vals[i])
            sb_str(b, "null");
        else
            sb_json_str(b, vals[i], lens[i]);
    }
    sb_str(b, ",\"payload\":");
    if (a->payload)
        sb_add(b, a->payload, a->payload_len);
    else
        sb_str(b, "null");
    sb_str(b, "}\n");
}
