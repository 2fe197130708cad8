import Foundation
import XCTest
import HazeIO
@testable import HazeTensor
@testable import HazeNN

/// llm.c-style end-to-end parity with diffusers (fixtures from scripts/make_unet_fixtures.py):
/// output, MSE loss, the gradient of every parameter, and the weights after 3 AdamW steps.
final class UNetParityTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/unet").path

    struct Case {
        let model: UNet2DModel
        let parameters: ParameterSet
        let io: SafeTensors
        let folder: String
        var sample: Tensor { io.tensors["sample"]! }
        var timesteps: [Float] { io.tensors["timesteps"]!.scalars }
        var classLabels: Tensor? { io.tensors["class_labels"] }
        var target: Tensor { io.tensors["target"]! }

        func loss(_ p: ParameterSet) -> Tensor {
            Tensor.meanSquaredError(model(sample, timesteps: timesteps, classLabels: classLabels, parameters: p), target)
        }
    }

    static func load(_ name: String) throws -> Case {
        let folder = fixtures + "/" + name
        let (model, parameters) = try ModelFolder.load(folder)
        return Case(model: model, parameters: parameters, io: try SafeTensors.read(contentsOf: folder + "/io.safetensors"), folder: folder)
    }

    /// max |a − b| / max |b| over the tensor (floor 1e-6).
    func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
        let diff = zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? 0
        return diff / max(b.scalars.map(abs).max() ?? 0, 1e-6)
    }

    func testForwardLossGradientsAndAdamW() throws {
        for name in ["attn", "scale_shift_pad0", "class_cond", "cifar_like"] {
            let c = try Self.load(name)
            let out = c.model(c.sample, timesteps: c.timesteps, classLabels: c.classLabels, parameters: c.parameters)
            XCTAssertLessThanOrEqual(relativeError(out, c.io.tensors["out"]!), 1e-4, "\(name): output")

            let (loss, gradients) = valueWithGradient(at: c.parameters) { c.loss($0) }
            XCTAssertEqual(loss.scalar, c.io.tensors["loss"]!.scalars[0], accuracy: 1e-5 * max(1, abs(loss.scalar)), "\(name): loss")
            let expected = try SafeTensors.read(contentsOf: c.folder + "/grads.safetensors").tensors
            XCTAssertEqual(Set(expected.keys), Set(gradients.keys), "\(name): gradient names")
            // Some gradients are zero in exact arithmetic (an attention key bias shifts every score
            // of a query equally); both sides then hold rounding noise, compared on the scale of
            // the largest gradient.
            let scale = expected.values.map { $0.scalars.map(abs).max() ?? 0 }.max()!
            let vanishing = Set(expected.filter { ($0.value.scalars.map(abs).max() ?? 0) < 1e-6 * scale }.keys)
            var worst: (Float, String) = (0, "")
            for (key, g) in expected {
                let e = vanishing.contains(key)
                    ? zip(gradients[key]!.scalars, g.scalars).map { abs($0 - $1) }.max()! / scale
                    : relativeError(gradients[key]!, g)
                if e > worst.0 { worst = (e, key) }
            }
            XCTAssertLessThanOrEqual(worst.0, 1e-4, "\(name): worst gradient \(worst.1)")

            // Three AdamW steps on the same batch, as the fixture script does.
            let after = try SafeTensors.read(contentsOf: c.folder + "/adamw3.safetensors")
            var optimizer = AdamOptimizer(.adamW, learningRate: Float(after.metadata["lr"]!)!, beta1: 0.9, beta2: 0.999,
                                          epsilon: Float(after.metadata["eps"]!)!, weightDecay: Float(after.metadata["weight_decay"]!)!)
            var p = c.parameters
            var losses: [Float] = []
            for _ in 0..<3 {
                let (l, g) = valueWithGradient(at: p) { c.loss($0) }
                losses.append(l.scalar)
                optimizer.update(&p, gradients: g)
            }
            for (i, l) in c.io.tensors["losses"]!.scalars.enumerated() {
                XCTAssertEqual(losses[i], l, accuracy: 1e-4 * max(1, abs(l)), "\(name): loss at step \(i)")
            }
            worst = (0, "")
            // Adam normalises the update, so a noise-only gradient moves its weight by up to lr
            // in a noise-defined direction: those weights are not comparable.
            for (key, w) in after.tensors where !vanishing.contains(key) {
                let e = relativeError(p[key]!, w)
                if e > worst.0 { worst = (e, key) }
            }
            XCTAssertLessThanOrEqual(worst.0, 1e-4, "\(name): worst weight after 3 AdamW steps \(worst.1)")
        }
    }

    func testLegacyAttentionNamesLoad() throws {
        let legacy = try Self.load("legacy_names")
        let out = legacy.model(legacy.sample, timesteps: legacy.timesteps, parameters: legacy.parameters)
        XCTAssertLessThanOrEqual(relativeError(out, legacy.io.tensors["out"]!), 1e-4)
        XCTAssertNotNil(legacy.parameters["mid_block.attentions.0.to_q.weight"])
    }

    func testSavedFolderLoadsBackIdentically() throws {
        let c = try Self.load("class_cond")
        let folder = NSTemporaryDirectory() + "haze-unet-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try ModelFolder.save(c.model, parameters: c.parameters, to: folder)
        let (model, parameters) = try ModelFolder.load(folder)
        XCTAssertEqual(model.config, c.model.config)
        XCTAssertEqual(parameters, c.parameters)
        // The original diffusers config and Haze's rewrite describe the same network.
        let original = try UNet2DModelConfig(contentsOf: c.folder + "/config.json")
        XCTAssertEqual(original, model.config)
    }
}

/// A whole inference forward with the up blocks reading their concatenated inputs in place
/// (`ResnetBlock2D.callAsFunction(_:concatenatedWith:…)`) against the same forward with the
/// concatenations copied: the same bits. fmnist-s's layout at batch 20 (7×7 with images along the
/// lanes, 14×14 and 28×28 with tiles along them); a block with output scale 2; and a training
/// forward (recorded parameters), which copies.
final class ConcatenatedSkipTests: XCTestCase {
    func testInPlaceConcatenationsGiveTheSameBits() throws {
        defer { Tensor.readsConcatenationsInPlace = true }
        var config = UNet2DModelConfig()
        config.sampleSize = [28, 28]; config.inChannels = 1; config.outChannels = 1
        config.blockOutChannels = [16, 32, 64]; config.layersPerBlock = 1; config.normNumGroups = 8
        config.downBlockTypes = ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"]
        config.upBlockTypes = ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]
        let model = try UNet2DModel(config: config), p = model.initialParameters(seed: 5)
        let x = Tensor.normal([20, 1, 28, 28], seed: 7), timesteps = (0..<20).map { Float(37 * $0 % 1000) }
        func forward(inPlace: Bool) -> Tensor {
            FastPath.inPlaceConcatenations.isEnabled = inPlace
            XCTAssertEqual(Tensor.readsConcatenationsInPlace, inPlace)
            return model(x, timesteps: timesteps, parameters: p)
        }
        let resnet = model.upBlocks[1].resnets[0]
        XCTAssertEqual(Tensor.readsConcatenationInPlace(Tensor.zeros([20, 64, 14, 14]), Tensor.zeros([20, 32, 14, 14]),
                                                        weights: [resnet.conv1.weight(p), resnet.shortcut!.weight(p)]),
                       PackedMatrices.available)
        XCTAssertEqual(forward(inPlace: true).scalars, forward(inPlace: false).scalars)

        let block = ResnetBlock2D("block", inChannels: 48, outChannels: 32, timeChannels: 12, groups: 8, epsilon: 1e-5,
                                  normKind: .group, timeEmbeddingNorm: .default, outputScaleFactor: 2)
        let q = block.initialParameters(seed: 9), temb = Tensor.normal([20, 12], seed: 10)
        let (h, skip) = (Tensor.normal([20, 32, 14, 14], seed: 11), Tensor.normal([20, 16, 14, 14], seed: 12))
        Tensor.readsConcatenationsInPlace = true
        XCTAssertEqual(block(h, concatenatedWith: skip, temb, q, ForwardContext()).scalars,
                       block(Tensor.concatenate([h, skip], alongAxis: 1), temb, q, ForwardContext()).scalars, "output scale 2")

        let loss = { (p: ParameterSet) in model(x, timesteps: timesteps, parameters: p).squared().mean() }
        let (value, gradients) = valueWithGradient(at: p) { loss($0) }
        Tensor.readsConcatenationsInPlace = false
        let (copiedValue, copiedGradients) = valueWithGradient(at: p) { loss($0) }
        XCTAssertEqual(value.scalar, copiedValue.scalar)
        for (key, g) in gradients { XCTAssertEqual(g.scalars, copiedGradients[key]!.scalars, key) }
    }
}

/// A sampling run calls the network tens to a thousand times inside
/// `reusingTransformedWeights`: every weight is prepared on the first call and found again on
/// the later ones, so the cache, and the process, stop growing. A weight made anew on each call
/// (the stacked q/k/v projections once were) would be prepared and kept again every call.
final class PreparedWeightsReuseTests: XCTestCase {
    func checkNothingPreparedAfterTheFirstCall(_ name: String, _ forward: () -> Tensor) {
        let plain = forward()
        ConvolutionAlgorithm.reusingTransformedWeights {
            let first = PreparedWeights.preparations
            XCTAssertEqual(forward().scalars, plain.scalars, "\(name): prepared weights give the same bits")
            let second = PreparedWeights.preparations
            XCTAssertGreaterThan(second, first, "\(name): the first call prepares its weights")
            for _ in 0..<2 { XCTAssertEqual(forward().scalars, plain.scalars, name) }
            XCTAssertEqual(PreparedWeights.preparations, second, "\(name): later calls prepare nothing")
        }
    }

    func testEveryWeightIsPreparedOnce() throws {
        var config = UNet2DModelConfig()
        config.sampleSize = [16, 16]; config.inChannels = 3; config.outChannels = 3
        config.blockOutChannels = [16, 32]; config.layersPerBlock = 1; config.normNumGroups = 8
        config.downBlockTypes = ["DownBlock2D", "AttnDownBlock2D"]
        config.upBlockTypes = ["AttnUpBlock2D", "UpBlock2D"]
        let model = try UNet2DModel(config: config), p = model.initialParameters(seed: 3)
        let x = Tensor.normal([2, 3, 16, 16], seed: 4)
        checkNothingPreparedAfterTheFirstCall("UNet2DModel with attention") { model(x, timesteps: [5, 900], parameters: p) }
        config.attentionType = .linear
        let linear = try UNet2DModel(config: config), r = linear.initialParameters(seed: 3)
        checkNothingPreparedAfterTheFirstCall("UNet2DModel with linear attention") { linear(x, timesteps: [5, 900], parameters: r) }

        var c = TFArticleUNetConfig()
        c.imageSize = 16
        let article = try TFArticleUNet(config: c), q = article.initialParameters(seed: 5)
        checkNothingPreparedAfterTheFirstCall("the notebook's network") { article(x, timesteps: [5, 900], parameters: q) }
    }
}
