import CHazeKernels
import Dispatch

/// Left-hand matrices A [M, K] of many products A · B — the transformed weights U[ξ] of a Winograd
/// convolution against the tiles of every work item. With AVX-512 they are packed once per
/// convolution for `haze_gemm_packed` (CHazeKernels/haze_gemm.c), which then reads B in place:
/// no per-call packing, which is much of a BLAS call's cost at the small sizes where `Winograd`
/// uses it. In bf16 (`Precision.current`, on any CPU with a bf16 kernel) they are packed as bf16
/// pairs for `haze_gemm_packed_bf16`, straight from the rows (from the float layout for AMX).
/// Elsewhere they are kept as they are and the products go to BLAS.
struct PackedMatrices {
    let rows, columns, count: Int
    private var values: [Float]  // emptied once `pairs` hold the matrices
    private let stride: Int  // floats between consecutive matrices in `values`
    /// With `Precision.current == .bfloat16` (where the CPU has a bf16 kernel): the matrices as bf16
    /// pairs along K for `haze_gemm_packed_bf16`, `pairStride` words apart.
    private var pairs: [UInt32]? = nil
    private var pairStride = 0

    /// Whether the packed float32 kernel runs on this CPU (AVX-512).
    static let available = haze_gemm_packed_available() != 0

    /// `count` matrices A_i [rows, columns], A_i at a + i · rows · columns, row-major. With
    /// `bfloat16Allowed`, the products are in bf16 when `Precision.current` asks for it.
    init(_ a: UnsafePointer<Float>, count: Int = 1, rows: Int, columns: Int, bfloat16Allowed: Bool = true) {
        (self.rows, self.columns, self.count) = (rows, columns, count)
        let size = rows * columns
        if bfloat16Allowed && Precision.current == .bfloat16 && Precision.bfloat16Available && haze_gemm_bf16_packs_rows() != 0 {
            // Straight to the bf16 pairs, 8-row block by block: the words of packing, then rounding.
            let pairSize = haze_gemm_packed_bf16_size(rows, columns), blocks = (rows + 7) / 8, pairsPerRow = (columns + 1) / 2
            (stride, values, pairStride) = (0, [], pairSize)
            pairs = [UInt32](unsafeUninitializedCapacity: count * pairSize) { buffer, initialized in
                let out = buffer.baseAddress!
                Parallel.forEach(count * blocks, cost: 8 * columns) { range in
                    for item in range {
                        let (i, block) = item.quotientAndRemainder(dividingBy: blocks)
                        haze_gemm_pack_bf16_rows(a + i * size + 8 * block * columns, columns, out + i * pairSize + 8 * block * pairsPerRow,
                                                 Swift.min(8, rows - 8 * block), columns)
                    }
                }
                initialized = count * pairSize
            }
            return
        }
        // Packed for the float32 kernel (AVX-512) or, in bf16 on AMX, on the way to its tiles.
        guard Self.available || bfloat16Allowed && Precision.current == .bfloat16 && Precision.bfloat16Available else {
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
        if bfloat16Allowed { roundToBFloat16IfAsked() }
    }

    /// `count` matrices [rows, columns] that `fill(values, stride)` writes in the packed layout
    /// itself, matrix i at values + i · stride (AVX-512 only).
    init(count: Int, rows: Int, columns: Int, bfloat16Allowed: Bool = true, fill: (UnsafeMutablePointer<Float>, Int) -> Void) {
        precondition(Self.available, "packed matrices need AVX-512")
        (self.rows, self.columns, self.count) = (rows, columns, count)
        let packedSize = haze_gemm_packed_size(rows, columns)
        stride = packedSize
        values = [Float](unsafeUninitializedCapacity: count * packedSize) { buffer, initialized in
            fill(buffer.baseAddress!, packedSize)
            initialized = count * packedSize
        }
        if bfloat16Allowed { roundToBFloat16IfAsked() }
    }

    /// Replaces the packed matrices by their bf16 pairs when `Precision.current` asks for bf16
    /// products (the float32 copy is not kept: sampling keeps every convolution's for the run).
    private mutating func roundToBFloat16IfAsked() {
        guard Precision.current == .bfloat16, Precision.bfloat16Available else { return }
        let size = haze_gemm_packed_bf16_size(rows, columns)
        let (rows, columns, count, stride) = (self.rows, self.columns, self.count, self.stride)
        pairs = values.withUnsafeBufferPointer { v in
            [UInt32](unsafeUninitializedCapacity: count * size) { buffer, initialized in
                Parallel.forEach(count, cost: rows * columns) { range in
                    for i in range { haze_gemm_pack_bf16(v.baseAddress! + i * stride, buffer.baseAddress! + i * size, rows, columns) }
                }
                initialized = count * size
            }
        }
        pairStride = size
        values = []
    }

    /// C [rows, n] (row stride ldc) = A_i · B, or C += A_i · B with `accumulate`, for
    /// B [columns, n] (row stride ldb) and i = `matrix`. Runs on the calling thread.
    func multiply(_ b: UnsafePointer<Float>, ldb: Int, into c: UnsafeMutablePointer<Float>, ldc: Int, columns n: Int,
                  matrix i: Int = 0, accumulate: Bool = false) {
        if let pairs {
            pairs.withUnsafeBufferPointer { p in
                haze_gemm_packed_bf16(p.baseAddress! + i * pairStride, b, ldb, c, ldc, rows, n, columns, accumulate ? 1 : 0)
            }
            return
        }
        values.withUnsafeBufferPointer { v in
            let a = v.baseAddress! + i * stride
            if Self.available {
                haze_gemm_packed(a, b, ldb, c, ldc, rows, n, columns, accumulate ? 1 : 0)
            } else {
                gemm(m: rows, n: n, k: columns, a: a, b: b, ldb: ldb, beta: accumulate ? 1 : 0, c: c, ldc: ldc)
            }
        }
    }

    /// C [rows, n] (row stride ldc) = A · B for B the concatenation of b's rows [0, split) and
    /// second's [split, columns), both of row stride ldb: the same bits as `multiply` on B in one
    /// piece. Float32 packed matrices only (`available`, no bf16 pairs). Runs on the calling thread.
    func multiply(_ b: UnsafePointer<Float>, concatenatedWith second: UnsafePointer<Float>, split: Int, ldb: Int,
                  into c: UnsafeMutablePointer<Float>, ldc: Int, columns n: Int) {
        precondition(Self.available && pairs == nil, "PackedMatrices: concatenated B needs the float32 packed kernel")
        values.withUnsafeBufferPointer { v in
            haze_gemm_packed_concatenated(v.baseAddress!, b, second, split, ldb, c, ldc, rows, n, columns, 0)
        }
    }
}

/// The precision of the products that have a bf16 path: the packed products of the Winograd
/// F(2×2, 3×3) convolutions and of the 1×1 convolutions. F(4×4, 3×3) stays float32: its
/// transforms (coefficients up to 8 and 1/24) turn bf16's 2⁻⁹ input rounding into a 2 % RMS error
/// of the output, against about 0.4 % for F(2×2) (BFloat16Tests).
public enum Precision: String, CaseIterable, Sendable, Codable {
    /// Everything in float32 (the default; bit-for-bit reproducible).
    case float32
    /// bfloat16 inputs, float32 sums, where the CPU has a bf16 kernel (`bfloat16Kernel`).
    case bfloat16

    /// The precision of the products packed from now on (set before a model runs; not synchronised).
    nonisolated(unsafe) public static var current = Precision.float32
    /// Whether this CPU multiplies bf16: AMX-BF16, AVX512_BF16 or ARMv8.6 BF16.
    public static let bfloat16Available = haze_gemm_bf16_available() != 0
    /// The bf16 kernel this CPU runs ("AMX-BF16", "AVX512_BF16", "Arm BF16"; nil where there is none).
    public static let bfloat16Kernel = haze_gemm_bf16_kernel().map { String(cString: $0) }
    /// The instruction sets with a bf16 kernel, for messages.
    public static let bfloat16Kernels = "AVX512_BF16, AMX-BF16 or ARMv8.6 BF16"

    /// The AVX512_BF16 kernel's multiply-add rate over float32's on this core: VDPBF16PS against
    /// FMA, both from registers (haze_fma_ceiling_*), best of 7 alternating runs of 0.03–0.1 ms.
    /// The instruction does twice an FMA's multiply-adds, but not every core issues it as often:
    /// about 2 on AMD Zen 4, 0.46 on an Intel Xeon (Emerald Rapids, AMX not exposed), where bf16
    /// runs slower than float32. Nil for the other kernels (AMX-BF16's tiles and Arm's BFDOT are
    /// taken to be faster) and where there is no bf16 kernel.
    public static let bfloat16RateRatio: Double? = {
        guard bfloat16Kernel == "AVX512_BF16" else { return nil }
        let rounds = 1 << 13
        func seconds(_ body: (Int) -> Double) -> Double {
            let start = DispatchTime.now().uptimeNanoseconds
            _ = body(rounds)
            return Double(DispatchTime.now().uptimeNanoseconds - start)
        }
        var float32 = Double.infinity, bfloat16 = Double.infinity
        for _ in 0..<7 {
            float32 = min(float32, seconds { haze_fma_ceiling_f32($0) })
            bfloat16 = min(bfloat16, seconds { haze_fma_ceiling_bf16($0) })
        }
        return 2 * float32 / bfloat16  // VDPBF16PS does two multiply-adds per lane where an FMA does one
    }()

    /// Whether bf16 beats float32 here (what `--precision auto` picks): a bf16 kernel, and for
    /// AVX512_BF16 a measured rate at least 1.2 times float32's (`bfloat16RateRatio`).
    public static var bfloat16Faster: Bool { bfloat16Available && (bfloat16RateRatio ?? 2) >= 1.2 }
}
