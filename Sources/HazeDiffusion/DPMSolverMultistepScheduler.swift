import Foundation
import HazeTensor

/// DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2), multistep, data prediction, as
/// diffusers' DPMSolverMultistepScheduler (midpoint, final σ = 0, optional Karras σ).
public final class DPMSolverMultistepScheduler: Scheduler {
    public let config: SchedulerConfig
    public let schedule: NoiseSchedule
    public private(set) var timesteps: [Float] = []
    public var initNoiseSigma: Float { 1 }
    /// σ_i = √((1 − ᾱ)/ᾱ) at each inference step, then 0.
    public private(set) var sigmas: [Double] = []
    /// x̂₀ of the previous step (the multistep history).
    private var previousX0: Tensor?

    public init(_ config: SchedulerConfig) {
        self.config = config
        schedule = config.noiseSchedule
    }

    /// Training σ of the VE form: √((1 − ᾱ)/ᾱ), in Float32 as diffusers.
    var trainingSigmas: [Float] { schedule.alphasCumprod.map { ((1 - $0) / $0).squareRoot() } }

    public func setTimesteps(_ count: Int) throws {
        let t = config.numTrainTimesteps
        guard count >= 1, count <= t else {
            throw SamplingError("\(count) inference steps: DPM-Solver++ allows 1…\(t) (the training timesteps)")
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
        let train = trainingSigmas.map(Double.init)
        if config.useKarrasSigmas {
            // Karras et al. 2022, eq. 5 with ρ = 7, between the training σ_min and σ_max.
            let (lo, hi) = (pow(train[0], 1 / 7.0), pow(train[t - 1], 1 / 7.0))
            sigmas = linspace64(0, 1, count).map { pow(hi + $0 * (lo - hi), 7) }
            let logSigmas = train.map { Double(Float(Foundation.log($0))) }
            steps = sigmas.map { sigma in
                // The (fractional) training timestep of σ, by interpolation in log σ.
                let l = Foundation.log(sigma)
                let low = min(max((logSigmas.lastIndex { $0 <= l } ?? 0), 0), t - 2)
                let w = min(max((logSigmas[low] - l) / (logSigmas[low] - logSigmas[low + 1]), 0), 1)
                return ((1 - w) * Double(low) + w * Double(low + 1)).rounded(.toNearestOrEven)
            }
            sigmas = sigmas.map { Double(Float($0)) }
        } else {
            // np.interp, as diffusers: steps_offset may push "leading" steps past T − 1, which take σ_{T−1}.
            sigmas = steps.map { train[min(max(Int($0), 0), t - 1)] }
        }
        sigmas.append(0)
        timesteps = steps.map(Float.init)
        previousX0 = nil
    }

    public func needsNoise(stepIndex index: Int) -> Bool { false }

    /// α(σ) = 1/√(σ² + 1), σ_t = σ α, λ = log α − log σ_t (half log-SNR).
    private func terms(_ sigma: Double) -> (alpha: Double, sigma: Double, lambda: Double) {
        let alpha = 1 / (sigma * sigma + 1).squareRoot()
        return (alpha, sigma * alpha, Foundation.log(alpha) - Foundation.log(sigma * alpha))
    }

    /// Step i from σ_s = sigmas[i] to σ_t = sigmas[i+1]: D₀ = x̂₀ now, D₁ from the previous x̂₀.
    public func step(modelOutput: Tensor, stepIndex i: Int, sample x: Tensor, noise: Tensor?) -> SchedulerStep {
        let s0 = terms(sigmas[i])
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
        let target = terms(sigmas[i + 1])
        let h = target.lambda - s0.lambda
        let decay = target.alpha * (Foundation.exp(-h) - 1)
        let ratio = Float(target.sigma / s0.sigma)
        let firstOrder = config.solverOrder == 1 || previousX0 == nil
            || (i == timesteps.count - 1 && config.lowerOrderFinal && timesteps.count < 15)
        // 3. First order (eq. 8 of DPM-Solver++): x_t = (σ_t/σ_s) x − α_t (e^{−h} − 1) D₀.
        if firstOrder { return SchedulerStep(prevSample: x * ratio - x0 * Float(decay), predOriginal: x0) }
        // 4. Second order, midpoint (Algorithm 2): r₀ = h₀/h, D₁ = (D₀ − x̂₀_prev)/r₀,
        //    x_t = (σ_t/σ_s) x − α_t (e^{−h} − 1) (D₀ + D₁/2).
        let s1 = terms(sigmas[i - 1])
        let r0 = (s0.lambda - s1.lambda) / h
        let d1 = (x0 - previousX0!) * Float(1 / r0)
        return SchedulerStep(prevSample: x * ratio - x0 * Float(decay) - d1 * Float(0.5 * decay), predOriginal: x0)
    }
}
