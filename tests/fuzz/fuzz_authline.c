/* libFuzzer target: the TCP auth line `{"auth":"TOKEN"}` and the HTTP
 * `Authorization: Bearer TOKEN` value (net/auth.c), the two places a client
 * hands mktd its token before anything else is read. A token taken is
 * never empty, holds no NUL, and comes back the same from the line mktd
 * itself would write for it; a bearer token lies inside the header, without
 * the blanks around it. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/auth.h"

static void line_round_trip(const char *tok)
{
    json_t *o = json_pack("{s:s}", "auth", tok);
    if (!o)
        abort();
    char *line = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    char *again = NULL;
    if (!line || auth_line_token(line, strlen(line), &again) != 0 || strcmp(again, tok) != 0)
        abort();
    free(again);
    free(line);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    char *tok = NULL;
    if (auth_line_token(in, size, &tok) == 0) {
        if (!tok || !tok[0])
            abort();
        line_round_trip(tok);
        free(tok);
    }

    /* the same bytes as a header value (headers end at a NUL) */
    char *h = malloc(size + 1);
    if (!h)
        return 0;
    memcpy(h, data, size);
    h[size] = 0;
    const char *bt;
    size_t bn;
    if (auth_bearer(h, &bt, &bn) == 0) {
        size_t hl = strlen(h);
        if (bn == 0 || bt < h + 7 || bt + bn > h + hl)
            abort();
        if (bt[0] == ' ' || bt[0] == '\t' || bt[bn - 1] == ' ' || bt[bn - 1] == '\t')
            abort();
        /* written back as mktd send writes it, the same token */
        char *w = malloc(bn + 8);
        if (!w)
            abort();
        snprintf(w, bn + 8, "Bearer %.*s", (int)bn, bt);
        const char *bt2;
        size_t bn2;
        if (auth_bearer(w, &bt2, &bn2) != 0 || bn2 != bn || memcmp(bt2, bt, bn) != 0)
            abort();
        free(w);
    }
    free(h);
    return 0;
}
