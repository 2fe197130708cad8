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
    /// q/k/v convolution with the packed kernel, straight into the layout the head reads. TensorFlow's
    /// head matrix is the memory of its N/heads positions' NHWC rows, so the products are taken
    /// transposed, [N/heads, P] = Xᵀ · Wᵀ: the head's [C, N/heads] block of x is packed (runs of 8
    /// consecutive floats, no transpose) and Wᵀ [C, 3P] is made once per call, or once per sampling
    /// run inside `ConvolutionAlgorithm.reusingTransformedWeights`. Equal to the composition up to
    /// the order of the projection's sums; the composition itself runs where a gradient is recorded,
    /// in bf16 and without AVX-512. (tf-article forward, batch 16, `perf` shares: the products in
    /// NCHW and three transposes per head into this layout took 11.3 % + 4.6 %; these products and
    /// the pack take 9.9 % + 0.7 %.)
    ///
    /// x: [B, C, H, W], weight: [3P, C, 1, 1] (no bias) → [B, P, H, W].
    public static func reshapedLinearAttention(projecting x: Tensor, weight: Tensor, heads: Int, headDimension d: Int) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]), p = heads * d, n = h * w
        precondition(weight.shape == [3 * p, c, 1, 1], "reshapedLinearAttention: weight \(weight.shape) for x \(x.shape), \(heads) heads of \(d)")
        guard !x.isRecorded, !weight.isRecorded, PackedMatrices.available, Precision.current == .float32, n % heads == 0 else {
            return reshapedLinearAttention(conv2d(x, weight: weight), heads: heads, headDimension: d)
        }
        FlopCounter.add(2 * b * 3 * p * c * n)
        let transposed = PreparedWeights.value(for: weight, as: .attentionProjection) {  // Wᵀ [C, 3P]
            weight.withScalars { w in
                [Float](unsafeUninitializedCapacity: c * 3 * p) { buffer, initialized in
                    for j in 0..<3 * p { for i in 0..<c { buffer[i * 3 * p + j] = w[j * c + i] } }
                    initialized = c * 3 * p
                }
            }
        }
        let (chunk, alpha) = (n / heads, 1 / Float(d).squareRoot())
        let (packedSize, workSize) = (haze_gemm_packed_size(chunk, c), haze_linear_attention_work_size(n, d, 0))
        return Tensor(shape: [b, p, h, w]) { out, _ in
            x.withScalars { px in transposed.withUnsafeBufferPointer { wt in
                Parallel.forEach(b * heads, cost: 4 * d * n * d + 3 * p * c * chunk) { range in
                    Scratch.withBuffer(packedSize + workSize) { block in
                        let work = block + packedSize
                        for task in range {
                            let (image, head) = task.quotientAndRemainder(dividingBy: heads)
                            haze_gemm_pack_transposed(px + image * c * n + head * chunk, n, block, chunk, c)
                            haze_linear_attention_project(block, wt.baseAddress!, c, p, n, heads, d, work)
                            haze_linear_attention_forward_loaded(out, p, n, heads, d, alpha, image, head, work)
                        }
                    }
                }
            } }
        }
    }
}
