// Host (C++) stand-ins for the CUDA built-ins scorch's kernels use, so a kernel file can be
// compiled by an ordinary C++ compiler and run on the CPU. Only for tests
// (cuda/tests/host_kernels.rs).
//
// `host_launch(grid, block, body)` runs every thread of a block as an OS thread, one block
// after another: `__syncthreads` is a barrier of the block, warp shuffles and ballots a barrier
// of the warp's lanes with an exchange slot per lane, and `__shared__` variables are statics
// (one block runs at a time). This is SIMT with every lane of a warp converged at each warp
// operation, which is how the kernels use them. The tensor-core instructions the kernels
// issue as inline PTX (ldmatrix, mma.sync m16n8k16, cp.async, cvt to bf16x2 / f16x2) have
// emulations at the end, following the PTX ISA's fragment layouts; the kernels call them
// under SCORCH_HOST_SHIM.
#pragma once
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <array>
#include <barrier>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
#define __restrict__ __restrict
#define __align__(n) __attribute__((aligned(n)))

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct uint2 { unsigned x, y; };
struct uint4 { unsigned x, y, z, w; };
struct alignas(16) float4 { float x, y, z, w; };
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

static thread_local dim3 threadIdx, blockIdx;
static dim3 blockDim, gridDim;

namespace scorch_host {
struct Block {
    std::unique_ptr<std::barrier<>> all;
    std::vector<std::unique_ptr<std::barrier<>>> warps;
    std::vector<unsigned long long> slot;  // one exchange word per thread
    std::vector<std::array<unsigned char, 32>> scratch;  // fragments of the tensor-core emulation
};
static Block block;
static std::mutex atomics;

static inline unsigned warp_size(unsigned warp) {
    unsigned n = blockDim.x * blockDim.y * blockDim.z;
    return n - warp * 32 < 32 ? n - warp * 32 : 32;
}
static inline unsigned flat_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }
static inline void warp_sync() { block.warps[flat_tid() >> 5]->arrive_and_wait(); }
}  // namespace scorch_host

// Runs `body` (a call of one kernel) for every thread of a `grid` × `block` launch.
template <typename F>
void host_launch(dim3 grid, dim3 blk, F body) {
    using namespace scorch_host;
    gridDim = grid;
    blockDim = blk;
    unsigned n = blk.x * blk.y * blk.z;
    block.all = std::make_unique<std::barrier<>>(n);
    block.warps.clear();
    for (unsigned w = 0; w * 32 < n; ++w) block.warps.push_back(std::make_unique<std::barrier<>>(warp_size(w)));
    block.slot.assign(n, 0);
    block.scratch.assign(n, {});
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                std::vector<std::thread> threads;
                for (unsigned t = 0; t < n; ++t)
                    threads.emplace_back([=] {
                        blockIdx = {bx, by, bz};
                        threadIdx = {t % blk.x, (t / blk.x) % blk.y, t / (blk.x * blk.y)};
                        body();
                    });
                for (auto& th : threads) th.join();
            }
}

// f16 conversions (common.cuh's use PTX): the compiler's _Float16, round to nearest even.
#define SCORCH_HOST_SHIM 1
static inline float f16_to_float(unsigned short h) { _Float16 f; memcpy(&f, &h, 2); return (float)f; }
static inline unsigned short float_to_f16(float v) { _Float16 f = (_Float16)v; unsigned short h; memcpy(&h, &f, 2); return h; }

static inline double __longlong_as_double(long long v) { double d; memcpy(&d, &v, 8); return d; }
static inline float __uint_as_float(unsigned v) { float f; memcpy(&f, &v, 4); return f; }
// CUDA's integer min / max overloads.
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline float rsqrt(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
// double -> float rounded toward zero.
static inline float __double2float_rz(double d) {
    float f = (float)d;
    if (isfinite(d) && fabs((double)f) > fabs(d)) f = nextafterf(f, 0.0f);
    return f;
}
static inline long long __double_as_longlong(double d) { long long v; memcpy(&v, &d, 8); return v; }
// Explicitly rounded operations (no contraction; the host compiles with
// -ffp-contract=off, so plain operations round the same way).
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dsub_rn(double a, double b) { return a - b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __ddiv_rn(double a, double b) { return a / b; }
static inline double __dsqrt_rn(double a) { return sqrt(a); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __int_as_float(int v) { float f; memcpy(&f, &v, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned v; memcpy(&v, &f, 4); return v; }
static inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }

static inline void __syncthreads() { scorch_host::block.all->arrive_and_wait(); }
static inline void __syncwarp(unsigned = 0xffffffffu) { scorch_host::warp_sync(); }
static inline unsigned __activemask() {
    unsigned w = scorch_host::warp_size(scorch_host::flat_tid() >> 5);
    return w == 32 ? 0xffffffffu : (1u << w) - 1u;
}
// Every lane of the warp publishes a word, all wait, each reads the lane it asks for.
template <typename T>
static inline T scorch_host_exchange(T v, unsigned src_lane) {
    using namespace scorch_host;
    static_assert(sizeof(T) <= 8, "exchange word");
    unsigned tid = flat_tid(), base = tid & ~31u;
    memcpy(&block.slot[tid], &v, sizeof(T));
    warp_sync();
    T r;
    memcpy(&r, &block.slot[base + (src_lane < warp_size(tid >> 5) ? src_lane : tid - base)], sizeof(T));
    warp_sync();
    return r;
}
template <typename T> static inline T __shfl_sync(unsigned, T v, int lane) { return scorch_host_exchange(v, (unsigned)lane & 31u); }
template <typename T> static inline T __shfl_xor_sync(unsigned, T v, int m) {
    return scorch_host_exchange(v, ((scorch_host::flat_tid() & 31u) ^ (unsigned)m) & 31u);
}
static inline unsigned __ballot_sync(unsigned mask, bool p) {
    using namespace scorch_host;
    unsigned tid = flat_tid(), base = tid & ~31u, w = warp_size(tid >> 5);
    block.slot[tid] = p;
    warp_sync();
    unsigned r = 0;
    for (unsigned l = 0; l < w; ++l) r |= (block.slot[base + l] ? 1u : 0u) << l;
    warp_sync();
    return r & mask;
}

template <typename T> static inline T atomicAdd(T* p, T v) {
    std::lock_guard<std::mutex> g(scorch_host::atomics);
    T old = *p;
    *p = old + v;
    return old;
}
template <typename T> static inline T atomicMin(T* p, T v) {
    std::lock_guard<std::mutex> g(scorch_host::atomics);
    T old = *p;
    if (v < old) *p = v;
    return old;
}

// ---- Tensor-core instructions ---------------------------------------------------------------

static inline unsigned char* scorch_host_frag(unsigned tid) { return scorch_host::block.scratch[tid].data(); }

// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lane L gives the address of row L % 8 of
// matrix L / 8; register j of lane L receives matrix j's row L / 4, columns 2 (L % 4) and
// 2 (L % 4) + 1 (low half first), or with .trans its column L / 4, rows 2 (L % 4) and + 1.
static inline void scorch_host_ldmatrix_x4(unsigned* r, const unsigned short* p, bool trans) {
    using namespace scorch_host;
    unsigned tid = flat_tid(), base = tid & ~31u, lane = tid & 31u;
    memcpy(scorch_host_frag(tid), &p, sizeof p);
    warp_sync();
    auto row = [&](unsigned l) {
        const unsigned short* q;
        memcpy(&q, scorch_host_frag(base + l), sizeof q);
        return q;
    };
    for (unsigned j = 0; j < 4; ++j) {
        unsigned short e0, e1;
        if (!trans) {
            const unsigned short* q = row(8 * j + lane / 4);
            e0 = q[2 * (lane % 4)];
            e1 = q[2 * (lane % 4) + 1];
        } else {
            e0 = row(8 * j + 2 * (lane % 4))[lane / 4];
            e1 = row(8 * j + 2 * (lane % 4) + 1)[lane / 4];
        }
        r[j] = (unsigned)e0 | ((unsigned)e1 << 16);
    }
    warp_sync();
}

template <bool F16>
static inline float scorch_host_half(unsigned short h) {
    return F16 ? f16_to_float(h) : __uint_as_float((unsigned)h << 16);
}

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32, D = A·B + C with
// g = lane / 4, t = lane % 4: A (16×16) a0 = (g, 2t..2t+1), a1 = (g+8, ·), a2 = (g, 2t+8..),
// a3 = (g+8, 2t+8..); B (16×8) b0 = (k 2t..2t+1, n g), b1 = (k 2t+8.., n g); C / D c0, c1 =
// (g, 2t..2t+1), c2, c3 = (g+8, ·). Products are exact in f32; the sum is taken in double.
template <bool F16>
static inline void scorch_host_mma_m16n8k16(float* c, const unsigned* a, unsigned b0, unsigned b1) {
    using namespace scorch_host;
    unsigned tid = flat_tid(), base = tid & ~31u, lane = tid & 31u;
    unsigned regs[6] = {a[0], a[1], a[2], a[3], b0, b1};
    memcpy(scorch_host_frag(tid), regs, sizeof regs);
    warp_sync();
    auto half = [&](unsigned l, int reg, int hi) {
        unsigned v;
        memcpy(&v, scorch_host_frag(base + l) + 4 * reg, 4);
        return scorch_host_half<F16>((unsigned short)(hi ? v >> 16 : v & 0xffffu));
    };
    auto A = [&](int r, int k) { return half((r % 8) * 4 + (k % 8) / 2, (r >= 8) + 2 * (k >= 8), k % 2); };
    auto B = [&](int k, int n) { return half(n * 4 + (k % 8) / 2, 4 + (k >= 8), k % 2); };
    const int g = lane >> 2, t = lane & 3;
    const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    float d[4];
    for (int e = 0; e < 4; ++e) {
        double acc = 0.0;
        for (int k = 0; k < 16; ++k) acc += (double)A(rows[e], k) * (double)B(k, cols[e]);
        d[e] = c[e] + (float)acc;
    }
    warp_sync();
    for (int e = 0; e < 4; ++e) c[e] = d[e];
}

// cp.async.cg.shared.global [dst], [src], 16, src_bytes: copies src_bytes, zero-fills the rest
// (here at once).
static inline void scorch_host_cp_async16(void* dst, const void* src, int src_bytes) {
    memcpy(dst, src, (size_t)src_bytes);
    memset((unsigned char*)dst + src_bytes, 0, (size_t)(16 - src_bytes));
}
