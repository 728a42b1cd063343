/* The plugin host: loads <name>.so from plugin_dirs only, checks its ABI.
 * A plugin linked into the process (the SDK's test kit) is registered by
 * its entry function instead, and checked the same way. */
#ifndef MKTD_PLUGINS_H
#define MKTD_PLUGINS_H

#include <mktd/plugin.h>
#include <stddef.h>

struct plugin_mod {
    char *name;
    char *path;
    void *dl;      /* NULL for a registered module */
    mktd_plugin d; /* the descriptor, zero-filled past the plugin's struct_size */
};

/* Finds name.so in dirs (in order), loads it once per process and checks
 * its ABI. Returns the module, or NULL with a message in err. */
const struct plugin_mod *plugins_load(const char *name, char *const *dirs, size_t n_dirs,
                                      const mktd_host *host, char *err, size_t errlen);
/* Registers a plugin linked into the process: calls entry(host) and checks
 * the descriptor as plugins_load does. plugins_load then finds it by the
 * descriptor's name before looking in any directory; a later registration
 * of another descriptor under the same name takes its place for later
 * loads. Returns the module, or NULL with a message in err. */
const struct plugin_mod *plugins_register(mktd_plugin_entry_fn entry, const mktd_host *host,
                                          char *err, size_t errlen);
/* Unloads every module (at exit). */
void plugins_unload_all(void);

#endif
