import Foundation
import HazeIO
import HazeTensor

/// Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019) with PyTorch's semantics:
///   AdamW:  θ ← θ (1 − lr·λ)                        (decoupled weight decay)
///   Adam:   g ← g + λ θ                             (L2 penalty in the gradient)
///   m ← β₁ m + (1 − β₁) g;   v ← β₂ v + (1 − β₂) g²
///   θ ← θ − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε)
/// and Keras' Adam (`adamKeras`, as the TensorFlow notebook trains), which adds ε to √v before
/// the bias correction — the paper's ε̂ of its section 2 — with an L2 penalty like Adam:
///   θ ← θ − lr·√(1 − β₂ᵗ)/(1 − β₁ᵗ) · m / (√v + ε)
/// The state (step, m, v) saves to and restores from a safetensors file exactly.
public struct AdamOptimizer {
    /// Which update rule (`--optimizer`): "adam", "adamw" or "adam-keras".
    public enum Variant: String, Codable, CaseIterable, Sendable { case adam, adamW = "adamw", adamKeras = "adam-keras" }

    /// The update rule.
    public var variant: Variant
    /// lr, the step size (the trainer sets it from its schedule before each update).
    public var learningRate: Float
    /// Decay rates of the first and second moment averages.
    public var beta1: Float, beta2: Float
    /// ε, added to the denominator (after the bias correction, except for `adamKeras`).
    public var epsilon: Float
    /// λ: decoupled weight decay for AdamW, an L2 penalty λθ added to the gradient for the others.
    public var weightDecay: Float
    /// Number of updates taken.
    public private(set) var step = 0
    /// First and second moments by parameter name.
    public private(set) var firstMoments: [String: Tensor] = [:]
    /// Second moments v by parameter name.
    public private(set) var secondMoments: [String: Tensor] = [:]

    /// A fresh optimizer (step 0, no moments); the defaults are PyTorch's AdamW defaults.
    public init(_ variant: Variant = .adamW, learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
                epsilon: Float = 1e-8, weightDecay: Float = 0.01) {
        (self.variant, self.learningRate, self.beta1, self.beta2) = (variant, learningRate, beta1, beta2)
        (self.epsilon, self.weightDecay) = (epsilon, weightDecay)
    }

    /// Applies one update to every parameter that has a gradient.
    public mutating func update(_ parameters: inout ParameterSet, gradients: [String: Tensor]) {
        step += 1
        let correction1 = 1 - Float(Foundation.pow(Double(beta1), Double(step)))
        let correction2Root = Float((1 - Foundation.pow(Double(beta2), Double(step))).squareRoot())
        let keras = variant == .adamKeras
        // Keras: ε on √v, both bias corrections folded into the step size.
        let rule = AdamRule(beta1: beta1, beta2: beta2, learningRate: learningRate, weightDecay: weightDecay, epsilon: epsilon,
                            stepSize: keras ? learningRate * correction2Root / correction1 : learningRate / correction1,
                            correction2Root: correction2Root, decoupled: variant == .adamW, keras: keras)
        for name in gradients.keys.sorted() {
            guard let g = gradients[name], parameters[name] != nil else { continue }
            // Taken out of their dictionaries, so that they are updated in place, not copied first.
            var theta = parameters.removeValue(forKey: name)!
            var m = firstMoments.removeValue(forKey: name) ?? Tensor.zeros(theta.shape)
            var v = secondMoments.removeValue(forKey: name) ?? Tensor.zeros(theta.shape)
            precondition(theta.shape == g.shape && m.shape == g.shape && v.shape == g.shape,
                         "\(name): parameter \(theta.shape), gradient \(g.shape), optimizer moments \(m.shape) and \(v.shape)")
            Tensor.adamUpdate(&theta, m: &m, v: &v, gradient: g, rule: rule)
            parameters[name] = theta
            firstMoments[name] = m
            secondMoments[name] = v
        }
    }

    /// The state as tensors (`exp_avg.NAME`, `exp_avg_sq.NAME`) and metadata (step and settings).
    public var state: SafeTensors {
        var tensors: [String: Tensor] = [:]
        for (name, m) in firstMoments { tensors["exp_avg." + name] = m }
        for (name, v) in secondMoments { tensors["exp_avg_sq." + name] = v }
        return SafeTensors(tensors: tensors, metadata: [
            "optimizer": variant.rawValue, "step": String(step), "lr": "\(learningRate)", "beta1": "\(beta1)",
            "beta2": "\(beta2)", "eps": "\(epsilon)", "weight_decay": "\(weightDecay)"])
    }

    /// Restores an optimizer from `state` (as written by `state`); `file` names it in errors.
    public init(state: SafeTensors, file: String) throws {
        let meta = state.metadata
        func number(_ key: String) throws -> Float {
            guard let s = meta[key], let x = Float(s) else { throw SafeTensorsError(file: file, problem: "optimizer state lacks a numeric '\(key)'") }
            return x
        }
        guard let v = meta["optimizer"].flatMap(Variant.init(rawValue:)), let step = meta["step"].flatMap(Int.init) else {
            throw SafeTensorsError(file: file, problem: "not an optimizer state (missing 'optimizer' or 'step' metadata)")
        }
        // Whole numbers of a Double, so that the bias corrections β^step stay exact and step + 1 cannot overflow.
        guard (0...(1 << 53)).contains(step) else { throw SafeTensorsError(file: file, problem: "step \(step) is not in 0…2^53") }
        self.init(v, learningRate: try number("lr"), beta1: try number("beta1"), beta2: try number("beta2"),
                  epsilon: try number("eps"), weightDecay: try number("weight_decay"))
        self.step = step
        for (name, t) in state.tensors {
            if name.hasPrefix("exp_avg_sq.") { secondMoments[String(name.dropFirst(11))] = t }
            else if name.hasPrefix("exp_avg.") { firstMoments[String(name.dropFirst(8))] = t }
        }
        // `update` reads both moments of a parameter element by element: they come in pairs of one shape.
        for name in Set(firstMoments.keys).union(secondMoments.keys).sorted() where firstMoments[name]?.shape != secondMoments[name]?.shape {
            func shape(_ t: Tensor?) -> String { t.map { "\($0.shape)" } ?? "missing" }
            throw SafeTensorsError(file: file, tensor: "exp_avg.\(name)",
                                   problem: "first moment \(shape(firstMoments[name])) and second moment (exp_avg_sq) \(shape(secondMoments[name])) do not match")
        }
    }

    /// Checks the moments against the parameters they belong to (name → shape), as a resumed run
    /// must before its first update: a moment of a parameter the model does not have, or of
    /// another shape, is an error naming the file and the tensor.
    public func checkMoments(against shapes: [String: [Int]], file: String) throws {
        for (name, m) in firstMoments.sorted(by: { $0.key < $1.key }) where shapes[name] != m.shape {
            throw SafeTensorsError(file: file, tensor: "exp_avg.\(name)", problem: shapes[name].map { "shape \(m.shape), but the parameter has shape \($0)" }
                                       ?? "the model has no parameter \(name)")
        }
    }
}
