// Runs cuda/kernels/beta.cu's kernels on the CPU (see shim.h) for cuda/tests/host_kernels.rs.
//   beta_driver kl32 IN OUT: IN = n (u64), a1, b1, a2, b2 (f32 × n each); runs beta_kl_f32 and
//     beta_kl_f32_fallback as the launcher does; OUT = count (u64), y (f32 × n).
//   beta_driver kl64 IN OUT: IN = n (u64), a1, b1, a2, b2 (f64 × n each); OUT = y, then the four
//     gradients of beta_kl_bwd_f64 for an upstream gradient of 1 (f64 × n each).
//   beta_driver klub64 IN OUT: IN = n, per (u64), eta, w_cond, w_marg (f64), xh, x (f64 × n),
//     alpha_s, alpha_t (f64 × n / per); OUT = beta_klub_f64's y and beta_klub_bwd_f64's
//     gradient for an upstream gradient of 1 (f64 × n each).
#include "shim.h"
#include "../../kernels/common.cuh"
#include "../../kernels/beta.cu"

#include <stdio.h>
#include <stdlib.h>
#include <vector>

template <typename T> static std::vector<T> take(FILE* f, size_t n) {
    std::vector<T> v(n);
    if (n && fread(v.data(), sizeof(T), n, f) != n) { fprintf(stderr, "short input\n"); exit(2); }
    return v;
}
template <typename T> static void put(FILE* f, const std::vector<T>& v) {
    if (!v.empty() && fwrite(v.data(), sizeof(T), v.size(), f) != v.size()) { fprintf(stderr, "short write\n"); exit(2); }
}

int main(int argc, char** argv) {
    if (argc != 4) { fprintf(stderr, "usage: beta_driver kl32|kl64|klub64 IN OUT\n"); return 2; }
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
        beta_kl_f32(a1.data(), b1.data(), a2.data(), b2.data(), y.data(), (i64)n, count.data(), list.data());
        beta_kl_f32_fallback(a1.data(), b1.data(), a2.data(), b2.data(), y.data(), count.data(), list.data());
        put(out, count);
        put(out, y);
    } else if (!strcmp(mode, "kl64")) {
        auto a1 = take<double>(in, n), b1 = take<double>(in, n), a2 = take<double>(in, n), b2 = take<double>(in, n);
        std::vector<double> y(n), one(n, 1.0), g0(n), g1(n), g2(n), g3(n);
        beta_kl_f64(a1.data(), b1.data(), a2.data(), b2.data(), y.data(), (i64)n);
        beta_kl_bwd_f64(a1.data(), b1.data(), a2.data(), b2.data(), one.data(), g0.data(), g1.data(), g2.data(), g3.data(), (i64)n);
        put(out, y); put(out, g0); put(out, g1); put(out, g2); put(out, g3);
    } else if (!strcmp(mode, "klub64")) {
        size_t per = take<unsigned long long>(in, 1)[0];
        auto c = take<double>(in, 3);
        auto xh = take<double>(in, n), x = take<double>(in, n);
        size_t b = per ? n / per : 0;
        auto as = take<double>(in, b), at = take<double>(in, b);
        std::vector<double> y(n), one(n, 1.0), g(n);
        beta_klub_f64(xh.data(), x.data(), as.data(), at.data(), y.data(), (i64)n, (i64)per, c[0], c[1], c[2]);
        beta_klub_bwd_f64(xh.data(), x.data(), as.data(), at.data(), one.data(), g.data(), (i64)n, (i64)per, c[0], c[1], c[2]);
        put(out, y); put(out, g);
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    return fclose(out) == 0 ? 0 : 2;
}
