import ArgumentParser
import Foundation
import HazeData
import HazeDistributed
import HazeNN
import HazeTensor
import HazeTraining

/// Random images in memory, so that the benchmark times training, not decoding.
struct RandomImages: ImageDataset {
    let count: Int
    let imageShape: [Int]
    var classCount: Int? { nil }
    let pixels: [Float]

    init(count: Int, shape: [Int]) {
        (self.count, imageShape) = (count, shape)
        var generator = RandomGenerator(seed: 99)
        pixels = generator.uniform([count * shape.reduce(1, *)], low: -1, high: 1).scalars
    }

    func image(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        let size = imageShape.reduce(1, *)
        pixels.withUnsafeBufferPointer { out.update(from: $0.baseAddress! + index * size, count: size) }
    }
    func label(_ index: Int) -> Int? { nil }
}

struct DataParallelBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ddp",
        abstract: "Time whole training steps (Trainer: AdamW, clipping, EMA) with or without mpirun; rank 0 prints one JSON line.",
        discussion: """
        Run it as `haze-bench ddp --threads 1` (1 rank × 1 thread), `mpirun -np 2 haze-bench ddp --threads 1` (2 ranks ×
        1 thread) and `haze-bench ddp --threads 2` (1 rank × 2 threads); scripts/bench_ddp.sh runs all three. The global
        batch is the same in each; the step is that of ../shared/reference/ddp_scaling.py (ε objective, linear β, AdamW
        lr 1e-4, no clipping, no EMA; 3 warm-up steps, median of the rest). Do not pass --oversubscribe to mpirun with
        no more ranks than cores: Open MPI then runs in its degraded mode (measured: 2 × 1 at 999 instead of 671 ms). Reports the median step, images/s, the time of one blocking allreduce of all the
        gradients, and the wait per step at the end of the backward pass (exposed: the buckets still in flight, plus
        the wait for the slower rank). `--bucket-mb 0` sends one bucket after the backward pass (no overlap); the
        difference of the two exposed waits is the communication that the buckets hide.
        """)

    @Option(help: "fmnist-s or cifar-ddpm.") var config: Workload = .fmnistS
    @Option(help: "Global batch size.") var batch = 64
    @Option(help: "Timed steps (after 3 warm-up steps).") var steps = 10
    @Option(help: "Worker threads per rank.") var threads = 1
    @Option(help: "Gradient bucket size in MB (0: one bucket after the backward pass, no overlap).") var bucketMb: Double = 4

    func run() throws {
        retainFreedMemory()
        Parallel.threadCount = threads
        let group = ProcessGroup.world
        let model = try UNet2DModel(config: config.config)
        let shape = [model.config.inChannels] + model.config.sampleSize!
        let folder = NSTemporaryDirectory() + "haze-bench-ddp-\(ProcessInfo.processInfo.processIdentifier)"
        var options = TrainingOptions(data: "(random images)", steps: steps + 3)
        (options.batchSize, options.checkpointEvery, options.logEvery, options.sampleEvery) = (batch, 1 << 30, 1 << 30, 0)
        (options.learningRate, options.gradientClip, options.emaDecay) = (1e-4, nil, nil)
        let trainer = try Trainer(run: folder, model: model, options: options, dataset: RandomImages(count: 4 * batch, shape: shape),
                                  tensorboard: false, group: group,
                                  gradientBucketBytes: bucketMb > 0 ? Int(bucketMb * 1_048_576) : Int.max)
        var stepTimes: [Double] = [], exposed: [Double] = []
        var last = Date(), lastExposed = 0.0
        try trainer.train(onStep: { report in
            let now = Date()
            if report.step > 3 {
                stepTimes.append(now.timeIntervalSince(last))
                exposed.append(trainer.exposedCommunicationSeconds - lastExposed)
            }
            (last, lastExposed) = (now, trainer.exposedCommunicationSeconds)
        })
        // One blocking allreduce of every gradient at once: the cost without overlap.
        let gradientCount = model.parameterSpecs.filter { !$0.isBuffer }.map { $0.shape.reduce(1, *) }.reduce(0, +)
        var buffer = [Float](repeating: 1, count: gradientCount), allreduce: [Double] = []
        for _ in 0..<10 {
            group.barrier()
            let start = Date()
            buffer.withUnsafeMutableBufferPointer { group.allreduceSum($0) }
            allreduce.append(Date().timeIntervalSince(start))
        }
        if group.isRoot { try? FileManager.default.removeItem(atPath: folder) }
        func median(_ v: [Double]) -> Double { v.isEmpty ? 0 : v.sorted()[v.count / 2] }
        let step = median(stepTimes), reduce = group.size > 1 ? median(allreduce) : 0, wait = median(exposed)
        if group.isRoot {
            let line: [String: Any] = [
                "config": config.rawValue, "bucket_mb": bucketMb, "ranks": group.size, "threads_per_rank": threads, "global_batch": batch,
                "step_ms_median": step * 1000, "images_per_second": Double(batch) / step,
                "gradient_mb": Double(gradientCount * 4) / 1e6, "allreduce_ms": reduce * 1000, "exposed_ms": wait * 1000,
                "kernels": CPUFeatures.current.kernelDescription,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: line, options: [.sortedKeys]), as: UTF8.self))
        }
        group.finish()
    }
}
