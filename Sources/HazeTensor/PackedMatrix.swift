import CHazeKernels

/// Left-hand matrices A [M, K] of many products A · B — the transformed weights U[ξ] of a Winograd
/// convolution against the tiles of every work item. With AVX-512 they are packed once per
/// convolution for `haze_gemm_packed` (CHazeKernels/haze_gemm.c), which then reads B in place:
/// no per-call packing, which is much of a BLAS call's cost at the small sizes where `Winograd`
/// uses it. Elsewhere they are kept as they are and the products go to BLAS.
struct PackedMatrices {
    let rows, columns, count: Int
    private let values: [Float]
    private let stride: Int  // floats between consecutive matrices in `values`

    /// Whether the packed kernel runs on this CPU.
    static let available = haze_gemm_packed_available() != 0

    /// `count` matrices A_i [rows, columns], A_i at a + i · rows · columns, row-major.
    init(_ a: UnsafePointer<Float>, count: Int = 1, rows: Int, columns: Int) {
        (self.rows, self.columns, self.count) = (rows, columns, count)
        let size = rows * columns
        guard Self.available else {
            stride = size
            values = Array(UnsafeBufferPointer(start: a, count: count * size))
            return
        }
        let packedSize = haze_gemm_packed_size(rows, columns), blocks = (rows + 7) / 8
        stride = packedSize
        values = [Float](unsafeUninitializedCapacity: count * packedSize) { buffer, initialized in
            let packed = buffer.baseAddress!
            Parallel.forEach(count * blocks, cost: 8 * columns) { range in
                for item in range {  // one 8-row block of one matrix
                    let (i, block) = item.quotientAndRemainder(dividingBy: blocks)
                    haze_gemm_pack(a + i * size + 8 * block * columns, columns,
                                   packed + i * packedSize + 8 * block * columns, Swift.min(8, rows - 8 * block), columns)
                }
            }
            initialized = count * packedSize
        }
    }

    /// `count` matrices [rows, columns] that `fill(values, stride)` writes in the packed layout
    /// itself, matrix i at values + i · stride (AVX-512 only).
    init(count: Int, rows: Int, columns: Int, fill: (UnsafeMutablePointer<Float>, Int) -> Void) {
        precondition(Self.available, "packed matrices need AVX-512")
        (self.rows, self.columns, self.count) = (rows, columns, count)
        let packedSize = haze_gemm_packed_size(rows, columns)
        stride = packedSize
        values = [Float](unsafeUninitializedCapacity: count * packedSize) { buffer, initialized in
            fill(buffer.baseAddress!, packedSize)
            initialized = count * packedSize
        }
    }

    /// C [rows, n] (row stride ldc) = A_i · B, or C += A_i · B with `accumulate`, for
    /// B [columns, n] (row stride ldb) and i = `matrix`. Runs on the calling thread.
    func multiply(_ b: UnsafePointer<Float>, ldb: Int, into c: UnsafeMutablePointer<Float>, ldc: Int, columns n: Int,
                  matrix i: Int = 0, accumulate: Bool = false) {
        values.withUnsafeBufferPointer { v in
            let a = v.baseAddress! + i * stride
            if Self.available {
                haze_gemm_packed(a, b, ldb, c, ldc, rows, n, columns, accumulate ? 1 : 0)
            } else {
                gemm(m: rows, n: n, k: columns, a: a, b: b, ldb: ldb, beta: accumulate ? 1 : 0, c: c, ldc: ldc)
            }
        }
    }
}
