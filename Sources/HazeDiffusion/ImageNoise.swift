import HazeTensor

/// Where a sampling loop gets its Gaussian noise (x_T, and the noise of stochastic steps).
public protocol NoiseSource {
    /// Standard normal values of `shape` ([B, C, H, W]).
    mutating func normal(_ shape: [Int]) -> Tensor
}

extension RandomGenerator: NoiseSource {
    public mutating func normal(_ shape: [Int]) -> Tensor { normal(shape, mean: 0, std: 1) }
}

/// Noise drawn image by image: image k of a request has its own stream of the counter-based
/// generator (key `seed`, 2³² blocks from block k·2³²), read in the order the loop asks (x_T,
/// then each stochastic step). So image k gets the same noise, and the same result, whatever the
/// batch size, the batch it falls in, or the rank of an MPI job that computes it.
public struct ImageNoise: NoiseSource {
    /// The key of the counter-based generator, shared by all images of a request.
    public let seed: UInt64
    /// The request's index of the batch's first image.
    public let firstImage: Int
    /// Blocks of each image's stream used so far.
    private var used: UInt64 = 0

    /// The noise of the batch whose first image is image `firstImage` of the request seeded `seed`.
    public init(seed: UInt64, firstImage: Int) { (self.seed, self.firstImage) = (seed, firstImage) }

    public mutating func normal(_ shape: [Int]) -> Tensor {
        let size = shape.dropFirst().reduce(1, *), blocks = UInt64((size + 3) / 4)
        defer { used += blocks }
        return Tensor.concatenate((0..<shape[0]).map { b in
            var stream = RandomGenerator(seed: seed, offset: UInt64(firstImage + b) << 32 + used)
            return stream.normal([1] + shape.dropFirst())
        }, alongAxis: 0)
    }
}
