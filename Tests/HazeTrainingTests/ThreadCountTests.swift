import Foundation
import XCTest
import HazeData
import HazeNN
import HazeTensor
@testable import HazeTraining

/// 28×28 gray images in memory, at fmnist-s scale (the shapes that take every convolution path:
/// im2col, Winograd F(2×2) and, with AVX-512, F(4×4) at 7×7).
private struct PatternDataset: ImageDataset {
    var count = 96
    var imageShape = [1, 28, 28]
    var classCount: Int? = nil

    func image(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        for i in 0..<784 { out[i] = Float((index * 13 + i * 7 + (i / 28) * (index % 5)) % 31) / 15.5 - 1 }
    }
    func label(_ index: Int) -> Int? { nil }
}

/// Issue 15, part 5: the work split does not depend on the thread count, so a run gives the same
/// bits with any `--threads` and resumes bit for bit on a machine with another core count.
final class ThreadCountTests: XCTestCase {
    var folder: String!

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "haze-threads-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: folder) }

    /// Weights, EMA and Adam moments after a few fmnist-s steps, trained with `threads` threads.
    private func train(threads: Int, batch: Int, steps: Int) throws -> Trainer {
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        Parallel.threadCount = threads
        var o = TrainingOptions(data: "pattern", steps: steps)
        o.batchSize = batch; o.checkpointEvery = 100; o.sampleEvery = 0; o.logEvery = 1
        o.horizontalFlip = true; o.emaDecay = 0.99; o.seed = 5  // no warm-up: the first step already moves the weights
        let model = try UNet2DModel(config: ModelPreset.fmnistSmall.config())
        let trainer = try Trainer(run: folder + "/t\(threads)-b\(batch)", model: model, options: o,
                                  dataset: PatternDataset(), tensorboard: false)
        try trainer.train(onStep: { _ in })
        return trainer
    }

    func testTrainingGivesTheSameBitsWithOneTwoAndThreeThreads() throws {
        // Batch 32 takes F(4×4) at 7×7 on AVX-512; batch 6 keeps F(2×2) there and has fewer
        // images than the largest work items. Under an emulator (make test-portable) only batch 6, one step:
        // the op-level ThreadCountTests cover the portable kernels, and 32 takes too long there.
        let emulated = ProcessInfo.processInfo.environment["HAZE_TEST_LAUNCHER"] != nil
        let steps = emulated ? 1 : 2
        for batch in emulated ? [6] : [32, 6] {
            let one = try train(threads: 1, batch: batch, steps: steps)
            XCTAssertNotEqual(one.parameters, try UNet2DModel(config: ModelPreset.fmnistSmall.config()).initialParameters(seed: 5))
            for threads in [2, 3] {
                let other = try train(threads: threads, batch: batch, steps: steps)
                for (name, value) in one.parameters where other.parameters[name] != value {
                    XCTFail("batch \(batch), \(threads) threads: \(name) differs from 1 thread")
                }
                XCTAssertEqual(other.emaParameters, one.emaParameters, "batch \(batch), \(threads) threads: EMA")
                XCTAssertEqual(other.optimizer.secondMoments, one.optimizer.secondMoments, "batch \(batch), \(threads) threads: Adam v")
            }
        }
    }
}
