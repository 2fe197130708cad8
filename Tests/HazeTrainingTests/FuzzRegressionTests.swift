import Foundation
import XCTest
import HazeData
import HazeDiffusion
@testable import HazeTraining

/// trainer_state.json and IDX files that crashed Haze or made it allocate gigabytes, found by
/// `make fuzz` (the trainer-state and idx harnesses in Sources/haze-fuzz) or while writing them,
/// kept in Fixtures/fuzz: each is now refused with an error that names the problem.
final class TrainingFuzzRegressionTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/fuzz").path

    func stateError(_ name: String, line: UInt = #line) throws -> String {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/" + name))
        do {
            let state = try JSONDecoder().decode(TrainerState.self, from: data)
            XCTFail("expected an error, decoded \(state)", line: line)
            return ""
        } catch DecodingError.dataCorrupted(let context) { return context.debugDescription }
    }

    /// trainTimesteps 0 with the notebook schedule built `0..<-1` (a trap) when a run resumed;
    /// 3·10⁹ asked for 12 GB of betas.
    func testTrainingTimestepsOutOfRangeAreRefused() throws {
        XCTAssertEqual(try stateError("trainer_state_notebook_T0.json"), "options.trainTimesteps: 0 is not in 2…100000")
        XCTAssertEqual(try stateError("trainer_state_timesteps_3e9.json"), "options.trainTimesteps: 3000000000 is not in 2…100000")
    }

    /// The other values a resumed run relies on, checked as `haze train` checks its options.
    func testNegativeCountsAndPositionsAreRefused() throws {
        let good = try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/trainer_state_notebook_T0.json"))
        func error(_ edit: (inout [String: Any], inout [String: Any]) -> Void) -> String {
            var state = try! JSONSerialization.jsonObject(with: good) as! [String: Any]
            var options = state["options"] as! [String: Any]
            options["trainTimesteps"] = 1000
            edit(&state, &options)
            state["options"] = options
            do {
                _ = try JSONDecoder().decode(TrainerState.self, from: try JSONSerialization.data(withJSONObject: state))
                return "no error"
            } catch DecodingError.dataCorrupted(let context) { return context.debugDescription } catch { return "\(error)" }
        }
        XCTAssertEqual(error { _, _ in }, "no error")
        XCTAssertEqual(error { s, _ in s["data"] = ["epoch": 0, "index": -1] }, "data: position (epoch 0, index -1) is negative")
        XCTAssertEqual(error { s, _ in s["step"] = -2 }, "step: -2 is negative")
        XCTAssertEqual(error { _, o in o["batchSize"] = 0 }, "options.batchSize: 0 is not at least 1")
        XCTAssertEqual(error { _, o in o["betaSchedule"] = "cosine" },
                       #"options.betaSchedule: "cosine" is not one of linear, scaled_linear, squaredcos_cap_v2, sigmoid, notebook"#)
    }

    /// Four extents of up to 2³² − 1 overflowed their product (a trap; found by the fuzzer, minimised).
    func testIDXShapeOverflowIsRefused() {
        let path = Self.fixtures + "/idx_shape_overflow"
        XCTAssertThrowsError(try IDXFile(contentsOf: path)) {
            XCTAssertTrue("\($0)".hasPrefix("\(path): IDX shape [") && "\($0)".hasSuffix("] is empty or too large"), "\($0)")
        }
    }

    /// A 16-byte file declaring 2³¹ − 1 bytes: refused as truncated once the data runs out,
    /// without allocating the 2 GB its header asks for first.
    func testIDXDeclaringMoreThanItHoldsIsTruncated() {
        let path = Self.fixtures + "/idx_declares_2GB"
        XCTAssertThrowsError(try IDXFile(contentsOf: path)) {
            XCTAssertEqual("\($0)", "\(path): truncated: expected 2147483647 bytes, found 8")
        }
    }
}
