// C [M, N] = A [M, K] · B [K, N] (or C += A·B) in bfloat16 with float32 accumulation, for CPUs with
// AVX512_BF16 (Cooper Lake, Sapphire Rapids, AMD Zen 4 and later): VDPBF16PS multiplies 16 pairs
// of bf16 and adds both products to 16 float32 accumulators, twice the multiply-adds of an FMA.
// The counterpart of haze_gemm_packed (haze_gemm.c), with the same register blocking (8 rows × 32
// columns) and callers: A is packed once, as pairs of consecutive K (haze_gemm_pack_bf16: from
// haze_gemm_pack's float layout); B stays float32 in place, and each 256-deep panel of 32 columns
// is rounded to bf16 pairs (round to nearest even) into an L1 buffer that serves every 8-row block.
// Inputs are rounded to 8 significant bits; sums keep float32's 24.

#include "haze_kernels.h"
#include "haze_avx512.h"
#include <stddef.h>
#include <string.h>

enum { ROWS = 8, COLUMNS = 32, DEPTH = 256 };

// bf16 of x, rounded to nearest even (finite inputs).
static inline uint32_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

long haze_gemm_packed_bf16_size(long m, long k) { return (m + ROWS - 1) / ROWS * ROWS * ((k + 1) / 2); }

void haze_gemm_pack_bf16(const float *packed, uint32_t *out, long m, long k) {
    // out[(r / 8) · ⌈K/2⌉ · 8 + q · 8 + r % 8] = (A[r, 2q] low half, A[r, 2q + 1] high half, 0 past K).
    const long pairs = (k + 1) / 2;
    for (long r0 = 0; r0 < m; r0 += ROWS)
        for (long q = 0; q < pairs; q++)
            for (long r = 0; r < ROWS; r++) {
                const float lo = packed[r0 * k + 2 * q * ROWS + r];
                const float hi = 2 * q + 1 < k ? packed[r0 * k + (2 * q + 1) * ROWS + r] : 0.0f;
                out[r0 * pairs + q * ROWS + r] = bf16_bits(lo) | bf16_bits(hi) << 16;
            }
}

#if defined(__x86_64__) && defined(__clang__)
#define AVX512BF16 __attribute__((target("avx512f,avx512bf16")))

int haze_gemm_bf16_available(void) { return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16"); }

// 16 lanes of bf16 bits (in the low halves) of 16 floats, rounded to nearest even.
static inline AVX512 __m512i round_bf16(__m512 x) {
    const __m512i u = _mm512_castps_si512(x);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
    return _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7FFF), odd)), 16);
}

// panel[q · 32 + j] = (B[2q, j], B[2q + 1, j]) as bf16 pairs, for `depth` rows and the columns of
// the masks (zero elsewhere and past `depth`).
static inline AVX512 void pack_panel(const float *b, long ldb, long depth, __mmask16 left, __mmask16 right, uint32_t *panel) {
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

AVX512BF16 void haze_gemm_packed_bf16(const uint32_t *packed, const float *b, long ldb, float *c, long ldc, long m, long n,
                                      long k, int accumulate) {
    uint32_t panel[DEPTH / 2 * COLUMNS] __attribute__((aligned(64)));
    const long pairs = (k + 1) / 2;
    for (long p0 = 0; p0 < k; p0 += DEPTH) {
        const long depth = k - p0 < DEPTH ? k - p0 : DEPTH;
        for (long n0 = 0; n0 < n; n0 += COLUMNS) {
            const __mmask16 left = first_lanes(n - n0), right = first_lanes(n - n0 - 16);
            pack_panel(b + p0 * ldb + n0, ldb, depth, left, right, panel);
            for (long m0 = 0; m0 < m; m0 += ROWS)
                block_8x32(packed + m0 * pairs + p0 / 2 * ROWS, panel, c + m0 * ldc + n0, ldc, (depth + 1) / 2,
                           m - m0, left, right, accumulate || p0 > 0);
        }
    }
}
#else
int haze_gemm_bf16_available(void) { return 0; }

// Portable and slow (callers use it only where haze_gemm_bf16_available()); the same rounding.
void haze_gemm_packed_bf16(const uint32_t *packed, const float *b, long ldb, float *c, long ldc, long m, long n, long k,
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
#endif
