/// Shape arithmetic: broadcasting (NumPy/PyTorch rules), strides, and the coalescing of axes
/// that lets a kernel walk broadcast operands with one or two loops.

/// Row-major strides of `shape`.

func contiguousStrides(_ shape: [Int]) -> [Int] {
    var strides = [Int](repeating: 1, count: shape.count)
    var running = 1
    for axis in stride(from: shape.count - 1, through: 0, by: -1) {
        strides[axis] = running
        running *= shape[axis]
    }
    return strides
}

/// The broadcast of two shapes: axes aligned from the right, each pair equal or one of them 1.
func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int] {
    let rank = max(a.count, b.count)
    let pa = [Int](repeating: 1, count: rank - a.count) + a
    let pb = [Int](repeating: 1, count: rank - b.count) + b
    return zip(pa, pb).map { x, y in
        precondition(x == y || x == 1 || y == 1, "shapes \(a) and \(b) cannot be broadcast together")
        return x == 1 ? y : x
    }
}

/// Strides for reading a tensor of `shape` as if it had shape `target` (0 on broadcast axes).
func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
    let padded = [Int](repeating: 1, count: target.count - shape.count) + shape
    let strides = contiguousStrides(padded)
    return zip(padded, strides).map { extent, stride in extent == 1 ? 0 : stride }
}

/// Merges adjacent axes that every operand walks contiguously together, and drops axes of
/// extent 1. Returns the reduced shape and one stride list per operand.
func coalesce(_ shape: [Int], _ strides: [[Int]]) -> (shape: [Int], strides: [[Int]]) {
    var outShape: [Int] = []
    var outStrides: [[Int]] = strides.map { _ in [] }
    for axis in 0..<shape.count where shape[axis] != 1 {
        if let last = outShape.last,
           strides.indices.allSatisfy({ strides[$0][axis] * shape[axis] == outStrides[$0].last! }) {
            outShape[outShape.count - 1] = last * shape[axis]
            for k in strides.indices { outStrides[k][outStrides[k].count - 1] = strides[k][axis] }
        } else {
            outShape.append(shape[axis])
            for k in strides.indices { outStrides[k].append(strides[k][axis]) }
        }
    }
    if outShape.isEmpty { return ([1], strides.map { _ in [0] }) }
    return (outShape, outStrides)
}

/// Offsets of the first element of each "row" (all axes but the last) for several operands.
/// Used by the generic strided kernels; `rows` = product of all extents but the last.
func rowOffsets(_ shape: [Int], _ strides: [Int]) -> [Int] {
    let rows = shape.dropLast().reduce(1, *)
    var offsets = [Int](repeating: 0, count: rows)
    var index = [Int](repeating: 0, count: max(shape.count - 1, 0))
    var offset = 0
    for row in 0..<rows {
        offsets[row] = offset
        // Increment the multi-index over the leading axes.
        var axis = shape.count - 2
        while axis >= 0 {
            index[axis] += 1
            offset += strides[axis]
            if index[axis] < shape[axis] { break }
            offset -= strides[axis] * shape[axis]
            index[axis] = 0
            axis -= 1
        }
    }
    return offsets
}

/// Normalises a possibly negative axis against `rank`.

func normalizeAxis(_ axis: Int, rank: Int) -> Int {
    let a = axis < 0 ? axis + rank : axis
    precondition(a >= 0 && a < Swift.max(rank, 1), "axis \(axis) out of range for rank \(rank)")
    return a
}
