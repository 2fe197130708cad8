import XCTest
@testable import HazeTensor

/// Central-difference gradient checks for every differentiable op, on tiny shapes.
final class GradientTests: XCTestCase {
    func normal(_ shape: [Int], _ seed: UInt64, std: Float = 1) -> Tensor { Tensor.normal(shape, std: std, seed: seed) }
    /// Values bounded away from zero (for log, sqrt, division, abs kinks).
    func positive(_ shape: [Int], _ seed: UInt64) -> Tensor { Tensor.uniform(shape, low: 0.5, high: 2, seed: seed) }

    func testBroadcastingArithmetic() {
        let a = normal([2, 3, 4], 1), b = normal([3, 1], 2), c = positive([4], 3)
        checkGradients([a, b]) { $0[0] + $0[1] }
        checkGradients([a, b]) { $0[0] - $0[1] }
        checkGradients([a, b]) { $0[0] * $0[1] }
        checkGradients([a, c]) { $0[0] / $0[1] }
        checkGradients([b, a]) { $0[0] / ($0[1].squared() + 1) }
        checkGradients([a]) { -$0[0] * 3 + 2 }
        checkGradients([a]) { 1 / ($0[0].squared() + 1) }
    }

    func testValueUsedTwiceAccumulates() {
        let x = normal([3, 4], 4)
        checkGradients([x]) { $0[0] * $0[0] + $0[0] }
        let (_, g) = valueWithGradient(at: x) { ($0 + $0).sum() }
        XCTAssertEqual(g, Tensor.full([3, 4], 2))
    }

    func testUnaryMath() {
        let x = normal([2, 5], 5), p = positive([2, 5], 6)
        checkGradients([x]) { $0[0].exp() }
        checkGradients([p]) { $0[0].log() }
        checkGradients([p]) { $0[0].sqrt() }
        checkGradients([p]) { $0[0].rsqrt() }
        checkGradients([x]) { $0[0].squared() }
        checkGradients([p]) { $0[0].pow(2.5) }
        checkGradients([p * Tensor([1, -1, 1, -1, 1])]) { $0[0].abs() }
        // Clamp bounds chosen away from the sample values.
        checkGradients([Tensor([-1.7, -0.33, 0.21, 0.8, 1.9, 2.3])]) { $0[0].clamped(min: -1, max: 1) }
    }

    func testActivations() {
        let x = normal([3, 7], 7, std: 2)
        checkGradients([x]) { $0[0].silu() }
        checkGradients([x]) { $0[0].sigmoid() }
        checkGradients([x]) { $0[0].tanh() }
        checkGradients([x]) { $0[0].gelu() }
    }

    func testReductions() {
        let x = normal([2, 3, 4, 5], 8)
        checkGradients([x]) { $0[0].sum() }
        checkGradients([x]) { $0[0].sum(alongAxes: [1, 3], keepingDimensions: true) }
        checkGradients([x]) { $0[0].sum(alongAxes: [0, 2]) }
        checkGradients([x]) { $0[0].sum(alongAxis: -1) }
        checkGradients([x]) { $0[0].mean(alongAxes: [0, 2, 3], keepingDimensions: true) }
        checkGradients([x]) { $0[0].mean() }
        // Distinct values, so the maximum is unique and differentiable.
        let distinct = Tensor(shape: [3, 4], scalars: (0..<12).map { Float(($0 * 7) % 12) * 0.3 })
        checkGradients([distinct]) { $0[0].max(alongAxis: 1) }
        checkGradients([distinct]) { $0[0].max(alongAxis: 0, keepingDimensions: true) }
        checkGradients([distinct]) { $0[0].max() }
    }

    func testShapeOps() {
        let x = normal([2, 3, 4], 9), y = normal([2, 2, 4], 10)
        checkGradients([x]) { $0[0].reshaped(to: [6, -1]) }
        checkGradients([x]) { $0[0].permuted([2, 0, 1]) }
        checkGradients([x]) { $0[0].transposed(0, 2) }
        checkGradients([x, y]) { Tensor.concatenate([$0[0], $0[1]], alongAxis: 1) }
        checkGradients([x]) { let parts = $0[0].split(sizes: [1, 2], alongAxis: 1); return parts[1] * 2 + parts[0] }
        checkGradients([x]) { $0[0].slice(1..<2) }
        checkGradients([x]) { $0[0].chunked(2, alongAxis: 2)[1] }
        checkGradients([normal([3, 1], 11)]) { $0[0].broadcast(to: [2, 3, 4]) }
    }

    func testMatmul() {
        let a = normal([3, 4], 12), b = normal([4, 5], 13)
        checkGradients([a, b]) { $0[0].matmul($0[1]) }
        let ba = normal([2, 3, 4], 14), bb = normal([2, 4, 2], 15)
        checkGradients([ba, bb]) { $0[0].matmul($0[1]) }
        checkGradients([ba, b]) { $0[0].matmul($0[1]) }
        checkGradients([ba, normal([2, 5, 4], 16)]) { Tensor.batchedMatmul($0[0], $0[1], transposeA: false, transposeB: true) }
        checkGradients([normal([2, 4, 3], 17), bb]) { Tensor.batchedMatmul($0[0], $0[1], transposeA: true, transposeB: false) }
        checkGradients([normal([2, 4, 3], 18), normal([2, 2, 4], 19)]) {
            Tensor.batchedMatmul($0[0], $0[1], transposeA: true, transposeB: true)
        }
        checkGradients([ba, normal([5, 4], 20), normal([5], 21)]) { Tensor.linear($0[0], weight: $0[1], bias: $0[2]) }
    }

    func testConvolution() {
        let x = normal([2, 3, 5, 6], 22), w = normal([4, 3, 3, 3], 23), b = normal([4], 24)
        checkGradients([x, w, b]) { Tensor.conv2d($0[0], weight: $0[1], bias: $0[2], padding: 1) }
        checkGradients([x, w, b]) { Tensor.conv2d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 1) }
        checkGradients([normal([1, 2, 6, 6], 25), normal([3, 2, 3, 3], 26), b.slice(0..<3)]) {
            Tensor.conv2d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: Padding2D(top: 0, bottom: 1, left: 0, right: 1))
        }
        checkGradients([x, normal([2, 3, 1, 1], 27)]) { Tensor.conv2d($0[0], weight: $0[1]) }
        // Outputs of ≥ 16 columns take im2col's row loops, narrower ones its offset tables (above).
        checkGradients([normal([1, 2, 9, 34], 45), normal([2, 2, 3, 3], 46), normal([2], 47)]) {
            Tensor.conv2d($0[0], weight: $0[1], bias: $0[2], stride: 2, padding: 1)
        }
        // A 1×1 convolution on images of ≥ 512 pixels reads x in place (no im2col): values against
        // Σ_c w[o, c] x[n, c, q] + b[o], gradients by finite differences.
        let big = normal([2, 3, 23, 23], 36), w1 = normal([2, 3, 1, 1], 37), b1 = normal([2], 38)
        let y = Tensor.conv2d(big, weight: w1, bias: b1)
        for (n, o, q) in [(0, 0, 0), (1, 1, 528), (1, 0, 300)] {
            let expected = (0..<3).reduce(b1.scalars[o]) { $0 + w1.scalars[o * 3 + $1] * big.scalars[(n * 3 + $1) * 529 + q] }
            XCTAssertEqual(y.scalars[(n * 2 + o) * 529 + q], expected, accuracy: 1e-5)
        }
        checkGradients([big, w1, b1]) { Tensor.conv2d($0[0], weight: $0[1], bias: $0[2]) }
    }

    func testResampling() {
        let x = normal([2, 3, 4, 6], 28)
        checkGradients([x]) { $0[0].upsampledNearest2x() }
        checkGradients([x]) { $0[0].averagePooled2x2() }
        // The values: y[n, c, i, j] = x[n, c, i/2, j/2], on rows wider than a vector (17).
        let wide = normal([2, 3, 5, 17], 32), up = wide.upsampledNearest2x()
        XCTAssertEqual(up.shape, [2, 3, 10, 34])
        let (xs, ys) = (wide.scalars, up.scalars)
        for plane in 0..<6 {
            for i in 0..<10 {
                for j in 0..<34 { XCTAssertEqual(ys[(plane * 10 + i) * 34 + j], xs[(plane * 5 + i / 2) * 17 + j / 2]) }
            }
        }
    }

    func testNormalization() {
        let x = normal([2, 6, 3, 3], 29), w = normal([6], 30), b = normal([6], 31)
        checkGradients([x, w, b]) { Tensor.groupNorm($0[0], groups: 3, weight: $0[1], bias: $0[2]) }
        checkGradients([x]) { Tensor.groupNorm($0[0], groups: 2, weight: nil, bias: nil, epsilon: 1e-6) }
        // Group norm fused with SiLU: its gradients, and the same values and gradients as the two ops.
        checkGradients([x, w, b]) { Tensor.groupNorm($0[0], groups: 3, weight: $0[1], bias: $0[2], applyingSiLU: true) }
        checkGradients([x]) { Tensor.groupNorm($0[0], groups: 2, weight: nil, bias: nil, applyingSiLU: true) }
        let cotangent = normal([2, 6, 3, 3], 35)
        let (fused, fusedGrads) = valueWithGradient(at: [x, w, b]) {
            (Tensor.groupNorm($0[0], groups: 3, weight: $0[1], bias: $0[2], applyingSiLU: true) * cotangent).sum()
        }
        let (separate, separateGrads) = valueWithGradient(at: [x, w, b]) {
            (Tensor.groupNorm($0[0], groups: 3, weight: $0[1], bias: $0[2]).silu() * cotangent).sum()
        }
        XCTAssertEqual(fused.scalars[0], separate.scalars[0], accuracy: 1e-5)
        for (f, s) in zip(fusedGrads, separateGrads) { assertClose(f, s, tolerance: 1e-5) }
        // Scale and shift per image and channel: finite differences, and the same as the group norm
        // modulated by separate ops, (GN(x) w + b)(1 + γ) + β then SiLU, values and gradients.
        let (filmScale, filmShift) = (normal([2, 6], 41) * 0.5, normal([2, 6], 42))
        for silu in [false, true] {
            checkGradients([x, filmScale, filmShift]) { Tensor.groupNorm($0[0], groups: 3, scale: $0[1], shift: $0[2], applyingSiLU: silu) }
            let (modulated, modulatedGrads) = valueWithGradient(at: [x, w, b, filmScale, filmShift]) { t in
                let factor = t[3] + 1
                return (Tensor.groupNorm(t[0], groups: 3, scale: factor * t[1], shift: factor * t[2] + t[4], applyingSiLU: silu) * cotangent).sum()
            }
            let (composed, composedGrads) = valueWithGradient(at: [x, w, b, filmScale, filmShift]) { t in
                let y = Tensor.groupNorm(t[0], groups: 3, weight: t[1], bias: t[2]) * (t[3].reshaped(to: [2, 6, 1, 1]) + 1)
                    + t[4].reshaped(to: [2, 6, 1, 1])
                return ((silu ? y.silu() : y) * cotangent).sum()
            }
            XCTAssertEqual(modulated.scalars[0], composed.scalars[0], accuracy: 1e-4)
            for (f, s) in zip(modulatedGrads, composedGrads) { assertClose(f, s, tolerance: 1e-4) }
        }
        checkGradients([normal([3, 4, 5], 32), normal([5], 33), normal([5], 34)]) {
            Tensor.layerNorm($0[0], weight: $0[1], bias: $0[2])
        }
        // Layer norm over the channels of NCHW: finite differences, and the same as channels last.
        let planes = normal([2, 5, 3, 4], 36), gamma = normal([5], 37), beta = normal([5], 38)
        checkGradients([planes, gamma, beta]) { Tensor.channelLayerNorm($0[0], weight: $0[1], bias: $0[2], epsilon: 1e-3) }
        let wide = normal([2, 12, 30, 40], 39), r = normal([2, 12, 30, 40], 40)  // 1200 positions: items of 512
        let gamma12 = normal([12], 41), beta12 = normal([12], 42)
        let (channels, channelGrads) = valueWithGradient(at: [wide, gamma12, beta12]) {
            (Tensor.channelLayerNorm($0[0], weight: $0[1], bias: $0[2], epsilon: 1e-3) * r).sum()
        }
        let (last, lastGrads) = valueWithGradient(at: [wide, gamma12, beta12]) {
            (Tensor.layerNorm($0[0].permuted([0, 2, 3, 1]), weight: $0[1], bias: $0[2], epsilon: 1e-3).permuted([0, 3, 1, 2]) * r).sum()
        }
        XCTAssertEqual(channels.scalars[0], last.scalars[0], accuracy: 1e-3)
        for (a, e) in zip(channelGrads, lastGrads) { assertClose(a, e, tolerance: 1e-4) }
        // Both norms with a residual added in their pass: finite differences, and the same bits as
        // the norm followed by a separate add, values and gradients.
        let residual = normal([2, 6, 3, 3], 43), planesResidual = normal([2, 12, 30, 40], 44)
        checkGradients([x, w, b, residual]) { Tensor.groupNorm($0[0], groups: 3, weight: $0[1], bias: $0[2], applyingSiLU: true, adding: $0[3]) }
        checkGradients([planes, gamma, beta, normal([2, 5, 3, 4], 45)]) {
            Tensor.channelLayerNorm($0[0], weight: $0[1], bias: $0[2], epsilon: 1e-3, adding: $0[3])
        }
        for silu in [false, true] {
            let fusedAdd = valueWithGradient(at: [x, w, b, residual]) {
                (Tensor.groupNorm($0[0], groups: 3, weight: $0[1], bias: $0[2], applyingSiLU: silu, adding: $0[3]) * cotangent).sum()
            }
            let separateAdd = valueWithGradient(at: [x, w, b, residual]) {
                ((Tensor.groupNorm($0[0], groups: 3, weight: $0[1], bias: $0[2], applyingSiLU: silu) + $0[3]) * cotangent).sum()
            }
            XCTAssertEqual(fusedAdd.value, separateAdd.value)
            XCTAssertEqual(fusedAdd.gradients, separateAdd.gradients)
        }
        let channelAdd = valueWithGradient(at: [wide, gamma12, beta12, planesResidual]) {
            (Tensor.channelLayerNorm($0[0], weight: $0[1], bias: $0[2], epsilon: 1e-3, adding: $0[3]) * r).sum()
        }
        let channelSeparate = valueWithGradient(at: [wide, gamma12, beta12, planesResidual]) {
            ((Tensor.channelLayerNorm($0[0], weight: $0[1], bias: $0[2], epsilon: 1e-3) + $0[3]) * r).sum()
        }
        XCTAssertEqual(channelAdd.value, channelSeparate.value)
        XCTAssertEqual(channelAdd.gradients, channelSeparate.gradients)
        for training in [true, false] {
            checkGradients([x, w, b]) {
                var mean = Tensor.normal([6], seed: 35), variance = Tensor.uniform([6], low: 0.5, high: 2, seed: 36)
                return Tensor.batchNorm($0[0], weight: $0[1], bias: $0[2], runningMean: &mean,
                                        runningVariance: &variance, training: training)
            }
        }
    }

    func testSoftmaxAndAttention() {
        let x = normal([2, 3, 4], 37)
        checkGradients([x]) { $0[0].softmax() }
        checkGradients([x]) { $0[0].softmax(alongAxis: 1) }
        checkGradients([x]) { $0[0].logSoftmax() }
        checkGradients([x]) { $0[0].logSoftmax(alongAxis: 0) }
        checkGradients([normal([1, 2, 3, 4], 38), normal([1, 2, 5, 4], 39), normal([1, 2, 5, 3], 40)]) {
            Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2])
        }
        // Heads wider than 32 features take the GEMM + softmax path instead of haze_attention_head;
        // 18 queries span two 16-query blocks of the fused kernel.
        checkGradients([normal([1, 2, 3, 33], 601), normal([1, 2, 5, 33], 602), normal([1, 2, 5, 3], 603)]) {
            Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2])
        }
        checkGradients([normal([2, 18, 8], 604), normal([2, 7, 8], 605), normal([2, 7, 8], 606)]) {
            Tensor.scaledDotProductAttention(query: $0[0], key: $0[1], value: $0[2])
        }
    }

    /// The channels-first op is the same attention as the [B, H, L, D] one on the transposed,
    /// head-split slices of qkv (D = 8: the specialised kernel over two 16-query blocks; D = 40:
    /// the BLAS path); and its gradient checks (D = 3: the generic kernel; D = 8 with 18 tokens;
    /// D = 33: BLAS).
    func testChannelsFirstAttention() {
        for (heads, d, l, seed) in [(2, 8, 18, UInt64(607)), (1, 40, 6, 610)] {
            let qkv = normal([2, 3 * heads * d, l], seed)
            let parts = qkv.chunked(3, alongAxis: 1).map { $0.reshaped(to: [2, heads, d, l]).permuted([0, 1, 3, 2]) }
            let expected = Tensor.scaledDotProductAttention(query: parts[0], key: parts[1], value: parts[2])
            let actual = Tensor.selfAttention(channelsFirst: qkv, heads: heads)
            let reference = expected.permuted([0, 1, 3, 2]).reshaped(to: [2, heads * d, l]).scalars
            XCTAssertEqual(actual.shape, [2, heads * d, l])
            for (a, e) in zip(actual.scalars, reference) { XCTAssertEqual(a, e, accuracy: 1e-5, "D = \(d)") }
        }
        checkGradients([normal([2, 18, 5], 608)]) { Tensor.selfAttention(channelsFirst: $0[0], heads: 2) }
        checkGradients([normal([1, 48, 18], 609)]) { Tensor.selfAttention(channelsFirst: $0[0], heads: 2) }
        checkGradients([normal([1, 99, 4], 611)]) { Tensor.selfAttention(channelsFirst: $0[0], heads: 1) }
    }

    func testEmbeddingDropoutAndLoss() {
        checkGradients([normal([5, 3], 41)]) { Tensor.embedding($0[0], indices: [4, 0, 4, 2]) }
        checkGradients([normal([4, 6], 42)]) {
            var generator = RandomGenerator(seed: 7)
            return $0[0].dropout(probability: 0.3, generator: &generator)
        }
        checkGradients([normal([2, 3], 43), normal([2, 3], 44)]) { Tensor.meanSquaredError($0[0], $0[1]) }
    }
}
