// Implicit-GEMM conv2d on tensor cores for bf16 / f16 (launchers in src/backend/conv.rs):
// mma.sync m16n8k16 with f32 accumulation, no column buffer. NCHW, groups = 1, any kernel
// size / stride / padding / dilation; every index fits in 32 bits (the launcher checks).
//
// - `conv_tc_fwd_*`: y = implicit GEMM with M = N·Ho·Wo (output pixels), N = Cout,
//   K = Cin·kh·kw. A[m, k] is gathered from x on the fly (zero outside the image), B is
//   w [Cout, K] itself.
// - `conv_tc_dgrad_*` (`_s`: stride > 1): dx = implicit GEMM with M = N·H·W (input pixels),
//   N = Cin, K = Cout·kh·kw. A[m, (co, i, j)] = gy[n, co, oy, ox] for the output pixel whose
//   tap (i, j) reads input (y, x) (zero when y + ph − i·dh is not a multiple of the stride or
//   out of range), B = wᵀ [Cin, Cout·kh·kw] (`conv_tc_wt` transposes w).
// - `conv_tc_wgrad_*`: dW [Cout, Cin·kh·kw] += Σ_p gy[p, co] · cols[p, k] over output pixels
//   p = (n, oy, ox), the reduction split over blockIdx.z, f32 atomics into a zeroed buffer
//   (the launcher casts it to the dtype).
//
// Block: 256 threads (8 warps as 2 × 4, warp tile 64 × 32), block tile 128 × 128, K tiles of
// 32. Both operands are staged in shared memory as [row][k] (k contiguous, rows padded to 40
// halves so ldmatrix and the 16-byte stores are conflict-free), double-buffered: the next
// tile's gathers are issued into registers before the current tile's mma and stored after
// it. Static shared memory: 40 KB (+ 1.5 KB tap table for the weight gradient).

#define CTC_BM 128
#define CTC_BN 128
#define CTC_BK 32
#define CTC_LD 40   // halves per staged row (32 + 8 padding)
#define CTC_LDC 136 // halves per row of the epilogue's transposed output tile
#define CTC_NT 256

// The geometry of one launch (`struct TcShape` in conv.rs, field for field).
struct TcShape {
    int n, cin, h, w;       // input
    int cout, kh, kw, ho, wo;
    int sh, sw, ph, pw, dh, dw;
    int m;      // GEMM rows: N·Ho·Wo (forward), N·H·W (backward data), Cout (weight)
    int ncols;  // GEMM columns: Cout, Cin, Cin·kh·kw
    int k;      // reduction: Cin·kh·kw, Cout·kh·kw, N·Ho·Wo
    int vec;    // B rows may be read 16 bytes at a time (k % 8 == 0, aligned)
    int tps;    // weight gradient: reduction tiles per blockIdx.z
};

// Four 8x8 b16 matrices; lane L addresses row L%8 of matrix L/8.
__device__ __forceinline__ void ctc_ldsm(unsigned* r, const unsigned short* p) {
#ifdef SCORCH_HOST_SHIM
    scorch_host_ldmatrix_x4(r, p, false);
#else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(tc_smem(p)));
#endif
}

template <bool F16>
__device__ __forceinline__ unsigned short ctc_round(float v) {
    return F16 ? float_to_f16(v) : float_to_bf16(v);
}

// One K tile of the block: acc[mi][ni] (warp rows wm·64 + 16·mi, columns wn·32 + 8·ni) +=
// As[rows][0..32) · Bs[cols][0..32)ᵀ.
template <bool F16>
__device__ __forceinline__ void ctc_tile(const unsigned short* as, const unsigned short* bs, float (&acc)[4][4][4],
                                         int wm, int wn, int lane) {
#pragma unroll
    for (int ks = 0; ks < CTC_BK / 16; ++ks) {
        unsigned a[4][4], b[4][2];
#pragma unroll
        for (int mi = 0; mi < 4; ++mi)
            ctc_ldsm(a[mi], as + (wm * 64 + mi * 16 + (lane & 15)) * CTC_LD + ks * 16 + (lane >> 4) * 8);
#pragma unroll
        for (int nj = 0; nj < 2; ++nj) {
            unsigned r[4];
            ctc_ldsm(r, bs + (wn * 32 + nj * 16 + (lane & 7) + ((lane >> 4) << 3)) * CTC_LD + ks * 16 +
                            ((lane >> 3) & 1) * 8);
            b[2 * nj][0] = r[0];
            b[2 * nj][1] = r[1];
            b[2 * nj + 1][0] = r[2];
            b[2 * nj + 1][1] = r[3];
        }
#pragma unroll
        for (int mi = 0; mi < 4; ++mi)
#pragma unroll
            for (int ni = 0; ni < 4; ++ni) tc_mma<F16>(acc[mi][ni], a[mi], b[ni][0], b[ni][1]);
    }
}

__device__ __forceinline__ void ctc_put(unsigned (&r)[8], int e, unsigned short v) {
    if (e & 1)
        r[e >> 1] |= (unsigned)v << 16;
    else
        r[e >> 1] = v;
}

// 16 staged halves into shared row `dst` (16-byte aligned).
__device__ __forceinline__ void ctc_store16(unsigned short* dst, const unsigned (&r)[8]) {
    uint4* d = (uint4*)dst;
    d[0] = make_uint4(r[0], r[1], r[2], r[3]);
    d[1] = make_uint4(r[4], r[5], r[6], r[7]);
}

// Columns [k0, k0 + 16) of row `bp` (nullptr: a row past the end) of a [rows, K] matrix.
__device__ __forceinline__ void ctc_load_b(unsigned (&r)[8], const unsigned short* bp, int k0, const TcShape& s) {
    if (bp != nullptr && s.vec) {
        // K % 8 == 0: a chunk of 8 is entirely inside or outside.
        const uint4 z = make_uint4(0u, 0u, 0u, 0u);
        const uint4 u = k0 < s.k ? *(const uint4*)(bp + k0) : z;
        const uint4 v = k0 + 8 < s.k ? *(const uint4*)(bp + k0 + 8) : z;
        r[0] = u.x, r[1] = u.y, r[2] = u.z, r[3] = u.w;
        r[4] = v.x, r[5] = v.y, r[6] = v.z, r[7] = v.w;
        return;
    }
#pragma unroll
    for (int e = 0; e < 16; ++e) ctc_put(r, e, bp != nullptr && k0 + e < s.k ? bp[k0 + e] : (unsigned short)0);
}

// Forward A: taps k0 .. k0 + 16 of output pixel (abase: sample offset in x, iy0 / ix0: the
// tap (0, 0) input position); abase < 0 for a row past the end.
__device__ __forceinline__ void ctc_gather_fwd(unsigned (&r)[8], const unsigned short* x, int k0, int abase, int iy0,
                                               int ix0, const TcShape& s) {
    const int khw = s.kh * s.kw, hw = s.h * s.w;
    const int c = k0 / khw, rr = k0 - c * khw;
    int i = rr / s.kw, j = rr - i * s.kw, coff = abase + c * hw;
#pragma unroll
    for (int e = 0; e < 16; ++e) {
        const int iy = iy0 + i * s.dh, ix = ix0 + j * s.dw;
        const bool ok = abase >= 0 && k0 + e < s.k && (unsigned)iy < (unsigned)s.h && (unsigned)ix < (unsigned)s.w;
        ctc_put(r, e, ok ? x[coff + iy * s.w + ix] : (unsigned short)0);
        if (++j == s.kw) {
            j = 0;
            if (++i == s.kh) {
                i = 0;
                coff += hw;
            }
        }
    }
}

// Backward-data A: taps k0 .. k0 + 16 = (co, i, j) of input pixel (y, x) (abase: sample
// offset in gy, yb = y + ph, xb = x + pw); abase < 0 for a row past the end.
template <bool UNIT>
__device__ __forceinline__ void ctc_gather_dgrad(unsigned (&r)[8], const unsigned short* gy, int k0, int abase, int yb,
                                                 int xb, const TcShape& s) {
    const int khw = s.kh * s.kw, pix = s.ho * s.wo;
    const int co = k0 / khw, rr = k0 - co * khw;
    int i = rr / s.kw, j = rr - i * s.kw, coff = abase + co * pix;
#pragma unroll
    for (int e = 0; e < 16; ++e) {
        int ty = yb - i * s.dh, tx = xb - j * s.dw;
        bool ok = abase >= 0 && k0 + e < s.k;
        if (!UNIT) {
            ok = ok && ty >= 0 && tx >= 0;
            const int qy = ty / s.sh, qx = tx / s.sw;
            ok = ok && qy * s.sh == ty && qx * s.sw == tx;
            ty = qy;
            tx = qx;
        }
        ok = ok && (unsigned)ty < (unsigned)s.ho && (unsigned)tx < (unsigned)s.wo;
        ctc_put(r, e, ok ? gy[coff + ty * s.wo + tx] : (unsigned short)0);
        if (++j == s.kw) {
            j = 0;
            if (++i == s.kh) {
                i = 0;
                coff += pix;
            }
        }
    }
}

// Forward (MODE 0) and backward data (MODE 1: unit stride, 2: any stride). src: x or gy;
// b: w [Cout, K] or wᵀ [Cin, K]; out: y or dx.
template <int MODE, bool F16>
__device__ __forceinline__ void ctc_conv(const unsigned short* __restrict__ src, const unsigned short* __restrict__ b,
                                         unsigned short* __restrict__ out, const TcShape& s) {
    __shared__ __align__(16) unsigned short smem[2 * (CTC_BM + CTC_BN) * CTC_LD];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, wm = warp & 1, wn = warp >> 1;
    // This thread's GEMM row (pixel) for the A gathers and the epilogue.
    const int am = tid & (CTC_BM - 1), akb = (tid >> 7) * 16;
    const int m = blockIdx.x * CTC_BM + am;
    const bool mok = m < s.m;
    const int ow = MODE == 0 ? s.wo : s.w, opix = MODE == 0 ? s.ho * s.wo : s.h * s.w;
    const int nn = mok ? m / opix : 0, pix = mok ? m - nn * opix : 0;
    const int py = pix / ow, px = pix - py * ow;
    int abase, ay, ax;
    if (MODE == 0) {
        abase = nn * s.cin * s.h * s.w;
        ay = py * s.sh - s.ph;
        ax = px * s.sw - s.pw;
    } else {
        abase = nn * s.cout * s.ho * s.wo;
        ay = py + s.ph;
        ax = px + s.pw;
    }
    if (!mok) abase = -1;
    // This thread's B row.
    const int brow = blockIdx.y * CTC_BN + (tid >> 1), bkb = (tid & 1) * 16;
    const unsigned short* bp = brow < s.ncols ? b + brow * s.k : nullptr;

    float acc[4][4][4];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) acc[mi][ni][0] = acc[mi][ni][1] = acc[mi][ni][2] = acc[mi][ni][3] = 0.f;

    unsigned ra[8], rb[8];
    auto gather = [&](int k0) {
        if (MODE == 0)
            ctc_gather_fwd(ra, src, k0 + akb, abase, ay, ax, s);
        else
            ctc_gather_dgrad<MODE == 1>(ra, src, k0 + akb, abase, ay, ax, s);
        ctc_load_b(rb, bp, k0 + bkb, s);
    };
    auto stage = [&](int buf) {
        unsigned short* as = smem + buf * (CTC_BM + CTC_BN) * CTC_LD;
        ctc_store16(as + am * CTC_LD + akb, ra);
        ctc_store16(as + CTC_BM * CTC_LD + (tid >> 1) * CTC_LD + bkb, rb);
    };
    const int nk = (s.k + CTC_BK - 1) / CTC_BK;
    gather(0);
    stage(0);
    __syncthreads();
    for (int kt = 0; kt < nk; ++kt) {
        const int buf = kt & 1;
        if (kt + 1 < nk) gather((kt + 1) * CTC_BK);
        const unsigned short* as = smem + buf * (CTC_BM + CTC_BN) * CTC_LD;
        ctc_tile<F16>(as, as + CTC_BM * CTC_LD, acc, wm, wn, lane);
        if (kt + 1 < nk) stage(buf ^ 1);
        __syncthreads();
    }
    // Epilogue: round, transpose through shared memory to [col][pixel], write pixel-contiguous.
    unsigned short* cs = smem;
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int r = wm * 64 + mi * 16 + g + (e >= 2 ? 8 : 0), c = wn * 32 + ni * 8 + 2 * t + (e & 1);
                cs[c * CTC_LDC + r] = ctc_round<F16>(acc[mi][ni][e]);
            }
    __syncthreads();
    if (mok) {
        const int obase = nn * s.ncols * opix + pix;
        const int c0 = blockIdx.y * CTC_BN;
        for (int c = tid >> 7; c < CTC_BN && c0 + c < s.ncols; c += 2) out[obase + (c0 + c) * opix] = cs[c * CTC_LDC + am];
    }
}

#define CTC_CONV(NAME, MODE, F16)                                                                \
extern "C" __global__ void __launch_bounds__(CTC_NT) NAME(const unsigned short* src, const unsigned short* b, \
                                                          unsigned short* out, TcShape s) {      \
    ctc_conv<MODE, F16>(src, b, out, s);                                                         \
}
CTC_CONV(conv_tc_fwd_bf16, 0, false)
CTC_CONV(conv_tc_fwd_f16, 0, true)
CTC_CONV(conv_tc_dgrad_bf16, 1, false)
CTC_CONV(conv_tc_dgrad_f16, 1, true)
CTC_CONV(conv_tc_dgrad_s_bf16, 2, false)
CTC_CONV(conv_tc_dgrad_s_f16, 2, true)

// wᵀ [Cin, Cout·kh·kw] from w [Cout, Cin, kh·kw] (16-bit patterns; any 16-bit dtype).
extern "C" __global__ void conv_tc_wt(const unsigned short* w, unsigned short* wt, int cout, int cin, int khw) {
    GRID_LOOP(idx, (i64)cout * cin * khw) {
        const int r = (int)(idx % khw), q = (int)(idx / khw), ci = q % cin, co = q / cin;
        wt[(ci * cout + co) * khw + r] = w[idx];
    }
}

// Weight gradient: rows co (blockIdx.y), columns k = (c, i, j) (blockIdx.x), reduction over
// output pixels p in tiles of 32, tiles [z·tps, (z+1)·tps) for z = blockIdx.z.
template <bool F16>
__device__ __forceinline__ void ctc_wgrad(const unsigned short* __restrict__ x, const unsigned short* __restrict__ gy,
                                          float* __restrict__ dw, const TcShape& s) {
    __shared__ __align__(16) unsigned short smem[2 * (CTC_BM + CTC_BN) * CTC_LD];
    __shared__ int ktab[3 * CTC_BN];  // per column: x offset of the tap, dy, dx
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, wm = warp & 1, wn = warp >> 1;
    const int khw = s.kh * s.kw, hw = s.h * s.w, opix = s.ho * s.wo;
    const int k0 = blockIdx.x * CTC_BN, co0 = blockIdx.y * CTC_BM;
    for (int c = tid; c < CTC_BN; c += CTC_NT) {
        const int kc = k0 + c;
        if (kc < s.ncols) {
            const int ci = kc / khw, rr = kc - ci * khw, i = rr / s.kw, j = rr - i * s.kw;
            ktab[c] = ci * hw + i * s.dh * s.w + j * s.dw;
            ktab[CTC_BN + c] = i * s.dh;
            ktab[2 * CTC_BN + c] = j * s.dw;
        } else {
            ktab[c] = 0;
            ktab[CTC_BN + c] = 1 << 30;  // never inside the image
            ktab[2 * CTC_BN + c] = 0;
        }
    }
    const int pl = tid & 31, rg = (tid >> 5) * 16;
    float acc[4][4][4];
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni) acc[mi][ni][0] = acc[mi][ni][1] = acc[mi][ni][2] = acc[mi][ni][3] = 0.f;
    const int nt = (s.k + CTC_BK - 1) / CTC_BK;
    const int t0 = blockIdx.z * s.tps, t1 = min(nt, t0 + s.tps);
    unsigned ra[8], rb[8];
    auto gather = [&](int tile) {
        const int p = tile * CTC_BK + pl;
        const bool pok = p < s.k;
        const int nn = pok ? p / opix : 0, pix = pok ? p - nn * opix : 0;
        const int oy = pix / s.wo, ox = pix - oy * s.wo;
        const int gbase = nn * s.cout * opix + pix;
        const int iy0 = oy * s.sh - s.ph, ix0 = ox * s.sw - s.pw, xbase = nn * s.cin * hw + iy0 * s.w + ix0;
#pragma unroll
        for (int e = 0; e < 16; ++e) {
            const int co = co0 + rg + e;
            ctc_put(ra, e, pok && co < s.cout ? gy[gbase + co * opix] : (unsigned short)0);
            const int iy = iy0 + ktab[CTC_BN + rg + e], ix = ix0 + ktab[2 * CTC_BN + rg + e];
            const bool ok = pok && (unsigned)iy < (unsigned)s.h && (unsigned)ix < (unsigned)s.w;
            ctc_put(rb, e, ok ? x[xbase + ktab[rg + e]] : (unsigned short)0);
        }
    };
    auto stage = [&](int buf) {
        unsigned short* as = smem + buf * (CTC_BM + CTC_BN) * CTC_LD;
        unsigned short* bs = as + CTC_BM * CTC_LD;
#pragma unroll
        for (int e = 0; e < 16; ++e) {
            const unsigned short va = (unsigned short)(e & 1 ? ra[e >> 1] >> 16 : ra[e >> 1] & 0xffffu);
            const unsigned short vb = (unsigned short)(e & 1 ? rb[e >> 1] >> 16 : rb[e >> 1] & 0xffffu);
            as[(rg + e) * CTC_LD + pl] = va;
            bs[(rg + e) * CTC_LD + pl] = vb;
        }
    };
    __syncthreads();  // ktab
    if (t0 < t1) {
        gather(t0);
        stage(0);
        __syncthreads();
        for (int kt = t0; kt < t1; ++kt) {
            const int buf = (kt - t0) & 1;
            if (kt + 1 < t1) gather(kt + 1);
            const unsigned short* as = smem + buf * (CTC_BM + CTC_BN) * CTC_LD;
            ctc_tile<F16>(as, as + CTC_BM * CTC_LD, acc, wm, wn, lane);
            if (kt + 1 < t1) stage(buf ^ 1);
            __syncthreads();
        }
    }
    const int g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int mi = 0; mi < 4; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int co = co0 + wm * 64 + mi * 16 + g + (e >= 2 ? 8 : 0);
                const int kc = k0 + wn * 32 + ni * 8 + 2 * t + (e & 1);
                if (co < s.cout && kc < s.ncols && t0 < t1) atomicAdd(dw + co * s.ncols + kc, acc[mi][ni][e]);
            }
}

#define CTC_WGRAD(NAME, F16)                                                                     \
extern "C" __global__ void __launch_bounds__(CTC_NT) NAME(const unsigned short* x, const unsigned short* gy, \
                                                          float* dw, TcShape s) {                \
    ctc_wgrad<F16>(x, gy, dw, s);                                                                \
}
CTC_WGRAD(conv_tc_wgrad_bf16, false)
CTC_WGRAD(conv_tc_wgrad_f16, true)
