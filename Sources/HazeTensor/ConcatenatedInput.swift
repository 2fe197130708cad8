import CHazeKernels

/// A U-Net decoder block's input is its running state and a skip connection concatenated along the
/// channels. The concatenation is read three times: by its group norm's statistics, by the 3×3
/// convolution after the norm and by the 1×1 shortcut; copying it first writes and reads it once
/// more (fmnist-s inference, batch 64: 81.7 MB per forward, about 6 % of the time, bound by
/// memory). In inference, the operations below read the two tensors where they lie instead: the
/// norm's statistics group by group (a group with channels in both copied into one piece:
/// haze_group_norm_affine), the F(4×4) input transforms plane by
/// plane (haze_input_activation's `second`), the 1×1 product row by row of its copied panels
/// (haze_gemm_packed_concatenated). Each computes the same sums in the same order as on the
/// concatenation, so the results are the same to the bit. Where a value is recorded for a
/// backward pass, or a path cannot read two tensors, they concatenate and run as before.
/// (AMD Zen 4, two threads, prepared weights, a scratch build alternating the two ways call by
/// call in one process, median of the paired differences: fmnist-s inference at batch 64 −2.8 to
/// −3.4 ms of 156–165 (three runs of 40 pairs), faces-64 at 16 −19 ms of 671, cifar-ddpm at 8
/// −4.1 ms of 236. Separate processes could not tell them apart in that hour's noise.)
extension Tensor {
    /// Whether the operations below read a concatenation in place where they can (default); tests
    /// switch it off to compare with the copy.
    nonisolated(unsafe) static var readsConcatenationsInPlace = true

    /// Whether a decoder block's input x [N, C₁, H, W] ⧺ second [N, C₂, H, W] (along the channels)
    /// is read in place by `conv2d(siluOfGroupNorm:concatenatedWith:…)` with a group norm of
    /// `groups` groups and the 3×3 `weight` (stride 1, padding 1), and by the 1×1
    /// `conv2d(_:concatenatedWith:…)` with `pointwiseWeight`: in inference (neither recorded), where
    /// the 3×3 convolution runs by F(4×4) Winograd and the 1×1 one on the float32 packed kernel. A caller that would otherwise call both
    /// on the same pair concatenates once itself.
    public static func readsConcatenationInPlace(_ x: Tensor, _ second: Tensor, groups: Int, weight: Tensor,
                                                 pointwiseWeight: Tensor) -> Bool {
        guard fits(x, second), weight.rank == 4, pointwiseWeight.rank == 4, weight.shape[2...] == [3, 3],
              x.shape[1] + second.shape[1] == weight.shape[1], pointwiseWeight.shape[1] == weight.shape[1] else { return false }
        let shape = [x.shape[0], weight.shape[1], x.shape[2], x.shape[3]]
        let geo = geometry(shape, weight: weight, bias: nil, stride: 1, padding: Padding2D(1), adding: nil)
        let pointwise = geometry(shape, weight: pointwiseWeight, bias: nil, stride: 1, padding: .zero, adding: nil)
        return readsInPlace(groups: groups, geometry: geo) && readsInPlace(pointwise)
            && !anyRecorded(weight, pointwiseWeight)
    }

    /// conv2d(siluOfGroupNorm: concatenate([x, second], alongAxis: 1), …): the same value, the
    /// concatenation read in place where `readsConcatenationInPlace` allows (then nothing is
    /// recorded: inference only), else copied.
    public static func conv2d(siluOfGroupNorm x: Tensor, concatenatedWith second: Tensor, groups: Int, scale: Tensor,
                              shift: Tensor, epsilon: Float = 1e-5, weight: Tensor, bias: Tensor? = nil, stride: Int = 1,
                              padding: Padding2D = .zero, adding addend: Tensor? = nil) -> Tensor {
        if fits(x, second) {
            let shape = [x.shape[0], x.shape[1] + second.shape[1], x.shape[2], x.shape[3]], perImage = scale.rank == 2
            let geo = geometry(shape, weight: weight, bias: bias, stride: stride, padding: padding, adding: addend)
            if readsInPlace(groups: groups, geometry: geo), scale.shape == Array(perImage ? shape[..<2] : shape[1..<2]),
               shift.shape == scale.shape, ![scale, shift, weight, bias, addend].contains(where: { $0?.isRecorded == true }) {
                return convolvedThroughGroupNorm(x, concatenatedWith: second, groups: groups, scale: scale, shift: shift,
                                                 epsilon: epsilon, weight: weight, bias: bias, geometry: geo, adding: addend)
            }
        }
        return conv2d(siluOfGroupNorm: concatenate([x, second], alongAxis: 1), groups: groups, scale: scale, shift: shift,
                      epsilon: epsilon, weight: weight, bias: bias, stride: stride, padding: padding, adding: addend)
    }

    /// conv2d(concatenate([x, second], alongAxis: 1), weight: weight, bias: bias) for a 1×1
    /// `weight`: the same value, read in place where `readsConcatenationInPlace` allows, else copied.
    public static func conv2d(_ x: Tensor, concatenatedWith second: Tensor, weight: Tensor, bias: Tensor? = nil) -> Tensor {
        if fits(x, second) {
            let shape = [x.shape[0], x.shape[1] + second.shape[1], x.shape[2], x.shape[3]]
            let geo = geometry(shape, weight: weight, bias: bias, stride: 1, padding: .zero, adding: nil)
            if readsInPlace(geo), !anyRecorded(weight), bias?.isRecorded != true {
                ConvolutionShapes.note(geo)
                FlopCounter.add(2 * geo.n * geo.o * geo.p * geo.k)
                let packed = PreparedWeights.value(for: weight, as: .pointwise) {
                    weight.withScalars { PackedMatrices($0, rows: geo.o, columns: geo.c) }
                }
                let biasValues = bias?.scalars
                return Tensor(shape: [geo.n, geo.o, geo.ho, geo.wo]) { out, _ in
                    x.withScalars { px in second.withScalars { ps in
                        geo.multiplyPointwise(packed, px, concatenatedWith: ps, firstChannels: x.shape[1], bias: biasValues, into: out)
                    } }
                }
            }
        }
        return conv2d(concatenate([x, second], alongAxis: 1), weight: weight, bias: bias)
    }

    /// Whether x and second concatenate along the channels into an input nothing records.
    private static func fits(_ x: Tensor, _ second: Tensor) -> Bool {
        readsConcatenationsInPlace && x.rank == 4 && second.rank == 4 && x.shape[0] == second.shape[0]
            && x.shape[2...] == second.shape[2...] && !anyRecorded(x, second)
    }

    /// Whether the norm of `groups` groups and the 3×3 convolution of `geo` read a concatenation in place.
    private static func readsInPlace(groups: Int, geometry geo: ConvGeometry) -> Bool {
        geo.c % groups == 0 && fusesGroupNorm && readsThroughActivation(geo) && Winograd.usesLargeTiles(n: geo.n, h: geo.h, w: geo.w)
    }

    /// Whether the 1×1 convolution of `geo` reads a concatenation in place: the float32 packed kernel.
    private static func readsInPlace(_ geo: ConvGeometry) -> Bool {
        geo.usesPackedPointwise && PackedMatrices.available && !(Precision.current == .bfloat16 && Precision.bfloat16Available)
    }
}
