// Beta Diffusion's log-density pieces (../shared/spec/tarflow-beta.md §B5): the Beta KL via
// Gamma KLs and the mixed KLUB with its Bregman-form gradient. Everything is evaluated in
// double: with eta = 1e4 the lgamma terms are ~8e4 while useful KLs are ~1e-6 (§B5.5).

// ln Γ(x) for finite x > 0, and ψ(x) when dg is given, sharing one shift and one log: the
// recurrence moves x to z = x + n >= 10 with P = Π (x + k) and Σ 1/(x + k) = num / P, then
// Stirling's series ln Γ(z) = (z − ½) ln z − z + ½ ln 2π + Σ B2k / (2k (2k−1) z^(2k−1)) and
// the asymptotic ψ(z) through B14 (truncation below 1e-16 at z >= 10).
__device__ __forceinline__ double lgamma_digamma_pos(double x, double* dg) {
    double num = 0.0, den = 1.0;
    while (x < 10.0) { num = num * x + den; den *= x; x += 1.0; }
    double r = 1.0 / x, r2 = r * r, lz = log(x);
    double s = r * (1.0/12 - r2 * (1.0/360 - r2 * (1.0/1260 - r2 * (1.0/1680 - r2 * (1.0/1188 - r2 * (691.0/360360 - r2 * (1.0/156)))))));
    if (dg) {
        double series = r2 * (1.0/12 - r2 * (1.0/120 - r2 * (1.0/252 - r2 * (1.0/240 - r2 * (1.0/132 - r2 * (691.0/32760 - r2 * (1.0/12)))))));
        *dg = lz - 0.5 * r - series - num / den;
    }
    return (x - 0.5) * lz - x + 0.91893853320467274178 + s - log(den);
}

__device__ __forceinline__ bool plain_positive(double x) { return x > 0.0 && x < 1e300; }

__device__ __forceinline__ double kl_gamma(double a1, double a2) {
    if (plain_positive(a1) && plain_positive(a2)) {
        double dg1;
        double lg1 = lgamma_digamma_pos(a1, &dg1);
        return (a1 - a2) * dg1 - lg1 + lgamma_digamma_pos(a2, nullptr);
    }
    return (a1 - a2) * scorch_digamma(a1) - lgamma(a1) + lgamma(a2);
}
__device__ __forceinline__ double kl_beta(double a1, double b1, double a2, double b2) {
    return kl_gamma(a1, a2) + kl_gamma(b1, b2) - kl_gamma(a1 + b1, a2 + b2);
}

// log Beta(x; a, b) density, for likelihood-style uses.
__device__ __forceinline__ double beta_log_pdf(double x, double a, double b) {
    return (a - 1.0) * log(x) + (b - 1.0) * log1p(-x) - (lgamma(a) + lgamma(b) - lgamma(a + b));
}

#define BETA_KL(NAME, T, LOAD, STORE)                                                            \
extern "C" __global__ void NAME(const T* a1, const T* b1, const T* a2, const T* b2, T* y, i64 n) { \
    GRID_LOOP(i, n) { STORE(y, i, kl_beta(LOAD(a1, i), LOAD(b1, i), LOAD(a2, i), LOAD(b2, i))); } \
}
#define BETA_KL_BWD(NAME, T, LOAD, STORE)                                                        \
extern "C" __global__ void NAME(const T* pa1, const T* pb1, const T* pa2, const T* pb2, const T* g, \
                                T* ga1, T* gb1, T* ga2, T* gb2, i64 n) {                          \
    GRID_LOOP(i, n) {                                                                            \
        double a1 = LOAD(pa1, i), b1 = LOAD(pb1, i), a2 = LOAD(pa2, i), b2 = LOAD(pb2, i);       \
        double gg = LOAD(g, i), s1 = a1 + b1, s2 = a2 + b2, t = scorch_trigamma(s1);             \
        double ps1 = scorch_digamma(s1), ps2 = scorch_digamma(s2);                               \
        STORE(ga1, i, gg * ((a1 - a2) * scorch_trigamma(a1) - (s1 - s2) * t));                   \
        STORE(gb1, i, gg * ((b1 - b2) * scorch_trigamma(b1) - (s1 - s2) * t));                   \
        STORE(ga2, i, gg * (scorch_digamma(a2) - ps2 - scorch_digamma(a1) + ps1));               \
        STORE(gb2, i, gg * (scorch_digamma(b2) - ps2 - scorch_digamma(b1) + ps1));               \
    }                                                                                            \
}

// Mixed KLUB per pixel, value and d/dxh = w * phi''(xh) (xh - x) for each of the two terms.
__device__ void klub_pixel(double xh, double x, double as, double at, double eta, double wc, double wm, double* val, double* grad) {
    double delta = as - at;
    double ca[2] = {eta * delta, eta * at}, cb[2] = {-eta * as, -eta * at}, w[2] = {wc, wm};
    double v = 0.0, g = 0.0;
    for (int k = 0; k < 2; ++k) {
        if (w[k] == 0.0) continue;
        double a1 = ca[k] * xh, b1 = eta + cb[k] * xh, a2 = ca[k] * x, b2 = eta + cb[k] * x;
        v += w[k] * kl_beta(a1, b1, a2, b2);
        double cs = ca[k] + cb[k];
        double phi2 = ca[k] * ca[k] * scorch_trigamma(a1) + cb[k] * cb[k] * scorch_trigamma(b1) - cs * cs * scorch_trigamma(a1 + b1);
        g += w[k] * phi2 * (xh - x);
    }
    *val = v;
    *grad = g;
}

#define KLUB(NAME, T, LOAD, STORE)                                                               \
extern "C" __global__ void NAME(const T* xh, const T* x, const double* as, const double* at, T* y, \
                                i64 n, i64 per, double eta, double wc, double wm) {               \
    GRID_LOOP(i, n) {                                                                            \
        double v, g; i64 s = i / per;                                                            \
        klub_pixel(LOAD(xh, i), LOAD(x, i), as[s], at[s], eta, wc, wm, &v, &g);                  \
        STORE(y, i, v);                                                                          \
    }                                                                                            \
}
#define KLUB_BWD(NAME, T, LOAD, STORE)                                                           \
extern "C" __global__ void NAME(const T* xh, const T* x, const double* as, const double* at, const T* gy, T* gx, \
                                i64 n, i64 per, double eta, double wc, double wm) {               \
    GRID_LOOP(i, n) {                                                                            \
        double v, g; i64 s = i / per;                                                            \
        klub_pixel(LOAD(xh, i), LOAD(x, i), as[s], at[s], eta, wc, wm, &v, &g);                  \
        STORE(gx, i, (double)LOAD(gy, i) * g);                                                   \
    }                                                                                            \
}

BETA_KL(beta_kl_f32, float, load_f, store_f)
BETA_KL(beta_kl_f64, double, load_f, store_f)
BETA_KL_BWD(beta_kl_bwd_f32, float, load_f, store_f)
BETA_KL_BWD(beta_kl_bwd_f64, double, load_f, store_f)
KLUB(beta_klub_f32, float, load_f, store_f)
KLUB(beta_klub_f64, double, load_f, store_f)
KLUB_BWD(beta_klub_bwd_f32, float, load_f, store_f)
KLUB_BWD(beta_klub_bwd_f64, double, load_f, store_f)
