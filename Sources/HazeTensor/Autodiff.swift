/// Reverse-mode automatic differentiation on a tape.
///
/// Every differentiable op computes its forward value with a kernel; when one of its inputs is
/// recorded, it also appends a `TapeNode` holding a pullback closure that maps the gradient of
/// the output to the gradients of the inputs. Pullbacks capture the input values and saved
/// statistics they need, never the output's node, so the graph holds no cycles and is freed when
/// the last tensor of it goes away. Values never recorded (inference) cost nothing extra.

/// One recorded operation (or a leaf: a differentiated input).
final class TapeNode {
    /// Nodes of the inputs the pullback produces gradients for (`nil`: input not recorded).
    let inputs: [TapeNode?]
    /// Maps the output gradient to one gradient per input (`nil` where not needed). Released
    /// once it has run, which frees the values it captured while the backward pass goes on.
    var pullback: ((Tensor) -> [Tensor?])?
    /// Accumulated gradient of the output during a backward pass.
    var gradient: Tensor?

    init(inputs: [TapeNode?], pullback: ((Tensor) -> [Tensor?])?) {
        self.inputs = inputs
        self.pullback = pullback
    }
}

extension Tensor {
    /// Attaches a tape node to `output` when any of `inputs` is recorded. `pullback` receives
    /// the output gradient (shape of `output`) and returns one gradient per input, each with
    /// that input's shape, or `nil` for inputs that need none.
    static func record(_ output: Tensor, _ inputs: [Tensor], pullback: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        guard inputs.contains(where: { $0.node != nil }) else { return output }
        return recordAlways(output, inputs, pullback: pullback)
    }

    static func recordAlways(_ output: Tensor, _ inputs: [Tensor], pullback: @escaping (Tensor) -> [Tensor?]) -> Tensor {
        var result = output
        result.node = TapeNode(inputs: inputs.map(\.node), pullback: pullback)
        return result
    }

    /// Whether any of the tensors is recorded (lets an op skip saving what backward needs).
    static func anyRecorded(_ tensors: Tensor...) -> Bool { tensors.contains { $0.node != nil } }
}

/// Runs the backward pass from `output`, seeded with `seed` (same shape as `output`), and
/// returns the gradients that reached `leaves`; a leaf the output does not depend on gets zeros.
/// `onLeafReady(i, gradient)`, when given, is called as soon as leaf i's gradient is final (after
/// the last node that uses it), while the rest of the backward pass still runs — the hook a
/// data-parallel trainer uses to start reducing gradients early (PyTorch DDP's bucket hooks).
func backpropagate(from output: Tensor, seed: Tensor, to leaves: [TapeNode], shapes: [[Int]],
                   onLeafReady: ((Int, Tensor) -> Void)? = nil) -> [Tensor] {
    precondition(seed.shape == output.shape, "seed shape \(seed.shape) != output shape \(output.shape)")
    guard let root = output.node else {
        let zeros = shapes.map { Tensor.zeros($0) }
        for (i, z) in zeros.enumerated() { onLeafReady?(i, z) }
        return zeros
    }
    // Topological order by iterative depth-first search (graphs can be thousands of nodes deep).
    var order: [TapeNode] = []
    var visited = Set<ObjectIdentifier>()
    var stack: [(TapeNode, Int)] = [(root, 0)]
    visited.insert(ObjectIdentifier(root))
    while let (node, next) = stack.popLast() {
        if next < node.inputs.count {
            stack.append((node, next + 1))
            if let child = node.inputs[next], visited.insert(ObjectIdentifier(child)).inserted {
                stack.append((child, 0))
            }
        } else {
            order.append(node)
        }
    }
    root.gradient = seed.detached
    let processing = Array(order.reversed())
    // The leaves that become final after each node: those whose last user it is.
    var readyAfter: [Int: [Int]] = [:]
    var unused = Set(leaves.indices)
    if onLeafReady != nil {
        let leafIndex = Dictionary(uniqueKeysWithValues: leaves.enumerated().map { (ObjectIdentifier($1), $0) })
        var lastUse: [Int: Int] = [:]
        for (position, node) in processing.enumerated() where node.pullback != nil {
            for case let input? in node.inputs { if let i = leafIndex[ObjectIdentifier(input)] { lastUse[i] = position } }
        }
        for (leaf, position) in lastUse { readyAfter[position, default: []].append(leaf) }
        unused.subtract(lastUse.keys)
    }
    for (position, node) in processing.enumerated() {
        if let pullback = node.pullback, let gradient = node.gradient {
            node.gradient = nil  // consumed: free it (leaves have no pullback and keep theirs)
            node.pullback = nil  // and the activations it saved, once this call returns
            let inputGradients = pullback(gradient)
            for (input, g) in zip(node.inputs, inputGradients) {
                guard let input, let g else { continue }
                if input.gradient == nil {
                    input.gradient = g.detached
                } else {
                    input.gradient!.addInPlace(g)
                }
            }
        }
        for i in readyAfter[position, default: []].sorted() { onLeafReady?(i, leaves[i].gradient ?? Tensor.zeros(shapes[i])) }
    }
    if onLeafReady != nil { for i in unused.sorted() { onLeafReady?(i, Tensor.zeros(shapes[i])) } }
    let result = zip(leaves, shapes).map { leaf, shape in leaf.gradient ?? Tensor.zeros(shape) }
    for node in order { node.gradient = nil }
    return result
}

/// Copies of `inputs` recorded as leaves of a new tape, and their leaf nodes.
func tracking(_ inputs: [Tensor]) -> (tracked: [Tensor], leaves: [TapeNode]) {
    let leaves = inputs.map { _ in TapeNode(inputs: [], pullback: nil) }
    let tracked = zip(inputs, leaves).map { input, leaf -> Tensor in
        var t = input.detached
        t.node = leaf
        return t
    }
    return (tracked, leaves)
}

/// Evaluates `body` at `inputs` while recording, then returns its value and the gradient of
/// that value (seeded with `seed`, ones by default, so a scalar loss gives ∂loss/∂input) with
/// respect to every input. Gradients accumulate where an input is used more than once.
public func valueWithGradient(
    at inputs: [Tensor], seed: Tensor? = nil, of body: ([Tensor]) throws -> Tensor
) rethrows -> (value: Tensor, gradients: [Tensor]) {
    let (tracked, leaves) = tracking(inputs)
    let value = try body(tracked)
    let gradients = backpropagate(from: value, seed: seed ?? Tensor.ones(value.shape),
                                  to: leaves, shapes: inputs.map(\.shape))
    return (value.detached, gradients)
}

/// One-input form of `valueWithGradient(at:seed:of:)`.
public func valueWithGradient(
    at input: Tensor, seed: Tensor? = nil, of body: (Tensor) throws -> Tensor
) rethrows -> (value: Tensor, gradient: Tensor) {
    let (value, gradients) = try valueWithGradient(at: [input], seed: seed) { try body($0[0]) }
    return (value, gradients[0])
}

/// Named-parameter form, for models: `parameters` maps names (e.g. state-dict keys) to values.
/// `onGradientReady(name, gradient)` is called for each parameter as soon as its gradient is
/// final, during the backward pass (once per parameter; the order is the backward order).
public func valueWithGradient(
    at parameters: [String: Tensor], seed: Tensor? = nil, onGradientReady: ((String, Tensor) -> Void)? = nil,
    of body: ([String: Tensor]) throws -> Tensor
) rethrows -> (value: Tensor, gradients: [String: Tensor]) {
    let names = parameters.keys.sorted()
    let inputs = names.map { parameters[$0]! }
    let (tracked, leaves) = tracking(inputs)
    let value = try body(Dictionary(uniqueKeysWithValues: zip(names, tracked)))
    let gradients = backpropagate(from: value, seed: seed ?? Tensor.ones(value.shape), to: leaves, shapes: inputs.map(\.shape),
                                  onLeafReady: onGradientReady.map { hook in { hook(names[$0], $1) } })
    return (value.detached, Dictionary(uniqueKeysWithValues: zip(names, gradients)))
}
