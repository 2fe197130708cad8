import Foundation
import HazeTensor

/// What the network predicts (diffusers `prediction_type`).
public enum PredictionType: String, Codable, Sendable, CaseIterable {
    /// ε, the noise (Ho et al. 2020, eq. 14).
    case epsilon
    /// v = √ᾱ ε − √(1−ᾱ) x₀ (Salimans & Ho 2022, "Progressive distillation", §4).
    case vPrediction = "v_prediction"
    /// x₀ itself.
    case sample
}

extension PredictionType {
    /// The min-SNR-γ loss weight (Hang et al. 2023, "Efficient diffusion training via Min-SNR
    /// weighting strategy", eq. 11) for this type's MSE: ε: min(SNR, γ)/SNR;
    /// v: min(SNR, γ)/(SNR + 1); x₀: min(SNR, γ).
    public func minSNRWeight(snr: Double, gamma: Double) -> Float {
        let clipped = min(snr, gamma)
        switch self {
        case .epsilon: return Float(snr > 0 ? clipped / snr : 1)
        case .vPrediction: return Float(clipped / (snr + 1))
        case .sample: return Float(clipped)
        }
    }
}

/// Per-item scalars of the forward process at timesteps t (one per batch item).
struct Rates {
    /// √ᾱ_t and √(1 − ᾱ_t), shaped [B, 1, 1, 1] to broadcast over images.
    let signal: Tensor, noise: Tensor

    init(_ schedule: NoiseSchedule, timesteps: [Int], rank: Int) {
        let shape = [timesteps.count] + [Int](repeating: 1, count: max(rank - 1, 0))
        signal = Tensor(shape: shape, scalars: timesteps.map { schedule.alphasCumprod[$0].squareRoot() })
        noise = Tensor(shape: shape, scalars: timesteps.map { (1 - schedule.alphasCumprod[$0]).squareRoot() })
    }
}

extension NoiseSchedule {
    /// Samples q(x_t | x₀) in closed form (Ho et al. 2020, eq. 4):
    ///   x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε.   x₀, ε: [B, …]; timesteps: B values.
    public func addNoise(_ x0: Tensor, noise: Tensor, timesteps: [Int]) -> Tensor {
        let r = Rates(self, timesteps: timesteps, rank: x0.rank)
        return r.signal * x0 + r.noise * noise
    }

    /// The v target (Salimans & Ho 2022): v = √ᾱ_t ε − √(1 − ᾱ_t) x₀.
    public func velocity(_ x0: Tensor, noise: Tensor, timesteps: [Int]) -> Tensor {
        let r = Rates(self, timesteps: timesteps, rank: x0.rank)
        return r.signal * noise - r.noise * x0
    }

    /// The training target for a prediction type: ε, v or x₀.
    public func target(_ type: PredictionType, x0: Tensor, noise: Tensor, timesteps: [Int]) -> Tensor {
        switch type {
        case .epsilon: noise
        case .vPrediction: velocity(x0, noise: noise, timesteps: timesteps)
        case .sample: x0
        }
    }

    /// Converts a model output to (x̂₀, ε̂) at x_t (inverting eq. 4, and the v definition):
    ///   ε:  x̂₀ = (x_t − √(1−ᾱ) ε̂)/√ᾱ
    ///   v:  x̂₀ = √ᾱ x_t − √(1−ᾱ) v̂,  ε̂ = √ᾱ v̂ + √(1−ᾱ) x_t
    ///   x₀: ε̂ = (x_t − √ᾱ x̂₀)/√(1−ᾱ)
    public func predictions(_ output: Tensor, type: PredictionType, sample xt: Tensor, timesteps: [Int]) -> (x0: Tensor, epsilon: Tensor) {
        let r = Rates(self, timesteps: timesteps, rank: xt.rank)
        switch type {
        case .epsilon: return ((xt - r.noise * output) / r.signal, output)
        case .vPrediction: return (r.signal * xt - r.noise * output, r.signal * output + r.noise * xt)
        case .sample: return (output, (xt - r.signal * output) / r.noise)
        }
    }

    /// Per-item loss weights for min-SNR-γ weighting at discrete timesteps (see
    /// `PredictionType.minSNRWeight`).
    public func minSNRWeights(timesteps: [Int], gamma: Double, type: PredictionType) -> [Float] {
        timesteps.map { type.minSNRWeight(snr: snr($0), gamma: gamma) }
    }
}

/// A continuous-time schedule (diffusion time t ∈ [0, 1]) with cosine rates between a minimum and
/// maximum signal rate, as in the Keras "Denoising Diffusion Implicit Models" example:
///   angle(t) = acos(max_signal) + t (acos(min_signal) − acos(max_signal))
///   signal(t) = cos(angle),  noise(t) = sin(angle)  (signal² + noise² = 1)
/// The network sees the timestep 1000·t, so Haze's U-Net serves both kinds of schedule.
public struct ContinuousCosineSchedule: Equatable, Sendable {
    /// The signal rate at t = 1 (the noisiest), in (0, 1).
    public let minSignalRate: Double
    /// The signal rate at t = 0 (the cleanest), above `minSignalRate` and below 1.
    public let maxSignalRate: Double

    /// A schedule between the two rates (the Keras example's 0.02 and 0.95 by default); precondition
    /// 0 < min < max < 1.
    public init(minSignalRate: Double = 0.02, maxSignalRate: Double = 0.95) {
        precondition(0 < minSignalRate && minSignalRate < maxSignalRate && maxSignalRate < 1,
                     "signal rates must satisfy 0 < min < max < 1")
        (self.minSignalRate, self.maxSignalRate) = (minSignalRate, maxSignalRate)
    }

    /// (signal rate, noise rate) at diffusion time t.
    public func rates(_ t: Double) -> (signal: Double, noise: Double) {
        let start = acos(maxSignalRate), end = acos(minSignalRate)
        let angle = start + t * (end - start)
        return (cos(angle), sin(angle))
    }

    /// The model's timestep input for diffusion time t.
    public static func modelTimestep(_ t: Double) -> Float { Float(1000 * t) }

    /// x_t = signal(t) x₀ + noise(t) ε for per-item times t.
    public func addNoise(_ x0: Tensor, noise: Tensor, times: [Double]) -> Tensor {
        let shape = [times.count] + [Int](repeating: 1, count: max(x0.rank - 1, 0))
        let r = times.map(rates)
        return Tensor(shape: shape, scalars: r.map { Float($0.signal) }) * x0
            + Tensor(shape: shape, scalars: r.map { Float($0.noise) }) * noise
    }
}
