// MULTIVERSION: on x86-64 Linux optimised builds, compile a kernel for AVX-512, AVX2 and
// baseline; the loader picks the best for the CPU.
#ifndef HAZE_MULTIVERSION_H
#define HAZE_MULTIVERSION_H
#if defined(__x86_64__) && defined(__linux__) && defined(__OPTIMIZE__)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MULTIVERSION
#endif
#endif
