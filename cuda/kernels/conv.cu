// conv2d by im2col + cuBLAS GEMM (launchers in cuda/src/backend/conv.rs): im2col unfolds
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
#define IM2COL(NAME, T)                                                                          \
extern "C" __global__ void NAME(const T* x, T* cols, ConvShape g, int sample_major) {            \
    i64 pix = g.ho * g.wo, rows = g.cin * g.kh * g.kw;                                           \
    GRID_LOOP(idx, g.n * rows * pix) {                                                           \
        i64 p = idx % pix, q = idx / pix;                                                        \
        i64 s = sample_major ? q / rows : q % g.n;                                               \
        i64 r = sample_major ? q % rows : q / g.n;                                               \
        i64 j = r % g.kw, i = (r / g.kw) % g.kh, c = r / (g.kw * g.kh);                          \
        i64 iy = (p / g.wo) * g.sh + i * g.dh - g.ph;                                            \
        i64 ix = (p % g.wo) * g.sw + j * g.dw - g.pw;                                            \
        bool inside = iy >= 0 && iy < g.h && ix >= 0 && ix < g.w;                                \
        cols[idx] = inside ? x[((s * g.cin + c) * g.h + iy) * g.w + ix] : (T)0;                  \
    }                                                                                            \
}
IM2COL(im2col_f32, float)
IM2COL(im2col_f64, double)
IM2COL(im2col_bf16, bf16_t)  // raw 0 is +0.0 in bf16 and f16
IM2COL(im2col_f16, f16_t)

// Folds column gradients dcols [n, cin·kh·kw, ho·wo] (sample-major, of the compute type C:
// f32 for the 16-bit dtypes) into dx [n, cin, h, w]: input pixel (y, x) receives tap (i, j)
// of output (oy, ox) when y = oy·sh + i·dh − ph and x = ox·sw + j·dw − pw. Taps are summed in
// (i, j) order, like the CPU's col2im.
#define COL2IM(NAME, T, C, STORE)                                                                \
extern "C" __global__ void NAME(const C* dcols, T* dx, ConvShape g) {                            \
    i64 pix = g.ho * g.wo;                                                                       \
    GRID_LOOP(idx, g.n * g.cin * g.h * g.w) {                                                    \
        i64 xx = idx % g.w, yy = (idx / g.w) % g.h, sc = idx / (g.w * g.h);                      \
        const C* base = dcols + sc * g.kh * g.kw * pix;                                          \
        C acc = (C)0;                                                                            \
        for (i64 i = 0; i < g.kh; ++i) {                                                         \
            i64 ty = yy + g.ph - i * g.dh;                                                       \
            if (ty < 0) break;  /* decreases with i */                                           \
            if (ty % g.sh != 0) continue;                                                        \
            i64 oy = ty / g.sh;                                                                  \
            if (oy >= g.ho) continue;                                                            \
            for (i64 j = 0; j < g.kw; ++j) {                                                     \
                i64 tx = xx + g.pw - j * g.dw;                                                   \
                if (tx < 0) break;                                                               \
                if (tx % g.sw != 0) continue;                                                    \
                i64 ox = tx / g.sw;                                                              \
                if (ox >= g.wo) continue;                                                        \
                acc += base[(i * g.kw + j) * pix + oy * g.wo + ox];                              \
            }                                                                                    \
        }                                                                                        \
        STORE(dx, idx, acc);                                                                     \
    }                                                                                            \
}
COL2IM(col2im_f32, float, float, store_f)
COL2IM(col2im_f64, double, double, store_f)
COL2IM(col2im_bf16, bf16_t, float, store_f)
COL2IM(col2im_f16, f16_t, float, store_h)
