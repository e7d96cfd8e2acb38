import CZlib

/// Decompresses a gzip stream (concatenated members included) as it is read.
public final class GunzipStream: ByteStream {
    private let inner: any ByteStream
    private var stream = z_stream()
    private var input: [UInt8]
    /// The unconsumed input is `input[start..<end]`.
    private var start = 0
    private var end = 0
    private var inputEnded = false
    private var memberEnded = false
    private var finished = false

    public init(_ inner: any ByteStream, bufferSize: Int = 1 << 17) throws {
        self.inner = inner
        input = [UInt8](repeating: 0, count: bufferSize)
        guard veil_inflate_init(&stream) == Z_OK else { throw ImageError.compression("cannot initialise zlib") }
    }

    deinit { inflateEnd(&stream) }

    private func refill() throws {
        guard start == end, !inputEnded else { return }
        let n = try input.withUnsafeMutableBytes { (raw) throws -> Int in try inner.read(into: raw) }
        start = 0
        end = n
        if n == 0 { inputEnded = true }
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard !finished, buffer.count > 0 else { return 0 }
        while true {
            try refill()
            if memberEnded {
                // Another gzip member may follow (pigz, concatenated files).
                if start == end {
                    finished = true
                    return 0
                }
                inflateReset(&stream)
                memberEnded = false
            }
            if start == end { throw ImageError.compression("gzip stream ends before its end marker (truncated layer)") }
            let available = end - start
            let (status, produced, consumed) = input.withUnsafeMutableBytes { raw -> (Int32, Int, Int) in
                stream.next_in = raw.baseAddress!.advanced(by: start).assumingMemoryBound(to: Bytef.self)
                stream.avail_in = UInt32(available)
                stream.next_out = buffer.baseAddress!.assumingMemoryBound(to: Bytef.self)
                stream.avail_out = UInt32(min(buffer.count, Int(UInt32.max)))
                let room = Int(stream.avail_out)
                let status = inflate(&stream, Z_NO_FLUSH)
                return (status, room - Int(stream.avail_out), available - Int(stream.avail_in))
            }
            start += consumed
            switch status {
            case Z_STREAM_END:
                memberEnded = true
            case Z_OK, Z_BUF_ERROR:
                break
            default:
                let message = stream.msg.map { String(cString: $0) } ?? "error \(status)"
                throw ImageError.compression("gzip data is corrupt: \(message)")
            }
            if produced > 0 { return produced }
        }
    }
}

/// Whether the bytes start like a gzip member.
func looksGzipped(_ prefix: [UInt8]) -> Bool { prefix.count >= 2 && prefix[0] == 0x1f && prefix[1] == 0x8b }

/// Compresses into a gzip member as bytes are written (header mtime 0: the same input always
/// gives the same bytes). Call ``finish()`` once at the end.
public final class GzipWriter {
    private var stream = z_stream()
    private var output = [UInt8](repeating: 0, count: 1 << 17)
    private let sink: (UnsafeRawBufferPointer) throws -> Void

    public init(level: Int32 = 6, sink: @escaping (UnsafeRawBufferPointer) throws -> Void) throws {
        self.sink = sink
        guard veil_deflate_init_gzip(&stream, level) == Z_OK else { throw ImageError.compression("cannot initialise zlib") }
    }

    deinit { deflateEnd(&stream) }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        stream.next_in = UnsafeMutablePointer(mutating: base.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = UInt32(bytes.count)
        while stream.avail_in > 0 { try pump(Z_NO_FLUSH) }
    }

    public func finish() throws {
        stream.next_in = nil
        stream.avail_in = 0
        while try pump(Z_FINISH) != Z_STREAM_END {}
    }

    @discardableResult
    private func pump(_ flush: Int32) throws -> Int32 {
        let (status, produced) = output.withUnsafeMutableBytes { raw -> (Int32, Int) in
            stream.next_out = raw.baseAddress!.assumingMemoryBound(to: Bytef.self)
            stream.avail_out = UInt32(raw.count)
            let status = deflate(&stream, flush)
            return (status, raw.count - Int(stream.avail_out))
        }
        guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
            throw ImageError.compression("gzip compression failed (\(status))")
        }
        if produced > 0 { try output.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[..<produced])) } }
        return status
    }
}
