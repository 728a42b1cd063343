/* Statistics for reports: the normal and t distributions (through the
 * regularized incomplete beta, Numerical Recipes' continued fraction),
 * Welch's t comparison and a chi-square sample-ratio check. */
#include "lib/stats.h"

#include <math.h>

double stats_norm_cdf(double x)
{
    return 0.5 * erfc(-x / sqrt(2.0));
}

/* The continued fraction of I_x(a, b), Lentz's method. */
static double betacf(double a, double b, double x)
{
    const double tiny = 1e-300, eps = 1e-15;
    double qab = a + b, qap = a + 1.0, qam = a - 1.0;
    double c = 1.0, d = 1.0 - qab * x / qap;
    if (fabs(d) < tiny)
        d = tiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 10000; m++) {
        int m2 = 2 * m;
        double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if (fabs(d) < tiny)
            d = tiny;
        c = 1.0 + aa / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1.0 / d;
        h *= d * c;
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if (fabs(d) < tiny)
            d = tiny;
        c = 1.0 + aa / c;
        if (fabs(c) < tiny)
            c = tiny;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1.0) < eps)
            break;
    }
    return h;
}

double stats_betai(double a, double b, double x)
{
    if (!(a > 0) || !(b > 0) || !(x >= 0) || !(x <= 1))
        return NAN;
    if (x == 0 || x == 1)
        return x;
    double lbt = lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x);
    double bt = exp(lbt);
    if (x < (a + 1.0) / (a + b + 2.0))
        return bt * betacf(a, b, x) / a;
    return 1.0 - bt * betacf(b, a, 1.0 - x) / b;
}

double stats_t_cdf(double t, double df)
{
    if (isnan(t) || !(df > 0))
        return NAN;
    if (isinf(t))
        return t > 0 ? 1.0 : 0.0;
    double tail = 0.5 * stats_betai(df / 2.0, 0.5, df / (df + t * t)); /* P(T > |t|) */
    return t > 0 ? 1.0 - tail : tail;
}

double stats_t_quantile(double p, double df)
{
    if (!(p > 0) || !(p < 1) || !(df > 0))
        return NAN;
    if (p == 0.5)
        return 0.0;
    if (p < 0.5)
        return -stats_t_quantile(1.0 - p, df);
    double lo = 0.0, hi = 1.0;
    while (stats_t_cdf(hi, df) < p && hi < 1e300)
        hi *= 2.0;
    for (int i = 0; i < 300 && hi - lo > 1e-14 * hi; i++) {
        double mid = 0.5 * (lo + hi);
        if (stats_t_cdf(mid, df) < p)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

double stats_chi2_1df_sf(double x)
{
    if (isnan(x))
        return NAN;
    return x <= 0 ? 1.0 : erfc(sqrt(x / 2.0));
}

int stats_welch(double m1, double v1, double n1, double m0, double v0, double n0, double alpha,
                struct stats_welch *out)
{
    if (!(n1 >= 2) || !(n0 >= 2) || !(v1 >= 0) || !(v0 >= 0) || !(alpha > 0) || !(alpha < 1))
        return -1;
    double a1 = v1 / n1, a0 = v0 / n0; /* the squared standard errors of each mean */
    double se = sqrt(a1 + a0);
    if (!(se > 0))
        return -1;
    struct stats_welch w;
    w.diff = m1 - m0;
    w.se = se;
    w.df = (a1 + a0) * (a1 + a0) / (a1 * a1 / (n1 - 1) + a0 * a0 / (n0 - 1));
    w.t = w.diff / se;
    w.p = 2.0 * stats_t_cdf(-fabs(w.t), w.df);
    double q = stats_t_quantile(1.0 - alpha / 2.0, w.df);
    w.lo = w.diff - q * se;
    w.hi = w.diff + q * se;
    if (m0 != 0) {
        /* delta method: Var(m1/m0) ~ a1/m0^2 + m1^2 a0/m0^4 */
        w.rel = m1 / m0 - 1.0;
        w.rel_se = sqrt(a1 / (m0 * m0) + m1 * m1 * a0 / (m0 * m0 * m0 * m0));
        w.rel_lo = w.rel - q * w.rel_se;
        w.rel_hi = w.rel + q * w.rel_se;
    } else {
        w.rel = w.rel_se = w.rel_lo = w.rel_hi = NAN;
    }
    w.beat = stats_norm_cdf(w.diff / se);
    *out = w;
    return 0;
}

int stats_welch_binary(int64_t x1, int64_t n1, int64_t x0, int64_t n0, double alpha,
                       struct stats_welch *out)
{
    if (n1 < 2 || n0 < 2 || x1 < 0 || x0 < 0 || x1 > n1 || x0 > n0)
        return -1;
    double p1 = (double)x1 / (double)n1, p0 = (double)x0 / (double)n0;
    double v1 = p1 * (1 - p1) * (double)n1 / (double)(n1 - 1);
    double v0 = p0 * (1 - p0) * (double)n0 / (double)(n0 - 1);
    return stats_welch(p1, v1, (double)n1, p0, v0, (double)n0, alpha, out);
}

int stats_srm(int64_t n1, int64_t n0, double p0, double *chi2, double *p)
{
    if (n1 < 0 || n0 < 0 || n1 + n0 == 0 || !(p0 > 0) || !(p0 < 1))
        return -1;
    double n = (double)(n1 + n0), e0 = n * p0, e1 = n * (1 - p0);
    double d0 = (double)n0 - e0, d1 = (double)n1 - e1;
    *chi2 = d0 * d0 / e0 + d1 * d1 / e1;
    *p = stats_chi2_1df_sf(*chi2);
    return 0;
}
