import Foundation
import XCTest
import HazeIO
import HazeTensor

/// `haze` under `mpirun` with 2 ranks on this machine (Open MPI from `make deps`): data-parallel
/// training against one process, resume across rank counts, sampling split over ranks, ranks
/// that disagree on their data, and a rank killed mid-run. Open MPI's shared-memory transport is
/// used by default; one training run goes over TCP (`--mca btl tcp,self`), the path separate
/// hosts take.
final class MPITests: XCTestCase {
    static let unetFixtures = CLITests.unetFixtures
    var folder: String!
    let haze = CLITests.hazeExecutable

    override func setUpWithError() throws {
        try XCTSkipIf(ProcessInfo.processInfo.environment["HAZE_TEST_LAUNCHER"] != nil,
                      "MPI jobs are tested natively (make test), not under the CPU emulator")
        try XCTSkipUnless(FileManager.default.isExecutableFile(atPath: "/usr/bin/mpirun"),
                          "no mpirun (make deps installs openmpi-bin)")
        folder = NSTemporaryDirectory() + "haze-mpi-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder + "/data", withIntermediateDirectories: true)
        // 24 random 8×8 RGB images (the fixture U-Net's size).
        var generator = RandomGenerator(seed: 5)
        for i in 0..<24 {
            let pixels = generator.uniform([192], low: 0, high: 255).scalars.map { UInt8($0) }
            try PNG.encode(width: 8, height: 8, channels: 3, pixels: pixels).write(to: URL(fileURLWithPath: folder + "/data/\(i).png"))
        }
    }

    override func tearDownWithError() throws { if let folder { try? FileManager.default.removeItem(atPath: folder) } }

    /// For mpirun as root, and, under `make test-asan`, without LeakSanitizer's exit report in the
    /// ranks: Open MPI does not free all it allocates by MPI_Finalize (in components it has
    /// unloaded by then, so no suppression can name them); everything else is still checked.
    static let mpiEnvironment = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                                 "ASAN_OPTIONS": "detect_leaks=0"]

    /// Runs `command` (argv), returns exit status and the output (stdout and stderr together).
    @discardableResult
    func run(_ command: [String], environment extra: [String: String] = [:]) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command[0])
        process.arguments = Array(command.dropFirst())
        process.environment = ProcessInfo.processInfo.environment.merging(
            Self.mpiEnvironment.merging(extra) { $1 }) { $1 }
        let pipe = Pipe()
        (process.standardOutput, process.standardError) = (pipe, pipe)
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    func mpirun(_ ranks: Int, _ arguments: [String], transport: [String] = []) -> [String] {
        ["/usr/bin/mpirun", "-np", "\(ranks)", "--oversubscribe"] + transport + [haze] + arguments
    }

    func train(_ out: String, steps: Int, resume: Bool = false) -> [String] {
        resume ? ["train", "--resume", out, "--steps", "\(steps)", "--threads", "1"]
            : ["train", "--data", folder + "/data", "--out", out, "--model-config", Self.unetFixtures + "/attn/config.json",
               "--steps", "\(steps)", "--batch-size", "5", "--checkpoint-every", "4", "--sample-every", "0", "--threads", "1",
               "--grad-clip", "1", "--ema-decay", "0.9", "--no-tensorboard"]
    }

    func weights(_ run: String, step: Int) throws -> [String: Tensor] {
        try SafeTensors.read(contentsOf: run + String(format: "/checkpoints/step-%07d/model/diffusion_pytorch_model.safetensors", step)).tensors
    }

    func losses(_ run: String) throws -> [Double] {
        try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n").map {
            try XCTUnwrap((try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])?["loss"] as? Double)
        }
    }

    /// Weights that agree to float tolerance: max |a − b| / max |b| per tensor (Adam turns the
    /// last-bit differences of the gradient sums into differences of ~1e-5 of the weights).
    func assertAgree(_ a: [String: Tensor], _ b: [String: Tensor], _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Set(a.keys), Set(b.keys), message, file: file, line: line)
        let worst = b.map { key, value in
            zip(a[key]!.scalars, value.scalars).map { abs($0 - $1) }.max()! / max(value.scalars.map(abs).max()!, 1e-6)
        }.max()!
        XCTAssertLessThanOrEqual(worst, 2e-4, "\(message): worst relative difference \(worst)", file: file, line: line)
    }

    /// 2 ranks (the global batch of 5 split 3 + 2) against 1 rank: the same losses and weights,
    /// over shared memory and over TCP; resuming a 1-rank run on 2 ranks and the other way round.
    func testTrainingOnTwoRanksMatchesOneRank() throws {
        let one = folder + "/one", two = folder + "/two", tcp = folder + "/tcp"
        let single = try run([haze] + train(one, steps: 12))
        XCTAssertEqual(single.status, 0, single.output)
        let double = try run(mpirun(2, train(two, steps: 12)))
        XCTAssertEqual(double.status, 0, double.output)
        XCTAssertTrue(double.output.contains("MPI: 2 ranks"), double.output)
        let overTCP = try run(mpirun(2, train(tcp, steps: 12), transport: ["--mca", "btl", "tcp,self"]))
        XCTAssertEqual(overTCP.status, 0, overTCP.output)
        let reference = try losses(one)
        XCTAssertFalse(reference.isEmpty)
        for other in [two, tcp] {
            for (a, b) in zip(try losses(other), reference) { XCTAssertEqual(a, b, accuracy: 1e-5 * abs(b), other) }
            assertAgree(try weights(other, step: 12), try weights(one, step: 12), other)
        }
        // Only rank 0 wrote: one metrics line per logged step, not two.
        XCTAssertEqual(try losses(two).count, reference.count)

        // Resume: a 1-rank run stopped at step 8 continued on 2 ranks, and the other way round.
        let a = folder + "/a", b = folder + "/b"
        XCTAssertEqual(try run([haze] + train(a, steps: 8)).status, 0)
        let resumedOnTwo = try run(mpirun(2, train(a, steps: 12, resume: true)))
        XCTAssertEqual(resumedOnTwo.status, 0, resumedOnTwo.output)
        XCTAssertEqual(try run(mpirun(2, train(b, steps: 8))).status, 0)
        let resumedOnOne = try run([haze] + train(b, steps: 12, resume: true))
        XCTAssertEqual(resumedOnOne.status, 0, resumedOnOne.output)
        assertAgree(try weights(a, step: 12), try weights(one, step: 12), "1 rank, then 2")
        assertAgree(try weights(b, step: 12), try weights(one, step: 12), "2 ranks, then 1")
        // The result loads and samples.
        let sampled = try run([haze, "sample", "--model", b, "--steps", "3", "--count", "2", "--save-tensor", folder + "/s.safetensors"])
        XCTAssertEqual(sampled.status, 0, sampled.output)
    }

    /// Sampling split over 2 ranks writes exactly the images of one process (1 thread each: the
    /// same batches, the same sums) — 5 images in batches of 2, so rank 0 takes 2 batches and
    /// rank 1 one.
    func testSamplingOnTwoRanksWritesTheImagesOfOneRank() throws {
        let model = Self.unetFixtures + "/class_cond"
        func arguments(_ out: String) -> [String] {
            ["sample", "--model", model, "--scheduler", "ddpm", "--steps", "10", "--count", "5", "--batch-size", "2",
             "--class-labels", "1,2,3,4,5", "--threads", "1", "--save-tensor", folder + "/" + out, "--out", folder + "/" + out + ".png"]
        }
        let single = try run([haze] + arguments("one.safetensors"))
        XCTAssertEqual(single.status, 0, single.output)
        let double = try run(mpirun(2, arguments("two.safetensors")))
        XCTAssertEqual(double.status, 0, double.output)
        XCTAssertEqual(try SafeTensors.read(contentsOf: folder + "/two.safetensors").tensors,
                       try SafeTensors.read(contentsOf: folder + "/one.safetensors").tensors)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: folder + "/two.safetensors.png")),
                       try Data(contentsOf: URL(fileURLWithPath: folder + "/one.safetensors.png")))
    }

    /// `haze evaluate` with the sampling split over 2 ranks gives the FID and KID of one process
    /// (same images: whole batches per rank, 1 thread each).
    func testEvaluateOnTwoRanksMatchesOneRank() throws {
        try XCTSkipUnless(FileManager.default.fileExists(atPath: "/usr/share/datasets/fashion-mnist"), "needs dataset-fashion-mnist")
        let assets = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("assets/fmnist-classifier.safetensors").path
        let model = folder + "/fm"
        let trained = try run([haze, "train", "--data", "fashion-mnist", "--out", model, "--preset", "fmnist-tiny", "--steps", "1",
                               "--batch-size", "4", "--sample-every", "0", "--no-tensorboard"])
        XCTAssertEqual(trained.status, 0, trained.output)
        func evaluate(_ json: String) -> [String] {
            ["evaluate", "--model", model, "--steps", "3", "--count", "40", "--batch-size", "8", "--threads", "1",
             "--classifier", assets, "--json", folder + "/" + json]
        }
        let single = try run([haze] + evaluate("one.json")), double = try run(mpirun(2, evaluate("two.json")))
        XCTAssertEqual(single.status, 0, single.output)
        XCTAssertEqual(double.status, 0, double.output)
        func metrics(_ name: String) throws -> [String: Double] {
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/" + name))) as? [String: Any]
            return try XCTUnwrap(object).compactMapValues { $0 as? Double }
        }
        let (a, b) = (try metrics("one.json"), try metrics("two.json"))
        XCTAssertEqual(a["fid"], b["fid"])
        XCTAssertEqual(a["kid_mean"], b["kid_mean"])
        XCTAssertNotNil(a["fid"])
        // The sampling cost is reported: DDIM-3 makes 3 model calls per image, in measurable time.
        for m in [a, b] {
            XCTAssertEqual(m["model_calls"], 3)
            XCTAssertGreaterThan(m["seconds_per_image"] ?? 0, 0)
            XCTAssertEqual(m["seconds_per_image"] ?? 0, (m["sampling_seconds"] ?? 0) / 40, accuracy: 1e-9)
        }
    }

    /// Ranks given different data (here: a different folder on "each host") stop at start with a
    /// message naming the data, before anything is written.
    func testRanksThatDisagreeStopAtStart() throws {
        try FileManager.default.copyItem(atPath: folder + "/data", toPath: folder + "/other")
        try FileManager.default.removeItem(atPath: folder + "/other/3.png")
        var second = train(folder + "/x", steps: 2)
        second[second.firstIndex(of: folder + "/data")!] = folder + "/other"
        let result = try run(["/usr/bin/mpirun", "-np", "1", haze] + train(folder + "/x", steps: 2) + [":", "-np", "1", haze] + second)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.output.contains("option data (rank 1: \(folder!)/other; rank 1 differs from rank 0)"), result.output)
        XCTAssertTrue(result.output.contains("the data (rank 1: 23 images [3, 8, 8]"), result.output)
        XCTAssertFalse(FileManager.default.fileExists(atPath: folder + "/x/latest"))
    }

    /// Starts `mpirun` with `arguments` in the background; output collected through a pipe.
    func startJob(_ arguments: [String]) throws -> (Process, Pipe) {
        let job = Process()
        job.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
        job.arguments = Array(mpirun(2, arguments).dropFirst())
        job.environment = ProcessInfo.processInfo.environment.merging(
            Self.mpiEnvironment) { $1 }
        let pipe = Pipe()
        (job.standardOutput, job.standardError) = (pipe, pipe)
        try job.run()
        return (job, pipe)
    }

    /// Waits until the run has `count` checkpoints (or a minute has passed).
    func waitForCheckpoints(_ run: String, _ count: Int) {
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline, ((try? FileManager.default.contentsOfDirectory(atPath: run + "/checkpoints"))?.count ?? 0) < count {
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// SIGTERM to mpirun (it forwards the signal, as it does Ctrl-C) stops every rank after the same
    /// step, with one checkpoint of that step, and the run resumes from it.
    func testSignalToMpirunStopsEveryRankWithOneCheckpoint() throws {
        let out = folder + "/t"
        var arguments = train(out, steps: 100_000)
        arguments[arguments.firstIndex(of: "--checkpoint-every")! + 1] = "100000"
        let (job, pipe) = try startJob(arguments)
        // The first checkpoint is written at the step the signal stops.
        Thread.sleep(forTimeInterval: 3)
        job.terminate()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        job.waitUntilExit()
        let stopped = try XCTUnwrap(output.range(of: #"stopped at step (\d+)"#, options: .regularExpression).map { output[$0] }, output)
        let step = try XCTUnwrap(Int(stopped.split(separator: " ").last!))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints"), [String(format: "step-%07d", step)])
        XCTAssertEqual(output.components(separatedBy: "stopped at step").count, 2, "rank 0 alone reports: \(output)")
        let resumed = try run(mpirun(2, train(out, steps: step + 2, resume: true)))
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resuming \(out) at step \(step)"), resumed.output)
    }

    /// BatchNorm models (the seed article's variant): each rank normalises by its own slice's
    /// statistics, and the running statistics are rank 0's — PyTorch DDP's defaults without
    /// SyncBatchNorm. So, unlike GroupNorm, 2 ranks train a different (valid) model than 1 rank:
    /// the running statistics after 3 steps differ from the 1-rank run's, and stay finite.
    func testBatchNormStatisticsArePerRank() throws {
        let config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.unetFixtures + "/attn/config.json")))
        var object = try XCTUnwrap(config as? [String: Any])
        object["norm_type"] = "batch"
        let path = folder + "/bn.json"
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
        func arguments(_ out: String) -> [String] {
            var a = train(out, steps: 3)
            a[a.firstIndex(of: Self.unetFixtures + "/attn/config.json")!] = path
            return a
        }
        let one = try run([haze] + arguments(folder + "/bn1")), two = try run(mpirun(2, arguments(folder + "/bn2")))
        XCTAssertEqual(one.status, 0, one.output)
        XCTAssertEqual(two.status, 0, two.output)
        let (a, b) = (try weights(folder + "/bn1", step: 3), try weights(folder + "/bn2", step: 3))
        let means = a.keys.filter { $0.hasSuffix("running_mean") }
        XCTAssertFalse(means.isEmpty, "the model has BatchNorm layers")
        XCTAssertTrue(means.contains { a[$0]!.scalars != b[$0]!.scalars }, "2 ranks' running statistics come from slices of the batch")
        for key in b.keys { XCTAssertTrue(b[key]!.scalars.allSatisfy(\.isFinite), key) }
    }

    /// kill -9 of one rank stops the job with an error; the last checkpoint stays loadable and the
    /// run resumes from it.
    func testKilledRankStopsTheJobAndLeavesTheCheckpoint() throws {
        let out = folder + "/k"
        var arguments = train(out, steps: 100_000)
        arguments[arguments.firstIndex(of: "--checkpoint-every")! + 1] = "1"
        let (job, pipe) = try startJob(arguments)
        // Wait for a few checkpoints, then kill rank 1 (the youngest haze process).
        waitForCheckpoints(out, 3)
        let pids = try run(["/usr/bin/pgrep", "-n", "-f", "\(haze) train --data \(folder!)"]).output
        let victim = try XCTUnwrap(Int32(pids.trimmingCharacters(in: .whitespacesAndNewlines)), "no rank found: \(pids)")
        kill(victim, SIGKILL)
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        job.waitUntilExit()
        XCTAssertNotEqual(job.terminationStatus, 0, output)
        XCTAssertTrue(output.contains("exited on signal 9") || output.contains("killed"), output)
        let latest = try String(contentsOfFile: out + "/latest", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let step = try XCTUnwrap(Int(latest.split(separator: "-").last ?? ""), latest)
        let resumed = try run([haze, "train", "--resume", out, "--steps", "\(step + 1)", "--threads", "1"])
        XCTAssertEqual(resumed.status, 0, resumed.output)
        XCTAssertTrue(resumed.output.contains("resuming \(out) at step \(step)"), resumed.output)
        let sampled = try run([haze, "sample", "--model", out, "--steps", "2", "--count", "1", "--save-tensor", folder + "/k.safetensors"])
        XCTAssertEqual(sampled.status, 0, sampled.output)
    }
}
