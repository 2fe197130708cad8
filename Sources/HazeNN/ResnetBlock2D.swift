import HazeTensor

/// diffusers' ResnetBlock2D (Ho et al. 2020, appendix B; Wide-ResNet block with time conditioning):
///   h = conv1(SiLU(norm1(x)))
///   default:      h = SiLU(norm2(h + proj(SiLU(temb))))
///   scale_shift:  (s, b) = split(proj(SiLU(temb))),  h = SiLU(norm2(h) · (1 + s) + b)
///   h = conv2(dropout(h));   out = (shortcut(x) + h) / output_scale_factor
/// shortcut is a 1×1 conv (`conv_shortcut`) when in ≠ out channels, else the identity.
public struct ResnetBlock2D: Module {
    /// How the time embedding enters (diffusers' `resnet_time_scale_shift`): added before norm2
    /// (`default`), or as a scale and shift of norm2's output (`scale_shift`, FiLM).
    public enum TimeEmbeddingNorm: String, Codable, Sendable { case `default`, scaleShift = "scale_shift" }

    /// The norms before conv1 (`norm1`, input channels) and conv2 (`norm2`, output channels).
    public let norm1, norm2: Norm
    /// The 3×3 convolutions, padding 1: `conv1` in → out, `conv2` out → out.
    public let conv1, conv2: Conv2d
    /// `time_emb_proj`: time-embedding channels → out channels (2 · out with `scale_shift`).
    public let timeProjection: Linear
    /// The 1×1 `conv_shortcut` when the channel count changes, else nil (identity).
    public let shortcut: Conv2d?
    /// How the time embedding enters.
    public let timeEmbeddingNorm: TimeEmbeddingNorm
    /// The output is divided by this (diffusers' `output_scale_factor`).
    public let outputScaleFactor: Float
    /// Dropout probability before conv2, applied in training only.
    public let dropout: Float

    /// The block under `prefix`: `inChannels` → `outChannels` channels, `timeChannels` time-embedding
    /// features, norms of `groups` groups and `epsilon`.
    public init(_ prefix: String, inChannels: Int, outChannels: Int, timeChannels: Int, groups: Int, epsilon: Float,
                normKind: NormKind, timeEmbeddingNorm: TimeEmbeddingNorm, outputScaleFactor: Float = 1, dropout: Float = 0) {
        norm1 = Norm(key(prefix, "norm1"), kind: normKind, groups: groups, channels: inChannels, epsilon: epsilon)
        conv1 = Conv2d(key(prefix, "conv1"), inChannels, outChannels, kernelSize: 3, padding: Padding2D(1))
        timeProjection = Linear(key(prefix, "time_emb_proj"), timeChannels,
                                timeEmbeddingNorm == .scaleShift ? 2 * outChannels : outChannels)
        norm2 = Norm(key(prefix, "norm2"), kind: normKind, groups: groups, channels: outChannels, epsilon: epsilon)
        conv2 = Conv2d(key(prefix, "conv2"), outChannels, outChannels, kernelSize: 3, padding: Padding2D(1))
        shortcut = inChannels != outChannels ? Conv2d(key(prefix, "conv_shortcut"), inChannels, outChannels, kernelSize: 1) : nil
        (self.timeEmbeddingNorm, self.outputScaleFactor, self.dropout) = (timeEmbeddingNorm, outputScaleFactor, dropout)
    }

    public var parameterSpecs: [ParameterSpec] {
        norm1.parameterSpecs + conv1.parameterSpecs + timeProjection.parameterSpecs + norm2.parameterSpecs
            + conv2.parameterSpecs + (shortcut?.parameterSpecs ?? [])
    }

    /// x: [N, in, H, W], temb: [N, T] → [N, out, H, W]. The time embedding (default) and the
    /// skip connection (`output_scale_factor` 1) are added by the convolutions before them
    /// (`adding:`), the same sums as separate additions, without their passes over the activations.
    public func callAsFunction(_ x: Tensor, _ temb: Tensor, _ p: ParameterSet, _ context: ForwardContext) -> Tensor {
        let t = timeProjection(temb.silu(), p)
        let c = conv1.outChannels
        let dropping = context.training && dropout > 0
        let residual = shortcut.map { $0(x, p) } ?? x
        let skip = outputScaleFactor == 1 ? residual : nil
        var h: Tensor
        switch timeEmbeddingNorm {
        case .default where !dropping:
            return output(conv1(normalizing: x, with: norm1, p, context, adding: t.reshaped(to: [t.shape[0], c, 1, 1])),
                          residual: residual, p, context)
        case .default:
            h = norm2(conv1(normalizing: x, with: norm1, p, context, adding: t.reshaped(to: [t.shape[0], c, 1, 1])), p, context, silu: true)
            h = conv2(h.dropout(probability: dropout, generator: &context.generator), p, adding: skip)
        case .scaleShift:
            let parts = t.reshaped(to: [t.shape[0], 2 * c, 1, 1]).chunked(2, alongAxis: 1)
            h = (norm2(conv1(normalizing: x, with: norm1, p, context), p, context) * (parts[0] + 1) + parts[1]).silu()
            if dropping { h = h.dropout(probability: dropout, generator: &context.generator) }
            h = conv2(h, p, adding: skip)
        }
        return skip != nil ? h : (residual + h) * (1 / outputScaleFactor)
    }

    /// The block on x [N, C₁, H, W] ⧺ skip [N, in − C₁, H, W] (concatenated along the channels: an
    /// up block's running state and skip connection). In inference, where norm1, conv1 and the
    /// shortcut can (`Tensor.readsConcatenationInPlace`), they read the two tensors in place
    /// instead of a copy of their concatenation: the same bits, one copy of the block's input fewer.
    public func callAsFunction(_ x: Tensor, concatenatedWith skip: Tensor, _ temb: Tensor, _ p: ParameterSet,
                               _ context: ForwardContext) -> Tensor {
        guard let shortcut, timeEmbeddingNorm == .default, norm1.kind == .group, !(context.training && dropout > 0),
              Tensor.readsConcatenationInPlace(x, skip, weights: [conv1.weight(p), shortcut.weight(p)])
        else { return self(Tensor.concatenate([x, skip], alongAxis: 1), temb, p, context) }
        let t = timeProjection(temb.silu(), p), shifts = t.reshaped(to: [t.shape[0], conv1.outChannels, 1, 1])
        return output(conv1(normalizing: x, concatenatedWith: skip, with: norm1, p, adding: shifts),
                      residual: shortcut(x, concatenatedWith: skip, p), p, context)
    }

    /// (shortcut + conv2(SiLU(norm2(h)))) / output_scale_factor for conv1's output h (time
    /// embedding added, no dropout); with factor 1 the shortcut is added by conv2 itself.
    private func output(_ h: Tensor, residual: Tensor, _ p: ParameterSet, _ context: ForwardContext) -> Tensor {
        if outputScaleFactor == 1 { return conv2(normalizing: h, with: norm2, p, context, adding: residual) }
        return (residual + conv2(normalizing: h, with: norm2, p, context)) * (1 / outputScaleFactor)
    }
}
