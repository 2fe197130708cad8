import HazeTensor

/// Basic layers with PyTorch's parameter names and initialisation. Each takes its key prefix
/// (e.g. `time_embedding.linear_1`) and reads `prefix.weight` / `prefix.bias`.

/// y = x Wᵀ + b. weight: [out, in], bias: [out]. (nn.Linear)
public struct Linear: Module {
    /// The key prefix of its parameters (`prefix.weight`, `prefix.bias`).
    public let prefix: String
    /// Features of the input's last axis and of the output's.
    public let inFeatures, outFeatures: Int
    /// Whether the layer adds a bias.
    public let bias: Bool

    /// A layer `inFeatures` → `outFeatures` under `prefix`; weight and bias initialised
    /// U(−1/√in, 1/√in) as PyTorch does.
    public init(_ prefix: String, _ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) {
        (self.prefix, self.inFeatures, self.outFeatures, self.bias) = (prefix, inFeatures, outFeatures, bias)
    }

    public var parameterSpecs: [ParameterSpec] {
        let bound = 1 / Float(inFeatures).squareRoot()
        return [ParameterSpec(key(prefix, "weight"), [outFeatures, inFeatures], .uniform(bound: bound))]
            + (bias ? [ParameterSpec(key(prefix, "bias"), [outFeatures], .uniform(bound: bound))] : [])
    }

    /// x: […, in] → […, out]
    public func callAsFunction(_ x: Tensor, _ p: ParameterSet) -> Tensor {
        Tensor.linear(x, weight: weight(p), bias: biasValue(p))
    }

    /// The weight [out, in] and the bias [out] (nil without bias), for layers that apply them
    /// another way (e.g. as a 1×1 convolution).
    public func weight(_ p: ParameterSet) -> Tensor { p.value(key(prefix, "weight")) }
    /// The bias [out], or nil for a layer without bias.
    public func biasValue(_ p: ParameterSet) -> Tensor? { bias ? p.value(key(prefix, "bias")) : nil }
}

/// 2-D convolution. weight: [out, in, k, k], bias: [out]. (nn.Conv2d)
public struct Conv2d: Module {
    /// The key prefix of its parameters (`prefix.weight`, `prefix.bias`).
    public let prefix: String
    /// Input and output channels, the (square) kernel side, and the stride in both directions.
    public let inChannels, outChannels, kernelSize, stride: Int
    /// Zero padding of the input, per side.
    public let padding: Padding2D

    /// A convolution with bias under `prefix`; weight and bias initialised U(−1/√fan_in, 1/√fan_in),
    /// fan_in = in · k², as PyTorch does. Output height ⌊(H + top + bottom − k)/stride⌋ + 1, width alike.
    public init(_ prefix: String, _ inChannels: Int, _ outChannels: Int, kernelSize: Int, stride: Int = 1, padding: Padding2D = .zero) {
        (self.prefix, self.inChannels, self.outChannels) = (prefix, inChannels, outChannels)
        (self.kernelSize, self.stride, self.padding) = (kernelSize, stride, padding)
    }

    public var parameterSpecs: [ParameterSpec] {
        let bound = 1 / Float(inChannels * kernelSize * kernelSize).squareRoot()
        return [ParameterSpec(key(prefix, "weight"), [outChannels, inChannels, kernelSize, kernelSize], .uniform(bound: bound)),
                ParameterSpec(key(prefix, "bias"), [outChannels], .uniform(bound: bound))]
    }

    /// x: [N, in, H, W] → [N, out, H', W'], plus `adding` ([N, out, H', W'] or [N, out, 1, 1]; see
    /// `Tensor.conv2d(_:weight:bias:stride:padding:adding:)`).
    public func callAsFunction(_ x: Tensor, _ p: ParameterSet, adding addend: Tensor? = nil) -> Tensor {
        Tensor.conv2d(x, weight: weight(p), bias: p.value(key(prefix, "bias")),
                      stride: stride, padding: padding, adding: addend)
    }

    /// conv(x ⧺ second): x [N, C₁, H, W] and second [N, in − C₁, H, W] concatenated along the
    /// channels, read in place in inference where the path can (`Tensor.conv2d(_:concatenatedWith:…)`).
    public func callAsFunction(_ x: Tensor, concatenatedWith second: Tensor, _ p: ParameterSet) -> Tensor {
        Tensor.conv2d(x, concatenatedWith: second, weight: weight(p), bias: p.value(key(prefix, "bias")), stride: stride,
                      padding: padding)
    }

    /// The weight [out, in, k, k].
    public func weight(_ p: ParameterSet) -> Tensor { p.value(key(prefix, "weight")) }

    /// conv(SiLU(norm(x))), the norm, activation and convolution of a U-Net block: x [N, in, H, W] →
    /// [N, out, H', W']. With a group norm, SiLU(norm(x)) is not kept for the backward pass but
    /// recomputed there, and where the convolution can, it reads x through the norm without
    /// writing SiLU(norm(x)) out at all (`Tensor.conv2d(siluOfGroupNorm:…)`: the same values, one
    /// activation fewer in memory); a batch norm (running statistics) runs as `self(norm(x))`.
    /// With `scale` γ and `shift` β [N, C], the norm is modulated as `Norm`'s FiLM form:
    /// conv(SiLU(norm(x) · (1 + γ) + β)). `adding` is added to the result, as in `callAsFunction(_:_:adding:)`.
    public func callAsFunction(normalizing x: Tensor, with norm: Norm, scale gamma: Tensor? = nil, shift beta: Tensor? = nil,
                               _ p: ParameterSet, _ context: ForwardContext, adding addend: Tensor? = nil) -> Tensor {
        guard norm.kind == .group else {
            if let gamma, let beta { return self(norm(x, p, context, scale: gamma, shift: beta, silu: true), p, adding: addend) }
            return self(norm(x, p, context, silu: true), p, adding: addend)
        }
        let affine = norm.groupAffine(p, scale: gamma, shift: beta)
        return Tensor.conv2d(siluOfGroupNorm: x, groups: norm.groups, scale: affine.scale, shift: affine.shift, epsilon: norm.epsilon,
                             weight: weight(p), bias: p.value(key(prefix, "bias")), stride: stride, padding: padding, adding: addend)
    }

    /// conv(SiLU(norm(x ⧺ second))) with a group norm: x [N, C₁, H, W] and second [N, in − C₁, H, W]
    /// concatenated along the channels, read in place in inference where the path can
    /// (`Tensor.conv2d(siluOfGroupNorm:concatenatedWith:…)`). `adding` as in `callAsFunction(normalizing:…)`.
    public func callAsFunction(normalizing x: Tensor, concatenatedWith second: Tensor, with norm: Norm, _ p: ParameterSet,
                               adding addend: Tensor? = nil) -> Tensor {
        precondition(norm.kind == .group, "Conv2d: a concatenation is read in place through a group norm only")
        let affine = norm.groupAffine(p)
        return Tensor.conv2d(siluOfGroupNorm: x, concatenatedWith: second, groups: norm.groups, scale: affine.scale,
                             shift: affine.shift, epsilon: norm.epsilon, weight: weight(p), bias: p.value(key(prefix, "bias")),
                             stride: stride, padding: padding, adding: addend)
    }
}

/// Which normalisation a model uses: diffusers' GroupNorm, or (Haze option `norm_type: "batch"`)
/// BatchNorm2d as in the TensorFlow article Haze started from.
public enum NormKind: String, Codable, Sendable {
    case group, batch
}

/// GroupNorm (or BatchNorm2d) with affine weight and bias: `prefix.weight`, `prefix.bias`, and
/// for BatchNorm the buffers `prefix.running_mean`, `prefix.running_var`.
public struct Norm: Module {
    /// The key prefix of its parameters and buffers.
    public let prefix: String
    /// Group or batch normalisation.
    public let kind: NormKind
    /// Groups of the group norm (the channels must divide into them), and channels C.
    public let groups, channels: Int
    /// Added to the variance before the square root.
    public let epsilon: Float

    /// A norm of `channels` channels under `prefix`: weight 1, bias 0 (running mean 0, variance 1 for
    /// BatchNorm).
    public init(_ prefix: String, kind: NormKind = .group, groups: Int, channels: Int, epsilon: Float) {
        (self.prefix, self.kind, self.groups, self.channels, self.epsilon) = (prefix, kind, groups, channels, epsilon)
    }

    public var parameterSpecs: [ParameterSpec] {
        [ParameterSpec(key(prefix, "weight"), [channels], .ones), ParameterSpec(key(prefix, "bias"), [channels], .zeros)]
            + (kind == .batch ? [ParameterSpec(key(prefix, "running_mean"), [channels], .zeros, isBuffer: true),
                                 ParameterSpec(key(prefix, "running_var"), [channels], .ones, isBuffer: true)] : [])
    }

    /// x: [N, C, *] → same shape; followed by SiLU when `silu`, then plus `residual` (x's shape)
    /// when given (both fused into the group norm).
    public func callAsFunction(_ x: Tensor, _ p: ParameterSet, _ context: ForwardContext, silu: Bool = false,
                               adding residual: Tensor? = nil) -> Tensor {
        let (w, b) = (p.value(key(prefix, "weight")), p.value(key(prefix, "bias")))
        switch kind {
        case .group:
            return Tensor.groupNorm(x, groups: groups, weight: w, bias: b, epsilon: epsilon, applyingSiLU: silu, adding: residual)
        case .batch:
            let (meanKey, varKey) = (key(prefix, "running_mean"), key(prefix, "running_var"))
            var mean = context.buffers[meanKey] ?? p.value(meanKey)
            var variance = context.buffers[varKey] ?? p.value(varKey)
            let y = Tensor.batchNorm(x, weight: w, bias: b, runningMean: &mean, runningVariance: &variance,
                                     training: context.training, epsilon: epsilon)
            if context.training { context.buffers[meanKey] = mean; context.buffers[varKey] = variance }
            let activated = silu ? y.silu() : y
            return residual.map { activated + $0 } ?? activated
        }
    }

    /// The norm modulated by a time embedding's scale γ and shift β, [N, C] each (FiLM):
    /// norm(x) · (1 + γ) + β, then SiLU when `silu`. A group norm takes the modulation into its
    /// own per-image affine transform (`Tensor.groupNorm(_:groups:scale:shift:)`), one pass over x.
    public func callAsFunction(_ x: Tensor, _ p: ParameterSet, _ context: ForwardContext, scale gamma: Tensor, shift beta: Tensor,
                               silu: Bool = false) -> Tensor {
        guard kind == .group else {
            let shape = [x.shape[0], channels] + Array(repeating: 1, count: x.rank - 2)
            let y = self(x, p, context) * (gamma.reshaped(to: shape) + 1) + beta.reshaped(to: shape)
            return silu ? y.silu() : y
        }
        let affine = groupAffine(p, scale: gamma, shift: beta)
        return Tensor.groupNorm(x, groups: groups, scale: affine.scale, shift: affine.shift, epsilon: epsilon, applyingSiLU: silu)
    }

    /// The group norm's affine transform of the normalised values: its weight and bias [C], or,
    /// modulated by (1 + γ) and β [N, C], the per-image scale w (1 + γ) and shift b (1 + γ) + β
    /// (`Tensor.groupNorm(_:groups:scale:shift:)`: one pass over x for norm and modulation).
    func groupAffine(_ p: ParameterSet, scale gamma: Tensor? = nil, shift beta: Tensor? = nil) -> (scale: Tensor, shift: Tensor) {
        let (w, b) = (p.value(key(prefix, "weight")), p.value(key(prefix, "bias")))
        guard let gamma, let beta else { return (w, b) }
        let factor = gamma + 1
        return (factor * w, factor * b + beta)
    }
}
