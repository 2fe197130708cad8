import Foundation
import HazeTensor

/// One reverse step's result: x_{t−1} and the model's estimate of x₀ (when the scheduler has one).
public struct SchedulerStep {
    /// x_{t−1}, the sample after the step.
    public let prevSample: Tensor
    /// x̂₀, the estimate of the clean sample at this step, or nil for the schedulers that have none.
    public let predOriginal: Tensor?

    /// A step's result, for schedulers written outside Haze (the memberwise initialiser is internal).
    public init(prevSample: Tensor, predOriginal: Tensor?) { (self.prevSample, self.predOriginal) = (prevSample, predOriginal) }
}

/// A sampler of the reverse process, shaped like diffusers' schedulers:
/// `setTimesteps(n)`, then for each `t` in `timesteps`: ε̂ = model(scaleModelInput(x, t), t),
/// x = step(ε̂, t, x, noise).prevSample. Noise is passed in (drawn by the caller where
/// `needsNoise` says so), so every step is testable without a random generator.
public protocol Scheduler: AnyObject {
    /// The config the scheduler was made from.
    var config: SchedulerConfig { get }
    /// The training noise schedule (β_t, ᾱ_t) it samples with.
    var schedule: NoiseSchedule { get }
    /// The timesteps of the current sampling run, from noisiest to cleanest.
    var timesteps: [Float] { get }
    /// The standard deviation of x_T (1 for DDPM/DDIM/DPM-Solver; σ_max-based for Euler).
    var initNoiseSigma: Float { get }
    /// Chooses `count` inference timesteps (at most the training steps).
    func setTimesteps(_ count: Int) throws
    /// The network's input at step `index` (identity except for the Euler samplers).
    func scaleModelInput(_ sample: Tensor, stepIndex index: Int) -> Tensor
    /// Whether step `index` consumes a noise tensor.
    func needsNoise(stepIndex index: Int) -> Bool
    /// Whether step `index` depends on the network's output. Not where x_t is already clean
    /// (ᾱ_t = 1, as at t = 0 of the TensorFlow notebook's shifted schedule) and so is x_{t′}: an ε
    /// or v prediction is multiplied by √(1 − ᾱ) = 0 there, and the sampling loop skips the call.
    func needsModelOutput(stepIndex index: Int) -> Bool
    /// Step `index` (timestep `timesteps[index]`) of the reverse process.
    func step(modelOutput: Tensor, stepIndex index: Int, sample: Tensor, noise: Tensor?) -> SchedulerStep
    /// Network calls per inference step (diffusers' `order`: 2 for Heun, else 1).
    var order: Int { get }
    /// x₀ noised to the level of step `index`: the sample that image-to-image sampling (SDEdit)
    /// starts the reverse process from. √ᾱ_t x₀ + √(1 − ᾱ_t) ε here (diffusers' `add_noise`).
    func addNoise(_ x0: Tensor, noise: Tensor, stepIndex index: Int) -> Tensor
}

extension Scheduler {
    public func scaleModelInput(_ sample: Tensor, stepIndex index: Int) -> Tensor { sample }
    /// Every step uses the output unless the scheduler says otherwise.
    public func needsModelOutput(stepIndex index: Int) -> Bool { true }
    public var order: Int { 1 }
    public func addNoise(_ x0: Tensor, noise: Tensor, stepIndex index: Int) -> Tensor {
        let a = Double(schedule.alphasCumprod[min(max(Int(timesteps[index]), 0), schedule.alphasCumprod.count - 1)])
        return x0 * Float(a.squareRoot()) + noise * Float((1 - a).squareRoot())
    }
}

/// Errors in sampling settings (steps, shapes, labels), named for the user.
public struct SamplingError: Error, CustomStringConvertible {
    public let description: String
    /// An error with the message `description`.
    public init(_ description: String) { self.description = description }
}

/// Builds the scheduler a config names.
public func makeScheduler(_ config: SchedulerConfig) -> Scheduler {
    switch config.kind {
    case .ddpm: DDPMScheduler(config)
    case .ddim: DDIMScheduler(config)
    case .dpmSolverMultistep: DPMSolverMultistepScheduler(config)
    case .euler, .eulerAncestral: EulerScheduler(config)
    case .heun: HeunScheduler(config)
    case .uniPC: UniPCScheduler(config)
    case .continuousDDIM: ContinuousDDIMScheduler(config)
    }
}

/// Inference timesteps for DDPM/DDIM-style spacing (Lin et al. 2024, Table 2):
///   leading:  round(i · T/N) reversed, + steps_offset;  trailing: round(T − i·T/N) − 1;
///   linspace: round(linspace(0, T−1, N)) reversed (rounding half to even, as numpy).
func spacedTimesteps(_ spacing: SchedulerConfig.Spacing, trainingSteps t: Int, count n: Int, offset: Int) -> [Int] {
    switch spacing {
    case .leading:
        let ratio = t / n
        return (0..<n).reversed().map { $0 * ratio + offset }
    case .trailing:
        let step = Double(t) / Double(n)
        return (0..<n).map { Int((Double(t) - Double($0) * step).rounded(.toNearestOrEven)) - 1 }
    case .linspace:
        return linspace64(0, Double(t - 1), n).reversed().map { Int($0.rounded(.toNearestOrEven)) }
    }
}

/// Checks that a run's timesteps are training timesteps (0…T−1): "leading" spacing plus
/// `steps_offset` passes T − 1 when the steps are many (T = 1000, offset 5, 1000 steps: 1004).
func checkTimesteps<S: Sequence>(_ steps: S, config: SchedulerConfig, count: Int) throws where S.Element: BinaryInteger {
    let t = config.numTrainTimesteps
    if let bad = steps.first(where: { $0 < 0 || $0 >= t }) {
        throw SamplingError("\(count) inference steps with \(config.timestepSpacing.rawValue) spacing and steps_offset \(config.stepsOffset) "
                            + "reach timestep \(bad), outside the \(t) training timesteps (0…\(t - 1)): use fewer steps")
    }
}

/// numpy.linspace in Double: start + i·step, the last element exactly `end`.
func linspace64(_ start: Double, _ end: Double, _ count: Int) -> [Double] {
    guard count > 1 else { return count == 1 ? [start] : [] }
    let step = (end - start) / Double(count - 1)
    return (0..<count).map { $0 == count - 1 ? end : start + Double($0) * step }
}

/// Whether a step from ᾱ = `a` to ᾱ = `aPrev` ignores the network's output: both clean (1), and
/// x̂₀ = x_t does not come from the output (ε or v prediction; a predicted sample does).
func stepIgnoresModelOutput(_ a: Double, _ aPrev: Double, type: PredictionType) -> Bool {
    a == 1 && aPrev == 1 && type != .sample
}

/// Clips or dynamically thresholds a predicted x₀ as configured (DDPM/DDIM).
/// Dynamic thresholding (Saharia et al. 2022, "Imagen", §2.3): per item, s = the
/// `ratio`-quantile of |x₀| clamped to [1, max]; x₀ ← clamp(x₀, −s, s) / s.
func clippedPrediction(_ x0: Tensor, config: SchedulerConfig) -> Tensor {
    if config.thresholding {
        let batch = x0.shape[0], size = x0.count / batch
        var values = x0.scalars
        for b in 0..<batch {
            let sorted = values[(b * size)..<((b + 1) * size)].map(abs).sorted()
            let position = Double(config.dynamicThresholdingRatio) * Double(size - 1)
            let low = Int(position.rounded(.down)), high = min(low + 1, size - 1)
            let q = Double(sorted[low]) + (position - Double(low)) * Double(sorted[high] - sorted[low])
            let s = Float(min(max(q, 1), Double(config.sampleMaxValue)))
            for i in (b * size)..<((b + 1) * size) { values[i] = min(max(values[i], -s), s) / s }
        }
        return Tensor(shape: x0.shape, scalars: values)
    }
    if config.clipSample {
        return x0.clamped(min: -config.clipSampleRange, max: config.clipSampleRange)
    }
    return x0
}

/// x̂₀ and ε̂ from a model output at ᾱ_t (one scalar for the whole batch), see
/// `NoiseSchedule.predictions`.
func predictions(_ output: Tensor, type: PredictionType, sample x: Tensor, alphaProduct a: Double) -> (x0: Tensor, epsilon: Tensor) {
    let (sa, sb) = (Float(a.squareRoot()), Float((1 - a).squareRoot()))
    switch type {
    case .epsilon: return ((x - output * sb) * (1 / sa), output)
    case .vPrediction: return (x * sa - output * sb, output * sa + x * sb)
    case .sample: return (output, (x - output * sa) * (1 / sb))
    }
}
