/* The plugin host: loads <name>.so from plugin_dirs only, checks its ABI. */
#ifndef MKTD_PLUGINS_H
#define MKTD_PLUGINS_H

#include <mktd/plugin.h>
#include <stddef.h>

struct plugin_mod {
    char *name;
    char *path;
    void *dl;
    mktd_plugin d; /* the descriptor, zero-filled past the plugin's struct_size */
};

/* Finds name.so in dirs (in order), loads it once per process and checks
 * its ABI. Returns the module, or NULL with a message in err. */
const struct plugin_mod *plugins_load(const char *name, char *const *dirs, size_t n_dirs,
                                      const mktd_host *host, char *err, size_t errlen);
/* Unloads every module (at exit). */
void plugins_unload_all(void);

#endif
