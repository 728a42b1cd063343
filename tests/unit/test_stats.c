/* lib/stats.c against values computed independently (30-digit mpmath, or
 * exact by hand where noted). */
#include "check.h"
#include "lib/stats.h"

#include <math.h>

#define NEAR(a, b, tol) CHECK(fabs((a) - (b)) <= (tol))

int main(void)
{
    /* normal CDF */
    NEAR(stats_norm_cdf(1.96), 0.9750021048517796, 1e-12);
    NEAR(stats_norm_cdf(0), 0.5, 1e-15);
    NEAR(stats_norm_cdf(-1.96), 1 - 0.9750021048517796, 1e-12);

    /* incomplete beta: I_0.5(2, 3) = (6 + 4 + 1) / 16 exactly; edges; bad input */
    NEAR(stats_betai(2, 3, 0.5), 0.6875, 1e-13);
    NEAR(stats_betai(2.5, 4, 0.3), 0.35219758590676721, 1e-12);
    CHECK(stats_betai(2, 3, 0) == 0 && stats_betai(2, 3, 1) == 1);
    CHECK(isnan(stats_betai(0, 3, 0.5)) && isnan(stats_betai(2, 3, 1.5)));

    /* t CDF: df 1 is Cauchy (cdf(1) = 3/4 exactly); fractional df */
    NEAR(stats_t_cdf(1, 1), 0.75, 1e-13);
    NEAR(stats_t_cdf(2, 5), 0.94903026058507082, 1e-12);
    NEAR(stats_t_cdf(-1.5, 2.5), 0.12391822654314812, 1e-12);
    NEAR(stats_t_cdf(0, 7), 0.5, 1e-15);
    CHECK(stats_t_cdf(INFINITY, 3) == 1 && stats_t_cdf(-INFINITY, 3) == 0);
    CHECK(isnan(stats_t_cdf(1, 0)));

    /* t quantiles */
    NEAR(stats_t_quantile(0.975, 10), 2.2281388519862742, 1e-9);
    NEAR(stats_t_quantile(0.025, 10), -2.2281388519862742, 1e-9);
    NEAR(stats_t_quantile(0.995, 3.5), 5.0857022230912570, 1e-9);
    NEAR(stats_t_quantile(0.975, 183.6053412462908), 1.9729686167971653, 1e-9);
    NEAR(stats_t_quantile(0.75, 1), 1.0, 1e-9);
    CHECK(stats_t_quantile(0.5, 4) == 0);
    CHECK(isnan(stats_t_quantile(0, 4)) && isnan(stats_t_quantile(1, 4)));

    /* chi-square, 1 df */
    NEAR(stats_chi2_1df_sf(10.83), 0.00099868637918025874, 1e-13);
    NEAR(stats_chi2_1df_sf(3.841459), 0.049999994653195766, 1e-12);
    CHECK(stats_chi2_1df_sf(0) == 1);

    /* Welch: 0.2 (var 0.16, n 100) against 0.1 (var 0.09, n 100) */
    struct stats_welch w;
    CHECK_INT(stats_welch(0.2, 0.16, 100, 0.1, 0.09, 100, 0.05, &w), 0);
    NEAR(w.diff, 0.1, 1e-15);
    NEAR(w.se, 0.05, 1e-15);
    NEAR(w.df, 183.6053412462908, 1e-9);
    NEAR(w.t, 2.0, 1e-12);
    NEAR(w.p, 0.046974292749685383, 1e-10);
    NEAR(w.lo, 0.0013515691601417433, 1e-9);
    NEAR(w.hi, 0.19864843083985827, 1e-9);
    NEAR(w.rel, 1.0, 1e-12);
    NEAR(w.rel_se, 0.72111025509279787, 1e-12);
    NEAR(w.rel_lo, -0.42272790254868839, 1e-8);
    NEAR(w.rel_hi, 2.4227279025486884, 1e-8);
    NEAR(w.beat, 0.97724986805182080, 1e-12);
    /* no spread, too few: refused */
    CHECK(stats_welch(0.2, 0, 100, 0.1, 0, 100, 0.05, &w) < 0);
    CHECK(stats_welch(0.2, 0.1, 1, 0.1, 0.1, 100, 0.05, &w) < 0);
    /* a control mean of 0: no relative lift */
    CHECK_INT(stats_welch(0.2, 0.16, 100, 0, 0.01, 100, 0.05, &w), 0);
    CHECK(isnan(w.rel) && isnan(w.rel_lo));

    /* binary: 30 of 100 against 20 of 100; the unbiased variances are
     * 0.21 * 100/99 and 0.16 * 100/99 */
    CHECK_INT(stats_welch_binary(30, 100, 20, 100, 0.05, &w), 0);
    struct stats_welch v;
    CHECK_INT(stats_welch(0.3, 0.21 * 100 / 99, 100, 0.2, 0.16 * 100 / 99, 100, 0.05, &v), 0);
    NEAR(w.diff, 0.1, 1e-15);
    NEAR(w.se, v.se, 1e-15);
    NEAR(w.df, v.df, 1e-9);
    NEAR(w.p, v.p, 1e-12);
    NEAR(w.rel, 0.5, 1e-12);
    CHECK(stats_welch_binary(0, 100, 0, 100, 0.05, &w) < 0);
    CHECK(stats_welch_binary(101, 100, 0, 100, 0.05, &w) < 0);

    /* SRM: 100 offer and 30 holdout against a 50 % holdout:
     * (35^2 / 65) * 2 = 37.6923...; p = erfc(sqrt(chi2 / 2)) */
    double chi2, p;
    CHECK_INT(stats_srm(100, 30, 0.5, &chi2, &p), 0);
    NEAR(chi2, 2.0 * 35 * 35 / 65, 1e-12);
    NEAR(p, erfc(sqrt(chi2 / 2)), 1e-20);
    CHECK(p < 0.001);
    /* 90 / 10 against 10 %: exactly as expected */
    CHECK_INT(stats_srm(90, 10, 0.1, &chi2, &p), 0);
    NEAR(chi2, 0, 1e-12);
    NEAR(p, 1, 1e-12);
    CHECK(stats_srm(0, 0, 0.1, &chi2, &p) < 0);
    CHECK(stats_srm(10, 0, 0, &chi2, &p) < 0);
    return check_done();
}
