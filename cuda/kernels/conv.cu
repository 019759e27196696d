// conv2d by im2col + cuBLAS GEMM (launchers in cuda/src/backend/conv.rs; bf16 / f16 with one
// group use the implicit-GEMM kernels of conv_tc.cu instead): im2col unfolds
// input patches into a column matrix, col2im gathers the column gradient back into the input
// gradient (one thread per input element, summing over the kernel taps that read it: no
// atomics, deterministic).

// Geometry of one launch: `struct ConvShape` in conv.rs, field for field.
struct ConvShape {
    i64 n, cin, h, w;            // samples in this launch, input channels, input height / width
    i64 kh, kw, ho, wo;          // kernel size, output size
    i64 sh, sw, ph, pw, dh, dw;  // stride, padding, dilation
};

// Unfolds x [n, cin, h, w] into columns. Row r = (c·kh + i)·kw + j, column p = oy·wo + ox
// holds x[s, c, oy·sh + i·dh − ph, ox·sw + j·dw − pw] (zero outside the input). The layout
// is [n, rows, ho·wo] when sample_major (the forward's), else [rows, n, ho·wo] (the weight
// gradient's, so one GEMM contracts over samples and pixels together). A plain copy, so the
// element type only fixes the width.
//
// 2-D launch: threadIdx.y / blockIdx.y walk the column rows (s, r), decomposed once per row in
// 64 bits; threadIdx.x / blockIdx.x walk the pixels of a row with index math of type I (int
// when every in-plane index fits, the launcher's choice; the `_w` kernels use i64).
template <typename T, typename I>
__device__ __forceinline__ void im2col_impl(const T* x, T* cols, const ConvShape& g, int sample_major) {
    const i64 rows = g.cin * g.kh * g.kw, nrows = g.n * rows;
    const I pix = (I)(g.ho * g.wo), h = (I)g.h, w = (I)g.w, wo = (I)g.wo, sh = (I)g.sh, sw = (I)g.sw;
    for (i64 q = (i64)blockIdx.y * blockDim.y + threadIdx.y; q < nrows; q += (i64)gridDim.y * blockDim.y) {
        const i64 s = sample_major ? q / rows : q % g.n;
        const i64 r = sample_major ? q % rows : q / g.n;
        const i64 c = r / (g.kw * g.kh), ij = r - c * g.kw * g.kh, i = ij / g.kw, j = ij - i * g.kw;
        const I y0 = (I)(i * g.dh - g.ph), x0 = (I)(j * g.dw - g.pw);
        const T* xp = x + (s * g.cin + c) * g.h * g.w;
        T* out = cols + q * (i64)pix;
        for (I p = (I)(blockIdx.x * blockDim.x + threadIdx.x); p < pix; p += (I)(gridDim.x * blockDim.x)) {
            const I oy = p / wo, ox = p - oy * wo;
            const I iy = oy * sh + y0, ix = ox * sw + x0;
            out[p] = (iy >= 0 && iy < h && ix >= 0 && ix < w) ? xp[iy * w + ix] : (T)0;
        }
    }
}
#define IM2COL(NAME, T, I)                                                                       \
extern "C" __global__ void NAME(const T* x, T* cols, ConvShape g, int sample_major) {            \
    im2col_impl<T, I>(x, cols, g, sample_major);                                                 \
}
IM2COL(im2col_f32, float, int)
IM2COL(im2col_f64, double, int)
IM2COL(im2col_bf16, bf16_t, int)  // raw 0 is +0.0 in bf16 and f16
IM2COL(im2col_f16, f16_t, int)
IM2COL(im2col_f32_w, float, i64)
IM2COL(im2col_f64_w, double, i64)
IM2COL(im2col_bf16_w, bf16_t, i64)
IM2COL(im2col_f16_w, f16_t, i64)

// Folds column gradients dcols [n, cin·kh·kw, ho·wo] (sample-major, of the compute type C:
// f32 for the 16-bit dtypes) into dx [n, cin, h, w]: input pixel (y, x) receives tap (i, j)
// of output (oy, ox) when y = oy·sh + i·dh − ph and x = ox·sw + j·dw − pw. Taps are summed in
// (i, j) order, like the CPU's col2im. 2-D launch: y walks the (sample, channel) planes,
// x the pixels of a plane with index math of type I (as im2col).
template <typename T, typename C, typename I, typename St>
__device__ __forceinline__ void col2im_impl(const C* dcols, T* dx, const ConvShape& g, St store) {
    const i64 planes = g.n * g.cin;
    const I pix = (I)(g.ho * g.wo), hw = (I)(g.h * g.w), w = (I)g.w, ho = (I)g.ho, wo = (I)g.wo;
    const I kh = (I)g.kh, kw = (I)g.kw, sh = (I)g.sh, sw = (I)g.sw, ph = (I)g.ph, pw = (I)g.pw;
    const I dh = (I)g.dh, dw = (I)g.dw;
    const bool unit = sh == 1 && sw == 1;
    for (i64 sc = (i64)blockIdx.y * blockDim.y + threadIdx.y; sc < planes; sc += (i64)gridDim.y * blockDim.y) {
        const C* base = dcols + sc * g.kh * g.kw * (i64)pix;
        T* out = dx + sc * (i64)hw;
        for (I e = (I)(blockIdx.x * blockDim.x + threadIdx.x); e < hw; e += (I)(gridDim.x * blockDim.x)) {
            const I yy = e / w, xx = e - yy * w;
            C acc = (C)0;
            for (I i = 0; i < kh; ++i) {
                I ty = yy + ph - i * dh;
                if (ty < 0) break;  // decreases with i
                if (!unit) {
                    if (ty % sh != 0) continue;
                    ty /= sh;
                }
                if (ty >= ho) continue;
                for (I j = 0; j < kw; ++j) {
                    I tx = xx + pw - j * dw;
                    if (tx < 0) break;
                    if (!unit) {
                        if (tx % sw != 0) continue;
                        tx /= sw;
                    }
                    if (tx >= wo) continue;
                    acc += base[(i * kw + j) * pix + ty * wo + tx];
                }
            }
            store(out, e, acc);
        }
    }
}
struct Col2imStoreF {
    template <typename T, typename I, typename C>
    __device__ __forceinline__ void operator()(T* p, I i, C v) const { store_f(p, (i64)i, v); }
};
struct Col2imStoreH {
    template <typename I>
    __device__ __forceinline__ void operator()(f16_t* p, I i, float v) const { store_h(p, (i64)i, v); }
};
#define COL2IM(NAME, T, C, I, ST)                                                                \
extern "C" __global__ void NAME(const C* dcols, T* dx, ConvShape g) {                            \
    col2im_impl<T, C, I>(dcols, dx, g, ST());                                                    \
}
COL2IM(col2im_f32, float, float, int, Col2imStoreF)
COL2IM(col2im_f64, double, double, int, Col2imStoreF)
COL2IM(col2im_bf16, bf16_t, float, int, Col2imStoreF)
COL2IM(col2im_f16, f16_t, float, int, Col2imStoreH)
COL2IM(col2im_f32_w, float, float, i64, Col2imStoreF)
COL2IM(col2im_f64_w, double, double, i64, Col2imStoreF)
COL2IM(col2im_bf16_w, bf16_t, float, i64, Col2imStoreF)
COL2IM(col2im_f16_w, f16_t, float, i64, Col2imStoreH)
