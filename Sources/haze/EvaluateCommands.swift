import ArgumentParser
import Foundation
import HazeData
import HazeDistributed
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
        discussion: "Reproduce the committed weights: haze train-classifier --data fashion-mnist --epochs 10 --out assets/fmnist-classifier.safetensors")

    @Option(help: "fashion-mnist or a folder of MNIST-style IDX files (train and t10k).") var data = "fashion-mnist"
    @Option(help: "Where to write the weights (safetensors).") var out: String
    @Option(help: "Passes over the training split.") var epochs = 10
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
        abstract: "FID and KID of samples against a reference split, on classifier or InceptionV3 features; prints and writes JSON.",
        discussion: """
        haze evaluate --model runs/fm1 --scheduler ddim --steps 50 --count 10000 --reference fashion-mnist
        haze evaluate --samples generated/ --reference fashion-mnist
        haze evaluate --samples fashion-mnist:train --count 10000      # the floor: train split vs test split
        haze evaluate --model runs/fm1 --features inception --inception-weights pt_inception.safetensors
        Reference features of a dataset split are cached next to the feature network's weights
        (<weights>.<reference>.test.stats.safetensors), so they are computed once.
        """)

    @Option(help: "A model folder, saved diffusers pipeline or Haze run to sample from.") var model: String?
    @Option(help: "Score these images instead of sampling: a folder of PNG/JPEG images, or DATASET:train / DATASET:test (fashion-mnist or an IDX folder; the first --count images).")
    var samples: String?
    @Option(name: [.long, .customLong("sampler")], help: "Scheduler (ddpm, ddim, dpm++2m, dpm++2m-sde, unipc, euler, euler-a, heun, continuous-ddim); --sampler is the same.")
    var scheduler = "ddim"
    @Option(help: "σ spacing of euler, heun, unipc and dpm++2m(-sde): schedule, karras or exponential (default: the model's scheduler config).")
    var sigmas: SigmaSpacing?
    @Option(help: "Sampling steps.") var steps = 50
    @Option(help: "DDIM's η (0 deterministic).") var eta: Float = 0
    @Option(help: "Number of samples.") var count = 10_000
    @Option(help: "Images per model call.") var batchSize = 64
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "fashion-mnist or a dataset folder (its test split), or a .stats.safetensors file.") var reference = "fashion-mnist"
    @Option(help: "Features: classifier (Haze's Fashion-MNIST CNN, 128-d) or inception (FID InceptionV3, 2048-d).") var features = "classifier"
    @Option(help: "Classifier weights (default: assets/fmnist-classifier.safetensors in the working directory, else the copy `make install` puts in PREFIX/share/haze).")
    var classifier: String?
    @Option(help: "FID InceptionV3 weights as safetensors (pytorch-fid's, converted: see the README).")
    var inceptionWeights = "assets/pt_inception-2015-12-05.safetensors"
    @Option(help: "Write the metrics as JSON here.") var json: String?
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOption

    func validate() throws {
        if (model == nil) == (samples == nil) { throw ValidationError("give --model (to sample) or --samples FOLDER|DATASET:SPLIT") }
        if !["classifier", "inception"].contains(features) { throw ValidationError("--features must be classifier or inception, not \(features)") }
        if count < 2 { throw ValidationError("--count must be at least 2 (FID needs a covariance)") }
        if eta != 0 && scheduler != "ddim" { throw ValidationError("--eta applies to the ddim scheduler only") }
    }

    func run() throws {
        try precision.apply()
        try compute.apply()
        try runOnEveryRank(evaluate)
    }

    /// Under mpirun the ranks share the sampling; rank 0 gathers the features and computes the
    /// metrics (the reference statistics and the dataset features are rank 0's work alone).
    func evaluate(_ group: ProcessGroup) throws {
        let network = try FeatureNetwork(kind: features, weights: features == "classifier" ? classifierPath : inceptionWeights)
        let sampled = try samples == nil ? sampleFeatures(network, group: group) : nil
        guard group.isRoot else { return }
        let referenceStats = try referenceStatistics(network)
        let generated = try sampled?.features ?? datasetFeatures(network, spec: samples!)
        let stats = SampleMetrics.Statistics(features: generated)
        let fid = SampleMetrics.frechetDistance(stats, referenceStats.statistics)
        let subsets = SampleMetrics.kidSubsets(countA: generated.shape[0], countB: referenceStats.features.shape[0],
                                               subsets: 100, size: min(1000, generated.shape[0], referenceStats.features.shape[0]), seed: seed)
        let kid = SampleMetrics.kernelInceptionDistance(generated, referenceStats.features, subsets: subsets)
        print(String(format: "FID %.3f  KID %.5f ± %.5f  (%d samples, %@ features)", fid, kid.mean, kid.std, generated.shape[0], features))
        if let json {
            var object: [String: Any] = ["fid": fid, "kid_mean": kid.mean, "kid_std": kid.std, "count": generated.shape[0],
                                         "features": features, "reference": reference]
            if let model { object.merge(["model": model, "scheduler": scheduler, "steps": steps, "eta": eta, "seed": seed]) { $1 } }
            if let sigmas { object["sigmas"] = sigmas.rawValue }
            if let sampled {
                object["model_calls"] = sampled.modelCalls
                object["sampling_seconds"] = sampled.seconds
                object["seconds_per_image"] = sampled.seconds / Double(count)
                object["threads"] = Parallel.threadCount
            }
            if let samples { object["samples"] = samples }
            try AtomicFile.write(try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), to: json)
        }
    }

    /// `--classifier`, else assets/fmnist-classifier.safetensors here, else the installed copy in
    /// PREFIX/share/haze beside PREFIX/bin/haze (the first of these that exists).
    var classifierPath: String {
        if let classifier { return classifier }
        let local = "assets/fmnist-classifier.safetensors"
        guard !FileManager.default.fileExists(atPath: local), let executable = Bundle.main.executableURL?.resolvingSymlinksInPath() else {
            return local
        }
        let installed = executable.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("share/haze/fmnist-classifier.safetensors").path
        return FileManager.default.fileExists(atPath: installed) ? installed : local
    }

    /// Statistics and features of the reference split, cached as `<weights>.<name>.test.stats.safetensors`
    /// (recomputed when the cache was made with other weights or another number of images).
    func referenceStatistics(_ network: FeatureNetwork) throws -> (statistics: SampleMetrics.Statistics, features: Tensor) {
        func load(_ path: String) throws -> Tensor {
            let feats = try SafeTensors.read(contentsOf: path).tensor("features", file: path)
            guard feats.rank == 2, feats.shape[1] == network.featureCount, feats.shape[0] >= 2 else {
                throw CLIError("\(path): features \(feats.shape) are not at least 2 rows of \(network.featureCount)-d \(features) features")
            }
            return feats
        }
        if reference.hasSuffix(".safetensors") {
            let feats = try load(reference)
            return (SampleMetrics.Statistics(features: feats), feats)
        }
        let data = try network.checked(try openDataset(reference, split: .test), source: reference)
        let cache = network.weightsPath + "." + reference.replacingOccurrences(of: "/", with: "_") + ".test.stats.safetensors"
        // The cache belongs to these weights (size and modification time) and this many images.
        let attributes = try FileManager.default.attributesOfItem(atPath: network.weightsPath)
        let signature = "\((attributes[.size] as? Int) ?? -1) bytes, modified \((attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0)"
        if let cached = try? SafeTensors.read(contentsOf: cache), cached.metadata["weights"] == signature,
           let feats = cached.tensors["features"], feats.shape == [data.count, network.featureCount] {
            return (SampleMetrics.Statistics(features: feats), feats)
        }
        let feats = network.features(of: data, count: data.count, label: "reference features")
        do {
            try SafeTensors(tensors: ["features": feats], metadata: ["reference": reference, "split": "test", "features": features,
                                                                      "weights": signature]).write(to: cache)
        } catch {  // e.g. weights installed read-only: the statistics are used, only not cached
            FileHandle.standardError.write(Data("note: reference features not cached (\(error))\n".utf8))
        }
        return (SampleMetrics.Statistics(features: feats), feats)
    }

    /// Features of the first `count` images of a folder or a dataset split (`DATASET:train`).
    func datasetFeatures(_ network: FeatureNetwork, spec: String) throws -> Tensor {
        let parts = spec.split(separator: ":", maxSplits: 1).map(String.init)
        let data: ImageDataset
        if parts.count == 2, let split = ["train": MNISTDataset.Split.train, "test": .test][parts[1]] {
            data = try openDataset(parts[0], split: split)
        } else {
            let size = network.inputSize
            data = try ImageFolderDataset(folder: spec, size: size, channels: size == nil ? nil : 1)
        }
        return network.features(of: try network.checked(data, source: spec), count: min(count, data.count), label: "sample features")
    }

    /// Features of this job's `count` samples, gathered on rank 0 (nil on the other ranks): image k
    /// is drawn from its own noise stream (`ImageNoise`) by the rank whose share holds it. Also the
    /// model calls per image and the wall time of the sampling loops (features excluded).
    func sampleFeatures(_ network: FeatureNetwork, group: ProcessGroup) throws -> (features: Tensor, modelCalls: Int, seconds: Double)? {
        let location = try ModelLocation.resolve(model!)
        let folder = location.folder
        let (unet, parameters) = try ModelFolder.loadModel(folder)
        guard let size = unet.sampleSize else { throw CLIError("\(folder): the model config has no sample_size") }
        let shape = [unet.inChannels] + size
        if network.inputSize != nil && shape != [1, 28, 28] {
            throw CLIError("\(folder): classifier features need a 28×28 grayscale model, this one makes \(shape) images (use --features inception)")
        }
        if shape[0] != 1 && shape[0] != 3 { throw CLIError("\(folder): the model makes \(shape[0])-channel images; features need 1 or 3") }
        let config = try SchedulerConfig.forSampling(file: location.schedulerConfig, scheduler: scheduler, sigmas: sigmas)
        let sampler = makeScheduler(config)
        (sampler as? DDIMScheduler)?.eta = eta
        let loop = SamplingLoop(scheduler: sampler) { x, t, l in unet(x, timesteps: t, classLabels: l, parameters: parameters) }
        let (mine, counts) = batchShare(images: count, batchSize: batchSize, group: group)
        let batches = (mine.count + batchSize - 1) / batchSize
        try sampler.setTimesteps(steps)  // model calls per batch: Heun makes 2·steps − 1
        let calls = sampler.timesteps.count
        let bar = ProgressBar("sampling", total: batches * calls, itemsPerStep: Double(batchSize) / Double(max(calls, 1)),
                              enabled: group.isRoot)
        var done = 0, parts: [Tensor] = [], seconds = 0.0
        for start in stride(from: mine.lowerBound, to: mine.upperBound, by: batchSize) {
            let n = min(batchSize, mine.upperBound - start)
            let labels = unet.classTableSize.map { classes in (0..<n).map { (start + $0) % max(classes - 1, 1) } }
            var generator = ImageNoise(seed: seed, firstImage: start)
            let began = Date()
            let x = try loop.run(shape: [n] + shape, steps: steps, classLabels: labels, generator: &generator,
                                 progress: { _, _ in done += 1; bar.update(done) })
            seconds += Date().timeIntervalSince(began)
            parts.append(network.features(x.clamped(min: -1, max: 1)))
        }
        let local = parts.isEmpty ? [] : Tensor.concatenate(parts, alongAxis: 0).scalars
        let width = network.featureCount
        // Under mpirun the ranks sample at once: the wall time is the slowest rank's.
        let slowest = group.gather([Float(seconds)], counts: Array(repeating: 1, count: counts.count))?.max().map(Double.init) ?? seconds
        return group.gather(local, counts: counts.map { $0 * width }).map {
            (Tensor(shape: [count, width], scalars: $0), calls, slowest)
        }
    }
}

/// The network whose activations FID and KID compare.
struct FeatureNetwork {
    enum Kind {
        case classifier(ImageClassifier, ParameterSet)
        case inception(FIDInceptionV3)
    }
    let kind: Kind
    let weightsPath: String

    init(kind name: String, weights: String) throws {
        weightsPath = weights
        guard FileManager.default.fileExists(atPath: weights) else {
            throw CLIError(name == "inception"
                ? "\(weights): no such file. FID InceptionV3 weights cannot be shipped with Haze: convert pytorch-fid's pt_inception-2015-12-05-6726825d.pth with scripts/convert_fid_inception.py (see the README) and pass --inception-weights"
                : "\(weights): no such file (train one with haze train-classifier, or pass --classifier)")
        }
        if name == "inception" {
            kind = .inception(try FIDInceptionV3(contentsOf: weights))
            return
        }
        let net = ImageClassifier(), tensors = try SafeTensors.read(contentsOf: weights).tensors
        let problems = net.parameterSpecs.compactMap { spec -> String? in
            guard let t = tensors[spec.name] else { return "missing \(spec.name) \(spec.shape)" }
            return t.shape == spec.shape ? nil : "\(spec.name): expected \(spec.shape), found \(t.shape)"
        }
        guard problems.isEmpty else {
            throw CLIError("\(weights): not weights of Haze's feature classifier: " + problems.prefix(6).joined(separator: "; "))
        }
        kind = .classifier(net, tensors)
    }

    var featureCount: Int {
        switch kind {
        case .classifier: 128
        case .inception: FIDInceptionV3.featureCount
        }
    }

    /// The image side the network needs (28 for the classifier; nil: any, resized inside).
    var inputSize: Int? {
        if case .classifier = kind { return 28 }
        return nil
    }

    /// The dataset, if its images suit the network.
    func checked(_ data: ImageDataset, source: String) throws -> ImageDataset {
        if inputSize != nil && data.imageShape != [1, 28, 28] {
            throw CLIError("\(source): classifier features need 28×28 grayscale images, found \(data.imageShape) (use --features inception)")
        }
        if data.imageShape[0] != 1 && data.imageShape[0] != 3 { throw CLIError("\(source): images with \(data.imageShape[0]) channels") }
        if data.count < 2 { throw CLIError("\(source): FID and KID need at least 2 images, found \(data.count)") }
        return data
    }

    /// images: [N, C, H, W] in [−1, 1] → [N, featureCount]. InceptionV3 runs on slices of 50
    /// images (its 299×299 activations take about 6 MB per image and layer).
    func features(_ images: Tensor) -> Tensor {
        switch kind {
        case let .classifier(net, weights):
            return net(images, weights).features
        case let .inception(net):
            let n = images.shape[0]
            let parts = stride(from: 0, to: n, by: 50).map { start in
                net.features(images.slice(start..<Swift.min(start + 50, n)) * 0.5 + 0.5)
            }
            return Tensor.concatenate(parts, alongAxis: 0)
        }
    }

    /// Features of the first `count` images of a dataset, in batches, with a progress bar.
    func features(of data: ImageDataset, count: Int, label: String) -> Tensor {
        let batch = inputSize == nil ? 50 : 500, size = data.imageShape.reduce(1, *)
        let bar = ProgressBar(label, total: count, unit: "images")
        var parts: [Tensor] = []
        for start in stride(from: 0, to: count, by: batch) {
            let n = min(batch, count - start)
            parts.append(features(Tensor(shape: [n] + data.imageShape) { out, _ in
                for i in 0..<n { data.image(start + i, into: out + i * size) }
            }))
            bar.update(start + n)
        }
        return Tensor.concatenate(parts, alongAxis: 0)
    }
}
