import Foundation

/// Animated GIF writing (GIF89a), e.g. for the frames of a denoising trajectory.
///
/// All frames share one global 256-entry palette: for grayscale frames the 256 gray levels
/// (exact), for RGB frames a fixed 6×7×6 colour cube (252 colours; 7 levels of green, to which
/// the eye is most sensitive), each pixel mapped to the nearest cube colour without dithering.
/// Pixels are LZW-compressed with variable code sizes from 9 to 12 bits and a clear code when
/// the 4096-entry table fills. A NETSCAPE2.0 application extension makes the animation loop.
public enum GIF {
    /// Encodes `frames` (each `height` rows of `width` pixels, `channels` = 1 or 3 interleaved
    /// bytes per pixel) as an animated GIF showing each frame for `delayCentiseconds`
    /// hundredths of a second, looping forever when `loop` is true.
    public static func encode(frames: [[UInt8]], width: Int, height: Int, channels: Int,
                              delayCentiseconds: Int, loop: Bool) -> Data {
        precondition(channels == 1 || channels == 3, "GIF: 1 or 3 channels, got \(channels)")
        precondition((1...0xFFFF).contains(width) && (1...0xFFFF).contains(height), "GIF: size \(width)×\(height) out of range")
        precondition(!frames.isEmpty, "GIF: no frames")
        for (i, frame) in frames.enumerated() {
            precondition(frame.count == width * height * channels,
                         "GIF: frame \(i) has \(frame.count) bytes for \(width)×\(height)×\(channels)")
        }
        var gif = Data("GIF89a".utf8)
        // Logical screen descriptor: size; global colour table present, 8 bits of colour
        // resolution, 2^(7+1) = 256 entries; background colour 0; square pixels.
        gif.appendLittleEndian(UInt16(width))
        gif.appendLittleEndian(UInt16(height))
        gif.append(contentsOf: [0xF7, 0, 0])
        gif.append(contentsOf: palette(channels: channels))
        if loop {
            // Application extension "NETSCAPE2.0": sub-block 1 = loop count (0 = forever).
            gif.append(contentsOf: [0x21, 0xFF, 0x0B])
            gif.append(contentsOf: Array("NETSCAPE2.0".utf8))
            gif.append(contentsOf: [0x03, 0x01, 0x00, 0x00, 0x00])
        }
        let delay = UInt16(min(max(delayCentiseconds, 0), 0xFFFF))
        for frame in frames {
            // Graphic control extension: disposal 1 (leave in place), no transparency, delay.
            gif.append(contentsOf: [0x21, 0xF9, 0x04, 0x04])
            gif.appendLittleEndian(delay)
            gif.append(contentsOf: [0x00, 0x00])
            // Image descriptor: the whole screen, no local colour table, not interlaced.
            gif.append(0x2C)
            gif.appendLittleEndian(0)
            gif.appendLittleEndian(0)
            gif.appendLittleEndian(UInt16(width))
            gif.appendLittleEndian(UInt16(height))
            gif.append(0x00)
            // Image data: minimum code size 8, then the LZW codes in sub-blocks of ≤ 255 bytes.
            gif.append(8)
            let compressed = lzwCompress(indices(frame, channels: channels))
            var start = 0
            while start < compressed.count {
                let n = min(255, compressed.count - start)
                gif.append(UInt8(n))
                gif.append(contentsOf: compressed[start..<(start + n)])
                start += n
            }
            gif.append(0x00)
        }
        gif.append(0x3B)  // trailer
        return gif
    }

    /// Writes an animated GIF file atomically (see `encode`).
    public static func write(frames: [[UInt8]], width: Int, height: Int, channels: Int,
                             delayCentiseconds: Int, loop: Bool, to path: String) throws {
        try AtomicFile.write(encode(frames: frames, width: width, height: height, channels: channels,
                                    delayCentiseconds: delayCentiseconds, loop: loop), to: path)
    }

    // MARK: Palette

    /// Levels of the RGB colour cube along red, green and blue.
    static let cubeLevels = (red: 6, green: 7, blue: 6)

    /// `n` evenly spaced byte values from 0 to 255.
    static func levels(_ n: Int) -> [UInt8] {
        (0..<n).map { UInt8((Double($0) * 255 / Double(n - 1)).rounded()) }
    }

    /// For each byte value, the index of the nearest of `levels`.
    static func nearestLevel(_ levels: [UInt8]) -> [UInt8] {
        (0..<256).map { v in
            UInt8(levels.indices.min { abs(Int(levels[$0]) - v) < abs(Int(levels[$1]) - v) }!)
        }
    }

    /// The global colour table: 256 RGB triples (768 bytes). Gray: entry i = (i, i, i). RGB:
    /// entry (r · 7 + g) · 6 + b is the cube colour, entries 252–255 are black (unused).
    static func palette(channels: Int) -> [UInt8] {
        if channels == 1 { return (0..<256).flatMap { [UInt8($0), UInt8($0), UInt8($0)] } }
        let (r, g, b) = (levels(cubeLevels.red), levels(cubeLevels.green), levels(cubeLevels.blue))
        var table: [UInt8] = []
        for ri in r { for gi in g { for bi in b { table += [ri, gi, bi] } } }
        return table + [UInt8](repeating: 0, count: 768 - table.count)
    }

    /// Palette indices of interleaved pixels: the gray value itself, or the nearest cube colour
    /// (the cube is a grid, so the nearest colour is the nearest level in each channel).
    static func indices(_ pixels: [UInt8], channels: Int) -> [UInt8] {
        if channels == 1 { return pixels }
        let r = nearestLevel(levels(cubeLevels.red))
        let g = nearestLevel(levels(cubeLevels.green))
        let b = nearestLevel(levels(cubeLevels.blue))
        return (0..<(pixels.count / 3)).map { p in
            let (ri, gi, bi) = (Int(r[Int(pixels[3 * p])]), Int(g[Int(pixels[3 * p + 1])]), Int(b[Int(pixels[3 * p + 2])]))
            return UInt8((ri * cubeLevels.green + gi) * cubeLevels.blue + bi)
        }
    }

    // MARK: LZW

    /// GIF's variable-length LZW of 8-bit indices (minimum code size 8): codes 0–255 are the
    /// indices, 256 clears the table, 257 ends the data, new strings get 258, 259, … . Codes
    /// are written least-significant bit first, 9 bits wide until the decoder's table reaches
    /// 512 entries, then 10, up to 12; when the table is full (4096 codes) a clear code resets
    /// it. The decoder adds each entry one code later than the encoder, hence the `+ 1`s.
    static func lzwCompress(_ input: [UInt8]) -> [UInt8] {
        let (clear, end, firstFree, maxCodes) = (256, 257, 258, 4096)
        var output: [UInt8] = []
        output.reserveCapacity(input.count / 2 + 16)
        var bitBuffer: UInt32 = 0
        var bitCount = 0
        var codeSize = 9
        func emit(_ code: Int) {
            bitBuffer |= UInt32(code) << UInt32(bitCount)
            bitCount += codeSize
            while bitCount >= 8 {
                output.append(UInt8(truncatingIfNeeded: bitBuffer))
                bitBuffer >>= 8
                bitCount -= 8
            }
        }
        // The string table: (prefix code << 8 | next byte) → code.
        var table: [Int: Int] = [:]
        table.reserveCapacity(maxCodes)
        var next = firstFree

        emit(clear)
        guard let head = input.first else {
            emit(end)
            if bitCount > 0 { output.append(UInt8(truncatingIfNeeded: bitBuffer)) }
            return output
        }
        var prefix = Int(head)
        for byte in input.dropFirst() {
            let key = prefix << 8 | Int(byte)
            if let code = table[key] {
                prefix = code
                continue
            }
            // The decoder has `next - 1` entries when it reads this code.
            while codeSize < 12 && next > 1 << codeSize { codeSize += 1 }
            emit(prefix)
            if next < maxCodes {
                table[key] = next
                next += 1
            } else {
                emit(clear)
                table.removeAll(keepingCapacity: true)
                next = firstFree
                codeSize = 9
            }
            prefix = Int(byte)
        }
        while codeSize < 12 && next > 1 << codeSize { codeSize += 1 }
        emit(prefix)
        // After the last code the decoder has added one more entry (unless the table is full).
        while codeSize < 12 && next + 1 > 1 << codeSize { codeSize += 1 }
        emit(end)
        if bitCount > 0 { output.append(UInt8(truncatingIfNeeded: bitBuffer)) }
        return output
    }
}

extension Data {
    mutating func appendLittleEndian(_ value: UInt16) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}
