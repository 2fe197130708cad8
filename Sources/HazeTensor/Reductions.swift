import CHazeKernels

/// Reductions over axes: sum, mean and max, with or without the reduced axes kept (extent 1).
/// Sums accumulate in Double.

extension Tensor {
    /// The output shape of a reduction over `axes` (normalised, sorted, unique).
    private func reducedShape(_ axes: [Int], keep: Bool) -> [Int] {
        keep ? shape.enumerated().map { axes.contains($0.offset) ? 1 : $0.element }
             : shape.enumerated().filter { !axes.contains($0.offset) }.map(\.element)
    }

    private func normalizedAxes(_ axes: [Int]?) -> [Int] {
        guard let axes else { return Array(0..<rank) }
        return Array(Set(axes.map { normalizeAxis($0, rank: rank) })).sorted()
    }

    /// Σ over `axes` (all axes when nil). x: s → out: s without (or with extent 1 on) the axes.
    /// Kernel: the axes are coalesced to [R1, K, R2] and summed in parallel over K; other
    /// patterns go through a permutation to [K, R].
    public func sum(alongAxes axes: [Int]? = nil, keepingDimensions keep: Bool = false) -> Tensor {
        let axes = normalizedAxes(axes)
        let keptShape = reducedShape(axes, keep: true)
        let outShape = reducedShape(axes, keep: keep)
        let (cshape, cstrides) = coalesce(shape, [broadcastStrides(keptShape, to: shape)])
        let reducedFlags = cstrides[0].map { $0 == 0 }
        var values: [Float]
        switch reducedFlags {
        case [true], [false], [false, true], [true, false], [true, false, true]:
            let r1 = reducedFlags.first! ? cshape.first! : 1
            let r2 = reducedFlags.count > 1 && reducedFlags.last! ? cshape.last! : 1
            let k = count / (r1 * r2)
            values = [Float](repeating: 0, count: k)
            values.withUnsafeMutableBufferPointer { out in
                withScalars { p in
                    if r2 == 1 {
                        // Column sums of [R1, K] (e.g. a bias gradient): rows outer, so the inner loop
                        // runs along contiguous memory; the same order of additions as below.
                        Parallel.forEach(k, cost: r1) { range in
                            var acc = [Double](repeating: 0, count: range.count)
                            for i in 0..<r1 {
                                let row = p + i * k + range.lowerBound
                                for j in 0..<range.count { acc[j] += Double(row[j]) }
                            }
                            for j in 0..<range.count { out[range.lowerBound + j] = Float(acc[j]) }
                        }
                        return
                    }
                    Parallel.forEach(k, cost: r1 * r2) { range in
                        for j in range {
                            var acc: Double = 0
                            for i in 0..<r1 {
                                let row = p + (i * k + j) * r2
                                acc += Double(haze_sum(row, r2))
                            }
                            out[j] = Float(acc)
                        }
                    }
                }
            }
        default:
            let kept = (0..<rank).filter { !axes.contains($0) }
            let moved = detached.permuted(kept + axes)
            values = moved.sum(alongAxes: Array(kept.count..<rank)).scalars
        }
        let inputShape = shape
        let out = Tensor(shape: outShape, scalars: values)
        return Tensor.record(out, [self]) { g in
            // Broadcast the gradient back over the reduced axes.
            [g.reshaped(to: keptShape).broadcast(to: inputShape)]
        }
    }

    /// Sum over one axis.
    public func sum(alongAxis axis: Int, keepingDimensions keep: Bool = false) -> Tensor {
        sum(alongAxes: [axis], keepingDimensions: keep)
    }

    /// Arithmetic mean over `axes` (all axes when nil).
    public func mean(alongAxes axes: [Int]? = nil, keepingDimensions keep: Bool = false) -> Tensor {
        let n = normalizedAxes(axes).map { shape[$0] }.reduce(1, *)
        return sum(alongAxes: axes, keepingDimensions: keep) * (1 / Float(n))
    }

    /// Mean over one axis.
    public func mean(alongAxis axis: Int, keepingDimensions keep: Bool = false) -> Tensor {
        mean(alongAxes: [axis], keepingDimensions: keep)
    }

    /// Maximum over `axes` (all when nil). The gradient goes to the first maximal element of
    /// each reduced group (as `torch.max(dim)`).
    /// Kernel: permute to [K, R] (kept axes first), then a row-wise max with saved argmax.
    public func max(alongAxes axes: [Int]? = nil, keepingDimensions keep: Bool = false) -> Tensor {
        let axes = normalizedAxes(axes)
        let kept = (0..<rank).filter { !axes.contains($0) }
        let moved = detached.permuted(kept + axes)
        let r = axes.map { shape[$0] }.reduce(1, *)
        let k = count / Swift.max(r, 1)
        var argmax = [Int](repeating: 0, count: k)
        let values = [Float](unsafeUninitializedCapacity: k) { out, initialized in
            argmax.withUnsafeMutableBufferPointer { am in
                moved.withScalars { p in
                    Parallel.forEach(k, cost: r) { range in
                        for j in range {
                            let row = p + j * r
                            var best = row[0], index = 0
                            for l in 1..<Swift.max(r, 1) where row[l] > best {
                                best = row[l]; index = l
                            }
                            out[j] = best; am[j] = index
                        }
                    }
                }
            }
            initialized = k
        }
        let out = Tensor(shape: reducedShape(axes, keep: keep), scalars: values)
        let movedShape = moved.shape
        var inverse = [Int](repeating: 0, count: rank)
        for (i, a) in (kept + axes).enumerated() { inverse[a] = i }
        return Tensor.record(out, [self]) { g in
            var scattered = [Float](repeating: 0, count: k * r)
            for j in 0..<k { scattered[j * r + argmax[j]] = g.scalars[j] }
            return [Tensor(shape: movedShape, scalars: scattered).permuted(inverse)]
        }
    }

    /// Maximum over one axis.
    public func max(alongAxis axis: Int, keepingDimensions keep: Bool = false) -> Tensor {
        max(alongAxes: [axis], keepingDimensions: keep)
    }
}

extension Tensor {
    /// Σ x² over every element, in Double (the squares of floats are exact there): blocks of
    /// 65,536 elements in parallel (haze_sum_squares), their sums added in order — a fixed order,
    /// so the bits do not depend on the thread count. (The global gradient norm of clipping.)
    public var sumOfSquares: Double {
        let block = 1 << 16, blocks = (count + block - 1) / block
        var partial = [Double](repeating: 0, count: blocks)
        withScalars { x in
            partial.withUnsafeMutableBufferPointer { out in
                Parallel.forEach(blocks, cost: block) { range in
                    for b in range { out[b] = haze_sum_squares(x + b * block, Swift.min(block, count - b * block)) }
                }
            }
        }
        return partial.reduce(0, +)
    }
}
