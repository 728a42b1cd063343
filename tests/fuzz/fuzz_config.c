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
    return 0;
}
