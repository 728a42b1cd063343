/*
 * abi_minor — declares ABI 1.<MKTD_ABI_MINOR + 1>, a minor version newer than
 * the host's: the host must refuse it, naming both versions.
 */
#include <mktd/plugin.h>

static int abi_minor_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    *data = 0;
    return 0;
}

static const mktd_plugin desc = {
    .abi_version = (uint32_t)((MKTD_ABI_MAJOR << 16) | (MKTD_ABI_MINOR + 1)),
    .struct_size = sizeof(mktd_plugin),
    .name = "abi_minor",
    .version = "1",
    .init = abi_minor_init,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *h)
{
    (void)h;
    return &desc;
}
