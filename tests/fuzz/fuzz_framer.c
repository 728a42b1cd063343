/* libFuzzer target: the NDJSON framer. The first byte picks the size limit
 * and the chunking; framing the rest piece by piece must give exactly what
 * framing it whole gives, and never a line over the limit. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/framer.h"

struct out {
    char *log; /* "L<len>:<bytes>" and "T" records */
    size_t len, cap;
};

static void put(struct out *o, const void *p, size_t n)
{
    if (o->len + n > o->cap) {
        o->cap = (o->len + n) * 2 + 64;
        o->log = realloc(o->log, o->cap);
        if (!o->log)
            abort();
    }
    memcpy(o->log + o->len, p, n);
    o->len += n;
}

/* Frames data fed in pieces of `step` bytes (0: all at once). */
static void frame(const uint8_t *data, size_t size, int64_t max, size_t step, struct out *o)
{
    struct framer f = {.max = max};
    uint8_t *buf = malloc(size + 1);
    size_t have = 0, fed = 0;
    if (!buf)
        abort();
    for (;;) {
        size_t n = step ? step : size;
        if (n > size - fed)
            n = size - fed;
        memcpy(buf + have, data + fed, n);
        have += n;
        fed += n;
        int eof = fed == size;
        for (;;) {
            const uint8_t *nl = memchr(buf, '\n', have);
            size_t len, drain;
            enum frame fr = framer_step(&f, have, nl ? nl - buf : -1, eof, &len, &drain);
            if (fr == FRAME_NONE)
                break;
            if (drain == 0 || drain > have)
                abort(); /* every step makes progress within the buffer */
            if (fr == FRAME_LINE) {
                if ((int64_t)len > max + 1 || memchr(buf, '\n', len))
                    abort();
                char hdr[32];
                int h = snprintf(hdr, sizeof(hdr), "L%zu:", len);
                put(o, hdr, (size_t)h);
                put(o, buf, len);
            } else if (fr == FRAME_TOO_LARGE) {
                put(o, "T", 1);
            }
            memmove(buf, buf + drain, have - drain);
            have -= drain;
        }
        if (eof)
            break;
    }
    if (have != 0)
        abort(); /* at end of stream everything is consumed */
    free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int64_t max = 1 + data[0] % 32;
    size_t step = 1 + data[0] / 32;
    struct out whole = {0}, pieces = {0};
    frame(data + 1, size - 1, max, 0, &whole);
    frame(data + 1, size - 1, max, step, &pieces);
    if (whole.len != pieces.len || (whole.len && memcmp(whole.log, pieces.log, whole.len)))
        abort(); /* framing depends on how the bytes arrived */
    free(whole.log);
    free(pieces.log);
    return 0;
}
