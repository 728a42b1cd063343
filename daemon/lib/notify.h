/* The service manager's notifications (sd_notify), for the daemon and the
 * cluster worker alike: nothing when built without libsystemd or when not
 * run under a manager that asked for them (no NOTIFY_SOCKET). */
#ifndef MKTD_LIB_NOTIFY_H
#define MKTD_LIB_NOTIFY_H

#include <stdint.h>

/* Sends one state line, e.g. "READY=1". */
void notify(const char *msg);

/* WatchdogSec= in microseconds when the watchdog is on for this process,
 * else 0. */
uint64_t notify_watchdog_usec(void);

#endif
