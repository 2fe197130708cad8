import HazeTensor

/// Images already in memory, as a tensor [N, C, H, W] with values in [−1, 1], and optional class
/// labels (one per image, 0…classCount − 1): a user's own data for `Trainer`.
public struct TensorDataset: ImageDataset {
    /// The images [N, C, H, W], values in [−1, 1].
    public let images: Tensor
    /// One class label per image, or nil for unlabeled data.
    public let labels: [Int]?
    public let classCount: Int?
    public var count: Int { images.shape[0] }
    public var imageShape: [Int] { Array(images.shape.dropFirst()) }

    /// - Throws: `DatasetError` when the images are not [N, C, H, W] with N ≥ 1, or the labels
    ///   do not match them.
    public init(images: Tensor, labels: [Int]? = nil) throws {
        guard images.rank == 4, images.shape.allSatisfy({ $0 > 0 }) else {
            throw DatasetError("a TensorDataset takes images [N, C, H, W] with N ≥ 1, not \(images.shape)")
        }
        if let labels {
            guard labels.count == images.shape[0] else { throw DatasetError("\(labels.count) labels for \(images.shape[0]) images") }
            guard labels.allSatisfy({ $0 >= 0 }) else { throw DatasetError("class labels must be 0 or more") }
        }
        (self.images, self.labels) = (images, labels)
        classCount = labels.map { ($0.max() ?? 0) + 1 }
    }

    public func image(_ index: Int, into out: UnsafeMutablePointer<Float>) {
        let size = images.shape.dropFirst().reduce(1, *)
        images.scalars.withUnsafeBufferPointer { all in
            out.update(from: all.baseAddress! + index * size, count: size)
        }
    }

    public func label(_ index: Int) -> Int? { labels?[index] }
}

/// A dataset that cannot be built from what it was given.
public struct DatasetError: Error, CustomStringConvertible {
    public let description: String
    /// An error with the message `description`.
    public init(_ description: String) { self.description = description }
}
