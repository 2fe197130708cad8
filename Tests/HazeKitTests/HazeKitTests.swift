import Foundation
import HazeKit
import XCTest

/// The stable high-level API: train a tiny model on tensors, sample it from memory and from the
/// run folder, resume the run.
final class HazeKitTests: XCTestCase {
    func temporaryFolder() throws -> String {
        let path = NSTemporaryDirectory() + "hazekit-\(UUID().uuidString)"
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// 16 images of 1 × 8 × 8: a bright square at a position that depends on the class.
    func squares() throws -> TensorDataset {
        var pixels = [Float](repeating: -1, count: 16 * 64)
        for i in 0..<16 { for y in 0..<4 { for x in 0..<4 { pixels[i * 64 + (y + (i % 2) * 4) * 8 + x + (i % 2) * 4] = 1 } } }
        return try TensorDataset(images: Tensor(shape: [16, 1, 8, 8], scalars: pixels), labels: (0..<16).map { $0 % 2 })
    }

    func testTrainSampleAndResume() throws {
        let run = try temporaryFolder() + "/run"
        let data = try squares()
        var fromMemory: Tensor
        do {  // The trainer holds the run folder's lock while it lives.
            let trainer = try Trainer(newRun: run, preset: .fmnistTiny, dataset: data, name: "squares", steps: 3) { options in
                options.batchSize = 4
                options.emaDecay = 0.9
            }
            var losses: [Float] = []
            try trainer.train { report in losses.append(report.loss) }
            XCTAssertEqual(losses.count, 3)
            XCTAssertTrue(losses.allSatisfy { $0.isFinite && $0 > 0 })
            fromMemory = try DiffusionPipeline(trainer: trainer).sample(count: 3, scheduler: .ddim, steps: 4, seed: 7, batchSize: 2)
        }

        // From memory and from the run folder (its EMA weights): the same images.
        let pipeline = try DiffusionPipeline(contentsOf: run)
        XCTAssertEqual(pipeline.imageShape, [1, 8, 8])
        var calls: [Int] = []
        let fromFolder = try pipeline.sample(count: 3, scheduler: .ddim, steps: 4, seed: 7, batchSize: 2, progress: { done, _ in calls.append(done) })
        XCTAssertEqual(fromMemory.shape, [3, 1, 8, 8])
        XCTAssertEqual(calls, Array(1...8), "4 steps for each of 2 batches")
        XCTAssertEqual(fromMemory.scalars, fromFolder.scalars)
        XCTAssertTrue(fromFolder.scalars.allSatisfy { $0 >= -1 && $0 <= 1 })
        // Image k has its own noise whatever the batch size (the sums may round differently).
        let oneBatch = try pipeline.sample(count: 3, scheduler: .ddim, steps: 4, seed: 7, batchSize: 3)
        XCTAssertLessThan(zip(oneBatch.scalars, fromFolder.scalars).map { abs($0 - $1) }.max()!, 1e-4)
        let otherSeed = try pipeline.sample(count: 3, scheduler: .ddim, steps: 4, seed: 8)
        XCTAssertGreaterThan(zip(otherSeed.scalars, fromFolder.scalars).map { abs($0 - $1) }.max()!, 0.1)
        // Another scheduler keeps the betas; a wrong request is an error, not a crash.
        XCTAssertEqual(try pipeline.sample(count: 1, scheduler: .dpmSolverMultistep, steps: 3).shape, [1, 1, 8, 8])
        XCTAssertThrowsError(try pipeline.sample(count: 1, steps: 5000))
        XCTAssertThrowsError(try pipeline.sample(count: 1, classLabels: [0]))

        // The folder holds a run now; resuming continues it to 5 steps.
        XCTAssertThrowsError(try Trainer(newRun: run, dataset: data, steps: 3))
        let resumed = try Trainer(resuming: run, dataset: data, steps: 5)
        XCTAssertEqual(resumed.step, 3)
        try resumed.train()
        XCTAssertEqual(resumed.step, 5)
    }

    func testTensorDatasetChecksItsInput() throws {
        XCTAssertThrowsError(try TensorDataset(images: Tensor.zeros([4, 8, 8])))
        XCTAssertThrowsError(try TensorDataset(images: Tensor.zeros([2, 1, 8, 8]), labels: [0]))
        XCTAssertThrowsError(try TensorDataset(images: Tensor.zeros([2, 1, 8, 8]), labels: [0, -1]))
        let data = try squares()
        XCTAssertEqual(data.classCount, 2)
        var image = [Float](repeating: 0, count: 64)
        data.image(1, into: &image)
        XCTAssertEqual(image[4 * 8 + 4], 1)
        XCTAssertEqual(image[0], -1)
    }
}
