import XCTest
@testable import HazeTensor

/// Every op gives the same bits, forward and backward, with 1, 2 and 3 threads: work items and
/// summation orders are fixed by the shapes, never by the thread count (issue 15, part 5).
/// The shapes are those of the fmnist-s and faces U-Nets, large enough to run in parallel.
final class ThreadCountTests: XCTestCase {
    /// Value and gradients of `body` (seeded with a fixed random cotangent) at 1, 2 and 3 threads.
    func assertSameBits(_ label: String, _ inputs: [Tensor], file: StaticString = #filePath, line: UInt = #line,
                        _ body: ([Tensor]) -> Tensor) {
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        var reference: (value: Tensor, gradients: [Tensor])?
        for threads in 1...3 {
            Parallel.threadCount = threads
            let value = body(inputs)
            let seed = Tensor.normal(value.shape, seed: 99)
            let result = valueWithGradient(at: inputs, seed: seed, of: body)
            guard let reference else { reference = result; continue }
            XCTAssertTrue(result.value == reference.value, "\(label): value with \(threads) threads", file: file, line: line)
            for (i, (g, r)) in zip(result.gradients, reference.gradients).enumerated() where g != r {
                XCTFail("\(label): gradient of input \(i) with \(threads) threads", file: file, line: line)
            }
        }
    }

    func testConvolutions() {
        // (images, input channels, output channels, size): Winograd F(4×4) (AVX-512, > 16 images of
        // ≤ 8×8; tiles along the lanes on 9–16, 32 and 64-wide planes (14×14 among them), ∂w by haze_gemm_rows),
        // F(2×2) at every plane size, batches smaller than the work items: a single item whose
        // products are split over the threads (10 images at 16×16 for ∂w, 8 at 4×4 and 2 at 8×8).
        for (n, c, o, s) in [(32, 128, 128, 7), (6, 128, 64, 7), (20, 64, 64, 14), (64, 32, 32, 28), (3, 16, 24, 28), (17, 64, 32, 4),
                             (4, 32, 32, 64), (6, 64, 64, 32), (10, 24, 16, 16), (3, 6, 7, 32), (8, 48, 40, 4), (2, 32, 16, 8)] {
            let x = Tensor.normal([n, c, s, s], seed: 1), w = Tensor.normal([o, c, 3, 3], std: 0.05, seed: 2)
            let b = Tensor.normal([o], seed: 3)
            assertSameBits("3×3 conv \(n)×\(c)→\(o) at \(s)×\(s)", [x, w, b]) { Tensor.conv2d($0[0], weight: $0[1], bias: $0[2], padding: 1) }
        }
        // The last two: one item of all the images, its ∂w and ∂x products split over the threads.
        for (n, c, o, s) in [(32, 128, 64, 14), (8, 64, 32, 28), (64, 32, 16, 7), (8, 64, 96, 4), (8, 128, 64, 8)] {
            let x = Tensor.normal([n, c, s, s], seed: 4), w = Tensor.normal([o, c, 1, 1], std: 0.1, seed: 5)
            assertSameBits("1×1 conv \(n)×\(c)→\(o) at \(s)×\(s)", [x, w, Tensor.normal([o], seed: 6)]) {
                Tensor.conv2d($0[0], weight: $0[1], bias: $0[2])
            }
        }
        for (n, c, s) in [(32, 64, 28), (5, 32, 14), (8, 64, 8)] {
            let x = Tensor.normal([n, c, s, s], seed: 7), w = Tensor.normal([c, c, 3, 3], std: 0.05, seed: 8)
            assertSameBits("strided conv \(n)×\(c) at \(s)×\(s)", [x, w]) { Tensor.conv2d($0[0], weight: $0[1], stride: 2, padding: 1) }
        }
    }

    func testProductsNormsAndAttention() {
        let x = Tensor.normal([64, 49, 128], seed: 10), w = Tensor.normal([384, 128], std: 0.1, seed: 11)
        assertSameBits("linear", [x, w, Tensor.normal([384], seed: 12)]) { Tensor.linear($0[0], weight: $0[1], bias: $0[2]) }
        // Rows of C split, then columns (a time embedding's [batch, 512] · [512, 1024]).
        let t = Tensor.normal([8, 512], seed: 20), wt = Tensor.normal([1024, 512], std: 0.05, seed: 21)
        assertSameBits("linear, few rows", [t, wt]) { Tensor.linear($0[0], weight: $0[1], bias: nil) }
        for batch in [2, 12] {
            let a = Tensor.normal([batch, 196, 32], seed: 13), b = Tensor.normal([batch, 32, 196], seed: 14)
            assertSameBits("batched matmul of \(batch)", [a, b]) { $0[0].matmul($0[1]) }
        }
        let qkv = Tensor.normal([16, 3 * 128, 49], seed: 15)
        assertSameBits("self-attention", [qkv]) { Tensor.selfAttention(channelsFirst: $0[0], heads: 4) }
        let h = Tensor.normal([32, 64, 28, 28], seed: 16)
        assertSameBits("group norm", [h, Tensor.normal([64], seed: 17), Tensor.normal([64], seed: 18)]) {
            Tensor.groupNorm($0[0], groups: 8, weight: $0[1], bias: $0[2]).silu()
        }
        assertSameBits("group norm, scale and shift per image", [h, Tensor.normal([32, 64], seed: 24), Tensor.normal([32, 64], seed: 25)]) {
            Tensor.groupNorm($0[0], groups: 8, scale: $0[1], shift: $0[2], applyingSiLU: true)
        }
        assertSameBits("batch norm", [h, Tensor.normal([64], seed: 22), Tensor.normal([64], seed: 23)]) {
            var (mean, variance) = (Tensor.zeros([64]), Tensor.ones([64]))
            return Tensor.batchNorm($0[0], weight: $0[1], bias: $0[2], runningMean: &mean, runningVariance: &variance, training: true)
        }
        // The TensorFlow notebook's attention (4 heads of 32 at 16×16) and channel LayerNorm.
        let notebook = Tensor.normal([4, 3 * 128, 16, 16], seed: 24)
        assertSameBits("reshaped linear attention", [notebook]) { Tensor.reshapedLinearAttention($0[0], heads: 4, headDimension: 32) }
        // The whole block head by head: its training path (assertSameBits records), then inference.
        let (planes64, projection) = (Tensor.normal([3, 64, 16, 16], seed: 28), Tensor.normal([3 * 128, 64, 1, 1], std: 0.1, seed: 29))
        let output = Tensor.normal([64, 128, 1, 1], std: 0.1, seed: 30)
        let (bias, gamma, beta) = (Tensor.normal([64], seed: 31), Tensor.normal([64], seed: 32), Tensor.normal([64], seed: 33))
        assertSameBits("linear attention block, training", [planes64, projection, output, bias, gamma, beta]) {
            Tensor.reshapedLinearAttentionBlock($0[0], qkvWeight: $0[1], outWeight: $0[2], outBias: $0[3], normWeight: $0[4],
                                                normBias: $0[5], epsilon: 1e-3, heads: 4, headDimension: 32)
        }
        let saved = Parallel.threadCount
        let blocks = (1...3).map { threads in
            Parallel.threadCount = threads
            return Tensor.reshapedLinearAttentionBlock(planes64, qkvWeight: projection, outWeight: output, outBias: bias,
                                                       normWeight: gamma, normBias: beta, epsilon: 1e-3, heads: 4, headDimension: 32)
        }
        Parallel.threadCount = saved
        XCTAssertTrue(blocks[1] == blocks[0] && blocks[2] == blocks[0], "linear attention block: thread counts")
        let planes = Tensor.normal([8, 128, 16, 16], seed: 25)
        assertSameBits("channel layer norm", [planes, Tensor.normal([128], seed: 26), Tensor.normal([128], seed: 27)]) {
            Tensor.channelLayerNorm($0[0], weight: $0[1], bias: $0[2], epsilon: 1e-3).averagePooled2x2().upsampledNearest2x()
        }
        assertSameBits("mean squared error", [h, Tensor.normal([32, 64, 28, 28], seed: 19)]) { Tensor.meanSquaredError($0[0], $0[1]) }
        assertSameBits("sums", [h]) { $0[0].sum(alongAxes: [0, 2, 3]) + $0[0].mean() }
    }
}
