import CHazeMPI
import Foundation
import HazeTensor

/// Sums the gradients of a training step over the ranks of a `ProcessGroup`, in a few large
/// flat buckets started while the backward pass is still running (PyTorch DDP's gradient buckets,
/// Horovod's tensor fusion).
///
/// The trainer hands each parameter's gradient to `add` as soon as the backward pass has
/// finished it (`valueWithGradient(at:onGradientReady:)`). Gradients are copied into the open
/// bucket in that order; a bucket of `bucketBytes` or more is started at once with a non-blocking
/// MPI_Iallreduce, and every later `add` polls the buckets in flight (MPI_Test), which is what
/// makes MPI move them forward while the backward pass computes. `finish` starts the last bucket,
/// waits for all (MPI_Wait) and hands back the sums. No thread of its own: on a machine whose
/// cores all compute, a communication thread spinning in MPI's progress loop would take a core
/// from the backward pass.
///
/// Every rank runs the same graph, so the gradients arrive in the same order and the buckets pair
/// up across ranks. One process: `add` keeps the tensors, `finish` returns them as they are.
public final class GradientReducer {
    struct Bucket {
        var names: [String] = []
        var shapes: [[Int]] = []
        var values: [Float] = []
        /// The values in memory of fixed address while MPI owns them (a Swift array may move).
        var storage: UnsafeMutableBufferPointer<Float>? = nil
        var request: UnsafeMutableRawPointer? = nil
        var done = false
    }

    /// The ranks whose gradients are summed.
    public let group: ProcessGroup
    /// A bucket is started once it holds this many bytes of gradients (Float32) or more.
    public let bucketBytes: Int
    private var open = Bucket()
    private var started: [Bucket] = []
    /// One process: the gradients as they came (nothing to sum, nothing copied).
    private var local: [String: Tensor] = [:]
    /// Seconds spent in `finish` waiting for buckets that were still in flight (communication
    /// not hidden behind the backward pass), over the reducer's life.
    public private(set) var exposedSeconds = 0.0

    /// `bucketBytes`: about 4 MB (fmnist-s's 16 MB of gradients go in 4 buckets; DDP's default
    /// of 25 MB would leave one bucket, started only when the backward pass ends).
    public init(group: ProcessGroup, bucketBytes: Int = 4 << 20) {
        (self.group, self.bucketBytes) = (group, bucketBytes)
    }

    var communicates: Bool { group.usesMPI && group.size > 1 }

    /// Takes one parameter's final gradient (called once per parameter per step).
    public func add(_ name: String, _ gradient: Tensor) {
        guard communicates else {
            local[name] = gradient
            return
        }
        open.names.append(name)
        open.shapes.append(gradient.shape)
        open.values.append(contentsOf: gradient.scalars)
        if open.values.count * 4 >= bucketBytes { startOpenBucket() }
        poll()
    }

    private func startOpenBucket() {
        guard !open.names.isEmpty else { return }
        var bucket = open
        open = Bucket()
        let storage = UnsafeMutableBufferPointer<Float>.allocate(capacity: bucket.values.count)
        _ = storage.initialize(from: bucket.values)
        bucket.values = []
        var request: UnsafeMutableRawPointer? = nil
        let code = haze_mpi_iallreduce_sum_float(storage.baseAddress, storage.count, &request)
        precondition(code == 0, "MPI_Iallreduce failed with error \(code)")
        (bucket.storage, bucket.request) = (storage, request)
        started.append(bucket)
    }

    /// Lets MPI progress the buckets in flight.
    private func poll() {
        for i in started.indices where !started[i].done {
            var done: Int32 = 0
            precondition(haze_mpi_test(&started[i].request, &done) == 0, "MPI_Test failed")
            started[i].done = done != 0
        }
    }

    /// Starts the last bucket, waits for every bucket, and returns the summed gradients by name.
    /// Resets the reducer for the next step.
    public func finish() -> [String: Tensor] {
        guard communicates else {
            defer { local = [:] }
            return local
        }
        startOpenBucket()
        let start = Date()
        for i in started.indices where !started[i].done {
            precondition(haze_mpi_wait(&started[i].request) == 0, "MPI_Wait failed")
            started[i].done = true
        }
        exposedSeconds += Date().timeIntervalSince(start)
        var sums: [String: Tensor] = [:]
        for bucket in started {
            var offset = 0
            let values = Array(bucket.storage!)
            bucket.storage!.deallocate()
            for (name, shape) in zip(bucket.names, bucket.shapes) {
                let count = shape.reduce(1, *)
                sums[name] = Tensor(shape: shape, scalars: Array(values[offset..<(offset + count)]))
                offset += count
            }
        }
        started = []
        return sums
    }
}
