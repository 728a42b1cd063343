/*
 * init_fails — a well-formed plugin whose init refuses every campaign with
 * config_error (at the campaign, or at its params when given).
 */
#include <errno.h>

#include <mktd/plugin.h>

static const mktd_host *host;

static int init_fails_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    *data = 0;
    return host->config_error(ctx, params, "init_fails refuses every campaign");
}

static const mktd_plugin desc = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "init_fails",
    .version = "1",
    .init = init_fails_init,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *h)
{
    host = h;
    return &desc;
}
