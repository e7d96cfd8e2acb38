import VeilAttestation

/// An acceptable identity for a TEE: one case per TEE, each holding exactly the fields that
/// TEE's evidence can be held to.
///
/// Invariant: only ``Manifest/parse(_:)`` makes packages from a document, and it refuses a
/// field another TEE owns (an `RTMR1` on an snp package is a problem, not ignored).
public enum Package: Sendable, Equatable {
    case simulated(EnclaveIdentity)
    case sgx(EnclaveIdentity)
    case tdx(TDIdentity)
    case snp(SNPIdentity)

    public var kind: TEEKind {
        switch self {
        case .simulated: return .simulated
        case .sgx: return .sgx
        case .tdx: return .tdx
        case .snp: return .snp
        }
    }

    /// The minimum security version an enclave package states (what `veil package update`
    /// raises); `nil` for confidential VMs, whose identity has none.
    public var securityVersion: UInt16? {
        switch self {
        case .simulated(let enclave), .sgx(let enclave): return enclave.securityVersion
        case .tdx, .snp: return nil
        }
    }

    /// The container image measurement a confidential VM's launcher must have bound (TDX, SNP).
    public var imageMeasurement: [UInt8]? {
        switch self {
        case .simulated, .sgx: return nil
        case .tdx(let td): return td.imageMeasurement
        case .snp(let guest): return guest.imageMeasurement
        }
    }
}

/// An SGX enclave's identity, or the simulated TEE's (which mimics it): a measurement, or a
/// signer with product and minimum version.
public struct EnclaveIdentity: Sendable, Equatable {
    /// Required exact measurement (MRENCLAVE; the simulated launch measurement), when set.
    public var measurement: [UInt8]?
    /// Required signer (MRSIGNER), when set.
    public var signerID: [UInt8]?
    public var productID: UInt16?
    /// Minimum security version.
    public var securityVersion: UInt16?
    /// Whether debug enclaves are acceptable. Default `false`.
    public var allowDebug: Bool
    /// SGX: the package's own accepted TCB statuses and advisories.
    public internal(set) var tcb = TCBAcceptanceFields()

    public init(measurement: [UInt8]? = nil, signerID: [UInt8]? = nil, productID: UInt16? = nil, securityVersion: UInt16? = nil, allowDebug: Bool = false) {
        self.measurement = measurement
        self.signerID = signerID
        self.productID = productID
        self.securityVersion = securityVersion
        self.allowDebug = allowDebug
    }
}

/// A TDX trust domain's identity: MRTD always, the other registers where named.
public struct TDIdentity: Sendable, Equatable {
    /// The TD's build-time measurement (required).
    public var mrtd: [UInt8]
    /// RTMR0–3; a register the package names is always compared.
    public var rtmrs: [[UInt8]?] = [nil, nil, nil, nil]
    public var mrConfigID: [UInt8]?
    public var mrOwner: [UInt8]?
    public var mrSeam: [UInt8]?
    /// The container image measurement the launcher inside the TD must have bound.
    public var imageMeasurement: [UInt8]?
    public var allowDebug = false
    /// The package's own accepted TCB statuses and advisories.
    public internal(set) var tcb = TCBAcceptanceFields()

    public init(mrtd: [UInt8]) { self.mrtd = mrtd }
}

/// An SEV-SNP guest's identity: its launch measurement, the one SNP policy validator's rules
/// (guest policy, VMPL, TCB, HOST_DATA, debug) and optionally the ID key.
public struct SNPIdentity: Sendable, Equatable {
    /// The guest's launch measurement (required).
    public var measurement: [UInt8]
    /// Required digest of the ID key that signed the guest's ID block, when set.
    public var idKeyDigest: [UInt8]?
    public var requirements: SNPRequirements
    /// The container image measurement the launcher inside the VM must have bound.
    public var imageMeasurement: [UInt8]?

    public init(measurement: [UInt8], requirements: SNPRequirements) {
        self.measurement = measurement
        self.requirements = requirements
    }
}
