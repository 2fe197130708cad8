import ArgumentParser
import Foundation
import HazeData
import HazeDistributed
import HazeDiffusion
import HazeIO
import HazeNN
import HazeTensor
import HazeTraining

/// `haze train`: trains a U-Net on images, with checkpoints that resume exactly.
struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train a diffusion model (DDPM objective) on Fashion-MNIST, MNIST or an image folder.",
        discussion: """
        Writes RUN_DIR/checkpoints/step-N/{model,ema} (diffusers folders), optimizer and trainer state, RUN_DIR/latest, \
        metrics.jsonl, loss.svg, samples/step-N.png and TensorBoard events. Ctrl-C saves a checkpoint and stops. Examples:
          haze train --data fashion-mnist --out runs/fm1 --preset fmnist-small --steps 20000
          haze train --resume runs/fm1 --steps 40000
          haze train --init-from ~/ddpm-cifar10-32 --data my-images/ --out runs/ft1 --steps 2000 --lr 1e-5
        Fine-tuning (--init-from) takes the architecture from the model's config.json and the noise schedule and \
        objective from its scheduler config; the run records the folder and the SHA-256 of its weights.
        """)

    @Option(help: "fashion-mnist, a folder of MNIST-style IDX files, or a folder of PNG/JPEG images.")
    var data: String?
    @Option(help: "Image folders: side of the square training images (default: the smallest image side).")
    var imageSize: Int?
    @Flag(help: "Image folders: class labels from the first-level subfolder names.")
    var labelsFromFolders = false
    @Flag(help: "Image folders: skip images that cannot be decoded (each is reported) instead of stopping.")
    var skipCorrupt = false
    @Option(help: "The run folder to create.")
    var out: String?
    @Option(help: "Continue the run in this folder from its latest checkpoint (with its settings).")
    var resume: String?
    @Option(help: "Fine-tune: start from the weights of this model — a diffusers UNet2DModel folder, a saved pipeline (model_index.json, unet/, scheduler/), a notebook folder, or a Haze run (its raw weights; see --init-from-ema).")
    var initFrom: String?
    @Flag(help: "With --init-from RUN: start from the run's EMA weights.")
    var initFromEma = false
    @Option(help: "Model preset: fmnist-tiny, fmnist-small (default), fmnist-large, tf-article (the TensorFlow notebook's own U-Net, layer for layer), tf-article-simple (the article text's variant of it: BatchNorm, no attention), tf-article-diffusers (a diffusers UNet2DModel with linear attention in the notebook's spirit).")
    var preset: String?
    @Option(help: "A model config.json instead of a preset: diffusers' UNet2DModel, or _class_name TFArticleUNet.")
    var modelConfig: String?
    @Option(help: "Total optimizer steps (also when resuming).")
    var steps: Int?
    @Option(help: "Images per step.") var batchSize = 64
    @Option(help: "adamw (PyTorch's, decoupled weight decay), adam (PyTorch's, L2 weight decay) or adam-keras (Keras' Adam: ε added to √v before the bias correction, as the TensorFlow notebook trains).")
    var optimizer = "adamw"
    @Option(help: "Peak learning rate.") var lr: Float = 2e-4
    @Option(help: "Adam β₁,β₂.") var betas = "0.9,0.999"
    @Option(help: "Weight decay (decoupled for adamw, an L2 penalty otherwise).") var weightDecay: Float = 0.01
    @Option(help: "Adam ε.") var adamEpsilon: Float = 1e-8
    @Option(help: "Linear warmup steps.") var warmup = 0
    @Option(help: "constant or cosine decay after warmup.") var lrSchedule = "constant"
    @Option(help: "Clip gradients to this global norm (0: off).") var gradClip: Float = 1
    @Option(help: "Micro-batches accumulated per step.") var gradAccumulation = 1
    @Option(help: "EMA decay of the weights (0: no EMA).") var emaDecay: Float = 0.9999
    @Option(help: "EMA warm-up power: decay 1 − (1 + n)^(−power) after n updates, capped by --ema-decay (diffusers' training scripts: 3/4).")
    var emaPower: Float = 0.75
    @Option(help: "epsilon, v_prediction or sample (default: epsilon; with --init-from, the model's).") var objective: String?
    @Option(help: "Min-SNR-γ loss weighting (e.g. 5; default uniform).") var minSnrGamma: Double?
    @Option(help: "linear (default), scaled_linear, squaredcos_cap_v2, sigmoid, or notebook (the TensorFlow notebook's ᾱ, shifted by one; sample with --scheduler ddim --steps 200). With --init-from: the model's.")
    var betaSchedule: String?
    @Flag(help: "The TensorFlow notebook's training run: its tf-article network (unless --model-config), its schedule (--beta-schedule notebook), Keras' Adam (--optimizer adam-keras) lr 1e-4 (ε 1e-7, no weight decay), batch 32, no EMA, no clipping, no warm-up. Overrides those options.")
    var notebookRecipe = false
    @Option(help: "Training timesteps T (default 1000; with --init-from, the model's).") var trainTimesteps: Int?
    @Flag(help: "Continuous-time cosine schedule (diffusion time in [0, 1], as the Keras DDIM example) instead of β_t.")
    var continuousSchedule = false
    @Flag(help: "Class-conditional training with the data's labels (for classifier-free guidance).") var classConditional = false
    @Option(help: "Probability of dropping a label to the null class.") var labelDropout: Float = 0.1
    @Flag(help: "Random horizontal flips.") var flip = false
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(help: "Checkpoint every N steps.") var checkpointEvery = 500
    @Option(help: "Checkpoints kept.") var keepCheckpoints = 3
    @Option(help: "Sample grid every N steps (0: never).") var sampleEvery = 500
    @Option(help: "Log every N steps.") var logEvery = 10
    @Flag(help: "Do not write TensorBoard event files.") var noTensorboard = false
    @Option(help: "Stop (with a checkpoint) after this many minutes of training.") var maxMinutes: Double?
    @Flag(help: "With --resume: continue although the data differs from what the checkpoint was trained on.")
    var acceptChangedData = false
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOption

    func validate() throws {
        if resume == nil && (data == nil || out == nil) { throw ValidationError("give --data and --out (or --resume RUN_DIR)") }
        if resume != nil && out != nil { throw ValidationError("--resume continues a run in place: do not give --out") }
        if preset != nil && modelConfig != nil { throw ValidationError("give --preset or --model-config, not both") }
        if initFrom != nil {
            if resume != nil { throw ValidationError("--init-from starts a new run; --resume continues one: give one of them") }
            if preset != nil || modelConfig != nil {
                throw ValidationError("--init-from takes the architecture from the model's config.json: do not give --preset or --model-config")
            }
            if continuousSchedule || betaSchedule != nil || trainTimesteps != nil {
                throw ValidationError("--init-from keeps the noise schedule the model was trained with: do not give --beta-schedule, --train-timesteps or --continuous-schedule")
            }
        }
        if initFromEma && initFrom == nil { throw ValidationError("--init-from-ema goes with --init-from RUN") }
        if !(0...1).contains(emaPower) || emaPower == 0 { throw ValidationError("--ema-power must be in (0, 1]") }
        if let preset, ModelPreset(rawValue: preset) == nil {
            throw ValidationError("unknown --preset \(preset) (\(ModelPreset.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        if resume == nil && steps == nil { throw ValidationError("give --steps (the total number of optimizer steps)") }
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1") }
        if batchSize < 1 || gradAccumulation < 1 || checkpointEvery < 1 || logEvery < 1 { throw ValidationError("sizes and intervals must be at least 1") }
        if AdamOptimizer.Variant(rawValue: optimizer) == nil {
            throw ValidationError("--optimizer must be \(AdamOptimizer.Variant.allCases.map(\.rawValue).joined(separator: ", ")), not \(optimizer)")
        }
        if let objective, PredictionType(rawValue: objective) == nil { throw ValidationError("--objective must be epsilon, v_prediction or sample") }
        if LearningRateSchedule.Shape(rawValue: lrSchedule) == nil { throw ValidationError("--lr-schedule must be constant or cosine") }
        if let betaSchedule, !TrainingOptions.betaSchedules.contains(betaSchedule) {
            throw ValidationError("--beta-schedule must be linear, scaled_linear, squaredcos_cap_v2, sigmoid or notebook, not \(betaSchedule)")
        }
        if let trainTimesteps, !(2...SchedulerConfig.maximumTrainTimesteps).contains(trainTimesteps) {
            throw ValidationError("--train-timesteps must be 2…\(SchedulerConfig.maximumTrainTimesteps), not \(trainTimesteps)")
        }
        if notebookRecipe && (classConditional || continuousSchedule) { throw ValidationError("--notebook-recipe trains the notebook's unconditional discrete-time model") }
    }

    func run() throws {
        // A resumed run keeps its precision unless --precision changes it.
        let saved = try resume.map { try Checkpoint.readState(try Checkpoint.latest(run: $0)).options.precision ?? .float32 }
        let chosen = try precision.apply(fallback: saved ?? .float32)
        if let saved, saved != chosen {
            FileHandle.standardError.write(Data("note: \(resume!) was trained in \(saved.rawValue); it continues in \(chosen.rawValue), so its steps from here differ from an uninterrupted run\n".utf8))
        }
        try compute.apply(report: true)
        signal(SIGINT) { _ in trainingStopRequested = 1 }
        signal(SIGTERM) { _ in trainingStopRequested = 1 }
        try runOnEveryRank(train)
    }

    /// Trains on every rank of `group` (one process without mpirun); rank 0 writes and reports.
    func train(_ group: ProcessGroup) throws {
        func say(_ text: String) { if group.isRoot { FileHandle.standardError.write(Data(text.utf8)) } }
        let trainer: Trainer
        if let resume {
            let path = try Checkpoint.latest(run: resume)
            let saved = try Checkpoint.read(path)
            var options = saved.state.options
            if let steps { options.steps = steps }
            options.precision = Precision.current == .float32 ? nil : Precision.current
            let dataset = try openDataset(options.data, imageSize: options.imageSize, labeled: options.labelsFromFolders,
                                          skipCorrupt: options.skipCorruptImages)
            try group.requireAgreement(on: try agreementParts(options: options, model: saved.model, dataset: dataset,
                                                              checkpoint: path))
            trainer = try Trainer(run: resume, model: saved.model, options: options, dataset: dataset,
                                  resume: (saved.parameters, saved.ema, saved.optimizer, saved.state), acceptChangedData: acceptChangedData,
                                  tensorboard: !noTensorboard, group: group)
            say("resuming \(resume) at step \(saved.state.step) of \(options.steps)\n")
        } else {
            // A model to fine-tune comes first: it fixes the image size of an image folder.
            let start = try initFrom.map { try initialModel($0) }
            let dataset = try openDataset(data!, imageSize: imageSize ?? start?.model.sampleSize?[0], labeled: labelsFromFolders,
                                          skipCorrupt: skipCorrupt)
            if let folder = dataset as? ImageFolderDataset {
                for problem in folder.skipped { say("skipped \(problem)\n") }
            }
            var options = try trainingOptions()
            var model: any DenoisingModel
            if let start {
                model = start.model
                options.initializedFrom = start.source
                if let scheduler = start.scheduler {
                    if let objective, objective != scheduler.predictionType.rawValue {
                        throw CLIError("--objective \(objective): \(start.source.path) was trained to predict \(scheduler.predictionType.rawValue) (its scheduler config); fine-tuning keeps that")
                    }
                    options.inheritedScheduler = scheduler
                    (options.objective, options.trainTimesteps, options.betaSchedule) = (scheduler.predictionType, scheduler.numTrainTimesteps, scheduler.betaSchedule)
                    options.continuousTime = scheduler.kind == .continuousDDIM
                }
                if model.isClassConditional && dataset.classCount == nil {
                    throw CLIError("\(start.source.path) is class-conditional, and \(data!) has no labels (image folders: --labels-from-folders)")
                }
                if !model.isClassConditional && classConditional {
                    throw CLIError("--class-conditional: \(start.source.path) takes no class labels")
                }
                options.classConditional = model.isClassConditional
            } else {
                let named = ModelPreset(rawValue: preset ?? (notebookRecipe ? "tf-article" : "fmnist-small"))!
                if let modelConfig {
                    model = try ModelFolder.model(configFile: modelConfig)
                } else {
                    model = try named.model(channels: dataset.imageShape[0], size: dataset.imageShape[1])
                }
                if classConditional && modelConfig == nil {
                    guard named != .tfArticle && named != .tfArticleSimple else {
                        throw CLIError("the \(named.rawValue) network takes no class labels: train it without --class-conditional")
                    }
                    var config = named.config(channels: dataset.imageShape[0], size: dataset.imageShape[1])
                    config.numClassEmbeds = (dataset.classCount ?? 0) + 1
                    model = try UNet2DModel(config: config)
                }
            }
            // Every rank looks before any rank writes.
            let taken = group.any((try? Checkpoint.latest(run: out!)) != nil)
            guard !taken else {
                throw CLIError("\(out!) already holds a run: use --resume \(out!) to continue it, or another --out")
            }
            try group.requireAgreement(on: try agreementParts(options: options, model: model, dataset: dataset, checkpoint: nil))
            trainer = try Trainer(run: out!, model: model, options: options, dataset: dataset, initialParameters: start?.parameters,
                                  tensorboard: !noTensorboard, group: group)
            if let source = options.initializedFrom { say("fine-tuning \(source.path) (weights sha256 \(source.weightsSHA256.prefix(16))…)\n") }
            say("training \(model.parameterCount) parameters on \(dataset.count) images \(dataset.imageShape)"
                + (group.size > 1 ? ", \(group.size) ranks of \(options.batchSize / group.size)–\((options.batchSize + group.size - 1) / group.size) images per step" : "") + "\n")
        }
        let bar = ProgressBar("training", total: trainer.options.steps, enabled: group.isRoot)
        let deadline = maxMinutes.map { Date().addingTimeInterval($0 * 60) }
        try trainer.train(deadline: deadline, onStep: { report in
            bar.update(report.step, extra: String(format: "loss %.4f  lr %.2e", report.loss, report.learningRate))
        }, preview: { step, weights in
            try writePreview(trainer: trainer, weights: weights, step: step)
        })
        if trainer.step < trainer.options.steps && (deadline.map { Date() < $0 } ?? true) {
            say("\nstopped at step \(trainer.step): checkpoint saved; continue with haze train --resume \(trainer.run)\n")
            group.finish()
            throw ExitCode(130)
        }
        if group.isRoot {
            print("done: \(trainer.step) steps; model in \(trainer.run)/\(try Checkpoint.latest(run: trainer.run).dropFirst(trainer.run.count + 1))")
        }
    }

    /// The options of a new run from the command line.
    func trainingOptions() throws -> TrainingOptions {
        var options = TrainingOptions(data: data!, steps: steps!)
        (options.imageSize, options.labelsFromFolders, options.skipCorruptImages) = (imageSize, labelsFromFolders, skipCorrupt)
        let b = try parseNumbers(betas, option: "--betas")
        guard b.count == 2 else { throw ValidationError("--betas expects two numbers, e.g. 0.9,0.999") }
        options.batchSize = batchSize; options.gradientAccumulation = gradAccumulation
        options.optimizer = AdamOptimizer.Variant(rawValue: optimizer)!
        options.learningRate = lr; (options.beta1, options.beta2) = (b[0], b[1])
        options.weightDecay = weightDecay; options.epsilon = adamEpsilon; options.warmupSteps = warmup
        options.learningRateShape = LearningRateSchedule.Shape(rawValue: lrSchedule)!
        options.gradientClip = gradClip > 0 ? gradClip : nil
        options.emaDecay = emaDecay > 0 ? emaDecay : nil
        options.emaPower = emaPower
        options.objective = PredictionType(rawValue: objective ?? "epsilon")!
        options.minSNRGamma = minSnrGamma; options.betaSchedule = betaSchedule ?? "linear"; options.trainTimesteps = trainTimesteps ?? 1000
        options.continuousTime = continuousSchedule
        options.classConditional = classConditional; options.labelDropout = labelDropout; options.horizontalFlip = flip
        if notebookRecipe {
            (options.betaSchedule, options.learningRate, options.epsilon, options.weightDecay) = ("notebook", 1e-4, 1e-7, 0)
            options.optimizer = .adamKeras
            (options.batchSize, options.emaDecay, options.gradientClip, options.warmupSteps) = (32, nil, nil, 0)
            (options.learningRateShape, options.gradientAccumulation, options.minSNRGamma, options.objective) = (.constant, 1, nil, .epsilon)
        }
        options.seed = seed; options.checkpointEvery = checkpointEvery; options.keepCheckpoints = keepCheckpoints
        options.sampleEvery = sampleEvery; options.logEvery = logEvery
        options.precision = Precision.current == .float32 ? nil : Precision.current
        return options
    }

    /// The model, weights and scheduler config to fine-tune (`--init-from`), and what the run records
    /// of where they came from.
    func initialModel(_ path: String) throws -> (model: any DenoisingModel, parameters: ParameterSet, scheduler: SchedulerConfig?,
                                                 source: TrainingOptions.InitialWeights) {
        let location = try ModelLocation.resolve(path, weights: initFromEma ? .ema : .raw)
        let (model, parameters) = try ModelFolder.loadModel(location.folder)
        let scheduler = try location.schedulerConfig.map { try SchedulerConfig(contentsOf: $0) }
        return (model, parameters, scheduler, .init(path: location.folder, weightsSHA256: try SHA256.hex(ofFile: location.weightsFile)))
    }

    /// What every rank must agree on (`ProcessGroup.requireAgreement`): the options, the model,
    /// the checkpoint resumed from, and the data (`dataFingerprint`: different files on two hosts
    /// are caught here).
    func agreementParts(options: TrainingOptions, model: any DenoisingModel, dataset: ImageDataset,
                        checkpoint: String?) throws -> [(name: String, value: String)] {
        // One part per option, so that the message names the option that differs.
        let encoded = try JSONSerialization.jsonObject(with: try JSONEncoder().encode(options)) as? [String: Any] ?? [:]
        let optionParts = encoded.keys.sorted().map { (name: "option \($0)", value: "\(encoded[$0]!)") }
        return optionParts + [("the model", String(decoding: model.configData(), as: UTF8.self)),
                              ("the checkpoint", checkpoint ?? "(new run)"), ("the data", dataFingerprint(dataset))]
    }

    /// A 4×4 grid of DDIM samples (25 steps, fixed seed) from the given weights.
    func writePreview(trainer: Trainer, weights: ParameterSet, step: Int) throws {
        var config = trainer.options.schedulerConfig
        if config.kind == .ddpm { config.kind = .ddim }
        let scheduler = makeScheduler(config)
        let model = trainer.model
        let shape = [16, model.inChannels] + (model.sampleSize ?? [28, 28])
        let labels = model.classTableSize.map { classes in (0..<16).map { $0 % max(classes - 1, 1) } }
        var generator = RandomGenerator(seed: 1234)
        let images = try SamplingLoop(scheduler: scheduler) { x, t, l in
            model(x, timesteps: t, classLabels: l, parameters: weights)
        }.run(shape: shape, steps: 25, classLabels: labels, generator: &generator).clamped(min: -1, max: 1)
        try FileManager.default.createDirectory(atPath: trainer.run + "/samples", withIntermediateDirectories: true)
        let path = trainer.run + String(format: "/samples/step-%07d.png", step)
        try PNG.writeGrid(images, to: path, columns: 4)
        if let tensorboard = trainer.tensorboardWriter {
            let grid = PNG.grid(images, columns: 4)
            tensorboard.image("samples", png: PNG.encode(width: grid.width, height: grid.height, channels: shape[1], pixels: grid.pixels),
                              width: grid.width, height: grid.height, channels: shape[1], step: step)
        }
    }
}
