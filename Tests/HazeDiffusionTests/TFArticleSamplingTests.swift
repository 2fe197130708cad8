import Foundation
import XCTest
import HazeIO
import HazeNN
import HazeTensor
@testable import HazeDiffusion

/// The notebook's DDIM loop (200 "steps": 199 network calls at t = 995, 990, …, 5, η = 0, no
/// clipping, on its schedule with ᾱ shifted by one) as diffusers' DDIMScheduler configured by the
/// converted folder's scheduler_config.json (trained_betas = [0, β₀ … β₉₉₈], steps_offset 0),
/// sampled with 200 steps: against TensorFlow's run of the notebook's loop from the same noise.
/// The 200th timestep is t = 0, where ᾱ = 1: the loop must skip its network call.
final class TFArticleSamplingTests: XCTestCase {
    func testDDIMReproducesTheNotebooksLoop() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("HazeNNTests/Fixtures/tf_article").path
        let (model, parameters) = try ModelFolder.loadModel(folder + "/model")
        let io = try SafeTensors.read(contentsOf: folder + "/io.safetensors")

        let scheduler = makeScheduler(try SchedulerConfig(contentsOf: folder + "/model/scheduler_config.json"))
        try scheduler.setTimesteps(200)
        XCTAssertEqual(scheduler.timesteps, try io.tensor("ddim_timesteps").scalars + [0])
        var generator = RandomGenerator(seed: 0)  // unused: η = 0 and x_T given
        let noise = try io.tensor("ddim_noise")
        var calledAt: [Float] = []
        let sample = try SamplingLoop(scheduler: scheduler) { x, t, _ in
            calledAt.append(t[0])
            return model(x, timesteps: t, parameters: parameters)
        }.run(shape: noise.shape, steps: 200, initialNoise: noise, generator: &generator)
        XCTAssertEqual(calledAt, try io.tensor("ddim_timesteps").scalars, "the network calls")
        let expected = try io.tensor("ddim_sample")
        let error = zip(sample.scalars, expected.scalars).map { abs($0 - $1) }.max()! / expected.scalars.map(abs).max()!
        XCTAssertLessThanOrEqual(error, 1e-3, "relative to max |x| = \(expected.scalars.map(abs).max()!)")
    }

    /// At t = 0 of the shifted schedule x_t is clean (ᾱ = 1): DDIM (η = 0 and 1) and DDPM return
    /// x_t itself whatever the network says (no 0/0 in the variance), and say so, so the loop skips
    /// the call; a model that predicts the sample still gets called.
    func testCleanTimestepIgnoresTheNetwork() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("HazeNNTests/Fixtures/tf_article").path
        var config = try SchedulerConfig(contentsOf: folder + "/model/scheduler_config.json")
        var generator = RandomGenerator(seed: 3)
        let (x, output) = (generator.normal([2, 3, 4, 4]), generator.normal([2, 3, 4, 4]))
        for (kind, eta) in [(SchedulerConfig.Kind.ddim, Float(0)), (.ddim, 1), (.ddpm, 0)] {
            config.kind = kind
            let scheduler = makeScheduler(config)
            (scheduler as? DDIMScheduler)?.eta = eta
            try scheduler.setTimesteps(200)
            let last = scheduler.timesteps.count - 1
            XCTAssertEqual(scheduler.timesteps[last], 0)
            XCTAssertEqual((0...last).filter { !scheduler.needsModelOutput(stepIndex: $0) }, [last], "\(kind) η \(eta)")
            let noise = scheduler.needsNoise(stepIndex: last) ? generator.normal(x.shape) : nil
            let step = scheduler.step(modelOutput: output, stepIndex: last, sample: x, noise: noise)
            XCTAssertEqual(step.prevSample.scalars, x.scalars, "\(kind) η \(eta)")
        }
        config.predictionType = .sample
        let scheduler = makeScheduler(config)
        try scheduler.setTimesteps(200)
        XCTAssertTrue(scheduler.needsModelOutput(stepIndex: 199))
    }

    /// The σ-space samplers (Euler, Euler ancestral, Heun) on the shifted schedule with "leading"
    /// spacing: t = 0 has σ = 0, and a step there would divide by it. The run leaves it out and ends
    /// at σ = 0 as always, so every call has σ > 0 and the sample stays finite, with each σ spacing.
    func testSigmaSchedulersStopBeforeTheCleanTimestep() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("HazeNNTests/Fixtures/tf_article").path
        var config = try SchedulerConfig(contentsOf: folder + "/model/scheduler_config.json")
        var generator = RandomGenerator(seed: 5)
        let output = generator.normal([1, 3, 4, 4]) * 0.5
        for kind in [SchedulerConfig.Kind.euler, .eulerAncestral, .heun] {
            for spacing in [SigmaSpacing.schedule, .karras, .exponential] {
                (config.kind, config.sigmaSpacing) = (kind, spacing)
                let scheduler = makeScheduler(config)
                try scheduler.setTimesteps(10)
                let sigmas = (scheduler as! SigmaSpaceScheduler).sigmas
                XCTAssertEqual(sigmas.last, 0)
                XCTAssertTrue(sigmas.dropLast().allSatisfy { $0 > 0 }, "\(kind) \(spacing): \(sigmas)")
                let sample = try SamplingLoop(scheduler: scheduler) { _, _, _ in output }
                    .run(shape: output.shape, steps: 10, generator: &generator)
                XCTAssertTrue(sample.scalars.allSatisfy(\.isFinite), "\(kind) \(spacing)")
            }
        }
    }
}
