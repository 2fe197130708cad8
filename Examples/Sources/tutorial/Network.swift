import Foundation
import HazeKit

/// Chapter 3: the noise-prediction objective and the U-Net's parts.
func networkChapter(_ report: Report, data: ImageDataset) throws {
    print("chapter 3: the objective and the U-Net")
    // snippet objective
    let model = try ModelPreset.fmnistTiny.model(channels: 1, size: 28)
    let weights = model.initialParameters(seed: 0)     // a fresh, untrained network
    let schedule = NoiseSchedule(.linear(start: 1e-4, end: 0.02), trainingSteps: 1000)
    let x0 = firstImages(data, 64)
    let t = (0..<64).map { ($0 * 997 + 11) % 1000 }    // one timestep per image, spread over 0…999
    let epsilon = Tensor.normal(x0.shape, seed: 2)
    let xt = schedule.addNoise(x0, noise: epsilon, timesteps: t)
    // L_simple = E ‖ε − ε_θ(√ᾱ_t x₀ + √(1 − ᾱ_t) ε, t)‖²   (eq. 14)
    let prediction = model(xt, timesteps: t.map(Float.init), parameters: weights)
    let loss = (prediction - epsilon).squared().mean().scalars[0]
    // end snippet
    report.set("untrained-loss", Double(loss), format: "%.3f")
    report.set("zero-predictor-loss", Double(epsilon.squared().mean().scalars[0]), format: "%.3f")
    report.set("tiny-parameters", "\(model.parameterCount)")
    report.set("tiny-summary", model.summary)
    // Parameters per part of the network, in the order of the forward pass.
    var parts: [(String, Int)] = []
    for spec in model.parameterSpecs where !spec.isBuffer {
        let components = spec.name.split(separator: ".")
        let part = components[0].hasSuffix("blocks") ? components[0...1].joined(separator: ".") : String(components[0])
        let size = spec.shape.reduce(1, *)
        if parts.last?.0 == part { parts[parts.count - 1].1 += size } else { parts.append((part, size)) }
    }
    report.set("tiny-parts", parts.map { "| `\($0.0)` | \($0.1) |" }.joined(separator: "\n"))

    // snippet embedding
    // Sinusoidal features of t (Vaswani et al. 2017, as Ho et al. §4 use them): sin and cos of t
    // at 32 frequencies from 1 down to 1/10000.
    let features = Timesteps(dimension: 64, flipSinToCos: true, frequencyShift: 0)
    let embedded = features((0..<1000).map(Float.init))       // [1000, 64]
    // end snippet
    func cosine(_ a: Int, _ b: Int) -> Double {
        let (u, v) = (embedded.slice(a..<(a + 1)).scalars, embedded.slice(b..<(b + 1)).scalars)
        let dot = zip(u, v).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        let norms = (u.reduce(0.0) { $0 + Double($1 * $1) } * v.reduce(0.0) { $0 + Double($1 * $1) }).squareRoot()
        return dot / norms
    }
    report.set("embedding-cosine-1", cosine(500, 501), format: "%.3f")
    report.set("embedding-cosine-10", cosine(500, 510), format: "%.3f")
    report.set("embedding-cosine-250", cosine(500, 750), format: "%.3f")
    // Every 4th t as a row, the 64 features as columns, scaled from [−1, 1] to grey.
    let rows = Tensor.concatenate(stride(from: 0, to: 1000, by: 4).map { embedded.slice($0..<($0 + 1)) }, alongAxis: 0)
    let picture = PNG.pixels(rows.reshaped(to: [1, 1, 250, 64]))[0]
    try report.figure("timestep-embedding.png", PNG.encode(width: 64, height: 250, channels: 1, pixels: picture))

    // snippet norms
    // Image a in two batches, [a, b] and [a, c]: does its normalised output depend on its neighbours?
    let (a, b, c) = (firstImages(data, 1, from: 0), firstImages(data, 1, from: 1), firstImages(data, 1, from: 2))
    let features8 = Tensor.normal([8, 1, 3, 3], std: 0.5, seed: 3)   // a conv to 8 channels first
    func channels(_ x: Tensor) -> Tensor { Tensor.conv2d(x, weight: features8, padding: 1) }
    func batchNorm(_ x: Tensor) -> Tensor {
        var (mean, variance) = (Tensor.zeros([8]), Tensor.ones([8]))
        return Tensor.batchNorm(channels(x), weight: nil, bias: nil, runningMean: &mean, runningVariance: &variance, training: true)
    }
    func groupNorm(_ x: Tensor) -> Tensor { Tensor.groupNorm(channels(x), groups: 4, weight: nil, bias: nil) }
    let inBatch1 = Tensor.concatenate([a, b], alongAxis: 0), inBatch2 = Tensor.concatenate([a, c], alongAxis: 0)
    let batchNormChange = maxDifference(batchNorm(inBatch1).slice(0..<1), batchNorm(inBatch2).slice(0..<1))
    let groupNormChange = maxDifference(groupNorm(inBatch1).slice(0..<1), groupNorm(inBatch2).slice(0..<1))
    // end snippet
    report.set("batchnorm-change", Double(batchNormChange), format: "%.3f")
    report.set("groupnorm-change", Double(groupNormChange), format: "%g")
}
