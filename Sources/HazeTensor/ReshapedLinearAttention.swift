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

    /// The notebook's whole attention block,
    ///   y = x + LayerNorm_C(conv1×1(reshapedLinearAttention(conv1×1(x, W_qkv)), W_out) + b_out)
    /// (LayerNorm over the channels of each position with γ = `normWeight`, β = `normBias`, ε), as
    /// one op for inference: each head computes its own positions from x to y, and none of the
    /// block's intermediate tensors is written. The q/k/v products are taken transposed,
    /// [N/heads, P] = Xᵀ · Wᵀ, straight into the head's layout (TensorFlow's head matrix is the
    /// memory of its positions' NHWC rows; x's [C, N/heads] block is packed in runs of 8 floats,
    /// no transpose); the head's output, transposed once in the cache, goes through W_out by the
    /// packed kernel into y's planes, where the bias, the norm and the residual are applied in
    /// place. Wᵀ_qkv and the packed W_out are made once per call, or once per sampling run inside
    /// `ConvolutionAlgorithm.reusingTransformedWeights`. Equal to the composition up to the order
    /// of the products' sums; the composition itself runs where a gradient is recorded, in bf16,
    /// without AVX-512 and where the positions do not split into the heads. (tf-article forward,
    /// batch 16, against the block as separate ops: transposes 6.1 → 0.75 % of the time, OpenBLAS
    /// 11.5 → 8 %, 471 → 415 ms in one run; Documentation/speed.md.)
    ///
    /// x: [B, C, H, W], qkvWeight: [3P, C, 1, 1] (no bias), outWeight: [C, P, 1, 1], outBias,
    /// normWeight, normBias: [C] → [B, C, H, W], with P = heads · d.
    public static func reshapedLinearAttentionBlock(_ x: Tensor, qkvWeight: Tensor, outWeight: Tensor, outBias: Tensor,
                                                    normWeight: Tensor, normBias: Tensor, epsilon: Float,
                                                    heads: Int, headDimension d: Int) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]), p = heads * d, n = h * w
        precondition(qkvWeight.shape == [3 * p, c, 1, 1] && outWeight.shape == [c, p, 1, 1],
                     "reshapedLinearAttentionBlock: weights \(qkvWeight.shape), \(outWeight.shape) for x \(x.shape), \(heads) heads of \(d)")
        let parameters = [qkvWeight, outWeight, outBias, normWeight, normBias]
        guard !x.isRecorded, !parameters.contains(where: \.isRecorded), PackedMatrices.available, Precision.current == .float32,
              n % heads == 0 else {
            let attention = reshapedLinearAttention(conv2d(x, weight: qkvWeight), heads: heads, headDimension: d)
            return channelLayerNorm(conv2d(attention, weight: outWeight, bias: outBias), weight: normWeight, bias: normBias,
                                    epsilon: epsilon, adding: x)
        }
        FlopCounter.add(2 * b * 4 * p * c * n)
        let transposed = PreparedWeights.value(for: qkvWeight, as: .attentionProjection) {  // Wᵀ_qkv [C, 3P]
            qkvWeight.withScalars { w in
                [Float](unsafeUninitializedCapacity: c * 3 * p) { buffer, initialized in
                    haze_transpose(w, buffer.baseAddress!, 3 * p, c)
                    initialized = c * 3 * p
                }
            }
        }
        let packedOut = PreparedWeights.value(for: outWeight, as: .attentionOutput) {
            outWeight.withScalars { w in
                [Float](unsafeUninitializedCapacity: haze_gemm_packed_size(c, p)) { buffer, initialized in
                    haze_gemm_pack(w, p, buffer.baseAddress!, c, p)
                    initialized = buffer.count
                }
            }
        }
        let (chunk, alpha) = (n / heads, 1 / Float(d).squareRoot())
        let (packedSize, workSize) = (haze_gemm_packed_size(chunk, c), haze_linear_attention_work_size(n, d, 0))
        return Tensor(shape: x.shape) { out, _ in
            x.withScalars { px in transposed.withUnsafeBufferPointer { wt in packedOut.withUnsafeBufferPointer { wo in
            outBias.withScalars { bias in normWeight.withScalars { gamma in normBias.withScalars { beta in
                Parallel.forEach(b * heads, cost: 4 * d * n * d + 4 * p * c * chunk) { range in
                    Scratch.withBuffer(packedSize + workSize) { block in
                        let work = block + packedSize
                        for task in range {
                            let (image, head) = task.quotientAndRemainder(dividingBy: heads)
                            haze_gemm_pack_transposed(px + image * c * n + head * chunk, n, block, chunk, c)
                            haze_linear_attention_project(block, wt.baseAddress!, c, p, n, heads, d, work)
                            haze_linear_attention_block_forward(px, out, wo.baseAddress!, bias, gamma, beta, epsilon, c, p, n,
                                                                heads, d, alpha, image, head, work)
                        }
                    }
                }
            } } } } } }
        }
    }
}
