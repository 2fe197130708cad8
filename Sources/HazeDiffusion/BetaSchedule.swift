import Foundation

/// The variance schedule β₁…β_T of the forward process q(x_t | x_{t−1}) = N(√(1−β_t) x_{t−1}, β_t I)
/// (Ho et al. 2020, eq. 2), and ᾱ_t = Π_{s≤t} (1 − β_s), which gives the closed form
/// q(x_t | x₀) = N(√ᾱ_t x₀, (1 − ᾱ_t) I) (eq. 4).
///
/// Values are Float32 as diffusers stores them, computed the way PyTorch does (see
/// Tests/HazeDiffusionTests/Fixtures/schedulers/README.md): the golden tests match bit for bit.
public enum BetaSchedule: Equatable, Sendable {
    /// β linear from `start` to `end` (Ho et al. 2020: 1e-4 … 0.02).
    case linear(start: Double, end: Double)
    /// √β linear from √start to √end (Stable Diffusion: 0.00085 … 0.012).
    case scaledLinear(start: Double, end: Double)
    /// Cosine ᾱ (Nichol & Dhariwal 2021, eq. 17): ᾱ(t) = cos²((t/T + 0.008)/1.008 · π/2), β ≤ 0.999.
    case squaredCosCapV2
    /// β = sigmoid(linspace(−6, 6)) scaled to [start, end].
    case sigmoid(start: Double, end: Double)
    /// Explicit betas (diffusers `trained_betas`).
    case trained([Float])

    /// β₁…β_T for T = `count` training steps.
    public func betas(count: Int) -> [Float] {
        switch self {
        case .linear(let start, let end):
            return BetaSchedule.linspace32(Float(start), Float(end), count)
        case .scaledLinear(let start, let end):
            return BetaSchedule.linspace32(Float(start.squareRoot()), Float(end.squareRoot()), count).map { $0 * $0 }
        case .squaredCosCapV2:
            func alphaBar(_ t: Double) -> Double { let c = cos((t + 0.008) / 1.008 * Double.pi / 2); return c * c }
            return (0..<count).map { i in
                Float(min(1 - alphaBar(Double(i + 1) / Double(count)) / alphaBar(Double(i) / Double(count)), 0.999))
            }
        case .sigmoid(let start, let end):
            let scale = Float(end - start)
            return BetaSchedule.linspace32(-6, 6, count).map { x in Float(1 / (1 + Foundation.exp(-Double(x)))) * scale + Float(start) }
        case .trained(let betas):
            return betas
        }
    }

    /// torch.linspace in float32: fused multiply-adds from the start for the first half and
    /// from the end for the second half.
    static func linspace32(_ start: Float, _ end: Float, _ count: Int) -> [Float] {
        guard count > 1 else { return count == 1 ? [start] : [] }
        let step = (end - start) / Float(count - 1)
        return (0..<count).map { i in
            i < count / 2 ? start.addingProduct(step, Float(i)) : end.addingProduct(-step, Float(count - 1 - i))
        }
    }
}

/// The discrete noise schedule of a diffusion model: β_t and ᾱ_t for t = 0 … T−1.
public struct NoiseSchedule: Equatable, Sendable {
    /// β_t for t = 0 … T−1 (Float32).
    public let betas: [Float]
    /// ᾱ_t = Π (1 − β_s), accumulated in Double and rounded per entry (as torch.cumprod on CPU).
    public let alphasCumprod: [Float]

    /// T, the number of training timesteps.
    public var trainingSteps: Int { betas.count }

    /// The schedule of `trainingSteps` betas from `schedule`; with `rescaleZeroTerminalSNR`, rescaled
    /// so that ᾱ_T = 0 (Lin et al. 2024, Algorithm 1; diffusers' `rescale_betas_zero_snr`).
    public init(_ schedule: BetaSchedule, trainingSteps: Int, rescaleZeroTerminalSNR: Bool = false) {
        var betas = schedule.betas(count: trainingSteps)
        if rescaleZeroTerminalSNR { betas = NoiseSchedule.rescaledToZeroTerminalSNR(betas) }
        self.betas = betas
        alphasCumprod = NoiseSchedule.cumulativeProduct(betas.map { 1 - $0 })
    }

    static func cumulativeProduct(_ values: [Float]) -> [Float] {
        var product: Double = 1
        return values.map { product *= Double($0); return Float(product) }
    }

    /// Zero terminal SNR (Lin et al. 2024, "Common diffusion noise schedules and sample steps are
    /// flawed", Algorithm 1): shift and scale √ᾱ so that √ᾱ_T = 0 while √ᾱ_1 is unchanged.
    static func rescaledToZeroTerminalSNR(_ betas: [Float]) -> [Float] {
        var s = cumulativeProduct(betas.map { 1 - $0 }).map { $0.squareRoot() }
        let (s0, sT) = (s[0], s[s.count - 1])
        s = s.map { ($0 - sT) * (s0 / (s0 - sT)) }
        let abar = s.map { $0 * $0 }
        var alphas = [abar[0]]
        for i in 1..<abar.count { alphas.append(abar[i] / abar[i - 1]) }
        return alphas.map { 1 - $0 }
    }

    /// Signal-to-noise ratio SNR(t) = ᾱ_t / (1 − ᾱ_t) (Kingma et al. 2021).
    public func snr(_ t: Int) -> Double {
        let a = Double(alphasCumprod[t])
        return a / (1 - a)
    }
}
