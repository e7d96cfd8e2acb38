import Crypto
import Foundation
import Logging
import Synchronization
import VeilAttestation
import VeilImage
import VeilManifest
import X509

/// The coordinator's state machine: holds the CA and the manifest, verifies activations and
/// provisions services.
///
/// Thread safety: mutable state sits behind one mutex; verification, certificate issuance and
/// rendering run outside it, so activations proceed in parallel on all cores.
public final class Coordinator: Sendable {
    public enum Phase: String, Sendable { case awaitingManifest, accepting }

    /// What is sealed to disk. Keys are raw/DER bytes; `manifest` is the raw manifest.
    struct SealedState: Codable {
        var format = 1
        var generation: UInt64 = 0
        var rootKey: [UInt8]
        var rootCertificate: [UInt8]
        var intermediateKey: [UInt8]
        var intermediateCertificate: [UInt8]
        var manifest: [UInt8]?
        var secrets: [String: SecretValue] = [:]
        var activations: [String: Int] = [:]
        /// Latest protected-file version seen per key secret and logical path ("secret\0path").
        var protectedFiles: [String: ProtectedFileRecord]?
        /// The signed, hash-chained history of changes (see ``AuditLog``).
        var log: [LogEntry]?
        /// A proposed manifest waiting for acknowledgements.
        var pendingUpdate: PendingUpdate?
    }

    struct PendingUpdate: Codable, Equatable {
        var manifest: [UInt8]
        var acknowledgedBy: [String]
    }

    struct ProtectedFileRecord: Codable, Equatable {
        var version: UInt64
        var root: [UInt8]
    }

    struct Mutable {
        var sealed: SealedState
        var manifest: Manifest?
        var nonces: [[UInt8]: Date] = [:]
    }

    public let authority: CertificateAuthority
    let store: any StateStore
    let evidenceProvider: any EvidenceProvider
    let simulationKey: P256.Signing.PublicKey?
    let dcap: DCAPEvidenceVerifier?
    let snpCRLs: [AMDProduct: [UInt8]]
    let logger: Logger
    let state: Mutex<Mutable>

    /// How long an activation nonce stays valid.
    public static let nonceLifetime: TimeInterval = 120
    public static let maximumPendingNonces = 100_000

    /// Loads the sealed state from `store`, or creates a new CA and saves it.
    /// - Parameters:
    ///   - evidenceProvider: produces the coordinator's own evidence.
    ///   - simulationKey: the simulation platform key launchers' simulated evidence must be
    ///     signed by; simulated evidence is accepted only if the manifest also allows it.
    ///   - dcap: verifies Intel SGX/TDX quotes; `nil` refuses them.
    public init(
        store: any StateStore, evidenceProvider: any EvidenceProvider, simulationKey: P256.Signing.PublicKey?,
        dcap: DCAPEvidenceVerifier? = nil, snpCRLs: [AMDProduct: [UInt8]] = [:], logger: Logger
    ) throws {
        self.store = store
        self.dcap = dcap
        self.snpCRLs = snpCRLs
        self.evidenceProvider = evidenceProvider
        self.simulationKey = simulationKey
        self.logger = logger
        var sealed: SealedState
        var manifest: Manifest?
        let loaded: [UInt8]?
        do {
            loaded = try store.load()
        } catch let error as SealedStoreError {
            guard case .cannotUnseal = error, let recoverable = store as? any RecoverableStore, let bytes = recoverable.loadRecovery(),
                let data = try? JSONDecoder().decode(RecoveryData.self, from: Data(bytes))
            else { throw error }
            throw RecoveryNeeded(data: data, reason: error.description)
        }
        if let bytes = loaded {
            sealed = try JSONDecoder().decode(SealedState.self, from: Data(bytes))
            authority = try CertificateAuthority(
                rootKey: try .init(rawRepresentation: sealed.rootKey), root: try Certificate(derEncoded: sealed.rootCertificate),
                intermediateKey: try .init(rawRepresentation: sealed.intermediateKey),
                intermediate: try Certificate(derEncoded: sealed.intermediateCertificate))
            if let raw = sealed.manifest {
                manifest = try Manifest.parse(raw)
            }
        } else {
            authority = try CertificateAuthority.generate()
            sealed = SealedState(
                rootKey: Array(authority.rootKey.rawRepresentation), rootCertificate: authority.rootDER,
                intermediateKey: Array(authority.intermediateKey.rawRepresentation), intermediateCertificate: authority.intermediateDER)
            try Self.save(&sealed, to: store)
        }
        state = Mutex(Mutable(sealed: sealed, manifest: manifest))
        // A recovery finished before this start: record it, then forget the note.
        if let recoverable = store as? any RecoverableStore, let note = recoverable.recoveryNote(consume: false) {
            try state.withLock { mutable throws(CoordinatorError) in try persist(&mutable.sealed, logging: "recovered", user: nil, detail: note) }
            _ = recoverable.recoveryNote(consume: true)
        }
    }

    static func save(_ sealed: inout SealedState, to store: any StateStore) throws {
        sealed.generation += 1
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        try store.save(Array(try encoder.encode(sealed)))
    }

    public var phase: Phase { state.withLock { $0.manifest == nil ? .awaitingManifest : .accepting } }
    public var manifest: Manifest? { state.withLock { $0.manifest } }
    public var isSimulated: Bool { evidenceProvider.isSimulated }

    public var rootCertificatePEM: String { PEM.encode(authority.rootDER, label: "CERTIFICATE") }
    public var chainPEM: String { PEM.encode(authority.intermediateDER, label: "CERTIFICATE") + rootCertificatePEM }

    public func status() -> API.StatusResponse {
        state.withLock { mutable in
            API.StatusResponse(
                state: (mutable.manifest == nil ? Phase.awaitingManifest : .accepting).rawValue,
                manifestDigest: mutable.manifest.map { Hex.encode($0.digest) }, simulated: isSimulated,
                warning: isSimulated ? simulationWarning : nil, activations: mutable.sealed.activations)
        }
    }

    /// Sets the manifest once. Setting the identical bytes again is a no-op; a different
    /// manifest is refused. On any error the state is unchanged.
    /// - Parameter userDefinedSecrets: initial values of the manifest's `UserDefined` secrets.
    @discardableResult
    public func setManifest(_ bytes: [UInt8], userDefinedSecrets: [String: [UInt8]] = [:]) throws(CoordinatorError) -> [UInt8] {
        let manifest: Manifest
        do {
            manifest = try Manifest.parse(bytes)
        } catch {
            throw .invalidManifest(error)
        }
        for (name, value) in userDefinedSecrets {
            try Self.checkUserDefined(manifest.secrets[name], name: name, value: value)
        }
        if let current = self.manifest {
            guard current.digest == manifest.digest, userDefinedSecrets.isEmpty else { throw .manifestAlreadySet }
            return current.digest
        }
        // Generate outside the lock: RSA keys take a while.
        var secrets: [String: SecretValue] = [:]
        do {
            for (name, spec) in manifest.secrets {
                secrets[name] = try SecretGenerator.generate(spec, authority: authority)
            }
            for (name, value) in userDefinedSecrets { secrets[name]?.bytes = value }
        } catch {
            throw .storage("generating secrets: \(error)")
        }
        try state.withLock { mutable throws(CoordinatorError) in
            guard mutable.manifest == nil else {
                if mutable.manifest?.digest == manifest.digest { return }
                throw .manifestAlreadySet
            }
            var sealed = mutable.sealed
            sealed.manifest = bytes
            sealed.secrets = secrets
            sealed.activations = [:]
            try persist(&sealed, logging: "manifestSet", user: nil, detail: [
                    "digest": Hex.encode(manifest.digest), "userDefinedSecrets": userDefinedSecrets.keys.sorted().joined(separator: ","),
                ])
            mutable.sealed = sealed
            mutable.manifest = manifest
        }
        try saveRecoveryData(for: manifest)
        logger.info(
            "manifest set",
            metadata: ["digest": "\(Hex.encode(manifest.digest))", "services": "\(manifest.services.keys.sorted())"]
                .merging(manifest.config.allowSimulation ? ["warning": "\(simulationWarning)"] : [:]) { a, _ in a })
        return manifest.digest
    }

    /// Issues a fresh single-use activation nonce.
    public func issueNonce(now: Date = Date()) throws(CoordinatorError) -> [UInt8] {
        let nonce = SecretGenerator.randomBytes(32)
        try state.withLock { mutable throws(CoordinatorError) in
            if mutable.nonces.count >= Self.maximumPendingNonces {
                mutable.nonces = mutable.nonces.filter { $0.value > now }
                guard mutable.nonces.count < Self.maximumPendingNonces else { throw .tooManyPendingNonces }
            }
            mutable.nonces[nonce] = now + Self.nonceLifetime
        }
        return nonce
    }

    /// The history of changes, oldest first.
    public var log: [LogEntry] { state.withLock { $0.sealed.log ?? [] } }

    /// Appends a signed history entry for `event` to `sealed` and saves it; nothing is kept on failure.
    func persist(_ sealed: inout SealedState, logging event: String, user: String?, detail: [String: String]) throws(CoordinatorError) {
        do {
            try appendLog(&sealed, event, user: user, detail: detail)
            try Self.save(&sealed, to: store)
        } catch {
            throw .storage("\(error)")
        }
    }

    /// Appends a signed entry to `sealed`'s history (saved with it by the caller).
    func appendLog(_ sealed: inout SealedState, _ event: String, user: String?, detail: [String: String]) throws {
        var log = sealed.log ?? []
        try AuditLog.append(to: &log, event: event, user: user, detail: detail.filter { !$0.value.isEmpty }, key: authority.rootKey)
        sealed.log = log
    }

    /// The coordinator's own evidence binding its root certificate, the head of its history
    /// and `nonce`: report data `SHA-256(root DER ‖ log head ‖ nonce)`.
    public func attestation(nonce: [UInt8]) throws(CoordinatorError) -> API.AttestationResponse {
        guard (1...64).contains(nonce.count) else { throw .badRequest("nonce must be 1 to 64 bytes of hex") }
        // Only the newest entry is needed: no copy of the whole history per request.
        let head = state.withLock { $0.sealed.log?.last?.hash } ?? AuditLog.emptyHead
        do {
            let evidence = try evidenceProvider.evidence(reportData: ReportData.binding(authority.rootDER + head, nonce: nonce))
            return API.AttestationResponse(
                evidence: evidence, rootCertificate: rootCertificatePEM, logHead: Hex.encode(head), simulated: isSimulated,
                warning: isSimulated ? simulationWarning : nil)
        } catch {
            throw .storage("cannot produce evidence: \(error)")
        }
    }

    /// Verifies an activation and returns what the service gets. Nothing is issued unless
    /// the nonce is fresh, the evidence verifies and binds the CSR key and nonce, the claims
    /// match the service's package and the activation limit allows it.
    public func activate(_ request: API.ActivationRequest, now: Date = Date()) throws(CoordinatorError) -> API.ActivationResponse {
        guard let nonce = Hex.decode(request.nonce), nonce.count == 32 else { throw .badRequest("nonce must be 32 bytes of hex") }
        // Consume the nonce first: whatever happens next, it cannot be used again.
        let (manifest, nonceValid) = state.withLock { mutable in
            (mutable.manifest, mutable.nonces.removeValue(forKey: nonce).map { $0 > now } ?? false)
        }
        guard let manifest else { throw .noManifest }
        guard nonceValid else { throw .unknownNonce }
        guard let service = manifest.services[request.service] else { throw .unknownService(request.service) }

        let csr: CertificateSigningRequest
        do {
            csr = try CertificateAuthority.parseCSR(Array(request.csr.utf8))
        } catch {
            throw .badRequest(error.description)
        }
        let verifier = Verifier(
            policy: VerificationPolicy(
                allowSimulation: manifest.config.allowSimulation, simulationKey: simulationKey, dcap: dcap,
                allowSNP: manifest.packages.values.contains { $0.kind == .snp }, snpCRLs: snpCRLs))
        let claims: Claims
        do {
            let expected = ReportData.binding(try csr.publicKey.subjectPublicKeyInfoDER, nonce: nonce)
            claims = try verifier.verify(request.evidence, expectedReportData: expected)
        } catch let error as AttestationError {
            logger.warning("activation refused", metadata: ["service": "\(request.service)", "reason": "\(error)"])
            throw .evidenceRejected(error)
        } catch {
            throw .evidenceRejected(.malformedEvidence("\(error)"))
        }
        // Validation guarantees the package exists.
        let package = manifest.packages[service.package]!
        if let reason = package.mismatch(claims) {
            logger.warning("activation refused", metadata: ["service": "\(request.service)", "reason": "\(reason)"])
            throw .packageMismatch(service: request.service, package: service.package, reason: reason)
        }
        if !manifest.config.accepts(claims), let tcb = claims.tcb {
            logger.warning("activation refused", metadata: ["service": "\(request.service)", "tcbStatus": "\(tcb.status.rawValue)"])
            throw .tcbStatusNotAccepted(service: request.service, verdict: tcb)
        }

        let protectedFiles = try checkProtectedFiles(request, service: service)

        try state.withLock { mutable throws(CoordinatorError) in
            let count = mutable.sealed.activations[request.service, default: 0]
            let limited = service.maxActivations > 0
            if limited && count >= service.maxActivations {
                throw .activationLimitReached(service: request.service, limit: service.maxActivations)
            }
            let before = mutable.sealed.protectedFiles ?? [:]
            var recorded = before
            for file in protectedFiles {
                if let previous = recorded[file.key] {
                    if file.record.version < previous.version {
                        throw .protectedFileRollback(path: file.path, recorded: previous.version, presented: file.record.version)
                    }
                    if file.record.version == previous.version && file.record.root != previous.root {
                        throw .protectedFileForked(path: file.path, version: previous.version)
                    }
                }
                recorded[file.key] = file.record
            }
            // Counts of limited services and newer protected-file versions must survive a
            // restart, so they are sealed before anything is released.
            if limited || recorded != before {
                var sealed = mutable.sealed
                sealed.activations[request.service] = count + 1
                sealed.protectedFiles = recorded
                do {
                    try Self.save(&sealed, to: store)
                } catch {
                    throw .storage("\(error)")
                }
                mutable.sealed = sealed
            } else {
                mutable.sealed.activations[request.service] = count + 1
            }
        }

        let leaf: Certificate
        do {
            leaf = try authority.issueLeaf(
                publicKey: csr.publicKey, commonName: request.service, dnsNames: [request.service], validFor: 365 * 86400, now: now)
        } catch {
            throw .storage("issuing certificate: \(error)")
        }
        let leafDER = (try? leaf.derBytes) ?? []
        let secrets = state.withLock { $0.sealed.secrets }
        let resolve = { (reference: Template.Reference) throws -> ReferenceValue in
            switch reference {
            case .secret(let name, let part):
                guard let value = secrets[name] else { throw RenderError.unknownSecret(name) }
                return try value.value(for: part, name: name)
            case .rootCACert: return .der(self.authority.rootDER, pemLabel: "CERTIFICATE")
            case .intermediateCACert: return .der(self.authority.intermediateDER, pemLabel: "CERTIFICATE")
            case .serviceCert: return .der(leafDER, pemLabel: "CERTIFICATE")
            case .servicePrivateKey: preconditionFailure("the service private key is rendered by the launcher")
            }
        }
        let parameters = service.parameters
        var response: API.ActivationResponse
        do {
            response = API.ActivationResponse(
                certificateChain: PEM.encode(leafDER, label: "CERTIFICATE") + PEM.encode(authority.intermediateDER, label: "CERTIFICATE"),
                rootCertificate: rootCertificatePEM,
                files: try parameters.files.mapValues { try $0.render(resolve) },
                env: try parameters.env.mapValues { try $0.render(resolve) },
                argv: try parameters.argv?.map { try $0.render(resolve) },
                simulated: claims.simulated,
                protectedFilesKey: try service.protectedFilesKey.map { name in
                    guard let bytes = secrets[name]?.bytes else { throw RenderError.secretNotSet(name) }
                    return Data(bytes).base64EncodedString()
                })
            if service.allowDiskFiles { response.allowDiskFiles = true }
        } catch {
            throw .renderFailed(service: request.service, reason: "\(error)")
        }
        var metadata: Logger.Metadata = [
            "service": "\(request.service)", "measurement": "\(Hex.encode(claims.measurement))",
        ]
        if claims.simulated { metadata["warning"] = "\(simulationWarning)" }
        logger.info("activated", metadata: metadata)
        return response
    }

    /// Verifies each presented protected-file header with the service's key (so only headers
    /// the key holder wrote can move the recorded version) and returns what to record.
    private func checkProtectedFiles(
        _ request: API.ActivationRequest, service: Manifest.Service
    ) throws(CoordinatorError) -> [(key: String, path: String, record: ProtectedFileRecord)] {
        let presented = request.protectedFiles ?? []
        guard !presented.isEmpty else { return [] }
        guard let keyName = service.protectedFilesKey else {
            throw .protectedFileRejected(path: presented[0].path, reason: "service '\(request.service)' has no ProtectedFilesKey")
        }
        guard let keyBytes = state.withLock({ $0.sealed.secrets[keyName]?.bytes }) else {
            throw .renderFailed(service: request.service, reason: "\(RenderError.secretNotSet(keyName))")
        }
        let secret = SymmetricKey(data: keyBytes)
        var result: [(key: String, path: String, record: ProtectedFileRecord)] = []
        for file in presented {
            guard file.path.hasPrefix("/"), !file.path.contains("\0"), let bytes = Data(base64Encoded: file.header) else {
                throw .badRequest("protected file header for '\(file.path)' is not base64 or the path is not absolute")
            }
            let header: ProtectedFile.Header
            do {
                header = try ProtectedFile.readHeader(Array(bytes), path: file.path, secret: secret).0
            } catch {
                logger.warning("activation refused", metadata: ["service": "\(request.service)", "protectedFile": "\(file.path)", "reason": "\(error)"])
                throw .protectedFileRejected(path: file.path, reason: "\(error)")
            }
            result.append(("\(keyName)\0\(file.path)", file.path, ProtectedFileRecord(version: header.version, root: header.root)))
        }
        return result
    }

    /// Splits the state key for `manifest`'s recovery keys (or removes old recovery data).
    func saveRecoveryData(for manifest: Manifest) throws(CoordinatorError) {
        guard let recoverable = store as? any RecoverableStore, let stateKey = recoverable.stateKey else { return }
        do {
            let data = try RecoveryData.make(stateKey: stateKey, manifest: manifest)
            try recoverable.saveRecovery(data.map { canonicalJSONBytes($0) })
        } catch {
            throw .storage("writing recovery data: \(error)")
        }
    }
}

func canonicalJSONBytes(_ value: some Encodable) -> [UInt8] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
    // The recovery data holds strings and integers only.
    return Array(try! encoder.encode(value))
}
