import Foundation
import HazeTensor

/// Sample-quality metrics on feature vectors (rows of [N, D] tensors).
public enum SampleMetrics {
    /// Mean and unbiased covariance (n − 1) of feature rows, in Double.
    public struct Statistics: Equatable, Sendable {
        public let count: Int
        public let mean: [Double]
        public let covariance: [Double]

        public init(count: Int, mean: [Double], covariance: [Double]) {
            (self.count, self.mean, self.covariance) = (count, mean, covariance)
        }

        public init(features: Tensor) {
            precondition(features.rank == 2 && features.shape[0] > 1, "statistics need [N > 1, D] features, got \(features.shape)")
            let (n, d) = (features.shape[0], features.shape[1])
            var mean = [Double](repeating: 0, count: d)
            for i in 0..<n { for j in 0..<d { mean[j] += Double(features.scalars[i * d + j]) } }
            mean = mean.map { $0 / Double(n) }
            var covariance = [Double](repeating: 0, count: d * d)
            var centered = [Double](repeating: 0, count: d)
            for i in 0..<n {
                for j in 0..<d { centered[j] = Double(features.scalars[i * d + j]) - mean[j] }
                for j in 0..<d { for k in j..<d { covariance[j * d + k] += centered[j] * centered[k] } }
            }
            for j in 0..<d {
                for k in j..<d {
                    covariance[j * d + k] /= Double(n - 1)
                    covariance[k * d + j] = covariance[j * d + k]
                }
            }
            self.init(count: n, mean: mean, covariance: covariance)
        }
    }

    /// The Fréchet distance between Gaussian fits N(μ₁, Σ₁), N(μ₂, Σ₂) (Heusel et al. 2017, FID):
    ///   ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{½} Σ₂ Σ₁^{½})^{½}.
    /// The matrix square roots come from symmetric eigendecompositions (stable for PSD matrices,
    /// unlike sqrtm of the non-symmetric Σ₁Σ₂, which has the same trace).
    public static func frechetDistance(_ a: Statistics, _ b: Statistics) -> Double {
        let d = a.mean.count
        precondition(b.mean.count == d, "feature sizes differ: \(d) and \(b.mean.count)")
        let s1 = psdSquareRoot(a.covariance, n: d)
        let inner = multiply(multiply(s1, b.covariance, n: d), s1, n: d)
        let eigen = symmetricEigendecomposition(symmetrized(inner, n: d), n: d)!.values
        let traceRoot = eigen.reduce(0) { $0 + max($1, 0).squareRoot() }
        let meanTerm = zip(a.mean, b.mean).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        let traces = (0..<d).reduce(0) { $0 + a.covariance[$1 * d + $1] + b.covariance[$1 * d + $1] }
        return meanTerm + traces - 2 * traceRoot
    }

    /// Kernel inception distance (Bińkowski et al. 2018): the unbiased MMD² with the kernel
    /// k(x, y) = (x·y/D + 1)³, averaged over subsets. `subsets` lists, for each subset, the rows
    /// of `a` and of `b` to use. Returns the mean and (population) standard deviation.
    public static func kernelInceptionDistance(_ a: Tensor, _ b: Tensor, subsets: [(a: [Int], b: [Int])]) -> (mean: Double, std: Double, values: [Double]) {
        let d = a.shape[1]
        func k(_ x: Tensor, _ i: Int, _ y: Tensor, _ j: Int) -> Double {
            var dot = 0.0
            for c in 0..<d { dot += Double(x.scalars[i * d + c]) * Double(y.scalars[j * d + c]) }
            let base = dot / Double(d) + 1
            return base * base * base
        }
        let values = subsets.map { subset -> Double in
            let m = Double(subset.a.count)
            var xx = 0.0, yy = 0.0, xy = 0.0
            for (p, i) in subset.a.enumerated() { for (q, j) in subset.a.enumerated() where p != q { xx += k(a, i, a, j) } }
            for (p, i) in subset.b.enumerated() { for (q, j) in subset.b.enumerated() where p != q { yy += k(b, i, b, j) } }
            for i in subset.a { for j in subset.b { xy += k(a, i, b, j) } }
            return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / (m * Double(subset.b.count))
        }
        let mean = values.reduce(0, +) / Double(values.count)
        let std = (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count)).squareRoot()
        return (mean, std, values)
    }

    /// Random subsets for KID (without replacement, seeded).
    public static func kidSubsets(countA: Int, countB: Int, subsets: Int = 100, size: Int = 1000, seed: UInt64 = 0) -> [(a: [Int], b: [Int])] {
        var generator = RandomGenerator(seed: seed)
        let m = min(size, countA, countB)
        return (0..<subsets).map { _ in (Array(generator.permutation(countA).prefix(m)), Array(generator.permutation(countB).prefix(m))) }
    }

    static func multiply(_ x: [Double], _ y: [Double], n: Int) -> [Double] {
        var out = [Double](repeating: 0, count: n * n)
        for i in 0..<n { for k in 0..<n { let v = x[i * n + k]; if v != 0 { for j in 0..<n { out[i * n + j] += v * y[k * n + j] } } } }
        return out
    }

    static func symmetrized(_ x: [Double], n: Int) -> [Double] {
        var out = x
        for i in 0..<n { for j in 0..<n { out[i * n + j] = 0.5 * (x[i * n + j] + x[j * n + i]) } }
        return out
    }

    /// Q diag(√max(λ, 0)) Qᵀ for a symmetric positive semi-definite matrix.
    static func psdSquareRoot(_ x: [Double], n: Int) -> [Double] {
        let (values, vectors) = symmetricEigendecomposition(symmetrized(x, n: n), n: n)!
        var out = [Double](repeating: 0, count: n * n)
        for e in 0..<n {
            let root = max(values[e], 0).squareRoot()
            guard root > 0 else { continue }
            for i in 0..<n { let vi = vectors[e * n + i] * root; for j in 0..<n { out[i * n + j] += vi * vectors[e * n + j] } }
        }
        return out
    }
}
