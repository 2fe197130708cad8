import CZlib
import Foundation

/// The IDX format of MNIST and Fashion-MNIST (LeCun et al.): magic 0x00 0x00 0x08 (unsigned
/// bytes) and the rank, then each extent as a big-endian UInt32, then the data. Files may be
/// gzip-compressed (read through zlib, which also reads plain files).
public struct IDXFile {
    /// Extent of each axis as the header gives it (e.g. [60000, 28, 28] for MNIST training images).
    public let shape: [Int]
    /// The data, `shape.reduce(1, *)` unsigned bytes in row-major order.
    public let bytes: [UInt8]

    /// A damaged or unexpected IDX file: which file and what is wrong.
    public struct Error: Swift.Error, CustomStringConvertible {
        /// The path of the file.
        public let file: String
        /// What is wrong with it, for the user.
        public let problem: String
        public var description: String { "\(file): \(problem)" }
    }

    /// Reads and validates an IDX file of unsigned bytes, gzip-compressed or not. Throws `Error` when
    /// the file is missing, not IDX, not of unsigned bytes, of rank outside 1…4, too large (2³² bytes
    /// or more), or truncated.
    public init(contentsOf path: String) throws {
        func fail(_ problem: String) -> Error { Error(file: path, problem: problem) }
        guard FileManager.default.fileExists(atPath: path) else { throw fail("no such file") }
        guard let file = gzopen(path, "rb") else { throw fail("cannot be opened") }
        defer { gzclose(file) }
        // In chunks, the buffer growing with the data actually read: a header may declare up to
        // 4 GB, and a damaged file must not make Haze allocate that before it finds the data missing.
        func read(_ count: Int) throws -> [UInt8] {
            var buffer: [UInt8] = []
            buffer.reserveCapacity(min(count, 1 << 26))  // Fashion-MNIST's 47 MB in one allocation
            var chunk = [UInt8](repeating: 0, count: min(count, 1 << 20))
            while buffer.count < count {
                let wanted = min(count - buffer.count, chunk.count)
                let n = chunk.withUnsafeMutableBytes { gzread(file, $0.baseAddress!, UInt32(wanted)) }
                if n < 0 { throw fail("corrupt compressed data") }
                if n == 0 { throw fail("truncated: expected \(count) bytes, found \(buffer.count)") }
                buffer.append(contentsOf: chunk.prefix(Int(n)))
            }
            return buffer
        }
        let magic = try read(4)
        guard magic[0] == 0, magic[1] == 0 else { throw fail("not an IDX file (bad magic number)") }
        guard magic[2] == 0x08 else { throw fail("IDX element type 0x\(String(magic[2], radix: 16)) is not unsigned bytes") }
        let rank = Int(magic[3])
        guard (1...4).contains(rank) else { throw fail("IDX rank \(rank) is not 1…4") }
        let header = try read(4 * rank)
        shape = (0..<rank).map { i in header[(4 * i)..<(4 * i + 4)].reduce(0) { $0 << 8 | Int($1) } }
        // Four extents of up to 2³² − 1 overflow an Int: multiply with a check.
        let (count, overflow) = shape.reduce((1, false)) { acc, n in
            let (p, o) = acc.0.multipliedReportingOverflow(by: n)
            return (p, acc.1 || o)
        }
        guard !overflow, count > 0, count < 1 << 32 else { throw fail("IDX shape \(shape) is empty or too large") }
        bytes = try read(count)
    }
}
