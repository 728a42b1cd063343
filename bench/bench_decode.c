/* Decoding throughput: one realistic event line decoded N times.
 *
 *   gcc -std=gnu11 -O2 -Idaemon -Isdk/include bench/bench_decode.c daemon/event.c \
 *     daemon/util.c -ljansson -lm -o bench_decode && ./bench_decode [N]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/event.h"

static const char line[] =
    "{\"id\":\"evt-20261101-000000123456\",\"type\":\"order.paid\",\"user\":\"user-8842113\","
    "\"ts\":1793491200000,\"props\":{\"order_id\":\"ORD-2026-11-01-778812\",\"amount\":12900,"
    "\"currency\":\"CNY\",\"channel\":\"app\",\"items\":3,\"first\":false}}";

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    struct decode_opts o = {.wall_now_ms = 1793491200000LL, .max_future_ms = 86400000LL};
    char detail[256];
    size_t len = strlen(line);

    if (n <= 0)
        n = 1;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        struct event ev;
        char *echo;
        if (event_decode(line, len, &o, &ev, detail, sizeof(detail), &echo) != EV_OK) {
            fprintf(stderr, "decode failed: %s\n", detail);
            return 1;
        }
        event_clear(&ev);
        free(echo);
    }
    double dt = now_s() - t0;
    printf("%ld events of %zu bytes in %.3f s: %.0f events/s, %.0f ns/event, %.1f MB/s\n", n, len,
           dt, (double)n / dt, dt * 1e9 / (double)n, (double)n * (double)len / dt / 1e6);
    return 0;
}
