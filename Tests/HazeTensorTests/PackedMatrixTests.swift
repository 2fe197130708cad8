import XCTest
@testable import HazeTensor

/// The packed-left-matrix products (haze_gemm.c, or BLAS where there is no AVX-512) against BLAS:
/// rows not a multiple of 8, columns not a multiple of 32, depth over one 256-row panel, row
/// strides wider than the matrices, several matrices, and accumulation into C.
final class PackedMatrixTests: XCTestCase {
    func testMatchesBLAS() {
        for (m, n, k) in [(13, 45, 37), (8, 32, 256), (17, 70, 300), (1, 1, 1), (128, 128, 128)] {
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
}
