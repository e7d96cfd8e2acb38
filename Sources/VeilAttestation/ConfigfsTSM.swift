import FoundationEssentials
import Glibc
import VeilCore

/// Linux configfs-tsm (`/sys/kernel/config/tsm/report`): SEV-SNP and TDX guests.
///
/// Follows Documentation/ABI/testing/configfs-tsm-report: every request makes its own entry
/// (a fresh random name, so launchers that are all PID 1 in their containers never share
/// one), reads `generation`, sets `privlevel` to `privlevel_floor` when the guest has one (an
/// SVSM below the guest at VMPL > 0), writes `inblob`, reads `outblob` (and `auxblob`: the SNP
/// certificate table), then requires `generation` to have moved by exactly its own writes —
/// anything else means another writer touched the entry and the report may bind their data.
/// The entry is removed afterwards, also on failure, so none accumulate (a sev-guest module
/// reload refuses while entries exist).
///
/// The report directory is reached by path, or through a descriptor held open after its mount
/// was detached (``VeilLauncher/TEEAccess``): then nothing else in the mount namespace can reach it.
public struct ConfigfsTSMProvider: EvidenceProvider {
    public static let defaultRoot = "/sys/kernel/config/tsm/report"
    /// The report directory's path (for a held descriptor: the path it had, for messages).
    public let root: String
    let heldDescriptor: Int32?
    /// `sev_guest` or `tdx_guest` when the caller asked for one TEE; `nil` takes either.
    public let expectedProvider: String?
    public var isSimulated: Bool { false }
    public var isConfidentialVM: Bool { true }

    public init(root: String = ConfigfsTSMProvider.defaultRoot, expectedProvider: String? = nil) {
        self.root = root
        self.heldDescriptor = nil
        self.expectedProvider = expectedProvider
    }

    /// Reports through `descriptor`, an open directory descriptor of the report directory that
    /// stays open (and valid) for this provider's life; `root` only names it in messages.
    public init(descriptor: Int32, root: String, expectedProvider: String? = nil) {
        self.root = root
        self.heldDescriptor = descriptor
        self.expectedProvider = expectedProvider
    }

    public func evidence(reportData: [UInt8]) throws -> Evidence {
        precondition(reportData.count == ReportData.size)
        let directory = try ReportDirectory(root: root, held: heldDescriptor)
        defer { directory.close() }
        let entry = try directory.makeEntry()
        defer { directory.removeEntry(entry) }
        let provider = try directory.text(entry, "provider")
        if let expectedProvider, provider != expectedProvider {
            throw ProviderError.unavailable("configfs-tsm provider is '\(provider)', not '\(expectedProvider)': this guest is not the TEE that was asked for")
        }
        guard provider == "sev_guest" || provider == "tdx_guest" else { throw ProviderError.unexpectedProvider(provider) }
        let before = try directory.generation(entry)
        var writes = 0
        if let floor = try directory.optional(entry, "privlevel_floor") {
            try directory.write(Array(String(decoding: floor, as: UTF8.self).trimmingWhitespace.utf8), entry, "privlevel")
            writes += 1
        }
        try directory.write(reportData, entry, "inblob")
        writes += 1
        let outblob = try directory.read(entry, "outblob")
        let auxblob = provider == "sev_guest" ? try directory.optional(entry, "auxblob") ?? [] : []
        let after = try directory.generation(entry)
        guard after == before + writes else {
            throw ProviderError.concurrentUse(path: "\(root)/\(entry)", expected: before + writes, found: after)
        }
        if provider == "sev_guest" { return try SNPEvidence.make(report: outblob, certificateTable: auxblob) }
        return Evidence(format: DCAPEvidence.format, data: outblob)
    }
}

/// The report directory for one request: every access relative to one directory descriptor.
struct ReportDirectory {
    let root: String
    let fd: Int32
    let owned: Bool

    init(root: String, held: Int32?) throws(ProviderError) {
        self.root = root
        if let held {
            (fd, owned) = (held, false)
        } else {
            let opened = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard opened >= 0 else { throw .system(operation: "open", path: root, errno: errno) }
            (fd, owned) = (opened, true)
        }
    }

    func close() { if owned { _ = Glibc.close(fd) } }

    /// Creates `veil-<random>`; a name taken by a concurrent request is retried with another.
    func makeEntry() throws(ProviderError) -> String {
        for _ in 0..<8 {
            let name = "veil-" + Hex.encode((0..<8).map { _ in UInt8.random(in: 0...255) })
            if mkdirat(fd, name, 0o700) == 0 { return name }
            guard errno == EEXIST else { throw .system(operation: "mkdir", path: "\(root)/\(name)", errno: errno) }
        }
        throw .system(operation: "mkdir", path: "\(root)/veil-*", errno: EEXIST)
    }

    func removeEntry(_ entry: String) { _ = unlinkat(fd, entry, AT_REMOVEDIR) }

    func read(_ entry: String, _ attribute: String) throws(ProviderError) -> [UInt8] {
        switch readIfPresent(entry, attribute) {
        case .success(let bytes): return bytes
        case .failure(let code): throw .system(operation: "read", path: "\(root)/\(entry)/\(attribute)", errno: code)
        }
    }

    /// The attribute's bytes, or nil when this provider has no such attribute.
    func optional(_ entry: String, _ attribute: String) throws(ProviderError) -> [UInt8]? {
        switch readIfPresent(entry, attribute) {
        case .success(let bytes): return bytes
        case .failure(let code) where code == ENOENT: return nil
        case .failure(let code): throw .system(operation: "read", path: "\(root)/\(entry)/\(attribute)", errno: code)
        }
    }

    func text(_ entry: String, _ attribute: String) throws(ProviderError) -> String {
        String(decoding: try read(entry, attribute), as: UTF8.self).trimmingWhitespace
    }

    func generation(_ entry: String) throws(ProviderError) -> Int {
        let value = try text(entry, "generation")
        guard let number = Int(value) else { throw .malformed("\(root)/\(entry)/generation is '\(value)', not a number") }
        return number
    }

    /// One open/write/close: configfs binary attributes (inblob) are stored when the file is
    /// closed, so a refusal surfaces from `close`.
    func write(_ bytes: [UInt8], _ entry: String, _ attribute: String) throws(ProviderError) {
        let path = "\(root)/\(entry)/\(attribute)"
        let file = openat(fd, "\(entry)/\(attribute)", O_WRONLY | O_CLOEXEC)
        guard file >= 0 else { throw .system(operation: "open", path: path, errno: errno) }
        let failure = AtomicFile.writeAll(bytes, to: file)
        guard failure == 0 else {
            _ = Glibc.close(file)
            throw .system(operation: "write", path: path, errno: failure)
        }
        guard Glibc.close(file) == 0 else { throw .system(operation: "write", path: path, errno: errno) }
    }

    private enum ReadResult { case success([UInt8]), failure(Int32) }

    private func readIfPresent(_ entry: String, _ attribute: String) -> ReadResult {
        let file = openat(fd, "\(entry)/\(attribute)", O_RDONLY | O_CLOEXEC)
        guard file >= 0 else { return .failure(errno) }
        defer { _ = Glibc.close(file) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = Glibc.read(file, &chunk, chunk.count)
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return .failure(errno) }
            if count == 0 { return .success(bytes) }
            bytes += chunk[..<count]
        }
    }
}
