// Fused, in-place optimizer updates (ops/src/cpu/optim.rs): Adam / AdamW, SGD with momentum,
// the EMA lerp, and the f64 sum of squares for gradient clipping. One grid-stride pass per
// update over contiguous spans; the step's scalars are computed on the host in f64, as the CPU
// does, and rounded to the element type here.
//
// Every arithmetic step is an explicit round-to-nearest intrinsic: NVRTC compiles with
// --fmad=true by default, which would contract `a * b + c` into an FMA and round differently
// from the CPU. Written this way each operation rounds exactly as the CPU's, in its order.

__device__ __forceinline__ float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ double add_rn(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ float sub_rn(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ double sub_rn(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ float div_rn(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double div_rn(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ float sqrt_rn(float a) { return __fsqrt_rn(a); }
__device__ __forceinline__ double sqrt_rn(double a) { return __dsqrt_rn(a); }

// PyTorch's lerp(a, b, w): the formula switches at |w| = 1/2 for accuracy.
template <typename T>
__device__ __forceinline__ T lerp_rn(T a, T b, T w) {
    if (fabs(w) < (T)0.5) return add_rn(a, mul_rn(w, sub_rn(b, a)));
    return sub_rn(b, mul_rn(sub_rn(b, a), sub_rn((T)1, w)));
}

// One Adam / AdamW step (the CPU's AdamScalars::update):
//   wd != 0: decoupled ? p *= decay : g += wd * p
//   m = lerp(m, g, 1 - beta1); v = v * beta2 + (1 - beta2) * g * g
//   p += neg_step_size * m / (sqrt(v) / sqrt(bias_correction2) + eps)
template <typename T>
__device__ __forceinline__ void adam_k(T* p, const T* g, T* m, T* v, i64 n, double beta1_w_, double beta2_,
                                       double one_minus_beta2_, double neg_step_size_, double bc2_sqrt_,
                                       double eps_, double wd_, double decay_, int decoupled) {
    const T beta1_w = (T)beta1_w_, beta2 = (T)beta2_, one_minus_beta2 = (T)one_minus_beta2_;
    const T neg_step_size = (T)neg_step_size_, bc2_sqrt = (T)bc2_sqrt_, eps = (T)eps_, wd = (T)wd_;
    const T decay = (T)decay_;
    GRID_LOOP(i, n) {
        T pi = p[i], gi = g[i];
        if (wd != (T)0) {
            if (decoupled) pi = mul_rn(pi, decay);
            else gi = add_rn(gi, mul_rn(wd, pi));
        }
        T mi = lerp_rn(m[i], gi, beta1_w);
        T vi = add_rn(mul_rn(v[i], beta2), mul_rn(mul_rn(one_minus_beta2, gi), gi));
        T denom = add_rn(div_rn(sqrt_rn(vi), bc2_sqrt), eps);
        m[i] = mi;
        v[i] = vi;
        p[i] = add_rn(pi, div_rn(mul_rn(neg_step_size, mi), denom));
    }
}
#define ADAM(NAME, T)                                                                                   \
extern "C" __global__ void NAME(T* p, const T* g, T* m, T* v, i64 n, double beta1_w, double beta2,      \
                                double one_minus_beta2, double neg_step_size, double bc2_sqrt, double eps, \
                                double wd, double decay, int decoupled) {                               \
    adam_k<T>(p, g, m, v, n, beta1_w, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay, decoupled); \
}
ADAM(adam_f32, float)
ADAM(adam_f64, double)

// One SGD step (the CPU's sgd_update); neg_lr = -lr, damp = 1 - dampening. With momentum, the
// buffer becomes d on the first step (not read) and mu * buf + damp * d after.
template <typename T>
__device__ __forceinline__ void sgd_k(T* p, const T* g, T* buf, i64 n, double neg_lr_, double wd_, double mu_,
                                      double damp_, int momentum, int first, int nesterov) {
    const T neg_lr = (T)neg_lr_, wd = (T)wd_, mu = (T)mu_, damp = (T)damp_;
    GRID_LOOP(i, n) {
        T pi = p[i], d = g[i];
        if (wd != (T)0) d = add_rn(d, mul_rn(wd, pi));
        if (momentum) {
            T b = first ? d : add_rn(mul_rn(buf[i], mu), mul_rn(damp, d));
            buf[i] = b;
            d = nesterov ? add_rn(d, mul_rn(mu, b)) : b;
        }
        p[i] = add_rn(pi, mul_rn(neg_lr, d));
    }
}
#define SGD(NAME, T)                                                                                    \
extern "C" __global__ void NAME(T* p, const T* g, T* buf, i64 n, double neg_lr, double wd, double mu,   \
                                double damp, int momentum, int first, int nesterov) {                   \
    sgd_k<T>(p, g, buf, n, neg_lr, wd, mu, damp, momentum, first, nesterov);                            \
}
SGD(sgd_f32, float)
SGD(sgd_f64, double)

// shadow = lerp(shadow, x, w) with w = 1 - beta.
#define EMA(NAME, T)                                                                                    \
extern "C" __global__ void NAME(T* s, const T* x, i64 n, double w_) {                                   \
    const T w = (T)w_;                                                                                  \
    GRID_LOOP(i, n) { s[i] = lerp_rn(s[i], x[i], w); }                                                  \
}
EMA(ema_f32, float)
EMA(ema_f64, double)

// Sum of squares in f64: per-block partial sums (a fixed grid, so the result is
// deterministic), then one block adds the partials.
#define SUMSQ(NAME, T, LOAD)                                                                            \
extern "C" __global__ void NAME(const T* g, i64 n, double* partial) {                                   \
    __shared__ double sh[32];                                                                           \
    double acc = 0.0;                                                                                   \
    GRID_LOOP(i, n) {                                                                                   \
        double x = (double)LOAD(g, i);                                                                  \
        acc = __dadd_rn(acc, __dmul_rn(x, x));                                                          \
    }                                                                                                   \
    double t = block_reduce<double>(acc, 0, sh);                                                        \
    if (threadIdx.x == 0) partial[blockIdx.x] = t;                                                      \
}
SUMSQ(sumsq_f32, float, load_f)
SUMSQ(sumsq_f64, double, load_f)
SUMSQ(sumsq_bf16, bf16_t, load_f)
SUMSQ(sumsq_f16, f16_t, load_h)

extern "C" __global__ void sumsq_final(const double* partial, i64 nb, double* out) {
    __shared__ double sh[32];
    double acc = 0.0;
    for (i64 i = threadIdx.x; i < nb; i += blockDim.x) acc += partial[i];
    double t = block_reduce<double>(acc, 0, sh);
    if (threadIdx.x == 0) out[0] = t;
}
