import CHazeKernels

/// Scaled dot-product attention (Vaswani et al. 2017, eq. 1), multi-head, as one fused op:
///   P = softmax(Q Kᵀ · scale),  O = P V,  scale = 1/√D by default.
/// Backward (with Pᵀ saved from the forward, so that no product needs a transposed P):
///   ∂V = Pᵀ ∂O,  ∂Pᵀ = V ∂Oᵀ,  ∂Sᵀ = Pᵀ ⊙ (∂Pᵀ − rowsum(∂P ⊙ P)),
///   ∂Q = scale · (∂Sᵀ)ᵀ K,  ∂K = scale · ∂Sᵀ Q.
/// Parallel over the B·H heads. Forward: heads of at most 32 features run through one C kernel
/// per head (`haze_attention_head`: 16 queries per vector, scores, softmax and P V in the L1
/// cache); wider heads through single-threaded GEMMs and a row softmax. Backward: GEMMs per head
/// (BLAS for large heads, `haze_small_matmul` for small ones, where a BLAS call costs more than
/// its work).

/// C[m,n] = alpha · op(A) op(B) for one head, on the calling thread. `scratch` holds at least
/// m·k + k·n floats (for transposed copies on the small path).
private func headProduct(transposeA: Bool = false, transposeB: Bool = false, m: Int, n: Int, k: Int,
                         alpha: Float = 1, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                         c: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
    guard m * n * k < 1 << 16 else {
        gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha, a: a, b: b, c: c)
        return
    }
    var (a, b) = (a, b)
    if transposeA { haze_transpose(a, scratch, k, m); a = UnsafePointer(scratch) }
    if transposeB { haze_transpose(b, scratch + m * k, n, k); b = UnsafePointer(scratch + m * k) }
    haze_small_matmul(a, b, c, m, n, k, alpha)
}

extension Tensor {
    /// q: [B…, L, D], k: [B…, S, D], v: [B…, S, Dv] → [B…, L, Dv] (heads are a batch axis,
    /// e.g. [B, H, L, D]).
    public static func scaledDotProductAttention(query q: Tensor, key k: Tensor, value v: Tensor,
                                                 scale: Float? = nil) -> Tensor {
        precondition(q.rank >= 3 && q.shape.last == k.shape.last && k.shape.dropLast() == v.shape.dropLast()
                     && q.shape.dropLast(2) == k.shape.dropLast(2),
                     "attention: query \(q.shape), key \(k.shape), value \(v.shape) do not match")
        let (l, d) = (q.shape[q.rank - 2], q.shape[q.rank - 1])
        let (s, dv) = (k.shape[k.rank - 2], v.shape[v.rank - 1])
        let heads = q.count / Swift.max(l * d, 1)
        let alpha = scale ?? 1 / Float(d).squareRoot()
        let recording = anyRecorded(q, k, v)
        let fusedHeads = d <= 32 && dv <= 32  // one pass per head (haze_attention.c), else GEMM + softmax + GEMM
        FlopCounter.add(2 * heads * l * s * (d + dv))
        // Pᵀ [S, L] for every head, kept for backward only when recording.
        // (Uninitialised: every head writes its own block.)
        var probabilities = [Float](unsafeUninitializedCapacity: recording ? heads * l * s : 0) { $1 = $0.count }
        let out = Tensor(shape: Array(q.shape.dropLast()) + [dv]) { o, _ in
            q.withScalars { pq in k.withScalars { pk in v.withScalars { pv in
                probabilities.withUnsafeMutableBufferPointer { saved in
                    Parallel.forEach(heads, cost: 4 * l * s * (d + dv)) { range in
                        Scratch.withBuffer(l * s + 2 * (l + s) * (s + d + dv) + 16 * (s + 1)) { scratch in
                            let work = scratch + l * s
                            for h in range {
                                let pt = recording ? saved.baseAddress! + h * l * s : nil
                                if fusedHeads {
                                    haze_attention_head(pq + h * l * d, pk + h * s * d, pv + h * s * dv, o + h * l * dv,
                                                        pt, work, l, s, d, dv, alpha, 0)
                                    continue
                                }
                                headProduct(transposeB: true, m: l, n: s, k: d, alpha: alpha,
                                            a: pq + h * l * d, b: pk + h * s * d, c: scratch, scratch: work)
                                haze_softmax_rows(scratch, scratch, l, s, 0)
                                headProduct(m: l, n: dv, k: s, a: scratch, b: pv + h * s * dv, c: o + h * l * dv, scratch: work)
                                if let pt { haze_transpose(scratch, pt, l, s) }
                            }
                        }
                    }
                }
            } } }
        }
        guard recording else { return out }
        let (vq, vk, vv) = (q.detached, k.detached, v.detached)
        return record(out, [q, k, v]) { g in
            FlopCounter.add(4 * heads * l * s * (d + dv))
            var dq = Tensor(shape: vq.shape) { _, _ in }, dk = Tensor(shape: vk.shape) { _, _ in }
            var dvv = Tensor(shape: vv.shape) { _, _ in }
            vq.withScalars { pq in vk.withScalars { pk in vv.withScalars { pv in g.withScalars { pg in
            probabilities.withUnsafeBufferPointer { saved in
            dq.withMutableScalars { pdq in dk.withMutableScalars { pdk in dvv.withMutableScalars { pdv in
                Parallel.forEach(heads, cost: 8 * l * s * (d + dv)) { range in
                    Scratch.withBuffer(l * s + 2 * (l + s) * (s + d + dv) + l) { dpt in
                        let (work, dot) = (dpt + l * s, dpt + l * s + 2 * (l + s) * (s + d + dv))
                        for h in range {
                            let pt = saved.baseAddress! + h * l * s, gh = pg + h * l * dv
                            headProduct(m: s, n: dv, k: l, a: pt, b: gh, c: pdv + h * s * dv, scratch: work)
                            headProduct(transposeB: true, m: s, n: l, k: dv, a: pv + h * s * dv, b: gh, c: dpt, scratch: work)
                            haze_softmax_columns_backward(pt, dpt, dot, s, l)
                            headProduct(transposeA: true, m: l, n: d, k: s, alpha: alpha, a: dpt, b: pk + h * s * d,
                                        c: pdq + h * l * d, scratch: work)
                            headProduct(m: s, n: d, k: l, alpha: alpha, a: dpt, b: pq + h * l * d, c: pdk + h * s * d, scratch: work)
                        }
                    }
                }
            } } }
            }
            } } } }
            return [dq, dk, dvv]
        }
    }

    /// Multi-head self-attention on channels-first activations, as a U-Net attention block holds
    /// them: qkv [N, 3·H·D, L], the queries, keys and values stacked along the channel axis (head h
    /// of each in channels h·D ..< (h + 1)·D) → [N, H·D, L], the heads' outputs in the same channel
    /// order. The same products as `scaledDotProductAttention` on the transposes, but each head
    /// reads and writes its [D, L] planes in place, so the block needs no transposes or head
    /// permutations around it. Forward: `haze_attention_head` for heads of ≤ 32 features, BLAS
    /// products and a row softmax for wider ones. Backward, per head, with Pᵀ saved: ∂V = Pᵀ ∂O,
    /// ∂Pᵀ = V ∂Oᵀ, ∂Sᵀ = Pᵀ ⊙ (∂Pᵀ − rowsum(∂P ⊙ P)), ∂Qᵀ = scale · Kᵀ ∂Sᵀ, ∂K = scale · ∂Sᵀ Q
    /// (∂V and ∂K computed as [L, D] and transposed into place: cheaper than transposing Pᵀ or ∂Sᵀ).
    public static func selfAttention(channelsFirst qkv: Tensor, heads: Int, scale: Float? = nil) -> Tensor {
        precondition(qkv.rank == 3 && heads > 0 && qkv.shape[1] % (3 * heads) == 0,
                     "attention: \(qkv.shape) is not [N, 3·heads·D, L] for \(heads) heads")
        let (n, l) = (qkv.shape[0], qkv.shape[2]), d = qkv.shape[1] / (3 * heads), inner = heads * d
        let alpha = scale ?? 1 / Float(d).squareRoot()
        let recording = qkv.isRecorded
        FlopCounter.add(4 * n * heads * l * l * d)
        /// Head b = image · H + h: its queries at `input` (keys + inner·L, values + 2·inner·L), its output at `output`.
        func offsets(_ b: Int) -> (input: Int, output: Int) {
            let (image, h) = b.quotientAndRemainder(dividingBy: heads)
            return (image * 3 * inner * l + h * d * l, image * inner * l + h * d * l)
        }
        var probabilities = [Float](unsafeUninitializedCapacity: recording ? n * heads * l * l : 0) { $1 = $0.count }
        let out = Tensor(shape: [n, inner, l]) { o, _ in
            qkv.withScalars { px in probabilities.withUnsafeMutableBufferPointer { saved in
                Parallel.forEach(n * heads, cost: 8 * l * l * d) { range in
                    Scratch.withBuffer(2 * l * l + 2 * l * d + 16 * (l + 1)) { scores in
                        let work = scores + l * l
                        for b in range {
                            let (x, y) = offsets(b)
                            let (qt, kt, vt, pt) = (px + x, px + x + inner * l, px + x + 2 * inner * l,
                                                    recording ? saved.baseAddress! + b * l * l : nil)
                            if d <= 32 {
                                haze_attention_head(qt, kt, vt, o + y, pt, work, l, l, d, d, alpha, 1)
                                continue
                            }
                            // Wide heads, through BLAS: P = softmax(α Q Kᵀ) [L, L] from the stored Qᵀ and Kᵀ, Oᵀ = Vᵀ Pᵀ.
                            headProduct(transposeA: true, m: l, n: l, k: d, alpha: alpha, a: qt, b: kt, c: scores, scratch: work)
                            haze_softmax_rows(scores, scores, l, l, 0)
                            headProduct(transposeB: true, m: d, n: l, k: l, a: vt, b: scores, c: o + y, scratch: work)
                            if let pt { haze_transpose(scores, pt, l, l) }
                        }
                    }
                }
            } }
        }
        guard recording else { return out }
        let vqkv = qkv.detached
        return record(out, [qkv]) { g in
            FlopCounter.add(8 * n * heads * l * l * d)
            var dqkv = Tensor(shape: vqkv.shape) { _, _ in }  // every head writes its three blocks
            vqkv.withScalars { px in g.withScalars { pg in probabilities.withUnsafeBufferPointer { saved in
            dqkv.withMutableScalars { pd in
                Parallel.forEach(n * heads, cost: 16 * l * l * d) { range in
                    Scratch.withBuffer(l * l + l + l * d + 2 * (l * l + 2 * l * d)) { dpt in
                        let (dot, rows, work) = (dpt + l * l, dpt + l * l + l, dpt + l * l + l + l * d)
                        for b in range {
                            let (x, y) = offsets(b)
                            let (qt, kt, vt, got, pt) = (px + x, px + x + inner * l, px + x + 2 * inner * l, pg + y,
                                                         saved.baseAddress! + b * l * l)
                            // ∂V = Pᵀ ∂O [L, D] (transposing the [D, L] operands, not the [L, L] ones), then ∂Vᵀ.
                            headProduct(transposeB: true, m: l, n: d, k: l, a: pt, b: got, c: rows, scratch: work)
                            haze_transpose(rows, pd + x + 2 * inner * l, l, d)
                            headProduct(transposeA: true, m: l, n: l, k: d, a: vt, b: got, c: dpt, scratch: work)
                            haze_softmax_columns_backward(pt, dpt, dot, l, l)
                            headProduct(m: d, n: l, k: l, alpha: alpha, a: kt, b: dpt, c: pd + x, scratch: work)
                            // ∂K = scale · ∂Sᵀ Q [L, D], then ∂Kᵀ.
                            headProduct(transposeB: true, m: l, n: d, k: l, alpha: alpha, a: dpt, b: qt, c: rows, scratch: work)
                            haze_transpose(rows, pd + x + inner * l, l, d)
                        }
                    }
                }
            } } } }
            return [dqkv]
        }
    }
}
