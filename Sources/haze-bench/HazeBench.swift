import ArgumentParser

/// `haze-bench`: Haze's benchmark executable. Build it in release mode (`make bench`).
@main
struct HazeBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "haze-bench",
        abstract: "Benchmarks of Haze's kernels (release builds only; compare with PyTorch in the same run).",
        subcommands: [Kernels.self, UNetBench.self]
    )
}
