import Foundation
import HazeIO
import HazeTensor

/// The InceptionV3 of FID (pytorch-fid's `InceptionV3([3])`, itself a port of TensorFlow's
/// 2015-12-05 graph): torchvision's Inception3 with the FID patches — average pools that do not
/// count padding in Mixed_5*, 6b–6e and 7b, a max pool in Mixed_7c's pool branch — returning
/// the 2048-d global average pool. Inference only.
///
/// Input: images [N, C, H, W] with values in [0, 1], C = 1 (repeated to RGB) or 3. They are
/// resized to 299×299 (bilinear, align_corners=False), mapped to [−1, 1], and run through
///   stem  Conv2d_1a (3×3 s2) → 2a (3×3) → 2b (3×3 p1) → max-pool 3 s2 → 3b (1×1) → 4a (3×3)
///         → max-pool 3 s2                                          [N, 192, 35, 35]
///   Mixed_5b/5c/5d (A) → 6a (B) → 6b/6c/6d/6e (C)                  [N, 768, 17, 17]
///   → 7a (D) → 7b/7c (E) → mean over the 8×8 positions             [N, 2048]
/// Every convolution is torchvision's BasicConv2d: conv (no bias) → BatchNorm (eval, ε = 0.001)
/// → ReLU; the batch norm is folded into the convolution's weight and bias when loading.
///
/// Weights are pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` state dict saved as
/// safetensors (keys `Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.bn.running_var`, …; see
/// the README for the one-line conversion). `fc.*` and `num_batches_tracked` are ignored.
public struct FIDInceptionV3 {
    /// One BasicConv2d: its state-dict prefix and geometry.
    public struct ConvSpec: Sendable {
        /// The state-dict prefix (e.g. `Mixed_5b.branch1x1`), under which `.conv.weight` and `.bn.*` lie.
        public let name: String
        /// Input and output channels, kernel height and width, stride, and zero padding of height and width.
        public let inChannels, outChannels, kernelHeight, kernelWidth, stride, padHeight, padWidth: Int
    }

    /// The Inception blocks after the stem, in order, with their torchvision arguments.
    enum Block {
        case a(inChannels: Int, poolFeatures: Int)
        case b(inChannels: Int)
        case c(inChannels: Int, channels7x7: Int)
        case d(inChannels: Int)
        case e(inChannels: Int, maxPoolBranch: Bool)
    }

    static let blocks: [(String, Block)] = [
        ("Mixed_5b", .a(inChannels: 192, poolFeatures: 32)), ("Mixed_5c", .a(inChannels: 256, poolFeatures: 64)),
        ("Mixed_5d", .a(inChannels: 288, poolFeatures: 64)), ("Mixed_6a", .b(inChannels: 288)),
        ("Mixed_6b", .c(inChannels: 768, channels7x7: 128)), ("Mixed_6c", .c(inChannels: 768, channels7x7: 160)),
        ("Mixed_6d", .c(inChannels: 768, channels7x7: 160)), ("Mixed_6e", .c(inChannels: 768, channels7x7: 192)),
        ("Mixed_7a", .d(inChannels: 768)), ("Mixed_7b", .e(inChannels: 1280, maxPoolBranch: false)),
        ("Mixed_7c", .e(inChannels: 2048, maxPoolBranch: true)),
    ]

    /// Feature width of the final pool.
    public static let featureCount = 2048

    /// Every convolution of the network, in forward order.
    public static let convolutions: [ConvSpec] = {
        func conv(_ name: String, _ i: Int, _ o: Int, _ kh: Int, _ kw: Int? = nil, stride: Int = 1, pad: (Int, Int) = (0, 0)) -> ConvSpec {
            ConvSpec(name: name, inChannels: i, outChannels: o, kernelHeight: kh, kernelWidth: kw ?? kh,
                     stride: stride, padHeight: pad.0, padWidth: pad.1)
        }
        var specs = [conv("Conv2d_1a_3x3", 3, 32, 3, stride: 2), conv("Conv2d_2a_3x3", 32, 32, 3),
                     conv("Conv2d_2b_3x3", 32, 64, 3, pad: (1, 1)), conv("Conv2d_3b_1x1", 64, 80, 1),
                     conv("Conv2d_4a_3x3", 80, 192, 3)]
        for (name, block) in blocks {
            func c(_ branch: String, _ i: Int, _ o: Int, _ kh: Int, _ kw: Int? = nil, stride: Int = 1, pad: (Int, Int) = (0, 0)) {
                specs.append(conv(name + "." + branch, i, o, kh, kw, stride: stride, pad: pad))
            }
            switch block {
            case let .a(i, pool):
                c("branch1x1", i, 64, 1)
                c("branch5x5_1", i, 48, 1); c("branch5x5_2", 48, 64, 5, pad: (2, 2))
                c("branch3x3dbl_1", i, 64, 1); c("branch3x3dbl_2", 64, 96, 3, pad: (1, 1)); c("branch3x3dbl_3", 96, 96, 3, pad: (1, 1))
                c("branch_pool", i, pool, 1)
            case let .b(i):
                c("branch3x3", i, 384, 3, stride: 2)
                c("branch3x3dbl_1", i, 64, 1); c("branch3x3dbl_2", 64, 96, 3, pad: (1, 1)); c("branch3x3dbl_3", 96, 96, 3, stride: 2)
            case let .c(i, c7):
                c("branch1x1", i, 192, 1)
                c("branch7x7_1", i, c7, 1); c("branch7x7_2", c7, c7, 1, 7, pad: (0, 3)); c("branch7x7_3", c7, 192, 7, 1, pad: (3, 0))
                c("branch7x7dbl_1", i, c7, 1); c("branch7x7dbl_2", c7, c7, 7, 1, pad: (3, 0)); c("branch7x7dbl_3", c7, c7, 1, 7, pad: (0, 3))
                c("branch7x7dbl_4", c7, c7, 7, 1, pad: (3, 0)); c("branch7x7dbl_5", c7, 192, 1, 7, pad: (0, 3))
                c("branch_pool", i, 192, 1)
            case let .d(i):
                c("branch3x3_1", i, 192, 1); c("branch3x3_2", 192, 320, 3, stride: 2)
                c("branch7x7x3_1", i, 192, 1); c("branch7x7x3_2", 192, 192, 1, 7, pad: (0, 3))
                c("branch7x7x3_3", 192, 192, 7, 1, pad: (3, 0)); c("branch7x7x3_4", 192, 192, 3, stride: 2)
            case let .e(i, _):
                c("branch1x1", i, 320, 1)
                c("branch3x3_1", i, 384, 1); c("branch3x3_2a", 384, 384, 1, 3, pad: (0, 1)); c("branch3x3_2b", 384, 384, 3, 1, pad: (1, 0))
                c("branch3x3dbl_1", i, 448, 1); c("branch3x3dbl_2", 448, 384, 3, pad: (1, 1))
                c("branch3x3dbl_3a", 384, 384, 1, 3, pad: (0, 1)); c("branch3x3dbl_3b", 384, 384, 3, 1, pad: (1, 0))
                c("branch_pool", i, 192, 1)
            }
        }
        return specs
    }()

    /// The state-dict tensors the network needs: name → shape.
    public static var parameterShapes: [(name: String, shape: [Int])] {
        convolutions.flatMap { s in
            [(s.name + ".conv.weight", [s.outChannels, s.inChannels, s.kernelHeight, s.kernelWidth])]
                + ["weight", "bias", "running_mean", "running_var"].map { (s.name + ".bn." + $0, [s.outChannels]) }
        }
    }

    /// A convolution with its batch norm folded in: w' = w·γ/√(σ² + ε), b' = β − μ·γ/√(σ² + ε).
    struct FoldedConv {
        let weight, bias: Tensor
        let stride: Int
        let padding: Padding2D
    }

    let layers: [String: FoldedConv]

    /// Builds the network from a state dict; `source` names the file in errors. Every missing
    /// or wrongly shaped tensor is listed.
    public init(weights: [String: Tensor], source: String) throws {
        var problems: [String] = []
        for (name, shape) in Self.parameterShapes {
            guard let t = weights[name] else { problems.append("missing \(name) \(shape)"); continue }
            if t.shape != shape { problems.append("\(name): expected \(shape), found \(t.shape)") }
        }
        guard problems.isEmpty else {
            throw SafeTensorsError(file: source, problem: "not FID InceptionV3 weights: " + problems.prefix(8).joined(separator: "; ")
                                            + (problems.count > 8 ? "; … (\(problems.count) problems)" : ""))
        }
        var layers: [String: FoldedConv] = [:]
        for s in Self.convolutions {
            let scale = (weights[s.name + ".bn.running_var"]! + 0.001).rsqrt() * weights[s.name + ".bn.weight"]!
            let bias = weights[s.name + ".bn.bias"]! - weights[s.name + ".bn.running_mean"]! * scale
            layers[s.name] = FoldedConv(weight: weights[s.name + ".conv.weight"]! * scale.reshaped(to: [s.outChannels, 1, 1, 1]),
                                        bias: bias, stride: s.stride,
                                        padding: Padding2D(top: s.padHeight, bottom: s.padHeight, left: s.padWidth, right: s.padWidth))
        }
        self.layers = layers
    }

    /// Loads the weights from a safetensors file.
    public init(contentsOf path: String) throws {
        try self.init(weights: try SafeTensors.read(contentsOf: path).tensors, source: path)
    }

    /// BasicConv2d: ReLU(BN(conv(x))) with the folded layer `name`.
    func conv(_ name: String, _ x: Tensor) -> Tensor {
        let l = layers[name]!
        return Tensor.conv2d(x, weight: l.weight, bias: l.bias, stride: l.stride, padding: l.padding).clamped(min: 0)
    }

    /// The spatial mean of each block group's output (pytorch-fid's output blocks 0–3: after the
    /// first max pool [N, 64], the second [N, 192], Mixed_6e [N, 768], Mixed_7c [N, 2048]).
    /// images: [N, 1 or 3, H, W] in [0, 1].
    public func blockMeans(_ images: Tensor) -> [Tensor] {
        precondition(images.rank == 4 && (images.shape[1] == 1 || images.shape[1] == 3),
                     "FID InceptionV3 takes [N, 1 or 3, H, W] images, got \(images.shape)")
        let rgb = images.shape[1] == 3 ? images : Tensor.concatenate([images, images, images], alongAxis: 1)
        var x = rgb.resizedBilinear(height: 299, width: 299) * 2 - 1
        var means: [Tensor] = []
        func keep() { means.append(x.mean(alongAxes: [2, 3])) }
        x = conv("Conv2d_2b_3x3", conv("Conv2d_2a_3x3", conv("Conv2d_1a_3x3", x))).pooled(.maximum, kernel: 3, stride: 2)
        keep()
        x = conv("Conv2d_4a_3x3", conv("Conv2d_3b_1x1", x)).pooled(.maximum, kernel: 3, stride: 2)
        keep()
        for (name, block) in Self.blocks {
            x = forward(block, name, x)
            if name == "Mixed_6e" { keep() }
        }
        keep()
        return means
    }

    /// 2048-d pool features of images [N, 1 or 3, H, W] in [0, 1] → [N, 2048].
    public func features(_ images: Tensor) -> Tensor { blockMeans(images)[3] }

    /// One Inception block: its branches, concatenated along the channels.
    func forward(_ block: Block, _ name: String, _ x: Tensor) -> Tensor {
        func c(_ branch: String, _ input: Tensor) -> Tensor { conv(name + "." + branch, input) }
        let averagePool = { x.pooled(.averageExcludingPadding, kernel: 3, stride: 1, padding: 1) }
        let branches: [Tensor]
        switch block {
        case .a:
            branches = [c("branch1x1", x),
                        c("branch5x5_2", c("branch5x5_1", x)),
                        c("branch3x3dbl_3", c("branch3x3dbl_2", c("branch3x3dbl_1", x))),
                        c("branch_pool", averagePool())]
        case .b:
            branches = [c("branch3x3", x),
                        c("branch3x3dbl_3", c("branch3x3dbl_2", c("branch3x3dbl_1", x))),
                        x.pooled(.maximum, kernel: 3, stride: 2)]
        case .c:
            let dbl = c("branch7x7dbl_3", c("branch7x7dbl_2", c("branch7x7dbl_1", x)))
            branches = [c("branch1x1", x),
                        c("branch7x7_3", c("branch7x7_2", c("branch7x7_1", x))),
                        c("branch7x7dbl_5", c("branch7x7dbl_4", dbl)),
                        c("branch_pool", averagePool())]
        case .d:
            branches = [c("branch3x3_2", c("branch3x3_1", x)),
                        c("branch7x7x3_4", c("branch7x7x3_3", c("branch7x7x3_2", c("branch7x7x3_1", x)))),
                        x.pooled(.maximum, kernel: 3, stride: 2)]
        case let .e(_, maxPoolBranch):
            let b3 = c("branch3x3_1", x)
            let dbl = c("branch3x3dbl_2", c("branch3x3dbl_1", x))
            let pool = maxPoolBranch ? x.pooled(.maximum, kernel: 3, stride: 1, padding: 1) : averagePool()
            branches = [c("branch1x1", x),
                        c("branch3x3_2a", b3), c("branch3x3_2b", b3),
                        c("branch3x3dbl_3a", dbl), c("branch3x3dbl_3b", dbl),
                        c("branch_pool", pool)]
        }
        return Tensor.concatenate(branches, alongAxis: 1)
    }
}
