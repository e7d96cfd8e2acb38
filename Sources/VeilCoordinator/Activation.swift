import Foundation
import VeilAttestation
import VeilManifest

/// What a launcher presents to be activated, as the coordinator core takes it: the bytes
/// themselves, every wire encoding (hex, base64, JSON) already undone at the HTTP edge.
public struct ActivationAttempt: Sendable {
    /// The manifest service the launcher wants to run as.
    public var service: String
    /// The nonce the coordinator issued for this attempt.
    public var nonce: [UInt8]
    /// The PKCS#10 request (PEM) for the launcher's key; the evidence binds its key and the nonce.
    public var csrPEM: [UInt8]
    public var evidence: Evidence
    /// Headers of the protected files the launcher is about to open (image launches).
    public var protectedFiles: [PresentedProtectedFile]

    public init(service: String, nonce: [UInt8], csrPEM: [UInt8], evidence: Evidence, protectedFiles: [PresentedProtectedFile] = []) {
        self.service = service
        self.nonce = nonce
        self.csrPEM = csrPEM
        self.evidence = evidence
        self.protectedFiles = protectedFiles
    }
}

/// What an accepted activation gives the service: its certificate chain under the
/// coordinator's root, its rendered parameters and the keys the manifest releases to it.
///
/// Invariant: only ``Coordinator/activate(_:now:)`` makes one, after every check passed and
/// any quota or protected-file record committed.
public struct Activation: Sendable {
    public let service: String
    /// The claims the evidence verified to.
    public let claims: Claims
    /// DER: the service's certificate, then the intermediate CA that issued it.
    public let certificateChain: [[UInt8]]
    /// DER: the coordinator's root CA.
    public let rootCertificate: [UInt8]
    /// Absolute path → content (the service key filled in by the launcher).
    public let files: [String: RenderedValue]
    public let env: [String: RenderedValue]
    /// When non-nil, replaces the program's argv (argv[0] included).
    public let argv: [RenderedValue]?
    /// The key that opens the service's protected files, when it has one.
    public let protectedFilesKey: [UInt8]?
    /// The manifest lets the files go to disk filesystems (`AllowDiskFiles`).
    public let allowDiskFiles: Bool
    /// The service's mesh proxying, when the manifest gives it one.
    public let mesh: MeshPolicy?
    /// The certificate's lifetime when the service's agent renews it (nil: a year, no agent).
    public let certificateLifetime: CertificateLifetime?
    /// The signal the agent sends the app after rewriting its files.
    public let reload: ReloadSignal?
    /// The Unix socket where the agent serves the SPIFFE Workload API (nil: none).
    public let workloadAPISocket: String?

    /// `true` when accepted on simulated evidence (no confidentiality).
    public var simulated: Bool { claims.simulated }

    init(
        name: String, claims: Claims, certificateChain: [[UInt8]], rootCertificate: [UInt8], service: Manifest.Service,
        render: (Template) throws -> RenderedValue, protectedFilesKey: [UInt8]?
    ) rethrows {
        self.service = name
        self.claims = claims
        self.certificateChain = certificateChain
        self.rootCertificate = rootCertificate
        files = try service.parameters.files.mapValues(render)
        env = try service.parameters.env.mapValues(render)
        argv = try service.parameters.argv?.map(render)
        self.protectedFilesKey = protectedFilesKey
        allowDiskFiles = service.allowDiskFiles
        mesh = service.mesh
        certificateLifetime = service.certificateLifetime
        reload = service.reload
        workloadAPISocket = service.workloadAPISocket
    }
}
