import CHazeKernels
import Dispatch
import Foundation

/// Data-parallel loops over disjoint index ranges, on all cores.
///
/// Kernels split their *output* into ranges and let each worker write only its own range, so no
/// two threads ever write the same memory. BLAS runs single-threaded (see BLAS.swift), so kernels
/// may call it from inside these loops, one call per worker, without oversubscribing the cores.
public enum Parallel {
    /// Number of worker threads (defaults to the number of active cores).
    nonisolated(unsafe) public static var threadCount = max(1, ProcessInfo.processInfo.activeProcessorCount)

    /// The number of work items a kernel aims for when it splits a computation whose result
    /// depends on the split (GEMM shapes, partial sums). Such splits are fixed by the shapes and
    /// this constant, never by `threadCount`, so every thread count gives the same bits: a run
    /// resumed on a machine with another core count continues bit for bit. Up to this many
    /// threads share such work evenly.
    public static let minimumItems = 8

    /// Calls `body` on disjoint subranges covering `0..<count`, in parallel when the work is
    /// large enough. `cost` is an estimate of the work per index (in simple operations): loops
    /// under about 32k operations run on the calling thread.
    /// `chunksPerThread` > 1 evens out uneven work: a loop ends with the threads waiting for the
    /// last chunk, about half a chunk each. 16 chunks a thread (taking one is an atomic increment)
    /// cut the time fmnist-s inference spends waiting from 5.1–5.5 % to 3.3–3.4 % (perf, two
    /// threads, AMD Zen 4; 4 before). With 1 the ranges are fixed by the thread count alone, so a
    /// range can accumulate into its own buffer and the buffers be summed in a fixed order.
    ///
    /// The chunks run on the calling thread and the workers of haze_parallel.c, which spin for a
    /// moment between loops instead of sleeping: a training step runs about a thousand loops, many
    /// of them tens of microseconds long, and libdispatch's `concurrentPerform` (used before) paid a
    /// thread wake-up for each (2-core Intel Xeon, medians of three alternating runs, training step
    /// and inference: fmnist-s batch 64 770 → 654 and 187 → 178 ms, cifar-ddpm batch 8 922 → 822 and
    /// 265 → 226 ms; Documentation/speed.md, "The worker pool and small batches"). A loop nested in
    /// another's chunk runs on its thread; one started while another thread's loop runs goes to
    /// `concurrentPerform`.
    public static func forEach(_ count: Int, cost: Int = 1, chunksPerThread: Int = 16, _ body: (Range<Int>) -> Void) {
        guard count > 0 else { return }
        let threads = min(threadCount, count, max(1, count * max(cost, 1) / 32_768))
        if threads <= 1 {
            body(0..<count)
            return
        }
        let chunks = min(count, threads * chunksPerThread)
        func run(_ chunk: Int) {
            let start = chunk * count / chunks
            let end = (chunk + 1) * count / chunks
            if start < end { body(start..<end) }
        }
        let outcome = withoutActuallyEscaping(run) { run in
            var task = run
            return withUnsafeMutablePointer(to: &task) { pointer in
                haze_parallel_run(chunks, threads, { context, chunk in
                    context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(chunk)
                }, pointer)
            }
        }
        switch outcome {
        case 1: return
        case 0: for chunk in 0..<chunks { run(chunk) }
        default: DispatchQueue.concurrentPerform(iterations: chunks, execute: run)
        }
    }
}

#if canImport(Glibc)
import Glibc

/// Keeps freed memory in the process (glibc malloc) instead of returning large blocks to the
/// kernel after every op: a training step frees and reallocates hundreds of megabytes, and
/// fresh pages cost a page fault and zeroing each. Call once at start-up (the executables do).
public func retainFreedMemory() {
    // mallopt from <malloc.h> (not in Swift's Glibc module): M_TRIM_THRESHOLD = −1,
    // M_MMAP_THRESHOLD = −3.
    typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "mallopt") else { return }
    let mallopt = unsafeBitCast(symbol, to: Mallopt.self)
    _ = mallopt(-3, 1 << 30)
    _ = mallopt(-1, Int32.max)
}
#else
/// Does nothing where glibc's malloc is not used (macOS).
public func retainFreedMemory() {}
#endif
