import Foundation
import XCTest
import HazeIO
@testable import HazeTensor

/// Forward and backward parity with PyTorch, on fixtures written by
/// scripts/make_tensor_fixtures.py (inputs, `out`, a cotangent `grad_out`, and `grad_<input>`
/// = ∂Σ(out ⊙ grad_out)/∂input, computed in float64).
final class ParityTests: XCTestCase {
    struct Fixture {
        let file: SafeTensors
        let name: String
        func callAsFunction(_ key: String) throws -> Tensor { try file.tensor(key, file: name) }
        func meta(_ key: String) -> String { file.metadata[key] ?? "" }
    }

    func load(_ name: String) throws -> Fixture {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/\(name).safetensors").path
        return Fixture(file: try SafeTensors.read(contentsOf: path), name: name)
    }

    /// Runs `op` on the named inputs and compares the output and every input gradient.
    func check(_ name: String, inputs: [String], tolerance: Float = 1e-4,
               file: StaticString = #filePath, line: UInt = #line,
               _ op: (Fixture, [Tensor]) -> Tensor) throws {
        let f = try load(name)
        let values = try inputs.map { try f($0) }
        let (out, grads) = valueWithGradient(at: values, seed: try f("grad_out")) { op(f, $0) }
        assertClose(out, try f("out"), tolerance: tolerance, "\(name) out", file: file, line: line)
        for (input, grad) in zip(inputs, grads) {
            assertClose(grad, try f("grad_\(input)"), tolerance: tolerance, "\(name) grad_\(input)", file: file, line: line)
        }
    }

    func padding(_ f: Fixture) -> Padding2D {
        let p = f.meta("padding").split(separator: ",").map { Int($0)! }
        return Padding2D(top: p[0], bottom: p[1], left: p[2], right: p[3])
    }

    /// Runs a bilinear op (convolution, linear) on the named inputs x, weight, bias and compares
    /// the output and the input gradients within the rounding bound of their sums
    /// (`RoundingBound`; the references are float64 results rounded to float32), the magnitudes
    /// being the same op on absolute values seeded with |grad_out|. `lengths`: the terms per
    /// element of out, ∂x, ∂weight, ∂bias.
    func checkBilinear(_ name: String, lengths: (Fixture) throws -> [Int], growth: Double = 1,
                       file: StaticString = #filePath, line: UInt = #line,
                       _ op: (Fixture, [Tensor]) -> Tensor) throws {
        let f = try load(name)
        let values = try ["x", "weight", "bias"].map { try f($0) }, cotangent = try f("grad_out")
        let (out, grads) = valueWithGradient(at: values, seed: cotangent) { op(f, $0) }
        let original = ConvolutionAlgorithm.current
        ConvolutionAlgorithm.current = .im2col
        let absolute = values.map { $0.abs() }
        let (magnitude, magnitudes) = valueWithGradient(at: absolute, seed: cotangent.abs()) { op(f, $0) }
        ConvolutionAlgorithm.current = original
        let n = try lengths(f)
        for (i, (key, actual)) in zip(["out", "grad_x", "grad_weight", "grad_bias"], [out] + grads).enumerated() {
            RoundingBound.assertAgree(actual, try f(key), magnitude: ([magnitude] + magnitudes)[i], length: n[i],
                                      growth: growth, "\(name) \(key)", file: file, line: line)
        }
    }

    func testConv2d() throws {
        for name in ["conv2d_3x3_pad1", "conv2d_3x3_stride2_pad1", "conv2d_3x3_stride2_asym", "conv2d_1x1"] {
            // 3×3 with padding 1 runs through Winograd F(2×2, 3×3) (WinogradTests.smallTileGrowth).
            try checkBilinear(name, lengths: { f in
                let (w, out) = (try f("weight").shape, try f("out").shape)
                let l = ConvolutionMagnitudes.lengths(weight: w, output: out)
                return [l.y, l.dx, l.dw, l.db]
            }, growth: name == "conv2d_3x3_pad1" ? WinogradTests.smallTileGrowth : 1) { f, t in
                Tensor.conv2d(t[0], weight: t[1], bias: t[2], stride: Int(f.meta("stride"))!, padding: padding(f))
            }
        }
        // Integer inputs: the forward is exact.
        let f = try load("conv2d_3x3_pad1")
        XCTAssertEqual(Tensor.conv2d(try f("x"), weight: try f("weight"), bias: try f("bias"), padding: 1), try f("out"))
    }

    func testGroupNorm() throws {
        for name in ["group_norm", "group_norm_eps6"] {
            try check(name, inputs: ["x", "weight", "bias"]) { f, t in
                Tensor.groupNorm(t[0], groups: Int(f.meta("groups"))!, weight: t[1], bias: t[2], epsilon: Float(f.meta("eps"))!)
            }
        }
    }

    func testLayerNorm() throws {
        try check("layer_norm", inputs: ["x", "weight", "bias"]) { f, t in
            Tensor.layerNorm(t[0], weight: t[1], bias: t[2], epsilon: Float(f.meta("eps"))!)
        }
    }

    func testBatchNorm() throws {
        for training in [true, false] {
            let name = training ? "batch_norm_train" : "batch_norm_eval"
            let f = try load(name)
            var mean = try f("running_mean"), variance = try f("running_var")
            try check(name, inputs: ["x", "weight", "bias"]) { f, t in
                var m = try! f("running_mean"), v = try! f("running_var")
                return Tensor.batchNorm(t[0], weight: t[1], bias: t[2], runningMean: &m, runningVariance: &v,
                                        training: training, momentum: Float(f.meta("momentum"))!, epsilon: Float(f.meta("eps"))!)
            }
            if training {
                _ = Tensor.batchNorm(try f("x"), weight: try f("weight"), bias: try f("bias"),
                                     runningMean: &mean, runningVariance: &variance, training: true)
                assertClose(mean, try f("running_mean_after"), "running mean")
                assertClose(variance, try f("running_var_after"), "running variance")
            }
        }
    }

    func testAttention() throws {
        for name in ["attention", "attention_fmnist"] {
            try check(name, inputs: ["query", "key", "value"]) { f, t in
                Tensor.scaledDotProductAttention(query: t[0], key: t[1], value: t[2], scale: Float(f.meta("scale"))!)
            }
        }
    }

    func testSoftmax() throws {
        try check("softmax_axis1", inputs: ["x"]) { f, t in t[0].softmax(alongAxis: Int(f.meta("axis"))!) }
        try check("log_softmax_last", inputs: ["x"]) { f, t in t[0].logSoftmax(alongAxis: Int(f.meta("axis"))!) }
    }

    func testLinear() throws {
        // x [N, I] · wᵀ [I, O] + b: I + 1 terms per output, O per ∂x, N per ∂w and ∂b.
        try checkBilinear("linear", lengths: { f in
            let (x, w) = (try f("x").shape, try f("weight").shape)
            let rows = x.dropLast().reduce(1, *)
            return [w[1] + 1, w[0], rows, rows]
        }) { _, t in Tensor.linear(t[0], weight: t[1], bias: t[2]) }
    }
}
