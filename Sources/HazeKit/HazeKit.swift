// HazeKit: the small, stable API for the common cases, on top of Haze's modules.
//
// `import HazeKit` brings in every library module (`HazeTensor`, `HazeIO`, `HazeNN`,
// `HazeDiffusion`, `HazeData`, `HazeTraining`), so the lower layers stay open to a program that
// starts here. What this file and its neighbours declare is **stable**: it changes only with
// Haze's major version (see Documentation/library.md). The lower modules are public too, but may
// change in a minor version.
//
//     import HazeKit
//     let pipeline = try DiffusionPipeline(contentsOf: "runs/fm1")
//     let images = try pipeline.sample(count: 16, scheduler: .ddim, steps: 50)
//     try PNG.writeGrid(images, to: "grid.png")

@_exported import HazeData
@_exported import HazeDiffusion
@_exported import HazeIO
@_exported import HazeNN
@_exported import HazeTensor
@_exported import HazeTraining
