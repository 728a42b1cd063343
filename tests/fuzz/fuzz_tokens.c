/* libFuzzer target: the tokens file (net/auth.c) and the auth line. A file
 * that parses has tokens with names, scopes and distinct hashes; one that
 * does not says where (NAME:LINE). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/auth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    struct auth_tokens *t = auth_tokens_parse("f", (const char *)data, size, err, sizeof(err));
    if (!t) {
        if (strncmp(err, "f:", 2) != 0)
            abort();
    } else {
        for (size_t i = 0; i < t->n; i++) {
            if (!t->v[i].name[0] || !(t->v[i].scopes & AUTH_ALL) || (t->v[i].scopes & ~AUTH_ALL))
                abort();
            if (auth_token_named(t, t->v[i].name) != &t->v[i] ||
                auth_token_by_hash(t, t->v[i].hash) != &t->v[i])
                abort();
        }
        /* the input itself as a token: found or not, never a crash */
        auth_token_check(t, (const char *)data, size);
        auth_tokens_free(t);
    }
    char *tok = NULL;
    if (auth_line_token((const char *)data, size, &tok) == 0) {
        if (!tok[0])
            abort();
        free(tok);
    }
    return 0;
}
