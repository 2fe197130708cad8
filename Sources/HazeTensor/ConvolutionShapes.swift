import Foundation

/// The shapes a network convolves, and the path `conv2d` takes for each: for checking the
/// algorithm choice against measurement (`haze-bench convs`), on the reference workloads and on
/// a user's own config.
public enum ConvolutionShapes {
    /// One convolution: x [N, C, H, W] ⊛ w [O, C, KH, KW] with a stride and zero padding.
    public struct Shape: Hashable, Sendable, CustomStringConvertible {
        /// [N, C, H, W] and [O, C, KH, KW].
        public let input, weight: [Int]
        /// The stride along both axes.
        public let stride: Int
        /// The zero padding on each side.
        public let padding: Padding2D

        /// A convolution of this input and weight shape.
        public init(input: [Int], weight: [Int], stride: Int, padding: Padding2D) {
            (self.input, self.weight, self.stride, self.padding) = (input, weight, stride, padding)
        }

        var geometry: ConvGeometry {
            ConvGeometry(n: input[0], c: input[1], h: input[2], w: input[3], o: weight[0], kh: weight[2], kw: weight[3],
                         stride: stride, padding: padding)
        }

        /// "3×3 [16,64,32,32]→64", with "s2" or the padding when they are not 1 and "same".
        public var description: String {
            let pad = padding == Padding2D(weight[2] / 2) ? "" : " pad \(padding.top),\(padding.bottom),\(padding.left),\(padding.right)"
            return "\(weight[2])×\(weight[3])\(stride > 1 ? " s\(stride)" : "")\(pad) [\(input.map(String.init).joined(separator: ","))]→\(weight[0])"
        }

        /// The forward path `conv2d` takes for this shape under `ConvolutionAlgorithm.current`
        /// and `Precision.current` (the backward follows the same choice of Winograd tile).
        public var forwardPath: String {
            let geo = geometry
            if Winograd.applies(geo) {
                if Winograd.usesLargeTiles(n: geo.n, h: geo.h, w: geo.w) {
                    return Winograd.usesRowTiles(n: geo.n, h: geo.h, w: geo.w) ? "F(4×4), tiles in lanes" : "F(4×4), images in lanes"
                }
                let packed = Winograd.usesPackedProducts(perImage: ((geo.h + 1) / 2) * ((geo.w + 1) / 2), c: geo.c)
                return "F(2×2), " + (packed ? "packed products" : "BLAS products")
            }
            if geo.isDirect { return "direct (strided)" }
            if geo.usesPackedPointwise {
                return Precision.current == .bfloat16 && Precision.bfloat16Available ? "1×1, packed bf16 products" : "1×1, packed products"
            }
            return geo.isPointwise && geo.chunk == 1 ? "1×1, SGEMM on the planes" : "im2col + SGEMM"
        }
    }

    nonisolated(unsafe) private static var log: [Shape]?
    private static let lock = NSLock()

    /// The convolutions `body` runs, in order, one entry per call.
    public static func recorded(during body: () throws -> Void) rethrows -> [Shape] {
        lock.withLock { log = [] }
        defer { lock.withLock { log = nil } }
        try body()
        return lock.withLock { log ?? [] }
    }

    static func note(_ geo: ConvGeometry) {
        lock.withLock {
            log?.append(Shape(input: [geo.n, geo.c, geo.h, geo.w], weight: [geo.o, geo.c, geo.kh, geo.kw],
                              stride: geo.stride, padding: geo.padding))
        }
    }
}
