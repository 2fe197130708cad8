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
