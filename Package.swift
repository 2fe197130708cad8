// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Haze",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "HazeTensor", targets: ["HazeTensor"]),
        .library(name: "HazeIO", targets: ["HazeIO"]),
        .library(name: "HazeNN", targets: ["HazeNN"]),
        .library(name: "HazeDiffusion", targets: ["HazeDiffusion"]),
        .library(name: "HazeData", targets: ["HazeData"]),
        .library(name: "HazeTraining", targets: ["HazeTraining"]),
        .library(name: "HazeDistributed", targets: ["HazeDistributed"]),
        // The stable high-level API (DiffusionPipeline, Trainer(newRun:…)); re-exports the modules above.
        .library(name: "HazeKit", targets: ["HazeKit"]),
        .executable(name: "haze", targets: ["haze"]),
        .executable(name: "haze-bench", targets: ["haze-bench"]),
        .executable(name: "haze-fuzz", targets: ["haze-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // BLAS: Accelerate on macOS; on Linux OpenBLAS (Debian libopenblas-dev), opened at run
        // time so that Haze can choose its kernel first (see Sources/HazeTensor/BLAS.swift).
        // Vectorised exp-based kernels in C (multiversioned for AVX-512 / AVX2 / baseline).
        .target(name: "CHazeKernels"),
        .target(name: "HazeTensor", dependencies: ["CHazeKernels"]),
        // zlib (Debian zlib1g-dev): PNG compression.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // libpng (Debian libpng-dev): PNG decoding through the simplified API.
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        // libjpeg-turbo (Debian libjpeg62-turbo-dev): JPEG decoding. A C target rather than a
        // module map, because its error handler must longjmp (libjpeg's default one exits).
        .target(name: "CJPEGShim", linkerSettings: [.linkedLibrary("jpeg")]),
        .target(name: "HazeIO", dependencies: ["HazeTensor", "CZlib", "CPNG", "CJPEGShim"]),
        .target(name: "HazeNN", dependencies: ["HazeTensor", "HazeIO"]),
        .target(name: "HazeDiffusion", dependencies: ["HazeTensor", "HazeIO"]),
        .target(name: "HazeData", dependencies: ["HazeTensor", "HazeIO", "CZlib"]),
        // Open MPI (Debian openmpi-bin, libopenmpi3), opened at run time under mpirun/srun only.
        .target(name: "CHazeMPI", linkerSettings: [.linkedLibrary("dl")]),
        .target(name: "HazeDistributed", dependencies: ["HazeTensor", "CHazeMPI"]),
        .target(name: "HazeTraining", dependencies: ["HazeTensor", "HazeIO", "HazeNN", "HazeDiffusion", "HazeData", "HazeDistributed"]),
        .target(name: "HazeKit", dependencies: ["HazeTensor", "HazeIO", "HazeNN", "HazeDiffusion", "HazeData", "HazeTraining"]),
        .executableTarget(
            name: "haze",
            dependencies: [
                "HazeTensor", "HazeIO", "HazeNN", "HazeDiffusion", "HazeData", "HazeTraining", "HazeDistributed",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "haze-bench",
            dependencies: [
                "HazeTensor", "HazeIO", "HazeNN", "HazeData", "HazeTraining", "HazeDistributed",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // libFuzzer harnesses for every file Haze reads from a user (`make fuzz`, built with
        // -DHAZE_FUZZ and --sanitize=fuzzer,address); a plain build is a stub that says so.
        .executableTarget(
            name: "haze-fuzz",
            dependencies: ["HazeTensor", "HazeIO", "HazeNN", "HazeData", "HazeDiffusion", "HazeTraining", "CZlib"]
        ),
        .testTarget(name: "HazeTensorTests", dependencies: ["HazeTensor", "HazeIO"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "HazeIOTests", dependencies: ["HazeIO", "HazeTensor"], exclude: ["Fixtures"]),
        .testTarget(name: "HazeNNTests", dependencies: ["HazeNN", "HazeIO", "HazeTensor"], exclude: ["Fixtures"]),
        .testTarget(name: "HazeDiffusionTests", dependencies: ["HazeDiffusion", "HazeNN", "HazeIO", "HazeTensor"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "HazeTrainingTests", dependencies: ["HazeTraining", "HazeData", "HazeDiffusion", "HazeNN", "HazeIO", "HazeTensor"],
                    exclude: ["Fixtures"]),
        // Runs the built `haze` executable on tiny inputs.
        .testTarget(name: "HazeKitTests", dependencies: ["HazeKit"]),
        .testTarget(name: "HazeCLITests", dependencies: ["haze", "HazeIO", "HazeTensor"]),
    ],
    swiftLanguageModes: [.v5]
)
