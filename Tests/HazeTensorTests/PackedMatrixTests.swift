import XCTest
import CHazeKernels
@testable import HazeTensor

/// The packed-left-matrix products (haze_gemm.c, or BLAS where there is no AVX-512) against BLAS:
/// rows not a multiple of 8, columns not a multiple of 32, depth over one 256-row panel, row
/// strides wider than the matrices, several matrices, and accumulation into C.
final class PackedMatrixTests: XCTestCase {
    func testMatchesBLAS() {
        for (m, n, k) in [(13, 45, 37), (8, 32, 256), (17, 70, 300), (1, 1, 1), (128, 128, 128), (13, 49, 300), (9, 20, 37), (8, 17, 5)] {
            let (ldb, ldc, count) = (n + 3, n + 5, 2)
            let a = Tensor.uniform([count, m, k], low: -1, high: 1, seed: UInt64(800 + m)).scalars
            let b = Tensor.uniform([k, ldb], low: -1, high: 1, seed: UInt64(810 + n)).scalars
            let start = Tensor.uniform([m, ldc], low: -1, high: 1, seed: UInt64(820 + k)).scalars
            let packed = a.withUnsafeBufferPointer { PackedMatrices($0.baseAddress!, count: count, rows: m, columns: k) }
            for (matrix, accumulate) in [(0, false), (1, true)] {
                var actual = start, expected = start
                b.withUnsafeBufferPointer { pb in
                    actual.withUnsafeMutableBufferPointer {
                        packed.multiply(pb.baseAddress!, ldb: ldb, into: $0.baseAddress!, ldc: ldc, columns: n,
                                        matrix: matrix, accumulate: accumulate)
                    }
                    a.withUnsafeBufferPointer { pa in expected.withUnsafeMutableBufferPointer {
                        gemm(m: m, n: n, k: k, a: pa.baseAddress! + matrix * m * k, b: pb.baseAddress!, ldb: ldb,
                             beta: accumulate ? 1 : 0, c: $0.baseAddress!, ldc: ldc)
                    } }
                }
                // Σ|terms| of each element: |A|·|B| (+ |C| when accumulating), k (+ 1) terms.
                var magnitude = start.map(abs)
                let (absA, absB) = (a.map(abs), b.map(abs))
                absA.withUnsafeBufferPointer { pa in absB.withUnsafeBufferPointer { pb in magnitude.withUnsafeMutableBufferPointer {
                    gemm(m: m, n: n, k: k, a: pa.baseAddress! + matrix * m * k, b: pb.baseAddress!, ldb: ldb,
                         beta: accumulate ? 1 : 0, c: $0.baseAddress!, ldc: ldc)
                } } }
                let columns = (0..<m).flatMap { row in (0..<n).map { row * ldc + $0 } }
                func within(_ values: [Float]) -> Tensor { Tensor(shape: [columns.count], scalars: columns.map { values[$0] }) }
                RoundingBound.assertAgree(within(actual), within(expected), magnitude: within(magnitude),
                                          length: k + (accumulate ? 1 : 0), "\(m)×\(n)×\(k) accumulate \(accumulate)")
                for row in 0..<m {  // the columns past n must be left alone
                    XCTAssertEqual(actual[(row * ldc + n)..<((row + 1) * ldc)], start[(row * ldc + n)..<((row + 1) * ldc)],
                                   "\(m)×\(n)×\(k) row \(row) past column \(n)")
                }
            }
        }
    }

    /// A last panel of 16 + R columns (R ≤ 4; a 7×7 plane's 49 = 32 + 17) takes its R columns as
    /// 8-lane FMAs down the rows, each element the same sum in the same order as in a panel of 32;
    /// a product of one panel (N ≤ 32) runs each 8-row block's depth chunks in turn instead of each
    /// chunk's blocks: the same bits as the first columns of a wider product whose extra columns of
    /// B are zero.
    func testNarrowLastColumnsKeepTheBits() throws {
        try XCTSkipUnless(PackedMatrices.available, "no AVX-512: BLAS products")
        for (m, n, k) in [(13, 49, 300), (16, 17, 40), (9, 18, 129), (8, 19, 7), (11, 20, 64), (24, 52, 33),
                          (40, 32, 300), (24, 16, 260), (17, 9, 200), (33, 27, 131)] {
            let wide = 64
            let a = Tensor.uniform([m, k], low: -1, high: 1, seed: UInt64(850 + n)).scalars
            let narrowB = Tensor.uniform([k, n], low: -1, high: 1, seed: UInt64(860 + k)).scalars
            var wideB = [Float](repeating: 0, count: k * wide)
            for p in 0..<k { wideB[(p * wide)..<(p * wide + n)] = narrowB[(p * n)..<((p + 1) * n)] }
            let packed = a.withUnsafeBufferPointer { PackedMatrices($0.baseAddress!, rows: m, columns: k) }
            for accumulate in [false, true] {
                let start = Tensor.uniform([m, wide], low: -1, high: 1, seed: UInt64(870 + m)).scalars
                var narrowC = start, wideC = start
                narrowB.withUnsafeBufferPointer { b in narrowC.withUnsafeMutableBufferPointer {
                    packed.multiply(b.baseAddress!, ldb: n, into: $0.baseAddress!, ldc: wide, columns: n, accumulate: accumulate)
                } }
                wideB.withUnsafeBufferPointer { b in wideC.withUnsafeMutableBufferPointer {
                    packed.multiply(b.baseAddress!, ldb: wide, into: $0.baseAddress!, ldc: wide, columns: wide, accumulate: accumulate)
                } }
                for row in 0..<m {
                    XCTAssertEqual(narrowC[(row * wide)..<(row * wide + n)], wideC[(row * wide)..<(row * wide + n)],
                                   "\(m)×\(n)×\(k) accumulate \(accumulate) row \(row)")
                    XCTAssertEqual(narrowC[(row * wide + n)..<((row + 1) * wide)], start[(row * wide + n)..<((row + 1) * wide)],
                                   "\(m)×\(n)×\(k) row \(row): the columns past \(n) are left alone")
                }
            }
        }
    }

    /// 1×1 convolutions on the packed kernel (`usesPackedPointwise`; ∂x = Wᵀ G too) against
    /// im2col + SGEMM: planes of one image over and under 512 pixels, output channels not a
    /// multiple of 8, input channels over one 128-deep panel, plane sizes that leave a partial 32-
    /// and 16-column panel; with and without bias. y, the loss and the gradients are the same sums
    /// in another order (`RoundingBound`).
    func testPointwiseConvolutionsMatchIm2col() throws {
        try XCTSkipUnless(PackedMatrices.available, "no AVX-512: 1×1 convolutions use BLAS")
        let original = ConvolutionAlgorithm.current
        defer { ConvolutionAlgorithm.current = original }
        var differing = (y: 0, dx: 0)
        let cases: [(n: Int, c: Int, s: Int, o: Int)] = [(2, 64, 32, 64), (3, 13, 7, 20), (1, 384, 16, 128), (2, 200, 23, 9), (2, 32, 4, 3),
                                                          (2, 24, 24, 160)]
        for (index, s) in cases.enumerated() {
            let x = Tensor.normal([s.n, s.c, s.s, s.s], seed: UInt64(930 + index))
            let w = Tensor.normal([s.o, s.c, 1, 1], std: 0.2, seed: UInt64(940 + index))
            let b = Tensor.normal([s.o], seed: UInt64(950 + index))
            let cotangent = Tensor.normal([s.n, s.o, s.s, s.s], seed: UInt64(960 + index))
            for bias in [true, false] {
                func run(_ algorithm: ConvolutionAlgorithm) -> [Tensor] {
                    ConvolutionAlgorithm.current = algorithm
                    let (loss, grads) = valueWithGradient(at: bias ? [x, w, b] : [x, w]) { t in
                        (Tensor.conv2d(t[0], weight: t[1], bias: bias ? t[2] : nil) * cotangent).sum()
                    }
                    return [Tensor.conv2d(x, weight: w, bias: bias ? b : nil), loss] + grads
                }
                let (packed, reference) = (run(.automatic), run(.im2col))
                if packed[0].scalars != reference[0].scalars { differing.y += 1 }
                if packed[2].scalars != reference[2].scalars { differing.dx += 1 }
                let magnitudes = ConvolutionMagnitudes(x: x, weight: w, bias: bias ? b : nil, cotangent: cotangent, padding: .zero)
                let lengths = ConvolutionMagnitudes.lengthList(weight: w.shape, output: cotangent.shape)
                for (name, ((f, r), (m, n))) in zip(["y", "loss", "dx", "dw", "db"], zip(zip(packed, reference), zip(magnitudes.all, lengths))) {
                    RoundingBound.assertAgree(f, r, magnitude: m, length: n, "\(name) case \(index) bias \(bias)")
                }
            }
        }
        // Two summation orders: equal bits everywhere would mean the packed kernel did not run. (For
        // ∂x up to 128 terms both sum in order from zero, the same bits; the last case's 160 go
        // through two 128-deep panels, which BLAS does not split.)
        XCTAssertGreaterThan(differing.y, cases.count / 2, "the packed kernel did not run forward")
        XCTAssertEqual(differing.dx, 2, "the packed kernel did not run for ∂x")
    }
}

/// The bf16 products (haze_gemm_bf16.c): equal, up to float32 summation order, to the float64
/// product of the inputs rounded to bf16 (round to nearest even); and the Winograd convolutions
/// that use them stay within bf16's error of float32.
final class BFloat16Tests: XCTestCase {
    /// x rounded to the nearest bf16 (ties to even), as a Float.
    func bf16(_ x: Float) -> Float {
        let u = x.bitPattern
        return Float(bitPattern: ((u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16) << 16)
    }

    /// The switch (haze_gemm_bf16.c) follows CPUID: on x86-64 the AVX512_BF16 kernel (or AMX-BF16,
    /// which needs it too) exactly where the CPU has AVX512_BF16, none elsewhere (the emulated CPUs of
    /// `make test-portable`). The aarch64 side is `make test-arm64`.
    func testKernelFollowsTheCPU() {
        XCTAssertEqual(Precision.bfloat16Available, Precision.bfloat16Kernel != nil)
        #if arch(x86_64)
        if CPUFeatures.current.avx512BF16 {
            XCTAssertTrue(["AVX512_BF16", "AMX-BF16"].contains(Precision.bfloat16Kernel ?? "none"), "\(Precision.bfloat16Kernel ?? "none")")
        } else {
            XCTAssertNil(Precision.bfloat16Kernel)
        }
        #endif
        if Precision.bfloat16Kernel == "AVX512_BF16" {
            // VDPBF16PS against FMA: 0.46 and about 2 on the CPUs measured; far outside is a bad timer.
            let ratio = Precision.bfloat16RateRatio ?? 0
            XCTAssertTrue(ratio > 0.2 && ratio < 8, "bf16 rate ratio \(ratio)")
            XCTAssertEqual(Precision.bfloat16Faster, ratio >= 1.2)
        } else {
            XCTAssertNil(Precision.bfloat16RateRatio)
        }
    }

    func testProductsOfRoundedInputs() throws {
        try XCTSkipUnless(Precision.bfloat16Available, "no bf16 kernel on this CPU")
        let saved = Precision.current
        defer { Precision.current = saved }
        Precision.current = .bfloat16
        for (m, n, k) in [(13, 45, 37), (17, 70, 301), (8, 32, 256), (1, 1, 1)] {
            let (ldb, ldc) = (n + 3, n + 5)
            let a = Tensor.uniform([m, k], low: -1, high: 1, seed: UInt64(900 + m)).scalars
            let b = Tensor.uniform([k, ldb], low: -1, high: 1, seed: UInt64(910 + n)).scalars
            let start = Tensor.uniform([m, ldc], low: -1, high: 1, seed: UInt64(920 + k)).scalars
            let packed = a.withUnsafeBufferPointer { PackedMatrices($0.baseAddress!, rows: m, columns: k) }
            for accumulate in [false, true] {
                var actual = start
                b.withUnsafeBufferPointer { pb in actual.withUnsafeMutableBufferPointer {
                    packed.multiply(pb.baseAddress!, ldb: ldb, into: $0.baseAddress!, ldc: ldc, columns: n, accumulate: accumulate)
                } }
                var worstRounded = 0.0, worstFloat = 0.0
                for r in 0..<m {
                    for q in 0..<n {
                        var exact = accumulate ? Double(start[r * ldc + q]) : 0, float = exact, size = abs(exact)
                        for p in 0..<k {
                            exact += Double(bf16(a[r * k + p])) * Double(bf16(b[p * ldb + q]))
                            float += Double(a[r * k + p]) * Double(b[p * ldb + q])
                            size += abs(Double(a[r * k + p] * b[p * ldb + q]))
                        }
                        let value = Double(actual[r * ldc + q])
                        worstRounded = max(worstRounded, abs(value - exact) / max(size, 1e-30))
                        worstFloat = max(worstFloat, abs(value - float) / max(size, 1e-30))
                    }
                    XCTAssertEqual(actual[(r * ldc + n)..<((r + 1) * ldc)], start[(r * ldc + n)..<((r + 1) * ldc)], "past column \(n)")
                }
                // float32 sums of k + 1 terms; bf16 inputs (relative error ≤ 2⁻⁹ each, so ≤ 2⁻⁸ a product).
                XCTAssertLessThan(worstRounded, Double(k + 1) * 0x1p-24, "\(m)×\(n)×\(k): the rounded inputs' product")
                XCTAssertLessThan(worstFloat, 0x1p-8 + Double(k + 1) * 0x1p-24, "\(m)×\(n)×\(k): against float32 inputs")
                if k > 1 { XCTAssertGreaterThan(worstFloat, 1e-5, "\(m)×\(n)×\(k): bf16 did run") }
            }
        }
    }

    /// bf16 pairs packed straight from A's rows (`haze_gemm_pack_bf16_rows`, what `PackedMatrices`
    /// does in bf16) are the words of packing A first and rounding the packed copy: partial 8-row
    /// blocks, odd K, K over one 256-pair chunk, a row stride past K, whole or block by block.
    func testPairsStraightFromRows() throws {
        try XCTSkipUnless(haze_gemm_bf16_packs_rows() != 0, "AMX packs its tiles from the float layout")
        for (m, k) in [(13, 37), (16, 256), (9, 600), (1, 1), (8, 513), (24, 1030)] {
            let lda = k + 3, pairs = (k + 1) / 2, size = haze_gemm_packed_bf16_size(m, k)
            let a = Tensor.uniform([m, lda], low: -2, high: 2, seed: UInt64(m * 1000 + k)).scalars
            var packed = [Float](repeating: .nan, count: haze_gemm_packed_size(m, k))
            var expected = [UInt32](repeating: 1, count: size), whole = [UInt32](repeating: 2, count: size)
            var blocks = [UInt32](repeating: 3, count: size)
            a.withUnsafeBufferPointer { pa in
                haze_gemm_pack(pa.baseAddress!, lda, &packed, m, k)
                haze_gemm_pack_bf16(packed, &expected, m, k)
                haze_gemm_pack_bf16_rows(pa.baseAddress!, lda, &whole, m, k)
                blocks.withUnsafeMutableBufferPointer { out in
                    for r0 in stride(from: 0, to: m, by: 8) {
                        haze_gemm_pack_bf16_rows(pa.baseAddress! + r0 * lda, lda, out.baseAddress! + r0 * pairs, min(8, m - r0), k)
                    }
                }
            }
            XCTAssertEqual(whole, expected, "\(m)×\(k)")
            XCTAssertEqual(blocks, expected, "\(m)×\(k), block by block")
        }
    }

    /// 1×1 convolutions in bf16 (`usesPackedPointwise`) against float32, with and without bias:
    /// each output is a float32 sum of C products of bf16-rounded inputs, so its error is at most
    /// 2⁻⁸ Σ|w x| + C·2⁻²⁴ of it (the bound of `testProductsOfRoundedInputs`), checked per value.
    func testPointwiseConvolutionsInBFloat16() throws {
        try XCTSkipUnless(Precision.bfloat16Available, "no bf16 kernel on this CPU")
        let saved = Precision.current
        defer { Precision.current = saved }
        for (i, (n, c, o, s)) in [(2, 64, 384, 16), (3, 96, 64, 8), (1, 5, 7, 4)].enumerated() {
            let x = Tensor.normal([n, c, s, s], seed: UInt64(90 + i)), w = Tensor.normal([o, c, 1, 1], std: 0.1, seed: UInt64(95 + i))
            let b = Tensor.normal([o], seed: UInt64(99 + i))
            for bias in [b, nil] {
                Precision.current = .float32
                let reference = Tensor.conv2d(x, weight: w, bias: bias)
                let magnitude = Tensor.conv2d(x.abs(), weight: w.abs())
                Precision.current = .bfloat16
                let lower = Tensor.conv2d(x, weight: w, bias: bias)
                var worst = 0.0, largest = 0.0
                for j in 0..<reference.count {
                    let error = Double(abs(lower.scalars[j] - reference.scalars[j])), scale = Double(magnitude.scalars[j])
                    worst = max(worst, error / (scale + Double(abs(bias?.scalars[(j / (s * s)) % o] ?? 0)) + 1e-30))
                    largest = max(largest, error)
                }
                XCTAssertLessThan(worst, 0x1p-8 + Double(c + 1) * 0x1p-24, "case \(i) bias \(bias != nil)")
                if c > 1 { XCTAssertGreaterThan(largest, 0, "case \(i): bf16 did run") }
            }
        }
    }

    /// Winograd F(2×2) convolutions with bf16 products against float32: the error stays within a
    /// few bf16 roundings of the output's scale, also where float32 takes F(4×4) (32 images of 7×7,
    /// a 14×14 and an 8×8 plane): bf16 takes F(2×2) there. Planes 64 wide keep float32 F(4×4), bit
    /// for bit.
    func testWinogradConvolutionsInBFloat16() throws {
        try XCTSkipUnless(Precision.bfloat16Available, "no bf16 kernel on this CPU")
        let saved = Precision.current
        defer { Precision.current = saved }
        let x = Tensor.normal([2, 32, 64, 64], seed: 1), w = Tensor.normal([32, 32, 3, 3], std: 0.05, seed: 2)
        let float32 = Tensor.conv2d(x, weight: w, padding: 1)
        Precision.current = .bfloat16
        XCTAssertTrue(Winograd.usesLargeTiles(n: 2, h: 64, w: 64), "64 wide: float32 F(4×4) in bf16 too")
        XCTAssertEqual(Tensor.conv2d(x, weight: w, padding: 1).scalars, float32.scalars, "64 wide: the float32 bits")
        for (n, c, o, s) in [(4, 64, 64, 14), (32, 128, 128, 7), (8, 128, 128, 8), (2, 32, 32, 32)] {
            let x = Tensor.normal([n, c, s, s], seed: 1), w = Tensor.normal([o, c, 3, 3], std: 0.05, seed: 2)
            Precision.current = .float32
            let reference = Tensor.conv2d(x, weight: w, padding: 1)
            Precision.current = .bfloat16
            let lower = Tensor.conv2d(x, weight: w, padding: 1)
            let scale = reference.squared().mean().scalar.squareRoot()
            let error = (lower - reference).squared().mean().scalar.squareRoot() / scale
            print("bf16 Winograd \(n)×\(c)→\(o) at \(s)×\(s): relative RMS error \(error)")
            XCTAssertFalse(Winograd.usesLargeTiles(n: n, h: s, w: s), "bf16 takes F(2×2)")
            XCTAssertLessThan(error, 1e-2, "\(n)×\(c)→\(o) at \(s)×\(s): relative RMS error \(error)")
            XCTAssertGreaterThan(error, 1e-5, "\(n)×\(c)→\(o) at \(s)×\(s): bf16 did run")
        }
    }

    /// In bf16 the weight gradient stays float32 (there is no bf16 kernel for it): on the planes
    /// where the forward switches to F(2×2) in bf16 (9–16 and 32 wide) it keeps F(4×4) and gives the
    /// float32 bits, since ∂w of Σ y·g depends only on x and g. The input gradient does take bf16,
    /// except on planes 64 wide, where every product stays float32 F(4×4).
    func testWeightGradientStaysFloat32InBFloat16() throws {
        try XCTSkipUnless(Precision.bfloat16Available, "no bf16 kernel on this CPU")
        let saved = Precision.current
        defer { Precision.current = saved }
        for (n, c, o, s) in [(2, 32, 64, 32), (3, 64, 32, 16), (1, 8, 8, 64)] {
            let x = Tensor.normal([n, c, s, s], seed: 5), w = Tensor.normal([o, c, 3, 3], std: 0.05, seed: 6)
            let g = Tensor.normal([n, o, s, s], seed: 7)
            func gradients(_ precision: Precision) -> [Tensor] {
                Precision.current = precision
                return valueWithGradient(at: [x, w]) { t in (Tensor.conv2d(t[0], weight: t[1], padding: 1) * g).sum() }.1
            }
            let (full, lower) = (gradients(.float32), gradients(.bfloat16))
            XCTAssertEqual(lower[1], full[1], "∂w at \(s)×\(s): float32 in both")
            if s == 64 {
                XCTAssertEqual(lower[0], full[0], "∂x at \(s)×\(s): float32 F(4×4) in both")
            } else {
                XCTAssertNotEqual(lower[0], full[0], "∂x at \(s)×\(s): bf16 products")
            }
        }
    }
}
