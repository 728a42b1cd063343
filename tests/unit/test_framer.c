/* The NDJSON framer: lines, the size limit, oversize lines split across
 * reads, the last line at end of stream. */
#include <string.h>

#include "check.h"
#include "net/framer.h"

/* Frames s fed in pieces of `step` bytes; returns a log like "L3:abc|T|". */
static const char *run(const char *s, int64_t max, size_t step)
{
    static char log[4096];
    char buf[1024];
    size_t have = 0, fed = 0, size = strlen(s);
    struct framer f = {.max = max};
    log[0] = 0;
    for (;;) {
        size_t n = step < size - fed ? step : size - fed;
        memcpy(buf + have, s + fed, n);
        have += n;
        fed += n;
        int eof = fed == size;
        for (;;) {
            const char *nl = memchr(buf, '\n', have);
            size_t len, drain;
            enum frame fr = framer_step(&f, have, nl ? nl - buf : -1, eof, &len, &drain);
            if (fr == FRAME_NONE)
                break;
            size_t at = strlen(log);
            if (fr == FRAME_LINE)
                snprintf(log + at, sizeof(log) - at, "L%zu:%.*s|", len, (int)len, buf);
            else if (fr == FRAME_TOO_LARGE)
                snprintf(log + at, sizeof(log) - at, "T|");
            memmove(buf, buf + drain, have - drain);
            have -= drain;
        }
        if (eof)
            break;
    }
    return log;
}

int main(void)
{
    for (size_t step = 1; step <= 64; step *= 4) {
        CHECK_STR(run("ab\ncd\n", 4, step), "L2:ab|L2:cd|");
        CHECK_STR(run("ab\ncd", 4, step), "L2:ab|L2:cd|"); /* last line, no newline */
        CHECK_STR(run("\n\n", 4, step), "L0:|L0:|");       /* blank lines are lines here */
        CHECK_STR(run("abcd\n", 4, step), "L4:abcd|");     /* exactly the limit */
        CHECK_STR(run("abcd\r\n", 4, step), "L5:abcd\r|"); /* its '\r' is extra */
        /* one over (the ingest layer refuses 5 bytes without '\r') */
        CHECK_STR(run("abcde\n", 4, step), "L5:abcde|");
        CHECK_STR(run("abcdef\nok\n", 4, step), "T|L2:ok|");
        /* an oversize line is answered once, however it arrives */
        CHECK_STR(run("abcdefghijklmnopqrstuvwxyz\nok\n", 4, step), "T|L2:ok|");
        CHECK_STR(run("abcdefghijklmnopqrstuvwxyz", 4, step), "T|");
        CHECK_STR(run("x\nabcdefghij", 4, step), "L1:x|T|");
    }
    return check_done();
}
