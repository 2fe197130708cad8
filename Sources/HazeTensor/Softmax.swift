import CHazeKernels
import Foundation

/// Softmax and log-softmax along an axis, forward and backward.
///   softmax:     y = exp(x − max) / Σ exp(x − max);   ∂x = y ⊙ (g − Σ g y)
///   log-softmax: y = x − max − log Σ exp(x − max);    ∂x = g − softmax(x) · Σ g
/// Kernels work on rows of the last axis; another axis is moved last and back.

extension Tensor {
    /// Softmax along `axis` (default: the last).
    public func softmax(alongAxis axis: Int = -1) -> Tensor {
        rowwise(axis) { x in
            let y = Tensor.softmaxRows(x, log: false)
            return Tensor.record(y, [x]) { g in [Tensor.softmaxBackwardRows(y: y, g: g)] }
        }
    }

    /// Log-softmax along `axis` (default: the last).
    public func logSoftmax(alongAxis axis: Int = -1) -> Tensor {
        rowwise(axis) { x in
            let y = Tensor.softmaxRows(x, log: true)
            return Tensor.record(y, [x]) { g in
                let s = y.exp().detached
                return [g - s * g.sum(alongAxis: -1, keepingDimensions: true)]
            }
        }
    }

    /// Applies a last-axis op along `axis` by moving that axis last and back.
    private func rowwise(_ axis: Int, _ body: (Tensor) -> Tensor) -> Tensor {
        let a = normalizeAxis(axis, rank: rank)
        if a == rank - 1 { return body(self) }
        var axes = Array(0..<rank)
        axes.swapAt(a, rank - 1)
        return body(permuted(axes)).permuted(axes)
    }

    /// Softmax (or log-softmax) of each row of the last axis (C kernel). Parallel over rows.
    static func softmaxRows(_ x: Tensor, log: Bool) -> Tensor {
        let d = x.shape.last ?? 1, rows = x.count / Swift.max(d, 1)
        return Tensor(shape: x.shape) { out, _ in
            x.withScalars { p in
                Parallel.forEach(rows, cost: 16 * d) { range in
                    haze_softmax_rows(p + range.lowerBound * d, out + range.lowerBound * d, range.count, d, log ? 1 : 0)
                }
            }
        }
    }

    /// ∂x = y ⊙ (g − Σ g y) per row of the last axis. Parallel over rows.
    static func softmaxBackwardRows(y: Tensor, g: Tensor) -> Tensor {
        let d = y.shape.last ?? 1, rows = y.count / Swift.max(d, 1)
        return Tensor(shape: y.shape) { out, _ in
            y.withScalars { py in g.withScalars { pg in
                Parallel.forEach(rows, cost: 4 * d) { range in
                    for r in range {
                        let ys = py + r * d, gs = pg + r * d, dst = out + r * d
                        var dot: Float = 0
                        for i in 0..<d { dot += ys[i] * gs[i] }
                        for i in 0..<d { dst[i] = ys[i] * (gs[i] - dot) }
                    }
                }
            } }
        }
    }
}
