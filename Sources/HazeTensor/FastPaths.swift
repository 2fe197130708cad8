/// Optimisations that leave every result the same to the bit, each with a switch: the tests run
/// each on against off, and `haze-bench unet --alternate` times the two call by call in one
/// process, the way to see a change of a few percent on a noisy machine (separate processes
/// drift by more). All are on by default; switch them only between calls (not synchronised).
public enum FastPath: String, CaseIterable, Sendable {
    /// Up blocks read their state ⧺ skip in place instead of a copy (ConcatenatedInput.swift).
    case inPlaceConcatenations = "in-place-concatenations"
    /// conv(SiLU(groupNorm(x))) reads x through the norm in the Winograd input transforms instead
    /// of writing the activations out (`Tensor.conv2d(siluOfGroupNorm:…)`).
    case fusedGroupNorm = "fused-group-norm"

    /// Whether the path is taken where it applies.
    public var isEnabled: Bool {
        get {
            switch self {
            case .inPlaceConcatenations: Tensor.readsConcatenationsInPlace
            case .fusedGroupNorm: Tensor.fusesGroupNorm
            }
        }
        nonmutating set {
            switch self {
            case .inPlaceConcatenations: Tensor.readsConcatenationsInPlace = newValue
            case .fusedGroupNorm: Tensor.fusesGroupNorm = newValue
            }
        }
    }
}
