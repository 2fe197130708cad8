import Foundation

/// The learning rate at each step: linear warmup from 0 over `warmupSteps`, then constant, or a
/// cosine decay to 0 at `totalSteps` (Loshchilov & Hutter 2017, without restarts).
public struct LearningRateSchedule: Codable, Equatable, Sendable {
    public enum Shape: String, Codable, Sendable { case constant, cosine }
    public var peak: Float
    public var warmupSteps: Int
    public var shape: Shape
    public var totalSteps: Int

    public init(peak: Float, warmupSteps: Int = 0, shape: Shape = .constant, totalSteps: Int) {
        (self.peak, self.warmupSteps, self.shape, self.totalSteps) = (peak, warmupSteps, shape, totalSteps)
    }

    /// The rate for the update that ends step `step` (0-based).
    public func rate(at step: Int) -> Float {
        if step < warmupSteps { return peak * Float(step + 1) / Float(warmupSteps) }
        switch shape {
        case .constant: return peak
        case .cosine:
            let progress = Double(step - warmupSteps) / Double(max(totalSteps - warmupSteps, 1))
            return peak * Float(0.5 * (1 + cos(Double.pi * min(progress, 1))))
        }
    }
}
