// Probes of this machine's limits for `tritonllm bench roofline` (tritonllm/bench/roofline.py),
// compiled like the engine's kernels once per instruction set (kernel_build.py), so each build
// measures the vector width its kernels use. Each returns the seconds of its timed work; the
// caller counts the work (floats per vector: tl_probe_floats_per_vector).

#include <immintrin.h>
#include <omp.h>
#include <stdint.h>

#include <vector>

namespace {

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
using vfloat = __m512;
using vint = __m512i;
constexpr int VF = 16;
inline vfloat vset(float v) { return _mm512_set1_ps(v); }
inline vfloat vfma(vfloat a, vfloat b, vfloat c) { return _mm512_fmadd_ps(a, b, c); }
inline vfloat vadd(vfloat a, vfloat b) { return _mm512_add_ps(a, b); }
inline vfloat vload(const float* p) { return _mm512_loadu_ps(p); }
inline float vfirst(vfloat v) { return _mm512_cvtss_f32(v); }
inline vint iset(int16_t v) { return _mm512_set1_epi16(v); }
inline vint dot_add(vint acc, vint x, vint w) { return _mm512_dpwssd_epi32(acc, x, w); }
inline int32_t ifirst(vint v) { return _mm_cvtsi128_si32(_mm512_castsi512_si128(v)); }
#else
using vfloat = __m256;
using vint = __m256i;
constexpr int VF = 8;
inline vfloat vset(float v) { return _mm256_set1_ps(v); }
inline vfloat vfma(vfloat a, vfloat b, vfloat c) { return _mm256_fmadd_ps(a, b, c); }
inline vfloat vadd(vfloat a, vfloat b) { return _mm256_add_ps(a, b); }
inline vfloat vload(const float* p) { return _mm256_loadu_ps(p); }
inline float vfirst(vfloat v) { return _mm256_cvtss_f32(v); }
inline vint iset(int16_t v) { return _mm256_set1_epi16(v); }
inline vint dot_add(vint acc, vint x, vint w) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
}
inline int32_t ifirst(vint v) { return _mm_cvtsi128_si32(_mm256_castsi256_si128(v)); }
#endif

// Independent accumulators per thread: more than an FMA's latency times the FMA units, so the
// units, not the dependency chains, set the rate.
constexpr int CHAINS = 12;

volatile float float_sink;
volatile int32_t int_sink;

}  // namespace

extern "C" {

int tl_probe_floats_per_vector() { return VF; }
int tl_probe_chains() { return CHAINS; }

// iters rounds of CHAINS vector FMAs on each of nthreads threads (2 * VF flops each).
double tl_probe_fma(int64_t iters, int nthreads) {
    const double start = omp_get_wtime();
#pragma omp parallel num_threads(nthreads)
    {
        vfloat acc[CHAINS];
        for (int c = 0; c < CHAINS; ++c) acc[c] = vset(0.001f * c);
        const vfloat a = vset(0.999999f), b = vset(1e-7f);
        for (int64_t i = 0; i < iters; ++i)
            for (int c = 0; c < CHAINS; ++c) acc[c] = vfma(acc[c], a, b);
        float s = 0.f;
        for (int c = 0; c < CHAINS; ++c) s += vfirst(acc[c]);
        float_sink = s;
    }
    return omp_get_wtime() - start;
}

// iters rounds of CHAINS int16 dot-product steps (VF * 2 products, summed in pairs into int32
// lanes, as the int8 kernels do) on each of nthreads threads.
double tl_probe_dot16(int64_t iters, int nthreads) {
    const double start = omp_get_wtime();
#pragma omp parallel num_threads(nthreads)
    {
        vint acc[CHAINS];
        for (int c = 0; c < CHAINS; ++c) acc[c] = iset((int16_t)c);
        const vint x = iset(3), w = iset(-2);
        for (int64_t i = 0; i < iters; ++i)
            for (int c = 0; c < CHAINS; ++c) acc[c] = dot_add(acc[c], x, w);
        int32_t s = 0;
        for (int c = 0; c < CHAINS; ++c) s += ifirst(acc[c]);
        int_sink = s;
    }
    return omp_get_wtime() - start;
}

// reps passes over data[0..n) (n a multiple of 4 * VF), each thread summing its own contiguous
// share front to back: the rate at which these cores read memory, as a decode step reads its
// weights. (Measured here: one sequential stream per thread, left to the hardware prefetcher,
// read faster than 8 interleaved streams with software prefetch.)
double tl_probe_read(const float* data, int64_t n, int nthreads, int reps) {
    const double start = omp_get_wtime();
#pragma omp parallel num_threads(nthreads)
    {
        const int self = omp_get_thread_num(), count = omp_get_num_threads();
        const int64_t blocks = n / (4 * VF);
        const int64_t b0 = blocks * self / count, b1 = blocks * (self + 1) / count;
        vfloat acc[4] = {vset(0.f), vset(0.f), vset(0.f), vset(0.f)};
        for (int r = 0; r < reps; ++r)
            for (int64_t b = b0; b < b1; ++b)
                for (int c = 0; c < 4; ++c) acc[c] = vadd(acc[c], vload(data + (b * 4 + c) * VF));
        float_sink = vfirst(vadd(vadd(acc[0], acc[1]), vadd(acc[2], acc[3])));
    }
    return omp_get_wtime() - start;
}

}  // extern "C"
