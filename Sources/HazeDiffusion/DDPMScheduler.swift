import HazeTensor

/// Ancestral sampling of DDPM (Ho et al. 2020, Algorithm 2), as diffusers' DDPMScheduler, with
/// fewer inference steps than training steps (the previous timestep is the next one of the run).
public final class DDPMScheduler: Scheduler {
    public let config: SchedulerConfig
    public let schedule: NoiseSchedule
    public private(set) var timesteps: [Float]
    public var initNoiseSigma: Float { 1 }

    /// A sampler for `config`, its timesteps all T training steps until `setTimesteps`.
    public init(_ config: SchedulerConfig) {
        self.config = config
        schedule = config.noiseSchedule
        timesteps = (0..<config.numTrainTimesteps).reversed().map(Float.init)
    }

    public func setTimesteps(_ count: Int) throws {
        guard count >= 1, count <= config.numTrainTimesteps else {
            throw SamplingError("\(count) inference steps: DDPM allows 1…\(config.numTrainTimesteps) (the training timesteps)")
        }
        let steps = spacedTimesteps(config.timestepSpacing, trainingSteps: config.numTrainTimesteps, count: count,
                                    offset: config.stepsOffset)
        try checkTimesteps(steps, config: config, count: count)
        timesteps = steps.map(Float.init)
    }

    public func needsNoise(stepIndex index: Int) -> Bool { timesteps[index] > 0 }

    /// False where x_t and x_{t′} are both clean (ᾱ = 1) and x̂₀ = x_t: the posterior is x̂₀ = x_t.
    public func needsModelOutput(stepIndex index: Int) -> Bool {
        let prevT = index + 1 < timesteps.count ? Int(timesteps[index + 1]) : -1
        return !stepIgnoresModelOutput(Double(schedule.alphasCumprod[Int(timesteps[index])]),
                                       prevT >= 0 ? Double(schedule.alphasCumprod[prevT]) : 1, type: config.predictionType)
    }

    /// Notation: x = x_t, a = ᾱ_t, a′ = ᾱ_{t′} (t′ the previous timestep of the run, ᾱ = 1 before 0),
    /// α = a/a′ and β = 1 − α (the effective β over the stride).
    public func step(modelOutput: Tensor, stepIndex index: Int, sample x: Tensor, noise: Tensor?) -> SchedulerStep {
        let t = Int(timesteps[index])
        let prevT = index + 1 < timesteps.count ? Int(timesteps[index + 1]) : -1
        let posterior = posterior(t: t, previous: prevT)
        // 1. x̂₀ from the model output (eq. 15 for ε), then clip or threshold.
        let a = Double(schedule.alphasCumprod[t])
        let x0 = clippedPrediction(predictions(modelOutput, type: config.predictionType, sample: x, alphaProduct: a).x0, config: config)
        // 2. Posterior mean μ̃_t(x_t, x̂₀) (eq. 7).
        var prev = x0 * Float(posterior.coefX0) + x * Float(posterior.coefXt)
        // 3. Add σ_t z (none at t = 0).
        if t > 0 {
            guard let noise else { preconditionFailure("DDPM step at t = \(t) needs noise") }
            prev = prev + noise * Float(posterior.variance.squareRoot())
        }
        return SchedulerStep(prevSample: prev, predOriginal: x0)
    }

    /// The posterior q(x_{t′} | x_t, x₀) = N(c₀ x₀ + c_t x_t, σ²) (Ho et al. 2020, eqs. 6–7) with
    /// c₀ = √a′ β/(1 − a), c_t = √α (1 − a′)/(1 − a), and σ² = β̃ = (1 − a′)/(1 − a) β
    /// (fixed_small) or β (fixed_large) (§3.2). `previous` < 0 means before t = 0 (a′ = 1). Where
    /// x_t is clean (a = 1, t = 0 of the notebook's shifted schedule) x_{t′} = x̂₀.
    public func posterior(t: Int, previous: Int) -> (coefX0: Double, coefXt: Double, variance: Double) {
        let a = Double(schedule.alphasCumprod[t])
        let aPrev = previous >= 0 ? Double(schedule.alphasCumprod[previous]) : 1
        guard a < 1 else { return (1, 0, 0) }
        let (alpha, beta) = (a / aPrev, 1 - a / aPrev)
        let variance = config.varianceType == "fixed_large" ? beta : max((1 - aPrev) / (1 - a) * beta, 1e-20)
        return (aPrev.squareRoot() * beta / (1 - a), alpha.squareRoot() * (1 - aPrev) / (1 - a), variance)
    }
}
