import CHazeKernels
import XCTest
@testable import HazeTensor

/// The direct kernel of strided convolutions (haze_direct_conv.c) against im2col + SGEMM: the
/// downsamplers' stride 2 with padding 1 and diffusers' (0, 1, 0, 1) pad; output channels below,
/// at and above one 64-channel chunk and not multiples of 16 (both register blockings); more than
/// one block of K (≥ 11 input channels of 3 × 3); pixel counts and output rows that do not fill
/// the last block; stride 3 (pixel blocks across rows) and a 1 × 2 kernel; with and without bias.
/// Backward is im2col's either way.
final class DirectConvolutionTests: XCTestCase {
    func testMatchesIm2col() throws {
        try XCTSkipIf(haze_direct_conv_available() == 0, "no AVX-512: strided convolutions use im2col")
        let original = ConvolutionAlgorithm.current
        defer { ConvolutionAlgorithm.current = original }
        let cases: [(n: Int, c: Int, h: Int, w: Int, o: Int, kh: Int, kw: Int, stride: Int, padding: Padding2D)] = [
            (3, 16, 14, 14, 64, 3, 3, 2, Padding2D(1)), (2, 24, 28, 28, 32, 3, 3, 2, Padding2D(1)),
            (2, 13, 14, 14, 20, 3, 3, 2, Padding2D(top: 0, bottom: 1, left: 0, right: 1)),
            (5, 7, 9, 11, 70, 3, 3, 2, Padding2D(1)), (1, 3, 10, 10, 5, 3, 3, 3, Padding2D(1)),
            (2, 40, 8, 8, 130, 1, 2, 2, Padding2D.zero),
            // Output rows longer than one row block (7 pixels × 4 vectors, 14 × 2).
            (2, 5, 40, 40, 64, 3, 3, 2, Padding2D(1)), (1, 4, 34, 34, 16, 3, 3, 2, Padding2D(1)),
        ]
        var differing = 0  // cases where the two summation orders round differently
        for (index, s) in cases.enumerated() {
            let x = Tensor.normal([s.n, s.c, s.h, s.w], seed: UInt64(900 + index))
            let w = Tensor.normal([s.o, s.c, s.kh, s.kw], seed: UInt64(910 + index))
            let b = Tensor.normal([s.o], seed: UInt64(920 + index))
            for bias in [b, nil] {
                func run(_ algorithm: ConvolutionAlgorithm) -> Tensor {
                    ConvolutionAlgorithm.current = algorithm
                    return Tensor.conv2d(x, weight: w, bias: bias, stride: s.stride, padding: s.padding)
                }
                let direct = run(.automatic), reference = run(.im2col)
                if direct.scalars != reference.scalars { differing += 1 }
                XCTAssertEqual(direct.shape, reference.shape, "case \(index)")
                // The same C·KH·KW + 1 terms per output, summed in another order (RoundingBound).
                let magnitude = ConvolutionMagnitudes(x: x, weight: w, bias: bias, cotangent: reference,
                                                      stride: s.stride, padding: s.padding).y
                RoundingBound.assertAgree(direct, reference, magnitude: magnitude, length: s.c * s.kh * s.kw + 1,
                                          "case \(index) bias \(bias != nil)")
            }
        }
        // Two summation orders: equal bits everywhere would mean the direct kernel did not run.
        XCTAssertGreaterThan(differing, cases.count / 2, "the direct kernel did not run")
    }
}
