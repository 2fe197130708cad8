import Foundation
import HazeKit

// Makes the pictures and numbers of Haze's tutorial (Documentation/tutorial/) and writes the
// page from its template: `make docs`, or
//   swift run -c release --package-path Examples tutorial [--steps N] [--out DIR] [--run DIR] [--quick]
// --quick: a short smoke run (few training steps, fewer samples) into a temporary folder.
let arguments = Array(CommandLine.arguments.dropFirst())
func option(_ name: String, in arguments: [String] = arguments) -> String? {
    guard let i = arguments.firstIndex(of: name), i + 1 < arguments.count else { return nil }
    return arguments[i + 1]
}
let quick = arguments.contains("--quick")
// This file is REPOSITORY/Examples/Sources/tutorial/main.swift.
let repository = (0..<4).reduce(#filePath) { path, _ in (path as NSString).deletingLastPathComponent }
let out = option("--out") ?? (quick ? NSTemporaryDirectory() + "haze-tutorial-quick" : repository + "/Documentation/tutorial")
let run = option("--run") ?? (quick ? out + "/run" : repository + "/Examples/.build/tutorial-run")
let steps = option("--steps").flatMap(Int.init) ?? (quick ? 30 : 2500)

do {
    let data = try openDataset("fashion-mnist")
    let report = try Report(folder: out)
    let started = Date()
    try forwardProcessChapter(report, data: data)
    try networkChapter(report, data: data)
    let pipeline = try trainingChapter(report, data: data, run: run, steps: steps)
    try samplingChapter(report, pipeline: pipeline, quick: quick)
    try continuousTimeChapter(report, pipeline: pipeline)
    report.set("machine", "\(ProcessInfo.processInfo.activeProcessorCount) cores, \(computeDescription)")
    try report.render(template: repository + "/Documentation/tutorial/template.md", to: out + "/README.md")
    print(String(format: "done in %.0f s", Date().timeIntervalSince(started)))
} catch {
    FileHandle.standardError.write(Data("tutorial: \(error)\n".utf8))
    exit(1)
}
