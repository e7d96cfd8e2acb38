import Crypto
import Dispatch
import FoundationEssentials
import Synchronization
import VeilCore

/// One change to the coordinator's manifest, secrets or state, as recorded in its history.
///
/// Entries form a hash chain: each names the hash of the one before, and the coordinator signs
/// each entry's hash with its root key. The hash of the newest entry (the head) is bound into
/// the coordinator's evidence, so a client that verified the evidence can verify that the
/// history it reads is exactly the one the attested coordinator holds.
public struct LogEntry: Codable, Sendable, Equatable {
    /// How ``hash`` is computed: 2 (and every new entry) hashes ``canonicalEncoding``; entries
    /// without a version (1) hashed Foundation's sorted-key JSON and stay verifiable that way.
    public var version: Int?
    public var index: Int
    /// RFC 3339 UTC time of the change.
    public var time: String
    /// `manifestSet`, `secretSet`, `packageUpdated`, `updateProposed`, `updateAcknowledged`,
    /// `manifestUpdated`, `recovered`.
    public var event: String
    /// The manifest user who made the change, when one did.
    public var user: String?
    /// What changed (digests, names, versions; never secret values).
    public var detail: [String: String]
    /// Hex hash of the previous entry (64 zeros for the first).
    public var previous: String
    /// Base64 DER ECDSA-P256-SHA256 signature over ``hash`` by the coordinator's root key.
    public var signature: String

    public static let currentVersion = 2

    public init(index: Int, time: String, event: String, user: String?, detail: [String: String], previous: String) {
        version = Self.currentVersion
        self.index = index
        self.time = time
        self.event = event
        self.user = user
        self.detail = detail
        self.previous = previous
        signature = ""
    }

    /// The entry's hash: version 2 `SHA-256(canonicalEncoding)`; version 1
    /// `SHA-256("veil-log-v1\0" ‖ sorted-key JSON of every field but the signature)`.
    public var hash: [UInt8] {
        if (version ?? 1) >= 2 { return Array(SHA256.hash(data: canonicalEncoding)) }
        var unsigned = self
        unsigned.signature = ""
        // Strings, integers and a string dictionary always encode.
        let body = try! CanonicalJSON.encode(unsigned)
        return Array(SHA256.hash(data: Array("veil-log-v1\0".utf8) + body))
    }

    /// A defined byte encoding of every field but the signature, independent of any JSON
    /// encoder: `"veil-log-v2\0"`, then u64 index, then each string as u32 length ‖ UTF-8 —
    /// time, event, user (a u8 0/1 presence flag first), the detail count (u32) and each key
    /// and value in the byte order of their UTF-8 keys, previous. Integers are big-endian.
    public var canonicalEncoding: [UInt8] {
        var bytes = Array("veil-log-v2\0".utf8)
        func integer<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.bigEndian) { bytes += $0 } }
        func text(_ value: String) {
            integer(UInt32(value.utf8.count))
            bytes += value.utf8
        }
        integer(UInt64(index))
        text(time)
        text(event)
        bytes.append(user == nil ? 0 : 1)
        if let user { text(user) }
        integer(UInt32(detail.count))
        for (key, value) in detail.sorted(by: { Array($0.key.utf8).lexicographicallyPrecedes(Array($1.key.utf8)) }) {
            text(key)
            text(value)
        }
        text(previous)
        return bytes
    }
}

public enum AuditLog {
    /// The head of an empty history.
    public static let emptyHead = [UInt8](repeating: 0, count: 32)

    /// Why a history does not verify; each names the first entry at fault.
    public enum VerificationError: Error, Equatable, CustomStringConvertible {
        case wrongIndex(position: Int, found: Int)
        case brokenChain(index: Int)
        case badSignature(index: Int)
        case headNotFound(head: String, entries: Int)

        public var description: String {
            switch self {
            case .wrongIndex(let position, let found): return "log entry at position \(position) says it is entry \(found) (entries removed or reordered)"
            case .brokenChain(let index): return "log entry \(index) does not chain to entry \(index - 1) (history rewritten)"
            case .badSignature(let index): return "log entry \(index) is not signed by the coordinator's root key (entry altered)"
            case .headNotFound(let head, let entries):
                return "none of the \(entries) log entries has the head \(head) bound into the coordinator's evidence"
            }
        }
    }

    /// Appends an entry for `event`, signed with `key`.
    public static func append(
        to log: inout [LogEntry], event: String, user: String?, detail: [String: String], key: P256.Signing.PrivateKey, now: Date = Date()
    ) throws {
        var entry = LogEntry(
            index: log.count, time: now.formatted(.iso8601), event: event, user: user, detail: detail,
            previous: Hex.encode(log.last?.hash ?? emptyHead))
        entry.signature = try key.signature(for: entry.hash).derRepresentation.base64EncodedString()
        log.append(entry)
    }

    /// The head of `log`.
    public static func head(_ log: [LogEntry]) -> [UInt8] { log.last?.hash ?? emptyHead }

    /// Verifies order, chain and signatures of every entry and that `head` (from attested
    /// evidence) is one of them. Returns the number of entries up to and including the head.
    /// Signatures are checked on all cores; the error names the first bad entry, as a
    /// sequential check would.
    @discardableResult
    public static func verify(_ log: [LogEntry], rootKey: P256.Signing.PublicKey, head: [UInt8]) throws(VerificationError) -> Int {
        let hashes = log.map(\.hash)
        var failures = [VerificationError?](repeating: nil, count: log.count)
        var previous = emptyHead
        for (position, entry) in log.enumerated() {
            if entry.index != position {
                failures[position] = .wrongIndex(position: position, found: entry.index)
            } else if entry.previous != Hex.encode(previous) {
                failures[position] = .brokenChain(index: position)
            }
            previous = hashes[position]
        }
        let signatureFailures = SignatureFailures(count: log.count)
        let workers = max(1, min(log.count, ProcessInfo.processInfo.activeProcessorCount))
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            for position in stride(from: worker, to: log.count, by: workers) {
                guard let der = Data(base64Encoded: log[position].signature),
                    let signature = try? P256.Signing.ECDSASignature(derRepresentation: der),
                    rootKey.isValidSignature(signature, for: hashes[position])
                else {
                    signatureFailures.mark(position)
                    continue
                }
            }
        }
        for position in signatureFailures.positions where failures[position] == nil { failures[position] = .badSignature(index: position) }
        if let first = failures.first(where: { $0 != nil }) { throw first! }
        if head == emptyHead { return 0 }
        guard let position = hashes.firstIndex(of: head) else { throw .headNotFound(head: Hex.encode(head), entries: log.count) }
        return position + 1
    }
}

/// Positions whose signature failed, collected from parallel workers.
private final class SignatureFailures: Sendable {
    private let state: Mutex<Set<Int>>
    init(count: Int) { state = Mutex([]) }
    func mark(_ position: Int) { state.withLock { _ = $0.insert(position) } }
    var positions: [Int] { state.withLock { $0.sorted() } }
}
