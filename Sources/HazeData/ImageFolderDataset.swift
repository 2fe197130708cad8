import Foundation
import HazeIO
import HazeTensor

/// PNG and JPEG images found recursively in a folder, decoded once, converted to the channel
/// count asked for, and resized (shorter side) and center-cropped to a square. With `labeled`,
/// the first-level subfolder of each image names its class (sorted names → 0, 1, …).
public struct ImageFolderDataset: ImageDataset {
    /// Decoded images as bytes [N, C, S, S].
    let pixels: [UInt8]
    let labels: [Int]
    public let count: Int
    public let imageShape: [Int]
    /// With `labeled`, the class names (first-level subfolder names, sorted; class i is
    /// `classNames[i]`); empty otherwise.
    public let classNames: [String]
    public var classCount: Int? { classNames.isEmpty ? nil : classNames.count }
    /// Files that could not be decoded (when skipping them), with the reason.
    public let skipped: [ImageError]

    /// The largest side taken from the images themselves when no size is given: a folder of large
    /// photos (or one hostile image) asks for `size` rather than a model at thousands of pixels.
    public static let largestInferredSize = 256

    /// - size: side of the square images (default: the smallest image side, at most
    ///   `largestInferredSize`). With a size, each image is resized as soon as it is decoded.
    /// - channels: 1 or 3 (default: 3 if any image is in colour).
    /// - skipCorrupt: skip (and report in `skipped`) images that fail to decode, instead of failing.
    public init(folder: String, size: Int? = nil, channels: Int? = nil, labeled: Bool = false, skipCorrupt: Bool = false) throws {
        let fm = FileManager.default
        guard let enumerator = fm.enumerator(atPath: folder) else { throw ImageError(file: folder, problem: "is not a readable folder") }
        let extensions: Set<String> = ["png", "jpg", "jpeg"]
        let files = (enumerator.allObjects as? [String] ?? [])
            .filter { extensions.contains(($0 as NSString).pathExtension.lowercased()) }
            .sorted()
        guard !files.isEmpty else { throw ImageError(file: folder, problem: "contains no PNG or JPEG images") }
        var decoded: [(image: DecodedImage, path: String)] = []
        var skipped: [ImageError] = []
        var smallest: (side: Int, file: String)? = nil
        for file in files {
            do {
                var image = try ImageDecoder.decode(contentsOf: folder + "/" + file)
                if min(image.width, image.height) < smallest?.side ?? .max { smallest = (min(image.width, image.height), file) }
                // Resized at once when the size is known (gray → RGB later commutes with resizing).
                if let size { image = (channels.map { image.converted(toChannels: $0) } ?? image).resizedCenterCropped(to: size) }
                decoded.append((image, file))
            } catch let error as ImageError where skipCorrupt {
                skipped.append(error)
            }
        }
        guard !decoded.isEmpty, let smallest else { throw ImageError(file: folder, problem: "none of its \(files.count) images could be decoded") }
        if size == nil && smallest.side > Self.largestInferredSize {
            throw ImageError(file: folder, problem: "its smallest image side is \(smallest.side) pixels (\(smallest.file)); give the training size "
                             + "with --image-size (at most \(Self.largestInferredSize) is taken from the images themselves)")
        }
        let c = channels ?? (decoded.contains { $0.image.channels == 3 } ? 3 : 1)
        let s = size ?? smallest.side
        let names = labeled ? Array(Set(decoded.map { String($0.path.split(separator: "/").first!) })).sorted() : []
        classNames = names
        if labeled && decoded.contains(where: { !$0.path.contains("/") }) {
            throw ImageError(file: folder, problem: "labels come from subfolders, but some images lie directly in the folder")
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(decoded.count * c * s * s)
        for (image, _) in decoded {
            let converted = image.converted(toChannels: c)
            let square = converted.width == s && converted.height == s ? converted : converted.resizedCenterCropped(to: s)
            // Interleaved HWC → planar CHW.
            for ch in 0..<c { for p in 0..<(s * s) { bytes.append(square.pixels[p * c + ch]) } }
        }
        pixels = bytes
        labels = labeled ? decoded.map { names.firstIndex(of: String($0.path.split(separator: "/").first!))! } : []
        (count, imageShape, self.skipped) = (decoded.count, [c, s, s], skipped)
    }

    public func image(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        let size = imageShape.reduce(1, *)
        for i in 0..<size { out[i] = Float(pixels[index * size + i]) / 127.5 - 1 }
    }

    public func label(_ index: Int) -> Int? { labels.isEmpty ? nil : labels[index] }
}
