import Foundation
import HazeTensor

/// UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
/// Diffusion Models"), multistep, data prediction, as diffusers' UniPCMultistepScheduler (B(h) of
/// type bh1 or bh2, orders 1–3, final σ = 0).
///
/// In λ = log α − log σ_t (half log-SNR), with h = λ_t − λ_s, hh = −h, φ₁ = e^{hh} − 1 and
/// B(h) = hh (bh1) or e^{hh} − 1 (bh2), each step
///   corrects the previous predictor with the new model output (UniC, Algorithm 2):
///     x_t ← (σ_t/σ_s) x_s − α_t φ₁ m₀ − α_t B(h) (Σ_k ρᶜ_k D_k + ρᶜ_K (m_t − m₀)),
///   then predicts the next sample (UniP, Algorithm 1):
///     x_{t'} = (σ_{t'}/σ_t) x_t − α_{t'} φ₁ m_t − α_{t'} B(h) Σ_k ρᵖ_k D_k,
/// where D_k = (m_{−k} − m₀)/r_k are scaled differences of earlier data predictions, r_k = (λ_{−k} −
/// λ_s)/h, and ρ solves R ρ = b with R_{ij} = r_j^{i} and b_i = i! φ_{i+1}(hh)/B(h) (order 2's
/// predictor uses ρᵖ = ½, order 1's corrector ρᶜ = ½, as diffusers).
public final class UniPCScheduler: Scheduler {
    public let config: SchedulerConfig
    public let schedule: NoiseSchedule
    public private(set) var timesteps: [Float] = []
    public var initNoiseSigma: Float { 1 }
    /// σ at each inference step, then 0.
    public private(set) var sigmas: [Double] = []
    /// Data predictions of the last `solverOrder` steps, oldest first.
    private var history: [Tensor] = []
    /// The sample the last predictor started from, and its order.
    private var last: (sample: Tensor, order: Int)?

    /// A sampler for `config`, with no timesteps until `setTimesteps`.
    public init(_ config: SchedulerConfig) {
        self.config = config
        schedule = config.noiseSchedule
    }

    public func setTimesteps(_ count: Int) throws {
        let run = try DPMSolverMultistepScheduler.multistepRun(config: config, schedule: schedule, count: count,
                                                               sampler: "UniPC", roundsKarrasSteps: true)
        (timesteps, sigmas, history, last) = (run.timesteps, run.sigmas + [0], [], nil)
    }

    public func needsNoise(stepIndex index: Int) -> Bool { false }

    /// α(σ) x₀ + σ_t ε at the step's σ.
    public func addNoise(_ x0: Tensor, noise: Tensor, stepIndex index: Int) -> Tensor {
        let s = DPMSolverMultistepScheduler.terms(sigmas[index])
        return x0 * Float(s.alpha) + noise * Float(s.sigma)
    }

    public func step(modelOutput: Tensor, stepIndex i: Int, sample: Tensor, noise: Tensor?) -> SchedulerStep {
        let s = DPMSolverMultistepScheduler.terms(sigmas[i])
        var x0: Tensor
        switch config.predictionType {
        case .epsilon: x0 = (sample - modelOutput * Float(s.sigma)) * Float(1 / s.alpha)
        case .vPrediction: x0 = sample * Float(s.alpha) - modelOutput * Float(s.sigma)
        case .sample: x0 = modelOutput
        }
        if config.thresholding { x0 = clippedPrediction(x0, config: config) }
        var x = sample
        // 1. Corrector: the previous step's prediction, refined with this step's model output.
        if let last, i > 0 {
            x = update(from: last.sample, start: i - 1, order: last.order, latest: x0)
        }
        history = Array((history + [x0]).suffix(config.solverOrder))
        let order = min(config.lowerOrderFinal ? min(config.solverOrder, timesteps.count - i) : config.solverOrder, history.count)
        last = (x, order)
        // 2. Predictor: the next sample.
        return SchedulerStep(prevSample: update(from: x, start: i, order: order, latest: nil), predOriginal: x0)
    }

    /// One UniPC update from x at step `start` (σ_s) to step start + 1, of the given order, over the
    /// data predictions in `history` (the newest is m₀ at σ_s). With `latest` (the data prediction
    /// at the target, m_t) it is the corrector UniC, else the predictor UniP.
    private func update(from x: Tensor, start: Int, order: Int, latest: Tensor?) -> Tensor {
        let s0 = DPMSolverMultistepScheduler.terms(sigmas[start]), t = DPMSolverMultistepScheduler.terms(sigmas[start + 1])
        let m0 = history[history.count - 1]
        let h = t.lambda - s0.lambda, hh = -h
        let phi1 = expm1(hh)
        let bh = config.uniPCSolverType == "bh1" ? hh : expm1(hh)
        // r_k and D_k for the k = 1…order−1 earlier predictions.
        var ratios: [Double] = [], differences: [Tensor] = []
        for k in 1..<max(order, 1) {
            let r = (DPMSolverMultistepScheduler.terms(sigmas[start - k]).lambda - s0.lambda) / h
            ratios.append(r)
            differences.append((history[history.count - 1 - k] - m0) * Float(1 / r))
        }
        // b_i = i! φ_{i+1}(hh)/B(h), i = 1…order; R_{ij} = r_j^{i−1} with r_order = 1.
        var b: [Double] = [], phi = phi1 / hh - 1, factorial = 1.0
        for i in 1...max(order, 1) {
            b.append(phi * factorial / bh)
            factorial *= Double(i + 1)
            phi = phi / hh - 1 / factorial
        }
        let rks = ratios + [1]
        let matrix = (0..<rks.count).map { i in rks.map { pow($0, Double(i)) } }
        var next = x * Float(t.sigma / s0.sigma) - m0 * Float(t.alpha * phi1)
        if let latest {
            let rho = order == 1 ? [0.5] : solve(matrix, b)
            var correction = (latest - m0) * Float(rho[rho.count - 1])
            for (k, d) in differences.enumerated() { correction = correction + d * Float(rho[k]) }
            next = next - correction * Float(t.alpha * bh)
        } else if !differences.isEmpty {
            let rho = order == 2 ? [0.5] : solve(Array(matrix.dropLast().map { Array($0.dropLast()) }), Array(b.dropLast()))
            var prediction = differences[0] * Float(rho[0])
            for (k, d) in differences.enumerated().dropFirst() { prediction = prediction + d * Float(rho[k]) }
            next = next - prediction * Float(t.alpha * bh)
        }
        return next
    }

    /// The solution of the small dense system A y = b (Gaussian elimination, partial pivoting).
    private func solve(_ a: [[Double]], _ b: [Double]) -> [Double] {
        var (a, b) = (a, b)
        let n = b.count
        for column in 0..<n {
            let pivot = (column..<n).max { abs(a[$0][column]) < abs(a[$1][column]) }!
            a.swapAt(column, pivot); b.swapAt(column, pivot)
            for row in (column + 1)..<n {
                let f = a[row][column] / a[column][column]
                for j in column..<n { a[row][j] -= f * a[column][j] }
                b[row] -= f * b[column]
            }
        }
        var y = [Double](repeating: 0, count: n)
        for row in (0..<n).reversed() {
            y[row] = (b[row] - ((row + 1)..<n).reduce(0) { $0 + a[row][$1] * y[$1] }) / a[row][row]
        }
        return y
    }
}
