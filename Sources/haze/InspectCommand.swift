import ArgumentParser
import Foundation
import HazeIO
import HazeNN
import HazeTraining

/// `haze inspect`: what is in a model folder or a safetensors file.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a model folder's config and parameter counts per block, or a safetensors file's tensors.")

    @Argument(help: "A model folder, a saved diffusers pipeline (model_index.json, unet/), a Haze run, or a .safetensors file.")
    var path: String

    @Flag(help: "List every tensor (name, dtype, shape).")
    var tensors = false

    func run() throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw ValidationError("\(path): no such file or folder")
        }
        if isDirectory.boolValue {
            try inspectFolder()
        } else {
            let (entries, metadata) = try SafeTensors.entries(contentsOf: path)
            if !metadata.isEmpty { print("metadata: " + metadata.keys.sorted().map { "\($0)=\(metadata[$0]!)" }.joined(separator: ", ")) }
            printEntries(entries, all: true)
        }
    }

    func inspectFolder() throws {
        let location = try ModelLocation.resolve(path)
        if location.folder != path { print("model: \(location.folder)") }
        let model = try ModelFolder.model(configuredIn: location.folder)
        let weights = location.weightsFile
        let (entries, _) = try SafeTensors.entries(contentsOf: weights)
        try ModelFolder.checkShapes(Dictionary(uniqueKeysWithValues: entries.map { (ModelFolder.modernName($0.name), $0.shape) }),
                                    for: model, file: weights)
        print(model.summary)
        // Parameter count per block (down_blocks.N, mid_block, up_blocks.N, or the top-level layer).
        var perBlock: [(String, Int)] = []
        for entry in entries {
            let parts = entry.name.split(separator: ".")
            let block = parts[0].hasSuffix("_blocks") || ["down", "up", "mid"].contains(parts[0]) ? "\(parts[0]).\(parts[1])" : String(parts[0])
            let count = entry.shape.reduce(1, *)
            if let i = perBlock.firstIndex(where: { $0.0 == block }) { perBlock[i].1 += count } else { perBlock.append((block, count)) }
        }
        let order = ["conv_in", "init_conv", "time_embedding", "time_mlp", "class_embedding"]
        perBlock.sort { a, b in
            func rank(_ s: String) -> (Int, String) {
                if let i = order.firstIndex(of: s) { return (i, s) }
                if s.hasPrefix("down_blocks") || s.hasPrefix("down.") { return (3, s) }
                if s == "mid_block" || s.hasPrefix("mid.") { return (4, s) }
                if s.hasPrefix("up_blocks") || s.hasPrefix("up.") { return (5, s) }
                return (6, s)
            }
            return rank(a.0) < rank(b.0)
        }
        print("parameters: \(entries.reduce(0) { $0 + $1.shape.reduce(1, *) }) (\(entries.count) tensors, dtypes \(Set(entries.map(\.dtype)).sorted().joined(separator: ", ")))")
        for (block, count) in perBlock { print("  \(block.padding(toLength: 20, withPad: " ", startingAt: 0)) \(count)") }
        if tensors { printEntries(entries, all: true) }
    }

    func printEntries(_ entries: [SafeTensors.Entry], all: Bool) {
        print("\(entries.count) tensors, \(entries.reduce(0) { $0 + $1.shape.reduce(1, *) }) values:")
        for e in entries { print("  \(e.name)  \(e.dtype)  \(e.shape)") }
    }
}
