import ArgumentParser
import HazeTensor

/// `haze-bench`: Haze's benchmark executable. Build it in release mode (`make bench`).
@main
struct HazeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "haze-bench",
        abstract: "Benchmarks of Haze's kernels (release builds only; compare with PyTorch in the same run).",
        subcommands: [Kernels.self, UNetBench.self, ConvolutionChoices.self, DataParallelBench.self]
    )
}

/// `--conv`: which convolution algorithm to time.
enum ConvolutionChoice: String, ExpressibleByArgument {
    case automatic, im2col
    var algorithm: ConvolutionAlgorithm { self == .automatic ? .automatic : .im2col }
}
