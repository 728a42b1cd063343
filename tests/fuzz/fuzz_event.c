/* libFuzzer target: event_decode on one arbitrary line, and the decoder's
 * fast path (event_parse_plain) against jansson: a line the fast path
 * takes must give jansson's tree, keys in the same order.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Idaemon -Isdk/include \
 *     tests/fuzz/fuzz_event.c daemon/event.c daemon/util.c -ljansson -lm -o fuzz_event
 *   ./fuzz_event tests/fuzz/corpus/event
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/event.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_plain(const uint8_t *data, size_t size)
{
    json_t *fast = event_parse_plain((const char *)data, size);
    if (!fast)
        return;
    json_error_t err;
    json_t *ref = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &err);
    if (!ref || !json_equal(fast, ref))
        abort();
    size_t f = JSON_COMPACT | JSON_PRESERVE_ORDER;
    char *a = json_dumps(fast, f), *b = json_dumps(ref, f);
    if (!a || !b || strcmp(a, b) != 0)
        abort();
    free(a);
    free(b);
    json_decref(fast);
    json_decref(ref);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_plain(data, size);
    struct decode_opts o = {.wall_now_ms = 1793491200000LL, .max_future_ms = 86400000LL};
    struct event ev;
    char detail[256];
    char *echo = NULL;
    enum ev_status st =
        event_decode((const char *)data, size, &o, &ev, detail, sizeof(detail), &echo);

    /* The detail is printable ASCII, the echo follows the status. */
    if (st != EV_OK && !detail[0])
        abort();
    for (const char *p = detail; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            abort();
    if (st == EV_INVALID_JSON && echo)
        abort();
    if (echo && (!echo[0] || strlen(echo) > 128))
        abort();
    if (st == EV_OK) {
        if (!echo || strcmp(echo, ev.id) != 0 || !ev.root || !ev.type || !ev.user)
            abort();
        if (ev.has_ts && (ev.ts < 0 || ev.ts > o.wall_now_ms + o.max_future_ms))
            abort();
        if (ev.props && !json_is_object(ev.props))
            abort();
        (void)props_path(ev.props, "a.b");
        (void)props_path(ev.props, "amount");
        event_clear(&ev);
    } else if (ev.root) {
        abort();
    }
    free(echo);
    return 0;
}
