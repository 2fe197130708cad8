import ArgumentParser
import Foundation
import HazeDiffusion
import HazeDistributed
import HazeIO
import HazeNN
import HazeTensor
import HazeTraining

/// `haze inpaint`: fill the masked part of an image with RePaint.
struct Inpaint: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fill a masked region of an image with an unconditional model (RePaint, Lugmayr et al. 2022).",
        discussion: """
        The mask is a PNG/JPEG of the model's size: white (255) = keep the image, black (0) = fill, as diffusers' \
        RePaintPipeline. Each reverse step blends the image, noised to that step, into the kept region and the model's \
        sample into the rest; every --jump-length steps the sample is re-noised that many steps and denoised again, \
        --jump-n-sample − 1 times. The model is called about steps · (1 + (jump-n-sample − 1)) times per batch.
          haze inpaint --model runs/fm1 --image shirt.png --mask hole.png --count 8 --out completions.png
        """)

    @Option(help: "A model folder, saved pipeline or Haze run (as haze sample); its scheduler_config.json gives the betas.")
    var model: String
    @Option(help: "The image to complete (PNG/JPEG at the model's size and channels).")
    var image: String
    @Option(help: "The mask (PNG/JPEG at the model's size): white = keep, black = fill.")
    var mask: String
    @Option(help: "Binarise a mask that has grey values: pixels ≥ this fraction of white are kept (diffusers uses 0.5). Without it such a mask is an error.")
    var maskThreshold: Double?
    @Option(help: "Inference steps (diffusers' default 250).")
    var steps = 250
    @Option(help: "Steps between resampling jumps (RePaint's j).")
    var jumpLength = 10
    @Option(help: "How often each jump's span is sampled (RePaint's r; 1 = no resampling).")
    var jumpNSample = 10
    @Option(help: "DDIM's η of the filled part (0 deterministic … 1).")
    var eta: Float = 0
    @Option(help: "Completions of the image.")
    var count = 4
    @Option(help: "Random seed: completion k's noise is its own stream of it, whatever --batch-size.")
    var seed: UInt64 = 0
    @Option(help: "Completions per model call.")
    var batchSize = 16
    @Option(help: "PNG grid: the masked input (filled part grey), then the completions.")
    var out: String?
    @Option(help: "Write the completions as tensor `sample`.")
    var saveTensor: String?
    @Option(help: "Also write each completion as DIR/inpaint-K.png.")
    var outDir: String?
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOption

    func validate() throws {
        if count < 1 || batchSize < 1 { throw ValidationError("--count and --batch-size must be at least 1") }
        if !(0...1).contains(eta) { throw ValidationError("--eta must be between 0 and 1") }
        if let maskThreshold, !(maskThreshold > 0 && maskThreshold <= 1) { throw ValidationError("--mask-threshold must be in (0, 1]") }
        if out == nil && saveTensor == nil && outDir == nil {
            throw ValidationError("nothing to write: give --out grid.png, --out-dir DIR and/or --save-tensor FILE")
        }
    }

    func run() throws {
        try precision.apply()
        try compute.apply(report: true)
        try runOnEveryRank(inpaint)
    }

    func inpaint(_ group: ProcessGroup) throws {
        let location = try ModelLocation.resolve(model)
        let (unet, parameters) = try ModelFolder.loadModel(location.folder)
        guard let side = unet.sampleSize else { throw CLIError("\(location.folder): the model config has no sample_size") }
        if unet.isClassConditional { throw CLIError("\(location.folder): RePaint needs an unconditional model; this one is class-conditional") }
        let picture = try loadImages(image, option: "--image", channels: unet.inChannels, size: side).images
        let keep = try loadMask(mask, size: side)
        let config = try location.schedulerConfig.map { try SchedulerConfig(contentsOf: $0, kind: .ddpm) } ?? SchedulerConfig(kind: .ddpm)
        let repaint = try RePaint(config: config, steps: steps, jumpLength: jumpLength, jumpSamples: jumpNSample, eta: eta)

        let (mine, counts) = batchShare(images: count, batchSize: batchSize, group: group)
        let batches = (mine.count + batchSize - 1) / batchSize
        let bar = ProgressBar("inpainting", total: batches * repaint.modelCalls,
                              itemsPerStep: Double(mine.count) / Double(max(batches * repaint.modelCalls, 1)), enabled: group.isRoot)
        var done = 0, results: [Tensor] = []
        for start in stride(from: mine.lowerBound, to: mine.upperBound, by: batchSize) {
            let n = min(batchSize, mine.upperBound - start)
            var generator = ImageNoise(seed: seed, firstImage: start)
            let images = Tensor.concatenate([Tensor](repeating: picture, count: n), alongAxis: 0)
            let masks = Tensor.concatenate([Tensor](repeating: keep, count: n), alongAxis: 0)
            results.append(try repaint.run(image: images, mask: masks, model: { x, t in
                unet(x, timesteps: t, classLabels: nil, parameters: parameters)
            }, generator: &generator, progress: { done += 1; bar.update(done) }))
        }
        let shape = [count] + picture.shape.dropFirst()
        let local = results.isEmpty ? Tensor.zeros([0] + shape.dropFirst()) : Tensor.concatenate(results, alongAxis: 0)
        let imageSize = shape.dropFirst().reduce(1, *)
        guard let gathered = group.gather(local.scalars, counts: counts.map { $0 * imageSize }) else { return }
        let samples = Tensor(shape: shape, scalars: gathered).clamped(min: -1, max: 1)
        if let saveTensor {
            try SafeTensors(tensors: ["sample": samples]).write(to: saveTensor)
            print("wrote \(saveTensor): sample \(samples.shape)")
        }
        if let out {
            let masked = picture * keep  // the filled part at 0: mid-grey
            try PNG.writeGrid(Tensor.concatenate([masked, samples], alongAxis: 0), to: out)
            print("wrote \(out): the masked input and \(count) completions, \(steps) steps, jumps \(jumpLength)×\(jumpNSample)")
        }
        if let outDir {
            try FileManager.default.createDirectory(atPath: outDir, withIntermediateDirectories: true)
            for (k, pixels) in PNG.pixels(samples).enumerated() {
                try AtomicFile.write(PNG.encode(width: side[1], height: side[0], channels: unet.inChannels, pixels: pixels),
                                     to: outDir + "/inpaint-\(k).png")
            }
            print("wrote \(count) completions to \(outDir)/")
        }
    }

    /// The mask as [1, 1, H, W] of 1 (keep) and 0 (fill). Grey values are an error unless
    /// --mask-threshold says where to cut.
    func loadMask(_ path: String, size: [Int]) throws -> Tensor {
        let decoded = try ImageDecoder.decode(contentsOf: path).converted(toChannels: 1)
        guard decoded.height == size[0] && decoded.width == size[1] else {
            throw CLIError("\(path): the mask is \(decoded.width)×\(decoded.height); this model makes \(size[1])×\(size[0]) images")
        }
        let grey = decoded.pixels.filter { $0 != 0 && $0 != 255 }.count
        if grey > 0 && maskThreshold == nil {
            throw CLIError("\(path): the mask is not black and white (\(grey) of \(decoded.pixels.count) pixels are grey); "
                           + "give --mask-threshold T to keep pixels ≥ T·255 (diffusers' RePaintPipeline uses 0.5)")
        }
        let cut = maskThreshold ?? 0.5
        let values = decoded.pixels.map { Double($0) / 255 >= cut ? Float(1) : 0 }
        guard values.contains(0) else { throw CLIError("\(path): the mask is white everywhere: nothing to fill") }
        return Tensor(shape: [1, 1, size[0], size[1]], scalars: values)
    }
}
