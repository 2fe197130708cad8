import Foundation
import HazeTensor

/// DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2), multistep, data prediction, as
/// diffusers' DPMSolverMultistepScheduler (midpoint, final σ = 0, Karras or exponential σ), and
/// its SDE variant (`sde-dpmsolver++`, §5 of the paper), which adds fresh noise at every step.
public final class DPMSolverMultistepScheduler: Scheduler {
    public let config: SchedulerConfig
    public let schedule: NoiseSchedule
    public private(set) var timesteps: [Float] = []
    public var initNoiseSigma: Float { 1 }
    /// σ_i = √((1 − ᾱ)/ᾱ) at each inference step, then 0.
    public private(set) var sigmas: [Double] = []
    /// x̂₀ of the previous step (the multistep history).
    private var previousX0: Tensor?

    /// A sampler for `config`, with no timesteps until `setTimesteps`.
    public init(_ config: SchedulerConfig) {
        self.config = config
        schedule = config.noiseSchedule
    }

    public func setTimesteps(_ count: Int) throws {
        let run = try Self.multistepRun(config: config, schedule: schedule, count: count, sampler: "DPM-Solver++",
                                        roundsKarrasSteps: config.betaSchedule != "squaredcos_cap_v2")
        (timesteps, sigmas, previousX0) = (run.timesteps, run.sigmas + [0], nil)
    }

    /// The timesteps and σ of an N-step run of the multistep solvers (diffusers' DPM-Solver and
    /// UniPC): N of N + 1 evenly spaced timesteps, σ the training σ there; or Karras / exponential
    /// σ between the training σ_max and σ_min, each timestep the training t of its σ, rounded for
    /// Karras σ when `roundsKarrasSteps`, else truncated (diffusers' int64).
    static func multistepRun(config: SchedulerConfig, schedule: NoiseSchedule, count: Int, sampler: String,
                             roundsKarrasSteps: Bool) throws -> (timesteps: [Float], sigmas: [Double]) {
        let t = config.numTrainTimesteps
        guard count >= 1, count <= t else {
            throw SamplingError("\(count) inference steps: \(sampler) allows 1…\(t) (the training timesteps)")
        }
        var steps: [Double]
        switch config.timestepSpacing {
        case .linspace:
            steps = Array(linspace64(0, Double(t - 1), count + 1).map { $0.rounded(.toNearestOrEven) }.reversed().dropLast())
        case .leading:
            let ratio = t / (count + 1)
            steps = Array((0...count).map { Double($0 * ratio + config.stepsOffset) }.reversed().dropLast())
        case .trailing:
            steps = spacedTimesteps(.trailing, trainingSteps: t, count: count, offset: 0).map(Double.init)
        }
        let train = schedule.trainingSigmas.map(Double.init)
        var sigmas: [Double]
        if config.sigmaSpacing != .schedule {
            sigmas = config.sigmaSpacing.sigmas(from: train[t - 1], to: train[0], count: count)
            let rounds = config.sigmaSpacing == .karras && roundsKarrasSteps
            steps = sigmas.map { schedule.timestep(ofSigma: $0).rounded(rounds ? .toNearestOrEven : .towardZero) }
            sigmas = sigmas.map { Double(Float($0)) }
        } else {
            // np.interp, as diffusers: steps_offset may push "leading" steps past T − 1, which take σ_{T−1}.
            sigmas = steps.map { train[min(max(Int($0), 0), t - 1)] }
        }
        return (steps.map(Float.init), sigmas)
    }

    /// α(σ) x₀ + σ_t ε at the step's σ.
    public func addNoise(_ x0: Tensor, noise: Tensor, stepIndex index: Int) -> Tensor {
        let s = Self.terms(sigmas[index])
        return x0 * Float(s.alpha) + noise * Float(s.sigma)
    }

    /// The SDE variant draws noise at every step (also the last, where it is multiplied by 0).
    public func needsNoise(stepIndex index: Int) -> Bool { config.stochastic }

    /// α(σ) = 1/√(σ² + 1), σ_t = σ α, λ = log α − log σ_t (half log-SNR).
    static func terms(_ sigma: Double) -> (alpha: Double, sigma: Double, lambda: Double) {
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        return (alpha, sigma * alpha, Foundation.log(alpha) - Foundation.log(sigma * alpha))
    }

    /// Step i from σ_s = sigmas[i] to σ_t = sigmas[i+1]: D₀ = x̂₀ now, D₁ from the previous x̂₀.
    public func step(modelOutput: Tensor, stepIndex i: Int, sample x: Tensor, noise: Tensor?) -> SchedulerStep {
        let s0 = Self.terms(sigmas[i])
        // 1. Data prediction x̂₀ (DPM-Solver++ uses x₀ rather than ε).
        let x0: Tensor
        switch config.predictionType {
        case .epsilon: x0 = (x - modelOutput * Float(s0.sigma)) * Float(1 / s0.alpha)
        case .vPrediction: x0 = x * Float(s0.alpha) - modelOutput * Float(s0.sigma)
        case .sample: x0 = modelOutput
        }
        defer { previousX0 = x0 }
        // 2. The final step reaches σ = 0, where the update is x̂₀ itself (h = ∞).
        guard sigmas[i + 1] > 0 else { return SchedulerStep(prevSample: x0, predOriginal: x0) }
        let target = Self.terms(sigmas[i + 1])
        let h = target.lambda - s0.lambda
        let firstOrder = config.solverOrder == 1 || previousX0 == nil
            || (i == timesteps.count - 1 && config.lowerOrderFinal && timesteps.count < 15)
        if config.stochastic {
            // SDE-DPM-Solver++: x_t = (σ_t/σ_s) e^{−h} x + α_t (1 − e^{−2h}) (D₀ + D₁/2) + σ_t √(1 − e^{−2h}) z,
            // D₁ = (D₀ − x̂₀_prev)/r₀ (second order, midpoint) or 0 (first order).
            guard let noise else { preconditionFailure("SDE-DPM-Solver++ needs noise") }
            let weight = target.alpha * (1 - Foundation.exp(-2 * h))
            var next = x * Float(target.sigma / s0.sigma * Foundation.exp(-h)) + x0 * Float(weight)
                + noise * Float(target.sigma * (1 - Foundation.exp(-2 * h)).squareRoot())
            if !firstOrder {
                let r0 = (s0.lambda - Self.terms(sigmas[i - 1]).lambda) / h
                next = next + (x0 - previousX0!) * Float(0.5 * weight / r0)
            }
            return SchedulerStep(prevSample: next, predOriginal: x0)
        }
        let decay = target.alpha * (Foundation.exp(-h) - 1)
        let ratio = Float(target.sigma / s0.sigma)
        // 3. First order (eq. 8 of DPM-Solver++): x_t = (σ_t/σ_s) x − α_t (e^{−h} − 1) D₀.
        if firstOrder { return SchedulerStep(prevSample: x * ratio - x0 * Float(decay), predOriginal: x0) }
        // 4. Second order, midpoint (Algorithm 2): r₀ = h₀/h, D₁ = (D₀ − x̂₀_prev)/r₀,
        //    x_t = (σ_t/σ_s) x − α_t (e^{−h} − 1) (D₀ + D₁/2).
        let s1 = Self.terms(sigmas[i - 1])
        let r0 = (s0.lambda - s1.lambda) / h
        let d1 = (x0 - previousX0!) * Float(1 / r0)
        return SchedulerStep(prevSample: x * ratio - x0 * Float(decay) - d1 * Float(0.5 * decay), predOriginal: x0)
    }
}
