import Crypto
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import Synchronization
import Testing
import VeilCoordinator
import VeilCore
import VeilManifest
import VeilMesh
import X509

/// Log records of one proxy, for asserting what it said about a connection.
final class LogCapture: Sendable {
    private let records = Mutex<[String]>([])

    var logger: Logger {
        Logger(label: "test.mesh") { _ in Handler(capture: self) }
    }

    var text: String { records.withLock { $0.joined(separator: "\n") } }

    /// Waits briefly for a record containing `fragment` (verification runs asynchronously).
    func contains(_ fragment: String) async -> Bool {
        for _ in 0..<100 {
            if text.contains(fragment) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    struct Handler: LogHandler {
        let capture: LogCapture
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
            capture.records.withLock { $0.append("\(event.level) \(event.message) \(fields)") }
        }
    }
}

/// A coordinator's CA issuing service certificates the way activations do.
struct TestAuthority {
    let ca: CertificateAuthority

    init() throws { ca = try CertificateAuthority.generate() }

    var rootPEM: String { PEM.encode(ca.rootDER, label: "CERTIFICATE") }

    /// Credentials for `service`, optionally issued at another time (to make them expired).
    func credentials(_ service: String, issuedAt: Date = Date(), validFor: TimeInterval = 3600, trusting root: TestAuthority? = nil) throws -> MeshCredentials {
        let key = P256.Signing.PrivateKey()
        let leaf = try ca.issueServiceLeaf(publicKey: .init(key.publicKey), service: service, validFor: validFor, now: issuedAt)
        return MeshCredentials(
            service: service, certificateChainPEM: PEM.encode(try leaf.derBytes, label: "CERTIFICATE") + PEM.encode(ca.intermediateDER, label: "CERTIFICATE"),
            privateKeyPEM: key.pemRepresentation, rootCertificatePEM: (root ?? self).rootPEM)
    }

    /// The coordinator's own TLS identity, which is no service.
    func coordinatorCredentials() throws -> MeshCredentials {
        let key = P256.Signing.PrivateKey()
        let leaf = try ca.issueCoordinatorTLS(publicKey: .init(key.publicKey), dnsNames: ["localhost"], ipAddresses: [[127, 0, 0, 1]], validFor: 3600)
        return MeshCredentials(
            service: "coordinator",
            certificateChainPEM: PEM.encode(try leaf.derBytes, label: "CERTIFICATE") + PEM.encode(ca.coordinatorCADER, label: "CERTIFICATE"),
            privateKeyPEM: key.pemRepresentation, rootCertificatePEM: rootPEM)
    }
}

/// A plain TCP echo server standing in for the app; counts the connections it accepted, so a
/// test can prove a refused peer never reached the app.
final class EchoApp: Sendable {
    let channel: any Channel
    private let accepted: ConnectionCounter

    var port: Int { channel.localAddress!.port! }
    var connections: Int { accepted.value }

    private init(channel: any Channel, accepted: ConnectionCounter) {
        self.channel = channel
        self.accepted = accepted
    }

    static func start() async throws -> EchoApp {
        let counter = ConnectionCounter()
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                counter.increment()
                return channel.eventLoop.makeCompletedFuture { try channel.pipeline.syncOperations.addHandler(Echo()) }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        return EchoApp(channel: channel, accepted: counter)
    }

    func stop() async { try? await channel.close() }

    final class ConnectionCounter: Sendable {
        private let count = Atomic<Int>(0)
        func increment() { count.add(1, ordering: .relaxed) }
        var value: Int { count.load(ordering: .relaxed) }
    }

    final class Echo: ChannelInboundHandler, Sendable {
        typealias InboundIn = ByteBuffer
        typealias OutboundOut = ByteBuffer
        func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.write(data, promise: nil) }
        func channelReadComplete(context: ChannelHandlerContext) { context.flush() }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if let event = event as? ChannelEvent, case .inputClosed = event { context.close(mode: .output, promise: nil) }
        }
    }
}

/// What a test client got back from one connection.
enum Exchange: Equatable, CustomTestStringConvertible {
    /// Every byte the peer sent until it closed.
    case received([UInt8])
    /// The connection failed (TLS alert, reset) after `received` bytes.
    case failed(String)

    var testDescription: String {
        switch self {
        case .received(let bytes):
            return "received \(bytes.count) bytes (sha256 \(SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined().prefix(16)))"
        case .failed(let why): return "failed: \(why)"
        }
    }
}

/// Connects to 127.0.0.1:`port` (with TLS and optionally a client certificate), sends
/// `payload`, half-closes, and collects the reply until the peer closes.
func exchange(port: Int, payload: [UInt8], tls: (credentials: MeshCredentials?, rootPEM: String)? = nil) async throws -> Exchange {
    let collector = Collector()
    let channel: any Channel
    do {
        channel = try await connect(port: port, collector: collector, tls: tls)
    } catch {
        collector.result.succeed(.failed("\(error)"))
        return .failed("cannot connect: \(error)")
    }
    var buffer = channel.allocator.buffer(capacity: payload.count)
    buffer.writeBytes(payload)
    try? await channel.writeAndFlush(buffer)
    try? await channel.close(mode: .output)
    return try await withThrowingTaskGroup(of: Exchange?.self) { group in
        group.addTask { try await collector.result.futureResult.get() }
        group.addTask {
            try await Task.sleep(for: .seconds(20))
            return nil
        }
        defer { group.cancelAll() }
        guard let outcome = try await group.next(), let outcome else {
            channel.close(promise: nil)
            return .failed("timed out")
        }
        return outcome
    }
}

/// Connects to 127.0.0.1:`port` and says nothing; returns what the connection got once the
/// peer closed it, or nil when it is still open after `seconds`.
func silentConnection(port: Int, seconds: Double) async throws -> Exchange? {
    let collector = Collector()
    let channel = try await connect(port: port, collector: collector, tls: nil)
    return try await withThrowingTaskGroup(of: Exchange?.self) { group in
        group.addTask { try await collector.result.futureResult.get() }
        group.addTask {
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
            return nil
        }
        defer { group.cancelAll() }
        let outcome = try await group.next() ?? nil
        if outcome == nil { channel.close(promise: nil) }
        return outcome
    }
}

private func connect(port: Int, collector: Collector, tls: (credentials: MeshCredentials?, rootPEM: String)?) async throws -> any Channel {
    try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
        .channelOption(.allowRemoteHalfClosure, value: true)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                if let tls {
                    var configuration = TLSConfiguration.makeClientConfiguration()
                    configuration.minimumTLSVersion = .tlsv13
                    configuration.certificateVerification = .noHostnameVerification
                    configuration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(tls.rootPEM.utf8)))
                    if let credentials = tls.credentials {
                        configuration.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(credentials.certificateChainPEM.utf8)).map { .certificate($0) }
                        configuration.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(credentials.privateKeyPEM.utf8), format: .pem))
                    }
                    try channel.pipeline.syncOperations.addHandler(try NIOSSLClientHandler(context: NIOSSLContext(configuration: configuration), serverHostname: nil))
                }
                try channel.pipeline.syncOperations.addHandler(collector)
            }
        }
        .connect(host: "127.0.0.1", port: port).get()
}

/// Collects a connection's bytes; its state is touched only on the channel's event loop.
final class Collector: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    let result = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: Exchange.self)
    private var bytes: [UInt8] = []
    private var failure: String?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        bytes += Array(buffer: unwrapInboundIn(data))
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? ChannelEvent, case .inputClosed = event { context.close(promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if failure == nil { failure = "\(error)" }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        result.succeed(failure.map { .failed($0) } ?? .received(bytes))
    }
}

/// A loopback port nobody listens on right now.
func freePort() throws -> Int {
    let channel = try ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton).bind(host: "127.0.0.1", port: 0).wait()
    defer { try? channel.close().wait() }
    return channel.localAddress!.port!
}
