import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Crash-safe file writing: the bytes go to a temporary file in the same folder, which is
/// fsynced and then renamed over the destination, and the folder is fsynced. A reader sees
/// the old file or the new one, never half of one.
public enum AtomicFile {
    /// A failed write: the destination and what went wrong (create, write, fsync or rename).
    public struct WriteError: Error, CustomStringConvertible {
        /// The destination path.
        public let path: String
        /// What went wrong, with the system's error message.
        public let problem: String
        public var description: String { "\(path): \(problem)" }
    }

    /// Writes `data` to `path` through a temporary file, fsync and rename. Throws `WriteError` when
    /// the temporary file cannot be created or written or cannot be renamed into place (the
    /// temporary file is then removed and `path` is left as it was).
    public static func write(_ data: Data, to path: String) throws {
        let url = URL(fileURLWithPath: path)
        let folder = url.deletingLastPathComponent().path
        let temporary = folder + "/.\(url.lastPathComponent).tmp-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw WriteError(path: path, problem: "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var written = 0
        let ok = data.withUnsafeBytes { raw -> Bool in
            while written < raw.count {
                let n = Foundation.write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 { if errno == EINTR { continue }; return false }
                written += n
            }
            return fsync(fd) == 0
        }
        let error = errno
        close(fd)
        guard ok else {
            unlink(temporary)
            throw WriteError(path: path, problem: "write failed: \(String(cString: strerror(error)))")
        }
        guard rename(temporary, path) == 0 else {
            let e = errno
            unlink(temporary)
            throw WriteError(path: path, problem: "cannot rename the temporary file into place: \(String(cString: strerror(e)))")
        }
        let dir = open(folder, O_RDONLY)
        if dir >= 0 { fsync(dir); close(dir) }
    }
}
