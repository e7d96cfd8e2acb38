import CISAL
import CZlib
import Glibc
import VeilCore

/// Decompresses a gzip stream (concatenated members included) as it is read: with Intel
/// ISA-L's igzip (several times zlib's inflate speed) unless `VEIL_GUNZIP=zlib` asks for
/// zlib. Both check each member's CRC-32 and length and fail the same way: a truncated
/// stream or corrupt data is an ``ImageError/compression(_:)``.
public final class GunzipStream: ByteStream {
    public enum Engine: String, Sendable {
        case isal, zlib

        /// ISA-L, or zlib when the environment sets `VEIL_GUNZIP=zlib`.
        public static var preferred: Engine {
            getenv(VeilEnvironment.gunzip).map { String(cString: $0) } == "zlib" ? .zlib : .isal
        }
    }

    private let inner: any ByteStream
    private let inflater: any Inflater
    private var input: [UInt8]
    /// The unconsumed input is `input[start..<end]`.
    private var start = 0
    private var end = 0
    private var inputEnded = false
    private var memberEnded = false
    private var finished = false

    public init(_ inner: any ByteStream, bufferSize: Int = 1 << 17, engine: Engine = .preferred) throws {
        self.inner = inner
        input = [UInt8](repeating: 0, count: bufferSize)
        inflater = switch engine {
        case .isal: ISALInflater()
        case .zlib: try ZlibInflater()
        }
    }

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
                inflater.reset()
                memberEnded = false
            }
            if start == end { throw ImageError.compression("gzip stream ends before its end marker (truncated layer)") }
            let step = try input.withUnsafeBytes { raw in
                try inflater.inflate(UnsafeRawBufferPointer(rebasing: raw[start..<end]), into: buffer)
            }
            start += step.consumed
            if step.memberEnded { memberEnded = true }
            if step.produced > 0 { return step.produced }
        }
    }
}

/// One inflate step: how much input was used, how much output made, whether a member ended.
struct InflateStep {
    var consumed: Int
    var produced: Int
    var memberEnded: Bool
}

/// A gzip member decoder that checks the member's trailer.
protocol Inflater: AnyObject {
    func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> InflateStep
    /// Ready for the next member.
    func reset()
}

final class ZlibInflater: Inflater {
    private var stream = z_stream()

    init() throws {
        guard veil_inflate_init(&stream) == Z_OK else { throw ImageError.compression("cannot initialise zlib") }
    }

    deinit { inflateEnd(&stream) }

    func reset() { inflateReset(&stream) }

    func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> InflateStep {
        stream.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = UInt32(input.count)
        stream.next_out = output.baseAddress!.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = UInt32(min(output.count, Int(UInt32.max)))
        let room = Int(stream.avail_out)
        let status = CZlib.inflate(&stream, Z_NO_FLUSH)
        let step = InflateStep(consumed: input.count - Int(stream.avail_in), produced: room - Int(stream.avail_out), memberEnded: status == Z_STREAM_END)
        guard status == Z_OK || status == Z_STREAM_END || status == Z_BUF_ERROR else {
            let message = stream.msg.map { String(cString: $0) } ?? "error \(status)"
            throw ImageError.compression("gzip data is corrupt: \(message)")
        }
        return step
    }
}

/// ISA-L's igzip: its state (tens of kilobytes of tables) lives on the heap.
final class ISALInflater: Inflater {
    private let state = UnsafeMutablePointer<inflate_state>.allocate(capacity: 1)

    init() {
        isal_inflate_init(state)
        state.pointee.crc_flag = UInt32(ISAL_GZIP)
    }

    deinit { state.deallocate() }

    func reset() {
        isal_inflate_reset(state)
        state.pointee.crc_flag = UInt32(ISAL_GZIP)
    }

    func inflate(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws -> InflateStep {
        state.pointee.next_in = UnsafeMutablePointer(mutating: input.baseAddress!.assumingMemoryBound(to: UInt8.self))
        state.pointee.avail_in = UInt32(input.count)
        state.pointee.next_out = output.baseAddress!.assumingMemoryBound(to: UInt8.self)
        state.pointee.avail_out = UInt32(min(output.count, Int(UInt32.max)))
        let room = Int(state.pointee.avail_out)
        let status = isal_inflate(state)
        guard status >= 0 else { throw ImageError.compression("gzip data is corrupt: \(Self.reason(status))") }
        return InflateStep(
            consumed: input.count - Int(state.pointee.avail_in), produced: room - Int(state.pointee.avail_out),
            memberEnded: state.pointee.block_state == ISAL_BLOCK_FINISH)
    }

    /// zlib's words for the same faults, so errors read alike whichever engine ran.
    static func reason(_ status: Int32) -> String {
        switch status {
        case ISAL_INVALID_BLOCK: return "invalid block type"
        case ISAL_INVALID_SYMBOL: return "invalid code"
        case ISAL_INVALID_LOOKBACK: return "invalid distance too far back"
        case ISAL_INVALID_WRAPPER: return "incorrect header check"
        case ISAL_UNSUPPORTED_METHOD: return "unknown compression method"
        case ISAL_INCORRECT_CHECKSUM: return "incorrect data check"
        default: return "error \(status)"
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
