import ArgumentParser
import Foundation
import HazeIO
import HazeNN
import HazeTensor
import HazeTraining

/// `haze predict`: one forward pass of a U-Net on a tensor from a file.
struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the U-Net in a model folder once on an input tensor and write its prediction.",
        discussion: """
        The input file holds one tensor x of shape [B, C, H, W]; the prediction is written as the tensor \
        `sample`. Use it to check a converted model against diffusers:
          haze predict --model ~/ddpm-cifar10-32 --input x.safetensors --timesteps 10,500 --output y.safetensors
        """)

    @Option(help: "A model folder (config.json + diffusion_pytorch_model.safetensors: diffusers' UNet2DModel or a converted TensorFlow-notebook TFArticleUNet), a saved diffusers pipeline (model_index.json, unet/), or a Haze run.")
    var model: String
    @Option(help: "A safetensors file with one tensor of shape [B, C, H, W].")
    var input: String
    @Option(help: "Timesteps, one per batch item or one for all (e.g. 10,500).")
    var timesteps: String
    @Option(help: "Class labels for a class-conditional model, one per batch item (e.g. 3,7).")
    var classLabels: String?
    @Option(help: "Where to write the prediction (tensor `sample`).")
    var output: String
    @OptionGroup var compute: ComputeOptions
    @OptionGroup var precision: PrecisionOption

    func run() throws {
        try precision.apply()
        try compute.apply()
        let (unet, parameters) = try ModelFolder.loadModel(try ModelLocation.resolve(model).folder)
        let file = try SafeTensors.read(contentsOf: input)
        guard file.tensors.count == 1, let x = file.tensors.values.first else {
            throw CLIError("\(input): expected exactly one tensor, found \(file.tensors.count) (\(file.tensors.keys.sorted().joined(separator: ", ")))")
        }
        try checkInput(x, for: unet)
        let t = try parseNumbers(timesteps, option: "--timesteps")
        guard t.count == x.shape[0] || t.count == 1 else {
            throw ValidationError("--timesteps has \(t.count) values for a batch of \(x.shape[0]) (give one per item, or one for all)")
        }
        let labels = try classLabelTensor(classLabels, batch: x.shape[0], model: unet)
        let y = unet(x, timesteps: t, classLabels: labels, parameters: parameters)
        try SafeTensors(tensors: ["sample": y]).write(to: output)
        print("wrote \(output): sample \(y.shape)")
    }

    func checkInput(_ x: Tensor, for model: any DenoisingModel) throws {
        guard x.rank == 4, x.shape[0] > 0 else { throw CLIError("\(input): the tensor has shape \(x.shape); expected [B, C, H, W] with B ≥ 1") }
        guard x.shape[1] == model.inChannels else {
            throw CLIError("\(input): the tensor has \(x.shape[1]) channels; the model takes \(model.inChannels)")
        }
        let factor = model.sizeMultiple
        guard x.shape[2] % factor == 0, x.shape[3] % factor == 0, x.shape[2] > 0, x.shape[3] > 0 else {
            throw CLIError("\(input): height and width \(x.shape[2])×\(x.shape[3]) must be multiples of \(factor) for this model")
        }
    }
}

/// Validates `--class-labels` against the model and returns them as a [B] tensor (nil for an
/// unconditional model).
func classLabelTensor(_ text: String?, batch: Int, model: any DenoisingModel) throws -> Tensor? {
    guard model.isClassConditional else {
        if text != nil { throw ValidationError("--class-labels given, but this model is not class-conditional") }
        return nil
    }
    guard let text else { throw ValidationError("this model is class-conditional: give --class-labels (one per batch item)") }
    let labels = try parseNumbers(text, option: "--class-labels")
    guard labels.count == batch else { throw ValidationError("--class-labels has \(labels.count) values for a batch of \(batch)") }
    if let classes = model.classTableSize {
        for l in labels where l != l.rounded() || l < 0 || Int(l) >= classes {
            throw ValidationError("class label \(l) is out of range: this model has classes 0…\(classes - 1)")
        }
    }
    return Tensor(labels)
}
