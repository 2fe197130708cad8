import Foundation
import CHazeKernels

/// Winograd F(2×2, 3×3) convolution (Lavin & Gray 2016) for the 3×3, stride-1, padding-1
/// convolutions that make up most of a U-Net: 16 products of [O, C] · [C, T] over T 2×2 output
/// tiles replace the [O, 9C] · [9C, 4T] product of im2col, 2.25× fewer multiplications and no
/// column matrix. Used by `Tensor.conv2d` for the forward pass and for the input gradient (the
/// same convolution with the kernels flipped and the channels swapped), and for the weight
/// gradient (the adjoint of the transforms). The transforms are C kernels
/// (CHazeKernels/haze_winograd.c). On AVX-512 CPUs F(4×4, 3×3) (haze_winograd43.c: 36 products
/// over 4×4 output tiles, 44 % fewer multiplications than F(2×2, 3×3)) takes images of at most
/// 8×8 when there are more than 16 (16 images per vector), and at any batch planes 32 or 64 wide
/// (32×32, 64×64), 9–16 wide (14×14, 16×16) and 25–31 wide (28×28) (16 consecutive tiles per
/// vector, the tile rows running on from one image to the next).
///
/// Threading as im2col: work items of whole images, one per worker at a time (about
/// `tilesPerItem` tiles each), each with its own transform buffers and single-threaded SGEMMs.
/// Every output value is computed by one worker in a fixed order, and the items are fixed by the
/// shapes: the results depend neither on thread timing nor on the thread count (bit-for-bit
/// reproducible training on any machine with the same kernels).
public enum ConvolutionAlgorithm: Sendable {
    /// Winograd where it applies (3×3, stride 1, padding 1: F(2×2, 3×3), or F(4×4, 3×3) on small
    /// images with AVX-512), the direct kernel for the forward of strided convolutions on AVX-512
    /// CPUs, im2col + SGEMM elsewhere.
    case automatic
    /// As `automatic`, with Winograd restricted to F(2×2, 3×3): to compare the tile sizes
    /// (`haze-bench convs`).
    case smallTiles
    /// im2col + SGEMM for every convolution (the reference path; tests compare the two).
    case im2col

    /// The algorithm `conv2d` uses. Set it before convolutions run (not synchronised).
    nonisolated(unsafe) public static var current = ConvolutionAlgorithm.automatic
}

enum Winograd {
    /// Tiles per work item: the transformed input and output tiles, 16·(C + O)·T floats, fill
    /// about 2 MB (a core's L2 cache), within 64…1024 tiles so that the SGEMMs stay efficient.
    /// An item holds whole images, so one large image can exceed it.
    /// (Measured on the fmnist-s shapes: 1.0–1.5× faster than a fixed 512 tiles at 7×7 with
    /// 256 channels, the same elsewhere.)
    static func tilesPerItem(c: Int, o: Int) -> Int { Swift.min(1024, Swift.max(64, 32768 / (c + o))) }

    /// Whether a convolution of this geometry runs through Winograd: 3×3, stride 1, padding 1, and
    /// at least 4 input channels. A stem over 1–3 image channels takes im2col, whose column matrix
    /// is then only 9–27 rows while Winograd's transforms cost as much as for wide inputs (`haze-bench
    /// convs`, forward ms, Winograd → im2col: fmnist-s [64,1,28,28]→32 1.35 → 0.38, faces-64
    /// [16,3,64,64]→64 3.9 → 2.2, cifar-ddpm [8,3,32,32]→128 0.67 → 0.78).
    static func applies(_ geo: ConvGeometry) -> Bool {
        ConvolutionAlgorithm.current != .im2col && geo.kh == 3 && geo.kw == 3 && geo.stride == 1 && geo.padding == Padding2D(1)
            && geo.c >= 4
    }

    /// Whether `convolve` uses F(4×4, 3×3) on these images, on an AVX-512 CPU: images of at most
    /// 8×8 when there are more than 16 (`usesImagesInLanes`), and the planes of `usesRowTiles`
    /// (among them smaller batches of 5–8 wide images). Not a function of the thread count: the two
    /// algorithms round differently. (Tests switch `largeTiles` off to compare.) In bf16 the forward
    /// and input-gradient convolutions take F(2×2) with the bf16 kernel on both kinds of plane (the
    /// small ones: fmnist-s batch 64, `haze-bench unet --precision bfloat16`, alternating, inference
    /// with prepared weights 194/187/171 → 165/162/177 ms, training step 709/638/667 → 596/606/596 ms).
    /// `forWeightGradient`: the choice of `weightGradient` (see `usesRowTiles`), float32 F(4×4).
    static func usesLargeTiles(n: Int, h: Int, w: Int, forWeightGradient: Bool = false) -> Bool {
        guard ConvolutionAlgorithm.current == .automatic && largeTiles && haze_winograd43_available() != 0 && PackedMatrices.available else {
            return false
        }
        if usesImagesInLanes(n: n, h: h, w: w) {
            return forWeightGradient || !(Precision.current == .bfloat16 && Precision.bfloat16Available)
        }
        return usesRowTiles(n: n, h: h, w: w, forWeightGradient: forWeightGradient)
    }
    nonisolated(unsafe) static var largeTiles = true

    /// Whether F(4×4) runs with 16 images in the vector lanes (haze_winograd43_input/output):
    /// images of at most 8×8, more than 16 of them (at least two items).
    static func usesImagesInLanes(n: Int, h: Int, w: Int) -> Bool { h <= 8 && w <= 8 && n > 16 }

    /// Whether F(4×4, 3×3) runs with the tiles along the lanes (haze_winograd43_rows_*): planes 32
    /// or 64 wide, planes 9–16 wide laid out 16 wide (14×14 against F(2×2, 3×3), fmnist-s,
    /// batch 64, `haze-bench convs`, two alternating rounds: 128→128 11.1/11.4 → 7.7/7.7 ms,
    /// 192→64 9.7/8.6 → 7.0/6.5, 128→64 5.6/5.7 → 3.9/4.0, 64→64 2.8/2.9 → 2.8/2.8), and planes
    /// 25–31 wide laid out 32 wide (28×28, same bench, forward ms: 32→32 3.80 → 2.77, 64→64 8.59 →
    /// 7.27, 96→32 9.53 → 6.89, 64→32 5.01 → 4.61; 32→1 1.42 → 1.74, where the products are too few
    /// to repay the larger transforms; the whole forward 146 → 128 ms), and planes 5–8 wide laid
    /// out 8 wide where the images are not in the lanes (2 × 2 tiles of 36 positions an image
    /// against F(2×2)'s 16 tiles of 16, 44 % fewer products; `haze-bench convs`, two threads,
    /// forward ms, three alternating rounds: cifar-ddpm [8,256,8,8]→256 1.84–1.96 → 1.31–1.45,
    /// [8,512,8,8]→256 4.13–4.35 → 3.22–4.13, where the weights' 36 matrices of 512 KB meet only
    /// 32 columns; faces-64, two rounds: [16,256,8,8]→256 4.99–5.29 → 2.68–3.14, [16,512,8,8]→256
    /// 10.2–10.7 → 5.8–6.8). In bf16 the
    /// forward and input-gradient convolutions there take F(2×2) with the bf16 kernel instead;
    /// the weight gradient, which has no bf16 kernel, keeps F(4×4) in float32 (bf16 training step,
    /// same run, alternating, `haze-bench unet --precision bfloat16`: faces-64 b16 2627/2588 →
    /// 2380/2486 ms, tf-article b32 3063/2916 → 2750/2621 ms), except on planes 8 wide or less,
    /// where it keeps F(2×2). Planes laid out 64 wide keep F(4×4) in float32 in bf16 too: their
    /// transforms, not their products, set the pace, and F(4×4)'s are the cheaper per output
    /// (`haze-bench convs --config faces-64 --precision bfloat16 --prepared-weights`, forward ms,
    /// bf16 F(2×2) against float32 F(4×4), two rounds: [16,64,64,64]→64 9.38 → 7.13, 128→128
    /// 33.7 → 26.6, 192→64 29.2 → 21.8, 128→64 21.5 → 14.2; forward + backward 48.1 → 43.1, 137.1
    /// → 127.8, 105.5 → 94.9, 79.4 → 68.4). On the narrower planes bf16 F(2×2) is as fast or faster
    /// (32 wide: 128→128 6.58 → 6.35 but 256→256 23.4 → 27.3; 16 wide 11.9 → 13.5 at 512→256).
    static func usesRowTiles(n: Int, h: Int, w: Int, forWeightGradient: Bool = false) -> Bool {
        guard !usesImagesInLanes(n: n, h: h, w: w) && haze_winograd43_rows_fit(h, w) != 0 else { return false }
        if forWeightGradient { return w > 8 }
        return !(Precision.current == .bfloat16 && Precision.bfloat16Available) || w > 32
    }

    /// The transformed weights of one convolution, in the form `convolve` uses them.
    enum TransformedWeights {
        /// F(2×2, 3×3): U [16, O, C] (see haze_winograd_weights), and packed for haze_gemm_packed
        /// where `convolve` multiplies with the packed kernel (`usesPackedProducts`).
        case smallTiles([Float], packed: PackedMatrices?)
        /// F(4×4, 3×3): U [36, O, C], packed for haze_gemm_packed (haze_winograd43_packed_weights).
        case largeTiles(PackedMatrices)
    }

    /// Whether F(2×2) products of images of `perImage` tiles with c input channels go to the packed
    /// kernel: images of at most 64 tiles (16×16) or a multiple of 16 tiles (32×32, 64×64), with
    /// at most 256 input channels (one 256-deep panel): 7×7/128 forward 3.10 → 2.88 ms, 14×14/64
    /// 2.95 → 2.67 ms, 7×7/256 7.37 → 6.73 ms; batch 16 at 64×64/32 6.4 → 3.7 ms, 64×64/96→32 16.0
    /// → 11.0 ms, 32×32/64 3.4 → 2.9 ms, 32×32/128 12.2 → 10.9 ms. Elsewhere OpenBLAS is as fast or
    /// faster (28×28/64, 196 tiles: 9.2 → 10.3 ms). (`haze-bench kernels`, min of alternating
    /// runs.) In bf16 (`Precision`) every size takes the packed products: the bf16 kernel is there only.
    static func usesPackedProducts(perImage: Int, c: Int) -> Bool {
        let bfloat16 = Precision.current == .bfloat16 && Precision.bfloat16Available
        return bfloat16 || PackedMatrices.available && (perImage <= 64 || perImage % 16 == 0) && c <= 256
    }

    /// The transformed weights of w [O, C, 3, 3] for `convolve` on n images of h × w; with `flip`,
    /// those of the input-gradient convolution: w flipped in space with the channels swapped.
    /// Inside `ConvolutionAlgorithm.reusingTransformedWeights` they are made once per weight tensor.
    static func transformedWeights(_ w: Tensor, flip: Bool, n: Int, h: Int, width: Int) -> TransformedWeights {
        let (o, c) = (w.shape[0], w.shape[1])
        let large = usesLargeTiles(n: n, h: h, w: width)
        let packed = !large && usesPackedProducts(perImage: ((h + 1) / 2) * ((width + 1) / 2), c: flip ? o : c)
        return PreparedWeights.value(for: w, as: .winograd(flip: flip, large: large, packed: packed)) {
            w.withScalars { pw in
                guard flip else { return transform(pw, o: o, c: c, large: large, packed: packed) }
                return Scratch.withBuffer(9 * o * c) { wf in
                    Parallel.forEach(c, cost: 20 * o) { rows in haze_flipped_kernels(pw, wf, o, c, rows.lowerBound, rows.count) }
                    return transform(wf, o: c, c: o, large: large, packed: packed)
                }
            }
        }
    }

    private static func transform(_ w: UnsafePointer<Float>, o: Int, c: Int, large: Bool, packed: Bool) -> TransformedWeights {
        if large {
            return .largeTiles(PackedMatrices(count: 36, rows: o, columns: c, bfloat16Allowed: false) { packed, _ in
                Parallel.forEach((o + 7) / 8, cost: 2000 * c) { blocks in
                    haze_winograd43_packed_weights(w, packed, o, c, blocks.lowerBound, blocks.count)
                }
            })
        }
        let u = [Float](unsafeUninitializedCapacity: 16 * o * c) { buffer, initialized in
            Parallel.forEach(o, cost: 50 * c) { rows in haze_winograd_weights(w, buffer.baseAddress!, o, c, rows.lowerBound, rows.count) }
            initialized = 16 * o * c
        }
        return .smallTiles(u, packed: packed ? u.withUnsafeBufferPointer { PackedMatrices($0.baseAddress!, count: 16, rows: o, columns: c) } : nil)
    }

    /// The work split of a Winograd pass over n images of h × w: `chunk` images per item, at
    /// most `tilesPerItem` tiles and at least 64, in `Parallel.minimumItems` items where that
    /// fits (fixed by the shape: the GEMM shapes decide the rounding).
    struct Plan {
        let tilesH: Int, tilesW: Int, chunk: Int, items: Int
        var perImage: Int { tilesH * tilesW }

        init(n: Int, h: Int, w: Int, c: Int, o: Int) {
            (tilesH, tilesW) = ((h + 1) / 2, (w + 1) / 2)
            let perImage = tilesH * tilesW, even = (n + Parallel.minimumItems - 1) / Parallel.minimumItems
            let most = Swift.max(1, tilesPerItem(c: c, o: o) / perImage), fewest = (64 + perImage - 1) / perImage
            chunk = Swift.min(most, Swift.max(fewest, even))
            items = (n + self.chunk - 1) / self.chunk
        }

        /// The images of `item`: (first image, count, tiles).
        func images(of item: Int, n: Int) -> (first: Int, count: Int, tiles: Int) {
            let first = item * chunk, count = Swift.min(chunk, n - first)
            return (first, count, count * perImage)
        }
    }

    /// y [N, O, H, W] = Σ_c u ⊛ x + `terms` (bias, shifts, residual: haze_output_terms) for
    /// x [N, C, H, W] read through `activation` where its scale is not nil (haze_input_activation),
    /// and the transformed weights u.
    static func convolve(_ x: UnsafePointer<Float>, n: Int, c: Int, h: Int, w: Int, u weights: TransformedWeights, o: Int,
                         terms: haze_output_terms, activation: haze_input_activation, into y: UnsafeMutablePointer<Float>) {
        guard n > 0 else { return }
        let u: [Float], packed: PackedMatrices?
        switch weights {
        case .largeTiles(let packed):
            return convolveLargeTiles(x, activation, n: n, c: c, h: h, w: w, u: packed, terms: terms, into: y)
        case .smallTiles(let values, let packedValues): (u, packed) = (values, packedValues)
        }
        let plan = Plan(n: n, h: h, w: w, c: c, o: o)
        // A single item (small images in a small batch: cifar-ddpm's 8 images at 4×4) splits its 16
        // products over the threads: the same calls, the same bits.
        let splitsPositions = plan.items == 1
        u.withUnsafeBufferPointer { pu in
            Parallel.forEach(plan.items, cost: 1 << 20) { range in
                let tiles = plan.chunk * plan.perImage
                Scratch.withBuffer(16 * haze_winograd_block(c, tiles)) { v in Scratch.withBuffer(16 * haze_winograd_block(o, tiles)) { m in
                    for item in range {
                        let (b0, images, t) = plan.images(of: item, n: n)
                        let (vBlock, mBlock) = (haze_winograd_block(c, t), haze_winograd_block(o, t))
                        haze_winograd_input(x, activation, v, b0, images, c, h, w, plan.tilesH, plan.tilesW)
                        func multiply(_ positions: Range<Int>) {
                            for xi in positions {
                                if let packed {
                                    packed.multiply(v + xi * vBlock, ldb: t, into: m + xi * mBlock, ldc: t, columns: t, matrix: xi)
                                } else {
                                    gemm(m: o, n: t, k: c, a: pu.baseAddress! + xi * o * c, b: v + xi * vBlock, c: m + xi * mBlock)
                                }
                            }
                        }
                        if splitsPositions { Parallel.forEach(16, cost: 1 << 20, multiply) } else { multiply(0..<16) }
                        haze_winograd_output(m, y, terms, b0, images, o, h, w, plan.tilesH, plan.tilesW)
                    }
                } }
            }
        }
    }

    /// `convolve` by F(4×4, 3×3) (haze_winograd43.c): items of 16 images, one per vector lane;
    /// per item the input transform, 36 products U[ξ] · V[ξ] with the packed weights, and the
    /// output transform. 7×7 images take a 4- and a 3-output tile each way (F(3, 3) on F(4, 3)'s
    /// points without −2), 121 products per image and channel pair instead of 144: position ξ
    /// multiplies only the columns of the tiles that have it (haze_winograd43_columns).
    private static func convolveLargeTiles(_ x: UnsafePointer<Float>, _ activation: haze_input_activation, n: Int, c: Int, h: Int,
                                           w: Int, u packed: PackedMatrices, terms: haze_output_terms,
                                           into y: UnsafeMutablePointer<Float>) {
        if usesRowTiles(n: n, h: h, w: w) {
            return convolveRowTiles(x, activation, n: n, c: c, h: h, w: w, u: packed, terms: terms, into: y)
        }
        let o = packed.rows, t = haze_winograd43_tiles(h, w), split: Int32 = splitsTiles ? 1 : 0
        let (vBlock, mBlock) = (haze_winograd_block(c, t), haze_winograd_block(o, t))
        let columns = (0..<36).map { xi in
            var first = 0
            let count = haze_winograd43_columns(h, w, split, Int32(xi), &first)
            return (first: first, count: count)
        }
        Parallel.forEach((n + 15) / 16, cost: 1 << 20) { range in
            Scratch.withBuffer(36 * vBlock) { v in Scratch.withBuffer(36 * mBlock) { m in
                for item in range {
                    let (b0, images) = (16 * item, Swift.min(16, n - 16 * item))
                    haze_winograd43_input(x, activation, v, b0, images, c, h, w, split, vBlock)
                    for (xi, (first, count)) in columns.enumerated() {
                        packed.multiply(v + xi * vBlock + first, ldb: t, into: m + xi * mBlock + first, ldc: t, columns: count, matrix: xi)
                    }
                    haze_winograd43_output(m, y, terms, b0, images, o, h, w, split, mBlock)
                }
            } }
        }
    }

    /// Whether `convolve` splits 7×7 images into a 4- and a 3-output tile each way (default);
    /// tests switch it off to compare with two 4-output tiles.
    nonisolated(unsafe) static var splitsTiles = true

    /// The work split of F(4×4) with the tiles along the lanes: the haze_winograd43_rows_groups
    /// groups of 16 tiles of the batch (whose tile rows run on from image to image), in items of
    /// `groupsPerItem` consecutive groups: V and M of an item, 36·(C + O)·16 floats a group, fill
    /// about 512 KB, a quarter of a core's L2, at least 4 groups (64 columns for the products), and
    /// there are `Parallel.minimumItems` items where that fits. Fixed by the shape. (Items filling
    /// the whole 2 MB of L2 left no room for the input and output planes and the weights:
    /// `haze-bench kernels --threads 1`, medians of four alternating rounds, forward ms: 28×28
    /// 32→32 4.9 → 3.8, 64→64 14.7 → 12.3, 14×14 64→64 3.6 → 3.2.)
    struct RowTilePlan {
        let groups: Int, groupsPerItem: Int
        var items: Int { (groups + groupsPerItem - 1) / groupsPerItem }

        init(n: Int, h: Int, w: Int, c: Int, o: Int) {
            groups = haze_winograd43_rows_groups(n, h, w)
            let most = Swift.max(4, (1 << 19) / (4 * 36 * 16 * (c + o)))
            groupsPerItem = Swift.min(most, Swift.max(4, (groups + Parallel.minimumItems - 1) / Parallel.minimumItems))
        }

        /// The first group of `item` and its number of groups.
        func groups(of item: Int) -> (first: Int, count: Int) {
            (item * groupsPerItem, Swift.min(groups, (item + 1) * groupsPerItem) - item * groupsPerItem)
        }
    }

    /// `convolve` by F(4×4, 3×3) with the tiles along the lanes (haze_winograd43_rows_*): per item
    /// the input transform, 36 products U[ξ] · V[ξ] with the packed weights, the output transform.
    /// A single item (8×8 images in a small batch: cifar-ddpm's eight make two groups) runs each of
    /// the three over the threads instead: the transforms by channels, the products by position
    /// (the same calls on the same data as on one thread, so the same bits).
    private static func convolveRowTiles(_ x: UnsafePointer<Float>, _ activation: haze_input_activation, n: Int, c: Int, h: Int,
                                         w: Int, u packed: PackedMatrices, terms: haze_output_terms,
                                         into y: UnsafeMutablePointer<Float>) {
        let o = packed.rows, plan = RowTilePlan(n: n, h: h, w: w, c: c, o: o), most = 16 * plan.groupsPerItem
        if plan.items == 1 {
            let (first, count) = plan.groups(of: 0), t = 16 * count
            let (vBlock, mBlock) = (haze_winograd_block(c, t), haze_winograd_block(o, t))
            Scratch.withBuffer(36 * vBlock) { v in Scratch.withBuffer(36 * mBlock) { m in
                Parallel.forEach(c, cost: 1 << 16) { channels in
                    haze_winograd43_rows_input(x, activation, v, n, c, channels.lowerBound, channels.count, h, w, first, count, t, vBlock)
                }
                Parallel.forEach(36, cost: 1 << 20) { positions in
                    for xi in positions {
                        packed.multiply(v + xi * vBlock, ldb: t, into: m + xi * mBlock, ldc: t, columns: t, matrix: xi)
                    }
                }
                Parallel.forEach(o, cost: 1 << 16) { channels in
                    haze_winograd43_rows_output(m, y, terms, n, o, channels.lowerBound, channels.count, h, w, first, count, t, mBlock)
                }
            } }
            return
        }
        Parallel.forEach(plan.items, cost: 1 << 20) { range in
            Scratch.withBuffer(36 * haze_winograd_block(c, most)) { v in Scratch.withBuffer(36 * haze_winograd_block(o, most)) { m in
                for item in range {
                    let (first, count) = plan.groups(of: item), t = 16 * count
                    let (vBlock, mBlock) = (haze_winograd_block(c, t), haze_winograd_block(o, t))
                    haze_winograd43_rows_input(x, activation, v, n, c, 0, c, h, w, first, count, t, vBlock)
                    for xi in 0..<36 {
                        packed.multiply(v + xi * vBlock, ldb: t, into: m + xi * mBlock, ldc: t, columns: t, matrix: xi)
                    }
                    haze_winograd43_rows_output(m, y, terms, n, o, 0, o, h, w, first, count, t, mBlock)
                }
            } }
        }
    }

    /// The gradients of y = conv(x, w) + b with respect to w [O, C, 3, 3] and b [O], for the
    /// output gradient g [N, O, H, W]: per item ∂U[ξ] += M̄[ξ] V[ξ]ᵀ (haze_winograd.c, or
    /// haze_winograd43.c where `convolve` uses F(4×4, 3×3)). The items are split into a fixed
    /// number of consecutive groups, each accumulating into its own slot (GEMM β = 1); the slots
    /// are added in order while ∂w = Gᵀ ∂U G is formed, so the result depends neither on timing
    /// nor on the thread count.
    static func weightGradient(_ x: UnsafePointer<Float>, _ g: UnsafePointer<Float>,
                               n: Int, c: Int, h: Int, w: Int, o: Int) -> (weight: [Float], bias: [Float]) {
        if usesLargeTiles(n: n, h: h, w: w, forWeightGradient: true) && usesRowTiles(n: n, h: h, w: w, forWeightGradient: true) {
            // Items of whole images (the bias sums), at least 64 columns: V and M̄ of 256 columns
            // (four 28×28 images, sixteen 14×14) overflowed L2 as the forward's items did (`haze-bench
            // kernels --threads 1`, forward + backward ms: 28×28 32→32 16.7 → 14.0, 64→64 49 → 41,
            // 14×14 64→64 12.4 → 10.2; 32 columns at 14×14 was no faster).
            let columns = { (images: Int) in 16 * haze_winograd43_rows_groups(images, h, w) }, chunk = Swift.max(1, 64 / columns(1))
            return weightGradient(g, items: (n + chunk - 1) / chunk, positions: 36, tiles: columns, c: c, h: h, w: w, o: o,
                                  products: PackedMatrices.available ? .transposedTiles : .blas,
                                  images: { (chunk * $0, Swift.min(chunk, n - chunk * $0)) },
                                  transform: { b0, images, v, mbar, vBlock, mBlock, inParallel in
                                      // The item's images as a batch of their own, its groups over the threads.
                                      let (t, x, g) = (columns(images), x + b0 * c * h * w, g + b0 * o * h * w)
                                      func transform(_ range: Range<Int>) {
                                          haze_winograd43_rows_input(x, haze_input_activation(), v + 16 * range.lowerBound, images, c, 0, c, h, w,
                                                                     range.lowerBound, range.count, t, vBlock)
                                          haze_winograd43_rows_output_gradient(g, mbar + 16 * range.lowerBound, images, o, h, w,
                                                                               range.lowerBound, range.count, t, mBlock)
                                      }
                                      if inParallel { Parallel.forEach(t / 16, cost: 1 << 20, transform) } else { transform(0..<t / 16) }
                                  },
                                  finish: haze_winograd43_weights_gradient)
        }
        if usesLargeTiles(n: n, h: h, w: w, forWeightGradient: true) {
            let t = haze_winograd43_tiles(h, w)
            return weightGradient(g, items: (n + 15) / 16, positions: 36, tiles: { _ in t }, c: c, h: h, w: w, o: o,
                                  images: { (16 * $0, Swift.min(16, n - 16 * $0)) },
                                  transform: { b0, images, v, mbar, vBlock, mBlock, _ in
                                      haze_winograd43_input(x, haze_input_activation(), v, b0, images, c, h, w, 0, vBlock)
                                      haze_winograd43_output_gradient(g, mbar, b0, images, o, h, w, mBlock)
                                  },
                                  finish: haze_winograd43_weights_gradient)
        }
        let plan = Plan(n: n, h: h, w: w, c: c, o: o)
        return weightGradient(g, items: plan.items, positions: 16, tiles: { $0 * plan.perImage }, c: c, h: h, w: w, o: o,
                              images: { let i = plan.images(of: $0, n: n); return (i.first, i.count) },
                              transform: { b0, images, v, mbar, _, _, _ in
                                  haze_winograd_input(x, haze_input_activation(), v, b0, images, c, h, w, plan.tilesH, plan.tilesW)
                                  haze_winograd_output_gradient(g, mbar, b0, images, o, h, w, plan.tilesH, plan.tilesW)
                              },
                              finish: haze_winograd_weights_gradient)
    }

    /// The number of slots (groups of items) of a weight gradient: a power of two, at most
    /// `Parallel.minimumItems` and the number of items; more than two only while the slots,
    /// summed at the end, stay within 8 MB.
    static func slotGroups(items: Int, slotSize: Int) -> Int {
        var groups = 1
        while 2 * groups <= Swift.min(items, Parallel.minimumItems) && (groups < 2 || 2 * groups * slotSize * 4 <= 8 << 20) {
            groups *= 2
        }
        return groups
    }

    /// How `weightGradient` forms ∂U[ξ] += M̄[ξ] V[ξ]ᵀ: by BLAS, or (`transposedTiles`, with
    /// AVX-512) by transposing V[ξ] [C, T] to [T, C] in the cache and multiplying by
    /// haze_gemm_rows, M̄[ξ] read in place. It replaced a kernel that read both along T and summed
    /// each output element's 16 lanes once per item: in a `perf` profile of the tf-article train
    /// step (batch 32, Intel Xeon), 13.0 % of the time then, 7.8 % now plus 1.7 % of transposes.
    enum WeightGradientProducts { case blas, transposedTiles }

    /// `weightGradient` for either tile size: `images(item)` gives an item's images, `tiles(count)`
    /// the columns T of that many images' transforms, `transform` fills V [positions, C, T] and
    /// M̄ [positions, O, T] (blocks vBlock, mBlock apart; over the images in parallel where it can
    /// and its last argument asks), and `finish` turns the slots into ∂w.
    /// The items form `slotGroups` consecutive groups, each accumulating into its own slot; the
    /// groups are fixed by the shape, so the sums do not depend on the thread count. The groups run
    /// in parallel; a single group (a small batch: cifar-ddpm's 8 images at 16×16 make one item)
    /// splits each item's transforms (where `transform` can) and its `positions` products over the
    /// threads instead. Every product is the same call either way, so are the bits.
    private static func weightGradient(
        _ g: UnsafePointer<Float>, items: Int, positions: Int, tiles: (Int) -> Int, c: Int, h: Int, w: Int, o: Int,
        products: WeightGradientProducts = .blas,
        images: (Int) -> (first: Int, count: Int),
        transform: (_ first: Int, _ count: Int, _ v: UnsafeMutablePointer<Float>, _ mbar: UnsafeMutablePointer<Float>,
                    _ vBlock: Int, _ mBlock: Int, _ inParallel: Bool) -> Void,
        finish: (UnsafePointer<UnsafeMutablePointer<Float>?>, Int, UnsafeMutablePointer<Float>, Int, Int, Int, Int) -> Void
    ) -> (weight: [Float], bias: [Float]) {
        let size = positions * o * c
        var partialB = [Float](repeating: 0, count: items * o)
        let groups = slotGroups(items: items, slotSize: size)
        let largest = (0..<items).map { tiles(images($0).count) }.max() ?? 0
        let splitsPositions = groups == 1
        let dw = Scratch.withBuffer(groups * size) { partial in
            partialB.withUnsafeMutableBufferPointer { pb in
                /// Item `item` of `group`: its bias sums, its transforms, and its products accumulated
                /// into the group's slot; `inParallel`: the transforms and products over the threads
                /// (`transposed`: the calling worker's buffer, used otherwise).
                func accumulate(item: Int, group: Int, v: UnsafeMutablePointer<Float>, mbar: UnsafeMutablePointer<Float>,
                                inParallel: Bool, transposed: UnsafeMutablePointer<Float>) {
                    let slot = partial + group * size, first = group * items / groups
                    let (b0, count) = images(item), t = tiles(count)
                    let (vBlock, mBlock) = (haze_winograd_block(c, t), haze_winograd_block(o, t))
                    for oc in 0..<o {
                        var acc: Float = 0
                        for b in 0..<count { acc += haze_sum(g + ((b0 + b) * o + oc) * h * w, h * w) }
                        pb[item * o + oc] = acc
                    }
                    transform(b0, count, v, mbar, vBlock, mBlock, inParallel)
                    func multiply(_ positions: Range<Int>, transposed: UnsafeMutablePointer<Float>) {
                        for xi in positions {
                            let (a, b, product) = (mbar + xi * mBlock, v + xi * vBlock, slot + xi * o * c)
                            if products == .transposedTiles {
                                haze_transpose_tiled(b, t, transposed, c, c, t)
                                haze_gemm_rows(a, t, transposed, c, product, c, o, c, t, item == first ? 0 : 1)
                            } else {
                                gemm(transposeB: true, m: o, n: c, k: t, a: a, b: b, beta: item == first ? 0 : 1, c: product)
                            }
                        }
                    }
                    guard inParallel else { return multiply(0..<positions, transposed: transposed) }
                    Parallel.forEach(positions, cost: 1 << 20) { range in
                        Scratch.withBuffer(products == .transposedTiles ? c * t : 0) { multiply(range, transposed: $0) }
                    }
                }
                // A chunk per group (each has its own slot), taken as the threads come free.
                Parallel.forEach(groups, cost: 1 << 20, chunksPerThread: groups) { range in
                    Scratch.withBuffer(positions * haze_winograd_block(c, largest)) { v in
                    Scratch.withBuffer(positions * haze_winograd_block(o, largest)) { mbar in
                    Scratch.withBuffer(!splitsPositions && products == .transposedTiles ? c * largest : 0) { transposed in
                        for group in range {
                            for item in group * items / groups..<(group + 1) * items / groups {
                                accumulate(item: item, group: group, v: v, mbar: mbar, inParallel: splitsPositions, transposed: transposed)
                            }
                        }
                    } } }
                }
            }
            let slots: [UnsafeMutablePointer<Float>?] = (0..<groups).map { partial + $0 * size }
            return [Float](unsafeUninitializedCapacity: 9 * o * c) { buffer, initialized in
                slots.withUnsafeBufferPointer { s in
                    Parallel.forEach(o, cost: 20 * positions * c) { rows in
                        finish(s.baseAddress!, s.count, buffer.baseAddress!, o, c, rows.lowerBound, rows.count)
                    }
                }
                initialized = 9 * o * c
            }
        }
        let db = (0..<o).map { oc in (0..<items).reduce(Float(0)) { $0 + partialB[$1 * o + oc] } }
        return (dw, db)
    }
}
