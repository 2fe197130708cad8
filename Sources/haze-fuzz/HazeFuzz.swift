// libFuzzer harnesses: one per kind of file Haze reads from a user. `make fuzz` builds them
// (libFuzzer and AddressSanitizer, -DHAZE_FUZZ; the flags are in the Makefile) and runs each on
// a copy of its seeds in Fuzz/corpus. The environment variable HAZE_FUZZ_TARGET picks the
// harness, e.g. to replay a finding:
//
//     HAZE_FUZZ_TARGET=safetensors HAZE_FUZZ_VERBOSE=1 .build-fuzz/release/haze-fuzz FILE
//
// A plain build (`swift build`, `make test`) compiles only the stub at the end of this file.
//
// The rule every harness checks: whatever the bytes, the loader returns a value or throws an
// error; it never crashes, never trips AddressSanitizer, never hangs (libFuzzer's -timeout) and
// never allocates much more than the input implies (-malloc_limit_mb, -rss_limit_mb).
// Errors are the expected outcome for bad input and are ignored here.

#if HAZE_FUZZ
import CZlib
import Foundation
import HazeData
import HazeDiffusion
import HazeIO
import HazeNN
import HazeTensor
import HazeTraining

/// The harnesses by name (the values of HAZE_FUZZ_TARGET).
let harnesses: [String: (Data) throws -> Void] = [
    "safetensors": fuzzSafeTensors,
    "unet-config": fuzzModelConfig,
    "scheduler-config": fuzzSchedulerConfig,
    "trainer-state": fuzzTrainerState,
    "optimizer": fuzzOptimizerState,
    "idx": fuzzIDX,
    "png": fuzzImage,
    "jpeg": fuzzImage,
    "sample-input": fuzzSampleInput,
]

nonisolated(unsafe) var selected: ((Data) throws -> Void)? = nil
/// HAZE_FUZZ_VERBOSE=1: print each input's error (to check that seeds load, or why not).
let verbose = ProcessInfo.processInfo.environment["HAZE_FUZZ_VERBOSE"] != nil

/// A folder of this process for the loaders that only take a path: HAZE_FUZZ_SCRATCH (set by
/// `make fuzz`, removed after the run) or /dev/shm (on macOS, which has none, the temporary folder),
/// plus the process id (libFuzzer's -jobs and -fork run several processes). Each harness
/// overwrites its own fixed file names there.
let scratch: String = {
    #if os(Linux)
    let defaultBase = "/dev/shm"
    #else
    let defaultBase = NSTemporaryDirectory()
    #endif
    let base = ProcessInfo.processInfo.environment["HAZE_FUZZ_SCRATCH"] ?? defaultBase
    let folder = "\(base)/haze-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    return folder
}()

func write(_ data: Data, _ name: String) -> String {
    let path = scratch + "/" + name
    guard FileManager.default.createFile(atPath: path, contents: data) else { fatalError("cannot write \(path)") }
    return path
}

/// Keeps a computed value alive so that the optimiser cannot drop the work that made it.
@inline(never) func consume<T>(_ value: T) { withExtendedLifetime(value) {} }

/// Reads every scalar of `t` and checks that the tensor holds as many as its shape says.
func touch(_ t: Tensor) {
    precondition(t.scalars.count == t.shape.reduce(1, *), "tensor \(t.shape) holds \(t.scalars.count) scalars")
    consume(t.scalars.reduce(0, +))
}

// MARK: - Harnesses

/// `safetensors`: any bytes as a safetensors file (weights, EMA weights, fixtures):
/// `SafeTensors.decode`, then every scalar of every tensor. Rule: a `SafeTensorsError`, or
/// tensors whose storage matches their shapes and lies inside the file.
func fuzzSafeTensors(_ data: Data) throws {
    let file = try SafeTensors.decode(data, file: "fuzz.safetensors")
    for (_, t) in file.tensors { touch(t) }
}

/// `unet-config`: a model folder's config.json, as `ModelFolder.model(configFile:)` reads it:
/// TFArticleUNet when `_class_name` says so, otherwise diffusers' UNet2DModel. Builds the model
/// (no weights) and what `haze inspect` / the loaders ask of it: parameter specs and count,
/// summary, size multiple. Rule: a `ConfigError`, or a model whose description is computed
/// without overflow and in time and memory bounded by the file.
func fuzzModelConfig(_ data: Data) throws {
    guard let json = try JSONSerialization.jsonObject(with: data) as? [String: Any] else { return }
    let model: any DenoisingModel
    if json["_class_name"] as? String == TFArticleUNetConfig.className {
        model = try TFArticleUNet(config: try TFArticleUNetConfig(json: json, file: "config.json"))
    } else {
        model = try UNet2DModel(config: try UNet2DModelConfig(json: json, file: "config.json"))
    }
    consume(model.parameterSpecs.count)
    consume(model.parameterCount)
    consume(model.summary)
    consume((model.sizeMultiple, model.sampleSize, model.inChannels, model.classTableSize))
    consume(model.configData())
}

/// `scheduler-config`: a scheduler_config.json, through `SchedulerConfig(contentsOf:)` (which
/// also reads Python's -Infinity/NaN), then the scheduler it names and its timesteps for a few
/// step counts; for short runs, one step of each timestep on a 1-pixel image, as `haze sample`
/// would. Rule: a `ConfigFileError` or `SamplingError`, or a scheduler that steps without a crash.
func fuzzSchedulerConfig(_ data: Data) throws {
    let config = try SchedulerConfig(contentsOf: write(data, "scheduler_config.json"))
    try runScheduler(config)
}

func runScheduler(_ config: SchedulerConfig) throws {
    let scheduler = makeScheduler(config)
    // Four pixels, so that dynamic thresholding takes a quantile of several values.
    let x = Tensor(shape: [1, 1, 2, 2], scalars: [0.5, -1.5, 2, 0]), output = Tensor(shape: [1, 1, 2, 2], scalars: [0.25, 3, -1, 0])
    for count in [1, 2, 3, 10, 50, 999, config.numTrainTimesteps, config.numTrainTimesteps + 1] {
        guard (try? scheduler.setTimesteps(count)) != nil else { continue }
        consume(scheduler.timesteps)
        consume(scheduler.initNoiseSigma)
        guard count <= 50 else { continue }
        var sample = x * scheduler.initNoiseSigma
        for i in scheduler.timesteps.indices {
            let input = scheduler.scaleModelInput(sample, stepIndex: i)
            sample = scheduler.step(modelOutput: output + input * 0, stepIndex: i, sample: sample,
                                    noise: scheduler.needsNoise(stepIndex: i) ? output : nil).prevSample
        }
        consume(sample.scalars)
    }
}

/// `trainer-state`: a checkpoint's trainer_state.json (`Checkpoint.read` decodes it with
/// `JSONDecoder`), then the noise schedule its options describe, which a resumed run builds
/// first. Rule: a `DecodingError`, or options whose schedule is built without a crash.
func fuzzTrainerState(_ data: Data) throws {
    let state = try JSONDecoder().decode(TrainerState.self, from: data)
    let schedule = state.options.schedulerConfig.noiseSchedule
    consume(schedule.alphasCumprod)
}

/// `optimizer`: a checkpoint's optimizer.safetensors (`AdamOptimizer(state:file:)`), then one
/// update of parameters shaped like its first moments, as the first step of a resumed run.
/// Rule: a `SafeTensorsError`, or an optimizer whose moments fit the parameters they belong to.
func fuzzOptimizerState(_ data: Data) throws {
    var optimizer = try AdamOptimizer(state: try SafeTensors.decode(data, file: "optimizer.safetensors"), file: "optimizer.safetensors")
    var parameters = optimizer.firstMoments.mapValues { Tensor.zeros($0.shape) }
    let gradients = parameters.mapValues { Tensor.full($0.shape, 0.5) }
    optimizer.update(&parameters, gradients: gradients)
    for (_, t) in parameters { touch(t) }
    consume(optimizer.state.encoded())
}

/// `idx`: an MNIST/Fashion-MNIST IDX file as it is (plain or gzip; the seeds hold both) and, when
/// it is not gzip already, the same bytes gzip-compressed (`IDXFile(contentsOf:)` takes a path);
/// an images file (rank 3) is then opened as the training split of a folder, with labels made to
/// match, and its first and last image read. Rule: an `IDXFile.Error`, or bytes matching the shape.
func fuzzIDX(_ data: Data) throws {
    let plain = write(data, "train-images-idx3-ubyte")
    var paths = [plain]
    if !data.starts(with: [0x1F, 0x8B]) {
        let gz = scratch + "/train-images-idx3-ubyte.gz"
        guard let file = gzopen(gz, "wb1") else { fatalError("cannot write \(gz)") }
        _ = data.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
        gzclose(file)
        paths.append(gz)
    }
    for path in paths {
        guard let idx = try? IDXFile(contentsOf: path) else { continue }
        precondition(idx.bytes.count == idx.shape.reduce(1, *), "IDX \(idx.shape) holds \(idx.bytes.count) bytes")
        guard idx.shape.count == 3, path == plain else { continue }
        // As a dataset folder: these images and as many labels.
        let labels = [0, 0, 8, 1] + withUnsafeBytes(of: UInt32(idx.shape[0]).bigEndian, Array.init) + [UInt8](repeating: 7, count: idx.shape[0])
        _ = write(Data(labels), "train-labels-idx1-ubyte")
        let dataset = try MNISTDataset(folder: scratch, split: .train)
        var image = [Float](repeating: 0, count: dataset.imageShape.reduce(1, *))
        for i in Set([0, dataset.count - 1]) {
            image.withUnsafeMutableBufferPointer { dataset.image(i, into: $0.baseAddress!) }
            consume((image, dataset.label(i)))
        }
        try? FileManager.default.removeItem(atPath: scratch + "/train-labels-idx1-ubyte")
    }
}

/// `png`, `jpeg`: an image file (`ImageDecoder.decode`, the format told by its first bytes), then
/// the preprocessing of an image-folder dataset: `converted(toChannels:)` both ways and
/// `resizedCenterCropped(to: 8)`. Rule: an `ImageError`, or an image whose pixels match its size
/// (headers over `ImageDecoder.maximumPixels` are refused before decoding).
func fuzzImage(_ data: Data) throws {
    let image = try ImageDecoder.decode(data, file: "fuzz.image")
    precondition(image.pixels.count == image.width * image.height * image.channels)
    for channels in [1, 3] {
        let converted = image.converted(toChannels: channels)
        consume(converted.resizedCenterCropped(to: 8).pixels)
    }
}

/// `sample-input`: the tensor file of `haze predict --input` and `haze sample --initial-noise`,
/// decoded and checked as those commands do (the checks are copied from Sources/haze/
/// PredictCommand.swift and SampleCommand.swift, which this target cannot import): exactly one
/// tensor x of shape [B, C, H, W] with B ≥ 1, then the shape the sampler derives from it.
/// Rule: a `SafeTensorsError` or one of the commands' errors, never a crash.
func fuzzSampleInput(_ data: Data) throws {
    struct CLIError: Error { let message: String }
    let file = try SafeTensors.decode(data, file: "x.safetensors")
    guard file.tensors.count == 1, let x = file.tensors.values.first else { throw CLIError(message: "expected exactly one tensor") }
    // haze sample: x_T's batch gives the image count when --count is not given.
    guard x.rank == 4, x.shape[0] > 0 else { throw CLIError(message: "x_T has shape \(x.shape); expected [B, C, H, W]") }
    let total = x.shape[0]
    let shape = [total, 3, 8, 8]  // a model of 3 channels and sample_size 8
    if x.shape == shape { consume(x.slice(0..<total).scalars) }
    // haze predict (a model of 3 channels whose sides must be multiples of 4).
    guard x.shape[1] == 3 else { throw CLIError(message: "the tensor has \(x.shape[1]) channels; the model takes 3") }
    guard x.shape[2] % 4 == 0, x.shape[3] % 4 == 0, x.shape[2] > 0, x.shape[3] > 0 else { throw CLIError(message: "sides") }
    touch(x)
}

// MARK: - libFuzzer entry points

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> CInt {
    let name = ProcessInfo.processInfo.environment["HAZE_FUZZ_TARGET"] ?? ""
    guard let harness = harnesses[name] else {
        FileHandle.standardError.write(Data("haze-fuzz: set HAZE_FUZZ_TARGET to one of \(harnesses.keys.sorted().joined(separator: ", ")) (got \"\(name)\")\n".utf8))
        exit(2)
    }
    selected = harness
    _ = scratch
    atexit { try? FileManager.default.removeItem(atPath: scratch) }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ bytes: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let data = bytes.map { Data(bytes: $0, count: size) } ?? Data()
    do {
        try selected!(data)
        if verbose { print("haze-fuzz: loaded") }
    } catch {
        if verbose { print("haze-fuzz: \(error)") }
    }
    return 0
}

#else
import Foundation

/// A plain build (`swift build`, `make test`) links this stub; the harnesses need libFuzzer.
@main
struct HazeFuzzStub {
    static func main() {
        print("haze-fuzz: the fuzzing harnesses are built by `make fuzz` (libFuzzer and AddressSanitizer); this binary is a stub")
        exit(2)
    }
}

#endif
