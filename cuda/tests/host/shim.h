// Host (C++) stand-ins for the CUDA built-ins the element-wise kernels use, so a kernel file
// can be compiled by an ordinary C++ compiler and run on the CPU: one block of one thread,
// so a grid-stride loop visits every element in order and a "warp" is a single lane.
// Only for tests (cuda/tests/host_kernels.rs); the tensor-core, shared-memory and
// warp-reduction kernels need real warps and are not run this way.
#pragma once
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#define __device__
#define __global__
#define __forceinline__ inline

struct scorch_host_dim3 { unsigned x, y, z; };
static scorch_host_dim3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0}, blockDim = {1, 1, 1}, gridDim = {1, 1, 1};

struct uint2 { unsigned x, y; };
struct uint4 { unsigned x, y, z, w; };
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

static inline double __longlong_as_double(long long v) { double d; memcpy(&d, &v, 8); return d; }
static inline float __uint_as_float(unsigned v) { float f; memcpy(&f, &v, 4); return f; }
static inline unsigned __float_as_uint(float f) { unsigned v; memcpy(&v, &f, 4); return v; }
static inline unsigned __activemask() { return 1u; }
static inline unsigned __ballot_sync(unsigned mask, bool p) { return (mask & 1u) && p ? 1u : 0u; }
static inline int __ffs(unsigned x) { return __builtin_ffs((int)x); }
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
template <typename T> static inline T __shfl_sync(unsigned, T v, int) { return v; }
// A butterfly reduction needs 32 real lanes; with one lane it would silently sum 32 copies.
template <typename T> static inline T __shfl_xor_sync(unsigned, T, int) {
    fprintf(stderr, "__shfl_xor_sync: a warp reduction cannot run on the host shim\n");
    abort();
}
static inline void __syncthreads() {}
static inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    unsigned long long old = *p; *p += v; return old;
}
