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

    public init(scale: Float, nullClass: Int) { (self.scale, self.nullClass) = (scale, nullClass) }
}

/// The reverse process from x_T to x₀ with any scheduler, batched.
public struct SamplingLoop {
    public let scheduler: Scheduler
    public let model: NoisePredictor

    public init(scheduler: Scheduler, model: @escaping NoisePredictor) {
        (self.scheduler, self.model) = (scheduler, model)
    }

    /// Runs `steps` inference steps from x_T.
    /// - initialNoise: unit-variance x_T [B, C, H, W] (scaled by the scheduler's init σ), or nil
    ///   to draw it from `generator` with `shape` (a `RandomGenerator`, or `ImageNoise` for noise
    ///   that belongs to each image whatever the batching).
    /// - classLabels: B labels for a class-conditional model; `guidance` enables CFG.
    /// - progress: called after each step with (step, steps).
    /// - trajectory: called after each step with (step, x_{t−1}, predicted x₀) for animations.
    public func run<Noise: NoiseSource>(shape: [Int], steps: Int, initialNoise: Tensor? = nil, classLabels: [Int]? = nil,
                    guidance: Guidance? = nil, generator: inout Noise,
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
        var x = (initialNoise ?? generator.normal(shape)) * scheduler.initNoiseSigma
        let labels = classLabels.map { Tensor($0.map(Float.init)) }
        for (i, t) in scheduler.timesteps.enumerated() {
            let input = scheduler.scaleModelInput(x, stepIndex: i)
            let output: Tensor
            if let guidance, guidance.scale != 1, let classLabels {
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
            progress?(i + 1, steps)
        }
        return x
    }
}
