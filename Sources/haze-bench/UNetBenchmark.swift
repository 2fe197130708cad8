import ArgumentParser
import Foundation
import HazeNN
import HazeTensor

/// The reference workloads of ../shared/reference (bench_torch.py W1_CFG, W2_CFG).
enum Workload: String, ExpressibleByArgument, CaseIterable {
    case fmnistS = "fmnist-s", cifarDDPM = "cifar-ddpm"
    /// The seed article's scale: 64×64 RGB, channels 64/128/256/256, attention with heads of 64
    /// at 16×16, GroupNorm 32 (25.3M parameters; bench_torch.py's W3).
    case faces64 = "faces-64"

    var config: UNet2DModelConfig {
        var c = UNet2DModelConfig()
        switch self {
        case .fmnistS:
            c.sampleSize = [28, 28]; c.inChannels = 1; c.outChannels = 1
            c.blockOutChannels = [32, 64, 128]; c.layersPerBlock = 2
            c.downBlockTypes = ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"]
            c.upBlockTypes = ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]
            c.normNumGroups = 8
        case .cifarDDPM:
            c.sampleSize = [32, 32]; c.inChannels = 3; c.outChannels = 3
            c.blockOutChannels = [128, 256, 256, 256]; c.layersPerBlock = 2
            c.downBlockTypes = ["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"]
            c.upBlockTypes = ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
            c.normNumGroups = 32; c.flipSinToCos = false; c.freqShift = 1; c.attentionHeadDim = nil
            c.downsamplePadding = 0; c.normEps = 1e-6
        case .faces64:
            c.sampleSize = [64, 64]; c.inChannels = 3; c.outChannels = 3
            c.blockOutChannels = [64, 128, 256, 256]; c.layersPerBlock = 2
            c.downBlockTypes = ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"]
            c.upBlockTypes = ["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]
            c.normNumGroups = 32; c.attentionHeadDim = 64
        }
        return c
    }
}

/// The network of `--model-config`, else `--preset`, else `--config`, and its name for the JSON.
func benchmarkModel(config: Workload, preset: String?, modelConfig: String?) throws -> (any DenoisingModel, String) {
    if let modelConfig { return (try ModelFolder.model(configFile: modelConfig), modelConfig) }
    if let preset {
        guard preset == "tf-article" else { throw ValidationError("--preset: only tf-article (the notebook's network at 64×64×3)") }
        return (try TFArticleUNet(config: TFArticleUNetConfig()), preset)
    }
    return (try UNet2DModel(config: config.config), config.rawValue)
}

struct UNetBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unet",
        abstract: "Time one U-Net training step or inference forward on a reference workload; prints one JSON line.",
        discussion: """
        train = sample t and ε, x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε (linear β, 1000 steps), forward, MSE on ε, backward, \
        AdamW(lr 1e-4). infer = one forward. 3 warm-up calls, median of 10, as the PyTorch reference.
        infer --prepared-weights: the forward as a sampling run calls it, with the convolution weights \
        transformed and packed once for all calls (a compiled engine such as OpenVINO does the same).
        """)

    enum Mode: String, ExpressibleByArgument { case train, infer }

    @Option(help: "fmnist-s, cifar-ddpm or faces-64.") var config: Workload = .fmnistS
    @Option(help: "tf-article: the TensorFlow notebook's U-Net at 64×64×3 instead of --config (timed against scripts/bench_tf_article.py).")
    var preset: String?
    @Option(help: "Time the network of this config.json (a diffusers UNet2DModel or a TFArticleUNet) instead of --config.")
    var modelConfig: String?
    @Option(help: "train or infer.") var mode: Mode = .train
    @Option(help: "Batch size.") var batch = 64
    @Option(help: "Worker threads.") var threads = 2
    @Option(help: "Timed calls (after 3 warm-ups).") var iterations = 10
    @Option(help: "Convolution algorithm: automatic (Winograd for 3×3 stride-1 padding-1) or im2col.") var conv: ConvolutionChoice = .automatic
    @Option(help: "float32, or bfloat16 (the Winograd F(2×2) and 1×1-convolution products in bf16 with float32 sums, on AVX512_BF16, AMX-BF16 or ARMv8.6 BF16; in train mode the forward and input-gradient products).") var precision: Precision = .float32
    @Flag(help: "infer mode: prepare the convolution weights (Winograd transforms, packed and bf16 copies) once for all calls, as sampling does, instead of in every call.")
    var preparedWeights = false
    @Option(help: ArgumentHelp("Time the calls with this fast path on and off in turn, --iterations pairs in one process (\(FastPath.allCases.map(\.rawValue).joined(separator: ", "))); prints both medians and the median of the paired differences.", valueName: "path"))
    var alternate: FastPath?

    func validate() throws {
        if preparedWeights && mode == .train { throw ValidationError("--prepared-weights is for --mode infer: training changes the weights every step") }
    }

    func run() throws {
        retainFreedMemory()
        Parallel.threadCount = threads
        ConvolutionAlgorithm.current = conv.algorithm
        if precision == .bfloat16 {
            guard Precision.bfloat16Available else { throw ValidationError("--precision bfloat16 needs a CPU with bf16 products (\(Precision.bfloat16Kernels))") }
        }
        Precision.current = precision
        let (model, workload) = try benchmarkModel(config: config, preset: preset, modelConfig: modelConfig)
        var parameters = model.initialParameters(seed: 0)
        guard let size = model.sampleSize else { throw ValidationError("the model config has no sample size") }
        var generator = RandomGenerator(seed: 1234)
        let x0 = generator.uniform([batch, model.inChannels, size[0], size[1]], low: -1, high: 1)
        // ᾱ_t for the linear schedule β_t = linspace(1e-4, 0.02, 1000) (Ho et al. 2020).
        var alphasCumprod: [Float] = []
        var product: Float = 1
        for i in 0..<1000 {
            product *= 1 - (1e-4 + (0.02 - 1e-4) * Float(i) / 999)
            alphasCumprod.append(product)
        }
        var optimizer = AdamOptimizer(.adamW, learningRate: 1e-4, weightDecay: 0.01)

        func trainStep() {
            let t = generator.integers(batch, below: 1000)
            let eps = generator.normal(x0.shape)
            let a = Tensor(shape: [batch, 1, 1, 1], scalars: t.map { alphasCumprod[$0] })
            let xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
            let (_, gradients) = valueWithGradient(at: parameters) { p in
                Tensor.meanSquaredError(model(xt, timesteps: t.map(Float.init), parameters: p), eps)
            }
            optimizer.update(&parameters, gradients: gradients)
        }
        let inferenceTimesteps = generator.integers(batch, below: 1000).map(Float.init)
        func inferStep() { _ = model(x0, timesteps: inferenceTimesteps, parameters: parameters) }
        let body = mode == .train ? trainStep : inferStep

        if let alternate {
            let pairs = preparedWeights ? ConvolutionAlgorithm.reusingTransformedWeights { measurePairs(alternate, iterations: iterations, body) }
                                        : measurePairs(alternate, iterations: iterations, body)
            var result: [String: Any] = ["workload": workload, "mode": mode.rawValue, "batch": batch, "threads": threads,
                                         "prepared_weights": preparedWeights, "alternate": alternate.rawValue, "pairs": iterations]
            for (key, value) in pairs { result[key] = value }
            let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
            return
        }
        FlopCounter.isEnabled = true
        body()
        FlopCounter.isEnabled = false
        let flops = FlopCounter.count
        let timing = preparedWeights ? ConvolutionAlgorithm.reusingTransformedWeights { measure(iterations: iterations, body) }
                                     : measure(iterations: iterations, body)
        var usage = rusage()
        #if os(Linux)
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let peakRSSMB = Double(usage.ru_maxrss) / 1024  // KiB on Linux
        #else
        getrusage(RUSAGE_SELF, &usage)
        let peakRSSMB = Double(usage.ru_maxrss) / 1048576  // bytes on macOS
        #endif
        var result: [String: Any] = [
            "workload": workload, "mode": mode.rawValue, "batch": batch, "threads": threads,
            "median_ms": timing.medianMs, "min_ms": timing.minMs, "gflop_per_call": flops / 1e9,
            "gflops": flops / timing.medianMs / 1e6, "peak_rss_mb": peakRSSMB,
            "params": model.parameterCount, "precision": precision.rawValue, "bf16_kernel": precision == .bfloat16 ? Precision.bfloat16Kernel ?? "none" : "none",
            "prepared_weights": preparedWeights, "blas": blasDescription, "kernels": CPUFeatures.current.kernelDescription,
        ]
        if let ratio = Precision.bfloat16RateRatio { result["bf16_rate_ratio"] = ratio }
        let data = try JSONSerialization.data(withJSONObject: result, options: [.sortedKeys, .withoutEscapingSlashes])
        print(String(decoding: data, as: UTF8.self))
    }
}

extension Precision: ExpressibleByArgument {}

extension FastPath: ExpressibleByArgument {}

/// 3 warm-up calls, then `iterations` pairs of calls with `path` on and off (the order swapped
/// from pair to pair, the path left on): each side's median and minimum, and the median of the
/// paired differences on − off, which a slow spell of the machine moves far less than either.
func measurePairs(_ path: FastPath, iterations: Int, _ body: () -> Void) -> [String: Double] {
    precondition(iterations >= 2, "at least 2 timed pairs")
    defer { path.isEnabled = true }
    for _ in 0..<3 { body() }
    var on: [Double] = [], off: [Double] = []
    for pair in 0..<iterations {
        for enabled in pair % 2 == 0 ? [true, false] : [false, true] {
            path.isEnabled = enabled
            let start = DispatchTime.now().uptimeNanoseconds
            body()
            let ms = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e6
            if enabled { on.append(ms) } else { off.append(ms) }
        }
    }
    func median(_ values: [Double]) -> Double {
        let sorted = values.sorted(), n = sorted.count
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    }
    return ["on_median_ms": median(on), "off_median_ms": median(off), "on_min_ms": on.min()!, "off_min_ms": off.min()!,
            "paired_difference_median_ms": median(zip(on, off).map { $0 - $1 })]
}
