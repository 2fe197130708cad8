import Foundation
import XCTest
import HazeTensor
@testable import HazeIO

/// PNG/JPEG decoding (against PIL's decode of the fixtures written by
/// scripts/make_image_fixtures.py), errors on damaged files, resizing, and the GIF writer
/// (checked by a small GIF decoder below).
final class ImageCodecTests: XCTestCase {
    var folder: String!
    let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures").path

    override func setUpWithError() throws {
        folder = NSTemporaryDirectory() + "haze-image-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: folder)
    }

    /// Deterministic pseudo-random bytes (a 64-bit LCG's high bits).
    func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: state >> 56)
        }
    }

    func write(_ data: Data, _ name: String) throws -> String {
        let path = folder + "/" + name
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    func expectError(_ path: String, containing text: String, line: UInt = #line) {
        XCTAssertThrowsError(try ImageDecoder.decode(contentsOf: path), line: line) { error in
            guard let e = error as? ImageError else { return XCTFail("wrong error type \(error)", line: line) }
            XCTAssertEqual(e.file, path, line: line)
            XCTAssertTrue(e.description.hasPrefix(path + ": "), e.description, line: line)
            XCTAssertTrue(e.description.contains(text), "'\(e.description)' lacks '\(text)'", line: line)
        }
    }

    // MARK: PNG

    func testPNGRoundTripGrayAndRGB() throws {
        for (channels, (width, height)) in [(1, (13, 7)), (3, (9, 11)), (3, (1, 1))] {
            let pixels = bytes(width * height * channels, seed: UInt64(channels * 100 + width))
            let path = try write(PNG.encode(width: width, height: height, channels: channels, pixels: pixels), "round.png")
            let image = try ImageDecoder.decode(contentsOf: path)
            XCTAssertEqual(image, DecodedImage(width: width, height: height, channels: channels, pixels: pixels))
        }
    }

    /// Palette, alpha and 16-bit PNGs become 8-bit gray or RGB (alpha dropped, as PIL's convert).
    func testPNGConversionsMatchPIL() throws {
        for (name, channels) in [("palette", 3), ("rgba", 3), ("gray_alpha", 1), ("gray16", 1)] {
            let image = try ImageDecoder.decode(contentsOf: fixtures + "/\(name).png")
            let expected = try ImageDecoder.decode(contentsOf: fixtures + "/\(name).expected.png")
            XCTAssertEqual(image.channels, channels, name)
            XCTAssertEqual(image, expected, name)
        }
    }

    // MARK: JPEG

    func testJPEGMatchesPIL() throws {
        for (name, channels) in [("gray", 1), ("rgb", 3)] {
            let image = try ImageDecoder.decode(contentsOf: fixtures + "/\(name).jpg")
            let expected = try ImageDecoder.decode(contentsOf: fixtures + "/\(name).expected.png")
            XCTAssertEqual([image.width, image.height, image.channels], [20, 14, channels], name)
            XCTAssertEqual(expected.channels, channels, name)
            let worst = zip(image.pixels, expected.pixels).map { abs(Int($0) - Int($1)) }.max()!
            XCTAssertLessThanOrEqual(worst, 2, "\(name).jpg differs from PIL's decode by up to \(worst)")
        }
    }

    // MARK: Errors

    func testDamagedFilesGetErrorsNamingTheFile() throws {
        expectError(fixtures + "/truncated.jpg", containing: "damaged or unsupported JPEG (libjpeg: Premature end of JPEG file)")
        expectError(fixtures + "/cmyk.jpg", containing: "unsupported JPEG: CMYK colour is not supported")

        let png = PNG.encode(width: 16, height: 16, channels: 3, pixels: bytes(768, seed: 9))
        expectError(try write(png.prefix(png.count / 2), "truncated.png"), containing: "damaged PNG")
        expectError(try write(png.prefix(20), "header-only.png"), containing: "damaged PNG")
        var flipped = png
        flipped[60] ^= 0xFF  // inside the IDAT data: its CRC no longer matches
        expectError(try write(flipped, "corrupt.png"), containing: "damaged PNG")
        // A frame header (SOF0: FF C0, length, precision) claiming 13-bit samples.
        var badJPEG = [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixtures + "/rgb.jpg")))
        let sof = try XCTUnwrap((0..<(badJPEG.count - 1)).first { badJPEG[$0] == 0xFF && badJPEG[$0 + 1] == 0xC0 })
        badJPEG[sof + 4] = 13
        expectError(try write(Data(badJPEG), "corrupt.jpg"), containing: "damaged or unsupported JPEG (libjpeg: Unsupported JPEG data precision 13)")
        expectError(try write(Data([0xFF, 0xD8, 0xFF]), "stub.jpg"), containing: "damaged or unsupported JPEG")

        expectError(try write(Data("just some text\n".utf8), "notes.png"), containing: "not a PNG or JPEG file")
        expectError(try write(Data(), "empty.jpg"), containing: "not a PNG or JPEG file")
        expectError(folder + "/missing.png", containing: "cannot be read")
    }

    /// Decompression bombs: small files whose headers declare 30000 × 30000 (PNG, the IHDR
    /// rewritten with a valid CRC) or 60000 × 60000 (JPEG, the frame header) pixels are refused
    /// from the header, and an image just under the limit decodes.
    func testDecompressionBombsAreRefusedFromTheHeader() throws {
        func crc32(_ bytes: ArraySlice<UInt8>) -> UInt32 {
            var crc: UInt32 = 0xFFFF_FFFF
            for b in bytes {
                crc ^= UInt32(b)
                for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
            }
            return ~crc
        }
        var png = [UInt8](PNG.encode(width: 16, height: 16, channels: 1, pixels: bytes(256, seed: 3)))
        // IHDR: length (4) at 8, "IHDR" at 12, width at 16, height at 20, CRC over type + data at 29.
        for offset in [16, 20] { png.replaceSubrange(offset..<(offset + 4), with: [0, 0, 0x75, 0x30]) }  // 30000
        let crc = crc32(png[12..<29])
        png.replaceSubrange(29..<33, with: (0..<4).map { UInt8(truncatingIfNeeded: crc >> (24 - 8 * $0)) })
        expectError(try write(Data(png), "bomb.png"), containing: "PNG of 30000×30000 pixels is over the limit of 67108864 pixels")

        var jpeg = [UInt8](try Data(contentsOf: URL(fileURLWithPath: fixtures + "/rgb.jpg")))
        let sof = try XCTUnwrap((0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        jpeg.replaceSubrange((sof + 5)..<(sof + 9), with: [0xEA, 0x60, 0xEA, 0x60])  // height, width 60000
        expectError(try write(Data(jpeg), "bomb.jpg"), containing: "JPEG of 60000×60000 pixels is over the limit")

        let limit = ImageDecoder.maximumPixels
        defer { ImageDecoder.maximumPixels = limit }
        ImageDecoder.maximumPixels = 255
        expectError(try write(PNG.encode(width: 16, height: 16, channels: 1, pixels: bytes(256, seed: 3)), "over.png"), containing: "over the limit of 255")
        ImageDecoder.maximumPixels = 256
        XCTAssertEqual(try ImageDecoder.decode(contentsOf: try write(PNG.encode(width: 16, height: 16, channels: 1, pixels: bytes(256, seed: 3)), "at.png")).width, 16)
    }

    // MARK: Channels, resizing, tensors

    func testGrayConversion() {
        let rgb = DecodedImage(width: 5, height: 1, channels: 3,
                               pixels: [255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 10, 20, 30])
        // PIL: Image.new("RGB", ...).convert("L") gives 76, 150, 29, 255, 18.
        XCTAssertEqual(rgb.converted(toChannels: 1).pixels, [76, 150, 29, 255, 18])
        let gray = DecodedImage(width: 2, height: 1, channels: 1, pixels: [7, 200])
        XCTAssertEqual(gray.converted(toChannels: 3).pixels, [7, 7, 7, 200, 200, 200])
        XCTAssertEqual(gray.converted(toChannels: 1), gray)
    }

    func testConstantImageStaysConstant() {
        for (width, height, size) in [(37, 23, 16), (5, 3, 8), (64, 64, 7), (3, 100, 3)] {
            let image = DecodedImage(width: width, height: height, channels: 3,
                                     pixels: [UInt8](repeating: 0, count: width * height).flatMap { _ in [200, 13, 77] })
            let out = image.resizedCenterCropped(to: size)
            XCTAssertEqual([out.width, out.height, out.channels], [size, size, 3])
            XCTAssertEqual(out.pixels, [UInt8](repeating: 0, count: size * size).flatMap { _ in [200, 13, 77] },
                           "\(width)×\(height) → \(size)")
        }
    }

    func testCenterCropWithoutScaling() {
        // 2 wide, 4 tall → 2×2: the middle two rows. 4 wide, 2 tall → the middle two columns.
        let tall = DecodedImage(width: 2, height: 4, channels: 1, pixels: [1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(tall.resizedCenterCropped(to: 2).pixels, [3, 4, 5, 6])
        let wide = DecodedImage(width: 4, height: 2, channels: 1, pixels: [1, 2, 3, 4, 5, 6, 7, 8])
        XCTAssertEqual(wide.resizedCenterCropped(to: 2).pixels, [2, 3, 6, 7])
    }

    func testDownscalingAveragesEveryPixel() {
        // A 1-pixel checkerboard shrunk 8× must come out mid-gray (point sampling would give
        // black or white).
        let board = DecodedImage(width: 16, height: 16, channels: 1,
                                 pixels: (0..<256).map { ($0 / 16 + $0 % 16) % 2 == 0 ? 0 : 255 })
        let out = board.resizedCenterCropped(to: 2)
        for v in out.pixels { XCTAssertEqual(Int(v), 128, accuracy: 2) }
        // Doubling a 2-pixel ramp: bilinear in between, edges clamped (PIL: [0, 64, 191, 255]).
        let ramp = DecodedImage(width: 2, height: 2, channels: 1, pixels: [0, 255, 0, 255])
        XCTAssertEqual(ramp.resizedCenterCropped(to: 4).pixels.prefix(4), [0, 64, 191, 255])
    }

    /// Against PIL's bilinear resize + center crop (PIL rounds to bytes between its two passes,
    /// Haze does not: ±1).
    func testResizeMatchesPIL() throws {
        let image = try ImageDecoder.decode(contentsOf: fixtures + "/rgb.expected.png")
        let expected = try ImageDecoder.decode(contentsOf: fixtures + "/rgb.resized9.png")
        let out = image.resizedCenterCropped(to: 9)
        XCTAssertEqual([out.width, out.height, out.channels], [9, 9, 3])
        let worst = zip(out.pixels, expected.pixels).map { abs(Int($0) - Int($1)) }.max()!
        XCTAssertLessThanOrEqual(worst, 1)
    }

    func testTensor() {
        let image = DecodedImage(width: 2, height: 1, channels: 3, pixels: [0, 255, 51, 255, 0, 102])
        let t = image.tensor()
        XCTAssertEqual(t.shape, [3, 1, 2])
        let expected: [Float] = [-1, 1, 1, -1, 51 / 127.5 - 1, 102 / 127.5 - 1]
        for (a, b) in zip(t.scalars, expected) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    }

    // MARK: GIF

    func testGIFFramesDecodeToNearestPaletteColours() throws {
        let (width, height) = (7, 5)
        let rgbFrames = (0..<3).map { bytes(width * height * 3, seed: UInt64(40 + $0)) }
        let gif = GIF.encode(frames: rgbFrames, width: width, height: height, channels: 3, delayCentiseconds: 8, loop: true)
        let decoded = try decodeGIF([UInt8](gif))
        XCTAssertEqual(Array(gif.prefix(6)), Array("GIF89a".utf8))
        XCTAssertEqual([decoded.width, decoded.height], [width, height])
        XCTAssertTrue(decoded.loops)
        XCTAssertEqual(decoded.delays, [8, 8, 8])
        XCTAssertEqual(decoded.frames.count, 3)
        XCTAssertEqual(decoded.palette.count, 768)
        for (frame, input) in zip(decoded.frames, rgbFrames) {
            XCTAssertEqual(frame.count, width * height)
            for p in 0..<(width * height) {
                let want = Array(input[(3 * p)..<(3 * p + 3)])
                let got = Array(decoded.palette[(3 * Int(frame[p]))..<(3 * Int(frame[p]) + 3)])
                XCTAssertEqual(distance(got, want), nearestDistance(want, palette: decoded.palette),
                               "pixel \(p): \(want) became \(got)")
            }
        }
        // Grayscale: exact, and no loop extension when not asked for.
        let grayFrames = (0..<3).map { bytes(width * height, seed: UInt64(50 + $0)) }
        let grayGIF = try decodeGIF([UInt8](GIF.encode(frames: grayFrames, width: width, height: height, channels: 1,
                                                       delayCentiseconds: 100, loop: false)))
        XCTAssertFalse(grayGIF.loops)
        XCTAssertEqual(grayGIF.frames, grayFrames)
        XCTAssertEqual(Array(grayGIF.palette.prefix(9)), [0, 0, 0, 1, 1, 1, 2, 2, 2])
    }

    /// Large and repetitive frames exercise the code size growth up to 12 bits and the clear
    /// code when the table fills; the LZW output must also be much smaller than the input.
    func testGIFLZWOnLargeFrames() throws {
        let (width, height) = (160, 120)
        let noise = bytes(width * height, seed: 7)
        let stripes = (0..<(width * height)).map { UInt8(($0 % width) / 10 * 16) }
        let file = folder + "/anim.gif"
        try GIF.write(frames: [noise, stripes, [UInt8](repeating: 3, count: width * height)],
                      width: width, height: height, channels: 1, delayCentiseconds: 5, loop: true, to: file)
        let data = try Data(contentsOf: URL(fileURLWithPath: file))
        let decoded = try decodeGIF([UInt8](data))
        XCTAssertEqual(decoded.frames, [noise, stripes, [UInt8](repeating: 3, count: width * height)])
        XCTAssertLessThan(GIF.lzwCompress(stripes).count, stripes.count / 5)
        XCTAssertGreaterThan(GIF.lzwCompress(noise).count, noise.count)  // 9–12-bit codes for random bytes
    }

    func distance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        zip(a, b).map { (x: UInt8, y: UInt8) -> Int in
            let d = Int(x) - Int(y)
            return d * d
        }.reduce(0, +)
    }

    /// Squared distance from `colour` to the nearest of the 252 colour-cube entries.
    func nearestDistance(_ colour: [UInt8], palette: [UInt8]) -> Int {
        (0..<252).map { distance(Array(palette[(3 * $0)..<(3 * $0 + 3)]), colour) }.min()!
    }

    // MARK: A minimal GIF decoder

    struct DecodedGIF {
        var width = 0, height = 0
        var palette: [UInt8] = []
        var loops = false
        var delays: [Int] = []
        var frames: [[UInt8]] = []
    }

    struct GIFFormatError: Error { let problem: String }

    /// Reads the global palette, extensions and full-screen frames (palette indices) of a GIF.
    func decodeGIF(_ b: [UInt8]) throws -> DecodedGIF {
        var gif = DecodedGIF()
        guard b.count > 13, b.starts(with: Array("GIF89a".utf8)) else { throw GIFFormatError(problem: "header") }
        func u16(_ i: Int) -> Int { Int(b[i]) | Int(b[i + 1]) << 8 }
        (gif.width, gif.height) = (u16(6), u16(8))
        var i = 13
        if b[10] & 0x80 != 0 {
            let size = 3 << (Int(b[10] & 7) + 1)
            gif.palette = Array(b[i..<(i + size)])
            i += size
        }
        func subBlocks() -> [UInt8] {
            var out: [UInt8] = []
            while b[i] != 0 { out += b[(i + 1)..<(i + 1 + Int(b[i]))]; i += 1 + Int(b[i]) }
            i += 1
            return out
        }
        while i < b.count {
            switch b[i] {
            case 0x21:
                let label = b[i + 1]
                i += 2
                let body = subBlocks()
                if label == 0xFF, body.starts(with: Array("NETSCAPE2.0".utf8)) { gif.loops = body.count == 14 && body[11] == 1 }
                if label == 0xF9 { gif.delays.append(Int(body[1]) | Int(body[2]) << 8) }
            case 0x2C:
                guard u16(i + 1) == 0, u16(i + 3) == 0, u16(i + 5) == gif.width, u16(i + 7) == gif.height, b[i + 9] == 0
                else { throw GIFFormatError(problem: "frame is not full-screen without a local palette") }
                let minCodeSize = Int(b[i + 10])
                i += 11
                gif.frames.append(try lzwDecode(subBlocks(), minCodeSize: minCodeSize))
            case 0x3B:
                XCTAssertEqual(i, b.count - 1, "trailer is the last byte")
                return gif
            default:
                throw GIFFormatError(problem: "unexpected block \(b[i]) at \(i)")
            }
        }
        throw GIFFormatError(problem: "no trailer")
    }

    /// GIF LZW: codes LSB-first, width growing when the table reaches a power of two (≤ 12).
    func lzwDecode(_ data: [UInt8], minCodeSize: Int) throws -> [UInt8] {
        let (clear, end) = (1 << minCodeSize, (1 << minCodeSize) + 1)
        let roots = (0..<clear).map { [UInt8($0)] } + [[], []]
        var table = roots
        var codeSize = minCodeSize + 1
        var bit = 0
        var previous: [UInt8]?
        var out: [UInt8] = []
        while bit + codeSize <= data.count * 8 {
            var code = 0
            for k in 0..<codeSize { code |= Int(data[(bit + k) / 8] >> ((bit + k) % 8) & 1) << k }
            bit += codeSize
            if code == clear { (table, codeSize, previous) = (roots, minCodeSize + 1, nil); continue }
            if code == end { return out }
            let entry: [UInt8]
            if code < table.count { entry = table[code] }
            else if code == table.count, let p = previous { entry = p + [p[0]] }
            else { throw GIFFormatError(problem: "code \(code) beyond the table (\(table.count))") }
            out += entry
            if let p = previous, table.count < 4096 { table.append(p + [entry[0]]) }
            previous = entry
            if table.count == 1 << codeSize && codeSize < 12 { codeSize += 1 }
        }
        throw GIFFormatError(problem: "no end code")
    }

    /// Non-finite values map to bytes instead of trapping in the conversion (NaN to 0).
    func testPixelsOfNonFiniteValues() {
        let images = Tensor(shape: [1, 1, 1, 5], scalars: [.nan, .infinity, -.infinity, 0, -1])
        XCTAssertEqual(PNG.pixels(images)[0], [0, 255, 0, 128, 0])
    }
}
