/*
 * abi_major — declares ABI 2.0, another major version than the host's: the
 * host must refuse it, naming both versions.
 */
#include <mktd/plugin.h>

static int abi_major_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    *data = 0;
    return 0;
}

static const mktd_plugin desc = {
    .abi_version = (uint32_t)((2u << 16) | 0u),
    .struct_size = sizeof(mktd_plugin),
    .name = "abi_major",
    .version = "1",
    .init = abi_major_init,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *h)
{
    (void)h;
    return &desc;
}
