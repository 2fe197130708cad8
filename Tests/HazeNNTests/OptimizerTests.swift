import XCTest
import HazeNN
import HazeTensor

/// `AdamOptimizer`'s vectorised update (haze_adam.c) against the rule written out as a scalar
/// Swift loop, bit for bit, for the three variants over several steps (the parity and lockstep
/// tests check the rule itself against PyTorch and Keras).
final class OptimizerTests: XCTestCase {
    func testUpdateMatchesTheScalarRuleBitForBit() {
        for variant in AdamOptimizer.Variant.allCases {
            let shape = [37, 29]  // not a multiple of any vector width
            var parameters: ParameterSet = ["w": Tensor.normal(shape, seed: 1)]
            var optimizer = AdamOptimizer(variant, learningRate: 3e-3, beta1: 0.8, beta2: 0.95, epsilon: 1e-6, weightDecay: 0.05)
            var (theta, m, v) = (parameters["w"]!.scalars, [Float](repeating: 0, count: 37 * 29), [Float](repeating: 0, count: 37 * 29))
            for step in 1...4 {
                let g = Tensor.normal(shape, seed: UInt64(10 + step))
                optimizer.update(&parameters, gradients: ["w": g])
                // The rule of AdamOptimizer's documentation, element by element.
                let (b1, b2, lr, eps, wd) = (optimizer.beta1, optimizer.beta2, optimizer.learningRate, optimizer.epsilon, optimizer.weightDecay)
                let correction1 = 1 - Float(pow(Double(b1), Double(step)))
                let correction2Root = Float((1 - pow(Double(b2), Double(step))).squareRoot())
                let keras = variant == .adamKeras
                let stepSize = keras ? lr * correction2Root / correction1 : lr / correction1
                for i in theta.indices {
                    var gi = g.scalars[i]
                    if variant == .adamW { theta[i] *= 1 - lr * wd } else { gi += wd * theta[i] }
                    m[i] = b1 * m[i] + (1 - b1) * gi
                    v[i] = b2 * v[i] + (1 - b2) * gi * gi
                    let root = keras ? v[i].squareRoot() : v[i].squareRoot() / correction2Root
                    theta[i] -= stepSize * m[i] / (root + eps)
                }
                XCTAssertEqual(parameters["w"]!.scalars, theta, "\(variant), step \(step): weights")
                XCTAssertEqual(optimizer.firstMoments["w"]!.scalars, m, "\(variant), step \(step): m")
                XCTAssertEqual(optimizer.secondMoments["w"]!.scalars, v, "\(variant), step \(step): v")
            }
        }
    }
}
