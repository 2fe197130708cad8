/// Matrix products: C = op(A) op(B), batched, and the fully connected layer. The GEMMs go to
/// BLAS through `gemm` (BLAS.swift).

extension Tensor {
    /// Matrix product. a: [M, K], b: [K, N] → [M, N]; or batched: a: [B…, M, K] with
    /// b: [B…, K, N] (or b: [K, N], shared by every batch entry) → [B…, M, N].
    /// Pullbacks: ∂a = g bᵀ, ∂b = aᵀ g (summed over the batch when b was shared).
    public func matmul(_ other: Tensor) -> Tensor {
        Tensor.batchedMatmul(self, other, transposeA: false, transposeB: false)
    }

    /// op(a) op(b), batched over leading axes, with each op a transpose of the last two axes
    /// when asked (no transposed copy is made).
    public static func batchedMatmul(_ a: Tensor, _ b: Tensor, transposeA: Bool, transposeB: Bool) -> Tensor {
        precondition(a.rank >= 2 && b.rank >= 2, "matmul needs rank ≥ 2, got \(a.shape) and \(b.shape)")
        let (ar, ac) = (a.shape[a.rank - 2], a.shape[a.rank - 1])
        let (br, bc) = (b.shape[b.rank - 2], b.shape[b.rank - 1])
        let (m, k) = transposeA ? (ac, ar) : (ar, ac)
        let (k2, n) = transposeB ? (bc, br) : (br, bc)
        let batchShape = Array(a.shape.dropLast(2))
        let sharedB = b.rank == 2 && a.rank > 2
        precondition(k == k2 && (sharedB || Array(b.shape.dropLast(2)) == batchShape),
                     "matmul shapes \(a.shape)\(transposeA ? "ᵀ" : "") and \(b.shape)\(transposeB ? "ᵀ" : "") do not match")
        let batch = batchShape.reduce(1, *)
        FlopCounter.add(2 * batch * m * n * k)
        var out: Tensor
        if sharedB && !transposeA {
            // One GEMM over all rows of a.
            out = Tensor(shape: batchShape + [m, n]) { c, _ in
                a.withScalars { pa in b.withScalars { pb in
                    parallelGemm(transposeB: transposeB, m: batch * m, n: n, k: k, a: pa, b: pb, c: c)
                } }
            }
        } else {
            out = Tensor(shape: batchShape + [m, n]) { c, _ in
                a.withScalars { pa in b.withScalars { pb in
                    // Whole products per worker when there are enough, else each product split
                    // (decided by the shape: a split product may round differently).
                    let split = batch < Parallel.minimumItems
                    func product(_ i: Int) {
                        let (a, b, c) = (pa + i * m * k, pb + (sharedB ? 0 : i * k * n), c + i * m * n)
                        if split {
                            parallelGemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, b: b, c: c)
                        } else {
                            gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, b: b, c: c)
                        }
                    }
                    if split {
                        for i in 0..<batch { product(i) }
                    } else {
                        Parallel.forEach(batch, cost: m * n * k) { range in for i in range { product(i) } }
                    }
                } }
            }
        }
        let (va, vb) = (a.detached, b.detached)
        return record(out, [a, b]) { g in
            // ∂op(a) = g op(b)ᵀ, ∂op(b) = op(a)ᵀ g; transposed back where op was a transpose.
            let ga: Tensor? = !a.isRecorded ? nil : (transposeA
                ? batchedMatmul(vb, g, transposeA: transposeB, transposeB: true)
                : batchedMatmul(g, vb, transposeA: false, transposeB: !transposeB))
            var gb: Tensor? = nil
            if b.isRecorded {
                if sharedB {
                    let rowsA = va.reshaped(to: [batch * ar, ac]), rowsG = g.reshaped(to: [batch * m, n])
                    gb = transposeB ? batchedMatmul(rowsG, rowsA, transposeA: true, transposeB: false)
                                    : batchedMatmul(rowsA, rowsG, transposeA: true, transposeB: false)
                } else {
                    gb = transposeB ? batchedMatmul(g, va, transposeA: true, transposeB: transposeA)
                                    : batchedMatmul(va, g, transposeA: !transposeA, transposeB: false)
                }
            }
            return [ga, gb]
        }
    }

    /// Fully connected layer: y = x Wᵀ + b. x: […, in], weight: [out, in], bias: [out] →
    /// y: […, out]. Pullbacks: ∂x = g W, ∂W = gᵀ x, ∂b = Σ_rows g.
    public static func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
        precondition(weight.rank == 2 && x.shape.last == weight.shape[1],
                     "linear: input \(x.shape) does not match weight \(weight.shape)")
        let y = batchedMatmul(x.rank == 2 ? x : x.reshaped(to: [-1, weight.shape[1]]), weight,
                              transposeA: false, transposeB: true)
            .reshaped(to: Array(x.shape.dropLast()) + [weight.shape[0]])
        guard let bias else { return y }
        return y + bias
    }
}
