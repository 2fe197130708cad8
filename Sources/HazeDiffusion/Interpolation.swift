import Foundation
import HazeTensor

/// Spherical interpolation between two noises x_T (Shoemake 1985; as in Song et al. 2021, §5.3,
/// for DDIM's latent space): slerp(a, b; α) = sin((1 − α)θ)/sin θ · a + sin(αθ)/sin θ · b, θ the
/// angle between a and b (flattened). Unlike a straight line, it keeps ‖x_T‖ near √dim, where
/// Gaussian noise lives. a, b: [1, C, H, W] → [α count, C, H, W].
public func slerp(_ a: Tensor, _ b: Tensor, at fractions: [Double]) -> Tensor {
    precondition(a.shape == b.shape, "slerp: \(a.shape) and \(b.shape)")
    let (va, vb) = (a.scalars.map(Double.init), b.scalars.map(Double.init))
    let dot = zip(va, vb).reduce(0) { $0 + $1.0 * $1.1 }
    let norms = (va.reduce(0) { $0 + $1 * $1 }.squareRoot(), vb.reduce(0) { $0 + $1 * $1 }.squareRoot())
    let theta = acos(min(max(dot / max(norms.0 * norms.1, .leastNormalMagnitude), -1), 1))
    let frames = fractions.map { alpha -> Tensor in
        // Nearly parallel inputs: the linear blend is the limit.
        let (wa, wb) = theta < 1e-6 ? (1 - alpha, alpha) : (sin((1 - alpha) * theta) / sin(theta), sin(alpha * theta) / sin(theta))
        return a * Float(wa) + b * Float(wb)
    }
    return Tensor.concatenate(frames, alongAxis: 0)
}

/// DDIM inversion (Song et al. 2021, §4.3; Dhariwal & Nichol 2021, App. F): the deterministic
/// DDIM ODE run forwards, x₀ → x_T, so that DDIM sampling (η = 0, the same steps) maps x_T back
/// to about x₀. As diffusers' DDIMInverseScheduler: for each of the sampler's timesteps t in
/// increasing order, from the level s = t − T/N (ᾱ_s = 1 below 0 with `set_alpha_to_one`),
///   x̂₀, ε̂ from ε_θ(x_s, t) at ᾱ_s (clipped as the config says),  x_t = √ᾱ_t x̂₀ + √(1 − ᾱ_t) ε̂.
/// (The network sees t for a sample still at s, hence a small reconstruction error that shrinks
/// with more steps.)
public func ddimInversion(_ x0: Tensor, steps: Int, config: SchedulerConfig,
                          model: (Tensor, [Float]) -> Tensor, progress: (() -> Void)? = nil) throws -> Tensor {
    let ddim = DDIMScheduler(config)
    try ddim.setTimesteps(steps)
    let alphas = ddim.schedule.alphasCumprod, ratio = config.numTrainTimesteps / steps
    var x = x0
    ConvolutionAlgorithm.reusingTransformedWeights {  // the weights do not change during the run
    for step in ddim.timesteps.reversed().map({ Int($0) }) {
        let from = min(step - ratio, config.numTrainTimesteps - 1)
        let a = from >= 0 ? Double(alphas[from]) : (config.setAlphaToOne ? 1 : Double(alphas[0])), aNext = Double(alphas[step])
        let output = model(x, [Float](repeating: Float(step), count: x.shape[0]))
        var (estimate, eps) = predictions(output, type: config.predictionType, sample: x, alphaProduct: a)
        if config.clipSample { estimate = estimate.clamped(min: -config.clipSampleRange, max: config.clipSampleRange) }
        x = estimate * Float(aNext.squareRoot()) + eps * Float((1 - aNext).squareRoot())
        progress?()
    }
    }
    return x
}
