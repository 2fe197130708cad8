// C [M, N] = A [M, K] · B [K, N] (or C += A·B) for a left-hand matrix used in many products: the
// transformed weights U[ξ] of a Winograd convolution, against the tiles V[ξ] of every work item.
// A is packed once per convolution (haze_gemm_pack); B and C are read and written in place.
//
// AVX-512 register blocking, 8 rows × 32 columns: per step of K, two 16-float loads of B's row and
// eight broadcasts of A's column feed 16 FMAs into 16 accumulators (8 × 16 for a last panel of 16
// or fewer columns). B is walked in panels of 32 columns × 128 rows (16 KB, L1) that serve every
// 8-row block of A before the next panel; A's packed rows stream from L2. B is packed only where
// its rows would alias in L1 (below); otherwise nothing is packed per call, which is what a BLAS
// call spends much of its time on at the small sizes of a U-Net's lower levels (128 × 128 × 128 at
// 7×7, 64 × 245 × 64 at 14×14: 15–27 % faster than OpenBLAS 0.3.21 there in a single-thread
// harness). With plain loads for full panels (load_b) it also beats OpenBLAS on the 1×1
// convolutions' wide B (N 256–4096) on Intel; the callers choose per shape.

#include "haze_kernels.h"
#include "haze_avx512.h"
#include <stddef.h>
#include <string.h>

enum { ROWS = 8, COLUMNS = 32, DEPTH = 128 };

long haze_gemm_packed_size(long m, long k) { return (m + ROWS - 1) / ROWS * ROWS * k; }

void haze_gemm_pack(const float *a, long lda, float *packed, long m, long k) {
    // packed[(r / 8) · K · 8 + p · 8 + r % 8] = a[r · lda + p] (zero for the rows past M).
    for (long r0 = 0; r0 < m; r0 += ROWS)
        for (long p = 0; p < k; p++)
            for (long r = 0; r < ROWS; r++) {
                const long row = r0 + r;
                packed[r0 * k + p * ROWS + r] = row < m ? a[row * lda + p] : 0.0f;
            }
}

void haze_read_into_cache(const float *x, long count) {
    // One load per 64-byte line, in address order: the prefetchers see one stream and run ahead.
    unsigned bits = 0;
    for (long i = 0; i < count; i += 16) {
        unsigned word;
        memcpy(&word, x + i, sizeof word);
        bits ^= word;
    }
    __asm__ __volatile__("" : : "r"(bits));  // the loads stay: their result is "used"
}

#if defined(__x86_64__) && defined(__clang__)

int haze_gemm_packed_available(void) { return __builtin_cpu_supports("avx512f"); }

// A's element (row r of a block, step p) is a[r · ars + p · acs]: packed, ars = 1 and acs = 8; row-major,
// ars = lda and acs = 1. Rows past `rows` read the last row (their results are not stored).
#define A_AT(r, p) a[((r) < rows ? (r) : rows - 1) * ars + (p) * acs]

// B's 16 floats at `b` under `lanes`; where `full` (a constant at each call, so the compiler makes
// two loops), all 16 by a plain load: on Intel cores a masked 512-bit load takes a vector ALU uop
// beside the load, which competes with the FMAs for their two ports (the L1-resident 8×32 kernel
// ran at 81–84 % of the FMA ceiling with masked loads, 90–94 % without).
static inline __attribute__((always_inline)) AVX512 __m512 load_b(const float *b, __mmask16 lanes, const int full) {
    return full ? _mm512_loadu_ps(b) : _mm512_maskz_loadu_ps(lanes, b);
}

// Packed A (ars = 1, acs = 8) streams through its blocks in address order; every other step
// prefetches the line 32 steps (1 KB) ahead. Where the transformed weights come from memory (a
// sampling run's deeper levels: 36 matrices of up to 512 KB a convolution, far more than L3
// holds), the hardware prefetchers restart at every 4 KB page and the products waited on A.
static inline __attribute__((always_inline)) AVX512 void prefetch_a(const float *a, long ars, long acs, long p) {
    if (acs == ROWS && ars == 1 && (p & 1) == 0) _mm_prefetch((const char *)(a + (p + 32) * ROWS), _MM_HINT_T0);
}

// C[0..rows, 0..32) (=|+=) A-block · B-panel over `depth` steps; columns past the masks untouched.
static inline __attribute__((always_inline)) AVX512 void block_8x32(const float *restrict a, long ars, long acs,
                                                                     const float *restrict b, long ldb, float *restrict c,
                                                                     long ldc, long depth, long rows, __mmask16 left,
                                                                     __mmask16 right, int accumulate, const int full) {
    __m512 acc[ROWS][2];
    for (int r = 0; r < ROWS; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
    for (long p = 0; p < depth; p++) {
        prefetch_a(a, ars, acs, p);
        const __m512 b0 = load_b(b + p * ldb, left, full), b1 = load_b(b + p * ldb + 16, right, full);
        for (int r = 0; r < ROWS; r++) {
            const __m512 ar = _mm512_set1_ps(A_AT(r, p));
            acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
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

// block_8x32 for the last 16 or fewer columns: 8 accumulators, half the work of a masked block_8x32.
static inline __attribute__((always_inline)) AVX512 void block_8x16(const float *restrict a, long ars, long acs,
                                                                     const float *restrict b, long ldb, float *restrict c,
                                                                     long ldc, long depth, long rows, __mmask16 left,
                                                                     int accumulate, const int full) {
    __m512 acc[ROWS];
    for (int r = 0; r < ROWS; r++) acc[r] = _mm512_setzero_ps();
    for (long p = 0; p < depth; p++) {
        prefetch_a(a, ars, acs, p);
        const __m512 b0 = load_b(b + p * ldb, left, full);
        for (int r = 0; r < ROWS; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(A_AT(r, p)), b0, acc[r]);
    }
    for (int r = 0; r < ROWS && r < rows; r++) {
        float *row = c + r * ldc;
        if (accumulate) acc[r] = _mm512_add_ps(acc[r], _mm512_maskz_loadu_ps(left, row));
        _mm512_mask_storeu_ps(row, left, acc[r]);
    }
}
#undef A_AT

// block_8x16 (full) and R ≤ 4 more columns after it, A packed (its 8 rows of a step are 8
// consecutive floats): per step the 16 columns' 8 FMAs as in block_8x16 and one 8-lane FMA per
// extra column (its 8 rows), whose latency the 8 FMAs hide. A masked block_8x32 spent 16 FMAs a
// step on these 16 + R columns (a 7×7 plane's 49 = 32 + 17 took 4 vectors of 16 per row and step;
// now 3 and an eighth). Each element is the same sum in the same order as in the other blocks, so
// the bits are the same.
static inline __attribute__((always_inline)) AVX512 void block_8x16_plus(const float *restrict a, const float *restrict b,
                                                                          long ldb, float *restrict c, long ldc, long depth,
                                                                          long rows, const int R, int accumulate) {
    __m512 acc[ROWS];
    __m256 extra[4];
    for (int r = 0; r < ROWS; r++) acc[r] = _mm512_setzero_ps();
    for (int j = 0; j < R; j++) extra[j] = _mm256_setzero_ps();
    for (long p = 0; p < depth; p++) {
        prefetch_a(a, 1, ROWS, p);
        const float *bp = b + p * ldb, *ap = a + p * ROWS;
        const __m512 b0 = _mm512_loadu_ps(bp);
        for (int r = 0; r < ROWS; r++) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(ap[r]), b0, acc[r]);
        const __m256 column = _mm256_loadu_ps(ap);
        for (int j = 0; j < R; j++) extra[j] = _mm256_fmadd_ps(column, _mm256_broadcast_ss(bp + 16 + j), extra[j]);
    }
    for (int r = 0; r < ROWS && r < rows; r++) {
        float *row = c + r * ldc;
        if (accumulate) acc[r] = _mm512_add_ps(acc[r], _mm512_loadu_ps(row));
        _mm512_storeu_ps(row, acc[r]);
    }
    for (int j = 0; j < R; j++) {
        float lanes[ROWS];
        _mm256_storeu_ps(lanes, extra[j]);
        for (long r = 0; r < rows && r < ROWS; r++) c[r * ldc + 16 + j] = accumulate ? c[r * ldc + 16 + j] + lanes[r] : lanes[r];
    }
}

// The panel B[p0..p0 + depth, n0..n0 + 32) copied to 32 consecutive floats per row (zeros past
// the masks); B's rows from `split` on are second's (see haze_gemm_packed_concatenated).
static inline AVX512 void copy_panel(const float *restrict b, const float *restrict second, long split, long ldb, long p0,
                                     long n0, float *restrict panel, long depth, __mmask16 left, __mmask16 right) {
    for (long p = 0; p < depth; p++) {
        const float *row = p0 + p < split ? b + (p0 + p) * ldb + n0 : second + (p0 + p - split) * ldb + n0;
        _mm512_store_ps(panel + p * COLUMNS, _mm512_maskz_loadu_ps(left, row));
        _mm512_store_ps(panel + p * COLUMNS + 16, _mm512_maskz_loadu_ps(right, row + 16));
    }
}

// C[m0.., n0..n0 + width) (=|+=) one 8-row block of A · one panel of B (`source`, row stride ld) over
// `depth` steps, by the kernel for the panel's width: block_8x32 (full or masked), block_8x16, or,
// A packed, block_8x16_plus for 16 + R columns (R ≤ 4).
static inline __attribute__((always_inline)) AVX512 void panel_block(const float *ablock, long ars, long acs,
                                                                      const float *source, long ld, float *block, long ldc,
                                                                      long depth, long rows, long width, int add) {
    const __mmask16 left = first_lanes(width), right = first_lanes(width - 16);
    const long extra = acs == ROWS && ars == 1 && width > 16 && width <= 20 ? width - 16 : 0;
    if (extra) {
        switch (extra) {
        case 1: block_8x16_plus(ablock, source, ld, block, ldc, depth, rows, 1, add); break;
        case 2: block_8x16_plus(ablock, source, ld, block, ldc, depth, rows, 2, add); break;
        case 3: block_8x16_plus(ablock, source, ld, block, ldc, depth, rows, 3, add); break;
        default: block_8x16_plus(ablock, source, ld, block, ldc, depth, rows, 4, add); break;
        }
    } else if (right == 0xFFFF)
        block_8x32(ablock, ars, acs, source, ld, block, ldc, depth, rows, left, right, add, 1);
    else if (right)
        block_8x32(ablock, ars, acs, source, ld, block, ldc, depth, rows, left, right, add, 0);
    else if (left == 0xFFFF)
        block_8x16(ablock, ars, acs, source, ld, block, ldc, depth, rows, left, add, 1);
    else
        block_8x16(ablock, ars, acs, source, ld, block, ldc, depth, rows, left, add, 0);
}

// The loops over depth, panels and 8-row blocks, for A's layout given by `block` (floats between
// 8-row blocks), ars and acs (see A_AT). B's rows from `split` on are second's where second is
// not NULL. Each element of C sums its depth chunks in order, whatever the loop order: the same bits.
static inline __attribute__((always_inline)) AVX512 void gemm_blocks(const float *a, long block, long ars, long acs,
                                                                      const float *b, const float *second, long split,
                                                                      long ldb, float *c, long ldc, long m, long n, long k,
                                                                      int accumulate) {
    // Where several 8-row blocks share a panel whose rows are a multiple of 512 bytes apart, the
    // panel is copied first: read in place its 128 rows would fall into 1/8 or fewer of L1's 64
    // sets and be read from L2 for every block, which holds a core with two FMA ports (Intel's) to
    // 60–75 % of its rate (`haze-bench kernels --filter sgemm`; Documentation/speed.md). B of two
    // tensors is always copied, so that the blocks see one panel: the same sums as with B in one.
    _Alignas(64) float panel[DEPTH * COLUMNS];
    const int copy = second || (m > 2 * ROWS && ldb % 128 == 0);
    if (n <= COLUMNS && !copy) {
        // One panel (a Winograd product of a few small images): each 8-row block's whole depth in
        // turn, so that A, read once, streams in address order. One core, 36 products whose A
        // come from memory, M = 256, K = 256, N = 32: 77 → 110 GFLOP/s with prefetch_a (depth
        // first as below: 91); N = 64 (two panels, prefetch_a only) 92 → 96–100; A in cache: no change.
        for (long m0 = 0; m0 < m; m0 += ROWS)
            for (long p0 = 0; p0 < k; p0 += DEPTH)
                panel_block(a + m0 / ROWS * block + p0 * acs, ars, acs, b + p0 * ldb, ldb, c + m0 * ldc, ldc,
                            k - p0 < DEPTH ? k - p0 : DEPTH, m - m0, n, accumulate || p0 > 0);
        return;
    }
    for (long p0 = 0; p0 < k; p0 += DEPTH) {
        const long depth = k - p0 < DEPTH ? k - p0 : DEPTH;
        for (long n0 = 0; n0 < n; n0 += COLUMNS) {
            const long width = n - n0 < COLUMNS ? n - n0 : COLUMNS;
            const float *source = b + p0 * ldb + n0;
            long ld = ldb;
            if (copy) {
                copy_panel(b, second, second ? split : k, ldb, p0, n0, panel, depth, first_lanes(width), first_lanes(width - 16));
                source = panel, ld = COLUMNS;
            }
            for (long m0 = 0; m0 < m; m0 += ROWS)
                panel_block(a + m0 / ROWS * block + p0 * acs, ars, acs, source, ld, c + m0 * ldc + n0, ldc, depth, m - m0, width,
                            accumulate || p0 > 0);
        }
    }
}

AVX512 void haze_gemm_packed(const float *packed, const float *b, long ldb, float *c, long ldc, long m, long n, long k,
                             int accumulate) {
    gemm_blocks(packed, ROWS * k, 1, ROWS, b, NULL, 0, ldb, c, ldc, m, n, k, accumulate);
}

AVX512 void haze_gemm_packed_concatenated(const float *packed, const float *b, const float *second, long split, long ldb,
                                          float *c, long ldc, long m, long n, long k, int accumulate) {
    gemm_blocks(packed, ROWS * k, 1, ROWS, b, second, split, ldb, c, ldc, m, n, k, accumulate);
}

AVX512 void haze_gemm_rows(const float *a, long lda, const float *b, long ldb, float *c, long ldc, long m, long n, long k,
                           int accumulate) {
    gemm_blocks(a, ROWS * lda, lda, 1, b, NULL, 0, ldb, c, ldc, m, n, k, accumulate);
}

// packed[(r / 8) · K · 8 + p · 8 + r % 8] = a[p · lda + r]: each 8-row block is K runs of 8
// consecutive floats of a's rows (zero for the rows past M), two blocks per 16-float load.
AVX512 void haze_gemm_pack_transposed(const float *a, long lda, float *packed, long m, long k) {
    for (long r0 = 0; r0 < m; r0 += 2 * ROWS) {
        const __mmask16 lanes = first_lanes(m - r0);
        float *first = packed + r0 * k, *second = first + ROWS * k;
        for (long p = 0; p < k; p++) {
            const __m512 v = _mm512_maskz_loadu_ps(lanes, a + p * lda + r0);
            _mm256_storeu_ps(first + p * ROWS, _mm512_castps512_ps256(v));
            if (m - r0 > ROWS) _mm256_storeu_ps(second + p * ROWS, _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        }
    }
}
#else
int haze_gemm_packed_available(void) { return 0; }

void haze_gemm_pack_transposed(const float *a, long lda, float *packed, long m, long k) {
    for (long r0 = 0; r0 < m; r0 += ROWS)
        for (long p = 0; p < k; p++)
            for (long r = 0; r < ROWS; r++) packed[r0 * k + p * ROWS + r] = r0 + r < m ? a[p * lda + r0 + r] : 0.0f;
}

void haze_gemm_rows(const float *a, long lda, const float *b, long ldb, float *c, long ldc, long m, long n, long k,
                    int accumulate) {
    for (long r = 0; r < m; r++)
        for (long q = 0; q < n; q++) {
            float sum = accumulate ? c[r * ldc + q] : 0.0f;
            for (long p = 0; p < k; p++) sum += a[r * lda + p] * b[p * ldb + q];
            c[r * ldc + q] = sum;
        }
}

// Portable and slow (callers use BLAS where this returns 0); kept so the function is always correct.
void haze_gemm_packed(const float *packed, const float *b, long ldb, float *c, long ldc, long m, long n, long k,
                      int accumulate) {
    for (long r = 0; r < m; r++)
        for (long q = 0; q < n; q++) {
            float sum = accumulate ? c[r * ldc + q] : 0.0f;
            for (long p = 0; p < k; p++) sum += packed[(r / ROWS) * ROWS * k + p * ROWS + r % ROWS] * b[p * ldb + q];
            c[r * ldc + q] = sum;
        }
}

void haze_gemm_packed_concatenated(const float *packed, const float *b, const float *second, long split, long ldb,
                                   float *c, long ldc, long m, long n, long k, int accumulate) {
    for (long r = 0; r < m; r++)
        for (long q = 0; q < n; q++) {
            float sum = accumulate ? c[r * ldc + q] : 0.0f;
            for (long p = 0; p < k; p++)
                sum += packed[(r / ROWS) * ROWS * k + p * ROWS + r % ROWS] * (p < split ? b[p * ldb + q] : second[(p - split) * ldb + q]);
            c[r * ldc + q] = sum;
        }
}
#endif
