import CHazeKernels
import XCTest
@testable import HazeTensor

/// Winograd F(2×2, 3×3) against the im2col path: forward, input, weight and bias gradients, on
/// odd and even sizes, 1×1 and 2×3 images, small images (AVX-512 and portable kernels),
/// with and without bias. (PyTorch parity of conv2d
/// itself is in ParityTests, which run with the default algorithm, i.e. Winograd for 3×3 p1.)
///
/// Tolerances (`RoundingBound`): both paths compute the same sums of n terms (C·9 + 1 for y, O·9
/// for ∂x, N·H·W for ∂w and ∂b); Winograd computes them in a transformed domain, where each
/// rounding error is made on a transformed value and carried back by the output transform. With
/// rounding errors proportional to the values they are made on and independent, the output error
/// grows, relative to the direct sum's, by the root-mean-square ratio of the transformed terms to
/// the direct ones: in one dimension κ₁(i)² = Σ_ξ Aᵀ[i,ξ]² ‖G[ξ,·]‖² ‖Bᵀ[ξ,·]‖² / 3 for output i
/// (3 direct terms of unit second moment); in two, output (i, j) grows by κ₁(i)·κ₁(j), at most
/// κ = max_i κ₁(i)².
final class WinogradTests: XCTestCase {
    /// F(2×2, 3×3): κ₁(0)² = κ₁(1)² = (2 + 3/2 + 3/2) / 3 = 5/3.
    static let smallTileGrowth = 5.0 / 3
    /// F(4×4, 3×3) (points 0, ±1, ±2): κ₁(3)² = 283/9 (Aᵀ's last row, 1, −1, 8, −8, 1).
    static let largeTileGrowth = 283.0 / 9

    /// κ = max over outputs of Σ_ξ Aᵀ[i,ξ]² ‖G[ξ]‖² ‖Bᵀ[ξ]‖² / 3, from the transform matrices.
    static func growth(bt: [[Double]], g: [[Double]], at: [[Double]]) -> Double {
        func squares(_ row: [Double]) -> Double { row.reduce(0) { $0 + $1 * $1 } }
        return at.map { a in zip(a, zip(g, bt)).reduce(0) { $0 + $1.0 * $1.0 * squares($1.1.0) * squares($1.1.1) } / 3 }.max()!
    }

    /// The growth constants are those of the transforms the kernels use (haze_winograd.c and
    /// haze_winograd43.c write out the same Bᵀ, G and Aᵀ).
    func testGrowthFollowsFromTheTransforms() {
        let small = Self.growth(bt: [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
                                g: [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
                                at: [[1, 1, 1, 0], [0, 1, -1, -1]])
        let large = Self.growth(bt: [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                                     [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
                                g: [[1.0 / 4, 0, 0], [-1.0 / 6, -1.0 / 6, -1.0 / 6], [-1.0 / 6, 1.0 / 6, -1.0 / 6],
                                    [1.0 / 24, 1.0 / 12, 1.0 / 6], [1.0 / 24, -1.0 / 12, 1.0 / 6], [0, 0, 1]],
                                at: [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]])
        XCTAssertEqual(small, Self.smallTileGrowth, accuracy: 1e-12)
        XCTAssertEqual(large, Self.largeTileGrowth, accuracy: 1e-12)
        // F(3, 3) on 0, ±1, 2, ∞ (7×7 images' split tiles, haze_winograd43.c): κ₁(2)² = 103/9. A
        // 4 × 3 tile grows by at most √(283/9 · 103/9), so F(4×4)'s bound covers split tiles too.
        let split = Self.growth(bt: [[4, -2, -4, 2, 0], [0, -6, -3, 3, 0], [0, 2, -3, 1, 0], [0, -4, 0, 4, 0], [0, 2, -1, -2, 1]],
                                g: [[1.0 / 4, 0, 0], [-1.0 / 6, -1.0 / 6, -1.0 / 6], [-1.0 / 6, 1.0 / 6, -1.0 / 6],
                                    [1.0 / 24, 1.0 / 12, 1.0 / 6], [0, 0, 1]],
                                at: [[1, 1, 1, 1, 0], [0, 1, -1, 2, 0], [0, 1, 1, 4, 1]])
        XCTAssertEqual(split, 103.0 / 9, accuracy: 1e-12)
        XCTAssertLessThan(split, Self.largeTileGrowth)
    }

    func testMatchesIm2col() {
        let original = ConvolutionAlgorithm.current
        defer { ConvolutionAlgorithm.current = original }
        for (i, s) in [(n: 3, c: 5, h: 7, w: 9, o: 4), (n: 2, c: 8, h: 6, w: 6, o: 3), (n: 1, c: 4, h: 1, w: 1, o: 2),
                                     (n: 2, c: 4, h: 2, w: 3, o: 5), (n: 5, c: 16, h: 14, w: 14, o: 24),
                                     // Images of ≤ 16 tiles (one vector lane per tile): 7×7, 8×8, 4×5;
                                     // the first has several work items per thread (weight-gradient slots).
                                     (n: 20, c: 128, h: 7, w: 7, o: 96), (n: 3, c: 8, h: 8, w: 8, o: 8),
                                     (n: 4, c: 9, h: 4, w: 5, o: 3),
                                     // A plane over 16 wide and of odd height (two row registers with AVX-512).
                                     (n: 2, c: 8, h: 9, w: 21, o: 5),
                                     // 256 and 1024 tiles per image (32×32, 64×64): the packed products.
                                     (n: 2, c: 12, h: 32, w: 32, o: 20), (n: 1, c: 6, h: 64, w: 64, o: 7),
                                     // Planes over 32 wide (segments of 16 tiles with AVX-512), the last
                                     // segment partial, odd heights.
                                     (n: 2, c: 8, h: 11, w: 45, o: 5), (n: 1, c: 4, h: 5, w: 66, o: 3)].enumerated() {
            let x = Tensor.normal([s.n, s.c, s.h, s.w], seed: UInt64(10 + i))
            let w = Tensor.normal([s.o, s.c, 3, 3], seed: UInt64(20 + i)) * 0.3
            let b = Tensor.normal([s.o], seed: UInt64(30 + i))
            let cotangent = Tensor.normal([s.n, s.o, s.h, s.w], seed: UInt64(40 + i))
            func run(_ algorithm: ConvolutionAlgorithm, bias: Bool) -> [Tensor] {
                ConvolutionAlgorithm.current = algorithm
                let inputs = bias ? [x, w, b] : [x, w]
                let (y, grads) = valueWithGradient(at: inputs) { t in
                    (Tensor.conv2d(t[0], weight: t[1], bias: bias ? t[2] : nil, padding: 1) * cotangent).sum()
                }
                return [Tensor.conv2d(x, weight: w, bias: bias ? b : nil, padding: 1), y] + grads
            }
            for bias in [true, false] {
                // F(2×2, 3×3) everywhere (no large tiles), against im2col below.
                Winograd.largeTiles = false
                defer { Winograd.largeTiles = true }
                let fast = run(.automatic, bias: bias), reference = run(.im2col, bias: bias)
                // The same sums with the portable loops instead of the AVX-512 permutes: bit for bit.
                haze_avx512_permutes(0)
                XCTAssertEqual(run(.automatic, bias: bias).map(\.scalars), fast.map(\.scalars), "portable path, case \(i)")
                haze_avx512_permutes(1)
                // Two different computations (rounding differs), which agree:
                if s.c >= 8 { XCTAssertNotEqual(fast[0].scalars, reference[0].scalars, "case \(i) did not use Winograd") }
                let magnitudes = ConvolutionMagnitudes(x: x, weight: w, bias: bias ? b : nil, cotangent: cotangent, padding: Padding2D(1))
                let lengths = ConvolutionMagnitudes.lengthList(weight: w.shape, output: cotangent.shape)
                for (name, ((f, r), (m, n))) in zip(["y", "loss", "dx", "dw", "db"], zip(zip(fast, reference), zip(magnitudes.all, lengths))) {
                    RoundingBound.assertAgree(f, r, magnitude: m, length: n, growth: Self.smallTileGrowth, "\(name) case \(i) bias \(bias)")
                }
            }
        }
    }

    /// The bounds are tight enough to see a single wrong term: dropping one of the 1153 products
    /// of each output in channel 0 (one weight set to zero) exceeds even F(4×4, 3×3)'s bound.
    func testBoundDetectsOneMissingTerm() {
        let (x, w) = (Tensor.normal([20, 128, 7, 7], seed: 15), Tensor.normal([96, 128, 3, 3], seed: 25) * 0.3)
        var damaged = w
        damaged.scalars[4] = 0  // w[0, 0, 1, 1]
        let (good, bad) = (Tensor.conv2d(x, weight: w, padding: 1), Tensor.conv2d(x, weight: damaged, padding: 1))
        let magnitude = ConvolutionMagnitudes(x: x, weight: w, bias: nil, cotangent: good, padding: Padding2D(1)).y
        let ratio = RoundingBound.worstRatio(bad, good, magnitude: magnitude, length: 128 * 9 + 1)
        XCTAssertGreaterThan(ratio, 2 * RoundingBound.lambda * Self.largeTileGrowth)
    }

    /// F(4×4, 3×3) against im2col: y, ∂x (the same convolution with flipped kernels), ∂w and ∂b,
    /// with and without bias; on images ≤ 8×8 (16 images per item, one per vector lane) of 7×7,
    /// 8×8, 4×4, 5×3 and 1×1 in batches that do not fill the lanes, and with the tiles along the
    /// lanes on 32 and 64 wide planes and planes 9–16 and 25–31 wide (∂w by haze_gemm_rows on the transposed
    /// tiles, any channel counts).
    /// Its transforms have larger coefficients than F(2×2, 3×3)'s (up to 8 and 1/24), so the
    /// rounding error is larger (`largeTileGrowth`).
    func testLargeTilesMatchIm2col() throws {
        try XCTSkipIf(haze_winograd43_available() == 0 || !PackedMatrices.available, "F(4×4, 3×3) needs AVX-512")
        let original = ConvolutionAlgorithm.current
        defer { ConvolutionAlgorithm.current = original }
        XCTAssertFalse(Winograd.usesImagesInLanes(n: 16, h: 7, w: 7), "one item of 16 images: not in the lanes")
        XCTAssertTrue(Winograd.usesRowTiles(n: 16, h: 7, w: 7), "16 images of 7×7: tiles in lanes, 8 wide")
        XCTAssertFalse(Winograd.usesLargeTiles(n: 8, h: 4, w: 4), "8 images of 4×4: F(2×2)")
        XCTAssertFalse(Winograd.usesLargeTiles(n: 16, h: 20, w: 20), "20 wide: 8 tiles a row laid out for 5, F(2×2)")
        for (i, s) in [(n: 32, c: 128, h: 7, w: 7, o: 96), (n: 37, c: 9, h: 8, w: 8, o: 20), (n: 40, c: 16, h: 4, w: 4, o: 8),
                       (n: 33, c: 5, h: 5, w: 3, o: 70), (n: 32, c: 4, h: 1, w: 1, o: 2),
                       // The tiles along the lanes, at any batch: 64×64 (a group is one tile row),
                       // 32×32 and 24×32 (two), 16×16 and 48×16 (four).
                       (n: 1, c: 6, h: 64, w: 64, o: 7), (n: 3, c: 20, h: 32, w: 32, o: 9), (n: 2, c: 4, h: 24, w: 32, o: 17),
                       (n: 5, c: 9, h: 16, w: 16, o: 33), (n: 1, c: 4, h: 48, w: 16, o: 3),
                       // Narrower planes laid out 16 wide: 14×14 (fmnist-s's middle level), 10×13 and
                       // 12×12 (3 tile rows an image: groups of 4 run into the next image), 20×9.
                       (n: 3, c: 9, h: 14, w: 14, o: 10), (n: 2, c: 5, h: 10, w: 13, o: 3), (n: 2, c: 6, h: 20, w: 9, o: 5),
                       (n: 4, c: 8, h: 14, w: 14, o: 12), (n: 3, c: 6, h: 12, w: 12, o: 5),
                       // Planes 25–31 wide laid out 32 wide: 28×28 (fmnist-s's top level: the last
                       // tile of each row is empty, 7 tile rows an image run on into the next; 9
                       // images end half way through a group), 17×25, 30×31.
                       (n: 2, c: 7, h: 28, w: 28, o: 6), (n: 9, c: 4, h: 28, w: 28, o: 3), (n: 3, c: 4, h: 17, w: 25, o: 9),
                       (n: 1, c: 10, h: 30, w: 31, o: 5),
                       // Channels in fours.
                       (n: 2, c: 16, h: 64, w: 64, o: 4), (n: 5, c: 8, h: 32, w: 32, o: 12), (n: 3, c: 12, h: 16, w: 16, o: 8),
                       // Planes 5–8 wide laid out 8 wide (two images' rows in a register): cifar-ddpm's
                       // 8×8 at batch 8 (two groups, one item: the transforms split by channels),
                       // 7×7 in 16 images, 3 images (a group's last two tile rows empty), a tall
                       // plane whose 5 tile rows run on into the next image, and planes under 4 high.
                       (n: 8, c: 16, h: 8, w: 8, o: 12), (n: 16, c: 9, h: 7, w: 7, o: 10), (n: 3, c: 8, h: 7, w: 7, o: 5),
                       (n: 5, c: 6, h: 20, w: 6, o: 4), (n: 7, c: 4, h: 3, w: 5, o: 3), (n: 1, c: 5, h: 8, w: 8, o: 9)].enumerated() {
            ConvolutionAlgorithm.current = .automatic
            XCTAssertTrue(Winograd.usesLargeTiles(n: s.n, h: s.h, w: s.w), "case \(i)")
            let x = Tensor.normal([s.n, s.c, s.h, s.w], seed: UInt64(50 + i))
            let w = Tensor.normal([s.o, s.c, 3, 3], seed: UInt64(60 + i)) * 0.3
            let b = Tensor.normal([s.o], seed: UInt64(70 + i))
            let cotangent = Tensor.normal([s.n, s.o, s.h, s.w], seed: UInt64(80 + i))
            for bias in [true, false] {
                func run(_ algorithm: ConvolutionAlgorithm) -> [Tensor] {
                    ConvolutionAlgorithm.current = algorithm
                    let (_, grads) = valueWithGradient(at: bias ? [x, w, b] : [x, w]) { t in
                        (Tensor.conv2d(t[0], weight: t[1], bias: bias ? t[2] : nil, padding: 1) * cotangent).sum()
                    }
                    return [Tensor.conv2d(x, weight: w, bias: bias ? b : nil, padding: 1)] + grads
                }
                let fast = run(.automatic), reference = run(.im2col)
                let magnitudes = ConvolutionMagnitudes(x: x, weight: w, bias: bias ? b : nil, cotangent: cotangent, padding: Padding2D(1))
                var lengths = ConvolutionMagnitudes.lengthList(weight: w.shape, output: cotangent.shape)
                lengths.remove(at: 1)
                var all = magnitudes.all
                all.remove(at: 1)
                for (name, ((f, r), (m, n))) in zip(["y", "dx", "dw", "db"], zip(zip(fast, reference), zip(all, lengths))) {
                    RoundingBound.assertAgree(f, r, magnitude: m, length: n, growth: Self.largeTileGrowth, "\(name) case \(i) bias \(bias)")
                    if s.c >= 8 && name != "db" {
                        XCTAssertNotEqual(f.scalars, r.scalars, "\(name) case \(i) did not use Winograd")
                    }
                }
            }
        }
    }
}

extension WinogradTests {
    /// 7×7 images in the lanes split into a 4- and a 3-output tile each way (`Winograd.splitsTiles`):
    /// y and ∂x (the same convolution with flipped kernels) against im2col within F(4×4)'s bound,
    /// and different bits from two 4-output tiles (the split path ran); in a batch that leaves
    /// lanes empty, through the fused group norm with a residual.
    func testSplitTilesMatchIm2col() throws {
        try XCTSkipIf(haze_winograd43_available() == 0 || !PackedMatrices.available, "F(4×4, 3×3) needs AVX-512")
        let original = ConvolutionAlgorithm.current
        defer { ConvolutionAlgorithm.current = original; Winograd.splitsTiles = true }
        XCTAssertEqual(haze_winograd43_splits(7, 7), 1)
        XCTAssertEqual(haze_winograd43_splits(8, 8), 0)
        let (n, c, o) = (37, 24, 40)
        XCTAssertTrue(Winograd.usesImagesInLanes(n: n, h: 7, w: 7))
        let x = Tensor.normal([n, c, 7, 7], seed: 91), w = Tensor.normal([o, c, 3, 3], seed: 92) * 0.3
        let b = Tensor.normal([o], seed: 93), cotangent = Tensor.normal([n, o, 7, 7], seed: 94)
        func run(_ algorithm: ConvolutionAlgorithm, split: Bool) -> [Tensor] {
            (ConvolutionAlgorithm.current, Winograd.splitsTiles) = (algorithm, split)
            let (_, grads) = valueWithGradient(at: [x, w, b]) { t in (Tensor.conv2d(t[0], weight: t[1], bias: t[2], padding: 1) * cotangent).sum() }
            return [Tensor.conv2d(x, weight: w, bias: b, padding: 1), grads[0]]
        }
        let (split, whole, reference) = (run(.automatic, split: true), run(.automatic, split: false), run(.im2col, split: true))
        let magnitudes = ConvolutionMagnitudes(x: x, weight: w, bias: b, cotangent: cotangent, padding: Padding2D(1))
        let lengths = ConvolutionMagnitudes.lengthList(weight: w.shape, output: cotangent.shape)
        for (k, name) in ["y", "dx"].enumerated() {
            let (m, length) = (magnitudes.all[k == 0 ? 0 : 2], lengths[k == 0 ? 0 : 2])
            RoundingBound.assertAgree(split[k], reference[k], magnitude: m, length: length, growth: Self.largeTileGrowth, "\(name) split")
            RoundingBound.assertAgree(whole[k], reference[k], magnitude: m, length: length, growth: Self.largeTileGrowth, "\(name) whole")
            XCTAssertNotEqual(split[k].scalars, whole[k].scalars, "\(name): the split tiles did not run")
        }
        // Read through a group norm and SiLU, with a residual: the same bits as the norm written out.
        let (scale, shift) = (Tensor.normal([c], seed: 95), Tensor.normal([c], seed: 96))
        let residual = Tensor.normal([n, o, 7, 7], seed: 97)
        (ConvolutionAlgorithm.current, Winograd.splitsTiles) = (.automatic, true)
        let fused = Tensor.conv2d(siluOfGroupNorm: x, groups: 4, scale: scale, shift: shift, weight: w, bias: b, padding: Padding2D(1),
                                  adding: residual)
        let written = Tensor.conv2d(Tensor.groupNorm(x, groups: 4, weight: scale, bias: shift, applyingSiLU: true), weight: w, bias: b,
                                    padding: Padding2D(1), adding: residual)
        XCTAssertEqual(fused.scalars, written.scalars, "fused norm and residual on split tiles")
    }
}

/// Prepared weights (`PreparedWeights`: Winograd transforms, the direct kernel's packing, bf16
/// copies of 1×1 convolutions) reused within `ConvolutionAlgorithm.reusingTransformedWeights`.
final class PreparedWeightsTests: XCTestCase {
    override func tearDown() { Precision.current = .float32 }

    /// Each form: inside the scope the same bits as outside, prepared once for three calls; other
    /// weights of the same shape, and the same tensor changed in place, are not served stale.
    func checkReuse(_ name: String, input: [Int], weight shape: [Int], stride: Int = 1, padding: Int = 0,
                    file: StaticString = #filePath, line: UInt = #line) {
        let x = Tensor.normal(input, seed: 1)
        var w = Tensor.normal(shape, seed: 2)
        let other = Tensor.normal(shape, seed: 3)
        func conv(_ w: Tensor) -> Tensor { Tensor.conv2d(x, weight: w, stride: stride, padding: padding) }
        let (plain, otherPlain) = (conv(w), conv(other))
        ConvolutionAlgorithm.reusingTransformedWeights {
            let before = PreparedWeights.preparations
            XCTAssertEqual(conv(w), plain, name, file: file, line: line)
            XCTAssertEqual(conv(w), plain, "\(name): from the cache", file: file, line: line)
            XCTAssertEqual(conv(w), plain, "\(name): from the cache", file: file, line: line)
            XCTAssertEqual(PreparedWeights.preparations - before, 1, "\(name): prepared once", file: file, line: line)
            XCTAssertEqual(conv(other), otherPlain, name, file: file, line: line)
            w.withMutableScalars { $0[0] += 1 }
            XCTAssertNotEqual(conv(w), plain, "\(name): changed in place", file: file, line: line)
        }
    }

    func testWinogradWeights() {
        checkReuse("Winograd", input: [2, 16, 14, 14], weight: [8, 16, 3, 3], padding: 1)
    }

    func testDirectConvolutionWeights() throws {
        try XCTSkipIf(haze_direct_conv_available() == 0, "the direct strided kernel needs AVX-512")
        checkReuse("direct, stride 2", input: [2, 16, 14, 14], weight: [8, 16, 3, 3], stride: 2, padding: 1)
    }

    func testPointwiseBFloat16Weights() throws {
        try XCTSkipUnless(Precision.bfloat16Available, "no bf16 kernel on this CPU")
        Precision.current = .bfloat16
        checkReuse("1×1 in bf16", input: [2, 16, 7, 7], weight: [24, 16, 1, 1])
    }
}

/// `ConvolutionShapes`: the calls a body makes, and the path each shape takes per algorithm.
final class ConvolutionShapesTests: XCTestCase {
    override func tearDown() { ConvolutionAlgorithm.current = .automatic }

    func testRecordsEveryCallInOrderAndOnlyInside() {
        let x = Tensor.normal([2, 4, 16, 16], seed: 1), w3 = Tensor.normal([8, 4, 3, 3], seed: 2), w1 = Tensor.normal([4, 8, 1, 1], seed: 3)
        _ = Tensor.conv2d(x, weight: w3, padding: 1)  // outside: not recorded
        let calls = ConvolutionShapes.recorded {
            let h = Tensor.conv2d(x, weight: w3, padding: 1)
            _ = Tensor.conv2d(h, weight: w1)
            _ = Tensor.conv2d(x, weight: w3, stride: 2, padding: 1)
        }
        XCTAssertEqual(calls, [ConvolutionShapes.Shape(input: [2, 4, 16, 16], weight: [8, 4, 3, 3], stride: 1, padding: Padding2D(1)),
                               ConvolutionShapes.Shape(input: [2, 8, 16, 16], weight: [4, 8, 1, 1], stride: 1, padding: .zero),
                               ConvolutionShapes.Shape(input: [2, 4, 16, 16], weight: [8, 4, 3, 3], stride: 2, padding: Padding2D(1))])
        XCTAssertEqual(calls.map(\.description), ["3×3 [2,4,16,16]→8", "1×1 [2,8,16,16]→4", "3×3 s2 [2,4,16,16]→8"])
        XCTAssertEqual(ConvolutionShapes.recorded {}, [])
    }

    func testPathsFollowTheAlgorithm() throws {
        let wide = ConvolutionShapes.Shape(input: [4, 16, 32, 32], weight: [16, 16, 3, 3], stride: 1, padding: Padding2D(1))
        let strided = ConvolutionShapes.Shape(input: [4, 16, 32, 32], weight: [16, 16, 3, 3], stride: 2, padding: Padding2D(1))
        ConvolutionAlgorithm.current = .im2col
        XCTAssertEqual([wide.forwardPath, strided.forwardPath], ["im2col + SGEMM", "im2col + SGEMM"])
        try XCTSkipIf(haze_winograd43_available() == 0 || !PackedMatrices.available, "F(4×4) and the direct kernel need AVX-512")
        ConvolutionAlgorithm.current = .automatic
        XCTAssertEqual([wide.forwardPath, strided.forwardPath], ["F(4×4), tiles in lanes", "direct (strided)"])
        ConvolutionAlgorithm.current = .smallTiles
        XCTAssertEqual([wide.forwardPath, strided.forwardPath], ["F(2×2), packed products", "direct (strided)"])
        // The small tiles compute the same convolution by another rounding.
        let x = Tensor.normal(wide.input, seed: 4), w = Tensor.normal(wide.weight, std: 0.2, seed: 5)
        let small = Tensor.conv2d(x, weight: w, padding: 1)
        ConvolutionAlgorithm.current = .automatic
        let large = Tensor.conv2d(x, weight: w, padding: 1)
        XCTAssertNotEqual(small.scalars, large.scalars)
        XCTAssertLessThan(zip(small.scalars, large.scalars).map { abs($0 - $1) }.max()!, 1e-4)
    }
}

/// `conv2d(recomputing:from:…)`: the plain composition's values and gradients, bit for bit.
final class RecomputedConvolutionInputTests: XCTestCase {
    func testSameBitsAsThePlainComposition() {
        let x = Tensor.normal([3, 8, 14, 14], seed: 1), gamma = Tensor.normal([8], seed: 2), beta = Tensor.normal([8], seed: 3)
        let w = Tensor.normal([6, 8, 3, 3], std: 0.2, seed: 4), b = Tensor.normal([6], seed: 5)
        let cotangent = Tensor.normal([3, 6, 14, 14], seed: 6)
        func normalized(_ t: [Tensor]) -> Tensor { Tensor.groupNorm(t[0], groups: 4, weight: t[1], bias: t[2], applyingSiLU: true) }
        let plain = valueWithGradient(at: [x, gamma, beta, w, b]) { t in
            (Tensor.conv2d(normalized(t), weight: t[3], bias: t[4], padding: 1) * cotangent).sum()
        }
        let fused = valueWithGradient(at: [x, gamma, beta, w, b]) { t in
            (Tensor.conv2d(recomputing: normalized, from: [t[0], t[1], t[2]], weight: t[3], bias: t[4], padding: Padding2D(1)) * cotangent).sum()
        }
        XCTAssertEqual(fused.value.scalars, plain.value.scalars)
        for (i, (f, p)) in zip(fused.gradients, plain.gradients).enumerated() { XCTAssertEqual(f.scalars, p.scalars, "gradient \(i)") }
        // Only the weights recorded: ∂w and ∂b alike, nothing asked of the producer.
        let weightsOnly = valueWithGradient(at: [w, b]) { t in
            (Tensor.conv2d(recomputing: normalized, from: [x, gamma, beta], weight: t[0], bias: t[1], padding: Padding2D(1)) * cotangent).sum()
        }
        XCTAssertEqual(weightsOnly.gradients[0].scalars, plain.gradients[3].scalars)
        XCTAssertEqual(weightsOnly.gradients[1].scalars, plain.gradients[4].scalars)
        // Not recorded at all (sampling): the forward alone.
        let inference = Tensor.conv2d(recomputing: normalized, from: [x, gamma, beta], weight: w, bias: b, padding: Padding2D(1))
        XCTAssertEqual(inference.scalars, Tensor.conv2d(normalized([x, gamma, beta]), weight: w, bias: b, padding: 1).scalars)
    }
}

/// `conv2d(…, adding:)` is `conv2d(…) + adding` to the bit, values and gradients, on every
/// convolution path: F(4×4) with the tiles along the lanes (28×28, 14×14) and with the images
/// along them (7×7, 20 images), where the output transform adds the term; F(2×2), 1×1, strided and
/// im2col, where it is added after; with a residual [N, O, H, W] and a shift [N, O, 1, 1], with and
/// without bias, and through `conv2d(recomputing:…)`.
final class ConvolutionAddendTests: XCTestCase {
    func testSameBitsAsAddingAfter() {
        let original = ConvolutionAlgorithm.current
        defer { ConvolutionAlgorithm.current = original }
        for (i, s) in [(n: 2, c: 6, h: 28, w: 28, o: 5, k: 3, stride: 1), (n: 3, c: 8, h: 14, w: 14, o: 9, k: 3, stride: 1),
                       (n: 20, c: 9, h: 7, w: 7, o: 7, k: 3, stride: 1), (n: 3, c: 5, h: 7, w: 7, o: 4, k: 3, stride: 1),
                       (n: 2, c: 6, h: 9, w: 9, o: 5, k: 1, stride: 1), (n: 2, c: 4, h: 10, w: 10, o: 6, k: 3, stride: 2)].enumerated() {
            for algorithm in [ConvolutionAlgorithm.automatic, .im2col] {
                ConvolutionAlgorithm.current = algorithm
                let padding = Padding2D(s.k / 2), (ho, wo) = ((s.h + 2 * (s.k / 2) - s.k) / s.stride + 1, (s.w + 2 * (s.k / 2) - s.k) / s.stride + 1)
                let x = Tensor.normal([s.n, s.c, s.h, s.w], seed: UInt64(100 + i))
                let w = Tensor.normal([s.o, s.c, s.k, s.k], std: 0.3, seed: UInt64(110 + i)), b = Tensor.normal([s.o], seed: UInt64(120 + i))
                let cotangent = Tensor.normal([s.n, s.o, ho, wo], seed: UInt64(130 + i))
                for addend in [Tensor.normal([s.n, s.o, ho, wo], seed: UInt64(140 + i)), Tensor.normal([s.n, s.o, 1, 1], seed: UInt64(150 + i))] {
                    for bias in [true, false] {
                        let label = "case \(i) \(algorithm) adding \(addend.shape) bias \(bias)"
                        let inputs = bias ? [x, w, addend, b] : [x, w, addend]
                        let after = valueWithGradient(at: inputs) { t in
                            ((Tensor.conv2d(t[0], weight: t[1], bias: bias ? t[3] : nil, stride: s.stride, padding: padding) + t[2]) * cotangent).sum()
                        }
                        let fused = valueWithGradient(at: inputs) { t in
                            (Tensor.conv2d(t[0], weight: t[1], bias: bias ? t[3] : nil, stride: s.stride, padding: padding, adding: t[2]) * cotangent).sum()
                        }
                        XCTAssertEqual(fused.value.scalars, after.value.scalars, label)
                        for (j, (f, a)) in zip(fused.gradients, after.gradients).enumerated() {
                            XCTAssertEqual(f.scalars, a.scalars, "\(label), gradient \(j)")
                        }
                        let recomputed = valueWithGradient(at: inputs) { t in
                            (Tensor.conv2d(recomputing: { $0[0].silu() }, from: [t[0]], weight: t[1], bias: bias ? t[3] : nil,
                                           stride: s.stride, padding: padding, adding: t[2]) * cotangent).sum()
                        }
                        let plain = valueWithGradient(at: inputs) { t in
                            ((Tensor.conv2d(t[0].silu(), weight: t[1], bias: bias ? t[3] : nil, stride: s.stride, padding: padding) + t[2])
                                * cotangent).sum()
                        }
                        XCTAssertEqual(recomputed.value.scalars, plain.value.scalars, "recomputing, \(label)")
                        for (j, (r, p)) in zip(recomputed.gradients, plain.gradients).enumerated() {
                            XCTAssertEqual(r.scalars, p.scalars, "recomputing, \(label), gradient \(j)")
                        }
                    }
                }
            }
        }
    }
}

/// `conv2d(siluOfGroupNorm:…)`, where Winograd reads x through the norm and SiLU in its input
/// transforms, against the same call with the normalised activations written out first
/// (`fusesGroupNorm` off): values and gradients to the bit. F(4×4) on planes with the tiles along
/// the lanes (28×28, 14×14, 9×9, 32×32; 8 wide: 7×7 and 8×8 in small batches, and 10×7, whose
/// registers hold rows of two images with their own affines) and with images along them (7×7, 20
/// images: a full item and a partial one); F(2×2) where F(4×4) does not run (4×4 in a small batch,
/// 40 and 37 wide), and on every plane with F(4×4) switched off, through the AVX-512 kernels (small
/// planes, rows up to 32 wide, wider rows in segments) and the portable loops, and in bf16 where the
/// CPU has it; paths that do not fuse (stride 2; im2col). The norm's weight and bias per channel or
/// per image (FiLM), one of them large enough that SiLU's exp clamps; with a residual, a per-image
/// shift (each also against its addition as an op of its own) or nothing added, with and without bias.
final class GroupNormConvolutionTests: XCTestCase {
    func testSameBitsAsTheNormWrittenOut() {
        let original = ConvolutionAlgorithm.current, precision = Precision.current
        defer {
            ConvolutionAlgorithm.current = original
            Tensor.fusesGroupNorm = true
            Winograd.largeTiles = true
            haze_avx512_permutes(1)
            Precision.current = precision
        }
        // (label, F(4×4) allowed, AVX-512 kernels, bf16): the algorithm `automatic` runs under each.
        var variants = [("automatic", true, true, false), ("F(2×2)", false, true, false), ("F(2×2), portable loops", false, false, false)]
        if Precision.bfloat16Available { variants.append(("bf16", true, true, true)) }
        let runs = variants.map { (ConvolutionAlgorithm.automatic, $0) } + [(ConvolutionAlgorithm.im2col, variants[0])]
        for (i, s) in [(n: 2, c: 8, h: 28, w: 28, o: 5, stride: 1), (n: 3, c: 16, h: 14, w: 14, o: 9, stride: 1),
                       (n: 2, c: 8, h: 9, w: 9, o: 4, stride: 1), (n: 2, c: 8, h: 32, w: 32, o: 3, stride: 1),
                       (n: 20, c: 8, h: 7, w: 7, o: 6, stride: 1), (n: 3, c: 8, h: 7, w: 7, o: 4, stride: 1),
                       (n: 8, c: 8, h: 8, w: 8, o: 5, stride: 1), (n: 3, c: 8, h: 10, w: 7, o: 4, stride: 1),
                       (n: 3, c: 8, h: 4, w: 4, o: 4, stride: 1), (n: 2, c: 8, h: 6, w: 40, o: 3, stride: 1),
                       (n: 2, c: 8, h: 5, w: 37, o: 3, stride: 1),
                       (n: 2, c: 8, h: 10, w: 10, o: 6, stride: 2)].enumerated() {
            for (algorithm, (name, largeTiles, permutes, bf16)) in runs {
                ConvolutionAlgorithm.current = algorithm
                Winograd.largeTiles = largeTiles
                haze_avx512_permutes(permutes ? 1 : 0)
                Precision.current = bf16 ? .bfloat16 : .float32
                let geo = ConvGeometry(n: s.n, c: s.c, h: s.h, w: s.w, o: s.o, kh: 3, kw: 3, stride: s.stride, padding: Padding2D(1))
                XCTAssertEqual(Tensor.readsThroughActivation(geo), s.stride == 1 && algorithm == .automatic, "case \(i) \(algorithm)")
                let x = Tensor.normal([s.n, s.c, s.h, s.w], std: 3, seed: UInt64(200 + i))
                let w = Tensor.normal([s.o, s.c, 3, 3], std: 0.3, seed: UInt64(210 + i)), b = Tensor.normal([s.o], seed: UInt64(220 + i))
                let cotangent = Tensor.normal([s.n, s.o, geo.ho, geo.wo], seed: UInt64(230 + i))
                let affines = [(Tensor.normal([s.c], seed: UInt64(240 + i)), Tensor.normal([s.c], seed: UInt64(250 + i))),
                               (Tensor.normal([s.n, s.c], std: 40, seed: UInt64(260 + i)), Tensor.normal([s.n, s.c], seed: UInt64(270 + i)))]
                let addends: [Tensor?] = [nil, Tensor.normal([s.n, s.o, geo.ho, geo.wo], seed: UInt64(280 + i)),
                                          Tensor.normal([s.n, s.o, 1, 1], seed: UInt64(290 + i))]
                for (scale, shift) in affines {
                    for (a, addend) in addends.enumerated() {
                        let bias = a != 1
                        let label = "case \(i) \(algorithm) \(name) scale \(scale.shape) addend \(addend?.shape ?? []) bias \(bias)"
                        let inputs = [x, scale, shift, w, b] + (addend.map { [$0] } ?? [])
                        func run(fusing: Bool) -> (value: Tensor, gradients: [Tensor]) {
                            Tensor.fusesGroupNorm = fusing
                            return valueWithGradient(at: inputs) { t in
                                (Tensor.conv2d(siluOfGroupNorm: t[0], groups: 4, scale: t[1], shift: t[2], weight: t[3],
                                               bias: bias ? t[4] : nil, stride: s.stride, padding: Padding2D(1),
                                               adding: addend == nil ? nil : t[5]) * cotangent).sum()
                            }
                        }
                        let (fused, written) = (run(fusing: true), run(fusing: false))
                        XCTAssertEqual(fused.value.scalars, written.value.scalars, label)
                        for (j, (f, p)) in zip(fused.gradients, written.gradients).enumerated() {
                            XCTAssertEqual(f.scalars, p.scalars, "\(label), gradient \(j)")
                        }
                        // The forward alone (sampling: nothing recorded).
                        Tensor.fusesGroupNorm = true
                        let inference = Tensor.conv2d(siluOfGroupNorm: x, groups: 4, scale: scale, shift: shift, weight: w, bias: bias ? b : nil,
                                                      stride: s.stride, padding: Padding2D(1), adding: addend)
                        let normalized = scale.rank == 2 ? Tensor.groupNorm(x, groups: 4, scale: scale, shift: shift, applyingSiLU: true)
                            : Tensor.groupNorm(x, groups: 4, weight: scale, bias: shift, applyingSiLU: true)
                        let plain = Tensor.conv2d(normalized, weight: w, bias: bias ? b : nil, stride: s.stride, padding: Padding2D(1), adding: addend)
                        XCTAssertEqual(inference.scalars, plain.scalars, "\(label), inference")
                        // The addend, where the output transforms add it, as an addition of its own.
                        if let addend {
                            let alone = Tensor.conv2d(normalized, weight: w, bias: bias ? b : nil, stride: s.stride, padding: Padding2D(1))
                            XCTAssertEqual(plain.scalars, (alone + addend).scalars, "\(label), addend")
                        }
                    }
                }
            }
        }
    }
}
