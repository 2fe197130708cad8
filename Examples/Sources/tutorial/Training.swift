import Foundation
import HazeKit

/// Chapter 4: training a small model on Fashion-MNIST. The run folder is kept between runs of the
/// tutorial: a finished run is reused, a shorter one is continued.
func trainingChapter(_ report: Report, data: ImageDataset, run: String, steps: Int) throws -> DiffusionPipeline {
    print("chapter 4: training (\(steps) steps in \(run))")
    let started = Date()
    let trainer: Trainer
    if (try? Checkpoint.latest(run: run)) != nil {
        trainer = try Trainer(resuming: run, dataset: data, steps: steps)
    } else {
        // snippet train
        trainer = try Trainer(newRun: run, preset: .fmnistTiny, dataset: data, name: "fashion-mnist", steps: steps) { o in
            o.batchSize = 64
            o.learningRate = 1e-3        // AdamW
            o.warmupSteps = 100
            o.minSNRGamma = 5            // Hang et al. 2023: weight each t by min(SNR, 5)/SNR
            o.emaDecay = 0.999           // sample from an exponential moving average of the weights
            o.logEvery = 25
            o.sampleEvery = 0
        }
        // end snippet
    }
    let firstStep = trainer.step
    try trainer.train { r in
        if r.step % 250 == 0 { print(String(format: "  step %5d  loss %.4f", r.step, r.loss)) }
    }
    if trainer.step > firstStep {
        report.set("training-seconds-per-step", Date().timeIntervalSince(started) / Double(trainer.step - firstStep), format: "%.2f")
    }

    // The loss logged every 25 steps (the mean over those steps), from the run's metrics.jsonl.
    var points: [(Double, Double)] = []
    var rates: [Double] = []
    for line in try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n") {
        guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
              let step = object["step"] as? Int, let loss = object["loss"] as? Double else { continue }
        points.append((Double(step), loss))
        if let rate = object["images_per_second"] as? Double { rates.append(rate) }
    }
    guard !points.isEmpty else { throw TutorialError("\(run)/metrics.jsonl: no logged steps for a loss curve") }
    let plot = LinePlot(title: "training loss (min-SNR-weighted MSE), mean of every 25 steps", xLabel: "step", yLabel: "loss",
                        logY: true, series: [("fmnist-tiny", points)])
    try report.figure("loss.svg", plot.svg())
    let tail = points.suffix(max(points.count / 10, 1)).map(\.1)
    report.set("training-steps", "\(trainer.step)")
    report.set("training-parameters", "\(trainer.model.parameterCount)")
    report.set("loss-first", points[0].1, format: "%.3f")
    report.set("loss-last", tail.reduce(0, +) / Double(tail.count), format: "%.4f")
    report.set("images-per-second", rates.sorted()[rates.count / 2], format: "%.0f")
    return DiffusionPipeline(trainer: trainer)
}
