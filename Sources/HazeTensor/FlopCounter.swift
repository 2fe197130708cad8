/// Counts the floating-point operations of the GEMM-like kernels (convolution, matrix products,
/// attention), 2·M·N·K each, forward and backward, the way PyTorch's FlopCounterMode does.
/// Off by default; benchmarks turn it on around one call.
public enum FlopCounter {
    /// Whether the kernels add their operations to `count`.
    nonisolated(unsafe) public static var isEnabled = false
    /// Floating-point operations counted since the last `reset()` (while enabled).
    nonisolated(unsafe) public private(set) static var count: Double = 0

    /// Sets `count` back to zero.
    public static func reset() { count = 0 }

    static func add(_ flops: Int) {
        if isEnabled { count += Double(flops) }
    }
}
