import Foundation
import HazeData
import HazeIO
import HazeNN
import HazeTensor

/// A small CNN classifier for 28×28 grayscale images (MNIST, Fashion-MNIST), trained by Haze
/// itself; its penultimate activations are the features for FID/KID on those datasets.
///   conv 3×3 1→32, SiLU, avg-pool 2 → conv 3×3 32→64, SiLU, avg-pool 2 → flatten 64·7·7
///   → linear 128, SiLU (features) → linear → class logits
public struct ImageClassifier: Module {
    /// Number of classes (outputs of the last layer).
    public let classes: Int
    let conv1 = Conv2d("conv1", 1, 32, kernelSize: 3, padding: Padding2D(1))
    let conv2 = Conv2d("conv2", 32, 64, kernelSize: 3, padding: Padding2D(1))
    let hidden = Linear("fc1", 64 * 7 * 7, 128)
    let output: Linear

    /// A classifier of `classes` classes (10 for MNIST and Fashion-MNIST).
    public init(classes: Int = 10) {
        self.classes = classes
        output = Linear("fc2", 128, classes)
    }

    public var parameterSpecs: [ParameterSpec] {
        conv1.parameterSpecs + conv2.parameterSpecs + hidden.parameterSpecs + output.parameterSpecs
    }

    /// x: [N, 1, 28, 28] in [−1, 1] → (features [N, 128], logits [N, classes]).
    public func callAsFunction(_ x: Tensor, _ p: ParameterSet) -> (features: Tensor, logits: Tensor) {
        precondition(x.rank == 4 && Array(x.shape.dropFirst()) == [1, 28, 28], "the classifier takes [N, 1, 28, 28], got \(x.shape)")
        let h1 = conv1(x, p).silu().averagePooled2x2()
        let h2 = conv2(h1, p).silu().averagePooled2x2()
        let features = hidden(h2.reshaped(to: [x.shape[0], 64 * 7 * 7]), p).silu()
        return (features, output(features, p))
    }

    /// Mean cross-entropy −log softmax(logits)[label].
    public static func crossEntropy(_ logits: Tensor, labels: [Int]) -> Tensor {
        let classes = logits.shape[1]
        var oneHot = [Float](repeating: 0, count: logits.count)
        for (i, l) in labels.enumerated() { oneHot[i * classes + l] = 1 }
        return -(logits.logSoftmax() * Tensor(shape: logits.shape, scalars: oneHot)).sum() * (1 / Float(labels.count))
    }

    /// Calls `body` with (first index, images) for consecutive batches of a dataset, in order.
    static func forEachBatch(of dataset: ImageDataset, size batchSize: Int, _ body: (Int, Tensor) -> Void) {
        let size = dataset.imageShape.reduce(1, *)
        for start in stride(from: 0, to: dataset.count, by: batchSize) {
            let n = min(batchSize, dataset.count - start)
            body(start, Tensor(shape: [n] + dataset.imageShape) { out, _ in
                for i in 0..<n { dataset.image(start + i, into: out + i * size) }
            })
        }
    }

    /// Fraction of a labeled dataset classified correctly.
    public func accuracy(on dataset: ImageDataset, parameters: ParameterSet) -> Double {
        var correct = 0
        ImageClassifier.forEachBatch(of: dataset, size: 500) { start, x in
            let logits = self(x, parameters).logits
            for i in 0..<x.shape[0] {
                let row = logits.scalars[(i * classes)..<((i + 1) * classes)]
                if row.firstIndex(of: row.max()!)! - i * classes == dataset.label(start + i) { correct += 1 }
            }
        }
        return Double(correct) / Double(dataset.count)
    }

    /// Trains on a labeled dataset with AdamW (seeded, flips off): `epochs` passes in batches.
    public func train(on dataset: ImageDataset, epochs: Int, batchSize: Int = 128, learningRate: Float = 1e-3, seed: UInt64 = 0,
                      onStep: ((Int, Int, Float) -> Void)? = nil) -> ParameterSet {
        var parameters = initialParameters(seed: seed)
        var optimizer = AdamOptimizer(.adamW, learningRate: learningRate, weightDecay: 1e-4)
        let loader = DataLoader(dataset: dataset, batchSize: batchSize, seed: seed, flip: false)
        let steps = epochs * dataset.count / batchSize
        for step in 0..<steps {
            let batch = loader.next()
            let (loss, gradients) = valueWithGradient(at: parameters) { p in
                ImageClassifier.crossEntropy(self(batch.images, p).logits, labels: batch.labels!)
            }
            // Cosine decay over the run.
            optimizer.learningRate = learningRate * Float(0.5 * (1 + cos(Double.pi * Double(step) / Double(steps))))
            optimizer.update(&parameters, gradients: gradients)
            onStep?(step + 1, steps, loss.scalar)
        }
        return parameters
    }
}
