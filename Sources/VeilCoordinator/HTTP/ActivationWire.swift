import VeilAPI
import VeilCore
import VeilManifest

/// The activation endpoint's mapping between the wire (API.*) and the core's values.
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
    }
}
