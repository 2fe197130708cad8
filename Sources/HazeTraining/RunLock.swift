import Foundation
import HazeData
import HazeDistributed
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One process's exclusive claim on a run folder, for as long as it trains: `flock` on
/// `RUN/.lock`, which the kernel releases when the process ends however it ends, so a killed run
/// leaves no stale lock. A second `haze train --resume` of the same folder is refused before it
/// writes anything. Holding the lock, the trainer removes what interrupted writes left behind
/// (`RUN/.NAME.tmp-PID`, `checkpoints/.tmp-step-N/`): no other process can be writing them.
public final class RunLock {
    let descriptor: Int32
    /// The run folder.
    public let run: String

    /// Takes the lock of `run` (creating `RUN/.lock`, which records this process's id), then
    /// removes what interrupted writes left behind. Throws `Checkpoint.Error` when the folder
    /// cannot be written or another process holds the lock.
    public init(run: String) throws {
        self.run = run
        let path = run + "/.lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw Checkpoint.Error(path: run, problem: "cannot be written (\(String(cString: strerror(errno))))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            close(fd)
            throw Checkpoint.Error(path: run, problem: "is being trained by another process" + (holder.isEmpty ? "" : " (pid \(holder))")
                                   + ": one haze train per run folder at a time")
        }
        let pid = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) == 0 { _ = pid.withUnsafeBytes { Foundation.write(fd, $0.baseAddress, $0.count) } }
        descriptor = fd
        removeInterruptedWrites()
    }

    deinit { close(descriptor) }

    /// Temporary files and folders of writes that never finished (a crash or kill between
    /// creating and renaming them), in the run folder and the folders Haze writes into.
    func removeInterruptedWrites() {
        let fm = FileManager.default
        for folder in [run, run + "/checkpoints", run + "/samples"] {
            for name in (try? fm.contentsOfDirectory(atPath: folder)) ?? []
            where name.hasPrefix(".") && (name.contains(".tmp-") || name.hasPrefix(".tmp-")) {
                try? fm.removeItem(atPath: folder + "/" + name)
            }
        }
    }
}

/// A short description of a dataset that changes when its images do: size, shape, classes and a
/// digest of the first, middle and last images. Stored with every checkpoint, so that a resume
/// on other data is noticed; MPI ranks compare it before training together.
public func dataFingerprint(_ dataset: ImageDataset) -> String {
    let size = dataset.imageShape.reduce(1, *)
    var pixels = [Float](repeating: 0, count: size)
    var images: [String] = []
    for index in Set([0, dataset.count / 2, dataset.count - 1]).sorted() {
        pixels.withUnsafeMutableBufferPointer { dataset.image(index, into: $0.baseAddress!) }
        let digest = ProcessGroup.digest(pixels.withUnsafeBytes { Array($0) })
        images.append("image \(index) \(String(digest, radix: 16)) label \(dataset.label(index).map(String.init) ?? "-")")
    }
    return "\(dataset.count) images \(dataset.imageShape), \(dataset.classCount.map(String.init) ?? "no") classes, "
        + images.joined(separator: ", ")
}
