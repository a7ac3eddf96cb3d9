// The CPU engine's hot loops, for x86-64 with AVX2 and FMA, or AVX-512 with VNNI (kernel_build.py
// compiles this file once for each; cpu_kernels.py calls it through ctypes; runner.py says when
// each is used). Only the linear layers differ between the two builds (see "vectors" below).
//
//   tl_linear_f32 / tl_linear_i8 / tl_linear_i4: y[M,N] = x[M,K] . w[N,K]^T (* scale[N])
//     (+ bias[N]); w fp32, or int8 with one fp32 scale per row (weight-only int8), both in
//     panels (see "Weights in panels"), or int4 with scales per block of 32 values (see Int4).
//     For int8 and int4, each row of x is rounded to 15-bit integers with its own scale (error
//     <= 2^-15 of the row's largest value, far below the weights' own int8 rounding) and
//     products are summed exactly in int32. A decode step is bound by reading w, so each w row
//     is read from memory once per call and used for every row of x while it is in cache.
//   tl_greedy: arg-max and its log-softmax per row of logits, in two passes (torch's arg-max
//     alone took ~120 us over SmolLM2's 49,152 logits).
//   tl_decode_attention: one query per row against its cached K/V, read in place through the
//     row's block table (no gather), grouped-query heads, softmax in fp32.
//   tl_decoder_layer: a whole decoder layer for a step of a few tokens (decode rows, and
//     prompt chunks with one row per token), from the pieces above: the per-op overhead of ~30
//     torch calls per layer is gone. tl_decoder_layers: all of them, in one call.
//
// Threads: OpenMP, the runtime torch itself loads (libgomp), num_threads from the caller.

#include <immintrin.h>
#include <omp.h>
#include <math.h>
#include <stdint.h>

#include <string.h>

#include <atomic>
#include <type_traits>
#include <vector>

namespace {

inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline float hmax(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

// The linear layers' vectors. This file is compiled twice (kernel_build.py): for AVX2/FMA, and
// for AVX-512 with VNNI, where a vector holds 16 floats or 32 int16 and vpdpwssd multiplies
// int16 pairs and adds them to int32 in one instruction (AVX2: vpmaddwd, then vpaddd). The
// tile shapes below are chosen per build: AVX-512 has 32 vector registers, AVX2 16.
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
#define TL_AVX512 1
using vfloat = __m512;
using vint = __m512i;
constexpr int VF = 16;  // floats per vector
constexpr int VI = 32;  // int16 (and int8 weights widened to int16) per vector
inline vfloat vzero() { return _mm512_setzero_ps(); }
inline vfloat vset1(float v) { return _mm512_set1_ps(v); }
inline vfloat vload(const float* p) { return _mm512_loadu_ps(p); }
inline void vstore(float* p, vfloat v) { _mm512_storeu_ps(p, v); }
inline vfloat vfma(vfloat a, vfloat b, vfloat c) { return _mm512_fmadd_ps(a, b, c); }
inline vfloat vadd(vfloat a, vfloat b) { return _mm512_add_ps(a, b); }
inline vint izero() { return _mm512_setzero_si512(); }
inline vint load_w(const int8_t* p) {
    return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)p));
}
inline vint dot_add(vint acc, vint x, vint w) { return _mm512_dpwssd_epi32(acc, x, w); }
inline vfloat to_float(vint v) { return _mm512_cvtepi32_ps(v); }
inline vint imul(vint a, vint b) { return _mm512_mullo_epi16(a, b); }
inline vint ior(vint a, vint b) { return _mm512_or_si512(a, b); }
inline vint ishl16(vint a) { return _mm512_slli_epi32(a, 16); }
inline vint imul32(vint a, vint b) { return _mm512_mullo_epi32(a, b); }
inline vint iset32(int32_t v) { return _mm512_set1_epi32(v); }
inline vint iadd32(vint a, vint b) { return _mm512_add_epi32(a, b); }
#else
#define TL_AVX512 0
using vfloat = __m256;
using vint = __m256i;
constexpr int VF = 8;
constexpr int VI = 16;
inline vfloat vzero() { return _mm256_setzero_ps(); }
inline vfloat vset1(float v) { return _mm256_set1_ps(v); }
inline vfloat vload(const float* p) { return _mm256_loadu_ps(p); }
inline void vstore(float* p, vfloat v) { _mm256_storeu_ps(p, v); }
inline vfloat vfma(vfloat a, vfloat b, vfloat c) { return _mm256_fmadd_ps(a, b, c); }
inline vfloat vadd(vfloat a, vfloat b) { return _mm256_add_ps(a, b); }
inline vint izero() { return _mm256_setzero_si256(); }
inline vint load_w(const int8_t* p) {
    return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)p));
}
inline vint dot_add(vint acc, vint x, vint w) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
}
inline vfloat to_float(vint v) { return _mm256_cvtepi32_ps(v); }
inline vint imul(vint a, vint b) { return _mm256_mullo_epi16(a, b); }
inline vint ior(vint a, vint b) { return _mm256_or_si256(a, b); }
inline vint ishl16(vint a) { return _mm256_slli_epi32(a, 16); }
inline vint imul32(vint a, vint b) { return _mm256_mullo_epi32(a, b); }
inline vint iset32(int32_t v) { return _mm256_set1_epi32(v); }
inline vint iadd32(vint a, vint b) { return _mm256_add_epi32(a, b); }
#endif

// Integer weights meet x as int16 (X_BITS bits, one scale per row), products summed exactly in
// int32 (dot_add); widening each weight to fp32 instead was limited by the conversions, not by
// memory.
constexpr int X_BITS = 15;  // |x_q| <= 2^14 - 1 = 16383

// int4 weights in panels of PANEL rows (see "Weights in panels" for the layout's purpose): per
// block of 32 values of K (16 pairs), 16 rows of 16 bytes, byte t holding lane t in its low
// nibble and lane 16 + t in its high one (each + 8), where lane 2c + j is column c's value
// 2 * pair + j; per block an integer scale 1..63 for each column (sub); per run of SUPER
// blocks an fp32 scale for each column (scale): a weight is q * sub * scale. Multiplying the
// unpacked lanes by their sub-scales (once, for every row of x) lets a whole run sum in int32
// (|sum| <= 128 pairs * 2 * 16383 * 8 * 63 < 2^31 per lane), so the float conversion and
// scaling happen once per SUPER * 32 values, not per block.
constexpr int64_t SUPER = 8;  // INT4_RUN in linear.py, which packs the scales

struct Int4 {
    const uint8_t* w;    // [panels, K / 32, 16, 16] bytes
    const uint8_t* sub;  // [panels, K / 32, 16]
    const float* scale;  // [panels, ceil(K / 32 / SUPER), 16]
};

// Piece `piece` of a block row's 32 lanes as int16 (AVX-512: all of them; AVX2: lanes
// 16 * piece .. 16 * piece + 15, columns 8 * piece ..), from its 16 bytes.
inline vint unpack_piece(__m128i bytes, int piece) {
    const __m128i nibble = _mm_set1_epi8(0x0f), eight = _mm_set1_epi8(8);
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(bytes, nibble), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(bytes, 4), nibble), eight);
#if TL_AVX512
    (void)piece;
    return _mm512_cvtepi8_epi16(_mm256_set_m128i(hi, lo));
#else
    return _mm256_cvtepi8_epi16(piece == 0 ? lo : hi);
#endif
}

// The block's sub-scales of columns 8 * piece .. (AVX-512: all 16) as int32 lanes, one per
// column (what a column's sum of pair products is multiplied by).
inline vint sub_scales(const uint8_t* sub, int piece) {
#if TL_AVX512
    (void)piece;
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i*)sub));
#else
    return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(sub + 8 * piece)));
#endif
}

// x [M, K] fp32 -> int16 rows `stride` apart with one scale per row (x = x_q * row_scale),
// rounded to nearest even (lrintf's rounding), 8 at a time.
void quantize_rows(const float* x, int64_t M, int64_t K, int16_t* xq, float* row_scale,
                   int64_t stride) {
    const float top = (float)((1 << (X_BITS - 1)) - 1);
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t m = 0; m < M; ++m) {
        const float* xr = x + m * K;
        int16_t* qr = xq + m * stride;
        __m256 peak8 = _mm256_setzero_ps();
        int64_t k = 0;
        for (; k + 8 <= K; k += 8) peak8 = _mm256_max_ps(peak8, _mm256_and_ps(_mm256_loadu_ps(xr + k), abs_mask));
        float peak = hmax(peak8);
        for (; k < K; ++k) peak = fabsf(xr[k]) > peak ? fabsf(xr[k]) : peak;
        const float scale = peak > 0.f ? peak / top : 1.f;
        const float inv = 1.f / scale;
        const __m256 inv8 = _mm256_set1_ps(inv);
        for (k = 0; k + 16 <= K; k += 16) {
            const __m256i a = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xr + k), inv8));
            const __m256i b = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xr + k + 8), inv8));
            // packs works per 128-bit lane: (a0 b0 a1 b1) -> reorder to (a0 a1 b0 b1)
            const __m256i packed = _mm256_permute4x64_epi64(_mm256_packs_epi32(a, b), 0xD8);
            _mm256_storeu_si256((__m256i*)(qr + k), packed);
        }
        for (; k < K; ++k) qr[k] = (int16_t)lrintf(xr[k] * inv);
        row_scale[m] = scale;
    }
}

struct Linear {
    int64_t K, N;
    const float* scale;      // per w row for int8 weights; null for fp32 and int4 (Int4 has its own)
    const float* row_scale;  // per x row, for int8 and int4 weights (x was quantized to int16)
    const float* bias;   // may be null
    float* y;
    bool accumulate;     // y += x . w^T instead of y = (the residual add, fused)
};

// A thread's share of a parallel loop, [begin, end) packed in one word so that its owner
// (from the front) and a thief (from the back) never take the same task.
struct alignas(64) Share {
    std::atomic<uint64_t> range;
    void set(int64_t begin, int64_t end) { range.store((uint64_t)begin << 32 | (uint64_t)end); }
    bool take(bool front, int64_t& task) {
        uint64_t cur = range.load(std::memory_order_relaxed);
        for (;;) {
            const int64_t begin = (int64_t)(cur >> 32), end = (int64_t)(cur & 0xffffffffu);
            if (begin >= end) return false;
            const uint64_t next = front ? (uint64_t)(begin + 1) << 32 | (uint64_t)end
                                        : (uint64_t)begin << 32 | (uint64_t)(end - 1);
            if (range.compare_exchange_weak(cur, next)) {
                task = front ? begin : end - 1;
                return true;
            }
        }
    }
};

// run(task) for tasks 0..count-1 on nthreads threads. Each thread starts on its own contiguous
// share, front to back (its weight rows stream forward, the prefetch runs ahead of them), then
// takes what is left of the others' shares from their backs. A thread that was descheduled
// (tritonserver and the other stubs share these cores) or reads slower no longer holds up the
// step by its whole share: a static split waited for it at every barrier.
template <typename Run>
void parallel_tasks(int64_t count, int nthreads, const Run& run) {
    if (nthreads <= 1 || count <= 1) {
        for (int64_t t = 0; t < count; ++t) run(t);
        return;
    }
    std::vector<Share> shares(nthreads);
    for (int i = 0; i < nthreads; ++i)
        shares[i].set(count * i / nthreads, count * (i + 1) / nthreads);
#pragma omp parallel num_threads(nthreads)
    {
        const int self = omp_get_thread_num();
        int64_t task;
        while (shares[self].take(true, task)) run(task);
        for (int i = 1; i < nthreads; ++i)  // also the shares of threads the team lacks
            while (shares[(self + i) % nthreads].take(false, task)) run(task);
    }
}

// Weights in panels of PANEL rows (cpu_kernels.py's pack_panels; the last panel is padded
// with zero rows), so that each panel is one forward stream (the hardware prefetcher follows
// it; interleaved rows of w did not keep the bus busy once a few rows of x made the step do
// some arithmetic) and a tile multiplies one value of x (int8: a pair) by 16 columns at once,
// with no sums across lanes at the end.
//   fp32: panel p holds w rows 16p..16p+15 as [K][16].
//   int8: as [ceil(K / 2)][16][2], each column's pair of consecutive values side by side: one
//     vpdpwssd (AVX2: vpmaddwd + vpaddd) multiplies a broadcast pair of x_q by the 16 columns'
//     pairs, widened to int16, and adds both products to each column's int32 lane.
// A tile is MR rows of x by NP panels, in MR * NP * PV accumulators: fp32 AVX-512 14 x 2 (28
// of 32 registers; measured on SmolLM2's shapes at 512 rows, 2 threads: 1.1-1.25x 12 x 2 and
// 8 x 3), AVX2 6 x 1 (12 of 16, a panel row being two vectors); int8 AVX-512 8 x 2, AVX2 3 x 1
// (with more rows gcc moved the accumulators of vpdpwssd between registers and the stack on
// every step: 14 x 2 ran at half the rate of 8 x 2). Fewer rows take one tile of their own
// size, and at 1-2 rows U partial sums per accumulator hide the latency.
constexpr int PANEL = 16;
constexpr int PV = PANEL / VF;  // vectors per panel row (fp32) or per row of pairs (int8)
#if TL_AVX512
constexpr int PANEL_NP = 2, PANEL_MR = 14, PANEL_MR_I8 = 8;
#else
constexpr int PANEL_NP = 1, PANEL_MR = 6, PANEL_MR_I8 = 3;
#endif

// The pair of int16 at p in every 32-bit lane.
inline vint pair_set1(const int16_t* p) {
    int32_t v;
    memcpy(&v, p, sizeof v);
    return iset32(v);
}
// int32 lanes of the int8 tile take one pair sum (|.| <= 2 * 16383 * 128) per pair of K: up to
// 511 fit; spilled to fp32 every FLUSH_PAIRS.
constexpr int64_t FLUSH_PAIRS = 256;

// y[m][n .. n + VF) below column N from a vector of sums (int8 and int4: times row_scale[m];
// int8: times scale[column]), plus the bias, written or added (op.accumulate).
inline void store_sums(const Linear& op, int64_t m, int64_t n, vfloat sums) {
    if (n >= op.N) return;  // the last panel's padding
    alignas(64) float v[VF];
    vstore(v, sums);
    float* y = op.y + m * op.N + n;
    const int64_t count = op.N - n < VF ? op.N - n : VF;
    for (int64_t c = 0; c < count; ++c) {
        float value = op.row_scale ? v[c] * op.row_scale[m] : v[c];
        if (op.scale) value *= op.scale[n + c];
        if (op.bias) value += op.bias[n + c];
        y[c] = op.accumulate ? y[c] + value : value;
    }
}

template <int MR, int NP, int U>
inline void panel_tile(const Linear& op, const float* x, int64_t m, const float* panels,
                       int64_t p) {
    const int64_t K = op.K, stride = K * PANEL;  // floats per panel
    const float* w = panels + p * stride;
    x += m * K;
    vfloat acc[U][MR][NP * PV];
    for (int u = 0; u < U; ++u)
        for (int i = 0; i < MR; ++i)
            for (int j = 0; j < NP * PV; ++j) acc[u][i][j] = vzero();
    int64_t k = 0;
    for (; k + U <= K; k += U)
        for (int u = 0; u < U; ++u) {
            vfloat wv[NP * PV];
            for (int j = 0; j < NP; ++j) {
                const float* row = w + j * stride + (k + u) * PANEL;
                _mm_prefetch((const char*)(row + 32 * PANEL), _MM_HINT_T0);  // 2 KiB ahead
                for (int v = 0; v < PV; ++v) wv[j * PV + v] = vload(row + v * VF);
            }
            for (int i = 0; i < MR; ++i) {
                const vfloat xv = vset1(x[i * K + k + u]);
                for (int j = 0; j < NP * PV; ++j) acc[u][i][j] = vfma(xv, wv[j], acc[u][i][j]);
            }
        }
    for (; k < K; ++k)
        for (int j = 0; j < NP * PV; ++j) {
            const vfloat wv = vload(w + (j / PV) * stride + k * PANEL + (j % PV) * VF);
            for (int i = 0; i < MR; ++i) acc[0][i][j] = vfma(vset1(x[i * K + k]), wv, acc[0][i][j]);
        }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NP * PV; ++j) {
            for (int u = 1; u < U; ++u) acc[0][i][j] = vadd(acc[0][i][j], acc[u][i][j]);
            store_sums(op, m + i, p * PANEL + j * VF, acc[0][i][j]);
        }
}

template <int MR, int NP, int U>
inline void panel_tile(const Linear& op, const int16_t* x, int64_t m, const int8_t* panels,
                       int64_t p) {
    const int64_t pairs = (op.K + 1) / 2, stride = pairs * 2 * PANEL;  // bytes per panel
    const int8_t* w = panels + p * stride;
    x += m * 2 * pairs;
    // fp32 totals in memory, not registers: as vectors they left too few for the loop below
    // (the compiler spilled accumulators inside it)
    alignas(64) float total[MR][NP * PV][VF] = {};
    for (int64_t k = 0; k < pairs;) {
        const int64_t stop = pairs < k + FLUSH_PAIRS ? pairs : k + FLUSH_PAIRS;
        vint acc[U][MR][NP * PV];
        for (int u = 0; u < U; ++u)
            for (int i = 0; i < MR; ++i)
                for (int j = 0; j < NP * PV; ++j) acc[u][i][j] = izero();
        for (; k + U <= stop; k += U)
            for (int u = 0; u < U; ++u) {
                vint wv[NP * PV];
                for (int j = 0; j < NP; ++j) {
                    const int8_t* row = w + j * stride + (k + u) * 2 * PANEL;
                    _mm_prefetch((const char*)(row + 2048), _MM_HINT_T0);
                    for (int v = 0; v < PV; ++v) wv[j * PV + v] = load_w(row + v * VI);
                }
                for (int i = 0; i < MR; ++i) {
                    const vint xv = pair_set1(x + i * 2 * pairs + 2 * (k + u));
                    for (int j = 0; j < NP * PV; ++j)
                        acc[u][i][j] = dot_add(acc[u][i][j], xv, wv[j]);
                }
            }
        for (; k < stop; ++k)
            for (int j = 0; j < NP * PV; ++j) {
                const vint wv = load_w(w + (j / PV) * stride + k * 2 * PANEL + (j % PV) * VI);
                for (int i = 0; i < MR; ++i)
                    acc[0][i][j] = dot_add(acc[0][i][j], pair_set1(x + i * 2 * pairs + 2 * k), wv);
            }
        for (int i = 0; i < MR; ++i)
            for (int j = 0; j < NP * PV; ++j) {
                vfloat sum = vload(total[i][j]);
                for (int u = 0; u < U; ++u) sum = vadd(sum, to_float(acc[u][i][j]));
                vstore(total[i][j], sum);
            }
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NP * PV; ++j)
            store_sums(op, m + i, p * PANEL + j * VF, vload(total[i][j]));
}

// The sub-scales multiply either each unpacked block row (shared by the tile's MR rows of x) or,
// for 1-2 rows, each block's int32 sums (fewer instructions where unpacking, not memory, bounds
// a decode step).
template <int MR, int NP, int U>
inline void panel_tile(const Linear& op, const int16_t* x, int64_t m, const Int4* w4,
                       int64_t p) {
    constexpr bool scale_sums = MR <= 2;
    const int64_t K = op.K, blocks = K / 32, runs = (blocks + SUPER - 1) / SUPER;
    x += m * K;
    alignas(64) float total[MR][NP * PV][VF] = {};  // in memory, as for int8
    for (int64_t r = 0; r < runs; ++r) {
        vint run_sum[MR][NP * PV];
        for (int i = 0; i < MR; ++i)
            for (int j = 0; j < NP * PV; ++j) run_sum[i][j] = izero();
        const int64_t b1 = (r + 1) * SUPER < blocks ? (r + 1) * SUPER : blocks;
        for (int64_t b = r * SUPER; b < b1; ++b) {
            vint factor[NP * PV];
            const uint8_t* rows[NP];
            for (int j = 0; j < NP; ++j) {
                const int64_t block = (p + j) * blocks + b;
                rows[j] = w4->w + block * 16 * 16;
                for (int line = 0; line < 4; ++line)  // the block row 2 KiB ahead
                    _mm_prefetch((const char*)(rows[j] + 2048 + 64 * line), _MM_HINT_T0);
                for (int v = 0; v < PV; ++v) {
                    const vint scales = sub_scales(w4->sub + block * 16, v);
                    // both lanes of a column's pair as int16, or the column's int32 lane
                    factor[j * PV + v] = scale_sums ? scales : ior(scales, ishl16(scales));
                }
            }
            vint acc[U][MR][NP * PV];
            for (int u = 0; u < U; ++u)
                for (int i = 0; i < MR; ++i)
                    for (int j = 0; j < NP * PV; ++j) acc[u][i][j] = izero();
            for (int pair = 0; pair < 16; pair += U)  // U divides 16
                for (int u = 0; u < U; ++u) {
                    vint wv[NP * PV];
                    for (int j = 0; j < NP; ++j) {
                        const __m128i bytes =
                            _mm_loadu_si128((const __m128i*)(rows[j] + (pair + u) * 16));
                        for (int v = 0; v < PV; ++v) {
                            wv[j * PV + v] = unpack_piece(bytes, v);
                            if (!scale_sums) wv[j * PV + v] = imul(wv[j * PV + v], factor[j * PV + v]);
                        }
                    }
                    for (int i = 0; i < MR; ++i) {
                        const vint xv = pair_set1(x + i * K + b * 32 + 2 * (pair + u));
                        for (int j = 0; j < NP * PV; ++j)
                            acc[u][i][j] = dot_add(acc[u][i][j], xv, wv[j]);
                    }
                }
            for (int i = 0; i < MR; ++i)
                for (int j = 0; j < NP * PV; ++j) {
                    vint sum = acc[0][i][j];
                    for (int u = 1; u < U; ++u) sum = iadd32(sum, acc[u][i][j]);
                    if (scale_sums) sum = imul32(sum, factor[j]);
                    run_sum[i][j] = iadd32(run_sum[i][j], sum);
                }
        }
        for (int j = 0; j < NP * PV; ++j) {
            const vfloat sv = vload(w4->scale + ((p + j / PV) * runs + r) * PANEL + (j % PV) * VF);
            for (int i = 0; i < MR; ++i)
                vstore(total[i][j], vfma(to_float(run_sum[i][j]), sv, vload(total[i][j])));
        }
    }
    for (int i = 0; i < MR; ++i)
        for (int j = 0; j < NP * PV; ++j)
            store_sums(op, m + i, p * PANEL + j * VF, vload(total[i][j]));
}

// Rows m0..m0+count of x against NP panels from p: tiles of PANEL_MR rows, then the rest in one.
template <int NP, typename X, typename W>
inline void panel_rows(const Linear& op, const X* x, int64_t m0, int64_t count,
                       const W* panels, int64_t p) {
    constexpr int MR = std::is_same_v<W, float> ? PANEL_MR : PANEL_MR_I8;
    int64_t m = m0;
    for (; m + MR <= m0 + count; m += MR) panel_tile<MR, NP, 1>(op, x, m, panels, p);
    switch (m0 + count - m) {
        case 1: return panel_tile<1, NP, 4 / (NP * PV)>(op, x, m, panels, p);
        case 2: return panel_tile<2, NP, 2>(op, x, m, panels, p);
        case 3: return panel_tile<3, NP, 1>(op, x, m, panels, p);
        case 4: return panel_tile<4, NP, 1>(op, x, m, panels, p);
        case 5: return panel_tile<5, NP, 1>(op, x, m, panels, p);
#if TL_AVX512
        case 6: return panel_tile<6, NP, 1>(op, x, m, panels, p);
        case 7: return panel_tile<7, NP, 1>(op, x, m, panels, p);
        case 8: return panel_tile<8, NP, 1>(op, x, m, panels, p);
        case 9: return panel_tile<9, NP, 1>(op, x, m, panels, p);
        case 10: return panel_tile<10, NP, 1>(op, x, m, panels, p);
        case 11: return panel_tile<11, NP, 1>(op, x, m, panels, p);
        case 12: return panel_tile<12, NP, 1>(op, x, m, panels, p);
        case 13: return panel_tile<13, NP, 1>(op, x, m, panels, p);
#endif
        default: return;
    }
}

// Every row of x against every panel. Panels per task: 4 (64 w rows) for a few rows of x, as
// many tasks as threads can share; a tile's NP for long prompt chunks, whose rows go through
// each panel in blocks of X_BLOCK so that the panel stays in L2 while they pass.
template <typename X, typename W>
void panel_linear(const Linear& op, const X* x, int64_t M, const W* panels, int nthreads) {
    const int64_t count = (op.N + PANEL - 1) / PANEL;
    constexpr int64_t X_BLOCK = 96;
    const int64_t per = M > X_BLOCK ? PANEL_NP : 4;
    parallel_tasks((count + per - 1) / per, nthreads, [&](int64_t t) {
        const int64_t p1 = (t + 1) * per < count ? (t + 1) * per : count;
        for (int64_t m = 0; m < M; m += X_BLOCK) {
            const int64_t rows = M - m < X_BLOCK ? M - m : X_BLOCK;
            int64_t p = t * per;
            for (; p + PANEL_NP <= p1; p += PANEL_NP)
                panel_rows<PANEL_NP>(op, x, m, rows, panels, p);
            for (; p < p1; ++p) panel_rows<1>(op, x, m, rows, panels, p);
        }
    });
}

void linear(const float* x, int64_t M, int64_t K, const float* panels, int64_t N,
            const float* bias, float* y, int nthreads, bool accumulate = false) {
    panel_linear(Linear{K, N, nullptr, nullptr, bias, y, accumulate}, x, M, panels, nthreads);
}

// Integer weights meet x rounded to int16 rows (x_q) with a scale per row, in this thread's
// buffers; rows `stride` apart, the values past K zero (int8 reads whole pairs).
struct QuantizedRows {
    const int16_t* x;
    const float* scale;
};

QuantizedRows quantize_in_buffers(const float* x, int64_t M, int64_t K, int64_t stride) {
    thread_local std::vector<int16_t> xq;
    thread_local std::vector<float> row_scale;
    xq.resize(M * stride);
    row_scale.resize(M);
    quantize_rows(x, M, K, xq.data(), row_scale.data(), stride);
    for (int64_t m = 0; m < M; ++m)
        for (int64_t k = K; k < stride; ++k) xq[m * stride + k] = 0;
    return {xq.data(), row_scale.data()};
}

void linear(const float* x, int64_t M, int64_t K, const int8_t* panels, int64_t N,
            const float* scale, const float* bias, float* y, int nthreads,
            bool accumulate = false) {
    const QuantizedRows q = quantize_in_buffers(x, M, K, K + (K & 1));
    panel_linear(Linear{K, N, scale, q.scale, bias, y, accumulate}, q.x, M, panels, nthreads);
}

void linear(const float* x, int64_t M, int64_t K, const Int4& w, int64_t N, const float* bias,
            float* y, int nthreads, bool accumulate = false) {
    const QuantizedRows q = quantize_in_buffers(x, M, K, K);  // K: a multiple of 32
    panel_linear(Linear{K, N, nullptr, q.scale, bias, y, accumulate}, q.x, M, &w, nthreads);
}

inline float dot(const float* a, const float* b, int64_t d) {
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum(acc);
    for (; i < d; ++i) s += a[i] * b[i];
    return s;
}

// e^x for x <= 0, 8 at a time: x = n ln2 + r with |r| <= ln2 / 2, e^r by its Taylor polynomial
// to r^7 (relative error < 2e-7, about expf's), 2^n put into the exponent bits. x < -87 gives
// 0 (below the smallest normal float; softmax terms that small do not count).
inline __m256 exp_nonpositive(__m256 x) {
    const __m256 low = _mm256_set1_ps(-87.f);
    const __m256 too_small = _mm256_cmp_ps(x, low, _CMP_LT_OQ);
    x = _mm256_max_ps(x, low);
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);  // ln2, split in two
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.f / 5040);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 720));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 120));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 24));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f / 6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.f));
    const __m256i exponent = _mm256_slli_epi32(_mm256_cvtps_epi32(n), 23);
    const __m256 e = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_castps_si256(p), exponent));
    return _mm256_andnot_ps(too_small, e);
}

// g[i] = silu(g[i]) * u[i] = g / (1 + e^-g) * u, 8 at a time. e = e^-|g| <= 1 keeps the
// exponent non-positive: for g < 0, g / (1 + e^-g) = g * e / (1 + e).
void silu_mul(float* g, const float* u, int64_t n) {
    const __m256 one = _mm256_set1_ps(1.f), sign = _mm256_set1_ps(-0.f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 e = exp_nonpositive(_mm256_or_ps(x, sign));  // e^-|x|
        const __m256 negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
        const __m256 num = _mm256_blendv_ps(x, _mm256_mul_ps(x, e), negative);
        const __m256 y = _mm256_div_ps(num, _mm256_add_ps(one, e));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(y, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; ++i) g[i] = g[i] / (1.f + expf(-g[i])) * u[i];
}

// The first index of the largest of x[0..n) and its log-softmax, -log(sum(e^(x - max))). A NaN
// anywhere: the first NaN's index and NaN (torch's arg-max counts NaN as the largest).
void greedy_row(const float* x, int64_t n, int64_t* token, float* log_prob) {
    // Per lane: the largest value and the index where it first occurred (strictly greater
    // replaces, so ties keep the earlier index); then the smallest such index across lanes.
    __m256 top8 = _mm256_set1_ps(-INFINITY), nan8 = _mm256_setzero_ps();
    __m256i at8 = _mm256_setzero_si256(), index8 = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i eight = _mm256_set1_epi32(8);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 greater = _mm256_cmp_ps(v, top8, _CMP_GT_OQ);
        top8 = _mm256_blendv_ps(top8, v, greater);
        at8 = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(at8),
                                                   _mm256_castsi256_ps(index8), greater));
        nan8 = _mm256_or_ps(nan8, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        index8 = _mm256_add_epi32(index8, eight);
    }
    float tops[8];
    int32_t ats[8];
    _mm256_storeu_ps(tops, top8);
    _mm256_storeu_si256((__m256i*)ats, at8);
    float top = -INFINITY;
    int64_t at = 0;
    for (int l = 0; l < 8; ++l)
        if (tops[l] > top || (tops[l] == top && ats[l] < at)) top = tops[l], at = ats[l];
    bool nan = _mm256_movemask_ps(nan8) != 0;
    for (int64_t t = i; t < n; ++t) {
        nan = nan || x[t] != x[t];
        if (x[t] > top) top = x[t], at = t;
    }
    if (nan) {
        for (at = 0; x[at] == x[at]; ++at) {}
        *token = at;
        *log_prob = NAN;
        return;
    }
    *token = at;
    if (top == -INFINITY) {  // all banned: torch's log_softmax gives NaN too
        *log_prob = NAN;
        return;
    }
    const __m256 top_b = _mm256_set1_ps(top);
    __m256 sum8 = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8)
        sum8 = _mm256_add_ps(sum8, exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(x + i), top_b)));
    float sum = hsum(sum8);
    for (; i < n; ++i) sum += expf(x[i] - top);
    *log_prob = -logf(sum);
}

inline void prefetch_head(const float* p, int64_t n) {
    for (int64_t i = 0; i < n; i += 16) _mm_prefetch((const char*)(p + i), _MM_HINT_T0);
}

// Scores of the group's G query heads against 4 keys at once: 4 * G independent sums keep the
// FMA units busy (one sum at a time waits on each FMA's latency).
template <int G>
inline void scores4(const float* q, const float* const keys[4], int64_t d, float scale,
                    float* out, int64_t stride) {
    __m256 acc[G][4];
    for (int g = 0; g < G; ++g)
        for (int t = 0; t < 4; ++t) acc[g][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= d; i += 8) {
        __m256 k[4];
        for (int t = 0; t < 4; ++t) k[t] = _mm256_loadu_ps(keys[t] + i);
        for (int g = 0; g < G; ++g) {
            const __m256 qv = _mm256_loadu_ps(q + g * d + i);
            for (int t = 0; t < 4; ++t) acc[g][t] = _mm256_fmadd_ps(qv, k[t], acc[g][t]);
        }
    }
    for (int g = 0; g < G; ++g)
        for (int t = 0; t < 4; ++t) {
            float sum = hsum(acc[g][t]);
            for (int64_t j = i; j < d; ++j) sum += q[g * d + j] * keys[t][j];
            out[g * stride + t] = sum * scale;
        }
}

inline void scores_any(const float* q, int64_t group, const float* const keys[4], int count,
                       int64_t d, float scale, float* out, int64_t stride) {
    if (count == 4) {
        switch (group) {  // the usual GQA groups: Llama 3 (4), SmolLM2 (3), 70B (8), MHA (1)
            case 1: return scores4<1>(q, keys, d, scale, out, stride);
            case 2: return scores4<2>(q, keys, d, scale, out, stride);
            case 3: return scores4<3>(q, keys, d, scale, out, stride);
            case 4: return scores4<4>(q, keys, d, scale, out, stride);
            default: break;
        }
    }
    for (int64_t g = 0; g < group; ++g)
        for (int t = 0; t < count; ++t) out[g * stride + t] = dot(q + g * d, keys[t], d) * scale;
}

// One (row, KV head) over n positions (keys[t], values[t]: each position's K and V), for the
// group's query heads qg [group, d]: o[g] = sum_t e^(s_t - top[g]) v_t, divided by
// total[g] = sum_t e^(s_t - top[g]) when `normalize` (the whole context), where
// s_t = q.k_t * scale and top[g] = max_t s_t.
void attend(const float* qg, int64_t group, const float* const* keys, const float* const* values,
            int64_t n, int64_t d, float scale, bool normalize, float* o, float* top,
            float* total) {
    const int64_t padded = (n + 7) / 8 * 8;
    std::vector<float> scores(group * padded, -INFINITY);  // [group, padded]
    for (int64_t t = 0; t < n; t += 4) {
        const int count = n - t < 4 ? (int)(n - t) : 4;
        for (int64_t ahead = t + 8; ahead < t + 12 && ahead < n; ++ahead)
            prefetch_head(keys[ahead], d);  // cached K/V is strided: no hardware prefetch
        scores_any(qg, group, keys + t, count, d, scale, scores.data() + t, padded);
    }
    for (int64_t g = 0; g < group; ++g) {
        float* p = scores.data() + g * padded;
        float peak = -INFINITY;
        for (int64_t t = 0; t < n; ++t) peak = p[t] > peak ? p[t] : peak;
        __m256 sum = _mm256_setzero_ps();
        for (int64_t t = 0; t < padded; t += 8) {  // padding: exp(-inf) = 0
            const __m256 e = exp_nonpositive(_mm256_sub_ps(_mm256_loadu_ps(p + t), _mm256_set1_ps(peak)));
            _mm256_storeu_ps(p + t, e);
            sum = _mm256_add_ps(sum, e);
        }
        top[g] = peak;
        total[g] = hsum(sum);
        const __m256 factor = _mm256_set1_ps(normalize ? 1.f / total[g] : 1.f);
        // o = sum_t p_t v_t: 64 values of the head at a time held in 8 registers
        float* og = o + g * d;
        int64_t i0 = 0;
        for (; i0 + 64 <= d; i0 += 64) {
            __m256 acc[8];
            for (int c = 0; c < 8; ++c) acc[c] = _mm256_setzero_ps();
            for (int64_t t = 0; t < n; ++t) {
                if (t + 4 < n) prefetch_head(values[t + 4] + i0, d - i0 < 64 ? d - i0 : 64);
                const __m256 w = _mm256_set1_ps(p[t]);
                for (int c = 0; c < 8; ++c)
                    acc[c] = _mm256_fmadd_ps(w, _mm256_loadu_ps(values[t] + i0 + 8 * c), acc[c]);
            }
            for (int c = 0; c < 8; ++c)
                _mm256_storeu_ps(og + i0 + 8 * c, _mm256_mul_ps(acc[c], factor));
        }
        for (int64_t i = i0; i < d; ++i) {  // head sizes that are not a multiple of 64
            float sum_i = 0.f;
            for (int64_t t = 0; t < n; ++t) sum_i += p[t] * values[t][i];
            og[i] = normalize ? sum_i / total[g] : sum_i;
        }
    }
}

// Each (row, KV head) reads its cached K and V once for all the query heads of its group. With
// fewer (row, KV head) pairs than twice the threads (a lone row: SmolLM2 has 3 KV heads), each
// context is split into parts of at least MIN_PART positions, attended in parallel and merged
// by their maxima (the split-K of flash decoding), so no thread waits on another's head.
constexpr int64_t MIN_PART = 64;

void decode_attention(const float* q, int64_t B, int64_t H, int64_t KV, int64_t d,
                      const float* k_cache, const float* v_cache, const int32_t* tables,
                      int64_t width, const int32_t* contexts, int64_t block_size,
                      float softmax_scale, float* out, int nthreads) {
    const int64_t group = H / KV, pairs = B * KV;
    const int64_t parts = pairs >= 2 * nthreads ? 1 : (2 * nthreads + pairs - 1) / pairs;
    const int64_t stride = group * (d + 2);  // per part: o [group, d], top [group], total [group]
    std::vector<float> partial(pairs * parts * stride);
#pragma omp parallel for num_threads(nthreads) schedule(dynamic) if (nthreads > 1)
    for (int64_t task = 0; task < pairs * parts; ++task) {
        const int64_t bk = task / parts, part = task % parts, b = bk / KV, kv = bk % KV;
        const int64_t n = contexts[b];
        int64_t per = (n + parts - 1) / parts;
        per = per < MIN_PART ? MIN_PART : per;
        const int64_t t0 = part * per, t1 = t0 + per < n ? t0 + per : n;
        float* o = partial.data() + task * stride;
        float* top = o + group * d;
        float* total = top + group;
        if (parts == 1) o = out + (b * H + kv * group) * d;  // the whole context: the output
        if (t0 >= t1) {  // a short context needs fewer parts: this one counts for nothing
            for (int64_t g = 0; g < group; ++g) top[g] = -INFINITY, total[g] = 0.f;
            for (int64_t i = 0; i < group * d; ++i) o[i] = 0.f;
            continue;
        }
        const int32_t* table = tables + b * width;
        std::vector<const float*> keys(t1 - t0), values(t1 - t0);
        for (int64_t t = t0; t < t1; ++t) {
            const int64_t slot = (int64_t)table[t / block_size] * block_size + t % block_size;
            keys[t - t0] = k_cache + (slot * KV + kv) * d;
            values[t - t0] = v_cache + (slot * KV + kv) * d;
        }
        const float* qg = q + (b * H + kv * group) * d;  // the group's heads are adjacent
        attend(qg, group, keys.data(), values.data(), t1 - t0, d, softmax_scale, parts == 1, o,
               top, total);
    }
    if (parts == 1) return;
    for (int64_t bk = 0; bk < pairs; ++bk) {
        const int64_t b = bk / KV, kv = bk % KV;
        const float* first = partial.data() + bk * parts * stride;
        for (int64_t g = 0; g < group; ++g) {
            float peak = -INFINITY;
            for (int64_t p = 0; p < parts; ++p) {
                const float top = first[p * stride + group * d + g];
                peak = top > peak ? top : peak;
            }
            float sum = 0.f;
            std::vector<float> weight(parts);
            for (int64_t p = 0; p < parts; ++p) {
                const float* part = first + p * stride;
                weight[p] = part[group * d + g] == -INFINITY ? 0.f : expf(part[group * d + g] - peak);
                sum += weight[p] * part[group * d + group + g];
            }
            float* o = out + (b * H + kv * group + g) * d;
            for (int64_t i = 0; i < d; ++i) {
                float v = 0.f;
                for (int64_t p = 0; p < parts; ++p) v += weight[p] * first[p * stride + g * d + i];
                o[i] = v / sum;
            }
        }
    }
}

// y = x / sqrt(mean(x^2) + eps) * weight, per row of n values.
void rms_norm(const float* x, const float* weight, int64_t rows, int64_t n, float eps, float* y) {
    for (int64_t r = 0; r < rows; ++r) {
        const float* xr = x + r * n;
        const float inv = 1.f / sqrtf(dot(xr, xr, n) / (float)n + eps);
        for (int64_t i = 0; i < n; ++i) y[r * n + i] = xr[i] * inv * weight[i];
    }
}

}  // namespace

// One decoder layer's weights, as weights.py's LayerWeights holds them (fused q/k/v and
// gate/up); w_* are fp32, int8 (then s_* are the per-row scales) or int4 (packed as Int4
// reads them, u_* its block scales and s_* its run scales); b_* may be null.
enum WeightKind : int64_t { FP32 = 0, INT8 = 1, INT4 = 2 };

struct LayerC {
    const float* input_norm;
    const float* post_norm;
    const void* w_qkv; const float* s_qkv; const float* b_qkv; const uint8_t* u_qkv;
    const void* w_o; const float* s_o; const float* b_o; const uint8_t* u_o;
    const void* w_gate_up; const float* s_gate_up; const float* b_gate_up;
    const uint8_t* u_gate_up;
    const void* w_down; const float* s_down; const float* b_down; const uint8_t* u_down;
    int64_t kind;  // WeightKind
};

// A step of B tokens, shapes of the model. Each token attends like a decode row: its own
// block table and context (the token of a prompt chunk at position p attends to positions
// 0..p). All B tokens' K/V are written before any attends, so a chunk sees its own tokens.
struct StepC {
    int64_t B, hidden, heads, kv_heads, head_dim, intermediate;
    float eps, softmax_scale;
    const float* cos;       // [B, head_dim] at each token's position
    const float* sin;
    const int64_t* slots;   // [B] cache slot of each token's new K/V
    const int32_t* tables;  // [B, width] block ids
    int64_t width, block_size;
    const int32_t* contexts;  // [B] positions attended, the new one included
    int nthreads;
};

namespace {

void layer_linear(const StepC& s, const float* x, int64_t K, const void* w, const float* scale,
                  const float* bias, const uint8_t* sub, int64_t N, float* y, bool accumulate,
                  int64_t kind) {
    if (kind == INT4)
        linear(x, s.B, K, Int4{(const uint8_t*)w, sub, scale}, N, bias, y, s.nthreads,
               accumulate);
    else if (kind == INT8)
        linear(x, s.B, K, (const int8_t*)w, N, scale, bias, y, s.nthreads, accumulate);
    else
        linear(x, s.B, K, (const float*)w, N, bias, y, s.nthreads, accumulate);
}

// Rotate-half RoPE (transformers' Llama convention) of `heads` vectors of d values, in place.
void rope(float* v, int64_t heads, int64_t d, const float* cos, const float* sin) {
    const int64_t half = d / 2;
    for (int64_t h = 0; h < heads; ++h) {
        float* x = v + h * d;
        for (int64_t i = 0; i < half; ++i) {
            const float a = x[i], b = x[i + half];
            x[i] = a * cos[i] - b * sin[i];
            x[i + half] = b * cos[i + half] + a * sin[i + half];
        }
    }
}

}  // namespace

extern "C" {

// x [B, hidden], the residual stream, updated in place: the whole layer for a step of B tokens,
// K/V of the new tokens written into this layer's cache planes [slots, KV, d].
static void tl_decoder_layer(const LayerC* w, const StepC* step, float* x, float* k_cache,
                             float* v_cache) {
    const StepC& s = *step;
    const int64_t B = s.B, hidden = s.hidden, d = s.head_dim, H = s.heads, KV = s.kv_heads;
    const int64_t qkv_rows = (H + 2 * KV) * d, inter = s.intermediate;
    thread_local std::vector<float> buffer;
    buffer.resize(B * (hidden + qkv_rows + 2 * H * d + 2 * inter));
    float* normed = buffer.data();
    float* qkv = normed + B * hidden;
    float* attn = qkv + B * qkv_rows;
    float* gate_up = attn + B * H * d;
    float* q = gate_up + B * 2 * inter;  // the rotated queries, [B, H, d] for the attention

    rms_norm(x, w->input_norm, B, hidden, s.eps, normed);
    layer_linear(s, normed, hidden, w->w_qkv, w->s_qkv, w->b_qkv, w->u_qkv, qkv_rows, qkv, false,
                 w->kind);
    for (int64_t b = 0; b < B; ++b) {
        float* row = qkv + b * qkv_rows;
        rope(row, H + KV, d, s.cos + b * d, s.sin + b * d);  // q and k heads are adjacent
        for (int64_t i = 0; i < H * d; ++i) q[b * H * d + i] = row[i];
        const int64_t slot = s.slots[b];
        for (int64_t i = 0; i < KV * d; ++i) {
            k_cache[slot * KV * d + i] = row[H * d + i];
            v_cache[slot * KV * d + i] = row[(H + KV) * d + i];
        }
    }
    decode_attention(q, B, H, KV, d, k_cache, v_cache, s.tables, s.width, s.contexts,
                     s.block_size, s.softmax_scale, attn, s.nthreads);
    layer_linear(s, attn, H * d, w->w_o, w->s_o, w->b_o, w->u_o, hidden, x, true, w->kind);

    rms_norm(x, w->post_norm, B, hidden, s.eps, normed);
    layer_linear(s, normed, hidden, w->w_gate_up, w->s_gate_up, w->b_gate_up, w->u_gate_up,
                 2 * inter, gate_up, false, w->kind);
    for (int64_t b = 0; b < B; ++b)  // silu(gate) * up, into the gate half
        silu_mul(gate_up + b * 2 * inter, gate_up + b * 2 * inter + inter, inter);
    // down reads rows of `inter` values spaced 2 * inter apart: compact them first
    for (int64_t b = 1; b < B; ++b)
        for (int64_t i = 0; i < inter; ++i) gate_up[b * inter + i] = gate_up[b * 2 * inter + i];
    layer_linear(s, gate_up, inter, w->w_down, w->s_down, w->b_down, w->u_down, hidden, x, true,
                 w->kind);
}

// Every decoder layer of a step, in order: one ctypes call per step instead of one per layer,
// so the GIL is given up and taken back once (in tritonserver the stub's response sender
// thread wants it too) and no Python runs between layers.
void tl_decoder_layers(const LayerC* layers, int64_t count, const StepC* step, float* x,
                       float* const* k_caches, float* const* v_caches) {
    for (int64_t i = 0; i < count; ++i)
        tl_decoder_layer(layers + i, step, x, k_caches[i], v_caches[i]);
}

void tl_linear_f32(const float* x, int64_t M, int64_t K, const float* w, int64_t N,
                   const float* bias, float* y, int nthreads) {
    linear(x, M, K, w, N, bias, y, nthreads);
}

void tl_linear_i8(const float* x, int64_t M, int64_t K, const int8_t* w, const float* scale,
                  int64_t N, const float* bias, float* y, int nthreads) {
    linear(x, M, K, w, N, scale, bias, y, nthreads);
}

// w: int4 packed as Int4 reads it, [N, K / 2] bytes (K a multiple of 32); sub: [N, K / 32]
// block scales 1..63; scale: [N, ceil(K / 32 / 8)].
void tl_linear_i4(const float* x, int64_t M, int64_t K, const uint8_t* w, const uint8_t* sub,
                  const float* scale, int64_t N, const float* bias, float* y, int nthreads) {
    linear(x, M, K, Int4{w, sub, scale}, N, bias, y, nthreads);
}

// Greedy choice for each of R rows of logits [R, V]: token[r] and its log-probability.
void tl_greedy(const float* logits, int64_t R, int64_t V, int64_t* token, float* log_prob) {
    for (int64_t r = 0; r < R; ++r) greedy_row(logits + r * V, V, token + r, log_prob + r);
}

// q, out: [B, H, d]. k_cache, v_cache: one layer's planes, [slots, KV, d] with slot =
// block * block_size + offset. tables: [B, width] block ids; contexts: [B] positions to attend.
void tl_decode_attention(const float* q, int64_t B, int64_t H, int64_t KV, int64_t d,
                         const float* k_cache, const float* v_cache, const int32_t* tables,
                         int64_t width, const int32_t* contexts, int64_t block_size,
                         float softmax_scale, float* out, int nthreads) {
    decode_attention(q, B, H, KV, d, k_cache, v_cache, tables, width, contexts, block_size,
                     softmax_scale, out, nthreads);
}

}  // extern "C"
