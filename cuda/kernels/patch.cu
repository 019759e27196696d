// Patch Diffusion's batched random crops with coordinate channels
// (../shared/spec/lego-patch-tdpm-dgan.md §3.2): out [B, C+2, ph, pw], channel C is
// 2(j+c)/(W-1) - 1 (horizontal), channel C+1 is 2(i+r)/(H-1) - 1 (vertical).

__device__ __forceinline__ double coord(i64 p, i64 size) { return size > 1 ? 2.0 * (double)p / (double)(size - 1) - 1.0 : 0.0; }

#define PATCH(NAME, T, LOAD, STORE)                                                              \
extern "C" __global__ void NAME(const T* x, const long long* tops, const long long* lefts, T* y, \
                                i64 b, i64 c, i64 h, i64 w, i64 ph, i64 pw) {                    \
    i64 n = b * (c + 2) * ph * pw;                                                               \
    GRID_LOOP(i, n) {                                                                            \
        i64 col = i % pw, row = (i / pw) % ph, ch = (i / (pw * ph)) % (c + 2), s = i / (pw * ph * (c + 2)); \
        i64 yy = tops[s] + row, xx = lefts[s] + col;                                             \
        double v = ch < c ? (double)LOAD(x, ((s * c + ch) * h + yy) * w + xx) : (ch == c ? coord(xx, w) : coord(yy, h)); \
        STORE(y, i, v);                                                                          \
    }                                                                                            \
}
// Backward: scatter the first C channels of the gradient back (the rest of dx is zero-filled
// by the launcher; crops of one sample never overlap).
#define PATCH_BWD(NAME, T, LOAD, STORE)                                                          \
extern "C" __global__ void NAME(const T* g, const long long* tops, const long long* lefts, T* dx, \
                                i64 b, i64 c, i64 h, i64 w, i64 ph, i64 pw) {                    \
    i64 n = b * c * ph * pw;                                                                     \
    GRID_LOOP(i, n) {                                                                            \
        i64 col = i % pw, row = (i / pw) % ph, ch = (i / (pw * ph)) % c, s = i / (pw * ph * c);  \
        i64 yy = tops[s] + row, xx = lefts[s] + col;                                             \
        STORE(dx, ((s * c + ch) * h + yy) * w + xx, LOAD(g, ((s * (c + 2) + ch) * ph + row) * pw + col)); \
    }                                                                                            \
}
PATCH(patch_embed_f32, float, load_f, store_f)
PATCH(patch_embed_f64, double, load_f, store_f)
PATCH(patch_embed_bf16, bf16_t, load_f, store_f)
PATCH_BWD(patch_embed_bwd_f32, float, load_f, store_f)
PATCH_BWD(patch_embed_bwd_f64, double, load_f, store_f)
PATCH_BWD(patch_embed_bwd_bf16, bf16_t, load_f, store_f)
