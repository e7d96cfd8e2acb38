import Crypto
import Foundation
import Synchronization

/// Activation nonces that cost nothing to issue: no state is kept per nonce, so any number of
/// anonymous nonce requests cannot crowd out a real launcher.
///
/// A nonce is 32 bytes: u32 issue time (seconds, big-endian) ‖ 12 random bytes ‖ the first 16
/// bytes of HMAC-SHA256 under a key this replica draws at start. It is valid for
/// ``lifetime`` at the replica that issued it (another replica, or this one after a restart,
/// refuses it: the launcher then asks for a new one). Single use: a nonce is recorded as
/// used only once its evidence verified, so the used set holds at most the genuine
/// activations of one ``lifetime`` — it cannot be filled by requests without valid evidence.
final class NonceIssuer: Sendable {
    static let lifetime: TimeInterval = 120
    static let size = 32
    /// Clock steps tolerated for a nonce issued "in the future".
    static let skew: TimeInterval = 5

    private let key = SymmetricKey(size: .bits256)
    private struct Used {
        var nonces: [[UInt8]: Date] = [:]
        var pruned = Date.distantPast
    }
    private let used = Mutex(Used())

    func issue(now: Date = Date()) -> [UInt8] {
        var nonce: [UInt8] = []
        withUnsafeBytes(of: UInt32(clamping: Int(now.timeIntervalSince1970)).bigEndian) { nonce += $0 }
        nonce += SymmetricKey(size: .init(bitCount: 96)).withUnsafeBytes { Array($0) }
        nonce += mac(nonce)
        return nonce
    }

    private func mac(_ prefix: [UInt8]) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: prefix, using: key).prefix(16))
    }

    /// Checks that `nonce` was issued here and is current; cheap, before any verification.
    func check(_ nonce: [UInt8], now: Date = Date()) throws(CoordinatorError) {
        guard nonce.count == Self.size else { throw .badRequest("nonce must be \(Self.size) bytes of hex") }
        let prefix = Array(nonce[..<16])
        // Compared in constant time: every byte is looked at whatever differs.
        guard zip(mac(prefix), nonce[16...]).reduce(UInt8(0), { $0 | ($1.0 ^ $1.1) }) == 0 else { throw .unknownNonce }
        let issued = TimeInterval(nonce[..<4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        let age = now.timeIntervalSince1970 - issued
        guard age <= Self.lifetime, age >= -Self.skew else { throw .unknownNonce }
    }

    /// Records `nonce` as used; a second use is refused.
    func consume(_ nonce: [UInt8], now: Date = Date()) throws(CoordinatorError) {
        let fresh = used.withLock { used -> Bool in
            if now.timeIntervalSince(used.pruned) > 1, used.nonces.count > 1024 {
                used.nonces = used.nonces.filter { $0.value > now }
                used.pruned = now
            }
            guard used.nonces[nonce] == nil else { return false }
            used.nonces[nonce] = now + Self.lifetime + Self.skew
            return true
        }
        guard fresh else { throw .unknownNonce }
    }
}
