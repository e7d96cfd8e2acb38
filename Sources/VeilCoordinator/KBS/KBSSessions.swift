import Crypto
import FoundationEssentials
import Synchronization
import VeilCore
import VeilJOSE

/// What a successful KBS attestation established: the service the evidence selected and the
/// key resources are encrypted to. Made only by ``Coordinator/kbsAttest(sessionID:body:now:)``
/// or read back from a token this coordinator signed.
public struct KBSGrant: Sendable {
    public let tee: String
    public let service: String
    public let package: String
    /// The `tee-pubkey` JWK exactly as the client sent it (it goes into the token).
    public let teeKeyJWK: JSONValue
    let teeKey: JWEPublicKey
    public let initDataDigest: [UInt8]?
    public let simulated: Bool
    public let expires: Date
}

/// The hash over the runtime data (``KBSAttestation``): SHA-384 unless a client lists the
/// algorithms it supports in the Request's `extra-params` (`"supported-hash-algorithms"`), as
/// Trustee's Intel Trust Authority backend negotiates; the Challenge then names the one chosen
/// (`"selected-hash-algorithm"`).
enum RuntimeDataHash: String, Sendable, CaseIterable {
    case sha384, sha512, sha256

    func digest(_ bytes: [UInt8]) -> [UInt8] {
        switch self {
        case .sha256: return Array(SHA256.hash(data: bytes))
        case .sha384: return Array(SHA384.hash(data: bytes))
        case .sha512: return Array(SHA512.hash(data: bytes))
        }
    }

    /// The first of SHA-384, SHA-512 and SHA-256 the client lists (names compared ignoring case
    /// and dashes), nil without a list; a list naming none of them is refused.
    static func negotiate(_ extraParams: JSONValue?) throws(KBSError) -> RuntimeDataHash? {
        guard let listed = extraParams?["supported-hash-algorithms"] else { return nil }
        guard let names = listed.stringArray else { throw .malformedRequest("supported-hash-algorithms must be an array of strings") }
        let normalized = Set(names.map { $0.lowercased().filter { $0 != "-" } })
        guard let chosen = allCases.first(where: { normalized.contains($0.rawValue) }) else {
            throw .noCommonHashAlgorithm(names)
        }
        return chosen
    }
}

/// KBS sessions of this replica, by the `kbs-session-id` cookie: a challenge, then the grant
/// its attestation earned. Sessions live in memory (a client that fails over to another
/// replica authenticates again or presents its token, which every replica verifies).
final class KBSSessions: Sendable {
    struct Session {
        var nonce: String
        var tee: String
        var hash: RuntimeDataHash
        var expires: Date
        var challengeAnswered = false
        var grant: KBSGrant?
    }

    /// Bounds memory against clients that open sessions and never finish them.
    static let capacity = 100_000
    private let sessions = Mutex<[String: Session]>([:])

    /// Opens a session with a fresh 256-bit nonce (base64, as Trustee sends it).
    func open(tee: String, hash: RuntimeDataHash, lifetime: TimeInterval, now: Date) throws(KBSError) -> (id: String, nonce: String) {
        let id = Hex.encode(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) })
        let nonce = Data(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }).base64EncodedString()
        try sessions.withLock { (sessions: inout [String: Session]) throws(KBSError) in
            if sessions.count >= Self.capacity { sessions = sessions.filter { $0.value.expires > now } }
            guard sessions.count < Self.capacity else { throw KBSError.malformedRequest("too many open KBS sessions; retry later") }
            sessions[id] = Session(nonce: nonce, tee: tee, hash: hash, expires: now + lifetime)
        }
        return (id, nonce)
    }

    /// The session's challenge, answered now: one attestation per challenge.
    func answer(_ id: String?, now: Date) throws(KBSError) -> Session {
        guard let id else { throw .notAuthenticated }
        return try sessions.withLock { (sessions: inout [String: Session]) throws(KBSError) -> Session in
            guard let session = sessions[id], session.expires > now else {
                sessions[id] = nil
                throw KBSError.sessionExpired
            }
            guard !session.challengeAnswered else { throw KBSError.challengeUsed }
            sessions[id]?.challengeAnswered = true
            return session
        }
    }

    func attach(_ grant: KBSGrant, to id: String) {
        sessions.withLock { $0[id]?.grant = grant }
    }

    func grant(_ id: String, now: Date) throws(KBSError) -> KBSGrant {
        try sessions.withLock { (sessions: inout [String: Session]) throws(KBSError) -> KBSGrant in
            guard let session = sessions[id], session.expires > now else {
                sessions[id] = nil
                throw KBSError.sessionExpired
            }
            guard let grant = session.grant else { throw KBSError.sessionNotAttested }
            return grant
        }
    }
}
