import Foundation
import HazeIO

/// The record of a run: `metrics.jsonl` (one JSON object per logged step) and `loss.svg`.
public final class TrainingLog {
    /// The run folder the log files are in.
    public let run: String
    private var losses: [(step: Int, loss: Float)] = []

    /// The log of `run`; on resume it keeps the losses already logged in `metrics.jsonl`.
    public init(run: String) {
        self.run = run
        // On resume, keep the curve of the steps already logged.
        if let text = try? String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8) {
            for line in text.split(separator: "\n") {
                if let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                   let step = object["step"] as? Int, let loss = (object["loss"] as? NSNumber)?.floatValue {
                    losses.append((step, loss))
                }
            }
        }
    }

    /// Appends one line to metrics.jsonl, dropping lines of steps at or after `step` from an
    /// interrupted run being resumed.
    public func append(step: Int, values: [String: Any]) throws {
        losses.removeAll { $0.step >= step }
        if let loss = values["loss"] as? Float { losses.append((step, loss)) }
        var object = values
        object["step"] = step
        let line = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) + Data("\n".utf8)
        let path = run + "/metrics.jsonl"
        if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }  // failure surfaces just below
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seekToEnd()
        try handle.write(contentsOf: line)
    }

    /// Forgets logged steps ≥ `step` (the part of an interrupted run that a resume redoes).
    public func truncate(from step: Int) throws {
        losses.removeAll { $0.step >= step }
        let path = run + "/metrics.jsonl"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return }
        let kept = text.split(separator: "\n").filter { line in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let s = object["step"] as? Int else { return false }
            return s < step
        }
        try AtomicFile.write(Data((kept.joined(separator: "\n") + (kept.isEmpty ? "" : "\n")).utf8), to: path)
    }

    /// Writes the loss curve as an SVG line chart (log-scale loss against step).
    public func writeLossCurve(to path: String? = nil) throws {
        try AtomicFile.write(Data(TrainingLog.svg(losses).utf8), to: path ?? run + "/loss.svg")
    }

    static func svg(_ points: [(step: Int, loss: Float)]) -> String {
        let (width, height, margin) = (640.0, 360.0, 48.0)
        var body = ""
        if let first = points.first, let last = points.last {
            let logs = points.map { log10(Double(max($0.loss, 1e-8))) }
            let (lo, hi) = (logs.min()!, max(logs.max()!, logs.min()! + 1e-6))
            let span = Double(max(last.step - first.step, 1))
            func x(_ s: Int) -> Double { margin + (Double(s - first.step) / span) * (width - 2 * margin) }
            func y(_ l: Double) -> Double { height - margin - (l - lo) / (hi - lo) * (height - 2 * margin) }
            let path = zip(points, logs).map { String(format: "%.1f,%.1f", x($0.0.step), y($0.1)) }.joined(separator: " ")
            body += "<polyline fill=\"none\" stroke=\"#3366cc\" stroke-width=\"1.5\" points=\"\(path)\"/>\n"
            body += String(format: "<text x=\"4\" y=\"%.0f\" font-size=\"11\">%.3g</text>\n", margin, pow(10, hi))
            body += String(format: "<text x=\"4\" y=\"%.0f\" font-size=\"11\">%.3g</text>\n", height - margin, pow(10, lo))
            body += "<text x=\"\(Int(margin))\" y=\"\(Int(height - 16))\" font-size=\"11\">step \(first.step)</text>\n"
            body += "<text x=\"\(Int(width - margin - 60))\" y=\"\(Int(height - 16))\" font-size=\"11\">step \(last.step)</text>\n"
        }
        return """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(Int(width / 2 - 90))" y="24" font-size="14">training loss (MSE, log scale)</text>
        <line x1="\(Int(margin))" y1="\(Int(height - margin))" x2="\(Int(width - margin))" y2="\(Int(height - margin))" stroke="black"/>
        <line x1="\(Int(margin))" y1="\(Int(margin))" x2="\(Int(margin))" y2="\(Int(height - margin))" stroke="black"/>
        \(body)</svg>

        """
    }
}
