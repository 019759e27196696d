// Beta Diffusion's log-density pieces (../shared/spec/tarflow-beta.md §B5): the Beta KL via
// Gamma KLs and the mixed KLUB with its Bregman-form gradient. Everything is evaluated in
// double: with eta = 1e4 the lgamma terms are ~8e4 while useful KLs are ~1e-6 (§B5.5).

__device__ __forceinline__ double kl_gamma(double a1, double a2) {
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
