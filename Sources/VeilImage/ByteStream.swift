import Crypto
import Glibc

/// A source of bytes read front to back. Image code reads every blob through one of these,
/// so no layer is ever held in memory whole.
public protocol ByteStream: AnyObject {
    /// Reads up to `buffer.count` bytes; returns 0 only at the end.
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

extension ByteStream {
    /// Reads exactly `count` bytes, or fails with `error` if the stream ends first.
    func readExactly(_ count: Int, orElse error: @autoclosure () -> ImageError) throws -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let n = try bytes.withUnsafeMutableBytes { (raw) throws -> Int in
                try read(into: UnsafeMutableRawBufferPointer(rebasing: raw[filled...]))
            }
            if n == 0 { throw error() }
            filled += n
        }
        return bytes
    }

    /// Reads and discards `count` bytes, handing each piece to `body`.
    public func consume(_ count: UInt64, scratch: inout [UInt8], orElse error: @autoclosure () -> ImageError,
                        _ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        var remaining = count
        while remaining > 0 {
            let want = Int(min(UInt64(scratch.count), remaining))
            let n = try scratch.withUnsafeMutableBytes { (raw) throws -> Int in
                try read(into: UnsafeMutableRawBufferPointer(rebasing: raw[..<want]))
            }
            if n == 0 { throw error() }
            try scratch.withUnsafeBytes { (raw) throws in try body(UnsafeRawBufferPointer(rebasing: raw[..<n])) }
            remaining -= UInt64(n)
        }
    }
}

/// Reads a byte array (fuzzing inputs, tests).
public final class BytesStream: ByteStream {
    let bytes: [UInt8]
    var offset = 0
    /// Largest piece returned per read, to exercise short reads.
    let piece: Int

    public init(_ bytes: [UInt8], piece: Int = 1 << 20) {
        precondition(piece > 0)
        self.bytes = bytes
        self.piece = piece
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let count = min(buffer.count, bytes.count - offset, piece)
        guard count > 0 else { return 0 }
        bytes.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<offset + count]))
        }
        offset += count
        return count
    }
}

/// Reads a file through its descriptor (closed on deinit).
public final class FileStream: ByteStream {
    let fd: Int32
    let path: String

    public init(path: String) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        self.path = path
        guard fd >= 0 else { throw ImageError.io(path: path, reason: String(cString: strerror(errno))) }
    }

    /// Takes ownership of an open descriptor; `path` is for messages.
    public init(descriptor: Int32, path: String) {
        fd = descriptor
        self.path = path
    }

    deinit { close(fd) }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno != EINTR { throw ImageError.io(path: path, reason: String(cString: strerror(errno))) }
        }
    }
}

/// Passes bytes through while hashing and counting them; ``verify()`` checks the blob digest
/// and size once the stream has been read to the end.
public final class DigestingStream: ByteStream {
    let inner: any ByteStream
    private(set) var hasher = SHA256()
    private(set) var count: UInt64 = 0
    /// Called with every piece read, e.g. to copy the blob elsewhere as it is verified.
    var tee: ((UnsafeRawBufferPointer) throws -> Void)?

    public init(_ inner: any ByteStream) { self.inner = inner }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = try inner.read(into: buffer)
        if n > 0 {
            let piece = UnsafeRawBufferPointer(rebasing: buffer[..<n])
            hasher.update(bufferPointer: piece)
            count += UInt64(n)
            try tee?(piece)
        }
        return n
    }

    /// Reads whatever is left (a tar stream may end before its blob does).
    public func drain() throws {
        var scratch = [UInt8](repeating: 0, count: 1 << 16)
        while try scratch.withUnsafeMutableBytes({ (raw) throws -> Int in try read(into: raw) }) > 0 {}
    }

    public var digest: BlobDigest { BlobDigest(sha256: Array(hasher.finalize())) }

    /// Drains the stream, then checks it against `descriptor`.
    func verify(_ descriptor: Descriptor) throws {
        try drain()
        guard digest == descriptor.digest else {
            throw ImageError.digestMismatch(what: descriptor.mediaType, expected: descriptor.digest.description, actual: digest.description)
        }
        guard count == descriptor.size else {
            throw ImageError.sizeMismatch(digest: descriptor.digest.description, expected: descriptor.size, actual: count)
        }
    }
}

/// Serves small reads (tar headers) from large reads of `inner`, so each layer costs few
/// system calls and few zlib calls.
public final class BufferedStream: ByteStream {
    let inner: any ByteStream
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0

    public init(_ inner: any ByteStream, capacity: Int = 1 << 18) {
        self.inner = inner
        buffer = [UInt8](repeating: 0, count: capacity)
    }

    public func read(into target: UnsafeMutableRawBufferPointer) throws -> Int {
        if start == end {
            // Large reads bypass the buffer.
            if target.count >= buffer.count { return try inner.read(into: target) }
            end = try buffer.withUnsafeMutableBytes { try inner.read(into: $0) }
            start = 0
            if end == 0 { return 0 }
        }
        let count = min(target.count, end - start)
        buffer.withUnsafeBytes { target.baseAddress!.copyMemory(from: $0.baseAddress! + start, byteCount: count) }
        start += count
        return count
    }
}
