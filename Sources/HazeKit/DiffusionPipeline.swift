import Foundation
import HazeDiffusion
import HazeNN
import HazeTensor
import HazeTraining

/// A trained noise predictor and the scheduler it was trained with, ready to sample: the stable
/// entry point for generating images (stable API).
///
/// Sampling runs the reverse process from x_T ~ N(0, I) to x₀ with any of Haze's schedulers
/// (DDPM, Ho et al. 2020, Algorithm 2; DDIM, Song et al. 2021, eq. 12; DPM-Solver++, UniPC, Euler,
/// Heun). Image k of a request is drawn from its own random stream of `seed`, so the same seed
/// gives the same images whatever `batchSize` (as `haze sample --seed` does).
public final class DiffusionPipeline {
    /// The U-Net (diffusers `UNet2DModel` or the TensorFlow notebook's `TFArticleUNet`).
    public let model: any DenoisingModel
    /// Its weights, by parameter name.
    public let parameters: ParameterSet
    /// The scheduler the model was trained with (its betas and prediction type); `sample` switches
    /// its class when asked for another scheduler, keeping the betas.
    public let schedulerConfig: SchedulerConfig

    /// Loads a model from any layout `haze sample --model` reads: a diffusers model folder, a
    /// saved pipeline (`model_index.json`, `unet/`, `scheduler/`), or a Haze run or checkpoint
    /// (`weights` chooses its EMA or raw weights).
    /// - Throws: `ModelLocation.Failure`, a safetensors or config error naming the file.
    public convenience init(contentsOf path: String, weights: ModelLocation.Weights = .preferEMA) throws {
        let location = try ModelLocation.resolve(path, weights: weights)
        let (model, parameters) = try ModelFolder.loadModel(location.folder)
        let config = try SchedulerConfig.forSampling(file: location.schedulerConfig, scheduler: nil, sigmas: nil)
        self.init(model: model, parameters: parameters, schedulerConfig: config)
    }

    /// A pipeline over weights in memory, e.g. a `Trainer`'s (`init(trainer:)`).
    public init(model: any DenoisingModel, parameters: ParameterSet, schedulerConfig: SchedulerConfig) {
        (self.model, self.parameters, self.schedulerConfig) = (model, parameters, schedulerConfig)
    }

    /// The current weights of a training run (its EMA weights when it keeps them) with its
    /// scheduler, to look at samples while training.
    public convenience init(trainer: Trainer) {
        self.init(model: trainer.model, parameters: trainer.emaParameters ?? trainer.parameters,
                  schedulerConfig: trainer.options.schedulerConfig)
    }

    /// [channels, height, width] of the images the model makes (nil when its config has no
    /// `sample_size`: pass `size` to `sample`).
    public var imageShape: [Int]? { model.sampleSize.map { [model.inChannels] + $0 } }

    /// `count` images as a tensor [count, C, H, W] with values in [−1, 1] (clamped), ready for
    /// `PNG.writeGrid(_:to:)`.
    /// - scheduler: the sampler (nil: the folder's own); `steps`: inference steps (nil: all
    ///   training steps for DDPM, 50 otherwise); `eta`: DDIM's η (0 deterministic … 1 DDPM-like).
    /// - classLabels: one per image, for a class-conditional model; `guidanceScale` > 1 turns on
    ///   classifier-free guidance (Ho & Salimans 2022, eq. 6; the null class is the last one).
    /// - size: [height, width] when the model's config has no `sample_size`.
    /// - progress: called after each model call with (calls done, calls in all).
    /// - Throws: `SamplingError` for settings the model cannot take (steps, labels, size).
    public func sample(count: Int, scheduler: SchedulerConfig.Kind? = nil, steps: Int? = nil, eta: Float = 0,
                       seed: UInt64 = 0, batchSize: Int = 16, classLabels: [Int]? = nil, guidanceScale: Float = 1,
                       size: [Int]? = nil, progress: ((Int, Int) -> Void)? = nil) throws -> Tensor {
        guard count >= 1, batchSize >= 1 else { throw SamplingError("count and batchSize must be at least 1 (\(count), \(batchSize))") }
        var config = schedulerConfig
        if let scheduler, scheduler != config.kind {
            // Another class with the same betas, as `haze sample --scheduler` (diffusers' from_config).
            config = try SchedulerConfig(json: config.jsonObject(), file: "(the pipeline's scheduler config)", kind: scheduler)
        }
        let sampler = makeScheduler(config)
        (sampler as? DDIMScheduler)?.eta = eta
        let stepCount = steps ?? (config.kind == .ddpm ? config.numTrainTimesteps : 50)
        guard (1...config.numTrainTimesteps).contains(stepCount) else {
            throw SamplingError("\(stepCount) steps: this model was trained with \(config.numTrainTimesteps) timesteps; use 1…\(config.numTrainTimesteps)")
        }
        guard let side = size ?? model.sampleSize else { throw SamplingError("the model config has no sample_size: pass size: [height, width]") }
        if model.isClassConditional != (classLabels != nil) {
            throw SamplingError(model.isClassConditional ? "this model is class-conditional: pass classLabels" : "classLabels given, but this model is not class-conditional")
        }
        if let classLabels, classLabels.count != count { throw SamplingError("\(classLabels.count) class labels for \(count) images") }
        var guidance: Guidance? = nil
        if guidanceScale != 1 {
            guard let classes = model.classTableSize else { throw SamplingError("guidance needs a class-conditional model with a class embedding table") }
            guidance = Guidance(scale: guidanceScale, nullClass: classes - 1)
        }
        let (model, parameters) = (self.model, self.parameters)
        let loop = SamplingLoop(scheduler: sampler) { x, t, labels in model(x, timesteps: t, classLabels: labels, parameters: parameters) }
        try sampler.setTimesteps(stepCount)
        let calls = sampler.timesteps.count * ((count + batchSize - 1) / batchSize)
        var done = 0
        var batches: [Tensor] = []
        for start in stride(from: 0, to: count, by: batchSize) {
            let n = min(batchSize, count - start)
            var noise = ImageNoise(seed: seed, firstImage: start)
            batches.append(try loop.run(shape: [n, model.inChannels] + side, steps: stepCount,
                                        classLabels: classLabels.map { Array($0[start..<(start + n)]) }, guidance: guidance,
                                        generator: &noise, progress: { _, _ in done += 1; progress?(done, calls) }))
        }
        return Tensor.concatenate(batches, alongAxis: 0).clamped(min: -1, max: 1)
    }
}
