/// Veil's version: what `veil --version`, `veil-launcher --version` and a coordinator's status
/// report. Clients compare coordinator measurements computed by their own binary, so a version
/// skew shows here first, not as a measurement mismatch.
public enum VeilVersion {
    public static let current = "0.9.0"
}
