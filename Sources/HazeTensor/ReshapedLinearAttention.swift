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
    /// one op: each head computes its own positions from x to y. The q/k/v products are taken
    /// transposed, [N/heads, P] = Xᵀ · Wᵀ, straight into the head's layout (TensorFlow's head matrix
    /// is the memory of its positions' NHWC rows; x's [C, N/heads] block is packed in runs of 8
    /// floats, no transpose); the head's output, transposed once in the cache, goes through W_out by
    /// the packed kernel into y's planes, where the bias, the norm and the residual are applied in
    /// place. In inference none of the block's intermediate tensors is written; Wᵀ_qkv and the
    /// packed W_out are made once per call, or once per sampling run inside
    /// `ConvolutionAlgorithm.reusingTransformedWeights`. Where a gradient is recorded the op keeps
    /// the projected q̃, k̃, ṽ (q and k softmaxed), each head's α k vᵀ, the head outputs, z and the
    /// norm's statistics, all in the head layout, so the backward (`trainingBlock`) runs head by
    /// head with no transpose either. Equal to the composition up to the order of the products'
    /// sums; the composition itself runs in bf16, without AVX-512 and where the positions do not
    /// split into the heads. (tf-article forward, batch 16, against the block as separate ops:
    /// transposes 6.1 → 0.75 % of the time, OpenBLAS 11.5 → 8 %, 471 → 415 ms in one run;
    /// Documentation/speed.md.)
    ///
    /// x: [B, C, H, W], qkvWeight: [3P, C, 1, 1] (no bias), outWeight: [C, P, 1, 1], outBias,
    /// normWeight, normBias: [C] → [B, C, H, W], with P = heads · d.
    public static func reshapedLinearAttentionBlock(_ x: Tensor, qkvWeight: Tensor, outWeight: Tensor, outBias: Tensor,
                                                    normWeight: Tensor, normBias: Tensor, epsilon: Float,
                                                    heads: Int, headDimension d: Int) -> Tensor {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3]), p = heads * d, n = h * w
        precondition(qkvWeight.shape == [3 * p, c, 1, 1] && outWeight.shape == [c, p, 1, 1],
                     "reshapedLinearAttentionBlock: weights \(qkvWeight.shape), \(outWeight.shape) for x \(x.shape), \(heads) heads of \(d)")
        guard PackedMatrices.available, Precision.current == .float32, n % heads == 0 else {
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
        let block = AttentionBlockShape(batch: b, channels: c, positions: n, heads: heads, headDimension: d, epsilon: epsilon)
        let inputs = [x, qkvWeight, outWeight, outBias, normWeight, normBias]
        if inputs.contains(where: \.isRecorded) {
            return trainingBlock(inputs, shape: block, transposedProjection: transposed, packedOutput: packedOut)
        }
        let (chunk, alpha) = (block.chunk, block.alpha)
        let (packedSize, workSize) = (haze_gemm_packed_size(chunk, c), haze_linear_attention_work_size(n, d, 0))
        return Tensor(shape: x.shape) { out, _ in
            x.withScalars { px in transposed.withUnsafeBufferPointer { wt in packedOut.withUnsafeBufferPointer { wo in
            outBias.withScalars { bias in normWeight.withScalars { gamma in normBias.withScalars { beta in
                Parallel.forEach(b * heads, cost: block.costPerHead) { range in
                    Scratch.withBuffer(packedSize + workSize) { packed in
                        let work = packed + packedSize
                        for task in range {
                            let (image, head) = task.quotientAndRemainder(dividingBy: heads)
                            haze_gemm_pack_transposed(px + image * c * n + head * chunk, n, packed, chunk, c)
                            haze_linear_attention_project(packed, wt.baseAddress!, c, p, n, heads, work + 2 * d * d, d * n)
                            haze_linear_attention_block_forward(px, out, wo.baseAddress!, bias, gamma, beta, epsilon, c, p, n,
                                                                heads, d, alpha, image, head, work)
                        }
                    }
                }
            } } } } } }
        }
    }

    /// The sizes of one `reshapedLinearAttentionBlock` call.
    private struct AttentionBlockShape {
        let batch, channels, positions, heads, headDimension: Int
        let epsilon: Float
        var hidden: Int { heads * headDimension }
        /// Positions per head.
        var chunk: Int { positions / heads }
        var alpha: Float { 1 / Float(headDimension).squareRoot() }
        /// Multiply-adds per (image, head): the head's d × d products and its share of the convolutions.
        var costPerHead: Int { 4 * headDimension * positions * headDimension + 4 * hidden * channels * chunk }
    }

    /// `reshapedLinearAttentionBlock` where a gradient is recorded. Inputs: x, W_qkv, W_out, b_out,
    /// γ, β. Per (image, head), forward: the projection into qkv [B, 3, N, P] (the head layout),
    /// the head (haze_linear_attention_block_train_forward), keeping what the backward needs.
    /// Backward, per (image, head), with g = ∂y at the head's positions (X, ∂z: [C, N/heads]; o, ∂o
    /// and ∂part: [N/heads, P], the head layout):
    ///   ∂z = LayerNorm backward (g),  ∂b_out = Σ_positions ∂z,  ∂o = ∂zᵀ W_out,  ∂W_out = ∂z o,
    ///   ∂q̃, ∂k̃, ∂ṽ = the head's backward (∂o),
    ///   ∂x = g + (Σ_part ∂part W_part)ᵀ,  ∂W_partᵀ = X ∂part   (part ∈ q, k, v: W_part [P, C])
    /// every product on the packed kernel, its left-hand matrix packed from the head's rows or
    /// planes (∂zᵀ, ∂z, ∂part, X: a copy per product, 1/P to 1/C of its multiply-adds), where
    /// OpenBLAS took the transposed forms with copies of its own. Each head's parameter gradients
    /// (∂W_qkv as its transpose [C, 3P]) are kept apart and summed in (image, head) order
    /// afterwards, so every thread count gives the same bits. ∂z is written where ∂x will go, then
    /// replaced.
    private static func trainingBlock(_ inputs: [Tensor], shape s: AttentionBlockShape, transposedProjection: [Float],
                                      packedOutput: [Float]) -> Tensor {
        let (x, qkvWeight, outWeight, outBias, normWeight, normBias) = (inputs[0], inputs[1], inputs[2], inputs[3], inputs[4], inputs[5])
        let (b, c, n, heads, d, p, chunk, alpha) = (s.batch, s.channels, s.positions, s.heads, s.headDimension, s.hidden, s.chunk, s.alpha)
        let tasks = b * heads
        // Saved for the backward, written by the forward.
        var qkv = Tensor(shape: [b, 3, n, p]) { _, _ in }, contexts = Tensor(shape: [tasks, d, d]) { _, _ in }
        var outputs = Tensor(shape: [b, n, p]) { _, _ in }, z = Tensor(shape: x.shape) { _, _ in }
        var mean = Tensor(shape: [b, n]) { _, _ in }, rstd = Tensor(shape: [b, n]) { _, _ in }
        let packedSize = haze_gemm_packed_size(chunk, c)
        let y = Tensor(shape: x.shape) { out, _ in
            x.withScalars { px in transposedProjection.withUnsafeBufferPointer { wt in packedOutput.withUnsafeBufferPointer { wo in
            outBias.withScalars { bias in normWeight.withScalars { gamma in normBias.withScalars { beta in
            qkv.withMutableScalars { saved in contexts.withMutableScalars { ctx in outputs.withMutableScalars { o in
            z.withMutableScalars { pz in mean.withMutableScalars { mu in rstd.withMutableScalars { r in
                Parallel.forEach(tasks, cost: s.costPerHead) { range in
                    Scratch.withBuffer(packedSize + Swift.max(d, 2) * n) { packed in
                        for task in range {
                            let (image, head) = task.quotientAndRemainder(dividingBy: heads)
                            let (planes, heads3) = (image * c * n, saved + image * 3 * n * p)
                            haze_gemm_pack_transposed(px + planes + head * chunk, n, packed, chunk, c)
                            haze_linear_attention_project(packed, wt.baseAddress!, c, p, n, heads, heads3 + head * chunk * p, n * p)
                            haze_linear_attention_block_train_forward(px + planes, out + planes, heads3, ctx + task * d * d,
                                                                      o + image * n * p, pz + planes, mu + image * n, r + image * n,
                                                                      wo.baseAddress!, bias, gamma, beta, s.epsilon, c, p, n, heads,
                                                                      d, alpha, head, packed + packedSize)
                        }
                    }
                }
            } } } } } }
            } } } } } }
        }
        let (savedQKV, savedContexts, savedOutputs, savedZ, savedMean, savedRstd) = (qkv, contexts, outputs, z, mean, rstd)
        return Tensor.record(y, inputs) { g in
            FlopCounter.add(4 * b * 4 * p * c * n)  // the backward's products
            // Per (image, head): ∂W_qkvᵀ [C, 3P], ∂W_out [C, P], ∂b_out, ∂γ, ∂β [C].
            let partSize = 3 * p * c + c * p + 3 * c
            var partials = [Float](repeating: 0, count: tasks * partSize)
            let packedSize = Swift.max(haze_gemm_packed_size(chunk, Swift.max(c, p)), haze_gemm_packed_size(c, chunk))
            let dx = Tensor(shape: x.shape) { dx, _ in
                x.withScalars { px in g.withScalars { dy in qkvWeight.withScalars { wqkv in outWeight.withScalars { wout in
                normWeight.withScalars { gamma in savedQKV.withScalars { saved in savedContexts.withScalars { ctx in
                savedOutputs.withScalars { o in savedZ.withScalars { pz in savedMean.withScalars { mu in savedRstd.withScalars { r in
                partials.withUnsafeMutableBufferPointer { partials in
                    let partials = partials.baseAddress!
                    Parallel.forEach(tasks, cost: 2 * s.costPerHead) { range in
                        // ∂o, ∂q̃, ∂k̃, ∂ṽ [d, N] each; the head backward's and the norm's scratch; a
                        // packed left-hand matrix; (Σ ∂part W_part) [N/heads, C].
                        let scratchSize = Swift.max(d * d + n, 2 * chunk)
                        Scratch.withBuffer(4 * d * n + scratchSize + packedSize + chunk * c) { work in
                            let (dOut, dParts, scratch) = (work, work + d * n, work + 4 * d * n)
                            let (packed, dxRows) = (scratch + scratchSize, scratch + scratchSize + packedSize)
                            for task in range {
                                let (image, head) = task.quotientAndRemainder(dividingBy: heads)
                                let (planes, first) = (image * c * n, head * chunk)
                                let (dxAt, dyAt, xAt) = (dx + planes + first, dy + planes + first, px + planes + first)
                                let part = partials + task * partSize
                                let (dWqkvT, dWout, dBias, dGamma) = (part, part + 3 * p * c, part + 3 * p * c + c * p, part + 3 * p * c + c * p + c)
                                haze_channel_norm_backward(pz + planes, dy + planes, gamma, mu + image * n, r + image * n, dx + planes,
                                                           dGamma, dGamma + c, c, n, first, chunk, scratch)  // ∂z, in ∂x's place
                                for ch in 0..<c {
                                    var sum: Float = 0
                                    for j in 0..<chunk { sum += dxAt[ch * n + j] }
                                    dBias[ch] = sum
                                }
                                haze_gemm_pack_transposed(dxAt, n, packed, chunk, c)
                                haze_gemm_packed(packed, wout, p, dOut, p, chunk, p, c, 0)  // ∂o = ∂zᵀ W_out
                                haze_gemm_pack(dxAt, n, packed, c, chunk)
                                haze_gemm_packed(packed, o + image * n * p + first * p, p, dWout, p, c, p, chunk, 0)  // ∂W_out = ∂z o
                                let q = saved + image * 3 * n * p + first * p
                                haze_linear_attention_head_backward(q, q + n * p, q + 2 * n * p, ctx + task * d * d, dOut, dParts,
                                                                    dParts + d * n, dParts + 2 * d * n, d, n, alpha, scratch)
                                for part in 0..<3 {
                                    haze_gemm_pack(dParts + part * d * n, p, packed, chunk, p)
                                    haze_gemm_packed(packed, wqkv + part * p * c, c, dxRows, c, chunk, c, p, part > 0 ? 1 : 0)
                                }
                                haze_transpose_tiled(dxRows, c, dxAt, n, chunk, c)
                                for ch in 0..<c {
                                    let (to, from) = (dxAt + ch * n, dyAt + ch * n)
                                    for j in 0..<chunk { to[j] += from[j] }
                                }
                                haze_gemm_pack(xAt, n, packed, c, chunk)
                                for part in 0..<3 {
                                    haze_gemm_packed(packed, dParts + part * d * n, p, dWqkvT + part * p, 3 * p, c, p, chunk, 0)
                                }
                            }
                        }
                    }
                }
                } } } } } } } } } } }
            }
            // The heads' parameter gradients, summed in (image, head) order.
            let sums = [Float](unsafeUninitializedCapacity: partSize) { total, initialized in
                partials.withUnsafeBufferPointer { partials in
                    let (total, partials) = (total.baseAddress!, partials.baseAddress!)
                    Parallel.forEach(partSize, cost: tasks) { range in
                        for i in range { total[i] = partials[i] }
                        for task in 1..<tasks {
                            let part = partials + task * partSize
                            for i in range { total[i] += part[i] }
                        }
                    }
                }
                initialized = partSize
            }
            let (outOffset, biasOffset) = (3 * p * c, 3 * p * c + c * p)
            let dWqkv = Tensor(shape: qkvWeight.shape) { out, _ in sums.withUnsafeBufferPointer { haze_transpose($0.baseAddress!, out, c, 3 * p) } }
            return [dx, dWqkv,
                    Tensor(shape: outWeight.shape, scalars: Array(sums[outOffset..<biasOffset])),
                    Tensor(shape: [c], scalars: Array(sums[biasOffset..<biasOffset + c])),
                    Tensor(shape: [c], scalars: Array(sums[biasOffset + c..<biasOffset + 2 * c])),
                    Tensor(shape: [c], scalars: Array(sums[biasOffset + 2 * c..<partSize]))]
        }
    }
}
