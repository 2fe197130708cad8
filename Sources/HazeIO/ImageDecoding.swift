import CJPEGShim
import CPNG
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An 8-bit image as decoded from a file: `height` rows of `width` pixels, each `channels`
/// interleaved bytes (1: gray, 3: R, G, B), top row first.
public struct DecodedImage: Equatable, Sendable {
    /// Pixels per row.
    public var width: Int
    /// Number of rows.
    public var height: Int
    /// 1 (grayscale) or 3 (RGB).
    public var channels: Int
    /// `height · width · channels` bytes, row-major, channels interleaved.
    public var pixels: [UInt8]

    /// An image from its interleaved bytes; `pixels.count` must be `width · height · channels`, and
    /// `channels` 1 or 3 (checked with a precondition).
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        precondition(channels == 1 || channels == 3, "DecodedImage: 1 or 3 channels, got \(channels)")
        precondition(width >= 0 && height >= 0 && pixels.count == width * height * channels,
                     "DecodedImage: \(pixels.count) bytes for \(width)×\(height)×\(channels)")
        (self.width, self.height, self.channels, self.pixels) = (width, height, channels, pixels)
    }
}

/// A file that could not be decoded as an image: which file, and what is wrong with it.
public struct ImageError: Error, CustomStringConvertible, Equatable {
    /// The path of the file, or the name the caller gave data not read from a file.
    public let file: String
    /// What is wrong with it, for the user.
    public let problem: String

    /// An error about `file`.
    public init(file: String, problem: String) {
        (self.file, self.problem) = (file, problem)
    }

    public var description: String { "\(file): \(problem)" }
}

/// Reads PNG and JPEG files (the format is told by the file's first bytes, not its name).
///
/// - PNG through libpng's simplified API: palette images, transparency, bit depths 1–16 are
///   converted by libpng to 8-bit gray or RGB; an alpha channel is dropped (as PIL's
///   `convert("RGB")` / `convert("L")` do), not composited. 16-bit files without gamma
///   information are taken as sRGB-encoded and scaled to 8 bits (libpng would otherwise assume
///   they are linear). Files whose gAMA chunk is far from sRGB are gamma-corrected to sRGB by
///   libpng, where PIL would leave the values alone.
/// - JPEG through libjpeg(-turbo): grayscale files stay 1-channel, YCbCr/RGB become RGB, CMYK
///   is refused.
///
/// Damaged, truncated or unrecognised files throw an `ImageError` naming the file; decoding
/// never crashes or exits the process.
///
/// Decompression bombs (a small file that declares huge dimensions) are refused from the header,
/// before any pixel is decoded: at most `maximumPixels` pixels per image.
public enum ImageDecoder {
    /// Largest image accepted, in pixels: 64 Mpixel (8192 × 8192), PIL's order of magnitude
    /// (its bomb warning starts at 89 Mpixel); `HAZE_MAX_IMAGE_PIXELS` sets another limit.
    nonisolated(unsafe) public static var maximumPixels: Int =
        ProcessInfo.processInfo.environment["HAZE_MAX_IMAGE_PIXELS"].flatMap { Int($0) }.map { max($0, 1) } ?? 1 << 26

    static func tooLarge(_ kind: String, _ width: Int, _ height: Int, file: String) -> ImageError {
        ImageError(file: file, problem: "\(kind) of \(width)×\(height) pixels is over the limit of \(maximumPixels) pixels "
                       + "(a decompression bomb, or a very large image: resize it, or raise the limit with HAZE_MAX_IMAGE_PIXELS)")
    }

    /// Decodes the PNG or JPEG file at `path`.
    public static func decode(contentsOf path: String) throws -> DecodedImage {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw ImageError(file: path, problem: "cannot be read (\(error.localizedDescription))")
        }
        return try decode(data, file: path)
    }

    /// Decodes PNG or JPEG bytes; `file` names the source in errors.
    public static func decode(_ data: Data, file: String) throws -> DecodedImage {
        let bytes = [UInt8](data)
        if bytes.starts(with: [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) {
            return try decodePNG(bytes, file: file)
        }
        if bytes.starts(with: [0xFF, 0xD8, 0xFF]) {
            return try decodeJPEG(bytes, file: file)
        }
        throw ImageError(file: file, problem: "not a PNG or JPEG file" + (bytes.isEmpty ? " (it is empty)" : ""))
    }

    // MARK: PNG

    static func decodePNG(_ bytes: [UInt8], file: String) throws -> DecodedImage {
        func fail(_ image: png_image, _ stage: String) -> ImageError {
            ImageError(file: file, problem: "damaged PNG (\(stage): \(pngMessage(image)))")
        }
        var image = png_image()
        image.version = png_uint_32(PNG_IMAGE_VERSION)
        let begun = bytes.withUnsafeBytes { png_image_begin_read_from_memory(&image, $0.baseAddress, $0.count) }
        guard begun != 0 else { png_image_free(&image); throw fail(image, "header") }

        let (width, height) = (Int(image.width), Int(image.height))
        let hasColor = image.format & png_uint_32(PNG_FORMAT_FLAG_COLOR) != 0
        let hasAlpha = image.format & png_uint_32(PNG_FORMAT_FLAG_ALPHA) != 0
        let channels = hasColor ? 3 : 1
        let stored = channels + (hasAlpha ? 1 : 0)  // bytes per pixel read from libpng
        guard width * height <= maximumPixels else {  // both < 2³¹: no overflow
            png_image_free(&image)
            throw tooLarge("PNG", width, height, file: file)
        }
        let size = width * height * stored
        image.format = png_uint_32(hasColor ? PNG_FORMAT_FLAG_COLOR : 0) | png_uint_32(hasAlpha ? PNG_FORMAT_FLAG_ALPHA : 0)
        image.flags |= png_uint_32(PNG_IMAGE_FLAG_16BIT_sRGB)

        var buffer = [UInt8](repeating: 0, count: size)
        let finished = buffer.withUnsafeMutableBytes {
            png_image_finish_read(&image, nil, $0.baseAddress, png_int_32(width * stored), nil)
        }
        // finish_read frees libpng's state on success and on failure; freeing again is a no-op.
        defer { png_image_free(&image) }
        guard finished != 0 else { throw fail(image, "image data") }

        if hasAlpha {
            // Drop the alpha byte of each pixel (not premultiplied for 8-bit output).
            var pixels = [UInt8](repeating: 0, count: width * height * channels)
            for p in 0..<(width * height) {
                for c in 0..<channels { pixels[p * channels + c] = buffer[p * stored + c] }
            }
            buffer = pixels
        }
        return DecodedImage(width: width, height: height, channels: channels, pixels: buffer)
    }

    /// libpng's error or warning text (a NUL-terminated char[64] inside the struct).
    static func pngMessage(_ image: png_image) -> String {
        var message = image.message
        let text = withUnsafeBytes(of: &message) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        return text.isEmpty ? "unknown error" : text
    }

    // MARK: JPEG

    static func decodeJPEG(_ bytes: [UInt8], file: String) throws -> DecodedImage {
        var pixels: UnsafeMutablePointer<UInt8>?
        var (width, height, channels): (Int32, Int32, Int32) = (0, 0, 0)
        var message = [CChar](repeating: 0, count: 256)
        let status = bytes.withUnsafeBufferPointer { input in
            haze_decode_jpeg(input.baseAddress, UInt(input.count), maximumPixels, &pixels, &width, &height, &channels,
                             &message, Int32(message.count))
        }
        defer { free(pixels) }
        if status == 3 { throw tooLarge("JPEG", Int(width), Int(height), file: file) }
        guard status == 0, let pixels else {
            var text = String(decoding: message.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.isEmpty { text = "unknown error" }
            throw ImageError(file: file, problem: status == 2 ? "unsupported JPEG: \(text)"
                                                                : "damaged or unsupported JPEG (libjpeg: \(text))")
        }
        let count = Int(width) * Int(height) * Int(channels)
        guard channels == 1 || channels == 3 else {
            throw ImageError(file: file, problem: "JPEG with \(channels) channels is not supported")
        }
        return DecodedImage(width: Int(width), height: Int(height), channels: Int(channels),
                            pixels: Array(UnsafeBufferPointer(start: pixels, count: count)))
    }
}
