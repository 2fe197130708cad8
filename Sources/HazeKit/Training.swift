import Foundation
import HazeData
import HazeNN
import HazeTraining

/// The common ways to start and continue training (stable API). The `Trainer` initialiser with
/// every option stays available for the rest.
extension Trainer {
    /// A new run in the folder `run` (created; it must not hold a run yet) that trains `preset`'s
    /// network, sized to the dataset's images, on `dataset` for `steps` steps with Haze's default
    /// recipe (DDPM's ε objective, linear β, AdamW 2e-4, clipping at 1, EMA). `configure` changes
    /// any other `TrainingOptions` field (batch size, learning rate, checkpoint interval, …).
    /// `name` describes the data in the run's records (a custom dataset has no path). The run
    /// folder is locked (one trainer at a time) while this `Trainer` lives.
    /// - Throws: `Trainer.Failure` when the run folder is taken or the data does not fit the model.
    public convenience init(newRun run: String, preset: ModelPreset = .fmnistSmall, dataset: ImageDataset, name: String = "custom dataset",
                            steps: Int, configure: (inout TrainingOptions) -> Void = { _ in }) throws {
        if (try? Checkpoint.latest(run: run)) != nil {
            throw Failure(description: "\(run) already holds a run: continue it with Trainer(resuming:dataset:), or choose another folder")
        }
        var options = TrainingOptions(data: name, steps: steps)
        configure(&options)
        let shape = dataset.imageShape
        let model = try preset.model(channels: shape[0], size: shape[1])
        try self.init(run: run, model: model, options: options, dataset: dataset)
    }

    /// Continues the run in `run` where its latest checkpoint stopped, on the same `dataset`
    /// (its fingerprint is checked), up to `steps` in all (nil: the run's own target).
    /// - Throws: `Checkpoint` errors naming the file, or `Trainer.Failure` when the data changed.
    public convenience init(resuming run: String, dataset: ImageDataset, steps: Int? = nil) throws {
        let saved = try Checkpoint.read(try Checkpoint.latest(run: run))
        var options = saved.state.options
        if let steps { options.steps = steps }
        try self.init(run: run, model: saved.model, options: options, dataset: dataset,
                      resume: (saved.parameters, saved.ema, saved.optimizer, saved.state))
    }

    /// Trains to `options.steps`, checkpointing on the way and at the end; `progress` hears each
    /// step (step, loss, learning rate, gradient norm).
    public func train(progress: (Report) -> Void = { _ in }) throws {
        try train(deadline: nil, onStep: progress)
    }
}
