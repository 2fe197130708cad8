// A custom training loop on your own tensors, written with Haze's lower layers: DDPM training
// (Ho et al. 2020, "Denoising diffusion probabilistic models", Algorithm 1) of a small U-Net on
// synthetic 16×16 discs and squares, saved as a model folder that `sample-folder` can sample:
//   swift run -c release --package-path Examples train-on-tensors OUT_FOLDER [--steps N]
import Foundation
import HazeKit

func train(out: String, steps: Int) throws {
    // 1. The data: 512 images [1, 16, 16] in [−1, 1], a white disc or square on black.
    var random = RandomGenerator(seed: 42)
    var pixels: [Float] = []
    for _ in 0..<512 {
        let p = random.uniform([4]).scalars  // centre x, centre y, radius, which shape
        let (cx, cy, r) = (4 + 8 * p[0], 4 + 8 * p[1], 2 + 3 * p[2])
        for y in 0..<16 { for x in 0..<16 {
            let (dx, dy) = (Float(x) + 0.5 - cx, Float(y) + 0.5 - cy)
            let inside = p[3] < 0.5 ? dx * dx + dy * dy <= r * r : max(abs(dx), abs(dy)) <= r
            pixels.append(inside ? 1 : -1)
        } }
    }
    let dataset = try TensorDataset(images: Tensor(shape: [512, 1, 16, 16], scalars: pixels))
    let loader = DataLoader(dataset: dataset, batchSize: 32, seed: 0, flip: false)

    // 2. The model: a small diffusers UNet2DModel (two levels, no attention) with fresh weights.
    var config = UNet2DModelConfig()
    (config.sampleSize, config.inChannels, config.outChannels) = ([16, 16], 1, 1)
    (config.blockOutChannels, config.layersPerBlock, config.normNumGroups) = ([32, 64], 1, 8)
    (config.downBlockTypes, config.upBlockTypes) = (["DownBlock2D", "DownBlock2D"], ["UpBlock2D", "UpBlock2D"])
    config.addAttention = false
    let model = try UNet2DModel(config: config)
    var parameters = model.initialParameters(seed: 0)
    var optimizer = AdamOptimizer(.adamW, learningRate: 1e-3, weightDecay: 0)
    print("UNet2DModel, \(model.parameterCount) parameters; \(steps) steps of batches of 32")

    // 3. The forward process: Ho et al.'s linear β₁…β_T (1e-4 … 0.02, T = 1000) and ᾱ_t = Π(1 − β_s).
    let scheduler = SchedulerConfig(kind: .ddpm)
    let schedule = scheduler.noiseSchedule

    // 4. Algorithm 1: repeat { x₀ ~ q(x₀); t ~ Uniform({1, …, T}); ε ~ N(0, I);
    //    take a gradient step on ∇_θ ‖ε − ε_θ(√ᾱ_t x₀ + √(1 − ᾱ_t) ε, t)‖² } until converged.
    for step in 1...steps {
        let x0 = loader.next().images
        let t = random.integers(x0.shape[0], below: schedule.trainingSteps)  // 0-based, as diffusers
        let noise = random.normal(x0.shape)
        let xt = schedule.addNoise(x0, noise: noise, timesteps: t)  // x_t ~ q(x_t | x₀), eq. 4
        let (loss, gradients) = valueWithGradient(at: parameters) { p in
            Tensor.meanSquaredError(model(xt, timesteps: t.map(Float.init), parameters: p), noise)
        }
        optimizer.update(&parameters, gradients: gradients)
        if step % 10 == 0 || step == steps { print("step \(step)/\(steps)  loss \(loss.scalar)") }
    }

    // 5. A diffusers model folder (config.json + safetensors) with the scheduler it was trained with.
    try ModelFolder.save(model, parameters: parameters, to: out)
    try scheduler.write(to: out + "/scheduler_config.json")
    print("wrote \(out): sample it with `swift run --package-path Examples sample-folder \(out)`")
}

var arguments = Array(CommandLine.arguments.dropFirst())
var steps = 1000
if let i = arguments.firstIndex(of: "--steps"), i + 1 < arguments.count, let n = Int(arguments[i + 1]), n > 0 {
    steps = n
    arguments.removeSubrange(i...(i + 1))
}
guard arguments.count == 1, !arguments[0].hasPrefix("-") else {
    FileHandle.standardError.write(Data("usage: train-on-tensors OUT_FOLDER [--steps N]\n".utf8))
    exit(1)
}
do { try train(out: arguments[0], steps: steps) } catch {
    FileHandle.standardError.write(Data("train-on-tensors: \(error)\n".utf8))
    exit(1)
}
