/// Elementwise binary ops with NumPy/PyTorch broadcasting: add, sub, mul, div (and the tensor ∘
/// scalar forms). Each forward is a generic kernel specialised per op; each pullback reduces the
/// output gradient back to the operand's shape (sum over broadcast axes).

/// A binary scalar function, specialised into the kernels below.

protocol BinaryFunction {
    static func apply(_ a: Float, _ b: Float) -> Float
}

enum AddFunction: BinaryFunction { static func apply(_ a: Float, _ b: Float) -> Float { a + b } }
enum SubFunction: BinaryFunction { static func apply(_ a: Float, _ b: Float) -> Float { a - b } }
enum MulFunction: BinaryFunction { static func apply(_ a: Float, _ b: Float) -> Float { a * b } }
enum DivFunction: BinaryFunction { static func apply(_ a: Float, _ b: Float) -> Float { a / b } }

extension Tensor {
    /// out[i] = F(a[i], b[i]) with broadcasting. a, b: any broadcast-compatible shapes;
    /// out: the broadcast shape. Parallel over rows of the coalesced output.
    static func binaryKernel<F: BinaryFunction>(_ a: Tensor, _ b: Tensor, _: F.Type) -> Tensor {
        if a.shape == b.shape {
            return Tensor(shape: a.shape) { out, count in
                a.withScalars { pa in
                    b.withScalars { pb in
                        Parallel.forEach(count, cost: 2) { range in
                            for i in range { out[i] = F.apply(pa[i], pb[i]) }
                        }
                    }
                }
            }
        }
        let shape = broadcastShape(a.shape, b.shape)
        let (cshape, cstrides) = coalesce(shape, [broadcastStrides(a.shape, to: shape),
                                                   broadcastStrides(b.shape, to: shape)])
        let inner = cshape.last!
        let (sa, sb) = (cstrides[0].last!, cstrides[1].last!)
        let offsetsA = rowOffsets(cshape, cstrides[0]), offsetsB = rowOffsets(cshape, cstrides[1])
        return Tensor(shape: shape) { out, _ in
            a.withScalars { pa in
                b.withScalars { pb in
                    Parallel.forEach(offsetsA.count, cost: 2 * inner) { rows in
                        for row in rows {
                            let o = out + row * inner, x = pa + offsetsA[row], y = pb + offsetsB[row]
                            if sa == 1 && sb == 1 {
                                for j in 0..<inner { o[j] = F.apply(x[j], y[j]) }
                            } else if sa == 1 && sb == 0 {  // e.g. a per-channel value added to each plane
                                let c = y[0]
                                for j in 0..<inner { o[j] = F.apply(x[j], c) }
                            } else if sa == 0 && sb == 1 {
                                let c = x[0]
                                for j in 0..<inner { o[j] = F.apply(c, y[j]) }
                            } else if sb == 0 {
                                let c = y[0]
                                for j in 0..<inner { o[j] = F.apply(x[j * sa], c) }
                            } else if sa == 0 {
                                let c = x[0]
                                for j in 0..<inner { o[j] = F.apply(c, y[j * sb]) }
                            } else {
                                for j in 0..<inner { o[j] = F.apply(x[j * sa], y[j * sb]) }
                            }
                        }
                    }
                }
            }
        }
    }

    /// The gradient of a broadcast operand: `gradient` summed over the axes along which a
    /// tensor of `shape` was broadcast.
    func sum(toShape shape: [Int]) -> Tensor {
        if self.shape == shape { return self }
        let padded = [Int](repeating: 1, count: rank - shape.count) + shape
        let axes = (0..<rank).filter { padded[$0] == 1 && self.shape[$0] != 1 }
        return sum(alongAxes: axes, keepingDimensions: true).reshaped(to: shape)
    }

    /// Adds `other` (same shape) into this tensor's storage; used to accumulate gradients.
    mutating func addInPlace(_ other: Tensor) {
        precondition(shape == other.shape, "gradient shape \(other.shape) != \(shape)")
        let n = count
        withMutableScalars { p in
            other.withScalars { q in
                Parallel.forEach(n, cost: 2) { range in
                    for i in range { p[i] += q[i] }
                }
            }
        }
    }

    /// a + b, elementwise with NumPy/PyTorch broadcasting; the gradient of each operand is summed
    /// back to its shape.
    public static func + (a: Tensor, b: Tensor) -> Tensor {
        let out = binaryKernel(a, b, AddFunction.self)
        return record(out, [a, b]) { g in [g.sum(toShape: a.shape), g.sum(toShape: b.shape)] }
    }

    /// a − b, elementwise with broadcasting.
    public static func - (a: Tensor, b: Tensor) -> Tensor {
        let out = binaryKernel(a, b, SubFunction.self)
        return record(out, [a, b]) { g in [g.sum(toShape: a.shape), (-g).sum(toShape: b.shape)] }
    }

    /// a · b (Hadamard product), elementwise with broadcasting; ∂a = g · b, ∂b = g · a.
    public static func * (a: Tensor, b: Tensor) -> Tensor {
        let out = binaryKernel(a, b, MulFunction.self)
        let (va, vb) = (a.detached, b.detached)
        return record(out, [a, b]) { g in
            [a.isRecorded ? (g * vb).sum(toShape: va.shape) : nil,
             b.isRecorded ? (g * va).sum(toShape: vb.shape) : nil]
        }
    }

    /// a / b, elementwise with broadcasting; ∂a = g / b, ∂b = −g · a / b².
    public static func / (a: Tensor, b: Tensor) -> Tensor {
        let out = binaryKernel(a, b, DivFunction.self)
        let (va, vb) = (a.detached, b.detached)
        return record(out, [a, b]) { g in
            [a.isRecorded ? (g / vb).sum(toShape: va.shape) : nil,
             b.isRecorded ? (-(g * va) / (vb * vb)).sum(toShape: vb.shape) : nil]
        }
    }

    /// Adds a scalar to every element.
    public static func + (a: Tensor, b: Float) -> Tensor { a + Tensor(b) }
    /// Adds a scalar to every element.
    public static func + (a: Float, b: Tensor) -> Tensor { Tensor(a) + b }
    /// Subtracts a scalar from every element.
    public static func - (a: Tensor, b: Float) -> Tensor { a - Tensor(b) }
    /// The scalar minus each element.
    public static func - (a: Float, b: Tensor) -> Tensor { Tensor(a) - b }
    /// Multiplies every element by a scalar.
    public static func * (a: Tensor, b: Float) -> Tensor { a * Tensor(b) }
    /// Multiplies every element by a scalar.
    public static func * (a: Float, b: Tensor) -> Tensor { Tensor(a) * b }
    /// Divides every element by a scalar (as a multiplication by 1/b).
    public static func / (a: Tensor, b: Float) -> Tensor { a * Tensor(1 / b) }
    /// The scalar divided by each element.
    public static func / (a: Float, b: Tensor) -> Tensor { Tensor(a) / b }

    /// The elementwise negation −x.
    public static prefix func - (x: Tensor) -> Tensor {
        let out = unaryKernel(x, NegFunction.self)
        return record(out, [x]) { g in [-g] }
    }

    /// a = a + b, with broadcasting (`a` takes the broadcast shape).
    public static func += (a: inout Tensor, b: Tensor) { a = a + b }
    /// a = a − b (broadcasting).
    public static func -= (a: inout Tensor, b: Tensor) { a = a - b }
    /// a = a · b (broadcasting).
    public static func *= (a: inout Tensor, b: Tensor) { a = a * b }
    /// a = a · b for a scalar b.
    public static func *= (a: inout Tensor, b: Float) { a = a * b }
}
