// Beta Diffusion's log-density pieces (../shared/spec/tarflow-beta.md §B5): the Beta KL via
// Gamma KLs and the mixed KLUB with its Bregman-form gradient. With eta = 1e4 the lgamma
// terms are ~8e4 while useful KLs are ~1e-6 (§B5.5), so the lnΓ/ψ forms are evaluated in
// double; the f32 Beta KL first tries a cancellation-free f32 form (below), which answers
// nearly every element to 1e-5 relative, and sends the rest to double.

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

// ---- f32 Beta KL without cancellation (mirrors ops/src/beta_f32.rs; see its docs) ----
// G(x1, x1 + d) = lnΓ(x1 + d) − lnΓ(x1) − d ψ(x1) as a sum of non-negative Bregman pieces,
// and the three Gamma KLs of a Beta KL combined with their leading Stirling parts folded
// into (z_a + z_b + d) · KL(Bernoulli ‖ Bernoulli). Answers when its error bound is below
// 1e-5 · KL, else the caller evaluates that element in double.

// w = u / (2 + u) for u = d / x, and S = atanh(w) − w, with ln(1 + u) from the end point.
__device__ __forceinline__ void atanh_tail_f(float d, float x, float* u, float* w, float* s) {
    *u = d / x;
    float ww = d / (x + (x + d));
    *w = ww;
    if (fabsf(ww) <= 0.5f) {
        float w2 = ww * ww, p = 1.0f / 23.0f;
        p = p * w2 + 1.0f / 21.0f; p = p * w2 + 1.0f / 19.0f; p = p * w2 + 1.0f / 17.0f;
        p = p * w2 + 1.0f / 15.0f; p = p * w2 + 1.0f / 13.0f; p = p * w2 + 1.0f / 11.0f;
        p = p * w2 + 1.0f / 9.0f;  p = p * w2 + 1.0f / 7.0f;  p = p * w2 + 1.0f / 5.0f;
        p = p * w2 + 1.0f / 3.0f;
        *s = ww * w2 * p;
    } else {
        *s = 0.5f * logf((x + d) / x) - ww;
    }
}
// g(u) = u − ln(1 + u) and f(u) = (1 + u) ln(1 + u) − u at u = d / x.
__device__ __forceinline__ float g_f(float d, float x) {
    float u, w, s; atanh_tail_f(d, x, &u, &w, &s);
    return u * w - 2.0f * s;
}
__device__ __forceinline__ float f_f(float d, float x) {
    float u, w, s; atanh_tail_f(d, x, &u, &w, &s);
    return u * w + 2.0f * ((x + d) / x) * s;
}
__device__ __forceinline__ int shifts_f(float x1, float d) {
    float m = fminf(x1, x1 + d);
    return m >= 4.0f ? 0 : (int)ceilf(4.0f - m);
}
__device__ __forceinline__ float shift_sum_f(float x1, float d, int n) {
    float acc = 0.0f;
    for (int k = 0; k < n; ++k) acc += g_f(d, x1 + (float)k);
    return acc;
}
// Horner for q_m(t) = Σ_{i<m} (m − i) t^i.
__device__ __forceinline__ float q_f(int m, float t) {
    float acc = 0.0f;
    for (int i = m - 1; i >= 0; --i) acc = acc * t + (float)(m - i);
    return acc;
}
// Bregman divergence of Stirling's remainder (through 691/(360360 z^11)) from z to z + d.
__device__ __forceinline__ float stirling_tail_f(float z, float d) {
    float u = d / z, t = z / (z + d), r = 1.0f / z, r2 = r * r;
    float series = q_f(1, t) / 12.0f - r2 * (q_f(3, t) / 360.0f - r2 * (q_f(5, t) / 1260.0f
                 - r2 * (q_f(7, t) / 1680.0f - r2 * (q_f(9, t) / 1188.0f - r2 * (q_f(11, t) * (691.0f / 360360.0f))))));
    return u * u * t * r * series;
}
__device__ __forceinline__ bool in_fast_range(float x) { return x >= 1e-4f && x <= 1e6f; }

// a + b rounded and its exact rounding error (TwoSum).
__device__ __forceinline__ float two_sum_f(float a, float b, float* err) {
    float s = a + b, bp = s - a, ap = s - bp;
    *err = (a - ap) + (b - bp);
    return s;
}
// How far a Gamma KL from x1 moves when its end point x2 moves by e (bound; see the mirror).
__device__ __forceinline__ float endpoint_shift_f(float e, float x1, float x2) {
    if (e == 0.0f) return 0.0f;
    float m = fminf(x1, x2) - fabsf(e), big = fmaxf(x1, x2) + fabsf(e);
    if (m <= 0.0f) return SCORCH_INF;
    return fabsf(e) * ((big - m) / sqrtf(big * m) + 1.0f / m);
}

__device__ bool kl_beta_fast_f(float a1, float b1, float a2, float b2, float* out) {
    float s1 = a1 + b1, s2 = a2 + b2;
    if (!(in_fast_range(a1) && in_fast_range(b1) && in_fast_range(a2) && in_fast_range(b2)
          && in_fast_range(s1) && in_fast_range(s2))) return false;
    float ea, eb, er;
    float da = two_sum_f(a2, -a1, &ea), db = two_sum_f(b2, -b1, &eb), ds = two_sum_f(da, db, &er);
    int na = shifts_f(a1, da), nb = shifts_f(b1, db);
    float za = a1 + (float)na, zb = b1 + (float)nb, zs = za + zb;
    float z2 = (za + da) + (zb + db);
    float w = za * db;
    float num = fmaf(da, zb, -w) - fmaf(za, db, -w);
    float delta = num / (zs * z2);
    float p1 = za / zs, q1 = zb / zs;
    float lead = z2 * (p1 * f_f(delta, p1) + q1 * f_f(-delta, q1));
    float sa = shift_sum_f(a1, da, na), sb = shift_sum_f(b1, db, nb), ss = shift_sum_f(s1, ds, na + nb);
    float ga = g_f(da, za), gb = g_f(db, zb), gs = g_f(ds, zs);
    float ma = stirling_tail_f(za, da), mb = stirling_tail_f(zb, db), ms = stirling_tail_f(zs, ds);
    float kl = lead + (sa + sb - ss) + 0.5f * (ga + gb - gs) + (ma + mb - ms);
    float size = lead + sa + sb + ss + 0.5f * (ga + gb + gs) + fabsf(ma) + fabsf(mb) + fabsf(ms);
    float moved = endpoint_shift_f(ea, a1, a2) + endpoint_shift_f(eb, b1, b2)
                + endpoint_shift_f(fabsf(ea) + fabsf(eb) + fabsf(er), s1, s2);
    if (size == 0.0f && moved == 0.0f) { *out = 0.0f; return true; }
    *out = kl;
    return isfinite(kl) && 8.0f * 1.1920929e-7f * size + moved <= 1e-5f * kl;
}

// f32 Beta KL: the f32 path where it can answer; the other elements' indices are appended
// (one atomic per warp) to `list` for beta_kl_f32_fallback, which evaluates them in double.
extern "C" __global__ void beta_kl_f32(const float* a1, const float* b1, const float* a2, const float* b2,
                                       float* y, i64 n, unsigned long long* count, long long* list) {
    GRID_LOOP(i, n) {
        float v;
        bool ok = kl_beta_fast_f(a1[i], b1[i], a2[i], b2[i], &v);
        if (ok) y[i] = v;
        unsigned mask = __ballot_sync(__activemask(), !ok);
        if (!ok) {
            int lane = threadIdx.x & 31, leader = __ffs(mask) - 1;
            unsigned long long base = 0;
            if (lane == leader) base = atomicAdd(count, (unsigned long long)__popc(mask));
            base = __shfl_sync(mask, base, leader);
            list[base + __popc(mask & ((1u << lane) - 1u))] = (long long)i;
        }
    }
}
extern "C" __global__ void beta_kl_f32_fallback(const float* a1, const float* b1, const float* a2, const float* b2,
                                                float* y, const unsigned long long* count, const long long* list) {
    i64 m = (i64)*count;
    GRID_LOOP(j, m) {
        i64 i = list[j];
        y[i] = (float)kl_beta((double)a1[i], (double)b1[i], (double)a2[i], (double)b2[i]);
    }
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

BETA_KL(beta_kl_f64, double, load_f, store_f)
BETA_KL_BWD(beta_kl_bwd_f32, float, load_f, store_f)
BETA_KL_BWD(beta_kl_bwd_f64, double, load_f, store_f)
KLUB(beta_klub_f32, float, load_f, store_f)
KLUB(beta_klub_f64, double, load_f, store_f)
KLUB_BWD(beta_klub_bwd_f32, float, load_f, store_f)
KLUB_BWD(beta_klub_bwd_f64, double, load_f, store_f)
