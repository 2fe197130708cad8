import Foundation

/// The binding to BLAS: Accelerate on macOS; OpenBLAS on Linux, loaded at first use.
///
/// Threading: Haze owns it. BLAS runs single-threaded, and Haze splits the work over its own
/// workers (`Parallel`): a convolution gives each worker whole images, `parallelGemm` gives
/// each worker a block of rows of C. One level of parallelism, so BLAS threads and Haze's
/// threads never compete for the cores.
///
/// OpenBLAS picks its kernels by CPU model when it is loaded. Older builds (Debian 12 ships
/// 0.3.21) do not know recent Intel models and fall back to the generic "Prescott" kernel,
/// 5–10× slower than the AVX-512 one the CPU can run. So, unless the user set
/// `OPENBLAS_CORETYPE` themselves, Haze reads the CPU's features with CPUID and names the
/// matching kernel (Cooperlake with AVX-512 BF16, SkylakeX with AVX-512, Haswell with AVX2 + FMA)
/// before loading the library. That is
/// why OpenBLAS is opened with `dlopen` rather than linked: the choice must precede its start-up.

#if canImport(Accelerate)
import Accelerate

/// C[M,N] = alpha · op(A) op(B) + beta · C, row-major (see `gemm`).
func sgemm(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
           _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
           _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// C[M,N] = op(A) op(B) in Double, row-major (see `doubleMatrixProduct`).
func dgemm(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int,
           _ a: UnsafePointer<Double>, _ lda: Int, _ b: UnsafePointer<Double>, _ ldb: Int,
           _ c: UnsafeMutablePointer<Double>, _ ldc: Int) {
    cblas_dgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), 1, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
}

/// The BLAS implementation in use.
public var blasDescription: String { "Accelerate" }

#else
#if canImport(Glibc)
import Glibc
#endif

/// OpenBLAS entry points, resolved once.
struct OpenBLAS {
    typealias DSYEVD = @convention(c) (UnsafePointer<CChar>, UnsafePointer<CChar>, UnsafePointer<Int32>, UnsafeMutablePointer<Double>,
                                       UnsafePointer<Int32>, UnsafeMutablePointer<Double>, UnsafeMutablePointer<Double>,
                                       UnsafePointer<Int32>, UnsafeMutablePointer<Int32>, UnsafePointer<Int32>,
                                       UnsafeMutablePointer<Int32>) -> Void
    typealias Sgemm = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Float,
                                      UnsafePointer<Float>?, Int32, UnsafePointer<Float>?, Int32,
                                      Float, UnsafeMutablePointer<Float>?, Int32) -> Void
    typealias Dgemm = @convention(c) (Int32, Int32, Int32, Int32, Int32, Int32, Double,
                                      UnsafePointer<Double>?, Int32, UnsafePointer<Double>?, Int32,
                                      Double, UnsafeMutablePointer<Double>?, Int32) -> Void
    let sgemm: Sgemm
    let dgemm: Dgemm
    let library: String
    /// OpenBLAS-only entry points (absent from other CBLAS libraries).
    let setThreads: (@convention(c) (Int32) -> Void)?
    let coreName: (@convention(c) () -> UnsafeMutablePointer<CChar>?)?
    /// LAPACK's symmetric eigensolver (OpenBLAS ships LAPACK).
    let dsyevd: DSYEVD?
    /// The core type Haze chose (nil: the user's `OPENBLAS_CORETYPE` or OpenBLAS's own detection).
    let chosenCore: String?

    static let shared = OpenBLAS.load()

    /// The OpenBLAS kernel family for this CPU from its CPUID features (`CPUFeatures`), or nil to
    /// let OpenBLAS decide (CPUs without AVX2: its own detection knows those older models).
    static func coreTypeForThisCPU() -> String? {
        let cpu = CPUFeatures.current
        if cpu.avx512 { return cpu.avx512BF16 ? "Cooperlake" : "SkylakeX" }
        return cpu.avx2FMA ? "Haswell" : nil
    }

    static func load() -> OpenBLAS {
        var chosen: String? = nil
        if ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil, let core = coreTypeForThisCPU() {
            setenv("OPENBLAS_CORETYPE", core, 0)
            chosen = core
        }
        // HAZE_BLAS_LIBRARY names another CBLAS library to load instead (e.g. libblis.so.4).
        let override = ProcessInfo.processInfo.environment["HAZE_BLAS_LIBRARY"]
        let names = override.map { [$0] } ?? ["libopenblas.so.0", "libopenblas.so", "libopenblasp.so.0"]
        guard let (name, handle) = names.lazy.compactMap({ n in dlopen(n, RTLD_NOW | RTLD_GLOBAL).map { (n, $0) } }).first else {
            fatalError("Haze needs OpenBLAS (Debian/Ubuntu: apt-get install libopenblas-dev); could not load \(names.joined(separator: ", ")): \(String(cString: dlerror()))")
        }
        func symbol<T>(_ symbolName: String, as type: T.Type) -> T? {
            dlsym(handle, symbolName).map { unsafeBitCast($0, to: type) }
        }
        guard let sgemm = symbol("cblas_sgemm", as: Sgemm.self), let dgemm = symbol("cblas_dgemm", as: Dgemm.self) else {
            fatalError("\(name) lacks cblas_sgemm or cblas_dgemm")
        }
        let blas = OpenBLAS(sgemm: sgemm, dgemm: dgemm, library: name,
                            setThreads: symbol("openblas_set_num_threads", as: (@convention(c) (Int32) -> Void).self),
                            coreName: symbol("openblas_get_corename", as: (@convention(c) () -> UnsafeMutablePointer<CChar>?).self),
                            dsyevd: symbol("dsyevd_", as: DSYEVD.self),
                            chosenCore: chosen)
        // Haze owns the threading (see `gemm`): BLAS itself runs single-threaded.
        blas.setThreads?(1)
        return blas
    }
}

/// C[M,N] = alpha · op(A) op(B) + beta · C, row-major (see `gemm`).
func sgemm(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float,
           _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
           _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    // CBLAS constants: CblasRowMajor = 101, CblasNoTrans = 111, CblasTrans = 112.
    OpenBLAS.shared.sgemm(101, transposeA ? 112 : 111, transposeB ? 112 : 111, Int32(m), Int32(n), Int32(k),
                          alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// C[M,N] = op(A) op(B) in Double, row-major (see `doubleMatrixProduct`).
func dgemm(_ transposeA: Bool, _ transposeB: Bool, _ m: Int, _ n: Int, _ k: Int,
           _ a: UnsafePointer<Double>, _ lda: Int, _ b: UnsafePointer<Double>, _ ldb: Int,
           _ c: UnsafeMutablePointer<Double>, _ ldc: Int) {
    OpenBLAS.shared.dgemm(101, transposeA ? 112 : 111, transposeB ? 112 : 111, Int32(m), Int32(n), Int32(k),
                          1, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
}

/// The BLAS implementation in use and the kernel (core type) OpenBLAS runs.
public var blasDescription: String {
    let blas = OpenBLAS.shared
    guard let core = blas.coreName?().map({ String(cString: $0) }) else { return "\(blas.library), single-threaded per Haze worker" }
    let how = blas.chosenCore != nil ? "chosen by Haze from CPUID" : "OPENBLAS_CORETYPE or OpenBLAS's detection"
    return "OpenBLAS (\(blas.library)), \(core) kernel (\(how)), single-threaded per Haze worker"
}

#endif

/// C[M,N] = alpha · op(A) op(B) + beta · C, row-major; op(X) = Xᵀ when `transposeX`.
/// A is [M,K] (or [K,M] transposed), B is [K,N] (or [N,K] transposed). Runs on the calling
/// thread (kernels call it from inside their `Parallel.forEach` workers).
func gemm(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int,
          alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
          b: UnsafePointer<Float>, ldb: Int? = nil,
          beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil) {
    guard m > 0, n > 0 else { return }
    guard k > 0 else {
        if beta == 0 { c.update(repeating: 0, count: m * n) }
        return
    }
    let lda = lda ?? (transposeA ? m : k), ldb = ldb ?? (transposeB ? k : n), ldc = ldc ?? n
    sgemm(transposeA, transposeB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

/// `gemm` split over Haze's threads: in `Parallel.minimumItems` blocks of rows of C, or of
/// columns when C is short. The blocks are fixed by the shape, not by the thread count (BLAS may
/// round a block's product differently from the whole), so every thread count gives the same bits.
func parallelGemm(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int,
                  alpha: Float = 1, a: UnsafePointer<Float>, lda: Int? = nil,
                  b: UnsafePointer<Float>, ldb: Int? = nil,
                  beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int? = nil) {
    let lda = lda ?? (transposeA ? m : k), ldb = ldb ?? (transposeB ? k : n), ldc = ldc ?? n
    let parts = Parallel.minimumItems
    if m * n * k < 1 << 18 {
        gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
             a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
    } else if m >= 16 * parts || m >= n {
        Parallel.forEach(parts, cost: 1 << 20) { range in
            for part in range {
                let i0 = part * m / parts, i1 = (part + 1) * m / parts
                gemm(transposeA: transposeA, transposeB: transposeB, m: i1 - i0, n: n, k: k, alpha: alpha,
                     a: a + (transposeA ? i0 : i0 * lda), lda: lda, b: b, ldb: ldb,
                     beta: beta, c: c + i0 * ldc, ldc: ldc)
            }
        }
    } else {
        Parallel.forEach(parts, cost: 1 << 20) { range in
            for part in range {
                let j0 = part * n / parts, j1 = (part + 1) * n / parts
                gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: j1 - j0, k: k, alpha: alpha,
                     a: a, lda: lda, b: b + (transposeB ? j0 * ldb : j0), ldb: ldb,
                     beta: beta, c: c + j0, ldc: ldc)
            }
        }
    }
}

extension Tensor {
    /// a [M, K] · b [K, N] in one single-threaded BLAS call on the calling thread (no tape).
    /// For benchmarks that measure BLAS alone or several concurrent calls.
    public static func singleThreadedMatmul(_ a: Tensor, _ b: Tensor) -> Tensor {
        precondition(a.rank == 2 && b.rank == 2 && a.shape[1] == b.shape[0], "singleThreadedMatmul: \(a.shape) · \(b.shape)")
        return Tensor(shape: [a.shape[0], b.shape[1]]) { c, _ in
            a.withScalars { pa in b.withScalars { pb in
                gemm(m: a.shape[0], n: b.shape[1], k: a.shape[1], a: pa, b: pb, c: c)
            } }
        }
    }
}

/// op(A) · op(B) in Double for row-major A ([M, K], or [K, M] when `transposeA`) and B ([K, N],
/// or [N, K] when `transposeB`) → [M, N]; split over Haze's threads by rows of the result, in
/// blocks fixed by the shape (the same bits with any thread count).
/// For statistics that need double precision (FID covariances, KID kernels).
public func doubleMatrixProduct(_ a: [Double], _ b: [Double], m: Int, n: Int, k: Int,
                                transposeA: Bool = false, transposeB: Bool = false) -> [Double] {
    precondition(a.count == m * k && b.count == k * n, "doubleMatrixProduct: \(a.count) and \(b.count) values for \(m)×\(k)·\(k)×\(n)")
    var c = [Double](repeating: 0, count: m * n)
    guard m > 0, n > 0, k > 0 else { return c }
    let parts = m * n * k < 1 << 18 ? 1 : Parallel.minimumItems
    a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in c.withUnsafeMutableBufferPointer { pc in
        let (pa, pb, pc) = (pa.baseAddress!, pb.baseAddress!, pc.baseAddress!)
        Parallel.forEach(parts, cost: 1 << 20) { range in
            for part in range {
                let i0 = part * m / parts, i1 = (part + 1) * m / parts
                guard i1 > i0 else { continue }
                dgemm(transposeA, transposeB, i1 - i0, n, k, pa + (transposeA ? i0 : i0 * k), transposeA ? m : k,
                      pb, transposeB ? k : n, pc + i0 * n, n)
            }
        }
    } } }
    return c
}

/// Eigenvalues (ascending) and eigenvectors of a symmetric n×n matrix (row-major, Double), by
/// LAPACK's dsyevd (divide and conquer). Returns nil when LAPACK is unavailable or fails.
/// Eigenvector i is row i of `vectors`.
public func symmetricEigendecomposition(_ matrix: [Double], n: Int) -> (values: [Double], vectors: [Double])? {
    precondition(matrix.count == n * n, "symmetricEigendecomposition: \(matrix.count) values for \(n)×\(n)")
    var a = matrix  // symmetric: row- and column-major storage agree
    var w = [Double](repeating: 0, count: n)
    var size = Int32(n), info: Int32 = 0
    var lwork: Int32 = -1, liwork: Int32 = -1
    var workQuery = [Double](repeating: 0, count: 1), iworkQuery = [Int32](repeating: 0, count: 1)
    func call(_ work: inout [Double], _ iwork: inout [Int32]) -> Bool {
#if canImport(Accelerate)
        var jobz = CChar(UInt8(ascii: "V")), uplo = CChar(UInt8(ascii: "U"))
        dsyevd_(&jobz, &uplo, &size, &a, &size, &w, &work, &lwork, &iwork, &liwork, &info)
#else
        guard let dsyevd = OpenBLAS.shared.dsyevd else { return false }
        dsyevd("V", "U", &size, &a, &size, &w, &work, &lwork, &iwork, &liwork, &info)
#endif
        return info == 0
    }
    guard call(&workQuery, &iworkQuery) else { return nil }
    lwork = Int32(workQuery[0]); liwork = iworkQuery[0]
    var work = [Double](repeating: 0, count: Int(lwork)), iwork = [Int32](repeating: 0, count: Int(liwork))
    guard call(&work, &iwork) else { return nil }
    // Column j of the column-major result is eigenvector j, i.e. row j when read row-major.
    return (w, a)
}
