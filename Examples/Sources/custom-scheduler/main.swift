// A scheduler of your own, plugged into Haze's sampling loop: deterministic DDIM (Song et al. 2021,
// "Denoising diffusion implicit models", eq. 12 with σ_t = 0) written from the paper, then checked
// against Haze's DDIMScheduler on the same initial noise (exit code 1 when they differ):
//   swift run --package-path Examples custom-scheduler [MODEL_FOLDER] [--steps N]
// Without a folder the noise predictor is analytic: the exact E[ε | x_t] for data x₀ ~ N(0, 0.5² I).
import Foundation
import HazeKit

/// DDIM with η = 0. The paper's α_t is ᾱ_t here (`schedule.alphasCumprod[t]`).
final class PlainDDIM: Scheduler {
    let config: SchedulerConfig
    let schedule: NoiseSchedule
    private(set) var timesteps: [Float] = []
    var initNoiseSigma: Float { 1 }  // x_T ~ N(0, I)

    init(_ config: SchedulerConfig) { (self.config, schedule) = (config, config.noiseSchedule) }

    /// N evenly spaced training timesteps, from the noisiest: (N − 1)·T/N, …, T/N, 0 (plus the
    /// config's offset; diffusers' "leading" spacing).
    func setTimesteps(_ count: Int) throws {
        let total = config.numTrainTimesteps
        guard (1...total).contains(count) else { throw SamplingError("\(count) steps: use 1…\(total)") }
        timesteps = (0..<count).reversed().map { Float($0 * (total / count) + config.stepsOffset) }
    }

    func needsNoise(stepIndex index: Int) -> Bool { false }  // deterministic: no noise after x_T

    /// x̂₀ = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t, then x_{t−Δ} = √ᾱ_{t−Δ} x̂₀ + √(1 − ᾱ_{t−Δ}) ε̂ (eq. 12),
    /// Δ = T/N; past t = 0, ᾱ = 1 (diffusers' set_alpha_to_one).
    func step(modelOutput epsilon: Tensor, stepIndex index: Int, sample x: Tensor, noise: Tensor?) -> SchedulerStep {
        let t = Int(timesteps[index]), previous = t - config.numTrainTimesteps / timesteps.count
        let a = schedule.alphasCumprod[t]
        let aPrevious = previous >= 0 ? schedule.alphasCumprod[previous] : (config.setAlphaToOne ? 1 : schedule.alphasCumprod[0])
        var x0 = (x - epsilon * (1 - a).squareRoot()) / a.squareRoot()
        if config.clipSample { x0 = x0.clamped(min: -config.clipSampleRange, max: config.clipSampleRange) }  // as diffusers
        return SchedulerStep(prevSample: x0 * aPrevious.squareRoot() + epsilon * (1 - aPrevious).squareRoot(), predOriginal: x0)
    }
}

func compare(folder: String?, steps: Int) throws {
    var config = SchedulerConfig(kind: .ddim)
    let model: NoisePredictor
    var shape = [4, 1, 16, 16]
    if let folder {
        let pipeline = try DiffusionPipeline(contentsOf: folder)
        guard !pipeline.model.isClassConditional else { throw SamplingError("\(folder): a class-conditional model; this example takes unconditional ones") }
        // The folder's betas, as DDIM (what `haze sample --scheduler ddim` does).
        config = try SchedulerConfig(json: pipeline.schedulerConfig.jsonObject(), file: folder, kind: .ddim)
        guard config.predictionType == .epsilon else { throw SamplingError("PlainDDIM takes ε-prediction models, not \(config.predictionType.rawValue)") }
        shape = [4, pipeline.model.inChannels] + (pipeline.model.sampleSize ?? [32, 32])
        model = { x, t, _ in pipeline.model(x, timesteps: t, parameters: pipeline.parameters) }
    } else {
        // x_t = √ᾱ x₀ + √(1 − ᾱ) ε with x₀ ~ N(0, s²): E[ε | x_t] = √(1 − ᾱ) x_t / (ᾱ s² + 1 − ᾱ).
        let alphasCumprod = config.noiseSchedule.alphasCumprod
        model = { x, t, _ in
            let a = alphasCumprod[Int(t[0])]
            return x * ((1 - a).squareRoot() / (a * 0.25 + 1 - a))
        }
    }
    // PlainDDIM implements leading spacing and clipping only: both samplers use that config.
    (config.timestepSpacing, config.thresholding) = (.leading, false)

    let xT = Tensor.normal(shape, seed: 1)  // the same x_T for both
    func sample(_ scheduler: Scheduler) throws -> Tensor {
        var unused = RandomGenerator(seed: 0)  // neither sampler draws noise after x_T
        return try SamplingLoop(scheduler: scheduler, model: model)
            .run(shape: shape, steps: steps, initialNoise: xT, generator: &unused)
    }
    let mine = try sample(PlainDDIM(config)), haze = try sample(DDIMScheduler(config))
    let difference = (mine - haze).abs().max().scalar, tolerance: Float = 1e-3
    let std = (haze - haze.mean()).squared().mean().scalar.squareRoot()
    print("\(steps) DDIM steps on \(shape) (\(folder ?? "analytic Gaussian predictor")): samples' std \(std)")
    print("max |PlainDDIM − DDIMScheduler| = \(difference) (tolerance \(tolerance))")
    guard difference <= tolerance else { throw SamplingError("PlainDDIM and DDIMScheduler differ by \(difference) > \(tolerance)") }
}

var arguments = Array(CommandLine.arguments.dropFirst())
var steps = 50
if let i = arguments.firstIndex(of: "--steps"), i + 1 < arguments.count, let n = Int(arguments[i + 1]) {
    steps = n
    arguments.removeSubrange(i...(i + 1))
}
guard arguments.count <= 1, arguments.allSatisfy({ !$0.hasPrefix("-") }) else {
    FileHandle.standardError.write(Data("usage: custom-scheduler [MODEL_FOLDER] [--steps N]\n".utf8))
    exit(1)
}
do { try compare(folder: arguments.first, steps: steps) } catch {
    FileHandle.standardError.write(Data("custom-scheduler: \(error)\n".utf8))
    exit(1)
}
