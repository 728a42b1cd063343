#include "engine/plugins.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/util.h"

/* Smallest descriptor a plugin of this major version may declare: up to and
 * including on_load, the last member of ABI 1.0. */
#define MIN_DESC_SIZE (offsetof(mktd_plugin, on_load) + sizeof(((mktd_plugin *)0)->on_load))

static struct plugin_mod **mods;
static size_t n_mods;

static int valid_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_' ||
              s[i] == '-'))
            return 0;
    return 1;
}

/* Checks a descriptor against this host's ABI (`where` names its file, for
 * messages) and keeps a copy of it. Returns NULL with a message in err. */
static struct plugin_mod *check_and_keep(const mktd_plugin *d, const char *name, const char *where,
                                         char *err, size_t errlen)
{
    unsigned pmaj = MKTD_ABI_MAJOR_OF(d->abi_version), pmin = MKTD_ABI_MINOR_OF(d->abi_version);
    if (pmaj != MKTD_ABI_MAJOR || pmin > MKTD_ABI_MINOR) {
        snprintf(err, errlen, "plugin '%s' (%s) was built for ABI %u.%u; this mktd has ABI %u.%u%s",
                 name, where, pmaj, pmin, MKTD_ABI_MAJOR, MKTD_ABI_MINOR,
                 pmaj != MKTD_ABI_MAJOR ? " (another major version)" : " (a newer minor version)");
        return NULL;
    }
    if (d->struct_size < MIN_DESC_SIZE) {
        snprintf(err, errlen,
                 "plugin '%s' (%s): descriptor size %u is smaller than ABI %u needs (%zu)", name,
                 where, d->struct_size, MKTD_ABI_MAJOR, (size_t)MIN_DESC_SIZE);
        return NULL;
    }
    if (!d->name || strcmp(d->name, name) != 0 || !d->init) {
        snprintf(err, errlen, "plugin '%s' (%s): descriptor %s", name, where,
                 !d->init ? "has no init" : "names another plugin");
        return NULL;
    }
    struct plugin_mod *m = xcalloc(1, sizeof(*m));
    size_t n = d->struct_size < sizeof(m->d) ? d->struct_size : sizeof(m->d);
    memcpy(&m->d, d, n);
    m->name = xstrdup(name);
    m->path = xstrdup(where);
    return m;
}

static void keep(struct plugin_mod *m)
{
    mods = xrealloc(mods, (n_mods + 1) * sizeof(*mods));
    mods[n_mods++] = m;
}

/* The newest module of that name: a registered one wins over a file. */
static const struct plugin_mod *find(const char *name)
{
    for (size_t i = n_mods; i-- > 0;)
        if (strcmp(mods[i]->name, name) == 0)
            return mods[i];
    return NULL;
}

const struct plugin_mod *plugins_load(const char *name, char *const *dirs, size_t n_dirs,
                                      const mktd_host *host, char *err, size_t errlen)
{
    const struct plugin_mod *found = find(name);
    if (found)
        return found;
    if (!valid_name(name)) {
        snprintf(err, errlen, "plugin name '%s' is not [a-z0-9_-]{1,64}", name);
        return NULL;
    }
    char path[4096] = "";
    for (size_t i = 0; i < n_dirs; i++) {
        snprintf(path, sizeof(path), "%s/%s.so", dirs[i], name);
        if (access(path, F_OK) == 0)
            break;
        path[0] = 0;
    }
    if (!path[0]) {
        struct sbuf b = {0};
        for (size_t i = 0; i < n_dirs; i++)
            sb_fmt(&b, "%s%s", i ? ", " : "", dirs[i]);
        snprintf(err, errlen,
                 "plugin '%s': no %s.so in plugin_dirs (%s; relative entries resolve against "
                 "the config's folder)",
                 name, name, b.s ? b.s : "none");
        sb_free(&b);
        return NULL;
    }
    /* dlopen needs a slash to avoid searching the library path. */
    char full[4200];
    snprintf(full, sizeof(full), "%s%s", path[0] == '/' ? "" : "./", path);
    void *dl = dlopen(full, RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
        snprintf(err, errlen, "plugin '%s': %s", name, dlerror());
        return NULL;
    }
    mktd_plugin_entry_fn entry;
    *(void **)&entry = dlsym(dl, MKTD_ENTRY_SYMBOL);
    if (!entry) {
        snprintf(err, errlen, "plugin '%s' (%s): no entry symbol %s", name, path,
                 MKTD_ENTRY_SYMBOL);
        dlclose(dl);
        return NULL;
    }
    const mktd_plugin *d = entry(host);
    if (!d) {
        snprintf(err, errlen, "plugin '%s' (%s): its entry returned no descriptor", name, path);
        dlclose(dl);
        return NULL;
    }
    struct plugin_mod *m = check_and_keep(d, name, path, err, errlen);
    if (!m) {
        dlclose(dl);
        return NULL;
    }
    m->dl = dl;
    keep(m);
    return m;
}

const struct plugin_mod *plugins_register(mktd_plugin_entry_fn entry, const mktd_host *host,
                                          char *err, size_t errlen)
{
    static const char where[] = "in-process";
    const mktd_plugin *d = entry ? entry(host) : NULL;
    if (!d) {
        snprintf(err, errlen, "plugin (%s): %s", where,
                 entry ? "its entry returned no descriptor" : "no entry function");
        return NULL;
    }
    const char *name = d->name ? d->name : "";
    if (!valid_name(name)) {
        snprintf(err, errlen, "plugin name '%s' is not [a-z0-9_-]{1,64}", name);
        return NULL;
    }
    struct plugin_mod *m = check_and_keep(d, name, where, err, errlen);
    if (!m)
        return NULL;
    /* The same descriptor again: the module registered before. */
    const struct plugin_mod *prev = find(name);
    if (prev && !prev->dl && memcmp(&prev->d, &m->d, sizeof(m->d)) == 0) {
        free(m->name);
        free(m->path);
        free(m);
        return prev;
    }
    keep(m);
    return m;
}

void plugins_unload_all(void)
{
    for (size_t i = 0; i < n_mods; i++) {
        if (mods[i]->dl)
            dlclose(mods[i]->dl);
        free(mods[i]->name);
        free(mods[i]->path);
        free(mods[i]);
    }
    free(mods);
    mods = NULL;
    n_mods = 0;
}
