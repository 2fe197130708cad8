import Foundation
import HazeNN

/// Where the model a user names is, in any of the layouts users bring:
/// - a diffusers model folder (`config.json` + `diffusion_pytorch_model.safetensors`, and
///   `scheduler_config.json` beside them when Haze wrote it);
/// - a saved pipeline (`model_index.json` at the top, `unet/` and `scheduler/` below, as
///   `DDPMPipeline.save_pretrained` writes it), or its `unet/` folder alone;
/// - a Haze run (its latest checkpoint) or one checkpoint folder, with `model/` and `ema/`.
/// A folder holding only `diffusion_pytorch_model.bin` (a PyTorch pickle, which Haze never
/// unpickles) gets a message saying how to convert it.
public struct ModelLocation: Equatable, Sendable {
    /// The folder with `config.json` and the safetensors weights.
    public let folder: String
    /// The `scheduler_config.json` that goes with the model, when there is one.
    public let schedulerConfig: String?

    /// Which weights of a Haze run or checkpoint: the EMA ones when the run keeps them, else the
    /// raw ones (`preferEMA`); the raw ones; or the EMA ones, which must be there (`ema`).
    public enum Weights: Sendable { case preferEMA, raw, ema }

    /// A path that holds no model Haze can read, with what was found and what to do.
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// The path of the weights file in `folder`.
    public var weightsFile: String { folder + "/" + ModelFolder.weightsFile }

    /// Finds the model at `path`; `weights` chooses within a Haze run or checkpoint.
    public static func resolve(_ path: String, weights: Weights = .preferEMA) throws -> ModelLocation {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: path, isDirectory: &isDirectory) else { throw Failure(description: "\(path) is not a model folder: it does not exist") }
        guard isDirectory.boolValue else {
            throw Failure(description: "\(path): is a file; give the model folder (config.json and \(ModelFolder.weightsFile) inside)")
        }
        func has(_ file: String, in folder: String = path) -> Bool { fm.fileExists(atPath: folder + "/" + file) }

        if weights == .ema && (has("model_index.json") || has(ModelFolder.configFile)) {
            throw Failure(description: "\(path): a model folder has one set of weights; EMA weights are chosen from a Haze run or checkpoint (ema/)")
        }
        if has("model_index.json") {
            guard has(ModelFolder.configFile, in: path + "/unet") else {
                throw Failure(description: "\(path): a saved pipeline (model_index.json) without unet/\(ModelFolder.configFile); Haze reads the UNet2DModel of DDPM/DDIM pipelines")
            }
            return try modelFolder(path + "/unet", scheduler: path + "/scheduler/scheduler_config.json")
        }
        if has(ModelFolder.configFile) {
            // A pipeline's unet/ folder named on its own takes the pipeline's scheduler.
            let parent = (path as NSString).deletingLastPathComponent
            let scheduler = has("scheduler_config.json") || !has("model_index.json", in: parent)
                ? path + "/scheduler_config.json" : parent + "/scheduler/scheduler_config.json"
            return try modelFolder(path, scheduler: scheduler)
        }
        let checkpoint = has("latest") ? try Checkpoint.latest(run: path) : path
        let order: [String]
        switch weights {
        case .preferEMA: order = ["ema", "model"]
        case .raw: order = ["model"]
        case .ema: order = ["ema"]
        }
        for inner in order where has("\(inner)/\(ModelFolder.configFile)", in: checkpoint) {
            return try modelFolder("\(checkpoint)/\(inner)", scheduler: "\(checkpoint)/\(inner)/scheduler_config.json")
        }
        if has("ema/\(ModelFolder.configFile)", in: checkpoint) || has("model/\(ModelFolder.configFile)", in: checkpoint) {
            throw Failure(description: "\(checkpoint): has no \(weights == .ema ? "EMA" : "raw") weights (no \(order[0])/)")
        }
        if has("diffusion_pytorch_model.bin") { throw pickleOnly(path) }
        throw Failure(description: "\(path): not a model folder (no config.json), a saved pipeline (no model_index.json), nor a Haze run or checkpoint (no latest, ema/ or model/)")
    }

    /// A folder with config.json: its weights must be safetensors.
    static func modelFolder(_ folder: String, scheduler: String) throws -> ModelLocation {
        let fm = FileManager.default
        if !fm.fileExists(atPath: folder + "/" + ModelFolder.weightsFile) {
            if fm.fileExists(atPath: folder + "/diffusion_pytorch_model.bin") { throw pickleOnly(folder) }
            throw Failure(description: "\(folder): has config.json but no \(ModelFolder.weightsFile)")
        }
        return ModelLocation(folder: folder, schedulerConfig: fm.fileExists(atPath: scheduler) ? scheduler : nil)
    }

    static func pickleOnly(_ folder: String) -> Failure {
        Failure(description: """
            \(folder): the weights are diffusion_pytorch_model.bin, a PyTorch pickle; Haze reads only safetensors \
            (a pickle can run code when it is loaded, so Haze never unpickles). Convert the folder once with Python and diffusers:
              python -c "from diffusers import UNet2DModel as M; M.from_pretrained('\(folder)').save_pretrained('\(folder)', safe_serialization=True)"
            """)
    }
}
