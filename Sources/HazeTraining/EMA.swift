import Foundation
import HazeNN
import HazeTensor

/// An exponential moving average of the weights, θ̄ ← d θ̄ + (1 − d) θ, with diffusers' EMAModel
/// decay schedule: with warmup d = 1 − (1 + n)^(−power) (inv_gamma 1), else d = (1 + n)/(10 + n),
/// capped at `maxDecay`, where n is the number of updates after the first.
public struct ExponentialMovingAverage {
    /// The averaged weights θ̄ by parameter name.
    public var weights: ParameterSet
    /// The cap on the decay (diffusers' `decay`, 0.9999 by default).
    public let maxDecay: Float
    /// Whether the decay warms up as 1 − (1 + n)^(−power), else (1 + n)/(10 + n).
    public let warmup: Bool
    /// The power of the warm-up (2/3 by default, EMAModel's; 3/4 in diffusers' training scripts).
    public let power: Float
    /// Updates taken so far (stored in checkpoints: the decay depends on it).
    public private(set) var updates: Int

    /// An average that starts at `weights`, having taken `updates` updates (nonzero when resuming).
    public init(_ weights: ParameterSet, maxDecay: Float = 0.9999, warmup: Bool = true, power: Float = 2 / 3, updates: Int = 0) {
        (self.weights, self.maxDecay, self.warmup, self.power, self.updates) = (weights, maxDecay, warmup, power, updates)
    }

    /// The decay of the next update.
    public var decay: Float {
        let step = Float(updates)  // diffusers: optimization_step − 1 (update_after_step 0)
        if step <= 0 { return 0 }
        let value = warmup ? 1 - Float(Foundation.pow(Double(1 + step), -Double(power))) : (1 + step) / (10 + step)
        return min(value, maxDecay)
    }

    /// θ̄ ← d θ̄ + (1 − d) θ for every parameter of `current`, with d = `decay` (0 at the first update,
    /// which copies the weights); a parameter not averaged yet is taken as it is.
    public mutating func update(with current: ParameterSet) {
        let d = decay
        updates += 1
        for (name, theta) in current {
            // Taken out of the dictionary, so that it is updated in place, not copied first.
            guard var average = weights.removeValue(forKey: name) else { weights[name] = theta; continue }
            let n = average.count
            average.withMutableScalars { a in
                theta.withScalars { t in
                    Parallel.forEach(n, cost: 4) { range in for i in range { a[i] = d * a[i] + (1 - d) * t[i] } }
                }
            }
            weights[name] = average
        }
    }
}
