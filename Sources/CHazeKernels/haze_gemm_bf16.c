// C [M, N] = A [M, K] · B [K, N] (or C += A·B) in bfloat16 with float32 accumulation, the
// counterpart of haze_gemm_packed (haze_gemm.c) with the same callers: A is packed once, as pairs
// of consecutive K (haze_gemm_pack_bf16 from haze_gemm_pack's float layout, or
// haze_gemm_pack_bf16_rows straight from A's rows, the same words); B stays float32 in
// place and is rounded to bf16 pairs (round to nearest even) as panels of it are read. Inputs are
// rounded to 8 significant bits; sums keep float32's 24.
//
// One switch, chosen once per process from the CPU (haze_gemm_bf16_kernel names it):
// - AMX-BF16 (Sapphire Rapids and later; haze_gemm_bf16_amx.c): 16 × 16 tiles, TDPBF16PS. Built
//   and compile-checked only: no CPU here has AMX, so at first use it must agree with the
//   AVX512_BF16 kernel on a test product, or it is not used (a note on stderr says so).
// - AVX512_BF16 (Cooper Lake, Sapphire Rapids, AMD Zen 4 and later), below: VDPBF16PS multiplies
//   16 pairs of bf16 and adds both products to 16 float32 accumulators, twice the multiply-adds of
//   an FMA. Register blocking 8 rows × 32 columns, as haze_gemm_packed; each 256-deep panel of 32
//   columns of B is rounded into an L1 buffer that serves every 8-row block.
// - ARMv8.6 BF16 (Graviton 3/4, Apple M2 and later; haze_gemm_bf16_arm.c): BFDOT, 8 × 8 blocks.
// - Elsewhere a portable loop with the same rounding (slow: callers use it only where
//   haze_gemm_bf16_available()).

#include "haze_kernels.h"
#include "haze_avx512.h"
#include "haze_gemm_bf16.h"
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

enum { ROWS = 8, COLUMNS = 32, DEPTH = 256 };

static enum bf16_kernel kernel = BF16_PORTABLE;
static pthread_once_t kernel_chosen = PTHREAD_ONCE_INIT;
static void choose_kernel(void);

static enum bf16_kernel current_kernel(void) {
    pthread_once(&kernel_chosen, choose_kernel);
    return kernel;
}

int haze_gemm_bf16_available(void) { return current_kernel() != BF16_PORTABLE; }

const char *haze_gemm_bf16_kernel(void) {
    switch (current_kernel()) {
    case BF16_AMX: return "AMX-BF16";
    case BF16_AVX512: return "AVX512_BF16";
    case BF16_ARM: return "Arm BF16";
    case BF16_PORTABLE: break;
    }
    return NULL;
}

// The 8-row pair layout of every kernel but AMX's.
static long pair_layout_size(long m, long k) { return (m + ROWS - 1) / ROWS * ROWS * ((k + 1) / 2); }

static void pack_pair_layout(const float *packed, uint32_t *out, long m, long k) {
    // out[(r / 8) · ⌈K/2⌉ · 8 + q · 8 + r % 8] = (A[r, 2q] low half, A[r, 2q + 1] high half, 0 past K).
    const long pairs = (k + 1) / 2;
    for (long r0 = 0; r0 < m; r0 += ROWS)
        for (long q = 0; q < pairs; q++)
            for (long r = 0; r < ROWS; r++)
                out[r0 * pairs + q * ROWS + r] = bf16_bits(packed_element(packed + r0 * k, k, r, 2 * q))
                                               | bf16_bits(packed_element(packed + r0 * k, k, r, 2 * q + 1)) << 16;
}

long haze_gemm_packed_bf16_size(long m, long k) {
#if defined(__x86_64__) && defined(__clang__)
    if (current_kernel() == BF16_AMX) return haze_gemm_packed_bf16_amx_size(m, k);
#endif
    return pair_layout_size(m, k);
}

void haze_gemm_pack_bf16(const float *packed, uint32_t *out, long m, long k) {
#if defined(__x86_64__) && defined(__clang__)
    if (current_kernel() == BF16_AMX) {
        haze_gemm_pack_bf16_amx(packed, out, m, k);
        return;
    }
#endif
    pack_pair_layout(packed, out, m, k);
}

int haze_gemm_bf16_packs_rows(void) { return current_kernel() != BF16_AMX; }

void haze_gemm_pack_bf16_rows(const float *a, long lda, uint32_t *out, long m, long k) {
    // The words of pack_pair_layout, read from A's rows: each row's pairs are rounded into a
    // buffer by a loop the compiler vectorises, then stored 8 words apart.
    enum { CHUNK = 256 };
    const long pairs = (k + 1) / 2;
    uint32_t words[CHUNK];
    for (long r0 = 0; r0 < m; r0 += ROWS)
        for (long r = 0; r < ROWS; r++) {
            uint32_t *column = out + r0 * pairs + r;
            const float *row = a + (r0 + r) * lda;
            for (long q0 = 0; q0 < pairs; q0 += CHUNK) {
                const long count = pairs - q0 < CHUNK ? pairs - q0 : CHUNK;
                if (r0 + r >= m) {
                    for (long q = 0; q < count; q++) words[q] = 0;
                } else {
                    const long whole = (k / 2 - q0 < count ? k / 2 - q0 : count);  // pairs with both halves in A
                    for (long q = 0; q < whole; q++)
                        words[q] = bf16_bits(row[2 * (q0 + q)]) | bf16_bits(row[2 * (q0 + q) + 1]) << 16;
                    if (whole < count) words[whole] = bf16_bits(row[k - 1]);  // odd K: the last pair's high half is 0
                }
                for (long q = 0; q < count; q++) column[(q0 + q) * ROWS] = words[q];
            }
        }
}

// Portable and slow, A in the pair layout; the same rounding.
static void gemm_portable(const uint32_t *packed, const float *b, long ldb, float *c, long ldc, long m, long n, long k,
                          int accumulate) {
    const long pairs = (k + 1) / 2;
    for (long r = 0; r < m; r++)
        for (long q = 0; q < n; q++) {
            float sum = accumulate ? c[r * ldc + q] : 0.0f;
            for (long p = 0; p < k; p++) {
                const uint32_t pair = packed[(r / ROWS) * ROWS * pairs + (p / 2) * ROWS + r % ROWS];
                const uint32_t abits = (p % 2 ? pair >> 16 : pair & 0xFFFF) << 16, bbits = bf16_bits(b[p * ldb + q]) << 16;
                float av, bv;
                memcpy(&av, &abits, 4);
                memcpy(&bv, &bbits, 4);
                sum += av * bv;
            }
            c[r * ldc + q] = sum;
        }
}

void haze_gemm_packed_bf16(const uint32_t *packed, const float *b, long ldb, float *c, long ldc, long m, long n, long k,
                           int accumulate) {
    switch (current_kernel()) {
#if defined(__x86_64__) && defined(__clang__)
    case BF16_AMX: haze_gemm_packed_bf16_amx(packed, b, ldb, c, ldc, m, n, k, accumulate); return;
    case BF16_AVX512: haze_gemm_packed_bf16_avx512(packed, b, ldb, c, ldc, m, n, k, accumulate); return;
#endif
#if defined(__aarch64__)
    case BF16_ARM: haze_gemm_packed_bf16_arm(packed, b, ldb, c, ldc, m, n, k, accumulate); return;
#endif
    default: gemm_portable(packed, b, ldb, c, ldc, m, n, k, accumulate); return;
    }
}

#if defined(__x86_64__) && defined(__clang__)
#define AVX512BF16 __attribute__((target("avx512f,avx512bf16")))

// 16 lanes of bf16 bits (in the low halves) of 16 floats, rounded to nearest even.
static inline AVX512 __m512i round_bf16(__m512 x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    return _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), odd)), 16);
}

// B's 32-column panels as bf16 pairs (haze_gemm_bf16.h); the AMX kernel reads them too.
AVX512 void haze_bf16_pack_panel(const float *b, long ldb, long depth, __mmask16 left, __mmask16 right, uint32_t *panel) {
    for (long q = 0; 2 * q < depth; q++) {
        const float *r0 = b + 2 * q * ldb, *r1 = r0 + ldb;
        const int second = 2 * q + 1 < depth;
        for (int h = 0; h < 2; h++) {
            const __mmask16 lanes = h ? right : left;
            const __m512i lo = round_bf16(_mm512_maskz_loadu_ps(lanes, r0 + 16 * h));
            const __m512i hi = second ? round_bf16(_mm512_maskz_loadu_ps(lanes, r1 + 16 * h)) : _mm512_setzero_si512();
            _mm512_storeu_si512(panel + q * COLUMNS + 16 * h, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
    }
}

static inline AVX512BF16 void block_8x32(const uint32_t *restrict a, const uint32_t *restrict panel, float *restrict c,
                                         long ldc, long pairs, long rows, __mmask16 left, __mmask16 right, int accumulate) {
    __m512 acc[ROWS][2];
    for (int r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (long q = 0; q < pairs; q++) {
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(panel + q * COLUMNS), b1 = (__m512bh)_mm512_loadu_si512(panel + q * COLUMNS + 16);
        for (int r = 0; r < ROWS; r++) {
            const __m512bh ar = (__m512bh)_mm512_set1_epi32((int)a[q * ROWS + r]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], ar, b0);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], ar, b1);
        }
    }
    for (int r = 0; r < ROWS; r++) {
        if (r >= rows) break;
        float *row = c + r * ldc;
        if (accumulate) {
            acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_maskz_loadu_ps(left, row));
            acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_maskz_loadu_ps(right, row + 16));
        }
        _mm512_mask_storeu_ps(row, left, acc[r][0]);
        _mm512_mask_storeu_ps(row + 16, right, acc[r][1]);
    }
}

AVX512BF16 void haze_gemm_packed_bf16_avx512(const uint32_t *packed, const float *b, long ldb, float *c, long ldc, long m,
                                             long n, long k, int accumulate) {
    uint32_t panel[DEPTH / 2 * COLUMNS] __attribute__((aligned(64)));
    const long pairs = (k + 1) / 2;
    for (long p0 = 0; p0 < k; p0 += DEPTH) {
        const long depth = k - p0 < DEPTH ? k - p0 : DEPTH;
        for (long n0 = 0; n0 < n; n0 += COLUMNS) {
            const __mmask16 left = first_lanes(n - n0), right = first_lanes(n - n0 - 16);
            haze_bf16_pack_panel(b + p0 * ldb + n0, ldb, depth, left, right, panel);
            for (long m0 = 0; m0 < m; m0 += ROWS)
                block_8x32(packed + m0 * pairs + p0 / 2 * ROWS, panel, c + m0 * ldc + n0, ldc, (depth + 1) / 2,
                           m - m0, left, right, accumulate || p0 > 0);
        }
    }
}
#endif

// AMX where it agrees with AVX512_BF16 on a product with ragged edges and two depth panels.
#if defined(__x86_64__) && defined(__clang__)
static int amx_agrees(void) {
    enum { M = 40, N = 45, K = 300 };
    static float a[M * K], packed[(M + 7) / 8 * 8 * K], b[K * N], expected[M * N], got[M * N];
    uint32_t seed = 12345;
    for (long i = 0; i < M * K; i++) a[i] = (float)((seed = seed * 1664525u + 1013904223u) >> 8) / (1 << 24) - 0.5f;
    for (long i = 0; i < K * N; i++) b[i] = (float)((seed = seed * 1664525u + 1013904223u) >> 8) / (1 << 24) - 0.5f;
    haze_gemm_pack(a, K, packed, M, K);
    uint32_t *pairs = malloc(sizeof(uint32_t) * pair_layout_size(M, K));
    uint32_t *tiles = malloc(sizeof(uint32_t) * haze_gemm_packed_bf16_amx_size(M, K));
    if (!pairs || !tiles) {
        free(pairs);
        free(tiles);
        return 0;
    }
    pack_pair_layout(packed, pairs, M, K);
    haze_gemm_pack_bf16_amx(packed, tiles, M, K);
    haze_gemm_packed_bf16_avx512(pairs, b, N, expected, N, M, N, K, 0);
    haze_gemm_packed_bf16_amx(tiles, b, N, got, N, M, N, K, 0);
    free(pairs);
    free(tiles);
    for (long i = 0; i < M * N; i++)  // sums of 300 products of at most 1/4: float32 order differences ≪ 1e-4
        if (!(fabsf(got[i] - expected[i]) <= 1e-4f)) return 0;
    return 1;
}
#endif

static void choose_kernel(void) {
#if defined(__x86_64__) && defined(__clang__)
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16"))) return;
    kernel = BF16_AVX512;
    if (haze_amx_bf16_usable()) {
        if (amx_agrees()) kernel = BF16_AMX;
        else fprintf(stderr, "haze: the AMX-BF16 products disagree with AVX512_BF16 on this CPU; using AVX512_BF16\n");
    }
#elif defined(__aarch64__)
    if (haze_arm_bf16_usable()) kernel = BF16_ARM;
#endif
}
