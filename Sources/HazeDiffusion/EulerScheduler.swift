import Foundation
import HazeTensor

/// Euler (Karras et al. 2022, Algorithm 1 with S_churn = 0) and Euler ancestral samplers in σ
/// space, as diffusers' EulerDiscreteScheduler and EulerAncestralDiscreteScheduler:
/// x lives at scale σ (x = x₀ + σ ε); the network sees x/√(σ² + 1).
public final class EulerScheduler: Scheduler {
    public let config: SchedulerConfig
    public let schedule: NoiseSchedule
    public private(set) var timesteps: [Float] = []
    /// σ at each inference step, then 0.
    public private(set) var sigmas: [Double] = []
    var ancestral: Bool { config.kind == .eulerAncestral }

    public init(_ config: SchedulerConfig) {
        self.config = config
        schedule = config.noiseSchedule
    }

    public var initNoiseSigma: Float {
        let top = sigmas.max() ?? 1
        return Float(config.timestepSpacing == .leading ? (top * top + 1).squareRoot() : top)
    }

    public func setTimesteps(_ count: Int) throws {
        let t = config.numTrainTimesteps
        guard count >= 1, count <= t else {
            throw SamplingError("\(count) inference steps: Euler allows 1…\(t) (the training timesteps)")
        }
        let steps: [Double] = config.timestepSpacing == .linspace
            ? linspace64(0, Double(t - 1), count).reversed().map { Double(Float($0)) }
            : spacedTimesteps(config.timestepSpacing, trainingSteps: t, count: count, offset: config.stepsOffset).map(Double.init)
        // σ(t) by linear interpolation of the training σ (diffusers' np.interp).
        let train = schedule.alphasCumprod.map { Double(((1 - $0) / $0).squareRoot()) }
        sigmas = steps.map { s in
            let low = min(max(Int(s.rounded(.down)), 0), t - 1), high = min(low + 1, t - 1)
            return Double(Float(train[low] + (s - Double(low)) * (train[high] - train[low])))
        } + [0]
        timesteps = steps.map(Float.init)
    }

    public func scaleModelInput(_ sample: Tensor, stepIndex index: Int) -> Tensor {
        sample * Float(1 / (sigmas[index] * sigmas[index] + 1).squareRoot())
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
