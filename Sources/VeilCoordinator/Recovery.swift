import Crypto
import Foundation
import Logging
import Synchronization
import VeilAttestation
import VeilCore
import VeilManifest
import X509

/// `recovery.json`: the state key split k-of-n (``Shamir``), each share encrypted to one
/// manifest recovery key, with a commitment per share so a share not made for that key is
/// refused on arrival. Kept outside the sealed state so it is readable when unsealing fails.
public struct RecoveryData: Codable, Sendable, Equatable {
    public struct Share: Codable, Sendable, Equatable {
        public var name: String
        public var keyFingerprint: String
        public var kind: RecoveryKey.Kind
        /// Base64; empty for RSA.
        public var encapsulatedKey: String
        public var ciphertext: String
        /// Hex `SHA-256("veil-recovery-share-v1\0" ‖ share)`.
        public var commitment: String
    }

    public var format = 1
    public var threshold: Int
    public var shares: [Share]
    /// Hex SHA-256 of the certificates of users with the `Recover` action; when not empty, a
    /// share must come over a connection authenticated by one of them.
    public var recoverers: [String]

    /// Recovery data as read back from a store. It sits beside the sealed state without
    /// authentication (it must be readable when the state cannot be opened), so whoever can
    /// write the store can alter it: nothing of it is used before it is well-formed. Altered
    /// but well-formed data can only make recovery fail — a rebuilt key must still open the
    /// authenticated state.
    public static func parse(_ bytes: [UInt8]) throws(RecoveryDataError) -> RecoveryData {
        let data: RecoveryData
        do {
            data = try JSONDecoder().decode(RecoveryData.self, from: Data(bytes))
        } catch let error as DecodingError {
            throw .notRecoveryData(error.explanation)
        } catch {
            throw .notRecoveryData("\(error)")
        }
        guard data.format == 1 else { throw .unsupportedFormat(data.format) }
        guard (1...255).contains(data.shares.count), (1...data.shares.count).contains(data.threshold) else {
            throw .threshold(data.threshold, shares: data.shares.count)
        }
        var names = Set<String>()
        for share in data.shares {
            guard !share.name.isEmpty, names.insert(share.name).inserted else { throw .share(share.name, "its name is empty or repeated") }
            guard Hex.decode(share.commitment)?.count == 32 else { throw .share(share.name, "commitment is not 32 bytes of hex") }
            guard Hex.decode(share.keyFingerprint) != nil else { throw .share(share.name, "keyFingerprint is not hex") }
            guard let ciphertext = Data(base64Encoded: share.ciphertext), !ciphertext.isEmpty, Data(base64Encoded: share.encapsulatedKey) != nil else {
                throw .share(share.name, "ciphertext or encapsulatedKey is not base64")
            }
        }
        guard data.recoverers.allSatisfy({ Hex.decode($0)?.count == 32 }) else { throw .recoverers }
        return data
    }

    /// The 32-byte state key `threshold` of `shares` (each x ‖ y) rebuild, nil when there are
    /// fewer, or they are malformed or do not combine to a key.
    package func stateKey(from shares: [[UInt8]]) -> [UInt8]? {
        let parsed = shares.compactMap(Shamir.Share.init(bytes:))
        guard parsed.count == shares.count, parsed.count >= threshold, threshold >= 1,
            let key = Shamir.combine(Array(parsed.prefix(threshold))), key.count == 32
        else { return nil }
        return key
    }

    static func commitment(_ share: [UInt8]) -> String {
        Hex.encode(SHA256.hash(data: Array("veil-recovery-share-v1\0".utf8) + share))
    }

    /// Recovery data for `manifest`'s recovery keys, or nil when it has none.
    static func make(stateKey: SymmetricKey, manifest: Manifest) throws -> RecoveryData? {
        guard !manifest.recoveryKeys.isEmpty else { return nil }
        let keys = manifest.recoveryKeys.sorted { $0.key < $1.key }
        let threshold = manifest.config.recoveryThreshold ?? keys.count
        let shares = Shamir.split(stateKey.withUnsafeBytes { Array($0) }, threshold: threshold, count: keys.count)
        let encrypted = try zip(keys, shares).map { entry, share -> Share in
            let (encapsulated, ciphertext) = try entry.value.encrypt(share.bytes)
            return Share(
                name: entry.key, keyFingerprint: entry.value.fingerprint, kind: entry.value.kind,
                encapsulatedKey: Data(encapsulated).base64EncodedString(), ciphertext: Data(ciphertext).base64EncodedString(),
                commitment: commitment(share.bytes))
        }
        let recoverers = manifest.users.values.filter { manifest.allows($0, .recover, on: nil) }
            .map { Hex.encode(SHA256.hash(data: $0.certificateDER)) }.sorted()
        return RecoveryData(threshold: threshold, shares: encrypted, recoverers: recoverers)
    }
}

/// Why recovery data read back from a store is not used.
public enum RecoveryDataError: Error, Equatable, Sendable, CustomStringConvertible {
    case notRecoveryData(String)
    case unsupportedFormat(Int)
    case threshold(Int, shares: Int)
    case share(String, String)
    case recoverers

    public var description: String {
        switch self {
        case .notRecoveryData(let why): return "the recovery data is not Veil recovery JSON: \(why)"
        case .unsupportedFormat(let format): return "the recovery data has format \(format); this coordinator reads format 1"
        case .threshold(let threshold, let shares): return "the recovery data needs \(threshold) of \(shares) shares (1 to 255 shares, threshold 1 to their number)"
        case .share(let name, let why): return "recovery share '\(name)': \(why)"
        case .recoverers: return "the recovery data's recoverers are not SHA-256 certificate digests"
        }
    }
}

/// The coordinator while this replica cannot open the stored state: it serves its status,
/// its evidence (binding a temporary root certificate) and the encrypted shares, and collects
/// decrypted shares until the state key is rebuilt — or a peer replica hands it the key
/// (``adoptKeyFromPeer(_:)``). Nothing else is served.
public final class RecoveryCoordinator: Sendable {
    let store: any StateStore
    let vault: StateVault
    /// Nil when the stored state has no recovery data: only a peer can help then.
    public let data: RecoveryData?
    public let authority: CertificateAuthority
    let evidenceProvider: any EvidenceProvider
    let logger: Logger
    public let reason: String
    private let received = Mutex<(shares: [String: Shamir.Share], recovered: Bool, note: HistoryEvent?)>(([:], false, nil))

    public init(store: any StateStore, vault: StateVault, data: RecoveryData?, reason: String, evidenceProvider: any EvidenceProvider, logger: Logger) throws {
        self.store = store
        self.vault = vault
        self.data = data
        self.reason = reason
        self.evidenceProvider = evidenceProvider
        self.logger = logger
        authority = try CertificateAuthority.generate()
    }

    public var rootCertificatePEM: String { PEM.encode(authority.rootDER, label: "CERTIFICATE") }
    public var isRecovered: Bool { received.withLock { $0.recovered } }
    /// What to record in the history once the coordinator runs again.
    var note: HistoryEvent? { received.withLock { $0.note } }
    var receivedShareCount: Int { received.withLock { $0.shares.count } }

    public func status() -> CoordinatorStatus {
        CoordinatorStatus(phase: isRecovered ? .recovered : .recovery, simulated: evidenceProvider.isSimulated, reason: reason)
    }

    /// Evidence binding the temporary root and an empty history (the real one is sealed).
    public func evidence(nonce: [UInt8]) throws(CoordinatorError) -> CoordinatorEvidence {
        guard (1...64).contains(nonce.count) else { throw .badRequest("nonce must be 1 to 64 bytes of hex") }
        do {
            let evidence = try evidenceProvider.evidence(reportData: ReportData.binding(authority.rootDER + AuditLog.emptyHead, nonce: nonce))
            return CoordinatorEvidence(
                evidence: evidence, rootCertificate: authority.rootDER, logHead: AuditLog.emptyHead, simulated: evidenceProvider.isSimulated,
                collateral: nil)
        } catch {
            throw .storage("cannot produce evidence: \(error)")
        }
    }

    public func offer() throws(CoordinatorError) -> RecoveryOffer {
        guard let data else { throw .recoveryRejected("the stored state has no recovery data (the manifest names no RecoveryKeys): only a peer replica can provide the state key") }
        let names = received.withLock { $0.shares.keys.sorted() }
        return RecoveryOffer(threshold: data.threshold, received: names, shares: data.shares)
    }

    /// Whether `certificateDER` may submit shares; checked before the body is read.
    public func authorizeSubmitter(_ certificateDER: [UInt8]?) throws(CoordinatorError) {
        guard let data, !data.recoverers.isEmpty else { return }
        guard let certificateDER else { throw .unauthenticated("recovery needs the client certificate of a user with the Recover action") }
        guard data.recoverers.contains(Hex.encode(SHA256.hash(data: certificateDER))) else {
            throw .forbidden(user: "(certificate \(Hex.encode(SHA256.hash(data: certificateDER)).prefix(16))…)", action: "Recover", resource: nil)
        }
    }

    /// Accepts one decrypted share; rebuilds the state key once enough arrived, checks it opens
    /// the stored state and seals it under this replica's sealing key.
    public func submit(name: String, share bytes: [UInt8], by certificateDER: [UInt8]?) async throws(CoordinatorError) -> RecoveryProgress {
        try authorizeSubmitter(certificateDER)
        guard let data else { throw .recoveryRejected("the stored state has no recovery data") }
        guard let entry = data.shares.first(where: { $0.name == name }) else { throw .recoveryRejected("no recovery key is named '\(name)'") }
        guard RecoveryData.commitment(bytes) == entry.commitment, let share = Shamir.Share(bytes: bytes) else {
            logger.warning("recovery share refused", metadata: ["key": "\(name)"])
            throw .recoveryRejected("that is not the share of recovery key '\(name)' (decrypted with another key?)")
        }
        let (shares, alreadyRecovered) = received.withLock { state -> ([Shamir.Share], Bool) in
            state.shares[name] = share
            return (Array(state.shares.values), state.recovered)
        }
        logger.info("recovery share accepted", metadata: ["key": "\(name)", "received": "\(shares.count)", "threshold": "\(data.threshold)"])
        var status = RecoveryProgress(received: shares.count, threshold: data.threshold, recovered: alreadyRecovered)
        guard !alreadyRecovered, shares.count >= data.threshold else { return status }
        guard let key = data.stateKey(from: shares.map(\.bytes)) else {
            throw .recoveryRejected("the shares do not rebuild a state key")
        }
        let names = received.withLock { $0.shares.keys.sorted() }
        try await adopt(SymmetricKey(data: key), note: HistoryEvent("recovered", detail: ["keys": names.joined(separator: ",")]))
        status.recovered = true
        return status
    }

    /// Takes a state key a peer replica handed over (after mutual attestation).
    public func adoptKeyFromPeer(_ key: SymmetricKey, peer: String) async throws(CoordinatorError) {
        try await adopt(key, note: nil)
        logger.info("state key received from a peer replica", metadata: ["peer": "\(peer)"])
    }

    private func adopt(_ key: SymmetricKey, note: HistoryEvent?) async throws(CoordinatorError) {
        let stored: StoredState?
        do {
            stored = try await store.read()
        } catch {
            throw .storeUnavailable("\(error)")
        }
        guard let stored else { throw .recoveryRejected("the store no longer holds a state") }
        do {
            _ = try vault.open(stored.bytes, with: key)
            try vault.adopt(stateKey: key)
        } catch {
            throw .recoveryRejected("the rebuilt key does not open the state: \(error)")
        }
        received.withLock {
            $0.recovered = true
            $0.note = note
        }
        logger.info("state key restored and sealed under this replica's sealing key")
    }
}
