import HazeTensor

/// diffusers' Downsample2D: a 3×3 stride-2 conv (`conv`) with padding 1, or with padding 0 after
/// an asymmetric (0, 1, 0, 1) zero pad (`downsample_padding: 0`); or, without a conv, 2×2 average
/// pooling.
public struct Downsample2D: Module {
    /// The stride-2 convolution, or nil for average pooling.
    public let conv: Conv2d?

    /// A downsampler of `channels` channels under `prefix`: with a conv when `useConv`, `padding` 1
    /// (symmetric) or 0 (the asymmetric pad).
    public init(_ prefix: String, channels: Int, useConv: Bool = true, padding: Int = 1) {
        conv = useConv ? Conv2d(key(prefix, "conv"), channels, channels, kernelSize: 3, stride: 2,
                                padding: padding == 0 ? Padding2D(top: 0, bottom: 1, left: 0, right: 1) : Padding2D(padding))
                       : nil
    }

    public var parameterSpecs: [ParameterSpec] { conv?.parameterSpecs ?? [] }

    /// x: [N, C, H, W] → [N, C, H/2, W/2]
    public func callAsFunction(_ x: Tensor, _ p: ParameterSet) -> Tensor {
        conv.map { $0(x, p) } ?? x.averagePooled2x2()
    }
}

/// diffusers' Upsample2D: nearest-neighbour ×2, then a 3×3 conv with padding 1 (`conv`).
public struct Upsample2D: Module {
    /// The 3×3 convolution after the upsampling (channels → channels).
    public let conv: Conv2d

    /// An upsampler of `channels` channels under `prefix`.
    public init(_ prefix: String, channels: Int) {
        conv = Conv2d(key(prefix, "conv"), channels, channels, kernelSize: 3, padding: Padding2D(1))
    }

    public var parameterSpecs: [ParameterSpec] { conv.parameterSpecs }

    /// x: [N, C, H, W] → [N, C, 2H, 2W]
    public func callAsFunction(_ x: Tensor, _ p: ParameterSet) -> Tensor {
        conv(x.upsampledNearest2x(), p)
    }
}
