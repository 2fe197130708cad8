import ArgumentParser
import Foundation
import HazeDiffusion
import HazeDistributed
import HazeIO
import HazeNN
import HazeTensor
import HazeTraining

/// `haze sample`: images from a trained model with any scheduler.
struct Sample: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Sample images from a model folder (diffusers UNet2DModel, the TensorFlow notebook's TFArticleUNet, or a Haze run) with DDPM, DDIM, DPM-Solver++ (ODE or SDE), UniPC, Euler or Heun.",
        discussion: """
        The scheduler comes from the folder's scheduler_config.json (else DDPM with the linear schedule of Ho et al.); \
        --scheduler picks another class but keeps the betas. Examples:
          haze sample --model runs/fm1 --scheduler ddim --steps 50 --count 64 --out grid.png
          haze sample --model runs/fm1 --class-label 3 --guidance-scale 3 --out boots.png
          haze sample --model faces-model --scheduler ddim --steps 200 --out faces.png   # a converted notebook checkpoint
          haze sample --model runs/fm1 --init-image sketches/ --strength 0.6 --out-dir cleaned/   # SDEdit, one output per input
        With --init-image (SDEdit, Meng et al. 2022) each image is noised to the step that --strength selects, as \
        diffusers' img2img pipelines do (the first N − ⌊N·strength⌋ of the N steps are skipped), and denoised from there.
        Under mpirun the images are split over the ranks (rank 0 writes the files).
        """)

    @Option(help: "A model folder (diffusers UNet2DModel, or TFArticleUNet from scripts/convert_notebook_checkpoint.py), a saved diffusers pipeline (model_index.json, unet/, scheduler/), or a Haze training run (its EMA weights when present).")
    var model: String
    @Option(name: [.long, .customLong("sampler")],
            help: "ddpm, ddim, dpm++2m, dpm++2m-sde, unipc, euler, euler-a, heun, or continuous-ddim (a --continuous-schedule run's own) (default: the folder's scheduler_config.json); --sampler is the same. heun calls the model twice per step (2·steps − 1 calls).")
    var scheduler: String?
    @Option(help: "σ spacing of euler, heun, unipc and dpm++2m(-sde): schedule (the timesteps' own σ), karras (Karras et al. 2022, ρ = 7) or exponential (even in log σ). Default: the folder's scheduler_config.json.")
    var sigmas: SigmaSpacing?
    @Option(help: "Inference steps (default: all training steps for DDPM, 50 otherwise).")
    var steps: Int?
    @Option(help: "DDIM's η: 0 deterministic … 1 DDPM-like.")
    var eta: Float = 0
    @Flag(help: "Do not clip the predicted x₀ (DDPM/DDIM's clip_sample), e.g. to decode a `haze encode` code.")
    var noClip = false
    @Option(help: "Random seed: image k's x_T and step noise come from its own stream of it, whatever --batch-size or the MPI ranks.")
    var seed: UInt64 = 0
    @Option(help: "Number of images.")
    var count: Int?
    @Option(help: "Images per model call.")
    var batchSize = 16
    @Option(help: "Class labels, one per image (e.g. 3,7); their number is the default --count.")
    var classLabels: String?
    @Option(help: "One class label for every image.")
    var classLabel: Int?
    @Option(help: "Classifier-free guidance weight (class-conditional models; the null class is the last class). Several, e.g. 1,2,4: one picture of each image at every weight, from the same noise.")
    var guidanceScale: String?
    @Flag(help: "Class-conditional models: one row per class (0…K−2; the last class embedding is guidance's null class), --count images each (default 8).")
    var classGrid = false
    @Option(help: "x_T from a file: one tensor [B, C, H, W] of unit-variance noise.")
    var initialNoise: String?
    @Option(help: "Write the final samples (before conversion to pixels) as tensor `sample`.")
    var saveTensor: String?
    @Option(help: "PNG grid of the samples (values mapped from [-1, 1] to 0…255).")
    var out: String?
    @Option(help: "Image-to-image (SDEdit): a PNG/JPEG file or a folder of them, at the model's size and channels; one output per input (--count is their number).")
    var initImage: String?
    @Option(help: "With --init-image: how much of the schedule to run, in (0, 1]; 1 starts from pure noise at the first step.")
    var strength: Double = 0.8
    @Option(help: "Also write each image as DIR/NAME.png (the input's name with --init-image, else sample-K.png).")
    var outDir: String?
    @Option(help: "Animated GIF of the denoising trajectory (the predicted x₀ at each step) of up to 16 images.")
    var gif: String?
    @Option(help: "GIF frames: x0 (the model's running estimate of the image) or xt (the noisy sample).")
    var gifFrames = "x0"
    @Option(help: "Image height and width when the model config has no sample_size.")
    var size: Int?
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOption

    func validate() throws {
        if classLabels != nil && classLabel != nil { throw ValidationError("give --class-labels or --class-label, not both") }
        if classGrid && (classLabels != nil || classLabel != nil) { throw ValidationError("--class-grid chooses the labels: drop --class-label(s)") }
        if classGrid && (initImage != nil || initialNoise != nil) { throw ValidationError("--class-grid draws its own noise: drop --init-image / --initial-noise") }
        if let count, count < 1 { throw ValidationError("--count must be at least 1") }
        if batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if !(0...1).contains(eta) { throw ValidationError("--eta must be between 0 and 1") }
        if out == nil && saveTensor == nil && gif == nil && outDir == nil {
            throw ValidationError("nothing to write: give --out grid.png, --out-dir DIR, --gif FILE and/or --save-tensor FILE")
        }
        if !(strength > 0 && strength <= 1) { throw ValidationError("--strength must be in (0, 1], not \(strength)") }
        if initImage != nil && count != nil { throw ValidationError("--count comes from --init-image (one output per input image); drop --count") }
        if gifFrames != "x0" && gifFrames != "xt" { throw ValidationError("--gif-frames must be x0 or xt") }
    }

    func run() throws {
        try precision.apply()
        try compute.apply(report: true)
        try runOnEveryRank(sample)
    }

    /// Samples this rank's share of the images (all of them without mpirun); rank 0 gathers them
    /// and writes the files.
    func sample(_ group: ProcessGroup) throws {
        let location = try ModelLocation.resolve(model)
        let folder = location.folder
        let (unet, parameters) = try ModelFolder.loadModel(folder)
        var schedulerConfig = try SchedulerConfig.forSampling(file: location.schedulerConfig, scheduler: scheduler, sigmas: sigmas)
        if noClip { (schedulerConfig.clipSample, schedulerConfig.thresholding) = (false, false) }
        let sampler = makeScheduler(schedulerConfig)
        (sampler as? DDIMScheduler)?.eta = eta
        let stepCount = steps ?? (schedulerConfig.kind == .ddpm ? schedulerConfig.numTrainTimesteps : 50)
        guard stepCount >= 1 && stepCount <= schedulerConfig.numTrainTimesteps else {
            throw CLIError("--steps \(stepCount): this model was trained with \(schedulerConfig.numTrainTimesteps) timesteps; use 1…\(schedulerConfig.numTrainTimesteps)")
        }

        // x_T: from the file, or drawn batch by batch.
        var noise: Tensor? = nil
        if let initialNoise {
            let file = try SafeTensors.read(contentsOf: initialNoise)
            guard file.tensors.count == 1, let x = file.tensors.values.first else {
                throw CLIError("\(initialNoise): expected exactly one tensor, found \(file.tensors.count)")
            }
            // Its batch size is the image count when --count is not given.
            guard x.rank == 4, x.shape[0] > 0 else {
                throw CLIError("\(initialNoise): x_T has shape \(x.shape); expected [B, C, H, W] with at least one image")
            }
            if let bad = x.scalars.firstIndex(where: { !$0.isFinite }) {
                throw CLIError("\(initialNoise): x_T holds \(x.scalars[bad]) at element \(bad); noise must be finite")
            }
            noise = x
        }
        let side = try imageSize(unet)
        let inputs = try initImage.map { try loadImages($0, option: "--init-image", channels: unet.inChannels, size: side) }
        // --class-grid: rows of `perRow` images, one per class.
        let gridClasses = try classGrid ? gridClassCount(unet) : 0, perRow = count ?? 8
        let total = classGrid ? gridClasses * perRow
            : inputs?.images.shape[0] ?? count ?? classLabels.map { $0.split(separator: ",").count } ?? noise?.shape[0] ?? 16
        let shape = [total, unet.inChannels, side[0], side[1]]
        if let noise, noise.shape != shape {
            throw CLIError("\(initialNoise!): x_T has shape \(noise.shape); this model and --count need \(shape)")
        }
        let labels = classGrid ? (0..<gridClasses).flatMap { [Int](repeating: $0, count: perRow) } : try labelList(count: total, model: unet)
        var guidances: [Guidance?] = [nil]
        if let guidanceScale {
            guard let classes = unet.classTableSize else {
                throw CLIError("--guidance-scale needs a class-conditional model with a class embedding table; this model is not one")
            }
            guidances = try parseNumbers(guidanceScale, option: "--guidance-scale").map { Guidance(scale: $0, nullClass: classes - 1) }
        }

        let loop = SamplingLoop(scheduler: sampler) { x, t, labels in
            unet(x, timesteps: t, classLabels: labels, parameters: parameters)
        }
        var frames: [[UInt8]] = []
        var frameSize = (width: 0, height: 0)
        // Image k is computed from its own noise stream, in batch ⌊k / batch size⌋, by the rank
        // whose share of the batches holds it: the same batches as one process makes, so the
        // images are bit for bit those of a 1-rank run.
        let (mine, counts) = batchShare(images: total, batchSize: batchSize, group: group)
        try sampler.setTimesteps(stepCount)  // model calls per batch: Heun makes 2·steps − 1
        let skipped = inputs == nil ? 0 : try SamplingLoop.firstStep(steps: stepCount, strength: strength, order: sampler.order)
        let totalSteps = guidances.count * (sampler.timesteps.count - skipped) * ((mine.count + batchSize - 1) / batchSize)
        let bar = ProgressBar("sampling", total: totalSteps, itemsPerStep: Double(mine.count) / Double(max(totalSteps, 1)),
                              enabled: group.isRoot)
        var done = 0
        var perGuidance: [Tensor] = []
        for (g, guidance) in guidances.enumerated() {
        var batches: [Tensor] = []
        for start in stride(from: mine.lowerBound, to: mine.upperBound, by: batchSize) {
            let n = min(batchSize, mine.upperBound - start)
            var generator = ImageNoise(seed: seed, firstImage: start)
            let x = try loop.run(shape: [n] + shape.dropFirst(), steps: stepCount, initialNoise: noise?.slice(start..<(start + n)),
                                 classLabels: labels.map { Array($0[start..<(start + n)]) }, guidance: guidance,
                                 initialImage: inputs?.images.slice(start..<(start + n)), strength: strength, generator: &generator, progress: { _, _ in done += 1; bar.update(done) },
                                 trajectory: gif == nil || start > 0 || g > 0 || !group.isRoot ? nil : { _, xt, x0 in
                                     // Frames of the first batch's first 16 images.
                                     let shown = (gifFrames == "x0" ? (x0 ?? xt) : xt).slice(0..<min(16, n)).clamped(min: -1, max: 1)
                                     let grid = PNG.grid(shown, columns: min(4, n))
                                     frames.append(grid.pixels)
                                     frameSize = (grid.width, grid.height)
                                 })
            batches.append(x)
        }
        let local = batches.isEmpty ? Tensor.zeros([0] + shape.dropFirst()) : Tensor.concatenate(batches, alongAxis: 0)
        let imageSize = shape.dropFirst().reduce(1, *)
        if let gathered = group.gather(local.scalars, counts: counts.map { $0 * imageSize }) {
            perGuidance.append(Tensor(shape: shape, scalars: gathered))
        }
        }
        guard group.isRoot else { return }
        // Several guidance weights: side by side, each image at every weight (rows of the class
        // grid, or one row of images per weight).
        let rows = classGrid ? gridClasses : 1, width = classGrid ? perRow : total
        let samples = perGuidance.count == 1 ? perGuidance[0] : Tensor.concatenate((0..<rows).flatMap { row in
            perGuidance.map { $0.slice((row * width)..<((row + 1) * width)) }
        }, alongAxis: 0)
        let columns = classGrid ? perRow * perGuidance.count : (perGuidance.count > 1 ? total : nil)
        if perGuidance.count > 1 {
            print("guidance \(guidanceScale!): " + (classGrid ? "a block of \(perRow) columns per weight, a row per class" : "a row per weight"))
        }
        if let bad = samples.scalars.firstIndex(where: { !$0.isFinite }) {
            throw SamplingError("the samples hold non-finite values (\(samples.scalars[bad]) at element \(bad) of \(samples.shape)): "
                                  + "the model's output or the sampler diverged; nothing written")
        }
        if let saveTensor {
            try SafeTensors(tensors: ["sample": samples]).write(to: saveTensor)
            print("wrote \(saveTensor): sample \(samples.shape)")
        }
        if let gif, !frames.isEmpty {
            // Hold the final frame for a second.
            try GIF.write(frames: frames + Array(repeating: frames.last!, count: 10), width: frameSize.width, height: frameSize.height,
                          channels: unet.inChannels, delayCentiseconds: 8, loop: true, to: gif)
            print("wrote \(gif): \(frames.count) frames")
        }
        if let out {
            try PNG.writeGrid(samples.clamped(min: -1, max: 1), to: out, columns: columns)
            print("wrote \(out): \(samples.shape[0]) images, \(schedulerConfig.kind.rawValue), \(stepCount) steps")
        }
        if let outDir {
            try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
            let names = inputs?.names ?? (0..<samples.shape[0]).map { "sample-\($0)" }
            for (name, pixels) in zip(names, PNG.pixels(samples.clamped(min: -1, max: 1))) {
                try AtomicFile.write(PNG.encode(width: side[1], height: side[0], channels: unet.inChannels, pixels: pixels),
                                     to: outDir + "/" + name + ".png")
            }
            print("wrote \(samples.shape[0]) images to \(outDir)/")
        }
    }

    /// The classes of --class-grid: all but the last class embedding (guidance's null class).
    func gridClassCount(_ model: any DenoisingModel) throws -> Int {
        guard let table = model.classTableSize, table >= 2 else {
            throw CLIError("--class-grid needs a class-conditional model with a class embedding table; this model is not one")
        }
        return table - 1
    }

    func imageSize(_ model: any DenoisingModel) throws -> [Int] {
        if let size { return [size, size] }
        guard let s = model.sampleSize else { throw CLIError("the model config has no sample_size: give --size") }
        return s
    }

    /// The class label of each image, checked against the model.
    func labelList(count: Int, model: any DenoisingModel) throws -> [Int]? {
        let given: [Int]? = try classLabel.map { [Int](repeating: $0, count: count) }
            ?? classLabels.map { text in try parseNumbers(text, option: "--class-labels").map { Int($0) } }
        guard model.isClassConditional else {
            if given != nil { throw CLIError("class labels given, but this model is not class-conditional") }
            return nil
        }
        guard let labels = given else { throw CLIError("this model is class-conditional: give --class-label N or --class-labels a,b,…") }
        guard labels.count == count else { throw CLIError("--class-labels has \(labels.count) labels for \(count) images") }
        if let classes = model.classTableSize {
            for l in labels where l < 0 || l >= classes {
                throw CLIError("class label \(l) is out of range: this model has classes 0…\(classes - 1)")
            }
        }
        return labels
    }
}

/// The images of `option` (a PNG/JPEG file, or a folder's PNG/JPEG files in name order) as
/// [N, C, H, W] in [−1, 1], and their names without extension. Each must have the model's size
/// and channels.
func loadImages(_ path: String, option: String, channels: Int, size: [Int]) throws -> (images: Tensor, names: [String]) {
    var isFolder: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { throw CLIError("\(path): \(option) does not exist") }
    let files = isFolder.boolValue
        ? try FileManager.default.contentsOfDirectory(atPath: path)
            .filter { ["png", "jpg", "jpeg"].contains(($0 as NSString).pathExtension.lowercased()) }.sorted().map { path + "/" + $0 }
        : [path]
    guard !files.isEmpty else { throw CLIError("\(path): \(option) folder holds no PNG or JPEG images") }
    let images = try files.map { file -> Tensor in
        let image = try ImageDecoder.decode(contentsOf: file)
        guard image.height == size[0] && image.width == size[1] else {
            throw CLIError("\(file): the image is \(image.width)×\(image.height); this model makes \(size[1])×\(size[0]) images")
        }
        guard image.channels == channels else {
            throw CLIError("\(file): the image has \(image.channels) channel\(image.channels == 1 ? "" : "s"); this model makes \(channels)-channel images")
        }
        let x = image.tensor()
        return x.reshaped(to: [1] + x.shape)
    }
    let names = files.map { (($0 as NSString).lastPathComponent as NSString).deletingPathExtension }
    return (Tensor.concatenate(images, alongAxis: 0), names)
}

extension SigmaSpacing: ExpressibleByArgument {}
