// Philox 4x32-10, the same stream as ops/src/philox.rs (read its module docs: the element ->
// block/lane map and the uniform / Box-Muller conversions are a contract between backends).

__device__ __forceinline__ uint4 philox_round(uint4 c, uint2 k) {
    unsigned long long p0 = (unsigned long long)0xD2511F53u * c.x;
    unsigned long long p1 = (unsigned long long)0xCD9E8D57u * c.z;
    unsigned int hi0 = (unsigned int)(p0 >> 32), lo0 = (unsigned int)p0;
    unsigned int hi1 = (unsigned int)(p1 >> 32), lo1 = (unsigned int)p1;
    return make_uint4(hi1 ^ c.y ^ k.x, lo1, hi0 ^ c.w ^ k.y, lo0);
}

__device__ __forceinline__ uint4 philox_block(unsigned long long seed, unsigned long long block) {
    uint4 c = make_uint4((unsigned int)block, (unsigned int)(block >> 32), 0u, 0u);
    uint2 k = make_uint2((unsigned int)seed, (unsigned int)(seed >> 32));
    #pragma unroll
    for (int r = 0; r < 10; ++r) {
        if (r > 0) { k.x += 0x9E3779B9u; k.y += 0xBB67AE85u; }
        c = philox_round(c, k);
    }
    return c;
}

__device__ __forceinline__ unsigned int lane_of(uint4 x, int lane) {
    return lane == 0 ? x.x : (lane == 1 ? x.y : (lane == 2 ? x.z : x.w));
}

// One thread per block of four outputs. dist: 0 uniform, 1 normal. out = v * a + b.
template <typename T, typename S>
__device__ void fill(T* out, i64 n, unsigned long long seed, unsigned long long offset, int dist, double a, double b, S store) {
    i64 nb = (n + 3) / 4;
    GRID_LOOP(j, nb) {
        uint4 x = philox_block(seed, offset + (unsigned long long)j);
        double v[4];
        if (dist == 0) {
            for (int l = 0; l < 4; ++l) v[l] = (double)lane_of(x, l) * 2.3283064365386963e-10;
        } else {
            for (int p = 0; p < 2; ++p) {
                double u1 = ((double)lane_of(x, 2 * p) + 1.0) * 2.3283064365386963e-10;
                double u2 = (double)lane_of(x, 2 * p + 1) * 2.3283064365386963e-10;
                double r = sqrt(-2.0 * log(u1));
                double th = 6.283185307179586 * u2;
                v[2 * p] = r * cos(th);
                v[2 * p + 1] = r * sin(th);
            }
        }
        for (int l = 0; l < 4; ++l) {
            i64 i = 4 * j + l;
            if (i < n) store(out, i, v[l], lane_of(x, l), dist, a, b);
        }
    }
}

struct StoreF32 {
    __device__ void operator()(float* o, i64 i, double v, unsigned int raw, int dist, double a, double b) const {
        // f32 uniforms use the top 24 bits, exactly as on the CPU.
        float u = dist == 0 ? (float)(raw >> 8) * 5.9604644775390625e-08f : (float)v;
        o[i] = (a == 1.0 && b == 0.0) ? u : u * (float)a + (float)b;
    }
};
struct StoreF64 {
    __device__ void operator()(double* o, i64 i, double v, unsigned int, int, double a, double b) const { o[i] = v * a + b; }
};

extern "C" __global__ void random_f32(float* out, i64 n, unsigned long long seed, unsigned long long offset, int dist, double a, double b) {
    fill(out, n, seed, offset, dist, a, b, StoreF32());
}
extern "C" __global__ void random_f64(double* out, i64 n, unsigned long long seed, unsigned long long offset, int dist, double a, double b) {
    fill(out, n, seed, offset, dist, a, b, StoreF64());
}

// randint: lo + min(floor(u * span), span - 1) from the f64 uniforms of the same request.
extern "C" __global__ void randint_i64(const double* u, long long* out, i64 n, long long lo, long long span) {
    GRID_LOOP(i, n) {
        long long v = (long long)(u[i] * (double)span);
        out[i] = lo + (v < span - 1 ? v : span - 1);
    }
}
