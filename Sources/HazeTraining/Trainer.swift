import Foundation
import HazeData
import HazeDistributed
import HazeDiffusion
import HazeIO
import HazeNN
import HazeTensor

/// Set by SIGINT/SIGTERM; the training loop checkpoints and stops at the end of the step.
nonisolated(unsafe) public var trainingStopRequested: sig_atomic_t = 0

/// A training run: the DDPM objective (Ho et al. 2020, Algorithm 1) with ε, v or x₀ targets,
/// optional min-SNR-γ weighting, AdamW, gradient clipping and accumulation, EMA, class labels
/// with dropout for classifier-free guidance; checkpoints that resume bit for bit.
///
/// Data parallel over the ranks of `group` (MPI): `batchSize` is the global batch; each rank
/// computes its slice (`ProcessGroup.share`: contiguous, the first `B mod N` ranks one item more,
/// so any B ≥ N works), and the gradients are summed over ranks (`GradientReducer`, overlapped
/// with the backward pass) before clipping and AdamW. Every random number of item i of a step —
/// its timestep, noise and label dropout — and its place in the data order and its flip are
/// functions of (seed, step, i) alone, and the loss is normalised by the global batch, so N ranks
/// compute the 1-rank run up to the order of the gradient sums. Rank 0 alone writes files.
/// BatchNorm (the seed article's variant) normalises by the statistics of each rank's slice, and
/// the running statistics are rank 0's, broadcast after every step (PyTorch DDP's defaults, without
/// SyncBatchNorm); so for BatchNorm models, unlike GroupNorm ones, N changes the mathematics.
public final class Trainer {
    /// A run that cannot start or continue: a mismatch between the run and the data or options, or
    /// a failed step; the description says what and what to do.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
        /// A failure with the message `description`.
        public init(description: String) { self.description = description }
    }

    /// What the caller hears about after each step and checkpoint.
    public struct Report {
        /// The step just taken, counted from 1 (the optimizer steps completed).
        public let step: Int
        /// The step's loss, the mean over the global batch (and micro-batches).
        public let loss: Float
        /// The learning rate of the step's update.
        public let learningRate: Float
        /// The global L2 norm of the step's gradient before clipping.
        public let gradientNorm: Float
    }

    /// The inputs of one micro-batch: clean images, their labels after dropout, and per item the
    /// signal and noise rates of q(x_t | x₀), the network's timestep and the noise ε.
    struct MicroBatch {
        var images: Tensor
        var labels: [Int]?
        var signal: [Float], noiseRate: [Float], modelTimesteps: [Float]
        var noise: [Float]
    }

    /// A micro-batch recorded elsewhere (a test seam, not a user option): the lockstep test feeds
    /// the batches, timesteps, noise and label-dropout coins that PyTorch's run recorded in place
    /// of the data loader and the per-item random streams.
    struct RecordedMicroBatch {
        var images: Tensor
        var labels: [Int]?
        var timesteps: [Int]
        var noise: Tensor
        var dropCoins: [Float]
    }
    /// Set by tests: the recorded micro-batch `micro` of step `step` (0-based).
    var recordedInputs: ((_ step: Int, _ micro: Int) -> RecordedMicroBatch)?

    /// The run folder.
    public let run: String
    /// The network being trained.
    public let model: any DenoisingModel
    /// The current trained weights (and BatchNorm buffers) by state-dict key.
    public private(set) var parameters: ParameterSet
    /// The EMA of the weights, or nil when `options.emaDecay` is nil.
    public private(set) var ema: ExponentialMovingAverage?
    /// The optimizer with its moments.
    public private(set) var optimizer: AdamOptimizer
    /// Optimizer steps completed.
    public private(set) var step: Int
    /// The run's settings (on resume, those of its checkpoint).
    public let options: TrainingOptions
    let schedule: NoiseSchedule
    let loader: DataLoader
    let log: TrainingLog
    let tensorboard: TensorBoardWriter?
    /// The TensorBoard event writer (on rank 0, when TensorBoard logging was asked for), else nil.
    public var tensorboardWriter: TensorBoardWriter? { tensorboard }
    let trainableNames: [String]
    var trainableSet: Set<String> { Set(trainableNames) }
    var lastCheckpointStep: Int?
    /// The processes training together (one, unless started by mpirun).
    public let group: ProcessGroup
    /// Rank 0's claim on the run folder.
    let lock: RunLock?
    /// `dataFingerprint` of the training data, recorded in every checkpoint.
    let fingerprint: String
    let reducer: GradientReducer
    /// Seconds the steps so far waited for gradient sums still in flight after their backward
    /// pass (the communication not hidden behind it; 0 for one process).
    public var exposedCommunicationSeconds: Double { reducer.exposedSeconds }

    /// A new run in `run` (created), or the continuation of a checkpoint (`resume`). A new run
    /// starts from `initialParameters` when given (fine-tuning: the EMA starts from them too),
    /// else from the model's seeded initialisation. A resumed run must see the data its checkpoint
    /// was trained on unless `acceptChangedData`. Nothing is written before the checks pass, and
    /// rank 0 holds the run folder's lock (`RunLock`) from then on. `gradientBucketBytes`: the size
    /// at which a bucket of gradients starts its allreduce (`GradientReducer`; `Int.max`: one bucket
    /// after the backward pass, no overlap).
    public init(run: String, model: any DenoisingModel, options: TrainingOptions, dataset: ImageDataset,
                resume: (parameters: ParameterSet, ema: ParameterSet?, optimizer: AdamOptimizer, state: TrainerState)? = nil,
                initialParameters: ParameterSet? = nil, acceptChangedData: Bool = false, tensorboard: Bool = true,
                group: ProcessGroup = ProcessGroup(), gradientBucketBytes: Int = 4 << 20) throws {
        guard options.batchSize >= group.size else {
            throw Failure(description: "--batch-size \(options.batchSize) is smaller than the \(group.size) ranks: every rank needs at least one item")
        }
        (self.run, self.model, self.options, self.group) = (run, model, options, group)
        reducer = GradientReducer(group: group, bucketBytes: gradientBucketBytes)
        let items = group.share(of: options.batchSize)
        let shape = dataset.imageShape
        guard shape[0] == model.inChannels, model.sampleSize.map({ $0 == [shape[1], shape[2]] }) ?? true else {
            throw Failure(description: "the data has images \(shape) but the model takes \(model.inChannels) channels of \(model.sampleSize ?? [])")
        }
        if model.isClassConditional && !options.classConditional {
            throw Failure(description: "the model is class-conditional: train it with class labels (--class-conditional and labeled data)")
        }
        if options.classConditional {
            guard let classes = dataset.classCount else { throw Failure(description: "class-conditional training needs labeled data") }
            guard model.classTableSize == classes + 1 else {
                throw Failure(description: "the model has \(model.classTableSize.map(String.init) ?? "no") class embeddings; class-conditional training on \(classes) classes needs \(classes + 1) (the last is the null class)")
            }
        }
        if let initialParameters { try ModelFolder.checkShapes(initialParameters.mapValues(\.shape), for: model, file: "the initial weights") }
        fingerprint = dataFingerprint(dataset)
        if let saved = resume?.state.dataFingerprint, saved != fingerprint, !acceptChangedData {
            throw Failure(description: "\(options.data): the data changed since the checkpoint (then: \(saved); now: \(fingerprint)). "
                          + "Resume with the data the run was trained on, or accept the change with --accept-changed-data")
        }
        // Nothing is written before the checks above.
        if group.isRoot {
            do {
                try FileManager.default.createDirectory(atPath: run, withIntermediateDirectories: true)
            } catch {
                throw Failure(description: "\(run): cannot create the run folder (\((error as NSError).localizedDescription))")
            }
            lock = try RunLock(run: run)
        } else {
            lock = nil
        }
        schedule = options.schedulerConfig.noiseSchedule
        let trainable = Set(model.parameterSpecs.filter { !$0.isBuffer }.map(\.name))
        trainableNames = trainable.sorted()
        log = TrainingLog(run: run)
        if let resume {
            parameters = resume.parameters
            optimizer = resume.optimizer
            step = resume.state.step
            let start = (resume.ema ?? resume.parameters).filter { trainable.contains($0.key) }
            ema = options.emaDecay.map {
                ExponentialMovingAverage(start, maxDecay: $0, power: options.emaWarmupPower, updates: resume.state.emaUpdates)
            }
            loader = DataLoader(dataset: dataset, batchSize: options.batchSize, seed: options.seed, flip: options.horizontalFlip,
                                start: .init(epoch: resume.state.data.epoch, index: resume.state.data.index), items: items)
            lastCheckpointStep = step
            if group.isRoot { try log.truncate(from: step + 1) }
        } else {
            parameters = initialParameters ?? model.initialParameters(seed: options.seed)
            optimizer = AdamOptimizer(options.optimizer ?? .adamW, learningRate: options.learningRate, beta1: options.beta1,
                                      beta2: options.beta2, epsilon: options.epsilon, weightDecay: options.weightDecay)
            step = 0
            let start = parameters.filter { trainable.contains($0.key) }
            ema = options.emaDecay.map { ExponentialMovingAverage(start, maxDecay: $0, power: options.emaWarmupPower) }
            // A folder without a checkpoint may hold the log of a run killed before its first one.
            if group.isRoot { try log.truncate(from: 1) }
            loader = DataLoader(dataset: dataset, batchSize: options.batchSize, seed: options.seed, flip: options.horizontalFlip,
                                items: items)
        }
        self.tensorboard = tensorboard && group.isRoot ? try TensorBoardWriter(folder: run + "/tensorboard") : nil
    }

    var learningRates: LearningRateSchedule {
        LearningRateSchedule(peak: options.learningRate, warmupSteps: options.warmupSteps, shape: options.learningRateShape,
                             totalSteps: options.steps)
    }

    /// The random stream of step `s`: keyed by (seed, s), so a resumed run draws the same numbers.
    func generator(forStep s: Int) -> RandomGenerator {
        RandomGenerator(seed: options.seed &* 0x9E37_79B9_7F4A_7C15 ^ (UInt64(s) &+ 0x5EED))
    }

    /// The stream of item `item` of micro-batch `micro` in step `s`: step s's key, with 2³² blocks
    /// of the counter to each item (after the first 2³², which the step's own stream uses for
    /// dropout), so an item draws the same numbers on whatever rank computes it.
    func generator(forStep s: Int, micro: Int, item: Int) -> RandomGenerator {
        let stream = generator(forStep: s)
        return RandomGenerator(seed: stream.seed, offset: UInt64(micro * options.batchSize + item + 1) << 32)
    }

    /// One optimizer step (with gradient accumulation) on this rank's share of the global batch,
    /// gradients summed over the ranks. Returns the mean loss over the global batch and the global
    /// L2 norm of the gradient before clipping.
    func trainStep() throws -> (loss: Float, gradientNorm: Float) {
        let names = trainableSet
        let context = ForwardContext(training: true, buffers: parameters.filter { !names.contains($0.key) },
                                     generator: generator(forStep: step))
        let items = group.share(of: options.batchSize)
        var total: [String: Tensor] = [:]
        var lossSum: Float = 0
        for micro in 0..<options.gradientAccumulation {
            let inputs = recordedInputs.map { recorded($0(step, micro)) } ?? drawInputs(loader.next(), micro: micro, items: items)
            let last = micro == options.gradientAccumulation - 1
            let (loss, gradients) = microBatchLoss(inputs, context: context) { name, g in
                // The last micro-batch hands each finished gradient to the reducer at once.
                if last { self.reducer.add(name, total[name].map { $0 + g } ?? g) }
            }
            lossSum += loss
            if !last { for (name, g) in gradients { total[name] = total[name].map { $0 + g } ?? g } }
        }
        total = reducer.finish()
        let loss = Float(group.allreduceSum([Double(lossSum)])[0]) / Float(options.gradientAccumulation)
        guard loss.isFinite else {
            throw Failure(description: "step \(step + 1): the loss is \(loss); training stopped. "
                          + (lastCheckpointStep.map { "The last good checkpoint (step \($0)) is intact. " } ?? "")
                          + "Try a lower --lr or gradient clipping.")
        }
        if options.gradientAccumulation > 1 {
            total = total.mapValues { $0 * (1 / Float(options.gradientAccumulation)) }
        }
        // Global L2 norm over all gradients; clipping as PyTorch's clip_grad_norm_ (which scales
        // by max_norm / (norm + 1e-6) only when that is below 1).
        let norm = total.keys.sorted().reduce(0.0) { $0 + total[$1]!.sumOfSquares }.squareRoot()
        if let clip = options.gradientClip, norm + 1e-6 > Double(clip) {
            let scale = Float(Double(clip) / (norm + 1e-6))
            total = total.mapValues { $0 * scale }
        }
        optimizer.learningRate = learningRates.rate(at: step)
        optimizer.update(&parameters, gradients: total)
        for (name, value) in shareBuffers(context.buffers) { parameters[name] = value }  // BatchNorm running statistics
        ema?.update(with: parameters.filter { names.contains($0.key) })
        step += 1
        return (loss, Float(norm))
    }

    /// Micro-batch `micro` of this step from the loader's batch, with this rank's items' draws, each
    /// from its own stream: signal and noise rates and the network's timestep — discrete
    /// t ~ U{0…T−1} with √ᾱ_t, √(1−ᾱ_t) (Ho et al. 2020, Algorithm 1), or continuous t ~ U[0, 1) —
    /// then the noise ε ~ N(0, I) and the label-dropout coin.
    func drawInputs(_ batch: DataLoader.Batch, micro: Int, items: Range<Int>) -> MicroBatch {
        let imageShape = Array(batch.images.shape.dropFirst())
        var inputs = MicroBatch(images: batch.images, labels: nil, signal: [], noiseRate: [], modelTimesteps: [], noise: [])
        var drop: [Float] = []
        for item in items {
            var generator = generator(forStep: step, micro: micro, item: item)
            let (s, r, t) = rates(count: 1, generator: &generator)
            inputs.signal += s; inputs.noiseRate += r; inputs.modelTimesteps += t
            inputs.noise += generator.normal(imageShape).scalars
            drop += generator.uniform([1]).scalars
        }
        inputs.labels = droppedLabels(batch.labels, coins: drop)
        return inputs
    }

    /// A recorded micro-batch (discrete timesteps) as the trainer's inputs.
    func recorded(_ r: RecordedMicroBatch) -> MicroBatch {
        let a = r.timesteps.map { schedule.alphasCumprod[$0] }
        return MicroBatch(images: r.images, labels: droppedLabels(r.labels, coins: r.dropCoins), signal: a.map { $0.squareRoot() },
                          noiseRate: a.map { (1 - $0).squareRoot() }, modelTimesteps: r.timesteps.map(Float.init), noise: r.noise.scalars)
    }

    /// Class labels for class-conditional training, each replaced by the null class (the last
    /// embedding) where its coin falls below the dropout probability (classifier-free guidance).
    func droppedLabels(_ labels: [Int]?, coins: [Float]) -> [Int]? {
        guard options.classConditional, let labels else { return nil }
        let nullClass = model.classTableSize! - 1
        return zip(labels, coins).map { $1 < options.labelDropout ? nullClass : $0 }
    }

    /// The loss of this rank's items of one micro-batch, summed and divided by the global batch,
    /// and its gradients (each also handed to `onGradientReady` as soon as it is final).
    func microBatchLoss(_ inputs: MicroBatch, context: ForwardContext,
                        onGradientReady: @escaping (String, Tensor) -> Void) -> (Float, [String: Tensor]) {
        let x0 = inputs.images
        let n = x0.shape[0]
        let epsilon = Tensor(shape: x0.shape, scalars: inputs.noise)
        let (s, r) = (Tensor(shape: [n, 1, 1, 1], scalars: inputs.signal), Tensor(shape: [n, 1, 1, 1], scalars: inputs.noiseRate))
        let xt = s * x0 + r * epsilon
        let target: Tensor
        switch options.objective {
        case .epsilon: target = epsilon
        case .vPrediction: target = s * epsilon - r * x0
        case .sample: target = x0
        }
        let labels = inputs.labels.map { Tensor($0.map(Float.init)) }
        let weights = options.minSNRGamma.map { gamma in
            Tensor(shape: [n], scalars: zip(inputs.signal, inputs.noiseRate).map { a, b in
                options.objective.minSNRWeight(snr: Double(a * a) / Double(b * b), gamma: gamma)
            })
        }
        let (buffers, names, modelTimesteps) = (context.buffers, trainableSet, inputs.modelTimesteps)
        let (loss, gradients) = valueWithGradient(at: parameters.filter { names.contains($0.key) },
                                                  onGradientReady: onGradientReady) { p in
            let prediction = model(xt, timesteps: modelTimesteps, classLabels: labels,
                                   parameters: p.merging(buffers) { a, _ in a }, context: context)
            // Per-item MSE, optionally weighted (min-SNR-γ), summed over this rank's items and
            // divided by the global batch: the ranks' sums add up to the batch mean.
            let perItem = (prediction - target).squared().mean(alongAxes: [1, 2, 3])
            return (weights.map { perItem * $0 } ?? perItem).sum() * (1 / Float(options.batchSize))
        }
        return (loss.scalar, gradients)
    }

    /// The running statistics of BatchNorm after a step: rank 0's on every rank.
    func shareBuffers(_ buffers: [String: Tensor]) -> [String: Tensor] {
        guard group.size > 1, !buffers.isEmpty else { return buffers }
        let names = buffers.keys.sorted()
        var flat = names.flatMap { buffers[$0]!.scalars }
        flat = flat.withUnsafeBytes { [UInt8](group.broadcast(Data($0))) }.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
        var offset = 0
        return Dictionary(uniqueKeysWithValues: names.map { name in
            let shape = buffers[name]!.shape, count = shape.reduce(1, *)
            defer { offset += count }
            return (name, Tensor(shape: shape, scalars: Array(flat[offset..<(offset + count)])))
        })
    }

    /// Per-item (signal rate, noise rate, network timestep) for one batch.
    func rates(count n: Int, generator: inout RandomGenerator) -> ([Float], [Float], [Float]) {
        if options.continuousTime {
            let continuous = ContinuousCosineSchedule()
            let times = generator.uniform([n]).scalars.map(Double.init)
            let r = times.map(continuous.rates)
            return (r.map { Float($0.signal) }, r.map { Float($0.noise) }, times.map(ContinuousCosineSchedule.modelTimestep))
        }
        let t = generator.integers(n, below: schedule.trainingSteps)
        return (t.map { schedule.alphasCumprod[$0].squareRoot() }, t.map { (1 - schedule.alphasCumprod[$0]).squareRoot() },
                t.map(Float.init))
    }

    /// The EMA weights with the model's buffers (what `ema/` holds).
    public var emaParameters: ParameterSet? {
        let names = trainableSet
        return ema.map { $0.weights.merging(parameters.filter { !names.contains($0.key) }) { a, _ in a } }
    }

    /// Writes a checkpoint (rank 0; the others only note the step).
    public func checkpoint() throws {
        lastCheckpointStep = step
        guard group.isRoot else { return }
        let state = TrainerState(step: step, data: .init(epoch: loaderPosition.epoch, index: loaderPosition.index), options: options,
                                 emaUpdates: ema?.updates ?? 0, randomStream: "philox4x32-10 keyed by (seed \(options.seed), step)",
                                 dataFingerprint: fingerprint)
        try Checkpoint.write(run: run, step: step, model: model, parameters: parameters, ema: emaParameters,
                             optimizer: optimizer, state: state, keep: options.keepCheckpoints)
        try log.writeLossCurve()
    }

    var loaderPosition: DataLoader.Position { loader.consumed }

    /// Trains until `options.steps` (or a stop request), checkpointing every `checkpointEvery`
    /// steps and at the end. `onStep` gets each step's report; `sampler` makes preview grids.
    /// `deadline`: stop (with a checkpoint) after the first step that ends past it.
    public func train(deadline: Date? = nil, onStep: (Report) -> Void, preview: ((Int, ParameterSet) throws -> Void)? = nil) throws {
        var intervalLoss: Float = 0, intervalSteps = 0
        var intervalStart = Date()
        while step < options.steps {
            let (loss, gradientNorm) = try trainStep()
            intervalLoss += loss; intervalSteps += 1
            let rate = learningRates.rate(at: step - 1)
            onStep(Report(step: step, loss: loss, learningRate: rate, gradientNorm: gradientNorm))
            if group.isRoot && (step % options.logEvery == 0 || step == options.steps) {
                let elapsed = Date().timeIntervalSince(intervalStart)
                let mean = intervalLoss / Float(intervalSteps)
                try log.append(step: step, values: ["loss": mean, "lr": rate, "grad_norm": gradientNorm,
                                                     "images_per_second": Double(intervalSteps * options.batchSize * options.gradientAccumulation) / max(elapsed, 1e-9)])
                tensorboard?.scalar("loss", mean, step: step)
                tensorboard?.scalar("lr", rate, step: step)
                (intervalLoss, intervalSteps, intervalStart) = (0, 0, Date())
            }
            if let preview, group.isRoot, options.sampleEvery > 0, step % options.sampleEvery == 0 {
                try preview(step, emaParameters ?? parameters)
            }
            // Collective: a signal or the deadline on any rank stops every rank after this step.
            let stop = group.any(trainingStopRequested != 0 || deadline.map { Date() >= $0 } ?? false)
            if step % options.checkpointEvery == 0 || step == options.steps || stop {
                try checkpoint()
            }
            if stop { break }
        }
    }
}
