import Foundation
import XCTest
import HazeIO
import HazeTensor
@testable import HazeNN

/// Bad model folders and configs get errors that name the file, the field or tensor, and the problem.
final class ModelFolderTests: XCTestCase {
    var folder: String!

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "haze-nn-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: folder) }

    func tinyConfig() -> UNet2DModelConfig {
        var c = UNet2DModelConfig()
        c.sampleSize = [8, 8]; c.inChannels = 1; c.outChannels = 1
        c.blockOutChannels = [8, 16]; c.layersPerBlock = 1; c.normNumGroups = 4; c.attentionHeadDim = 4
        c.downBlockTypes = ["DownBlock2D", "AttnDownBlock2D"]; c.upBlockTypes = ["AttnUpBlock2D", "UpBlock2D"]
        return c
    }

    func configError(_ json: [String: Any], line: UInt = #line) -> String {
        do {
            _ = try UNet2DModelConfig(json: json, file: "config.json")
            XCTFail("expected an error", line: line)
            return ""
        } catch { return "\(error)" }
    }

    func testUnsupportedConfigValuesNameFieldAndValue() {
        var json = tinyConfig().jsonObject()
        json["time_embedding_type"] = "fourier"
        XCTAssertEqual(configError(json), #"config.json: field "time_embedding_type": value "fourier" is not supported by Haze (supported: positional)"#)
        json = tinyConfig().jsonObject()
        json["down_block_types"] = ["DownBlock2D", "SkipDownBlock2D"]
        XCTAssertTrue(configError(json).contains(#"value "SkipDownBlock2D" is not supported"#))
        json = tinyConfig().jsonObject()
        json["norm_num_groups"] = 3
        XCTAssertTrue(configError(json).contains("3 does not divide block_out_channels entry 8"))
        json = tinyConfig().jsonObject()
        json["layers_per_block"] = "two"
        XCTAssertTrue(configError(json).contains(#"field "layers_per_block": expected an integer, found two"#))
        json = tinyConfig().jsonObject()
        json["up_block_types"] = ["UpBlock2D"]
        XCTAssertTrue(configError(json).contains("has 1 entries but down_block_types has 2"))
    }

    func testConfigRoundTripIncludingHazeOptions() throws {
        var c = tinyConfig()
        c.normType = .batch
        c.attentionType = .linear
        c.numClassEmbeds = 10
        let object = try JSONSerialization.jsonObject(with: c.jsonData()) as! [String: Any]
        XCTAssertEqual(try UNet2DModelConfig(json: object, file: "x"), c)
        XCTAssertEqual(object["norm_eps"] as? Double, 1e-5, "floats are written in their short decimal form")
    }

    func testMismatchedWeightsAreListedByName() throws {
        let model = try UNet2DModel(config: tinyConfig())
        var p = model.initialParameters(seed: 1)
        p.removeValue(forKey: "conv_in.bias")
        p["conv_out.weight"] = Tensor.zeros([1, 8, 5, 5])
        p["extra.weight"] = Tensor.zeros([2])
        XCTAssertThrowsError(try ModelFolder.validated(p, for: model, file: "w.safetensors")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("w.safetensors: the weights do not match"), text)
            XCTAssertTrue(text.contains("missing (1): conv_in.bias"), text)
            XCTAssertTrue(text.contains("unexpected (1): extra.weight"), text)
            XCTAssertTrue(text.contains("wrong shape: conv_out.weight expected [1, 8, 3, 3], found [1, 8, 5, 5]"), text)
        }
    }

    func testMissingFolderAndCorruptWeights() throws {
        XCTAssertThrowsError(try ModelFolder.load(folder + "/nope")) { XCTAssertTrue("\($0)".contains("is not a model folder")) }
        let model = try UNet2DModel(config: tinyConfig())
        try ModelFolder.save(model, parameters: model.initialParameters(seed: 2), to: folder)
        // Truncate the weights file: the error names it.
        let weights = folder + "/" + ModelFolder.weightsFile
        let data = try Data(contentsOf: URL(fileURLWithPath: weights))
        try data.prefix(data.count / 2).write(to: URL(fileURLWithPath: weights))
        XCTAssertThrowsError(try ModelFolder.load(folder)) { error in
            XCTAssertTrue("\(error)".contains(weights) && "\(error)".contains("outside"), "\(error)")
        }
    }

    func testHalfPrecisionWeightsLoad() throws {
        // A diffusers checkpoint saved in float16: every weight rounded to half precision.
        let model = try UNet2DModel(config: tinyConfig())
        let p = model.initialParameters(seed: 3)
        var header: [String] = [], payload = Data(), offset = 0
        for name in p.keys.sorted() {
            let t = p[name]!
            for v in t.scalars { withUnsafeBytes(of: Float16Bits.encode(v).littleEndian) { payload.append(contentsOf: $0) } }
            header.append("\"\(name)\":{\"dtype\":\"F16\",\"shape\":\(t.shape),\"data_offsets\":[\(offset),\(offset + 2 * t.count)]}")
            offset += 2 * t.count
        }
        var file = Data()
        let json = Array("{\(header.joined(separator: ","))}".utf8)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { file.append(contentsOf: $0) }
        file.append(contentsOf: json)
        file.append(payload)
        try file.write(to: URL(fileURLWithPath: folder + "/" + ModelFolder.weightsFile))
        try AtomicFile.write(model.config.jsonData(), to: folder + "/" + ModelFolder.configFile)
        let (_, loaded) = try ModelFolder.load(folder)
        for (name, t) in p {
            for (a, b) in zip(loaded[name]!.scalars, t.scalars) { XCTAssertEqual(a, b, accuracy: 1e-3 * max(1, abs(b)), name) }
        }
    }

    func testOptimizerStateRestoresExactly() throws {
        let model = try UNet2DModel(config: tinyConfig())
        var p = model.initialParameters(seed: 4)
        let x = Tensor.normal([2, 1, 8, 8], seed: 5)
        func gradients(_ p: ParameterSet) -> [String: Tensor] {
            valueWithGradient(at: p) { Tensor.meanSquaredError(model(x, timesteps: [3, 700], parameters: $0), x) }.gradients
        }
        var straight = AdamOptimizer(.adamW, learningRate: 1e-3)
        var q = p
        for _ in 0..<3 { straight.update(&q, gradients: gradients(q)) }

        var first = AdamOptimizer(.adamW, learningRate: 1e-3)
        for _ in 0..<2 { first.update(&p, gradients: gradients(p)) }
        let path = folder + "/optimizer.safetensors"
        try first.state.write(to: path)
        var resumed = try AdamOptimizer(state: try SafeTensors.read(contentsOf: path), file: path)
        XCTAssertEqual(resumed.step, 2)
        resumed.update(&p, gradients: gradients(p))
        XCTAssertEqual(p, q, "2 steps + save + restore + 1 step == 3 steps, bit for bit")
    }

    func testHazeOnlyVariantsTrain() throws {
        // BatchNorm and linear attention have no diffusers reference: check that the tape's
        // gradient matches central differences for a few parameters, and that BatchNorm's
        // running statistics move in training mode.
        var c = tinyConfig()
        c.normType = .batch
        c.attentionType = .linear
        let model = try UNet2DModel(config: c)
        let p = model.initialParameters(seed: 6)
        let x = Tensor.normal([2, 1, 8, 8], seed: 7)
        let context = ForwardContext(training: true)
        func loss(_ q: ParameterSet) -> Tensor {
            Tensor.meanSquaredError(model(x, timesteps: [5, 50], parameters: q, context: context), x)
        }
        let (_, g) = valueWithGradient(at: p) { loss($0) }
        for name in ["down_blocks.1.attentions.0.to_qkv.weight", "mid_block.resnets.0.norm1.weight", "conv_in.weight"] {
            for index in [0, 3] {
                var plus = p, minus = p
                plus[name]!.withMutableScalars { $0[index] += 1e-2 }
                minus[name]!.withMutableScalars { $0[index] -= 1e-2 }
                let numeric = (loss(plus).scalar - loss(minus).scalar) / 2e-2
                XCTAssertEqual(g[name]!.scalars[index], numeric, accuracy: 2e-3 + 2e-2 * abs(numeric), "\(name)[\(index)]")
            }
        }
        XCTAssertNotEqual(context.buffers["conv_norm_out.running_mean"], p["conv_norm_out.running_mean"])
        XCTAssertTrue(model.parameterSpecs.contains { $0.name == "conv_norm_out.running_var" && $0.isBuffer })
    }
}

/// IEEE half-precision encoding for the test file (round to nearest even, normal range).
enum Float16Bits {
    static func encode(_ value: Float) -> UInt16 {
        let bits = value.bitPattern
        let sign = UInt16((bits >> 16) & 0x8000)
        let exponent = Int((bits >> 23) & 0xFF) - 127 + 15
        var mantissa = bits & 0x7F_FFFF
        if exponent <= 0 { return sign }  // flush tiny values to zero
        if exponent >= 31 { return sign | 0x7C00 }
        // Round to nearest even on the 13 dropped bits.
        let dropped = mantissa & 0x1FFF
        mantissa >>= 13
        var result = UInt32(sign) | UInt32(exponent) << 10 | mantissa
        if dropped > 0x1000 || (dropped == 0x1000 && (mantissa & 1) == 1) { result += 1 }
        return UInt16(result)
    }
}
