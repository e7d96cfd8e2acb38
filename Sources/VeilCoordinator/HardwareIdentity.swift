import Foundation
import Logging
import Synchronization
import VeilAttestation

/// Which TEE a coordinator replica runs in. There is no default: simulation is chosen
/// explicitly, and hardware detection never falls back to it.
public enum CoordinatorTEE: Sendable {
    /// Development only: evidence signed with a simulation key, state sealed with a key in a
    /// file. No confidentiality.
    case simulated
    /// A hardware TEE found through these paths.
    case hardware(HardwareTEEPaths)
}

/// Where a replica finds its TEE (the defaults are the real devices; tests point them at
/// doubles built from the specifications).
public struct HardwareTEEPaths: Sendable {
    /// `auto`, `snp`, `tdx` or `sgx-gramine` (never `simulated`).
    public var selection: TEESelection
    public var tsmRoot = ConfigfsTSMProvider.defaultRoot
    public var gramineRoot = GramineProvider.defaultRoot
    public var gramineKeys = GramineSealing.defaultRoot
    public var sevGuest = SEVGuestDevice.defaultPath
    public var guestAPI = GuestAPIProvider.defaultURL

    public init(selection: TEESelection) {
        precondition(selection != .simulated, "simulation is not a hardware TEE")
        self.selection = selection
    }
}

/// Why a replica's own hardware evidence cannot be completed.
enum HardwareIdentityError: Error, CustomStringConvertible {
    case noEndorsement
    case endorsementFetch(String)

    var description: String {
        switch self {
        case .noEndorsement: return "the host supplied no SEV-SNP certificates (auxblob empty) and no VCEK source is configured (--kds URL)"
        case .endorsementFetch(let why): return "the host supplied no SEV-SNP certificates and this replica's VCEK could not be fetched: \(why)"
        }
    }
}

/// What the hardware says this replica is: how it gets evidence and its sealing key, and the
/// measurement its TEE reports for it — read from one report made at start. The replica does not
/// verify its own report (it trusts its own TEE); peers and clients verify its evidence fully.
struct HardwareIdentity {
    let provider: any EvidenceProvider
    let sealing: any SealingKeyProvider
    let tee: TEEKind
    /// Its measurement and, for a TD, RTMRs and MRCONFIGID; for an SNP guest HOST_DATA.
    let identity: TEEIdentity
    var measurement: [UInt8] { identity.measurement }

    /// `endorsements` supplies the VCEK when the host hands SNP reports out without
    /// certificates; the provider then adds it to every report it makes.
    static func detect(_ paths: HardwareTEEPaths, endorsements: (any SNPEndorsementSource)?, logger: Logger) async throws -> HardwareIdentity {
        var provider = try paths.selection.hardwareProvider(tsmRoot: paths.tsmRoot, gramineRoot: paths.gramineRoot, guestAPI: paths.guestAPI)
        let evidence = try provider.evidence(reportData: [UInt8](repeating: 0, count: ReportData.size))
        if SNPEvidence.reportNeedingEndorsement(evidence) != nil {
            guard let endorsements else { throw HardwareIdentityError.noEndorsement }
            do {
                provider = try await EndorsingEvidenceProvider.make(provider, sample: evidence, source: endorsements) ?? provider
            } catch {
                throw HardwareIdentityError.endorsementFetch("\(error)")
            }
            logger.info("the host supplied no SEV-SNP certificates: this replica's VCEK was fetched (AMD KDS) and is added to its reports")
        }
        switch evidence.format {
        case SNPEvidence.format:
            let report = try SNPEvidence.unverifiedReport(in: evidence)
            // In a Confidential Containers pod the attestation agent owns the TEE device: no
            // derived key here, the state key comes from peers or recovery (docs/kbs.md).
            let sealing: any SealingKeyProvider = paths.selection == .coco ? NoSealing() : PinnedSNPSealing(
                device: SEVGuestDevice(path: paths.sevGuest), vmpl: report.vmpl,
                keySelection: .init(firmwareMajor: report.currentFirmware.major, minor: report.currentFirmware.minor),
                committedTCB: report.committedTCB, turin: report.product == .turin)
            return HardwareIdentity(
                provider: SerializedEvidenceProvider(provider),
                sealing: sealing, tee: .snp, identity: TEEIdentity(tee: .snp, measurement: report.measurement, hostData: report.hostData))
        case DCAPEvidence.format:
            let quote = try DCAPQuote(evidence.data)
            switch quote.body {
            case .sgx(let report):
                return HardwareIdentity(
                    provider: SerializedEvidenceProvider(provider), sealing: GramineSealing(root: paths.gramineKeys), tee: .sgx,
                    identity: TEEIdentity(tee: .sgx, measurement: report.mrEnclave))
            case .td(let report):
                return HardwareIdentity(
                    provider: SerializedEvidenceProvider(provider), sealing: NoSealing(), tee: .tdx,
                    identity: TEEIdentity(tee: .tdx, measurement: report.mrTD, rtmrs: report.rtmrs, mrConfigID: report.mrConfigID))
            }
        default:
            throw ProviderError.unexpectedProvider(evidence.format)
        }
    }
}

/// One report at a time: Gramine hands reports out through one shared file pair (write report
/// data, read the quote), which concurrent requests would interleave. (configfs-tsm requests
/// each make their own entry and would not need it; one report at a time costs a replica nothing.)
final class SerializedEvidenceProvider: EvidenceProvider {
    private let inner: any EvidenceProvider
    private let lock = Mutex(())

    init(_ inner: any EvidenceProvider) { self.inner = inner }

    var isSimulated: Bool { inner.isSimulated }
    var isConfidentialVM: Bool { inner.isConfidentialVM }

    func evidence(reportData: [UInt8]) throws -> Evidence {
        try lock.withLock { _ in try inner.evidence(reportData: reportData) }
    }
}
