import CZlib
import Foundation
import HazeTensor

/// PNG writing (8-bit grayscale or RGB, zlib-compressed) and image grids of model samples.
public enum PNG {
    /// Encodes `pixels` (row-major, `channels` interleaved bytes per pixel: 1 gray, 3 RGB).
    public static func encode(width: Int, height: Int, channels: Int, pixels: [UInt8]) -> Data {
        precondition(channels == 1 || channels == 3, "PNG: 1 or 3 channels, got \(channels)")
        precondition(pixels.count == width * height * channels, "PNG: \(pixels.count) bytes for \(width)×\(height)×\(channels)")
        // Scanlines, each prefixed with filter type 0 (none).
        var raw = [UInt8]()
        raw.reserveCapacity((width * channels + 1) * height)
        for y in 0..<height {
            raw.append(0)
            raw.append(contentsOf: pixels[(y * width * channels)..<((y + 1) * width * channels)])
        }
        var compressedLength = compressBound(uLong(raw.count))
        var compressed = [UInt8](repeating: 0, count: Int(compressedLength))
        let status = compress2(&compressed, &compressedLength, raw, uLong(raw.count), 6)
        precondition(status == Z_OK, "zlib compress2 failed with \(status)")
        compressed.removeLast(compressed.count - Int(compressedLength))

        var png = Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])
        var header = Data()
        header.appendBigEndian(UInt32(width))
        header.appendBigEndian(UInt32(height))
        header.append(contentsOf: [8, channels == 1 ? 0 : 2, 0, 0, 0])  // depth 8, gray/RGB, deflate, no filter, no interlace
        appendChunk("IHDR", header, to: &png)
        appendChunk("IDAT", Data(compressed), to: &png)
        appendChunk("IEND", Data(), to: &png)
        return png
    }

    static func appendChunk(_ type: String, _ body: Data, to png: inout Data) {
        png.appendBigEndian(UInt32(body.count))
        let typed = Data(type.utf8) + body
        png.append(typed)
        let crc = typed.withUnsafeBytes { crc32(0, $0.bindMemory(to: Bytef.self).baseAddress, uInt(typed.count)) }
        png.appendBigEndian(UInt32(crc))
    }

    /// 8-bit pixels of images in [−1, 1]: v ↦ round((v + 1)/2 · 255), clamped (NaN ↦ 0, where
    /// the conversion would trap; the commands refuse non-finite samples before writing them).
    /// images: [N, C, H, W] with C = 1 or 3 → N images of H·W·C interleaved bytes.
    public static func pixels(_ images: Tensor) -> [[UInt8]] {
        precondition(images.rank == 4 && (images.shape[1] == 1 || images.shape[1] == 3), "images must be [N, 1 or 3, H, W], got \(images.shape)")
        let (n, c, h, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        return (0..<n).map { i in
            var out = [UInt8](repeating: 0, count: h * w * c)
            for ch in 0..<c {
                for p in 0..<(h * w) {
                    let v = images.scalars[(i * c + ch) * h * w + p]
                    let x = ((v + 1) * 127.5).rounded()
                    out[p * c + ch] = x.isNaN ? 0 : UInt8(min(max(x, 0), 255))
                }
            }
            return out
        }
    }

    /// A grid of images ([N, C, H, W] in [−1, 1]), `columns` wide (default ⌈√N⌉), separated by
    /// `padding` pixels of black. Returns (width, height, bytes).
    public static func grid(_ images: Tensor, columns: Int? = nil, padding: Int = 2) -> (width: Int, height: Int, pixels: [UInt8]) {
        let (n, c, h, w) = (images.shape[0], images.shape[1], images.shape[2], images.shape[3])
        let cols = columns ?? Int(Double(n).squareRoot().rounded(.up))
        let rows = (n + cols - 1) / cols
        let (width, height) = (cols * (w + padding) + padding, rows * (h + padding) + padding)
        var out = [UInt8](repeating: 0, count: width * height * c)
        for (i, image) in pixels(images).enumerated() {
            let (x0, y0) = (padding + (i % cols) * (w + padding), padding + (i / cols) * (h + padding))
            for y in 0..<h {
                let dst = ((y0 + y) * width + x0) * c
                out.replaceSubrange(dst..<(dst + w * c), with: image[(y * w * c)..<((y + 1) * w * c)])
            }
        }
        return (width, height, out)
    }

    /// Writes a grid of images as a PNG file, atomically.
    public static func writeGrid(_ images: Tensor, to path: String, columns: Int? = nil) throws {
        let g = grid(images, columns: columns)
        try AtomicFile.write(encode(width: g.width, height: g.height, channels: images.shape[1], pixels: g.pixels), to: path)
    }
}

extension Data {
    mutating func appendBigEndian(_ value: UInt32) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }
}
