import Foundation
import HazeTensor

/// Sinusoidal timestep features (Ho et al. 2020, §4, after Vaswani et al. 2017), as diffusers'
/// `Timesteps` / `get_timestep_embedding`:
///   freq_i = exp(−ln(10000) · i / (half − freq_shift)),  i = 0 … half−1,  half = dim/2
///   emb = [sin(t·freq), cos(t·freq)]  (or [cos, sin] when flip_sin_to_cos); zero-padded if dim is odd.
/// No parameters. Computed in Float32 step by step as PyTorch does, so the features match it.
public struct Timesteps {
    /// Features per timestep (`dim`).
    public let dimension: Int
    /// Whether the cosines come first ([cos, sin]; diffusers' `flip_sin_to_cos`).
    public let flipSinToCos: Bool
    /// `freq_shift` of the frequency formula (diffusers' `downscale_freq_shift`, 0 or 1).
    public let frequencyShift: Float

    /// The features of `dimension` values per timestep.
    public init(dimension: Int, flipSinToCos: Bool, frequencyShift: Float) {
        (self.dimension, self.flipSinToCos, self.frequencyShift) = (dimension, flipSinToCos, frequencyShift)
    }

    /// timesteps: B values → [B, dimension]
    public func callAsFunction(_ timesteps: [Float]) -> Tensor {
        let half = dimension / 2
        let frequencies = (0..<half).map { i in
            Foundation.exp(Float(-Foundation.log(10000.0)) * Float(i) / (Float(half) - frequencyShift))
        }
        var values = [Float](repeating: 0, count: timesteps.count * dimension)
        for (b, t) in timesteps.enumerated() {
            for i in 0..<half {
                let angle = t * frequencies[i]  // float32 product, as torch
                let (s, c) = (Float(Foundation.sin(Double(angle))), Float(Foundation.cos(Double(angle))))
                values[b * dimension + i] = flipSinToCos ? c : s
                values[b * dimension + half + i] = flipSinToCos ? s : c
            }
        }
        return Tensor(shape: [timesteps.count, dimension], scalars: values)
    }
}

/// Two-layer MLP on timestep features: linear_1 → SiLU → linear_2. (diffusers TimestepEmbedding)
public struct TimestepEmbedding: Module {
    /// `linear_1` (in → dim) and `linear_2` (dim → dim).
    public let linear1, linear2: Linear

    /// The MLP under `prefix` from `inChannels` timestep features to `embeddingDimension`.
    public init(_ prefix: String, inChannels: Int, embeddingDimension: Int) {
        linear1 = Linear(key(prefix, "linear_1"), inChannels, embeddingDimension)
        linear2 = Linear(key(prefix, "linear_2"), embeddingDimension, embeddingDimension)
    }

    public var parameterSpecs: [ParameterSpec] { linear1.parameterSpecs + linear2.parameterSpecs }

    /// x: [B, in] → [B, dim]
    public func callAsFunction(_ x: Tensor, _ p: ParameterSet) -> Tensor {
        linear2(linear1(x, p).silu(), p)
    }
}
