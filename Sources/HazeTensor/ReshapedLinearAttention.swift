import CHazeKernels

extension Tensor {
    /// The TensorFlow notebook's linear attention between its q/k/v and output convolutions, as one
    /// op (haze_linear_attention.c): TensorFlow reshapes the NHWC q, k, v *as memory* to
    /// [heads, d, N], so head h's [d, N] matrix holds the positions [h·N/heads, (h+1)·N/heads) of all
    /// P = heads·d channels. Per head, with α = d^(−½):
    ///   q = softmax over d of q̃,  k = softmax over N of k̃,  o = (α k vᵀ)ᵀ q   [d, N]
    /// and o's memory read back as NHWC [N, P]. Equal to the composition of reshapes, permutes,
    /// softmaxes and batched products that states it literally (`TFArticleLinearAttention`'s
    /// reference path), without moving the whole tensors through permutes.
    ///
    /// qkv: [B, 3P, H, W] (q, k, v channels in that order, NCHW), H·W a multiple of `heads` →
    /// [B, P, H, W]. Pullback: ∂qkv, each head recomputing its forward (nothing saved but qkv).
    public static func reshapedLinearAttention(_ qkv: Tensor, heads: Int, headDimension d: Int) -> Tensor {
        precondition(qkv.rank == 4 && qkv.shape[1] == 3 * heads * d, "reshapedLinearAttention: qkv \(qkv.shape) for \(heads) heads of \(d)")
        let (b, p, h, w) = (qkv.shape[0], heads * d, qkv.shape[2], qkv.shape[3]), n = h * w
        precondition(n % heads == 0, "reshapedLinearAttention: \(n) positions do not split into \(heads) heads")
        let alpha = 1 / Float(d).squareRoot()
        // Heads in parallel, each writing only its own positions; per-head cost ≈ 4·d·N·d.
        func perHead(backward: Bool, _ body: @escaping (Int, Int, UnsafeMutablePointer<Float>) -> Void) {
            Parallel.forEach(b * heads, cost: 4 * d * n * d) { range in
                Scratch.withBuffer(haze_linear_attention_work_size(n, d, backward ? 1 : 0)) { work in
                    body(range.lowerBound, range.count, work)
                }
            }
        }
        let y = Tensor(shape: [b, p, h, w]) { out, _ in
            qkv.withScalars { x in
                perHead(backward: false) { first, count, work in
                    haze_linear_attention_forward(x, out, p, n, heads, d, alpha, first, count, work)
                }
            }
        }
        return Tensor.record(y, [qkv]) { g in
            [Tensor(shape: qkv.shape) { out, _ in
                qkv.withScalars { x in g.withScalars { dy in
                    perHead(backward: true) { first, count, work in
                        haze_linear_attention_backward(x, dy, out, p, n, heads, d, alpha, first, count, work)
                    }
                } }
            }]
        }
    }
}
