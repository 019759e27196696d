// Elementwise kernels: unary maps, broadcasting binary ops, where, casts and strided copies.
// Each template is instantiated per dtype through extern "C" wrappers (NVRTC has no name
// expressions in cudarc's safe API). Halves compute in float, f64 in double.

// Unary op codes: keep in sync with cuda/src/elementwise.rs::unary_code.
template <typename C>
__device__ __forceinline__ C unary_apply(int op, C x, C p0, C p1, C p2) {
    switch (op) {
        case 0: return -x;
        case 1: return fabs(x);
        case 2: return exp(x);
        case 3: return log(x);
        case 4: return log1p(x);
        case 5: return expm1(x);
        case 6: return sqrt(x);
        case 7: return rsqrt(x);
        case 8: return (C)1 / x;
        case 9: return x * x;
        case 10: return sin(x);
        case 11: return cos(x);
        case 12: return tanh(x);
        case 13: return x >= (C)0 ? (C)1 / ((C)1 + exp(-x)) : exp(x) / ((C)1 + exp(x));
        case 14: return x / ((C)1 + exp(-x));
        case 15: {  // x·Φ(x), 0 where Φ underflows to 0 (also at -inf, where x·0 would be NaN), as the CPU
            C cdf = (C)0.5 * erfc(-x * (C)0.70710678118654752440);
            return cdf == (C)0 ? (C)0 : x * cdf;
        }
        case 16: {  // x·σ(2u) with 0.5·(1 + tanh u) = σ(2u) (no cancellation), 0 where σ is 0, as the CPU
            C k = (C)0.79788456080286535588;
            C e = exp((C)2 * (k * (x + (C)0.044715 * x * x * x)));
            C s = (C)1 / ((C)1 + (C)1 / e);
            return s == (C)0 ? (C)0 : x * s;
        }
        case 17: return fmax(x, (C)0) + log1p(exp(-fabs(x)));
        case 18: return fmax(x, (C)0);
        case 19: return x > (C)0 ? (C)1 : (C)0;
        case 20: return erf(x);
        case 21: return (C)lgamma((double)x);
        case 22: return (C)scorch_digamma((double)x);
        case 23: return (C)scorch_trigamma((double)x);
        case 24: return (C)scorch_tetragamma((double)x);
        case 25: return x > (C)0 ? (C)1 : (x < (C)0 ? (C)-1 : x);
        case 26: return floor(x);
        case 27: return rint(x);  // round half to even
        case 28: return x * p0 + p1;
        case 29: return p0 == (C)2 ? x * x : pow(x, p0);
        case 30: return x > (C)0 ? x : x * p0;
        case 31: return isnan(x) ? x : fmin(fmax(x, p0), p1);
        case 32: return (x >= p0 && x <= p1) ? (C)1 : (C)0;
        case 33: return isnan(x) ? p0 : (isinf(x) ? (x > (C)0 ? p1 : p2) : x);
        case 34: { C s = x >= (C)0 ? (C)1 / ((C)1 + exp(-x)) : exp(x) / ((C)1 + exp(x)); return s * ((C)1 + x * ((C)1 - s)); }
        case 35: {  // d/dx gelu_erf = Phi(x) + x phi(x)
            C cdf = (C)0.5 * erfc(-x * (C)0.70710678118654752440);
            C pdf = (C)0.39894228040143267794 * exp((C)-0.5 * x * x);
            return pdf == (C)0 ? cdf : cdf + x * pdf;
        }
        case 36: {  // d/dx gelu_tanh with s = sigmoid(2u)
            C k = (C)0.79788456080286535588;
            C u = k * (x + (C)0.044715 * x * x * x);
            C s = (C)1 / ((C)1 + exp((C)-2 * u));
            C sech2 = (C)4 * s * ((C)1 - s);
            if (sech2 == (C)0) return s;
            return s + (C)0.5 * x * sech2 * k * ((C)1 + (C)3 * (C)0.044715 * x * x);
        }
        default: return x;
    }
}

#define UNARY(NAME, T, C, LOAD, STORE)                                                            \
extern "C" __global__ void NAME(const T* x, Strided lx, T* y, i64 n, int op, double p0, double p1, double p2) { \
    GRID_LOOP(i, n) {                                                                             \
        C v = LOAD(x, strided_offset(lx, i));                                                    \
        STORE(y, i, unary_apply<C>(op, v, (C)p0, (C)p1, (C)p2));                                \
    }                                                                                             \
}
UNARY(unary_f32, float, float, load_f, store_f)
UNARY(unary_f64, double, double, load_f, store_f)
UNARY(unary_bf16, bf16_t, float, load_f, store_f)
UNARY(unary_f16, f16_t, float, load_h, store_h)

// Binary op codes: keep in sync with cuda/src/elementwise.rs::binary_code.
template <typename C>
__device__ __forceinline__ C binary_apply(int op, C a, C b) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        case 3: return a / b;
        case 4: return pow(a, b);
        case 5: return (isnan(a) || isnan(b)) ? a + b : fmax(a, b);
        case 6: return (isnan(a) || isnan(b)) ? a + b : fmin(a, b);
        case 7: return a == b;
        case 8: return a != b;
        case 9: return a < b;
        case 10: return a <= b;
        case 11: return a > b;
        case 12: return a >= b;
        default: return a;
    }
}

// Both layouts are already broadcast to the output shape (zero strides on expanded dims).
#define BINARY(NAME, T, C, LOAD, STORE)                                                           \
extern "C" __global__ void NAME(const T* a, Strided la, const T* b, Strided lb, T* y, i64 n, int op) { \
    GRID_LOOP(i, n) {                                                                             \
        C u = LOAD(a, strided_offset(la, i));                                                    \
        C v = LOAD(b, strided_offset(lb, i));                                                    \
        STORE(y, i, binary_apply<C>(op, u, v));                                                  \
    }                                                                                             \
}
BINARY(binary_f32, float, float, load_f, store_f)
BINARY(binary_f64, double, double, load_f, store_f)
BINARY(binary_bf16, bf16_t, float, load_f, store_f)
BINARY(binary_f16, f16_t, float, load_h, store_h)

// Integer arithmetic (wrapping; division truncates and x/0 gives 0), computed in 64 bits.
__device__ __forceinline__ long long int_apply(int op, long long a, long long b) {
    switch (op) {
        case 0: return (long long)((unsigned long long)a + (unsigned long long)b);
        case 1: return (long long)((unsigned long long)a - (unsigned long long)b);
        case 2: return (long long)((unsigned long long)a * (unsigned long long)b);
        case 3: return b == 0 ? 0 : (a == (-9223372036854775807LL - 1) && b == -1 ? a : a / b);
        case 4: { if (b < 0) return 0; unsigned long long r = 1, base = (unsigned long long)a; long long e = b;
                  while (e > 0) { if (e & 1) r *= base; base *= base; e >>= 1; } return (long long)r; }
        case 5: return a > b ? a : b;
        case 6: return a < b ? a : b;
        case 7: return a == b;
        case 8: return a != b;
        case 9: return a < b;
        case 10: return a <= b;
        case 11: return a > b;
        case 12: return a >= b;
        default: return a;
    }
}
#define BINARY_INT(NAME, T)                                                                       \
extern "C" __global__ void NAME(const T* a, Strided la, const T* b, Strided lb, T* y, i64 n, int op) { \
    GRID_LOOP(i, n) {                                                                             \
        y[i] = (T)int_apply(op, (long long)a[strided_offset(la, i)], (long long)b[strided_offset(lb, i)]); \
    }                                                                                             \
}
BINARY_INT(binary_i64, long long)
BINARY_INT(binary_i32, int)
BINARY_INT(binary_u8, unsigned char)
#define COMPARE_INT(NAME, T)                                                                      \
extern "C" __global__ void NAME(const T* a, Strided la, const T* b, Strided lb, unsigned char* y, i64 n, int op) { \
    GRID_LOOP(i, n) {                                                                             \
        y[i] = int_apply(op, (long long)a[strided_offset(la, i)], (long long)b[strided_offset(lb, i)]) != 0; \
    }                                                                                             \
}
COMPARE_INT(compare_i64, long long)
COMPARE_INT(compare_i32, int)
COMPARE_INT(compare_u8, unsigned char)
COMPARE_INT(compare_bool, unsigned char)

// Comparisons write bool bytes.
#define COMPARE(NAME, T, C, LOAD)                                                                 \
extern "C" __global__ void NAME(const T* a, Strided la, const T* b, Strided lb, unsigned char* y, i64 n, int op) { \
    GRID_LOOP(i, n) {                                                                             \
        C u = LOAD(a, strided_offset(la, i));                                                    \
        C v = LOAD(b, strided_offset(lb, i));                                                    \
        y[i] = binary_apply<C>(op, u, v) != (C)0;                                                \
    }                                                                                             \
}
COMPARE(compare_f32, float, float, load_f)
COMPARE(compare_f64, double, double, load_f)
COMPARE(compare_bf16, bf16_t, float, load_f)
COMPARE(compare_f16, f16_t, float, load_h)

// Contiguous f32 fast path: 16-byte loads and stores (n4 = n / 4 float4 groups, then a tail).
extern "C" __global__ void binary_f32_vec4(const float4* a, const float4* b, float4* y, i64 n4, int op) {
    GRID_LOOP(i, n4) {
        float4 u = a[i], v = b[i], r;
        r.x = binary_apply<float>(op, u.x, v.x);
        r.y = binary_apply<float>(op, u.y, v.y);
        r.z = binary_apply<float>(op, u.z, v.z);
        r.w = binary_apply<float>(op, u.w, v.w);
        y[i] = r;
    }
}

extern "C" __global__ void unary_f32_vec4(const float4* x, float4* y, i64 n4, int op, double p0, double p1, double p2) {
    GRID_LOOP(i, n4) {
        float4 u = x[i], r;
        float a = (float)p0, b = (float)p1, c = (float)p2;
        r.x = unary_apply<float>(op, u.x, a, b, c);
        r.y = unary_apply<float>(op, u.y, a, b, c);
        r.z = unary_apply<float>(op, u.z, a, b, c);
        r.w = unary_apply<float>(op, u.w, a, b, c);
        y[i] = r;
    }
}

// where(cond, a, b): all three layouts broadcast to the output shape.
#define WHERE(NAME, T)                                                                            \
extern "C" __global__ void NAME(const unsigned char* c, Strided lc, const T* a, Strided la, const T* b, Strided lb, T* y, i64 n) { \
    GRID_LOOP(i, n) {                                                                             \
        y[i] = c[strided_offset(lc, i)] ? a[strided_offset(la, i)] : b[strided_offset(lb, i)];   \
    }                                                                                             \
}
WHERE(where_f32, float)
WHERE(where_f64, double)
WHERE(where_u16, unsigned short)
WHERE(where_i64, long long)
WHERE(where_i32, int)
WHERE(where_u8, unsigned char)

// Strided gather into a contiguous buffer, by element width (dtype-agnostic copies).
#define COPY(NAME, T)                                                                             \
extern "C" __global__ void NAME(const T* x, Strided lx, T* y, i64 n) {                           \
    GRID_LOOP(i, n) { y[i] = x[strided_offset(lx, i)]; }                                         \
}
COPY(copy_strided_1, unsigned char)
COPY(copy_strided_2, unsigned short)
COPY(copy_strided_4, unsigned int)
COPY(copy_strided_8, unsigned long long)

// Contiguous source written into a strided destination view (cat, pad, assign).
#define SCATTER(NAME, T)                                                                          \
extern "C" __global__ void NAME(const T* x, T* y, Strided ly, i64 n) {                           \
    GRID_LOOP(i, n) { y[strided_offset(ly, i)] = x[i]; }                                         \
}
SCATTER(copy_into_1, unsigned char)
SCATTER(copy_into_2, unsigned short)
SCATTER(copy_into_4, unsigned int)
SCATTER(copy_into_8, unsigned long long)

// Casts between float dtypes (src code / dst code: 0 f32, 1 f64, 2 bf16, 3 f16, 4 i64, 5 i32, 6 u8, 7 bool).
__device__ __forceinline__ double cast_load(const void* p, int code, i64 i) {
    switch (code) {
        case 0: return ((const float*)p)[i];
        case 1: return ((const double*)p)[i];
        case 2: return bf16_to_float(((const bf16_t*)p)[i]);
        case 3: return f16_to_float(((const f16_t*)p)[i]);
        case 4: return (double)((const long long*)p)[i];
        case 5: return (double)((const int*)p)[i];
        default: return (double)((const unsigned char*)p)[i];
    }
}
__device__ __forceinline__ void cast_store(void* p, int code, i64 i, double v) {
    switch (code) {
        case 0: ((float*)p)[i] = (float)v; break;
        case 1: ((double*)p)[i] = v; break;
        case 2: ((bf16_t*)p)[i] = float_to_bf16((float)v); break;
        case 3: ((f16_t*)p)[i] = float_to_f16((float)v); break;
        case 4: ((long long*)p)[i] = (long long)v; break;
        case 5: ((int*)p)[i] = (int)v; break;
        case 6: ((unsigned char*)p)[i] = (unsigned char)v; break;
        default: ((unsigned char*)p)[i] = v != 0.0; break;
    }
}
extern "C" __global__ void cast_any(const void* x, Strided lx, int src, void* y, int dst, i64 n) {
    GRID_LOOP(i, n) { cast_store(y, dst, i, cast_load(x, src, strided_offset(lx, i))); }
}
