// Runs the grid-loop kernels of cuda/kernels/{beta,rng,patch}.cu on the CPU (see shim.h) for
// cuda/tests/host_kernels.rs. Integers in the files are u64 / i64, reals f32 or f64 as named.
//   driver kl32 IN OUT: IN = n (u64), a1, b1, a2, b2 (f32 × n each); runs beta_kl_f32 and
//     beta_kl_f32_fallback as the launcher does; OUT = count (u64), y (f32 × n).
//   driver kl64 IN OUT: IN = n (u64), a1, b1, a2, b2 (f64 × n each); OUT = y, then the four
//     gradients of beta_kl_bwd_f64 for an upstream gradient of 1 (f64 × n each).
//   driver klub64 IN OUT: IN = n, per (u64), eta, w_cond, w_marg (f64), xh, x (f64 × n),
//     alpha_s, alpha_t (f64 × n / per); OUT = beta_klub_f64's y and beta_klub_bwd_f64's
//     gradient for an upstream gradient of 1 (f64 × n each).
//   driver rand IN OUT: IN = n, seed, offset, dist (0 uniform, 1 normal), then a, b (f64);
//     OUT = random_f32 (f32 × n), random_f64 (f64 × n), both v · a + b.
//   driver randint IN OUT: IN = n, seed, offset, lo, span; OUT = randint_i64 over random_f64's
//     uniforms of the same request (i64 × n).
//   driver softmax IN OUT: IN = rows, len, log_out, kernel (0: softmax_rows, 1: softmax_cached,
//     2: softmax_cached_f32v4),
//     grid, then x (f32 × rows·len); OUT = y (f32), the kernel on `grid` blocks of 256 threads.
//   driver attn IN OUT: IN = bh, sq, sk, d (32 | 64 | 128), causal, then scale (f64) and q
//     [bh, sq, d], k, v [bh, sk, d] (f32); OUT = attn_flash_fwd_f32_d* on the launcher's grid
//     (ceil(sq / 32), bh) of 128 threads: o (f32 × bh·sq·d), lse (f32 × bh·sq).
//   driver sid IN OUT: IN = b, per, has_weight, then alpha, weight (× b, if has_weight), lambda,
//     g_gen, g_fake (f64 × b each), y_real, y_fake, x_g (f32 × b·per each); OUT = sid_gen_fwd_f32
//     (3 blocks of 256) loss and weight (f64 × b each), sid_gen_bwd_f32's d_real, d_fake, d_x
//     (f32), sid_fake_fwd_f32 on (y_fake, x_g) with lambda (f64 × b), sid_fake_bwd_f32's
//     two gradients (f32).
//   driver norm IN OUT: IN = rows, nseg, seg, groups, center, threads, channels, nchunks,
//     has_w, has_b, then eps (f64), x, gy (f32 × rows·nseg·seg), w, b (f32 × channels, when
//     present); OUT = norm_fwd_f32 (3 blocks of `threads`) y, mean, rstd, then the backward:
//     norm_bwd_dx_f32's dx, norm_bwd_part_f32 over `nchunks` chunks and norm_bwd_fin_f32's
//     dw, db (all f32).
//   driver optim IN OUT: IN = n, decoupled, momentum, first, nesterov, then the Adam scalars
//     (beta1_w, beta2, one_minus_beta2, neg_step_size, bc2_sqrt, eps, wd, decay), the SGD ones
//     (neg_lr, wd, mu, damp) and the EMA weight (f64), then p, g, m, v, buf, shadow (f32 × n);
//     OUT = adam_f32's p, m, v, then sgd_f32's p, buf (from the same p, g), ema_f32's shadow
//     toward p (f32 × n each), and the sum of squares of g (sumsq_f32 on 3 blocks of 256, then
//     sumsq_final; f64).
//   driver conv IN OUT: IN = the ConvShape fields (n, cin, h, w, kh, kw, ho, wo, sh, sw, ph, pw,
//     dh, dw), then x (f32 × n·cin·h·w) and dcols (f32 × n·cin·kh·kw·ho·wo); OUT = the columns
//     of im2col_f32 (sample-major, then row-major) and im2col_f32_w (sample-major), and dx of
//     col2im_f32 and col2im_f32_w, each kernel on a (2, 3) grid of (32, 8) blocks.
//   driver unary IN OUT: IN = n, code, dtype (cast_code: 0 f32, 1 f64, 2 bf16, 3 f16), then p0,
//     p1, p2 (f64), the Strided (144 bytes, as scorch_cuda::device::Strided), the buffer length
//     and buffer; OUT = unary_<dtype> (n values), and for a contiguous f32 view with
//     n % 4 == 0 unary_f32_vec4 over the buffer.
//   driver binary IN OUT: IN = n, code, dtype, comparison, then two (Strided, length, buffer);
//     OUT = binary_* (or compare_*: bytes) and, for f32 non-comparisons of two contiguous
//     same-size views with n % 4 == 0, binary_f32_vec4.
//   driver cast IN OUT: IN = n, src code, dst code (cast_code), the Strided, the buffer length
//     in bytes and the bytes; OUT = cast_any's n outputs (raw bytes).
//   driver conv_tc IN OUT: IN = f16 (0: bf16), n, cin, h, w, cout, kh, kw, ho, wo, sh, sw, ph,
//     pw, dh, dw, splits, then x, w, gy (16-bit patterns); runs the tensor-core kernels as
//     src/backend/conv.rs launches them (256-thread blocks, 128 × 128 tiles): OUT = the
//     forward's y, the backward data's dx (16-bit), the weight gradient's f32 sums.
//   driver attn_tc IN OUT: IN = f16, bh, sq, sk, d, causal, then scale (f64) and q, k, v, go
//     (16-bit); runs the tensor-core flash forward, attn_delta and the flash backward as
//     src/backend/attention.rs does: OUT = o (16-bit), lse (f32), dq (f32), dk, dv (16-bit).
//   driver index IN OUT: IN = outer, size, inner, n, then x (Strided, length, f32 buffer; the
//     view (outer, size, inner)), idx (i64 × n), src (Strided, length, f32 buffer; the view
//     (outer, n, inner)); OUT = index_select_4_i64 (f32 × outer·n·inner), index_add_f32_i64
//     (f32 × outer·size·inner, 3 blocks of 64 threads), index_check_i64's first bad position
//     (u64; i64 max when none).
//   driver gather IN OUT: IN = dim, then x (Strided, length, f32 buffer), the index shape's
//     Strided, idx (i64 × its numel), src (Strided, length, f32 buffer; the index shape), the
//     output's Strided and length; OUT = gather_4_i64 (f32), scatter_add_f32_i64 (f64, 3 blocks
//     of 64 threads) and that sum as f32, bf16 and f16 (f64_to_*).
//   driver reduce IN OUT: IN = rows, len, op (0 sum, 1 max, 2 min), kind, nc, then x (f32 ×
//     rows·len, contiguous [rows, len]); kind 0: reduce_rows over the rows (3 blocks of 256),
//     1: reduce_partial_rows over nc chunks then reduce_rows, 2: the same with the float4
//     partials, 3: reduce_cols over the leading dim (the result has len values), 4:
//     reduce_partial_cols over nc chunks then reduce_cols, 5: arg_rows (op 0 max, 1 min; i64),
//     6: cumsum_rows (rows·len values); OUT = the f32 (or i64) result.
//   driver pool IN OUT: IN = planes, h, w, ho, wo, kh, kw, sh, sw, ph, pw, oh, ow, then x (f32 ×
//     planes·h·w), g (f32 × planes·ho·wo), gu (f32 × planes·oh·ow); OUT = avg_pool2d_f32,
//     avg_pool2d_bwd_f32 of g, max_pool2d_f32 values and indices (i64), upsample_bilinear2d_f32
//     to oh × ow and its backward of gu.
//   driver attn_rows IN OUT: IN = bh, sq, sk, dv, heads, has_mask, causal, mb, mh, mi, mj,
//     backward (0 / 1), then scale (f64), the mask (length, f32 buffer), s (f32 × bh·sq·sk, raw
//     scores Q·Kᵀ); forward: OUT = attn_rows_fwd_f32's P (in place of s) and lse (3 blocks of
//     256); backward: IN continues with lse (bh·sq), o, go (bh·sq·dv) and dp (dO·Vᵀ, bh·sq·sk),
//     OUT = attn_rows_bwd_f32's P and dS.
//   driver index_det IN OUT: IN = outer, size, inner, n, then src (Strided, length, f32 buffer;
//     the view (outer, n, inner)), offsets (i64 × size + 1), order (i64 × n); OUT =
//     index_add_det_f32 (f32 × outer·size·inner, 3 blocks of 64 threads).
//   driver scatter_det IN OUT: IN = out_len, then src (Strided, length, f32 buffer), offsets
//     (i64 × out_len + 1), order (i64 × the source's elements); OUT = scatter_add_det_f32's f64
//     sums.
//   driver patch IN OUT: IN = b, c, h, w, ph, pw, tops (× b), lefts (× b), x (f64, b·c·h·w), g
//     (f64, b·(c+2)·ph·pw); OUT = patch_embed_f64, patch_embed_f32 (as f64), and
//     patch_embed_bwd_f64 into a zeroed dx.
#include "shim.h"
#include "../../kernels/common.cuh"
#include "../../kernels/beta.cu"
#include "../../kernels/rng.cu"
#include "../../kernels/patch.cu"
#include "../../kernels/reduce.cu"
#include "../../kernels/attention.cu"
#include "../../kernels/sid_loss.cu"
#include "../../kernels/nn.cu"
#include "../../kernels/optim.cu"
#include "../../kernels/conv.cu"
#include "../../kernels/elementwise.cu"
#include "../../kernels/conv_tc.cu"
#include "../../kernels/index.cu"

#include <stdio.h>
#include <stdlib.h>
#include <vector>

// The element-wise kernels on one thread (a grid-stride loop then visits every element in
// order, and the Beta KL's warp-aggregated append sees one-lane warps).
template <typename F> static void serial(F body) { host_launch({1, 1, 1}, {1, 1, 1}, body); }

template <typename T> static std::vector<T> take(FILE* f, size_t n) {
    std::vector<T> v(n);
    if (n && fread(v.data(), sizeof(T), n, f) != n) { fprintf(stderr, "short input\n"); exit(2); }
    return v;
}
template <typename T> static void put(FILE* f, const std::vector<T>& v) {
    if (!v.empty() && fwrite(v.data(), sizeof(T), v.size(), f) != v.size()) { fprintf(stderr, "short write\n"); exit(2); }
}
// A Strided as scorch_cuda::device::Strided writes it (144 bytes, the same #[repr(C)] layout).
static Strided take_strided(FILE* f) {
    auto raw = take<unsigned char>(f, sizeof(Strided));
    Strided l;
    memcpy(&l, raw.data(), sizeof(Strided));
    return l;
}
// A view: its Strided, then its buffer's length in elements and the buffer (`width` bytes an
// element, raw).
static std::vector<unsigned char> take_view_bytes(FILE* f, Strided& l, size_t width) {
    l = take_strided(f);
    return take<unsigned char>(f, take<unsigned long long>(f, 1)[0] * width);
}
static std::vector<float> take_view_f32(FILE* f, Strided& l) {
    l = take_strided(f);
    return take<float>(f, take<unsigned long long>(f, 1)[0]);
}

int main(int argc, char** argv) {
    if (argc != 4) { fprintf(stderr, "usage: driver kl32|kl64|klub64|rand|randint|patch IN OUT\n"); return 2; }
    FILE* in = fopen(argv[2], "rb");
    FILE* out = fopen(argv[3], "wb");
    if (!in || !out) { fprintf(stderr, "cannot open the input or output file\n"); return 2; }
    const char* mode = argv[1];
    size_t n = take<unsigned long long>(in, 1)[0];
    if (!strcmp(mode, "kl32")) {
        auto a1 = take<float>(in, n), b1 = take<float>(in, n), a2 = take<float>(in, n), b2 = take<float>(in, n);
        std::vector<float> y(n, NAN);
        std::vector<unsigned long long> count(1, 0);
        std::vector<long long> list(n, -1);
        serial([&] { beta_kl_f32(a1.data(), b1.data(), a2.data(), b2.data(), y.data(), (i64)n, count.data(), list.data()); });
        serial([&] { beta_kl_f32_fallback(a1.data(), b1.data(), a2.data(), b2.data(), y.data(), count.data(), list.data()); });
        put(out, count);
        put(out, y);
    } else if (!strcmp(mode, "kl64")) {
        auto a1 = take<double>(in, n), b1 = take<double>(in, n), a2 = take<double>(in, n), b2 = take<double>(in, n);
        std::vector<double> y(n), one(n, 1.0), g0(n), g1(n), g2(n), g3(n);
        serial([&] { beta_kl_f64(a1.data(), b1.data(), a2.data(), b2.data(), y.data(), (i64)n); });
        serial([&] { beta_kl_bwd_f64(a1.data(), b1.data(), a2.data(), b2.data(), one.data(), g0.data(), g1.data(), g2.data(), g3.data(), (i64)n); });
        put(out, y); put(out, g0); put(out, g1); put(out, g2); put(out, g3);
    } else if (!strcmp(mode, "klub64")) {
        size_t per = take<unsigned long long>(in, 1)[0];
        auto c = take<double>(in, 3);
        auto xh = take<double>(in, n), x = take<double>(in, n);
        size_t b = per ? n / per : 0;
        auto as = take<double>(in, b), at = take<double>(in, b);
        std::vector<double> y(n), one(n, 1.0), g(n);
        serial([&] { beta_klub_f64(xh.data(), x.data(), as.data(), at.data(), y.data(), (i64)n, (i64)per, c[0], c[1], c[2]); });
        serial([&] { beta_klub_bwd_f64(xh.data(), x.data(), as.data(), at.data(), one.data(), g.data(), (i64)n, (i64)per, c[0], c[1], c[2]); });
        put(out, y); put(out, g);
    } else if (!strcmp(mode, "rand")) {
        auto h = take<unsigned long long>(in, 3);
        auto ab = take<double>(in, 2);
        std::vector<float> y32(n);
        std::vector<double> y64(n);
        serial([&] { random_f32(y32.data(), (i64)n, h[0], h[1], (int)h[2], ab[0], ab[1]); });
        serial([&] { random_f64(y64.data(), (i64)n, h[0], h[1], (int)h[2], ab[0], ab[1]); });
        put(out, y32); put(out, y64);
    } else if (!strcmp(mode, "randint")) {
        auto h = take<long long>(in, 4);
        std::vector<double> u(n);
        std::vector<long long> y(n);
        serial([&] { random_f64(u.data(), (i64)n, (unsigned long long)h[0], (unsigned long long)h[1], 0, 1.0, 0.0); });
        serial([&] { randint_i64(u.data(), y.data(), (i64)n, h[2], h[3]); });
        put(out, y);
    } else if (!strcmp(mode, "attn")) {
        auto h = take<unsigned long long>(in, 4);
        size_t bh = n, sq = h[0], sk = h[1], d = h[2];
        int causal = (int)h[3];
        float scale = (float)take<double>(in, 1)[0];
        auto q = take<float>(in, bh * sq * d), k = take<float>(in, bh * sk * d), v = take<float>(in, bh * sk * d);
        std::vector<float> o(bh * sq * d, NAN), lse(bh * sq, NAN);
        auto kernel = d == 32 ? attn_flash_fwd_f32_d32 : (d == 64 ? attn_flash_fwd_f32_d64 : attn_flash_fwd_f32_d128);
        host_launch({(unsigned)((sq + 31) / 32), (unsigned)bh, 1}, {128, 1, 1}, [&] {
            kernel(q.data(), k.data(), v.data(), o.data(), lse.data(), (i64)sq, (i64)sk, scale, causal);
        });
        put(out, o); put(out, lse);
    } else if (!strcmp(mode, "sid")) {
        auto h = take<unsigned long long>(in, 2);
        size_t b = n, per = h[0], m = b * per;
        double alpha = take<double>(in, 1)[0];
        auto weight = take<double>(in, h[1] ? b : 0);
        auto lambda = take<double>(in, b), gg = take<double>(in, b), gf = take<double>(in, b);
        auto yr = take<float>(in, m), yf = take<float>(in, m), xg = take<float>(in, m);
        std::vector<double> loss(b, NAN), w(b, NAN), fake(b, NAN);
        std::vector<float> dr(m, NAN), df(m, NAN), dx(m, NAN), gd(m, NAN), gy(m, NAN);
        const double* wp = h[1] ? weight.data() : nullptr;
        host_launch({3, 1, 1}, {256, 1, 1}, [&] {
            sid_gen_fwd_f32(yr.data(), yf.data(), xg.data(), wp, loss.data(), w.data(), (i64)b, (i64)per, alpha);
        });
        serial([&] { sid_gen_bwd_f32(yr.data(), yf.data(), xg.data(), w.data(), gg.data(), dr.data(), df.data(), dx.data(), (i64)m, (i64)per, alpha); });
        host_launch({3, 1, 1}, {256, 1, 1}, [&] { sid_fake_fwd_f32(yf.data(), xg.data(), lambda.data(), fake.data(), (i64)b, (i64)per); });
        serial([&] { sid_fake_bwd_f32(yf.data(), xg.data(), lambda.data(), gf.data(), gd.data(), gy.data(), (i64)m, (i64)per); });
        put(out, loss); put(out, w); put(out, dr); put(out, df); put(out, dx); put(out, fake); put(out, gd); put(out, gy);
    } else if (!strcmp(mode, "norm")) {
        auto h = take<unsigned long long>(in, 9);
        i64 rows = (i64)n, nseg = (i64)h[0], seg = (i64)h[1], groups = (i64)h[2], channels = (i64)h[5];
        int center = (int)h[3];
        unsigned threads = (unsigned)h[4];
        i64 len = nseg * seg, m = rows * len, samples = rows / groups, l = channels * seg;
        double eps = take<double>(in, 1)[0];
        auto x = take<float>(in, m), gy = take<float>(in, m);
        auto w = take<float>(in, h[7] ? channels : 0), b = take<float>(in, h[8] ? channels : 0);
        const float* wp = h[7] ? w.data() : nullptr;
        const float* bp = h[8] ? b.data() : nullptr;
        std::vector<float> y(m, NAN), mean(rows, NAN), rstd(rows, NAN), dx(m, NAN), dw(channels, NAN), db(channels, NAN);
        host_launch({3, 1, 1}, {threads, 1, 1}, [&] {
            norm_fwd_f32(x.data(), wp, bp, y.data(), mean.data(), rstd.data(), rows, nseg, seg, groups, center, eps);
        });
        host_launch({3, 1, 1}, {threads, 1, 1}, [&] {
            norm_bwd_dx_f32(gy.data(), x.data(), mean.data(), rstd.data(), wp, dx.data(), rows, nseg, seg, groups, center);
        });
        i64 nchunks = (i64)h[6], chunk = (samples + nchunks - 1) / nchunks;
        nchunks = (samples + chunk - 1) / chunk;
        std::vector<float> pw(nchunks * l, NAN), pb(nchunks * l, NAN);
        host_launch({(unsigned)((l + 31) / 32), (unsigned)nchunks, 1}, {32, 8, 1}, [&] {
            norm_bwd_part_f32(gy.data(), x.data(), mean.data(), rstd.data(), pw.data(), pb.data(), samples, l, seg, nseg, groups, chunk);
        });
        host_launch({3, 1, 1}, {64, 1, 1}, [&] {
            norm_bwd_fin_f32(pw.data(), pb.data(), dw.data(), db.data(), channels, l, seg, nchunks);
        });
        put(out, y); put(out, mean); put(out, rstd); put(out, dx); put(out, dw); put(out, db);
    } else if (!strcmp(mode, "optim")) {
        auto h = take<unsigned long long>(in, 4);
        auto a = take<double>(in, 8), sg = take<double>(in, 4);
        double ew = take<double>(in, 1)[0];
        auto p = take<float>(in, n), g = take<float>(in, n), m = take<float>(in, n), v = take<float>(in, n);
        auto buf = take<float>(in, n), shadow = take<float>(in, n);
        auto pa = p, ps = p;
        serial([&] { adam_f32(pa.data(), g.data(), m.data(), v.data(), (i64)n, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], (int)h[0]); });
        serial([&] { sgd_f32(ps.data(), g.data(), buf.data(), (i64)n, sg[0], sg[1], sg[2], sg[3], (int)h[1], (int)h[2], (int)h[3]); });
        serial([&] { ema_f32(shadow.data(), p.data(), (i64)n, ew); });
        std::vector<double> part(3, NAN), total(1, NAN);
        host_launch({3, 1, 1}, {256, 1, 1}, [&] { sumsq_f32(g.data(), (i64)n, part.data()); });
        host_launch({1, 1, 1}, {256, 1, 1}, [&] { sumsq_final(part.data(), 3, total.data()); });
        put(out, pa); put(out, m); put(out, v); put(out, ps); put(out, buf); put(out, shadow); put(out, total);
    } else if (!strcmp(mode, "conv")) {
        auto f = take<unsigned long long>(in, 13);
        ConvShape g{(i64)n, (i64)f[0], (i64)f[1], (i64)f[2], (i64)f[3], (i64)f[4], (i64)f[5], (i64)f[6],
                    (i64)f[7], (i64)f[8], (i64)f[9], (i64)f[10], (i64)f[11], (i64)f[12]};
        size_t xs = n * g.cin * g.h * g.w, cs = n * g.cin * g.kh * g.kw * g.ho * g.wo;
        auto x = take<float>(in, xs), dcols = take<float>(in, cs);
        std::vector<float> c1(cs, NAN), c2(cs, NAN), c3(cs, NAN), d1(xs, NAN), d2(xs, NAN);
        dim3 grid{2, 3, 1}, blk{32, 8, 1};
        host_launch(grid, blk, [&] { im2col_f32(x.data(), c1.data(), g, 1); });
        host_launch(grid, blk, [&] { im2col_f32(x.data(), c2.data(), g, 0); });
        host_launch(grid, blk, [&] { im2col_f32_w(x.data(), c3.data(), g, 1); });
        host_launch(grid, blk, [&] { col2im_f32(dcols.data(), d1.data(), g); });
        host_launch(grid, blk, [&] { col2im_f32_w(dcols.data(), d2.data(), g); });
        put(out, c1); put(out, c2); put(out, c3); put(out, d1); put(out, d2);
    } else if (!strcmp(mode, "unary") || !strcmp(mode, "binary")) {
        // dt: cast_code's 0 f32, 1 f64, 2 bf16, 3 f16.
        auto h = take<unsigned long long>(in, 2);
        int code = (int)h[0], dt = (int)h[1];
        size_t width = dt == 1 ? 8 : (dt == 0 ? 4 : 2);
        if (!strcmp(mode, "unary")) {
            auto p = take<double>(in, 3);
            Strided lx;
            auto x = take_view_bytes(in, lx, width);
            std::vector<unsigned char> y(n * width), y4(y.size());
            const void* xp = x.data();
            void* yp = y.data();
            serial([&] {
                if (dt == 0) unary_f32((const float*)xp, lx, (float*)yp, (i64)n, code, p[0], p[1], p[2]);
                if (dt == 1) unary_f64((const double*)xp, lx, (double*)yp, (i64)n, code, p[0], p[1], p[2]);
                if (dt == 2) unary_bf16((const bf16_t*)xp, lx, (bf16_t*)yp, (i64)n, code, p[0], p[1], p[2]);
                if (dt == 3) unary_f16((const f16_t*)xp, lx, (f16_t*)yp, (i64)n, code, p[0], p[1], p[2]);
            });
            put(out, y);
            if (dt == 0 && n % 4 == 0 && lx.contiguous && lx.offset == 0) {
                serial([&] { unary_f32_vec4((const float4*)x.data(), (float4*)y4.data(), (i64)(n / 4), code, p[0], p[1], p[2]); });
                put(out, y4);
            }
        } else {
            int cmp = (int)take<unsigned long long>(in, 1)[0];
            Strided la, lb;
            auto a = take_view_bytes(in, la, width);
            auto b = take_view_bytes(in, lb, width);
            std::vector<unsigned char> y(n * (cmp ? 1 : width)), y4(y.size());
            const void *ap = a.data(), *bp = b.data();
            void* yp = y.data();
            unsigned char* yc = y.data();
            serial([&] {
                if (cmp && dt == 0) compare_f32((const float*)ap, la, (const float*)bp, lb, yc, (i64)n, code);
                if (cmp && dt == 1) compare_f64((const double*)ap, la, (const double*)bp, lb, yc, (i64)n, code);
                if (cmp && dt == 2) compare_bf16((const bf16_t*)ap, la, (const bf16_t*)bp, lb, yc, (i64)n, code);
                if (cmp && dt == 3) compare_f16((const f16_t*)ap, la, (const f16_t*)bp, lb, yc, (i64)n, code);
                if (!cmp && dt == 0) binary_f32((const float*)ap, la, (const float*)bp, lb, (float*)yp, (i64)n, code);
                if (!cmp && dt == 1) binary_f64((const double*)ap, la, (const double*)bp, lb, (double*)yp, (i64)n, code);
                if (!cmp && dt == 2) binary_bf16((const bf16_t*)ap, la, (const bf16_t*)bp, lb, (bf16_t*)yp, (i64)n, code);
                if (!cmp && dt == 3) binary_f16((const f16_t*)ap, la, (const f16_t*)bp, lb, (f16_t*)yp, (i64)n, code);
            });
            put(out, y);
            bool plain = la.contiguous && lb.contiguous && la.offset == 0 && lb.offset == 0 && a.size() == b.size();
            if (dt == 0 && !cmp && n % 4 == 0 && plain) {
                serial([&] { binary_f32_vec4((const float4*)a.data(), (const float4*)b.data(), (float4*)y4.data(), (i64)(n / 4), code); });
                put(out, y4);
            }
        }
    } else if (!strcmp(mode, "cast")) {
        auto h = take<unsigned long long>(in, 2);
        int src = (int)h[0], dst = (int)h[1];
        Strided lx;
        auto x = take_view_bytes(in, lx, 1);
        static const int width[8] = {4, 8, 2, 2, 8, 4, 1, 1};
        std::vector<unsigned char> y(n * width[dst]);
        serial([&] { cast_any(x.data(), lx, src, y.data(), dst, (i64)n); });
        put(out, y);
    } else if (!strcmp(mode, "conv_tc")) {
        // n is the f16 flag here.
        bool f16 = n != 0;
        auto f = take<unsigned long long>(in, 16);
        TcShape s{};
        s.n = (int)f[0], s.cin = (int)f[1], s.h = (int)f[2], s.w = (int)f[3], s.cout = (int)f[4];
        s.kh = (int)f[5], s.kw = (int)f[6], s.ho = (int)f[7], s.wo = (int)f[8], s.sh = (int)f[9], s.sw = (int)f[10];
        s.ph = (int)f[11], s.pw = (int)f[12], s.dh = (int)f[13], s.dw = (int)f[14];
        int splits = (int)f[15], khw = s.kh * s.kw;
        auto x = take<unsigned short>(in, (size_t)s.n * s.cin * s.h * s.w);
        auto w = take<unsigned short>(in, (size_t)s.cout * s.cin * khw);
        auto gy = take<unsigned short>(in, (size_t)s.n * s.cout * s.ho * s.wo);
        auto blocks = [](int v) { return (unsigned)((v + 127) / 128); };
        // Forward: M = N·Ho·Wo, N = Cout, K = Cin·kh·kw.
        std::vector<unsigned short> y(gy.size()), wt(w.size()), dx(x.size());
        TcShape a = s;
        a.m = s.n * s.ho * s.wo, a.ncols = s.cout, a.k = s.cin * khw, a.vec = a.k % 8 == 0;
        host_launch({blocks(a.m), blocks(a.ncols), 1}, {256, 1, 1}, [&] {
            (f16 ? conv_tc_fwd_f16 : conv_tc_fwd_bf16)(x.data(), w.data(), y.data(), a);
        });
        // Backward data: wᵀ, then M = N·H·W, N = Cin, K = Cout·kh·kw.
        serial([&] { conv_tc_wt(w.data(), wt.data(), s.cout, s.cin, khw); });
        TcShape b = s;
        b.m = s.n * s.h * s.w, b.ncols = s.cin, b.k = s.cout * khw, b.vec = b.k % 8 == 0;
        bool unit = s.sh == 1 && s.sw == 1;
        auto dk = unit ? (f16 ? conv_tc_dgrad_f16 : conv_tc_dgrad_bf16) : (f16 ? conv_tc_dgrad_s_f16 : conv_tc_dgrad_s_bf16);
        host_launch({blocks(b.m), blocks(b.ncols), 1}, {256, 1, 1}, [&] { dk(gy.data(), wt.data(), dx.data(), b); });
        // Weight gradient: M = Cout, N = Cin·kh·kw, K = N·Ho·Wo split over blockIdx.z.
        TcShape c = s;
        int p = s.n * s.ho * s.wo, nt = (p + 31) / 32, tps = (nt + splits - 1) / splits;
        c.m = s.cout, c.ncols = s.cin * khw, c.k = p, c.tps = tps;
        std::vector<float> dw((size_t)s.cout * s.cin * khw, 0.0f);
        host_launch({blocks(c.ncols), blocks(c.m), (unsigned)((nt + tps - 1) / tps)}, {256, 1, 1}, [&] {
            (f16 ? conv_tc_wgrad_f16 : conv_tc_wgrad_bf16)(x.data(), gy.data(), dw.data(), c);
        });
        put(out, y); put(out, dx); put(out, dw);
    } else if (!strcmp(mode, "attn_tc")) {
        bool f16 = n != 0;
        auto h = take<unsigned long long>(in, 5);
        size_t bh = h[0], sq = h[1], sk = h[2], d = h[3];
        int causal = (int)h[4];
        double scale = take<double>(in, 1)[0];
        auto q = take<unsigned short>(in, bh * sq * d), k = take<unsigned short>(in, bh * sk * d);
        auto v = take<unsigned short>(in, bh * sk * d), go = take<unsigned short>(in, bh * sq * d);
        std::vector<unsigned short> o(bh * sq * d), dk(bh * sk * d), dv(bh * sk * d);
        std::vector<float> lse(bh * sq), delta(bh * sq), dq(bh * sq * d, 0.0f);
        auto fwd = f16 ? (d == 32 ? attn_flash_fwd_f16_d32 : d == 64 ? attn_flash_fwd_f16_d64 : attn_flash_fwd_f16_d128)
                       : (d == 32 ? attn_flash_fwd_bf16_d32 : d == 64 ? attn_flash_fwd_bf16_d64 : attn_flash_fwd_bf16_d128);
        auto bwd = f16 ? (d == 32 ? attn_flash_bwd_f16_d32 : d == 64 ? attn_flash_bwd_f16_d64 : attn_flash_bwd_f16_d128)
                       : (d == 32 ? attn_flash_bwd_bf16_d32 : d == 64 ? attn_flash_bwd_bf16_d64 : attn_flash_bwd_bf16_d128);
        float scale_log2 = (float)(scale * 1.4426950408889634);
        host_launch({(unsigned)((sq + 63) / 64), (unsigned)bh, 1}, {128, 1, 1}, [&] {
            fwd(q.data(), k.data(), v.data(), o.data(), lse.data(), (i64)sq, (i64)sk, scale_log2, causal);
        });
        host_launch({(unsigned)((bh * sq + 7) / 8), 1, 1}, {256, 1, 1}, [&] {
            (f16 ? attn_delta_f16 : attn_delta_bf16)(o.data(), go.data(), delta.data(), (i64)(bh * sq), (i64)d);
        });
        host_launch({(unsigned)((sk + 63) / 64), (unsigned)bh, 1}, {128, 1, 1}, [&] {
            bwd(q.data(), k.data(), v.data(), go.data(), lse.data(), delta.data(), dq.data(), dk.data(), dv.data(),
                (i64)sq, (i64)sk, (float)scale, causal);
        });
        put(out, o); put(out, lse); put(out, dq); put(out, dk); put(out, dv);
    } else if (!strcmp(mode, "index") || !strcmp(mode, "gather")) {
        if (!strcmp(mode, "index")) {
            auto h = take<unsigned long long>(in, 3);
            i64 outer = (i64)n, size = (i64)h[0], inner = (i64)h[1], m = (i64)h[2];
            Strided lx, ls;
            auto x = take_view_f32(in, lx);
            auto idx = take<long long>(in, m);
            auto src = take_view_f32(in, ls);
            std::vector<float> y(outer * m * inner), acc(outer * size * inner, 0.0f);
            std::vector<unsigned long long> bad(1, ~0ull >> 1);
            serial([&] { index_select_4_i64((const unsigned*)x.data(), lx, idx.data(), (unsigned*)y.data(), outer * m * inner, m, size, inner); });
            host_launch({3, 1, 1}, {64, 1, 1}, [&] { index_add_f32_i64(src.data(), ls, idx.data(), acc.data(), outer * m * inner, m, size, inner); });
            host_launch({2, 1, 1}, {32, 1, 1}, [&] { index_check_i64(idx.data(), m, size, bad.data()); });
            put(out, y); put(out, acc); put(out, bad);
        } else {
            int dim = (int)n;
            Strided lx, li, ls, lo;
            auto x = take_view_f32(in, lx);
            li = take_strided(in);
            i64 m = 1;
            for (int d = 0; d < li.rank; ++d) m *= li.shape[d];
            auto idx = take<long long>(in, m);
            auto src = take_view_f32(in, ls);
            lo = take_strided(in);
            size_t olen = take<unsigned long long>(in, 1)[0];
            std::vector<float> y(m), a32(olen);
            std::vector<double> acc(olen, 0.0);
            std::vector<unsigned short> a16(olen), ah(olen);
            serial([&] { gather_4_i64((const unsigned*)x.data(), lx, li, idx.data(), (unsigned*)y.data(), m, dim); });
            host_launch({3, 1, 1}, {64, 1, 1}, [&] { scatter_add_f32_i64(src.data(), ls, idx.data(), acc.data(), lo, m, dim); });
            serial([&] { f64_to_f32(acc.data(), a32.data(), (i64)olen); });
            serial([&] { f64_to_bf16(acc.data(), a16.data(), (i64)olen); });
            serial([&] { f64_to_f16(acc.data(), ah.data(), (i64)olen); });
            put(out, y); put(out, acc); put(out, a32); put(out, a16); put(out, ah);
        }
    } else if (!strcmp(mode, "reduce")) {
        auto h = take<unsigned long long>(in, 4);
        i64 rows = (i64)n, len = (i64)h[0], nc = (i64)h[3];
        int op = (int)h[1], kind = (int)h[2];
        auto x = take<float>(in, rows * len);
        dim3 g3{3, 1, 1}, b256{256, 1, 1};
        if (kind <= 2) {
            std::vector<float> y(rows, NAN);
            if (kind == 0) {
                host_launch(g3, b256, [&] { reduce_rows_f32(x.data(), y.data(), rows, len, op); });
            } else {
                std::vector<float> part(rows * nc, NAN);
                auto k = kind == 1 ? reduce_partial_rows_f32 : reduce_partial_rows_f32v4;
                host_launch(g3, b256, [&] { k(x.data(), part.data(), rows, len, nc, op); });
                host_launch(g3, b256, [&] { reduce_rows_f32(part.data(), y.data(), rows, nc, op); });
            }
            put(out, y);
        } else if (kind <= 4) {
            std::vector<float> y(len, NAN);
            if (kind == 3) {
                host_launch(g3, b256, [&] { reduce_cols_f32(x.data(), y.data(), rows, len, op); });
            } else {
                std::vector<float> part(nc * len, NAN);
                host_launch(g3, b256, [&] { reduce_partial_cols_f32(x.data(), part.data(), rows, len, nc, op); });
                host_launch(g3, b256, [&] { reduce_cols_f32(part.data(), y.data(), nc, len, op); });
            }
            put(out, y);
        } else if (kind == 5) {
            std::vector<long long> y(rows, -1);
            serial([&] { arg_rows_f32(x.data(), y.data(), rows, len, op); });
            put(out, y);
        } else {
            std::vector<float> y(rows * len, NAN);
            serial([&] { cumsum_rows_f32(x.data(), y.data(), rows, len); });
            put(out, y);
        }
    } else if (!strcmp(mode, "pool")) {
        auto d = take<unsigned long long>(in, 12);
        i64 pl = (i64)n, h = (i64)d[0], w = (i64)d[1], ho = (i64)d[2], wo = (i64)d[3], kh = (i64)d[4], kw = (i64)d[5];
        i64 sh = (i64)d[6], sw = (i64)d[7], ph = (i64)d[8], pw = (i64)d[9], oh = (i64)d[10], ow = (i64)d[11];
        auto x = take<float>(in, pl * h * w), g = take<float>(in, pl * ho * wo), gu = take<float>(in, pl * oh * ow);
        std::vector<float> avg(pl * ho * wo), davg(pl * h * w), mx(pl * ho * wo), up(pl * oh * ow), dup(pl * h * w);
        std::vector<long long> idx(pl * ho * wo);
        double sy = (double)h / (double)oh, sx = (double)w / (double)ow;
        serial([&] { avg_pool2d_f32(x.data(), avg.data(), pl, h, w, ho, wo, kh, kw, sh, sw, ph, pw); });
        serial([&] { avg_pool2d_bwd_f32(g.data(), davg.data(), pl, h, w, ho, wo, kh, kw, sh, sw, ph, pw); });
        serial([&] { max_pool2d_f32(x.data(), mx.data(), idx.data(), pl, h, w, ho, wo, kh, kw, sh, sw, ph, pw); });
        serial([&] { upsample_bilinear2d_f32(x.data(), up.data(), pl, h, w, oh, ow, sy, sx); });
        serial([&] { upsample_bilinear2d_bwd_f32(gu.data(), dup.data(), pl, h, w, oh, ow, sy, sx); });
        put(out, avg); put(out, davg); put(out, mx); put(out, idx); put(out, up); put(out, dup);
    } else if (!strcmp(mode, "attn_rows")) {
        auto h = take<unsigned long long>(in, 11);
        i64 bh = (i64)n, sq = (i64)h[0], sk = (i64)h[1], dv = (i64)h[2], heads = (i64)h[3];
        int has_mask = (int)h[4], causal = (int)h[5];
        i64 mb = (i64)h[6], mh = (i64)h[7], mi = (i64)h[8], mj = (i64)h[9];
        bool backward = h[10] != 0;
        double scale = take<double>(in, 1)[0];
        auto mask = take<float>(in, take<unsigned long long>(in, 1)[0]);
        auto s = take<float>(in, bh * sq * sk);
        const float* mp = has_mask ? mask.data() : nullptr;
        if (!backward) {
            std::vector<float> lse(bh * sq, NAN);
            host_launch({3, 1, 1}, {256, 1, 1}, [&] {
                attn_rows_fwd_f32(s.data(), lse.data(), mp, bh * sq, 0, sq, sk, heads, mb, mh, mi, mj, has_mask, causal, scale);
            });
            put(out, s); put(out, lse);
        } else {
            auto lse = take<float>(in, bh * sq);
            auto o = take<float>(in, bh * sq * dv), go = take<float>(in, bh * sq * dv), dp = take<float>(in, bh * sq * sk);
            host_launch({3, 1, 1}, {256, 1, 1}, [&] {
                attn_rows_bwd_f32(s.data(), dp.data(), lse.data(), o.data(), go.data(), mp, bh * sq, 0, sq, sk, dv, heads, mb,
                                  mh, mi, mj, has_mask, causal, scale);
            });
            put(out, s); put(out, dp);
        }
    } else if (!strcmp(mode, "index_det") || !strcmp(mode, "scatter_det")) {
        if (!strcmp(mode, "index_det")) {
            auto h = take<unsigned long long>(in, 3);
            i64 outer = (i64)n, size = (i64)h[0], inner = (i64)h[1], m = (i64)h[2];
            Strided ls;
            auto src = take_view_f32(in, ls);
            auto offsets = take<long long>(in, size + 1), order = take<long long>(in, m);
            std::vector<float> out_(outer * size * inner, NAN);
            host_launch({3, 1, 1}, {64, 1, 1}, [&] {
                index_add_det_f32(src.data(), ls, offsets.data(), order.data(), out_.data(), outer * size * inner, m, size, inner);
            });
            put(out, out_);
        } else {
            Strided ls;
            auto src = take_view_f32(in, ls);
            i64 total = 1;
            for (int d = 0; d < ls.rank; ++d) total *= ls.shape[d];
            auto offsets = take<long long>(in, n + 1), order = take<long long>(in, total);
            std::vector<double> acc(n, NAN);
            host_launch({3, 1, 1}, {64, 1, 1}, [&] { scatter_add_det_f32(src.data(), ls, offsets.data(), order.data(), acc.data(), (i64)n); });
            put(out, acc);
        }
    } else if (!strcmp(mode, "patch")) {
        // n is the batch size here.
        auto d = take<unsigned long long>(in, 5);
        size_t b = n, c = d[0], h = d[1], w = d[2], ph = d[3], pw = d[4];
        auto tops = take<long long>(in, b), lefts = take<long long>(in, b);
        auto x = take<double>(in, b * c * h * w), g = take<double>(in, b * (c + 2) * ph * pw);
        std::vector<float> x32(x.begin(), x.end()), y32(g.size());
        std::vector<double> y64(g.size()), dx(x.size(), 0.0);
        serial([&] { patch_embed_f64(x.data(), tops.data(), lefts.data(), y64.data(), b, c, h, w, ph, pw); });
        serial([&] { patch_embed_f32(x32.data(), tops.data(), lefts.data(), y32.data(), b, c, h, w, ph, pw); });
        serial([&] { patch_embed_bwd_f64(g.data(), tops.data(), lefts.data(), dx.data(), b, c, h, w, ph, pw); });
        put(out, y64); put(out, std::vector<double>(y32.begin(), y32.end())); put(out, dx);
    } else if (!strcmp(mode, "softmax")) {
        auto h = take<unsigned long long>(in, 4);
        size_t rows = n, len = h[0];
        auto x = take<float>(in, rows * len);
        std::vector<float> y(rows * len, NAN);
        auto kernel = h[2] == 2 ? softmax_cached_f32v4 : (h[2] ? softmax_cached_f32 : softmax_rows_f32);
        host_launch({(unsigned)h[3], 1, 1}, {256, 1, 1}, [&] { kernel(x.data(), y.data(), (i64)rows, (i64)len, (int)h[1]); });
        put(out, y);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    return fclose(out) == 0 ? 0 : 2;
}
