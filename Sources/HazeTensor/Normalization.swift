import CHazeKernels

/// Normalisation layers: group norm (Wu & He 2018), batch norm (Ioffe & Szegedy 2015) and layer
/// norm (Ba et al. 2016), forward and backward side by side.
///
/// All three normalise a set of M values with its mean μ and rstd = 1/√(σ² + ε) (biased σ²):
///   x̂ = (x − μ)·rstd,  y = γ x̂ + β,
/// and share the backward, llm.c style, with ĝ = g·γ:
///   ∂x = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ x̂)),  ∂γ = Σ g x̂,  ∂β = Σ g.

/// Mean, biased variance and rstd = 1/√(σ² + ε) of `count` contiguous values (two passes,
/// partial sums in Float, totals in Double).
@inline(__always)
private func moments(_ p: UnsafePointer<Float>, count: Int, epsilon: Float) -> (mean: Float, variance: Float, rstd: Float) {
    var sum: Float = 0
    for i in 0..<count { sum += p[i] }
    let mean = Float(Double(sum) / Double(count))
    var squares: Float = 0
    for i in 0..<count { let d = p[i] - mean; squares += d * d }
    let variance = Float(Double(squares) / Double(count))
    return (mean, variance, 1 / (variance + epsilon).squareRoot())
}

extension Tensor {
    /// Group normalisation. x: [N, C, *] with C divisible by `groups`; weight, bias: [C].
    /// Statistics over each (n, group): M = (C/G)·Π(*) values. mean, rstd: [N, G] saved for
    /// backward. Parallel over the N·G groups (forward and ∂x) and over channels (∂γ, ∂β).
    /// With `applyingSiLU`, returns SiLU(groupNorm(x)) in one pass (as ResNet blocks use it);
    /// the backward recomputes the normalised values from x, mean and rstd instead of keeping them.
    /// With `residual` (x's shape), returns that plus the result, in the same pass (a ResNet
    /// block's skip connection; ∂residual = ∂y).
    public static func groupNorm(_ x: Tensor, groups: Int, weight: Tensor?, bias: Tensor?, epsilon: Float = 1e-5,
                                 applyingSiLU silu: Bool = false, adding residual: Tensor? = nil) -> Tensor {
        let c = x.rank >= 2 ? x.shape[1] : 0
        precondition(weight == nil || weight!.shape == [c], "groupNorm: weight shape \(weight!.shape) for \(c) channels")
        precondition(bias == nil || bias!.shape == [c], "groupNorm: bias shape \(bias!.shape) for \(c) channels")
        return groupNorm(x, groups: groups, scale: weight, shift: bias, perImage: false, epsilon: epsilon, silu: silu, residual: residual)
    }

    /// Group normalisation with a scale and shift per image and channel, [N, C] each:
    /// y = x̂ · scale[n, c] + shift[n, c] (then SiLU with `applyingSiLU`), in one pass. A group
    /// norm with weight w and bias b modulated by a time embedding's (γ, β) — (x̂ w + b)(1 + γ) + β,
    /// as the TensorFlow notebook's ResNet blocks do — is this with scale = w (1 + γ) and
    /// shift = b (1 + γ) + β: no separate passes for the modulation. ∂scale = Σ g x̂ and ∂shift =
    /// Σ g per image and channel.
    public static func groupNorm(_ x: Tensor, groups: Int, scale: Tensor, shift: Tensor, epsilon: Float = 1e-5,
                                 applyingSiLU silu: Bool = false) -> Tensor {
        let nc = x.rank >= 2 ? [x.shape[0], x.shape[1]] : []
        precondition(scale.shape == nc && shift.shape == nc, "groupNorm: scale \(scale.shape) and shift \(shift.shape) for x \(x.shape)")
        return groupNorm(x, groups: groups, scale: scale, shift: shift, perImage: true, epsilon: epsilon, silu: silu, residual: nil)
    }

    private static func groupNorm(_ x: Tensor, groups: Int, scale weight: Tensor?, shift bias: Tensor?, perImage: Bool,
                                  epsilon: Float, silu: Bool, residual: Tensor?) -> Tensor {
        precondition(x.rank >= 2 && x.shape[1] % groups == 0, "groupNorm: \(x.shape[1]) channels do not split into \(groups) groups")
        precondition(residual == nil || residual!.shape == x.shape, "groupNorm: residual \(residual!.shape) for x \(x.shape)")
        let (n, c) = (x.shape[0], x.shape[1])
        let spatial = x.count / Swift.max(n * c, 1), perGroup = c / groups, m = perGroup * spatial, stride = perImage ? c : 0
        var mean = [Float](repeating: 0, count: n * groups), rstd = mean
        let gamma = weight?.scalars, beta = bias?.scalars
        let y = Tensor(shape: x.shape) { out, _ in
            x.withScalars { px in Tensor.withOptionalScalars(residual) { pr in
                mean.withUnsafeMutableBufferPointer { pm in rstd.withUnsafeMutableBufferPointer { ps in
                    Parallel.forEach(n * groups, cost: 4 * m) { range in
                        haze_group_norm_forward(px, pr, out, gamma, beta, stride, range.lowerBound, range.count, groups, perGroup,
                                                spatial, epsilon, silu ? 1 : 0, pm.baseAddress!, ps.baseAddress!)
                    }
                } }
            } }
        }
        var inputs = [x]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        if let residual { inputs.append(residual) }
        let vx = x.detached
        return record(y, inputs) { g in
            // Per (n, c): Σ g x̂ and Σ g, reduced over n afterwards for ∂γ, ∂β of per-channel ones.
            var dgammaParts = [Float](repeating: 0, count: n * c), dbetaParts = dgammaParts
            let dx = Tensor(shape: vx.shape) { pdx, _ in  // every group writes its own values
                vx.withScalars { px in g.withScalars { pg in
                    dgammaParts.withUnsafeMutableBufferPointer { pdg in dbetaParts.withUnsafeMutableBufferPointer { pdb in
                        Parallel.forEach(n * groups, cost: 8 * m) { range in
                            haze_group_norm_backward(px, pg, gamma, mean, rstd, pdx, pdg.baseAddress!, pdb.baseAddress!,
                                                     beta, silu ? 1 : 0, stride, range.lowerBound, range.count, groups, perGroup, spatial)
                        }
                    } }
                } }
            }
            let gradient = { (parts: [Float]) in
                perImage ? Tensor(shape: [n, c], scalars: parts) : Tensor(shape: [n, c], scalars: parts).sum(alongAxis: 0)
            }
            var grads: [Tensor?] = [dx]
            if weight != nil { grads.append(gradient(dgammaParts)) }
            if bias != nil { grads.append(gradient(dbetaParts)) }
            if residual != nil { grads.append(g) }
            return grads
        }
    }

    /// Layer normalisation over the last axis. x: […, D]; weight, bias: [D].
    /// Statistics per row (M = D values). Parallel over rows.
    public static func layerNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?, epsilon: Float = 1e-5) -> Tensor {
        let d = x.shape.last!
        let rows = x.count / Swift.max(d, 1)
        // A layer norm over D is a group norm of [rows, D] with one group, with a per-feature
        // affine transform applied afterwards (γ, β are per column, not per group member).
        let normalized = groupNorm(x.reshaped(to: [rows, 1, d]), groups: 1, weight: nil, bias: nil, epsilon: epsilon)
            .reshaped(to: x.shape)
        var y = normalized
        if let weight { y = y * weight }
        if let bias { y = y + bias }
        return y
    }

    /// Layer normalisation over the channels (axis 1) of x: [B, C, *] with per-channel γ, β —
    /// Keras' LayerNormalization of the same tensor held NHWC — equal to moving the channels last,
    /// `layerNorm` and back, without the two permutes (haze_channel_norm.c):
    ///   y = γ (x − μ)/√(σ² + ε) + β,  μ, σ² over the C values of each position.
    /// Work in items of (image, 512 positions), so the sums of ∂γ, ∂β are the same whatever the
    /// thread count. Saved for backward: μ and 1/√(σ² + ε) per position. With `residual` (x's
    /// shape), returns that plus y in the same pass (∂residual = ∂y).
    public static func channelLayerNorm(_ x: Tensor, weight: Tensor, bias: Tensor, epsilon: Float = 1e-5,
                                        adding residual: Tensor? = nil) -> Tensor {
        let (b, c) = (x.shape[0], x.shape[1]), s = x.count / Swift.max(b * c, 1)
        precondition(x.rank >= 2 && weight.shape == [c] && bias.shape == [c], "channelLayerNorm: x \(x.shape), γ \(weight.shape), β \(bias.shape)")
        precondition(residual == nil || residual!.shape == x.shape, "channelLayerNorm: residual \(residual!.shape) for x \(x.shape)")
        let block = 512, blocks = (s + block - 1) / block, items = b * blocks
        func forEachItem(cost: Int, _ body: @escaping (_ image: Int, _ first: Int, _ count: Int, _ item: Int) -> Void) {
            Parallel.forEach(items, cost: cost * c * block) { range in
                for item in range {
                    let (image, index) = item.quotientAndRemainder(dividingBy: blocks)
                    body(image, index * block, Swift.min(block, s - index * block), item)
                }
            }
        }
        var mean = [Float](repeating: 0, count: b * s), rstd = mean
        let y = Tensor(shape: x.shape) { out, _ in
            x.withScalars { px in weight.withScalars { pg in bias.withScalars { pb in Tensor.withOptionalScalars(residual) { pr in
                mean.withUnsafeMutableBufferPointer { m in rstd.withUnsafeMutableBufferPointer { r in
                    let (m, r) = (m.baseAddress!, r.baseAddress!)
                    forEachItem(cost: 6) { image, first, count, _ in
                        haze_channel_norm_forward(px + image * c * s, pr.map { $0 + image * c * s }, out + image * c * s, pg, pb,
                                                  c, s, first, count, epsilon, m + image * s, r + image * s)
                    }
                } }
            } } } }
        }
        let (savedMean, savedRstd) = (mean, rstd)
        return Tensor.record(y, [x, weight, bias] + (residual.map { [$0] } ?? [])) { g in
            var partials = [Float](repeating: 0, count: items * 2 * c)  // ∂γ, ∂β of each item
            let dx = Tensor(shape: x.shape) { out, _ in
                x.withScalars { px in g.withScalars { pd in weight.withScalars { pg in
                    savedMean.withUnsafeBufferPointer { m in savedRstd.withUnsafeBufferPointer { r in
                        partials.withUnsafeMutableBufferPointer { part in
                            let (m, r, part) = (m.baseAddress!, r.baseAddress!, part.baseAddress!)
                            forEachItem(cost: 10) { image, first, count, item in
                                Scratch.withBuffer(2 * block) { scratch in
                                    haze_channel_norm_backward(px + image * c * s, pd + image * c * s, pg, m + image * s, r + image * s,
                                                               out + image * c * s, part + item * 2 * c, part + item * 2 * c + c,
                                                               c, s, first, count, scratch)
                                }
                            }
                        }
                    } }
                } } }
            }
            // The items' sums in item order.
            var dGamma = [Float](repeating: 0, count: c), dBeta = dGamma
            for item in 0..<items {
                for ch in 0..<c { dGamma[ch] += partials[item * 2 * c + ch]; dBeta[ch] += partials[item * 2 * c + c + ch] }
            }
            return [dx, Tensor(shape: [c], scalars: dGamma), Tensor(shape: [c], scalars: dBeta)] + (residual == nil ? [] : [g])
        }
    }

    /// Batch normalisation of x: [N, C, *] with per-channel statistics over N·Π(*) values.
    /// Training: normalises with the batch statistics and updates the running averages,
    /// r ← (1 − momentum)·r + momentum·s, with the unbiased variance (PyTorch's rule).
    /// Evaluation: y = γ (x − running mean)/√(running var + ε) + β, an affine map.
    public static func batchNorm(_ x: Tensor, weight: Tensor?, bias: Tensor?,
                                 runningMean: inout Tensor, runningVariance: inout Tensor,
                                 training: Bool, momentum: Float = 0.1, epsilon: Float = 1e-5) -> Tensor {
        let (n, c) = (x.shape[0], x.shape[1])
        let spatial = x.count / Swift.max(n * c, 1)
        precondition(runningMean.shape == [c] && runningVariance.shape == [c],
                     "batchNorm: running statistics must have shape [\(c)]")
        let channelShape = [1, c] + [Int](repeating: 1, count: x.rank - 2)
        if !training {
            let scale = (runningVariance + epsilon).rsqrt() * (weight ?? Tensor.ones([c]))
            let shift = (bias ?? Tensor.zeros([c])) - runningMean * scale
            return x * scale.reshaped(to: channelShape) + shift.reshaped(to: channelShape)
        }
        // Batch statistics: move channels first so each channel is one group, then reuse the
        // group-norm kernel (one group of N·Π(*) values per channel).
        let channelsFirst = x.reshaped(to: [n, c, spatial]).permuted([1, 0, 2]).reshaped(to: [1, c, n * spatial])
        let normalized = groupNorm(channelsFirst, groups: c, weight: weight, bias: bias, epsilon: epsilon)
            .reshaped(to: [c, n, spatial]).permuted([1, 0, 2]).reshaped(to: x.shape)
        // Running averages from the same statistics.
        var batchMean = [Float](repeating: 0, count: c), batchVariance = batchMean
        channelsFirst.withScalars { p in
            for ch in 0..<c {
                let s = moments(p + ch * n * spatial, count: n * spatial, epsilon: epsilon)
                batchMean[ch] = s.mean
                let m = Float(n * spatial)
                batchVariance[ch] = m > 1 ? s.variance * m / (m - 1) : s.variance
            }
        }
        runningMean = runningMean.detached * (1 - momentum) + Tensor(batchMean) * momentum
        runningVariance = runningVariance.detached * (1 - momentum) + Tensor(batchVariance) * momentum
        return normalized
    }
}
