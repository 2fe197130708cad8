import ArgumentParser
import Foundation
import HazeData
import HazeDiffusion
import HazeIO
import HazeNN
import HazeTensor
import HazeTraining

/// `haze train-classifier`: the feature network for FID/KID on MNIST-like data.
struct TrainClassifier: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train-classifier",
        abstract: "Train the small CNN whose features Haze's FID/KID use on Fashion-MNIST/MNIST; prints test accuracy.",
        discussion: "Reproduce the committed weights: haze train-classifier --data fashion-mnist --epochs 4 --out assets/fmnist-classifier.safetensors")

    @Option(help: "fashion-mnist or a folder of MNIST-style IDX files (train and t10k).") var data = "fashion-mnist"
    @Option(help: "Where to write the weights (safetensors).") var out: String
    @Option(help: "Passes over the training split.") var epochs = 4
    @Option(help: "Images per step.") var batchSize = 128
    @Option(help: "Peak learning rate (AdamW, cosine decay).") var lr: Float = 1e-3
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @OptionGroup var compute: ComputeOptions

    func run() throws {
        try compute.apply()
        let train = try openDataset(data, split: .train), test = try openDataset(data, split: .test)
        guard train.imageShape == [1, 28, 28], let classes = train.classCount else {
            throw CLIError("\(data): the classifier needs labeled 28×28 grayscale images, found \(train.imageShape)")
        }
        let classifier = ImageClassifier(classes: classes)
        let bar = ProgressBar("training classifier", total: epochs * train.count / batchSize)
        let parameters = classifier.train(on: train, epochs: epochs, batchSize: batchSize, learningRate: lr, seed: seed) { step, _, loss in
            bar.update(step, extra: String(format: "loss %.4f", loss))
        }
        let accuracy = classifier.accuracy(on: test, parameters: parameters)
        try SafeTensors(tensors: parameters, metadata: ["test_accuracy": String(format: "%.4f", accuracy), "epochs": "\(epochs)",
                                                        "seed": "\(seed)", "classes": "\(classes)", "data": data]).write(to: out)
        print(String(format: "test accuracy %.2f%% on %d images; wrote %@", accuracy * 100, test.count, out))
    }
}

/// `haze evaluate`: FID and KID of a model's samples (or of an image folder) against a dataset.
struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "FID and KID (classifier features) of samples against a reference split; prints and writes JSON.",
        discussion: """
        haze evaluate --model runs/fm1 --scheduler ddim --steps 50 --count 10000 --reference fashion-mnist
        haze evaluate --samples generated/ --reference fashion-mnist
        Reference statistics of a dataset split are cached next to the classifier weights.
        """)

    @Option(help: "A model folder or Haze run to sample from.") var model: String?
    @Option(help: "Score the PNG/JPEG images in this folder instead of sampling.") var samples: String?
    @Option(help: "Scheduler (ddpm, ddim, dpm++2m, euler, euler-a).") var scheduler = "ddim"
    @Option(help: "Sampling steps.") var steps = 50
    @Option(help: "Number of samples.") var count = 10_000
    @Option(help: "Images per model call.") var batchSize = 64
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "fashion-mnist or an IDX folder (its test split), or a .stats.safetensors file.") var reference = "fashion-mnist"
    @Option(help: "Features: classifier (Haze's CNN) — inception is not available in this version.") var features = "classifier"
    @Option(help: "Classifier weights.") var classifier = "assets/fmnist-classifier.safetensors"
    @Option(help: "Write the metrics as JSON here.") var json: String?
    @OptionGroup var compute: ComputeOptions

    func validate() throws {
        if (model == nil) == (samples == nil) { throw ValidationError("give --model (to sample) or --samples FOLDER") }
        if features != "classifier" { throw ValidationError("--features \(features) is not available in this version of Haze (use classifier)") }
    }

    func run() throws {
        try compute.apply()
        let net = ImageClassifier()
        let weights = try SafeTensors.read(contentsOf: classifier).tensors
        let referenceStats = try referenceStatistics(net, weights)
        let generated: Tensor
        if let samples {
            let folder = try ImageFolderDataset(folder: samples, size: 28, channels: 1)
            generated = net.features(of: folder, parameters: weights)
        } else {
            generated = try sampleFeatures(net, weights)
        }
        let stats = SampleMetrics.Statistics(features: generated)
        let fid = SampleMetrics.frechetDistance(stats, referenceStats.statistics)
        let subsets = SampleMetrics.kidSubsets(countA: generated.shape[0], countB: referenceStats.features.shape[0],
                                               subsets: 100, size: min(1000, generated.shape[0]), seed: seed)
        let kid = SampleMetrics.kernelInceptionDistance(generated, referenceStats.features, subsets: subsets)
        print(String(format: "FID %.3f  KID %.5f ± %.5f  (%d samples, classifier features)", fid, kid.mean, kid.std, generated.shape[0]))
        if let json {
            let object: [String: Any] = ["fid": fid, "kid_mean": kid.mean, "kid_std": kid.std, "count": generated.shape[0],
                                         "features": "classifier", "reference": reference, "model": model ?? samples!,
                                         "scheduler": scheduler, "steps": steps]
            try AtomicFile.write(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), to: json)
        }
    }

    /// Statistics and features of the reference split, cached as `<classifier>.<name>.stats.safetensors`.
    func referenceStatistics(_ net: ImageClassifier, _ weights: ParameterSet) throws -> (statistics: SampleMetrics.Statistics, features: Tensor) {
        let cache = reference.hasSuffix(".safetensors") ? reference
            : classifier + "." + reference.replacingOccurrences(of: "/", with: "_") + ".test.stats.safetensors"
        if FileManager.default.fileExists(atPath: cache) {
            let f = try SafeTensors.read(contentsOf: cache)
            let feats = try f.tensor("features", file: cache)
            return (SampleMetrics.Statistics(features: feats), feats)
        }
        let data = try openDataset(reference, split: .test)
        let feats = net.features(of: data, parameters: weights)
        try SafeTensors(tensors: ["features": feats], metadata: ["reference": reference, "split": "test"]).write(to: cache)
        return (SampleMetrics.Statistics(features: feats), feats)
    }

    func sampleFeatures(_ net: ImageClassifier, _ weights: ParameterSet) throws -> Tensor {
        let folder = try ModelLocation.resolve(model!)
        let (unet, parameters) = try ModelFolder.load(folder)
        guard unet.config.inChannels == 1, unet.config.sampleSize == [28, 28] else {
            throw CLIError("\(folder): classifier features need a 28×28 grayscale model")
        }
        guard let kind = SchedulerConfig.Kind.named(scheduler) else { throw ValidationError("unknown --scheduler \(scheduler)") }
        let path = folder + "/scheduler_config.json"
        let config = FileManager.default.fileExists(atPath: path) ? try SchedulerConfig(contentsOf: path, kind: kind) : SchedulerConfig(kind: kind)
        let sampler = makeScheduler(config)
        var generator = RandomGenerator(seed: seed)
        let loop = SamplingLoop(scheduler: sampler) { x, t, l in unet(x, timesteps: t, classLabels: l, parameters: parameters) }
        let batches = (count + batchSize - 1) / batchSize
        let bar = ProgressBar("sampling", total: batches * steps, itemsPerStep: Double(batchSize) / Double(max(steps, 1)))
        var done = 0, parts: [Tensor] = []
        for start in stride(from: 0, to: count, by: batchSize) {
            let n = min(batchSize, count - start)
            let labels = unet.config.numClassEmbeds.map { classes in (0..<n).map { (start + $0) % max(classes - 1, 1) } }
            let x = try loop.run(shape: [n, 1, 28, 28], steps: steps, classLabels: labels, generator: &generator,
                                 progress: { _, _ in done += 1; bar.update(done) })
            parts.append(net(x.clamped(min: -1, max: 1), weights).features)
        }
        return Tensor.concatenate(parts, alongAxis: 0)
    }
}
