import Foundation
import HazeTensor

/// A collection of images for training: fixed size and channel count, values in [−1, 1],
/// optional class labels.
public protocol ImageDataset {
    /// Number of images.
    var count: Int { get }
    /// [channels, height, width] of every image.
    var imageShape: [Int] { get }
    /// Number of classes (nil when the dataset has no labels).
    var classCount: Int? { get }
    /// Image `index` as C·H·W floats in [−1, 1], written into `out`.
    func image(_ index: Int, into out: UnsafeMutablePointer<Float>)
    /// The class of image `index`, or nil when the dataset has no labels.
    func label(_ index: Int) -> Int?
}

/// MNIST or Fashion-MNIST from IDX files: `train-images-idx3-ubyte[.gz]`,
/// `train-labels-idx1-ubyte[.gz]` and the `t10k-` pair for the test split.
public struct MNISTDataset: ImageDataset {
    /// The training split (60 000 images) or the test split (10 000 images, files `t10k-…`).
    public enum Split: String, Sendable { case train, test }

    /// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
    public static let debianFashionMNIST = "/usr/share/datasets/fashion-mnist"

    /// All images' pixels, [N, H, W] row-major, 0…255 with 0 for the background.
    public let pixels: [UInt8]
    /// Class of each image, 0…9.
    public let labels: [UInt8]
    public let count: Int
    public let imageShape: [Int]
    public var classCount: Int? { 10 }

    /// Reads a split from `folder` (gzip or plain files).
    public init(folder: String, split: Split) throws {
        let prefix = split == .train ? "train" : "t10k"
        func find(_ name: String) throws -> String {
            for candidate in ["\(folder)/\(name).gz", "\(folder)/\(name)"] where FileManager.default.fileExists(atPath: candidate) {
                return candidate
            }
            throw IDXFile.Error(file: "\(folder)/\(name)[.gz]", problem: "not found (expected the MNIST/Fashion-MNIST IDX files in \(folder))")
        }
        let imagesPath = try find("\(prefix)-images-idx3-ubyte"), labelsPath = try find("\(prefix)-labels-idx1-ubyte")
        let images = try IDXFile(contentsOf: imagesPath), labelFile = try IDXFile(contentsOf: labelsPath)
        guard images.shape.count == 3 else { throw IDXFile.Error(file: imagesPath, problem: "expected images [N, H, W], found shape \(images.shape)") }
        guard labelFile.shape == [images.shape[0]] else {
            throw IDXFile.Error(file: labelsPath, problem: "\(labelFile.shape) labels for \(images.shape[0]) images")
        }
        if let bad = labelFile.bytes.first(where: { $0 > 9 }) {
            throw IDXFile.Error(file: labelsPath, problem: "label \(bad) is not a digit class 0…9")
        }
        (pixels, labels, count) = (images.bytes, labelFile.bytes, images.shape[0])
        imageShape = [1, images.shape[1], images.shape[2]]
    }

    public func image(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        let size = imageShape[1] * imageShape[2]
        for i in 0..<size { out[i] = Float(pixels[index * size + i]) / 127.5 - 1 }
    }

    public func label(_ index: Int) -> Int? { Int(labels[index]) }
}

/// Resolves `--data`: `fashion-mnist` (Debian's package location), a folder holding IDX files,
/// or a folder of PNG/JPEG images (resized to `imageSize`, labels from subfolders if `labeled`).
public func openDataset(_ spec: String, split: MNISTDataset.Split = .train, imageSize: Int? = nil,
                        labeled: Bool = false, skipCorrupt: Bool = false) throws -> ImageDataset {
    if spec == "fashion-mnist" {
        guard FileManager.default.fileExists(atPath: MNISTDataset.debianFashionMNIST) else {
            throw IDXFile.Error(file: MNISTDataset.debianFashionMNIST,
                                problem: "Fashion-MNIST is not installed (Debian: apt-get install dataset-fashion-mnist), or pass --data FOLDER")
        }
        return try MNISTDataset(folder: MNISTDataset.debianFashionMNIST, split: split)
    }
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: spec, isDirectory: &isDirectory), isDirectory.boolValue else {
        throw IDXFile.Error(file: spec, problem: "no such dataset folder (use fashion-mnist or a folder of IDX files or images)")
    }
    let contents = (try? FileManager.default.contentsOfDirectory(atPath: spec)) ?? []
    if contents.contains(where: { $0.hasPrefix("train-images-idx3-ubyte") || $0.hasPrefix("t10k-images-idx3-ubyte") }) {
        return try MNISTDataset(folder: spec, split: split)
    }
    return try ImageFolderDataset(folder: spec, size: imageSize, labeled: labeled, skipCorrupt: skipCorrupt)
}
