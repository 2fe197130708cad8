/// Spatial resampling of NCHW images: nearest-neighbour upsampling ×2 (diffusers' Upsample2D)
/// and 2×2 average pooling (Downsample2D's pooling variant), forward and backward.

import CHazeKernels

extension Tensor {
    /// Nearest-neighbour ×2 upsampling. x: [N, C, H, W] → y: [N, C, 2H, 2W],
    /// y[n, c, i, j] = x[n, c, i/2, j/2]. Pullback: ∂x[i, j] = Σ of the 2×2 block of g.
    public func upsampledNearest2x() -> Tensor {
        precondition(rank == 4, "upsampledNearest2x expects [N, C, H, W], got \(shape)")
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        let y = Tensor(shape: [shape[0], shape[1], 2 * h, 2 * w]) { out, _ in
            withScalars { p in
                Parallel.forEach(planes * h, cost: 8 * w) { rows in
                    haze_upsample_nearest2x(p + rows.lowerBound * w, out + rows.lowerBound * 4 * w, rows.count, w)
                }
            }
        }
        let inputShape = shape
        return Tensor.record(y, [self]) { g in [g.sumPooled2x2(outputShape: inputShape, scale: 1)] }
    }

    /// 2×2 average pooling with stride 2. x: [N, C, H, W] (H, W even) → y: [N, C, H/2, W/2].
    /// Pullback: each output gradient spread as g/4 over its 2×2 block.
    public func averagePooled2x2() -> Tensor {
        precondition(rank == 4 && shape[2] % 2 == 0 && shape[3] % 2 == 0,
                     "averagePooled2x2 expects [N, C, H, W] with even H and W, got \(shape)")
        let y = sumPooled2x2(outputShape: [shape[0], shape[1], shape[2] / 2, shape[3] / 2], scale: 0.25)
        return Tensor.record(y, [self]) { g in [g.upsampledNearest2x().detached * 0.25] }
    }

    /// out[n, c, i, j] = scale · Σ of the 2×2 block at (2i, 2j). Not recorded.
    private func sumPooled2x2(outputShape: [Int], scale: Float) -> Tensor {
        let (rows, w) = (outputShape[0] * outputShape[1] * outputShape[2], outputShape[3])
        return Tensor(shape: outputShape) { out, _ in
            withScalars { p in
                Parallel.forEach(rows, cost: 8 * w) { range in
                    for r in range {
                        let src0 = p + r * 4 * w, src1 = src0 + 2 * w, dst = out + r * w
                        for j in 0..<w {
                            dst[j] = scale * ((src0[2 * j] + src0[2 * j + 1]) + (src1[2 * j] + src1[2 * j + 1]))
                        }
                    }
                }
            }
        }
    }
}
