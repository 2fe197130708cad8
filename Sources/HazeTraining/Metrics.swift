import Foundation
import HazeTensor

/// Sample-quality metrics on feature vectors (rows of [N, D] tensors).
public enum SampleMetrics {
    /// Mean and unbiased covariance (n − 1) of feature rows, in Double.
    public struct Statistics: Equatable, Sendable {
        /// N, the feature rows the statistics were computed from.
        public let count: Int
        /// The mean feature vector μ (D values).
        public let mean: [Double]
        /// The covariance Σ, D × D row-major.
        public let covariance: [Double]

        /// Statistics from their parts (μ of D values, Σ of D × D).
        public init(count: Int, mean: [Double], covariance: [Double]) {
            (self.count, self.mean, self.covariance) = (count, mean, covariance)
        }

        /// The statistics of `features` [N, D] (N > 1, a precondition).
        public init(features: Tensor) {
            precondition(features.rank == 2 && features.shape[0] > 1, "statistics need [N > 1, D] features, got \(features.shape)")
            let (n, d) = (features.shape[0], features.shape[1])
            var mean = [Double](repeating: 0, count: d)
            for i in 0..<n { for j in 0..<d { mean[j] += Double(features.scalars[i * d + j]) } }
            mean = mean.map { $0 / Double(n) }
            // Σ = Xᶜᵀ Xᶜ / (n − 1), summed over blocks of rows (memory O(block·D + D²)), then
            // symmetrised so that rounding leaves it exactly symmetric.
            var scatter = [Double](repeating: 0, count: d * d)
            let block = 4096
            for first in stride(from: 0, to: n, by: block) {
                let rows = min(block, n - first)
                var centered = [Double](repeating: 0, count: rows * d)
                for i in 0..<rows { for j in 0..<d { centered[i * d + j] = Double(features.scalars[(first + i) * d + j]) - mean[j] } }
                let part = doubleMatrixProduct(centered, centered, m: d, n: d, k: rows, transposeA: true)
                for q in 0..<(d * d) { scatter[q] += part[q] }
            }
            let covariance = SampleMetrics.symmetrized(scatter, n: d).map { $0 / Double(n - 1) }
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
        let inner = doubleMatrixProduct(doubleMatrixProduct(s1, b.covariance, m: d, n: d, k: d), s1, m: d, n: d, k: d)
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
        func rows(_ x: Tensor, _ indices: [Int]) -> [Double] { indices.flatMap { i in x.scalars[(i * d)..<((i + 1) * d)].map(Double.init) } }
        /// Σ over entries (optionally off the diagonal) of the kernel matrix (x·y/D + 1)³.
        func kernelSum(_ x: [Double], _ y: [Double], offDiagonal: Bool) -> Double {
            let (mx, my) = (x.count / d, y.count / d)
            let dots = doubleMatrixProduct(x, y, m: mx, n: my, k: d, transposeB: true)
            var sum = 0.0
            for i in 0..<mx {
                for j in 0..<my where !offDiagonal || i != j {
                    let base = dots[i * my + j] / Double(d) + 1
                    sum += base * base * base
                }
            }
            return sum
        }
        let values = subsets.map { subset -> Double in
            let (xa, xb) = (rows(a, subset.a), rows(b, subset.b))
            let (m, mb) = (Double(subset.a.count), Double(subset.b.count))
            return kernelSum(xa, xa, offDiagonal: true) / (m * (m - 1)) + kernelSum(xb, xb, offDiagonal: true) / (mb * (mb - 1))
                - 2 * kernelSum(xa, xb, offDiagonal: false) / (m * mb)
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

    static func symmetrized(_ x: [Double], n: Int) -> [Double] {
        var out = x
        for i in 0..<n { for j in 0..<n { out[i * n + j] = 0.5 * (x[i * n + j] + x[j * n + i]) } }
        return out
    }

    /// Q diag(√max(λ, 0)) Qᵀ for a symmetric positive semi-definite matrix.
    static func psdSquareRoot(_ x: [Double], n: Int) -> [Double] {
        let (values, vectors) = symmetricEigendecomposition(symmetrized(x, n: n), n: n)!
        // Q diag(r) Qᵀ = Wᵀ W with row e of W = √r_e · (eigenvector e).
        var w = vectors
        for e in 0..<n {
            let scale = max(values[e], 0).squareRoot().squareRoot()
            for i in 0..<n { w[e * n + i] *= scale }
        }
        return doubleMatrixProduct(w, w, m: n, n: n, k: n, transposeA: true)
    }
}
