import CHazeKernels
import Foundation

/// 2-D convolution (cross-correlation, as `torch.nn.functional.conv2d`) by im2col + SGEMM,
/// forward and backward side by side. 3×3 stride-1 padding-1 convolutions use Winograd instead,
/// forward and backward (Winograd.swift); strided ones run their forward pass through a direct
/// kernel on AVX-512 CPUs (CHazeKernels/haze_direct_conv.c).
///
/// Threading: the images are split into work items of B images (B = 1 for large images, else
/// enough for a GEMM about 2048 columns wide) and the items are spread over Haze's threads, each
/// running im2col, a single-threaded SGEMM and col2im on its own scratch buffers. One level of
/// parallelism, no oversubscription, and each worker's columns stay in its core's cache.
/// The column buffer is recomputed in backward rather than kept, so a training step's memory
/// stays near that of its activations.

/// Zero padding on each side of an image, in pixels.
public struct Padding2D: Hashable, Sendable {
    /// Pixels added above, below, left and right of the image.
    public var top, bottom, left, right: Int
    /// Padding with its own width on each side.
    public init(top: Int, bottom: Int, left: Int, right: Int) {
        (self.top, self.bottom, self.left, self.right) = (top, bottom, left, right)
    }
    /// The same padding on all four sides.
    public init(_ all: Int) { self.init(top: all, bottom: all, left: all, right: all) }
    /// No padding.
    public static let zero = Padding2D(0)
}

/// Geometry of one convolution: x [N, C, H, W] ⊛ w [O, C, KH, KW] → y [N, O, HO, WO].
struct ConvGeometry {
    let n, c, h, w, o, kh, kw, stride: Int
    let padding: Padding2D
    var ho: Int { (h + padding.top + padding.bottom - kh) / stride + 1 }
    var wo: Int { (w + padding.left + padding.right - kw) / stride + 1 }
    /// Rows of the column matrix: C·KH·KW.
    var k: Int { c * kh * kw }
    /// Output pixels per image.
    var p: Int { ho * wo }
    /// Images per work item: one when an image alone makes a wide GEMM (its output and
    /// gradient are then used in place, NCHW), else 512…2048 columns' worth, in
    /// `Parallel.minimumItems` items where that fits. Fixed by the shape alone, so the GEMM
    /// shapes and the order in which ∂W and ∂b are summed do not depend on the thread count.
    var chunk: Int {
        if p >= 512 { return 1 }
        let even = (n + Parallel.minimumItems - 1) / Parallel.minimumItems
        return Swift.min((2048 + p - 1) / p, Swift.max((512 + p - 1) / p, even))
    }
    var chunkCount: Int { (n + chunk - 1) / chunk }
    /// 1×1, stride 1, no padding: an image's column matrix is its own [C, P] planes, so with one
    /// image per item im2col and col2im are skipped.
    var isPointwise: Bool { kh == 1 && kw == 1 && stride == 1 && padding == .zero }

    /// cols[(ci·KH + i)·KW + j][b·P + oy·WO + ox] = x[b0 + b, ci, oy·s − top + i, ox·s − left + j]
    /// (0 outside the image). x: [N, C, H, W]; cols: [K, B·P]. Runs on the calling thread (C kernel).
    func im2col(_ x: UnsafePointer<Float>, firstImage b0: Int, images: Int, into cols: UnsafeMutablePointer<Float>) {
        haze_im2col(x, cols, b0, images, c, h, w, kh, kw, stride, padding.top, padding.left, ho, wo)
    }

    /// Whether the forward of this 1×1 convolution runs on the packed kernel: the weights packed
    /// (`PreparedWeights`: once per call, or once per sampling run; as bf16 pairs where
    /// `Precision.current` is bf16 and a bf16 kernel runs), each image one product A · x[b] read in
    /// place. In float32 on AVX-512 it replaced OpenBLAS's call, which copies x and clears y first:
    /// single-threaded at M 32–128, K 32–384 and N 256–4096, 119–153 GFLOP/s against OpenBLAS's
    /// 92–129 (2026-12-06, Intel Xeon; haze_gemm.c).
    var usesPackedPointwise: Bool {
        ConvolutionAlgorithm.current != .im2col && isPointwise
            && (PackedMatrices.available || Precision.current == .bfloat16 && Precision.bfloat16Available)
    }

    /// y [N, rows, H, W] = A · x per image (+ bias) for x [N, A.columns, H, W]: items of whole
    /// images, every image computed alike (the bits do not depend on the thread count).
    ///
    /// An image of 32–512 KB is read through once, in order, before its product
    /// (`haze_read_into_cache`), where A has at most 128 rows (few 8-row blocks to share each
    /// cold panel of x): the product then reads it from L2. Two threads, AMD Zen 4, a C harness:
    /// [32, 96] · [96, 784] 132–140 → 164–177 GFLOP/s, [32, 64] · [64, 784] 131–153 → 170–185,
    /// [64, 192] · [192, 196] 119–146 → 150–196, [128, 128] · [128, 1024] 151–165 → 168–194;
    /// at 4096 columns or 256 rows, no gain.
    ///
    /// With `second`, x is the concatenation along the channels of x [N, firstChannels, H, W] and
    /// second [N, C − firstChannels, H, W], read in place (the same bits).
    func multiplyPointwise(_ a: PackedMatrices, _ x: UnsafePointer<Float>, concatenatedWith second: UnsafePointer<Float>? = nil,
                           firstChannels: Int = 0, bias: [Float]?, into y: UnsafeMutablePointer<Float>) {
        let (rows, k) = (a.rows, a.columns)
        let bytes = k * p * MemoryLayout<Float>.size
        let readsThrough = rows <= 128 && bytes > 32 << 10 && bytes <= 512 << 10
        Parallel.forEach(n, cost: 2 * rows * k * p) { images in
            for b in images {
                let dst = y + b * rows * p
                if let second {
                    let (first, rest) = (x + b * firstChannels * p, second + b * (k - firstChannels) * p)
                    if readsThrough { haze_read_into_cache(first, firstChannels * p); haze_read_into_cache(rest, (k - firstChannels) * p) }
                    a.multiply(first, concatenatedWith: rest, split: firstChannels, ldb: p, into: dst, ldc: p, columns: p)
                } else {
                    if readsThrough { haze_read_into_cache(x + b * k * p, k * p) }
                    a.multiply(x + b * k * p, ldb: p, into: dst, ldc: p, columns: p)
                }
                guard let bias else { continue }
                for r in 0..<rows {
                    let (row, shift) = (dst + r * p, bias[r])
                    for q in 0..<p { row[q] += shift }
                }
            }
        }
    }

    /// Strided convolutions run forward through `haze_conv_direct` where the CPU has AVX-512: no
    /// column matrix, the output channels along the vector lanes. (s2 [64,64,14,14] forward: see
    /// Documentation/speed.md.) Their backward stays im2col + SGEMM.
    var isDirect: Bool { ConvolutionAlgorithm.current != .im2col && stride > 1 && haze_direct_conv_available() != 0 }

    /// y = w ⊛ x + bias by `haze_conv_direct`, in items of enough images for ≥ 256 output pixels.
    /// The weights are packed for it (`PreparedWeights`: once per call, or once per sampling run).
    func convolveDirectly(_ x: UnsafePointer<Float>, weight: Tensor, bias: [Float]?, into y: UnsafeMutablePointer<Float>) {
        let packed = PreparedWeights.value(for: weight, as: .direct) {
            weight.withScalars { w in
                [Float](unsafeUninitializedCapacity: haze_direct_packed_size(o, k)) { buffer, initialized in
                    haze_direct_pack(w, buffer.baseAddress!, o, k)
                    initialized = buffer.count
                }
            }
        }
        // Each image's output is computed alike in any item, so the split may follow the threads.
        let threads = Parallel.threadCount
        let perItem = Swift.min(Swift.max(1, 256 / p), Swift.max(1, (n + threads - 1) / threads))
        let items = (n + perItem - 1) / perItem
        packed.withUnsafeBufferPointer { packed in
            Parallel.forEach(items, cost: 1 << 20) { range in
                Scratch.withBuffer(haze_direct_scratch_size(perItem, c, kh, kw, stride, ho, wo)) { scratch in
                    for item in range {
                        let b0 = item * perItem
                        haze_conv_direct(x, packed.baseAddress!, bias, y, scratch, b0, Swift.min(perItem, n - b0), c, h, w, o,
                                         kh, kw, stride, padding.top, padding.left, ho, wo)
                    }
                }
            }
        }
    }

    /// The adjoint of `im2col`: dx[b0 + b, ci, y, x] = Σ over the column entries that read it.
    /// cols: [K, B·P]; dx: [N, C, H, W] (the chunk's planes are overwritten). Runs on the calling
    /// thread (C kernel).
    func col2im(_ cols: UnsafePointer<Float>, firstImage b0: Int, images: Int, into dx: UnsafeMutablePointer<Float>) {
        haze_col2im(cols, dx, b0, images, c, h, w, kh, kw, stride, padding.top, padding.left, ho, wo)
    }
}

extension Tensor {
    /// 2-D convolution. x: [N, C, H, W], weight: [O, C, KH, KW], bias: [O] →
    /// y: [N, O, HO, WO] with HO = (H + top + bottom − KH) / stride + 1 (likewise WO).
    ///
    /// Forward, per item of B images: cols = im2col(x) [K, B·P]; Y = W [O, K] · cols → [O, B·P]
    /// (written in place when B = 1, else scattered to NCHW), plus the bias.
    /// Backward, per item: G = g as [O, B·P]; ∂W += G colsᵀ; ∂cols = Wᵀ G, ∂x = col2im(∂cols);
    /// ∂b = Σ G over columns. ∂W and ∂b are summed per worker, then across workers.
    /// (3×3 stride-1 padding-1: Winograd for y, ∂x and ∂W, see `Winograd`; strided on AVX-512: y
    /// by `haze_conv_direct`; 1×1 on AVX-512: y and ∂x by the packed kernel, `usesPackedPointwise`.)
    ///
    /// `adding`: a tensor added to the result, [N, O, HO, WO] (a residual) or [N, O, 1, 1] (a
    /// per-image, per-channel shift such as a U-Net block's time embedding): the value and
    /// gradients of `conv2d(x, weight, bias) + adding`, to the bit. F(4×4) Winograd adds it in its
    /// output transform (haze_output_terms), without another pass over y; the other paths add it
    /// after.
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil,
                              stride: Int = 1, padding: Padding2D = .zero, adding addend: Tensor? = nil) -> Tensor {
        let geo = geometry(x.shape, weight: weight, bias: bias, stride: stride, padding: padding, adding: addend)
        let y = convolved(x, weight: weight, bias: bias, geometry: geo, adding: addend)
        let (vx, vw) = (x.detached, weight.detached)
        let inputs = [x, weight] + [bias, addend].compactMap { $0 }
        return record(y, inputs) { g in
            // [∂x, ∂w, ∂b] without the bias's slot when there is none, then ∂adding.
            conv2dBackward(g, x: vx, weight: vw, geometry: geo, needInput: x.isRecorded, needBias: bias != nil).prefix(bias != nil ? 3 : 2)
                + (addend.map { [g.sum(toShape: $0.shape)] } ?? [])
        }
    }

    /// The geometry of `conv2d` on an input of `shape`, after checking that the operands fit.
    static func geometry(_ shape: [Int], weight: Tensor, bias: Tensor?, stride: Int, padding: Padding2D,
                         adding addend: Tensor?) -> ConvGeometry {
        precondition(shape.count == 4 && weight.rank == 4 && shape[1] == weight.shape[1],
                     "conv2d: input \(shape) does not match weight \(weight.shape)")
        precondition(bias == nil || bias!.shape == [weight.shape[0]], "conv2d: bias \(bias!.shape) for weight \(weight.shape)")
        let geo = ConvGeometry(n: shape[0], c: shape[1], h: shape[2], w: shape[3],
                               o: weight.shape[0], kh: weight.shape[2], kw: weight.shape[3],
                               stride: stride, padding: padding)
        precondition(geo.ho > 0 && geo.wo > 0, "conv2d: kernel \(weight.shape) larger than padded input \(shape)")
        let outputShape = [geo.n, geo.o, geo.ho, geo.wo], shiftShape = [geo.n, geo.o, 1, 1]
        precondition(addend == nil || addend!.shape == outputShape || addend!.shape == shiftShape,
                     "conv2d: adding \(addend!.shape) to an output \(outputShape)")
        return geo
    }

    /// The forward of `conv2d` without the tape: conv(x) + bias + addend, x read through
    /// `activation` where it is given (only where `readsThroughActivation(geo)`).
    static func convolved(_ x: Tensor, weight: Tensor, bias: Tensor?, geometry geo: ConvGeometry, adding addend: Tensor?,
                          activation: haze_input_activation = haze_input_activation()) -> Tensor {
        ConvolutionShapes.note(geo)
        FlopCounter.add(2 * geo.n * geo.o * geo.p * geo.k)
        let outputShape = [geo.n, geo.o, geo.ho, geo.wo]
        return Tensor(shape: outputShape) { out, count in
            Tensor.withOptionalScalars(addend) { pa in Tensor.withOptionalScalars(bias) { pb in
                let residual = addend?.shape == outputShape ? pa : nil, shifts = residual == nil ? pa : nil
                let terms = haze_output_terms(bias: pb, shifts: shifts, residual: residual)
                guard !x.withScalars({ convolve($0, weight: weight, geometry: geo, terms: terms, activation: activation, into: out) })
                else { return }
                if let residual {
                    Parallel.forEach(count, cost: 2) { range in for i in range { out[i] += residual[i] } }
                } else if let shifts {
                    Parallel.forEach(geo.n * geo.o, cost: 2 * geo.p) { planes in
                        for plane in planes {
                            let (row, shift) = (out + plane * geo.p, shifts[plane])
                            for q in 0..<geo.p { row[q] += shift }
                        }
                    }
                }
            } }
        }
    }

    /// Whether `convolved` can read x through an input activation for this geometry: the
    /// Winograd paths, whose input transforms apply it (haze_input_activation). (A concatenation
    /// read in place, the activation's `second`, goes to F(4×4) and the packed 1×1 products.)
    static func readsThroughActivation(_ geo: ConvGeometry) -> Bool { Winograd.applies(geo) }

    /// y = conv(x) + bias by the algorithm of `geo` (see `conv2d`), adding `terms.shifts` and
    /// `terms.residual` too where the path can (then it returns true).
    private static func convolve(_ x: UnsafePointer<Float>, weight: Tensor, geometry geo: ConvGeometry, terms: haze_output_terms,
                                 activation: haze_input_activation, into out: UnsafeMutablePointer<Float>) -> Bool {
        let (o, p, k, chunk) = (geo.o, geo.p, geo.k, geo.chunk)
        precondition(activation.scale == nil || readsThroughActivation(geo), "convolve: no input activation on this path")
        precondition(activation.second == nil || (geo.isPointwise ? geo.usesPackedPointwise && PackedMatrices.available
                                                                  : Winograd.usesLargeTiles(n: geo.n, h: geo.h, w: geo.w)),
                     "convolve: a concatenation is read in place by F(4×4) and the packed 1×1 products only")
        if Winograd.applies(geo) {
            let u = Winograd.transformedWeights(weight, flip: false, n: geo.n, h: geo.h, width: geo.w)
            Winograd.convolve(x, n: geo.n, c: geo.c, h: geo.h, w: geo.w, u: u, o: o, terms: terms, activation: activation, into: out)
            return true
        }
        let biasValues = terms.bias.map { Array(UnsafeBufferPointer(start: $0, count: o)) }
        if geo.isDirect {
            geo.convolveDirectly(x, weight: weight, bias: biasValues, into: out)
            return false
        }
        if geo.usesPackedPointwise {
            let packed = PreparedWeights.value(for: weight, as: .pointwise) {
                weight.withScalars { PackedMatrices($0, rows: o, columns: geo.c) }
            }
            geo.multiplyPointwise(packed, x, concatenatedWith: activation.second, firstChannels: activation.first_channels,
                                  bias: biasValues, into: out)
            return false
        }
        weight.withScalars { pw in
            Parallel.forEach(geo.chunkCount, cost: 1 << 20) { items in
                Scratch.withBuffer(k * chunk * p) { cols in Scratch.withBuffer(chunk > 1 ? o * chunk * p : 0) { tmp in
                    for item in items {
                        let b0 = item * chunk, images = Swift.min(chunk, geo.n - b0), ld = images * p
                        let direct = chunk == 1
                        let columns: UnsafePointer<Float>
                        if direct && geo.isPointwise {
                            columns = x + b0 * k * p
                        } else {
                            geo.im2col(x, firstImage: b0, images: images, into: cols)
                            columns = UnsafePointer(cols)
                        }
                        gemm(m: o, n: ld, k: k, a: pw, b: columns, c: direct ? out + b0 * o * p : tmp)
                        guard !direct || biasValues != nil else { continue }
                        for b in 0..<images {
                            for oc in 0..<o {
                                let dst = out + ((b0 + b) * o + oc) * p
                                let src = direct ? UnsafePointer(dst) : UnsafePointer(tmp + oc * ld + b * p)
                                let shift = biasValues?[oc] ?? 0
                                for q in 0..<p { dst[q] = src[q] + shift }
                            }
                        }
                    }
                } }
            }
        }
        return false
    }

    /// conv2d(a, weight, bias) with a = producer(inputs), where `a` is not kept from the forward to
    /// the backward pass: the pullback recomputes it from `inputs` (recording them), runs the
    /// convolution's backward, then backpropagates ∂a through the recomputed producer. For a cheap
    /// producer in front of a convolution — a U-Net block's group norm + SiLU — this holds one
    /// activation fewer per convolution during training, for one more producer forward in the
    /// backward pass; its value and gradients are the bits of the plain composition (within a
    /// larger graph the tape may sum an input's gradient contributions in another order). `producer`
    /// must be deterministic and free of side effects (no dropout, no running statistics).
    /// Returns [N, O, HO, WO] (plus `adding`, as in `conv2d`); gradients flow to `inputs`, `weight`,
    /// `bias` and `adding`.
    public static func conv2d(recomputing producer: @escaping ([Tensor]) -> Tensor, from inputs: [Tensor], weight: Tensor,
                              bias: Tensor? = nil, stride: Int = 1, padding: Padding2D = .zero, adding addend: Tensor? = nil) -> Tensor {
        conv2d(recomputing: producer, from: inputs, weight: weight, bias: bias, stride: stride, padding: padding, adding: addend,
               fusedForward: nil)
    }

    /// `conv2d(recomputing:…)`, whose forward is `fusedForward(values of inputs)` where that returns
    /// a result (the same as the convolution of the producer's output: a path that reads the
    /// input through the producer), else the producer's output convolved. Used with a producer
    /// that keeps the shape of `inputs[0]`.
    private static func conv2d(recomputing producer: @escaping ([Tensor]) -> Tensor, from inputs: [Tensor], weight: Tensor,
                               bias: Tensor?, stride: Int, padding: Padding2D, adding addend: Tensor?,
                               fusedForward: (([Tensor]) -> Tensor?)?) -> Tensor {
        let values = inputs.map(\.detached)
        let y: Tensor, inputShape: [Int]
        if let fused = fusedForward?(values) {
            (y, inputShape) = (fused, values[0].shape)
        } else {
            let a = producer(values)
            y = conv2d(a, weight: weight.detached, bias: bias?.detached, stride: stride, padding: padding, adding: addend?.detached)
            inputShape = a.shape
        }
        let geo = ConvGeometry(n: inputShape[0], c: inputShape[1], h: inputShape[2], w: inputShape[3], o: weight.shape[0],
                               kh: weight.shape[2], kw: weight.shape[3], stride: stride, padding: padding)
        let (w, needInput) = (weight.detached, inputs.contains { $0.node != nil })
        return record(y, inputs + [weight] + [bias, addend].compactMap { $0 }) { g in
            let (tracked, leaves) = tracking(values)
            let recomputed = producer(tracked)
            let convolution = conv2dBackward(g, x: recomputed.detached, weight: w, geometry: geo, needInput: needInput,
                                             needBias: bias != nil)
            let upstream: [Tensor?] = needInput
                ? backpropagate(from: recomputed, seed: convolution[0]!, to: leaves, shapes: values.map(\.shape))
                : values.map { _ in nil }
            return upstream + convolution[1..<(bias != nil ? 3 : 2)] + (addend.map { [g.sum(toShape: $0.shape)] } ?? [])
        }
    }

    /// conv2d(SiLU(groupNorm(x))): a U-Net block's norm, activation and convolution, with the
    /// values and gradients of `conv2d(recomputing:)` with that group norm as the producer. x:
    /// [N, C, H, W]; `scale` and `shift`: the norm's weight and bias [C] (`groupNorm(_:groups:weight:bias:)`),
    /// or per image and channel [N, C] (`groupNorm(_:groups:scale:shift:)`, a FiLM-modulated norm).
    /// Where Winograd runs the convolution (`readsThroughActivation`), the forward
    /// computes only the norm's statistics, as a per-image affine transform (haze_group_norm_affine),
    /// and the input transforms read x through it and SiLU (haze_input_activation): the
    /// normalised activations are never written out, and the result is the same to the bit.
    /// (AMD Zen 4, `haze-bench kernels --threads 1 --filter norm+silu`: forward 1–4 % faster than
    /// with the activations written out at 28×28 and 14×14, within noise at 7×7; fmnist-s
    /// inference, batch 64, 2 threads, 8 alternating runs' minimum times 158–172 → 147–166 ms.
    /// F(2×2), bf16's path, reads through the norm too: speed within noise, Documentation/speed.md.)
    /// The backward recomputes the norm, as `conv2d(recomputing:)` does.
    public static func conv2d(siluOfGroupNorm x: Tensor, groups: Int, scale: Tensor, shift: Tensor, epsilon: Float = 1e-5,
                              weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Padding2D = .zero,
                              adding addend: Tensor? = nil) -> Tensor {
        precondition(x.rank == 4 && x.shape[1] % groups == 0, "conv2d: \(x.shape) does not split into \(groups) groups")
        let (n, c) = (x.shape[0], x.shape[1]), perImage = scale.rank == 2
        precondition(scale.shape == (perImage ? [n, c] : [c]) && shift.shape == scale.shape,
                     "conv2d: norm scale \(scale.shape) and shift \(shift.shape) for x \(x.shape)")
        let producer = { (t: [Tensor]) in
            perImage ? groupNorm(t[0], groups: groups, scale: t[1], shift: t[2], epsilon: epsilon, applyingSiLU: true)
                : groupNorm(t[0], groups: groups, weight: t[1], bias: t[2], epsilon: epsilon, applyingSiLU: true)
        }
        let geo = geometry(x.shape, weight: weight, bias: bias, stride: stride, padding: padding, adding: addend)
        let fused: (([Tensor]) -> Tensor?)? = !fusesGroupNorm || !readsThroughActivation(geo) ? nil : { t in
            convolvedThroughGroupNorm(t[0], groups: groups, scale: t[1], shift: t[2], epsilon: epsilon, weight: weight.detached,
                                      bias: bias?.detached, geometry: geo, adding: addend?.detached)
        }
        return conv2d(recomputing: producer, from: [x, scale, shift], weight: weight, bias: bias, stride: stride, padding: padding,
                      adding: addend, fusedForward: fused)
    }

    /// The fused forward of `conv2d(siluOfGroupNorm:…)` without the tape: the norm's statistics as
    /// a per-image affine transform (haze_group_norm_affine), then the convolution reading x
    /// through it and SiLU. With `second`, x is the concatenation along the channels of x and
    /// second, read in place (`geo` is the concatenation's, and the convolution must run by F(4×4):
    /// `readsConcatenationInPlace`).
    static func convolvedThroughGroupNorm(_ x: Tensor, concatenatedWith second: Tensor? = nil, groups: Int, scale: Tensor,
                                          shift: Tensor, epsilon: Float, weight: Tensor, bias: Tensor?, geometry geo: ConvGeometry,
                                          adding addend: Tensor?) -> Tensor {
        let (n, c, spatial, perGroup) = (geo.n, geo.c, geo.h * geo.w, geo.c / groups)
        let (firstChannels, perImage) = (x.shape[1], scale.rank == 2)
        var affineScale = [Float](repeating: 0, count: n * c), affineShift = affineScale
        x.withScalars { px in Tensor.withOptionalScalars(second) { p2 in scale.withScalars { ps in shift.withScalars { pt in
            affineScale.withUnsafeMutableBufferPointer { pa in affineShift.withUnsafeMutableBufferPointer { pb in
                Parallel.forEach(n * groups, cost: 2 * perGroup * spatial) { range in
                    haze_group_norm_affine(px, p2, firstChannels, ps, pt, perImage ? c : 0, range.lowerBound, range.count,
                                           groups, perGroup, spatial, epsilon, pa.baseAddress!, pb.baseAddress!)
                }
            } }
        } } } }
        return affineScale.withUnsafeBufferPointer { pa in affineShift.withUnsafeBufferPointer { pb in
            Tensor.withOptionalScalars(second) { p2 in
                convolved(x, weight: weight, bias: bias, geometry: geo, adding: addend,
                          activation: haze_input_activation(scale: pa.baseAddress!, shift: pb.baseAddress!, second: p2,
                                                            first_channels: firstChannels))
            }
        } }
    }

    /// Whether `conv2d(siluOfGroupNorm:…)` reads x through the norm where it can (default); tests
    /// switch it off to compare with the norm written out.
    nonisolated(unsafe) static var fusesGroupNorm = true

    /// Convenience with the same padding on all sides.
    public static func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil, stride: Int = 1, padding: Int) -> Tensor {
        conv2d(x, weight: weight, bias: bias, stride: stride, padding: Padding2D(padding))
    }

    /// Gradients of `conv2d` for output gradient g: [N, O, HO, WO] → [∂x, ∂w, ∂b].
    /// Each work item writes its own partial ∂W and ∂b, summed in item order afterwards, so the
    /// result does not depend on thread timing (bit-for-bit reproducible training).
    static func conv2dBackward(_ g: Tensor, x: Tensor, weight: Tensor, geometry geo: ConvGeometry,
                               needInput: Bool, needBias: Bool) -> [Tensor?] {
        let (o, p, k, chunk, items) = (geo.o, geo.p, geo.k, geo.chunk, geo.chunkCount)
        FlopCounter.add((needInput ? 4 : 2) * geo.n * o * p * k)
        if Winograd.applies(geo) { return winogradBackward(g, x: x, weight: weight, geometry: geo, needInput: needInput, needBias: needBias) }
        if geo.isPointwise && geo.n > 0 && geo.p >= 32 && ConvolutionAlgorithm.current != .im2col && PackedMatrices.available {
            return pointwiseBackward(g, x: x, weight: weight, geometry: geo, needInput: needInput, needBias: needBias)
        }
        var partialB = [Float](repeating: 0, count: items * o)
        var dx = needInput ? Tensor(shape: x.shape) { _, _ in } : Tensor.zeros([0])
        var dw = [Float](repeating: 0, count: o * k)
        Scratch.withBuffer(items * o * k) { partialW in
        x.withScalars { px in weight.withScalars { pw in g.withScalars { pg in dx.withMutableScalars { pdx in
            partialB.withUnsafeMutableBufferPointer { pb in
                // A single item (the whole batch of small images: cifar-ddpm's 8 images at 4×4 and
                // 8×8) runs its two products over the threads, in blocks fixed by the shape.
                func product(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int,
                             a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>) {
                    if items == 1 {
                        parallelGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, b: b, c: c)
                    } else {
                        gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, b: b, c: c)
                    }
                }
                Parallel.forEach(items, cost: 1 << 20) { range in
                    Scratch.withBuffer(k * chunk * p) { cols in Scratch.withBuffer(chunk > 1 ? o * chunk * p : 0) { gathered in
                        for item in range {
                            let b0 = item * chunk, images = Swift.min(chunk, geo.n - b0), ld = images * p
                            // G[oc][b·P + q] = g[b0 + b, oc, q] (g itself when B = 1); bias gradient.
                            let gt = chunk == 1 ? pg + b0 * o * p : UnsafePointer(gathered)
                            for oc in 0..<o {
                                var acc: Float = 0
                                for b in 0..<images {
                                    let src = pg + ((b0 + b) * o + oc) * p
                                    if chunk > 1 { (gathered + oc * ld + b * p).update(from: src, count: p) }
                                    acc += haze_sum(src, p)
                                }
                                pb[item * o + oc] = acc
                            }
                            if chunk == 1 && geo.isPointwise {  // x and ∂x are the columns themselves
                                product(transposeB: true, m: o, n: k, k: ld, a: gt, b: px + b0 * k * p, c: partialW + item * o * k)
                                if needInput {
                                    product(transposeA: true, m: k, n: ld, k: o, a: pw, b: gt, c: pdx + b0 * k * p)
                                }
                                continue
                            }
                            geo.im2col(px, firstImage: b0, images: images, into: cols)
                            product(transposeB: true, m: o, n: k, k: ld, a: gt, b: cols, c: partialW + item * o * k)
                            if needInput {
                                product(transposeA: true, m: k, n: ld, k: o, a: pw, b: gt, c: cols)
                                geo.col2im(cols, firstImage: b0, images: images, into: pdx)
                            }
                        }
                    } }
                }
            }
        } } } }
        // Fixed-order sums of the partials, parallel over the outputs.
        dw.withUnsafeMutableBufferPointer { out in
            Parallel.forEach(o * k, cost: items) { range in
                for i in range {
                    var acc: Float = 0
                    for item in 0..<items { acc += partialW[item * o * k + i] }
                    out[i] = acc
                }
            }
        }
        }
        let db = (0..<o).map { oc in (0..<items).reduce(Float(0)) { $0 + partialB[$1 * o + oc] } }
        return [needInput ? dx : nil,
                Tensor(shape: weight.shape, scalars: dw),
                needBias ? Tensor(shape: [o], scalars: db) : nil]
    }

    /// `conv2dBackward` for 1×1 convolutions of planes of 32 pixels or more on AVX-512 (on 4×4
    /// planes one product over the whole batch is faster), image by image, nothing copied but each
    /// image's x transposed in the cache: ∂x[b] = Wᵀ G[b] (Wᵀ packed once; G [O, P] is g's image
    /// read in place), ∂W = Σ_b G[b] · x[b]ᵀ by haze_gemm_rows on x[b]ᵀ [P, C], the images in
    /// `Winograd.slotGroups` consecutive groups that each accumulate into their own slot, the slots
    /// added in order (fixed by the shape: the same bits at any thread count). It replaced items of
    /// several images copied into column matrices for OpenBLAS (`haze-bench unet --config fmnist-s
    /// --mode train`, alternating: 542/544/597/632 → 517/524/538/555 ms).
    private static func pointwiseBackward(_ g: Tensor, x: Tensor, weight: Tensor, geometry geo: ConvGeometry,
                                          needInput: Bool, needBias: Bool) -> [Tensor?] {
        let (n, c, o, p) = (geo.n, geo.c, geo.o, geo.p), size = o * c
        let slots = Winograd.slotGroups(items: n, slotSize: size)
        var sums = [Float](repeating: 0, count: n * o)  // Σ_q g[b, oc, q], for ∂b
        var dx = needInput ? Tensor(shape: x.shape) { _, _ in } : nil
        let transposedWeight = needInput ? weight.withScalars { pw in
            PackedMatrices(count: 1, rows: c, columns: o, bfloat16Allowed: false) { packed, _ in haze_gemm_pack_transposed(pw, c, packed, c, o) }
        } : nil
        let dw = Scratch.withBuffer(slots * size) { partial in
            x.withScalars { px in g.withScalars { pg in
                sums.withUnsafeMutableBufferPointer { ps in
                    func backward(_ pdx: UnsafeMutablePointer<Float>?) {
                        Parallel.forEach(slots, cost: 1 << 20, chunksPerThread: slots) { range in
                            Scratch.withBuffer(p * c) { transposed in
                                for slot in range {
                                    for b in slot * n / slots..<(slot + 1) * n / slots {
                                        let (xb, gb) = (px + b * c * p, pg + b * o * p)
                                        for oc in 0..<o { ps[b * o + oc] = haze_sum(gb + oc * p, p) }
                                        if let pdx { transposedWeight!.multiply(gb, ldb: p, into: pdx + b * c * p, ldc: p, columns: p) }
                                        haze_transpose_tiled(xb, p, transposed, c, c, p)
                                        haze_gemm_rows(gb, p, transposed, c, partial + slot * size, c, o, c, p, b == slot * n / slots ? 0 : 1)
                                    }
                                }
                            }
                        }
                    }
                    if dx != nil { dx!.withMutableScalars { backward($0) } } else { backward(nil) }
                }
            } }
            // The slots added in order into the first (as the Winograd weight gradients do).
            let pointers: [UnsafeMutablePointer<Float>?] = (0..<slots).map { partial + $0 * size }
            pointers.withUnsafeBufferPointer { slotList in
                Parallel.forEach(o, cost: slots * c) { rows in
                    for r in rows { haze_winograd_sum_slots(slotList.baseAddress!, slots, 1, o, c, r) }
                }
            }
            return Array(UnsafeBufferPointer(start: partial, count: size))
        }
        let db = (0..<o).map { oc in (0..<n).reduce(Float(0)) { $0 + sums[$1 * o + oc] } }
        return [dx, Tensor(shape: weight.shape, scalars: dw), needBias ? Tensor(shape: [o], scalars: db) : nil]
    }

    /// `conv2dBackward` for 3×3 stride-1 padding-1 convolutions, all by Winograd: ∂x = g ⊛ (w
    /// flipped, channels swapped), a 3×3 padding-1 convolution from O to C channels; ∂w and ∂b
    /// by `Winograd.weightGradient`.
    private static func winogradBackward(_ g: Tensor, x: Tensor, weight: Tensor, geometry geo: ConvGeometry,
                                         needInput: Bool, needBias: Bool) -> [Tensor?] {
        var dx: Tensor?
        if needInput {
            let u = Winograd.transformedWeights(weight, flip: true, n: geo.n, h: geo.h, width: geo.w)
            dx = Tensor(shape: x.shape) { pdx, _ in
                g.withScalars { Winograd.convolve($0, n: geo.n, c: geo.o, h: geo.h, w: geo.w, u: u, o: geo.c, terms: haze_output_terms(),
                                                  activation: haze_input_activation(), into: pdx) }
            }
        }
        let (dw, db) = x.withScalars { px in g.withScalars { pg in
            Winograd.weightGradient(px, pg, n: geo.n, c: geo.c, h: geo.h, w: geo.w, o: geo.o)
        } }
        return [dx, Tensor(shape: weight.shape, scalars: dw), needBias ? Tensor(shape: [geo.o], scalars: db) : nil]
    }
}
