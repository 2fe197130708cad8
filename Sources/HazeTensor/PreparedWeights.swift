import Foundation

/// Convolution weights prepared for a kernel — Winograd-transformed, packed for the packed
/// products, rounded to bf16 pairs — kept while the weights do not change (a sampling run calls
/// the network tens of times with the same weights): made once per weight tensor, form and
/// precision inside `ConvolutionAlgorithm.reusingTransformedWeights`, else once per call.
enum PreparedWeights {
    /// The forms a weight tensor is prepared in.
    enum Form: Hashable {
        /// `Winograd.TransformedWeights` (of the input-gradient convolution with `flip`).
        case winograd(flip: Bool, large: Bool, packed: Bool)
        /// The `PackedMatrices` of a 1×1 convolution's products.
        case pointwise
        /// The transpose Wᵀ [C, 3P] of a q/k/v projection, for `Tensor.reshapedLinearAttentionBlock`.
        case attentionProjection
        /// An attention block's output convolution [C, P], packed for `Tensor.reshapedLinearAttentionBlock`.
        case attentionOutput
        /// The packed weights of the direct strided convolution (haze_direct_pack).
        case direct
    }

    private struct Key: Hashable {
        let address: UInt, count: Int, form: Form, precision: Precision
    }
    /// The cache of the innermost `reusingTransformedWeights`, or nil (no caching). Each entry keeps
    /// its weight tensor alive, so no other tensor can take its address while it is cached.
    nonisolated(unsafe) private static var entries: [Key: (weight: Tensor, value: Any)]?
    private static let lock = NSLock()
    /// How many times weights have been prepared, in any form (for tests).
    nonisolated(unsafe) private(set) static var preparations = 0

    /// w prepared in `form`: the cached value inside a reuse scope, else `make()`.
    static func value<Value>(for w: Tensor, as form: Form, make: () -> Value) -> Value {
        lock.lock()
        let active = entries != nil
        let key = Key(address: w.withScalars { UInt(bitPattern: $0) }, count: w.count, form: form, precision: Precision.current)
        let found = entries?[key]?.value
        lock.unlock()
        if let found = found as? Value { return found }
        let value = make()
        lock.lock()
        preparations += 1
        if active { entries?[key] = (w, value) }
        lock.unlock()
        return value
    }

    static func scope<R>(_ body: () throws -> R) rethrows -> R {
        lock.lock()
        let outer = entries
        entries = outer ?? [:]
        lock.unlock()
        defer {
            lock.lock()
            entries = outer
            lock.unlock()
        }
        return try body()
    }
}

extension ConvolutionAlgorithm {
    /// Runs `body` with the convolution weights prepared (Winograd transforms, packed and bf16
    /// copies) once per weight tensor and reused: for loops that call a network many times with
    /// weights that do not change (sampling). Weights must not be modified in place inside `body`.
    public static func reusingTransformedWeights<R>(_ body: () throws -> R) rethrows -> R {
        try PreparedWeights.scope(body)
    }
}
