import HazeTensor

/// DDIM (Song et al. 2021, "Denoising diffusion implicit models"), as diffusers' DDIMScheduler:
/// η = 0 is the deterministic implicit sampler, η = 1 matches DDPM's variance.
public final class DDIMScheduler: Scheduler {
    public let config: SchedulerConfig
    public let schedule: NoiseSchedule
    public private(set) var timesteps: [Float]
    public var initNoiseSigma: Float { 1 }
    /// η of eq. 16: the weight of the stochastic part.
    public var eta: Float = 0
    private var inferenceSteps: Int

    /// A sampler for `config` with η = 0, its timesteps all T training steps until `setTimesteps`.
    public init(_ config: SchedulerConfig) {
        self.config = config
        schedule = config.noiseSchedule
        timesteps = (0..<config.numTrainTimesteps).reversed().map(Float.init)
        inferenceSteps = config.numTrainTimesteps
    }

    public func setTimesteps(_ count: Int) throws {
        guard count >= 1, count <= config.numTrainTimesteps else {
            throw SamplingError("\(count) inference steps: DDIM allows 1…\(config.numTrainTimesteps) (the training timesteps)")
        }
        let steps = spacedTimesteps(config.timestepSpacing, trainingSteps: config.numTrainTimesteps, count: count,
                                    offset: config.stepsOffset)
        try checkTimesteps(steps, config: config, count: count)
        inferenceSteps = count
        timesteps = steps.map(Float.init)
    }

    public func needsNoise(stepIndex index: Int) -> Bool { eta > 0 }

    /// False where x_t and x_{t′} are both clean (ᾱ = 1) and x̂₀ = x_t: the output would be multiplied by 0.
    public func needsModelOutput(stepIndex index: Int) -> Bool {
        let (a, aPrev) = alphaProducts(stepIndex: index)
        return !stepIgnoresModelOutput(a, aPrev, type: config.predictionType)
    }

    /// (a, a′): ᾱ at step `index`'s timestep t and at t′ = t − T/N (diffusers' rule for every
    /// spacing; before 0 it is 1 with set_alpha_to_one, else ᾱ_0).
    private func alphaProducts(stepIndex index: Int) -> (Double, Double) {
        let t = Int(timesteps[index])
        let prevT = t - config.numTrainTimesteps / inferenceSteps
        let aPrev = prevT >= 0 ? Double(schedule.alphasCumprod[prevT]) : (config.setAlphaToOne ? 1 : Double(schedule.alphasCumprod[0]))
        return (Double(schedule.alphasCumprod[t]), aPrev)
    }

    /// Notation: x = x_t, a = ᾱ_t (α_t in the paper), a′ = ᾱ_{t′} (`alphaProducts`).
    public func step(modelOutput: Tensor, stepIndex index: Int, sample x: Tensor, noise: Tensor?) -> SchedulerStep {
        let (a, aPrev) = alphaProducts(stepIndex: index)
        // 1. x̂₀ = (x − √(1−a) ε̂)/√a ("predicted x₀" of eq. 12) and ε̂; clip or threshold x̂₀.
        let (rawX0, epsilon) = predictions(modelOutput, type: config.predictionType, sample: x, alphaProduct: a)
        let x0 = clippedPrediction(rawX0, config: config)
        // 2. σ_t(η) = η √((1 − a′)/(1 − a)) √(1 − a/a′) (eq. 16); 0 where x_t is clean (a = 1).
        let variance = a < 1 ? (1 - aPrev) / (1 - a) * (1 - a / aPrev) : 0
        let std = Double(eta) * variance.squareRoot()
        // 3. x_{t′} = √a′ x̂₀ + √(1 − a′ − σ²) ε̂ + σ z (eq. 12).
        var prev = x0 * Float(aPrev.squareRoot()) + epsilon * Float(max(1 - aPrev - std * std, 0).squareRoot())
        if eta > 0 {
            guard let noise else { preconditionFailure("DDIM with η > 0 needs noise") }
            prev = prev + noise * Float(std)
        }
        return SchedulerStep(prevSample: prev, predOriginal: x0)
    }
}
