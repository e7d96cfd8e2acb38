import Crypto
import Foundation
import Synchronization
import VeilAttestation

/// Where the coordinator's sealed state lives.
public protocol StateStore: Sendable {
    /// The last saved plaintext state, or `nil` when none was ever saved.
    func load() throws -> [UInt8]?
    /// Replaces the state; after it returns the new state survives a crash.
    func save(_ state: [UInt8]) throws
}

/// Errors reading or writing sealed state.
public enum SealedStoreError: Error, Equatable, CustomStringConvertible {
    case notSealedState(path: String)
    case cannotUnseal(path: String)
    case io(String)

    public var description: String {
        switch self {
        case .notSealedState(let path): return "\(path) is not a Veil sealed state file"
        case .cannotUnseal(let path):
            return "cannot unseal \(path): the sealing key does not match (state from another installation or a changed sealing key)"
        case .io(let why): return why
        }
    }
}

/// A store whose state key can also be restored by recovery-key holders.
public protocol RecoverableStore: StateStore {
    /// The key the state is encrypted with (after a load or save).
    var stateKey: SymmetricKey? { get }
    /// Saves the recovery data (shares of the state key, each encrypted to a recovery key);
    /// nil removes it.
    func saveRecovery(_ bytes: [UInt8]?) throws
    func loadRecovery() -> [UInt8]?
    /// Decrypts the state with a rebuilt state key and seals that key under the current sealing
    /// key; `note` (which keys helped) is kept for the next start to record in the history.
    func recover(stateKey: SymmetricKey, note: [String: String]) throws -> [UInt8]
    /// The note of a recovery not yet recorded, removed when `consume` is true.
    func recoveryNote(consume: Bool) -> [String: String]?
}

/// The embedded default: a data directory with the state encrypted under a random state key,
/// and that key sealed under the sealing key; both files are replaced atomically.
///
/// - `state.sealed`: `"VEILSEAL2\n"` ‖ AES-256-GCM combined box (nonce ‖ ciphertext ‖ tag) of the
///   state under the state key, the magic as additional data. (`"VEILSEAL1\n"` files, sealed
///   directly under the sealing key, are still read and rewritten in the new form.)
/// - `state-key.sealed`: `"VEILKEY1\n"` ‖ AES-256-GCM box of the state key under the sealing key.
/// - `recovery.json`: the state key split k-of-n and encrypted to the manifest's recovery keys.
public final class SealedFileStore: RecoverableStore, Sendable {
    public static let fileName = "state.sealed"
    public static let keyFileName = "state-key.sealed"
    public static let recoveryFileName = "recovery.json"
    static let magic = Array("VEILSEAL2\n".utf8)
    static let legacyMagic = Array("VEILSEAL1\n".utf8)
    static let keyMagic = Array("VEILKEY1\n".utf8)

    public let path: String
    let keyPath: String
    let recoveryPath: String
    let sealingKey: SymmetricKey
    private let key = Mutex<SymmetricKey?>(nil)

    public init(directory: String, sealingKey: SymmetricKey) {
        path = (directory as NSString).appendingPathComponent(Self.fileName)
        keyPath = (directory as NSString).appendingPathComponent(Self.keyFileName)
        recoveryPath = (directory as NSString).appendingPathComponent(Self.recoveryFileName)
        self.sealingKey = sealingKey
    }

    public var stateKey: SymmetricKey? { key.withLock { $0 } }

    public func load() throws -> [UInt8]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let bytes = try read(path)
        if bytes.starts(with: Self.legacyMagic) {
            return try open(bytes, magic: Self.legacyMagic, with: sealingKey, path: path)
        }
        guard bytes.starts(with: Self.magic) else { throw SealedStoreError.notSealedState(path: path) }
        let keyBytes = try read(keyPath)
        guard keyBytes.starts(with: Self.keyMagic) else { throw SealedStoreError.notSealedState(path: keyPath) }
        let stateKey = SymmetricKey(data: try open(keyBytes, magic: Self.keyMagic, with: sealingKey, path: keyPath))
        let state = try open(bytes, magic: Self.magic, with: stateKey, path: path)
        key.withLock { $0 = stateKey }
        return state
    }

    public func save(_ state: [UInt8]) throws {
        let stateKey = try key.withLock { current -> SymmetricKey in
            if let current { return current }
            let fresh = SymmetricKey(size: .bits256)
            try sealKey(fresh)
            current = fresh
            return fresh
        }
        let box = try AES.GCM.seal(state, using: stateKey, authenticating: Self.magic)
        // `combined` is non-nil for the default 12-byte nonce.
        try AtomicFile.write(Self.magic + Array(box.combined!), to: path, mode: 0o600)
    }

    public func saveRecovery(_ bytes: [UInt8]?) throws {
        if let bytes {
            try AtomicFile.write(bytes, to: recoveryPath, mode: 0o600)
        } else if unlink(recoveryPath) != 0 && errno != ENOENT {
            throw SealedStoreError.io("cannot remove \(recoveryPath)")
        }
    }

    public func loadRecovery() -> [UInt8]? { FileManager.default.contents(atPath: recoveryPath).map(Array.init) }

    public func recover(stateKey: SymmetricKey, note: [String: String]) throws -> [UInt8] {
        let state = try open(try read(path), magic: Self.magic, with: stateKey, path: path)
        try AtomicFile.write(Array(try JSONEncoder().encode(note)), to: notePath, mode: 0o600)
        try sealKey(stateKey)
        key.withLock { $0 = stateKey }
        return state
    }

    public func recoveryNote(consume: Bool) -> [String: String]? {
        guard let data = FileManager.default.contents(atPath: notePath) else { return nil }
        if consume { unlink(notePath) }
        return (try? JSONDecoder().decode([String: String].self, from: data)) ?? [:]
    }

    var notePath: String { recoveryPath + ".recovered" }

    private func sealKey(_ stateKey: SymmetricKey) throws {
        let box = try AES.GCM.seal(stateKey.withUnsafeBytes { Array($0) }, using: sealingKey, authenticating: Self.keyMagic)
        try AtomicFile.write(Self.keyMagic + Array(box.combined!), to: keyPath, mode: 0o600)
    }

    private func read(_ file: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: file) else {
            throw FileManager.default.fileExists(atPath: file) ? SealedStoreError.io("cannot read \(file)") : SealedStoreError.cannotUnseal(path: file)
        }
        return Array(data)
    }

    private func open(_ bytes: [UInt8], magic: [UInt8], with key: SymmetricKey, path: String) throws -> [UInt8] {
        do {
            let box = try AES.GCM.SealedBox(combined: bytes[magic.count...])
            return Array(try AES.GCM.open(box, using: key, authenticating: magic))
        } catch {
            throw SealedStoreError.cannotUnseal(path: path)
        }
    }
}

/// The simulated TEE's sealing key: a random key in a file named so nobody mistakes it for
/// hardware sealing. Anyone who reads it can decrypt the state.
public enum SimulatedSealingKey {
    public static let fileName = "sealing-key.simulation-insecure"

    public static func loadOrCreate(directory: String) throws -> SymmetricKey {
        let path = (directory as NSString).appendingPathComponent(fileName)
        if let data = FileManager.default.contents(atPath: path) {
            guard let text = String(data: data, encoding: .utf8), let bytes = Hex.decode(text.trimmingCharacters(in: .whitespacesAndNewlines)),
                bytes.count == 32
            else { throw SealedStoreError.io("\(path) does not hold a 32-byte hex sealing key") }
            return SymmetricKey(data: bytes)
        }
        let key = SymmetricKey(size: .bits256)
        try AtomicFile.write(Array((key.withUnsafeBytes { Hex.encode($0) } + "\n").utf8), to: path, mode: 0o600)
        return key
    }
}
