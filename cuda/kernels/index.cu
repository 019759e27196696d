// Indexing: index_select / index_add (embedding lookup and its gradient), gather / scatter_add.
// Index tensors arrive contiguous, as i64 or i32, and are range-checked by index_check_* before
// any kernel here reads through them. Copies move raw elements by width (1, 2, 4 or 8 bytes);
// the additive kernels accumulate with atomicAdd into a zeroed buffer (f32 or f64 for
// index_add, always f64 for scatter_add, as on the CPU), cast to the output dtype afterwards.

// The smallest flat position holding an index outside [0, size); *bad starts at i64 max.
template <typename I>
__device__ __forceinline__ void index_check(const I* idx, i64 n, i64 size, unsigned long long* bad) {
    GRID_LOOP(i, n) {
        i64 t = (i64)idx[i];
        if (t < 0 || t >= size) atomicMin(bad, (unsigned long long)i);
    }
}
extern "C" __global__ void index_check_i64(const i64* idx, i64 n, i64 size, unsigned long long* bad) {
    index_check<i64>(idx, n, size, bad);
}
extern "C" __global__ void index_check_i32(const int* idx, i64 n, i64 size, unsigned long long* bad) {
    index_check<int>(idx, n, size, bad);
}

// out[o, j, r] = x[o, idx[j], r]: x is a view of shape (outer, size, inner) read through its
// (coalesced) layout; out is contiguous (outer, n, inner), total = outer * n * inner.
template <typename T, typename I>
__device__ __forceinline__ void index_select_k(const T* x, const Strided& lx, const I* idx, T* y, i64 total, i64 n,
                                               i64 size, i64 inner) {
    GRID_LOOP(k, total) {
        i64 r = k % inner, q = k / inner;
        i64 j = q % n, o = q / n;
        y[k] = x[strided_offset(lx, (o * size + (i64)idx[j]) * inner + r)];
    }
}
#define INDEX_SELECT(NAME, T, I)                                                                         \
extern "C" __global__ void NAME(const T* x, Strided lx, const I* idx, T* y, i64 total, i64 n, i64 size, i64 inner) { \
    index_select_k<T, I>(x, lx, idx, y, total, n, size, inner);                                          \
}
INDEX_SELECT(index_select_1_i64, unsigned char, i64)
INDEX_SELECT(index_select_2_i64, unsigned short, i64)
INDEX_SELECT(index_select_4_i64, unsigned int, i64)
INDEX_SELECT(index_select_8_i64, unsigned long long, i64)
INDEX_SELECT(index_select_1_i32, unsigned char, int)
INDEX_SELECT(index_select_2_i32, unsigned short, int)
INDEX_SELECT(index_select_4_i32, unsigned int, int)
INDEX_SELECT(index_select_8_i32, unsigned long long, int)

// out[o, idx[i], r] += src[o, i, r]: src is a view of shape (outer, n, inner) read through its
// (coalesced) layout; out (accumulator type A, zeroed) is contiguous (outer, size, inner).
#define INDEX_ADD(NAME, T, A, LOAD, I)                                                                   \
extern "C" __global__ void NAME(const T* s, Strided ls, const I* idx, A* out, i64 total, i64 n, i64 size, i64 inner) { \
    GRID_LOOP(k, total) {                                                                                \
        i64 r = k % inner, q = k / inner;                                                                \
        i64 i = q % n, o = q / n;                                                                        \
        atomicAdd(out + (o * size + (i64)idx[i]) * inner + r, (A)LOAD(s, strided_offset(ls, k)));        \
    }                                                                                                    \
}
INDEX_ADD(index_add_f32_i64, float, float, load_f, i64)
INDEX_ADD(index_add_f64_i64, double, double, load_f, i64)
INDEX_ADD(index_add_bf16_i64, bf16_t, float, load_f, i64)
INDEX_ADD(index_add_f16_i64, f16_t, float, load_h, i64)
INDEX_ADD(index_add_f32_i32, float, float, load_f, int)
INDEX_ADD(index_add_f64_i32, double, double, load_f, int)
INDEX_ADD(index_add_bf16_i32, bf16_t, float, load_f, int)
INDEX_ADD(index_add_f16_i32, f16_t, float, load_h, int)

// Deterministic index_add (SCORCH_DETERMINISTIC): no atomics. order lists the source rows
// grouped by target row, ascending within each group (offsets[t] .. offsets[t + 1] for target
// t; built on the host), and each output element sums its sources in that order, which is
// the CPU's order, so the result is the CPU's bit for bit.
#define INDEX_ADD_DET(NAME, T, A, LOAD)                                                                  \
extern "C" __global__ void NAME(const T* s, Strided ls, const i64* offsets, const i64* order, A* out,   \
                                i64 total, i64 n, i64 size, i64 inner) {                                 \
    GRID_LOOP(k, total) {                                                                                \
        i64 r = k % inner, q = k / inner;                                                                \
        i64 t = q % size, o = q / size;                                                                  \
        A acc = (A)0;                                                                                    \
        for (i64 p = offsets[t]; p < offsets[t + 1]; ++p)                                                \
            acc += (A)LOAD(s, strided_offset(ls, (o * n + order[p]) * inner + r));                       \
        out[k] = acc;                                                                                    \
    }                                                                                                    \
}
INDEX_ADD_DET(index_add_det_f32, float, float, load_f)
INDEX_ADD_DET(index_add_det_f64, double, double, load_f)
INDEX_ADD_DET(index_add_det_bf16, bf16_t, float, load_f)
INDEX_ADD_DET(index_add_det_f16, f16_t, float, load_h)

// out[m] = x[m with m[dim] = idx[m]]: m runs row-major over the index shape li.shape (li has
// the rank of x); x is read through its own strides and offset.
template <typename T, typename I>
__device__ __forceinline__ void gather_k(const T* x, const Strided& lx, const Strided& li, const I* idx, T* y,
                                         i64 total, int dim) {
    GRID_LOOP(k, total) {
        i64 rem = k, off = lx.offset;
        for (int d = li.rank - 1; d >= 0; --d) {
            i64 m = rem % li.shape[d];
            rem /= li.shape[d];
            off += (d == dim ? (i64)idx[k] : m) * lx.strides[d];
        }
        y[k] = x[off];
    }
}
#define GATHER(NAME, T, I)                                                                               \
extern "C" __global__ void NAME(const T* x, Strided lx, Strided li, const I* idx, T* y, i64 total, int dim) { \
    gather_k<T, I>(x, lx, li, idx, y, total, dim);                                                       \
}
GATHER(gather_1_i64, unsigned char, i64)
GATHER(gather_2_i64, unsigned short, i64)
GATHER(gather_4_i64, unsigned int, i64)
GATHER(gather_8_i64, unsigned long long, i64)
GATHER(gather_1_i32, unsigned char, int)
GATHER(gather_2_i32, unsigned short, int)
GATHER(gather_4_i32, unsigned int, int)
GATHER(gather_8_i32, unsigned long long, int)

// out[m with m[dim] = idx[m]] += src[m]: m runs row-major over the source shape; src is read
// through its strides; out is the zeroed f64 accumulator, contiguous with strides lo.strides.
#define SCATTER_ADD(NAME, T, LOAD, I)                                                                    \
extern "C" __global__ void NAME(const T* s, Strided ls, const I* idx, double* out, Strided lo, i64 total, int dim) { \
    GRID_LOOP(k, total) {                                                                                \
        i64 rem = k, src = ls.offset, dst = 0;                                                           \
        for (int d = ls.rank - 1; d >= 0; --d) {                                                         \
            i64 m = rem % ls.shape[d];                                                                   \
            rem /= ls.shape[d];                                                                          \
            src += m * ls.strides[d];                                                                    \
            dst += (d == dim ? (i64)idx[k] : m) * lo.strides[d];                                         \
        }                                                                                                \
        atomicAdd(out + dst, (double)LOAD(s, src));                                                      \
    }                                                                                                    \
}
SCATTER_ADD(scatter_add_f32_i64, float, load_f, i64)
SCATTER_ADD(scatter_add_f64_i64, double, load_f, i64)
SCATTER_ADD(scatter_add_bf16_i64, bf16_t, load_f, i64)
SCATTER_ADD(scatter_add_f16_i64, f16_t, load_h, i64)
SCATTER_ADD(scatter_add_f32_i32, float, load_f, int)
SCATTER_ADD(scatter_add_f64_i32, double, load_f, int)
SCATTER_ADD(scatter_add_bf16_i32, bf16_t, load_f, int)
SCATTER_ADD(scatter_add_f16_i32, f16_t, load_h, int)

// Deterministic scatter_add: order lists the flat source positions grouped by destination
// (offsets[j] .. offsets[j + 1] for output element j), ascending within each group; each
// output element sums them in f64 in that order (the CPU's), with no atomics.
#define SCATTER_ADD_DET(NAME, T, LOAD)                                                                   \
extern "C" __global__ void NAME(const T* s, Strided ls, const i64* offsets, const i64* order, double* out, \
                                i64 out_len) {                                                           \
    GRID_LOOP(j, out_len) {                                                                              \
        double acc = 0.0;                                                                                \
        for (i64 p = offsets[j]; p < offsets[j + 1]; ++p) acc += (double)LOAD(s, strided_offset(ls, order[p])); \
        out[j] = acc;                                                                                    \
    }                                                                                                    \
}
SCATTER_ADD_DET(scatter_add_det_f32, float, load_f)
SCATTER_ADD_DET(scatter_add_det_f64, double, load_f)
SCATTER_ADD_DET(scatter_add_det_bf16, bf16_t, load_f)
SCATTER_ADD_DET(scatter_add_det_f16, f16_t, load_h)

// f64 accumulator -> output dtype, each correctly rounded straight from f64 (as the CPU's
// f64 -> f32 / bf16 / f16 conversions). The halves go through f32 rounded to odd, which has
// enough extra bits (13 or more) that the final round-to-nearest-even is not a double rounding.
__device__ __forceinline__ float f64_to_f32_odd(double d) {
    float f = __double2float_rz(d);
    if (!isnan(d) && (double)f != d) f = __uint_as_float(__float_as_uint(f) | 1u);
    return f;
}
extern "C" __global__ void f64_to_f32(const double* x, float* y, i64 n) {
    GRID_LOOP(i, n) { y[i] = (float)x[i]; }
}
extern "C" __global__ void f64_to_bf16(const double* x, bf16_t* y, i64 n) {
    GRID_LOOP(i, n) { y[i] = float_to_bf16(f64_to_f32_odd(x[i])); }
}
extern "C" __global__ void f64_to_f16(const double* x, f16_t* y, i64 n) {
    GRID_LOOP(i, n) { y[i] = float_to_f16(f64_to_f32_odd(x[i])); }
}
