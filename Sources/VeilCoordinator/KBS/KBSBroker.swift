import FoundationEssentials
import Synchronization

/// How long KBS sessions and tokens last.
public struct KBSSettings: Sendable, Equatable {
    /// From `auth` to the last resource fetched with the session cookie.
    public var sessionLifetime: TimeInterval
    /// From `attest` to the token's `exp`.
    public var tokenLifetime: TimeInterval

    /// Five minutes each, as Trustee's default session timeout.
    public init(sessionLifetime: TimeInterval = 300, tokenLifetime: TimeInterval = 300) {
        self.sessionLifetime = sessionLifetime
        self.tokenLifetime = tokenLifetime
    }
}

/// A replica's KBS state: its sessions, settings and token signer.
final class KBSBroker: Sendable {
    let sessions = KBSSessions()
    private let configured = Mutex(KBSSettings())
    private let signing = Mutex<KBSTokenSigner?>(nil)

    var settings: KBSSettings { configured.withLock { $0 } }

    func configure(_ settings: KBSSettings) {
        configured.withLock { $0 = settings }
    }

    /// The token signer, made on first use (the key exists only in this process).
    func signer(_ authority: CertificateAuthority) throws -> KBSTokenSigner {
        try signing.withLock { signer in
            if let signer { return signer }
            let made = try KBSTokenSigner(authority: authority)
            signer = made
            return made
        }
    }
}
