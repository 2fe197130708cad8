// The bf16 products on ARMv8.6 BF16 (Graviton 3/4, Apple M2 and later, Neoverse V1/N2): BFDOT
// multiplies four pairs of bf16 by one broadcast pair and adds both products to four float32 sums,
// as VDPBF16PS does sixteen. Register blocking 8 rows × 8 columns: per pair of K, two vectors of B's
// panel (8 columns), two of A (8 rows), 16 BFDOTs into 16 accumulators. A comes in the 8-row pair
// layout of haze_gemm_pack_bf16; B is rounded (nearest even) into 256-deep panels of 8 columns.
// Tested under qemu-aarch64 (`make test-arm64`), which runs BFDOT as the architecture defines it.

#include "haze_kernels.h"
#include "haze_gemm_bf16.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP2_BF16
#define HWCAP2_BF16 (1 << 14)
#endif
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif

enum { ROWS = 8, COLUMNS = 8, DEPTH = 256 };

#define ARMBF16 __attribute__((target("bf16")))

int haze_arm_bf16_usable(void) {
#if defined(__linux__)
    return (getauxval(AT_HWCAP2) & HWCAP2_BF16) != 0;
#elif defined(__APPLE__)
    int value = 0;
    size_t size = sizeof value;
    return sysctlbyname("hw.optional.arm.FEAT_BF16", &value, &size, NULL, 0) == 0 && value != 0;
#else
    return 0;
#endif
}

// bf16 bits of four floats (in the low halves), rounded to nearest even.
static inline uint32x4_t round_bf16(float32x4_t x) {
    const uint32x4_t u = vreinterpretq_u32_f32(x);
    const uint32x4_t odd = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1));
    return vshrq_n_u32(vaddq_u32(u, vaddq_u32(vdupq_n_u32(0x7FFF), odd)), 16);
}

// panel[q · 8 + j] = (B[2q, j], B[2q + 1, j]) as bf16 pairs for `depth` rows and `columns` ≤ 8
// columns; zero past them.
static void pack_panel(const float *b, long ldb, long depth, long columns, uint32_t *panel) {
    for (long q = 0; 2 * q < depth; q++) {
        const float *r0 = b + 2 * q * ldb, *r1 = r0 + ldb;
        const int second = 2 * q + 1 < depth;
        if (columns == COLUMNS) {
            for (int h = 0; h < 2; h++) {
                const uint32x4_t lo = round_bf16(vld1q_f32(r0 + 4 * h));
                const uint32x4_t hi = second ? round_bf16(vld1q_f32(r1 + 4 * h)) : vdupq_n_u32(0);
                vst1q_u32(panel + q * COLUMNS + 4 * h, vorrq_u32(lo, vshlq_n_u32(hi, 16)));
            }
            continue;
        }
        for (long j = 0; j < COLUMNS; j++)
            panel[q * COLUMNS + j] = j < columns ? bf16_bits(r0[j]) | (second ? bf16_bits(r1[j]) << 16 : 0) : 0;
    }
}

// Rows r and r + 4 of the block take lane `lane` of the two A vectors.
#define BFDOT_ROWS(lane)                                                       \
    acc[lane][0] = vbfdotq_laneq_f32(acc[lane][0], b0, a0, lane);              \
    acc[lane][1] = vbfdotq_laneq_f32(acc[lane][1], b1, a0, lane);              \
    acc[lane + 4][0] = vbfdotq_laneq_f32(acc[lane + 4][0], b0, a1, lane);      \
    acc[lane + 4][1] = vbfdotq_laneq_f32(acc[lane + 4][1], b1, a1, lane)

static inline ARMBF16 void block_8x8(const uint32_t *restrict a, const uint32_t *restrict panel, float *restrict c,
                                     long ldc, long pairs, long rows, long columns, int accumulate) {
    float32x4_t acc[ROWS][2];
    for (int r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = vdupq_n_f32(0);
    for (long q = 0; q < pairs; q++) {
        const bfloat16x8_t b0 = vreinterpretq_bf16_u32(vld1q_u32(panel + q * COLUMNS));
        const bfloat16x8_t b1 = vreinterpretq_bf16_u32(vld1q_u32(panel + q * COLUMNS + 4));
        const bfloat16x8_t a0 = vreinterpretq_bf16_u32(vld1q_u32(a + q * ROWS));
        const bfloat16x8_t a1 = vreinterpretq_bf16_u32(vld1q_u32(a + q * ROWS + 4));
        BFDOT_ROWS(0);
        BFDOT_ROWS(1);
        BFDOT_ROWS(2);
        BFDOT_ROWS(3);
    }
    for (long r = 0; r < rows; r++) {
        float *row = c + r * ldc;
        if (columns == COLUMNS) {
            if (accumulate) {
                acc[r][0] = vaddq_f32(acc[r][0], vld1q_f32(row));
                acc[r][1] = vaddq_f32(acc[r][1], vld1q_f32(row + 4));
            }
            vst1q_f32(row, acc[r][0]);
            vst1q_f32(row + 4, acc[r][1]);
            continue;
        }
        float sums[COLUMNS];
        vst1q_f32(sums, acc[r][0]);
        vst1q_f32(sums + 4, acc[r][1]);
        for (long j = 0; j < columns; j++) row[j] = accumulate ? row[j] + sums[j] : sums[j];
    }
}

ARMBF16 void haze_gemm_packed_bf16_arm(const uint32_t *packed, const float *b, long ldb, float *c, long ldc, long m, long n,
                                       long k, int accumulate) {
    uint32_t panel[DEPTH / 2 * COLUMNS] __attribute__((aligned(16)));
    const long pairs = (k + 1) / 2;
    for (long p0 = 0; p0 < k; p0 += DEPTH) {
        const long depth = k - p0 < DEPTH ? k - p0 : DEPTH;
        for (long n0 = 0; n0 < n; n0 += COLUMNS) {
            const long columns = n - n0 < COLUMNS ? n - n0 : COLUMNS;
            pack_panel(b + p0 * ldb + n0, ldb, depth, columns, panel);
            for (long m0 = 0; m0 < m; m0 += ROWS)
                block_8x8(packed + m0 * pairs + p0 / 2 * ROWS, panel, c + m0 * ldc + n0, ldc, (depth + 1) / 2,
                          m - m0 < ROWS ? m - m0 : ROWS, columns, accumulate || p0 > 0);
        }
    }
}
#endif
