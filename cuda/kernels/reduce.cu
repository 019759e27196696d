// Row reductions over a contiguous [rows, len] view (the launcher permutes reduced axes last),
// softmax / log-softmax over rows, and cumsum over rows. One block per row, warp shuffles
// inside; accumulation in float (f64 in double).

#define RED_THREADS 256

#define REDUCE_ROWS(NAME, T, C, LOAD, STORE)                                                     \
extern "C" __global__ void NAME(const T* x, T* y, i64 rows, i64 len, int op) {                   \
    __shared__ C sh[32];                                                                         \
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {                                         \
        C ident = op == 0 ? (C)0 : (op == 1 ? (C)-SCORCH_INF : (C)SCORCH_INF);                      \
        C acc = ident;                                                                           \
        for (i64 j = threadIdx.x; j < len; j += blockDim.x) {                                    \
            C v = LOAD(x, r * len + j);                                                          \
            acc = op == 0 ? acc + v : (op == 1 ? nan_max(acc, v) : nan_min(acc, v)); \
        }                                                                                        \
        C t = block_reduce<C>(acc, op, sh);                                                      \
        if (threadIdx.x == 0) STORE(y, r, t);                                                    \
    }                                                                                            \
}
REDUCE_ROWS(reduce_rows_f32, float, float, load_f, store_f)
REDUCE_ROWS(reduce_rows_f64, double, double, load_f, store_f)
REDUCE_ROWS(reduce_rows_bf16, bf16_t, float, load_f, store_f)
REDUCE_ROWS(reduce_rows_f16, f16_t, float, load_h, store_h)

// Index of the first maximum (op 0) / minimum (op 1) of each row, as i64.
#define ARG_ROWS(NAME, T, LOAD)                                                                  \
extern "C" __global__ void NAME(const T* x, long long* y, i64 rows, i64 len, int op) {           \
    GRID_LOOP(r, rows) {                                                                         \
        i64 best = 0;                                                                            \
        double bv = (double)LOAD(x, r * len);                                                    \
        for (i64 j = 1; j < len; ++j) {                                                          \
            double v = (double)LOAD(x, r * len + j);                                             \
            bool better = isnan(v) ? !isnan(bv) : (!isnan(bv) && (op == 0 ? v > bv : v < bv));   \
            if (better) { bv = v; best = j; }                                                    \
        }                                                                                        \
        y[r] = best;                                                                             \
    }                                                                                            \
}
ARG_ROWS(arg_rows_f32, float, load_f)
ARG_ROWS(arg_rows_f64, double, load_f)
ARG_ROWS(arg_rows_bf16, bf16_t, load_f)
ARG_ROWS(arg_rows_f16, f16_t, load_h)

#define SOFTMAX_ROWS(NAME, T, C, LOAD, STORE)                                                    \
extern "C" __global__ void NAME(const T* x, T* y, i64 rows, i64 len, int log_out) {              \
    __shared__ C sh[32];                                                                         \
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {                                         \
        C m = (C)-SCORCH_INF;                                                                      \
        for (i64 j = threadIdx.x; j < len; j += blockDim.x) m = fmax(m, LOAD(x, r * len + j));   \
        m = block_reduce<C>(m, 1, sh);                                                           \
        if (m == (C)-SCORCH_INF) m = (C)0;                                                         \
        C s = (C)0;                                                                              \
        for (i64 j = threadIdx.x; j < len; j += blockDim.x) s += exp(LOAD(x, r * len + j) - m);  \
        s = block_reduce<C>(s, 0, sh);                                                           \
        C lse = m + log(s);                                                                      \
        for (i64 j = threadIdx.x; j < len; j += blockDim.x) {                                    \
            C z = LOAD(x, r * len + j) - lse;                                                    \
            STORE(y, r * len + j, log_out ? z : exp(z));                                         \
        }                                                                                        \
    }                                                                                            \
}
SOFTMAX_ROWS(softmax_rows_f32, float, float, load_f, store_f)
SOFTMAX_ROWS(softmax_rows_f64, double, double, load_f, store_f)
SOFTMAX_ROWS(softmax_rows_bf16, bf16_t, float, load_f, store_f)
SOFTMAX_ROWS(softmax_rows_f16, f16_t, float, load_h, store_h)

// Softmax of rows of at most 16 * 256 elements: each thread keeps its 16 values in registers,
// so x is read once (the generic kernel above reads it three times). In-row offsets are 32-bit
// and taken from the row's base pointer, which keeps the kernel's registers (and so the
// blocks resident per SM) in bounds.
#define SOFTMAX_CACHED(NAME, T, C, LOAD, STORE)                                                  \
extern "C" __global__ void __launch_bounds__(256) NAME(const T* x, T* y, i64 rows, i64 len, int log_out) { \
    __shared__ C sh[32];                                                                         \
    C v[16];                                                                                     \
    const int n = (int)len;                                                                      \
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {                                         \
        const T* xr = x + r * len;                                                               \
        T* yr = y + r * len;                                                                     \
        C m = (C)-SCORCH_INF;                                                                    \
        _Pragma("unroll")                                                                        \
        for (int k = 0; k < 16; ++k) {                                                           \
            int j = threadIdx.x + k * blockDim.x;                                                \
            v[k] = j < n ? LOAD(xr, j) : (C)-SCORCH_INF;                                         \
            m = fmax(m, v[k]);                                                                   \
        }                                                                                        \
        m = block_reduce<C>(m, 1, sh);                                                           \
        if (m == (C)-SCORCH_INF) m = (C)0;                                                       \
        C s = (C)0;                                                                              \
        _Pragma("unroll")                                                                        \
        for (int k = 0; k < 16; ++k) {                                                           \
            int j = threadIdx.x + k * blockDim.x;                                                \
            if (j < n) s += exp(v[k] - m);                                                       \
        }                                                                                        \
        s = block_reduce<C>(s, 0, sh);                                                           \
        C lse = m + log(s);                                                                      \
        _Pragma("unroll")                                                                        \
        for (int k = 0; k < 16; ++k) {                                                           \
            int j = threadIdx.x + k * blockDim.x;                                                \
            if (j < n) { C z = v[k] - lse; STORE(yr, j, log_out ? z : exp(z)); }                 \
        }                                                                                        \
    }                                                                                            \
}
SOFTMAX_CACHED(softmax_cached_f32, float, float, load_f, store_f)
SOFTMAX_CACHED(softmax_cached_f64, double, double, load_f, store_f)
SOFTMAX_CACHED(softmax_cached_bf16, bf16_t, float, load_f, store_f)
SOFTMAX_CACHED(softmax_cached_f16, f16_t, float, load_h, store_h)

// The f32 cached softmax with 16-byte loads and stores, for rows of len % 4 == 0 (at most
// 4 * 4 * blockDim.x) starting 16-byte aligned: thread t holds float4s t + k * blockDim.x.
// The arithmetic of softmax_cached_f32; only the order of the row sum's terms differs.
// About 40 registers instead of 64 (H100: six blocks of 256 per SM instead of four).
__device__ __forceinline__ float softmax_max4(float4 v) { return fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w)); }
__device__ __forceinline__ float softmax_out(float v, float lse, int log_out) { float z = v - lse; return log_out ? z : expf(z); }
extern "C" __global__ void __launch_bounds__(256) softmax_cached_f32v4(const float* x, float* y, i64 rows, i64 len, int log_out) {
    __shared__ float sh[32];
    const float ninf = (float)-SCORCH_INF;
    const int n4 = (int)(len >> 2);
    float4 v[4];
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const float4* xr = (const float4*)(x + r * len);
        float4* yr = (float4*)(y + r * len);
        float m = ninf;
        #pragma unroll
        for (int k = 0; k < 4; ++k) {
            int j = threadIdx.x + k * blockDim.x;
            v[k] = j < n4 ? xr[j] : make_float4(ninf, ninf, ninf, ninf);
            m = fmaxf(m, softmax_max4(v[k]));
        }
        m = block_reduce<float>(m, 1, sh);
        if (m == ninf) m = 0.0f;
        float s = 0.0f;
        #pragma unroll
        for (int k = 0; k < 4; ++k) {
            if (threadIdx.x + k * blockDim.x < n4) s += ((expf(v[k].x - m) + expf(v[k].y - m)) + expf(v[k].z - m)) + expf(v[k].w - m);
        }
        s = block_reduce<float>(s, 0, sh);
        float lse = m + logf(s);
        #pragma unroll
        for (int k = 0; k < 4; ++k) {
            int j = threadIdx.x + k * blockDim.x;
            if (j < n4) yr[j] = make_float4(softmax_out(v[k].x, lse, log_out), softmax_out(v[k].y, lse, log_out),
                                            softmax_out(v[k].z, lse, log_out), softmax_out(v[k].w, lse, log_out));
        }
    }
}

// Inclusive prefix sum of each row, one thread per row, accumulated in double.
#define CUMSUM_ROWS(NAME, T, LOAD, STORE)                                                        \
extern "C" __global__ void NAME(const T* x, T* y, i64 rows, i64 len) {                           \
    GRID_LOOP(r, rows) {                                                                         \
        double acc = 0.0;                                                                        \
        for (i64 j = 0; j < len; ++j) { acc += (double)LOAD(x, r * len + j); STORE(y, r * len + j, acc); } \
    }                                                                                            \
}
CUMSUM_ROWS(cumsum_rows_f32, float, load_f, store_f)
CUMSUM_ROWS(cumsum_rows_f64, double, load_f, store_f)
CUMSUM_ROWS(cumsum_rows_bf16, bf16_t, load_f, store_f)
CUMSUM_ROWS(cumsum_rows_f16, f16_t, load_h, store_h)

// Reduction over the leading dim of a contiguous [rows, cols] view (bias gradients, batch
// sums): one thread per column, so each step of the loop reads a coalesced row.
#define REDUCE_COLS(NAME, T, C, LOAD, STORE)                                                     \
extern "C" __global__ void NAME(const T* x, T* y, i64 rows, i64 cols, int op) {                  \
    GRID_LOOP(j, cols) {                                                                         \
        C acc = op == 0 ? (C)0 : (op == 1 ? (C)-SCORCH_INF : (C)SCORCH_INF);                      \
        for (i64 r = 0; r < rows; ++r) {                                                         \
            C v = LOAD(x, r * cols + j);                                                         \
            acc = op == 0 ? acc + v : (op == 1 ? nan_max(acc, v) : nan_min(acc, v)); \
        }                                                                                        \
        STORE(y, j, acc);                                                                        \
    }                                                                                            \
}
REDUCE_COLS(reduce_cols_f32, float, float, load_f, store_f)
REDUCE_COLS(reduce_cols_f64, double, double, load_f, store_f)
REDUCE_COLS(reduce_cols_bf16, bf16_t, float, load_f, store_f)
REDUCE_COLS(reduce_cols_f16, f16_t, float, load_h, store_h)

// Split reductions for few long rows (or few columns): each block reduces one chunk into an
// f32 / f64 partial, and a second pass (reduce_rows / reduce_cols on the partials) finishes.
#define REDUCE_PARTIAL_ROWS(NAME, T, C, LOAD)                                                    \
extern "C" __global__ void NAME(const T* x, C* part, i64 rows, i64 len, i64 nc, int op) {        \
    __shared__ C sh[32];                                                                         \
    const i64 chunk = (len + nc - 1) / nc;                                                       \
    for (i64 b = blockIdx.x; b < rows * nc; b += gridDim.x) {                                    \
        const i64 r = b / nc, c = b % nc;                                                        \
        const i64 lo = c * chunk, hi = lo + chunk < len ? lo + chunk : len;                      \
        C acc = op == 0 ? (C)0 : (op == 1 ? (C)-SCORCH_INF : (C)SCORCH_INF);                      \
        for (i64 j = lo + threadIdx.x; j < hi; j += blockDim.x) {                                \
            C v = LOAD(x, r * len + j);                                                          \
            acc = op == 0 ? acc + v : (op == 1 ? nan_max(acc, v) : nan_min(acc, v)); \
        }                                                                                        \
        C t = block_reduce<C>(acc, op, sh);                                                      \
        if (threadIdx.x == 0) part[b] = t;                                                       \
    }                                                                                            \
}
REDUCE_PARTIAL_ROWS(reduce_partial_rows_f32, float, float, load_f)
REDUCE_PARTIAL_ROWS(reduce_partial_rows_f64, double, double, load_f)
REDUCE_PARTIAL_ROWS(reduce_partial_rows_bf16, bf16_t, float, load_f)
REDUCE_PARTIAL_ROWS(reduce_partial_rows_f16, f16_t, float, load_h)

// Column partials of a contiguous [rows, cols] view: block b covers 256 columns of tile
// b % tiles over the rows of chunk b / tiles; part is [nc, cols].
#define REDUCE_PARTIAL_COLS(NAME, T, C, LOAD)                                                    \
extern "C" __global__ void NAME(const T* x, C* part, i64 rows, i64 cols, i64 nc, int op) {       \
    const i64 tiles = (cols + blockDim.x - 1) / blockDim.x;                                      \
    const i64 chunk = (rows + nc - 1) / nc;                                                      \
    for (i64 b = blockIdx.x; b < tiles * nc; b += gridDim.x) {                                   \
        const i64 j = (b % tiles) * blockDim.x + threadIdx.x, c = b / tiles;                     \
        if (j >= cols) continue;                                                                 \
        const i64 lo = c * chunk, hi = lo + chunk < rows ? lo + chunk : rows;                    \
        C acc = op == 0 ? (C)0 : (op == 1 ? (C)-SCORCH_INF : (C)SCORCH_INF);                      \
        for (i64 r = lo; r < hi; ++r) {                                                          \
            C v = LOAD(x, r * cols + j);                                                         \
            acc = op == 0 ? acc + v : (op == 1 ? nan_max(acc, v) : nan_min(acc, v)); \
        }                                                                                        \
        part[c * cols + j] = acc;                                                                \
    }                                                                                            \
}
REDUCE_PARTIAL_COLS(reduce_partial_cols_f32, float, float, load_f)
REDUCE_PARTIAL_COLS(reduce_partial_cols_f64, double, double, load_f)
REDUCE_PARTIAL_COLS(reduce_partial_cols_bf16, bf16_t, float, load_f)
REDUCE_PARTIAL_COLS(reduce_partial_cols_f16, f16_t, float, load_h)

// The f32 row partials with 16-byte loads: rows of len % 4 == 0 starting 16-byte aligned;
// each chunk is a run of float4s (four independent loads in flight per thread).
extern "C" __global__ void reduce_partial_rows_f32v4(const float* x, float* part, i64 rows, i64 len, i64 nc, int op) {
    __shared__ float sh[32];
    const i64 len4 = len / 4;
    const i64 chunk = (len4 + nc - 1) / nc;
    for (i64 b = blockIdx.x; b < rows * nc; b += gridDim.x) {
        const i64 r = b / nc, c = b % nc;
        const i64 lo = c * chunk, hi = lo + chunk < len4 ? lo + chunk : len4;
        const float4* xr = (const float4*)(x + r * len);
        float ident = op == 0 ? 0.0f : (op == 1 ? (float)-SCORCH_INF : (float)SCORCH_INF);
        float a0 = ident, a1 = ident, a2 = ident, a3 = ident;
        #pragma unroll 4
        for (i64 j = lo + threadIdx.x; j < hi; j += blockDim.x) {
            float4 v = xr[j];
            if (op == 0) { a0 += v.x; a1 += v.y; a2 += v.z; a3 += v.w; }
            else if (op == 1) {
                a0 = nan_max(a0, v.x); a1 = nan_max(a1, v.y); a2 = nan_max(a2, v.z); a3 = nan_max(a3, v.w);
            } else {
                a0 = nan_min(a0, v.x); a1 = nan_min(a1, v.y); a2 = nan_min(a2, v.z); a3 = nan_min(a3, v.w);
            }
        }
        float acc;
        if (op == 0) acc = (a0 + a1) + (a2 + a3);
        else if (op == 1) acc = (isnan(a0) || isnan(a1) || isnan(a2) || isnan(a3)) ? SCORCH_NAN : fmaxf(fmaxf(a0, a1), fmaxf(a2, a3));
        else acc = (isnan(a0) || isnan(a1) || isnan(a2) || isnan(a3)) ? SCORCH_NAN : fminf(fminf(a0, a1), fminf(a2, a3));
        float t = block_reduce<float>(acc, op, sh);
        if (threadIdx.x == 0) part[b] = t;
    }
}
