import CHazeMPI
import Foundation

/// The processes of one job and the collectives between them: Open MPI when the process was
/// started by `mpirun`/`srun` (detected from the launcher's environment), otherwise one process
/// whose collectives do nothing. Every layer above is written once against this type and runs
/// the same with or without MPI.
///
/// Open MPI is opened at run time (`dlopen`, CHazeMPI), as OpenBLAS is: a plain `haze` needs no
/// MPI installed and pays nothing for it, and one binary serves both (a separate MPI build
/// flavour would have to be built and shipped twice). MPI is initialised with
/// MPI_THREAD_SERIALIZED: any thread may call, one at a time (`lock`); the gradient reducer's
/// communication thread and the training thread share it.
public final class ProcessGroup: @unchecked Sendable {
    /// MPI could not be started in a process that an MPI launcher started (the message says why).
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// This process's rank in the job, 0 ..< size.
    public let rank: Int
    /// Processes in the job.
    public let size: Int
    /// Rank among the processes on this host, and how many there are (threads are divided by it).
    public let localRank: Int, localSize: Int
    /// Whether the collectives go through MPI (a job of any size started by an MPI launcher).
    public let usesMPI: Bool
    private let lock = NSLock()

    /// The group of this process, set up at first use (MPI_Init there).
    public static let world: ProcessGroup = {
        do { return try ProcessGroup(environment: ProcessInfo.processInfo.environment) } catch {
            FileHandle.standardError.write(Data("haze: \(error)\n".utf8))
            exit(1)
        }
    }()

    /// Whether `environment` is that of a process started by an MPI launcher (Open MPI's
    /// mpirun, or srun --mpi=pmix).
    public static func launchedByMPI(_ environment: [String: String]) -> Bool {
        ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"].contains { environment[$0] != nil }
    }

    /// One process, no MPI.
    public init() {
        (rank, size, localRank, localSize, usesMPI) = (0, 1, 0, 1, false)
    }

    init(environment: [String: String]) throws {
        guard Self.launchedByMPI(environment) else {
            (rank, size, localRank, localSize, usesMPI) = (0, 1, 0, 1, false)
            return
        }
        var message = [CChar](repeating: 0, count: 512)
        guard haze_mpi_init(environment["HAZE_MPI_LIBRARY"], &message, message.count) == 0 else {
            throw Failure(description: "started by an MPI launcher, but MPI did not start: \(String(cString: message))")
        }
        (rank, size, usesMPI) = (Int(haze_mpi_rank()), Int(haze_mpi_size()), true)
        // Open MPI and Slurm name the ranks on this host; elsewhere assume one host.
        let local = environment["OMPI_COMM_WORLD_LOCAL_RANK"] ?? environment["SLURM_LOCALID"]
        let localCount = environment["OMPI_COMM_WORLD_LOCAL_SIZE"] ?? environment["SLURM_NTASKS_PER_NODE"]
        (localRank, localSize) = (local.flatMap { Int($0) } ?? rank, localCount.flatMap { Int($0) } ?? size)
    }

    /// Whether this is rank 0 (the rank that writes a run's log and files).
    public var isRoot: Bool { rank == 0 }

    /// Items `start ..< end` of `count` that this rank handles: contiguous slices in rank order,
    /// the first `count % size` ranks taking one more.
    public func share(of count: Int) -> Range<Int> { shares(of: count)[rank] }

    /// The slices of every rank (`share(of:)` of each).
    public func shares(of count: Int) -> [Range<Int>] {
        let base = count / size, extra = count % size
        return (0..<size).map { r in
            let start = r * base + Swift.min(r, extra)
            return start..<(start + base + (r < extra ? 1 : 0))
        }
    }

    private func check(_ code: Int32, _ what: String) {
        guard code != 0 else { return }
        FileHandle.standardError.write(Data("haze (rank \(rank)): MPI \(what) failed with error \(code); stopping the job\n".utf8))
        haze_mpi_abort(code)
    }

    /// Element-wise sum over all ranks, in place.
    public func allreduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {
        guard usesMPI, size > 1, let base = buffer.baseAddress else { return }
        lock.withLock { check(haze_mpi_allreduce_sum_float(base, buffer.count), "allreduce") }
    }

    /// Element-wise sum over all ranks, returned (the values themselves in a single process).
    public func allreduceSum(_ values: [Double]) -> [Double] {
        guard usesMPI, size > 1 else { return values }
        var v = values
        lock.withLock { check(v.withUnsafeMutableBufferPointer { haze_mpi_allreduce_sum_double($0.baseAddress, $0.count) }, "allreduce") }
        return v
    }

    /// Element-wise maximum over all ranks, returned (the values themselves in a single process).
    public func allreduceMax(_ values: [Double]) -> [Double] {
        guard usesMPI, size > 1 else { return values }
        var v = values
        lock.withLock { check(v.withUnsafeMutableBufferPointer { haze_mpi_allreduce_max_double($0.baseAddress, $0.count) }, "allreduce") }
        return v
    }

    /// Rank `root`'s bytes on every rank.
    public func broadcast(_ data: Data, root: Int = 0) -> Data {
        guard usesMPI, size > 1 else { return data }
        var count = [Double(data.count)]
        lock.withLock { check(haze_mpi_broadcast(&count, 8, Int32(root)), "broadcast") }
        var bytes = [UInt8](repeating: 0, count: Int(count[0]))
        if rank == root { bytes = [UInt8](data) }
        lock.withLock { check(bytes.withUnsafeMutableBytes { haze_mpi_broadcast($0.baseAddress, $0.count, Int32(root)) }, "broadcast") }
        return Data(bytes)
    }

    /// Every rank's value of `bytes` (all of the same length), in rank order.
    public func allgather(_ bytes: [UInt8]) -> [[UInt8]] {
        guard usesMPI, size > 1 else { return [bytes] }
        var all = [UInt8](repeating: 0, count: bytes.count * size)
        lock.withLock {
            check(bytes.withUnsafeBytes { send in all.withUnsafeMutableBytes { haze_mpi_allgather(send.baseAddress, $0.baseAddress, bytes.count) } },
                  "allgather")
        }
        return (0..<size).map { Array(all[($0 * bytes.count)..<(($0 + 1) * bytes.count)]) }
    }

    /// Every rank's floats concatenated in rank order on rank `root` (nil on the others);
    /// `counts[r]` is rank r's count.
    public func gather(_ values: [Float], counts: [Int], root: Int = 0) -> [Float]? {
        guard usesMPI, size > 1 else { return values }
        precondition(counts.count == size && counts[rank] == values.count, "gather: counts \(counts) for \(values.count) values on rank \(rank)")
        var all = [Float](repeating: 0, count: rank == root ? counts.reduce(0, +) : 0)
        let counts32 = counts.map(Int32.init)
        lock.withLock {
            check(values.withUnsafeBufferPointer { send in all.withUnsafeMutableBufferPointer { receive in
                counts32.withUnsafeBufferPointer { haze_mpi_gather_floats(send.baseAddress, send.count, receive.baseAddress, $0.baseAddress, Int32(root)) }
            } }, "gather")
        }
        return rank == root ? all : nil
    }

    /// Whether any rank says true (a collective: every rank must call it at the same point).
    public func any(_ flag: Bool) -> Bool {
        allreduceMax([flag ? 1 : 0])[0] > 0
    }

    /// Waits until every rank has called it (nothing in a single process).
    public func barrier() {
        guard usesMPI, size > 1 else { return }
        lock.withLock { check(haze_mpi_barrier(), "barrier") }
    }

    /// Ends MPI (call once, before the process exits normally).
    public func finish() {
        guard usesMPI else { return }
        lock.withLock { _ = haze_mpi_finalize() }
    }

    /// Stops every rank of the job (after an error on this one).
    public func abort(_ code: Int32 = 1) -> Never {
        if usesMPI { haze_mpi_abort(code) }
        exit(code)
    }

    /// Stops with `message` unless every rank has the same `fingerprint` (e.g. of its options and
    /// data), naming the ranks and the parts that differ. `parts` are the named pieces the
    /// fingerprint is made of, so that the message can say which one differs.
    public func requireAgreement(on parts: [(name: String, value: String)]) throws {
        guard size > 1 else { return }
        let digests = parts.map { Self.digest(Array($0.value.utf8)) }
        let all = allgather(digests.flatMap { d in (0..<8).map { UInt8(truncatingIfNeeded: d >> (8 * $0)) } })
        let mine = all[rank]
        var differing: [String] = []
        for (i, part) in parts.enumerated() where all.contains(where: { $0[(8 * i)..<(8 * i + 8)] != mine[(8 * i)..<(8 * i + 8)] }) {
            let ranks = all.indices.filter { all[$0][(8 * i)..<(8 * i + 8)] != all[0][(8 * i)..<(8 * i + 8)] }
            differing.append("\(part.name) (rank \(rank): \(part.value.prefix(300)); rank\(ranks.count > 1 ? "s" : "") \(ranks.map(String.init).joined(separator: ",")) differ\(ranks.count > 1 ? "" : "s") from rank 0)")
        }
        if !differing.isEmpty {
            throw Failure(description: "the ranks of this job disagree on " + differing.joined(separator: "; ")
                          + ". Every rank must get the same options and see the same data")
        }
    }

    /// FNV-1a, 64 bits, of some bytes (a fingerprint for `requireAgreement`).
    public static func digest(_ bytes: [UInt8]) -> UInt64 {
        bytes.reduce(0xCBF2_9CE4_8422_2325 as UInt64) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
    }
}
