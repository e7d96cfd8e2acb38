import Foundation
import Testing
@testable import VeilImage

/// The pipelining stream under layer reads: same bytes and errors as its upstream, and no
/// thread left behind when a reader stops early.
@Suite struct ReadAheadStreamTests {
    /// Fails after `failAfter` bytes.
    final class FailingStream: ByteStream {
        let inner: BytesStream
        let failAfter: Int
        var delivered = 0
        init(_ bytes: [UInt8], failAfter: Int) {
            inner = BytesStream(bytes, piece: 777)
            self.failAfter = failAfter
        }
        func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
            guard delivered < failAfter else { throw ImageError.io(path: "upstream", reason: "boom") }
            let n = try inner.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[..<min(buffer.count, failAfter - delivered)]))
            delivered += n
            return n
        }
    }

    func readAll(_ stream: any ByteStream, pieces: ClosedRange<Int>) throws -> [UInt8] {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: pieces.upperBound)
        while true {
            let want = Int.random(in: pieces)
            let n = try buffer.withUnsafeMutableBytes { try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<want])) }
            if n == 0 { return out }
            out += buffer[..<n]
        }
    }

    @Test func deliversExactlyTheUpstreamBytes() throws {
        for size in [0, 1, 4095, 65_536, 3 * 65_536 + 17] {
            let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 8) }
            let stream = try ReadAheadStream(BytesStream(bytes, piece: 1000), chunkSize: 65_536, depth: 2)
            #expect(try readAll(stream, pieces: 1...100_000) == bytes, "size \(size)")
            #expect(try readAll(stream, pieces: 1...10).isEmpty, "stays at its end")
        }
    }

    @Test func reportsTheUpstreamErrorAfterTheBytesBeforeIt() throws {
        let bytes = [UInt8](repeating: 7, count: 200_000)
        let stream = try ReadAheadStream(FailingStream(bytes, failAfter: 150_000), chunkSize: 65_536, depth: 3)
        var received = 0
        var buffer = [UInt8](repeating: 0, count: 10_000)
        let error = #expect(throws: ImageError.self) {
            while true {
                let n = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
                if n == 0 { break }
                received += n
            }
        }
        #expect(error == .io(path: "upstream", reason: "boom"))
        // Whole chunks before the failing one arrive; the failing chunk is not passed on.
        #expect(received == 131_072)
    }

    @Test func readersThatStopEarlyLeaveNoThreadBehind() throws {
        let bytes = [UInt8](repeating: 1, count: 1 << 20)
        let before = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count
        for _ in 0..<200 {
            let stream = try ReadAheadStream(BytesStream(bytes, piece: 4096), chunkSize: 16_384, depth: 2)
            var first = [UInt8](repeating: 0, count: 10)
            _ = try first.withUnsafeMutableBytes { try stream.read(into: $0) }
            // Dropped here with the producer blocked on a full queue.
        }
        let after = try FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count
        #expect(after <= before + 4, "threads before \(before), after \(after)")
    }
}
