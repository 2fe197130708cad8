import ArgumentParser
import Foundation
import HazeNN
import HazeTensor

/// `haze-bench convs`: the algorithm choice of `conv2d` checked against measurement, shape by shape.
struct ConvolutionChoices: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convs",
        abstract: "Time every convolution shape of a U-Net with each algorithm, beside the one Haze picks.",
        discussion: """
        Records the convolutions of one forward of the network (--config, --preset or --model-config, at
        --batch), then times each distinct shape, forward and forward + backward (∂x and ∂w), under
        automatic (Haze's choice: Winograd F(4×4) or F(2×2) for 3×3 stride 1, the direct kernel for strided
        forwards, SGEMM for 1×1), small-tiles (Winograd restricted to F(2×2)) and im2col. Each of --rounds
        rounds times the three in turn (the median of --iterations calls each), so that a slow spell of the
        machine falls on all of them. Prints one row per shape (calls per forward, the automatic path, the
        medians over the rounds per algorithm) and the totals over the network's calls. A shape is marked
        where another path beats the choice by more than 5 % in the median of the rounds' paired ratios;
        an algorithm that takes the same path as automatic there (1×1 and strided convolutions under
        small-tiles) runs the same code, and its difference is noise, never a mark. With --precision
        bfloat16 the three run in bf16 and a fourth column times automatic in float32, so each shape
        shows whether bf16 pays there. With --prepared-weights the forwards run as a sampling run does,
        their weights prepared once.
        """)

    @Option(help: "fmnist-s, cifar-ddpm or faces-64.") var config: Workload = .fmnistS
    @Option(help: "tf-article: the TensorFlow notebook's U-Net at 64×64×3 instead of --config.") var preset: String?
    @Option(help: "The network of this config.json (a diffusers UNet2DModel or a TFArticleUNet) instead of --config.")
    var modelConfig: String?
    @Option(help: "Batch size (default: the workload's: 64 fmnist-s, 8 cifar-ddpm, 16 faces-64 and tf-article).") var batch: Int?
    @Option(help: "Worker threads.") var threads = 2
    @Option(help: "Timed calls per algorithm, shape and round (after 3 warm-ups in the first round, 1 in the others).")
    var iterations = 6
    @Option(help: "Rounds over the three algorithms per shape.") var rounds = 3
    @Option(help: "float32, or bfloat16 (the algorithms in bf16, with automatic in float32 beside them).")
    var precision: Precision = .float32
    @Flag(help: "Time the forwards with their weights prepared once (as `haze sample` runs them).") var preparedWeights = false

    func validate() throws {
        guard iterations >= 2 else { throw ValidationError("--iterations must be at least 2 (got \(iterations))") }
        guard rounds >= 1 else { throw ValidationError("--rounds must be at least 1 (got \(rounds))") }
        if precision == .bfloat16 && !Precision.bfloat16Available {
            throw ValidationError("--precision bfloat16 needs a CPU with bf16 products (\(Precision.bfloat16Kernels))")
        }
    }

    func run() throws {
        retainFreedMemory()
        Parallel.threadCount = threads
        let (model, workload) = try benchmarkModel(config: config, preset: preset, modelConfig: modelConfig)
        guard let size = model.sampleSize else { throw ValidationError("the model config has no sample size") }
        let n = batch ?? (modelConfig == nil && preset == nil ? [.fmnistS: 64, .cifarDDPM: 8, .faces64: 16][config]! : 16)
        let parameters = model.initialParameters(seed: 0)
        let x = Tensor.normal([n, model.inChannels, size[0], size[1]], seed: 1)
        let calls = ConvolutionShapes.recorded {
            _ = model(x, timesteps: Array(repeating: 500, count: n), parameters: parameters)
        }
        var shapes: [ConvolutionShapes.Shape] = [], counts: [ConvolutionShapes.Shape: Int] = [:]
        for shape in calls {
            if counts[shape] == nil { shapes.append(shape) }
            counts[shape, default: 0] += 1
        }
        print("\(workload), batch \(n), \(threads) threads, \(precision.rawValue)\(preparedWeights ? ", forwards with prepared weights" : ""): "
              + "\(calls.count) convolutions per forward, \(shapes.count) shapes")
        var algorithms: [(name: String, algorithm: ConvolutionAlgorithm, precision: Precision)] =
            [("automatic", .automatic, precision), ("small-tiles", .smallTiles, precision), ("im2col", .im2col, precision)]
        if precision == .bfloat16 { algorithms.append(("automatic-f32", .automatic, .float32)) }
        defer { (ConvolutionAlgorithm.current, Precision.current) = (.automatic, .float32) }
        let columns = precision == .bfloat16 ? "auto / F(2×2) / im2col / f32" : "auto / F(2×2) / im2col"
        print("shape                              calls  automatic path            forward ms: \(columns)   fwd+bwd ms: \(columns)")
        var totals = Array(repeating: (forward: 0.0, both: 0.0), count: algorithms.count)
        var best = (forward: 0.0, both: 0.0)
        func median(_ values: [Double]) -> Double {
            let sorted = values.sorted()
            return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
        }
        for shape in shapes {
            let paths = algorithms.map { _, algorithm, precision in
                (ConvolutionAlgorithm.current, Precision.current) = (algorithm, precision)
                return shape.forwardPath
            }
            let input = Tensor.normal(shape.input, seed: 2), weight = Tensor.normal(shape.weight, std: 0.05, seed: 3)
            let cotangent = Tensor.conv2d(input, weight: weight, stride: shape.stride, padding: shape.padding)
            // samples[algorithm][round]: the medians of one round's calls.
            var samples = Array(repeating: [(forward: Double, both: Double)](), count: algorithms.count)
            for round in 0..<rounds {
                for (i, (_, algorithm, precision)) in algorithms.enumerated() {
                    (ConvolutionAlgorithm.current, Precision.current) = (algorithm, precision)
                    let warmup = round == 0 ? 3 : 1
                    let timeForward = { measure(warmup: warmup, iterations: iterations) {
                        _ = Tensor.conv2d(input, weight: weight, stride: shape.stride, padding: shape.padding)
                    } }
                    let forward = preparedWeights ? ConvolutionAlgorithm.reusingTransformedWeights(timeForward) : timeForward()
                    let both = measure(warmup: warmup, iterations: iterations) {
                        _ = valueWithGradient(at: [input, weight]) { t in
                            (Tensor.conv2d(t[0], weight: t[1], stride: shape.stride, padding: shape.padding) * cotangent).sum()
                        }
                    }
                    samples[i].append((forward.medianMs, both.medianMs))
                }
            }
            (ConvolutionAlgorithm.current, Precision.current) = (.automatic, .float32)
            let times = samples.map { (forward: median($0.map(\.forward)), both: median($0.map(\.both))) }
            let count = Double(counts[shape]!)
            for i in times.indices { totals[i] = (totals[i].forward + count * times[i].forward, totals[i].both + count * times[i].both) }
            best = (best.forward + count * times.map(\.forward).min()!, best.both + count * times.map(\.both).min()!)
            // Paired within each round: the choice's time over the other path's, its median over the rounds.
            let beaten = algorithms.indices.dropFirst().contains { i in
                paths[i] != paths[0]
                    && (median(zip(samples[0], samples[i]).map { $0.forward / $1.forward }) > 1.05
                        || median(zip(samples[0], samples[i]).map { $0.both / $1.both }) > 1.05)
            }
            let mark = beaten ? "  ✗" : ""
            func row(_ values: [Double]) -> String { values.map { String(format: "%7.2f", $0) }.joined(separator: " ") }
            print(shape.description.padding(toLength: 36, withPad: " ", startingAt: 0) + String(format: "%4d  ", counts[shape]!)
                  + paths[0].padding(toLength: 26, withPad: " ", startingAt: 0) + row(times.map(\.forward)) + "          "
                  + row(times.map(\.both)) + mark)
        }
        print("per forward (calls × ms): " + zip(algorithms, totals).map { String(format: "%@ %.1f / %.1f", $0.0.name, $0.1.forward, $0.1.both) }
            .joined(separator: ", ") + String(format: "; the fastest of each shape %.1f / %.1f (forward / fwd+bwd)", best.forward, best.both))
    }
}
