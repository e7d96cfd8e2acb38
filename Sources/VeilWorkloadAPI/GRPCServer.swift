import FoundationEssentials
import NIOCore
import NIOHPACK
import NIOHTTP2
import NIOPosix
import Synchronization

/// A gRPC status code and message (https://grpc.github.io/grpc/core/md_doc_statuscodes.html).
public struct GRPCStatus: Error, Sendable, Equatable, CustomStringConvertible {
    public let code: Int
    public let message: String

    public static func invalidArgument(_ message: String) -> GRPCStatus { GRPCStatus(code: 3, message: message) }
    public static func permissionDenied(_ message: String) -> GRPCStatus { GRPCStatus(code: 7, message: message) }
    public static func unimplemented(_ message: String) -> GRPCStatus { GRPCStatus(code: 12, message: message) }
    public static func internalError(_ message: String) -> GRPCStatus { GRPCStatus(code: 13, message: message) }
    public static func unavailable(_ message: String) -> GRPCStatus { GRPCStatus(code: 14, message: message) }

    public var description: String { "gRPC status \(code): \(message)" }
}

/// The answering half of one gRPC call: response headers once, then length-prefixed messages,
/// then the trailers with the status. Safe to use from any task.
public final class GRPCResponseWriter: Sendable {
    private let channel: any Channel
    private let headersSent = Mutex(false)

    init(channel: any Channel) { self.channel = channel }

    /// Sends one message (after the response headers, the first time).
    public func send(_ message: [UInt8]) async throws {
        if headersSent.withLock({ sent in defer { sent = true }; return !sent }) {
            try await write(.headers(.init(headers: Self.responseHeaders)))
        }
        var buffer = channel.allocator.buffer(capacity: message.count + 5)
        buffer.writeInteger(UInt8(0))
        buffer.writeInteger(UInt32(message.count))
        buffer.writeBytes(message)
        try await write(.data(.init(data: .byteBuffer(buffer))))
    }

    /// Ends the call with `status` (0: OK): trailers after a response, or a trailers-only answer.
    func finish(_ status: GRPCStatus?) async {
        var trailers: HPACKHeaders = headersSent.withLock { $0 } ? [:] : Self.responseHeaders
        trailers.add(name: "grpc-status", value: "\(status?.code ?? 0)")
        if let status, !status.message.isEmpty { trailers.add(name: "grpc-message", value: Self.percentEncoded(status.message)) }
        try? await write(.headers(.init(headers: trailers, endStream: true)))
    }

    private func write(_ payload: HTTP2Frame.FramePayload) async throws {
        try await channel.writeAndFlush(payload)
    }

    static let responseHeaders: HPACKHeaders = [":status": "200", "content-type": "application/grpc"]

    /// grpc-message's encoding: printable ASCII except `%` as is, every other byte as %XX.
    static func percentEncoded(_ text: String) -> String {
        text.utf8.map { byte in
            (0x20...0x7E).contains(byte) && byte != UInt8(ascii: "%")
                ? String(UnicodeScalar(byte)) : "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
        }.joined()
    }
}

/// One gRPC method: the request message's bytes and metadata in, answers through the writer.
public typealias GRPCMethod = @Sendable (_ request: [UInt8], _ metadata: HPACKHeaders, _ writer: GRPCResponseWriter) async throws(GRPCStatus) -> Void

/// A plaintext HTTP/2 gRPC server on a Unix socket for unary and server-streaming methods (the
/// shapes the Workload API has): each request is one message; the method answers with any
/// number. A client that resets its stream cancels the method's task.
final class GRPCUnixServer: Sendable {
    private let channel: any Channel

    private init(channel: any Channel) { self.channel = channel }

    static func bind(path: String, methods: [String: GRPCMethod]) async throws -> GRPCUnixServer {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.backlog, value: 64)
            .childChannelInitializer { connection in
                connection.eventLoop.makeCompletedFuture {
                    _ = try connection.pipeline.syncOperations.configureHTTP2Pipeline(
                        mode: .server, connectionConfiguration: .init(), streamConfiguration: .init()
                    ) { stream in
                        stream.eventLoop.makeCompletedFuture { try stream.pipeline.syncOperations.addHandler(GRPCCallHandler(methods: methods)) }
                    }
                }
            }
            .bind(unixDomainSocketPath: path).get()
        return GRPCUnixServer(channel: channel)
    }

    func close() async { try? await channel.close() }
}

/// The request framing, for callers outside the server (the fuzz target).
public enum GRPCFraming {
    /// The one uncompressed message `bytes` frame, or nil (what the server refuses).
    public static func requestMessage(_ bytes: [UInt8]) -> [UInt8]? {
        var buffer = ByteBuffer(bytes: bytes)
        return GRPCCallHandler.message(in: &buffer)
    }
}

/// One HTTP/2 stream: collects the request (headers, one length-prefixed message), runs the
/// method, and cancels it when the stream goes away.
final class GRPCCallHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTP2Frame.FramePayload
    typealias OutboundOut = HTTP2Frame.FramePayload

    /// Requests of the Workload API are a few bytes; a larger one is refused.
    static let maximumRequest = 64 * 1024

    private let methods: [String: GRPCMethod]
    private var headers: HPACKHeaders = [:]
    private var body = ByteBuffer()
    private var call: Task<Void, Never>?
    private var dispatched = false

    init(methods: [String: GRPCMethod]) { self.methods = methods }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .headers(let frame):
            if headers.isEmpty { headers = frame.headers }
            if frame.endStream { dispatch(context) }
        case .data(let frame):
            if case .byteBuffer(var bytes) = frame.data { body.writeBuffer(&bytes) }
            if body.readableBytes > Self.maximumRequest + 5 {
                respond(context, .invalidArgument("request larger than \(Self.maximumRequest) bytes"))
            } else if frame.endStream {
                dispatch(context)
            }
        default:
            break
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        call?.cancel()
        context.fireChannelInactive()
    }

    private func dispatch(_ context: ChannelHandlerContext) {
        guard !dispatched else { return }
        let path = headers.first(name: ":path") ?? ""
        guard let method = methods[path] else { return respond(context, .unimplemented("unknown method \(path)")) }
        guard headers.first(name: "content-type")?.hasPrefix("application/grpc") == true else {
            return respond(context, .invalidArgument("content-type must be application/grpc"))
        }
        guard let request = Self.message(in: &body) else { return respond(context, .invalidArgument("the request is not one uncompressed length-prefixed message")) }
        dispatched = true
        let writer = GRPCResponseWriter(channel: context.channel)
        let metadata = headers
        call = Task {
            do throws(GRPCStatus) {
                try await method(request, metadata, writer)
                await writer.finish(nil)
            } catch {
                await writer.finish(error)
            }
        }
    }

    private func respond(_ context: ChannelHandlerContext, _ status: GRPCStatus) {
        dispatched = true
        let writer = GRPCResponseWriter(channel: context.channel)
        call = Task { await writer.finish(status) }
    }

    /// The single message of a request: flag 0 (uncompressed), length, bytes.
    static func message(in buffer: inout ByteBuffer) -> [UInt8]? {
        guard let flag = buffer.readInteger(as: UInt8.self), flag == 0, let length = buffer.readInteger(as: UInt32.self),
            let bytes = buffer.readBytes(length: Int(length)), buffer.readableBytes == 0
        else { return nil }
        return bytes
    }
}
