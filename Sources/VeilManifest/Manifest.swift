import Crypto
import VeilAttestation

/// A validated Veil manifest: which software may run (packages), as what (services), with
/// which secrets, under which settings.
///
/// Invariant: every reference inside a `Manifest` resolves (services name existing packages,
/// templates name existing secrets with a filter that suits them); only
/// ``Manifest/parse(_:)`` creates one.
public struct Manifest: Sendable, Equatable {
    public var packages: [String: Package]
    public var services: [String: Service]
    public var secrets: [String: SecretSpec]
    public var config: Config
    /// Who may manage the coordinator, and how (see ``allows(_:_:on:)``).
    public var users: [String: User] = [:]
    public var roles: [String: Role] = [:]
    /// Holders who can together restore the state key (see `Config.recoveryThreshold`).
    public var recoveryKeys: [String: RecoveryKey] = [:]
    /// The exact bytes the manifest was parsed from; `manifest get` returns these.
    public var raw: [UInt8]
    /// `SHA-256` of ``raw``.
    public var digest: [UInt8] { Array(SHA256.hash(data: raw)) }

    public struct Config: Sendable, Equatable {
        /// Accept simulated evidence. Development only: simulation gives no confidentiality.
        public var allowSimulation: Bool = false
        /// Intel TCB verdicts an SGX/TDX activation may have unless its package says otherwise
        /// (default: `UpToDate` only, any advisories).
        public internal(set) var tcb = TCBAcceptance()
        /// Users (with `UpdateManifest`) who must acknowledge a manifest update before it
        /// applies; nil means all of them.
        public var updateAcknowledgements: Int?
        /// Recovery shares needed to restore the state key; nil means all of them.
        public var recoveryThreshold: Int?
        /// Packages a coordinator replica's evidence may match (besides the answering
        /// replica's own measurement) to be handed the state key: how a new coordinator
        /// version joins a running deployment.
        public var coordinatorPackages: [String] = []
        /// The SPIFFE trust domain of the services' identities; nil: `COORDINATOR-ID.veil`.
        public var trustDomain: String?

        /// `true` when claims carry no TCB status or one the manifest's default accepts.
        public func accepts(_ claims: Claims) -> Bool {
            guard let verdict = claims.tcb else { return true }
            return tcb.refusal(of: verdict) == nil
        }
    }

    public struct Service: Sendable, Equatable {
        public var package: String
        /// 0 means unlimited.
        public var maxActivations: Int
        public var parameters: Parameters
        /// The secret (256-bit symmetric key) that opens the service image's protected files;
        /// released to the launcher only at activation, after the coordinator checked the
        /// files' versions against the ones it recorded.
        public var protectedFilesKey: String? = nil
        /// Provisioned files may be written to disk filesystems, where whoever reads the disk
        /// reads them too. Off by default: files go only to tmpfs/ramfs.
        public var allowDiskFiles = false
        /// Mutual-TLS proxying in front of and out of the app (nil: none).
        public var mesh: MeshPolicy? = nil
        /// Access over the Confidential Containers key-broker protocol (nil: none).
        public var kbs: KBSAccess? = nil
        /// Names of the coordinator's transit keys (Vault's transit API) this service may
        /// encrypt and decrypt with, authenticated by its activation certificate.
        public var transitKeys: [String] = []
        /// How long the service's activation certificate lasts. Set: the launcher leaves a
        /// resident agent beside the app that renews it at half-life (nil: a year, no agent).
        public var certificateLifetime: CertificateLifetime? = nil
        /// The signal the agent sends the app after it rewrote provisioned files (nil: none).
        public var reload: ReloadSignal? = nil
        /// Where the agent serves the SPIFFE Workload API (a Unix socket path; the app gets
        /// `SPIFFE_ENDPOINT_SOCKET`). Needs a ``certificateLifetime``.
        public var workloadAPISocket: String? = nil
    }

    public struct Parameters: Sendable, Equatable {
        /// Absolute path → template.
        public var files: [String: Template] = [:]
        public var env: [String: Template] = [:]
        /// When non-nil, replaces the launched program's argv (argv[0] included).
        public var argv: [Template]? = nil
    }
}

/// How a secret is made and what it holds.
public struct SecretSpec: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable {
        case certECDSA = "cert-ecdsa"
        case certRSA = "cert-rsa"
        case certEd25519 = "cert-ed25519"
        case symmetricKey = "symmetric-key"
        case plain

        public var isCertificate: Bool {
            switch self {
            case .certECDSA, .certRSA, .certEd25519: return true
            case .symmetricKey, .plain: return false
            }
        }
    }

    public struct CertificateSpec: Sendable, Equatable {
        public var commonName: String
        public var organization: String?
        public var dnsNames: [String] = []
        public var ipAddresses: [String] = []
        public var validForDays: Int = 365
    }

    public var kind: Kind
    /// Key size in bits for keys and certificates, length in bytes for `plain`.
    public var size: Int
    public var userDefined: Bool
    public var certificate: CertificateSpec?
}
