import Foundation
import XCTest
import HazeIO
import HazeTensor

/// Faults a long training run meets: a second `haze train` on the same run, a killed process, a
/// full disk. Each gets a message naming the path and loses nothing already saved.
extension CLITests {
    /// A tiny UNet2DModel config (8×8 gray) for whole training commands.
    func writeTinyModelConfig() throws -> String {
        let path = folder + "/tiny.json"
        try Data("""
            {"_class_name": "UNet2DModel", "sample_size": 8, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
             "layers_per_block": 1, "norm_num_groups": 4, "down_block_types": ["DownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "UpBlock2D"]}
            """.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func writeGrayImages(count: Int, size: Int = 8) throws -> String {
        let images = folder + "/gray\(size)"
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        for (i, pixels) in PNG.pixels(Tensor.uniform([count, 1, size, size], low: -1, high: 1, seed: 4)).enumerated() {
            try PNG.encode(width: size, height: size, channels: 1, pixels: pixels).write(to: URL(fileURLWithPath: images + "/\(i).png"))
        }
        return images
    }

    /// `haze` started in the background.
    func startHaze(_ arguments: [String]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Self.hazeExecutable)
        process.arguments = arguments
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        return process
    }

    /// While one `haze train` trains a run, a second on the same folder is refused before it writes;
    /// after the first is killed with SIGKILL, its lock is gone and the run resumes.
    func testOneTrainerPerRunAndNoStaleLock() throws {
        if ProcessInfo.processInfo.environment["HAZE_TEST_LAUNCHER"] != nil { throw XCTSkip("timing-based; run natively") }
        let run = folder + "/run"
        let first = try startHaze(["train", "--data", try writeGrayImages(count: 8), "--model-config", try writeTinyModelConfig(),
                                   "--out", run, "--steps", "100000", "--batch-size", "4", "--checkpoint-every", "1",
                                   "--sample-every", "0", "--no-tensorboard", "--threads", "1"])
        let deadline = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: run + "/latest") && Date() < deadline { usleep(50_000) }
        let second = try haze(["train", "--resume", run, "--steps", "100000", "--no-tensorboard"])
        XCTAssertNotEqual(second.status, 0)
        XCTAssertTrue(second.err.contains("\(run): is being trained by another process (pid \(first.processIdentifier))"), second.err)
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let resumed = try haze(["train", "--resume", run, "--steps", "1", "--no-tensorboard"])  // at or past step 1: only re-checkpoints
        XCTAssertEqual(resumed.status, 0, resumed.err)
    }

    /// A run trained with --threads 1 and resumed with --threads 3 ends with the same bits as one
    /// trained straight through with --threads 2 (28×28 images, so the kernels split their work).
    func testResumeWithAnotherThreadCountIsBitExact() throws {
        if ProcessInfo.processInfo.environment["HAZE_TEST_LAUNCHER"] != nil { throw XCTSkip("slow under an emulator; ThreadCountTests cover it") }
        let config = folder + "/small.json"
        try Data("""
            {"_class_name": "UNet2DModel", "sample_size": 28, "in_channels": 1, "out_channels": 1, "block_out_channels": [32, 64, 64],
             "layers_per_block": 1, "norm_num_groups": 8, "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
             "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"]}
            """.utf8).write(to: URL(fileURLWithPath: config))
        let common = ["--data", try writeGrayImages(count: 40, size: 28), "--batch-size", "20", "--checkpoint-every", "2",
                      "--sample-every", "0", "--no-tensorboard"]
        let straight = try haze(["train", "--model-config", config, "--out", folder + "/straight", "--steps", "4", "--threads", "2"] + common)
        XCTAssertEqual(straight.status, 0, straight.err)
        let first = try haze(["train", "--model-config", config, "--out", folder + "/resumed", "--steps", "2", "--threads", "1"] + common)
        XCTAssertEqual(first.status, 0, first.err)
        let second = try haze(["train", "--resume", folder + "/resumed", "--steps", "4", "--threads", "3", "--no-tensorboard"])
        XCTAssertEqual(second.status, 0, second.err)
        for file in ["model/diffusion_pytorch_model.safetensors", "ema/diffusion_pytorch_model.safetensors", "optimizer.safetensors"] {
            let a = try Data(contentsOf: URL(fileURLWithPath: folder + "/straight/checkpoints/step-0000004/" + file))
            let b = try Data(contentsOf: URL(fileURLWithPath: folder + "/resumed/checkpoints/step-0000004/" + file))
            XCTAssertTrue(a == b, "\(file) differs")
        }
    }

    /// `haze train --precision bf16` (mixed precision; `auto` picks it where the CPU's bf16
    /// products are faster than its float32 ones, and says which it took):
    /// the run records its precision, a resumed run continues in it and ends with the bits of an
    /// uninterrupted one, and its losses stay near float32's while its weights differ from them
    /// (the bf16 products did run).
    func testTrainingInBFloat16ResumesBitExactly() throws {
        guard Precision.bfloat16Available else {
            let refused = try haze(["train", "--data", try writeGrayImages(count: 8, size: 8), "--out", folder + "/r", "--steps", "1", "--precision", "bf16"])
            XCTAssertNotEqual(refused.status, 0)
            XCTAssertTrue(refused.err.contains("AVX512_BF16"), refused.err)
            throw XCTSkip("this CPU has no AVX512_BF16: only the refusal is checked")
        }
        let common = ["--data", try writeGrayImages(count: 40, size: 28), "--preset", "fmnist-tiny", "--batch-size", "20",
                      "--checkpoint-every", "2", "--sample-every", "0", "--log-every", "1", "--no-tensorboard"]
        let auto = try haze(["train", "--out", folder + "/auto", "--steps", "1", "--precision", "auto"] + common)
        XCTAssertEqual(auto.status, 0, auto.err)
        let expected = Precision.bfloat16Faster ? "bf16 products on" : "--precision auto keeps f32"
        XCTAssertTrue(auto.err.contains(expected), "the start-up report says what auto took: \(auto.err)")
        let straight = try haze(["train", "--out", folder + "/straight", "--steps", "4", "--precision", "bf16"] + common)
        XCTAssertEqual(straight.status, 0, straight.err)
        XCTAssertTrue(straight.err.contains("bf16 products"), "the start-up report names the precision: \(straight.err)")
        let first = try haze(["train", "--out", folder + "/resumed", "--steps", "2", "--precision", "bf16"] + common)
        XCTAssertEqual(first.status, 0, first.err)
        let state = try String(contentsOfFile: folder + "/resumed/checkpoints/step-0000002/trainer_state.json", encoding: .utf8)
        XCTAssertTrue(state.contains("\"precision\" : \"bfloat16\""), state)
        let second = try haze(["train", "--resume", folder + "/resumed", "--steps", "4", "--no-tensorboard"])
        XCTAssertEqual(second.status, 0, second.err)
        let float32 = try haze(["train", "--out", folder + "/f32", "--steps", "4", "--precision", "f32"] + common)
        XCTAssertEqual(float32.status, 0, float32.err)
        func weights(_ run: String) throws -> Data {
            try Data(contentsOf: URL(fileURLWithPath: folder + "/\(run)/checkpoints/step-0000004/model/diffusion_pytorch_model.safetensors"))
        }
        XCTAssertTrue(try weights("straight") == weights("resumed"), "a resumed bf16 run ends with the uninterrupted run's bits")
        XCTAssertFalse(try weights("straight") == weights("f32"), "bf16 and f32 runs compute differently")
        func losses(_ run: String) throws -> [Double] {
            try String(contentsOfFile: folder + "/\(run)/metrics.jsonl", encoding: .utf8).split(separator: "\n").compactMap {
                (try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["loss"] as? Double
            }
        }
        let (low, full) = (try losses("straight"), try losses("f32"))
        XCTAssertEqual(low.count, 4)
        for (a, b) in zip(low, full) { XCTAssertEqual(a, b, accuracy: 0.02 * b, "bf16 loss \(a) against f32 \(b)") }
    }

    /// A full disk during a checkpoint (a 1 MB tmpfs; needs root): the error names the checkpoint
    /// and the cause, the previous checkpoint stays the latest and complete, nothing temporary is
    /// left, and once there is space again the run resumes.
    func testFullDiskDuringACheckpoint() throws {
        if ProcessInfo.processInfo.environment["HAZE_TEST_LAUNCHER"] != nil { throw XCTSkip("mounts a file system; run natively") }
        let disk = folder + "/disk"
        try FileManager.default.createDirectory(atPath: disk, withIntermediateDirectories: true)
        func mount(_ options: String) -> Int32 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/mount")
            p.arguments = ["-t", "tmpfs", "-o", options, "tmpfs", disk]
            p.standardError = FileHandle.nullDevice
            guard (try? p.run()) != nil else { return -1 }
            p.waitUntilExit()
            return p.terminationStatus
        }
        guard getuid() == 0, mount("size=1m") == 0 else { throw XCTSkip("mounting a tmpfs needs root") }
        defer {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/bin/umount")
            p.arguments = [disk]
            try? p.run()
            p.waitUntilExit()
        }
        let run = disk + "/run"
        let training = try haze(["train", "--data", try writeGrayImages(count: 8), "--model-config", try writeTinyModelConfig(),
                                 "--out", run, "--steps", "1000", "--batch-size", "4", "--checkpoint-every", "1", "--keep-checkpoints", "1000",
                                 "--sample-every", "0", "--no-tensorboard", "--threads", "1"])
        XCTAssertNotEqual(training.status, 0)
        XCTAssertTrue(training.err.contains("No space left on device"), training.err)
        XCTAssertTrue(training.err.contains("\(run)/checkpoints/step-") && training.err.contains("the previous checkpoint is intact"), training.err)
        let latest = try String(contentsOfFile: run + "/latest", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        for file in ["model/diffusion_pytorch_model.safetensors", "ema/diffusion_pytorch_model.safetensors", "optimizer.safetensors", "trainer_state.json"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: "\(run)/\(latest)/\(file)"), "\(latest)/\(file)")
        }
        let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints")) ?? []).filter { $0.hasPrefix(".") }
        XCTAssertEqual(leftovers, [], "nothing temporary left")
        let saved = Int(latest.split(separator: "-").last!)!
        XCTAssertEqual(mount("remount,size=64m"), 0)
        let resumed = try haze(["train", "--resume", run, "--steps", "\(saved + 2)", "--no-tensorboard", "--threads", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.err)
        XCTAssertTrue(resumed.err.contains("resuming \(run) at step \(saved)"), resumed.err)
    }
}
