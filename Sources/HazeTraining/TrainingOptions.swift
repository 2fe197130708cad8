import HazeDiffusion
import HazeNN
import HazeTensor

/// Everything that defines a training run besides the model config. Stored in every
/// checkpoint's trainer_state.json, so `--resume` continues with the same settings.
public struct TrainingOptions: Codable, Equatable, Sendable {
    /// The training data as `--data` names it: `fashion-mnist`, a folder of IDX files, or a folder
    /// of images (see `openDataset`).
    public var data: String
    /// Image folders: side of the square training images, labels from subfolders, and
    /// whether undecodable images are skipped (reported) rather than fatal.
    public var imageSize: Int? = nil
    /// Image folders: the class of an image is its first-level subfolder.
    public var labelsFromFolders = false
    /// Image folders: undecodable images are skipped (and reported) rather than fatal.
    public var skipCorruptImages = false
    /// Total optimizer steps (also when resuming).
    public var steps: Int
    /// Images per micro-batch, over all ranks together (each rank takes its share).
    public var batchSize = 64
    /// Micro-batches whose gradients are averaged into one optimizer step.
    public var gradientAccumulation = 1
    /// The peak learning rate (reached after `warmupSteps`).
    public var learningRate: Float = 2e-4
    /// The optimizer (nil, as in runs made before this option: AdamW).
    public var optimizer: AdamOptimizer.Variant? = nil
    /// Adam's β₁, the decay of the first-moment average.
    public var beta1: Float = 0.9
    /// Adam's β₂, the decay of the second-moment average.
    public var beta2: Float = 0.999
    /// λ: decoupled weight decay for AdamW, an L2 penalty for Adam and Keras' Adam.
    public var weightDecay: Float = 0.01
    /// Adam's ε.
    public var epsilon: Float = 1e-8
    /// Steps of linear learning-rate warm-up from 0.
    public var warmupSteps = 0
    /// After warm-up: constant, or cosine decay to 0 at `steps`.
    public var learningRateShape: LearningRateSchedule.Shape = .constant
    /// Clip gradients to this global L2 norm (nil: no clipping).
    public var gradientClip: Float? = 1
    /// EMA of the weights (nil: none), with diffusers' warmup.
    public var emaDecay: Float? = 0.9999
    /// The power of the EMA's warm-up, d = 1 − (1 + n)^(−power) (nil, as in runs made before this
    /// option: 2/3, EMAModel's default; `haze train` gives 3/4, diffusers' training scripts' value).
    public var emaPower: Float? = nil
    var emaWarmupPower: Float { emaPower ?? 2 / 3 }
    /// What the network learns to predict (ε, v or x₀), and so the target of the MSE loss.
    public var objective: PredictionType = .epsilon
    /// γ of min-SNR-γ loss weighting (nil: uniform).
    public var minSNRGamma: Double? = nil
    /// The β schedule of a new model: one of `betaSchedules` (diffusers' names, or "notebook").
    public var betaSchedule = "linear"
    /// The values of `betaSchedule`: diffusers' schedules and the TensorFlow notebook's.
    public static let betaSchedules = ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "notebook"]
    /// Train on the continuous cosine schedule (diffusion time in [0, 1]) instead of β_t.
    public var continuousTime = false
    /// T, the training timesteps of the discrete schedule.
    public var trainTimesteps = 1000
    /// Class-conditional training (labels from the data; the null class is the last embedding).
    public var classConditional = false
    /// Probability of replacing a label by the null class (for classifier-free guidance).
    public var labelDropout: Float = 0.1
    /// Mirror each training image left–right with probability ½.
    public var horizontalFlip = false
    /// Seeds the initial weights, the data order and flips, and every step's timesteps and noise.
    public var seed: UInt64 = 0
    /// Write a checkpoint every this many steps (and at the last step).
    public var checkpointEvery = 500
    /// Checkpoints kept in the run folder; older ones are removed.
    public var keepCheckpoints = 3
    /// Write a grid of samples every this many steps (0: never).
    public var sampleEvery = 500
    /// Log the loss every this many steps (and at the last step).
    public var logEvery = 10
    /// Where a fine-tuning run's weights came from (nil: a fresh initialisation).
    public var initializedFrom: InitialWeights? = nil
    /// The compute precision of the run's steps (nil: float32): `haze train --precision`, kept so
    /// that a resumed run computes as the uninterrupted one (`Precision.current` is set by the caller).
    public var precision: Precision? = nil
    /// The scheduler config of the model being fine-tuned, which replaces the one that
    /// `betaSchedule`, `trainTimesteps` and `objective` describe (nil: a new model's).
    public var inheritedScheduler: SchedulerConfig? = nil

    /// The model folder a run started from, and the SHA-256 of its weights file.
    public struct InitialWeights: Codable, Equatable, Sendable {
        /// The model folder the weights were read from.
        public var path: String
        /// SHA-256 of its weights file, hexadecimal.
        public var weightsSHA256: String
        /// A record of weights taken from `path`, whose weights file hashes to `weightsSHA256`.
        public init(path: String, weightsSHA256: String) { (self.path, self.weightsSHA256) = (path, weightsSHA256) }
    }

    /// Options with the defaults above for `steps` optimizer steps on `data`.
    public init(data: String, steps: Int) { (self.data, self.steps) = (data, steps) }

    /// The scheduler config written next to each checkpoint (DDPM with this run's betas).
    public var schedulerConfig: SchedulerConfig {
        if let inheritedScheduler { return inheritedScheduler }
        if betaSchedule == "notebook" { return Self.notebookSchedule(trainTimesteps: trainTimesteps, objective: objective) }
        var c = SchedulerConfig(kind: continuousTime ? .continuousDDIM : .ddpm)
        c.numTrainTimesteps = trainTimesteps
        c.betaSchedule = betaSchedule
        if betaSchedule == "scaled_linear" { (c.betaStart, c.betaEnd) = (0.00085, 0.012) }
        c.predictionType = objective
        return c
    }

    /// The TensorFlow notebook's schedule and sampler as diffusers' DDIM: ᾱ shifted by one
    /// (ᾱ₀ = 1, ᾱ_t = ∏_{s<t} (1 − β_s) for β = linspace(1e-4, 0.02, T)), expressed as trained
    /// betas [0, β₀, …, β_{T−2}]; with `--steps 200` and "leading" spacing the timesteps are
    /// 995, 990, …, 5, 0, and no clipping — the notebook's 200-step loop, which calls the network at
    /// all but t = 0, where ᾱ = 1 and the step returns x̂₀ of t = 5 unchanged (the sampling loop
    /// skips that call: `Scheduler.needsModelOutput`; Documentation/tf-article-network.md, §6 and §12).
    public static func notebookSchedule(trainTimesteps: Int = 1000, objective: PredictionType = .epsilon) -> SchedulerConfig {
        var c = SchedulerConfig(kind: .ddim)
        c.numTrainTimesteps = trainTimesteps
        let betas = (0..<(trainTimesteps - 1)).map { Float(1e-4 + (0.02 - 1e-4) * Double($0) / Double(trainTimesteps - 1)) }
        c.trainedBetas = [0] + betas
        (c.timestepSpacing, c.stepsOffset, c.clipSample, c.setAlphaToOne, c.predictionType) = (.leading, 0, false, true, objective)
        return c
    }
}
