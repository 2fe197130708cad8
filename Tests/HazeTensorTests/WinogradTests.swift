import CHazeKernels
import XCTest
@testable import HazeTensor

/// Winograd F(2×2, 3×3) against the im2col path: forward, input, weight and bias gradients, on
/// odd and even sizes, 1×1 and 2×3 images, small images (AVX-512 and portable kernels),
/// with and without bias. (PyTorch parity of conv2d
/// itself is in ParityTests, which run with the default algorithm, i.e. Winograd for 3×3 p1.)
final class WinogradTests: XCTestCase {
    func testMatchesIm2col() {
        let original = ConvolutionAlgorithm.current
        defer { ConvolutionAlgorithm.current = original }
        for (i, s) in [(n: 3, c: 5, h: 7, w: 9, o: 4), (n: 2, c: 8, h: 6, w: 6, o: 3), (n: 1, c: 3, h: 1, w: 1, o: 2),
                                     (n: 2, c: 4, h: 2, w: 3, o: 5), (n: 5, c: 16, h: 14, w: 14, o: 24),
                                     // Images of ≤ 16 tiles (one vector lane per tile): 7×7, 8×8, 4×5;
                                     // the first has several work items per thread (weight-gradient slots).
                                     (n: 20, c: 128, h: 7, w: 7, o: 96), (n: 3, c: 8, h: 8, w: 8, o: 8),
                                     (n: 4, c: 9, h: 4, w: 5, o: 3),
                                     // A plane over 16 wide and of odd height (two row registers with AVX-512).
                                     (n: 2, c: 8, h: 9, w: 21, o: 5)].enumerated() {
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
                for (name, (f, r)) in zip(["y", "loss", "dx", "dw", "db"], zip(fast, reference)) {
                    XCTAssertEqual(f.shape, r.shape, "\(name) case \(i)")
                    let scale = Swift.max(r.scalars.map(abs).max() ?? 0, 1e-6)
                    let worst = zip(f.scalars, r.scalars).map { abs($0 - $1) }.max() ?? 0
                    XCTAssertLessThan(worst / scale, 2e-6, "\(name) case \(i) bias \(bias)")
                }
            }
        }
    }

    /// F(4×4, 3×3) on images ≤ 8×8 (16 images per item, one per vector lane) against im2col:
    /// y, ∂x (the same convolution with flipped kernels), ∂w and ∂b, on 7×7, 8×8,
    /// 4×4, 5×3 and 1×1 images, batches that do not fill the lanes, with and without bias.
    /// Its transforms have larger coefficients than F(2×2, 3×3)'s (up to 8 and 1/24), so the
    /// rounding error is larger: within 1e-5 of the largest value here.
    func testLargeTilesMatchIm2col() throws {
        try XCTSkipIf(haze_winograd43_available() == 0 || !PackedMatrices.available, "F(4×4, 3×3) needs AVX-512")
        let (original, threads) = (ConvolutionAlgorithm.current, Parallel.threadCount)
        defer { (ConvolutionAlgorithm.current, Parallel.threadCount) = (original, threads) }
        Parallel.threadCount = 2  // ≥ 32 images: an item of 16 per thread
        for (i, s) in [(n: 32, c: 128, h: 7, w: 7, o: 96), (n: 37, c: 9, h: 8, w: 8, o: 20), (n: 40, c: 16, h: 4, w: 4, o: 8),
                       (n: 33, c: 5, h: 5, w: 3, o: 70), (n: 32, c: 3, h: 1, w: 1, o: 2)].enumerated() {
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
                for (name, (f, r)) in zip(["y", "dx", "dw", "db"], zip(fast, reference)) {
                    XCTAssertEqual(f.shape, r.shape, "\(name) case \(i)")
                    let scale = Swift.max(r.scalars.map(abs).max() ?? 0, 1e-6)
                    let worst = zip(f.scalars, r.scalars).map { abs($0 - $1) }.max() ?? .infinity
                    XCTAssertLessThan(worst / scale, 1e-5, "\(name) case \(i) bias \(bias)")
                    if s.c >= 8 && name != "db" {
                        XCTAssertNotEqual(f.scalars, r.scalars, "\(name) case \(i) did not use Winograd")
                    }
                }
            }
        }
    }
}
