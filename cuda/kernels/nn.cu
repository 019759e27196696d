// Norms (group / layer / RMS, forward and backward), 2-D pooling and bilinear upsampling.
// Semantics follow ops/src/cpu/norm.rs and ops/src/cpu/pool.rs exactly (see backend/nn.rs).
// T is the storage type, C the compute type (float for f32 / bf16 / f16, double for f64).

// ---------------------------------------------------------------------------------------------
// Helpers.

// f64 -> storage type exactly as the CPU's `CpuStorage::from_f64_iter` rounds: Rust `as f32`;
// half 2.x `bf16::from_f64` (truncates the low 32 mantissa bits, then rounds up whenever the
// round bit is set: ported bit for bit); `f16::from_f64` on x86 with F16C (every x86-64 the
// parity runs on): f64 -> f32 -> f16, both to nearest even.
__device__ __forceinline__ void store_d(float* p, i64 i, double v) { p[i] = (float)v; }
__device__ __forceinline__ void store_d(double* p, i64 i, double v) { p[i] = v; }
__device__ __forceinline__ void store_d(bf16_t* p, i64 i, double v) {
    unsigned long long bits = (unsigned long long)__double_as_longlong(v);
    unsigned int x = (unsigned int)(bits >> 32);
    unsigned int sign = x & 0x80000000u, ex = x & 0x7FF00000u, man = x & 0x000FFFFFu;
    unsigned int hs = sign >> 16;
    if (ex == 0x7FF00000u) {
        unsigned int nan_bit = (man == 0 && (unsigned int)bits == 0) ? 0u : 0x0040u;
        p[i] = (bf16_t)(hs | 0x7F80u | nan_bit | (man >> 13));
        return;
    }
    i64 he = (i64)(ex >> 20) - 1023 + 127;
    if (he >= 0xFF) { p[i] = (bf16_t)(hs | 0x7F80u); return; }
    if (he <= 0) {
        if (7 - he > 21) { p[i] = (bf16_t)hs; return; }
        man |= 0x00100000u;
        unsigned int hm = man >> (14 - he);
        unsigned int rb = 1u << (13 - he);
        if ((man & rb) != 0 && (man & (3u * rb - 1u)) != 0) hm += 1;
        p[i] = (bf16_t)(hs | hm);
        return;
    }
    unsigned int r = hs | ((unsigned int)he << 7) | (man >> 13);
    unsigned int rb = 0x00001000u;
    if ((man & rb) != 0 && (man & (3u * rb - 1u)) != 0) r += 1;
    p[i] = (bf16_t)r;
}
__device__ __forceinline__ void store_dh(f16_t* p, i64 i, double v) { store_h(p, i, (float)v); }

// ---------------------------------------------------------------------------------------------
// Normalisation. A row is one (sample, group) of group norm or one last-dim vector of layer /
// RMS norm: `len = nseg * seg` contiguous elements, element j belongs to channel
// `(r % groups) * nseg + j / seg`. One block per row; statistics reduced with block_reduce.

__device__ __forceinline__ i64 norm_channel(i64 r, i64 j, i64 nseg, i64 seg, i64 groups) {
    return (r % groups) * nseg + (seg == 1 ? j : j / seg);
}

// y = x * (w * rstd) + (b - mean * rstd * w); mean / rstd are stored per row in C.
#define NORM_FWD(NAME, T, C, LOAD, STORE)                                                        \
extern "C" __global__ void NAME(const T* x, const T* w, const T* b, T* y, C* mean, C* rstd,      \
                                i64 rows, i64 nseg, i64 seg, i64 groups, int center, double eps) { \
    __shared__ C sh[32];                                                                         \
    i64 len = nseg * seg;                                                                        \
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {                                         \
        const T* xr = x + r * len;                                                               \
        C mu = (C)0;                                                                             \
        if (center) {                                                                            \
            C s = (C)0;                                                                          \
            for (i64 j = threadIdx.x; j < len; j += blockDim.x) s += LOAD(xr, j);                \
            s = block_reduce<C>(s, 0, sh);                                                       \
            mu = (C)((double)s / (double)len);                                                   \
        }                                                                                        \
        C q = (C)0;                                                                              \
        for (i64 j = threadIdx.x; j < len; j += blockDim.x) { C d = LOAD(xr, j) - mu; q += d * d; } \
        q = block_reduce<C>(q, 0, sh);                                                           \
        C inv = (C)(1.0 / sqrt((double)q / (double)len + eps));                                  \
        if (threadIdx.x == 0) { mean[r] = mu; rstd[r] = inv; }                                   \
        for (i64 j = threadIdx.x; j < len; j += blockDim.x) {                                    \
            i64 c = norm_channel(r, j, nseg, seg, groups);                                       \
            C wk = w ? LOAD(w, c) : (C)1;                                                        \
            C bk = b ? LOAD(b, c) : (C)0;                                                        \
            C scale = wk * inv, shift = bk - mu * inv * wk;                                      \
            STORE(y, r * len + j, LOAD(xr, j) * scale + shift);                                  \
        }                                                                                        \
    }                                                                                            \
}
NORM_FWD(norm_fwd_f32, float, float, load_f, store_f)
NORM_FWD(norm_fwd_f64, double, double, load_f, store_f)
NORM_FWD(norm_fwd_bf16, bf16_t, float, load_f, store_f)
NORM_FWD(norm_fwd_f16, f16_t, float, load_h, store_h)

// dx = rstd * (gy·w - mean(gy·w) - x̂ · mean(gy·w·x̂)); the first mean is dropped for RMS.
#define NORM_BWD_DX(NAME, T, C, LOAD, STORE)                                                     \
extern "C" __global__ void NAME(const T* gy, const T* x, const C* mean, const C* rstd, const T* w, \
                                T* dx, i64 rows, i64 nseg, i64 seg, i64 groups, int center) {    \
    __shared__ C sh[32];                                                                         \
    i64 len = nseg * seg;                                                                        \
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {                                         \
        const T* xr = x + r * len;                                                               \
        const T* gr = gy + r * len;                                                              \
        C mu = mean[r], inv = rstd[r];                                                           \
        C s1 = (C)0, s2 = (C)0;                                                                  \
        for (i64 j = threadIdx.x; j < len; j += blockDim.x) {                                    \
            C wk = w ? LOAD(w, norm_channel(r, j, nseg, seg, groups)) : (C)1;                    \
            C g = LOAD(gr, j) * wk;                                                              \
            C xh = (LOAD(xr, j) - mu) * inv;                                                     \
            s1 += g;                                                                             \
            s2 += g * xh;                                                                        \
        }                                                                                        \
        s1 = block_reduce<C>(s1, 0, sh);                                                         \
        s2 = block_reduce<C>(s2, 0, sh);                                                         \
        C m1 = center ? (C)((double)s1 / (double)len) : (C)0;                                    \
        C m2 = (C)((double)s2 / (double)len);                                                    \
        for (i64 j = threadIdx.x; j < len; j += blockDim.x) {                                    \
            C wk = w ? LOAD(w, norm_channel(r, j, nseg, seg, groups)) : (C)1;                    \
            C xh = (LOAD(xr, j) - mu) * inv;                                                     \
            STORE(dx, r * len + j, inv * (LOAD(gr, j) * wk - m1 - xh * m2));                     \
        }                                                                                        \
    }                                                                                            \
}
NORM_BWD_DX(norm_bwd_dx_f32, float, float, load_f, store_f)
NORM_BWD_DX(norm_bwd_dx_f64, double, double, load_f, store_f)
NORM_BWD_DX(norm_bwd_dx_bf16, bf16_t, float, load_f, store_f)
NORM_BWD_DX(norm_bwd_dx_f16, f16_t, float, load_h, store_h)

// dw / db, step 1. The input is viewed as [n, l] (n samples, l = channels * s elements each,
// channel of column j is j / s; row of sample i and column j is i * groups + (j / s) / nseg).
// Block (32, 8): 32 columns by 8 lanes over a chunk of `chunk` samples; writes the partial sums
// of gy·x̂ and gy of each column for chunk blockIdx.y to pw / pb [gridDim.y, l].
#define NORM_BWD_PART(NAME, T, C, LOAD)                                                          \
extern "C" __global__ void NAME(const T* gy, const T* x, const C* mean, const C* rstd, C* pw,    \
                                C* pb, i64 n, i64 l, i64 s, i64 nseg, i64 groups, i64 chunk) {   \
    __shared__ C shw[8][33];                                                                     \
    __shared__ C shb[8][33];                                                                     \
    i64 j = (i64)blockIdx.x * 32 + threadIdx.x;                                                  \
    i64 n0 = (i64)blockIdx.y * chunk;                                                            \
    i64 n1 = n0 + chunk < n ? n0 + chunk : n;                                                    \
    C aw = (C)0, ab = (C)0;                                                                      \
    if (j < l) {                                                                                 \
        i64 grp = (j / s) / nseg;                                                                \
        for (i64 i = n0 + threadIdx.y; i < n1; i += 8) {                                         \
            i64 r = i * groups + grp, idx = i * l + j;                                           \
            C g = LOAD(gy, idx);                                                                 \
            aw += g * ((LOAD(x, idx) - mean[r]) * rstd[r]);                                      \
            ab += g;                                                                             \
        }                                                                                        \
    }                                                                                            \
    shw[threadIdx.y][threadIdx.x] = aw;                                                          \
    shb[threadIdx.y][threadIdx.x] = ab;                                                          \
    __syncthreads();                                                                             \
    if (threadIdx.y == 0 && j < l) {                                                             \
        for (int t = 1; t < 8; ++t) { aw += shw[t][threadIdx.x]; ab += shb[t][threadIdx.x]; }    \
        pw[(i64)blockIdx.y * l + j] = aw;                                                        \
        pb[(i64)blockIdx.y * l + j] = ab;                                                        \
    }                                                                                            \
}
NORM_BWD_PART(norm_bwd_part_f32, float, float, load_f)
NORM_BWD_PART(norm_bwd_part_f64, double, double, load_f)
NORM_BWD_PART(norm_bwd_part_bf16, bf16_t, float, load_f)
NORM_BWD_PART(norm_bwd_part_f16, f16_t, float, load_h)

// dw / db, step 2: one block per channel sums its `s` columns over `nchunks` chunks.
#define NORM_BWD_FIN(NAME, T, C, STORE)                                                          \
extern "C" __global__ void NAME(const C* pw, const C* pb, T* dw, T* db, i64 channels, i64 l,    \
                                i64 s, i64 nchunks) {                                            \
    __shared__ C sh[32];                                                                         \
    for (i64 c = blockIdx.x; c < channels; c += gridDim.x) {                                     \
        C aw = (C)0, ab = (C)0;                                                                  \
        for (i64 q = threadIdx.x; q < nchunks * s; q += blockDim.x) {                            \
            i64 k = q / s, e = q - k * s;                                                        \
            i64 idx = k * l + c * s + e;                                                         \
            aw += pw[idx];                                                                       \
            ab += pb[idx];                                                                       \
        }                                                                                        \
        aw = block_reduce<C>(aw, 0, sh);                                                         \
        ab = block_reduce<C>(ab, 0, sh);                                                         \
        if (threadIdx.x == 0) { STORE(dw, c, aw); STORE(db, c, ab); }                            \
    }                                                                                            \
}
NORM_BWD_FIN(norm_bwd_fin_f32, float, float, store_f)
NORM_BWD_FIN(norm_bwd_fin_f64, double, double, store_f)
NORM_BWD_FIN(norm_bwd_fin_bf16, bf16_t, float, store_f)
NORM_BWD_FIN(norm_bwd_fin_f16, f16_t, float, store_h)

// ---------------------------------------------------------------------------------------------
// 2-D pooling over [planes, h, w] (planes = N·C), outputs [planes, ho, wo].

// Window of output position o clipped to the input: [a, b), and the count of the window
// clipped only to the padded input (count_include_pad), as pool.rs `window`.
__device__ __forceinline__ void pool_window(i64 o, i64 stride, i64 pad, i64 k, i64 size, i64& a, i64& b, i64& cnt) {
    i64 start = o * stride - pad;
    i64 end = start + k < size + pad ? start + k : size + pad;
    cnt = end - start;
    a = start > 0 ? start : 0;
    i64 e = end < size ? end : size;
    b = e > 0 ? e : 0;
}

#define AVG_POOL(NAME, T, C, LOAD, STORE)                                                        \
extern "C" __global__ void NAME(const T* x, T* y, i64 planes, i64 h, i64 w, i64 ho, i64 wo,      \
                                i64 kh, i64 kw, i64 sh, i64 sw, i64 ph, i64 pw) {                \
    GRID_LOOP(i, planes * ho * wo) {                                                             \
        i64 ox = i % wo, oy = (i / wo) % ho, pl = i / (wo * ho);                                 \
        i64 y0, y1, cy, x0, x1, cx;                                                              \
        pool_window(oy, sh, ph, kh, h, y0, y1, cy);                                              \
        pool_window(ox, sw, pw, kw, w, x0, x1, cx);                                              \
        const T* src = x + pl * h * w;                                                           \
        C s = (C)0;                                                                              \
        for (i64 yy = y0; yy < y1; ++yy)                                                         \
            for (i64 xx = x0; xx < x1; ++xx) s += LOAD(src, yy * w + xx);                        \
        STORE(y, i, s / (C)(cy * cx));                                                           \
    }                                                                                            \
}
AVG_POOL(avg_pool2d_f32, float, float, load_f, store_f)
AVG_POOL(avg_pool2d_f64, double, double, load_f, store_f)
AVG_POOL(avg_pool2d_bf16, bf16_t, float, load_f, store_f)
AVG_POOL(avg_pool2d_f16, f16_t, float, load_h, store_h)

// First output index along one axis whose window can cover input position p, and the last.
__device__ __forceinline__ void pool_range(i64 p, i64 stride, i64 pad, i64 k, i64 nout, i64& lo, i64& hi) {
    i64 t = p + pad - k;
    lo = t < 0 ? 0 : t / stride + 1;
    hi = (p + pad) / stride;
    if (hi > nout - 1) hi = nout - 1;
}

// Backward: one thread per input pixel gathers g / count over the windows covering it, in the
// CPU's (oy, ox) order.
#define AVG_POOL_BWD(NAME, T, C, LOAD, STORE)                                                    \
extern "C" __global__ void NAME(const T* g, T* dx, i64 planes, i64 h, i64 w, i64 ho, i64 wo,     \
                                i64 kh, i64 kw, i64 sh, i64 sw, i64 ph, i64 pw) {                \
    GRID_LOOP(i, planes * h * w) {                                                               \
        i64 ix = i % w, iy = (i / w) % h, pl = i / (w * h);                                      \
        i64 oy0, oy1, ox0, ox1;                                                                  \
        pool_range(iy, sh, ph, kh, ho, oy0, oy1);                                                \
        pool_range(ix, sw, pw, kw, wo, ox0, ox1);                                                \
        const T* gp = g + pl * ho * wo;                                                          \
        C acc = (C)0;                                                                            \
        for (i64 oy = oy0; oy <= oy1; ++oy) {                                                    \
            i64 y0, y1, cy;                                                                      \
            pool_window(oy, sh, ph, kh, h, y0, y1, cy);                                          \
            if (iy < y0 || iy >= y1) continue;                                                   \
            for (i64 ox = ox0; ox <= ox1; ++ox) {                                                \
                i64 x0, x1, cx;                                                                  \
                pool_window(ox, sw, pw, kw, w, x0, x1, cx);                                      \
                if (ix < x0 || ix >= x1) continue;                                               \
                acc += LOAD(gp, oy * wo + ox) / (C)(cy * cx);                                    \
            }                                                                                    \
        }                                                                                        \
        STORE(dx, i, acc);                                                                       \
    }                                                                                            \
}
AVG_POOL_BWD(avg_pool2d_bwd_f32, float, float, load_f, store_f)
AVG_POOL_BWD(avg_pool2d_bwd_f64, double, double, load_f, store_f)
AVG_POOL_BWD(avg_pool2d_bwd_bf16, bf16_t, float, load_f, store_f)
AVG_POOL_BWD(avg_pool2d_bwd_f16, f16_t, float, load_h, store_h)

// Max pooling: value and flat in-plane index y·w + x of the chosen element. Same scan as the
// CPU: strictly greater wins (first maximum), a NaN wins and ends its window row.
#define MAX_POOL(NAME, T, C, LOAD, STORE)                                                        \
extern "C" __global__ void NAME(const T* x, T* y, long long* idx, i64 planes, i64 h, i64 w,      \
                                i64 ho, i64 wo, i64 kh, i64 kw, i64 sh, i64 sw, i64 ph, i64 pw) { \
    GRID_LOOP(i, planes * ho * wo) {                                                             \
        i64 ox = i % wo, oy = (i / wo) % ho, pl = i / (wo * ho);                                 \
        i64 y0, y1, cy, x0, x1, cx;                                                              \
        pool_window(oy, sh, ph, kh, h, y0, y1, cy);                                              \
        pool_window(ox, sw, pw, kw, w, x0, x1, cx);                                              \
        const T* src = x + pl * h * w;                                                           \
        C best = (C)-SCORCH_INF;                                                                 \
        i64 bi = y0 * w + x0;                                                                    \
        for (i64 yy = y0; yy < y1; ++yy) {                                                       \
            for (i64 xx = x0; xx < x1; ++xx) {                                                   \
                C v = LOAD(src, yy * w + xx);                                                    \
                if (v > best || isnan(v)) {                                                      \
                    best = v;                                                                    \
                    bi = yy * w + xx;                                                            \
                    if (isnan(v)) break;                                                         \
                }                                                                                \
            }                                                                                    \
        }                                                                                        \
        STORE(y, i, best);                                                                       \
        idx[i] = bi;                                                                             \
    }                                                                                            \
}
MAX_POOL(max_pool2d_f32, float, float, load_f, store_f)
MAX_POOL(max_pool2d_f64, double, double, load_f, store_f)
MAX_POOL(max_pool2d_bf16, bf16_t, float, load_f, store_f)
MAX_POOL(max_pool2d_f16, f16_t, float, load_h, store_h)

// ---------------------------------------------------------------------------------------------
// Bilinear resampling (align_corners = false, as PyTorch), computed in double like the CPU,
// with explicitly rounded operations so no FMA contraction changes a tap.

// Taps of output position o along an axis of `inp` inputs; scale = inp / out (host-computed).
__device__ __forceinline__ void bilinear_tap(i64 o, i64 inp, double scale, i64& i0, i64& i1, double& f) {
    double src = __dadd_rn(__dmul_rn((double)o + 0.5, scale), -0.5);
    src = src > 0.0 ? src : 0.0;
    i64 a = (i64)floor(src);
    if (a > inp - 1) a = inp - 1;
    i0 = a;
    i1 = a + 1 < inp - 1 ? a + 1 : inp - 1;
    f = __dadd_rn(src, -(double)a);
}

__device__ __forceinline__ double lerp_rn(double a, double b, double f) {
    return __dadd_rn(__dmul_rn(a, 1.0 - f), __dmul_rn(b, f));
}

#define UPSAMPLE(NAME, T, LOAD, STORED)                                                          \
extern "C" __global__ void NAME(const T* x, T* y, i64 planes, i64 h, i64 w, i64 oh, i64 ow,      \
                                double scale_y, double scale_x) {                                \
    GRID_LOOP(i, planes * oh * ow) {                                                             \
        i64 ox = i % ow, oy = (i / ow) % oh, pl = i / (ow * oh);                                 \
        i64 y0, y1, x0, x1;                                                                      \
        double fy, fx;                                                                           \
        bilinear_tap(oy, h, scale_y, y0, y1, fy);                                                \
        bilinear_tap(ox, w, scale_x, x0, x1, fx);                                                \
        const T* s = x + pl * h * w;                                                             \
        double top = lerp_rn((double)LOAD(s, y0 * w + x0), (double)LOAD(s, y0 * w + x1), fx);    \
        double bot = lerp_rn((double)LOAD(s, y1 * w + x0), (double)LOAD(s, y1 * w + x1), fx);    \
        STORED(y, i, lerp_rn(top, bot, fy));                                                     \
    }                                                                                            \
}
UPSAMPLE(upsample_bilinear2d_f32, float, load_f, store_d)
UPSAMPLE(upsample_bilinear2d_f64, double, load_f, store_d)
UPSAMPLE(upsample_bilinear2d_bf16, bf16_t, load_f, store_d)
UPSAMPLE(upsample_bilinear2d_f16, f16_t, load_h, store_dh)

// First output position along an axis whose taps may include input p (conservative: the taps
// are monotone, the caller skips non-matching ones and stops once i0 > p).
__device__ __forceinline__ i64 bilinear_first(i64 p, double scale) {
    double t = floor(((double)p - 0.5) / scale - 0.5) - 2.0;
    return t > 0.0 ? (i64)t : 0;
}

// Backward: one thread per input pixel gathers, in double and in the CPU's scatter order
// ((oy, ox), then taps 00, 01, 10, 11), every output gradient whose taps touch it.
#define UPSAMPLE_BWD(NAME, T, LOAD, STORED)                                                      \
extern "C" __global__ void NAME(const T* g, T* dx, i64 planes, i64 h, i64 w, i64 oh, i64 ow,     \
                                double scale_y, double scale_x) {                                \
    GRID_LOOP(i, planes * h * w) {                                                               \
        i64 ix = i % w, iy = (i / w) % h, pl = i / (w * h);                                      \
        const T* gp = g + pl * oh * ow;                                                          \
        i64 oxs = bilinear_first(ix, scale_x);                                                   \
        double acc = 0.0;                                                                        \
        for (i64 oy = bilinear_first(iy, scale_y); oy < oh; ++oy) {                              \
            i64 y0, y1;                                                                          \
            double fy;                                                                           \
            bilinear_tap(oy, h, scale_y, y0, y1, fy);                                            \
            if (y0 > iy) break;                                                                  \
            if (y0 != iy && y1 != iy) continue;                                                  \
            for (i64 ox = oxs; ox < ow; ++ox) {                                                  \
                i64 x0, x1;                                                                      \
                double fx;                                                                       \
                bilinear_tap(ox, w, scale_x, x0, x1, fx);                                        \
                if (x0 > ix) break;                                                              \
                if (x0 != ix && x1 != ix) continue;                                              \
                double v = (double)LOAD(gp, oy * ow + ox);                                       \
                double gy0 = __dmul_rn(v, 1.0 - fy), gy1 = __dmul_rn(v, fy);                     \
                if (y0 == iy && x0 == ix) acc = __dadd_rn(acc, __dmul_rn(gy0, 1.0 - fx));        \
                if (y0 == iy && x1 == ix) acc = __dadd_rn(acc, __dmul_rn(gy0, fx));              \
                if (y1 == iy && x0 == ix) acc = __dadd_rn(acc, __dmul_rn(gy1, 1.0 - fx));        \
                if (y1 == iy && x1 == ix) acc = __dadd_rn(acc, __dmul_rn(gy1, fx));              \
            }                                                                                    \
        }                                                                                        \
        STORED(dx, i, acc);                                                                      \
    }                                                                                            \
}
UPSAMPLE_BWD(upsample_bilinear2d_bwd_f32, float, load_f, store_d)
UPSAMPLE_BWD(upsample_bilinear2d_bwd_f64, double, load_f, store_d)
UPSAMPLE_BWD(upsample_bilinear2d_bwd_bf16, bf16_t, load_f, store_d)
UPSAMPLE_BWD(upsample_bilinear2d_bwd_f16, f16_t, load_h, store_dh)
