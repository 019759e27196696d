// SiD's fused score-identity losses (../shared/spec/edm-sid.md §3.3-3.4). One block per
// sample for the forward (two passes over the sample: the normaliser, then the loss), one
// grid-stride pass for the backward. Inputs are contiguous [B, per] views.

#define SID_FWD(NAME, T, C, LOAD)                                                                \
extern "C" __global__ void NAME(const T* yr, const T* yf, const T* xg, const double* weight,     \
                                double* loss, double* w_out, i64 b, i64 per, double alpha) {     \
    __shared__ double sh[32];                                                                    \
    for (i64 s = blockIdx.x; s < b; s += gridDim.x) {                                            \
        const i64 base = s * per;                                                                \
        double w;                                                                                \
        if (weight) {                                                                            \
            w = weight[s];                                                                       \
        } else {                                                                                 \
            double mae = 0.0;                                                                    \
            for (i64 i = threadIdx.x; i < per; i += blockDim.x)                                  \
                mae += fabs((double)LOAD(xg, base + i) - (double)LOAD(yr, base + i));            \
            mae = block_reduce<double>(mae, 0, sh) / (double)per;                                \
            w = 1.0 / fmax(mae, 1e-5);                                                           \
        }                                                                                        \
        double acc = 0.0;                                                                        \
        for (i64 i = threadIdx.x; i < per; i += blockDim.x) {                                    \
            double r = LOAD(yr, base + i), f = LOAD(yf, base + i), x = LOAD(xg, base + i);       \
            double d = r - f;                                                                    \
            acc += d * ((r - x) - alpha * d);                                                    \
        }                                                                                        \
        acc = block_reduce<double>(acc, 0, sh);                                                  \
        if (threadIdx.x == 0) { loss[s] = acc * w; w_out[s] = w; }                               \
    }                                                                                            \
}

#define SID_BWD(NAME, T, LOAD, STORE)                                                            \
extern "C" __global__ void NAME(const T* yr, const T* yf, const T* xg, const double* w,          \
                                const double* g, T* dr, T* df, T* dx, i64 n, i64 per, double alpha) { \
    GRID_LOOP(i, n) {                                                                            \
        i64 s = i / per;                                                                         \
        double c = g[s] * w[s];                                                                  \
        double r = LOAD(yr, i), f = LOAD(yf, i), x = LOAD(xg, i);                                \
        double d = r - f, e = r - x;                                                             \
        STORE(dr, i, c * (e - 2.0 * alpha * d + d));                                             \
        STORE(df, i, -c * (e - 2.0 * alpha * d));                                                \
        STORE(dx, i, -c * d);                                                                    \
    }                                                                                            \
}

// Fake-score loss: loss[s] = lambda[s] * sum (D - y)^2.
#define FAKE_FWD(NAME, T, LOAD)                                                                  \
extern "C" __global__ void NAME(const T* d, const T* y, const double* lambda, double* loss, i64 b, i64 per) { \
    __shared__ double sh[32];                                                                    \
    for (i64 s = blockIdx.x; s < b; s += gridDim.x) {                                            \
        double acc = 0.0;                                                                        \
        for (i64 i = threadIdx.x; i < per; i += blockDim.x) {                                    \
            double e = (double)LOAD(d, s * per + i) - (double)LOAD(y, s * per + i);              \
            acc += e * e;                                                                        \
        }                                                                                        \
        acc = block_reduce<double>(acc, 0, sh);                                                  \
        if (threadIdx.x == 0) loss[s] = lambda[s] * acc;                                         \
    }                                                                                            \
}
#define FAKE_BWD(NAME, T, LOAD, STORE)                                                           \
extern "C" __global__ void NAME(const T* d, const T* y, const double* lambda, const double* g, T* gd, T* gy, i64 n, i64 per) { \
    GRID_LOOP(i, n) {                                                                            \
        i64 s = i / per;                                                                         \
        double v = 2.0 * lambda[s] * g[s] * ((double)LOAD(d, i) - (double)LOAD(y, i));           \
        STORE(gd, i, v);                                                                         \
        STORE(gy, i, -v);                                                                        \
    }                                                                                            \
}

SID_FWD(sid_gen_fwd_f32, float, float, load_f)
SID_FWD(sid_gen_fwd_f64, double, double, load_f)
SID_FWD(sid_gen_fwd_bf16, bf16_t, float, load_f)
SID_BWD(sid_gen_bwd_f32, float, load_f, store_f)
SID_BWD(sid_gen_bwd_f64, double, load_f, store_f)
SID_BWD(sid_gen_bwd_bf16, bf16_t, load_f, store_f)
FAKE_FWD(sid_fake_fwd_f32, float, load_f)
FAKE_FWD(sid_fake_fwd_f64, double, load_f)
FAKE_FWD(sid_fake_fwd_bf16, bf16_t, load_f)
FAKE_BWD(sid_fake_bwd_f32, float, load_f, store_f)
FAKE_BWD(sid_fake_bwd_f64, double, load_f, store_f)
FAKE_BWD(sid_fake_bwd_bf16, bf16_t, load_f, store_f)
