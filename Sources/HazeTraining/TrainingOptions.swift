import HazeDiffusion
import HazeNN

/// Everything that defines a training run besides the model config. Stored in every
/// checkpoint's trainer_state.json, so `--resume` continues with the same settings.
public struct TrainingOptions: Codable, Equatable, Sendable {
    public var data: String
    /// Image folders: side of the square training images, labels from subfolders, and
    /// whether undecodable images are skipped (reported) rather than fatal.
    public var imageSize: Int? = nil
    public var labelsFromFolders = false
    public var skipCorruptImages = false
    /// Total optimizer steps (also when resuming).
    public var steps: Int
    public var batchSize = 64
    public var gradientAccumulation = 1
    public var learningRate: Float = 2e-4
    /// The optimizer (nil, as in runs made before this option: AdamW).
    public var optimizer: AdamOptimizer.Variant? = nil
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var weightDecay: Float = 0.01
    public var epsilon: Float = 1e-8
    public var warmupSteps = 0
    public var learningRateShape: LearningRateSchedule.Shape = .constant
    /// Clip gradients to this global L2 norm (nil: no clipping).
    public var gradientClip: Float? = 1
    /// EMA of the weights (nil: none), with diffusers' warmup.
    public var emaDecay: Float? = 0.9999
    /// The power of the EMA's warm-up, d = 1 − (1 + n)^(−power) (nil, as in runs made before this
    /// option: 2/3, EMAModel's default; `haze train` gives 3/4, diffusers' training scripts' value).
    public var emaPower: Float? = nil
    var emaWarmupPower: Float { emaPower ?? 2 / 3 }
    public var objective: PredictionType = .epsilon
    /// γ of min-SNR-γ loss weighting (nil: uniform).
    public var minSNRGamma: Double? = nil
    public var betaSchedule = "linear"
    /// The values of `betaSchedule`: diffusers' schedules and the TensorFlow notebook's.
    public static let betaSchedules = ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "notebook"]
    /// Train on the continuous cosine schedule (diffusion time in [0, 1]) instead of β_t.
    public var continuousTime = false
    public var trainTimesteps = 1000
    /// Class-conditional training (labels from the data; the null class is the last embedding).
    public var classConditional = false
    /// Probability of replacing a label by the null class (for classifier-free guidance).
    public var labelDropout: Float = 0.1
    public var horizontalFlip = false
    public var seed: UInt64 = 0
    public var checkpointEvery = 500
    public var keepCheckpoints = 3
    public var sampleEvery = 500
    public var logEvery = 10
    /// Where a fine-tuning run's weights came from (nil: a fresh initialisation).
    public var initializedFrom: InitialWeights? = nil
    /// The scheduler config of the model being fine-tuned, which replaces the one that
    /// `betaSchedule`, `trainTimesteps` and `objective` describe (nil: a new model's).
    public var inheritedScheduler: SchedulerConfig? = nil

    /// The model folder a run started from, and the SHA-256 of its weights file.
    public struct InitialWeights: Codable, Equatable, Sendable {
        public var path: String
        public var weightsSHA256: String
        public init(path: String, weightsSHA256: String) { (self.path, self.weightsSHA256) = (path, weightsSHA256) }
    }

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
    /// betas [0, β₀, …, β_{T−2}]; with `--steps 199`, "leading" spacing and steps_offset 5 call the
    /// network at t = 995, 990, …, 5, and no clipping — the notebook's 200-step loop
    /// (Documentation/tf-article-network.md, §6 and §12).
    public static func notebookSchedule(trainTimesteps: Int = 1000, objective: PredictionType = .epsilon) -> SchedulerConfig {
        var c = SchedulerConfig(kind: .ddim)
        c.numTrainTimesteps = trainTimesteps
        let betas = (0..<(trainTimesteps - 1)).map { Float(1e-4 + (0.02 - 1e-4) * Double($0) / Double(trainTimesteps - 1)) }
        c.trainedBetas = [0] + betas
        (c.timestepSpacing, c.stepsOffset, c.clipSample, c.setAlphaToOne, c.predictionType) = (.leading, 5, false, true, objective)
        return c
    }
}
