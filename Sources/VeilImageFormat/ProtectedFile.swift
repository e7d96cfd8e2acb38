import Crypto
import Dispatch
import FoundationEssentials
import Glibc
import Synchronization

/// Veil protected files: a file encrypted in fixed-size chunks with AES-256-GCM, whose
/// chunk tags are committed to by a Merkle root in an authenticated header. See
/// docs/protected-files.md for the byte layout.
///
/// Every chunk's additional data binds the file ID, the chunk index, the chunk count, the
/// plaintext size and the version, so a chunk cannot move within a file, into another file,
/// or into another version, and the file cannot be truncated or extended unnoticed.
public enum ProtectedFile {
    public static let magic = Array("VEILPF01".utf8)
    public static let defaultChunkSize = 64 * 1024
    public static let headerSize = 8 + 8 + 8 + 4 + 4 + 16 + 32 + 8 + 32   // = 120
    static let chunkPrefix = 24
    static let tagSize = 16

    /// Why a protected file was refused. No plaintext is returned with any of them.
    public enum Error: Swift.Error, Equatable, Sendable, CustomStringConvertible {
        case notAProtectedFile
        case wrongKey
        case headerTampered
        case truncated(expected: Int, actual: Int)
        case extended(expected: Int, actual: Int)
        case chunkCorrupted(index: Int)
        case chunkOutOfPlace(index: Int, belongsAt: Int)
        case chunkFromAnotherFile(index: Int)
        case rollback(recorded: UInt64, found: UInt64)
        case pathMismatch

        public var description: String {
            switch self {
            case .notAProtectedFile: return "not a Veil protected file (bad magic or header)"
            case .wrongKey: return "the key does not open this protected file"
            case .headerTampered: return "protected file header was modified"
            case .truncated(let expected, let actual): return "protected file truncated: \(actual) of \(expected) bytes"
            case .extended(let expected, let actual): return "protected file extended: \(actual) bytes, header says \(expected)"
            case .chunkCorrupted(let index): return "chunk \(index) was modified"
            case .chunkOutOfPlace(let index, let belongsAt): return "chunk \(index) holds chunk \(belongsAt) of this file (reordered)"
            case .chunkFromAnotherFile(let index): return "chunk \(index) comes from another protected file"
            case .rollback(let recorded, let found): return "protected file version \(found) is older than the recorded version \(recorded) (rollback)"
            case .pathMismatch: return "protected file belongs to another path"
            }
        }
    }

    /// What the header commits to; the coordinator records `version` and `root` per path.
    public struct Header: Sendable, Equatable {
        public var version: UInt64
        public var plaintextSize: UInt64
        public var chunkSize: UInt32
        public var chunkCount: UInt32
        public var fileID: [UInt8]
        /// Merkle root over the chunk tags.
        public var root: [UInt8]

        var encodedFields: [UInt8] {
            ProtectedFile.magic + be(version) + be(plaintextSize) + be32(chunkSize) + be32(chunkCount) + fileID + root
        }
    }

    /// The per-file key: HKDF-SHA256(secret, salt: file ID, info: "veil-protected-file-v1" ‖ path).
    static func fileKey(secret: SymmetricKey, path: String, fileID: [UInt8]) -> SymmetricKey {
        HKDF<SHA256>.deriveKey(
            inputKeyMaterial: secret, salt: fileID, info: Array("veil-protected-file-v1\0\(path)".utf8), outputByteCount: 32)
    }

    /// Encrypts `plaintext` for `path` as version `version`.
    /// - Parameter fileID: 16 bytes that must never repeat for different plaintexts under the
    ///   same secret, path and version (the chunk nonces are counters under the per-file key).
    ///   Default: random. ``deterministicFileID(secret:path:version:plaintext:)`` derives one
    ///   from the content, for reproducible images.
    public static func seal(_ plaintext: [UInt8], path: String, secret: SymmetricKey, version: UInt64, chunkSize: Int = defaultChunkSize,
                            fileID: [UInt8]? = nil) throws -> [UInt8] {
        precondition(chunkSize > 0 && chunkSize <= Int(UInt32.max))
        precondition(fileID == nil || fileID!.count == 16)
        let fileID = fileID ?? Array(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) })
        let key = fileKey(secret: secret, path: path, fileID: fileID)
        let count = max(1, (plaintext.count + chunkSize - 1) / chunkSize)
        var header = Header(
            version: version, plaintextSize: UInt64(plaintext.count), chunkSize: UInt32(chunkSize), chunkCount: UInt32(count),
            fileID: fileID, root: [])
        var body: [UInt8] = []
        body.reserveCapacity(plaintext.count + count * (chunkPrefix + tagSize))
        var tags: [[UInt8]] = []
        for index in 0..<count {
            let chunk = plaintext[min(plaintext.count, index * chunkSize)..<min(plaintext.count, (index + 1) * chunkSize)]
            let prefix = fileID + be(UInt64(index))
            let box = try AES.GCM.seal(chunk, using: key, nonce: nonce(index), authenticating: prefix + aad(header))
            body += prefix + box.ciphertext + box.tag
            tags.append(Array(box.tag))
        }
        header.root = merkleRoot(tags)
        let fields = header.encodedFields
        let mac = Array(HMAC<SHA256>.authenticationCode(for: fields, using: key))
        return fields + keyCheck(key) + mac + body
    }

    /// Decrypts a whole protected file, checking everything before returning any plaintext.
    /// - Parameter minimumVersion: the latest version recorded for `path`; older is a rollback.
    public static func open(_ bytes: [UInt8], path: String, secret: SymmetricKey, minimumVersion: UInt64 = 0) throws(Error) -> (Header, [UInt8]) {
        let (header, key) = try readHeader(bytes, path: path, secret: secret)
        try checkLayout(header, minimumVersion: minimumVersion, fileSize: bytes.count)
        let plaintext = try openChunks(header, key: key) { offset, chunk in
            chunk = Array(bytes[offset..<offset + chunk.count])
            return true
        }
        return (header, plaintext)
    }

    /// Opens a protected file on disk. Chunks are read with `pread` and decrypted in parallel,
    /// so reading and decryption overlap across cores; the checks and errors are those of
    /// ``open(_:path:secret:minimumVersion:)`` and no plaintext is returned unless all pass.
    public static func open(fileAt filePath: String, path: String, secret: SymmetricKey, minimumVersion: UInt64 = 0) throws(Error) -> (Header, [UInt8]) {
        let fd = Glibc.open(filePath, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .notAProtectedFile }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw .notAProtectedFile }
        let fileSize = Int(info.st_size)
        var headerBytes = [UInt8](repeating: 0, count: min(headerSize, fileSize))
        guard preadFully(fd, &headerBytes, at: 0) else { throw .notAProtectedFile }
        let (header, key) = try readHeader(headerBytes, path: path, secret: secret)
        try checkLayout(header, minimumVersion: minimumVersion, fileSize: fileSize)
        let plaintext = try openChunks(header, key: key) { offset, chunk in preadFully(fd, &chunk, at: offset) }
        return (header, plaintext)
    }

    /// Fetches, checks and decrypts every chunk on all cores into one buffer; returns the
    /// plaintext only if every chunk is in place, from this file and authentic, and the tags
    /// match the header's Merkle root. On failure, the lowest-numbered chunk's error is thrown,
    /// as a sequential reader would report it.
    /// - Parameter fetch: fills the buffer with the chunk's stored bytes at a file offset.
    private static func openChunks(
        _ header: Header, key: SymmetricKey, fetch: @escaping @Sendable (Int, inout [UInt8]) -> Bool
    ) throws(Error) -> [UInt8] {
        let size = Int(header.plaintextSize)
        let chunkSize = Int(header.chunkSize)
        let count = Int(header.chunkCount)
        let expected = headerSize + count * (chunkPrefix + tagSize) + size
        let additional = aad(header)
        let fileID = header.fileID
        var plaintext = [UInt8](repeating: 0, count: size)
        var tagTable = [UInt8](repeating: 0, count: count * tagSize)
        let failure = FirstFailure()
        plaintext.withUnsafeMutableBufferPointer { output in
            let output = UnsafeMutableSendableBuffer(output)
            tagTable.withUnsafeMutableBufferPointer { tags in
                let tags = UnsafeMutableSendableBuffer(tags)
                DispatchQueue.concurrentPerform(iterations: count) { index in
                    let length = min(chunkSize, size - index * chunkSize)
                    var chunk = [UInt8](repeating: 0, count: chunkPrefix + length + tagSize)
                    guard fetch(headerSize + index * (chunkPrefix + chunkSize + tagSize), &chunk) else {
                        return failure.record(index, .truncated(expected: expected, actual: headerSize + index * (chunkPrefix + chunkSize + tagSize)))
                    }
                    guard chunk[0..<16].elementsEqual(fileID) else { return failure.record(index, .chunkFromAnotherFile(index: index)) }
                    let claimed = Int(clamping: beValue(chunk[16..<24]))
                    guard claimed == index else { return failure.record(index, .chunkOutOfPlace(index: index, belongsAt: claimed)) }
                    let tag = chunk[(chunkPrefix + length)...]
                    guard let box = try? AES.GCM.SealedBox(nonce: nonce(index), ciphertext: chunk[chunkPrefix..<chunkPrefix + length], tag: tag),
                        let opened = try? AES.GCM.open(box, using: key, authenticating: Array(chunk[..<chunkPrefix]) + additional)
                    else { return failure.record(index, .chunkCorrupted(index: index)) }
                    opened.withUnsafeBytes { output.copy(from: $0, at: index * chunkSize) }
                    Array(tag).withUnsafeBytes { tags.copy(from: $0, at: index * tagSize) }
                }
            }
        }
        if let error = failure.error { throw error }
        // Every tag verified; the root ties them to the authenticated header.
        let tags = (0..<count).map { Array(tagTable[$0 * tagSize..<($0 + 1) * tagSize]) }
        guard merkleRoot(tags) == header.root else { throw .headerTampered }
        return plaintext
    }

    /// Rollback, then the exact file size the header implies. Returns that size.
    @discardableResult
    static func checkLayout(_ header: Header, minimumVersion: UInt64, fileSize: Int) throws(Error) -> Int {
        guard header.version >= minimumVersion else { throw .rollback(recorded: minimumVersion, found: header.version) }
        let expected = headerSize + Int(header.chunkCount) * (chunkPrefix + tagSize) + Int(header.plaintextSize)
        guard fileSize >= expected else { throw .truncated(expected: expected, actual: fileSize) }
        guard fileSize == expected else { throw .extended(expected: expected, actual: fileSize) }
        return expected
    }

    private static func preadFully(_ fd: Int32, _ buffer: inout [UInt8], at offset: Int) -> Bool {
        var done = 0
        return buffer.withUnsafeMutableBytes { raw in
            while done < raw.count {
                let count = pread(fd, raw.baseAddress! + done, raw.count - done, off_t(offset + done))
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { return false }
                done += count
            }
            return true
        }
    }

    /// A file ID bound to the secret, path, version and content: the same input seals to the
    /// same bytes, and different content never shares a per-file key (it reveals only whether
    /// two files sealed under one secret are identical).
    public static func deterministicFileID(secret: SymmetricKey, path: String, version: UInt64, plaintext: [UInt8]) -> [UInt8] {
        let message = Array("veil-pf-file-id\0\(path)\0".utf8) + be(version) + Array(SHA256.hash(data: plaintext))
        return Array(HMAC<SHA256>.authenticationCode(for: message, using: secret).prefix(16))
    }

    /// Reads and authenticates the header only (what the coordinator records for rollback checks).
    public static func readHeader(_ bytes: [UInt8], path: String, secret: SymmetricKey) throws(Error) -> (Header, SymmetricKey) {
        guard bytes.count >= headerSize, bytes.starts(with: magic) else { throw .notAProtectedFile }
        var header = Header(
            version: beValue(bytes[8..<16]), plaintextSize: beValue(bytes[16..<24]), chunkSize: UInt32(beValue(bytes[24..<28])),
            chunkCount: UInt32(beValue(bytes[28..<32])), fileID: Array(bytes[32..<48]), root: Array(bytes[48..<80]))
        let key = fileKey(secret: secret, path: path, fileID: header.fileID)
        guard Array(bytes[80..<88]) == keyCheck(key) else { throw .wrongKey }
        let mac = Array(bytes[88..<120])
        guard HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: header.encodedFields, using: key) else { throw .headerTampered }
        guard header.chunkSize > 0,
            UInt64(header.chunkCount) == max(1, (header.plaintextSize + UInt64(header.chunkSize) - 1) / UInt64(header.chunkSize))
        else { throw .headerTampered }
        header.root = Array(bytes[48..<80])
        return (header, key)
    }

    /// A key-specific check value (not a MAC of anything secret): tells a wrong key from tampering.
    static func keyCheck(_ key: SymmetricKey) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array("veil-pf-key-check".utf8), using: key).prefix(8))
    }

    static func aad(_ header: Header) -> [UInt8] {
        be(header.version) + be(header.plaintextSize) + be32(header.chunkSize) + be32(header.chunkCount)
    }

    static func nonce(_ index: Int) -> AES.GCM.Nonce {
        // Unique per chunk under a key that is unique per (secret, path, file ID).
        try! AES.GCM.Nonce(data: [0, 0, 0, 0] + be(UInt64(index)))
    }

    /// Binary Merkle tree over SHA-256(0x00 ‖ tag) leaves, nodes SHA-256(0x01 ‖ left ‖ right);
    /// an odd node is carried up unchanged.
    static func merkleRoot(_ tags: [[UInt8]]) -> [UInt8] {
        var level = tags.map { Array(SHA256.hash(data: [0x00] + $0)) }
        while level.count > 1 {
            var next: [[UInt8]] = []
            for pair in stride(from: 0, to: level.count, by: 2) {
                next.append(pair + 1 < level.count ? Array(SHA256.hash(data: [0x01] + level[pair] + level[pair + 1])) : level[pair])
            }
            level = next
        }
        return level.first ?? Array(SHA256.hash(data: [0x00]))
    }
}

private func be(_ value: UInt64) -> [UInt8] { (0..<8).reversed().map { UInt8(truncatingIfNeeded: value >> (UInt64($0) * 8)) } }
private func be32(_ value: UInt32) -> [UInt8] { (0..<4).reversed().map { UInt8(truncatingIfNeeded: value >> (UInt32($0) * 8)) } }
private func beValue(_ bytes: ArraySlice<UInt8>) -> UInt64 { bytes.reduce(0) { $0 << 8 | UInt64($1) } }

/// Lets the parallel decryption share the input and output buffers; each task touches only
/// its own chunk's range.

private struct UnsafeMutableSendableBuffer: @unchecked Sendable {
    let raw: UnsafeMutableRawBufferPointer
    init(_ buffer: UnsafeMutableBufferPointer<UInt8>) { raw = UnsafeMutableRawBufferPointer(buffer) }

    func copy(from source: UnsafeRawBufferPointer, at offset: Int) {
        precondition(offset >= 0 && offset + source.count <= raw.count)
        UnsafeMutableRawBufferPointer(rebasing: raw[offset..<offset + source.count]).copyMemory(from: source)
    }
}

/// The failure of the lowest-numbered chunk, so parallel decryption reports what a sequential
/// reader would.
private final class FirstFailure: Sendable {
    private let state = Mutex<(index: Int, error: ProtectedFile.Error)?>(nil)

    func record(_ index: Int, _ error: ProtectedFile.Error) {
        state.withLock { current in
            if current == nil || index < current!.index { current = (index, error) }
        }
    }

    var error: ProtectedFile.Error? { state.withLock { $0?.error } }
}
