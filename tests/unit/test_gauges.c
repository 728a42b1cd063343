/* The engine's table of plugin gauges (engine/gauges.c): pending values
 * show at apply (a commit), and go with a drop (a failed event or batch). */
#include "check.h"
#include "engine/gauges.h"

#include <stdlib.h>

struct seen {
    char text[512];
};

static void collect(void *arg, const char *campaign, const char *plugin, const char *name,
                    int64_t value)
{
    struct seen *s = arg;
    size_t n = strlen(s->text);
    snprintf(s->text + n, sizeof(s->text) - n, "%s/%s/%s=%lld;", campaign, plugin, name,
             (long long)value);
}

static const char *shown(const struct gauges *g, struct seen *s)
{
    s->text[0] = 0;
    gauges_foreach(g, collect, s);
    return s->text;
}

int main(void)
{
    struct seen s;
    struct gauges *g = gauges_new();

    /* nothing shows before a commit */
    CHECK_INT(gauges_set(g, "promo", "coupon", "budget", 3), 0);
    CHECK_INT(gauges_set(g, "promo", "coupon", "budget_left", 3), 0);
    CHECK_STR(shown(g, &s), "");
    gauges_apply(g, 0);
    CHECK_STR(shown(g, &s), "promo/coupon/budget=3;promo/coupon/budget_left=3;");
    CHECK_INT(gauges_mark(g), 0);

    /* a batch: event 1 kept, event 2 failed (dropped back to its mark),
     * event 3 kept; the latest kept value wins */
    gauges_set(g, "promo", "coupon", "budget_left", 2);
    size_t m = gauges_mark(g);
    gauges_set(g, "promo", "coupon", "budget_left", 1);
    gauges_set(g, "hits", "probe", "doomed", 1);
    gauges_drop(g, m);
    CHECK_INT(gauges_mark(g), 1);
    m = gauges_mark(g);
    gauges_set(g, "hits", "probe", "hits", 7);
    gauges_apply(g, 0);
    CHECK_STR(shown(g, &s), "promo/coupon/budget=3;promo/coupon/budget_left=2;hits/probe/hits=7;");

    /* a batch whose commit failed: all of it goes */
    gauges_set(g, "promo", "coupon", "budget_left", 0);
    gauges_set(g, "other", "probe", "x", 5);
    gauges_drop(g, 0);
    gauges_apply(g, 0);
    CHECK_STR(shown(g, &s), "promo/coupon/budget=3;promo/coupon/budget_left=2;hits/probe/hits=7;");

    /* a reload: only what on_load published again shows */
    gauges_set(g, "promo", "coupon", "budget", 5);
    gauges_set(g, "promo", "coupon", "budget_left", 4);
    gauges_apply(g, 1);
    CHECK_STR(shown(g, &s), "promo/coupon/budget=5;promo/coupon/budget_left=4;");

    /* a failed reload leaves the shown values as they were */
    m = gauges_mark(g);
    gauges_set(g, "promo", "coupon", "budget", 9);
    gauges_drop(g, m);
    CHECK_STR(shown(g, &s), "promo/coupon/budget=5;promo/coupon/budget_left=4;");
    gauges_free(g);

    /* a table never made (no plugin set a gauge) is an empty one */
    CHECK_INT(gauges_mark(NULL), 0);
    gauges_drop(NULL, 0);
    gauges_apply(NULL, 1);
    CHECK_STR(shown(NULL, &s), "");
    gauges_free(NULL);
    return check_done();
}
