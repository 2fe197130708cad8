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
        /// A weight made from other weights (`Tensor.derivedWeight(named:from:_:)`).
        case derived(name: String)
    }

    private struct Key: Hashable {
        let addresses: [UInt], counts: [Int], form: Form, precision: Precision
    }
    /// The cache of the innermost `reusingTransformedWeights`, or nil (no caching). Each entry keeps
    /// its weight tensors alive, so no other tensor can take their addresses while it is cached.
    nonisolated(unsafe) private static var entries: [Key: (weights: [Tensor], value: Any)]?
    private static let lock = NSLock()
    /// How many times weights have been prepared, in any form (for tests).
    nonisolated(unsafe) private(set) static var preparations = 0

    /// w prepared in `form`: the cached value inside a reuse scope, else `make()`.
    static func value<Value>(for w: Tensor, as form: Form, make: () -> Value) -> Value {
        value(for: [w], as: form, make: make)
    }

    /// ws prepared together in `form`: the cached value inside a reuse scope, else `make()`.
    static func value<Value>(for ws: [Tensor], as form: Form, make: () -> Value) -> Value {
        lock.lock()
        let active = entries != nil
        let key = Key(addresses: ws.map { w in w.withScalars { UInt(bitPattern: $0) } }, counts: ws.map(\.count), form: form,
                      precision: Precision.current)
        let found = entries?[key]?.value
        lock.unlock()
        if let found = found as? Value { return found }
        let value = make()
        lock.lock()
        preparations += 1
        if active { entries?[key] = (ws, value) }
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

extension Tensor {
    /// `make(sources)`: a weight made from parameter tensors, such as the three attention
    /// projections stacked into one. Inside `ConvolutionAlgorithm.reusingTransformedWeights` it is
    /// made once per `sources` and `name`, and the same tensor comes back on every call, so the
    /// weights prepared from it are found in the cache again. (A new tensor each call would be
    /// prepared, and cached, again on every call: the cache would grow for the whole run.) Outside
    /// a scope, or where a gradient is recorded through `sources`, it is made on every call.
    public static func derivedWeight(named name: String, from sources: [Tensor], _ make: ([Tensor]) -> Tensor) -> Tensor {
        if sources.contains(where: { $0.node != nil }) { return make(sources) }
        return PreparedWeights.value(for: sources, as: .derived(name: name)) { make(sources) }
    }
}
