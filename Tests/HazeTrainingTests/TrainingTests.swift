import Foundation
import XCTest
import HazeData
import HazeDiffusion
import HazeIO
import HazeNN
import HazeTensor
@testable import HazeTraining

/// A tiny labeled dataset in memory (8×8 gray images).
struct SyntheticDataset: ImageDataset {
    var count = 24
    var imageShape = [1, 8, 8]
    var classCount: Int? = 3
    var poisoned = false

    func image(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        for i in 0..<64 { out[i] = poisoned && i == 5 ? .nan : Float((index * 7 + i * 3) % 17) / 8.5 - 1 }
    }
    func label(_ index: Int) -> Int? { index % 3 }
}

final class TrainingTests: XCTestCase {
    var folder: String!

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "haze-train-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: folder) }

    func tinyModel(classes: Int? = nil) throws -> UNet2DModel {
        var c = UNet2DModelConfig()
        c.sampleSize = [8, 8]; c.inChannels = 1; c.outChannels = 1
        c.blockOutChannels = [8, 16]; c.layersPerBlock = 1; c.normNumGroups = 4; c.attentionHeadDim = 4
        c.downBlockTypes = ["DownBlock2D", "AttnDownBlock2D"]; c.upBlockTypes = ["AttnUpBlock2D", "UpBlock2D"]
        c.numClassEmbeds = classes
        return try UNet2DModel(config: c)
    }

    func options(steps: Int) -> TrainingOptions {
        var o = TrainingOptions(data: "synthetic", steps: steps)
        o.batchSize = 5; o.gradientAccumulation = 2; o.checkpointEvery = 3; o.sampleEvery = 0; o.logEvery = 1
        o.classConditional = true; o.labelDropout = 0.3; o.horizontalFlip = true; o.minSNRGamma = 5
        o.warmupSteps = 2; o.learningRateShape = .cosine; o.emaDecay = 0.99; o.seed = 11
        return o
    }

    /// 2N steps in one go and N steps + resume + N steps give identical weights, bit for bit.
    func testResumeIsBitExact() throws {
        let model = try tinyModel(classes: 4)
        let straight = try Trainer(run: folder + "/a", model: model, options: options(steps: 6), dataset: SyntheticDataset(), tensorboard: false)
        try straight.train(onStep: { _ in })

        do {  // the first trainer ends (and lets go of the run folder) before the second starts
            let first = try Trainer(run: folder + "/b", model: model, options: options(steps: 3), dataset: SyntheticDataset(), tensorboard: false)
            try first.train(onStep: { _ in })
        }
        let saved = try Checkpoint.read(try Checkpoint.latest(run: folder + "/b"))
        XCTAssertEqual(saved.state.step, 3)
        var resumedOptions = saved.state.options
        resumedOptions.steps = 6
        let second = try Trainer(run: folder + "/b", model: saved.model, options: resumedOptions, dataset: SyntheticDataset(),
                                 resume: (saved.parameters, saved.ema, saved.optimizer, saved.state), tensorboard: false)
        try second.train(onStep: { _ in })

        XCTAssertEqual(second.step, 6)
        XCTAssertEqual(second.parameters, straight.parameters, "weights")
        XCTAssertEqual(second.emaParameters, straight.emaParameters, "EMA weights")
        XCTAssertEqual(second.optimizer.firstMoments, straight.optimizer.firstMoments)
        XCTAssertEqual(second.optimizer.secondMoments, straight.optimizer.secondMoments)
        XCTAssertNotEqual(straight.parameters, model.initialParameters(seed: 11), "training changed the weights")
        // The metrics log of the resumed run has each step once.
        let lines = try String(contentsOfFile: folder + "/b/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 6)
        let svg = try String(contentsOfFile: folder + "/b/loss.svg", encoding: .utf8)
        XCTAssertTrue(svg.contains("<polyline"), svg)
        // Checkpoints are diffusers folders with a scheduler config; only the last ones are kept.
        let checkpoints = try FileManager.default.contentsOfDirectory(atPath: folder + "/a/checkpoints").sorted()
        XCTAssertEqual(checkpoints, ["step-0000003", "step-0000006"])
        XCTAssertNoThrow(try ModelFolder.load(folder + "/a/checkpoints/step-0000006/ema"))
        XCTAssertTrue(FileManager.default.fileExists(atPath: folder + "/a/checkpoints/step-0000006/model/scheduler_config.json"))
    }

    /// Fine-tuning: the run and its EMA start from the given weights; weights of another
    /// architecture are refused before the run folder exists.
    func testFineTuningStartsFromTheGivenWeights() throws {
        let model = try tinyModel()
        var o = options(steps: 1)
        o.classConditional = false
        let given = model.initialParameters(seed: 99)
        let trainer = try Trainer(run: folder + "/ft", model: model, options: o, dataset: SyntheticDataset(), initialParameters: given,
                                  tensorboard: false)
        XCTAssertEqual(trainer.parameters, given)
        XCTAssertEqual(trainer.emaParameters, given)
        XCTAssertNotEqual(given, model.initialParameters(seed: o.seed))
        let other = try tinyModel(classes: 4).initialParameters(seed: 1)
        XCTAssertThrowsError(try Trainer(run: folder + "/bad", model: model, options: o, dataset: SyntheticDataset(), initialParameters: other)) {
            XCTAssertTrue("\($0)".contains("unexpected (1): class_embedding.weight"), "\($0)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/bad"))
    }

    func testNaNLossStopsAndKeepsLastCheckpoint() throws {
        var o = options(steps: 4)
        o.checkpointEvery = 1
        o.classConditional = false
        let trainer = try Trainer(run: folder + "/nan", model: try tinyModel(), options: o, dataset: SyntheticDataset(poisoned: true), tensorboard: false)
        XCTAssertThrowsError(try trainer.train(onStep: { _ in })) { error in
            XCTAssertTrue("\(error)".hasPrefix("step 1: the loss is nan"), "\(error)")
        }
        XCTAssertThrowsError(try Checkpoint.latest(run: folder + "/nan"), "no checkpoint was written from a NaN step")
    }

    func testMismatchedDataAndLabelsAreExplained() throws {
        var o = options(steps: 1)
        o.classConditional = true
        XCTAssertThrowsError(try Trainer(run: folder + "/x", model: try tinyModel(classes: 3), options: o, dataset: SyntheticDataset())) {
            XCTAssertTrue("\($0)".contains("needs 4 (the last is the null class)"), "\($0)")
        }
        XCTAssertThrowsError(try Trainer(run: folder + "/y", model: try tinyModel(), options: options(steps: 1),
                                         dataset: SyntheticDataset(imageShape: [3, 8, 8])))
    }

    func testScheduleAndEMA() {
        let lr = LearningRateSchedule(peak: 1, warmupSteps: 4, shape: .cosine, totalSteps: 14)
        XCTAssertEqual(lr.rate(at: 0), 0, "diffusers' warm-up: the first update has rate 0")
        XCTAssertEqual(lr.rate(at: 3), 0.75)
        XCTAssertEqual(lr.rate(at: 4), 1)
        XCTAssertEqual(lr.rate(at: 9), 0.5, accuracy: 1e-6)
        XCTAssertEqual(lr.rate(at: 14), 0, accuracy: 1e-6)
        var ema = ExponentialMovingAverage(["w": Tensor([0])], maxDecay: 0.9)
        XCTAssertEqual(ema.decay, 0, "first update copies the weights (diffusers)")
        ema.update(with: ["w": Tensor([1])])
        XCTAssertEqual(ema.weights["w"]!.scalars, [1])
        XCTAssertEqual(ema.decay, 1 - pow(2, -2 / 3), accuracy: 1e-6)
        for _ in 0..<100 { ema.update(with: ["w": Tensor([1])]) }
        XCTAssertEqual(ema.decay, 0.9)
    }

    /// AdamW and the EMA update their tensors in place: the weights, moments and averages keep
    /// their buffers from step to step (a copy of each, per step, was 3–4 passes over the model).
    func testOptimizerAndEMAUpdateInPlace() {
        func address(_ t: Tensor?) -> UInt { t!.withScalars { UInt(bitPattern: $0) } }
        var parameters: ParameterSet = ["a": Tensor.normal([64, 32], seed: 1), "b": Tensor.normal([32], seed: 2)]
        let gradients: [String: Tensor] = ["a": Tensor.normal([64, 32], seed: 3), "b": Tensor.normal([32], seed: 4)]
        var optimizer = AdamOptimizer(.adamW, learningRate: 1e-3, weightDecay: 0.01)
        optimizer.update(&parameters, gradients: gradients)  // the moments are made here
        var ema = ExponentialMovingAverage(parameters.mapValues { $0 + 0 }, maxDecay: 0.9)
        let before = ["a", "b"].map { [address(parameters[$0]), address(optimizer.firstMoments[$0]),
                                       address(optimizer.secondMoments[$0]), address(ema.weights[$0])] }
        let old = parameters["a"]!.scalars.map { $0 }  // a copy: sharing the buffer would force one
        for _ in 0..<2 {
            optimizer.update(&parameters, gradients: gradients)
            ema.update(with: parameters)
        }
        XCTAssertNotEqual(parameters["a"]!.scalars, old, "the weights moved")
        XCTAssertEqual(["a", "b"].map { [address(parameters[$0]), address(optimizer.firstMoments[$0]),
                                         address(optimizer.secondMoments[$0]), address(ema.weights[$0])] }, before)
    }

    func testTensorBoardRecordCRC() {
        // CRC-32C check value (RFC 3720): crc32c("123456789") = 0xE3069283, then TFRecord's mask.
        let crc: UInt32 = 0xE306_9283
        XCTAssertEqual(TensorBoardWriter.maskedCRC(Data("123456789".utf8)), ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8)
    }

    /// One trainer per run folder: a second is refused while the first holds it, and the folder is
    /// free again once the first is gone. Leftovers of interrupted writes are removed on start.
    func testRunFolderLockAndLeftovers() throws {
        var o = options(steps: 2)
        o.classConditional = false
        let run = folder + "/locked"
        var first: Trainer? = try Trainer(run: run, model: try tinyModel(), options: o, dataset: SyntheticDataset(), tensorboard: false)
        try first!.train(onStep: { _ in })
        XCTAssertThrowsError(try Trainer(run: run, model: try tinyModel(), options: o, dataset: SyntheticDataset(), tensorboard: false)) {
            XCTAssertTrue("\($0)".contains("is being trained by another process (pid \(getpid()))"), "\($0)")
        }
        first = nil
        XCTAssertNil(first)
        // What a kill -9 in the middle of writes leaves behind.
        let leftovers = [run + "/.metrics.jsonl.tmp-99999", run + "/checkpoints/.tmp-step-0000003", run + "/samples/.step-0000003.png.tmp-99999"]
        try FileManager.default.createDirectory(atPath: run + "/samples", withIntermediateDirectories: true)
        for path in leftovers { XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("half".utf8))) }
        let saved = try Checkpoint.read(try Checkpoint.latest(run: run))
        var more = saved.state.options
        more.steps = 3
        let second = try Trainer(run: run, model: saved.model, options: more, dataset: SyntheticDataset(),
                                 resume: (saved.parameters, saved.ema, saved.optimizer, saved.state), tensorboard: false)
        for path in leftovers { XCTAssertFalse(FileManager.default.fileExists(atPath: path), path) }
        try second.train(onStep: { _ in })
        XCTAssertEqual(second.step, 3)
    }

    /// A resume on data other than the checkpoint's is refused unless accepted; a run folder that
    /// cannot be created is an error before training.
    func testChangedDataAndUnwritableRunFolder() throws {
        var o = options(steps: 1)
        o.classConditional = false
        let run = folder + "/data"
        do { try Trainer(run: run, model: try tinyModel(), options: o, dataset: SyntheticDataset(), tensorboard: false).train(onStep: { _ in }) }
        let saved = try Checkpoint.read(try Checkpoint.latest(run: run))
        XCTAssertNotNil(saved.state.dataFingerprint)
        func resume(_ data: SyntheticDataset, accept: Bool = false) throws -> Trainer {
            try Trainer(run: run, model: saved.model, options: saved.state.options, dataset: data,
                        resume: (saved.parameters, saved.ema, saved.optimizer, saved.state), acceptChangedData: accept, tensorboard: false)
        }
        XCTAssertThrowsError(try resume(SyntheticDataset(count: 25))) {
            XCTAssertTrue("\($0)".contains("the data changed since the checkpoint") && "\($0)".contains("--accept-changed-data"), "\($0)")
        }
        XCTAssertNoThrow(try resume(SyntheticDataset(count: 25), accept: true))
        XCTAssertNoThrow(try resume(SyntheticDataset()))
        XCTAssertThrowsError(try Trainer(run: "/proc/haze-run", model: try tinyModel(), options: o, dataset: SyntheticDataset())) {
            XCTAssertTrue("\($0)".hasPrefix("/proc/haze-run: cannot create the run folder"), "\($0)")
        }
    }
}

final class DataTests: XCTestCase {
    var folder: String!

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "haze-data-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: folder) }

    func idx(_ dims: [Int], _ bytes: [UInt8]) -> Data {
        var d = Data([0, 0, 8, UInt8(dims.count)])
        for n in dims { d.append(contentsOf: [UInt8(n >> 24 & 255), UInt8(n >> 16 & 255), UInt8(n >> 8 & 255), UInt8(n & 255)]) }
        d.append(contentsOf: bytes)
        return d
    }

    func testIDXDatasetAndErrors() throws {
        try idx([3, 2, 2], Array(0..<12)).write(to: URL(fileURLWithPath: folder + "/train-images-idx3-ubyte"))
        try idx([3], [1, 2, 3]).write(to: URL(fileURLWithPath: folder + "/train-labels-idx1-ubyte"))
        let data = try MNISTDataset(folder: folder, split: .train)
        XCTAssertEqual(data.count, 3)
        XCTAssertEqual(data.imageShape, [1, 2, 2])
        XCTAssertEqual(data.label(2), 3)
        var pixels = [Float](repeating: 0, count: 4)
        data.image(1, into: &pixels)
        XCTAssertEqual(pixels, [4, 5, 6, 7].map { Float($0) / 127.5 - 1 })

        try idx([3, 2, 2], Array(0..<10)).write(to: URL(fileURLWithPath: folder + "/train-images-idx3-ubyte"))
        XCTAssertThrowsError(try MNISTDataset(folder: folder, split: .train)) {
            XCTAssertEqual("\($0)", "\(folder!)/train-images-idx3-ubyte: truncated: expected 12 bytes, found 10")
        }
        XCTAssertThrowsError(try MNISTDataset(folder: folder, split: .test)) { XCTAssertTrue("\($0)".contains("not found")) }
        try Data("hello world!".utf8).write(to: URL(fileURLWithPath: folder + "/train-images-idx3-ubyte"))
        XCTAssertThrowsError(try MNISTDataset(folder: folder, split: .train)) { XCTAssertTrue("\($0)".contains("bad magic")) }
    }

    func testRealFashionMNISTWhenInstalled() throws {
        guard FileManager.default.fileExists(atPath: MNISTDataset.debianFashionMNIST) else { throw XCTSkip("dataset-fashion-mnist not installed") }
        let test = try MNISTDataset(folder: MNISTDataset.debianFashionMNIST, split: .test)
        XCTAssertEqual(test.count, 10_000)
        XCTAssertEqual(test.imageShape, [1, 28, 28])
        XCTAssertEqual(Set((0..<test.count).map { test.label($0)! }), Set(0..<10))
    }

    func testImageFolderLabelsResizeAndCorruptFiles() throws {
        for (name, value) in [("boots/a.png", 10), ("boots/b.png", 200), ("shirts/c.png", 90)] {
            let path = folder + "/" + name
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try PNG.encode(width: 6, height: 4, channels: 1, pixels: [UInt8](repeating: UInt8(value), count: 24))
                .write(to: URL(fileURLWithPath: path))
        }
        let data = try ImageFolderDataset(folder: folder, labeled: true)
        XCTAssertEqual(data.count, 3)
        XCTAssertEqual(data.imageShape, [1, 4, 4], "center-cropped to the shorter side")
        XCTAssertEqual(data.classNames, ["boots", "shirts"])
        XCTAssertEqual((0..<3).map { data.label($0)! }, [0, 0, 1])

        try Data("not an image".utf8).write(to: URL(fileURLWithPath: folder + "/shirts/broken.png"))
        XCTAssertThrowsError(try ImageFolderDataset(folder: folder, labeled: true)) {
            XCTAssertTrue("\($0)".contains("broken.png"), "\($0)")
        }
        let skipping = try ImageFolderDataset(folder: folder, labeled: true, skipCorrupt: true)
        XCTAssertEqual(skipping.count, 3)
        XCTAssertEqual(skipping.skipped.count, 1)
        let empty = folder + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        XCTAssertThrowsError(try ImageFolderDataset(folder: empty)) { XCTAssertTrue("\($0)".contains("contains no PNG or JPEG images")) }

        // Large images: the size is asked for, not taken from them; given, each is resized as decoded.
        let large = folder + "/large"
        try FileManager.default.createDirectory(atPath: large, withIntermediateDirectories: true)
        try PNG.encode(width: 300, height: 280, channels: 3, pixels: [UInt8](repeating: 7, count: 300 * 280 * 3)).write(to: URL(fileURLWithPath: large + "/big.png"))
        XCTAssertThrowsError(try ImageFolderDataset(folder: large)) {
            XCTAssertTrue("\($0)".contains("smallest image side is 280 pixels (big.png); give the training size with --image-size"), "\($0)")
        }
        XCTAssertEqual(try ImageFolderDataset(folder: large, size: 32).imageShape, [3, 32, 32])
    }

    func testLoaderIsSeededAndResumable() {
        let data = SyntheticDataset()
        let a = DataLoader(dataset: data, batchSize: 7, seed: 3, flip: true)
        let batches = (0..<5).map { _ in a.next() }
        let b = DataLoader(dataset: data, batchSize: 7, seed: 3, flip: true, start: batches[1].next)
        XCTAssertEqual(b.next().images, batches[2].images, "resumed at a position, same batches")
        XCTAssertEqual(b.next().labels, batches[3].labels)
        // One epoch visits every image once.
        let c = DataLoader(dataset: data, batchSize: 24, seed: 9, flip: false)
        XCTAssertEqual(Set(c.next().labels!.enumerated().map { $0.offset }).count, 24)
        XCTAssertNotEqual(DataLoader(dataset: data, batchSize: 7, seed: 4, flip: true).next().images, batches[0].images)
    }
}

/// `--notebook-recipe`'s schedule is the TensorFlow notebook's (ᾱ shifted by one, 199 DDIM calls
/// at t = 995 … 5), the same as the scheduler_config.json the checkpoint converter writes.
final class NotebookScheduleTests: XCTestCase {
    func testNotebookScheduleMatchesTheConvertedFolder() throws {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("HazeNNTests/Fixtures/tf_article/model/scheduler_config.json").path
        let converted = try SchedulerConfig(contentsOf: path), ours = TrainingOptions.notebookSchedule()
        XCTAssertEqual(ours.kind, converted.kind)
        XCTAssertEqual(ours.trainedBetas, converted.trainedBetas)
        XCTAssertEqual(ours.stepsOffset, converted.stepsOffset)
        XCTAssertEqual(ours.clipSample, converted.clipSample)
        let abar = ours.noiseSchedule.alphasCumprod
        XCTAssertEqual(abar[0], 1)
        var product = 1.0
        for t in 1..<1000 {
            product *= 1 - (1e-4 + (0.02 - 1e-4) * Double(t - 1) / 999)
            XCTAssertEqual(Double(abar[t]), product, accuracy: 1e-5 * product, "ᾱ[\(t)]")
        }
        let scheduler = makeScheduler(ours)
        try scheduler.setTimesteps(200)
        XCTAssertEqual(scheduler.timesteps, stride(from: 995, through: 0, by: -5).map(Float.init))
    }
}
