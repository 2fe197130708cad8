import HazeTensor

/// diffusers' `Attention` as used by UNet2DModel's attention blocks (AttnProcessor2_0):
///   h = group_norm(x) viewed as tokens [N, HW, C];  q, k, v = to_q(h), to_k(h), to_v(h)
///   o = to_out.0(softmax(q kᵀ / √d) v)  per head (heads = C / head_dim, d = head_dim)
///   out = (o as [N, C, H, W] + x) / rescale_output_factor
/// Legacy checkpoints name the projections query/key/value/proj_attn (mapped on load).
public struct SelfAttention: Module {
    /// The group norm before the projections (`group_norm`), or nil when the block has none.
    public let groupNorm: Norm?
    /// The projections `to_q`, `to_k`, `to_v` (C → heads · d) and `to_out.0` (heads · d → C).
    public let query, key, value, output: Linear
    /// Attention heads (C / d, rounded down) and the features per head d.
    public let heads, headDimension: Int
    /// The residual output is divided by this (diffusers' `rescale_output_factor`).
    public let rescaleOutputFactor: Float

    /// The block under `prefix` for `channels` channels in heads of `headDimension` features;
    /// `groups`: the group norm's groups, or nil for no norm.
    public init(_ prefix: String, channels: Int, headDimension: Int, groups: Int?, epsilon: Float,
                normKind: NormKind, rescaleOutputFactor: Float = 1) {
        groupNorm = groups.map { Norm(HazeNN.key(prefix, "group_norm"), kind: normKind, groups: $0, channels: channels, epsilon: epsilon) }
        let inner = (channels / headDimension) * headDimension
        query = Linear(HazeNN.key(prefix, "to_q"), channels, inner)
        key = Linear(HazeNN.key(prefix, "to_k"), channels, inner)
        value = Linear(HazeNN.key(prefix, "to_v"), channels, inner)
        output = Linear(HazeNN.key(prefix, "to_out.0"), inner, channels)
        (self.heads, self.headDimension, self.rescaleOutputFactor) = (channels / headDimension, headDimension, rescaleOutputFactor)
    }

    public var parameterSpecs: [ParameterSpec] {
        (groupNorm?.parameterSpecs ?? []) + query.parameterSpecs + key.parameterSpecs + value.parameterSpecs + output.parameterSpecs
    }

    /// x: [N, C, H, W] → [N, C, H, W]
    /// Computed channels-first, with no transposes: the three projections as one 1×1 convolution
    /// with the stacked weights, [N, C, H, W] → qkv [N, 3·inner, H·W], then
    /// `Tensor.selfAttention(channelsFirst:)` and to_out.0 as a 1×1 convolution.
    public func callAsFunction(_ x: Tensor, _ p: ParameterSet, _ context: ForwardContext) -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let inner = heads * headDimension
        let normed = groupNorm.map { $0(x, p, context) } ?? x
        let projections = [query, key, value]
        let weight = Tensor.derivedWeight(named: "stacked q/k/v", from: projections.map { $0.weight(p) }) {
            Tensor.concatenate($0, alongAxis: 0).reshaped(to: [3 * inner, c, 1, 1])
        }
        let bias = query.bias ? Tensor.concatenate(projections.map { $0.biasValue(p)! }, alongAxis: 0) : nil
        let qkv = Tensor.conv2d(normed, weight: weight, bias: bias).reshaped(to: [n, 3 * inner, h * w])
        let attended = Tensor.selfAttention(channelsFirst: qkv, heads: heads).reshaped(to: [n, inner, h, w])
        let o = Tensor.conv2d(attended, weight: output.weight(p).reshaped(to: [c, inner, 1, 1]), bias: output.biasValue(p))
        let out = o + x
        return rescaleOutputFactor == 1 ? out : out * (1 / rescaleOutputFactor)
    }
}

/// Linear attention (Haze option `attention_type: "linear"`; Katharopoulos et al. 2020 in the
/// form of the denoising-diffusion-pytorch U-Net the TensorFlow article used: 4 heads × 32):
///   h = group_norm(x);  q, k, v = split(to_qkv(h))  (1×1 conv, no bias)
///   q ← softmax over the head's features · d^−½;  k ← softmax over positions
///   context = k vᵀ [d × d];  o = contextᵀ q;  out = to_out.1(to_out.0(o)) + x
/// (to_out.0 a 1×1 conv, to_out.1 a GroupNorm with one group).
public struct LinearAttention: Module {
    /// The norm before the projection (`group_norm`).
    public let groupNorm: Norm
    /// The 1×1 convolution C → 3 · heads · d that gives q, k and v (`to_qkv`).
    public let qkv: Conv2d
    /// The 1×1 output convolution (`to_out.0`).
    public let projection: Conv2d
    /// The GroupNorm with one group after the output convolution (`to_out.1`).
    public let outputNorm: Norm
    /// Heads, and features per head d.
    public let heads, headDimension: Int

    /// The block under `prefix` for `channels` channels (4 heads × 32 features by default, as the
    /// reference U-Net).
    public init(_ prefix: String, channels: Int, groups: Int, epsilon: Float, normKind: NormKind,
                heads: Int = 4, headDimension: Int = 32) {
        groupNorm = Norm(key(prefix, "group_norm"), kind: normKind, groups: groups, channels: channels, epsilon: epsilon)
        qkv = Conv2d(key(prefix, "to_qkv"), channels, 3 * heads * headDimension, kernelSize: 1)
        projection = Conv2d(key(prefix, "to_out.0"), heads * headDimension, channels, kernelSize: 1)
        outputNorm = Norm(key(prefix, "to_out.1"), kind: .group, groups: 1, channels: channels, epsilon: 1e-5)
        (self.heads, self.headDimension) = (heads, headDimension)
    }

    public var parameterSpecs: [ParameterSpec] {
        groupNorm.parameterSpecs + qkv.parameterSpecs + projection.parameterSpecs + outputNorm.parameterSpecs
    }

    /// x: [N, C, H, W] → [N, C, H, W]
    public func callAsFunction(_ x: Tensor, _ p: ParameterSet, _ context: ForwardContext) -> Tensor {
        let (n, h, w) = (x.shape[0], x.shape[2], x.shape[3])
        let parts = qkv(groupNorm(x, p, context), p).reshaped(to: [n, 3, heads, headDimension, h * w]).chunked(3, alongAxis: 1)
        let q = parts[0].reshaped(to: [n, heads, headDimension, h * w]).softmax(alongAxis: 2) * (1 / Float(headDimension).squareRoot())
        let k = parts[1].reshaped(to: [n, heads, headDimension, h * w]).softmax(alongAxis: 3)
        let v = parts[2].reshaped(to: [n, heads, headDimension, h * w])
        let contextMatrix = k.matmul(v.transposed(2, 3))                          // [N, heads, d, d]
        let o = contextMatrix.transposed(2, 3).matmul(q)                          // [N, heads, d, HW]
        let projected = projection(o.reshaped(to: [n, heads * headDimension, h, w]), p)
        return outputNorm(projected, p, context) + x
    }
}
