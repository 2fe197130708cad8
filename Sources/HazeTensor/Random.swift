import Foundation

/// A counter-based random generator: Philox-4×32-10 (Salmon et al., "Parallel random numbers:
/// as easy as 1, 2, 3", SC 2011).
///
/// Element `i` of a draw is a pure function of `(seed, offset + i / 4)`, so the numbers are the
/// same whatever the thread count, and the generator's whole state is two integers that a
/// checkpoint can store: a resumed run continues the same stream as an uninterrupted one.
public struct RandomGenerator: Equatable, Codable, Sendable {
    /// The key of the stream.
    public var seed: UInt64
    /// Number of 128-bit blocks already consumed.
    public var offset: UInt64

    /// A stream with key `seed`, starting `offset` 128-bit blocks (four Float32 draws each) in.
    public init(seed: UInt64, offset: UInt64 = 0) {
        self.seed = seed
        self.offset = offset
    }

    /// Philox-4×32 with 10 rounds: four 32-bit words for one counter value.
    public static func philox(key: UInt64, counter: UInt64) -> (UInt32, UInt32, UInt32, UInt32) {
        var c0 = UInt32(truncatingIfNeeded: counter), c1 = UInt32(truncatingIfNeeded: counter >> 32)
        var c2: UInt32 = 0, c3: UInt32 = 0
        var k0 = UInt32(truncatingIfNeeded: key), k1 = UInt32(truncatingIfNeeded: key >> 32)
        for _ in 0..<10 {
            let p0 = UInt64(0xD251_1F53) &* UInt64(c0)
            let p1 = UInt64(0xCD9E_8D57) &* UInt64(c2)
            let (hi0, lo0) = (UInt32(truncatingIfNeeded: p0 >> 32), UInt32(truncatingIfNeeded: p0))
            let (hi1, lo1) = (UInt32(truncatingIfNeeded: p1 >> 32), UInt32(truncatingIfNeeded: p1))
            (c0, c1, c2, c3) = (hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0)
            k0 = k0 &+ 0x9E37_79B9
            k1 = k1 &+ 0xBB67_AE85
        }
        return (c0, c1, c2, c3)
    }

    /// Uniform in [0, 1) with 24 random bits.
    static func unit(_ u: UInt32) -> Float { Float(u >> 8) * 0x1p-24 }
    /// Uniform in (0, 1], safe for a logarithm.
    static func unitOpen(_ u: UInt32) -> Float { Float((u >> 8) + 1) * 0x1p-24 }

    /// Fills `count` elements, four per counter value, in parallel, and advances the stream.
    mutating func fill(_ count: Int, _ block: @escaping (UInt32, UInt32, UInt32, UInt32) -> (Float, Float, Float, Float)) -> [Float] {
        let blocks = (count + 3) / 4
        let key = seed, base = offset
        offset &+= UInt64(blocks)
        var out = [Float](repeating: 0, count: blocks * 4)
        out.withUnsafeMutableBufferPointer { buffer in
            let p = buffer.baseAddress!
            Parallel.forEach(blocks, cost: 64) { range in
                for b in range {
                    let (u0, u1, u2, u3) = RandomGenerator.philox(key: key, counter: base &+ UInt64(b))
                    let (a, c, d, e) = block(u0, u1, u2, u3)
                    p[4 * b] = a; p[4 * b + 1] = c; p[4 * b + 2] = d; p[4 * b + 3] = e
                }
            }
        }
        out.removeLast(blocks * 4 - count)
        return out
    }

    /// Uniform samples in [low, high).
    public mutating func uniform(_ shape: [Int], low: Float = 0, high: Float = 1) -> Tensor {
        let scale = high - low
        let values = fill(shape.reduce(1, *)) { a, b, c, d in
            (low + scale * RandomGenerator.unit(a), low + scale * RandomGenerator.unit(b),
             low + scale * RandomGenerator.unit(c), low + scale * RandomGenerator.unit(d))
        }
        return Tensor(shape: shape, scalars: values)
    }

    /// Normal samples N(mean, std²), by the Box–Muller transform (two normals per pair of words).
    public mutating func normal(_ shape: [Int], mean: Float = 0, std: Float = 1) -> Tensor {
        let values = fill(shape.reduce(1, *)) { a, b, c, d in
            let r0 = (-2 * Foundation.log(RandomGenerator.unitOpen(a))).squareRoot()
            let r1 = (-2 * Foundation.log(RandomGenerator.unitOpen(c))).squareRoot()
            let t0 = 2 * Float.pi * RandomGenerator.unit(b), t1 = 2 * Float.pi * RandomGenerator.unit(d)
            return (mean + std * r0 * cos(t0), mean + std * r0 * sin(t0),
                    mean + std * r1 * cos(t1), mean + std * r1 * sin(t1))
        }
        return Tensor(shape: shape, scalars: values)
    }

    /// Uniform integers in `0..<upperBound` (e.g. diffusion timesteps).
    public mutating func integers(_ count: Int, below upperBound: Int) -> [Int] {
        precondition(upperBound > 0, "upper bound must be positive")
        let n = Float(upperBound)
        return fill(count) { a, b, c, d in
            (RandomGenerator.unit(a) * n, RandomGenerator.unit(b) * n,
             RandomGenerator.unit(c) * n, RandomGenerator.unit(d) * n)
        }.map { min(Int($0), upperBound - 1) }
    }

    /// A random permutation of `0..<count` (Fisher–Yates driven by this stream).
    public mutating func permutation(_ count: Int) -> [Int] {
        var result = Array(0..<count)
        guard count > 1 else { return result }
        let draws = uniform([count])
        for i in stride(from: count - 1, to: 0, by: -1) {
            let j = min(Int(draws.scalars[i] * Float(i + 1)), i)
            result.swapAt(i, j)
        }
        return result
    }
}

extension Tensor {
    /// Uniform samples in [low, high) from a generator seeded with `seed`.
    public static func uniform(_ shape: [Int], low: Float = 0, high: Float = 1, seed: UInt64) -> Tensor {
        var generator = RandomGenerator(seed: seed)
        return generator.uniform(shape, low: low, high: high)
    }

    /// Standard normal samples from a generator seeded with `seed`.
    public static func normal(_ shape: [Int], mean: Float = 0, std: Float = 1, seed: UInt64) -> Tensor {
        var generator = RandomGenerator(seed: seed)
        return generator.normal(shape, mean: mean, std: std)
    }
}
