/* mktd timers [--failed]: pending timers, or those set aside because their
 * callback failed (spec 12), as NDJSON. */
#include <stdio.h>
#include <string.h>

#include "cmd/cli.h"
#include "lib/util.h"
#include "store/store.h"

static void print_timer(void *arg, const struct store_timer *t)
{
    struct sbuf b = {0};
    sb_str(&b, "{\"campaign\":");
    sb_json_str(&b, t->campaign, strlen(t->campaign));
    sb_str(&b, ",\"user\":");
    sb_json_str(&b, t->user, strlen(t->user));
    sb_str(&b, ",\"name\":");
    sb_json_str(&b, t->name, strlen(t->name));
    sb_fmt(&b, ",\"due\":%lld", (long long)t->due);
    if (t->error) {
        sb_fmt(&b, ",\"failed_at\":%lld,\"error\":", (long long)t->failed_at);
        sb_json_str(&b, t->error, strlen(t->error));
    }
    sb_str(&b, "}\n");
    fwrite(b.s, 1, b.len, arg);
    sb_free(&b);
}

int cli_timers(const char *db_path, int failed)
{
    char err[512];
    if (store_timers_list(db_path, failed, print_timer, stdout, err, sizeof(err)) < 0) {
        fprintf(stderr, "mktd timers: %s\n", err);
        return 2;
    }
    return 0;
}
