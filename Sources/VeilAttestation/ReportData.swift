import Crypto

/// Builds and reads the 64 bytes of report data Veil binds into evidence.
///
/// - Bytes 0..<32: `SHA-256(subject ‖ nonce)`. Launchers bind their key's SubjectPublicKeyInfo
///   and the coordinator's activation nonce; the coordinator binds its root certificate's DER
///   and the client's nonce.
/// - Bytes 32..<64: zero, or — only in evidence from a confidential VM (SNP, TDX) — the image
///   measurement of the container the launcher inside the VM measured. The VM's own launch
///   measurement covers firmware, kernel and initrd, not the container; this is how the
///   container's identity reaches the coordinator, vouched for by the measured VM software
///   that computed it.
public enum ReportData {
    public static let size = 64
    static let bindingSize = SHA256.byteCount

    public static func binding(_ subject: [UInt8], nonce: [UInt8], imageMeasurement: [UInt8]? = nil) -> [UInt8] {
        precondition(imageMeasurement.map { $0.count == size - bindingSize && $0.contains { $0 != 0 } } ?? true,
                     "an image measurement is 32 bytes, not all zero")
        var hasher = SHA256()
        hasher.update(data: subject)
        hasher.update(data: nonce)
        return Array(hasher.finalize()) + (imageMeasurement ?? [UInt8](repeating: 0, count: size - bindingSize))
    }

    /// The `SHA-256(subject ‖ nonce)` half.
    public static func keyBinding(in reportData: [UInt8]) -> ArraySlice<UInt8> { reportData.prefix(bindingSize) }

    /// The image measurement a confidential-VM launcher bound, or `nil` (all zero).
    public static func imageMeasurement(in reportData: [UInt8]) -> [UInt8]? {
        guard reportData.count == size else { return nil }
        let tail = Array(reportData[bindingSize...])
        return tail.allSatisfy { $0 == 0 } ? nil : tail
    }
}
