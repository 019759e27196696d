// Scaled dot-product attention (launchers and the design in src/backend/attention.rs).
//
// General path: row kernels around cuBLAS products. `attn_rows_fwd_*` turns raw scores
// S = Q·Kᵀ (f32, f64 for f64) into P = softmax(scale·S + mask) in place and writes the
// natural-log lse; `attn_rows_bwd_*` recomputes P from the lse and turns dP = dO·Vᵀ into
// dS = P∘(dP − rowsum(dO∘O))·scale. Masks are read through broadcast strides.
//
// Flash path (no mask, D = Dv ∈ {32, 64, 128}): `attn_flash_fwd_f32_d*` (SIMT, f32),
// `attn_flash_fwd_{bf16,f16}_d*` and `attn_flash_bwd_{bf16,f16}_d*` (mma.sync m16n8k16 tensor
// cores, f32 accumulation, cp.async tile loads), `attn_delta_*` (rowsum(dO∘O) for the
// backward). Padded rows and keys are zero-filled and masked, so any Sq, Sk work.

#define ATTN_LOG2E 1.4426950408889634f
#define ATTN_LN2 0.6931471805599453f
#define ATTN_INF_F __int_as_float(0x7f800000)

// ---------------------------------------------------------------------------------------
// General path: row kernels.
// ---------------------------------------------------------------------------------------

// s: raw scores [rows, sk] of heads starting at global row row0 (rows = heads·sq); lse
// indexed by global row. mask (optional): element (b, h, i, j) at mask[b*mb + h*mh + i*mi +
// j*mj], with bh = b*heads + h.
#define ATTN_ROWS_FWD(NAME, M, C, LOADM)                                                         \
extern "C" __global__ void NAME(C* s, C* lse, const M* mask, i64 rows, i64 row0, i64 sq, i64 sk, \
                                i64 heads, i64 mb, i64 mh, i64 mi, i64 mj, int has_mask,         \
                                int causal, double scale) {                                      \
    __shared__ C sh[32];                                                                         \
    const C sc = (C)scale;                                                                       \
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {                                         \
        const i64 gr = row0 + r, bh = gr / sq, i = gr % sq;                                      \
        const M* mrow = has_mask ? mask + (bh / heads) * mb + (bh % heads) * mh + i * mi : mask; \
        C* row = s + r * sk;                                                                     \
        C mx = (C)-SCORCH_INF;                                                                   \
        for (i64 j = threadIdx.x; j < sk; j += blockDim.x) {                                     \
            C x = row[j] * sc;                                                                   \
            if (has_mask) x += LOADM(mrow, j * mj);                                              \
            if (causal && j > i) x = (C)-SCORCH_INF;                                             \
            row[j] = x;                                                                          \
            mx = fmax(mx, x);                                                                    \
        }                                                                                        \
        mx = block_reduce<C>(mx, 1, sh);                                                         \
        if (mx == (C)-SCORCH_INF) {                                                              \
            for (i64 j = threadIdx.x; j < sk; j += blockDim.x) row[j] = (C)0;                    \
            if (threadIdx.x == 0) lse[gr] = (C)-SCORCH_INF;                                      \
            continue;                                                                            \
        }                                                                                        \
        C sum = (C)0;                                                                            \
        for (i64 j = threadIdx.x; j < sk; j += blockDim.x) sum += exp(row[j] - mx);              \
        sum = block_reduce<C>(sum, 0, sh);                                                       \
        const C inv = (C)1 / sum;                                                                \
        for (i64 j = threadIdx.x; j < sk; j += blockDim.x) row[j] = exp(row[j] - mx) * inv;      \
        if (threadIdx.x == 0) lse[gr] = mx + log(sum);                                           \
    }                                                                                            \
}
ATTN_ROWS_FWD(attn_rows_fwd_f32, float, float, load_f)
ATTN_ROWS_FWD(attn_rows_fwd_f64, double, double, load_f)
ATTN_ROWS_FWD(attn_rows_fwd_bf16, bf16_t, float, load_f)
ATTN_ROWS_FWD(attn_rows_fwd_f16, f16_t, float, load_h)

// s: raw scores Q·Kᵀ → P; dp: dO·Vᵀ → dS = P∘(dP − δ)·scale with δ = rowsum(dO∘O).
// o, go [all rows, dv] and lse are indexed by global row; s, dp by the chunk's row.
#define ATTN_ROWS_BWD(NAME, M, C, LOADM)                                                         \
extern "C" __global__ void NAME(C* s, C* dp, const C* lse, const C* o, const C* go, const M* mask, \
                                i64 rows, i64 row0, i64 sq, i64 sk, i64 dv, i64 heads, i64 mb,   \
                                i64 mh, i64 mi, i64 mj, int has_mask, int causal, double scale) { \
    __shared__ C sh[32];                                                                         \
    const C sc = (C)scale;                                                                       \
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {                                         \
        const i64 gr = row0 + r, bh = gr / sq, i = gr % sq;                                      \
        const M* mrow = has_mask ? mask + (bh / heads) * mb + (bh % heads) * mh + i * mi : mask; \
        C delta = (C)0;                                                                          \
        for (i64 c = threadIdx.x; c < dv; c += blockDim.x) delta += go[gr * dv + c] * o[gr * dv + c]; \
        delta = block_reduce<C>(delta, 0, sh);                                                   \
        const C l = lse[gr];                                                                     \
        C* srow = s + r * sk;                                                                    \
        C* drow = dp + r * sk;                                                                   \
        for (i64 j = threadIdx.x; j < sk; j += blockDim.x) {                                     \
            C x = srow[j] * sc;                                                                  \
            if (has_mask) x += LOADM(mrow, j * mj);                                              \
            if (causal && j > i) x = (C)-SCORCH_INF;                                             \
            const C p = (l == (C)-SCORCH_INF || x == (C)-SCORCH_INF) ? (C)0 : exp(x - l);        \
            srow[j] = p;                                                                         \
            drow[j] = p * (drow[j] - delta) * sc;                                                \
        }                                                                                        \
    }                                                                                            \
}
ATTN_ROWS_BWD(attn_rows_bwd_f32, float, float, load_f)
ATTN_ROWS_BWD(attn_rows_bwd_f64, double, double, load_f)
ATTN_ROWS_BWD(attn_rows_bwd_bf16, bf16_t, float, load_f)
ATTN_ROWS_BWD(attn_rows_bwd_f16, f16_t, float, load_h)

// ---------------------------------------------------------------------------------------
// Flash forward, f32 (SIMT). Block: 128 threads, 32 query rows (4 threads per row), key
// tiles of BN. Shared: Q [32][D+1], K, V [BN][D+1], P [32][BN+1] floats (≤ 35 KB).
// ---------------------------------------------------------------------------------------

template <int D, int BN>
__device__ __forceinline__ void flash_fwd_f32(const float* __restrict__ q, const float* __restrict__ k,
                                              const float* __restrict__ v, float* __restrict__ o,
                                              float* __restrict__ lse, i64 sq, i64 sk, float scale,
                                              int causal) {
    constexpr int BM = 32, NT = 128;
    __shared__ float qs[BM][D + 1];
    __shared__ float ks[BN][D + 1];
    __shared__ float vs[BN][D + 1];
    __shared__ float ps[BM][BN + 1];
    const int tid = threadIdx.x, r = tid >> 2, qd = tid & 3;
    // Causal: the last query tiles have the most keys, so they start first.
    const i64 qt = causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;
    const i64 bh = blockIdx.y, q0 = qt * BM, gi = q0 + r;
    q += bh * sq * D;
    k += bh * sk * D;
    v += bh * sk * D;
    o += bh * sq * D;
    lse += bh * sq;
    for (int e = tid; e < BM * D; e += NT) {
        const int rr = e / D, c = e % D;
        qs[rr][c] = q0 + rr < sq ? q[(q0 + rr) * D + c] : 0.f;
    }
    float acc[D / 4];
#pragma unroll
    for (int i = 0; i < D / 4; ++i) acc[i] = 0.f;
    float m = -ATTN_INF_F, l = 0.f;
    const i64 kend = causal ? (sk < q0 + BM ? sk : q0 + BM) : sk;
    for (i64 k0 = 0; k0 < kend; k0 += BN) {
        __syncthreads();
        for (int e = tid; e < BN * D; e += NT) {
            const int j = e / D, c = e % D;
            const bool ok = k0 + j < sk;
            ks[j][c] = ok ? k[(k0 + j) * D + c] : 0.f;
            vs[j][c] = ok ? v[(k0 + j) * D + c] : 0.f;
        }
        __syncthreads();
        float sv[BN / 4];
        float mx = -ATTN_INF_F;
#pragma unroll
        for (int jj = 0; jj < BN / 4; ++jj) {
            const int j = qd + 4 * jj;
            float a = 0.f;
#pragma unroll 16
            for (int d = 0; d < D; ++d) a += qs[r][d] * ks[j][d];
            a *= scale;
            const i64 gj = k0 + j;
            if (gj >= sk || (causal && gj > gi)) a = -ATTN_INF_F;
            sv[jj] = a;
            mx = fmaxf(mx, a);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mnew = fmaxf(m, mx);
        const float mu = mnew == -ATTN_INF_F ? 0.f : mnew;
        const float corr = expf(m - mu);
        float rs = 0.f;
#pragma unroll
        for (int jj = 0; jj < BN / 4; ++jj) {
            const float p = expf(sv[jj] - mu);
            ps[r][qd + 4 * jj] = p;
            rs += p;
        }
        rs += __shfl_xor_sync(0xffffffffu, rs, 1);
        rs += __shfl_xor_sync(0xffffffffu, rs, 2);
        l = l * corr + rs;
        m = mnew;
#pragma unroll
        for (int i = 0; i < D / 4; ++i) acc[i] *= corr;
        __syncwarp();
#pragma unroll 4
        for (int j = 0; j < BN; ++j) {
            const float p = ps[r][j];
#pragma unroll
            for (int i = 0; i < D / 4; ++i) acc[i] += p * vs[j][qd + 4 * i];
        }
    }
    if (gi < sq) {
        const float inv = l > 0.f ? 1.f / l : 0.f;
#pragma unroll
        for (int i = 0; i < D / 4; ++i) o[gi * D + qd + 4 * i] = acc[i] * inv;
        if (qd == 0) lse[gi] = m + logf(l);
    }
}

#define FLASH_FWD_F32(NAME, D, BN)                                                               \
extern "C" __global__ void __launch_bounds__(128) NAME(const float* q, const float* k,           \
        const float* v, float* o, float* lse, i64 sq, i64 sk, float scale, int causal) {         \
    flash_fwd_f32<D, BN>(q, k, v, o, lse, sq, sk, scale, causal);                                \
}
FLASH_FWD_F32(attn_flash_fwd_f32_d32, 32, 32)
FLASH_FWD_F32(attn_flash_fwd_f32_d64, 64, 32)
FLASH_FWD_F32(attn_flash_fwd_f32_d128, 128, 16)

// ---------------------------------------------------------------------------------------
// Tensor-core helpers (sm_80+): cp.async, ldmatrix, mma.sync m16n8k16 with f32 accumulation.
// Fragment layouts (g = lane/4, t = lane%4): A regs (row g | g+8, cols 2t..2t+1 | +8),
// B regs (k 2t..2t+1 | +8, col g), C (row g: c0 c1 at cols 2t, 2t+1; row g+8: c2 c3).
// ---------------------------------------------------------------------------------------

// 16-byte async copy global → shared; src_bytes 0 writes zeros.
// (The host shim copies at once, so its commit and wait have nothing to do.)
#ifdef SCORCH_HOST_SHIM
__device__ __forceinline__ void attn_cp16(void* dst, const void* src, int src_bytes) { scorch_host_cp_async16(dst, src, src_bytes); }
__device__ __forceinline__ void attn_cp_commit() {}
template <int N>
__device__ __forceinline__ void attn_cp_wait() {}
#else
__device__ __forceinline__ void attn_cp16(void* dst, const void* src, int src_bytes) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(tc_smem(dst)), "l"(src), "r"(src_bytes)
                 : "memory");
}
__device__ __forceinline__ void attn_cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void attn_cp_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
#endif

// Rows [r0, r0 + ROWS) of a row-major [n, D] 16-bit matrix into shared [ROWS][LD]; rows ≥ n
// are zero-filled.
template <int D, int LD, int ROWS>
__device__ __forceinline__ void attn_load_rows(unsigned short* dst, const unsigned short* src, i64 r0, i64 n) {
    constexpr int CPR = D / 8;  // 16-byte chunks per row
    for (int c = threadIdx.x; c < ROWS * CPR; c += 128) {
        const int row = c / CPR, col = (c % CPR) * 8;
        const bool ok = r0 + row < n;
        attn_cp16(dst + row * LD + col, src + (ok ? (r0 + row) * D + col : 0), ok ? 16 : 0);
    }
}

__device__ __forceinline__ unsigned attn_ld32(const unsigned short* p) { return *(const unsigned*)p; }

// Four transposed 8x8 b16 matrices; lane L addresses row L%8 of matrix L/8.
__device__ __forceinline__ void attn_ldsm_t(unsigned& r0, unsigned& r1, unsigned& r2, unsigned& r3,
                                            const unsigned short* p) {
#ifdef SCORCH_HOST_SHIM
    unsigned r[4];
    scorch_host_ldmatrix_x4(r, p, true);
    r0 = r[0], r1 = r[1], r2 = r[2], r3 = r[3];
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r0), "=r"(r1), "=r"(r2), "=r"(r3)
                 : "r"(tc_smem(p)));
#endif
}

// Two floats as a packed 16-bit pair (lo in the low half), round to nearest even.
template <bool F16>
__device__ __forceinline__ unsigned attn_pack(float lo, float hi) {
    unsigned r;
#ifdef SCORCH_HOST_SHIM
    r = F16 ? ((unsigned)float_to_f16(hi) << 16) | float_to_f16(lo) : ((unsigned)float_to_bf16(hi) << 16) | float_to_bf16(lo);
#else
    if (F16) {
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    } else {
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    }
#endif
    return r;
}

// ---------------------------------------------------------------------------------------
// Flash forward, bf16 / f16 on tensor cores. Block: 4 warps, 64 query rows (16 per warp,
// Q fragments in registers), key tiles of 64 in shared memory (K and V [64][D+8], ≤ 34 KB),
// K of the next tile loaded while P·V runs. Scores in the log2 domain.
// ---------------------------------------------------------------------------------------

template <int D, bool F16>
__device__ __forceinline__ void flash_fwd_tc(const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
                                             const unsigned short* __restrict__ v, unsigned short* __restrict__ o,
                                             float* __restrict__ lse, i64 sq, i64 sk, float scale_log2,
                                             int causal) {
    constexpr int BM = 64, BN = 64, LD = D + 8, KD = D / 16, NB = BN / 8, OD = D / 8;
    __shared__ __align__(16) unsigned short ks[BN * LD];
    __shared__ __align__(16) unsigned short vs[BN * LD];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const i64 qt = causal ? gridDim.x - 1 - blockIdx.x : blockIdx.x;  // causal: heaviest tiles first
    const i64 bh = blockIdx.y, q0 = qt * BM;
    q += bh * sq * D;
    k += bh * sk * D;
    v += bh * sk * D;
    o += bh * sq * D;
    lse += bh * sq;
    const i64 r0 = q0 + warp * 16 + g, r1 = r0 + 8;
    const i64 kend = causal ? (sk < q0 + BM ? sk : q0 + BM) : sk;
    const int ntiles = (int)((kend + BN - 1) / BN);
    if (ntiles > 0) {
        attn_load_rows<D, LD, BN>(ks, k, 0, sk);
        attn_cp_commit();
        attn_load_rows<D, LD, BN>(vs, v, 0, sk);
        attn_cp_commit();
    }
    unsigned qa[KD][4];
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
        const int c = kk * 16 + 2 * t;
        qa[kk][0] = r0 < sq ? attn_ld32(q + r0 * D + c) : 0u;
        qa[kk][1] = r1 < sq ? attn_ld32(q + r1 * D + c) : 0u;
        qa[kk][2] = r0 < sq ? attn_ld32(q + r0 * D + c + 8) : 0u;
        qa[kk][3] = r1 < sq ? attn_ld32(q + r1 * D + c + 8) : 0u;
    }
    float oacc[OD][4];
#pragma unroll
    for (int n = 0; n < OD; ++n) oacc[n][0] = oacc[n][1] = oacc[n][2] = oacc[n][3] = 0.f;
    float m0 = -ATTN_INF_F, m1 = -ATTN_INF_F, l0 = 0.f, l1 = 0.f;
    for (int it = 0; it < ntiles; ++it) {
        const i64 k0 = (i64)it * BN;
        attn_cp_wait<1>();
        __syncthreads();
        float s[NB][4];
#pragma unroll
        for (int n = 0; n < NB; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < KD; ++kk) {
#pragma unroll
            for (int n = 0; n < NB; ++n) {
                const unsigned short* kp = ks + (n * 8 + g) * LD + kk * 16 + 2 * t;
                tc_mma<F16>(s[n], qa[kk], attn_ld32(kp), attn_ld32(kp + 8));
            }
        }
        __syncthreads();
        if (it + 1 < ntiles) attn_load_rows<D, LD, BN>(ks, k, k0 + BN, sk);
        attn_cp_commit();
        // Scale, mask, online softmax (rows r0: c0 c1, r1: c2 c3; a row spans the quad).
        float mx0 = -ATTN_INF_F, mx1 = -ATTN_INF_F;
        const bool edge = k0 + BN > sk || (causal && k0 + BN - 1 > q0);  // some key masked
#pragma unroll
        for (int n = 0; n < NB; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const i64 col = k0 + n * 8 + 2 * t + (e & 1);
                const i64 row = e < 2 ? r0 : r1;
                float x = s[n][e] * scale_log2;
                if (edge && (col >= sk || (causal && col > row))) x = -ATTN_INF_F;
                s[n][e] = x;
            }
            mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
            mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
        }
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float mu0 = mn0 == -ATTN_INF_F ? 0.f : mn0, mu1 = mn1 == -ATTN_INF_F ? 0.f : mn1;
        const float c0 = exp2f(m0 - mu0), c1 = exp2f(m1 - mu1);
        m0 = mn0;
        m1 = mn1;
        float rs0 = 0.f, rs1 = 0.f;
#pragma unroll
        for (int n = 0; n < NB; ++n) {
            s[n][0] = exp2f(s[n][0] - mu0);
            s[n][1] = exp2f(s[n][1] - mu0);
            s[n][2] = exp2f(s[n][2] - mu1);
            s[n][3] = exp2f(s[n][3] - mu1);
            rs0 += s[n][0] + s[n][1];
            rs1 += s[n][2] + s[n][3];
        }
        l0 = l0 * c0 + rs0;
        l1 = l1 * c1 + rs1;
#pragma unroll
        for (int n = 0; n < OD; ++n) {
            oacc[n][0] *= c0;
            oacc[n][1] *= c0;
            oacc[n][2] *= c1;
            oacc[n][3] *= c1;
        }
        attn_cp_wait<1>();
        __syncthreads();
        // O += P·V: P from the score accumulators, V fragments by transposed ldmatrix.
#pragma unroll
        for (int kb = 0; kb < BN / 16; ++kb) {
            unsigned pa[4];
            pa[0] = attn_pack<F16>(s[2 * kb][0], s[2 * kb][1]);
            pa[1] = attn_pack<F16>(s[2 * kb][2], s[2 * kb][3]);
            pa[2] = attn_pack<F16>(s[2 * kb + 1][0], s[2 * kb + 1][1]);
            pa[3] = attn_pack<F16>(s[2 * kb + 1][2], s[2 * kb + 1][3]);
            const unsigned short* vp = vs + (kb * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
            for (int n2 = 0; n2 < D / 16; ++n2) {
                unsigned b0, b1, b2, b3;
                attn_ldsm_t(b0, b1, b2, b3, vp + n2 * 16);
                tc_mma<F16>(oacc[2 * n2], pa, b0, b1);
                tc_mma<F16>(oacc[2 * n2 + 1], pa, b2, b3);
            }
        }
        __syncthreads();
        if (it + 1 < ntiles) attn_load_rows<D, LD, BN>(vs, v, k0 + BN, sk);
        attn_cp_commit();
    }
    attn_cp_wait<0>();
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
    const float inv0 = l0 > 0.f ? 1.f / l0 : 0.f, inv1 = l1 > 0.f ? 1.f / l1 : 0.f;
#pragma unroll
    for (int n = 0; n < OD; ++n) {
        const int c = n * 8 + 2 * t;
        if (r0 < sq) *(unsigned*)(o + r0 * D + c) = attn_pack<F16>(oacc[n][0] * inv0, oacc[n][1] * inv0);
        if (r1 < sq) *(unsigned*)(o + r1 * D + c) = attn_pack<F16>(oacc[n][2] * inv1, oacc[n][3] * inv1);
    }
    if (t == 0) {
        if (r0 < sq) lse[r0] = l0 > 0.f ? (m0 + log2f(l0)) * ATTN_LN2 : -ATTN_INF_F;
        if (r1 < sq) lse[r1] = l1 > 0.f ? (m1 + log2f(l1)) * ATTN_LN2 : -ATTN_INF_F;
    }
}

#define FLASH_FWD_TC(NAME, D, F16)                                                               \
extern "C" __global__ void __launch_bounds__(128) NAME(const unsigned short* q, const unsigned short* k, \
        const unsigned short* v, unsigned short* o, float* lse, i64 sq, i64 sk, float scale_log2, \
        int causal) {                                                                            \
    flash_fwd_tc<D, F16>(q, k, v, o, lse, sq, sk, scale_log2, causal);                           \
}
FLASH_FWD_TC(attn_flash_fwd_bf16_d32, 32, false)
FLASH_FWD_TC(attn_flash_fwd_bf16_d64, 64, false)
FLASH_FWD_TC(attn_flash_fwd_bf16_d128, 128, false)
FLASH_FWD_TC(attn_flash_fwd_f16_d32, 32, true)
FLASH_FWD_TC(attn_flash_fwd_f16_d64, 64, true)
FLASH_FWD_TC(attn_flash_fwd_f16_d128, 128, true)

// ---------------------------------------------------------------------------------------
// Flash backward, bf16 / f16 on tensor cores (FA2 style). δ = rowsum(dO∘O) first
// (`attn_delta_*`). A block owns 64 keys (16 per warp; V fragments in registers, K in shared
// memory) and loops over query tiles of BR: Sᵀ = K·Qᵀ, Pᵀ = exp(Sᵀ·scale − lse),
// dPᵀ = V·dOᵀ, dV += Pᵀ·dO, dSᵀ = Pᵀ∘(dPᵀ − δ)·scale, dK += dSᵀ·Q in registers; dS goes
// through shared memory for dQ += dS·K, added atomically to an f32 buffer.
// Shared: K [64][D+8], Q, dO [BR][D+8], dSᵀ [64][BR+8] (≤ 40 KB).
// ---------------------------------------------------------------------------------------

template <typename T>
__device__ __forceinline__ float attn_ld_any(const T* p, i64 i, bool f16) {
    return f16 ? f16_to_float(p[i]) : bf16_to_float(p[i]);
}

#define ATTN_DELTA(NAME, F16)                                                                    \
extern "C" __global__ void NAME(const unsigned short* o, const unsigned short* go, float* delta, \
                                i64 rows, i64 dv) {                                              \
    const int lane = threadIdx.x & 31;                                                           \
    const i64 warps = (i64)gridDim.x * (blockDim.x >> 5);                                        \
    for (i64 r = (i64)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); r < rows; r += warps) { \
        float acc = 0.f;                                                                         \
        for (i64 c = lane; c < dv; c += 32)                                                      \
            acc += attn_ld_any(go, r * dv + c, F16) * attn_ld_any(o, r * dv + c, F16);           \
        acc = warp_sum(acc);                                                                     \
        if (lane == 0) delta[r] = acc;                                                           \
    }                                                                                            \
}
ATTN_DELTA(attn_delta_bf16, false)
ATTN_DELTA(attn_delta_f16, true)

template <int D, int BR, bool F16>
__device__ __forceinline__ void flash_bwd_tc(const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
                                             const unsigned short* __restrict__ v, const unsigned short* __restrict__ go,
                                             const float* __restrict__ lse, const float* __restrict__ delta,
                                             float* __restrict__ dq, unsigned short* __restrict__ dk,
                                             unsigned short* __restrict__ dv, i64 sq, i64 sk, float scale, int causal) {
    constexpr int BC = 64, LD = D + 8, LDS = BR + 8, KD = D / 16, QB = BR / 8, OD = D / 8;
    constexpr int RG = BR / 16, CS = 4 / RG, DC = D / CS;  // dQ work split: row groups × column slices
    __shared__ __align__(16) unsigned short ks[BC * LD];
    __shared__ __align__(16) unsigned short qs[BR * LD];
    __shared__ __align__(16) unsigned short dos[BR * LD];
    __shared__ __align__(16) unsigned short dss[BC * LDS];
    __shared__ float lsl[BR], dls[BR];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
    const i64 bh = blockIdx.y, kb0 = (i64)blockIdx.x * BC;
    q += bh * sq * D;
    go += bh * sq * D;
    dq += bh * sq * D;
    k += bh * sk * D;
    v += bh * sk * D;
    dk += bh * sk * D;
    dv += bh * sk * D;
    lse += bh * sq;
    delta += bh * sq;
    const float sl2 = scale * ATTN_LOG2E;
    attn_load_rows<D, LD, BC>(ks, k, kb0, sk);
    attn_cp_commit();
    const i64 ka = kb0 + warp * 16 + g, kb = ka + 8;
    unsigned va[KD][4];
#pragma unroll
    for (int kk = 0; kk < KD; ++kk) {
        const int c = kk * 16 + 2 * t;
        va[kk][0] = ka < sk ? attn_ld32(v + ka * D + c) : 0u;
        va[kk][1] = kb < sk ? attn_ld32(v + kb * D + c) : 0u;
        va[kk][2] = ka < sk ? attn_ld32(v + ka * D + c + 8) : 0u;
        va[kk][3] = kb < sk ? attn_ld32(v + kb * D + c + 8) : 0u;
    }
    float dka[OD][4], dva[OD][4];
#pragma unroll
    for (int n = 0; n < OD; ++n) {
        dka[n][0] = dka[n][1] = dka[n][2] = dka[n][3] = 0.f;
        dva[n][0] = dva[n][1] = dva[n][2] = dva[n][3] = 0.f;
    }
    const int rg = warp % RG, cs = warp / RG;
    const i64 mstart = causal ? (kb0 / BR) * BR : 0;
    for (i64 m0 = mstart; m0 < sq; m0 += BR) {
        attn_load_rows<D, LD, BR>(qs, q, m0, sq);
        attn_load_rows<D, LD, BR>(dos, go, m0, sq);
        attn_cp_commit();
        for (int i = tid; i < BR; i += 128) {
            const i64 qi = m0 + i;
            const float L = qi < sq ? lse[qi] : -ATTN_INF_F;
            lsl[i] = L == -ATTN_INF_F ? ATTN_INF_F : L * ATTN_LOG2E;
            dls[i] = qi < sq ? delta[qi] : 0.f;
        }
        attn_cp_wait<0>();
        __syncthreads();
        // Sᵀ = K_w·Qᵀ and dPᵀ = V_w·dOᵀ (rows: this warp's keys; cols: the tile's queries).
        float st[QB][4], dpt[QB][4];
#pragma unroll
        for (int n = 0; n < QB; ++n) {
            st[n][0] = st[n][1] = st[n][2] = st[n][3] = 0.f;
            dpt[n][0] = dpt[n][1] = dpt[n][2] = dpt[n][3] = 0.f;
        }
#pragma unroll
        for (int kk = 0; kk < KD; ++kk) {
            const unsigned short* kp = ks + (warp * 16 + g) * LD + kk * 16 + 2 * t;
            unsigned a[4];
            a[0] = attn_ld32(kp);
            a[1] = attn_ld32(kp + 8 * LD);
            a[2] = attn_ld32(kp + 8);
            a[3] = attn_ld32(kp + 8 * LD + 8);
#pragma unroll
            for (int n = 0; n < QB; ++n) {
                const unsigned short* qp = qs + (n * 8 + g) * LD + kk * 16 + 2 * t;
                tc_mma<F16>(st[n], a, attn_ld32(qp), attn_ld32(qp + 8));
                const unsigned short* dp = dos + (n * 8 + g) * LD + kk * 16 + 2 * t;
                tc_mma<F16>(dpt[n], va[kk], attn_ld32(dp), attn_ld32(dp + 8));
            }
        }
        // Pᵀ and dSᵀ (f32). Padded queries have lse +∞, so only keys need masking.
        const bool edge = kb0 + BC > sk || (causal && kb0 + BC - 1 > m0);
#pragma unroll
        for (int n = 0; n < QB; ++n) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int ql = n * 8 + 2 * t + (e & 1);
                const i64 key = e < 2 ? ka : kb;
                float p = exp2f(st[n][e] * sl2 - lsl[ql]);
                if (edge && (key >= sk || (causal && key > m0 + ql))) p = 0.f;
                st[n][e] = p;
                dpt[n][e] = p * (dpt[n][e] - dls[ql]) * scale;
            }
        }
        // dV += Pᵀ·dO and dK += dSᵀ·Q (k over the tile's queries; B by transposed ldmatrix).
#pragma unroll
        for (int kq = 0; kq < BR / 16; ++kq) {
            unsigned pa[4], sa[4];
            pa[0] = attn_pack<F16>(st[2 * kq][0], st[2 * kq][1]);
            pa[1] = attn_pack<F16>(st[2 * kq][2], st[2 * kq][3]);
            pa[2] = attn_pack<F16>(st[2 * kq + 1][0], st[2 * kq + 1][1]);
            pa[3] = attn_pack<F16>(st[2 * kq + 1][2], st[2 * kq + 1][3]);
            sa[0] = attn_pack<F16>(dpt[2 * kq][0], dpt[2 * kq][1]);
            sa[1] = attn_pack<F16>(dpt[2 * kq][2], dpt[2 * kq][3]);
            sa[2] = attn_pack<F16>(dpt[2 * kq + 1][0], dpt[2 * kq + 1][1]);
            sa[3] = attn_pack<F16>(dpt[2 * kq + 1][2], dpt[2 * kq + 1][3]);
            const int roff = (kq * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + (lane >> 4) * 8;
#pragma unroll
            for (int n2 = 0; n2 < D / 16; ++n2) {
                unsigned b0, b1, b2, b3;
                attn_ldsm_t(b0, b1, b2, b3, dos + roff + n2 * 16);
                tc_mma<F16>(dva[2 * n2], pa, b0, b1);
                tc_mma<F16>(dva[2 * n2 + 1], pa, b2, b3);
                attn_ldsm_t(b0, b1, b2, b3, qs + roff + n2 * 16);
                tc_mma<F16>(dka[2 * n2], sa, b0, b1);
                tc_mma<F16>(dka[2 * n2 + 1], sa, b2, b3);
            }
            // dSᵀ to shared for dQ (rows: keys, cols: queries).
            *(unsigned*)(dss + (warp * 16 + g) * LDS + kq * 16 + 2 * t) = sa[0];
            *(unsigned*)(dss + (warp * 16 + g + 8) * LDS + kq * 16 + 2 * t) = sa[1];
            *(unsigned*)(dss + (warp * 16 + g) * LDS + kq * 16 + 8 + 2 * t) = sa[2];
            *(unsigned*)(dss + (warp * 16 + g + 8) * LDS + kq * 16 + 8 + 2 * t) = sa[3];
        }
        __syncthreads();
        // dQ[rows rg*16.., cols cs*DC..] += dS·K over the block's 64 keys.
        float dqa[DC / 8][4];
#pragma unroll
        for (int n = 0; n < DC / 8; ++n) dqa[n][0] = dqa[n][1] = dqa[n][2] = dqa[n][3] = 0.f;
#pragma unroll
        for (int kc = 0; kc < BC / 16; ++kc) {
            unsigned a[4];
            attn_ldsm_t(a[0], a[1], a[2], a[3],
                        dss + (kc * 16 + (lane & 7) + (lane >> 4) * 8) * LDS + rg * 16 + ((lane >> 3) & 1) * 8);
            const unsigned short* kp =
                ks + (kc * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + cs * DC + (lane >> 4) * 8;
#pragma unroll
            for (int n2 = 0; n2 < DC / 16; ++n2) {
                unsigned b0, b1, b2, b3;
                attn_ldsm_t(b0, b1, b2, b3, kp + n2 * 16);
                tc_mma<F16>(dqa[2 * n2], a, b0, b1);
                tc_mma<F16>(dqa[2 * n2 + 1], a, b2, b3);
            }
        }
        const i64 qa_ = m0 + rg * 16 + g, qb_ = qa_ + 8;
#pragma unroll
        for (int n = 0; n < DC / 8; ++n) {
            const int c = cs * DC + n * 8 + 2 * t;
            if (qa_ < sq) {
                atomicAdd(dq + qa_ * D + c, dqa[n][0]);
                atomicAdd(dq + qa_ * D + c + 1, dqa[n][1]);
            }
            if (qb_ < sq) {
                atomicAdd(dq + qb_ * D + c, dqa[n][2]);
                atomicAdd(dq + qb_ * D + c + 1, dqa[n][3]);
            }
        }
        __syncthreads();
    }
    attn_cp_wait<0>();
#pragma unroll
    for (int n = 0; n < OD; ++n) {
        const int c = n * 8 + 2 * t;
        if (ka < sk) {
            *(unsigned*)(dk + ka * D + c) = attn_pack<F16>(dka[n][0], dka[n][1]);
            *(unsigned*)(dv + ka * D + c) = attn_pack<F16>(dva[n][0], dva[n][1]);
        }
        if (kb < sk) {
            *(unsigned*)(dk + kb * D + c) = attn_pack<F16>(dka[n][2], dka[n][3]);
            *(unsigned*)(dv + kb * D + c) = attn_pack<F16>(dva[n][2], dva[n][3]);
        }
    }
}

#define FLASH_BWD_TC(NAME, D, BR, F16)                                                           \
extern "C" __global__ void __launch_bounds__(128) NAME(const unsigned short* q, const unsigned short* k, \
        const unsigned short* v, const unsigned short* go, const float* lse, const float* delta, \
        float* dq, unsigned short* dk, unsigned short* dv, i64 sq, i64 sk, float scale, int causal) { \
    flash_bwd_tc<D, BR, F16>(q, k, v, go, lse, delta, dq, dk, dv, sq, sk, scale, causal);        \
}
FLASH_BWD_TC(attn_flash_bwd_bf16_d32, 32, 64, false)
FLASH_BWD_TC(attn_flash_bwd_bf16_d64, 64, 64, false)
FLASH_BWD_TC(attn_flash_bwd_bf16_d128, 128, 32, false)
FLASH_BWD_TC(attn_flash_bwd_f16_d32, 32, 64, true)
FLASH_BWD_TC(attn_flash_bwd_f16_d64, 64, 64, true)
FLASH_BWD_TC(attn_flash_bwd_f16_d128, 128, 32, true)
