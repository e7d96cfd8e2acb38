import Foundation
import Synchronization
import VeilCore

/// One stored version of the coordinator's state: opaque bytes (a ``StateEnvelope``, encrypted
/// under the state key) and the store's revision of them.
public struct StoredState: Sendable, Equatable {
    public var bytes: [UInt8]
    /// Store-defined and increasing with every write (the generation for files, etcd's mod revision).
    public var revision: Int64

    public init(bytes: [UInt8], revision: Int64) {
        self.bytes = bytes
        self.revision = revision
    }
}

/// Why a store operation failed.
public enum StateStoreError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Someone else wrote first: read again and retry.
    case conflict
    /// The store cannot be reached or refused the operation; nothing was written.
    case unavailable(String)
    case corrupt(String)

    public var description: String {
        switch self {
        case .conflict: return "the state changed concurrently"
        case .unavailable(let why): return "state store unavailable: \(why)"
        case .corrupt(let why): return "state store holds something unreadable: \(why)"
        }
    }
}

/// Where the coordinator's (encrypted) state lives. Every write is a compare-and-swap on the
/// revision, so several replicas can share one store and each change is applied exactly once.
public protocol StateStore: Sendable {
    /// For messages: `file DIR`, `etcd PREFIX at ENDPOINTS`.
    var description: String { get }
    /// The current version, or nil when nothing was ever stored.
    func read() async throws(StateStoreError) -> StoredState?
    /// Stores `bytes` if the current revision is `expected` (nil: only if nothing is stored)
    /// and returns the new revision; ``StateStoreError/conflict`` otherwise. After it returns,
    /// the write survives a crash of this process.
    func write(_ bytes: [UInt8], expecting expected: Int64?) async throws(StateStoreError) -> Int64
    /// Versions written after `revision` by anyone, as they happen. Single-writer stores
    /// return a stream that never yields.
    func changes(after revision: Int64) -> AsyncStream<StoredState>
    /// Deletes the stored state (`--reset`).
    func reset() async throws(StateStoreError)
}

/// Replicas sharing a store find each other here, to hand a newcomer the state key.
public protocol PeerDirectory: Sendable {
    func register(replica: String, peerAddress: String) async throws(StateStoreError)
    /// Replica ID → peer address.
    func peers() async throws(StateStoreError) -> [String: String]
}

/// The embedded default: one file in the data directory (`state.sealed`), replaced
/// atomically (write, fsync, rename). Its revision is the generation in the envelope header.
public final class FileStateStore: StateStore {
    public static let fileName = "state.sealed"
    /// The recovery data of the previous format (VEILSEAL2), folded into the file on its next write.
    static let legacyRecoveryFileName = "recovery.json"

    public let path: String
    let directory: String
    private let lock = Mutex<Void>(())

    public init(directory: String) {
        self.directory = directory
        path = (directory as NSString).appendingPathComponent(Self.fileName)
    }

    public var description: String { "file \(path)" }

    public func read() async throws(StateStoreError) -> StoredState? {
        try lock.withLock { _ throws(StateStoreError) in try readLocked() }
    }

    private func readLocked() throws(StateStoreError) -> StoredState? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard var bytes = FileManager.default.contents(atPath: path).map(Array.init) else {
            throw .unavailable("cannot read \(path)")
        }
        if bytes.starts(with: StateEnvelope.legacyMagic) {
            // Previous format: the state alone; recovery data beside it.
            let recovery = FileManager.default.contents(atPath: (directory as NSString).appendingPathComponent(Self.legacyRecoveryFileName)).map(Array.init)
            bytes = StateEnvelope.wrapLegacy(bytes, recovery: recovery)
            return StoredState(bytes: bytes, revision: 0)
        }
        guard let header = StateEnvelope.header(bytes) else { throw .corrupt("\(path) is not a Veil state file") }
        return StoredState(bytes: bytes, revision: Int64(header.generation))
    }

    public func write(_ bytes: [UInt8], expecting expected: Int64?) async throws(StateStoreError) -> Int64 {
        guard let header = StateEnvelope.header(bytes) else { throw .corrupt("refusing to write a malformed envelope") }
        return try lock.withLock { _ throws(StateStoreError) -> Int64 in
            let current = try readLocked()
            guard current?.revision == expected else { throw .conflict }
            do {
                try AtomicFile.write(bytes, to: path, mode: 0o600)
            } catch {
                throw .unavailable("cannot write \(path): \(error)")
            }
            unlink((directory as NSString).appendingPathComponent(Self.legacyRecoveryFileName))
            return Int64(header.generation)
        }
    }

    public func changes(after revision: Int64) -> AsyncStream<StoredState> {
        AsyncStream { _ in }
    }

    public func reset() async throws(StateStoreError) {
        try lock.withLock { _ throws(StateStoreError) in
            for name in [Self.fileName, Self.legacyRecoveryFileName] {
                let file = (directory as NSString).appendingPathComponent(name)
                if unlink(file) != 0 && errno != ENOENT { throw .unavailable("cannot remove \(file)") }
            }
        }
    }
}
