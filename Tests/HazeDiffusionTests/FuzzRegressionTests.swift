import Foundation
import XCTest
import HazeTensor
@testable import HazeDiffusion

/// scheduler_config.json files that crashed Haze or made it allocate gigabytes, found by
/// `make fuzz` (the scheduler-config harness in Sources/haze-fuzz) or while writing it, kept in
/// Fixtures/fuzz: each is now refused with an error that names the file, the field and the problem.
final class SchedulerFuzzRegressionTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/fuzz").path

    func configError(_ name: String, line: UInt = #line) -> String {
        do {
            let config = try SchedulerConfig(contentsOf: Self.fixtures + "/" + name)
            XCTFail("expected an error, read \(config)", line: line)
            return ""
        } catch { return "\(error)" }
    }

    /// steps_offset past the training timesteps: DDIM's step indexed ᾱ out of range (found by the fuzzer, minimised).
    func testStepsOffsetOutsideTheTimestepsIsRefused() {
        XCTAssertEqual(configError("scheduler_steps_offset.json"),
                       #"\#(Self.fixtures)/scheduler_steps_offset.json: field "steps_offset": value 5 is not a timestep (0…1)"#)
    }

    /// 10²⁰ training timesteps trapped converting to Int; 3·10⁹ asked for 12 GB of betas.
    func testTrainingTimestepsOutOfRangeAreRefused() {
        XCTAssertEqual(configError("scheduler_timesteps_1e20.json"),
                       #"\#(Self.fixtures)/scheduler_timesteps_1e20.json: field "num_train_timesteps": expected an integer, found 1e+20"#)
        XCTAssertEqual(configError("scheduler_timesteps_3e9.json"),
                       #"\#(Self.fixtures)/scheduler_timesteps_3e9.json: field "num_train_timesteps": value 3000000000 is not in 2…100000"#)
    }

    /// A thresholding quantile of 2 indexed past the sorted values of each image.
    func testThresholdingQuantileOutsideZeroOneIsRefused() {
        XCTAssertEqual(configError("scheduler_threshold_ratio.json"),
                       #"\#(Self.fixtures)/scheduler_threshold_ratio.json: field "dynamic_thresholding_ratio": value 2.0 is not a quantile between 0 and 1"#)
    }

    /// "leading" spacing with steps_offset passes T − 1 when the steps are many (T = 1000,
    /// offset 5; 1000 steps reach 1004): DDPM and DDIM throw, as diffusers'
    /// step fails on it; DPM-Solver++ takes σ_{T−1} there, as diffusers' np.interp does.
    func testLeadingStepsPastTheLastTimestep() throws {
        var config = SchedulerConfig(kind: .ddim)
        (config.timestepSpacing, config.stepsOffset) = (.leading, 5)
        for kind in [SchedulerConfig.Kind.ddim, .ddpm] {
            config.kind = kind
            let scheduler = makeScheduler(config)
            XCTAssertNoThrow(try scheduler.setTimesteps(199))
            XCTAssertEqual(scheduler.timesteps.first, 995)
            XCTAssertThrowsError(try scheduler.setTimesteps(1000)) {
                XCTAssertEqual("\($0)", "1000 inference steps with leading spacing and steps_offset 5 reach timestep 1004, "
                                        + "outside the 1000 training timesteps (0…999): use fewer steps")
            }
        }
        config.kind = .dpmSolverMultistep
        let dpm = DPMSolverMultistepScheduler(config)
        try dpm.setTimesteps(999)
        XCTAssertEqual(dpm.timesteps.first, 1004)
        XCTAssertEqual(dpm.sigmas.first, Double(dpm.schedule.trainingSigmas[999]))
    }
}
