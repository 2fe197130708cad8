/// Pooling with any window and bilinear resizing of NCHW images, for feature networks such as
/// the FID InceptionV3. Inference only: these ops record nothing on the tape, and calling them
/// on a value that is being differentiated is a programming error.

/// How a pooling window combines its pixels.
public enum PoolingMode: Sendable {
    /// Largest value in the window; padding never wins (it counts as −∞).
    case maximum
    /// Mean over the window's pixels inside the image (PyTorch's `count_include_pad=False`,
    /// TensorFlow's average pool).
    case averageExcludingPadding
}

extension Tensor {
    /// Square-window pooling. x: [N, C, H, W] → y: [N, C, HO, WO] with
    /// HO = (H + 2·padding − kernel) / stride + 1 (floor, as PyTorch's default), likewise WO.
    public func pooled(_ mode: PoolingMode, kernel: Int, stride: Int, padding: Int = 0) -> Tensor {
        precondition(rank == 4 && kernel > 0 && stride > 0, "pooled expects [N, C, H, W] and a positive kernel and stride, got \(shape)")
        precondition(!isRecorded, "pooled has no gradient (inference only)")
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        let ho = (h + 2 * padding - kernel) / stride + 1, wo = (w + 2 * padding - kernel) / stride + 1
        precondition(ho > 0 && wo > 0 && padding * 2 <= kernel, "pooled: window \(kernel) (padding \(padding)) does not fit \(shape)")
        return Tensor(shape: [shape[0], shape[1], ho, wo]) { out, _ in
            withScalars { p in
                Parallel.forEach(planes, cost: ho * wo * kernel * kernel) { range in
                    for plane in range {
                        let src = p + plane * h * w, dst = out + plane * ho * wo
                        for oy in 0..<ho {
                            let y0 = Swift.max(oy * stride - padding, 0), y1 = Swift.min(oy * stride - padding + kernel, h)
                            for ox in 0..<wo {
                                let x0 = Swift.max(ox * stride - padding, 0), x1 = Swift.min(ox * stride - padding + kernel, w)
                                var best = -Float.infinity, sum: Float = 0
                                for y in y0..<y1 {
                                    for x in x0..<x1 {
                                        let v = src[y * w + x]
                                        best = Swift.max(best, v)
                                        sum += v
                                    }
                                }
                                dst[oy * wo + ox] = mode == .maximum ? best : sum / Float((y1 - y0) * (x1 - x0))
                            }
                        }
                    }
                }
            }
        }
    }

    /// Bilinear resize as `F.interpolate(mode="bilinear", align_corners=False)` (no
    /// antialiasing). x: [N, C, H, W] → y: [N, C, height, width]. Output pixel i samples the
    /// input at s = (i + ½)·H/height − ½, clamped at 0, between rows ⌊s⌋ and min(⌊s⌋ + 1, H − 1).
    public func resizedBilinear(height: Int, width: Int) -> Tensor {
        precondition(rank == 4 && shape[2] > 0 && shape[3] > 0 && height > 0 && width > 0,
                     "resizedBilinear expects non-empty [N, C, H, W] images and a positive size, got \(shape) → \(height)×\(width)")
        precondition(!isRecorded, "resizedBilinear has no gradient (inference only)")
        let (planes, h, w) = (shape[0] * shape[1], shape[2], shape[3])
        /// (first index, second index, weight of the second) for each output index.
        func taps(_ outCount: Int, _ inCount: Int) -> [(Int, Int, Float)] {
            let scale = Float(inCount) / Float(outCount)
            return (0..<outCount).map { i in
                let s = Swift.max(scale * (Float(i) + 0.5) - 0.5, 0)
                let i0 = Swift.min(Int(s), inCount - 1)
                return (i0, Swift.min(i0 + 1, inCount - 1), s - Float(i0))
            }
        }
        let rows = taps(height, h), columns = taps(width, w)
        return Tensor(shape: [shape[0], shape[1], height, width]) { out, _ in
            withScalars { p in
                Parallel.forEach(planes, cost: 4 * height * width) { range in
                    for plane in range {
                        let src = p + plane * h * w, dst = out + plane * height * width
                        for (oy, (y0, y1, ly)) in rows.enumerated() {
                            let r0 = src + y0 * w, r1 = src + y1 * w
                            for (ox, (x0, x1, lx)) in columns.enumerated() {
                                let top = (1 - lx) * r0[x0] + lx * r0[x1], bottom = (1 - lx) * r1[x0] + lx * r1[x1]
                                dst[oy * width + ox] = (1 - ly) * top + ly * bottom
                            }
                        }
                    }
                }
            }
        }
    }
}
