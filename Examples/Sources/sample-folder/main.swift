// Samples a grid of images from a model folder with HazeKit's stable API:
//   swift run --package-path Examples sample-folder MODEL_FOLDER [OUT.png] [--steps N]
// MODEL_FOLDER: a diffusers model folder, a saved pipeline, or a Haze run (`haze train --out`).
import Foundation
import HazeKit

var arguments = Array(CommandLine.arguments.dropFirst())
var steps = 50
if let i = arguments.firstIndex(of: "--steps"), i + 1 < arguments.count, let n = Int(arguments[i + 1]) {
    steps = n
    arguments.removeSubrange(i...(i + 1))
}
guard (1...2).contains(arguments.count), arguments.allSatisfy({ !$0.hasPrefix("-") }) else {
    FileHandle.standardError.write(Data("usage: sample-folder MODEL_FOLDER [OUT.png] [--steps N]\n".utf8))
    exit(1)
}
let output = arguments.count > 1 ? arguments[1] : "samples.png"
do {
    let pipeline = try DiffusionPipeline(contentsOf: arguments[0])  // weights + scheduler_config.json
    let images = try pipeline.sample(count: 16, scheduler: .ddim, steps: steps)  // [16, C, H, W] in [−1, 1]
    try PNG.writeGrid(images, to: output)
    print("wrote \(output): 16 images, DDIM, \(steps) steps")
} catch {
    FileHandle.standardError.write(Data("sample-folder: \(error)\n".utf8))
    exit(1)
}
