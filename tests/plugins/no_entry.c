/*
 * no_entry — a shared object that exports no mktd_plugin_entry (only a
 * look-alike symbol): the host must refuse it.
 */
#include <mktd/plugin.h>

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry_v0(const mktd_host *h);

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry_v0(const mktd_host *h)
{
    (void)h;
    return 0;
}
