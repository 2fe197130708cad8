import HazeTensor

/// How a parameter is initialised when a model is created from a config (PyTorch's defaults).
public enum Initializer: Sendable {
    case zeros, ones
    /// U(−bound, bound), PyTorch's default for Linear/Conv weights and biases (bound = 1/√fan_in).
    case uniform(bound: Float)
    /// N(0, std²), as nn.Embedding.
    case normal(std: Float)
}

/// One named tensor of a layer: its full state-dict key (e.g. `down_blocks.0.resnets.1.conv1.weight`),
/// shape and initialiser. Buffers (BatchNorm running statistics) are saved but not trained.
public struct ParameterSpec: Sendable {
    /// The full state-dict key.
    public let name: String
    /// The tensor's shape.
    public let shape: [Int]
    /// How a fresh model draws it.
    public let initializer: Initializer
    /// Whether it is a buffer (saved with the model, not trained).
    public let isBuffer: Bool

    /// A spec for `name` of `shape`, drawn with `initializer`.
    public init(_ name: String, _ shape: [Int], _ initializer: Initializer, isBuffer: Bool = false) {
        (self.name, self.shape, self.initializer, self.isBuffer) = (name, shape, initializer, isBuffer)
    }
}

/// A layer: knows the names and shapes of its parameters (the diffusers state-dict keys, built
/// from the layer's `prefix`) and computes its forward from a `ParameterSet`.
public protocol Module {
    /// Every parameter and buffer of this layer and its children, with full names.
    var parameterSpecs: [ParameterSpec] { get }
}

/// Named tensors of a model: trainable parameters by state-dict key.
public typealias ParameterSet = [String: Tensor]

extension ParameterSet {
    /// The tensor named `name`; models validate their parameter sets on load, so a missing name
    /// here is a programming error.
    func value(_ name: String) -> Tensor {
        guard let t = self[name] else { preconditionFailure("parameter \(name) is missing") }
        return t
    }
}

/// Joins a prefix and a name with a dot (`"a.b" + "c"` → `"a.b.c"`).
func key(_ prefix: String, _ name: String) -> String { prefix.isEmpty ? name : prefix + "." + name }

/// Mutable state of one forward pass: training or evaluation, BatchNorm running statistics,
/// and the random stream for dropout.
public final class ForwardContext {
    /// Whether this is a training pass: dropout is applied and BatchNorm uses the batch statistics and
    /// updates `buffers`; otherwise BatchNorm uses its running statistics.
    public var training: Bool
    /// Buffers (BatchNorm running mean/variance) by key, updated in training mode.
    public var buffers: [String: Tensor]
    /// The random stream dropout draws from.
    public var generator: RandomGenerator

    /// A context for one forward pass; the defaults are those of inference.
    public init(training: Bool = false, buffers: [String: Tensor] = [:], generator: RandomGenerator = RandomGenerator(seed: 0)) {
        (self.training, self.buffers, self.generator) = (training, buffers, generator)
    }
}

extension Module {
    /// Fresh parameters and buffers drawn with each spec's initialiser from `seed`.
    public func initialParameters(seed: UInt64) -> ParameterSet {
        var generator = RandomGenerator(seed: seed)
        var result: ParameterSet = [:]
        for spec in parameterSpecs {
            switch spec.initializer {
            case .zeros: result[spec.name] = Tensor.zeros(spec.shape)
            case .ones: result[spec.name] = Tensor.ones(spec.shape)
            case .uniform(let bound): result[spec.name] = generator.uniform(spec.shape, low: -bound, high: bound)
            case .normal(let std): result[spec.name] = generator.normal(spec.shape, std: std)
            }
        }
        return result
    }

    /// Number of trainable scalars.
    public var parameterCount: Int {
        parameterSpecs.filter { !$0.isBuffer }.reduce(0) { $0 + $1.shape.reduce(1, *) }
    }
}
