// Shared pieces of the bf16 products (haze_gemm_bf16.c and its per-ISA kernels
// haze_gemm_bf16_amx.c, haze_gemm_bf16_arm.c): the rounding, the element of haze_gemm_pack's float
// layout, and the kernels behind haze_gemm_packed_bf16's switch. Every kernel takes A in the layout
// haze_gemm_pack_bf16 wrote for it and B float32 in place, rounds B as it reads it (nearest even),
// and sums in float32.
#ifndef HAZE_GEMM_BF16_H
#define HAZE_GEMM_BF16_H

#include <stdint.h>
#include <string.h>

// bf16 bits of x (in the low half), rounded to nearest even (finite inputs).
static inline uint32_t bf16_bits(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    return (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
}

// A[r, p] of a matrix in haze_gemm_pack's layout (8-row blocks, column by column); 0 past K.
static inline float packed_element(const float *packed, long k, long r, long p) {
    return p < k ? packed[r / 8 * 8 * k + p * 8 + r % 8] : 0.0f;
}

// The kernels haze_gemm_packed_bf16 switches between, in the order it prefers them.
enum bf16_kernel { BF16_PORTABLE, BF16_AVX512, BF16_AMX, BF16_ARM };

#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
// panel[q · 32 + j] = (B[2q, j], B[2q + 1, j]) as bf16 pairs, for `depth` rows of B (row stride
// ldb) and the columns of the two 16-lane masks; zero elsewhere and past `depth` (AVX-512).
__attribute__((target("avx512f"))) void haze_bf16_pack_panel(const float *b, long ldb, long depth, __mmask16 left,
                                                             __mmask16 right, uint32_t *panel);
// AMX-BF16 (haze_gemm_bf16_amx.c): whether the CPU has it and the OS grants the tile state; the
// layout of A (16-row blocks of 16 × 16-pair tiles) and the product.
int haze_amx_bf16_usable(void);
long haze_gemm_packed_bf16_amx_size(long m, long k);
void haze_gemm_pack_bf16_amx(const float *packed, uint32_t *out, long m, long k);
void haze_gemm_packed_bf16_amx(const uint32_t *packed, const float *b, long ldb, float *c, long ldc, long m, long n,
                               long k, int accumulate);
// AVX512_BF16 (haze_gemm_bf16.c), A in the 8-row pair layout.
void haze_gemm_packed_bf16_avx512(const uint32_t *packed, const float *b, long ldb, float *c, long ldc, long m, long n,
                                  long k, int accumulate);
#endif

#if defined(__aarch64__)
// ARMv8.6 BF16 (haze_gemm_bf16_arm.c): BFDOT, A in the 8-row pair layout.
int haze_arm_bf16_usable(void);
void haze_gemm_packed_bf16_arm(const uint32_t *packed, const float *b, long ldb, float *c, long ldc, long m, long n,
                               long k, int accumulate);
#endif

#endif
