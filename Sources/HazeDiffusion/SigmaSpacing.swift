import Foundation

/// How the σ of a sampling run are spaced (diffusers' `use_karras_sigmas` /
/// `use_exponential_sigmas`), for the samplers that work in σ = √((1 − ᾱ)/ᾱ): Euler, Heun and
/// DPM-Solver++.
public enum SigmaSpacing: String, CaseIterable, Sendable {
    /// The σ of the schedule at the chosen timesteps.
    case schedule
    /// Karras et al. 2022, eq. 5: σ_i = (σ_max^{1/ρ} + i/(N−1) (σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, ρ = 7.
    case karras
    /// Evenly spaced in log σ: σ_i = exp(log σ_max + i/(N−1) (log σ_min − log σ_max)).
    case exponential

    /// N σ from `maximum` down to `minimum` (Double, as diffusers' numpy).
    func sigmas(from maximum: Double, to minimum: Double, count: Int) -> [Double] {
        switch self {
        case .schedule: preconditionFailure("the schedule's own σ are not respaced")
        case .karras:
            let (lo, hi) = (pow(minimum, 1 / 7.0), pow(maximum, 1 / 7.0))
            return linspace64(0, 1, count).map { pow(hi + $0 * (lo - hi), 7) }
        case .exponential:
            return linspace64(Foundation.log(maximum), Foundation.log(minimum), count).map { Foundation.exp($0) }
        }
    }
}

extension NoiseSchedule {
    /// The training σ_t = √((1 − ᾱ_t)/ᾱ_t), in Float32 as diffusers computes them.
    var trainingSigmas: [Float] { alphasCumprod.map { ((1 - $0) / $0).squareRoot() } }

    /// The fractional training timestep of σ, by linear interpolation in log σ between the two
    /// neighbouring training σ (diffusers' `_sigma_to_t`; its log σ table is Float32).
    func timestep(ofSigma sigma: Double) -> Double {
        let logSigmas = trainingSigmas.map { Double(Float(Foundation.log(Double($0)))) }
        let l = Foundation.log(Swift.max(sigma, 1e-10)), count = logSigmas.count
        let low = Swift.min(Swift.max(logSigmas.lastIndex { $0 <= l } ?? 0, 0), count - 2)
        let w = Swift.min(Swift.max((logSigmas[low] - l) / (logSigmas[low] - logSigmas[low + 1]), 0), 1)
        return (1 - w) * Double(low) + w * Double(low + 1)
    }

    /// σ at fractional timesteps by linear interpolation of the training σ (numpy's `interp`).
    func sigmas(atTimesteps steps: [Double]) -> [Double] {
        let train = trainingSigmas.map(Double.init), t = train.count
        return steps.map { s in
            let low = Swift.min(Swift.max(Int(s.rounded(.down)), 0), t - 1), high = Swift.min(low + 1, t - 1)
            return train[low] + (s - Double(low)) * (train[high] - train[low])
        }
    }
}
