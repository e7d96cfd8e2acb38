import FoundationEssentials
import Glibc
import VeilCore

/// Why a hardware evidence provider could not produce evidence.
public enum ProviderError: Error, Equatable, Sendable, CustomStringConvertible {
    case unavailable(String)
    case io(path: String, reason: String)
    /// A system call on a TEE interface failed; `errno` is kept so the cause can be explained.
    case system(operation: String, path: String, errno: Int32)
    case unexpectedProvider(String)
    /// configfs-tsm's `generation` moved by other than our own writes: someone else wrote the
    /// entry between our first write and our last read, so the report may bind their data.
    case concurrentUse(path: String, expected: Int, found: Int)
    case malformed(String)

    public var description: String {
        switch self {
        case .unavailable(let why): return why
        case .io(let path, let reason): return "\(path): \(reason)"
        case .system(let operation, let path, let code):
            return "\(operation) \(path): \(String(cString: strerror(code)))" + (Self.explanation(of: code, operation: operation).map { " — \($0)" } ?? "")
        case .unexpectedProvider(let name): return "configfs-tsm provider '\(name)' is neither sev_guest nor tdx_guest"
        case .concurrentUse(let path, let expected, let found):
            return "\(path) was written by someone else while Veil used it (generation \(found), expected \(expected)); the report is discarded, retry"
        case .malformed(let why): return why
        }
    }

    /// What an errno from a TEE report interface means on Linux (sev-guest, tdx-guest, configfs-tsm).
    static func explanation(of code: Int32, operation: String) -> String? {
        switch code {
        case ENOTTY:
            return "the guest's report key is gone: sev-guest wipes the VMPCK after a firmware error so that no message is sent with a reused IV; "
                + "no report can be produced until the guest reboots"
        case ETIMEDOUT: return "the host did not answer the guest's report request in time (a throttled or busy host); retry later"
        case EINVAL: return "the TEE refused the request as invalid (a privilege level below privlevel_floor, or report data the TEE does not accept)"
        case EIO where operation == "read":
            return "the TEE failed to produce the report (for SEV-SNP at VMPL > 0: the requested privilege level is below the guest's own)"
        case EBUSY: return "the TEE interface is busy or being unloaded; retry"
        case EACCES, EPERM: return "not allowed: reports need root in the guest (CAP_SYS_ADMIN for configfs-tsm entries)"
        default: return nil
        }
    }
}

/// File access for TEE interfaces that keeps the errno (its meaning is the diagnosis).
enum FileIO {
    static func read(_ path: String) throws(ProviderError) -> [UInt8] {
        switch AtomicFile.read(path) {
        case .success(let bytes): return bytes
        case .failure(let error): throw .system(operation: "read", path: path, errno: error.errno)
        }
    }

    /// Writes `bytes` in one open/write/close: configfs binary attributes (inblob) are stored
    /// when the file is closed, so a refusal surfaces from `close`.
    static func write(_ bytes: [UInt8], to path: String, create: Bool = true) throws(ProviderError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0o600)
        guard fd >= 0 else { throw .system(operation: "open", path: path, errno: errno) }
        let failure = AtomicFile.writeAll(bytes, to: fd)
        guard failure == 0 else {
            close(fd)
            throw .system(operation: "write", path: path, errno: failure)
        }
        guard close(fd) == 0 else { throw .system(operation: "write", path: path, errno: errno) }
    }

    static func text(_ path: String) throws(ProviderError) -> String {
        String(decoding: try read(path), as: UTF8.self).trimmingWhitespace
    }
}

/// Gramine's `/dev/attestation` inside an SGX enclave: write `user_report_data`, read `quote`.
public struct GramineProvider: EvidenceProvider {
    public static let defaultRoot = "/dev/attestation"
    public let root: String
    public var isSimulated: Bool { false }

    public init(root: String = GramineProvider.defaultRoot) {
        self.root = root
    }

    public func evidence(reportData: [UInt8]) throws -> Evidence {
        precondition(reportData.count == ReportData.size)
        if let type = try? FileIO.text("\(root)/attestation_type"), type != "dcap" {
            throw ProviderError.unavailable("Gramine attestation type is '\(type)'; Veil needs 'dcap' (sgx.remote_attestation = \"dcap\")")
        }
        try FileIO.write(reportData, to: "\(root)/user_report_data")
        return Evidence(format: DCAPEvidence.format, data: try FileIO.read("\(root)/quote"))
    }
}

/// Which TEE a launcher gets evidence from.
public enum TEESelection: String, Sendable, CaseIterable {
    case auto, simulated, snp, tdx, sgxGramine = "sgx-gramine"
    /// A Confidential Containers pod (SNP or TDX): evidence from the guest API (``GuestAPIProvider``).
    case coco

    /// The hardware provider for this selection; `auto` detects one and never falls back to
    /// simulation (nor to the guest API, which is chosen by name).
    public func hardwareProvider(
        tsmRoot: String = ConfigfsTSMProvider.defaultRoot, gramineRoot: String = GramineProvider.defaultRoot,
        guestAPI: String = GuestAPIProvider.defaultURL
    ) throws(ProviderError) -> any EvidenceProvider {
        let expected: String? = self == .snp ? "sev_guest" : self == .tdx ? "tdx_guest" : nil
        let tsm = ConfigfsTSMProvider(root: tsmRoot, expectedProvider: expected)
        switch self {
        case .snp, .tdx:
            guard FileManager.default.fileExists(atPath: tsmRoot) else {
                throw .unavailable("--tee \(rawValue): \(tsmRoot) does not exist (not a \(self == .snp ? "SEV-SNP" : "TDX") guest, or configfs not mounted)")
            }
            return tsm
        case .sgxGramine:
            guard FileManager.default.fileExists(atPath: "\(gramineRoot)/quote") else {
                throw .unavailable("--tee sgx-gramine: \(gramineRoot)/quote does not exist (not running under Gramine with DCAP attestation)")
            }
            return GramineProvider(root: gramineRoot)
        case .auto:
            if FileManager.default.fileExists(atPath: tsmRoot) { return tsm }
            if FileManager.default.fileExists(atPath: "\(gramineRoot)/quote") { return GramineProvider(root: gramineRoot) }
            throw .unavailable(
                "--tee auto found no TEE: neither \(tsmRoot) (SEV-SNP/TDX guest) nor \(gramineRoot)/quote (Gramine SGX); "
                    + "for development pass --tee simulated (no confidentiality)")
        case .coco:
            return try GuestAPIProvider(url: guestAPI)
        case .simulated:
            throw .unavailable("simulated is not a hardware TEE")
        }
    }
}
