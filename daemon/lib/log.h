/* Logging: one line per record on stderr, with time, level and campaign. */
#ifndef MKTD_LOG_H
#define MKTD_LOG_H

#include <mktd/plugin.h>
#include <stdarg.h>

#include "lib/util.h"

extern int log_level; /* MKTD_LOG_*; records above it are dropped */

void log_msg(int level, const char *campaign, const char *fmt, ...) MKTD_PRINTF_FMT(3, 4);
void log_vmsg(int level, const char *campaign, const char *fmt, va_list ap);

#define log_error(...) log_msg(MKTD_LOG_ERROR, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(MKTD_LOG_WARN, NULL, __VA_ARGS__)
#define log_info(...) log_msg(MKTD_LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...) log_msg(MKTD_LOG_DEBUG, NULL, __VA_ARGS__)

#endif
