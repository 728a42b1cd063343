/* NDJSON framing with a size limit (spec section 1). */
#ifndef MKTD_FRAMER_H
#define MKTD_FRAMER_H

#include <stddef.h>
#include <stdint.h>

/* NDJSON framing with a size limit, for bytes that arrive piece by piece
 * (a socket) or all at once (an HTTP body). Pure: the caller finds the
 * first '\n' in what it has buffered, and drains what a step consumes. */
struct framer {
    int64_t max;    /* limits.max_event_bytes (a '\r' before '\n' is extra) */
    int discarding; /* inside a line already answered too_large */
};
enum frame {
    FRAME_NONE,      /* nothing to do until more bytes arrive */
    FRAME_LINE,      /* a line of *line_len bytes at the start of the buffer */
    FRAME_TOO_LARGE, /* answer too_large (once per oversize line) */
    FRAME_SKIP       /* bytes of an oversize line: drop them */
};
/* have: bytes buffered; nl: offset of the first '\n' in them, or -1; eof:
 * no more bytes will come. Sets *drain to the bytes this step consumes. */
enum frame framer_step(struct framer *f, size_t have, long long nl, int eof, size_t *line_len,
                       size_t *drain);

#endif
