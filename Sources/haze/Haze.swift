import ArgumentParser
import HazeTensor

/// `haze`: the command-line front end of the Haze diffusion toolkit.
@main
struct Haze: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "haze",
        abstract: "Train and sample denoising diffusion models (DDPM, DDIM) on the CPU, in Swift.",
        discussion: "More subcommands (train, sample, noise, predict, inspect, evaluate) arrive with the model and training work.",
        version: version,
        subcommands: []
    )
}
