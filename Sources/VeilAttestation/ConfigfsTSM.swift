import FoundationEssentials
import Glibc

/// Linux configfs-tsm (`/sys/kernel/config/tsm/report`): SEV-SNP and TDX guests.
///
/// Follows Documentation/ABI/testing/configfs-tsm-report: every request makes its own entry
/// (a fresh random name, so launchers that are all PID 1 in their containers never share
/// one), reads `generation` before its first write, sets `privlevel` to `privlevel_floor` when
/// the guest has one (an SVSM below the guest at VMPL > 0), writes `inblob`, reads `outblob`
/// (and `auxblob`: the SNP certificate table), then requires `generation` to have moved by
/// exactly its own writes — anything else means another writer touched the entry and the
/// report may bind their data. The entry is removed afterwards, so none accumulate (a
/// sev-guest module reload refuses while entries exist).
public struct ConfigfsTSMProvider: EvidenceProvider {
    public static let defaultRoot = "/sys/kernel/config/tsm/report"
    public let root: String
    /// `sev_guest` or `tdx_guest` when the caller asked for one TEE; `nil` takes either.
    public let expectedProvider: String?
    public var isSimulated: Bool { false }
    public var isConfidentialVM: Bool { true }

    public init(root: String = ConfigfsTSMProvider.defaultRoot, expectedProvider: String? = nil) {
        self.root = root
        self.expectedProvider = expectedProvider
    }

    public func evidence(reportData: [UInt8]) throws -> Evidence {
        precondition(reportData.count == ReportData.size)
        let directory = try makeEntry()
        defer { rmdir(directory) }
        let provider = try FileIO.text("\(directory)/provider")
        if let expectedProvider, provider != expectedProvider {
            throw ProviderError.unavailable("configfs-tsm provider is '\(provider)', not '\(expectedProvider)': this guest is not the TEE that was asked for")
        }
        guard provider == "sev_guest" || provider == "tdx_guest" else { throw ProviderError.unexpectedProvider(provider) }
        let before = try generation(directory)
        var writes = 0
        if let floor = try optionalText("\(directory)/privlevel_floor") {
            try FileIO.write(Array(floor.utf8), to: "\(directory)/privlevel", create: false)
            writes += 1
        }
        try FileIO.write(reportData, to: "\(directory)/inblob", create: false)
        writes += 1
        let outblob = try FileIO.read("\(directory)/outblob")
        let auxblob = provider == "sev_guest" ? try optionalBytes("\(directory)/auxblob") ?? [] : []
        let after = try generation(directory)
        guard after == before + writes else { throw ProviderError.concurrentUse(path: directory, expected: before + writes, found: after) }
        if provider == "sev_guest" { return try SNPEvidence.make(report: outblob, certificateTable: auxblob) }
        return Evidence(format: DCAPEvidence.format, data: outblob)
    }

    /// Creates `root/veil-<random>`; a name taken by a concurrent request is retried with another.
    func makeEntry() throws(ProviderError) -> String {
        for _ in 0..<8 {
            let name = "veil-" + Hex.encode((0..<8).map { _ in UInt8.random(in: 0...255) })
            let directory = "\(root)/\(name)"
            if mkdir(directory, 0o700) == 0 { return directory }
            guard errno == EEXIST else { throw .system(operation: "mkdir", path: directory, errno: errno) }
        }
        throw .system(operation: "mkdir", path: "\(root)/veil-*", errno: EEXIST)
    }

    func generation(_ directory: String) throws(ProviderError) -> Int {
        let text = try FileIO.text("\(directory)/generation")
        guard let value = Int(text) else { throw .malformed("\(directory)/generation is '\(text)', not a number") }
        return value
    }

    /// The attribute's text, or nil when this provider has no such attribute.
    func optionalText(_ path: String) throws(ProviderError) -> String? {
        try optionalBytes(path).map { String(decoding: $0, as: UTF8.self).trimmingWhitespace }
    }

    func optionalBytes(_ path: String) throws(ProviderError) -> [UInt8]? {
        switch AtomicFile.read(path) {
        case .success(let bytes): return bytes
        case .failure(let error) where error.errno == ENOENT: return nil
        case .failure(let error): throw .system(operation: "read", path: path, errno: error.errno)
        }
    }
}
