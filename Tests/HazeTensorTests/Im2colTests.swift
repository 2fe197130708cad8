import CHazeKernels
import XCTest
@testable import HazeTensor

/// im2col/col2im: the AVX-512 permute kernels (inputs ≤ 32 wide, outputs ≤ 16 wide) against the
/// portable loops, bit for bit, forward and all gradients: stride 2 with padding 1 (14×14 → 7×7,
/// 28×28 → 14×14), diffusers' asymmetric (0, 1, 0, 1) pad, odd sizes, a 3×3 stride-1 convolution
/// (im2col algorithm) and a 1×2 kernel. (Their agreement with PyTorch and finite differences is in
/// ParityTests and GradientTests, which run the default kernels.)
final class Im2colTests: XCTestCase {
    func testPermutesMatchPortableLoops() {
        let original = ConvolutionAlgorithm.current
        defer { ConvolutionAlgorithm.current = original; haze_avx512_permutes(1) }
        ConvolutionAlgorithm.current = .im2col
        let cases: [(n: Int, c: Int, h: Int, w: Int, o: Int, kh: Int, kw: Int, stride: Int, padding: Padding2D)] = [
            (3, 5, 14, 14, 4, 3, 3, 2, Padding2D(1)), (2, 3, 28, 28, 6, 3, 3, 2, Padding2D(1)),
            (2, 4, 14, 14, 3, 3, 3, 2, Padding2D(top: 0, bottom: 1, left: 0, right: 1)),
            (2, 3, 9, 11, 2, 3, 3, 2, Padding2D(1)), (2, 6, 7, 7, 5, 3, 3, 1, Padding2D(1)),
            (1, 2, 5, 30, 3, 1, 2, 2, Padding2D.zero),
        ]
        for (index, s) in cases.enumerated() {
            let x = Tensor.normal([s.n, s.c, s.h, s.w], seed: UInt64(700 + index))
            let w = Tensor.normal([s.o, s.c, s.kh, s.kw], seed: UInt64(710 + index))
            let b = Tensor.normal([s.o], seed: UInt64(720 + index))
            func run() -> [[Float]] {
                let (y, grads) = valueWithGradient(at: [x, w, b]) { t in
                    let out = Tensor.conv2d(t[0], weight: t[1], bias: t[2], stride: s.stride, padding: s.padding)
                    return (out * out).sum()
                }
                return [y.scalars] + grads.map(\.scalars)
            }
            haze_avx512_permutes(1)
            let permuted = run()
            haze_avx512_permutes(0)
            let portable = run()
            XCTAssertEqual(permuted, portable, "case \(index)")
        }
    }
}
