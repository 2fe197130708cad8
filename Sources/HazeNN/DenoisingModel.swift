import Foundation
import HazeTensor

/// What samplers, the trainer and the commands need of a noise-prediction network, whatever its
/// architecture: diffusers' `UNet2DModel` or the TensorFlow notebook's `TFArticleUNet`. A model
/// folder's `config.json` names its class (`_class_name`), and `ModelFolder.loadModel` picks the
/// type from it.
public protocol DenoisingModel: Module {
    /// Channels of the images it takes.
    var inChannels: Int { get }
    /// The image size ([H, W]) it was made for, when its config says.
    var sampleSize: [Int]? { get }
    /// Image sides must be multiples of this (one halving per level).
    var sizeMultiple: Int { get }
    /// Whether it takes class labels.
    var isClassConditional: Bool { get }
    /// Rows of its class-embedding table (the last is the null class of classifier-free guidance),
    /// or nil when it has none.
    var classTableSize: Int? { get }
    /// The model's prediction for x [B, C, H, W] at B timesteps (or one, broadcast).
    func callAsFunction(_ x: Tensor, timesteps: [Float], classLabels: Tensor?, parameters: ParameterSet,
                        context: ForwardContext) -> Tensor
    /// Its `config.json`.
    func configData() -> Data
    /// A few lines for `haze inspect`.
    var summary: String { get }
}

extension DenoisingModel {
    /// The prediction with a fresh inference `ForwardContext` (no dropout, BatchNorm with its
    /// running statistics).
    public func callAsFunction(_ x: Tensor, timesteps: [Float], classLabels: Tensor? = nil, parameters: ParameterSet) -> Tensor {
        callAsFunction(x, timesteps: timesteps, classLabels: classLabels, parameters: parameters, context: ForwardContext())
    }
}

extension UNet2DModel: DenoisingModel {
    public var inChannels: Int { config.inChannels }
    public var sampleSize: [Int]? { config.sampleSize }
    public var sizeMultiple: Int { 1 << (config.blockOutChannels.count - 1) }
    public var isClassConditional: Bool { config.isClassConditional }
    public var classTableSize: Int? { config.classEmbedType == nil ? config.numClassEmbeds : nil }
    public func configData() -> Data { config.jsonData() }

    public var summary: String {
        let c = config
        var lines = ["UNet2DModel: in \(c.inChannels) → out \(c.outChannels) channels, sample size \(c.sampleSize.map { "\($0[0])×\($0[1])" } ?? "unspecified")",
                     "  blocks \(c.blockOutChannels), \(c.layersPerBlock) layers per block, \(c.normNumGroups) groups, eps \(c.normEps)",
                     "  down \(c.downBlockTypes.joined(separator: ", "))",
                     "  up   \(c.upBlockTypes.joined(separator: ", "))",
                     "  attention head dim \(c.attentionHeadDim.map(String.init) ?? "channels"), time embedding \(c.timeEmbedDimension), "
                         + "scale shift \(c.resnetTimeScaleShift.rawValue), norm \(c.normType.rawValue), attention \(c.attentionType.rawValue)"]
        if c.isClassConditional {
            lines.append("  class-conditional: " + (c.classEmbedType?.rawValue ?? "\(c.numClassEmbeds!) classes (embedding table)"))
        }
        return lines.joined(separator: "\n")
    }
}

extension TFArticleUNet: DenoisingModel {
    public var inChannels: Int { config.inChannels }
    public var sampleSize: [Int]? { [config.imageSize, config.imageSize] }
    public var sizeMultiple: Int { 1 << config.channels.count }
    public var isClassConditional: Bool { false }
    public var classTableSize: Int? { nil }

    public func callAsFunction(_ x: Tensor, timesteps: [Float], classLabels: Tensor?, parameters: ParameterSet,
                               context: ForwardContext) -> Tensor {
        precondition(classLabels == nil, "TFArticleUNet takes no class labels")
        return self(x, timesteps: timesteps, parameters: parameters, context: context)
    }

    public func configData() -> Data {
        (try? JSONSerialization.data(withJSONObject: config.jsonObject(), options: [.prettyPrinted, .sortedKeys])) ?? Data()
    }

    public var summary: String {
        let c = config
        return ["TFArticleUNet (the TensorFlow notebook's U-Net): in \(c.inChannels) → out \(c.outChannels) channels, image size \(c.imageSize)×\(c.imageSize)",
                "  stem \(c.initChannels), levels \(c.channels), middle \(c.midChannels), final \(c.finalChannels), \(c.layersPerBlock) residual blocks per level",
                "  " + (c.normType == .group ? "GroupNorm \(c.normGroups) groups" : "BatchNorm") + " eps \(c.normEpsilon), "
                    + (c.attention ? "linear attention \(c.attentionHeads) heads × \(c.attentionHeadDim)" : "no attention") + ", time embedding \(c.timeEmbedDim)"]
            .joined(separator: "\n")
    }
}
