/*
 * checkin — streaks of daily check-ins (连续签到): on `checkin` events,
 * count the run of consecutive local days with a check-in and record a
 * reward each time the run reaches a multiple of `streak` (spec sections 16
 * and 18, "Plugins of section 16").
 *
 * What the campaign keeps, all through the host:
 *   state     per user "run" = "<last counted local day> <run length>"
 *             (the day as days since 1970-01-01 at utc_offset)
 *
 * Only input events of type `checkin` are looked at, while the campaign is
 * active (enabled, ts within starts..ends); internal events are ignored.
 * An event excluded by the campaign's group (MKTD_F_EXCLUDED) still counts
 * the day but records no reward, and so does a capped reward
 * (MKTD_CAPPED). Each decision is noted (note) for explanations.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mktd/plugin.h>

#define DAY_MS 86400000LL
#define STREAK_MAX 36600 /* about a hundred years of days */

static const mktd_host *host;

struct checkin {
    int64_t streak;     /* days, 1..STREAK_MAX */
    int64_t utc_offset; /* ms */
    char *reward;       /* JSON text of the reward map */
};

static int64_t sat_add(int64_t a, int64_t b)
{
    if (b > 0 && a > INT64_MAX - b)
        return INT64_MAX;
    if (b < 0 && a < INT64_MIN - b)
        return INT64_MIN;
    return a + b;
}

static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;

    if ((a % b != 0) && ((a < 0) != (b < 0)))
        q--;
    return q;
}

/* A day number (days since 1970-01-01) as "YYYY-MM-DD" (proleptic
 * Gregorian; H. Hinnant's civil_from_days). */
static void day_str(int64_t z, char *buf, size_t size)
{
    z += 719468;
    int64_t era = floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = yoe + era * 400;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;

    snprintf(buf, size, "%04" PRId64 "-%02d-%02d", y + (m <= 2), (int)m, (int)d);
}

/* ---- init ---- */

/* 1 for a missing node or a null scalar ("~", "null", or nothing at all). */
static int is_null(mktd_ctx *ctx, const mktd_node *n)
{
    char *json = NULL;
    int null;

    if (!n)
        return 1;
    if (host->node_kind(n) != MKTD_NODE_SCALAR)
        return 0;
    if (host->node_json(ctx, n, &json) < 0 || !json)
        return 0;
    null = strcmp(json, "null") == 0;
    free(json);
    return null;
}

/* "+hh:mm", "-hh:mm" (up to 23:59) or "Z" -> ms; 0 or -1. */
static int parse_utc_offset(const char *s, int64_t *out)
{
    int sign, hh, mm;

    if (strcmp(s, "Z") == 0 || strcmp(s, "z") == 0) {
        *out = 0;
        return 0;
    }
    if (strlen(s) != 6 || (s[0] != '+' && s[0] != '-') || s[3] != ':')
        return -1;
    for (int i = 1; i < 6; i++)
        if (i != 3 && (s[i] < '0' || s[i] > '9'))
            return -1;
    sign = s[0] == '-' ? -1 : 1;
    hh = (s[1] - '0') * 10 + (s[2] - '0');
    mm = (s[4] - '0') * 10 + (s[5] - '0');
    if (hh > 23 || mm > 59)
        return -1;
    *out = sign * ((int64_t)hh * 3600000 + (int64_t)mm * 60000);
    return 0;
}

static void checkin_destroy(void *data)
{
    struct checkin *c = data;

    if (c)
        free(c->reward);
    free(c);
}

static int checkin_init(mktd_ctx *ctx, const mktd_node *params, void **data)
{
    static const char *const allowed[] = {"streak", "utc_offset", "reward", NULL};
    const mktd_node *n;
    const char *s = NULL;
    struct checkin *c;
    int rc = 0;

    *data = NULL;
    if (!params || is_null(ctx, params))
        return host->config_error(ctx, NULL, "checkin needs params (at least streak)");
    if (host->node_kind(params) != MKTD_NODE_MAP)
        return host->config_error(ctx, params, "params must be a map");

    c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;

    if (host->check_keys(ctx, params, allowed) < 0)
        rc = -EINVAL;
    if (host->get_int(ctx, params, "streak", 1, 0, 1, STREAK_MAX, &c->streak) < 0)
        rc = -EINVAL;
    if (host->get_str(ctx, params, "utc_offset", 0, "+00:00", &s) < 0) {
        rc = -EINVAL;
    } else if (parse_utc_offset(s ? s : "+00:00", &c->utc_offset) < 0) {
        n = host->node_get(params, "utc_offset");
        rc = host->config_error(ctx, n ? n : params,
                                "utc_offset: expected \"+hh:mm\", \"-hh:mm\" or \"Z\", got \"%s\"",
                                s);
    }
    /* a key with no value counts as absent, as for the host's accessors */
    n = host->node_get(params, "reward");
    if (!is_null(ctx, n)) {
        if (host->node_kind(n) != MKTD_NODE_MAP)
            rc = host->config_error(ctx, n, "reward: expected a map (copied into the payload)");
        else if (host->node_json(ctx, n, &c->reward) < 0 || !c->reward)
            rc = -EINVAL;
    }
    if (rc == 0 && !c->reward && !(c->reward = strdup("{}")))
        rc = -ENOMEM;

    if (rc < 0) {
        checkin_destroy(c);
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    *data = c;
    return 0;
}

/* ---- the run ---- */

/* 1 and *day, *run; 0 when the user has none; or a negative errno. */
static int run_get(mktd_ctx *ctx, const char *user, int64_t *day, int64_t *run)
{
    const char *val = NULL;
    int rc = host->state_get(ctx, user, "run", &val, NULL);

    if (rc == -ENOENT)
        return 0;
    if (rc < 0)
        return rc;
    if (!val || sscanf(val, "%" SCNd64 " %" SCNd64, day, run) != 2 || *run < 1) {
        host->log(ctx, MKTD_LOG_WARN, "user %s has an unreadable run record; starting again", user);
        return 0;
    }
    return 1;
}

static int run_put(mktd_ctx *ctx, const char *user, int64_t day, int64_t run)
{
    char val[48];
    int n = snprintf(val, sizeof val, "%" PRId64 " %" PRId64, day, run);

    if (n < 0 || (size_t)n >= sizeof val)
        return -EOVERFLOW;
    return host->state_put(ctx, user, "run", val, (size_t)n);
}

static int on_checkin(mktd_ctx *ctx, const struct checkin *c, const mktd_event *ev, unsigned flags)
{
    int64_t day = floor_div(sat_add(ev->ts, c->utc_offset), DAY_MS);
    int64_t last = 0, run = 0, next;
    char date[40], lastdate[40];
    mktd_obj *o;
    int rc;

    rc = run_get(ctx, ev->user, &last, &run);
    if (rc < 0)
        return rc;
    day_str(day, date, sizeof date);
    if (rc > 0 && day <= last) {
        if (day == last) {
            host->note(ctx, "already checked in on %s", date);
        } else {
            day_str(last, lastdate, sizeof lastdate);
            host->note(ctx, "back-dated: %s is before the last counted day %s", date, lastdate);
        }
        return 0;
    }
    if (rc > 0 && day == last + 1) {
        run = run < INT64_MAX ? run + 1 : run;
    } else {
        if (rc > 0) {
            day_str(last, lastdate, sizeof lastdate);
            host->note(ctx, "missed a day after %s: the run starts again", lastdate);
        }
        run = 1;
    }
    rc = run_put(ctx, ev->user, day, run);
    if (rc < 0)
        return rc;

    if (run % c->streak != 0) {
        next = (run / c->streak + 1) * c->streak;
        host->note(ctx, "run %" PRId64 " of %" PRId64 " on %s", run, next, date);
        return 0;
    }
    if (!(flags & MKTD_F_MATCH)) {
        host->note(ctx, "run %" PRId64 " on %s: group taken, no reward", run, date);
        return 0;
    }
    o = host->obj_new(ctx);
    if (!o)
        return -ENOMEM;
    host->obj_int(o, "days", run);
    rc = host->obj_json(o, "reward", c->reward);
    if (rc < 0)
        return rc;
    rc = host->emit(ctx, "checkin.reward", ev->user, o);
    if (rc < 0)
        return rc;
    if (rc == MKTD_CAPPED)
        host->note(ctx, "run %" PRId64 " on %s: checkin.reward capped", run, date);
    else
        host->note(ctx, "run %" PRId64 " on %s: reward", run, date);
    return 0;
}

static int checkin_on_event(mktd_ctx *ctx, void *data, const mktd_event *ev, unsigned flags)
{
    const struct checkin *c = data;

    if (!c || !ev || !ev->type || !ev->user || ev->depth != 0)
        return 0;
    if (strcmp(ev->type, "checkin") != 0 || !(flags & MKTD_F_ACTIVE))
        return 0;
    return on_checkin(ctx, c, ev, flags);
}

static const mktd_plugin checkin_plugin = {
    .abi_version = MKTD_ABI_VERSION,
    .struct_size = sizeof(mktd_plugin),
    .name = "checkin",
    .version = "1.0.0",
    .flags = MKTD_PLUGIN_WHEN_REFUSED,
    .init = checkin_init,
    .destroy = checkin_destroy,
    .on_event = checkin_on_event,
    .on_timer = NULL,
    .on_load = NULL,
};

MKTD_EXPORT const mktd_plugin *mktd_plugin_entry(const mktd_host *h)
{
    host = h;
    return &checkin_plugin;
}
