#include "lib/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int log_level = MKTD_LOG_INFO;

static const char *const names[] = {"error", "warn", "info", "debug"};

void log_vmsg(int level, const char *campaign, const char *fmt, va_list ap)
{
    if (level > log_level)
        return;
    if (level < 0)
        level = 0;
    if (level > 3)
        level = 3;
    char msg[2048];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    /* Under journald (JOURNAL_STREAM set) the journal stamps the time and
     * reads the <N> priority prefix. */
    static int journal = -1;
    if (journal < 0)
        journal = getenv("JOURNAL_STREAM") != NULL;
    static const int prio[] = {3, 4, 6, 7};
    char camp[160] = "";
    if (campaign)
        snprintf(camp, sizeof(camp), " campaign=%s", campaign);
    if (journal) {
        fprintf(stderr, "<%d>%s%s: %s\n", prio[level], names[level], camp, msg);
    } else {
        char ts[40];
        rfc3339_format(wall_ms(), ts, sizeof(ts));
        fprintf(stderr, "%s %s%s: %s\n", ts, names[level], camp, msg);
    }
}

void log_msg(int level, const char *campaign, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_vmsg(level, campaign, fmt, ap);
    va_end(ap);
}
