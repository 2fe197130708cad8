// MULTIVERSION: on x86-64 Linux optimised builds, compile a kernel for AVX-512, AVX2 and
// baseline; the loader picks the best for the CPU.
#ifndef HAZE_MULTIVERSION_H
#define HAZE_MULTIVERSION_H
// Not under ThreadSanitizer: it instruments the clones' resolvers, which the dynamic loader runs
// before the sanitizer's runtime is up (a crash at start-up); those builds take the baseline code.
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define HAZE_NO_MULTIVERSION 1
#endif
#endif
#if defined(__x86_64__) && defined(__linux__) && defined(__OPTIMIZE__) && !defined(HAZE_NO_MULTIVERSION)
#define MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MULTIVERSION
#endif
#endif
