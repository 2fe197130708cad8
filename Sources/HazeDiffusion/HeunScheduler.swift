import Foundation
import HazeTensor

/// Heun's second-order sampler (Karras et al. 2022, Algorithm 1 with S_churn = 0) in σ space, as
/// diffusers' HeunDiscreteScheduler. Each step from σ_i to σ_{i+1} calls the network twice:
///   d = (x − x̂₀(x, σ_i))/σ_i,  x' = x + (σ_{i+1} − σ_i) d                         (Euler)
///   d' = (x' − x̂₀(x', σ_{i+1}))/σ_{i+1},  x_{i+1} = x + (σ_{i+1} − σ_i)(d + d')/2  (correction)
/// except the last, to σ = 0, which is a plain Euler step. So N steps make 2N − 1 network calls:
/// `timesteps` holds t_0, t_1, t_1, …, t_{N−1}, t_{N−1} and `step` alternates between the two
/// halves. The network sees x/√(σ² + 1) (`SigmaSpaceScheduler`).
public final class HeunScheduler: SigmaSpaceScheduler {
    public let config: SchedulerConfig
    public let schedule: NoiseSchedule
    public private(set) var timesteps: [Float] = []
    /// σ of each network call: σ_0, σ_1, σ_1, …, σ_{N−1}, σ_{N−1}, then 0.
    public private(set) var sigmas: [Double] = []
    /// The Euler half's derivative and starting sample, kept for its correction.
    private var pending: (derivative: Tensor, sample: Tensor)?

    /// A sampler for `config`, with no timesteps until `setTimesteps`.
    public init(_ config: SchedulerConfig) {
        self.config = config
        schedule = config.noiseSchedule
    }

    public func setTimesteps(_ count: Int) throws {
        let run = try EulerScheduler.sigmaRun(config: config, schedule: schedule, count: count, sampler: "Heun")
        timesteps = [run.timesteps[0]] + run.timesteps.dropFirst().flatMap { [$0, $0] }
        sigmas = [run.sigmas[0]] + run.sigmas.dropFirst().flatMap { [$0, $0] } + [0]
        pending = nil
    }

    public func needsNoise(stepIndex index: Int) -> Bool { false }

    public var order: Int { 2 }

    /// Call `index`: even indices are Euler halves (from σ = sigmas[i] to sigmas[i+1]), odd ones
    /// the corrections of the half before, evaluated at σ = sigmas[i].
    public func step(modelOutput: Tensor, stepIndex i: Int, sample x: Tensor, noise: Tensor?) -> SchedulerStep {
        let correcting = i % 2 == 1
        let sigma = sigmas[i]  // the σ at which the network was evaluated
        let x0: Tensor
        switch config.predictionType {
        case .epsilon: x0 = x - modelOutput * Float(sigma)
        case .vPrediction: x0 = modelOutput * Float(-sigma / (sigma * sigma + 1).squareRoot()) + x * Float(1 / (sigma * sigma + 1))
        case .sample: x0 = modelOutput
        }
        let clipped = config.clipSample ? x0.clamped(min: -config.clipSampleRange, max: config.clipSampleRange) : x0
        let derivative = (x - clipped) * Float(1 / sigma)
        guard correcting, let (first, start) = pending else {
            pending = (derivative, x)
            return SchedulerStep(prevSample: x + derivative * Float(sigmas[i + 1] - sigma), predOriginal: clipped)
        }
        pending = nil
        let dt = Float(sigma - sigmas[i - 1])
        return SchedulerStep(prevSample: start + (first + derivative) * Float(0.5) * dt, predOriginal: clipped)
    }
}
