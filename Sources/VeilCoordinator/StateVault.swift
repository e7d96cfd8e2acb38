import Crypto
import Foundation
import Synchronization
import VeilAttestation
import VeilCore

/// The bytes a store holds: the state encrypted under the state key, its generation in the
/// clear but authenticated, and the recovery data, written together in one atomic step.
///
/// `"VEILSTATE3\n"` ‖ u64 generation ‖ u32 n ‖ AES-256-GCM box (n bytes: nonce ‖ ciphertext ‖
/// tag; additional data = magic ‖ generation) ‖ u32 m ‖ recovery JSON (m bytes, 0 when none).
/// Integers big-endian.
enum StateEnvelope {
    static let magic = Array("VEILSTATE3\n".utf8)
    /// The previous format: the state alone under the state key (additional data = magic).
    static let legacyMagic = Array("VEILSEAL2\n".utf8)

    struct Header: Equatable {
        var generation: UInt64
        var box: ArraySlice<UInt8>
        var recovery: [UInt8]?
    }

    /// Parses the framing without decrypting (generation and recovery data are readable without the key).
    static func header(_ bytes: [UInt8]) -> Header? {
        guard bytes.starts(with: magic) else {
            return bytes.starts(with: legacyMarker) ? legacyHeader(bytes) : nil
        }
        var offset = magic.count
        func integer(_ size: Int) -> UInt64? {
            guard bytes.count - offset >= size else { return nil }
            defer { offset += size }
            return bytes[offset..<offset + size].reduce(0) { $0 << 8 | UInt64($1) }
        }
        guard let generation = integer(8), let boxLength = integer(4).map(Int.init), bytes.count - offset >= boxLength else { return nil }
        let box = bytes[offset..<offset + boxLength]
        offset += boxLength
        guard let recoveryLength = integer(4).map(Int.init), bytes.count - offset == recoveryLength else { return nil }
        return Header(generation: generation, box: box, recovery: recoveryLength == 0 ? nil : Array(bytes[offset...]))
    }

    static func encode(generation: UInt64, box: [UInt8], recovery: [UInt8]?) -> [UInt8] {
        var bytes = magic
        withUnsafeBytes(of: generation.bigEndian) { bytes += $0 }
        withUnsafeBytes(of: UInt32(box.count).bigEndian) { bytes += $0 }
        bytes += box
        withUnsafeBytes(of: UInt32(recovery?.count ?? 0).bigEndian) { bytes += $0 }
        bytes += recovery ?? []
        return bytes
    }

    static func additionalData(generation: UInt64) -> [UInt8] {
        var bytes = magic
        withUnsafeBytes(of: generation.bigEndian) { bytes += $0 }
        return bytes
    }

    /// A previous-format file, framed so ``header(_:)`` reads it: marker ‖ u32 recovery length ‖
    /// recovery ‖ the original bytes (generation 0: its real one is inside the encrypted state).
    static let legacyMarker = Array("VEILLEGACY2\n".utf8)

    static func wrapLegacy(_ original: [UInt8], recovery: [UInt8]?) -> [UInt8] {
        var bytes = legacyMarker
        withUnsafeBytes(of: UInt32(recovery?.count ?? 0).bigEndian) { bytes += $0 }
        return bytes + (recovery ?? []) + original
    }

    private static func legacyHeader(_ bytes: [UInt8]) -> Header? {
        var offset = legacyMarker.count
        guard bytes.count - offset >= 4 else { return nil }
        let length = Int(bytes[offset..<offset + 4].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
        offset += 4
        guard bytes.count - offset >= length, bytes[(offset + length)...].starts(with: legacyMagic) else { return nil }
        let recovery = length == 0 ? nil : Array(bytes[offset..<offset + length])
        return Header(generation: 0, box: bytes[(offset + length + legacyMagic.count)...], recovery: recovery)
    }

    static func isLegacy(_ bytes: [UInt8]) -> Bool { bytes.starts(with: legacyMarker) }
}

/// Why this replica cannot use what the store holds.
public enum VaultError: Error, Equatable, Sendable, CustomStringConvertible {
    /// This replica has no state key (new machine, new pod, changed sealing key).
    case noStateKey
    /// The local state key does not open the stored state (a different coordinator's state, or a reset).
    case wrongStateKey
    /// The store holds an older generation than this replica has seen: state rolled back.
    case rollback(stored: UInt64, seen: UInt64)
    /// The store is empty, but this replica holds a state key or has seen a generation:
    /// the state was deleted, or the replica points at the wrong store.
    case stateMissing(detail: String)
    case malformed(String)

    public var description: String {
        switch self {
        case .noStateKey: return "this replica holds no state key for the stored state"
        case .wrongStateKey: return "this replica's state key does not open the stored state (another coordinator's state, or the store was reset)"
        case .rollback(let stored, let seen):
            return "state rollback refused: the store holds generation \(stored), but this replica has already seen generation \(seen) (an old state was put back)"
        case .stateMissing(let detail):
            return "the store holds no state, but this replica has one (\(detail)): the state was deleted or this is the wrong store; "
                + "start with --reset to begin a new coordinator (its root CA and all secrets are then lost)"
        case .malformed(let why): return why
        }
    }
}

/// What one replica keeps for itself, sealed under its own sealing key in its data directory:
/// the state key (`state-key.sealed`) and the highest generation it has seen
/// (`generation.sealed`, rollback protection). The state key never leaves the replica except
/// sealed, to a recovery key holder's share, or to an attested peer.
///
/// A *sealing context* names, in the clear, the parameters the sealing key was derived with
/// (an SEV-SNP replica's pinned TCB version, ``PinnedSNPSealing``): a restarted replica must
/// read it before it can ask its TEE for the same key. The context is authenticated as part of
/// each file's additional data, and the key itself depends on it, so a changed context opens
/// nothing. Without a context the files keep their first format:
/// `"VEILKEY1\n"` ‖ AES-256-GCM box (additional data = magic); with one:
/// `"VEILKEY2\n"` ‖ u8 n ‖ context (n bytes) ‖ box (additional data = everything before it);
/// likewise `VEILGEN1`/`VEILGEN2`.
public final class StateVault: Sendable {
    public static let keyFileName = "state-key.sealed"
    public static let generationFileName = "generation.sealed"
    static let keyMagic = Array("VEILKEY1\n".utf8)
    static let generationMagic = Array("VEILGEN1\n".utf8)
    static let keyMagicWithContext = Array("VEILKEY2\n".utf8)
    static let generationMagicWithContext = Array("VEILGEN2\n".utf8)

    let directory: String
    let keyPath: String
    let generationPath: String
    /// nil on TEEs without a sealing key (TDX): the state key then lives only in memory.
    let sealingKey: SymmetricKey?
    /// The parameters `sealingKey` was derived with, written beside each sealed file.
    public let sealingContext: [UInt8]
    private let key: Mutex<SymmetricKey?>
    /// The highest generation seen, in memory: what ``open(_:with:)`` checks against.
    private let highWater: Mutex<UInt64>
    /// The generation `generation.sealed` holds; held while the file is written, so writes
    /// never overtake each other and the file never goes back.
    private let writtenMark: Mutex<UInt64>

    public init(directory: String, sealingKey: SymmetricKey?, sealingContext: [UInt8] = []) {
        precondition(sealingContext.count <= 255, "a sealing context is at most 255 bytes")
        self.directory = directory
        keyPath = (directory as NSString).appendingPathComponent(Self.keyFileName)
        generationPath = (directory as NSString).appendingPathComponent(Self.generationFileName)
        self.sealingKey = sealingKey
        self.sealingContext = sealingContext
        let open = { (path: String, magic: [UInt8]) -> [UInt8]? in
            let header = Self.fileHeader(magic: magic, context: sealingContext)
            guard let sealingKey, let bytes = FileManager.default.contents(atPath: path).map(Array.init), bytes.starts(with: header),
                let box = try? AES.GCM.SealedBox(combined: bytes[header.count...]),
                let plain = try? AES.GCM.open(box, using: sealingKey, authenticating: header)
            else { return nil }
            return Array(plain)
        }
        key = Mutex(open(keyPath, Self.keyMagic).flatMap { $0.count == 32 ? SymmetricKey(data: $0) : nil })
        let mark = open(generationPath, Self.generationMagic).flatMap { $0.count == 8 ? $0.reduce(UInt64(0)) { $0 << 8 | UInt64($1) } : nil } ?? 0
        highWater = Mutex(mark)
        writtenMark = Mutex(mark)
    }

    /// The sealing context the sealed state key in `directory` names: `nil` when there is no
    /// sealed key, empty for the first format, or what is unreadable as either.
    public static func storedSealingContext(in directory: String) -> [UInt8]? {
        let path = (directory as NSString).appendingPathComponent(keyFileName)
        guard let bytes = FileManager.default.contents(atPath: path).map(Array.init) else { return nil }
        guard bytes.starts(with: keyMagicWithContext), bytes.count > keyMagicWithContext.count else { return [] }
        let length = Int(bytes[keyMagicWithContext.count])
        let start = keyMagicWithContext.count + 1
        guard bytes.count >= start + length else { return [] }
        return Array(bytes[start..<start + length])
    }

    /// The clear part of a sealed file, which is also its additional data.
    static func fileHeader(magic: [UInt8], context: [UInt8]) -> [UInt8] {
        guard !context.isEmpty else { return magic }
        let versioned = magic == keyMagic ? keyMagicWithContext : generationMagicWithContext
        return versioned + [UInt8(context.count)] + context
    }

    public var stateKey: SymmetricKey? { key.withLock { $0 } }
    public var highestGeneration: UInt64 { highWater.withLock { $0 } }

    /// Whether this replica has served a state before (a sealed key or a seen generation on disk).
    public var hasLocalTraces: Bool {
        FileManager.default.fileExists(atPath: keyPath) || FileManager.default.fileExists(atPath: generationPath)
    }

    /// Takes `stateKey` as this replica's, sealing it to disk when a sealing key exists.
    public func adopt(stateKey: SymmetricKey) throws {
        if let sealingKey { try write(stateKey.withUnsafeBytes { Array($0) }, magic: Self.keyMagic, to: keyPath, under: sealingKey) }
        key.withLock { $0 = stateKey }
    }

    /// Records that `generation` was stored or seen; never lowers the mark.
    public func note(generation: UInt64) throws {
        raise(to: generation)
        try writeMark()
    }

    /// Raises the in-memory mark (``open(_:with:)`` refuses older states at once); the file
    /// follows with ``writeMark()``. Never lowers it.
    func raise(to generation: UInt64) {
        highWater.withLock { $0 = max($0, generation) }
    }

    /// Writes the in-memory mark to `generation.sealed` unless the file already holds it — a
    /// write that waited behind another finds its generation covered and writes nothing, so
    /// concurrent transactions share one write.
    func writeMark() throws {
        guard let sealingKey else { return }
        try writtenMark.withLock { written throws in
            let target = highestGeneration
            guard target > written else { return }
            try write(Self.bigEndian(target), magic: Self.generationMagic, to: generationPath, under: sealingKey)
            written = target
        }
    }

    /// This vault's state key and generation mark sealed again under `newKey` with `context`
    /// (each file replaced atomically), as the vault that now opens them. The key file is
    /// written last: a crash between the two leaves a replica that still opens its state key
    /// and re-raises its generation mark from the store.
    public func resealed(under newKey: SymmetricKey, context: [UInt8]) throws -> StateVault {
        let next = StateVault(directory: directory, sealingKey: newKey, sealingContext: context)
        let generation = highestGeneration
        if generation > 0 {
            try next.write(Self.bigEndian(generation), magic: Self.generationMagic, to: generationPath, under: newKey)
            next.highWater.withLock { $0 = generation }
            next.writtenMark.withLock { $0 = generation }
        }
        if let stateKey { try next.adopt(stateKey: stateKey) }
        return next
    }

    private func write(_ plain: [UInt8], magic: [UInt8], to path: String, under sealingKey: SymmetricKey) throws {
        let header = Self.fileHeader(magic: magic, context: sealingContext)
        let box = try AES.GCM.seal(plain, using: sealingKey, authenticating: header)
        try AtomicFile.write(header + Array(box.combined!), to: path, mode: 0o600)
    }

    private static func bigEndian(_ value: UInt64) -> [UInt8] { withUnsafeBytes(of: value.bigEndian, Array.init) }

    /// Forgets the key and the generation mark (`--reset`).
    public func reset() {
        unlink(keyPath)
        unlink(generationPath)
        key.withLock { $0 = nil }
        highWater.withLock { $0 = 0 }
        writtenMark.withLock { $0 = 0 }
    }

    /// The envelope for `state` (encrypted under the state key) and `recovery`.
    func seal(_ state: CoordinatorState, recovery: [UInt8]?) throws(CoordinatorError) -> [UInt8] {
        guard let stateKey else { throw .storage("no state key") }
        do {
            let box = try AES.GCM.seal(state.encoded(), using: stateKey, authenticating: StateEnvelope.additionalData(generation: state.generation))
            return StateEnvelope.encode(generation: state.generation, box: Array(box.combined!), recovery: recovery)
        } catch {
            throw .storage("cannot encrypt the state: \(error)")
        }
    }

    /// Decrypts an envelope with `key` (default: this replica's) and checks it is not older than
    /// what this replica has seen.
    func open(_ bytes: [UInt8], with key: SymmetricKey? = nil) throws(VaultError) -> (state: CoordinatorState, recovery: [UInt8]?) {
        guard let header = StateEnvelope.header(bytes) else { throw .malformed("the store holds no Veil state envelope") }
        guard let key = key ?? stateKey else { throw .noStateKey }
        let legacy = StateEnvelope.isLegacy(bytes)
        let additional = legacy ? StateEnvelope.legacyMagic : StateEnvelope.additionalData(generation: header.generation)
        guard let box = try? AES.GCM.SealedBox(combined: header.box), let plain = try? AES.GCM.open(box, using: key, authenticating: additional) else {
            throw .wrongStateKey
        }
        let state: CoordinatorState
        do {
            state = try CoordinatorState.decode(Array(plain))
        } catch {
            throw .malformed("\(error)")
        }
        // A legacy file's generation lives inside it; a new one's header must agree with it.
        guard legacy || state.generation == header.generation else { throw .malformed("the envelope's generation does not match its state's") }
        let seen = highestGeneration
        guard state.generation >= seen else { throw .rollback(stored: state.generation, seen: seen) }
        return (state, header.recovery)
    }
}

/// Everything a replica does with bytes read back from its store, up to a state it can run
/// on, in one place for the fuzz target `state-envelope`: the bytes come from a disk or an
/// etcd cluster outside the TEE, so none of these steps may trap on any input.
package enum StoredStateReader {
    /// Framing, the recovery data beside the state, decryption under `vault`'s key, then the
    /// state and what is built from it (certificate authority, manifest).
    package static func read(_ bytes: [UInt8], vault: StateVault) {
        if let recovery = StateEnvelope.header(bytes)?.recovery { _ = try? RecoveryData.parse(recovery) }
        guard let opened = try? vault.open(bytes) else { return }
        _ = try? build(opened.state)
    }

    /// An authentic envelope (generation 1) around `plaintext` as the state, so a fuzzer's
    /// bytes reach the steps after decryption.
    /// `recovery` is stored beside it, as a store holds recovery data.
    package static func envelope(aroundState plaintext: [UInt8], key: SymmetricKey, recovery: [UInt8]? = nil) -> [UInt8] {
        guard let box = try? AES.GCM.seal(plaintext, using: key, authenticating: StateEnvelope.additionalData(generation: 1)), let combined = box.combined
        else { return [] }
        return StateEnvelope.encode(generation: 1, box: Array(combined), recovery: recovery)
    }

    /// A fresh coordinator's state as JSON (what the vault encrypts), with `manifest` set.
    package static func sampleState(manifest: [UInt8]?) throws -> [UInt8] {
        var state = CoordinatorState(authority: try CertificateAuthority.generate())
        state.manifest = manifest
        state.generation = 1
        return state.encoded()
    }

    private static func build(_ state: CoordinatorState) throws {
        _ = try state.authority()
        _ = try Coordinator.parseStored(state.manifest)
    }
}
