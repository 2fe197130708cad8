import Foundation
import XCTest
import HazeIO
import HazeTensor
@testable import HazeNN

/// Files that crashed Haze or made it build millions of layers, found by `make fuzz` (the
/// harnesses unet-config and optimizer in Sources/haze-fuzz) or while writing them, kept in
/// Fixtures/fuzz: each is now refused with an error that names the file and the problem.
final class NNFuzzRegressionTests: XCTestCase {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/fuzz").path

    /// The error of building the model a config.json describes, as `ModelFolder` does.
    func modelError(_ name: String, line: UInt = #line) -> String {
        do {
            let model = try ModelFolder.model(configFile: Self.fixtures + "/" + name)
            XCTFail("expected an error, built \(type(of: model)) with \(model.parameterCount) parameters", line: line)
            return ""
        } catch { return "\(error)" }
    }

    /// norm_num_groups 0 divided every width by zero (found by the fuzzer, minimised).
    func testZeroGroupsAreRefused() {
        XCTAssertEqual(modelError("unet_norm_groups_zero.json"),
                       #"\#(Self.fixtures)/unet_norm_groups_zero.json: field "norm_num_groups": must be positive, found 0"#)
    }

    /// A width of 2⁴⁰ overflowed the parameter count; 10⁸ layers per block ran out of memory
    /// building the layers (no weights are allocated for that).
    func testWidthsAndDepthsBeyondAnyModelAreRefused() {
        XCTAssertEqual(modelError("unet_huge_width.json"),
                       #"\#(Self.fixtures)/unet_huge_width.json: field "block_out_channels": value 1099511627776 is not in 1…65536"#)
        XCTAssertEqual(modelError("unet_many_layers.json"),
                       #"\#(Self.fixtures)/unet_many_layers.json: field "layers_per_block": value 100000000 is not in 1…64"#)
    }

    /// norm_eps 1e308 is an infinite Float: writing config.json back (every checkpoint) crashed
    /// on the infinity (found by the fuzzer in `configData()`, minimised).
    func testNumbersBeyondFloatAreRefused() throws {
        let error = modelError("unet_norm_eps_1e308.json")
        XCTAssertTrue(error.hasPrefix(#"\#(Self.fixtures)/unet_norm_eps_1e308.json: field "norm_eps": value "#), error)
        XCTAssertTrue(error.hasSuffix("is beyond the range of a 32-bit float"), error)
        // The notebook's config wrote an empty config.json for it.
        let json = try JSONSerialization.jsonObject(with: Data(#"{"_class_name": "TFArticleUNet", "norm_eps": 1e308}"#.utf8)) as! [String: Any]
        XCTAssertThrowsError(try TFArticleUNetConfig(json: json, file: "config.json")) {
            XCTAssertEqual("\($0)", #"config.json: field "norm_eps": must be a positive number below 3.4e38, not 1e+308"#)
        }
    }

    /// 64 levels of the notebook's U-Net made 1 << 64 = 0 the size multiple: a division by zero.
    func testNotebookConfigWith64LevelsIsRefused() {
        XCTAssertEqual(modelError("tf_article_64_levels.json"),
                       #"\#(Self.fixtures)/tf_article_64_levels.json: field "channels": has 64 entries; Haze supports 1…16 levels"#)
    }

    /// Values the forward pass or the sampler would have crashed on later are refused on load.
    func testConfigsThatWouldCrashLaterAreRefused() {
        let base: [String: Any] = ["block_out_channels": [8, 16], "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                                   "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "norm_num_groups": 4, "sample_size": 8]
        func error(_ changes: [String: Any]) -> String {
            do {
                // Through JSON text, as a config file is read.
                let text = try JSONSerialization.data(withJSONObject: base.merging(changes) { $1 })
                _ = try UNet2DModelConfig(json: try JSONSerialization.jsonObject(with: text) as! [String: Any], file: "config.json")
                return "no error"
            } catch { return "\(error)" }
        }
        XCTAssertEqual(error([:]), "no error")
        XCTAssertEqual(error(["sample_size": -8]), #"config.json: field "sample_size": value -8 is not in 1…65536"#)
        XCTAssertTrue(error(["sample_size": 8.5]).hasPrefix(#"config.json: field "sample_size": expected an integer"#))
        XCTAssertEqual(error(["attn_norm_num_groups": 3]), #"config.json: field "attn_norm_num_groups": 3 does not divide the middle block's 16 channels"#)
        XCTAssertEqual(error(["attention_head_dim": 32]),
                       #"config.json: field "attention_head_dim": 32 is larger than the 16 channels of an attention block (no whole head)"#)
        XCTAssertTrue(error(["block_out_channels": [8, 16.5]]).hasPrefix(#"config.json: field "block_out_channels": expected a list of integers"#))
        XCTAssertEqual(error(["num_class_embeds": 0]), #"config.json: field "num_class_embeds": value 0 is not in 1…1048576"#)
    }

    /// Moments of one parameter with different shapes: the first update read past the smaller
    /// one (AddressSanitizer: heap-buffer-overflow in `AdamOptimizer.update`; found by the fuzzer).
    func testOptimizerStateWithMismatchedMomentsIsRefused() throws {
        let path = Self.fixtures + "/optimizer_moment_shapes.safetensors"
        XCTAssertThrowsError(try AdamOptimizer(state: try SafeTensors.read(contentsOf: path), file: path)) {
            XCTAssertEqual("\($0)", "\(path): tensor 'exp_avg.w': first moment [2] and second moment (exp_avg_sq) [] do not match")
        }
        // A step count that the next update would overflow.
        let meta = ["optimizer": "adamw", "step": "\(Int.max)", "lr": "0.001", "beta1": "0.9", "beta2": "0.999", "eps": "1e-08", "weight_decay": "0"]
        XCTAssertThrowsError(try AdamOptimizer(state: SafeTensors(metadata: meta), file: "optimizer.safetensors")) {
            XCTAssertEqual("\($0)", "optimizer.safetensors: step 9223372036854775807 is not in 0…2^53")
        }
    }

    /// A well-formed state of another model: a resumed run checks the moments against its parameters.
    func testOptimizerMomentsAreCheckedAgainstTheParameters() throws {
        var optimizer = AdamOptimizer()
        var parameters: ParameterSet = ["w": Tensor.zeros([2])]
        optimizer.update(&parameters, gradients: ["w": Tensor.ones([2])])
        XCTAssertNoThrow(try optimizer.checkMoments(against: ["w": [2], "b": [3]], file: "optimizer.safetensors"))
        XCTAssertThrowsError(try optimizer.checkMoments(against: ["w": [3]], file: "optimizer.safetensors")) {
            XCTAssertEqual("\($0)", "optimizer.safetensors: tensor 'exp_avg.w': shape [2], but the parameter has shape [3]")
        }
        XCTAssertThrowsError(try optimizer.checkMoments(against: ["v": [2]], file: "optimizer.safetensors")) {
            XCTAssertEqual("\($0)", "optimizer.safetensors: tensor 'exp_avg.w': the model has no parameter w")
        }
    }
}
