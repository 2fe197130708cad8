import Foundation

/// The learning rate at each step: linear warmup from 0 over `warmupSteps`, then constant, or a
/// cosine decay to 0 at `totalSteps` (Loshchilov & Hutter 2017, without restarts). Exactly
/// diffusers' `get_scheduler("constant_with_warmup"|"cosine", num_warmup_steps:, num_training_steps:)`
/// under PyTorch's LambdaLR (its plain "constant" ignores the warm-up): update k (0-based) uses peak · k / warmup during warm-up, so the first
/// update of a warm-up has rate 0 (it moves Adam's moments, not the weights).
public struct LearningRateSchedule: Codable, Equatable, Sendable {
    /// After the warm-up: constant at `peak`, or cosine decay to 0 at `totalSteps`.
    public enum Shape: String, Codable, Sendable { case constant, cosine }
    /// The rate after warm-up (and the start of the cosine).
    public var peak: Float
    /// Updates of linear warm-up from 0 (0: none).
    public var warmupSteps: Int
    /// Constant or cosine after the warm-up.
    public var shape: Shape
    /// The run's total updates: where the cosine reaches 0.
    public var totalSteps: Int

    /// A schedule peaking at `peak`.
    public init(peak: Float, warmupSteps: Int = 0, shape: Shape = .constant, totalSteps: Int) {
        (self.peak, self.warmupSteps, self.shape, self.totalSteps) = (peak, warmupSteps, shape, totalSteps)
    }

    /// The rate for the update that ends step `step` (0-based).
    public func rate(at step: Int) -> Float {
        if step < warmupSteps { return peak * Float(step) / Float(warmupSteps) }
        switch shape {
        case .constant: return peak
        case .cosine:
            let progress = Double(step - warmupSteps) / Double(max(totalSteps - warmupSteps, 1))
            return peak * Float(0.5 * (1 + cos(Double.pi * min(progress, 1))))
        }
    }
}
