// What this CPU offers Haze's kernels, read with CPUID (and the OS's saved-state check) by the
// compiler's runtime, the same test by which the kernels dispatch. Unlike /proc/cpuinfo, which
// shows the host's flags under an emulator such as qemu-user, CPUID is what the code will run on.
#include "haze_kernels.h"

int haze_cpu_features(void) {
#if defined(__x86_64__) && defined(__clang__)
    int features = 0;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) features |= HAZE_CPU_AVX2_FMA;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
        && __builtin_cpu_supports("avx512dq")) features |= HAZE_CPU_AVX512;
    if (__builtin_cpu_supports("avx512bf16")) features |= HAZE_CPU_AVX512_BF16;
    return features;
#else
    return 0;
#endif
}

// The multiply-add ceiling of one core, for haze-bench: `rounds` rounds of 24 independent 16-lane
// FMAs (VDPBF16PS for bf16, two multiply-adds per lane), more chains than latency × throughput
// needs on current x86 cores, with nothing loaded or stored. Returns the floating-point
// operations done, or 0 where the CPU lacks the instructions.
#if defined(__x86_64__) && defined(__clang__)
#include <immintrin.h>
enum { CHAINS = 24 };

// Sums the chains into a volatile, so that the compiler keeps the loops that made them.
__attribute__((target("avx512f"))) static void keep(const __m512 *acc) {
    __m512 sum = acc[0];
    for (int i = 1; i < CHAINS; i++) sum = _mm512_add_ps(sum, acc[i]);
    volatile float sink = _mm512_reduce_add_ps(sum);
    (void)sink;
}

__attribute__((target("avx512f"))) static double fma_rounds(long rounds) {
    __m512 acc[CHAINS];
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
    keep(acc);
    return 2.0 * 16 * CHAINS * (double)rounds;
}

__attribute__((target("avx512f,avx512bf16"))) static double dot_bf16_rounds(long rounds) {
    __m512 acc[CHAINS];
    for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_set1_ps((float)i);
    const __m512bh a = (__m512bh)_mm512_set1_epi32(0x3F803F80), b = (__m512bh)_mm512_set1_epi32(0x3A833A83);  // 1.0, ~1e-3
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < CHAINS; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    keep(acc);
    return 4.0 * 16 * CHAINS * (double)rounds;
}

double haze_fma_ceiling_f32(long rounds) { return __builtin_cpu_supports("avx512f") ? fma_rounds(rounds) : 0; }
double haze_fma_ceiling_bf16(long rounds) { return __builtin_cpu_supports("avx512bf16") ? dot_bf16_rounds(rounds) : 0; }
#else
double haze_fma_ceiling_f32(long rounds) { (void)rounds; return 0; }
double haze_fma_ceiling_bf16(long rounds) { (void)rounds; return 0; }
#endif
