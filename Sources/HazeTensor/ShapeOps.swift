import CHazeKernels

/// Ops that move data without arithmetic: reshape, permute/transpose, concatenation, slicing
/// and splitting along an axis. Each pullback is the inverse movement of the gradient.

extension Tensor {
    /// The same elements with another shape (one extent may be -1: inferred). No copy.
    public func reshaped(to newShape: [Int]) -> Tensor {
        var resolved = newShape
        if let hole = newShape.firstIndex(of: -1) {
            let known = newShape.enumerated().filter { $0.offset != hole }.map(\.element).reduce(1, *)
            precondition(known > 0 && count % known == 0, "cannot reshape \(shape) to \(newShape)")
            resolved[hole] = count / known
        }
        precondition(resolved.reduce(1, *) == count, "cannot reshape \(shape) (\(count) elements) to \(newShape)")
        let original = shape
        var out = Tensor(shape: resolved, scalars: scalars)
        out = Tensor.record(out, [self]) { g in [g.reshaped(to: original)] }
        return out
    }

    /// Axes reordered: output axis i is input axis `axes[i]` (as `torch.permute`).
    /// x: shape s; out: [s[axes[0]], s[axes[1]], …]. Parallel over rows of the output.
    public func permuted(_ axes: [Int]) -> Tensor {
        let axes = axes.map { normalizeAxis($0, rank: rank) }
        precondition(axes.sorted() == Array(0..<rank), "permutation \(axes) invalid for rank \(rank)")
        if axes == Array(0..<rank) { return self }
        let inStrides = contiguousStrides(shape)
        let out = gathered(shape: axes.map { shape[$0] }, strides: axes.map { inStrides[$0] })
        var inverse = [Int](repeating: 0, count: rank)
        for (i, a) in axes.enumerated() { inverse[a] = i }
        return Tensor.record(out, [self]) { g in [g.permuted(inverse)] }
    }

    /// The tensor repeated along its extent-1 (or missing leading) axes to `target`.
    /// Pullback: the gradient summed back to this shape.
    public func broadcast(to target: [Int]) -> Tensor {
        if shape == target { return self }
        precondition(broadcastShape(shape, target) == target, "cannot broadcast \(shape) to \(target)")
        let out = gathered(shape: target, strides: broadcastStrides(shape, to: target))
        let original = shape
        return Tensor.record(out, [self]) { g in [g.sum(toShape: original)] }
    }

    /// A contiguous tensor of `shape` whose element at multi-index i is this tensor's element at
    /// offset Σ i[a]·strides[a] (a strided view materialised). Parallel over output rows; a view that
    /// is a batch of matrix transposes (a permutation such as NCHW ↔ NHWC) goes by tiles.
    func gathered(shape outShape: [Int], strides: [Int]) -> Tensor {
        let (cshape, cstrides) = coalesce(outShape, [contiguousStrides(outShape), strides])
        let inner = cshape.last!, innerStride = cstrides[1].last!
        if cshape.count >= 2, inner >= 16, cshape[cshape.count - 2] >= 16, cstrides[1][cshape.count - 2] == 1,
           innerStride == cshape[cshape.count - 2] {
            return transposedMatrices(cshape, inputStrides: cstrides[1], outShape: outShape)
        }
        let outRows = rowOffsets(cshape, cstrides[0]), inRows = rowOffsets(cshape, cstrides[1])
        return Tensor(shape: outShape) { o, _ in
            withScalars { p in
                Parallel.forEach(outRows.count, cost: inner) { rows in
                    for row in rows {
                        let dst = o + outRows[row], src = p + inRows[row]
                        for j in 0..<inner { dst[j] = src[j * innerStride] }
                    }
                }
            }
        }
    }

    /// The gather of `gathered` when each of its output matrices [R, C] (the last two axes of the
    /// coalesced `shape`) is the transpose of an input matrix [C, R]: tiles of 16 rows of the
    /// output per task, over every matrix.
    func transposedMatrices(_ shape: [Int], inputStrides: [Int], outShape: [Int]) -> Tensor {
        let (rows, columns) = (shape[shape.count - 2], shape[shape.count - 1])
        let outer = Array(shape.dropLast(2)), strides = Array(inputStrides.dropLast(2))
        let offsets = outer.isEmpty ? [0] : rowOffsets(outer + [1], strides + [1])
        let blocks = (rows + 15) / 16
        return Tensor(shape: outShape) { o, _ in
            withScalars { p in
                Parallel.forEach(offsets.count * blocks, cost: 16 * columns) { range in
                    for task in range {
                        let (matrix, block) = task.quotientAndRemainder(dividingBy: blocks)
                        let first = block * 16, count = min(16, rows - first)
                        // Output rows [first, first + count) are input columns of matrix `matrix`.
                        haze_transpose_tiled(p + offsets[matrix] + first, rows, o + matrix * rows * columns + first * columns, columns,
                                             columns, count)
                    }
                }
            }
        }
    }

    /// Swaps two axes.
    public func transposed(_ a: Int = -2, _ b: Int = -1) -> Tensor {
        var axes = Array(0..<rank)
        axes.swapAt(normalizeAxis(a, rank: rank), normalizeAxis(b, rank: rank))
        return permuted(axes)
    }

    /// Joins tensors along `axis`; all other extents must agree.
    public static func concatenate(_ tensors: [Tensor], alongAxis axis: Int) -> Tensor {
        precondition(!tensors.isEmpty, "concatenate needs at least one tensor")
        let first = tensors[0]
        let axis = normalizeAxis(axis, rank: first.rank)
        for t in tensors {
            precondition(t.rank == first.rank && (0..<t.rank).allSatisfy { $0 == axis || t.shape[$0] == first.shape[$0] },
                         "cannot concatenate shapes \(tensors.map(\.shape)) along axis \(axis)")
        }
        var outShape = first.shape
        outShape[axis] = tensors.map { $0.shape[axis] }.reduce(0, +)
        let outer = first.shape[..<axis].reduce(1, *)
        let chunks = tensors.map { $0.count / Swift.max(outer, 1) }
        let outChunk = chunks.reduce(0, +)
        var out = Tensor(shape: outShape) { o, _ in
            var start = 0
            for (t, chunk) in zip(tensors, chunks) {
                t.withScalars { copyRows(outer, length: chunk, from: $0, pitch: chunk, to: o + start, pitch: outChunk) }
                start += chunk
            }
        }
        let extents = tensors.map { $0.shape[axis] }
        out = record(out, tensors) { g in g.split(sizes: extents, alongAxis: axis).map { $0 } }
        return out
    }

    /// The elements with index in `range` along `axis` (a copy).
    public func slice(_ range: Range<Int>, alongAxis axis: Int = 0) -> Tensor {
        let axis = normalizeAxis(axis, rank: rank)
        precondition(range.lowerBound >= 0 && range.upperBound <= shape[axis],
                     "slice \(range) out of bounds for axis \(axis) of shape \(shape)")
        var outShape = shape
        outShape[axis] = range.count
        let outer = shape[..<axis].reduce(1, *)
        let innerSize = shape[(axis + 1)...].reduce(1, *)
        let chunk = range.count * innerSize, rowSize = shape[axis] * innerSize
        let out = Tensor(shape: outShape) { o, _ in
            withScalars { Tensor.copyRows(outer, length: chunk, from: $0 + range.lowerBound * innerSize, pitch: rowSize, to: o, pitch: chunk) }
        }
        let fullShape = shape
        return Tensor.record(out, [self]) { g in
            // Scatter the gradient into zeros of the input's shape.
            var full = Tensor.zeros(fullShape)
            full.withMutableScalars { o in
                g.withScalars { Tensor.copyRows(outer, length: chunk, from: $0, pitch: chunk, to: o + range.lowerBound * innerSize, pitch: rowSize) }
            }
            return [full]
        }
    }

    /// Copies `rows` rows of `length` floats, `pitch` apart in the source and in the destination,
    /// in parallel over the rows (the block moves of concatenation and slicing).
    private static func copyRows(_ rows: Int, length: Int, from src: UnsafePointer<Float>, pitch srcPitch: Int,
                                 to dst: UnsafeMutablePointer<Float>, pitch dstPitch: Int) {
        Parallel.forEach(rows, cost: length) { range in
            for i in range { (dst + i * dstPitch).update(from: src + i * srcPitch, count: length) }
        }
    }

    /// Consecutive pieces along `axis` with the given extents (which must add up to the axis).
    public func split(sizes: [Int], alongAxis axis: Int) -> [Tensor] {
        let axis = normalizeAxis(axis, rank: rank)
        precondition(sizes.reduce(0, +) == shape[axis], "split sizes \(sizes) do not add up to \(shape[axis])")
        var start = 0
        return sizes.map { size in
            defer { start += size }
            return slice(start..<(start + size), alongAxis: axis)
        }
    }

    /// Splits into `parts` equal pieces along `axis` (like `torch.chunk` for divisible extents).
    public func chunked(_ parts: Int, alongAxis axis: Int) -> [Tensor] {
        let a = normalizeAxis(axis, rank: rank)
        precondition(shape[a] % parts == 0, "axis \(a) of extent \(shape[a]) does not split into \(parts)")
        return split(sizes: [Int](repeating: shape[a] / parts, count: parts), alongAxis: a)
    }
}
