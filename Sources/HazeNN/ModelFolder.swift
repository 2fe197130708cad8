import Foundation
import HazeIO
import HazeTensor

/// A diffusers model folder: `config.json` + `diffusion_pytorch_model.safetensors`.
///
/// Loading validates the weights against the architecture: missing, unexpected and wrongly
/// shaped tensors are all listed by name (with both shapes) in one error. Legacy attention
/// names (`query`, `key`, `value`, `proj_attn`) are mapped to `to_q`, `to_k`, `to_v`,
/// `to_out.0`, as diffusers does. F16/BF16/F64 weights are converted to Float32.
public struct ModelFolder {
    /// The model's configuration file in the folder.
    public static let configFile = "config.json"
    /// The weights file in the folder (safetensors).
    public static let weightsFile = "diffusion_pytorch_model.safetensors"

    /// A weights file that does not fit the architecture of its config.
    public struct MismatchError: Error, CustomStringConvertible {
        /// The weights file.
        public let file: String
        /// Parameters the model needs that the file lacks, sorted.
        public let missing: [String]
        /// Tensors in the file that the model does not have, sorted.
        public let unexpected: [String]
        /// Tensors whose shape differs from the model's, with the model's shape and the file's.
        public let wrongShape: [(name: String, expected: [Int], found: [Int])]

        public var description: String {
            var lines = ["\(file): the weights do not match the model in config.json"]
            if !missing.isEmpty { lines.append("  missing (\(missing.count)): " + missing.joined(separator: ", ")) }
            if !unexpected.isEmpty { lines.append("  unexpected (\(unexpected.count)): " + unexpected.joined(separator: ", ")) }
            for w in wrongShape { lines.append("  wrong shape: \(w.name) expected \(w.expected), found \(w.found)") }
            return lines.joined(separator: "\n")
        }
    }

    /// Maps a legacy attention key to the current name (others unchanged).
    public static func modernName(_ name: String) -> String {
        for (old, new) in [(".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0.")]
        where name.contains(".attentions.") && name.contains(old) {
            return name.replacingOccurrences(of: old, with: new)
        }
        return name
    }

    /// Checks tensor shapes (by modern name) against the model's specs; lists every missing,
    /// unexpected and wrongly shaped tensor.
    public static func checkShapes(_ shapes: [String: [Int]], for model: any Module, file: String) throws {
        let specs = model.parameterSpecs
        let expected = Dictionary(uniqueKeysWithValues: specs.map { ($0.name, $0.shape) })
        let missing = specs.map(\.name).filter { shapes[$0] == nil }.sorted()
        let unexpected = shapes.keys.filter { expected[$0] == nil }.sorted()
        let wrong = specs.compactMap { spec -> (name: String, expected: [Int], found: [Int])? in
            guard let found = shapes[spec.name], found != spec.shape else { return nil }
            return (spec.name, spec.shape, found)
        }.sorted { $0.name < $1.name }
        guard missing.isEmpty && unexpected.isEmpty && wrong.isEmpty else {
            throw MismatchError(file: file, missing: missing, unexpected: unexpected, wrongShape: wrong)
        }
    }

    /// Checks `tensors` against the model's specs and returns them under their modern names.
    public static func validated(_ tensors: [String: Tensor], for model: any Module, file: String) throws -> ParameterSet {
        var renamed: ParameterSet = [:]
        for (name, t) in tensors { renamed[modernName(name)] = t }
        try checkShapes(renamed.mapValues(\.shape), for: model, file: file)
        return renamed
    }

    /// Loads a diffusers UNet2DModel and its weights from a folder (see `loadModel` for any class).
    public static func load(_ folder: String) throws -> (model: UNet2DModel, parameters: ParameterSet) {
        let (model, parameters) = try loadModel(folder)
        guard let unet = model as? UNet2DModel else {
            throw ConfigError(file: folder + "/" + configFile, field: "_class_name", problem: "holds a \(type(of: model)), not a UNet2DModel")
        }
        return (unet, parameters)
    }

    /// Loads the model a folder holds, of the class its config.json names (`_class_name`:
    /// TFArticleUNet, otherwise diffusers' UNet2DModel), and its weights.
    public static func loadModel(_ folder: String) throws -> (model: any DenoisingModel, parameters: ParameterSet) {
        let model = try model(configuredIn: folder)
        let weightsPath = folder + "/" + weightsFile
        return (model, try validated(try SafeTensors.read(contentsOf: weightsPath).tensors, for: model, file: weightsPath))
    }

    /// The model that a folder's config.json describes (no weights read).
    public static func model(configuredIn folder: String) throws -> any DenoisingModel {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw ConfigError(file: folder, field: nil, problem: "is not a model folder (expected \(configFile) and \(weightsFile) inside)")
        }
        return try model(configFile: folder + "/" + configFile)
    }

    /// The model a config.json describes: TFArticleUNet when its `_class_name` says so, otherwise
    /// diffusers' UNet2DModel.
    public static func model(configFile configPath: String) throws -> any DenoisingModel {
        if let data = FileManager.default.contents(atPath: configPath),
           let json = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
           json["_class_name"] as? String == TFArticleUNetConfig.className {
            return try TFArticleUNet(config: try TFArticleUNetConfig(json: json, file: configPath))
        }
        return try UNet2DModel(config: try UNet2DModelConfig(contentsOf: configPath))
    }

    /// Writes a model folder (created if needed): config.json and F32 weights, each atomically.
    public static func save(_ model: any DenoisingModel, parameters: ParameterSet, to folder: String) throws {
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let names = Set(model.parameterSpecs.map(\.name))
        let weights = parameters.filter { names.contains($0.key) }
        try SafeTensors(tensors: weights, metadata: ["format": "pt"]).write(to: folder + "/" + weightsFile)
        try AtomicFile.write(model.configData(), to: folder + "/" + configFile)
    }
}
