import Foundation
import XCTest
import HazeIO
@testable import HazeTensor
@testable import HazeNN

/// The TensorFlow notebook's U-Net against TensorFlow itself: fixtures written by
/// scripts/make_tf_article_fixtures.py from the notebook's Keras model (16×16×3, the notebook's
/// layout at smaller widths, seeded random weights saved and converted the notebook's way).
final class TFArticleUNetTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/tf_article").path

    func load() throws -> (TFArticleUNet, ParameterSet, SafeTensors) {
        let (model, parameters) = try ModelFolder.loadModel(Self.folder + "/model")
        return (try XCTUnwrap(model as? TFArticleUNet, "the folder's _class_name picks TFArticleUNet"), parameters,
                try SafeTensors.read(contentsOf: Self.folder + "/io.safetensors"))
    }

    /// max |a − b| / max |b|.
    func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        return zip(a.scalars, b.scalars).map { abs($0 - $1) }.max()! / b.scalars.map(abs).max()!
    }

    /// Keras' Adam (ε added to √v before the bias correction) against tf.keras.optimizers.Adam,
    /// 6 steps with gradients from 1e-9 to 1 (scripts/make_keras_adam_fixture.py); PyTorch's Adam
    /// moves the small-gradient values differently, so the fixture tells the two apart.
    func testKerasAdamMatchesTensorFlow() throws {
        let file = try SafeTensors.read(contentsOf: URL(fileURLWithPath: Self.folder).deletingLastPathComponent().appendingPathComponent("keras_adam.safetensors").path)
        let (initial, gradients, final) = (file.tensors["initial"]!, file.tensors["gradients"]!, file.tensors["final"]!)
        func run(_ variant: AdamOptimizer.Variant) -> Tensor {
            var optimizer = AdamOptimizer(variant, learningRate: Float(file.metadata["learning_rate"]!)!, beta1: Float(file.metadata["beta_1"]!)!,
                                          beta2: Float(file.metadata["beta_2"]!)!, epsilon: Float(file.metadata["epsilon"]!)!, weightDecay: 0)
            var parameters: ParameterSet = ["w": initial]
            let n = initial.count
            for step in 0..<Int(file.metadata["steps"]!)! {
                optimizer.update(&parameters, gradients: ["w": Tensor(shape: [n], scalars: Array(gradients.scalars[(step * n)..<((step + 1) * n)]))])
            }
            return parameters["w"]!
        }
        func worstMove(_ w: Tensor) -> Float {
            // Error relative to how far TensorFlow moved each value.
            zip(zip(w.scalars, final.scalars), initial.scalars).map { pair, start in abs(pair.0 - pair.1) / max(abs(pair.1 - start), 1e-7) }.max()!
        }
        XCTAssertLessThanOrEqual(worstMove(run(.adamKeras)), 1e-3)
        XCTAssertGreaterThan(worstMove(run(.adam)), 0.1, "PyTorch's ε placement moves tiny-gradient values differently")
    }

    func testParameterCounts() throws {
        XCTAssertEqual(try TFArticleUNet(config: TFArticleUNetConfig()).parameterCount, 6_179_331, "the notebook's 64×64×3 network")
        let (model, parameters, io) = try load()
        XCTAssertEqual(model.parameterCount, Int(io.metadata["params_fixture"]!)!)
        XCTAssertEqual(parameters.count, model.parameterSpecs.count)
        // A fresh network predicts zero, as the notebook's (zero-initialised final conv).
        let fresh = model.initialParameters(seed: 1)
        XCTAssertTrue(model(try io.tensor("x"), timesteps: [3, 987], parameters: fresh).scalars.allSatisfy { $0 == 0 })
    }

    /// The article text's variant (tf-article-simple): BatchNorm with running statistics, no
    /// attention; a training-mode forward updates the statistics, an inference one uses them.
    func testBatchNormVariant() throws {
        var c = TFArticleUNetConfig()
        (c.imageSize, c.normType, c.attention) = (16, .batch, false)
        let model = try TFArticleUNet(config: c)
        XCTAssertFalse(model.parameterSpecs.contains { $0.name.contains(".attn.") })
        XCTAssertEqual(model.parameterCount, 6_179_331 - attentionParameters(c), "BatchNorm has as many affine parameters as GroupNorm")
        let buffers = model.parameterSpecs.filter(\.isBuffer).map(\.name)
        XCTAssertTrue(buffers.contains("down.0.res.0.norm1.running_mean"))
        var generator = RandomGenerator(seed: 4)
        let parameters = model.initialParameters(seed: 1), x = generator.normal([2, 3, 16, 16], std: 2)
        let context = ForwardContext(training: true, buffers: parameters.filter { buffers.contains($0.key) })
        _ = model(x, timesteps: [1, 500], parameters: parameters, context: context)
        XCTAssertNotEqual(context.buffers["down.0.res.0.norm1.running_mean"]!, parameters["down.0.res.0.norm1.running_mean"]!)
    }

    /// Parameters of the six linear attentions of the default widths (to_qkv, to_out conv, LayerNorm).
    func attentionParameters(_ c: TFArticleUNetConfig) -> Int {
        let p = c.attentionHeads * c.attentionHeadDim
        return 2 * c.channels.map { 3 * p * $0 + p * $0 + $0 + 2 * $0 }.reduce(0, +)
    }

    /// TensorFlow's float32 frequencies of SinusoidalPosEmb(32), bit for bit (spec §2.2).
    func testTimeEmbeddingFrequencies() throws {
        let bits: [UInt32] = [0x3f800000, 0x3f0a8a16, 0x3e95f255, 0x3e224b07, 0x3dafa7f8, 0x3d3e1e97, 0x3ccdc617, 0x3c5eb78d,
                              0x3bf10e28, 0x3b8273a7, 0x3b0d316b, 0x3a98d199, 0x3a2566da, 0x39b30552, 0x3941c2dc, 0x38d1b716]
        XCTAssertEqual(try TFArticleUNet(config: TFArticleUNetConfig()).frequencies.map(\.bitPattern), bits)
        let (model, parameters, io) = try load()
        XCTAssertLessThanOrEqual(relativeError(model.timeEmbedding(try io.tensor("t").scalars, parameters), try io.tensor("temb")), 1e-5)
    }

    /// The linear attention alone (down.0.attn: 16 channels, 256 positions, so P = 128 ≠ N and the
    /// raw NHWC reshape matters), then the whole network.
    func testMatchesTensorFlow() throws {
        let (model, parameters, io) = try load()
        let attention = try XCTUnwrap(model.down[0].attention)
        XCTAssertLessThanOrEqual(relativeError(attention(try io.tensor("attn_in"), parameters), try io.tensor("attn_out")), 1e-5)
        let out = model(try io.tensor("x"), timesteps: try io.tensor("t").scalars, parameters: parameters)
        XCTAssertLessThanOrEqual(relativeError(out, try io.tensor("out")), 1e-4)
    }

    /// The up levels' blocks reading state ⧺ skip in place (conv1 and the shortcut) against the
    /// concatenations copied: the same bits.
    func testInPlaceConcatenationsGiveTheSameBits() throws {
        defer { Tensor.readsConcatenationsInPlace = true }
        let (model, parameters, io) = try load()
        let x = try io.tensor("x"), block = try XCTUnwrap(model.up.last?.res.first), c = block.conv1.inChannels
        let weights = [block.conv1.weight(parameters), try XCTUnwrap(block.shortcut).weight(parameters)]
        XCTAssertEqual(Tensor.readsConcatenationInPlace(Tensor.zeros([x.shape[0], c / 2] + x.shape[2...]),
                                                        Tensor.zeros([x.shape[0], c - c / 2] + x.shape[2...]), weights: weights),
                       PackedMatrices.available, "the full-resolution level")
        func forward(inPlace: Bool) throws -> Tensor {
            Tensor.readsConcatenationsInPlace = inPlace
            return model(x, timesteps: try io.tensor("t").scalars, parameters: parameters)
        }
        XCTAssertEqual(try forward(inPlace: true).scalars, try forward(inPlace: false).scalars)
    }

    /// Gradients by central differences on a tiny network (2 levels, 1 block each, 8×8), at a few
    /// weights of every kind of layer.
    func testGradientsByFiniteDifferences() throws {
        var c = TFArticleUNetConfig()
        (c.imageSize, c.inChannels, c.outChannels, c.initChannels, c.channels, c.midChannels, c.finalChannels, c.layersPerBlock)
            = (8, 2, 2, 8, [8, 16], 16, 8, 1)
        (c.attentionHeads, c.attentionHeadDim) = (2, 4)
        let model = try TFArticleUNet(config: c)
        var generator = RandomGenerator(seed: 3)
        var parameters = model.initialParameters(seed: 2)
        parameters["final_conv.weight"] = generator.normal([2, 8, 1, 1], std: 0.5)
        let x = generator.normal([2, 2, 8, 8]), r = generator.normal([2, 2, 8, 8])
        func loss(_ p: ParameterSet) -> Tensor { (model(x, timesteps: [7, 400], parameters: p) * r).sum() }
        let (_, gradients) = valueWithGradient(at: parameters) { loss($0) }
        for name in ["time_mlp.0.weight", "init_conv.weight", "down.0.res.0.time_proj.bias", "down.0.res.0.conv1.weight",
                     "down.1.res.0.shortcut.weight", "down.1.attn.to_qkv.weight", "up.0.attn.to_out.1.weight",
                     "mid.0.norm2.weight", "final_conv.bias"] {
            for index in Set([0, min(5, parameters[name]!.count - 1)]).sorted() {
                var plus = parameters, minus = parameters
                plus[name]!.withMutableScalars { $0[index] += 1e-2 }
                minus[name]!.withMutableScalars { $0[index] -= 1e-2 }
                let numeric = (loss(plus).scalar - loss(minus).scalar) / 2e-2
                XCTAssertEqual(gradients[name]!.scalars[index], numeric, accuracy: 2e-3 + 2e-2 * abs(numeric), "\(name)[\(index)]")
            }
        }
    }

    /// The fused attention core equals the notebook's literal reshapes, permutes, softmaxes and
    /// products, forward and backward (random cotangent), on shapes with 1–4 heads, one and
    /// several 16-wide tiles, and a batch.
    func testFusedAttentionMatchesTheLiteralComposition() throws {
        var c = TFArticleUNetConfig()
        for (heads, d, side, batch) in [(4, 32, 16, 2), (2, 4, 8, 3), (1, 8, 4, 1), (4, 8, 6, 2), (3, 5, 6, 1)] {
            (c.attentionHeads, c.attentionHeadDim) = (heads, d)
            let attention = TFArticleLinearAttention("a", channels: 8, config: c)
            var generator = RandomGenerator(seed: UInt64(heads * 100 + d))
            let qkv = generator.normal([batch, 3 * heads * d, side, side]), r = generator.normal([batch, heads * d, side, side])
            let (fused, fusedGradient) = valueWithGradient(at: [qkv]) { t in (Tensor.reshapedLinearAttention(t[0], heads: heads, headDimension: d) * r).sum() }
            let (literal, literalGradient) = valueWithGradient(at: [qkv]) { t in (attention.literalCore(t[0]) * r).sum() }
            let y = Tensor.reshapedLinearAttention(qkv, heads: heads, headDimension: d), expected = attention.literalCore(qkv)
            let scale = expected.scalars.map(abs).max()!
            XCTAssertLessThanOrEqual(zip(y.scalars, expected.scalars).map { abs($0 - $1) }.max()!, 1e-5 * scale, "y, \(heads) heads of \(d)")
            XCTAssertEqual(fused.scalar, literal.scalar, accuracy: 1e-4 * abs(literal.scalar) + 1e-4)
            let g = fusedGradient[0], e = literalGradient[0]
            let gradientScale = e.scalars.map(abs).max()!
            XCTAssertLessThanOrEqual(zip(g.scalars, e.scalars).map { abs($0 - $1) }.max()!, 1e-4 * gradientScale, "∂qkv, \(heads) heads of \(d)")
        }
    }

    /// The attention's kernels flush subnormal floats to zero (FTZ/DAZ) while they run and restore
    /// the thread's mode on return: with keys spread so far that k's softmax underflows, the block
    /// still matches the composition, and afterwards half the smallest normal float is not zero on
    /// the calling thread (one thread, so that every head ran on it), in the forward and backward.
    func testAttentionRestoresTheSubnormalMode() throws {
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        Parallel.threadCount = 1
        let (heads, d, channels, side) = (2, 8, 16, 16)
        var generator = RandomGenerator(seed: 77)
        let x = generator.normal([2, channels, side, side]) * 40
        let qkv = generator.normal([3 * heads * d, channels, 1, 1])
        let out = generator.normal([channels, heads * d, 1, 1]) * 0.1
        let (bias, gamma, beta) = (generator.normal([channels]), generator.normal([channels]) + 1, generator.normal([channels]))
        let inputs = [x, qkv, out, bias, gamma, beta]
        func block(_ t: [Tensor]) -> Tensor {
            Tensor.reshapedLinearAttentionBlock(t[0], qkvWeight: t[1], outWeight: t[2], outBias: t[3], normWeight: t[4],
                                                normBias: t[5], epsilon: 1e-3, heads: heads, headDimension: d)
        }
        let composed = Tensor.channelLayerNorm(
            Tensor.conv2d(Tensor.reshapedLinearAttention(Tensor.conv2d(x, weight: qkv), heads: heads, headDimension: d),
                          weight: out, bias: bias),
            weight: gamma, bias: beta, epsilon: 1e-3, adding: x)
        let tiny = Tensor([Float.leastNormalMagnitude])  // a value the compiler cannot fold
        let y = block(inputs)
        XCTAssertGreaterThan(tiny.scalars[0] * 0.5, 0, "flush-to-zero left on after the forward")
        let scale = composed.scalars.map(abs).max()!
        XCTAssertLessThanOrEqual(zip(y.scalars, composed.scalars).map { abs($0 - $1) }.max()!, 1e-5 * scale)
        _ = valueWithGradient(at: inputs) { block($0).sum() }
        XCTAssertGreaterThan(tiny.scalars[0] * 0.5, 0, "flush-to-zero left on after the backward")
    }

    /// The attention block head by head (`reshapedLinearAttentionBlock`) equals the composition of
    /// its ops: in inference, with the weights prepared per call and once inside
    /// `reusingTransformedWeights`; where a gradient is recorded (its training path), the value and
    /// the gradients of all six inputs for a random cotangent, within float32 rounding of the
    /// products' different summation order (1e-5 of the value's scale, 1e-4 of each gradient's).
    func testAttentionBlockMatchesTheComposition() throws {
        for (heads, d, channels, side, batch) in [(4, 32, 64, 16, 2), (2, 8, 24, 8, 3), (1, 8, 5, 4, 1), (3, 5, 16, 6, 2), (4, 32, 64, 64, 1)] {
            var generator = RandomGenerator(seed: UInt64(heads * 100 + d))
            let x = generator.normal([batch, channels, side, side])
            let qkv = generator.normal([3 * heads * d, channels, 1, 1]) * (1 / Float(channels).squareRoot())
            let out = generator.normal([channels, heads * d, 1, 1]) * (1 / Float(heads * d).squareRoot())
            let (bias, gamma, beta) = (generator.normal([channels]), generator.normal([channels]) + 1, generator.normal([channels]))
            func composition(_ t: [Tensor]) -> Tensor {
                let attention = Tensor.reshapedLinearAttention(Tensor.conv2d(t[0], weight: t[1]), heads: heads, headDimension: d)
                return Tensor.channelLayerNorm(Tensor.conv2d(attention, weight: t[2], bias: t[3]), weight: t[4], bias: t[5],
                                               epsilon: 1e-3, adding: t[0])
            }
            func block(_ t: [Tensor]) -> Tensor {
                Tensor.reshapedLinearAttentionBlock(t[0], qkvWeight: t[1], outWeight: t[2], outBias: t[3], normWeight: t[4],
                                                    normBias: t[5], epsilon: 1e-3, heads: heads, headDimension: d)
            }
            let inputs = [x, qkv, out, bias, gamma, beta]
            let expected = composition(inputs)
            let scale = expected.scalars.map(abs).max()!
            for prepared in [false, true] {
                let y = prepared
                    ? ConvolutionAlgorithm.reusingTransformedWeights { (0..<2).map { _ in block(inputs) }.last! }
                    : block(inputs)
                XCTAssertEqual(y.shape, expected.shape)
                XCTAssertLessThanOrEqual(zip(y.scalars, expected.scalars).map { abs($0 - $1) }.max()!, 1e-5 * scale,
                                         "\(heads) heads of \(d), \(channels) channels, \(side)×\(side), prepared \(prepared)")
            }
            let r = generator.normal(expected.shape)
            let (value, gradients) = valueWithGradient(at: inputs) { (block($0) * r).sum() }
            let (composed, composedGradients) = valueWithGradient(at: inputs) { (composition($0) * r).sum() }
            let label = "\(heads) heads of \(d), \(channels) channels, \(side)×\(side)"
            XCTAssertEqual(value.scalar, composed.scalar, accuracy: 1e-5 * Float(expected.count) * scale, label)
            for i in inputs.indices {
                let (g, e) = (gradients[i].scalars, composedGradients[i].scalars)
                let bound = 1e-4 * e.map(abs).max()!
                XCTAssertLessThanOrEqual(zip(g, e).map { abs($0 - $1) }.max()!, bound, "gradient \(i), \(label)")
            }
        }
    }
}
