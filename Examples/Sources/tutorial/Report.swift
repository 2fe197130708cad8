import Foundation
import HazeKit

/// What the tutorial's chapters produce: figures (written under `folder/figures`), measured values
/// and code snippets, which `render` puts into the template in place of `{{value NAME}}`,
/// `{{snippet NAME}}` and `{{figure NAME}}`. A placeholder without a value is an error, so the page
/// never shows a number the code did not measure.
final class Report {
    let folder: String
    private(set) var values: [String: String] = [:]
    private var snippets: [String: String] = [:]

    init(folder: String) throws {
        self.folder = folder
        try FileManager.default.createDirectory(atPath: folder + "/figures", withIntermediateDirectories: true)
        try readSnippets()
    }

    /// Records a measured value for `{{value name}}`.
    func set(_ name: String, _ text: String) {
        values[name] = text
        print("  \(name) = \(text)")
    }

    func set(_ name: String, _ value: Double, format: String) { set(name, String(format: format, value)) }

    /// Writes a figure file and returns its path relative to the page.
    @discardableResult
    func figure(_ name: String, _ data: Data) throws -> String {
        try AtomicFile.write(data, to: folder + "/figures/" + name)
        print("  wrote figures/\(name)")
        return "figures/" + name
    }

    /// A grid of images [N, C, H, W] in [−1, 1] as a PNG figure.
    func grid(_ name: String, _ images: Tensor, columns: Int) throws {
        let g = PNG.grid(images.clamped(min: -1, max: 1), columns: columns)
        try figure(name, PNG.encode(width: g.width, height: g.height, channels: images.shape[1], pixels: g.pixels))
    }

    /// The chapters' code between `// snippet NAME` and `// end snippet` lines, dedented: the
    /// page quotes exactly the code that ran.
    private func readSnippets() throws {
        let directory = (#filePath as NSString).deletingLastPathComponent
        for file in try FileManager.default.contentsOfDirectory(atPath: directory).sorted() where file.hasSuffix(".swift") {
            let lines = try String(contentsOfFile: directory + "/" + file, encoding: .utf8).components(separatedBy: "\n")
            var name: String?
            var body: [String] = []
            for line in lines {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.hasPrefix("// snippet ") {
                    name = String(trimmed.dropFirst("// snippet ".count)); body = []
                } else if trimmed == "// end snippet", let n = name {
                    let indent = body.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
                        .map { $0.prefix { $0 == " " }.count }.min() ?? 0
                    snippets[n] = body.map { String($0.dropFirst(min(indent, $0.count))) }.joined(separator: "\n")
                    name = nil
                } else if name != nil {
                    body.append(line)
                }
            }
        }
    }

    /// Fills the template's placeholders; every one must have a value, snippet or figure.
    func render(template: String, to path: String) throws {
        var text = try String(contentsOfFile: template, encoding: .utf8)
        var missing: [String] = []
        let pattern = try NSRegularExpression(pattern: #"\{\{(value|snippet|figure) ([A-Za-z0-9_.-]+)\}\}"#)
        while let match = pattern.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) {
            let kind = String(text[Range(match.range(at: 1), in: text)!]), name = String(text[Range(match.range(at: 2), in: text)!])
            let replacement: String
            switch kind {
            case "value": replacement = values[name] ?? { missing.append("value \(name)"); return "?" }()
            case "snippet": replacement = snippets[name].map { "```swift\n\($0)\n```" } ?? { missing.append("snippet \(name)"); return "?" }()
            default:
                let exists = FileManager.default.fileExists(atPath: folder + "/figures/" + name)
                if !exists { missing.append("figure \(name)") }
                replacement = "![\(name)](figures/\(name))"
            }
            // A placeholder indented inside a list item: indent the replacement's lines alike.
            let range = Range(match.range, in: text)!
            let lineStart = text[..<range.lowerBound].lastIndex(of: "\n").map { text.index(after: $0) } ?? text.startIndex
            let indent = String(text[lineStart..<range.lowerBound])
            let indented = indent.allSatisfy({ $0 == " " }) && !indent.isEmpty
                ? replacement.replacingOccurrences(of: "\n", with: "\n" + indent) : replacement
            text.replaceSubrange(range, with: indented)
        }
        guard missing.isEmpty else { throw TutorialError("\(template): no \(missing.joined(separator: ", "))") }
        try AtomicFile.write(Data(text.utf8), to: path)
        print("wrote \(path)")
    }
}

struct TutorialError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A line plot as SVG: several named series of (x, y) points, optional log-scale y.
struct LinePlot {
    var title: String
    var xLabel: String
    var yLabel: String
    var logY = false
    var series: [(name: String, points: [(Double, Double)])] = []

    func svg(width: Double = 640, height: Double = 360) -> Data {
        let colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf"]
        let (left, right, top, bottom) = (64.0, 170.0, 34.0, 46.0)
        let all = series.flatMap(\.points)
        func ty(_ y: Double) -> Double { logY ? log10(max(y, 1e-12)) : y }
        let (x0, x1) = (all.map(\.0).min() ?? 0, all.map(\.0).max() ?? 1)
        let (y0, y1) = (all.map { ty($0.1) }.min() ?? 0, all.map { ty($0.1) }.max() ?? 1)
        func px(_ x: Double) -> Double { left + (x - x0) / max(x1 - x0, 1e-12) * (width - left - right) }
        func py(_ y: Double) -> Double { height - bottom - (ty(y) - y0) / max(y1 - y0, 1e-12) * (height - top - bottom) }
        var s = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">\n"
        s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        s += "<text x=\"\(width / 2)\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">\(title)</text>\n"
        s += "<line x1=\"\(left)\" y1=\"\(height - bottom)\" x2=\"\(width - right)\" y2=\"\(height - bottom)\" stroke=\"black\"/>\n"
        s += "<line x1=\"\(left)\" y1=\"\(top)\" x2=\"\(left)\" y2=\"\(height - bottom)\" stroke=\"black\"/>\n"
        for i in 0...4 {
            let fx = x0 + Double(i) / 4 * (x1 - x0), fy = y0 + Double(i) / 4 * (y1 - y0)
            let yValue = logY ? pow(10, fy) : fy
            s += "<text x=\"\(px(fx))\" y=\"\(height - bottom + 16)\" text-anchor=\"middle\">\(String(format: "%g", (fx * 1000).rounded() / 1000))</text>\n"
            let yPixel = height - bottom - Double(i) / 4 * (height - top - bottom)
            s += "<text x=\"\(left - 6)\" y=\"\(yPixel + 4)\" text-anchor=\"end\">\(String(format: "%.3g", yValue))</text>\n"
            s += "<line x1=\"\(left)\" y1=\"\(yPixel)\" x2=\"\(width - right)\" y2=\"\(yPixel)\" stroke=\"#ddd\"/>\n"
        }
        s += "<text x=\"\((left + width - right) / 2)\" y=\"\(height - 8)\" text-anchor=\"middle\">\(xLabel)</text>\n"
        s += "<text x=\"14\" y=\"\(height / 2)\" text-anchor=\"middle\" transform=\"rotate(-90 14 \(height / 2))\">\(yLabel)</text>\n"
        for (k, line) in series.enumerated() {
            let colour = colours[k % colours.count]
            let path = line.points.map { String(format: "%.1f,%.1f", px($0.0), py($0.1)) }.joined(separator: " ")
            s += "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1.6\" points=\"\(path)\"/>\n"
            s += "<line x1=\"\(width - right + 10)\" y1=\"\(top + 10 + Double(k) * 18)\" x2=\"\(width - right + 30)\" y2=\"\(top + 10 + Double(k) * 18)\" stroke=\"\(colour)\" stroke-width=\"2\"/>\n"
            s += "<text x=\"\(width - right + 36)\" y=\"\(top + 14 + Double(k) * 18)\">\(line.name)</text>\n"
        }
        return Data((s + "</svg>\n").utf8)
    }
}

/// max |a − b| over two tensors of one shape.
func maxDifference(_ a: Tensor, _ b: Tensor) -> Float {
    zip(a.scalars, b.scalars).reduce(0) { max($0, abs($1.0 - $1.1)) }
}

/// mean |a − b|.
func meanDifference(_ a: Tensor, _ b: Tensor) -> Float {
    zip(a.scalars, b.scalars).reduce(0) { $0 + abs($1.0 - $1.1) } / Float(max(a.count, 1))
}

/// The first `count` images of a dataset as [count, C, H, W].
func firstImages(_ data: ImageDataset, _ count: Int, from start: Int = 0) -> Tensor {
    let size = data.imageShape.reduce(1, *)
    var pixels = [Float](repeating: 0, count: count * size)
    pixels.withUnsafeMutableBufferPointer { out in
        for i in 0..<count { data.image(start + i, into: out.baseAddress! + i * size) }
    }
    return Tensor(shape: [count] + data.imageShape, scalars: pixels)
}
