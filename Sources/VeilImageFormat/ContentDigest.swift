import Crypto

/// The digest of a regular file's content in the rootfs measurement.
///
/// Files up to ``chunkSize`` are `SHA-256(content)`; larger ones are
/// `SHA-256("veil-chunked-v1\0" ‖ SHA-256(chunk₀) ‖ SHA-256(chunk₁) ‖ …)` over consecutive
/// ``chunkSize`` chunks (the last may be shorter). The size is measured beside it, so chunking
/// is unambiguous. Why: a launcher measures its whole root at every start, and a single large
/// file (the launcher itself is 33 MB) would otherwise be hashed on one core.
///
/// Invariant: feeding the same bytes in any split of ``update(_:)`` calls gives the same
/// digest, and equals ``of(_:)`` and ``combine(_:)`` of the per-chunk digests.
public struct ContentDigest {
    public static let chunkSize = 1 << 20
    static let chunkedDomain = Array("veil-chunked-v1\0".utf8)

    private var chunk = SHA256()
    private var inChunk = 0
    private var chunks: [[UInt8]] = []

    public init() {}

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        var rest = bytes
        while !rest.isEmpty {
            if inChunk == Self.chunkSize {
                chunks.append(Array(chunk.finalize()))
                chunk = SHA256()
                inChunk = 0
            }
            let take = min(rest.count, Self.chunkSize - inChunk)
            chunk.update(bufferPointer: UnsafeRawBufferPointer(rebasing: rest[..<take]))
            inChunk += take
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
        }
    }

    public mutating func finalize() -> [UInt8] {
        let last = Array(chunk.finalize())
        // A file of at most one chunk: its plain SHA-256.
        guard !chunks.isEmpty else { return last }
        return Self.combine(chunks + [last])
    }

    /// The digest of `bytes` held in memory.
    public static func of(_ bytes: [UInt8]) -> [UInt8] {
        var digest = ContentDigest()
        bytes.withUnsafeBytes { digest.update($0) }
        return digest.finalize()
    }

    /// Combines the SHA-256 digests of a file's chunks (more than one) into its content digest.
    public static func combine(_ chunkDigests: [[UInt8]]) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: chunkedDomain)
        for digest in chunkDigests { hasher.update(data: digest) }
        return Array(hasher.finalize())
    }

    /// How many chunks a file of `size` bytes is hashed in (1 for files up to one chunk).
    public static func chunkCount(size: UInt64) -> Int {
        size <= UInt64(chunkSize) ? 1 : Int((size + UInt64(chunkSize) - 1) / UInt64(chunkSize))
    }
}
