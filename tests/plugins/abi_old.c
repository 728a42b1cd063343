/*
 * abi_old — a plugin as it was built for ABI 1.0: it declares minor 0, a
 * descriptor that ends at on_load (the last member of 1.0), and calls only
 * host members of 1.0. A host of a newer minor must load and run it.
 *
 * On every input event it records `old.seen` for the event's user, payload
 * {"host_abi": "MAJOR.MINOR" of the host that runs it}.
 */
#include <stddef.h>
#include <stdio.h>

#include <mktd/plugin.h>

#define ABI_1_0 ((uint32_t)((MKTD_ABI_MAJOR << 16) | 0))
#define DESC_1_0_SIZE (offsetof(mktd_plugin, on_load) + sizeof(((mktd_plugin *)0)->on_load))

static const mktd_host *host;

static int abi_old_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    (void)ctx;
    (void)params;
    *data = NULL;
    return 0;
}

static int abi_old_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    char v[32];
    (void)data;
    (void)flags;
    if (ev->depth > 0)
        return 0;
    snprintf(v, sizeof v, "%u.%u", MKTD_ABI_MAJOR_OF(host->abi_version),
             MKTD_ABI_MINOR_OF(host->abi_version));
    mktd_obj *o = host->obj_new(ctx);
    host->obj_str(o, "host_abi", v);
    return host->emit(ctx, "old.seen", ev->user, o);
}

static const mktd_plugin desc = {
    .abi_version = ABI_1_0,
    .struct_size = DESC_1_0_SIZE,
    .name = "abi_old",
    .version = "1",
    .init = abi_old_init,
    .on_event = abi_old_on_event,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *h)
{
    host = h;
    return &desc;
}
