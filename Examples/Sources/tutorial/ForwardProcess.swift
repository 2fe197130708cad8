import Foundation
import HazeKit

/// Chapters 1 and 2: the variance schedules, x_t for several t, and the closed form of
/// q(x_t | x₀) against iterating q(x_t | x_{t−1}).
func forwardProcessChapter(_ report: Report, data: ImageDataset) throws {
    print("chapter 1: the forward process")
    // snippet schedules
    let T = 1000
    let schedules: [(name: String, schedule: BetaSchedule)] = [
        ("linear", .linear(start: 1e-4, end: 0.02)),          // Ho et al. 2020, §4
        ("cosine", .squaredCosCapV2),                         // Nichol & Dhariwal 2021, eq. 17
        ("scaled linear", .scaledLinear(start: 0.00085, end: 0.012)),
        ("sigmoid", .sigmoid(start: 1e-4, end: 0.02)),
    ]
    // ᾱ_t = Π_{s ≤ t} (1 − β_s) for each schedule.
    let alphaBars = schedules.map { NoiseSchedule($0.schedule, trainingSteps: T).alphasCumprod }
    // end snippet
    var plot = LinePlot(title: "ᾱ_t, the fraction of signal variance left at step t", xLabel: "t", yLabel: "ᾱ_t")
    for (s, a) in zip(schedules, alphaBars) {
        plot.series.append((s.name, a.enumerated().map { (Double($0.offset), Double($0.element)) }))
    }
    try report.figure("alpha-bar.svg", plot.svg())
    for (s, a) in zip(schedules, alphaBars) {
        let key = s.name.replacingOccurrences(of: " ", with: "-")
        report.set("alpha-bar-500-\(key)", Double(a[500]), format: "%.3f")
        report.set("alpha-bar-999-\(key)", Double(a[999]), format: "%.2e")
        report.set("half-signal-\(key)", "\(a.firstIndex { $0 < 0.5 }!)")
    }

    // snippet forward
    let linear = NoiseSchedule(.linear(start: 1e-4, end: 0.02), trainingSteps: T)
    let cosine = NoiseSchedule(.squaredCosCapV2, trainingSteps: T)
    let x0 = firstImages(data, 6)                      // [6, 1, 28, 28] in [−1, 1]
    let epsilon = Tensor.normal(x0.shape, seed: 1)     // one ε per image, reused for every t
    let shown = [0, 50, 100, 200, 300, 500, 700, 999]
    // x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε   (eq. 4), for every image at every t in `shown`
    func noised(_ schedule: NoiseSchedule) -> [Tensor] {
        shown.map { t in schedule.addNoise(x0, noise: epsilon, timesteps: [Int](repeating: t, count: 6)) }
    }
    let (linearRows, cosineRows) = (noised(linear), noised(cosine))
    // end snippet
    // One row per image, one column per t: rows of the linear schedule, then of the cosine one.
    func table(_ columns: [Tensor]) -> Tensor {
        Tensor.concatenate((0..<6).flatMap { i in columns.map { $0.slice(i..<(i + 1)) } }, alongAxis: 0)
    }
    try report.grid("forward-linear.png", table(linearRows), columns: shown.count)
    try report.grid("forward-cosine.png", table(cosineRows), columns: shown.count)
    report.set("shown-timesteps", shown.map(String.init).joined(separator: ", "))

    print("chapter 2: the closed form against the chain")
    // snippet chain
    // 64 images, each taken through 1000 steps of q(x_t | x_{t−1}) = N(√(1 − β_t) x_{t−1}, β_t I)
    // (eq. 2), with fresh noise at every step.
    let images = firstImages(data, 64)
    var x = images
    var standardised: [Int: Tensor] = [:]
    for t in 0..<T {
        let beta = linear.betas[t]
        x = x * (1 - beta).squareRoot() + Tensor.normal(x.shape, seed: 1000 + UInt64(t)) * beta.squareRoot()
        if [9, 99, 499, 999].contains(t) {
            // If eq. 4 holds, (x_t − √ᾱ_t x₀)/√(1 − ᾱ_t) is standard normal.
            let a = linear.alphasCumprod[t]
            standardised[t] = (x - images * a.squareRoot()) / (1 - a).squareRoot()
        }
    }
    // end snippet
    for (t, z) in standardised.sorted(by: { $0.key < $1.key }) {
        let mean = z.scalars.reduce(0, +) / Float(z.count)
        let variance = z.scalars.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(z.count - 1)
        report.set("chain-mean-\(t + 1)", Double(mean), format: "%+.4f")
        report.set("chain-std-\(t + 1)", Double(variance.squareRoot()), format: "%.4f")
    }
    report.set("chain-values", "\(standardised[999]!.count)")
    report.set("chain-standard-error", 1 / Double(standardised[999]!.count).squareRoot(), format: "%.4f")

    // snippet recursion
    // The chain's mean coefficient m_t = √(1 − β_t) m_{t−1} and variance v_t = (1 − β_t) v_{t−1} + β_t,
    // against the closed form's √ᾱ_t and 1 − ᾱ_t, in Double.
    var (m, v) = (1.0, 0.0)
    var (worstMean, worstVariance) = (0.0, 0.0)
    for t in 0..<T {
        let beta = Double(linear.betas[t])
        (m, v) = ((1 - beta).squareRoot() * m, (1 - beta) * v + beta)
        let a = Double(linear.alphasCumprod[t])
        worstMean = max(worstMean, abs(m - a.squareRoot()))
        worstVariance = max(worstVariance, abs(v - (1 - a)))
    }
    // end snippet
    report.set("recursion-mean-error", worstMean, format: "%.1e")
    report.set("recursion-variance-error", worstVariance, format: "%.1e")
}
