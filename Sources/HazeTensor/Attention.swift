/// Scaled dot-product attention (Vaswani et al. 2017, eq. 1), multi-head:
///   Attention(Q, K, V) = softmax(Q Kᵀ · scale) V,  scale = 1/√D by default.
/// Composed from batched matmul and softmax, whose pullbacks give the gradients.

extension Tensor {
    /// q: [B, H, L, D], k: [B, H, S, D], v: [B, H, S, Dv] → [B, H, L, Dv].
    /// (Any leading batch axes work; heads are just another batch axis.)
    public static func scaledDotProductAttention(query q: Tensor, key k: Tensor, value v: Tensor,
                                                 scale: Float? = nil) -> Tensor {
        precondition(q.rank >= 3 && q.shape.last == k.shape.last && k.shape.dropLast() == v.shape.dropLast(),
                     "attention: query \(q.shape), key \(k.shape), value \(v.shape) do not match")
        let s = scale ?? 1 / Float(q.shape.last!).squareRoot()
        let scores = batchedMatmul(q, k, transposeA: false, transposeB: true) * s
        return scores.softmax(alongAxis: -1).matmul(v)
    }
}
