/*
 * abi_old — a plugin built against ABI 1.0's header, kept as it was in
 * tests/plugins/abi-1.0/: it declares minor 0, a descriptor that ends at
 * on_load (the last member of 1.0), and calls only host members of 1.0. A
 * host of a newer minor must load and run it, and show it nothing of 1.1.
 *
 * On every matched input event it records `old.seen` for the event's user,
 * payload {"host_abi": "MAJOR.MINOR" of the host that runs it, "flags": the
 * flags it was called with}, then `old.rc` {"rc": what that emit returned}
 * (a cap on old.seen makes it 0 for a 1.0 plugin, never MKTD_CAPPED). An
 * unmatched input event (a group excluded it, say) records `old.unmatched`
 * {"flags"}: 1.1's MKTD_F_EXCLUDED (0x4) must never show.
 */
#include <stddef.h>
#include <stdio.h>

#include <mktd/plugin.h>

#if MKTD_ABI_MINOR != 0
#error "abi_old is built against the ABI 1.0 header of tests/plugins/abi-1.0"
#endif
#define ABI_1_0 MKTD_ABI_VERSION
#define DESC_1_0_SIZE sizeof(mktd_plugin)

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
    if (ev->depth > 0)
        return 0;
    mktd_obj *o = host->obj_new(ctx);
    if (!(flags & MKTD_F_MATCH)) {
        host->obj_int(o, "flags", flags);
        return host->emit(ctx, "old.unmatched", ev->user, o);
    }
    snprintf(v, sizeof v, "%u.%u", MKTD_ABI_MAJOR_OF(host->abi_version),
             MKTD_ABI_MINOR_OF(host->abi_version));
    host->obj_str(o, "host_abi", v);
    host->obj_int(o, "flags", flags);
    int rc = host->emit(ctx, "old.seen", ev->user, o);
    if (rc < 0)
        return rc;
    o = host->obj_new(ctx);
    host->obj_int(o, "rc", rc);
    return host->emit(ctx, "old.rc", ev->user, o);
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
