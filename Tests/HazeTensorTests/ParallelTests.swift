import Dispatch
import XCTest
@testable import HazeTensor

/// `Parallel.forEach` on the worker pool of haze_parallel.c: every index exactly once, whatever
/// the thread count, cost and chunking; loops nested in a chunk, and loops started from several
/// threads at once (the second goes to libdispatch), as well.
final class ParallelTests: XCTestCase {
    /// How often each index of `0..<count` was visited, counted with atomic adds from any thread.
    private final class Visits: @unchecked Sendable {
        let counts: UnsafeMutablePointer<Int>, count: Int
        private let lock = NSLock()
        init(_ count: Int) {
            self.count = count
            counts = .allocate(capacity: count)
            counts.initialize(repeating: 0, count: count)
        }
        deinit { counts.deallocate() }
        func visit(_ range: Range<Int>) {
            lock.lock()
            for i in range { counts[i] += 1 }
            lock.unlock()
        }
        var allOnce: Bool { (0..<count).allSatisfy { counts[$0] == 1 } }
    }

    func testEveryIndexOnce() {
        let saved = Parallel.threadCount
        defer { Parallel.threadCount = saved }
        for threads in [1, 2, 3, 5] {
            Parallel.threadCount = threads
            for count in [1, 2, 3, 7, 64, 1000] {
                for chunksPerThread in [1, 4] {
                    let visits = Visits(count)
                    Parallel.forEach(count, cost: 1 << 20, chunksPerThread: chunksPerThread) { visits.visit($0) }
                    XCTAssertTrue(visits.allOnce, "\(count) indices, \(threads) threads, \(chunksPerThread) chunks per thread")
                }
            }
        }
    }

    /// Many short loops back to back (the pool's workers between spinning and sleeping), each
    /// writing its own slots.
    func testBackToBackLoops() {
        var sums = [Int](repeating: 0, count: 2000)
        sums.withUnsafeMutableBufferPointer { out in
            for loop in 0..<out.count {
                var partial = [Int](repeating: 0, count: 8)
                partial.withUnsafeMutableBufferPointer { slots in
                    Parallel.forEach(8, cost: 1 << 20, chunksPerThread: 1) { range in
                        for i in range { slots[i] = loop + i }
                    }
                }
                out[loop] = partial.reduce(0, +)
                if loop % 500 == 0 { usleep(1000) }  // long enough for the workers to go to sleep
            }
        }
        XCTAssertEqual(sums, (0..<2000).map { 8 * $0 + 28 })
    }

    func testNestedLoops() {
        let visits = Visits(40 * 50)
        Parallel.forEach(40, cost: 1 << 20) { outer in
            for i in outer {
                Parallel.forEach(50, cost: 1 << 20) { inner in visits.visit((i * 50 + inner.lowerBound)..<(i * 50 + inner.upperBound)) }
            }
        }
        XCTAssertTrue(visits.allOnce)
    }

    func testLoopsFromSeveralThreads() {
        let visits = Visits(6 * 300)
        DispatchQueue.concurrentPerform(iterations: 6) { caller in
            for round in 0..<10 {
                Parallel.forEach(30, cost: 1 << 20) { range in
                    visits.visit((caller * 300 + round * 30 + range.lowerBound)..<(caller * 300 + round * 30 + range.upperBound))
                }
            }
        }
        XCTAssertTrue(visits.allOnce)
    }
}
