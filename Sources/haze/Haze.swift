import ArgumentParser
import Foundation
import HazeTensor

/// `haze`: the command-line front end of the Haze diffusion toolkit.
@main
struct Haze: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "haze",
        abstract: "Train and sample denoising diffusion models (DDPM, DDIM) on the CPU, in Swift.",
        version: version,
        subcommands: [Train.self, Sample.self, Noise.self, Evaluate.self, TrainClassifier.self, Predict.self, Inspect.self]
    )
}

/// Options shared by commands that compute.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    func apply() throws {
        retainFreedMemory()
        if let threads {
            guard threads > 0 else { throw ValidationError("--threads must be at least 1") }
            Parallel.threadCount = threads
        }
    }
}

/// A problem with the user's files or inputs found while running (printed without the usage text).
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Parses a comma-separated list of numbers (`--timesteps 10,500`).
func parseNumbers(_ text: String, option: String) throws -> [Float] {
    let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
    let values = parts.map { Float($0) }
    guard !parts.isEmpty, values.allSatisfy({ $0 != nil }) else {
        throw ValidationError("\(option) expects comma-separated numbers, e.g. 10,500; got \"\(text)\"")
    }
    return values.map { $0! }
}
