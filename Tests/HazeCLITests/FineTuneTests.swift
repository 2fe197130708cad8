import Foundation
import XCTest
import HazeIO
import HazeTensor

/// Fine-tuning (`haze train --init-from`) and the model layouts users bring: a pipeline that
/// diffusers' `DDPMPipeline.save_pretrained` wrote (scripts/make_trainer_lockstep_fixtures.py),
/// its `unet/` alone, Haze runs, and pickle-only folders.
extension CLITests {
    static let trainingFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("HazeTrainingTests/Fixtures").path

    /// `count` random RGB PNGs of `side`×`side` in a new folder.
    func writeImages(count: Int, side: Int, name: String = "images") throws -> String {
        let images = folder + "/" + name
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        for (i, pixels) in PNG.pixels(Tensor.uniform([count, 3, side, side], low: -1, high: 1, seed: 9)).enumerated() {
            try PNG.encode(width: side, height: side, channels: 3, pixels: pixels).write(to: URL(fileURLWithPath: images + "/\(i).png"))
        }
        return images
    }

    func trainerState(_ run: String) throws -> [String: Any] {
        let latest = try String(contentsOfFile: run + "/latest", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(run)/\(latest)/trainer_state.json"))
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    func testPipelineFoldersLoadAsDiffusersWroteThem() throws {
        let pipeline = Self.trainingFixtures + "/pipeline"
        let io = try SafeTensors.read(contentsOf: Self.trainingFixtures + "/pipeline_io.safetensors")
        let input = try writeInput(io.tensors["sample"]!)
        for model in [pipeline, pipeline + "/unet"] {
            let output = folder + "/y.safetensors"
            let run = try haze(["predict", "--model", model, "--input", input, "--timesteps", "10,500", "--output", output])
            XCTAssertEqual(run.status, 0, run.err)
            let y = try SafeTensors.read(contentsOf: output).tensor("sample"), expected = io.tensors["out"]!
            XCTAssertLessThanOrEqual(zip(y.scalars, expected.scalars).map { abs($0 - $1) }.max()! / expected.scalars.map(abs).max()!, 1e-4)
        }
        let inspected = try haze(["inspect", pipeline])
        XCTAssertEqual(inspected.status, 0, inspected.err)
        XCTAssertTrue(inspected.out.contains("model: \(pipeline)/unet") && inspected.out.contains("UNet2DModel"), inspected.out)
        let grid = folder + "/grid.png"
        let sampled = try haze(["sample", "--model", pipeline, "--steps", "2", "--count", "2", "--out", grid])
        XCTAssertEqual(sampled.status, 0, sampled.err)
        XCTAssertTrue(FileManager.default.fileExists(atPath: grid))

        // Weights only as a pickle: every command says how to convert, none unpickles.
        let pickled = folder + "/pickled"
        try FileManager.default.createDirectory(atPath: pickled, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: pipeline + "/unet/config.json", toPath: pickled + "/config.json")
        try Data("not really a pickle".utf8).write(to: URL(fileURLWithPath: pickled + "/diffusion_pytorch_model.bin"))
        for arguments in [["inspect", pickled], ["predict", "--model", pickled, "--input", input, "--timesteps", "1", "--output", folder + "/z"],
                          ["sample", "--model", pickled, "--out", grid],
                          ["train", "--init-from", pickled, "--data", try writeImages(count: 2, side: 8), "--out", folder + "/never", "--steps", "1"]] {
            let r = try haze(arguments)
            XCTAssertNotEqual(r.status, 0, arguments[0])
            XCTAssertTrue(r.err.contains("diffusion_pytorch_model.bin, a PyTorch pickle") && r.err.contains("safe_serialization=True"),
                          "\(arguments[0]): \(r.err)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/never"))
    }

    /// The README's example at toy size: fine-tune a diffusers pipeline on a folder of images,
    /// then fine-tune that run's EMA weights further, then sample.
    func testFineTuneAPipelineOnAnImageFolder() throws {
        let pipeline = Self.trainingFixtures + "/pipeline"
        let images = try writeImages(count: 6, side: 12)  // resized to the model's 8×8
        let run = folder + "/ft"
        let common = ["--batch-size", "2", "--sample-every", "0", "--checkpoint-every", "3", "--no-tensorboard", "--lr", "1e-4"]
        let trained = try haze(["train", "--init-from", pipeline, "--data", images, "--out", run, "--steps", "3"] + common)
        XCTAssertEqual(trained.status, 0, trained.err)
        XCTAssertTrue(trained.err.contains("fine-tuning \(pipeline)/unet"), trained.err)
        let options = try XCTUnwrap(try trainerState(run)["options"] as? [String: Any])
        let source = try XCTUnwrap(options["initializedFrom"] as? [String: Any])
        XCTAssertEqual(source["path"] as? String, pipeline + "/unet")
        let weights = try Data(contentsOf: URL(fileURLWithPath: pipeline + "/unet/diffusion_pytorch_model.safetensors"))
        XCTAssertEqual(source["weightsSHA256"] as? String, SHA256.hex(of: weights))
        XCTAssertEqual(options["imageSize"] as? Int, nil, "the image size came from the model")
        // The run's scheduler is the pipeline's (DDPM, linear betas).
        let scheduler = try String(contentsOfFile: run + "/checkpoints/step-0000003/model/scheduler_config.json", encoding: .utf8)
        XCTAssertTrue(scheduler.contains("\"DDPMScheduler\"") && scheduler.contains("\"linear\""), scheduler)

        let again = folder + "/ft2"
        let continued = try haze(["train", "--init-from", run, "--init-from-ema", "--data", images, "--out", again, "--steps", "1"] + common)
        XCTAssertEqual(continued.status, 0, continued.err)
        let source2 = try XCTUnwrap((try trainerState(again)["options"] as? [String: Any])?["initializedFrom"] as? [String: Any])
        XCTAssertEqual(source2["path"] as? String, run + "/checkpoints/step-0000003/ema")
        let sampled = try haze(["sample", "--model", again, "--steps", "2", "--count", "2", "--out", folder + "/grid.png"])
        XCTAssertEqual(sampled.status, 0, sampled.err)
    }

    /// Bad starts are refused before anything is written.
    func testFineTuneRefusesMismatches() throws {
        let pipeline = Self.trainingFixtures + "/pipeline"
        let images = try writeImages(count: 4, side: 8)
        let out = folder + "/never"
        func expectFailure(_ arguments: [String], _ text: String, line: UInt = #line) throws {
            let r = try haze(["train", "--data", images, "--out", out, "--steps", "1"] + arguments)
            XCTAssertNotEqual(r.status, 0, line: line)
            XCTAssertTrue(r.err.contains(text), "stderr: \(r.err)", line: line)
            XCTAssertFalse(FileManager.default.fileExists(atPath: out), "nothing written", line: line)
        }
        try expectFailure(["--init-from", pipeline, "--preset", "fmnist-tiny"], "takes the architecture from the model's config.json")
        try expectFailure(["--init-from", pipeline, "--beta-schedule", "linear"], "keeps the noise schedule")
        try expectFailure(["--init-from", pipeline, "--objective", "v_prediction"], "was trained to predict epsilon")
        try expectFailure(["--init-from", pipeline, "--init-from-ema"], "EMA weights are chosen from a Haze run")
        try expectFailure(["--init-from", pipeline, "--class-conditional"], "takes no class labels")
        try expectFailure(["--init-from", pipeline, "--image-size", "16"], "the data has images [3, 16, 16] but the model takes 3 channels of [8, 8]")
        try expectFailure(["--init-from", Self.unetFixtures + "/class_cond"], "is class-conditional, and \(images) has no labels")
        // A config that does not fit its weights.
        let edited = folder + "/edited"
        try FileManager.default.copyItem(atPath: pipeline + "/unet", toPath: edited)
        let config = try String(contentsOfFile: edited + "/config.json", encoding: .utf8)
        try config.replacingOccurrences(of: "\"layers_per_block\": 1", with: "\"layers_per_block\": 2")
            .write(toFile: edited + "/config.json", atomically: true, encoding: .utf8)
        try expectFailure(["--init-from", edited], "the weights do not match the model in config.json")
    }

    /// `--notebook-recipe` is the notebook's run: its network, schedule and Keras' Adam.
    func testNotebookRecipeSettings() throws {
        let images = try writeImages(count: 4, side: 8)
        let run = folder + "/nb"
        let trained = try haze(["train", "--notebook-recipe", "--data", images, "--out", run, "--steps", "1", "--sample-every", "0", "--no-tensorboard"])
        XCTAssertEqual(trained.status, 0, trained.err)
        let options = try XCTUnwrap(try trainerState(run)["options"] as? [String: Any])
        XCTAssertEqual(options["optimizer"] as? String, "adam-keras")
        XCTAssertEqual(options["batchSize"] as? Int, 32)
        XCTAssertEqual((options["epsilon"] as? NSNumber)?.floatValue, 1e-7)
        XCTAssertEqual((options["weightDecay"] as? NSNumber)?.floatValue, 0)
        XCTAssertNil(options["emaDecay"] as? NSNumber)
        XCTAssertNil(options["gradientClip"] as? NSNumber)
        let optimizer = try String(contentsOfFile: run + "/checkpoints/step-0000001/optimizer.safetensors", encoding: .isoLatin1)
        XCTAssertTrue(optimizer.contains("\"optimizer\":\"adam-keras\""), "the resumed run keeps Keras' Adam")
    }
}
