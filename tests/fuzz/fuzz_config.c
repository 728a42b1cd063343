/* libFuzzer target: the config loader (YAML tree and schema) must refuse
 * any input with FILE:LINE:COL messages, never crash, never leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct errs errs = {0};
    struct config *c = config_load_string("fuzz.yaml", (const char *)data, size, &errs);
    if (c) {
        if (errs.n)
            abort(); /* loaded, yet errors were reported */
        config_free(c);
    } else {
        if (errs.n == 0)
            abort(); /* refused without saying why */
        for (size_t i = 0; i < errs.n; i++)
            if (strncmp(errs.msg[i], "fuzz.yaml", 9) != 0)
                abort(); /* every message names the file */
    }
    errs_free(&errs);

    /* the same text as a file in a real folder: relative paths resolve
     * against it, and every path that comes out is absolute */
    struct errs e2 = {0};
    c = config_load_string_in("/srv/mktd/etc/fuzz.yaml", "/srv/mktd/etc", 1, (const char *)data,
                              size, &e2);
    if (c) {
        if (c->database[0] != '/' && strcmp(c->database, ":memory:") != 0)
            abort();
        for (size_t i = 0; i < c->n_plugin_dirs; i++)
            if (c->plugin_dirs[i][0] != '/')
                abort();
        for (size_t i = 0; i < c->n_listen; i++)
            if (strncmp(c->listen[i], "unix:", 5) == 0 && c->listen[i][5] != '/')
                abort();
        if ((c->tokens_file && c->tokens_file[0] != '/') || (c->tls_cert && c->tls_cert[0] != '/'))
            abort();
        config_free(c);
    } else if (e2.n == 0) {
        abort();
    }
    errs_free(&e2);
    return 0;
}
