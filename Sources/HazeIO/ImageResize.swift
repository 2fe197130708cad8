import Foundation
import HazeTensor

/// Channel conversion, resizing and conversion to tensors of decoded images: the preprocessing
/// of diffusers' training scripts (`Resize(size)`, `CenterCrop(size)`, `ToTensor()`,
/// `Normalize([0.5], [0.5])`).
extension DecodedImage {
    /// The image with `channels` channels (1 or 3). Gray → RGB repeats the gray value; RGB →
    /// gray is ITU-R 601 luma with PIL's fixed-point rounding (`convert("L")`):
    /// L = (19595 R + 38470 G + 7471 B + 2¹⁵) >> 16 ≈ round(0.299 R + 0.587 G + 0.114 B).
    public func converted(toChannels target: Int) -> DecodedImage {
        precondition(target == 1 || target == 3, "converted(toChannels:): 1 or 3 channels, got \(target)")
        if target == channels { return self }
        let count = width * height
        var out = [UInt8](repeating: 0, count: count * target)
        if target == 3 {
            for p in 0..<count {
                let v = pixels[p]
                out[3 * p] = v; out[3 * p + 1] = v; out[3 * p + 2] = v
            }
        } else {
            for p in 0..<count {
                let (r, g, b) = (UInt32(pixels[3 * p]), UInt32(pixels[3 * p + 1]), UInt32(pixels[3 * p + 2]))
                out[p] = UInt8((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16)
            }
        }
        return DecodedImage(width: width, height: height, channels: target, pixels: out)
    }

    /// The image resized so that its shorter side is `size` (the longer one scaled in
    /// proportion and truncated, as torchvision's `Resize(size)` does), then cropped to the
    /// central `size`×`size` square (offsets rounded as torchvision's `CenterCrop`).
    ///
    /// Resampling is PIL's bilinear filter: a triangle kernel which, when shrinking by a factor
    /// s > 1, is widened to a support of s input pixels, so it averages over every input pixel
    /// (antialiased) rather than sampling 4 of them. Only the cropped pixels are computed.
    public func resizedCenterCropped(to size: Int) -> DecodedImage {
        precondition(size > 0, "resizedCenterCropped: size must be positive, got \(size)")
        precondition(width > 0 && height > 0, "resizedCenterCropped: empty \(width)×\(height) image")
        let (newWidth, newHeight): (Int, Int)
        if width <= height {
            (newWidth, newHeight) = (size, max(size, Int(Double(size) * Double(height) / Double(width))))
        } else {
            (newWidth, newHeight) = (max(size, Int(Double(size) * Double(width) / Double(height))), size)
        }
        let left = Int((Double(newWidth - size) / 2).rounded(.toNearestOrEven))
        let top = Int((Double(newHeight - size) / 2).rounded(.toNearestOrEven))
        let columns = ResampleWeights(input: width, output: newWidth, range: left..<(left + size))
        let rows = ResampleWeights(input: height, output: newHeight, range: top..<(top + size))

        // Horizontal pass over every input row: [height, size, channels] in Float.
        let c = channels
        var horizontal = [Float](repeating: 0, count: height * size * c)
        for y in 0..<height {
            for x in 0..<size {
                let (first, weights) = (columns.first[x], columns.weights[x])
                for ch in 0..<c {
                    var sum: Float = 0
                    for (k, w) in weights.enumerated() { sum += w * Float(pixels[((y * width) + first + k) * c + ch]) }
                    horizontal[(y * size + x) * c + ch] = sum
                }
            }
        }
        // Vertical pass, rounded and clamped to bytes.
        var out = [UInt8](repeating: 0, count: size * size * c)
        for y in 0..<size {
            let (first, weights) = (rows.first[y], rows.weights[y])
            for x in 0..<size {
                for ch in 0..<c {
                    var sum: Float = 0
                    for (k, w) in weights.enumerated() { sum += w * horizontal[((first + k) * size + x) * c + ch] }
                    out[(y * size + x) * c + ch] = UInt8(min(max(sum.rounded(), 0), 255))
                }
            }
        }
        return DecodedImage(width: size, height: size, channels: c, pixels: out)
    }

    /// The image as a tensor [C, H, W] with values v/127.5 − 1 in [−1, 1].
    public func tensor() -> Tensor {
        let plane = width * height
        var scalars = [Float](repeating: 0, count: channels * plane)
        for p in 0..<plane {
            for ch in 0..<channels {
                scalars[ch * plane + p] = Float(pixels[p * channels + ch]) / 127.5 - 1
            }
        }
        return Tensor(shape: [channels, height, width], scalars: scalars)
    }
}

/// One axis of a resampling: for each output index in `range` (of `output` samples spread
/// over `input` samples), the first input index it reads and normalised triangle-filter
/// weights for the consecutive input indices from there (PIL's `precompute_coeffs`).
struct ResampleWeights {
    var first: [Int] = []
    var weights: [[Float]] = []

    init(input: Int, output: Int, range: Range<Int>) {
        let scale = Double(input) / Double(output)
        let filterScale = max(scale, 1)       // widen the kernel when shrinking (antialiasing)
        let support = 1.0 * filterScale        // the triangle's half-width is 1 input pixel
        for i in range {
            let center = (Double(i) + 0.5) * scale
            let low = max(Int((center - support + 0.5).rounded(.down)), 0)
            let high = min(Int((center + support + 0.5).rounded(.down)), input)
            var w = (low..<max(high, low + 1)).map { j in
                max(0, 1 - abs((Double(j) - center + 0.5) / filterScale))
            }
            let total = w.reduce(0, +)
            if total > 0 { w = w.map { $0 / total } } else { w = [1] + Array(repeating: 0, count: w.count - 1) }
            first.append(min(low, input - 1))
            weights.append(w.map(Float.init))
        }
    }
}
