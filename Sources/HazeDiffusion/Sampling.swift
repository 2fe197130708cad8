import HazeTensor

/// A noise predictor: (x_t, timesteps (one per item), class labels or nil) → model output.
public typealias NoisePredictor = (Tensor, [Float], Tensor?) -> Tensor

/// Classifier-free guidance (Ho & Salimans 2022, eq. 6): the model is run on the batch twice,
/// with the labels and with the null class, and ε̃ = ε_∅ + w (ε_c − ε_∅).
public struct Guidance: Sendable {
    /// The guidance weight w (1 = plain conditional sampling).
    public var scale: Float
    /// The label of the unconditional ("null") class: in Haze, the last class embedding.
    public var nullClass: Int

    /// Guidance with weight `scale` and null-class label `nullClass`.
    public init(scale: Float, nullClass: Int) { (self.scale, self.nullClass) = (scale, nullClass) }
}

/// The reverse process from x_T to x₀ with any scheduler, batched.
public struct SamplingLoop {
    /// The sampler; its `setTimesteps` is called by `run`.
    public let scheduler: Scheduler
    /// The network: called on the batch at each network evaluation, on the batch twice over
    /// (labels, then the null class) under guidance.
    public let model: NoisePredictor

    /// A loop of `scheduler` over `model`.
    public init(scheduler: Scheduler, model: @escaping NoisePredictor) {
        (self.scheduler, self.model) = (scheduler, model)
    }

    /// Runs `steps` inference steps from x_T.
    /// - initialNoise: unit-variance x_T [B, C, H, W] (scaled by the scheduler's init σ), or nil
    ///   to draw it from `generator` with `shape` (a `RandomGenerator`, or `ImageNoise` for noise
    ///   that belongs to each image whatever the batching).
    /// - classLabels: B labels for a class-conditional model; `guidance` enables CFG.
    /// - initialImage: image-to-image (SDEdit, Meng et al. 2022): x₀ [B, C, H, W] in [−1, 1], noised
    ///   to the step that `strength` selects and denoised from there. As diffusers' img2img
    ///   pipelines: the first N − ⌊N·strength⌋ of the N steps are skipped (`order` calls each), and
    ///   the unit noise (`initialNoise` or drawn) is added by the scheduler's `addNoise`.
    /// - progress: called after each step with (step, steps) (a step whose output the scheduler
    ///   does not use skips its model call: `Scheduler.needsModelOutput`).
    /// - trajectory: called after each step with (step, x_{t−1}, predicted x₀) for animations.
    public func run<Noise: NoiseSource>(shape: [Int], steps: Int, initialNoise: Tensor? = nil, classLabels: [Int]? = nil,
                    guidance: Guidance? = nil, initialImage: Tensor? = nil, strength: Double = 1, generator: inout Noise,
                    progress: ((Int, Int) -> Void)? = nil,
                    trajectory: ((Int, Tensor, Tensor?) -> Void)? = nil) throws -> Tensor {
        if let initialNoise, initialNoise.shape != shape {
            throw SamplingError("initial noise has shape \(initialNoise.shape), expected \(shape)")
        }
        if let classLabels, classLabels.count != shape[0] {
            throw SamplingError("\(classLabels.count) class labels for a batch of \(shape[0])")
        }
        if guidance != nil && classLabels == nil { throw SamplingError("guidance needs class labels") }
        try scheduler.setTimesteps(steps)
        // `strength` selects the start of image-to-image sampling only; without an image every step runs.
        let first = initialImage == nil ? 0 : try Self.firstStep(steps: steps, strength: strength, order: scheduler.order)
        var x: Tensor
        if let initialImage {
            guard initialImage.shape == shape else { throw SamplingError("the initial image has shape \(initialImage.shape), expected \(shape)") }
            x = scheduler.addNoise(initialImage, noise: initialNoise ?? generator.normal(shape), stepIndex: first)
        } else {
            x = (initialNoise ?? generator.normal(shape)) * scheduler.initNoiseSigma
        }
        let labels = classLabels.map { Tensor($0.map(Float.init)) }
        let calls = scheduler.timesteps.count
        // The model's weights do not change during the run: their convolution transforms are made once.
        return ConvolutionAlgorithm.reusingTransformedWeights {
        for (i, t) in scheduler.timesteps.enumerated() where i >= first {
            let input = scheduler.scaleModelInput(x, stepIndex: i)
            let output: Tensor
            if !scheduler.needsModelOutput(stepIndex: i) {
                output = Tensor.zeros(x.shape)
            } else if let guidance, guidance.scale != 1, let classLabels {
                // One call on [x; x] with [labels; null].
                let both = model(Tensor.concatenate([input, input], alongAxis: 0), [Float](repeating: t, count: 2 * shape[0]),
                                 Tensor((classLabels + [Int](repeating: guidance.nullClass, count: shape[0])).map(Float.init)))
                let parts = both.chunked(2, alongAxis: 0)
                output = parts[1] + (parts[0] - parts[1]) * guidance.scale
            } else {
                output = model(input, [Float](repeating: t, count: shape[0]), labels)
            }
            let noise = scheduler.needsNoise(stepIndex: i) ? generator.normal(shape) : nil
            let result = scheduler.step(modelOutput: output, stepIndex: i, sample: x, noise: noise)
            x = result.prevSample
            trajectory?(i, x, result.predOriginal)
            progress?(i + 1, calls)
        }
        return x
        }
    }

    /// The index of the first model call of image-to-image sampling at `strength` ∈ (0, 1]:
    /// (N − ⌊N·strength⌋)·order (diffusers' `get_timesteps`).
    public static func firstStep(steps: Int, strength: Double, order: Int) throws -> Int {
        guard strength > 0 && strength <= 1 else { throw SamplingError("--strength \(strength) is outside (0, 1]") }
        let kept = min(Int(Double(steps) * strength), steps)
        guard kept > 0 else {
            throw SamplingError("--strength \(strength) of \(steps) steps keeps no step (⌊\(steps)·\(strength)⌋ = 0): raise --strength or --steps")
        }
        return (steps - kept) * order
    }
}
