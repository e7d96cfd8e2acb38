import FoundationEssentials
import Glibc

/// Why a hardware evidence provider could not produce evidence.
public enum ProviderError: Error, Equatable, Sendable, CustomStringConvertible {
    case unavailable(String)
    case io(path: String, reason: String)
    case unexpectedProvider(String)
    case concurrentUse(path: String)
    case malformed(String)

    public var description: String {
        switch self {
        case .unavailable(let why): return why
        case .io(let path, let reason): return "\(path): \(reason)"
        case .unexpectedProvider(let name): return "configfs-tsm provider '\(name)' is neither sev_guest nor tdx_guest"
        case .concurrentUse(let path): return "\(path) was used concurrently (generation changed); retry"
        case .malformed(let why): return why
        }
    }
}

enum FileIO {
    static func read(_ path: String) throws(ProviderError) -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else { throw .io(path: path, reason: "cannot read") }
        return Array(data)
    }

    static func write(_ bytes: [UInt8], to path: String) throws(ProviderError) {
        let fd = open(path, O_WRONLY | O_CLOEXEC | O_CREAT | O_TRUNC, 0o600)
        guard fd >= 0 else { throw .io(path: path, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        let failure = AtomicFile.writeAll(bytes, to: fd)
        guard failure == 0 else { throw .io(path: path, reason: String(cString: strerror(failure))) }
    }

    static func text(_ path: String) throws(ProviderError) -> String {
        String(decoding: try read(path), as: UTF8.self).trimmingWhitespace
    }
}

/// Linux configfs-tsm (`/sys/kernel/config/tsm/report`): SEV-SNP and TDX guests.
///
/// Protocol: create (or reuse) an entry directory, note `generation`, write the 64 bytes of
/// report data to `inblob`, read `outblob` (and `auxblob`: the SNP certificate table), then
/// check `generation` again so a concurrent writer cannot hand us someone else's report.
public struct ConfigfsTSMProvider: EvidenceProvider {
    public static let defaultRoot = "/sys/kernel/config/tsm/report"
    public let root: String
    public let entry: String
    /// `sev_guest` or `tdx_guest` when the caller asked for one TEE; `nil` takes either.
    public let expectedProvider: String?
    public var isSimulated: Bool { false }
    public var isConfidentialVM: Bool { true }

    public init(root: String = ConfigfsTSMProvider.defaultRoot, entry: String = "veil-\(getpid())", expectedProvider: String? = nil) {
        self.root = root
        self.entry = entry
        self.expectedProvider = expectedProvider
    }

    public func evidence(reportData: [UInt8]) throws -> Evidence {
        precondition(reportData.count == ReportData.size)
        let directory = "\(root)/\(entry)"
        if !FileManager.default.fileExists(atPath: directory) {
            guard mkdir(directory, 0o700) == 0 else {
                throw ProviderError.io(path: directory, reason: String(cString: strerror(errno)))
            }
        }
        let provider = try FileIO.text("\(directory)/provider")
        if let expectedProvider, provider != expectedProvider {
            throw ProviderError.unavailable("configfs-tsm provider is '\(provider)', not '\(expectedProvider)': this guest is not the TEE that was asked for")
        }
        try FileIO.write(reportData, to: "\(directory)/inblob")
        let before = try FileIO.text("\(directory)/generation")
        let outblob = try FileIO.read("\(directory)/outblob")
        let after = try FileIO.text("\(directory)/generation")
        guard before == after else { throw ProviderError.concurrentUse(path: directory) }
        switch provider {
        case "sev_guest":
            let aux = (try? FileIO.read("\(directory)/auxblob")) ?? []
            return try SNPEvidence.make(report: outblob, certificateTable: aux)
        case "tdx_guest":
            return Evidence(format: DCAPEvidence.format, data: outblob)
        default:
            throw ProviderError.unexpectedProvider(provider)
        }
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

    /// The hardware provider for this selection; `auto` detects one and never falls back to simulation.
    public func hardwareProvider(
        tsmRoot: String = ConfigfsTSMProvider.defaultRoot, tsmEntry: String? = nil, gramineRoot: String = GramineProvider.defaultRoot
    ) throws(ProviderError) -> any EvidenceProvider {
        let expected: String? = self == .snp ? "sev_guest" : self == .tdx ? "tdx_guest" : nil
        let tsm = tsmEntry.map { ConfigfsTSMProvider(root: tsmRoot, entry: $0, expectedProvider: expected) }
            ?? ConfigfsTSMProvider(root: tsmRoot, expectedProvider: expected)
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
        case .simulated:
            throw .unavailable("simulated is not a hardware TEE")
        }
    }
}
