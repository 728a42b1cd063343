/* Statistics for reports (docs/reports.md): pure functions, no state. */
#ifndef MKTD_STATS_H
#define MKTD_STATS_H

#include <stdint.h>

/* Standard normal CDF. */
double stats_norm_cdf(double x);
/* Regularized incomplete beta I_x(a, b), a, b > 0, 0 <= x <= 1 (NAN outside). */
double stats_betai(double a, double b, double x);
/* Student's t CDF with df > 0 degrees of freedom (df need not be an integer). */
double stats_t_cdf(double t, double df);
/* The t with stats_t_cdf(t, df) = p, 0 < p < 1 (NAN outside). */
double stats_t_quantile(double p, double df);
/* P(X > x) for X chi-square with 1 degree of freedom. */
double stats_chi2_1df_sf(double x);

/* Welch's comparison of a treatment mean (m1, sample variance v1, n1) with
 * a control mean (m0, v0, n0), both n >= 2, at two-sided level 1 - alpha. */
struct stats_welch {
    double diff, se, df, t, p; /* m1 - m0, its standard error, Welch df, t, two-sided p */
    double lo, hi;             /* interval of diff */
    double rel, rel_se;        /* m1 / m0 - 1 and its delta-method standard error */
    double rel_lo, rel_hi;     /* interval of rel, with the same df (NAN when m0 = 0) */
    double beat;               /* P(mean1 > mean0): normal posteriors, flat priors */
};
/* 0, or -1 when se = 0 or a group has fewer than 2 (out untouched). */
int stats_welch(double m1, double v1, double n1, double m0, double v0, double n0, double alpha,
                struct stats_welch *out);
/* The same for conversions: x of n in each group (the 0/1 outcomes' mean
 * and unbiased sample variance). */
int stats_welch_binary(int64_t x1, int64_t n1, int64_t x0, int64_t n0, double alpha,
                       struct stats_welch *out);

/* Sample-ratio check: Pearson's chi-square of n0 control and n1 treatment
 * against an expected control share p0 (0 < p0 < 1), 1 df. 0, or -1 when
 * the check does not apply (no users, or p0 not inside (0, 1)). */
int stats_srm(int64_t n1, int64_t n0, double p0, double *chi2, double *p);

#endif
