import Foundation
import HazeTensor

/// Batches from a dataset in a seeded random order per epoch, with random horizontal flips,
/// prepared on a background thread while the model trains.
///
/// Everything random is a pure function of (seed, epoch, position), so the loader can resume at
/// any position and give the same batches as an uninterrupted run.
public final class DataLoader {
    /// One batch: images, labels and where the stream continues.
    public struct Batch {
        /// [B, C, H, W] in [−1, 1].
        public let images: Tensor
        /// Labels (nil for unlabeled data).
        public let labels: [Int]?
        /// The position after this batch (for checkpoints).
        public let next: Position
    }

    /// Where the loader is in its stream: epoch and index within the epoch's order.
    public struct Position: Codable, Equatable, Sendable {
        /// Epochs completed (each a fresh permutation of the dataset).
        public var epoch: Int
        /// Position within this epoch's permutation, 0 ..< dataset count.
        public var index: Int
        /// A position; the default is the start of the stream.
        public init(epoch: Int = 0, index: Int = 0) { (self.epoch, self.index) = (epoch, index) }
    }

    /// The images batched.
    public let dataset: ImageDataset
    /// Images per batch (of the whole batch, before `items` selects a rank's share).
    public let batchSize: Int
    /// Seeds the per-epoch permutations and the flips.
    public let seed: UInt64
    /// Whether each image is mirrored left–right with probability ½ (a pure function of seed, epoch
    /// and position).
    public let flip: Bool
    /// The positions of each batch this loader loads (all by default; one rank's share in data-
    /// parallel training): the data order and the flips stay those of the whole batch.
    public let items: Range<Int>
    private var position: Position
    private var order: (epoch: Int, indices: [Int])?
    private let queue = DispatchQueue(label: "haze.data")
    private var pending: DispatchWorkItem?
    private var prepared: Batch?

    /// A loader of `dataset` from position `start`. A batch runs on into the next epoch when the
    /// current one ends (no short last batch). `items`: the positions within each batch that this
    /// loader loads (nil: all `batchSize`). Preconditions: a non-empty dataset, `batchSize` > 0, and
    /// `items` within 0 ..< batchSize.
    public init(dataset: ImageDataset, batchSize: Int, seed: UInt64, flip: Bool, start: Position = Position(),
                items: Range<Int>? = nil) {
        precondition(batchSize > 0 && dataset.count > 0, "empty dataset or batch")
        (self.dataset, self.batchSize, self.seed, self.flip, self.position) = (dataset, batchSize, seed, flip, start)
        self.items = items ?? 0..<batchSize
        precondition(self.items.lowerBound >= 0 && self.items.upperBound <= batchSize, "items \(self.items) of a batch of \(batchSize)")
    }

    /// The permutation of epoch `epoch`.
    func permutation(_ epoch: Int) -> [Int] {
        if let order, order.epoch == epoch { return order.indices }
        var generator = RandomGenerator(seed: seed ^ 0xDA7A_0000_0000_0000 &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
        let indices = generator.permutation(dataset.count)
        order = (epoch, indices)
        return indices
    }

    /// Assembles the batch starting at `start` (wrapping into the next epoch).
    func makeBatch(from start: Position) -> Batch {
        let shape = dataset.imageShape
        let size = shape.reduce(1, *)
        var position = start
        var labels: [Int] = []
        var picks: [(index: Int, flip: Bool)] = []
        for item in 0..<batchSize {
            if position.index >= dataset.count { position = Position(epoch: position.epoch + 1, index: 0) }
            let index = permutation(position.epoch)[position.index]
            // The flip of a (epoch, position) is its own counter in a keyed stream.
            let coin = RandomGenerator.philox(key: seed ^ 0xF119, counter: UInt64(position.epoch) << 32 | UInt64(position.index)).0
            if items.contains(item) {
                picks.append((index, flip && coin & 1 == 1))
                labels.append(dataset.label(index) ?? -1)
            }
            position.index += 1
        }
        let width = shape[2]
        let images = Tensor(shape: [picks.count] + shape) { out, _ in
            // Serial: this runs beside training, which owns the worker threads.
            do {
                for b in 0..<picks.count {
                    let dst = out + b * size
                    self.dataset.image(picks[b].index, into: dst)
                    if picks[b].flip {
                        for row in 0..<(size / width) {
                            let r = dst + row * width
                            for j in 0..<(width / 2) { let t = r[j]; r[j] = r[width - 1 - j]; r[width - 1 - j] = t }
                        }
                    }
                }
            }
        }
        return Batch(images: images, labels: dataset.classCount == nil ? nil : labels, next: position)
    }

    deinit { pending?.wait() }

    /// The position after the last batch handed out (what a checkpoint records).
    public var consumed: Position { position }

    /// The next batch; the one after it starts preparing in the background.
    public func next() -> Batch {
        let batch: Batch
        if let pending {
            pending.wait()
            batch = prepared!
        } else {
            batch = makeBatch(from: position)
        }
        position = batch.next
        let start = position
        let work = DispatchWorkItem { [weak self] in
            guard let self else { return }
            self.prepared = self.makeBatch(from: start)
        }
        pending = work
        queue.async(execute: work)
        return batch
    }
}
