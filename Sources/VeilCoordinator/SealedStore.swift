import Crypto
import Foundation
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

/// The embedded default: one AES-256-GCM sealed file in a data directory, replaced atomically.
///
/// File layout: `"VEILSEAL1\n"` ‖ AES-GCM combined box (12-byte nonce ‖ ciphertext ‖ 16-byte
/// tag), with the magic as additional authenticated data.
public struct SealedFileStore: StateStore {
    public static let fileName = "state.sealed"
    static let magic = Array("VEILSEAL1\n".utf8)

    public let path: String
    let key: SymmetricKey

    public init(directory: String, sealingKey: SymmetricKey) {
        self.path = (directory as NSString).appendingPathComponent(Self.fileName)
        self.key = sealingKey
    }

    public func load() throws -> [UInt8]? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        guard let data = FileManager.default.contents(atPath: path) else { throw SealedStoreError.io("cannot read \(path)") }
        let bytes = Array(data)
        guard bytes.starts(with: Self.magic) else { throw SealedStoreError.notSealedState(path: path) }
        do {
            let box = try AES.GCM.SealedBox(combined: bytes[Self.magic.count...])
            return Array(try AES.GCM.open(box, using: key, authenticating: Self.magic))
        } catch {
            throw SealedStoreError.cannotUnseal(path: path)
        }
    }

    public func save(_ state: [UInt8]) throws {
        let box = try AES.GCM.seal(state, using: key, authenticating: Self.magic)
        // `combined` is non-nil for the default 12-byte nonce.
        try AtomicFile.write(Self.magic + Array(box.combined!), to: path, mode: 0o600)
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
