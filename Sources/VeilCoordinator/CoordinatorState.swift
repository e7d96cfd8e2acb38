import Crypto
import Foundation
import VeilManifest
import X509

/// Everything a coordinator must not lose, as sealed into the store. Keys are raw/DER bytes,
/// `manifest` the manifest's exact bytes. Every change goes through one transaction
/// (``Coordinator/transact(_:)``) that appends history, bumps ``generation`` and writes it whole.
///
/// Invariant: ``generation`` only grows; each stored version has a larger one than the last.
struct CoordinatorState: Codable, Sendable, Equatable {
    /// 3: bytes as base64 strings (``StoredBytes``); 2 wrote them as arrays of numbers and still reads.
    static let currentFormat = 3
    var format = Self.currentFormat
    var generation: UInt64 = 0
    @StoredBytes var rootKey: [UInt8]
    @StoredBytes var rootCertificate: [UInt8]
    @StoredBytes var intermediateKey: [UInt8]
    @StoredBytes var intermediateCertificate: [UInt8]
    /// The coordinator TLS CA (absent in states from before it existed; added at the next start).
    @OptionalStoredBytes var coordinatorCAKey: [UInt8]? = nil
    @OptionalStoredBytes var coordinatorCACertificate: [UInt8]? = nil
    @OptionalStoredBytes var manifest: [UInt8]? = nil
    var secrets: [String: SecretValue] = [:]
    /// Activations of services with `MaxActivations` (counted exactly, in the transaction).
    var activations: [String: Int] = [:]
    /// Latest protected-file version seen per key secret and logical path ("secret\0path").
    var protectedFiles: [String: ProtectedFileRecord]?
    /// The signed, hash-chained history of changes (see ``AuditLog``).
    var log: [LogEntry]?
    /// A proposed manifest waiting for acknowledgements.
    var pendingUpdate: PendingUpdate?
    /// Transit keys by name: every version's 256-bit AES key, version 1 first (``Transit``).
    var transitKeys: [String: [[UInt8]]]?

    struct PendingUpdate: Codable, Equatable, Sendable {
        @StoredBytes var manifest: [UInt8]
        var acknowledgedBy: [String]
    }

    struct ProtectedFileRecord: Codable, Equatable, Sendable {
        var version: UInt64
        @StoredBytes var root: [UInt8]
    }

    init(authority: CertificateAuthority) {
        rootKey = Array(authority.rootKey.rawRepresentation)
        rootCertificate = authority.rootDER
        intermediateKey = Array(authority.intermediateKey.rawRepresentation)
        intermediateCertificate = authority.intermediateDER
        coordinatorCAKey = Array(authority.coordinatorCAKey.rawRepresentation)
        coordinatorCACertificate = authority.coordinatorCADER
        log = []
    }

    /// The CA held in the state; a state without a coordinator TLS CA gets one (`added`).
    func authority() throws -> (authority: CertificateAuthority, added: Bool) {
        let root = try Certificate(derEncoded: rootCertificate)
        let rootKey = try P256.Signing.PrivateKey(rawRepresentation: self.rootKey)
        var ca: (key: P256.Signing.PrivateKey, certificate: Certificate)
        var added = false
        if let key = coordinatorCAKey, let certificate = coordinatorCACertificate {
            ca = (try P256.Signing.PrivateKey(rawRepresentation: key), try Certificate(derEncoded: certificate))
        } else {
            ca = try CertificateAuthority.issueCoordinatorCA(root: root, rootKey: rootKey)
            added = true
        }
        let authority = try CertificateAuthority(
            rootKey: rootKey, root: root, intermediateKey: try .init(rawRepresentation: intermediateKey),
            intermediate: try Certificate(derEncoded: intermediateCertificate), coordinatorCAKey: ca.key, coordinatorCA: ca.certificate)
        return (authority, added)
    }

    /// The encoding sealed into the store, in the current format (sorted keys: equal states
    /// encode equally).
    func encoded() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        var current = self
        current.format = Self.currentFormat
        // Strings, integers, byte arrays and nested Codable structs of them always encode.
        return Array(try! encoder.encode(current))
    }

    static func decode(_ bytes: [UInt8]) throws(CoordinatorError) -> CoordinatorState {
        do {
            return try JSONDecoder().decode(CoordinatorState.self, from: Data(bytes))
        } catch {
            throw .storage("the sealed state opened but does not decode as a coordinator state: \(error)")
        }
    }
}

/// One change as it is recorded in the history.
struct HistoryEvent: Sendable {
    var event: String
    var user: String?
    var detail: [String: String]

    init(_ event: String, user: String? = nil, detail: [String: String] = [:]) {
        self.event = event
        self.user = user
        self.detail = detail.filter { !$0.value.isEmpty }
    }
}
