import Foundation
import HazeTensor

/// Inpainting with an unconditional model by RePaint (Lugmayr et al. 2022), as diffusers'
/// RePaintScheduler and RePaintPipeline. Each reverse step from t to t' = t − T/N combines
///   the known part: the original image noised to t', √ᾱ_{t'} x₀ + √(1 − ᾱ_{t'}) z, and
///   the unknown part: a DDIM step (η) of the model's sample, √ᾱ_{t'} x̂₀ + √(1 − ᾱ_{t'} − σ²) ε̂ + σ z′,
/// as x_{t'} = m ⊙ known + (1 − m) ⊙ unknown (m = 1 where the image is kept). To harmonise the
/// two, the walk through time jumps back ("resampling", §4.2): after every `jumpLength` steps it
/// re-noises the sample `jumpLength` steps forward, x ← √(1 − β) x + √β z per training step, and
/// denoises them again, `jumpSamples` − 1 times.
public struct RePaint {
    /// The model's scheduler config: its training steps, betas and `clipSample` (the model output
    /// is taken as ε whatever its `predictionType`).
    public let config: SchedulerConfig
    /// The config's noise schedule.
    public let schedule: NoiseSchedule
    /// DDIM's η of the unknown part (0: deterministic).
    public var eta: Float
    /// Inference steps N (the reverse steps are T/N training steps apart); steps between jumps back;
    /// times each stretch of `jumpLength` steps is denoised (1: no resampling).
    public let steps: Int, jumpLength: Int, jumpSamples: Int
    /// The visited timesteps in order: a reverse step where t decreases, a re-noising where it
    /// increases (diffusers' `RePaintScheduler.set_timesteps`).
    public let timesteps: [Int]

    /// Throws `SamplingError` unless 1 ≤ `steps` ≤ the training timesteps and `jumpLength`,
    /// `jumpSamples` ≥ 1 (diffusers' defaults: jump length 10, 10 samples).
    public init(config: SchedulerConfig, steps: Int, jumpLength: Int = 10, jumpSamples: Int = 10, eta: Float = 0) throws {
        guard steps >= 1 && steps <= config.numTrainTimesteps else {
            throw SamplingError("\(steps) inference steps: RePaint allows 1…\(config.numTrainTimesteps) (the training timesteps)")
        }
        guard jumpLength >= 1, jumpSamples >= 1 else {
            throw SamplingError("--jump-length and --jump-n-sample must be at least 1")
        }
        (self.config, schedule, self.steps, self.jumpLength, self.jumpSamples, self.eta)
            = (config, config.noiseSchedule, steps, jumpLength, jumpSamples, eta)
        // Jump points every `jumpLength` steps (not within the last jumpLength steps of the start).
        var jumps = [Int: Int]()
        for j in stride(from: 0, to: steps - jumpLength, by: jumpLength) { jumps[j] = jumpSamples - 1 }
        var visited: [Int] = [], t = steps
        while t >= 1 {
            t -= 1
            visited.append(t)
            if let left = jumps[t], left > 0 {
                jumps[t] = left - 1
                for _ in 0..<jumpLength { t += 1; visited.append(t) }
            }
        }
        let ratio = config.numTrainTimesteps / steps
        timesteps = visited.map { $0 * ratio }
    }

    /// The number of model calls of a run (the steps that go down in time).
    public var modelCalls: Int {
        var last = timesteps[0] + 1, calls = 0
        for t in timesteps { if t < last { calls += 1 }; last = t }
        return calls
    }

    /// Inpaints `image` [B, C, H, W] (in [−1, 1]) where `mask` [B, 1, H, W] is 0. Noise comes from
    /// `generator` in diffusers' order: x_T (or `initialNoise`), then one tensor per reverse step
    /// and T/N per re-noising step.
    public func run<Noise: NoiseSource>(image: Tensor, mask: Tensor, initialNoise: Tensor? = nil,
                                        model: (Tensor, [Float]) -> Tensor, generator: inout Noise,
                                        progress: (() -> Void)? = nil) throws -> Tensor {
        let shape = image.shape
        guard mask.shape == [shape[0], 1] + shape.dropFirst(2) else {
            throw SamplingError("the mask has shape \(mask.shape), expected \([shape[0], 1] + shape.dropFirst(2))")
        }
        if let initialNoise, initialNoise.shape != shape { throw SamplingError("initial noise has shape \(initialNoise.shape), expected \(shape)") }
        let keep = mask, fill = 1 - mask
        var x = initialNoise ?? generator.normal(shape)
        var last = timesteps[0] + 1
        ConvolutionAlgorithm.reusingTransformedWeights {  // the weights do not change during the run
        for t in timesteps {
            if t < last {
                let output = model(x, [Float](repeating: Float(t), count: shape[0]))
                x = step(output, t: t, sample: x, image: image, keep: keep, fill: fill, noise: generator.normal(shape))
                progress?()
            } else {
                x = renoise(x, from: last, generator: &generator)
            }
            last = t
        }
        }
        return x
    }

    /// One reverse step from t to t − T/N (diffusers' `RePaintScheduler.step`).
    func step(_ output: Tensor, t: Int, sample x: Tensor, image: Tensor, keep: Tensor, fill: Tensor, noise: Tensor) -> Tensor {
        let previous = t - config.numTrainTimesteps / steps
        let a = Double(schedule.alphasCumprod[t]), aPrev = previous >= 0 ? Double(schedule.alphasCumprod[previous]) : 1
        var x0 = (x - output * Float((1 - a).squareRoot())) * Float(1 / a.squareRoot())
        if config.clipSample { x0 = x0.clamped(min: -1, max: 1) }
        let variance = (1 - aPrev) / (1 - a) * (1 - a / aPrev)
        let std = Double(eta) * variance.squareRoot()
        var unknown = x0 * Float(aPrev.squareRoot()) + output * Float((1 - aPrev - std * std).squareRoot())
        if t > 0 && eta > 0 { unknown = unknown + noise * Float(std) }
        let known = image * Float(aPrev.squareRoot()) + noise * Float((1 - aPrev).squareRoot())
        return keep * known + fill * unknown
    }

    /// Re-noises x from timestep t forward by T/N training steps: x ← √(1 − β_s) x + √β_s z for
    /// s = t, t + 1, … (diffusers' `undo_step`).
    func renoise<Noise: NoiseSource>(_ x: Tensor, from t: Int, generator: inout Noise) -> Tensor {
        var x = x
        for s in t..<(t + config.numTrainTimesteps / steps) {
            let beta = Double(schedule.betas[s])
            x = x * Float((1 - beta).squareRoot()) + generator.normal(x.shape) * Float(beta.squareRoot())
        }
        return x
    }
}
