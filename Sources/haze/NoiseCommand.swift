import ArgumentParser
import Foundation
import HazeData
import HazeDiffusion
import HazeIO
import HazeTensor

/// `haze noise`: pictures of the forward process q(x_t | x₀).
struct Noise: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Draw the forward process: rows of images, columns x_t for increasing t (x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε).",
        discussion: "Example: haze noise --data fashion-mnist --out forward.png")

    @Option(help: "fashion-mnist, an IDX folder or an image folder.") var data: String
    @Option(help: "Output PNG.") var out: String
    @Option(help: "Number of images (rows).") var count = 8
    @Option(help: "Timesteps shown (columns).") var timesteps = "0,50,100,200,300,500,700,999"
    @Option(help: "linear, scaled_linear, squaredcos_cap_v2 or sigmoid.") var betaSchedule = "linear"
    @Option(help: "Image folders: side of the square images.") var imageSize: Int?
    @Option(help: "Random seed (images and noise).") var seed: UInt64 = 0

    func run() throws {
        let dataset = try openDataset(data, imageSize: imageSize)
        var config = SchedulerConfig(kind: .ddpm)
        config.betaSchedule = betaSchedule
        let schedule = config.noiseSchedule
        let steps = try parseNumbers(timesteps, option: "--timesteps").map { Int($0) }
        guard steps.allSatisfy({ (0..<schedule.trainingSteps).contains($0) }) else {
            throw ValidationError("--timesteps must lie in 0…\(schedule.trainingSteps - 1)")
        }
        var generator = RandomGenerator(seed: seed)
        let picks = generator.permutation(dataset.count).prefix(count)
        let shape = dataset.imageShape
        let x0 = Tensor(shape: [picks.count] + shape) { out, _ in
            for (i, index) in picks.enumerated() { dataset.image(index, into: out + i * shape.reduce(1, *)) }
        }
        let noise = generator.normal(x0.shape)
        // Row-major grid: for each image, one column per timestep.
        let columns = steps.map { t in schedule.addNoise(x0, noise: noise, timesteps: [Int](repeating: t, count: picks.count)) }
        let tiles = (0..<picks.count).flatMap { i in columns.map { $0.slice(i..<(i + 1)) } }
        try PNG.writeGrid(Tensor.concatenate(tiles, alongAxis: 0).clamped(min: -1, max: 1), to: out, columns: steps.count)
        print("wrote \(out): \(picks.count) images × t = \(steps.map(String.init).joined(separator: ", "))")
    }
}
