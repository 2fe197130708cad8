import HazeTensor

/// The attention layer of a block: softmax attention (diffusers), linear attention (Haze option),
/// or none.
public enum AttentionLayer: Module {
    case softmax(SelfAttention)
    case linear(LinearAttention)

    public var parameterSpecs: [ParameterSpec] {
        switch self {
        case .softmax(let a): a.parameterSpecs
        case .linear(let a): a.parameterSpecs
        }
    }

    /// x: [N, C, H, W] → [N, C, H, W], through the attention of either kind (residual included).
    public func callAsFunction(_ x: Tensor, _ p: ParameterSet, _ context: ForwardContext) -> Tensor {
        switch self {
        case .softmax(let a): a(x, p, context)
        case .linear(let a): a(x, p, context)
        }
    }
}

/// Shared settings of the blocks of one UNet2DModel.
struct BlockSettings {
    let timeChannels, groups: Int
    let epsilon: Float
    let normKind: NormKind
    let timeEmbeddingNorm: ResnetBlock2D.TimeEmbeddingNorm
    let attentionType: UNet2DModelConfig.AttentionType
    let dropout: Float

    func resnet(_ prefix: String, _ inChannels: Int, _ outChannels: Int, scale: Float = 1) -> ResnetBlock2D {
        ResnetBlock2D(prefix, inChannels: inChannels, outChannels: outChannels, timeChannels: timeChannels, groups: groups,
                      epsilon: epsilon, normKind: normKind, timeEmbeddingNorm: timeEmbeddingNorm,
                      outputScaleFactor: scale, dropout: dropout)
    }

    /// An attention layer over `channels`, or nil when the model has attention turned off.
    func attention(_ prefix: String, _ channels: Int, headDimension: Int, groups: Int?, scale: Float = 1) -> AttentionLayer? {
        switch attentionType {
        case .none: nil
        case .softmax: .softmax(SelfAttention(prefix, channels: channels, headDimension: headDimension, groups: groups,
                                              epsilon: epsilon, normKind: normKind, rescaleOutputFactor: scale))
        case .linear: .linear(LinearAttention(prefix, channels: channels, groups: groups ?? self.groups, epsilon: epsilon, normKind: normKind))
        }
    }
}

/// DownBlock2D / AttnDownBlock2D: `layers` resnets (each followed by attention in the Attn
/// variant), then an optional Downsample2D. Returns the output and every intermediate state
/// (the skip connections the up path concatenates).
public struct DownBlock: Module {
    /// The resnets `resnets.0` … (the first takes the block's input channels, the others its output's).
    public let resnets: [ResnetBlock2D]
    /// One attention layer after each resnet (`attentions.i`), or none (DownBlock2D).
    public let attentions: [AttentionLayer]
    /// `downsamplers.0`, halving H and W, or nil in the last (deepest) block.
    public let downsampler: Downsample2D?

    init(_ prefix: String, layers: Int, inChannels: Int, outChannels: Int, withAttention: Bool, headDimension: Int,
         addDownsample: Bool, downsamplePadding: Int, settings s: BlockSettings) {
        resnets = (0..<layers).map { s.resnet(key(prefix, "resnets.\($0)"), $0 == 0 ? inChannels : outChannels, outChannels) }
        attentions = withAttention
            ? (0..<layers).compactMap { s.attention(key(prefix, "attentions.\($0)"), outChannels, headDimension: headDimension, groups: s.groups) }
            : []
        downsampler = addDownsample ? Downsample2D(key(prefix, "downsamplers.0"), channels: outChannels, padding: downsamplePadding) : nil
    }

    public var parameterSpecs: [ParameterSpec] {
        resnets.flatMap(\.parameterSpecs) + attentions.flatMap(\.parameterSpecs) + (downsampler?.parameterSpecs ?? [])
    }

    /// x: [N, in, H, W], temb: [N, T] → the output [N, out, H', W'] (halved by the downsampler, if any)
    /// and the skip states: each resnet's (or attention's) output, then the downsampled output.
    public func callAsFunction(_ x: Tensor, _ temb: Tensor, _ p: ParameterSet, _ context: ForwardContext) -> (Tensor, [Tensor]) {
        var h = x
        var states: [Tensor] = []
        for (i, resnet) in resnets.enumerated() {
            h = resnet(h, temb, p, context)
            if i < attentions.count { h = attentions[i](h, p, context) }
            states.append(h)
        }
        if let downsampler {
            h = downsampler(h, p)
            states.append(h)
        }
        return (h, states)
    }
}

/// UpBlock2D / AttnUpBlock2D: `layers` resnets, each fed the concatenation of the running
/// state and the last remaining skip state (channels: previous + skip → out), each followed
/// by attention in the Attn variant; then an optional Upsample2D.
public struct UpBlock: Module {
    /// The resnets `resnets.0` …, each taking the running state and one skip state concatenated.
    public let resnets: [ResnetBlock2D]
    /// One attention layer after each resnet (`attentions.i`), or none (UpBlock2D).
    public let attentions: [AttentionLayer]
    /// `upsamplers.0`, doubling H and W, or nil in the last (full-resolution) block.
    public let upsampler: Upsample2D?

    init(_ prefix: String, layers: Int, inChannels: Int, previousChannels: Int, outChannels: Int, withAttention: Bool,
         headDimension: Int, addUpsample: Bool, settings s: BlockSettings) {
        resnets = (0..<layers).map { i in
            let skip = i == layers - 1 ? inChannels : outChannels
            let input = i == 0 ? previousChannels : outChannels
            return s.resnet(key(prefix, "resnets.\(i)"), input + skip, outChannels)
        }
        attentions = withAttention
            ? (0..<layers).compactMap { s.attention(key(prefix, "attentions.\($0)"), outChannels, headDimension: headDimension, groups: s.groups) }
            : []
        upsampler = addUpsample ? Upsample2D(key(prefix, "upsamplers.0"), channels: outChannels) : nil
    }

    public var parameterSpecs: [ParameterSpec] {
        resnets.flatMap(\.parameterSpecs) + attentions.flatMap(\.parameterSpecs) + (upsampler?.parameterSpecs ?? [])
    }

    /// skips: the skip states this block consumes, in the order they were produced.
    public func callAsFunction(_ x: Tensor, skips: [Tensor], _ temb: Tensor, _ p: ParameterSet, _ context: ForwardContext) -> Tensor {
        var h = x
        var remaining = skips
        for (i, resnet) in resnets.enumerated() {
            h = resnet(h, concatenatedWith: remaining.removeLast(), temb, p, context)
            if i < attentions.count { h = attentions[i](h, p, context) }
        }
        return upsampler.map { $0(h, p) } ?? h
    }
}

/// UNetMidBlock2D: resnet, then (attention, resnet) once; attention optional (`add_attention`).
public struct MidBlock: Module {
    /// The two resnets, `resnets.0` and `resnets.1` (channels → channels).
    public let resnets: [ResnetBlock2D]
    /// The attention between them (`attentions.0`), or nil without `add_attention`.
    public let attention: AttentionLayer?

    init(_ prefix: String, channels: Int, headDimension: Int, addAttention: Bool, attentionGroups: Int?,
         scale: Float, settings s: BlockSettings) {
        resnets = (0..<2).map { s.resnet(key(prefix, "resnets.\($0)"), channels, channels, scale: scale) }
        attention = addAttention
            ? s.attention(key(prefix, "attentions.0"), channels, headDimension: headDimension, groups: attentionGroups, scale: scale)
            : nil
    }

    public var parameterSpecs: [ParameterSpec] { resnets.flatMap(\.parameterSpecs) + (attention?.parameterSpecs ?? []) }

    /// x: [N, C, H, W], temb: [N, T] → [N, C, H, W].
    public func callAsFunction(_ x: Tensor, _ temb: Tensor, _ p: ParameterSet, _ context: ForwardContext) -> Tensor {
        var h = resnets[0](x, temb, p, context)
        if let attention { h = attention(h, p, context) }
        return resnets[1](h, temb, p, context)
    }
}
