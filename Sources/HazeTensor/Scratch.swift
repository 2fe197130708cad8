import Foundation

/// Reusable scratch memory for kernels (im2col columns, gathered gradients), so that a training
/// step does not allocate, zero and page-fault tens of megabytes per convolution.
///
/// Buffers are uninitialised: a kernel must write what it reads. A buffer is lent to one caller
/// at a time; nested requests get distinct buffers. Thread-safe.
enum Scratch {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var free: [(pointer: UnsafeMutablePointer<Float>, capacity: Int)] = []

    /// Lends a buffer of at least `count` floats for the duration of `body`.
    static func withBuffer<R>(_ count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        let buffer = take(Swift.max(count, 1))
        defer { give(buffer) }
        return try body(buffer.pointer)
    }

    private static func take(_ count: Int) -> (pointer: UnsafeMutablePointer<Float>, capacity: Int) {
        lock.lock()
        defer { lock.unlock() }
        // The smallest free buffer that fits; else replace the largest one with a bigger buffer.
        if let index = free.indices.filter({ free[$0].capacity >= count }).min(by: { free[$0].capacity < free[$1].capacity }) {
            return free.remove(at: index)
        }
        if let largest = free.indices.max(by: { free[$0].capacity < free[$1].capacity }) {
            free.remove(at: largest).pointer.deallocate()
        }
        return (UnsafeMutablePointer<Float>.allocate(capacity: count), count)
    }

    private static func give(_ buffer: (pointer: UnsafeMutablePointer<Float>, capacity: Int)) {
        lock.lock()
        free.append(buffer)
        lock.unlock()
    }
}
