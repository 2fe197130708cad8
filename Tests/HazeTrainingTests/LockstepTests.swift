import Foundation
import XCTest
import HazeDiffusion
import HazeIO
import HazeNN
import HazeTensor
@testable import HazeTraining

/// The whole trainer against PyTorch, step by step (llm.c's test_gpt2 for the training loop):
/// scripts/make_trainer_lockstep_fixtures.py ran diffusers' UNet2DModel with torch.optim.AdamW,
/// diffusers' warm-up/cosine learning rates, clip_grad_norm_ and EMAModel for 30 steps, and
/// recorded every micro-batch's images, labels, dropout coins, timesteps and noise. Haze's
/// Trainer, fed the same inputs through its test seam from the same initial weights, must
/// report the same loss, gradient norm and learning rate at every step, and end with the same
/// weights and EMA weights.
final class LockstepTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/lockstep").path

    /// The recorded run of one case and Haze's run of the same inputs.
    struct Runs {
        let torch: SafeTensors
        let haze: (loss: [Float], gradientNorm: [Float], learningRate: [Float])
        let trainer: Trainer
        let final: [String: Tensor], ema: [String: Tensor]
    }

    func replay(_ name: String) throws -> Runs {
        let folder = Self.fixtures + "/" + name
        let (model, initial) = try ModelFolder.loadModel(folder)
        let inputs = try SafeTensors.read(contentsOf: folder + "/inputs.safetensors").tensors
        let trajectory = try SafeTensors.read(contentsOf: folder + "/trajectory.safetensors")
        let meta = trajectory.metadata
        func number(_ key: String) -> Float? { meta[key].flatMap(Float.init) }
        let (steps, batch, accumulation) = (Int(meta["steps"]!)!, Int(meta["batch"]!)!, Int(meta["accumulation"]!)!)

        var options = TrainingOptions(data: "recorded", steps: steps)
        options.batchSize = batch; options.gradientAccumulation = accumulation
        options.learningRate = number("lr")!; (options.beta1, options.beta2) = (number("beta1")!, number("beta2")!)
        options.epsilon = number("eps")!; options.weightDecay = number("weight_decay")!
        options.warmupSteps = Int(meta["warmup"]!)!
        options.learningRateShape = LearningRateSchedule.Shape(rawValue: meta["lr_schedule"]!)!
        options.gradientClip = number("max_norm")
        (options.emaDecay, options.emaPower) = (number("ema_max_decay")!, number("ema_power")!)
        options.objective = PredictionType(rawValue: meta["objective"]!)!
        options.minSNRGamma = meta["min_snr_gamma"].flatMap(Double.init)
        options.classConditional = model.isClassConditional
        options.labelDropout = number("label_dropout") ?? 0
        (options.betaSchedule, options.trainTimesteps) = (meta["beta_schedule"]!, Int(meta["num_train_timesteps"]!)!)
        (options.checkpointEvery, options.logEvery, options.sampleEvery) = (1000, 1000, 0)

        let run = NSTemporaryDirectory() + "haze-lockstep-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: run) }
        let trainer = try Trainer(run: run, model: model, options: options, dataset: SyntheticDataset(),
                                  initialParameters: initial, tensorboard: false)
        let imageShape = Array(inputs["images"]!.shape.suffix(3))
        let itemSize = imageShape.reduce(1, *)
        trainer.recordedInputs = { step, micro in
            let first = (step * accumulation + micro) * batch
            func items(_ key: String) -> [Float] { Array(inputs[key]!.scalars[first..<(first + batch)]) }
            func images(_ key: String) -> Tensor {
                Tensor(shape: [batch] + imageShape, scalars: Array(inputs[key]!.scalars[(first * itemSize)..<((first + batch) * itemSize)]))
            }
            return .init(images: images("images"), labels: inputs["labels"] == nil ? nil : items("labels").map { Int($0) },
                         timesteps: items("timesteps").map { Int($0) }, noise: images("noise"), dropCoins: items("drop"))
        }
        var loss: [Float] = [], norm: [Float] = [], rate: [Float] = []
        try trainer.train(onStep: { report in
            loss.append(report.loss); norm.append(report.gradientNorm); rate.append(report.learningRate)
        })
        return Runs(torch: trajectory, haze: (loss, norm, rate), trainer: trainer,
                    final: try SafeTensors.read(contentsOf: folder + "/final.safetensors").tensors,
                    ema: try SafeTensors.read(contentsOf: folder + "/ema.safetensors").tensors)
    }

    /// Every step within `tolerance` relative; the final weights and EMA within `weightTolerance`
    /// of each tensor's largest magnitude.
    func assertLockstep(_ runs: Runs, tolerance: Float = 1e-4, weightTolerance: Float = 1e-4, file: StaticString = #filePath, line: UInt = #line) {
        let torch = runs.torch.tensors
        for (key, haze) in [("loss", runs.haze.loss), ("grad_norm", runs.haze.gradientNorm), ("lr", runs.haze.learningRate)] {
            let expected = torch[key]!.scalars
            XCTAssertEqual(haze.count, expected.count, key, file: file, line: line)
            for (step, (a, b)) in zip(haze, expected).enumerated() {
                XCTAssertLessThanOrEqual(abs(a - b), tolerance * max(abs(b), 1e-12), "\(key) at step \(step): Haze \(a), PyTorch \(b)", file: file, line: line)
            }
        }
        // The attention key's bias has a gradient of exactly 0 (softmax over keys is invariant to
        // adding q·b to every score of a query), so each side's is rounding noise, which Adam
        // normalises into steps of up to about the learning rate: on both sides it moves
        // arbitrarily within Σ lr_t. Compared only within that bound; all else within 1e-4.
        let noiseOnly = { (name: String) in name.hasSuffix("to_k.bias") }
        let travel = runs.haze.learningRate.reduce(0, +)
        for (label, expected, actual) in [("weights", runs.final, runs.trainer.parameters), ("EMA", runs.ema, runs.trainer.emaParameters ?? [:])] {
            XCTAssertEqual(Set(expected.keys), Set(actual.keys.filter { expected[$0] != nil }), label, file: file, line: line)
            var worst: (name: String, error: Float) = ("", 0)
            for (name, e) in expected {
                guard let a = actual[name] else { XCTFail("\(label): no \(name)", file: file, line: line); continue }
                let difference = zip(a.scalars, e.scalars).map { abs($0 - $1) }.max()!
                if noiseOnly(name) {
                    XCTAssertLessThanOrEqual(difference, 2 * travel, "\(label): \(name)", file: file, line: line)
                    continue
                }
                let error = difference / max(e.scalars.map(abs).max()!, 1e-12)
                if error > worst.error { worst = (name, error) }
            }
            XCTAssertLessThanOrEqual(worst.error, weightTolerance, "\(label): worst \(worst.name)", file: file, line: line)
        }
    }

    /// Clipping that triggers (16 of 30 steps) and not, warm-up (the first update at rate 0) then
    /// cosine decay, EMA warm-up with power 3/4.
    func testClippingWarmupCosineAndEMA() throws {
        let runs = try replay("clip")
        let clipped = zip(runs.haze.gradientNorm, [Float](repeating: 1.2, count: 30)).filter { $0 > $1 }.count
        XCTAssertGreaterThan(clipped, 3, "clipping triggers")
        XCTAssertLessThan(clipped, 27, "and does not always")
        assertLockstep(runs)
    }

    /// Gradient accumulation of 2, min-SNR-γ weighting of the v-prediction loss, class labels with
    /// dropout to the null class, warm-up then a constant rate, EMA power 2/3.
    func testAccumulationMinSNRAndLabels() throws {
        assertLockstep(try replay("accumulate_snr_labels"))
    }
}
