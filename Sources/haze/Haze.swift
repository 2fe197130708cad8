import ArgumentParser
import Foundation
import HazeDistributed
import HazeTensor

/// `haze`: the command-line front end of the Haze diffusion toolkit.
@main
struct Haze: ParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "haze",
        abstract: "Train and sample denoising diffusion models (DDPM, DDIM) on the CPU, in Swift.",
        version: version,
        subcommands: [Train.self, Sample.self, Inpaint.self, Interpolate.self, Encode.self, Noise.self, Evaluate.self, TrainClassifier.self, Predict.self, Inspect.self]
    )
}

/// Options shared by commands that compute.
struct ComputeOptions: ParsableArguments {
    @Option(help: "Worker threads (default: all cores).")
    var threads: Int?

    /// Sets the thread count — by default the host's cores divided by the ranks on this host, so
    /// that 2 ranks on 2 cores do not oversubscribe them; with `report`, rank 0 first writes to
    /// standard error which kernel paths, BLAS kernel, threads and ranks run (so that a log from a
    /// user's machine says what ran).
    func apply(report: Bool = false) throws {
        retainFreedMemory()
        let group = ProcessGroup.world
        if let threads {
            guard threads > 0 else { throw ValidationError("--threads must be at least 1") }
            Parallel.threadCount = threads
        } else if group.localSize > 1 {
            Parallel.threadCount = max(1, ProcessInfo.processInfo.activeProcessorCount / group.localSize)
        }
        if report && group.isRoot {
            let ranks = group.usesMPI ? "; MPI: \(group.size) ranks, \(group.localSize) on this host" : ""
            FileHandle.standardError.write(Data("compute: \(computeDescription)\(ranks)\(precisionDescription)\n".utf8))
        }
    }
}

/// The bf16 part of the start line: the kernel and its measured rate where bf16 runs, or why
/// float32 runs on a CPU that has bf16 products slower than its float32 ones.
private var precisionDescription: String {
    guard let kernel = Precision.bfloat16Kernel else { return "" }
    let rate = Precision.bfloat16RateRatio.map { String(format: " at %.2f× float32's multiply-add rate", $0) } ?? ""
    if Precision.current == .bfloat16 {
        return "; bf16 products on \(kernel)\(rate) (Winograd F(2×2), 1×1 convolutions)" + (Precision.bfloat16Faster ? "" : ", slower than float32 on this CPU")
    }
    return Precision.bfloat16Faster ? "" : "; float32 (bf16 products on \(kernel)\(rate) here: --precision auto keeps f32)"
}

/// The precision option of the commands that compute (set before `ComputeOptions.apply`).
struct PrecisionOption: ParsableArguments {
    /// `--precision`: float32, bf16, or the best this CPU has.
    enum Choice: String, ExpressibleByArgument, CaseIterable {
        case f32, bf16, auto

        init?(argument: String) {
            switch argument {
            case "f32", "float32": self = .f32
            case "bf16", "bfloat16": self = .bf16
            case "auto": self = .auto
            default: return nil
            }
        }
    }

    @Option(help: "f32 (float32, the default), bf16 (bfloat16: the Winograd F(2×2) and 1×1-convolution products in bf16 with float32 sums, on CPUs with bf16 products (AVX512_BF16, AMX-BF16, ARMv8.6 BF16); about 0.4 % RMS error per convolution; in training the forward and input-gradient products, with float32 weights, gradients and AdamW), or auto (bf16 where the CPU's bf16 products are measured faster than its float32 ones, else f32).")
    var precision: Choice?

    /// The precision asked for, or `fallback` when --precision is not given.
    func resolved(fallback: Precision = .float32) throws -> Precision {
        switch precision {
        case nil: return fallback
        case .f32: return .float32
        case .auto: return Precision.bfloat16Faster ? .bfloat16 : .float32
        case .bf16:
            guard Precision.bfloat16Available else { throw ValidationError("--precision bf16 needs a CPU with bf16 products (\(Precision.bfloat16Kernels)); this one has none (use f32 or auto)") }
            return .bfloat16
        }
    }

    /// Sets `Precision.current` from --precision (else `fallback`).
    @discardableResult
    func apply(fallback: Precision = .float32) throws -> Precision {
        let chosen = try resolved(fallback: fallback)
        guard chosen == .float32 || Precision.bfloat16Available else {
            throw ValidationError("this run computes in bf16, which needs a CPU with bf16 products (\(Precision.bfloat16Kernels)); this one has none: give --precision f32")
        }
        Precision.current = chosen
        return chosen
    }
}

/// The images of a sampling request of `images` in batches of `batchSize` that this rank computes
/// (whole batches: its share of them, in rank order), and every rank's image count.
func batchShare(images: Int, batchSize: Int, group: ProcessGroup) -> (mine: Range<Int>, counts: [Int]) {
    let batches = (images + batchSize - 1) / batchSize
    let ranges = group.shares(of: batches).map { b in min(b.lowerBound * batchSize, images)..<min(b.upperBound * batchSize, images) }
    return (ranges[group.rank], ranges.map(\.count))
}

/// Runs a command's body on every rank of an MPI job: an error on one rank (a missing file on one
/// host, say) is printed with its rank and stops the whole job (MPI_Abort), since the other ranks
/// would otherwise wait for it in their next collective. Ends MPI when the body returns.
func runOnEveryRank(_ body: (ProcessGroup) throws -> Void) throws {
    let group = ProcessGroup.world
    do {
        try body(group)
    } catch let error where group.size > 1 && !(error is ExitCode) {
        FileHandle.standardError.write(Data("haze (rank \(group.rank) of \(group.size)): \(error)\n".utf8))
        group.abort(1)
    }
    group.finish()
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

extension Precision: ExpressibleByArgument {}
