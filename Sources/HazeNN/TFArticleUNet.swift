import Foundation
import HazeIO
import HazeTensor

/// The U-Net of the TensorFlow notebook Haze started from (github.com/Yukino1010/Diffusion_Model,
/// `diffusion.ipynb`), layer for layer; Documentation/tf-article-network.md is the full spec, with
/// the map from the notebook's Keras variables to these parameter names (scripts/
/// convert_notebook_checkpoint.py applies it).
///
/// ```
/// e = swish(Dense(swish(Dense([sin, cos](t·f)))))                 time_mlp.{0,1}, f_i = e^(−i ln(10⁴)/(T/2−1))
/// h = conv1×1(x)                                                  init_conv
/// down.d: 2 × (h = res(h); push h), h = attn(h), h = avgpool2×2(h)
/// mid:    2 × res
/// up.u:   h = nearest2×(h), 2 × (h = res(cat[h, pop])), h = attn(h)
/// out = conv1×1(res(h))                                           final_res, final_conv (zero-initialised)
/// res(x):  swish(GN(conv3×3(swish(GN(conv3×3 x)·(γ+1)+β)))) + shortcut(x),  [γ, β] = Dense(e)
/// attn(X): LN_c(conv1×1(linear attention(conv1×1 X))) + X
/// ```
public struct TFArticleUNetConfig: Equatable, Sendable {
    /// Side of the square images (`image_size`), a multiple of 2^levels.
    public var imageSize = 64
    /// Channels of the input image and of the output (`in_channels`, `out_channels`).
    public var inChannels = 3, outChannels = 3
    /// Output channels of the 1×1 `init_conv` (`init_channels`).
    public var initChannels = 32
    /// Down-block widths, level 0 first (the up blocks use them reversed).
    public var channels = [64, 128, 128]
    /// Width of the middle residual blocks (`mid_channels`) and of `final_res` before the 1×1
    /// `final_conv` (`final_channels`).
    public var midChannels = 256, finalChannels = 32
    /// Residual blocks per level, down and up, and in the middle (`layers_per_block`).
    public var layersPerBlock = 2
    /// Width of the time embedding e (`time_embed_dim`, even, at least 4).
    public var timeEmbedDim = 32
    /// The base of the sinusoidal frequencies, f_i = max_positions^(−i/(T/2−1)) (`max_positions`).
    public var maxPositions = 10000.0
    /// Heads and features per head of the linear attention (`attention_heads`, `attention_head_dim`).
    public var attentionHeads = 4, attentionHeadDim = 32
    /// Groups of the group norms (`norm_num_groups`); every width must divide into them.
    public var normGroups = 8
    /// ε of the residual blocks' norms (`norm_eps`).
    public var normEpsilon: Float = 1e-5
    /// GroupNorm (the notebook's code) or BatchNorm with running statistics for sampling (the
    /// article text's simpler variant; ε as `norm_eps`).
    public var normType: NormKind = .group
    /// The linear attention after every level (false in the article text's simpler variant).
    public var attention = true
    /// ε of the channel LayerNorm after the linear attention (`attention_norm_eps`).
    public var attentionNormEpsilon: Float = 1e-3

    /// The `_class_name` in its config.json.
    public static let className = "TFArticleUNet"

    /// The notebook's network (the defaults above): 64 × 64 RGB, levels of 64, 128 and 128 channels.
    public init() {}

    /// Reads a `config.json` whose `_class_name` is TFArticleUNet (fields in the spec, §11).
    public init(json: [String: Any], file: String) throws {
        func int(_ field: String, _ current: Int) throws -> Int {
            guard let value = json[field] else { return current }
            guard let n = value as? Int, n > 0 else { throw ConfigError(file: file, field: field, problem: "must be a positive integer, not \(value)") }
            return n
        }
        func float(_ field: String, _ current: Double) throws -> Double {
            guard let value = json[field] else { return current }
            // Finite as a Float too: config.json is written back from Float fields.
            guard let x = (value as? NSNumber)?.doubleValue, x > 0, Float(x).isFinite else {
                throw ConfigError(file: file, field: field, problem: "must be a positive number below 3.4e38, not \(value)")
            }
            return x
        }
        imageSize = try int("image_size", imageSize)
        (inChannels, outChannels, initChannels) = (try int("in_channels", inChannels), try int("out_channels", outChannels), try int("init_channels", initChannels))
        if let list = json["channels"] {
            guard let widths = list as? [Int], !widths.isEmpty, widths.allSatisfy({ $0 > 0 }) else {
                throw ConfigError(file: file, field: "channels", problem: "must be a non-empty list of positive integers, not \(list)")
            }
            channels = widths
        }
        (midChannels, finalChannels, layersPerBlock) = (try int("mid_channels", midChannels), try int("final_channels", finalChannels), try int("layers_per_block", layersPerBlock))
        (timeEmbedDim, maxPositions) = (try int("time_embed_dim", timeEmbedDim), try float("max_positions", maxPositions))
        (attentionHeads, attentionHeadDim, normGroups) = (try int("attention_heads", attentionHeads), try int("attention_head_dim", attentionHeadDim), try int("norm_num_groups", normGroups))
        normEpsilon = Float(try float("norm_eps", Double(normEpsilon)))
        attentionNormEpsilon = Float(try float("attention_norm_eps", Double(attentionNormEpsilon)))
        if let value = json["norm_type"] {
            guard let text = value as? String, let kind = NormKind(rawValue: text) else {
                throw ConfigError(file: file, field: "norm_type", problem: "must be group or batch, not \(value)")
            }
            normType = kind
        }
        if let value = json["attention"] {
            guard let flag = value as? Bool else { throw ConfigError(file: file, field: "attention", problem: "must be true or false, not \(value)") }
            attention = flag
        }
        try validate(file: file)
    }

    /// Limits far beyond the notebook's network (3 levels, 2 blocks per level, 256 channels), so
    /// that a damaged config.json cannot make Haze build millions of layers or overflow its
    /// parameter arithmetic: levels, blocks per level, every width and count.
    public static let maximumLevels = 16, maximumLayersPerBlock = 64, maximumWidth = 1 << 16

    /// Checks the fields against `maximum…` and each other: group divisibility of the widths, the
    /// image size a multiple of 2^levels, an even time embedding of 4 or more. Throws `ConfigError`
    /// naming `file` and the field.
    public func validate(file: String) throws {
        guard (1...Self.maximumLevels).contains(channels.count) else {
            throw ConfigError(file: file, field: "channels", problem: "has \(channels.count) entries; Haze supports 1…\(Self.maximumLevels) levels")
        }
        let limits = [("image_size", imageSize, Self.maximumWidth), ("in_channels", inChannels, Self.maximumWidth),
                      ("out_channels", outChannels, Self.maximumWidth), ("init_channels", initChannels, Self.maximumWidth),
                      ("mid_channels", midChannels, Self.maximumWidth), ("final_channels", finalChannels, Self.maximumWidth),
                      ("layers_per_block", layersPerBlock, Self.maximumLayersPerBlock), ("time_embed_dim", timeEmbedDim, 4 * Self.maximumWidth),
                      ("attention_heads", attentionHeads, Self.maximumWidth), ("attention_head_dim", attentionHeadDim, Self.maximumWidth),
                      ("norm_num_groups", normGroups, Self.maximumWidth)] + channels.map { ("channels", $0, Self.maximumWidth) }
        for (field, value, limit) in limits where !(1...limit).contains(value) {
            throw ConfigError(file: file, field: field, problem: "value \(value) is not in 1…\(limit)")
        }
        for (field, width) in [("mid_channels", midChannels), ("final_channels", finalChannels)] + channels.map({ ("channels", $0) })
            where width % normGroups != 0 {
            throw ConfigError(file: file, field: field, problem: "\(width) is not divisible by norm_num_groups \(normGroups)")
        }
        guard imageSize % (1 << channels.count) == 0 else {
            throw ConfigError(file: file, field: "image_size", problem: "\(imageSize) is not a multiple of 2^\(channels.count) (one halving per level)")
        }
        guard timeEmbedDim % 2 == 0, timeEmbedDim >= 4 else {
            throw ConfigError(file: file, field: "time_embed_dim", problem: "must be even and at least 4, not \(timeEmbedDim)")
        }
    }

    /// The `config.json` fields, `_class_name` included.
    public func jsonObject() -> [String: Any] {
        ["_class_name": Self.className, "image_size": imageSize, "in_channels": inChannels, "out_channels": outChannels,
         "init_channels": initChannels, "channels": channels, "mid_channels": midChannels, "final_channels": finalChannels,
         "layers_per_block": layersPerBlock, "time_embed_dim": timeEmbedDim, "max_positions": maxPositions,
         "attention_heads": attentionHeads, "attention_head_dim": attentionHeadDim, "norm_num_groups": normGroups,
         "norm_eps": Double("\(normEpsilon)")!, "attention_norm_eps": Double("\(attentionNormEpsilon)")!,
         "norm_type": normType.rawValue, "attention": attention]
    }
}

/// The notebook's `resBlock` (cell 6): conv3×3 → GN → ·(γ+1)+β → swish → conv3×3 → GN → swish,
/// plus the input through a 1×1 conv when the width changes.
struct TFArticleResBlock: Module {
    let prefix: String
    let timeProjection: Linear
    let conv1, conv2: Conv2d
    let norm1, norm2: Norm
    let shortcut: Conv2d?
    let width: Int

    init(_ prefix: String, _ inChannels: Int, _ width: Int, config c: TFArticleUNetConfig) {
        (self.prefix, self.width) = (prefix, width)
        timeProjection = Linear(key(prefix, "time_proj"), c.timeEmbedDim, 2 * width)
        conv1 = Conv2d(key(prefix, "conv1"), inChannels, width, kernelSize: 3, padding: Padding2D(1))
        conv2 = Conv2d(key(prefix, "conv2"), width, width, kernelSize: 3, padding: Padding2D(1))
        norm1 = Norm(key(prefix, "norm1"), kind: c.normType, groups: c.normGroups, channels: width, epsilon: c.normEpsilon)
        norm2 = Norm(key(prefix, "norm2"), kind: c.normType, groups: c.normGroups, channels: width, epsilon: c.normEpsilon)
        shortcut = inChannels == width ? nil : Conv2d(key(prefix, "shortcut"), inChannels, width, kernelSize: 1)
    }

    var parameterSpecs: [ParameterSpec] {
        timeProjection.parameterSpecs + conv1.parameterSpecs + norm1.parameterSpecs + conv2.parameterSpecs
            + norm2.parameterSpecs + (shortcut?.parameterSpecs ?? [])
    }

    /// x: [B, Cin, H, W], e: [B, T] → [B, width, H, W]
    func callAsFunction(_ x: Tensor, _ e: Tensor, _ p: ParameterSet, _ context: ForwardContext) -> Tensor {
        let film = timeProjection(e, p).chunked(2, alongAxis: 1)  // γ, β: [B, width] each
        return norm2(conv2(normalizing: conv1(x, p), with: norm1, scale: film[0], shift: film[1], p, context), p, context, silu: true,
                     adding: shortcut.map { $0(x, p) } ?? x)
    }

    /// The block on x ⧺ skip (concatenated along the channels: an up level's state and skip), which
    /// conv1 and the shortcut read in place in inference where they can (`Tensor.readsConcatenationInPlace`).
    func callAsFunction(_ x: Tensor, concatenatedWith skip: Tensor, _ e: Tensor, _ p: ParameterSet, _ context: ForwardContext) -> Tensor {
        guard let shortcut, Tensor.readsConcatenationInPlace(x, skip, weights: [conv1.weight(p), shortcut.weight(p)]) else {
            return self(Tensor.concatenate([x, skip], alongAxis: 1), e, p, context)
        }
        let film = timeProjection(e, p).chunked(2, alongAxis: 1)
        return norm2(conv2(normalizing: conv1(x, concatenatedWith: skip, p), with: norm1, scale: film[0], shift: film[1], p, context), p,
                     context, silu: true, adding: shortcut(x, concatenatedWith: skip, p))
    }
}

/// The notebook's `LinearAttention` (cell 5): q, k, v from one 1×1 conv; q softmaxed over the head
/// features and scaled by d^(−½), k softmaxed over positions; context = K Vᵀ, out = contextᵀ Q per
/// head; then a 1×1 conv, LayerNorm over channels (ε 1e-3) and the residual. TensorFlow reshapes
/// the NHWC [B, H, W, P] tensors *as memory* to [B, heads, d, N], so each head's [d, N] block is a
/// slice of the position-major [N, P] matrix, not a group of channels (`literalCore` spells that
/// out; `Tensor.reshapedLinearAttention` computes it head by head without whole-tensor permutes).
struct TFArticleLinearAttention: Module {
    let prefix: String
    let channels, heads, headDim: Int
    let epsilon: Float

    init(_ prefix: String, channels: Int, config c: TFArticleUNetConfig) {
        (self.prefix, self.channels, heads, headDim, epsilon) = (prefix, channels, c.attentionHeads, c.attentionHeadDim, c.attentionNormEpsilon)
    }

    var hidden: Int { heads * headDim }

    var parameterSpecs: [ParameterSpec] {
        let inBound = 1 / Float(channels).squareRoot(), outBound = 1 / Float(hidden).squareRoot()
        return [ParameterSpec(key(prefix, "to_qkv.weight"), [3 * hidden, channels, 1, 1], .uniform(bound: inBound)),
                ParameterSpec(key(prefix, "to_out.0.weight"), [channels, hidden, 1, 1], .uniform(bound: outBound)),
                ParameterSpec(key(prefix, "to_out.0.bias"), [channels], .zeros),
                ParameterSpec(key(prefix, "to_out.1.weight"), [channels], .ones),
                ParameterSpec(key(prefix, "to_out.1.bias"), [channels], .zeros)]
    }

    /// x: [B, C, H, W] → [B, C, H, W]
    func callAsFunction(_ x: Tensor, _ p: ParameterSet) -> Tensor {
        let (qkvWeight, outWeight, outBias) = (p.value(key(prefix, "to_qkv.weight")), p.value(key(prefix, "to_out.0.weight")),
                                               p.value(key(prefix, "to_out.0.bias")))
        let (normWeight, normBias) = (p.value(key(prefix, "to_out.1.weight")), p.value(key(prefix, "to_out.1.bias")))
        if (x.shape[2] * x.shape[3]) % heads == 0 {
            return Tensor.reshapedLinearAttentionBlock(x, qkvWeight: qkvWeight, outWeight: outWeight, outBias: outBias,
                                                       normWeight: normWeight, normBias: normBias, epsilon: epsilon,
                                                       heads: heads, headDimension: headDim)
        }
        let projected = Tensor.conv2d(literalCore(Tensor.conv2d(x, weight: qkvWeight, bias: nil)), weight: outWeight, bias: outBias)
        return Tensor.channelLayerNorm(projected, weight: normWeight, bias: normBias, epsilon: epsilon, adding: x)
    }

    /// The attention between the two convolutions as the notebook writes it, reshapes and all:
    /// qkv [B, 3P, H, W] → [B, P, H, W]. `Tensor.reshapedLinearAttention` computes the same in one
    /// op (tested against this); this path serves position counts that do not split into the heads.
    func literalCore(_ qkv: Tensor) -> Tensor {
        let (b, h, w) = (qkv.shape[0], qkv.shape[2], qkv.shape[3]), n = h * w
        // [B, P, N] → NHWC [B, N, P] → TensorFlow's raw reshape to [B·heads, d, N].
        let parts = qkv.chunked(3, alongAxis: 1).map {
            $0.reshaped(to: [b, hidden, n]).permuted([0, 2, 1]).reshaped(to: [b * heads, headDim, n])
        }
        let q = parts[0].softmax(alongAxis: 1) * (1 / Float(headDim).squareRoot())
        let k = parts[1].softmax(alongAxis: 2)
        let context = Tensor.batchedMatmul(k, parts[2], transposeA: false, transposeB: true)   // [B·heads, d, e] = K Vᵀ
        let out = Tensor.batchedMatmul(context, q, transposeA: true, transposeB: false)          // [B·heads, e, N] = contextᵀ Q
        // Back: the memory of [B, heads, d, N] read as NHWC [B, N, P], then NCHW [B, P, H, W].
        return out.reshaped(to: [b, n, hidden]).permuted([0, 2, 1]).reshaped(to: [b, hidden, h, w])
    }
}

/// The notebook's `U_NET` (cell 7). See `TFArticleUNetConfig` for the computation.
public struct TFArticleUNet: Module {
    /// The config the network was built from (validated).
    public let config: TFArticleUNetConfig
    let timeMLP: [Linear]
    let initConv: Conv2d
    let down: [(res: [TFArticleResBlock], attention: TFArticleLinearAttention?)]
    let mid: [TFArticleResBlock]
    let up: [(res: [TFArticleResBlock], attention: TFArticleLinearAttention?)]
    let finalRes: TFArticleResBlock
    let finalConv: Conv2d

    /// Builds the layers of a validated config; throws `ConfigError` when `c` is invalid.
    public init(config c: TFArticleUNetConfig) throws {
        try c.validate(file: "TFArticleUNet config")
        config = c
        timeMLP = [Linear("time_mlp.0", c.timeEmbedDim, c.timeEmbedDim), Linear("time_mlp.1", c.timeEmbedDim, c.timeEmbedDim)]
        initConv = Conv2d("init_conv", c.inChannels, c.initChannels, kernelSize: 1)
        var width = c.initChannels
        var skips: [Int] = []
        var down: [(res: [TFArticleResBlock], attention: TFArticleLinearAttention?)] = []
        for (d, f) in c.channels.enumerated() {
            let res = (0..<c.layersPerBlock).map { j -> TFArticleResBlock in
                defer { width = f; skips.append(f) }
                return TFArticleResBlock("down.\(d).res.\(j)", width, f, config: c)
            }
            down.append((res, c.attention ? TFArticleLinearAttention("down.\(d).attn", channels: f, config: c) : nil))
        }
        mid = (0..<c.layersPerBlock).map { j in
            defer { width = c.midChannels }
            return TFArticleResBlock("mid.\(j)", width, c.midChannels, config: c)
        }
        var up: [(res: [TFArticleResBlock], attention: TFArticleLinearAttention?)] = []
        for (u, f) in c.channels.reversed().enumerated() {
            let res = (0..<c.layersPerBlock).map { j -> TFArticleResBlock in
                defer { width = f }
                return TFArticleResBlock("up.\(u).res.\(j)", width + skips.removeLast(), f, config: c)
            }
            up.append((res, c.attention ? TFArticleLinearAttention("up.\(u).attn", channels: f, config: c) : nil))
        }
        (self.down, self.up) = (down, up)
        finalRes = TFArticleResBlock("final_res", width, c.finalChannels, config: c)
        finalConv = Conv2d("final_conv", c.finalChannels, c.outChannels, kernelSize: 1)
    }

    public var parameterSpecs: [ParameterSpec] {
        var specs = timeMLP.flatMap(\.parameterSpecs) + initConv.parameterSpecs
        for level in down { specs += level.res.flatMap(\.parameterSpecs) + (level.attention?.parameterSpecs ?? []) }
        specs += mid.flatMap(\.parameterSpecs)
        for level in up { specs += level.res.flatMap(\.parameterSpecs) + (level.attention?.parameterSpecs ?? []) }
        // The notebook's final conv starts at zero (kernel_initializer="zeros"): the fresh network predicts ε̂ = 0.
        return specs + finalRes.parameterSpecs + [ParameterSpec("final_conv.weight", [config.outChannels, config.finalChannels, 1, 1], .zeros),
                                                  ParameterSpec("final_conv.bias", [config.outChannels], .zeros)]
    }

    /// The notebook's `SinusoidalPosEmb` frequencies, in TensorFlow's float32 order of operations:
    /// f_i = exp(i · −Float(ln(max_positions) / (T/2 − 1))).
    var frequencies: [Float] {
        let half = config.timeEmbedDim / 2, k = Float(Foundation.log(config.maxPositions) / Double(half - 1))
        return (0..<half).map { Foundation.exp(Float($0) * -k) }
    }

    /// [sin(t·f), cos(t·f)] through the two swish Dense layers: t [B] (raw timesteps) → [B, T].
    func timeEmbedding(_ t: [Float], _ p: ParameterSet) -> Tensor {
        let f = frequencies
        let arguments = t.map { step in f.map { step * $0 } }
        let sinusoids = Tensor(shape: [t.count, 2 * f.count], scalars: arguments.flatMap { $0.map { Foundation.sin($0) } + $0.map { Foundation.cos($0) } })
        return timeMLP[1](timeMLP[0](sinusoids, p).silu(), p).silu()
    }

    /// Predicts the noise: x [B, in, H, W] (H, W multiples of 2^levels), timesteps: B raw timesteps
    /// 0…999 (or one, broadcast) → [B, out, H, W].
    public func callAsFunction(_ x: Tensor, timesteps: [Float], parameters p: ParameterSet,
                               context: ForwardContext = ForwardContext()) -> Tensor {
        let batch = x.shape[0]
        precondition(timesteps.count == batch || timesteps.count == 1, "\(timesteps.count) timesteps for a batch of \(batch)")
        let e = timeEmbedding(timesteps.count == batch ? timesteps : Array(repeating: timesteps[0], count: batch), p)
        var h = initConv(x, p)
        var skips: [Tensor] = []
        for level in down {
            for block in level.res {
                h = block(h, e, p, context)
                skips.append(h)
            }
            h = (level.attention.map { $0(h, p) } ?? h).averagePooled2x2()
        }
        for block in mid { h = block(h, e, p, context) }
        for level in up {
            h = h.upsampledNearest2x()
            for block in level.res { h = block(h, concatenatedWith: skips.removeLast(), e, p, context) }
            h = level.attention.map { $0(h, p) } ?? h
        }
        return finalConv(finalRes(h, e, p, context), p)
    }
}
