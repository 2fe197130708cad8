// haze_gemm_packed_bf16 on aarch64, built and run by `make test-arm64` under qemu-aarch64 (no
// Swift toolchain for aarch64 here, so this C program is the test): `gemm_bf16 KERNEL` checks that
// the switch chose KERNEL ("Arm BF16" where the emulated CPU has FEAT_BF16, "none" where it has
// not), that rounding to bf16 is to nearest even, and that products of ragged sizes, two depth
// panels, row strides and accumulation agree with float64 sums of the rounded inputs within
// float32's bound for a sum of k products: (k + 2) · 2⁻²⁴ · Σ|a·b| (plus |c| when accumulating),
// leaving C's padding untouched.

#include "haze_kernels.h"
#include "../../Sources/CHazeKernels/haze_gemm_bf16.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static uint32_t seed = 2024;
static float uniform(void) { return (float)((seed = seed * 1664525u + 1013904223u) >> 8) / (1 << 24) * 2.0f - 1.0f; }
static double bf16_value(float x) {
    const uint32_t bits = bf16_bits(x) << 16;
    float y;
    memcpy(&y, &bits, 4);
    return y;
}

// C = A · B (or C += A · B) for A [m, k], B [k, n] (row stride ldb), C (row stride ldc) on the bf16 kernel.
static void multiply(const float *a, const float *b, long ldb, float *c, long ldc, long m, long n, long k, int accumulate) {
    float *packed = malloc(sizeof(float) * haze_gemm_packed_size(m, k));
    uint32_t *pairs = malloc(sizeof(uint32_t) * haze_gemm_packed_bf16_size(m, k));
    haze_gemm_pack(a, k, packed, m, k);
    haze_gemm_pack_bf16(packed, pairs, m, k);
    haze_gemm_packed_bf16(pairs, b, ldb, c, ldc, m, n, k, accumulate);
    free(packed);
    free(pairs);
}

static int failures = 0;
#define CHECK(condition, ...) do { if (!(condition)) { failures++; printf(__VA_ARGS__); printf("\n"); } } while (0)

static void check_rounding(void) {
    // 1 + 2⁻⁸ is half a bf16 step above 1 (ties to even: 1), 1 + 2⁻⁸ + 2⁻⁹ more than half (1 + 2⁻⁷),
    // 1 + 2⁻⁷ + 2⁻⁸ half a step above an odd one (1 + 2⁻⁶). Through B (full and ragged panels) and through A.
    const float x[3] = {1 + 0x1p-8f, 1 + 0x1p-8f + 0x1p-9f, 1 + 0x1p-7f + 0x1p-8f}, want[3] = {1, 1 + 0x1p-7f, 1 + 0x1p-6f};
    for (long n = 3; n <= 8; n += 5) {
        float one = 1, b[8] = {0}, c[8];
        for (int j = 0; j < 3; j++) b[j] = x[j];
        multiply(&one, b, n, c, n, 1, n, 1, 0);
        for (int j = 0; j < 3; j++) CHECK(c[j] == want[j], "rounding through B (n %ld): %.9g, want %.9g", n, c[j], want[j]);
    }
    float ones[1] = {1}, c[3];
    multiply(x, ones, 1, c, 1, 3, 1, 1, 0);
    for (int j = 0; j < 3; j++) CHECK(c[j] == want[j], "rounding through A: %.9g, want %.9g", c[j], want[j]);
}

static void check_product(long m, long n, long k, int accumulate) {
    const long ldb = n + 3, ldc = n + 5;
    float *a = malloc(sizeof(float) * m * k), *b = malloc(sizeof(float) * k * ldb), *c = malloc(sizeof(float) * m * ldc);
    float *c0 = malloc(sizeof(float) * m * ldc);
    for (long i = 0; i < m * k; i++) a[i] = uniform();
    for (long i = 0; i < k * ldb; i++) b[i] = uniform();
    for (long i = 0; i < m * ldc; i++) c[i] = c0[i] = uniform();
    multiply(a, b, ldb, c, ldc, m, n, k, accumulate);
    double worst = 0;
    for (long r = 0; r < m; r++) {
        for (long j = 0; j < n; j++) {
            double sum = accumulate ? c0[r * ldc + j] : 0, magnitude = fabs(sum);
            for (long p = 0; p < k; p++) {
                const double product = bf16_value(a[r * k + p]) * bf16_value(b[p * ldb + j]);
                sum += product;
                magnitude += fabs(product);
            }
            const double error = fabs(c[r * ldc + j] - sum), bound = (k + 2) * 0x1p-24 * magnitude;
            if (error / bound > worst) worst = error / bound;
        }
        for (long j = n; j < ldc; j++)
            CHECK(c[r * ldc + j] == c0[r * ldc + j], "%ld×%ld×%ld: C's padding at row %ld column %ld changed", m, n, k, r, j);
    }
    CHECK(worst <= 1, "%ld×%ld×%ld%s: error %.3g of the bound", m, n, k, accumulate ? " (accumulating)" : "", worst);
    free(a);
    free(b);
    free(c);
    free(c0);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s 'Arm BF16'|none\n", argv[0]);
        return 2;
    }
    const char *kernel = haze_gemm_bf16_kernel() ? haze_gemm_bf16_kernel() : "none";
    CHECK(strcmp(kernel, argv[1]) == 0, "kernel %s, expected %s", kernel, argv[1]);
    CHECK(haze_gemm_bf16_available() == (strcmp(argv[1], "none") != 0), "haze_gemm_bf16_available() disagrees with the kernel");
    check_rounding();
    const long shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {8, 8, 2}, {9, 17, 33}, {16, 8, 256}, {13, 21, 257}, {24, 40, 600}, {64, 100, 300}};
    int products = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int accumulate = 0; accumulate < 2; accumulate++, products++)
            check_product(shapes[s][0], shapes[s][1], shapes[s][2], accumulate);
    printf("gemm_bf16: kernel %s, %d products%s\n", kernel, products, failures ? "" : ", all within the bound");
    return failures ? 1 : 0;
}
