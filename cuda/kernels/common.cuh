// Shared helpers spliced in front of every scorch kernel file (NVRTC's safe API takes no
// in-memory headers, and CUDA's own headers are not on NVRTC's search path by default).
// bf16 and f16 are carried as raw 16-bit patterns and converted here, so no toolkit
// header is needed.
#pragma once

typedef unsigned short bf16_t;
typedef unsigned short f16_t;
typedef long long i64;

#define SCORCH_MAX_RANK 8

// NVRTC has no math.h macros without the toolkit headers.
#define SCORCH_INF __longlong_as_double(0x7ff0000000000000LL)
#define SCORCH_NAN __longlong_as_double(0x7ff8000000000000LL)
#define SCORCH_PI 3.14159265358979323846

// A strided view: shape, strides (in elements) and offset. Passed by value.
struct Strided {
    i64 shape[SCORCH_MAX_RANK];
    i64 strides[SCORCH_MAX_RANK];
    i64 offset;
    int rank;
    int contiguous;
};

// Buffer offset of the i-th element (row-major) of a strided view.
__device__ __forceinline__ i64 strided_offset(const Strided& l, i64 i) {
    if (l.contiguous) return l.offset + i;
    i64 off = l.offset;
    for (int d = l.rank - 1; d >= 0; --d) {
        i64 s = l.shape[d];
        off += (i % s) * l.strides[d];
        i /= s;
    }
    return off;
}

__device__ __forceinline__ float bf16_to_float(bf16_t h) {
    return __uint_as_float(((unsigned int)h) << 16);
}

// Round to nearest even; NaN stays a quiet NaN.
__device__ __forceinline__ bf16_t float_to_bf16(float f) {
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)(u >> 16);
}

#ifndef SCORCH_HOST_SHIM  // cuda/tests/host/shim.h supplies host versions
__device__ __forceinline__ float f16_to_float(f16_t h) {
    float f;
    asm("{ cvt.f32.f16 %0, %1; }" : "=f"(f) : "h"(h));
    return f;
}

__device__ __forceinline__ f16_t float_to_f16(float f) {
    unsigned short h;
    asm("{ cvt.rn.f16.f32 %0, %1; }" : "=h"(h) : "f"(f));
    return h;
}
#endif

// Load / store any element type through its compute type (float, or double for f64).
__device__ __forceinline__ float load_f(const float* p, i64 i) { return p[i]; }
__device__ __forceinline__ double load_f(const double* p, i64 i) { return p[i]; }
__device__ __forceinline__ float load_f(const bf16_t* p, i64 i) { return bf16_to_float(p[i]); }
__device__ __forceinline__ void store_f(float* p, i64 i, float v) { p[i] = v; }
__device__ __forceinline__ void store_f(double* p, i64 i, double v) { p[i] = v; }
__device__ __forceinline__ void store_f(bf16_t* p, i64 i, float v) { p[i] = float_to_bf16(v); }

// f16 shares bf16's storage type, so it gets explicitly named accessors.
__device__ __forceinline__ float load_h(const f16_t* p, i64 i) { return f16_to_float(p[i]); }
__device__ __forceinline__ void store_h(f16_t* p, i64 i, float v) { p[i] = float_to_f16(v); }

// Grid-stride loop over n elements.
#define GRID_LOOP(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)gridDim.x * blockDim.x)

// Warp reductions.
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
// max / min that return NaN when either side is NaN (as the CPU's reductions and PyTorch's
// max / min do); fmax / fmin alone would drop it.
template <typename T>
__device__ __forceinline__ T nan_max(T a, T b) { return (isnan(a) || isnan(b)) ? a + b : fmax(a, b); }
template <typename T>
__device__ __forceinline__ T nan_min(T a, T b) { return (isnan(a) || isnan(b)) ? a + b : fmin(a, b); }
template <typename T>
__device__ __forceinline__ T warp_max(T v) {
    for (int o = 16; o > 0; o >>= 1) v = nan_max(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
template <typename T>
__device__ __forceinline__ T warp_min(T v) {
    for (int o = 16; o > 0; o >>= 1) v = nan_min(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Block-wide reduction (op 0 sum, 1 max, 2 min; a NaN anywhere gives NaN for max / min);
// every thread gets the result.
template <typename C>
__device__ C block_reduce(C v, int op, C* shared) {
    // op: 0 sum, 1 max, 2 min
    v = op == 0 ? warp_sum(v) : (op == 1 ? warp_max(v) : warp_min(v));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    int nw = (blockDim.x + 31) >> 5;
    C ident = op == 0 ? (C)0 : (op == 1 ? (C)-SCORCH_INF : (C)SCORCH_INF);
    v = threadIdx.x < nw ? shared[threadIdx.x] : ident;
    if (warp == 0) v = op == 0 ? warp_sum(v) : (op == 1 ? warp_max(v) : warp_min(v));
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    C r = shared[0];
    __syncthreads();
    return r;
}

// Special functions (same algorithms as ops/src/special.rs: recurrence to x >= 10, then the
// asymptotic series; reflection for negative arguments).
__device__ double scorch_digamma_pos(double x) {
    // Recurrence psi(x) = psi(x + 1) - 1/x up to x >= 10, with the sum of 1/(x + k) kept as
    // one fraction num/den (all terms positive, den <= 10^10): one division instead of ten.
    double num = 0.0, den = 1.0;
    while (x < 10.0) { num = num * x + den; den *= x; x += 1.0; }
    double acc = -num / den;
    double r = 1.0 / x, r2 = r * r;
    double series = r2 * (1.0/12 - r2 * (1.0/120 - r2 * (1.0/252 - r2 * (1.0/240 - r2 * (1.0/132 - r2 * (691.0/32760 - r2 * (1.0/12)))))));
    return acc + log(x) - 0.5 * r - series;
}

__device__ double scorch_digamma(double x) {
    if (isnan(x) || x == -SCORCH_INF) return SCORCH_NAN;
    if (x == SCORCH_INF) return SCORCH_INF;
    if (x <= 0.0 && x == floor(x)) return x == 0.0 ? (signbit(x) ? SCORCH_INF : -SCORCH_INF) : SCORCH_NAN;
    if (x < 0.0) {
        // psi(1-x) - psi(x) = pi cot(pi x)
        double r = x - rint(x);
        return scorch_digamma_pos(1.0 - x) - SCORCH_PI / tan(SCORCH_PI * r);
    }
    return scorch_digamma_pos(x);
}

__device__ double scorch_trigamma_pos(double x) {
    // psi1(x) = psi1(x + 1) + 1/x^2, the partial sum kept as one fraction (see digamma); the
    // product of squares stays below 10^20, and tiny x (where it could underflow) falls back.
    double acc;
    if (x > 1e-30) {
        double num = 0.0, den = 1.0;
        while (x < 10.0) { double t = x * x; num = num * t + den; den *= t; x += 1.0; }
        acc = num / den;
    } else {
        acc = 0.0;
        while (x < 10.0) { acc += 1.0 / (x * x); x += 1.0; }
    }
    double r = 1.0 / x, q = r * r;
    return acc + r + 0.5 * q + r * q * (1.0/6 - q * (1.0/30 - q * (1.0/42 - q * (1.0/30 - q * (5.0/66 - q * (691.0/2730 - q * (7.0/6)))))));
}

__device__ double scorch_trigamma(double x) {
    if (isnan(x)) return SCORCH_NAN;
    // Non-positive integers (and -inf) are double poles: +inf, as the CPU (scipy's polygamma).
    if (x <= 0.0 && x == floor(x)) return SCORCH_INF;
    if (x < 0.0) {
        // psi1(1-x) + psi1(x) = pi^2 / sin^2(pi x)
        double s = sin(SCORCH_PI * (x - rint(x)));
        return SCORCH_PI * SCORCH_PI / (s * s) - scorch_trigamma_pos(1.0 - x);
    }
    return scorch_trigamma_pos(x);
}

__device__ double scorch_tetragamma(double x) {
    if (isnan(x) || (x <= 0.0 && x == floor(x)) || x < -1e6) return SCORCH_NAN;
    double acc = 0.0;
    while (x < 10.0) { acc -= 2.0 / (x * x * x); x += 1.0; }
    double r = 1.0 / x, r2 = r * r;
    double series = r2 * r2 * (-0.5 + r2 * (1.0/6 + r2 * (-1.0/6 + r2 * (3.0/10 + r2 * (-5.0/6 + r2 * (691.0/210))))));
    return acc + (-r2 - r2 * r + series);
}

// Tensor-core helpers shared by the attention and convolution kernels (sm_80+ when used).
// Under SCORCH_HOST_SHIM (the CPU test harness, cuda/tests/host/shim.h) the PTX is replaced by
// the shim's emulation of the same instructions.
#ifndef SCORCH_HOST_SHIM
// Shared-memory address of a generic pointer, for ldmatrix / cp.async operands.
__device__ __forceinline__ unsigned tc_smem(const void* p) {
    unsigned r;
    asm("{ .reg .u64 a; cvta.to.shared.u64 a, %1; cvt.u32.u64 %0, a; }" : "=r"(r) : "l"(p));
    return r;
}
#endif

// One m16n8k16 tensor-core product with f32 accumulation: bf16 inputs, or f16 when F16.
template <bool F16>
__device__ __forceinline__ void tc_mma(float* c, const unsigned* a, unsigned b0, unsigned b1) {
#ifdef SCORCH_HOST_SHIM
    scorch_host_mma_m16n8k16<F16>(c, a, b0, b1);
#else
    if (F16) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
#endif
}
