import CHazeKernels
import Foundation

/// Elementwise unary math and activations. Forward kernels are specialised per function; the
/// derivative of each sits next to it, as a pullback built from other kernels or a fused
/// `(x or y, g) -> dx` binary kernel.

protocol UnaryFunction {
    static func apply(_ x: Float) -> Float
}

enum NegFunction: UnaryFunction { static func apply(_ x: Float) -> Float { -x } }
enum LogFunction: UnaryFunction { static func apply(_ x: Float) -> Float { Foundation.log(x) } }
enum SqrtFunction: UnaryFunction { static func apply(_ x: Float) -> Float { x.squareRoot() } }
enum RsqrtFunction: UnaryFunction { static func apply(_ x: Float) -> Float { 1 / x.squareRoot() } }
enum SquareFunction: UnaryFunction { static func apply(_ x: Float) -> Float { x * x } }
enum AbsFunction: UnaryFunction { static func apply(_ x: Float) -> Float { Swift.abs(x) } }
enum SignFunction: UnaryFunction { static func apply(_ x: Float) -> Float { x > 0 ? 1 : (x < 0 ? -1 : 0) } }
enum TanhFunction: UnaryFunction { static func apply(_ x: Float) -> Float { Foundation.tanh(x) } }
/// GELU with the exact erf form, PyTorch's default: x Φ(x).
enum GELUFunction: UnaryFunction {
    static func apply(_ x: Float) -> Float { 0.5 * x * (1 + Foundation.erf(x * 0.70710678118654752)) }
}

// Fused derivatives, as binary functions of (input or output, upstream gradient).
enum SigmoidBackward: BinaryFunction { static func apply(_ y: Float, _ g: Float) -> Float { g * y * (1 - y) } }
enum TanhBackward: BinaryFunction { static func apply(_ y: Float, _ g: Float) -> Float { g * (1 - y * y) } }
enum GELUBackward: BinaryFunction {
    /// d/dx x Φ(x) = Φ(x) + x φ(x)
    static func apply(_ x: Float, _ g: Float) -> Float {
        let cdf = 0.5 * (1 + Foundation.erf(x * 0.70710678118654752))
        let pdf = Foundation.exp(-0.5 * x * x) * 0.39894228040143268
        return g * (cdf + x * pdf)
    }
}

extension Tensor {
    /// out = kernel(x) for a C kernel over contiguous floats; parallel over disjoint ranges.
    static func vectorKernel(_ x: Tensor, _ kernel: (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void) -> Tensor {
        Tensor(shape: x.shape) { out, count in
            x.withScalars { p in
                Parallel.forEach(count, cost: 16) { range in
                    kernel(p + range.lowerBound, out + range.lowerBound, range.count)
                }
            }
        }
    }

    /// out[i] = F(x[i]); out has x's shape. Parallel over disjoint ranges.
    static func unaryKernel<F: UnaryFunction>(_ x: Tensor, _: F.Type) -> Tensor {
        Tensor(shape: x.shape) { out, count in
            x.withScalars { p in
                Parallel.forEach(count, cost: 8) { range in
                    for i in range { out[i] = F.apply(p[i]) }
                }
            }
        }
    }

    /// eˣ; pullback g·y.
    public func exp() -> Tensor {
        let y = Tensor.vectorKernel(self) { haze_exp($0, $1, $2) }
        return Tensor.record(y, [self]) { g in [g * y] }
    }

    /// Natural logarithm; pullback g / x.
    public func log() -> Tensor {
        let x = detached
        return Tensor.record(Tensor.unaryKernel(self, LogFunction.self), [self]) { g in [g / x] }
    }

    /// √x; pullback g / (2y).
    public func sqrt() -> Tensor {
        let y = Tensor.unaryKernel(self, SqrtFunction.self)
        return Tensor.record(y, [self]) { g in [g * 0.5 / y] }
    }

    /// 1/√x; pullback −g y³ / 2.
    public func rsqrt() -> Tensor {
        let y = Tensor.unaryKernel(self, RsqrtFunction.self)
        return Tensor.record(y, [self]) { g in [g * (y * y * y) * -0.5] }
    }

    /// x²; pullback 2 g x.
    public func squared() -> Tensor {
        let x = detached
        return Tensor.record(Tensor.unaryKernel(self, SquareFunction.self), [self]) { g in [g * x * 2] }
    }

    /// |x|; pullback g·sign(x) (0 at 0, as PyTorch).
    public func abs() -> Tensor {
        let x = detached
        return Tensor.record(Tensor.unaryKernel(self, AbsFunction.self), [self]) { g in
            [g * Tensor.unaryKernel(x, SignFunction.self)]
        }
    }

    /// xᵖ for a scalar exponent; pullback g p xᵖ⁻¹.
    public func pow(_ exponent: Float) -> Tensor {
        let x = detached
        let y = Tensor(shape: shape) { out, count in
            x.withScalars { p in
                Parallel.forEach(count, cost: 16) { range in
                    for i in range { out[i] = Foundation.pow(p[i], exponent) }
                }
            }
        }
        return Tensor.record(y, [self]) { g in [g * x.pow(exponent - 1) * exponent] }
    }

    /// Clamps to [low, high]; the gradient passes where low ≤ x ≤ high (PyTorch's rule).
    public func clamped(min low: Float = -.infinity, max high: Float = .infinity) -> Tensor {
        let x = detached
        let y = Tensor(shape: shape) { out, count in
            x.withScalars { p in
                for i in 0..<count { out[i] = Swift.min(Swift.max(p[i], low), high) }
            }
        }
        return Tensor.record(y, [self]) { g in
            let mask = Tensor(shape: x.shape) { m, count in
                x.withScalars { p in for i in 0..<count { m[i] = (p[i] >= low && p[i] <= high) ? 1 : 0 } }
            }
            return [g * mask]
        }
    }

    /// SiLU (swish): x σ(x).
    public func silu() -> Tensor {
        let x = detached
        return Tensor.record(Tensor.vectorKernel(self) { haze_silu($0, $1, $2) }, [self]) { g in
            [Tensor(shape: x.shape) { out, count in
                x.withScalars { px in g.withScalars { pg in
                    Parallel.forEach(count, cost: 16) { r in
                        haze_silu_backward(px + r.lowerBound, pg + r.lowerBound, out + r.lowerBound, r.count)
                    }
                } }
            }]
        }
    }

    /// Logistic sigmoid σ(x) = 1 / (1 + e⁻ˣ).
    public func sigmoid() -> Tensor {
        let y = Tensor.vectorKernel(self) { haze_sigmoid($0, $1, $2) }
        return Tensor.record(y, [self]) { g in [Tensor.binaryKernel(y, g, SigmoidBackward.self)] }
    }

    /// Hyperbolic tangent.
    public func tanh() -> Tensor {
        let y = Tensor.unaryKernel(self, TanhFunction.self)
        return Tensor.record(y, [self]) { g in [Tensor.binaryKernel(y, g, TanhBackward.self)] }
    }

    /// GELU, exact (erf) form: x Φ(x).
    public func gelu() -> Tensor {
        let x = detached
        return Tensor.record(Tensor.unaryKernel(self, GELUFunction.self), [self]) { g in
            [Tensor.binaryKernel(x, g, GELUBackward.self)]
        }
    }
}
