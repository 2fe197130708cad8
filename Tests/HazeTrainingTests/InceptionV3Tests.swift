import Foundation
import XCTest
import HazeIO
import HazeTensor
@testable import HazeTraining

/// The FID InceptionV3 and its pooling/resize ops against pytorch-fid and torch
/// (scripts/make_inception_fixtures.py). The network uses pseudo-random weights that the script
/// and `pseudoRandomWeights` both compute from the tensor names.
final class InceptionV3Tests: XCTestCase {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/inception.safetensors").path

    /// The script's formula: u = (splitmix64(fnv1a64(name) ^ i) >> 40) / 2^24, then scaled by kind.
    static func pseudoRandomWeights() -> [String: Tensor] {
        func fnv1a64(_ s: String) -> UInt64 {
            s.utf8.reduce(0xCBF2_9CE4_8422_2325) { ($0 ^ UInt64($1)) &* 0x100_0000_01B3 }
        }
        func splitmix64(_ v: UInt64) -> UInt64 {
            var x = v &+ 0x9E37_79B9_7F4A_7C15
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        var weights: [String: Tensor] = [:]
        for (name, shape) in FIDInceptionV3.parameterShapes {
            let h = fnv1a64(name), count = shape.reduce(1, *), fanIn = Double(shape.dropFirst().reduce(1, *))
            weights[name] = Tensor(shape: shape, scalars: (0..<count).map { i in
                let u = Double(splitmix64(h ^ UInt64(i)) >> 40) / Double(1 << 24)
                let v: Double
                if name.hasSuffix("conv.weight") { v = (2 * u - 1) * (6 / fanIn).squareRoot() }
                else if name.hasSuffix("bn.bias") { v = 0.2 * (2 * u - 1) }
                else if name.hasSuffix("bn.running_mean") { v = 0.1 * (2 * u - 1) }
                else { v = 0.5 + u }  // bn.weight, bn.running_var
                return Float(v)
            })
        }
        return weights
    }

    func testBlockOutputsMatchPytorchFID() throws {
        let f = try SafeTensors.read(contentsOf: Self.fixture)
        let net = try FIDInceptionV3(weights: Self.pseudoRandomWeights(), source: "pseudo-random")
        let means = net.blockMeans(try f.tensor("input"))
        for (i, mean) in means.enumerated() {
            let expected = try f.tensor("block\(i)")
            XCTAssertEqual(mean.shape, expected.shape)
            let scale = expected.scalars.map(abs).max()!
            let worst = zip(mean.scalars, expected.scalars).map { abs($0 - $1) }.max()!
            XCTAssertLessThan(worst / scale, 1e-4, "block \(i)")
        }
    }

    func testMissingAndMisshapenWeightsAreListed() {
        var weights = Self.pseudoRandomWeights()
        weights["Mixed_6c.branch7x7_2.conv.weight"] = Tensor.zeros([160, 160, 7, 1])
        weights["Conv2d_1a_3x3.bn.running_var"] = nil
        XCTAssertThrowsError(try FIDInceptionV3(weights: weights, source: "w.safetensors")) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("w.safetensors"), text)
            XCTAssertTrue(text.contains("missing Conv2d_1a_3x3.bn.running_var"), text)
            XCTAssertTrue(text.contains("Mixed_6c.branch7x7_2.conv.weight: expected [160, 160, 1, 7], found [160, 160, 7, 1]"), text)
        }
    }

    func testPoolingAndBilinearResizeMatchTorch() throws {
        let f = try SafeTensors.read(contentsOf: Self.fixture)
        func check(_ got: Tensor, _ key: String) throws {
            let expected = try f.tensor(key)
            XCTAssertEqual(got.shape, expected.shape, key)
            for (a, b) in zip(got.scalars, expected.scalars) { XCTAssertEqual(a, b, accuracy: 1e-6, key) }
        }
        let r = try f.tensor("resize_in"), p = try f.tensor("pool_in")
        try check(r.resizedBilinear(height: 11, width: 13), "resize_up")
        try check(r.resizedBilinear(height: 3, width: 4), "resize_down")
        try check(p.pooled(.maximum, kernel: 3, stride: 2), "maxpool_s2")
        try check(p.pooled(.maximum, kernel: 3, stride: 1, padding: 1), "maxpool_s1")
        try check(p.pooled(.averageExcludingPadding, kernel: 3, stride: 1, padding: 1), "avgpool")
    }
}
