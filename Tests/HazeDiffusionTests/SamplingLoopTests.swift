import Foundation
import XCTest
import HazeIO
import HazeNN
import HazeTensor
@testable import HazeDiffusion

/// Whole sampling loops on small random diffusers U-Nets against diffusers' own loops
/// (scripts/make_sampling_fixtures.py). Clipped DDIM loops of random networks are chaotic
/// (see that folder's README), so they are compared at early steps only.
final class SamplingLoopTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/sampling").path
    static let unets = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("HazeNNTests/Fixtures/unet").path

    func relativeError(_ a: Tensor, _ b: Tensor) -> Float {
        zip(a.scalars, b.scalars).map { abs($0 - $1) }.max()! / max(b.scalars.map(abs).max()!, 1e-6)
    }

    /// Runs the loop of fixture `name` and returns (final, states after each step).
    func run(_ name: String, unet: String, guidance: Guidance? = nil) throws -> (SafeTensors, Tensor, [Tensor]) {
        let f = try SafeTensors.read(contentsOf: Self.folder + "/\(name).safetensors")
        let (model, parameters) = try ModelFolder.load(Self.unets + "/" + unet)
        var object = try JSONSerialization.jsonObject(with: Data(f.metadata["scheduler_config"]!
            .replacingOccurrences(of: "-Infinity", with: "\"-Infinity\"").utf8)) as! [String: Any]
        object["_class_name"] = f.metadata["scheduler_class"]
        let scheduler = makeScheduler(try SchedulerConfig(json: object, file: name))
        (scheduler as? DDIMScheduler)?.eta = Float(f.metadata["eta"] ?? "0")!
        let x = try f.tensor("x_T")
        var states: [Tensor] = []
        // The fixture's noise tensors stand in for the generator's draws.
        var step = 0
        let loop = SamplingLoop(scheduler: scheduler) { x, t, labels in model(x, timesteps: t, classLabels: labels, parameters: parameters) }
        var generator = RandomGenerator(seed: 0)
        let steps = Int(f.metadata["num_inference_steps"]!)!
        let labels = f.tensors["class_labels"].map { $0.scalars.map { Int($0) } }
        let final: Tensor
        if f.tensors["noise.0"] != nil {
            // DDPM: replay the recorded noise through the scheduler directly.
            try scheduler.setTimesteps(steps)
            var sample = x
            for (i, t) in scheduler.timesteps.enumerated() {
                let out = model(sample, timesteps: [Float](repeating: t, count: x.shape[0]), parameters: parameters)
                sample = scheduler.step(modelOutput: out, stepIndex: i, sample: sample, noise: f.tensors["noise.\(i)"]).prevSample
                states.append(sample)
            }
            final = sample
        } else {
            final = try loop.run(shape: x.shape, steps: steps, initialNoise: x, classLabels: labels, guidance: guidance,
                                 generator: &generator, trajectory: { _, xt, _ in states.append(xt); step += 1 })
        }
        XCTAssertEqual(scheduler.timesteps, try f.tensor("timesteps").scalars, name)
        return (f, final, states)
    }

    func testFullLoopsMatchDiffusers() throws {
        for (name, unet) in [("ddim50_attn_noclip", "attn"), ("ddpm20_attn", "attn"), ("dpmpp20_attn", "attn")] {
            let (f, final, _) = try run(name, unet: unet)
            XCTAssertLessThanOrEqual(relativeError(final, try f.tensor("sample")), 1e-3, name)
        }
        let (f, final, _) = try run("ddim20_cfg_class_noclip", unet: "class_cond", guidance: Guidance(scale: 3, nullClass: 9))
        XCTAssertLessThanOrEqual(relativeError(final, try f.tensor("sample")), 1e-3, "classifier-free guidance")
    }

    func testClippedLoopsMatchEarlySteps() throws {
        let (f, _, states) = try run("ddim50_attn", unet: "attn")
        for i in [0, 4, 9] { XCTAssertLessThanOrEqual(relativeError(states[i], try f.tensor("prev_sample.\(i)")), 1e-3, "step \(i)") }
        let (g, _, cfgStates) = try run("ddim20_cfg_class", unet: "class_cond", guidance: Guidance(scale: 3, nullClass: 9))
        for i in [0, 4, 9] { XCTAssertLessThanOrEqual(relativeError(cfgStates[i], try g.tensor("prev_sample.\(i)")), 1e-3, "cfg step \(i)") }
    }

    func testBadInputs() throws {
        let scheduler = makeScheduler(SchedulerConfig(kind: .ddim))
        let loop = SamplingLoop(scheduler: scheduler) { x, _, _ in x }
        var generator = RandomGenerator(seed: 0)
        XCTAssertThrowsError(try loop.run(shape: [2, 1, 4, 4], steps: 10, initialNoise: Tensor.zeros([2, 1, 4, 5]), generator: &generator)) {
            XCTAssertTrue("\($0)".contains("initial noise has shape [2, 1, 4, 5], expected [2, 1, 4, 4]"))
        }
        XCTAssertThrowsError(try loop.run(shape: [2, 1, 4, 4], steps: 1001, generator: &generator)) { XCTAssertTrue("\($0)".contains("1…1000")) }
        XCTAssertThrowsError(try loop.run(shape: [2, 1, 4, 4], steps: 10, classLabels: [1], generator: &generator))
        XCTAssertThrowsError(try loop.run(shape: [2, 1, 4, 4], steps: 10, guidance: Guidance(scale: 2, nullClass: 9), generator: &generator))
    }
}

/// The continuous-time cosine schedule and its DDIM sampler.
final class ContinuousScheduleTests: XCTestCase {
    func testRatesAndOracleSampling() throws {
        let schedule = ContinuousCosineSchedule(minSignalRate: 0.02, maxSignalRate: 0.95)
        let (s0, n0) = schedule.rates(0), (s1, n1) = schedule.rates(1)
        XCTAssertEqual(s0, 0.95, accuracy: 1e-12)
        XCTAssertEqual(s1, 0.02, accuracy: 1e-12)
        XCTAssertEqual(s0 * s0 + n0 * n0, 1, accuracy: 1e-12)
        XCTAssertEqual(s1 * s1 + n1 * n1, 1, accuracy: 1e-12)
        // With an oracle noise predictor for a fixed x₀, DDIM lands on x₀.
        let x0 = Tensor.uniform([2, 1, 4, 4], low: -1, high: 1, seed: 1)
        var config = SchedulerConfig(kind: .continuousDDIM)
        config.predictionType = .epsilon
        let scheduler = makeScheduler(config)
        var current = 1.0
        let loop = SamplingLoop(scheduler: scheduler) { x, t, _ in
            current = Double(t[0]) / 1000
            let (s, n) = schedule.rates(current)
            return (x - x0 * Float(s)) * Float(1 / n)
        }
        var generator = RandomGenerator(seed: 2)
        let out = try loop.run(shape: x0.shape, steps: 10, generator: &generator)
        for (a, b) in zip(out.scalars, x0.scalars) { XCTAssertEqual(a, b, accuracy: 1e-4) }
        XCTAssertEqual(scheduler.timesteps.first, 1000)
        // The config round-trips through scheduler_config.json with its own class name.
        let object = config.jsonObject()
        XCTAssertEqual(object["_class_name"] as? String, "HazeContinuousDDIMScheduler")
        XCTAssertEqual(try SchedulerConfig(json: object, file: "x"), config)
    }
}

/// Image-to-image (SDEdit): the start step that `strength` selects and the noised start sample.
final class ImageToImageTests: XCTestCase {
    func testStartStepAndNoisedStart() throws {
        // diffusers' get_timesteps: ⌊N·strength⌋ steps kept, `order` calls per step.
        XCTAssertEqual(try SamplingLoop.firstStep(steps: 50, strength: 0.6, order: 1), 20)
        XCTAssertEqual(try SamplingLoop.firstStep(steps: 50, strength: 0.6, order: 2), 40)
        XCTAssertEqual(try SamplingLoop.firstStep(steps: 10, strength: 1, order: 1), 0)
        XCTAssertThrowsError(try SamplingLoop.firstStep(steps: 10, strength: 0, order: 1)) { XCTAssertTrue("\($0)".contains("outside (0, 1]")) }
        XCTAssertThrowsError(try SamplingLoop.firstStep(steps: 10, strength: 1.5, order: 1))
        XCTAssertThrowsError(try SamplingLoop.firstStep(steps: 10, strength: 0.05, order: 1)) { XCTAssertTrue("\($0)".contains("keeps no step")) }

        let image = Tensor.uniform([2, 1, 4, 4], low: -1, high: 1, seed: 1), noise = Tensor.normal([2, 1, 4, 4], seed: 2)
        for kind in [SchedulerConfig.Kind.ddim, .euler, .heun, .dpmSolverMultistep, .uniPC] {
            let scheduler = makeScheduler(SchedulerConfig(kind: kind))
            var inputs: [(Tensor, Float)] = []
            let loop = SamplingLoop(scheduler: scheduler) { x, t, _ in inputs.append((x, t[0])); return x * 0.1 }
            var generator = RandomGenerator(seed: 0)
            let out = try loop.run(shape: image.shape, steps: 10, initialNoise: noise, initialImage: image, strength: 0.3, generator: &generator)
            let first = 7 * scheduler.order
            // The model calls are those of steps 7…9 only, the first at the noised image.
            XCTAssertEqual(inputs.count, scheduler.timesteps.count - first, "\(kind)")
            XCTAssertEqual(inputs[0].1, scheduler.timesteps[first], "\(kind)")
            let start = scheduler.addNoise(image, noise: noise, stepIndex: first)
            XCTAssertEqual(inputs[0].0, scheduler.scaleModelInput(start, stepIndex: first), "\(kind)")
            XCTAssertTrue(out.scalars.allSatisfy(\.isFinite), "\(kind)")
        }
        // Without an initial image the strength selects nothing: one step runs at any strength
        // (`haze sample --steps 1` passed its default --strength 0.8 and was refused, ⌊1·0.8⌋ = 0).
        var calls = 0
        let plain = SamplingLoop(scheduler: makeScheduler(SchedulerConfig(kind: .ddim))) { x, _, _ in calls += 1; return x * 0.1 }
        var generator = RandomGenerator(seed: 0)
        XCTAssertNoThrow(try plain.run(shape: image.shape, steps: 1, initialNoise: noise, strength: 0.8, generator: &generator))
        XCTAssertEqual(calls, 1)
        // Euler's start is x₀ + σ ε; DDIM's √ᾱ x₀ + √(1 − ᾱ) ε.
        let euler = EulerScheduler(SchedulerConfig(kind: .euler))
        try euler.setTimesteps(10)
        XCTAssertEqual(euler.addNoise(image, noise: noise, stepIndex: 3), image + noise * Float(euler.sigmas[3]))
        let ddim = DDIMScheduler(SchedulerConfig(kind: .ddim))
        try ddim.setTimesteps(10)
        let a = ddim.schedule.alphasCumprod[Int(ddim.timesteps[3])]
        XCTAssertEqual(ddim.addNoise(image, noise: noise, stepIndex: 3), image * a.squareRoot() + noise * (1 - a).squareRoot())
    }
}

/// DDIM inversion and slerp.
final class InversionTests: XCTestCase {
    /// x_T of diffusers' DDIMInverseScheduler and the DDIM decoding of it, on the random `attn`
    /// UNet (scripts/make_inversion_fixture.py).
    func testInversionMatchesDiffusers() throws {
        let f = try SafeTensors.read(contentsOf: SamplingLoopTests.folder + "/ddim_inversion_attn.safetensors")
        let (model, parameters) = try ModelFolder.load(SamplingLoopTests.unets + "/attn")
        var object = try JSONSerialization.jsonObject(with: Data(f.metadata["scheduler_config"]!.utf8)) as! [String: Any]
        object["_class_name"] = f.metadata["scheduler_class"]
        let config = try SchedulerConfig(json: object, file: "ddim_inversion_attn")
        let steps = Int(f.metadata["num_inference_steps"]!)!
        let predict: NoisePredictor = { x, t, _ in model(x, timesteps: t, classLabels: nil, parameters: parameters) }
        let code = try ddimInversion(try f.tensor("image"), steps: steps, config: config, model: { predict($0, $1, nil) })
        func relative(_ a: Tensor, _ b: Tensor) -> Float { zip(a.scalars, b.scalars).map { abs($0 - $1) }.max()! / b.scalars.map(abs).max()! }
        XCTAssertLessThanOrEqual(relative(code, try f.tensor("x_T")), 1e-4)
        var unused = RandomGenerator(seed: 0)
        let back = try SamplingLoop(scheduler: DDIMScheduler(config), model: predict)
            .run(shape: code.shape, steps: steps, initialNoise: try f.tensor("x_T"), generator: &unused)
        XCTAssertLessThanOrEqual(relative(back, try f.tensor("reconstruction")), 1e-3)
    }

    func testSlerpKeepsTheEndsAndTheNorm() {
        let a = Tensor.normal([1, 3, 8, 8], seed: 1), b = Tensor.normal([1, 3, 8, 8], seed: 2)
        let path = slerp(a, b, at: [0, 0.5, 1])
        XCTAssertLessThan((path.slice(0..<1) - a).abs().max().scalar, 1e-5)
        XCTAssertLessThan((path.slice(2..<3) - b).abs().max().scalar, 1e-5)
        // Two nearly orthogonal Gaussian vectors: the midpoint's norm stays near theirs (a straight
        // line's would drop by about √2).
        func norm(_ x: Tensor) -> Float { x.squared().sum().scalar.squareRoot() }
        XCTAssertEqual(norm(path.slice(1..<2)), (norm(a) + norm(b)) / 2, accuracy: 0.1 * norm(a))
        XCTAssertLessThan(norm((a + b) * 0.5), 0.8 * norm(a))
    }
}

/// RePaint against diffusers' RePaintPipeline loop (scripts/make_repaint_fixtures.py): the jump
/// schedule, every recorded noise draw fed in order, the states and the final sample.
final class RePaintTests: XCTestCase {
    /// Hands out the fixture's noise tensors in order.
    struct RecordedNoise: NoiseSource {
        let file: SafeTensors
        var next = 0
        mutating func normal(_ shape: [Int]) -> Tensor {
            defer { next += 1 }
            let x = try! file.tensor("noise.\(next)")
            precondition(x.shape == shape, "noise.\(next): \(x.shape) for \(shape)")
            return x
        }
    }

    func testMatchesDiffusers() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/repaint").path
        let (model, parameters) = try ModelFolder.load(SamplingLoopTests.unets + "/attn")
        for name in ["repaint_eta0", "repaint_eta1"] {
            let f = try SafeTensors.read(contentsOf: folder + "/\(name).safetensors")
            let object = try JSONSerialization.jsonObject(with: Data(f.metadata["scheduler_config"]!.utf8)) as! [String: Any]
            let config = try SchedulerConfig(json: object, file: name, kind: .ddpm)
            let repaint = try RePaint(config: config, steps: Int(f.metadata["num_inference_steps"]!)!,
                                      jumpLength: Int(f.metadata["jump_length"]!)!, jumpSamples: Int(f.metadata["jump_n_sample"]!)!,
                                      eta: Float(f.metadata["eta"]!)!)
            XCTAssertEqual(repaint.timesteps.map(Float.init), try f.tensor("timesteps").scalars, name)
            var noise = RecordedNoise(file: f)
            let result = try repaint.run(image: try f.tensor("original_image"), mask: try f.tensor("mask"), model: { x, t in
                model(x, timesteps: t, classLabels: nil, parameters: parameters)
            }, generator: &noise)
            XCTAssertEqual(noise.next, Int(f.metadata["num_noise_draws"]!)!, "\(name): noise draws")
            let expected = try f.tensor("sample")
            let error = zip(result.scalars, expected.scalars).map { abs($0 - $1) }.max()! / expected.scalars.map(abs).max()!
            XCTAssertLessThanOrEqual(error, 1e-3, name)
            XCTAssertLessThan(error, 1e-4, "\(name): the loop is stable (its float64 re-run is within 1e-5)")
        }
    }
}
