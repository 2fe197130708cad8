import XCTest
@testable import HazeTensor

/// Finite-difference gradient check, llm.c/DESIGN.md style.
///
/// The scalar checked is L = Σ y ⊙ r for a random cotangent r (not Σ y, which is blind to
/// softmax and normalisation). The analytic gradient comes from the tape seeded with r; the
/// numeric one from central differences (L(x + h) − L(x − h)) / 2h, with L accumulated in Double.
func checkGradients(_ inputs: [Tensor], step h: Float = 1e-2, tolerance: Double = 1e-2,
                    file: StaticString = #filePath, line: UInt = #line,
                    _ f: ([Tensor]) -> Tensor) {
    let y = f(inputs)
    let r = Tensor.normal(y.shape, seed: 1234)
    let (_, analytic) = valueWithGradient(at: inputs, seed: r, of: f)
    func loss(_ xs: [Tensor]) -> Double {
        zip(f(xs).scalars, r.scalars).reduce(0) { $0 + Double($1.0) * Double($1.1) }
    }
    for (i, input) in inputs.enumerated() {
        XCTAssertEqual(analytic[i].shape, input.shape, "gradient \(i) shape", file: file, line: line)
        var worst = 0.0
        for j in 0..<input.count {
            var plus = inputs, minus = inputs
            plus[i].scalars[j] += h
            minus[i].scalars[j] -= h
            let numeric = (loss(plus) - loss(minus)) / Double(2 * h)
            let error = abs(Double(analytic[i].scalars[j]) - numeric) / (1 + abs(numeric))
            worst = max(worst, error)
        }
        XCTAssertLessThanOrEqual(worst, tolerance, "input \(i) \(input.shape): worst gradient error \(worst)",
                                 file: file, line: line)
    }
}

/// Asserts two tensors have the same shape and agree to a relative error
/// max|a − b| / max(max|b|, floor) ≤ tolerance.
func assertClose(_ a: Tensor, _ b: Tensor, tolerance: Float = 1e-4, floor: Float = 1e-6,
                 _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.shape, b.shape, "shape mismatch \(message)", file: file, line: line)
    guard a.shape == b.shape else { return }
    var diff: Float = 0, scale: Float = floor
    for (x, y) in zip(a.scalars, b.scalars) {
        diff = max(diff, abs(x - y))
        scale = max(scale, abs(y))
    }
    XCTAssertLessThanOrEqual(diff / scale, tolerance, "relative error \(diff / scale) \(message)", file: file, line: line)
}
