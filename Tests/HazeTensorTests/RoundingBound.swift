import XCTest
@testable import HazeTensor

/// Tolerances for float32 reductions that follow from the arithmetic, not from the result's
/// own size (a sum with cancellation can be far smaller than its terms, and its rounding error
/// is not).
///
/// A sum of n terms t₁ … tₙ computed in float32, in any order, with any blocking, differs from
/// the exact sum by at most γₙ · Σ|tᵢ| (γₙ = n·u / (1 − n·u), u = 2⁻²⁴; Higham, *Accuracy and
/// Stability of Numerical Algorithms*, §3.1), and with probability ≥ 1 − 2·exp(−λ²/2) by at most
/// λ·√n·u·Σ|tᵢ| when the rounding errors are independent and of mean zero (Higham & Mary, "A New
/// Approach to Probabilistic Rounding Error Analysis", SISC 41, 2019, Theorem 3.1). The worst
/// case grows with n, the probabilistic bound with √n; measured errors sit near the latter, so
/// the tests use it with λ = 6 (one element in 10⁸ may exceed it by chance) for each of the two
/// computations being compared.
///
/// For a bilinear op such as a convolution, Σ|tᵢ| of every output is the same op on the absolute
/// values of its inputs (`conv(|x|, |w|) + |b|`), and the magnitudes of the gradients are the
/// gradients of the same absolute problem seeded with |cotangent|, so `magnitude` is computed
/// by running the reference path on |inputs|.
enum RoundingBound {
    /// float32's unit roundoff u = 2⁻²⁴.
    static let unitRoundoff = Double(Float.ulpOfOne) / 2
    /// λ of the probabilistic bound.
    static let lambda = 6.0

    /// max over elements of |actual − reference| / (√n · u · magnitude): how many units of the
    /// probabilistic rounding scale the two computations differ by. Two correct float32
    /// computations of the same sums stay below 2λ; one wrong term of the sum, or a wrong
    /// element, is ≳ 1/(n·√n·u) (≳ 10³ for n ≤ 10⁴).
    static func worstRatio(_ actual: Tensor, _ reference: Tensor, magnitude: Tensor, length n: Int) -> Double {
        precondition(actual.shape == reference.shape && reference.shape == magnitude.shape,
                     "worstRatio: \(actual.shape), \(reference.shape), \(magnitude.shape)")
        let scale = Double(n).squareRoot() * unitRoundoff
        var worst = 0.0
        for ((a, r), m) in zip(zip(actual.scalars, reference.scalars), magnitude.scalars) {
            let difference = abs(Double(a) - Double(r))
            guard difference > 0 else { continue }
            // A zero magnitude means every term is zero: then any difference is an error.
            worst = max(worst, m > 0 ? difference / (scale * Double(m)) : .infinity)
        }
        return worst
    }

    /// Asserts that `actual` and `reference`, two float32 computations of the same sums of `n`
    /// terms (one of them possibly in a transformed domain that amplifies the rounding by
    /// `growth`), agree within 2λ·growth·√n·u·magnitude elementwise.
    static func assertAgree(_ actual: Tensor, _ reference: Tensor, magnitude: Tensor, length n: Int,
                            growth: Double = 1, _ message: @autoclosure () -> String = "",
                            file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.shape, reference.shape, "shape \(message())", file: file, line: line)
        guard actual.shape == reference.shape else { return }
        let ratio = worstRatio(actual, reference, magnitude: magnitude, length: n)
        XCTAssertLessThanOrEqual(ratio, 2 * lambda * growth,
                                 "\(message()): |Δ| reaches \(ratio) × √n·u·Σ|terms| (n = \(n))", file: file, line: line)
    }
}

/// The convolution and its gradients on absolute values, through im2col (exact products, plain
/// sums): `y` = conv(|x|, |w|) + |b| and, for L = Σ y ⊙ r, the magnitudes of L, ∂x, ∂w and ∂b
/// (the gradients of the absolute problem seeded with |r|). The summation lengths that go with
/// them are in `ConvolutionMagnitudes.lengths`.
struct ConvolutionMagnitudes {
    let y: Tensor, loss: Tensor, dx: Tensor, dw: Tensor, db: Tensor?

    init(x: Tensor, weight: Tensor, bias: Tensor?, cotangent: Tensor, stride: Int = 1, padding: Padding2D) {
        let original = ConvolutionAlgorithm.current
        defer { ConvolutionAlgorithm.current = original }
        ConvolutionAlgorithm.current = .im2col
        let inputs = [x.abs(), weight.abs()] + (bias.map { [$0.abs()] } ?? [])
        let r = cotangent.abs()
        func convolve(_ t: [Tensor]) -> Tensor {
            Tensor.conv2d(t[0], weight: t[1], bias: t.count > 2 ? t[2] : nil, stride: stride, padding: padding)
        }
        let (loss, grads) = valueWithGradient(at: inputs) { (convolve($0) * r).sum() }
        (y, self.loss, dx, dw, db) = (convolve(inputs), loss, grads[0], grads[1], grads.count > 2 ? grads[2] : nil)
    }

    /// Terms per element of y (K = C·KH·KW products plus the bias), of ∂x (≤ O·KH·KW), of ∂w and
    /// ∂b (N·OH·OW), and of L: its error is Σ|rᵢ|·|δyᵢ| plus that of a sum of P = |y| products,
    /// ≤ λ(√K + √P)·u·Σ|rᵢ|·magnitude(yᵢ), i.e. the length (√K + √P)².
    static func lengths(weight: [Int], output: [Int]) -> (y: Int, loss: Int, dx: Int, dw: Int, db: Int) {
        let k = weight[1] * weight[2] * weight[3] + 1, items = output[0] * output[2] * output[3]
        let loss = (Double(k).squareRoot() + Double(output.reduce(1, *)).squareRoot())
        return (k, Int((loss * loss).rounded(.up)), weight[0] * weight[2] * weight[3], items, items)
    }

    /// The magnitudes in the order of `lengths` and of `valueWithGradient`'s results.
    var all: [Tensor] { [y, loss, dx, dw] + (db.map { [$0] } ?? []) }
    static func lengthList(weight: [Int], output: [Int]) -> [Int] {
        let l = lengths(weight: weight, output: output)
        return [l.y, l.loss, l.dx, l.dw, l.db]
    }
}
