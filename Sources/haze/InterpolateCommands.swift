import ArgumentParser
import Foundation
import HazeDiffusion
import HazeIO
import HazeNN
import HazeTensor
import HazeTraining

/// A model folder's network and its scheduler config with DDIM as the class (η = 0) and, unless
/// `clip`, no clipping of x̂₀: clipping bends the DDIM ODE, so encoding and decoding no longer
/// invert each other (fmnist-tiny after 8 minutes, 16 test images: mean |Δ| 0.21 at 50 steps and
/// 0.32 at 200 with clipping, 0.034 and 0.0076 without).
private func ddimModel(_ model: String, clip: Bool = false) throws -> (unet: any DenoisingModel, parameters: ParameterSet, config: SchedulerConfig, side: [Int]) {
    let location = try ModelLocation.resolve(model)
    let (unet, parameters) = try ModelFolder.loadModel(location.folder)
    guard let side = unet.sampleSize else { throw CLIError("\(location.folder): the model config has no sample_size") }
    if unet.isClassConditional { throw CLIError("\(location.folder): this command needs an unconditional model; this one is class-conditional") }
    var config = try location.schedulerConfig.map { try SchedulerConfig(contentsOf: $0, kind: .ddim) } ?? SchedulerConfig(kind: .ddim)
    if !clip { (config.clipSample, config.thresholding) = (false, false) }
    return (unet, parameters, config, side)
}

/// DDIM (η = 0) from x_T in batches.
private func decode(_ noise: Tensor, steps: Int, config: SchedulerConfig, batchSize: Int,
                    model: @escaping NoisePredictor, progress: @escaping () -> Void) throws -> Tensor {
    var parts: [Tensor] = []
    for start in stride(from: 0, to: noise.shape[0], by: batchSize) {
        let part = noise.slice(start..<min(start + batchSize, noise.shape[0]))
        var unused = RandomGenerator(seed: 0)
        parts.append(try SamplingLoop(scheduler: makeScheduler(config), model: model)
            .run(shape: part.shape, steps: steps, initialNoise: part, generator: &unused, progress: { _, _ in progress() }))
    }
    return Tensor.concatenate(parts, alongAxis: 0)
}

/// `haze encode`: images to their DDIM noise x_T.
struct Encode: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encode images into the noise x_T that DDIM (η = 0) decodes back to them (DDIM inversion).",
        discussion: """
        The DDIM ODE is run forwards through the same steps that `haze sample --scheduler ddim --steps N --initial-noise` \
        runs backwards, as diffusers' DDIMInverseScheduler. The network is evaluated one step ahead of the sample, so \
        the reconstruction is close but not exact; --check decodes and prints the error. More steps, smaller error. \
        x̂₀ is not clipped (clipping bends the ODE; --clip-sample keeps the folder's setting), so decode with --no-clip:
          haze encode --model runs/fm1 --image shirt.png --steps 200 --save-tensor shirt-xT.safetensors --check
          haze sample --model runs/fm1 --scheduler ddim --no-clip --steps 200 --initial-noise shirt-xT.safetensors --out back.png
        """)

    @Option(help: "A model folder, saved pipeline or Haze run (unconditional).")
    var model: String
    @Option(help: "A PNG/JPEG image or a folder of them, at the model's size and channels.")
    var image: String
    @Option(help: "DDIM steps.")
    var steps = 50
    @Option(help: "Write x_T [N, C, H, W] as tensor `x_T` (input of haze sample --initial-noise).")
    var saveTensor: String
    @Flag(help: "Decode x_T again and print the reconstruction error.")
    var check = false
    @Flag(help: "Clip x̂₀ as the folder's scheduler config says (default: no clipping, which keeps encoding and decoding inverse).")
    var clipSample = false
    @Option(help: "Images per model call.")
    var batchSize = 16
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOption

    func run() throws {
        try precision.apply()
        try compute.apply(report: true)
        let (unet, parameters, config, side) = try ddimModel(model, clip: clipSample)
        let images = try loadImages(image, option: "--image", channels: unet.inChannels, size: side).images
        let predict: NoisePredictor = { x, t, _ in unet(x, timesteps: t, classLabels: nil, parameters: parameters) }
        let bar = ProgressBar("encoding", total: (check ? 2 : 1) * steps * ((images.shape[0] + batchSize - 1) / batchSize))
        var done = 0
        var codes: [Tensor] = []
        for start in stride(from: 0, to: images.shape[0], by: batchSize) {
            codes.append(try ddimInversion(images.slice(start..<min(start + batchSize, images.shape[0])), steps: steps, config: config,
                                           model: { predict($0, $1, nil) }, progress: { done += 1; bar.update(done) }))
        }
        let noise = Tensor.concatenate(codes, alongAxis: 0)
        try SafeTensors(tensors: ["x_T": noise]).write(to: saveTensor)
        print("wrote \(saveTensor): x_T \(noise.shape), \(steps) DDIM steps")
        if check {
            let back = try decode(noise, steps: steps, config: config, batchSize: batchSize, model: predict) { done += 1; bar.update(done) }
            let error = (back.clamped(min: -1, max: 1) - images).abs()
            print(String(format: "reconstruction after %d steps: mean |Δ| %.4f, max |Δ| %.4f (on [-1, 1]; %.2f and %.1f of 255)",
                         steps, error.mean().scalar, error.scalars.max() ?? 0, 127.5 * error.mean().scalar, 127.5 * (error.scalars.max() ?? 0)))
        }
    }
}

/// `haze interpolate`: a walk between two noises (or two images' DDIM codes), decoded by DDIM.
struct Interpolate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Interpolate between two samples (by seed) or two images (by DDIM inversion): slerp between their x_T, decoded with DDIM η = 0.",
        discussion: """
          haze interpolate --model runs/fm1 --seeds 3,11 --frames 16 --out strip.png --gif walk.gif
          haze interpolate --model runs/fm1 --images a.png,b.png --steps 100 --out strip.png
        Seed s's x_T is the one `haze sample --seed s --count 1` starts from. DDIM runs without clipping x̂₀ \
        (as `haze sample --no-clip`), unless --clip-sample.
        """)

    @Option(help: "A model folder, saved pipeline or Haze run (unconditional).")
    var model: String
    @Option(help: "Two seeds, e.g. 3,11.")
    var seeds: String?
    @Option(help: "Two images (PNG/JPEG at the model's size), e.g. a.png,b.png: encoded by DDIM inversion first.")
    var images: String?
    @Option(help: "Frames, both ends included.")
    var frames = 16
    @Option(help: "DDIM steps (decoding, and encoding with --images).")
    var steps = 50
    @Option(help: "PNG strip of the frames, one row.")
    var out: String?
    @Option(help: "Animated GIF of the frames (there and back).")
    var gif: String?
    @Option(help: "Write the frames as tensor `sample`.")
    var saveTensor: String?
    @Option(help: "Images per model call.")
    var batchSize = 16
    @Flag(help: "Clip x̂₀ as the folder's scheduler config says (default: no clipping).")
    var clipSample = false
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOption

    func validate() throws {
        if (seeds == nil) == (images == nil) { throw ValidationError("give --seeds a,b or --images a.png,b.png") }
        if frames < 2 { throw ValidationError("--frames must be at least 2") }
        if out == nil && gif == nil && saveTensor == nil { throw ValidationError("nothing to write: give --out, --gif and/or --save-tensor") }
    }

    func run() throws {
        try precision.apply()
        try compute.apply(report: true)
        let (unet, parameters, config, side) = try ddimModel(model, clip: clipSample)
        let predict: NoisePredictor = { x, t, _ in unet(x, timesteps: t, classLabels: nil, parameters: parameters) }
        let shape = [1, unet.inChannels] + side
        let bar = ProgressBar("interpolating", total: steps * ((frames + batchSize - 1) / batchSize + (images == nil ? 0 : 1)))
        var done = 0
        let ends: [Tensor]
        if let seeds {
            let values = try parseNumbers(seeds, option: "--seeds")
            guard values.count == 2, values.allSatisfy({ $0 >= 0 && $0 == $0.rounded() }) else {
                throw ValidationError("--seeds expects two non-negative integers, e.g. 3,11")
            }
            ends = values.map { var noise = ImageNoise(seed: UInt64($0), firstImage: 0); return noise.normal(shape) }
        } else {
            let paths = images!.split(separator: ",").map(String.init)
            guard paths.count == 2 else { throw ValidationError("--images expects two files, e.g. a.png,b.png") }
            let pair = Tensor.concatenate(try paths.map { try loadImages($0, option: "--images", channels: unet.inChannels, size: side).images.slice(0..<1) },
                                          alongAxis: 0)
            let codes = try ddimInversion(pair, steps: steps, config: config, model: { predict($0, $1, nil) },
                                          progress: { done += 1; bar.update(done) })
            ends = [codes.slice(0..<1), codes.slice(1..<2)]
        }
        let path = slerp(ends[0], ends[1], at: (0..<frames).map { Double($0) / Double(frames - 1) })
        let decoded = try decode(path, steps: steps, config: config, batchSize: batchSize, model: predict) { done += 1; bar.update(done) }
            .clamped(min: -1, max: 1)
        if let saveTensor {
            try SafeTensors(tensors: ["sample": decoded]).write(to: saveTensor)
            print("wrote \(saveTensor): sample \(decoded.shape)")
        }
        if let out {
            try PNG.writeGrid(decoded, to: out, columns: frames)
            print("wrote \(out): \(frames) frames")
        }
        if let gif {
            let pictures = PNG.pixels(decoded)
            try GIF.write(frames: pictures + pictures.reversed(), width: side[1], height: side[0], channels: unet.inChannels,
                          delayCentiseconds: 10, loop: true, to: gif)
            print("wrote \(gif): \(2 * frames) frames")
        }
    }
}
