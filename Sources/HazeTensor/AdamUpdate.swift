import CHazeKernels

/// The elementwise rule of one Adam step, as HazeNN's `AdamOptimizer` sets it up for the step
/// (its documentation has the equations): β₁, β₂, lr, λ, ε, the step size (lr over the first
/// bias correction, Keras: times √(1 − β₂ᵗ) too), √(1 − β₂ᵗ), and which variant.
public struct AdamRule: Sendable {
    /// β₁, β₂, lr, λ, ε, the step size and √(1 − β₂ᵗ) of this step.
    public var beta1, beta2, learningRate, weightDecay, epsilon, stepSize, correction2Root: Float
    /// AdamW: decoupled weight decay θ ← θ (1 − lr·λ). Otherwise an L2 penalty λθ in the gradient.
    public var decoupled: Bool
    /// Keras' Adam: ε added to √v before the bias correction (stepSize carries it).
    public var keras: Bool

    /// A rule from its constants (see the properties).
    public init(beta1: Float, beta2: Float, learningRate: Float, weightDecay: Float, epsilon: Float, stepSize: Float,
                correction2Root: Float, decoupled: Bool, keras: Bool) {
        (self.beta1, self.beta2, self.learningRate, self.weightDecay, self.epsilon) = (beta1, beta2, learningRate, weightDecay, epsilon)
        (self.stepSize, self.correction2Root, self.decoupled, self.keras) = (stepSize, correction2Root, decoupled, keras)
    }
}

extension Tensor {
    /// One Adam step in place: parameters θ, moments m and v, gradient g, all of one shape
    /// (CHazeKernels/haze_adam.c, vectorised, parallel over the elements; each element's
    /// arithmetic is fixed, so the bits do not depend on the split).
    public static func adamUpdate(_ theta: inout Tensor, m: inout Tensor, v: inout Tensor, gradient g: Tensor, rule: AdamRule) {
        precondition(theta.shape == g.shape && m.shape == g.shape && v.shape == g.shape,
                     "Adam: parameter \(theta.shape), moments \(m.shape) and \(v.shape), gradient \(g.shape)")
        var c = haze_adam_rule(beta1: rule.beta1, beta2: rule.beta2, learning_rate: rule.learningRate, weight_decay: rule.weightDecay,
                               epsilon: rule.epsilon, step_size: rule.stepSize, correction2_root: rule.correction2Root,
                               decoupled: rule.decoupled ? 1 : 0, keras: rule.keras ? 1 : 0)
        theta.withMutableScalars { pt in m.withMutableScalars { pm in v.withMutableScalars { pv in g.withScalars { pg in
            Parallel.forEach(g.count, cost: 8) { range in
                haze_adam_update(pt, pm, pv, pg, range.lowerBound, range.count, &c)
            }
        } } } }
    }
}
