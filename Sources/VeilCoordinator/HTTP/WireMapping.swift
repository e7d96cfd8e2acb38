import FoundationEssentials
import VeilAPI
import VeilAttestation
import VeilCore
import VeilManifest

/// The mapping between the wire (API.*) and the core's values: the only place the
/// coordinator builds or reads `API` types besides the routes themselves.
extension ActivationAttempt {
    /// Undoes the wire encodings; a nonce that is not hex is a malformed request (400).
    public init(_ request: API.ActivationRequest) throws(CoordinatorError) {
        guard let nonce = Hex.decode(request.nonce) else { throw .badRequest("nonce must be hex") }
        self.init(
            service: request.service, nonce: nonce, csrPEM: Array(request.csr.utf8), evidence: request.evidence,
            protectedFiles: (request.protectedFiles ?? []).map { PresentedProtectedFile(path: $0.path, header: $0.header.bytes) })
    }
}

extension API.ActivationResponse {
    public init(_ activation: Activation) {
        self.init(
            certificateChain: activation.certificateChain.map { PEM.encode($0, label: "CERTIFICATE") }.joined(),
            rootCertificate: PEM.encode(activation.rootCertificate, label: "CERTIFICATE"),
            files: activation.files, env: activation.env, argv: activation.argv, simulated: activation.simulated,
            protectedFilesKey: activation.protectedFilesKey.map(Base64Bytes.init))
        if activation.allowDiskFiles { allowDiskFiles = true }
        mesh = activation.mesh
        renewal = activation.certificateLifetime.map { API.RenewalPolicy(lifetimeSeconds: $0.seconds, reload: activation.reload, workloadAPISocket: activation.workloadAPISocket) }
    }
}

extension API.RenewalResponse {
    public init(_ renewal: Renewal) {
        self.init(
            certificateChain: renewal.certificateChain.map { PEM.encode($0, label: "CERTIFICATE") }.joined(), files: renewal.files,
            reload: renewal.reload)
    }
}

extension API.AttestationResponse {
    public init(_ answer: CoordinatorEvidence) {
        self.init(
            evidence: answer.evidence, rootCertificate: PEM.encode(answer.rootCertificate, label: "CERTIFICATE"),
            logHead: Hex.encode(answer.logHead), simulated: answer.simulated, warning: answer.simulated ? simulationWarning : nil,
            collateral: answer.collateral.map { API.DCAPCollateralDocument($0) })
    }
}

extension API.StatusResponse {
    public init(_ status: CoordinatorStatus) {
        self.init(
            state: status.phase.rawValue, manifestDigest: status.manifestDigest.map(Hex.encode), simulated: status.simulated,
            warning: status.simulated ? simulationWarning : nil, activations: status.activations)
        generation = status.generation
        historyLength = status.historyLength
        reason = status.reason
        version = status.version
        identity = status.identity
        tcbWarnings = status.tcbWarnings
    }
}

extension API.UpdateStatus {
    public init(_ progress: UpdateProgress) {
        self.init(
            pending: progress.pendingDigest.map(Hex.encode), acknowledgedBy: progress.acknowledgedBy, required: progress.required,
            applied: progress.applied)
    }
}

extension API.SecretContent {
    public init(_ value: SecretValue) {
        self.init(
            value: value.bytes.map(Base64Bytes.init),
            certificate: value.certificate.map { PEM.encode($0, label: "CERTIFICATE") },
            privateKey: value.privateKey.map { PEM.encode($0, label: "PRIVATE KEY") },
            publicKey: value.publicKey.map { PEM.encode($0, label: "PUBLIC KEY") })
    }
}

extension API.RecoveryInfo {
    public init(_ offer: RecoveryOffer) {
        self.init(
            threshold: offer.threshold, received: offer.received,
            shares: offer.shares.map {
                // RecoveryData.parse refused shares whose fields are not base64.
                .init(name: $0.name, keyFingerprint: $0.keyFingerprint, kind: $0.kind.rawValue,
                      encapsulatedKey: Base64Bytes(Data(base64Encoded: $0.encapsulatedKey) ?? Data()),
                      ciphertext: Base64Bytes(Data(base64Encoded: $0.ciphertext) ?? Data()))
            })
    }
}

extension API.RecoveryStatus {
    public init(_ progress: RecoveryProgress) {
        self.init(received: progress.received, threshold: progress.threshold, recovered: progress.recovered)
    }
}

extension API.ProvisioningTargets {
    public init(_ service: Manifest.Service) {
        self.init(files: service.parameters.files.keys.sorted(), allowDiskFiles: service.allowDiskFiles)
    }
}

extension API.StateKeyResponse {
    init(_ sealed: SealedStateKey) {
        self.init(encapsulatedKey: Base64Bytes(sealed.encapsulatedKey), ciphertext: Base64Bytes(sealed.ciphertext), evidence: sealed.evidence)
    }
}

extension API.ServiceFilesResponse {
    public init(_ answer: ServiceFiles) {
        self.init(revision: answer.revision, files: answer.files, reload: answer.reload)
    }
}
