import Foundation
import HazeTensor

/// DDIM sampling (η = 0) on the continuous cosine schedule (`ContinuousCosineSchedule`, the
/// Keras DDIM example): N equal steps of diffusion time from t = 1 to 0. With s(t), n(t) the
/// signal and noise rates,
///   x̂₀ = (x − n(t) ε̂)/s(t),   x_{t−Δ} = s(t−Δ) x̂₀ + n(t−Δ) ε̂   (Song et al. 2021, eq. 12, σ = 0).
/// The last step returns x̂₀. The network sees the timestep 1000·t. Saved in scheduler_config.json as the Haze class
/// `HazeContinuousDDIMScheduler` with `min_signal_rate` and `max_signal_rate`.
public final class ContinuousDDIMScheduler: Scheduler {
    public let config: SchedulerConfig
    /// The continuous cosine schedule of the config's `minSignalRate` and `maxSignalRate`.
    public let continuous: ContinuousCosineSchedule
    /// A discrete stand-in (ᾱ at 1000 points of the continuous curve) for code that asks for one.
    public let schedule: NoiseSchedule
    public private(set) var timesteps: [Float] = []
    private var times: [Double] = []
    public var initNoiseSigma: Float { 1 }

    /// A sampler for `config` (its signal rates and `numTrainTimesteps`); call `setTimesteps` before
    /// sampling.
    public init(_ config: SchedulerConfig) {
        self.config = config
        let curve = ContinuousCosineSchedule(minSignalRate: config.minSignalRate, maxSignalRate: config.maxSignalRate)
        continuous = curve
        let rates = (0..<config.numTrainTimesteps).map { i in curve.rates(Double(i) / Double(config.numTrainTimesteps - 1)) }
        let abar = rates.map { Float($0.signal * $0.signal) }
        var alphas = [abar[0]]
        for i in 1..<abar.count { alphas.append(abar[i] / abar[i - 1]) }
        schedule = NoiseSchedule(.trained(alphas.map { 1 - $0 }), trainingSteps: abar.count)
    }

    public func setTimesteps(_ count: Int) throws {
        guard count >= 1 else { throw SamplingError("at least 1 inference step is needed") }
        times = (0...count).map { 1 - Double($0) / Double(count) }
        timesteps = times.dropLast().map(ContinuousCosineSchedule.modelTimestep)
    }

    public func needsNoise(stepIndex index: Int) -> Bool { false }

    /// s(t) x₀ + n(t) ε at the step's diffusion time.
    public func addNoise(_ x0: Tensor, noise: Tensor, stepIndex index: Int) -> Tensor {
        let rates = continuous.rates(times[index])
        return x0 * Float(rates.signal) + noise * Float(rates.noise)
    }

    public func step(modelOutput: Tensor, stepIndex i: Int, sample x: Tensor, noise: Tensor?) -> SchedulerStep {
        let now = continuous.rates(times[i]), next = continuous.rates(times[i + 1])
        // 1. x̂₀ and ε̂ from the prediction.
        let x0: Tensor, eps: Tensor
        switch config.predictionType {
        case .epsilon: (x0, eps) = ((x - modelOutput * Float(now.noise)) * Float(1 / now.signal), modelOutput)
        case .vPrediction:
            x0 = x * Float(now.signal) - modelOutput * Float(now.noise)
            eps = modelOutput * Float(now.signal) + x * Float(now.noise)
        case .sample: (x0, eps) = (modelOutput, (x - modelOutput * Float(now.signal)) * Float(1 / now.noise))
        }
        // 2. Re-noise to the next time (eq. 12 with σ = 0); the last step returns x̂₀ itself
        //    (t = 0 still carries the minimum noise rate, as in the Keras example).
        if i == timesteps.count - 1 { return SchedulerStep(prevSample: x0, predOriginal: x0) }
        return SchedulerStep(prevSample: x0 * Float(next.signal) + eps * Float(next.noise), predOriginal: x0)
    }
}
