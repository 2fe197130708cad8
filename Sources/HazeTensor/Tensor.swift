import Foundation

/// A dense Float32 array with a shape, stored contiguously in row-major order (NCHW for images,
/// PyTorch's layout).
///
/// `Tensor` is a value type: its storage is a Swift array, copied on write. When it was produced
/// under `valueWithGradient`, it also carries a reference to its node on the gradient tape;
/// outside of that (inference) no tape exists and no autodiff work is done.
public struct Tensor {
    /// Extent of each axis; `[]` for a scalar.
    public private(set) var shape: [Int]
    /// The elements in row-major order; `scalars.count == shape.reduce(1, *)`.
    public internal(set) var scalars: [Float]
    /// The tape node that produced this value, when gradients are being recorded.
    var node: TapeNode?

    /// Creates a tensor from its elements in row-major order.
    public init(shape: [Int], scalars: [Float]) {
        precondition(shape.allSatisfy { $0 >= 0 }, "negative extent in shape \(shape)")
        precondition(shape.reduce(1, *) == scalars.count,
                     "shape \(shape) needs \(shape.reduce(1, *)) elements, got \(scalars.count)")
        self.shape = shape
        self.scalars = scalars
        self.node = nil
    }

    /// Creates a tensor whose elements are written by `body` into uninitialised storage.
    /// `body` must write every element.
    public init(shape: [Int], unsafeUninitialized body: (UnsafeMutablePointer<Float>, Int) -> Void) {
        let count = shape.reduce(1, *)
        let storage = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0 { body(buffer.baseAddress!, count) }
            initialized = count
        }
        self.init(shape: shape, scalars: storage)
    }

    /// A scalar (rank-0) tensor.
    public init(_ value: Float) { self.init(shape: [], scalars: [value]) }

    /// A rank-1 tensor holding `values`.
    public init(_ values: [Float]) { self.init(shape: [values.count], scalars: values) }

    /// A tensor of `shape` filled with 0.
    public static func zeros(_ shape: [Int]) -> Tensor {
        Tensor(shape: shape, scalars: [Float](repeating: 0, count: shape.reduce(1, *)))
    }

    /// A tensor of `shape` filled with 1.
    public static func ones(_ shape: [Int]) -> Tensor { full(shape, 1) }

    /// A tensor of `shape` with every element equal to `value`.
    public static func full(_ shape: [Int], _ value: Float) -> Tensor {
        Tensor(shape: shape, scalars: [Float](repeating: value, count: shape.reduce(1, *)))
    }

    /// `[start, start + step, …]` below `end`, like `torch.arange`.
    public static func arange(_ start: Float = 0, _ end: Float, step: Float = 1) -> Tensor {
        precondition(step != 0, "arange step must not be zero")
        let count = Swift.max(0, Int((Double(end - start) / Double(step)).rounded(.up)))
        return Tensor((0..<count).map { start + Float($0) * step })
    }

    /// Number of elements.
    public var count: Int { scalars.count }
    /// Number of axes.
    public var rank: Int { shape.count }
    /// The value of a one-element tensor.
    public var scalar: Float {
        precondition(scalars.count == 1, "scalar of a tensor with shape \(shape)")
        return scalars[0]
    }

    /// Whether this value is tracked by an active gradient tape.
    public var isRecorded: Bool { node != nil }

    /// The same value, cut from the gradient tape (gradients do not flow through it).
    public var detached: Tensor { Tensor(shape: shape, scalars: scalars) }

    /// Element at a multi-index (slow; for tests and small code).
    public subscript(_ index: Int...) -> Float {
        precondition(index.count == shape.count, "index \(index) for shape \(shape)")
        var offset = 0
        for (i, n) in zip(index, shape) {
            precondition(i >= 0 && i < n, "index \(index) out of range for shape \(shape)")
            offset = offset * n + i
        }
        return scalars[offset]
    }

    /// Calls `body` with a pointer to the elements (valid only during the call).
    public func withScalars<R>(_ body: (UnsafePointer<Float>) throws -> R) rethrows -> R {
        try scalars.withUnsafeBufferPointer { try body($0.baseAddress ?? UnsafePointer(bitPattern: 16)!) }
    }

    /// `tensor.withScalars(body)`, or `body(nil)` without a tensor (an optional operand of a kernel).
    static func withOptionalScalars<R>(_ tensor: Tensor?, _ body: (UnsafePointer<Float>?) throws -> R) rethrows -> R {
        guard let tensor else { return try body(nil) }
        return try tensor.withScalars { try body($0) }
    }

    /// Calls `body` with a pointer to the elements for in-place updates (copying first if the
    /// storage is shared). Not recorded on the tape.
    public mutating func withMutableScalars<R>(_ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        try scalars.withUnsafeMutableBufferPointer { try body($0.baseAddress ?? UnsafeMutablePointer(bitPattern: 16)!) }
    }
}

extension Tensor: CustomStringConvertible {
    public var description: String {
        let shown = scalars.prefix(8).map { String(format: "%.4g", Double($0)) }.joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(shown)\(scalars.count > 8 ? ", …" : "")])"
    }
}

extension Tensor: Equatable {
    /// Same shape and the same elements (the tape is not compared).
    public static func == (a: Tensor, b: Tensor) -> Bool { a.shape == b.shape && a.scalars == b.scalars }
}
