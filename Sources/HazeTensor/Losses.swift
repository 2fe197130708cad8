/// Embedding lookup, dropout and the mean-squared-error loss.

extension Tensor {
    /// Rows of `table` picked by `indices`. table: [V, D] → [indices.count, D].
    /// Pullback: the gradient rows added into a zero table at the picked indices.
    public static func embedding(_ table: Tensor, indices: [Int]) -> Tensor {
        precondition(table.rank == 2, "embedding table must be [V, D], got \(table.shape)")
        let (v, d) = (table.shape[0], table.shape[1])
        for i in indices { precondition(i >= 0 && i < v, "embedding index \(i) out of range 0..<\(v)") }
        let out = Tensor(shape: [indices.count, d]) { o, _ in
            table.withScalars { p in
                for (r, i) in indices.enumerated() { (o + r * d).update(from: p + i * d, count: d) }
            }
        }
        return record(out, [table]) { g in
            var grad = [Float](repeating: 0, count: v * d)
            for (r, i) in indices.enumerated() {
                for j in 0..<d { grad[i * d + j] += g.scalars[r * d + j] }
            }
            return [Tensor(shape: [v, d], scalars: grad)]
        }
    }

    /// Inverted dropout: each element zeroed with probability `probability`, the rest scaled
    /// by 1/(1 − p), with the mask drawn from `generator` (so it is reproducible).
    public func dropout(probability p: Float, generator: inout RandomGenerator) -> Tensor {
        precondition(p >= 0 && p < 1, "dropout probability must be in [0, 1), got \(p)")
        if p == 0 { return self }
        let keep = 1 / (1 - p)
        let draws = generator.uniform(shape)
        let mask = Tensor(shape: shape) { m, count in
            draws.withScalars { u in for i in 0..<count { m[i] = u[i] >= p ? keep : 0 } }
        }
        return self * mask
    }

    /// Mean squared error: mean((prediction − target)²) over all elements, a scalar.
    public static func meanSquaredError(_ prediction: Tensor, _ target: Tensor) -> Tensor {
        precondition(prediction.shape == target.shape,
                     "meanSquaredError: prediction \(prediction.shape) vs target \(target.shape)")
        return (prediction - target).squared().mean()
    }
}
