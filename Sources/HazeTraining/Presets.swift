import HazeNN

/// Named model configurations for `haze train --preset`.
public enum ModelPreset: String, CaseIterable, Sendable {
    /// A tiny U-Net that trains on Fashion-MNIST in a few minutes on two cores (`make demo`).
    case fmnistTiny = "fmnist-tiny"
    /// The reference workload fmnist-s: channels 32/64/128, attention at 7×7.
    case fmnistSmall = "fmnist-small"
    /// A larger Fashion-MNIST U-Net: channels 64/128/256, attention at 14×14 and 7×7.
    case fmnistLarge = "fmnist-large"
    /// The TensorFlow notebook's own U-Net (`TFArticleUNet`, layer for layer: 6,179,331
    /// parameters at 64×64×3), at the data's channels and size.
    case tfArticle = "tf-article"
    /// The article text's simpler variant of the notebook's network: BatchNorm (running
    /// statistics for sampling) instead of GroupNorm, no attention.
    case tfArticleSimple = "tf-article-simple"
    /// A diffusers UNet2DModel in the notebook's spirit (GroupNorm, linear attention with 4 heads ×
    /// 32 in every block, channels 32/64/128/256): what `tf-article` was before the exact port.
    case tfArticleDiffusers = "tf-article-diffusers"

    /// The preset's network for images of `channels` × `size` × `size`.
    public func model(channels: Int = 1, size: Int = 28) throws -> any DenoisingModel {
        guard self == .tfArticle || self == .tfArticleSimple else { return try UNet2DModel(config: config(channels: channels, size: size)) }
        var c = TFArticleUNetConfig()
        (c.inChannels, c.outChannels, c.imageSize) = (channels, channels, size)
        if self == .tfArticleSimple { (c.normType, c.attention, c.normEpsilon) = (.batch, false, 1e-3) }
        return try TFArticleUNet(config: c)
    }

    /// The UNet2DModel config of a diffusers-style preset (`tf-article` is not one).
    public func config(channels: Int = 1, size: Int = 28) -> UNet2DModelConfig {
        var c = UNet2DModelConfig()
        c.sampleSize = [size, size]; c.inChannels = channels; c.outChannels = channels
        switch self {
        case .fmnistTiny:
            c.blockOutChannels = [32, 64, 64]; c.layersPerBlock = 1; c.normNumGroups = 8
            c.downBlockTypes = ["DownBlock2D", "DownBlock2D", "DownBlock2D"]
            c.upBlockTypes = ["UpBlock2D", "UpBlock2D", "UpBlock2D"]
            c.addAttention = false
        case .fmnistSmall:
            c.blockOutChannels = [32, 64, 128]; c.layersPerBlock = 2; c.normNumGroups = 8
            c.downBlockTypes = ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"]
            c.upBlockTypes = ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]
        case .fmnistLarge:
            c.blockOutChannels = [64, 128, 256]; c.layersPerBlock = 2; c.normNumGroups = 32
            c.downBlockTypes = ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"]
            c.upBlockTypes = ["AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"]
        case .tfArticle, .tfArticleSimple, .tfArticleDiffusers:
            c.blockOutChannels = [32, 64, 128, 256]; c.layersPerBlock = 2; c.normNumGroups = 8
            c.downBlockTypes = Array(repeating: "AttnDownBlock2D", count: 4)
            c.upBlockTypes = Array(repeating: "AttnUpBlock2D", count: 4)
            c.attentionType = .linear
        }
        return c
    }
}
