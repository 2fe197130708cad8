import CHazeKernels
import XCTest
@testable import HazeTensor

final class TensorTests: XCTestCase {
    func testCreation() {
        XCTAssertEqual(Tensor.zeros([2, 3]).scalars, [Float](repeating: 0, count: 6))
        XCTAssertEqual(Tensor.full([2], 3.5).scalars, [3.5, 3.5])
        XCTAssertEqual(Tensor.arange(0, 5).scalars, [0, 1, 2, 3, 4])
        XCTAssertEqual(Tensor.arange(1, 2, step: 0.25).scalars, [1, 1.25, 1.5, 1.75])
        let t = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(t[1, 2], 6)
        XCTAssertEqual(t.rank, 2)
    }

    func testValueSemantics() {
        let a = Tensor.ones([3])
        var b = a
        b.scalars[0] = 7
        XCTAssertEqual(a.scalars, [1, 1, 1], "mutating a copy must not change the original")
        XCTAssertEqual(b.scalars, [7, 1, 1])
    }

    func testBroadcastingValues() {
        let a = Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        XCTAssertEqual((a + Tensor([10, 20, 30])).scalars, [11, 22, 33, 14, 25, 36])
        XCTAssertEqual((a * Tensor(shape: [2, 1], scalars: [2, 3])).scalars, [2, 4, 6, 12, 15, 18])
        XCTAssertEqual((Tensor(shape: [2, 1], scalars: [1, 2]) - Tensor([1, 2, 3])).shape, [2, 3])
        XCTAssertEqual(a.sum(alongAxis: 0).scalars, [5, 7, 9])
        XCTAssertEqual(a.sum(alongAxis: 1, keepingDimensions: true).shape, [2, 1])
        XCTAssertEqual(a.max(alongAxis: 1).scalars, [3, 6])
        XCTAssertEqual(a.transposed().scalars, [1, 4, 2, 5, 3, 6])
        XCTAssertEqual(a.mean().scalar, 3.5)
    }

    func testMatmulValues() {
        let a = Tensor(shape: [2, 2], scalars: [1, 2, 3, 4]), b = Tensor(shape: [2, 1], scalars: [5, 6])
        XCTAssertEqual(a.matmul(b).scalars, [17, 39])
    }

    /// `sumOfSquares` (the clipping norm): the float64 sum within float64 rounding, and the same
    /// bits at 1 and 2 threads, for sizes around its 65,536-element blocks and 8-element lanes.
    func testSumOfSquares() {
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        XCTAssertEqual(Tensor.zeros([0]).sumOfSquares, 0)
        for n in [1, 7, 9, 65_536, 65_537, 200_003] {
            let x = Tensor.normal([n], seed: UInt64(n))
            let exact = x.scalars.reduce(0.0) { $0 + Double($1) * Double($1) }
            Parallel.threadCount = 1
            let one = x.sumOfSquares
            Parallel.threadCount = 2
            XCTAssertEqual(x.sumOfSquares, one, "n = \(n): thread count")
            XCTAssertEqual(one, exact, accuracy: exact * Double(n) * 0x1p-52, "n = \(n)")
        }
    }

    func testRandomIsReproducibleAcrossThreadCounts() {
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        Parallel.threadCount = 1
        let one = Tensor.normal([100_003], seed: 42)
        Parallel.threadCount = 2
        let two = Tensor.normal([100_003], seed: 42)
        XCTAssertEqual(one, two)
        XCTAssertNotEqual(one, Tensor.normal([100_003], seed: 43))
        // Standard normal statistics.
        let mean = one.mean().scalar, variance = one.squared().mean().scalar - mean * mean
        XCTAssertEqual(mean, 0, accuracy: 0.02)
        XCTAssertEqual(variance, 1, accuracy: 0.02)
        let u = Tensor.uniform([10_000], low: -1, high: 3, seed: 5)
        XCTAssertGreaterThanOrEqual(u.scalars.min()!, -1)
        XCTAssertLessThan(u.scalars.max()!, 3)
        XCTAssertEqual(u.mean().scalar, 1, accuracy: 0.05)
    }

    func testGeneratorStateContinuesTheStream() {
        var whole = RandomGenerator(seed: 9)
        let a = whole.normal([10]), b = whole.normal([6])
        var resumed = RandomGenerator(seed: 9)
        _ = resumed.normal([10])
        let saved = resumed  // e.g. stored in a checkpoint
        var restored = RandomGenerator(seed: saved.seed, offset: saved.offset)
        XCTAssertEqual(restored.normal([6]), b)
        XCTAssertNotEqual(a.slice(0..<6), b)
        var g = RandomGenerator(seed: 3)
        XCTAssertEqual(g.permutation(50).sorted(), Array(0..<50))
        XCTAssertTrue(g.integers(1000, below: 7).allSatisfy { (0..<7).contains($0) })
    }

    func testInferenceRecordsNothing() {
        let x = Tensor.normal([2, 3], seed: 1), w = Tensor.normal([4, 3], seed: 2)
        let y = Tensor.linear(x, weight: w, bias: nil).silu().sum()
        XCTAssertFalse(y.isRecorded, "no tape outside valueWithGradient")
        let (value, grads) = valueWithGradient(at: [x, w]) { Tensor.linear($0[0], weight: $0[1], bias: nil).silu().sum() }
        XCTAssertEqual(value.scalar, y.scalar, accuracy: 1e-5)
        XCTAssertEqual(grads.map(\.shape), [[2, 3], [4, 3]])
        XCTAssertFalse(value.isRecorded)
    }

    func testUnusedInputGetsZeroGradient() {
        let (_, grads) = valueWithGradient(at: [Tensor.ones([2]), Tensor.ones([3])]) { $0[0].sum() }
        XCTAssertEqual(grads[1], Tensor.zeros([3]))
    }

    func testBatchNormRunningStatisticsAndEval() {
        let x = Tensor.normal([8, 2, 3, 3], mean: 2, std: 3, seed: 3)
        var mean = Tensor.zeros([2]), variance = Tensor.ones([2])
        let y = Tensor.batchNorm(x, weight: nil, bias: nil, runningMean: &mean, runningVariance: &variance, training: true)
        // Normalised output: per-channel mean 0, variance 1.
        let channelMean = y.mean(alongAxes: [0, 2, 3])
        for v in channelMean.scalars { XCTAssertEqual(v, 0, accuracy: 1e-4) }
        XCTAssertGreaterThan(mean.scalars[0], 0.1, "running mean moved toward the batch mean")
        let evalOut = Tensor.batchNorm(x, weight: nil, bias: nil, runningMean: &mean, runningVariance: &variance, training: false)
        XCTAssertEqual(evalOut.shape, x.shape)
    }

    /// Padding must read as zeros even where the kernel overhangs a tiny image entirely
    /// (regression: a 2×2 input with diffusers' (0,1,0,1) pad read past the row).
    func testConvolutionPaddingEqualsExplicitZeros() {
        for size in [1, 2, 3, 5] {
            let x = Tensor.normal([2, 3, size, size], seed: 50), w = Tensor.normal([4, 3, 3, 3], seed: 51)
            for (padding, stride) in [(Padding2D(top: 0, bottom: 1, left: 0, right: 1), 2), (Padding2D(1), 1), (Padding2D(1), 2)] {
                // The same input with the zeros written out.
                let (ph, pw) = (size + padding.top + padding.bottom, size + padding.left + padding.right)
                var padded = [Float](repeating: 0, count: 2 * 3 * ph * pw)
                for plane in 0..<6 {
                    for i in 0..<size {
                        for j in 0..<size {
                            padded[(plane * ph + i + padding.top) * pw + j + padding.left] = x.scalars[(plane * size + i) * size + j]
                        }
                    }
                }
                let explicit = Tensor.conv2d(Tensor(shape: [2, 3, ph, pw], scalars: padded), weight: w, stride: stride)
                let implicit = Tensor.conv2d(x, weight: w, stride: stride, padding: padding)
                let magnitude = ConvolutionMagnitudes(x: x, weight: w, bias: nil, cotangent: implicit,
                                                      stride: stride, padding: padding).y
                RoundingBound.assertAgree(implicit, explicit, magnitude: magnitude, length: 27, "size \(size) \(padding)")
            }
        }
    }
}

/// The CPU features come from CPUID, and the kernels' own availability checks agree with them.
final class CPUFeaturesTests: XCTestCase {
    func testFeaturesAgreeWithTheKernels() {
        let cpu = CPUFeatures.current
        // The kernels test avx512f alone; CPUFeatures asks for F, BW, VL and DQ (x86-64-v4).
        if cpu.avx512 {
            XCTAssertNotEqual(haze_winograd43_available(), 0)
            XCTAssertNotEqual(haze_direct_conv_available(), 0)
            XCTAssertNotEqual(haze_gemm_packed_available(), 0)
        }
        XCTAssertTrue(!cpu.avx512 || cpu.avx2FMA, "AVX-512 CPUs have AVX2 and FMA")
        XCTAssertTrue(!cpu.avx512BF16 || cpu.avx512)
        XCTAssertTrue(cpu.kernelDescription.hasPrefix(cpu.avx512 ? "AVX-512 kernels" : "portable kernels"))
    }
}

/// Permutations that transpose matrices (the tiled copy) against the element-by-element definition.
final class PermutationTests: XCTestCase {
    func testTransposingPermutations() {
        let x = Tensor.normal([3, 70, 45], seed: 9)
        for axes in [[0, 2, 1], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
            let y = x.permuted(axes)
            let shape = axes.map { x.shape[$0] }
            XCTAssertEqual(y.shape, shape)
            var expected = [Float](repeating: 0, count: x.count)
            for i in 0..<3 { for j in 0..<70 { for k in 0..<45 {
                let index = [i, j, k], out = axes.map { index[$0] }
                expected[(out[0] * shape[1] + out[1]) * shape[2] + out[2]] = x.scalars[(i * 70 + j) * 45 + k]
            } } }
            XCTAssertEqual(y.scalars, expected, "\(axes)")
        }
    }

    /// Permutations that are batches of matrix transposes (NCHW ↔ NHWC, [B, P, N] ↔ [B, N, P]) go
    /// by tiles: element for element the definition, on sides that are and are not multiples of
    /// the tile.
    func testTiledTransposesMatchTheDefinition() {
        for (shape, axes) in [([3, 17, 33], [0, 2, 1]), ([2, 5, 16, 20], [0, 2, 3, 1]), ([2, 40, 3, 18], [0, 3, 1, 2]),
                              ([64, 48], [1, 0]), ([2, 3, 31, 16], [0, 1, 3, 2]), ([16, 16], [1, 0])] {
            let x = Tensor.normal(shape, seed: 4)
            let y = x.permuted(axes)
            let inStrides = (0..<shape.count).map { shape[($0 + 1)...].reduce(1, *) }
            let outShape = axes.map { shape[$0] }
            var expected = [Float](repeating: 0, count: x.count)
            for flat in 0..<x.count {
                var rest = flat, source = 0
                for axis in (0..<outShape.count).reversed() {
                    source += (rest % outShape[axis]) * inStrides[axes[axis]]
                    rest /= outShape[axis]
                }
                expected[flat] = x.scalars[source]
            }
            XCTAssertEqual(y.shape, outShape)
            XCTAssertEqual(y.scalars, expected, "\(shape) \(axes)")
        }
    }
}
