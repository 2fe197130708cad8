import CHazeKernels

/// The instruction sets of this CPU that Haze's kernels use, read with CPUID (haze_cpu.c) — the
/// same test by which the kernels pick their code, also under an emulator, where /proc/cpuinfo
/// would show the host's flags — and the code paths that follow from them.
public struct CPUFeatures: Sendable, Equatable {
    /// AVX2 with FMA (x86-64-v3): the target clones of the C kernels built for it.
    public let avx2FMA: Bool
    /// AVX-512 F, BW, VL and DQ (x86-64-v4): the AVX-512 kernels.
    public let avx512: Bool
    /// AVX512_BF16 (Cooper Lake, Sapphire Rapids, Zen 4 and later).
    public let avx512BF16: Bool

    /// The features of the CPU this process runs on, read once.
    public static let current: CPUFeatures = {
        let bits = haze_cpu_features()
        return CPUFeatures(avx2FMA: bits & HAZE_CPU_AVX2_FMA != 0, avx512: bits & HAZE_CPU_AVX512 != 0,
                           avx512BF16: bits & HAZE_CPU_AVX512_BF16 != 0)
    }()

    /// The kernel paths in use, e.g. "AVX-512 kernels (…)" or "portable kernels, AVX2 + FMA build".
    public var kernelDescription: String {
        #if DEBUG
        let build = "; debug build: C kernels not multiversioned"
        #else
        let build = ""
        #endif
        if avx512 {
            return "AVX-512 kernels (Winograd F(4×4, 3×3) on ≤ 8×8 images and 5–16, 25–32 and 64-wide planes, permute transforms, packed GEMM, direct strided convolution)\(build)"
        }
        #if arch(x86_64)
        let flavour = avx2FMA ? "AVX2 + FMA build" : "baseline x86-64 build"
        #else
        let flavour = "portable C"
        #endif
        return "portable kernels, \(flavour) (Winograd F(2×2, 3×3), im2col; no AVX-512)\(build)"
    }
}

/// One line that says what ran: the kernel paths, BLAS and its kernel, the worker threads.
public var computeDescription: String {
    "\(CPUFeatures.current.kernelDescription); BLAS: \(blasDescription); \(Parallel.threadCount) threads"
}
