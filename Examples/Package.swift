// swift-tools-version:6.0
// Haze's examples: a separate package that depends on Haze by path, as a user's project would
// (`make examples` builds and runs them; `make test` does too, so they never rot).
import PackageDescription

let haze: Target.Dependency = .product(name: "HazeKit", package: "Haze")

let package = Package(
    name: "HazeExamples",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "Haze", path: ".."),
    ],
    targets: [
        .executableTarget(name: "sample-folder", dependencies: [haze]),
        .executableTarget(name: "train-on-tensors", dependencies: [haze]),
        .executableTarget(name: "custom-scheduler", dependencies: [haze]),
        // Makes the tutorial's pictures and numbers (`make docs`).
        .executableTarget(name: "tutorial", dependencies: [haze]),
    ]
)
