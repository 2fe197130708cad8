import Foundation
import XCTest
import HazeIO
import HazeNN
import HazeTensor
@testable import HazeDiffusion

/// The notebook's DDIM loop (200 "steps": 199 network calls at t = 995, 990, …, 5, η = 0, no
/// clipping, on its schedule with ᾱ shifted by one) as diffusers' DDIMScheduler configured by the
/// converted folder's scheduler_config.json (trained_betas = [0, β₀ … β₉₉₈], steps_offset 5),
/// sampled with 199 steps: against TensorFlow's run of the notebook's loop from the same noise.
final class TFArticleSamplingTests: XCTestCase {
    func testDDIMReproducesTheNotebooksLoop() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("HazeNNTests/Fixtures/tf_article").path
        let (model, parameters) = try ModelFolder.loadModel(folder + "/model")
        let io = try SafeTensors.read(contentsOf: folder + "/io.safetensors")

        let scheduler = makeScheduler(try SchedulerConfig(contentsOf: folder + "/model/scheduler_config.json"))
        try scheduler.setTimesteps(199)
        XCTAssertEqual(scheduler.timesteps, try io.tensor("ddim_timesteps").scalars)
        var generator = RandomGenerator(seed: 0)  // unused: η = 0 and x_T given
        let noise = try io.tensor("ddim_noise")
        let sample = try SamplingLoop(scheduler: scheduler) { x, t, _ in model(x, timesteps: t, parameters: parameters) }
            .run(shape: noise.shape, steps: 199, initialNoise: noise, generator: &generator)
        let expected = try io.tensor("ddim_sample")
        let error = zip(sample.scalars, expected.scalars).map { abs($0 - $1) }.max()! / expected.scalars.map(abs).max()!
        XCTAssertLessThanOrEqual(error, 1e-3, "relative to max |x| = \(expected.scalars.map(abs).max()!)")
    }
}
