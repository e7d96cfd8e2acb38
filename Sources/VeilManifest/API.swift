import VeilAttestation

/// JSON bodies of the coordinator's HTTP API (`/api/v1/…`), shared by server and clients.
public enum API {
    public static let prefix = "/api/v1"
    /// Largest request body any endpoint accepts.
    public static let maximumBodySize = 2 << 20

    /// `POST /api/v1/activation/nonce` response: a single-use nonce the launcher binds into its evidence.
    public struct NonceResponse: Codable, Sendable {
        public var nonce: String
        public init(nonce: String) { self.nonce = nonce }
    }

    /// `POST /api/v1/activation` request.
    public struct ActivationRequest: Codable, Sendable {
        public var service: String
        /// Hex of the nonce from `activation/nonce`.
        public var nonce: String
        /// PKCS#10 request (PEM) for the launcher's key; evidence report data binds
        /// `SHA-256(SubjectPublicKeyInfo DER ‖ nonce)`.
        public var csr: String
        public var evidence: Evidence

        public init(service: String, nonce: String, csr: String, evidence: Evidence) {
            self.service = service
            self.nonce = nonce
            self.csr = csr
            self.evidence = evidence
        }
    }

    /// `POST /api/v1/activation` response.
    public struct ActivationResponse: Codable, Sendable {
        /// PEM: the activation's certificate followed by the intermediate CA.
        public var certificateChain: String
        public var rootCertificate: String
        public var files: [String: RenderedValue]
        public var env: [String: RenderedValue]
        public var argv: [RenderedValue]?
        /// `true` when the activation was accepted on simulated evidence.
        public var simulated: Bool

        public init(
            certificateChain: String, rootCertificate: String, files: [String: RenderedValue], env: [String: RenderedValue],
            argv: [RenderedValue]?, simulated: Bool
        ) {
            self.certificateChain = certificateChain
            self.rootCertificate = rootCertificate
            self.files = files
            self.env = env
            self.argv = argv
            self.simulated = simulated
        }
    }

    /// `GET /api/v1/attestation?nonce=HEX` response. The evidence's report data is
    /// `SHA-256(root certificate DER ‖ nonce)` (see ``ReportData``).
    public struct AttestationResponse: Codable, Sendable {
        public var evidence: Evidence
        public var rootCertificate: String
        public var simulated: Bool
        public var warning: String?

        public init(evidence: Evidence, rootCertificate: String, simulated: Bool, warning: String?) {
            self.evidence = evidence
            self.rootCertificate = rootCertificate
            self.simulated = simulated
            self.warning = warning
        }
    }

    /// `GET /api/v1/status` response.
    public struct StatusResponse: Codable, Sendable {
        /// `awaitingManifest` or `accepting`.
        public var state: String
        public var manifestDigest: String?
        public var simulated: Bool
        public var warning: String?
        public var activations: [String: Int]

        public init(state: String, manifestDigest: String?, simulated: Bool, warning: String?, activations: [String: Int]) {
            self.state = state
            self.manifestDigest = manifestDigest
            self.simulated = simulated
            self.warning = warning
            self.activations = activations
        }
    }

    /// `POST /api/v1/manifest` response.
    public struct ManifestSetResponse: Codable, Sendable {
        public var digest: String
        public init(digest: String) { self.digest = digest }
    }

    /// Every error response: `{"error": {"code": …, "message": …, "problems": […]}}`.
    public struct ErrorResponse: Codable, Sendable {
        public struct Body: Codable, Sendable {
            public var code: String
            public var message: String
            /// Manifest validation problems as `PATH: MESSAGE`.
            public var problems: [String]?
        }

        public var error: Body

        public init(code: String, message: String, problems: [String]? = nil) {
            error = Body(code: code, message: message, problems: problems)
        }
    }
}
