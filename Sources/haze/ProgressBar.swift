import Foundation

/// Progress on stderr: a redrawn bar on a terminal; plain lines (about every 10%) otherwise.
final class ProgressBar {
    let label: String
    let total: Int
    let unit: String
    let itemsPerStep: Double
    let start = Date()
    let isTerminal = isatty(STDERR_FILENO) != 0
    private var lastPrinted = -1
    private var lastPrintTime = Date.distantPast
    /// False on the ranks other than 0 of an MPI job: they draw nothing.
    let enabled: Bool

    /// itemsPerStep: how many images one step stands for (for an images/s rate), or 1.
    init(_ label: String, total: Int, unit: String = "steps", itemsPerStep: Double = 1, enabled: Bool = true) {
        (self.label, self.total, self.unit, self.itemsPerStep, self.enabled) = (label, total, unit, itemsPerStep, enabled)
    }

    func update(_ done: Int, extra: String = "") {
        guard enabled else { return }
        let elapsed = Date().timeIntervalSince(start)
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let remaining = done > 0 ? elapsed / Double(done) * Double(total - done) : 0
        var stats = "\(done)/\(total) \(unit)  \(String(format: "%.2f", rate)) \(unit)/s"
        if itemsPerStep != 1 { stats += String(format: "  %.2f images/s", rate * itemsPerStep) }
        stats += "  ETA \(ProgressBar.clock(remaining))" + (extra.isEmpty ? "" : "  " + extra)
        if isTerminal {
            let width = 30, filled = total > 0 ? width * done / total : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(stats)\u{1B}[K".utf8))
            if done == total { FileHandle.standardError.write(Data("\n".utf8)) }
        } else {
            // Every 10% and at least every 30 seconds.
            let decile = total > 0 ? done * 10 / total : 10
            if decile != lastPrinted || done == total || Date().timeIntervalSince(lastPrintTime) >= 30 {
                (lastPrinted, lastPrintTime) = (decile, Date())
                FileHandle.standardError.write(Data("\(label): \(stats)\n".utf8))
            }
        }
    }

    static func clock(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }
}
