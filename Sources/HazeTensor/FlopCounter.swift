/// Counts the floating-point operations of the GEMM-like kernels (convolution, matrix products,
/// attention), 2·M·N·K each, forward and backward, the way PyTorch's FlopCounterMode does.
/// Off by default; benchmarks turn it on around one call.
public enum FlopCounter {
    nonisolated(unsafe) public static var isEnabled = false
    nonisolated(unsafe) public private(set) static var count: Double = 0

    public static func reset() { count = 0 }

    static func add(_ flops: Int) {
        if isEnabled { count += Double(flops) }
    }
}
