import XCTest
@testable import HazeTensor

/// The operations that read a U-Net decoder block's concatenated input in place
/// (ConcatenatedInput.swift) against the same operations on `Tensor.concatenate`: the same bits.
final class ConcatenatedInputTests: XCTestCase {
    /// conv(SiLU(groupNorm(x ⧺ second))) and the plain conv(x ⧺ second), 3×3: F(4×4) with the tiles
    /// along the lanes (28×28, 14×14, the 8-wide layout whose registers hold two images' rows at
    /// 10×7) and with the images along them (7×7, 20 and 17 images), with norm groups that straddle
    /// the two tensors or not, in place; F(2×2) (4×4 in a small batch), copied. The norm's affine
    /// per channel or per image (FiLM); a residual, a per-image shift or nothing added; with and
    /// without bias. Recorded inputs take the copy and get the concatenation's gradients.
    func testThreeByThree() {
        for (i, s) in [(n: 2, c1: 8, c2: 8, h: 28, w: 28, o: 5, inPlace: true), (n: 3, c1: 16, c2: 16, h: 14, w: 14, o: 9, inPlace: true),
                       (n: 3, c1: 4, c2: 12, h: 10, w: 7, o: 4, inPlace: true), (n: 20, c1: 12, c2: 12, h: 7, w: 7, o: 6, inPlace: true),
                       (n: 2, c1: 6, c2: 10, h: 14, w: 14, o: 3, inPlace: true), (n: 17, c1: 10, c2: 14, h: 7, w: 7, o: 5, inPlace: true),
                       (n: 3, c1: 8, c2: 8, h: 4, w: 4, o: 4, inPlace: false)].enumerated() {
            let c = s.c1 + s.c2
            let x = Tensor.normal([s.n, s.c1, s.h, s.w], std: 3, seed: UInt64(300 + i))
            let second = Tensor.normal([s.n, s.c2, s.h, s.w], std: 2, seed: UInt64(310 + i))
            let w = Tensor.normal([s.o, c, 3, 3], std: 0.3, seed: UInt64(320 + i)), b = Tensor.normal([s.o], seed: UInt64(330 + i))
            let pointwise = Tensor.normal([s.o, c, 1, 1], seed: UInt64(335 + i))
            let inPlace = Winograd.usesLargeTiles(n: s.n, h: s.h, w: s.w) && PackedMatrices.available && s.inPlace
            XCTAssertEqual(Tensor.readsConcatenationInPlace(x, second, weights: [w, pointwise]), inPlace, "case \(i)")
            let joined = Tensor.concatenate([x, second], alongAxis: 1)
            let affines = [(Tensor.normal([c], seed: UInt64(340 + i)), Tensor.normal([c], seed: UInt64(350 + i))),
                           (Tensor.normal([s.n, c], std: 40, seed: UInt64(360 + i)), Tensor.normal([s.n, c], seed: UInt64(370 + i)))]
            let addends: [Tensor?] = [nil, Tensor.normal([s.n, s.o, s.h, s.w], seed: UInt64(380 + i)),
                                      Tensor.normal([s.n, s.o, 1, 1], seed: UInt64(390 + i))]
            for (scale, shift) in affines {
                for (a, addend) in addends.enumerated() {
                    let bias = a != 1 ? b : nil
                    let label = "case \(i) scale \(scale.shape) addend \(addend?.shape ?? []) bias \(bias != nil)"
                    let read = Tensor.conv2d(siluOfGroupNorm: x, concatenatedWith: second, groups: 4, scale: scale, shift: shift,
                                             weight: w, bias: bias, padding: Padding2D(1), adding: addend)
                    let copied = Tensor.conv2d(siluOfGroupNorm: joined, groups: 4, scale: scale, shift: shift, weight: w, bias: bias,
                                               padding: Padding2D(1), adding: addend)
                    XCTAssertEqual(read.scalars, copied.scalars, label)
                }
            }
            // The plain convolution (no norm), as the TensorFlow notebook's blocks take their input.
            for (a, addend) in addends.enumerated() {
                let bias = a != 1 ? b : nil
                XCTAssertEqual(Tensor.conv2d(x, concatenatedWith: second, weight: w, bias: bias, padding: Padding2D(1), adding: addend).scalars,
                               Tensor.conv2d(joined, weight: w, bias: bias, padding: Padding2D(1), adding: addend).scalars,
                               "case \(i) plain, addend \(addend?.shape ?? [])")
            }
            // Recorded: the concatenation's value and gradients.
            let (scale, shift) = affines[1], cotangent = Tensor.normal([s.n, s.o, s.h, s.w], seed: UInt64(395 + i))
            let both = valueWithGradient(at: [x, second, scale, w]) { t in
                (Tensor.conv2d(siluOfGroupNorm: t[0], concatenatedWith: t[1], groups: 4, scale: t[2], shift: shift, weight: t[3],
                               padding: Padding2D(1)) * cotangent).sum()
            }
            let one = valueWithGradient(at: [joined, scale, w]) { t in
                (Tensor.conv2d(siluOfGroupNorm: t[0], groups: 4, scale: t[1], shift: shift, weight: t[2], padding: Padding2D(1)) * cotangent).sum()
            }
            XCTAssertEqual(both.value.scalars, one.value.scalars, "case \(i), recorded")
            let joinedGradient = Tensor.concatenate([both.gradients[0], both.gradients[1]], alongAxis: 1)
            XCTAssertEqual(joinedGradient.scalars, one.gradients[0].scalars, "case \(i), ∂(x ⧺ second)")
            XCTAssertEqual(both.gradients[2].scalars, one.gradients[1].scalars, "case \(i), ∂scale")
            XCTAssertEqual(both.gradients[3].scalars, one.gradients[2].scalars, "case \(i), ∂w")
        }
    }

    /// conv1×1(x ⧺ second) on the packed kernel: x's channels fewer than, equal to and more than one
    /// 128-row panel depth (the split inside the first or the second depth block), rows a multiple
    /// of 512 bytes apart (32×32) or not; with and without bias; in bf16 (copied).
    func testPointwise() {
        let precision = Precision.current
        defer { Precision.current = precision }
        for (i, s) in [(n: 2, c1: 8, c2: 24, h: 28, w: 28, o: 16), (n: 3, c1: 136, c2: 40, h: 7, w: 7, o: 24),
                       (n: 2, c1: 128, c2: 64, h: 14, w: 14, o: 9), (n: 1, c1: 64, c2: 64, h: 32, w: 32, o: 40)].enumerated() {
            let x = Tensor.normal([s.n, s.c1, s.h, s.w], seed: UInt64(400 + i))
            let second = Tensor.normal([s.n, s.c2, s.h, s.w], seed: UInt64(410 + i))
            let w = Tensor.normal([s.o, s.c1 + s.c2, 1, 1], std: 0.2, seed: UInt64(420 + i)), b = Tensor.normal([s.o], seed: UInt64(430 + i))
            let joined = Tensor.concatenate([x, second], alongAxis: 1)
            for bf16 in Precision.bfloat16Available ? [false, true] : [false] {
                Precision.current = bf16 ? .bfloat16 : .float32
                for bias in [nil, b] {
                    XCTAssertEqual(Tensor.conv2d(x, concatenatedWith: second, weight: w, bias: bias).scalars,
                                   Tensor.conv2d(joined, weight: w, bias: bias).scalars, "case \(i) bias \(bias != nil) bf16 \(bf16)")
                }
            }
        }
    }
}
