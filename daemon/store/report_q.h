/* The aggregate queries behind `mktd report` (spec 13; docs/reports.md),
 * on a connection from store_open_readonly. Every figure is summed in SQL:
 * a report reads a few grouped scans of `actions`, never row by row. */
#ifndef MKTD_REPORT_Q_H
#define MKTD_REPORT_Q_H

#include <stddef.h>
#include <stdint.h>

struct store;

/* The period [since, until) in ms, and one campaign or (NULL) all. */
struct rq_range {
    int64_t since, until;
    const char *campaign;
};

/* Each query calls cb once per row and returns 0, or -EIO with
 * store_errmsg(s) saying why. */

/* Actions by campaign, kind and UTC day (ts / 86,400,000). */
int rq_daily(struct store *s, const struct rq_range *r,
             void (*cb)(void *arg, const char *campaign, const char *kind, int64_t day, int64_t n),
             void *arg);
/* coupon.rejected and referral.rejected by campaign, kind and reason. */
int rq_reasons(struct store *s, const struct rq_range *r,
               void (*cb)(void *arg, const char *campaign, const char *kind, const char *reason,
                          int64_t n),
               void *arg);
/* Coupons issued in the period: how many, their fixed values summed, how
 * many are percent coupons, and how many of them were redeemed before
 * until. */
struct rq_issued {
    int64_t issued, value, percent, redeemed;
};
int rq_coupons_issued(struct store *s, const struct rq_range *r,
                      void (*cb)(void *arg, const char *campaign, const struct rq_issued *c),
                      void *arg);
/* Redemptions in the period, and the fixed values of their coupons. */
int rq_coupons_redeemed(struct store *s, const struct rq_range *r,
                        void (*cb)(void *arg, const char *campaign, int64_t n, int64_t value),
                        void *arg);
/* referral.commission, .clawback and .reward (by role; "" for the others):
 * count and amount summed. */
int rq_amounts(struct store *s, const struct rq_range *r,
               void (*cb)(void *arg, const char *campaign, const char *kind, const char *role,
                          int64_t n, int64_t amount),
               void *arg);
/* Per reactivation group ("offer", "holdout"): n distinct users with a
 * decision of that group in the period, x of them with a conversion of that
 * group in the period. */
int rq_reactivation(struct store *s, const struct rq_range *r,
                    void (*cb)(void *arg, const char *campaign, const char *group, int64_t n,
                               int64_t x),
                    void *arg);
/* Every campaign the database has seen, with its plugin. */
int rq_campaigns(struct store *s, void (*cb)(void *arg, const char *id, const char *plugin),
                 void *arg);
/* The config live at `until`: the last one loaded before it, else the
 * first one recorded. *text malloc'd (NUL-terminated); -ENOENT when none. */
int rq_config_at(struct store *s, int64_t until, char **text, size_t *len, char **path);

#endif
