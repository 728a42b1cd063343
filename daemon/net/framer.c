#include "net/framer.h"

enum frame framer_step(struct framer *f, size_t have, long long nl, int eof, size_t *line_len,
                       size_t *drain)
{
    *line_len = 0;
    *drain = 0;
    if (nl >= 0) {
        *drain = (size_t)nl + 1;
        if (f->discarding) {
            f->discarding = 0;
            return FRAME_SKIP;
        }
        if ((int64_t)nl > f->max + 1)
            return FRAME_TOO_LARGE;
        *line_len = (size_t)nl;
        return FRAME_LINE;
    }
    if (have == 0)
        return FRAME_NONE;
    if (f->discarding) {
        *drain = have;
        return FRAME_SKIP;
    }
    if ((int64_t)have > f->max + 1) {
        /* too long already: answer now, drop the rest up to the newline */
        f->discarding = 1;
        *drain = have;
        return FRAME_TOO_LARGE;
    }
    if (eof) {
        *drain = have;
        *line_len = have;
        return FRAME_LINE; /* the last line needs no newline */
    }
    return FRAME_NONE;
}
