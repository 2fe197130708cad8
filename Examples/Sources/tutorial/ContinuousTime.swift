import Foundation
import HazeKit

/// Chapter 7: the continuous-time view: a schedule defined for every t ∈ [0, 1], and DDIM as the
/// Euler method of an ordinary differential equation in σ.
func continuousTimeChapter(_ report: Report, pipeline: DiffusionPipeline) throws {
    print("chapter 7: continuous time")
    // snippet continuous
    // A schedule for every t ∈ [0, 1] (the Keras DDIM example's "cosine" rates): the angle runs
    // linearly from acos(0.95) to acos(0.02), signal(t) = cos(angle), noise(t) = sin(angle).
    let continuous = ContinuousCosineSchedule(minSignalRate: 0.02, maxSignalRate: 0.95)
    let times = (0...100).map { Double($0) / 100 }
    let signal = times.map { continuous.rates($0).signal }
    // The discrete linear schedule on the same axis: √ᾱ_t at t = 1000·s.
    let discrete = NoiseSchedule(.linear(start: 1e-4, end: 0.02), trainingSteps: 1000)
    let discreteSignal = times.map { Double(discrete.alphasCumprod[min(Int($0 * 1000), 999)]).squareRoot() }
    // end snippet
    let plot = LinePlot(title: "signal rate √ᾱ against diffusion time", xLabel: "t (fraction of the process)", yLabel: "signal rate",
                        series: [("continuous cosine", Array(zip(times, signal))), ("discrete linear", Array(zip(times, discreteSignal)))])
    try report.figure("continuous-schedule.svg", plot.svg())
    report.set("continuous-signal-half", signal[50], format: "%.3f")
    report.set("discrete-signal-half", discreteSignal[50], format: "%.3f")

    // snippet ode
    // With x̄ = x/√ᾱ and σ = √((1 − ᾱ)/ᾱ), DDIM with η = 0 is the Euler method of
    // dx̄/dσ = ε_θ(x̄/√(1 + σ²), σ)   (Song et al. 2021, eq. 14).
    // Haze's EulerScheduler (Karras et al. 2022, Algorithm 1) steps that ODE in σ: from the same
    // x_T it must give DDIM's images, up to rounding.
    var ddim = pipeline.schedulerConfig
    ddim.kind = .ddim
    ddim.clipSample = false                  // the ODE has no clipping
    var euler = SchedulerConfig(kind: .euler)
    euler.timestepSpacing = ddim.timestepSpacing   // the same 50 timesteps
    let viaDDIM = try DiffusionPipeline(model: pipeline.model, parameters: pipeline.parameters, schedulerConfig: ddim)
        .sample(count: 8, steps: 50, seed: 11)
    let viaEuler = try DiffusionPipeline(model: pipeline.model, parameters: pipeline.parameters, schedulerConfig: euler)
        .sample(count: 8, steps: 50, seed: 11)
    // end snippet
    report.set("ode-difference", Double(maxDifference(viaDDIM, viaEuler)), format: "%.1e")
    try report.grid("ode-ddim-euler.png", Tensor.concatenate([viaDDIM, viaEuler], alongAxis: 0), columns: 8)
}
