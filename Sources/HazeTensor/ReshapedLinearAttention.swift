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

    /// `reshapedLinearAttention(conv2d(x, weight: weight), heads:, headDimension:)` for inference,
    /// without the [B, 3P, H, W] tensor between them: each head computes its own positions of the
    /// q/k/v convolution with the packed kernel, one [P, N/heads] block at a time (512 KB at 64 × 64
    /// with P = 128, so it is transposed into the head's work from L2), and goes on from there. The
    /// weights are packed once per call, or once per sampling run inside
    /// `ConvolutionAlgorithm.reusingTransformedWeights`. Equal to the composition up to the order of
    /// the projection's sums; the composition itself runs where a gradient is recorded, in bf16 and
    /// without AVX-512. (tf-article forward, batch 16: 446/446/475 → 436/431/429 ms.)
    ///
    /// x: [B, C, H, W], weight: [3P, C, 1, 1] (no bias) → [B, P, H, W].
    public static func reshapedLinearAttention(projecting x: Tensor, weight: Tensor, heads: Int, headDimension d: Int) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]), p = heads * d, n = h * w
        precondition(weight.shape == [3 * p, c, 1, 1], "reshapedLinearAttention: weight \(weight.shape) for x \(x.shape), \(heads) heads of \(d)")
        guard !x.isRecorded, !weight.isRecorded, PackedMatrices.available, Precision.current == .float32, n % heads == 0 else {
            return reshapedLinearAttention(conv2d(x, weight: weight), heads: heads, headDimension: d)
        }
        FlopCounter.add(2 * b * 3 * p * c * n)
        let packed = PreparedWeights.value(for: weight, as: .attentionProjection) {
            weight.withScalars { PackedMatrices($0, count: 3, rows: p, columns: c, bfloat16Allowed: false) }
        }
        let (chunk, alpha) = (n / heads, 1 / Float(d).squareRoot())
        let workSize = haze_linear_attention_work_size(n, d, 0)
        return Tensor(shape: [b, p, h, w]) { out, _ in
            x.withScalars { px in
                Parallel.forEach(b * heads, cost: 4 * d * n * d + 3 * p * c * chunk) { range in
                    Scratch.withBuffer(p * chunk + workSize) { block in
                        let work = block + p * chunk
                        for task in range {
                            let (image, head) = task.quotientAndRemainder(dividingBy: heads)
                            for part in 0..<3 {
                                packed.multiply(px + image * c * n + head * chunk, ldb: n, into: block, ldc: chunk, columns: chunk, matrix: part)
                                haze_linear_attention_load(block, chunk, p, n, heads, d, Int32(part), work)
                            }
                            haze_linear_attention_forward_loaded(out, p, n, heads, d, alpha, image, head, work)
                        }
                    }
                }
            }
        }
    }
}
