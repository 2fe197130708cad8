import CHazeKernels

/// A U-Net decoder block's input is its running state and a skip connection concatenated along the
/// channels. The concatenation is read several times: by its group norm's statistics and the 3×3
/// convolution after the norm (or a plain 3×3 convolution), and by the 1×1 shortcut; copying it
/// first writes and reads it once more (fmnist-s inference, batch 64: 81.7 MB per forward, about
/// 6 % of the time, bound by memory). In inference, the operations below read the two tensors where
/// they lie instead: the norm's statistics group by group (a group with channels in both is copied
/// into one piece: haze_group_norm_affine), the F(4×4) input transforms plane by plane
/// (haze_input_activation's `second`), the 1×1 product row by row of its copied panels
/// (haze_gemm_packed_concatenated). Each computes the same sums in the same order as on the
/// concatenation, so the results are the same to the bit. Where a value is recorded for a
/// backward pass, or a path cannot read two tensors, they concatenate and run as before.
/// (AMD Zen 4, two threads, prepared weights, a scratch build alternating the two ways call by
/// call in one process, median of the paired differences: fmnist-s inference at batch 64 −2.8 to
/// −3.4 ms of 156–165 (three runs of 40 pairs), faces-64 at 16 −19 ms of 671, cifar-ddpm at 8
/// −4.1 ms of 236, the notebook's network (`tf-article`) at 16 −9.9 ms of 439. Separate processes
/// could not tell them apart in that hour's noise.)
extension Tensor {
    /// Whether the operations below read a concatenation in place where they can (default); tests
    /// switch it off to compare with the copy.
    nonisolated(unsafe) static var readsConcatenationsInPlace = true

    /// Whether x [N, C₁, H, W] ⧺ second [N, C₂, H, W] (along the channels) is read in place by the
    /// convolutions below with each of `weights`: 3×3 ones (stride 1, padding 1, plain or after a
    /// group norm) by F(4×4) Winograd, 1×1 ones on the float32 packed kernel, in inference (nothing
    /// recorded). A block that would call several of them on the same pair and otherwise copy it
    /// in each concatenates once itself instead.
    public static func readsConcatenationInPlace(_ x: Tensor, _ second: Tensor, weights: [Tensor]) -> Bool {
        guard fits(x, second) else { return false }
        let shape = [x.shape[0], x.shape[1] + second.shape[1], x.shape[2], x.shape[3]]
        return weights.allSatisfy { w in
            guard w.rank == 4, w.shape[1] == shape[1], !w.isRecorded else { return false }
            switch (w.shape[2], w.shape[3]) {
            case (3, 3): return readsInPlace(geometry(shape, weight: w, bias: nil, stride: 1, padding: Padding2D(1), adding: nil))
            case (1, 1): return readsInPlace(geometry(shape, weight: w, bias: nil, stride: 1, padding: .zero, adding: nil))
            default: return false
            }
        }
    }

    /// conv2d(siluOfGroupNorm: concatenate([x, second], alongAxis: 1), …): the same value, the
    /// concatenation read in place where it can (`readsConcatenationInPlace`), else copied.
    public static func conv2d(siluOfGroupNorm x: Tensor, concatenatedWith second: Tensor, groups: Int, scale: Tensor,
                              shift: Tensor, epsilon: Float = 1e-5, weight: Tensor, bias: Tensor? = nil, stride: Int = 1,
                              padding: Padding2D = .zero, adding addend: Tensor? = nil) -> Tensor {
        if fits(x, second) {
            let shape = [x.shape[0], x.shape[1] + second.shape[1], x.shape[2], x.shape[3]], perImage = scale.rank == 2
            let geo = geometry(shape, weight: weight, bias: bias, stride: stride, padding: padding, adding: addend)
            if shape[1] % groups == 0, fusesGroupNorm, readsInPlace(geo), scale.shape == Array(perImage ? shape[..<2] : shape[1..<2]),
               shift.shape == scale.shape, ![scale, shift, weight, bias, addend].contains(where: { $0?.isRecorded == true }) {
                return convolvedThroughGroupNorm(x, concatenatedWith: second, groups: groups, scale: scale, shift: shift,
                                                 epsilon: epsilon, weight: weight, bias: bias, geometry: geo, adding: addend)
            }
        }
        return conv2d(siluOfGroupNorm: concatenate([x, second], alongAxis: 1), groups: groups, scale: scale, shift: shift,
                      epsilon: epsilon, weight: weight, bias: bias, stride: stride, padding: padding, adding: addend)
    }

    /// conv2d(concatenate([x, second], alongAxis: 1), weight: weight, …): the same value, the
    /// concatenation read in place where it can (`readsConcatenationInPlace`), else copied.
    public static func conv2d(_ x: Tensor, concatenatedWith second: Tensor, weight: Tensor, bias: Tensor? = nil,
                              stride: Int = 1, padding: Padding2D = .zero, adding addend: Tensor? = nil) -> Tensor {
        if fits(x, second) {
            let shape = [x.shape[0], x.shape[1] + second.shape[1], x.shape[2], x.shape[3]]
            let geo = geometry(shape, weight: weight, bias: bias, stride: stride, padding: padding, adding: addend)
            if readsInPlace(geo), ![weight, bias, addend].contains(where: { $0?.isRecorded == true }) {
                return second.withScalars { p2 in
                    convolved(x, weight: weight, bias: bias, geometry: geo, adding: addend,
                              activation: haze_input_activation(scale: nil, shift: nil, second: p2, first_channels: x.shape[1]))
                }
            }
        }
        return conv2d(concatenate([x, second], alongAxis: 1), weight: weight, bias: bias, stride: stride, padding: padding,
                      adding: addend)
    }

    /// Whether x and second concatenate along the channels into an input nothing records.
    private static func fits(_ x: Tensor, _ second: Tensor) -> Bool {
        readsConcatenationsInPlace && x.rank == 4 && second.rank == 4 && x.shape[0] == second.shape[0]
            && x.shape[2...] == second.shape[2...] && !anyRecorded(x, second)
    }

    /// Whether the convolution of `geo` reads a concatenation in place: F(4×4) Winograd, or the
    /// float32 packed kernel of a 1×1 convolution.
    private static func readsInPlace(_ geo: ConvGeometry) -> Bool {
        if geo.isPointwise { return geo.usesPackedPointwise && !(Precision.current == .bfloat16 && Precision.bfloat16Available) }
        return readsThroughActivation(geo) && Winograd.usesLargeTiles(n: geo.n, h: geo.h, w: geo.w)
    }
}
