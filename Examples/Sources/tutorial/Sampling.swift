import Foundation
import HazeKit

/// Chapters 5 and 6: DDPM's ancestral sampler written out, against Haze's DDPMScheduler; DDIM
/// with few steps and with η.
func samplingChapter(_ report: Report, pipeline: DiffusionPipeline, quick: Bool) throws {
    print("chapter 5: DDPM ancestral sampling")
    let (model, weights) = (pipeline.model, pipeline.parameters)
    let schedule = NoiseSchedule(.linear(start: 1e-4, end: 0.02), trainingSteps: 1000)
    let n = 16
    let started = Date()
    // snippet ddpm
    // Algorithm 2 of Ho et al. 2020: x_T ~ N(0, I); for t = T … 1,
    //   x_{t−1} = 1/√α_t (x_t − β_t/√(1 − ᾱ_t) ε_θ(x_t, t)) + σ_t z   (eq. 11),
    // with σ_t² = β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) β_t (§3.2) and z ~ N(0, I), none at the last step.
    var x = Tensor.normal([n, 1, 28, 28], seed: 42)
    var trajectory: [Tensor] = []
    for t in (0..<1000).reversed() {
        let epsilon = model(x, timesteps: [Float](repeating: Float(t), count: n), parameters: weights)
        let (beta, abar) = (schedule.betas[t], schedule.alphasCumprod[t])
        let abarPrevious = t > 0 ? schedule.alphasCumprod[t - 1] : 1
        x = (x - epsilon * (beta / (1 - abar).squareRoot())) / (1 - beta).squareRoot()
        if t > 0 {
            let sigma = ((1 - abarPrevious) / (1 - abar) * beta).squareRoot()
            x = x + Tensor.normal(x.shape, seed: 10_000 + UInt64(t)) * sigma
        }
        if [999, 800, 600, 400, 300, 200, 100, 0].contains(t) { trajectory.append(x) }
    }
    // end snippet
    let ddpmSeconds = Date().timeIntervalSince(started)
    report.set("ddpm-seconds-per-image", ddpmSeconds / Double(n), format: "%.2f")
    try report.grid("ddpm-samples.png", x, columns: 8)
    let strip = Tensor.concatenate((0..<4).flatMap { i in trajectory.map { $0.slice(i..<(i + 1)) } }, alongAxis: 0)
    try report.grid("ddpm-trajectory.png", strip, columns: trajectory.count)

    // snippet ddpm-scheduler
    // The same chain with Haze's DDPMScheduler (diffusers' DDPMScheduler: x̂₀ by eq. 15, then the
    // posterior mean of eq. 7), the same x_T and the same z, no clipping of x̂₀.
    var config = SchedulerConfig(kind: .ddpm)
    config.clipSample = false
    let scheduler = DDPMScheduler(config)
    try scheduler.setTimesteps(1000)
    var y = Tensor.normal([n, 1, 28, 28], seed: 42)
    for (i, t) in scheduler.timesteps.enumerated() {
        let epsilon = model(y, timesteps: [Float](repeating: t, count: n), parameters: weights)
        let z = t > 0 ? Tensor.normal(y.shape, seed: 10_000 + UInt64(t)) : nil
        y = scheduler.step(modelOutput: epsilon, stepIndex: i, sample: y, noise: z).prevSample
    }
    // end snippet
    report.set("ddpm-scheduler-difference", Double(maxDifference(x, y)), format: "%.1e")
    report.set("ddpm-sample-range", String(format: "%.2f … %.2f", x.scalars.min()!, x.scalars.max()!))

    print("chapter 6: DDIM")
    let counts = quick ? [5, 10, 50] : [5, 10, 20, 50, 100, 1000]
    // snippet ddim
    // DDIM (Song et al. 2021, eq. 12) with η = 0: deterministic, and any subsequence of the
    // timesteps. "trailing" spacing starts every run at t = T − 1 (Lin et al. 2024), so that all
    // step counts start from the same x_T; the same 8 initial noises for every step count (`seed`);
    // x̂₀ is not clipped (see below).
    var ddim = pipeline.schedulerConfig
    (ddim.kind, ddim.timestepSpacing, ddim.clipSample) = (.ddim, .trailing, false)
    let trailing = DiffusionPipeline(model: model, parameters: weights, schedulerConfig: ddim)
    var rows: [Tensor] = []
    var ddimSeconds: [Int: Double] = [:]
    for steps in counts {
        let start = Date()
        rows.append(try trailing.sample(count: 8, steps: steps, eta: 0, seed: 7))
        ddimSeconds[steps] = Date().timeIntervalSince(start) / 8
    }
    // end snippet
    // The default ("leading") spacing of a DDPM config starts an N-step run at T − T/N instead; and
    // clipping x̂₀ to [−1, 1] at every step (diffusers' default `clip_sample`) bends the trajectory,
    // the more the more steps there are.
    func variant(_ change: (inout SchedulerConfig) -> Void) -> DiffusionPipeline {
        var config = ddim
        change(&config)
        return DiffusionPipeline(model: model, parameters: weights, schedulerConfig: config)
    }
    let leading = try variant { $0.timestepSpacing = .leading }.sample(count: 8, steps: 10, seed: 7)
    report.set("leading-difference-10", Double(meanDifference(leading, rows[counts.firstIndex(of: 10)!])), format: "%.3f")
    let clipped = variant { $0.clipSample = true }
    let clippedFew = try clipped.sample(count: 8, steps: 10, seed: 7), clippedMany = try clipped.sample(count: 8, steps: counts.last!, seed: 7)
    report.set("clipped-difference", Double(meanDifference(clippedFew, clippedMany)), format: "%.3f")
    report.set("clipped-change", Double(meanDifference(clippedMany, rows.last!)), format: "%.3f")
    try report.grid("ddim-steps.png", Tensor.concatenate(rows, alongAxis: 0), columns: 8)
    report.set("ddim-step-counts", counts.map(String.init).joined(separator: ", "))
    let reference = rows.last!
    report.set("ddim-convergence", zip(counts, rows).dropLast().map { steps, row in
        "| \(steps) | " + String(format: "%.3f", meanDifference(row, reference)) + " | " + String(format: "%.3f", ddimSeconds[steps]!) + " s |"
    }.joined(separator: "\n") + "\n| \(counts.last!) | 0 | " + String(format: "%.3f", ddimSeconds[counts.last!]!) + " s |")
    report.set("ddim-reference-steps", "\(counts.last!)")

    // snippet eta
    // η interpolates between DDIM (0) and a DDPM-like sampler (1): σ_t(η) of eq. 16 adds fresh
    // noise at each step, so the same x_T gives different images.
    let etas: [Float] = [0, 0.5, 1]
    let byEta = try etas.map { try trailing.sample(count: 8, steps: 50, eta: $0, seed: 7) }
    // end snippet
    try report.grid("ddim-eta.png", Tensor.concatenate(byEta, alongAxis: 0), columns: 8)
    report.set("eta-difference-05", Double(meanDifference(byEta[1], byEta[0])), format: "%.3f")
    report.set("eta-difference-1", Double(meanDifference(byEta[2], byEta[0])), format: "%.3f")
}
