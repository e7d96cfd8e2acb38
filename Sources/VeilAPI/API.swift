import VeilAttestation
import VeilCore
import VeilManifest

/// JSON bodies of the coordinator's HTTP API (`/api/v1/…`), shared by server and clients.
public enum API {
    public static let prefix = "/api/v1"
    /// Largest request body any endpoint accepts.
    public static let maximumBodySize = 2 << 20

    /// `POST /api/v1/svid/jwt` (mesh listener, the service's activation certificate as TLS client certificate).
    public struct JWTSVIDRequest: Codable, Sendable {
        public var audience: [String]
        public init(audience: [String]) { self.audience = audience }
    }

    /// `POST /api/v1/activation/renew` (mesh listener, the service's current certificate as TLS
    /// client certificate): a PKCS#10 request (PEM) for a new key.
    public struct RenewalRequest: Codable, Sendable {
        public var csr: String
        public init(csr: String) { self.csr = csr }
    }

    /// A renewed certificate and the service's files rendered again.
    public struct RenewalResponse: Codable, Sendable {
        /// PEM: the new certificate followed by the intermediate CA.
        public var certificateChain: String
        public var files: [String: RenderedValue]
        /// The signal to send the app after rewriting its files (`SIGHUP`, …).
        public var reload: ReloadSignal?
        public init(certificateChain: String, files: [String: RenderedValue], reload: ReloadSignal?) {
            self.certificateChain = certificateChain
            self.files = files
            self.reload = reload
        }
    }

    /// `GET /api/v1/activation/files?after=REVISION` (mesh listener, the current certificate as
    /// TLS client certificate): the service's files as they render now, answered once the
    /// coordinator's state moved past `after` (at once without it).
    public struct ServiceFilesResponse: Codable, Sendable {
        /// Opaque and increasing: what to send as `after` next.
        public var revision: Int64
        public var files: [String: RenderedValue]
        public var reload: ReloadSignal?
        public init(revision: Int64, files: [String: RenderedValue], reload: ReloadSignal?) {
            self.revision = revision
            self.files = files
            self.reload = reload
        }
    }

    /// In an activation's answer when the service's certificate is renewed by a resident agent.
    public struct RenewalPolicy: Codable, Sendable, Equatable {
        public var lifetimeSeconds: Int
        public var reload: ReloadSignal?
        /// Where the agent serves the SPIFFE Workload API.
        public var workloadAPISocket: String?
        public init(lifetimeSeconds: Int, reload: ReloadSignal?, workloadAPISocket: String? = nil) {
            self.lifetimeSeconds = lifetimeSeconds
            self.reload = reload
            self.workloadAPISocket = workloadAPISocket
        }
    }

    /// A JWT-SVID: `sub` the service's SPIFFE ID, `aud` the request's, ES256, five minutes.
    public struct JWTSVIDResponse: Codable, Sendable {
        public var token: String
        public var spiffeID: String
        /// RFC 3339.
        public var expiresAt: String
        public init(token: String, spiffeID: String, expiresAt: String) {
            self.token = token
            self.spiffeID = spiffeID
            self.expiresAt = expiresAt
        }
    }

    /// `POST /api/v1/activation/nonce` response: a single-use nonce the launcher binds into its evidence.
    public struct NonceResponse: Codable, Sendable {
        public var nonce: String
        /// Where the service asked for (`?service=NAME`) gets files, so its launcher can check
        /// them before it activates; absent for an unknown service or before a manifest. The
        /// manifest is public, so this tells nothing new.
        public var provisioning: ProvisioningTargets?
        public init(nonce: String, provisioning: ProvisioningTargets? = nil) {
            self.nonce = nonce
            self.provisioning = provisioning
        }
    }

    /// The paths a service's activation writes, and whether they may be on disk.
    public struct ProvisioningTargets: Codable, Sendable, Equatable {
        public var files: [String]
        public var allowDiskFiles: Bool
        public init(files: [String], allowDiskFiles: Bool) {
            self.files = files
            self.allowDiskFiles = allowDiskFiles
        }
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
        /// Headers of the protected files the launcher is about to open (image launches).
        public var protectedFiles: [ProtectedFileHeader]?

        public init(service: String, nonce: String, csr: String, evidence: Evidence, protectedFiles: [ProtectedFileHeader]? = nil) {
            self.service = service
            self.nonce = nonce
            self.csr = csr
            self.evidence = evidence
            self.protectedFiles = protectedFiles
        }
    }

    /// A protected file's authenticated header, which the coordinator verifies with the
    /// service's key and checks against the version it recorded for `path` (rollback).
    public struct ProtectedFileHeader: Codable, Sendable, Equatable {
        /// The file's logical (absolute) path.
        public var path: String
        /// The file's header bytes (base64 on the wire).
        public var header: Base64Bytes

        public init(path: String, header: Base64Bytes) {
            self.path = path
            self.header = header
        }
    }

    /// `POST /api/v1/manifest/with-secrets`: the manifest plus the initial values of its
    /// `UserDefined` secrets, set together and once.
    public struct ManifestSetRequest: Codable, Sendable {
        /// The manifest's exact bytes.
        public var manifest: Base64Bytes
        /// Secret name → value.
        public var secrets: [String: Base64Bytes]

        public init(manifest: Base64Bytes, secrets: [String: Base64Bytes]) {
            self.manifest = manifest
            self.secrets = secrets
        }
    }

    /// `POST /api/v1/peer/state-key` (mesh listener): a replica without the state key asks a
    /// peer for it. Its evidence binds `"veil-peer-request\0" ‖ publicKey` and `nonce`.
    public struct StateKeyRequest: Codable, Sendable {
        /// The requester's ephemeral P-256 key (x9.63), the HPKE recipient.
        public var publicKey: Base64Bytes
        /// 32 random bytes.
        public var nonce: Base64Bytes
        public var evidence: Evidence

        public init(publicKey: Base64Bytes, nonce: Base64Bytes, evidence: Evidence) {
            self.publicKey = publicKey
            self.nonce = nonce
            self.evidence = evidence
        }
    }

    /// The state key sealed to the requester (HPKE, DHKEM(P-256), HKDF-SHA256, AES-256-GCM),
    /// and the answering replica's evidence binding `"veil-peer-response\0" ‖ SHA-256(publicKey)
    /// ‖ encapsulatedKey ‖ ciphertext` and the request's nonce: mutual attestation.
    public struct StateKeyResponse: Codable, Sendable {
        public var encapsulatedKey: Base64Bytes
        public var ciphertext: Base64Bytes
        public var evidence: Evidence

        public init(encapsulatedKey: Base64Bytes, ciphertext: Base64Bytes, evidence: Evidence) {
            self.encapsulatedKey = encapsulatedKey
            self.ciphertext = ciphertext
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
        /// The key that opens the service's protected files, when it has one.
        public var protectedFilesKey: Base64Bytes?
        /// The manifest lets this service's files go to disk filesystems (`AllowDiskFiles`);
        /// otherwise the launcher writes them only to memory filesystems.
        public var allowDiskFiles: Bool?
        /// The service's mesh proxying, when the manifest gives it one.
        public var mesh: MeshPolicy?
        /// Set when the manifest gives the service a `CertificateLifetime`: the launcher leaves
        /// an agent beside the app that renews the certificate.
        public var renewal: RenewalPolicy?

        public init(
            certificateChain: String, rootCertificate: String, files: [String: RenderedValue], env: [String: RenderedValue],
            argv: [RenderedValue]?, simulated: Bool, protectedFilesKey: Base64Bytes? = nil
        ) {
            self.protectedFilesKey = protectedFilesKey
            self.certificateChain = certificateChain
            self.rootCertificate = rootCertificate
            self.files = files
            self.env = env
            self.argv = argv
            self.simulated = simulated
        }
    }

    /// `GET /api/v1/attestation?nonce=HEX` response. The evidence's report data is
    /// `SHA-256(root certificate DER ‖ log head ‖ nonce)` (see ``ReportData``).
    public struct AttestationResponse: Codable, Sendable {
        public var evidence: Evidence
        public var rootCertificate: String
        /// Hex hash of the newest history entry (``AuditLog``), bound into the evidence.
        public var logHead: String
        public var simulated: Bool
        public var warning: String?
        /// Intel's collateral for SGX/TDX evidence, when the coordinator holds it: signed by
        /// Intel, verified by the client against Intel's root like collateral from anywhere.
        public var collateral: DCAPCollateralDocument?

        public init(evidence: Evidence, rootCertificate: String, logHead: String, simulated: Bool, warning: String?, collateral: DCAPCollateralDocument? = nil) {
            self.evidence = evidence
            self.rootCertificate = rootCertificate
            self.logHead = logHead
            self.simulated = simulated
            self.warning = warning
            self.collateral = collateral
        }
    }

    /// DCAP collateral in the layout Intel PCS/PCCS deliver and the shared vectors store:
    /// `tcb_info` and `qe_identity` are the exact JSON text Intel signed, signatures and CRLs
    /// hex, issuer chains PEM.
    public struct DCAPCollateralDocument: Codable, Sendable {
        public var tcbInfo: String
        public var tcbInfoSignature: String
        public var tcbInfoIssuerChain: String
        public var qeIdentity: String
        public var qeIdentitySignature: String
        public var qeIdentityIssuerChain: String
        public var rootCACRL: String
        public var pckCRL: String
        public var pckCRLIssuerChain: String

        enum CodingKeys: String, CodingKey {
            case tcbInfo = "tcb_info", tcbInfoSignature = "tcb_info_signature", tcbInfoIssuerChain = "tcb_info_issuer_chain"
            case qeIdentity = "qe_identity", qeIdentitySignature = "qe_identity_signature", qeIdentityIssuerChain = "qe_identity_issuer_chain"
            case rootCACRL = "root_ca_crl", pckCRL = "pck_crl", pckCRLIssuerChain = "pck_crl_issuer_chain"
        }

        public init(_ collateral: DCAPCollateral) {
            func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }
            tcbInfo = text(collateral.tcbInfo)
            tcbInfoSignature = Hex.encode(collateral.tcbInfoSignature)
            tcbInfoIssuerChain = text(collateral.tcbInfoIssuerChain)
            qeIdentity = text(collateral.qeIdentity)
            qeIdentitySignature = Hex.encode(collateral.qeIdentitySignature)
            qeIdentityIssuerChain = text(collateral.qeIdentityIssuerChain)
            rootCACRL = Hex.encode(collateral.rootCACRL)
            pckCRL = Hex.encode(collateral.pckCRL)
            pckCRLIssuerChain = text(collateral.pckCRLIssuerChain)
        }

        /// The collateral, or why the document is malformed (hex fields that are not hex).
        public func collateral() throws(DCAPError) -> DCAPCollateral {
            func hex(_ text: String, _ field: String) throws(DCAPError) -> [UInt8] {
                guard let bytes = Hex.decode(text) else { throw .malformedCollateral("collateral field '\(field)' is not hex") }
                return bytes
            }
            return DCAPCollateral(
                tcbInfo: Array(tcbInfo.utf8), tcbInfoSignature: try hex(tcbInfoSignature, "tcb_info_signature"),
                tcbInfoIssuerChain: Array(tcbInfoIssuerChain.utf8), qeIdentity: Array(qeIdentity.utf8),
                qeIdentitySignature: try hex(qeIdentitySignature, "qe_identity_signature"), qeIdentityIssuerChain: Array(qeIdentityIssuerChain.utf8),
                rootCACRL: try hex(rootCACRL, "root_ca_crl"), pckCRL: try hex(pckCRL, "pck_crl"), pckCRLIssuerChain: Array(pckCRLIssuerChain.utf8))
        }
    }

    /// `GET /api/v1/status` response.
    public struct StatusResponse: Codable, Sendable {
        /// `awaitingManifest` or `accepting` (`recovery` while the state key is missing).
        public var state: String
        public var manifestDigest: String?
        public var simulated: Bool
        public var warning: String?
        /// Activations: exact counts of services with MaxActivations (shared by all replicas),
        /// this replica's counts of the others.
        public var activations: [String: Int]
        /// The state's generation (grows with every change; equal on replicas that are in sync).
        public var generation: UInt64?
        public var historyLength: Int?
        /// Why the coordinator is in recovery.
        public var reason: String?
        /// Veil's version on this replica (`veil --version` prints the client's).
        public var version: String?
        /// This replica's TEE identity as `--expect` takes it (measurement, RTMRs, …).
        public var identity: String?
        /// Activated services that new Intel collateral makes their package refuse on their
        /// platform: each is refused at its next activation (absent when there are none).
        public var tcbWarnings: [String]?

        public init(state: String, manifestDigest: String?, simulated: Bool, warning: String?, activations: [String: Int]) {
            self.state = state
            self.manifestDigest = manifestDigest
            self.simulated = simulated
            self.warning = warning
            self.activations = activations
        }
    }

    /// `PUT /api/v1/secrets/{name}` request.
    public struct SecretSetRequest: Codable, Sendable {
        public var value: Base64Bytes
        public init(value: Base64Bytes) { self.value = value }
    }

    /// One secret in a `GET /api/v1/secrets?name=…` response: `value` for plain and
    /// symmetric-key secrets (base64; absent while a UserDefined secret is unset), PEM parts
    /// for certificate secrets.
    public struct SecretContent: Codable, Sendable, Equatable {
        public var value: Base64Bytes?
        public var certificate: String?
        public var privateKey: String?
        public var publicKey: String?

        public init(value: Base64Bytes?, certificate: String?, privateKey: String?, publicKey: String?) {
            self.value = value
            self.certificate = certificate
            self.privateKey = privateKey
            self.publicKey = publicKey
        }
    }

    /// `GET /api/v1/update` and the answer to proposing or acknowledging an update.
    public struct UpdateStatus: Codable, Sendable, Equatable {
        /// Hex SHA-256 of the pending manifest, if any.
        public var pending: String?
        public var acknowledgedBy: [String]
        /// Acknowledgements the current manifest requires.
        public var required: Int
        /// Whether this request applied the update.
        public var applied: Bool

        public init(pending: String?, acknowledgedBy: [String], required: Int, applied: Bool) {
            self.pending = pending
            self.acknowledgedBy = acknowledgedBy
            self.required = required
            self.applied = applied
        }
    }

    /// `GET /api/v1/recovery` (recovery state only): the encrypted shares.
    public struct RecoveryInfo: Codable, Sendable {
        public struct Share: Codable, Sendable {
            public var name: String
            public var keyFingerprint: String
            public var kind: String
            /// Empty for RSA.
            public var encapsulatedKey: Base64Bytes
            public var ciphertext: Base64Bytes

            public init(name: String, keyFingerprint: String, kind: String, encapsulatedKey: Base64Bytes, ciphertext: Base64Bytes) {
                self.name = name
                self.keyFingerprint = keyFingerprint
                self.kind = kind
                self.encapsulatedKey = encapsulatedKey
                self.ciphertext = ciphertext
            }
        }
        public var threshold: Int
        /// Names of the keys whose shares arrived.
        public var received: [String]
        public var shares: [Share]

        public init(threshold: Int, received: [String], shares: [Share]) {
            self.threshold = threshold
            self.received = received
            self.shares = shares
        }
    }

    /// `POST /api/v1/recovery` request: a decrypted share.
    public struct RecoverySubmission: Codable, Sendable {
        public var name: String
        /// The decrypted share.
        public var share: Base64Bytes

        public init(name: String, share: Base64Bytes) {
            self.name = name
            self.share = share
        }
    }

    public struct RecoveryStatus: Codable, Sendable, Equatable {
        public var received: Int
        public var threshold: Int
        public var recovered: Bool

        public init(received: Int, threshold: Int, recovered: Bool) {
            self.received = received
            self.threshold = threshold
            self.recovered = recovered
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
