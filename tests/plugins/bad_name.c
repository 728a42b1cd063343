/*
 * bad_name — its descriptor names another plugin than its file name: the
 * host must refuse it.
 */
#include <mktd/plugin.h>

static int bad_name_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    *data = 0;
    return 0;
}

static const mktd_plugin desc = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "good_name",
    .version = "1",
    .init = bad_name_init,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *h)
{
    (void)h;
    return &desc;
}
