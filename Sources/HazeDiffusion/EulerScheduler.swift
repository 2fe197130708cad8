import Foundation
import HazeTensor

/// Euler (Karras et al. 2022, Algorithm 1 with S_churn = 0) and Euler ancestral samplers in σ
/// space, as diffusers' EulerDiscreteScheduler and EulerAncestralDiscreteScheduler:
/// x lives at scale σ (x = x₀ + σ ε); the network sees x/√(σ² + 1).
public final class EulerScheduler: SigmaSpaceScheduler {
    public let config: SchedulerConfig
    public let schedule: NoiseSchedule
    public private(set) var timesteps: [Float] = []
    /// σ at each inference step, then 0.
    public private(set) var sigmas: [Double] = []
    var ancestral: Bool { config.kind == .eulerAncestral }

    /// A sampler for `config`, with no timesteps until `setTimesteps`.
    public init(_ config: SchedulerConfig) {
        self.config = config
        schedule = config.noiseSchedule
    }

    public func setTimesteps(_ count: Int) throws {
        let run = try Self.sigmaRun(config: config, schedule: schedule, count: count, sampler: "Euler")
        (timesteps, sigmas) = (run.timesteps, run.sigmas + [0])
    }

    /// The timesteps and σ of an N-step run in σ space, as diffusers' Euler and Heun schedulers
    /// make them: timesteps by the config's spacing, σ(t) by linear interpolation of the training
    /// σ (np.interp); respaced by Karras or exponential spacing between the first and last of
    /// those σ, with each timestep then the (fractional) t of its σ. Both in Float32. A last σ of 0
    /// is left out (one step fewer: the sample is already clean there).
    static func sigmaRun(config: SchedulerConfig, schedule: NoiseSchedule, count: Int,
                         sampler: String) throws -> (timesteps: [Float], sigmas: [Double]) {
        let t = config.numTrainTimesteps
        guard count >= 1, count <= t else {
            throw SamplingError("\(count) inference steps: \(sampler) allows 1…\(t) (the training timesteps)")
        }
        var steps: [Double] = config.timestepSpacing == .linspace
            ? linspace64(0, Double(t - 1), count).reversed().map { Double(Float($0)) }
            : spacedTimesteps(config.timestepSpacing, trainingSteps: t, count: count, offset: config.stepsOffset).map(Double.init)
        var sigmas = schedule.sigmas(atTimesteps: steps)
        // A clean last timestep (σ = 0: ᾱ = 1, t = 0 of the TensorFlow notebook's shifted schedule)
        // is where the run's last step goes anyway: it is dropped, so that no step divides by σ = 0.
        if sigmas.count > 1, sigmas.last == 0 { (steps, sigmas) = (Array(steps.dropLast()), Array(sigmas.dropLast())) }
        if config.sigmaSpacing != .schedule {
            sigmas = config.sigmaSpacing.sigmas(from: sigmas[0], to: sigmas[sigmas.count - 1], count: sigmas.count)
            steps = sigmas.map { schedule.timestep(ofSigma: $0) }
        }
        return (steps.map(Float.init), sigmas.map { Double(Float($0)) })
    }

    public func needsNoise(stepIndex index: Int) -> Bool { ancestral }

    public func step(modelOutput: Tensor, stepIndex i: Int, sample x: Tensor, noise: Tensor?) -> SchedulerStep {
        let (sigma, next) = (sigmas[i], sigmas[i + 1])
        // 1. x̂₀ from the output: ε: x − σ ε̂;  v: −σ/√(σ²+1) v̂ + x/(σ²+1).
        let x0: Tensor
        switch config.predictionType {
        case .epsilon: x0 = x - modelOutput * Float(sigma)
        case .vPrediction: x0 = modelOutput * Float(-sigma / (sigma * sigma + 1).squareRoot()) + x * Float(1 / (sigma * sigma + 1))
        case .sample: x0 = modelOutput
        }
        // 2. The ODE derivative d = (x − x̂₀)/σ (Karras et al. eq. 4 in σ form).
        let derivative = (x - x0) * Float(1 / sigma)
        guard ancestral else {
            return SchedulerStep(prevSample: x + derivative * Float(next - sigma), predOriginal: x0)
        }
        // 3. Ancestral: step to σ_down, then add σ_up z, σ_up² = σ_next² (σ² − σ_next²)/σ².
        let up = (next * next * (sigma * sigma - next * next) / (sigma * sigma)).squareRoot()
        let down = (next * next - up * up).squareRoot()
        guard let noise else { preconditionFailure("Euler ancestral needs noise") }
        return SchedulerStep(prevSample: x + derivative * Float(down - sigma) + noise * Float(up), predOriginal: x0)
    }
}

/// Samplers whose x lives at scale σ, x = x₀ + σ ε (Karras et al. 2022): Euler and Heun. x_T has
/// standard deviation σ_max (√(σ_max² + 1) with "leading" spacing, as diffusers), and the network
/// sees x/√(σ² + 1).
public protocol SigmaSpaceScheduler: Scheduler {
    /// σ of each network call, then 0.
    var sigmas: [Double] { get }
}

extension SigmaSpaceScheduler {
    public var initNoiseSigma: Float {
        let top = sigmas.max() ?? 1
        return Float(config.timestepSpacing == .leading ? (top * top + 1).squareRoot() : top)
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex index: Int) -> Tensor {
        sample * Float(1 / (sigmas[index] * sigmas[index] + 1).squareRoot())
    }

    /// x₀ + σ ε.
    public func addNoise(_ x0: Tensor, noise: Tensor, stepIndex index: Int) -> Tensor { x0 + noise * Float(sigmas[index]) }
}
