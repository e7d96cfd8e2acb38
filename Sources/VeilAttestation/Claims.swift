import FoundationEssentials

/// The kind of trusted execution environment that produced evidence.
public enum TEEKind: String, Codable, Sendable, CaseIterable {
    case simulated
    case sgx
    case tdx
    case snp
}

/// The normalized result of verifying evidence.
///
/// Invariant: a `Claims` value only exists after its evidence verified. Outside this package
/// nothing can make or change one (the initializer and setters are `package`, and it is
/// `Encodable` only): verifiers produce claims, everyone else reads them.
public struct Claims: Encodable, Sendable, Equatable {
    public package(set) var tee: TEEKind
    /// Primary measurement (simulated: `SHA-256` launch measurement; SGX: MRENCLAVE; TDX: MRTD; SNP: MEASUREMENT).
    public package(set) var measurement: [UInt8]
    /// Signer identity (SGX MRSIGNER), empty when the TEE has none.
    public package(set) var signer: [UInt8]
    public package(set) var productID: UInt16
    public package(set) var securityVersion: UInt16
    /// The 64 bytes the TEE bound on the requester's behalf.
    public package(set) var reportData: [UInt8]
    public package(set) var debug: Bool
    /// `true` for simulated evidence: such claims give **no confidentiality or integrity**.
    public package(set) var simulated: Bool
    /// Intel TCB status and advisories (SGX/TDX); `nil` for TEEs without one.
    public package(set) var tcb: TCBVerdict?
    /// TDX only: the TD's other measurement registers.
    public package(set) var tdx: TDXMeasurements?
    /// SEV-SNP only: host data and the reported TCB.
    public package(set) var snp: SNPClaims?
    /// Where a confidential VM's image measurement was bound (``imageMeasurement``).
    package var imageBinding: ImageBinding = .reportData

    package init(
        tee: TEEKind, measurement: [UInt8], signer: [UInt8] = [], productID: UInt16 = 0,
        securityVersion: UInt16 = 0, reportData: [UInt8], debug: Bool = false, simulated: Bool, tcb: TCBVerdict? = nil
    ) {
        self.tcb = tcb
        self.tee = tee
        self.measurement = measurement
        self.signer = signer
        self.productID = productID
        self.securityVersion = securityVersion
        self.reportData = reportData
        self.debug = debug
        self.simulated = simulated
    }
}

/// Where the container image measurement of confidential-VM evidence is bound.
package enum ImageBinding: Encodable, Sendable, Equatable {
    /// The report data's second half (``ReportData``): Veil's launchers.
    case reportData
    /// Runtime data whose hash fills the report data (a key-broker client): the measurement it
    /// named there, or none. The report data's second half is then part of that hash.
    case runtimeData([UInt8]?)
}

extension Claims {
    /// The container image measurement a launcher (or `veil run`) inside a confidential VM
    /// bound into its evidence; `nil` for other evidence.
    public var imageMeasurement: [UInt8]? {
        guard tee == .snp || tee == .tdx else { return nil }
        switch imageBinding {
        case .reportData: return ReportData.imageMeasurement(in: reportData)
        case .runtimeData(let measurement): return measurement
        }
    }

    /// The one debug rule for every TEE: debug evidence (SGX ATTRIBUTES.DEBUG, TDX TUD.DEBUG,
    /// SNP policy bit 19) is refused unless the caller allows it explicitly.
    public func requireProduction(allowDebug: Bool) throws(AttestationError) {
        if debug && !allowDebug { throw .debugNotAllowed(tee) }
    }
}

/// The warning every output that involves simulated evidence carries.
public let simulationWarning =
    "SIMULATED TEE: this evidence gives NO confidentiality and NO integrity; use for development only"

/// The measurement registers of a TD besides MRTD.
public struct TDXMeasurements: Encodable, Sendable, Equatable {
    public package(set) var rtmrs: [[UInt8]]
    public package(set) var mrConfigID: [UInt8]
    public package(set) var mrOwner: [UInt8]
    public package(set) var mrOwnerConfig: [UInt8]
    public package(set) var mrSeam: [UInt8]

    package init(rtmrs: [[UInt8]], mrConfigID: [UInt8], mrOwner: [UInt8], mrOwnerConfig: [UInt8], mrSeam: [UInt8]) {
        self.rtmrs = rtmrs
        self.mrConfigID = mrConfigID
        self.mrOwner = mrOwner
        self.mrOwnerConfig = mrOwnerConfig
        self.mrSeam = mrSeam
    }
}

/// SEV-SNP fields besides the launch measurement.
public struct SNPClaims: Encodable, Sendable, Equatable {
    public package(set) var hostData: [UInt8]
    public package(set) var idKeyDigest: [UInt8]
    public package(set) var reportedTCB: UInt64
    public package(set) var turinTCBLayout: Bool
    public package(set) var policy: UInt64
    /// The VMPL the report was requested from (0 the most privileged); nil in claims recorded before it was kept.
    public package(set) var vmpl: UInt32?

    public var tcb: SNPReport.TCBVersion { SNPReport.TCBVersion(raw: reportedTCB, turin: turinTCBLayout) }
}
