import Foundation
import XCTest
import HazeIO
import HazeTensor
@testable import HazeDiffusion

/// Golden values from diffusers (scripts/make_scheduler_fixtures.py; conventions in the
/// fixture folder's README): schedules, posterior, add_noise, and every step of 24 sampler
/// configurations, teacher-forced with diffusers' model outputs and samples.
final class SchedulerGoldenTests: XCTestCase {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/schedulers").path

    func load(_ name: String) throws -> SafeTensors { try SafeTensors.read(contentsOf: Self.folder + "/\(name).safetensors") }

    /// max |a − b| / max(1, max |b|).
    func error(_ a: Tensor, _ b: Tensor) -> Float {
        XCTAssertEqual(a.shape, b.shape)
        return zip(a.scalars, b.scalars).map { abs($0 - $1) }.max()! / max(1, b.scalars.map(abs).max()!)
    }

    func testSchedules() throws {
        let file = try load("schedules")
        let cases: [(String, NoiseSchedule)] = [
            ("linear", NoiseSchedule(.linear(start: 1e-4, end: 0.02), trainingSteps: 1000)),
            ("scaled_linear", NoiseSchedule(.scaledLinear(start: 0.00085, end: 0.012), trainingSteps: 1000)),
            ("squaredcos_cap_v2", NoiseSchedule(.squaredCosCapV2, trainingSteps: 1000)),
            ("sigmoid", NoiseSchedule(.sigmoid(start: 1e-4, end: 0.02), trainingSteps: 1000)),
            ("linear_zero_snr", NoiseSchedule(.linear(start: 1e-4, end: 0.02), trainingSteps: 1000, rescaleZeroTerminalSNR: true)),
            ("trained_betas", NoiseSchedule(.trained(linspace64(1e-4, 0.02, 1000).map(Float.init)), trainingSteps: 1000)),
        ]
        for (name, schedule) in cases {
            for (key, values) in [("betas", schedule.betas), ("alphas_cumprod", schedule.alphasCumprod)] {
                let expected = try file.tensor("\(name).\(key)").scalars
                let worst = zip(values, expected).map { abs($0 - $1) / max(abs($1), 1e-30) }.max()!
                // sigmoid: torch's vectorised float32 sigmoid is within 2 ulp of ours; zero-SNR
                // rescaling cancels digits near t = T, so its 1-ulp sqrt differences grow.
                let tolerance: Float = name == "sigmoid" ? 1e-6 : (name == "linear_zero_snr" ? 1e-4 : 1e-7)
                XCTAssertLessThanOrEqual(worst, tolerance, "\(name).\(key)")
            }
        }
        XCTAssertEqual(cases[4].1.alphasCumprod.last, 0, "zero terminal SNR")
    }

    func testAddNoiseVelocityAndPosterior() throws {
        let f = try load("add_noise")
        let schedule = NoiseSchedule(.linear(start: 1e-4, end: 0.02), trainingSteps: 1000)
        let t = try f.tensor("timesteps").scalars.map { Int($0) }
        XCTAssertLessThanOrEqual(error(schedule.addNoise(try f.tensor("x0"), noise: try f.tensor("noise"), timesteps: t),
                                       try f.tensor("noisy_samples")), 1e-6)
        XCTAssertLessThanOrEqual(error(schedule.velocity(try f.tensor("x0"), noise: try f.tensor("noise"), timesteps: t),
                                       try f.tensor("velocity")), 1e-6)
        // x₀ and ε recovered from x_t for each prediction type.
        let xt = schedule.addNoise(try f.tensor("x0"), noise: try f.tensor("noise"), timesteps: t)
        for type in PredictionType.allCases {
            let output = schedule.target(type, x0: try f.tensor("x0"), noise: try f.tensor("noise"), timesteps: t)
            let (x0, eps) = schedule.predictions(output, type: type, sample: xt, timesteps: t)
            // t = 0 makes ε ill-conditioned from x₀ (√(1−ᾱ) ≈ 0.01): compare items 1…3.
            XCTAssertLessThanOrEqual(error(x0.slice(1..<4), try f.tensor("x0").slice(1..<4)), 2e-4, "\(type) x0")
            XCTAssertLessThanOrEqual(error(eps.slice(1..<4), try f.tensor("noise").slice(1..<4)), 2e-3, "\(type) eps")
        }

        let p = try load("ddpm_posterior")
        let ddpm = DDPMScheduler(SchedulerConfig(kind: .ddpm))
        for (i, step) in try p.tensor("t").scalars.enumerated() {
            let post = ddpm.posterior(t: Int(step), previous: Int(step) - 1)
            for (value, key) in [(post.coefX0, "coef_x0"), (post.coefXt, "coef_xt"), (post.variance, "posterior_variance")] {
                let expected = Double(try p.tensor(key).scalars[i])
                XCTAssertEqual(value, expected, accuracy: 3e-4 * abs(expected) + 1e-12, "\(key) at t = \(step)")
            }
        }
    }

    func testTrajectories() throws {
        let names = ["ddpm_fixed_small_clip", "ddpm_fixed_large_noclip", "ddpm_full_50", "ddpm_thresholding",
                     "ddpm_thresholding_max3", "ddim_eta0_leading", "ddim_eta1_trailing", "ddim_vpred_linspace",
                     "ddim_sample_pred", "dpmpp2m", "dpmpp2m_karras_vpred", "euler", "euler_20", "euler_ancestral",
                     "euler_trailing_vpred", "euler_karras", "euler_exponential", "heun", "heun_karras_vpred", "unipc", "unipc_karras_vpred",
                     "dpmpp2m_sde", "dpmpp2m_exponential"]
        for name in names {
            let f = try load(name)
            let json = f.metadata["scheduler_config"]!.replacingOccurrences(of: "-Infinity", with: "\"-Infinity\"")
            var object = try JSONSerialization.jsonObject(with: Data(json.utf8)) as! [String: Any]
            object["_class_name"] = f.metadata["scheduler_class"]
            let config = try SchedulerConfig(json: object, file: name)
            let scheduler = makeScheduler(config)
            if let ddim = scheduler as? DDIMScheduler { ddim.eta = Float(f.metadata["eta"]!)! }
            let steps = Int(f.metadata["num_inference_steps"]!)!
            try scheduler.setTimesteps(steps)
            // Karras and exponential σ give fractional timesteps (Float32 on both sides).
            let expected = try f.tensor("timesteps").scalars
            XCTAssertEqual(scheduler.timesteps.count, expected.count, "\(name) timesteps")
            XCTAssertLessThanOrEqual(zip(scheduler.timesteps, expected).map { abs($0 - $1) }.max() ?? 0, 1e-3, "\(name) timesteps")
            XCTAssertEqual(scheduler.initNoiseSigma, Float(f.metadata["init_noise_sigma"]!)!, accuracy: 1e-4, "\(name) init sigma")
            var worst: (Float, String) = (0, "")
            func check(_ a: Tensor, _ key: String) throws {
                let e = error(a, try f.tensor(key))
                if e > worst.0 { worst = (e, key) }
            }
            for i in scheduler.timesteps.indices {  // Heun: 2·steps − 1 model calls
                let sample = i == 0 ? try f.tensor("x_T") : try f.tensor("prev_sample.\(i - 1)")
                try check(scheduler.scaleModelInput(sample, stepIndex: i), "model_input.\(i)")
                XCTAssertEqual(scheduler.needsNoise(stepIndex: i), f.tensors["noise.\(i)"] != nil, "\(name) noise at \(i)")
                let out = scheduler.step(modelOutput: try f.tensor("model_output.\(i)"), stepIndex: i, sample: sample,
                                         noise: f.tensors["noise.\(i)"])
                try check(out.prevSample, "prev_sample.\(i)")
                if let x0 = out.predOriginal {
                    try check(x0, f.tensors["pred_original_sample.\(i)"] != nil ? "pred_original_sample.\(i)" : "x0_pred.\(i)")
                }
            }
            XCTAssertLessThanOrEqual(worst.0, 1e-4, "\(name): worst \(worst.1)")
        }
    }

    func testSchedulerConfigErrorsAndOverride() throws {
        XCTAssertThrowsError(try SchedulerConfig(json: ["_class_name": "LMSDiscreteScheduler"], file: "s.json")) {
            XCTAssertTrue("\($0)".contains(#"s.json: field "_class_name": scheduler "LMSDiscreteScheduler" is not supported"#), "\($0)")
        }
        XCTAssertThrowsError(try SchedulerConfig(json: ["_class_name": "DDPMScheduler", "variance_type": "learned_range"], file: "s.json")) {
            XCTAssertTrue("\($0)".contains(#"value "learned_range" is not supported"#), "\($0)")
        }
        XCTAssertThrowsError(try SchedulerConfig(json: ["_class_name": "DPMSolverMultistepScheduler", "solver_order": 3], file: "s.json"))
        // Overriding the class keeps the betas (diffusers' from_config).
        let json: [String: Any] = ["_class_name": "DDPMScheduler", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                                   "beta_end": 0.012, "num_train_timesteps": 500]
        let ddim = try SchedulerConfig(json: json, file: "s.json", kind: .ddim)
        XCTAssertEqual(ddim.kind, .ddim)
        XCTAssertEqual(ddim.noiseSchedule, try SchedulerConfig(json: json, file: "s.json").noiseSchedule)
        XCTAssertThrowsError(try makeScheduler(ddim).setTimesteps(501)) { XCTAssertTrue("\($0)".contains("1…500")) }
        // _use_default_values: those keys take the chosen class's defaults (diffusers' from_config).
        let saved: [String: Any] = ["_class_name": "DDPMScheduler", "timestep_spacing": "leading", "steps_offset": 0,
                                    "beta_schedule": "scaled_linear", "_use_default_values": ["timestep_spacing", "steps_offset"]]
        XCTAssertEqual(try SchedulerConfig(json: saved, file: "s.json", kind: .dpmSolverMultistep).timestepSpacing, .linspace)
        XCTAssertEqual(try SchedulerConfig(json: saved, file: "s.json", kind: .dpmSolverMultistep).betaSchedule, "scaled_linear")
        XCTAssertEqual(try SchedulerConfig(json: saved, file: "s.json").timestepSpacing, .leading)
        var explicit = saved
        explicit["_use_default_values"] = nil
        XCTAssertEqual(try SchedulerConfig(json: explicit, file: "s.json", kind: .dpmSolverMultistep).timestepSpacing, .leading)
        // The CLI's choice: a short name may pick a variant; --sigmas needs a σ-space scheduler.
        let sde = try SchedulerConfig.forSampling(file: nil, scheduler: "dpm++2m-sde", sigmas: .karras)
        XCTAssertEqual(sde.kind, .dpmSolverMultistep)
        XCTAssertTrue(sde.stochastic)
        XCTAssertEqual(sde.sigmaSpacing, .karras)
        XCTAssertEqual(sde.jsonObject()["algorithm_type"] as? String, "sde-dpmsolver++")
        XCTAssertThrowsError(try SchedulerConfig.forSampling(file: nil, scheduler: "ddim", sigmas: .exponential)) {
            XCTAssertTrue("\($0)".contains("--sigmas exponential needs a scheduler that works in σ"), "\($0)")
        }
        XCTAssertThrowsError(try SchedulerConfig.forSampling(file: nil, scheduler: "lms", sigmas: nil)) {
            XCTAssertTrue("\($0)".contains("unknown --scheduler lms"), "\($0)")
        }
        XCTAssertThrowsError(try SchedulerConfig(json: ["_class_name": "EulerDiscreteScheduler", "use_karras_sigmas": true,
                                                        "use_exponential_sigmas": true], file: "s.json"))
        XCTAssertEqual(try SchedulerConfig(json: ["_class_name": "HeunDiscreteScheduler"], file: "s.json").betaStart, 0.00085)
        // Written and read back.
        let path = NSTemporaryDirectory() + "scheduler-\(UUID().uuidString).json"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try ddim.write(to: path)
        XCTAssertEqual(try SchedulerConfig(contentsOf: path), ddim)
    }
}
