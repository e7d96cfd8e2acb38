import Crypto

/// Builds the 64 bytes of report data Veil binds into evidence.
///
/// The first 32 bytes are `SHA-256(subject ‖ nonce)`; the rest are zero. Launchers bind their
/// key's SubjectPublicKeyInfo and the coordinator's activation nonce; the coordinator binds
/// its root certificate's DER and the client's nonce.
public enum ReportData {
    public static let size = 64

    public static func binding(_ subject: [UInt8], nonce: [UInt8]) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: subject)
        hasher.update(data: nonce)
        return Array(hasher.finalize()) + [UInt8](repeating: 0, count: size - SHA256.byteCount)
    }
}
