import Foundation
import XCTest
import HazeIO
import HazeTensor

/// Whole `haze` commands on the small diffusers fixtures.
final class CLITests: XCTestCase {
    static let unetFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("HazeNNTests/Fixtures/unet").path
    var folder: String!

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "haze-cli-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: folder) }

    /// The built `haze` next to the test bundle.
    static var hazeExecutable: String {
        let beside = Bundle.main.executableURL!.deletingLastPathComponent().appendingPathComponent("haze").path
        // SwiftPM on Linux: the test runner sits next to the products.
        return FileManager.default.fileExists(atPath: beside)
            ? beside : URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("haze").path
    }

    /// Runs `haze` with `arguments`; returns exit status, stdout and stderr. Under
    /// `HAZE_TEST_LAUNCHER` (e.g. "qemu-x86_64 -cpu Nehalem", set by `make test-portable`) the
    /// command runs through that launcher, on the same emulated CPU as the tests.
    func haze(_ arguments: [String]) throws -> (status: Int32, out: String, err: String) {
        let process = Process()
        let executable = URL(fileURLWithPath: Self.hazeExecutable)
        if let launcher = ProcessInfo.processInfo.environment["HAZE_TEST_LAUNCHER"]?.split(separator: " ").map(String.init),
           let program = launcher.first {
            process.executableURL = URL(fileURLWithPath: program.hasPrefix("/") ? program : "/usr/bin/" + program)
            process.arguments = launcher.dropFirst() + [executable.path] + arguments
        } else {
            process.executableURL = executable
            process.arguments = arguments
        }
        let (out, err) = (Pipe(), Pipe())
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile(), errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: outData, as: UTF8.self), String(decoding: errData, as: UTF8.self))
    }

    func writeInput(_ x: Tensor, extra: Tensor? = nil) throws -> String {
        let path = folder + "/x.safetensors"
        var tensors = ["x": x]
        if let extra { tensors["y"] = extra }
        try SafeTensors(tensors: tensors).write(to: path)
        return path
    }

    func testPredictMatchesDiffusers() throws {
        let model = Self.unetFixtures + "/class_cond"
        let io = try SafeTensors.read(contentsOf: model + "/io.safetensors")
        let input = try writeInput(io.tensors["sample"]!)
        let output = folder + "/y.safetensors"
        let run = try haze(["predict", "--model", model, "--input", input, "--timesteps", "250,37",
                            "--class-labels", "3,7", "--output", output])
        XCTAssertEqual(run.status, 0, run.err)
        let y = try SafeTensors.read(contentsOf: output).tensor("sample")
        let expected = io.tensors["out"]!
        let error = zip(y.scalars, expected.scalars).map { abs($0 - $1) }.max()! / expected.scalars.map(abs).max()!
        XCTAssertLessThanOrEqual(error, 1e-4)
    }

    /// A folder converted from the TensorFlow notebook (TFArticleUNet): `inspect` names the class
    /// and counts its parameters, `predict` reproduces TensorFlow's output.
    func testNotebookModelFolder() throws {
        let model = Self.unetFixtures + "/../tf_article/model"
        let io = try SafeTensors.read(contentsOf: Self.unetFixtures + "/../tf_article/io.safetensors")
        let inspected = try haze(["inspect", model])
        XCTAssertEqual(inspected.status, 0, inspected.err)
        XCTAssertTrue(inspected.out.hasPrefix("TFArticleUNet"), inspected.out)
        XCTAssertTrue(inspected.out.contains("parameters: \(io.metadata["params_fixture"]!) (208 tensors"), inspected.out)
        let input = try writeInput(io.tensors["x"]!), output = folder + "/y.safetensors"
        let t = io.tensors["t"]!.scalars.map { String(Int($0)) }.joined(separator: ",")
        let run = try haze(["predict", "--model", model, "--input", input, "--timesteps", t, "--output", output])
        XCTAssertEqual(run.status, 0, run.err)
        let (y, expected) = (try SafeTensors.read(contentsOf: output).tensor("sample"), io.tensors["out"]!)
        XCTAssertLessThanOrEqual(zip(y.scalars, expected.scalars).map { abs($0 - $1) }.max()! / expected.scalars.map(abs).max()!, 1e-4)
    }

    func testPredictRejectsBadInput() throws {
        let conditional = Self.unetFixtures + "/class_cond", plain = Self.unetFixtures + "/attn"
        let good = Tensor.normal([2, 1, 8, 8], seed: 1)
        func expectFailure(_ arguments: [String], _ text: String, line: UInt = #line) throws {
            let run = try haze(["predict", "--output", folder + "/y.safetensors"] + arguments)
            XCTAssertNotEqual(run.status, 0, line: line)
            XCTAssertTrue(run.err.contains(text), "stderr: \(run.err)", line: line)
        }
        let input = try writeInput(good)
        try expectFailure(["--model", conditional, "--input", input, "--timesteps", "1,2", "--class-labels", "3,10"], "class label 10.0 is out of range")
        try expectFailure(["--model", conditional, "--input", input, "--timesteps", "1,2"], "this model is class-conditional")
        try expectFailure(["--model", plain, "--input", input, "--timesteps", "1,2"], "the tensor has 1 channels; the model takes 3")
        try expectFailure(["--model", conditional, "--input", input, "--timesteps", "1,2,3", "--class-labels", "1,2"], "--timesteps has 3 values for a batch of 2")
        try expectFailure(["--model", conditional, "--input", input, "--timesteps", "a"], "expects comma-separated numbers")
        let odd = try writeInput(Tensor.normal([2, 1, 7, 7], seed: 2))
        try expectFailure(["--model", conditional, "--input", odd, "--timesteps", "1", "--class-labels", "1,2"], "must be multiples of 2")
        let two = try writeInput(good, extra: good)
        try expectFailure(["--model", conditional, "--input", two, "--timesteps", "1", "--class-labels", "1,2"], "expected exactly one tensor, found 2")
        try expectFailure(["--model", folder + "/missing", "--input", input, "--timesteps", "1"], "is not a model folder")
    }

    /// A tensor file without a batch of images, found while writing the fuzz harness sample-input
    /// (Sources/haze-fuzz): a scalar x_T crashed `haze sample` (its batch size gives the image count,
    /// read before the shape was checked); an empty batch now gets an error from both commands.
    /// The scalar file is kept in HazeIOTests/Fixtures/fuzz. Also `--train-timesteps` out of range.
    func testTensorFilesWithoutImagesAreRefused() throws {
        let model = Self.unetFixtures + "/attn"
        let scalar = Self.unetFixtures + "/../../../HazeIOTests/Fixtures/fuzz/sample_input_scalar.safetensors"
        let sampled = try haze(["sample", "--model", model, "--steps", "2", "--initial-noise", scalar, "--save-tensor", folder + "/s.safetensors"])
        XCTAssertNotEqual(sampled.status, 0)
        XCTAssertTrue(sampled.err.contains("sample_input_scalar.safetensors: x_T has shape []; expected [B, C, H, W] with at least one image"), sampled.err)
        let empty = try writeInput(Tensor.zeros([0, 1, 8, 8]))
        let emptySample = try haze(["sample", "--model", model, "--steps", "2", "--initial-noise", empty, "--save-tensor", folder + "/s.safetensors"])
        XCTAssertNotEqual(emptySample.status, 0)
        XCTAssertTrue(emptySample.err.contains("x_T has shape [0, 1, 8, 8]; expected [B, C, H, W] with at least one image"), emptySample.err)
        let predicted = try haze(["predict", "--model", model, "--input", empty, "--timesteps", "1", "--output", folder + "/y.safetensors"])
        XCTAssertNotEqual(predicted.status, 0)
        XCTAssertTrue(predicted.err.contains("the tensor has shape [0, 1, 8, 8]; expected [B, C, H, W] with B ≥ 1"), predicted.err)
        let trained = try haze(["train", "--data", folder, "--out", folder + "/run", "--steps", "1", "--train-timesteps", "0"])
        XCTAssertNotEqual(trained.status, 0)
        XCTAssertTrue(trained.err.contains("--train-timesteps must be 2…100000, not 0"), trained.err)
    }

    func testInspect() throws {
        let run = try haze(["inspect", Self.unetFixtures + "/cifar_like"])
        XCTAssertEqual(run.status, 0, run.err)
        XCTAssertTrue(run.out.contains("parameters: 36787 (328 tensors, dtypes F32)"), run.out)
        XCTAssertTrue(run.out.contains("down_blocks.1        3608"), run.out)
        let file = try haze(["inspect", Self.unetFixtures + "/attn/io.safetensors"])
        XCTAssertTrue(file.out.contains("sample  F32  [2, 3, 8, 8]"), file.out)
        let version = try haze(["--version"])
        XCTAssertEqual(version.out.trimmingCharacters(in: .whitespacesAndNewlines), "0.1.0")
    }

    /// The sampler guide's model (assets/fmnist-small-guide, float16 EMA weights checked in): it
    /// reads as fmnist-small and samples finite images.
    func testGuideModelLoadsAndSamples() throws {
        if ProcessInfo.processInfo.environment["HAZE_TEST_LAUNCHER"] != nil { throw XCTSkip("minutes under an emulator; run natively") }
        let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("assets/fmnist-small-guide").path
        let inspected = try haze(["inspect", model])
        XCTAssertEqual(inspected.status, 0, inspected.err)
        XCTAssertTrue(inspected.out.contains("parameters: 3939393 (270 tensors, dtypes F16)"), inspected.out)
        let tensor = folder + "/guide.safetensors"
        let sampled = try haze(["sample", "--model", model, "--scheduler", "dpm++2m", "--steps", "4", "--count", "2",
                                "--out", folder + "/guide.png", "--save-tensor", tensor])
        XCTAssertEqual(sampled.status, 0, sampled.err)
        let images = try SafeTensors.read(contentsOf: tensor).tensor("sample")
        XCTAssertEqual(images.shape, [2, 1, 28, 28])
        let values = images.scalars.sorted()
        XCTAssertTrue(values.allSatisfy { $0.isFinite && abs($0) <= 1.5 }, "samples near [-1, 1]: \(values.first!)…\(values.last!)")
        // Fashion-MNIST's background is black: a trained model's median pixel is near −1 (−0.98 when
        // this was written), a broken one's noise near 0.
        XCTAssertLessThan(values[values.count / 2], -0.5)
    }

    func testSampleWritesFilesAndRejectsBadInput() throws {
        let conditional = Self.unetFixtures + "/class_cond", plain = Self.unetFixtures + "/attn"
        let grid = folder + "/grid.png", tensor = folder + "/s.safetensors", gif = folder + "/d.gif"
        let run = try haze(["sample", "--model", conditional, "--scheduler", "ddim", "--steps", "5", "--count", "3",
                            "--class-labels", "1,2,3", "--guidance-scale", "2", "--out", grid, "--save-tensor", tensor, "--gif", gif])
        XCTAssertEqual(run.status, 0, run.err)
        // The first line says what ran: kernel paths as CPUID reports them, BLAS, threads.
        // (An emulator's warnings may come first. Whether OpenBLAS's kernel was Haze's choice or
        // the environment's depends on whether this process had loaded BLAS before it started
        // the command, which inherits the OPENBLAS_CORETYPE that Haze sets.)
        let first = try XCTUnwrap(run.err.split(separator: "\n").first { !$0.hasPrefix("qemu-") }.map(String.init))
        XCTAssertTrue(first.hasPrefix("compute: \(CPUFeatures.current.kernelDescription); BLAS: "), first)
        XCTAssertEqual(first.components(separatedBy: " kernel (").first, computeDescription.components(separatedBy: " kernel (").first.map { "compute: " + $0 })
        XCTAssertEqual(try SafeTensors.read(contentsOf: tensor).tensor("sample").shape, [3, 1, 8, 8])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: grid)).prefix(4), Data([0x89, 0x50, 0x4E, 0x47]))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: gif)).prefix(6), Data("GIF89a".utf8))
        // Same seed, same samples.
        let again = folder + "/s2.safetensors"
        _ = try haze(["sample", "--model", conditional, "--scheduler", "ddim", "--steps", "5", "--count", "3",
                      "--class-labels", "1,2,3", "--guidance-scale", "2", "--save-tensor", again])
        XCTAssertEqual(try SafeTensors.read(contentsOf: again).tensors, try SafeTensors.read(contentsOf: tensor).tensors)

        func expectFailure(_ arguments: [String], _ text: String, line: UInt = #line) throws {
            let r = try haze(["sample", "--save-tensor", folder + "/bad.safetensors"] + arguments)
            XCTAssertNotEqual(r.status, 0, line: line)
            XCTAssertTrue(r.err.contains(text), "stderr: \(r.err)", line: line)
        }
        let wrongNoise = try writeInput(Tensor.normal([2, 1, 8, 4], seed: 3))
        try expectFailure(["--model", conditional, "--class-label", "1", "--initial-noise", wrongNoise], "x_T has shape [2, 1, 8, 4]")
        var nonFinite = Tensor.normal([1, 1, 8, 8], seed: 4).scalars
        nonFinite[5] = .nan
        try expectFailure(["--model", conditional, "--class-label", "1", "--initial-noise", try writeInput(Tensor(shape: [1, 1, 8, 8], scalars: nonFinite))],
                          "x_T holds nan at element 5")
        // A model whose output is NaN: a clear error, and no file written.
        let broken = folder + "/nan-model", brokenGrid = folder + "/nan.png"
        try FileManager.default.createDirectory(atPath: broken, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: plain + "/config.json", toPath: broken + "/config.json")
        var weights = try SafeTensors.read(contentsOf: plain + "/diffusion_pytorch_model.safetensors").tensors
        var bias = weights["conv_out.bias"]!.scalars
        bias[0] = .nan
        weights["conv_out.bias"] = Tensor(shape: [bias.count], scalars: bias)
        try SafeTensors(tensors: weights, metadata: ["format": "pt"]).write(to: broken + "/diffusion_pytorch_model.safetensors")
        try expectFailure(["--model", broken, "--steps", "3", "--count", "1", "--out", brokenGrid], "the samples hold non-finite values")
        XCTAssertFalse(FileManager.default.fileExists(atPath: brokenGrid))
        try expectFailure(["--model", conditional, "--class-label", "10"], "class label 10 is out of range")
        try expectFailure(["--model", plain, "--guidance-scale", "3"], "--guidance-scale needs a class-conditional model")
        try expectFailure(["--model", plain, "--steps", "2000"], "trained with 1000 timesteps")
        try expectFailure(["--model", plain, "--scheduler", "lms"], "unknown --scheduler lms")
        try expectFailure(["--model", plain, "--scheduler", "ddim", "--sigmas", "karras"], "--sigmas karras needs a scheduler that works in σ")
        // Heun with Karras σ and the SDE solver with exponential σ run end to end, with distinct results.
        var results: [Tensor] = []
        for arguments in [["--scheduler", "heun", "--sigmas", "karras"], ["--scheduler", "dpm++2m-sde", "--sigmas", "exponential"]] {
            let r = try haze(["sample", "--model", plain, "--steps", "4", "--count", "2", "--save-tensor", tensor] + arguments)
            XCTAssertEqual(r.status, 0, r.err)
            results.append(try SafeTensors.read(contentsOf: tensor).tensor("sample"))
        }
        XCTAssertEqual(results[0].shape, [2, 3, 8, 8])
        XCTAssertTrue(results[0].scalars.allSatisfy(\.isFinite) && results[1].scalars.allSatisfy(\.isFinite))
        XCTAssertNotEqual(results[0], results[1])

        // SDEdit on a folder: one output per input, named after it; a strength near 0 stays near the input.
        let inputs = folder + "/inputs", cleaned = folder + "/cleaned"
        try FileManager.default.createDirectory(atPath: inputs, withIntermediateDirectories: true)
        let originals = Tensor.uniform([2, 3, 8, 8], low: -1, high: 1, seed: 8)
        for (name, pixels) in zip(["b", "a"], PNG.pixels(originals)) {
            try PNG.encode(width: 8, height: 8, channels: 3, pixels: pixels).write(to: URL(fileURLWithPath: inputs + "/\(name).png"))
        }
        for strength in ["0.1", "1"] {
            let r = try haze(["sample", "--model", plain, "--init-image", inputs, "--strength", strength, "--scheduler", "ddim",
                              "--steps", "10", "--out-dir", cleaned, "--save-tensor", tensor])
            XCTAssertEqual(r.status, 0, r.err)
            results.append(try SafeTensors.read(contentsOf: tensor).tensor("sample"))
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: cleaned).sorted(), ["a.png", "b.png"])
        let inOrder = Tensor.concatenate([originals.slice(1..<2), originals.slice(0..<1)], alongAxis: 0)  // a, b
        func distance(_ x: Tensor) -> Float { (x - inOrder).abs().mean().scalar }
        XCTAssertLessThan(distance(results[2]), 0.5 * distance(results[3]), "strength 0.1 stays closer to the inputs than 1")
        try expectFailure(["--model", plain, "--init-image", inputs, "--strength", "0"], "--strength must be in (0, 1]")
        try expectFailure(["--model", conditional, "--class-label", "1", "--init-image", inputs], "the image has 3 channels; this model makes 1-channel images")
        try PNG.encode(width: 4, height: 4, channels: 3, pixels: [UInt8](repeating: 9, count: 48)).write(to: URL(fileURLWithPath: inputs + "/c.png"))
        try expectFailure(["--model", plain, "--init-image", inputs], "c.png: the image is 4×4; this model makes 8×8 images")
    }

    func testEvaluateScoresImageFolders() throws {
        // Six random 28×28 grayscale PNGs; the classifier weights copied so the cache lands here.
        let images = folder + "/images", classifier = folder + "/classifier.safetensors"
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        for (i, pixels) in PNG.pixels(Tensor.uniform([6, 1, 28, 28], low: -1, high: 1, seed: 5)).enumerated() {
            try PNG.encode(width: 28, height: 28, channels: 1, pixels: pixels).write(to: URL(fileURLWithPath: images + "/\(i).png"))
        }
        let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        try FileManager.default.copyItem(atPath: repository.appendingPathComponent("assets/fmnist-classifier.safetensors").path, toPath: classifier)
        let json = folder + "/metrics.json"
        let run = try haze(["evaluate", "--samples", images, "--reference", images, "--classifier", classifier, "--json", json])
        XCTAssertEqual(run.status, 0, run.err)
        let metrics = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [String: Any])
        // The same images as samples and reference: FID 0 up to rounding.
        XCTAssertEqual(try XCTUnwrap(metrics["fid"] as? Double), 0, accuracy: 1e-3)
        XCTAssertEqual(metrics["count"] as? Int, 6)
        XCTAssertTrue(FileManager.default.fileExists(atPath: classifier + "." + images.replacingOccurrences(of: "/", with: "_") + ".test.stats.safetensors"))

        func expectFailure(_ arguments: [String], _ text: String, line: UInt = #line) throws {
            let r = try haze(["evaluate", "--classifier", classifier, "--reference", images] + arguments)
            XCTAssertNotEqual(r.status, 0, line: line)
            XCTAssertTrue(r.err.contains(text), "stderr: \(r.err)", line: line)
        }
        try expectFailure(["--model", Self.unetFixtures + "/attn"], "classifier features need a 28×28 grayscale model")
        try expectFailure(["--samples", images, "--features", "inception", "--inception-weights", folder + "/none.safetensors"],
                          "scripts/convert_fid_inception.py")
        try expectFailure(["--samples", folder + "/missing"], "missing")
        try expectFailure(["--samples", images, "--scheduler", "dpm++2m", "--eta", "0.5"], "--eta applies to the ddim scheduler only")
        let wrong = folder + "/wrong.safetensors"
        try SafeTensors(tensors: ["conv1.weight": Tensor.zeros([3])]).write(to: wrong)
        let r = try haze(["evaluate", "--classifier", wrong, "--samples", images, "--reference", images])
        XCTAssertTrue(r.status != 0 && r.err.contains("\(wrong): not weights of Haze's feature classifier")
                      && r.err.contains("conv1.weight: expected [32, 1, 3, 3], found [3]"), r.err)
    }
}
