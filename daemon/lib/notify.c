#include "lib/notify.h"

#ifdef HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

void notify(const char *msg)
{
#ifdef HAVE_SYSTEMD
    sd_notify(0, msg);
#else
    (void)msg;
#endif
}

uint64_t notify_watchdog_usec(void)
{
#ifdef HAVE_SYSTEMD
    uint64_t usec = 0;
    if (sd_watchdog_enabled(0, &usec) > 0)
        return usec;
#endif
    return 0;
}
