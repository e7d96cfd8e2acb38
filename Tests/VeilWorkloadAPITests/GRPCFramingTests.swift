import NIOCore
import Testing
@testable import VeilWorkloadAPI

/// The gRPC request framing the Workload API accepts: exactly one uncompressed,
/// length-prefixed message; anything else is refused before a method runs.
@Suite struct GRPCFramingTests {
    func frame(flag: UInt8 = 0, length: UInt32? = nil, _ body: [UInt8], trailing: [UInt8] = []) -> ByteBuffer {
        var buffer = ByteBuffer()
        buffer.writeInteger(flag)
        buffer.writeInteger(length ?? UInt32(body.count))
        buffer.writeBytes(body + trailing)
        return buffer
    }

    @Test func oneUncompressedMessageIsTheRequest() {
        var buffer = frame([1, 2, 3])
        #expect(GRPCCallHandler.message(in: &buffer) == [1, 2, 3])
        var empty = frame([])
        #expect(GRPCCallHandler.message(in: &empty) == [], "an empty message (X509SVIDRequest) is a request")
    }

    @Test func anythingElseIsRefused() {
        var compressed = frame(flag: 1, [1, 2, 3])
        #expect(GRPCCallHandler.message(in: &compressed) == nil, "compressed")
        var short = frame(length: 10, [1, 2, 3])
        #expect(GRPCCallHandler.message(in: &short) == nil, "shorter than its length")
        var two = frame([1], trailing: [0, 0, 0, 0, 1, 9])
        #expect(GRPCCallHandler.message(in: &two) == nil, "a second message")
        var nothing = ByteBuffer()
        #expect(GRPCCallHandler.message(in: &nothing) == nil, "no prefix")
    }

    @Test func statusMessagesArePercentEncoded() {
        #expect(GRPCResponseWriter.percentEncoded("ok: 100% sure\n") == "ok: 100%25 sure%0A")
        #expect(GRPCResponseWriter.percentEncoded("é") == "%C3%A9")
    }
}
