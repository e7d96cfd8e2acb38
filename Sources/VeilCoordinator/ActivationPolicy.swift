import Crypto
import FoundationEssentials
import VeilAttestation
import VeilImageFormat
import VeilManifest

/// A protected file's header as a launcher presents it: the path it was sealed for and the
/// header bytes (decoded from the wire at the edge).
public struct PresentedProtectedFile: Sendable, Equatable {
    public var path: String
    public var header: [UInt8]

    public init(path: String, header: [UInt8]) {
        self.path = path
        self.header = header
    }
}

/// A protected-file version to record once the activation commits.
struct ProtectedFileChange: Sendable, Equatable {
    /// `KEY-NAME NUL PATH`: files sealed under different keys are separate histories.
    var key: String
    var path: String
    var record: CoordinatorState.ProtectedFileRecord
}

/// What an activation (or a KBS release) that passed every rule goes on to: the quota,
/// versions and history entries to commit, then rendering.
struct ActivationDecision: Sendable {
    var serviceName: String
    var service: Manifest.Service
    var protectedFiles: [ProtectedFileChange]
    /// Entries for the signed history, written only if this decision commits (KBS releases).
    var history: [HistoryEvent] = []

    /// Whether the activation changes stored state (a quota to count, versions or history to record).
    var needsTransaction: Bool { service.maxActivations > 0 || !protectedFiles.isEmpty || !history.isEmpty }
}

/// The activation rules on verified evidence, as a pure function: no I/O, logging, metrics or
/// clock. The coordinator sequences nonce and evidence verification → ``evaluate`` → one
/// `transact` (quota, versions) → rendering, and does the logging around it.
enum ActivationPolicy {
    /// The service the manifest lists under `name`: also checked before evidence is verified,
    /// so an unknown service costs no verification.
    static func service(_ name: String, in manifest: Manifest) throws(CoordinatorError) -> Manifest.Service {
        guard let service = manifest.services[name] else { throw .unknownService(name) }
        return service
    }

    /// - Parameters:
    ///   - claims: what the evidence verified to, already bound to the CSR key and nonce.
    ///   - secrets: the stored secrets (the service's protected-files key among them).
    static func evaluate(
        service name: String, claims: Claims, protectedFiles presented: [PresentedProtectedFile], manifest: Manifest,
        secrets: [String: SecretValue]
    ) throws(CoordinatorError) -> ActivationDecision {
        let service = try service(name, in: manifest)
        // Validation guarantees the package exists.
        let package = manifest.packages[service.package]!
        do {
            try package.check(claims)
        } catch {
            throw .packageMismatch(service: name, package: service.package, reason: error.description)
        }
        if let refusal = manifest.tcbRefusal(of: claims, package: service.package) {
            throw .tcbStatusNotAccepted(service: name, package: service.package, refusal: refusal)
        }
        let changes = try protectedFileChanges(presented, service: service, name: name, secrets: secrets)
        return ActivationDecision(serviceName: name, service: service, protectedFiles: changes)
    }

    /// Verifies each presented header with the service's key (only headers the key holder
    /// wrote can move a recorded version) and returns what to record.
    static func protectedFileChanges(
        _ presented: [PresentedProtectedFile], service: Manifest.Service, name: String, secrets: [String: SecretValue]
    ) throws(CoordinatorError) -> [ProtectedFileChange] {
        guard let first = presented.first else { return [] }
        guard let keyName = service.protectedFilesKey else {
            throw .protectedFileRejected(path: first.path, reason: "service '\(name)' has no ProtectedFilesKey")
        }
        guard let keyBytes = secrets[keyName]?.bytes else {
            throw .renderFailed(service: name, reason: "\(RenderError.secretNotSet(keyName))")
        }
        let secret = SymmetricKey(data: keyBytes)
        var changes: [ProtectedFileChange] = []
        for file in presented {
            guard file.path.hasPrefix("/"), !file.path.contains("\0") else {
                throw .badRequest("protected file path '\(file.path)' is not absolute or contains a NUL byte")
            }
            let header: ProtectedFile.Header
            do {
                header = try ProtectedFile.readHeader(file.header, path: file.path, secret: secret).0
            } catch {
                throw .protectedFileRejected(path: file.path, reason: "\(error)")
            }
            changes.append(ProtectedFileChange(
                key: "\(keyName)\0\(file.path)", path: file.path, record: CoordinatorState.ProtectedFileRecord(version: header.version, root: header.root)))
        }
        return changes
    }
}
