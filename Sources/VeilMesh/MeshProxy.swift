import FoundationEssentials
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import Synchronization
import VeilConnections
import VeilCore
import VeilManifest
import X509

/// The TLS identity a proxy works with: the service's activation certificate chain and key,
/// and the coordinator's root (the only trust anchor).
public struct MeshCredentials: Codable, Sendable {
    public var service: String
    /// PEM: the activation certificate, then the intermediate.
    public var certificateChainPEM: String
    /// PEM (PKCS#8 or SEC1) of the activation key; held in memory only.
    public var privateKeyPEM: String
    public var rootCertificatePEM: String

    public init(service: String, certificateChainPEM: String, privateKeyPEM: String, rootCertificatePEM: String) {
        self.service = service
        self.certificateChainPEM = certificateChainPEM
        self.privateKeyPEM = privateKeyPEM
        self.rootCertificatePEM = rootCertificatePEM
    }
}

/// Why the proxy could not start.
public enum MeshError: Error, CustomStringConvertible {
    case credentials(String)
    case listen(String, reason: String)

    public var description: String {
        switch self {
        case .credentials(let why): return "mesh credentials: \(why)"
        case .listen(let address, let reason): return "mesh cannot listen on \(address): \(reason)"
        }
    }
}

/// Mutual TLS for apps that speak plain TCP. Ingress: peers connect with TLS 1.3, must present
/// a certificate under the coordinator's root naming one of the allowed services, and are
/// forwarded to the app's loopback port. Egress: the app connects to a loopback port and is
/// carried over TLS 1.3 to a peer that must prove to be the named service. Every refusal is
/// logged with the peer's service (when known) and the reason; nothing secret is logged.
public final class MeshProxy: Sendable {
    let credentials: MeshCredentials
    let policy: MeshPolicy
    let logger: Logger
    let root: Certificate
    /// The intermediates of this service's own chain: a peer of the same coordinator that
    /// sends only its leaf is completed with them.
    let intermediates: [Certificate]
    /// The trust domain of this service's own certificate, which peers must share.
    let trustDomain: String
    /// The TLS contexts new connections use: replaced when the certificate is renewed, while
    /// connections already open keep the context they started with.
    private let contexts: Mutex<TLSContexts>
    /// How long a TLS handshake may take, on an ingress or towards an egress peer, before the
    /// connection is closed: a peer that connects and never speaks holds nothing for long.
    let handshakeTimeout: TimeAmount
    /// Open ingress connections per peer address and in total, across every ingress listener
    /// (egress connections come from the app itself and are not capped).
    let ingressGate: ConnectionGate
    private let channels = Mutex<[any Channel]>([])

    public init(
        credentials: MeshCredentials, policy: MeshPolicy, logger: Logger, handshakeTimeout: Duration = .seconds(10),
        ingressLimits: ConnectionLimits = ConnectionLimits()
    ) throws {
        self.handshakeTimeout = TimeAmount(handshakeTimeout)
        ingressGate = ConnectionGate(limits: ingressLimits, logger: logger)
        self.credentials = credentials
        self.policy = policy
        self.logger = logger
        var leafDER: [UInt8]?
        do {
            root = try Certificate(pemEncoded: credentials.rootCertificatePEM.trimmingWhitespace)
            let ownChain = try NIOSSLCertificate.fromPEMBytes(Array(credentials.certificateChainPEM.utf8))
            leafDER = try ownChain.first?.toDERBytes()
            intermediates = try ownChain.dropFirst().map { try Certificate(derEncoded: try $0.toDERBytes()) }
            contexts = Mutex(try TLSContexts(chain: ownChain, privateKeyPEM: credentials.privateKeyPEM))
        } catch {
            throw MeshError.credentials("\(error)")
        }
        trustDomain = leafDER.flatMap(Self.trustDomain(ofLeaf:)) ?? CoordinatorIdentity.defaultTrustDomain(coordinatorID: CoordinatorIdentity.coordinatorID(root: root))
    }

    /// Presents a renewed certificate (same service, same intermediate) on every connection
    /// made from now on; open connections are not touched.
    public func replaceCertificate(chainPEM: String, privateKeyPEM: String) throws {
        let fresh: TLSContexts
        do {
            fresh = try TLSContexts(chain: try NIOSSLCertificate.fromPEMBytes(Array(chainPEM.utf8)), privateKeyPEM: privateKeyPEM)
        } catch {
            throw MeshError.credentials("\(error)")
        }
        contexts.withLock { $0 = fresh }
    }

    var serverContext: NIOSSLContext { contexts.withLock { $0.server } }
    var clientContext: NIOSSLContext { contexts.withLock { $0.client } }

    /// The trust domain a certificate (DER) names as its service identity.
    static func trustDomain(ofLeaf der: [UInt8]) -> String? {
        guard let leaf = try? Certificate(derEncoded: der), let names = try? leaf.extensions.subjectAlternativeNames else { return nil }
        return names.lazy.compactMap { name -> String? in
            if case .uniformResourceIdentifier(let uri) = name { return CoordinatorIdentity.service(fromURI: uri)?.trustDomain }
            return nil
        }.first
    }

    /// Binds every listener; returns once all accept connections (or throws, binding nothing).
    public func start() async throws {
        do {
            for rule in policy.ingress { try await listen(ingress: rule) }
            for rule in policy.egress { try await listen(egress: rule) }
        } catch {
            await stop()
            throw error
        }
        logger.info("mesh proxy ready", metadata: [
            "service": "\(credentials.service)", "ingress": "\(policy.ingress.map(\.listen))", "egress": "\(policy.egress.map(\.listen))",
        ])
    }

    /// Closes every listener.
    public func stop() async {
        let open = channels.withLock { channels -> [any Channel] in
            defer { channels = [] }
            return channels
        }
        for channel in open { try? await channel.close() }
    }

    /// Waits until the listeners are closed.
    public func wait() async {
        for channel in channels.withLock({ $0 }) { try? await channel.closeFuture.get() }
    }

    // MARK: - Ingress

    private func listen(ingress rule: MeshPolicy.Ingress) async throws {
        guard let forward = HostPort.parse(rule.forward) else { throw MeshError.listen(rule.listen, reason: "forward address is not HOST:PORT") }
        let allowed = rule.clients, verify = verification, deadline = handshakeTimeout
        try await accept(on: rule.listen, gate: ingressGate, metadata: ["direction": "ingress", "listen": "\(rule.listen)", "forward": "\(rule.forward)"]) { [self] channel, record in
            let ssl = NIOSSLServerHandler(context: serverContext, customVerificationCallback: verify(record) { service in
                allowed.contains(service) ? nil : .notAllowed(service: service, allowed: allowed)
            })
            let gate = HalfCloseGate(record: record)
            try channel.pipeline.syncOperations.addHandlers([
                gate, ssl, HandshakeObserver(record: record, gate: gate, deadline: deadline),
                SpliceHandler(connect: { Self.connect(on: $0, to: forward) }, waitForHandshake: true, record: record),
            ])
        }
    }

    // MARK: - Egress

    private func listen(egress rule: MeshPolicy.Egress) async throws {
        guard let remote = HostPort.parse(rule.address) else { throw MeshError.listen(rule.listen, reason: "peer address is not HOST:PORT") }
        let expected = rule.service, verify = verification, deadline = handshakeTimeout
        let metadata: Logger.Metadata = ["direction": "egress", "listen": "\(rule.listen)", "service": "\(expected)", "address": "\(rule.address)"]
        try await accept(on: rule.listen, metadata: metadata) { [self] channel, record in
            let context = clientContext
            let connect: SpliceHandler.Connect = { eventLoop in
                Self.connect(on: eventLoop, to: remote) { outbound in
                    let ssl = try NIOSSLClientHandler(context: context, serverHostname: nil, customVerificationCallback: verify(record) { service in
                        service == expected ? nil : .wrongService(presented: service, expected: expected)
                    })
                    let gate = HalfCloseGate(record: record)
                    try outbound.pipeline.syncOperations.addHandlers([gate, ssl, HandshakeObserver(record: record, gate: gate, deadline: deadline)])
                }
            }
            try channel.pipeline.syncOperations.addHandler(SpliceHandler(connect: connect, waitForHandshake: false, record: record))
        }
    }

    // MARK: - Sockets

    /// Binds `address` and sets up each accepted connection with `setUp`, which gets the
    /// connection's log record.
    private func accept(
        on address: String, gate: ConnectionGate? = nil, metadata: Logger.Metadata,
        setUp: @escaping @Sendable (any Channel, ConnectionRecord) throws -> Void
    ) async throws {
        guard let listen = HostPort.parse(address) else { throw MeshError.listen(address, reason: "not HOST:PORT") }
        let logger = self.logger
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .childChannelOption(.allowRemoteHalfClosure, value: true)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    // First in the pipeline: a connection over a cap is closed before its handshake.
                    if let gate { try channel.pipeline.syncOperations.addHandler(gate.handler()) }
                    try setUp(channel, ConnectionRecord(logger: logger, metadata: metadata))
                }
            }
        do {
            let channel = try await bootstrap.bind(host: listen.host, port: listen.port).get()
            channels.withLock { $0.append(channel) }
        } catch {
            throw MeshError.listen(address, reason: "\(error)")
        }
    }

    /// An outgoing connection on `eventLoop` (the accepted connection's, so the glue between
    /// them needs no locks), with `setUp` for its pipeline.
    private static func connect(
        on eventLoop: any EventLoop, to address: (host: String, port: Int), setUp: (@Sendable (any Channel) throws -> Void)? = nil
    ) -> EventLoopFuture<any Channel> {
        ClientBootstrap(group: eventLoop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelOption(.allowRemoteHalfClosure, value: true)
            .channelInitializer { channel in channel.eventLoop.makeCompletedFuture { try setUp?(channel) } }
            .connect(host: address.host, port: address.port)
    }

    /// A verification callback that accepts a peer proving a service of this coordinator that
    /// `authorize` finds no refusal for; a refusal is logged once with its reason.
    private var verification: @Sendable (ConnectionRecord, @escaping @Sendable (String) -> PeerIdentity.Refusal?) -> NIOSSLCustomVerificationCallback {
        let root = self.root, intermediates = self.intermediates, trustDomain = self.trustDomain
        return { record, authorize in
            { certificates, promise in
                let chain = certificates.compactMap { try? $0.toDERBytes() }
                record.startVerifying()
                Task(executorPreference: VerificationExecutor.shared) {
                    do throws(PeerIdentity.Refusal) {
                        let service = try await PeerIdentity.service(of: chain, root: root, knownIntermediates: intermediates, trustDomain: trustDomain)
                        record.peer = service
                        if let refusal = authorize(service) { throw refusal }
                        promise.succeed(.certificateVerified)
                    } catch {
                        record.refuse(reason: error.description)
                        promise.succeed(.failed)
                    }
                }
            }
        }
    }
}

/// One proxied connection's log context: where it came in, which service the peer proved,
/// and whether its refusal is already logged (each refusal is logged exactly once).
final class ConnectionRecord: Sendable {
    private struct State {
        var peer: String?
        /// The verification callback saw the peer's certificate; its verdict is what gets logged.
        var verifying = false
        var refusalLogged = false
    }

    private let state = Mutex(State())
    private let logger: Logger
    private let metadata: Logger.Metadata

    init(logger: Logger, metadata: Logger.Metadata) {
        self.logger = logger
        self.metadata = metadata
    }

    var peer: String? {
        get { state.withLock { $0.peer } }
        set { state.withLock { $0.peer = newValue } }
    }

    private var fullMetadata: Logger.Metadata {
        metadata.merging(["peer": "\(peer ?? "unknown")"]) { $1 }
    }

    func startVerifying() { state.withLock { $0.verifying = true } }

    var isVerifying: Bool { state.withLock { $0.verifying } }

    /// The verification callback's refusal: always logged.
    func refuse(reason: String) {
        state.withLock { $0.refusalLogged = true }
        logger.warning("mesh refused a connection", metadata: fullMetadata.merging(["reason": "\(reason)"]) { $1 })
    }

    /// A handshake that failed around the verification callback; logged unless the callback
    /// judged the peer (a peer that hangs up while being verified is logged by the verdict).
    func handshakeFailed(reason: String, level: Logger.Level) {
        let log = state.withLock { state in
            defer { state.refusalLogged = true }
            return !state.refusalLogged && !state.verifying
        }
        if log { logger.log(level: level, "mesh refused a connection", metadata: fullMetadata.merging(["reason": "\(reason)"]) { $1 }) }
    }

    func failed(_ message: String, _ error: any Error) {
        logger.warning("mesh \(message)", metadata: fullMetadata.merging(["reason": "\(error)"]) { $1 })
    }
}

/// Sits in front of the TLS handler and holds back a TCP half-close that arrives while the
/// peer's certificate is being verified. NIOSSL treats end of input during verification as a
/// failed handshake, so a client that sends its request and half-closes at once (as an app
/// behind an egress may) would lose its request; held back, the half-close is delivered once
/// the handshake completed. Outside verification it passes straight through, so a peer that
/// hangs up mid-handshake still ends the connection.
final class HalfCloseGate: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    let record: ConnectionRecord
    private var context: ChannelHandlerContext?
    private var held = false
    private var opened = false

    init(record: ConnectionRecord) { self.record = record }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }
    func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if !opened, record.isVerifying, let event = event as? ChannelEvent, case .inputClosed = event {
            held = true
            return
        }
        context.fireUserInboundEventTriggered(event)
    }

    /// The handshake completed: deliver a held half-close, and pass any later one through.
    func open() {
        opened = true
        if held, let context {
            held = false
            context.fireUserInboundEventTriggered(ChannelEvent.inputClosed)
        }
    }
}

/// Behind the TLS handler: logs a handshake that failed around the verification callback (no
/// client certificate, a peer that refused ours, a peer that is not TLS) with a readable
/// reason, closes the connection when the handshake has not completed by `deadline`, and opens
/// the ``HalfCloseGate`` once the handshake completed.
final class HandshakeObserver: ChannelInboundHandler {
    typealias InboundIn = NIOAny
    let record: ConnectionRecord
    let gate: HalfCloseGate
    let deadline: TimeAmount
    private var timeout: Scheduled<Void>?

    init(record: ConnectionRecord, gate: HalfCloseGate, deadline: TimeAmount) {
        self.record = record
        self.gate = gate
        self.deadline = deadline
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let record = record, seconds = Double(deadline.nanoseconds) / 1e9
        // Isolated to the channel's event loop: the task may hold the (non-Sendable) context.
        timeout = context.eventLoop.assumeIsolated().scheduleTask(in: deadline) {
            record.handshakeFailed(reason: "no TLS handshake within \(seconds) s", level: .info)
            context.close(promise: nil)
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timeout?.cancel()
        timeout = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let event = event as? TLSUserEvent, case .handshakeCompleted = event {
            timeout?.cancel()
            timeout = nil
            // Next tick: the TLS handler is still delivering this event.
            let gate = NIOLoopBound(gate, eventLoop: context.eventLoop)
            context.eventLoop.execute { gate.value.open() }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let error = error as? NIOSSLError {
            let (reason, level) = Self.reason(error)
            record.handshakeFailed(reason: reason, level: level)
        }
        context.fireErrorCaught(error)
    }

    /// A readable reason; a peer that connects and hangs up (a port probe) is only debug.
    static func reason(_ error: NIOSSLError) -> (String, Logger.Level) {
        let text = "\(error)"
        if text.contains("EOF during handshake") { return ("the peer closed the connection during the handshake", .debug) }
        return (describe(text), .warning)
    }

    static func describe(_ text: String) -> String {
        if text.contains("PEER_DID_NOT_RETURN_A_CERTIFICATE") || text.contains("CERTIFICATE_REQUIRED") {
            return PeerIdentity.Refusal.noCertificate.description
        }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("HTTP_REQUEST") || text.contains("UNSUPPORTED_PROTOCOL") {
            return "the peer does not speak TLS 1.3"
        }
        if text.contains("CERTIFICATE_VERIFY_FAILED") || text.contains("BAD_CERTIFICATE") || text.contains("UNKNOWN_CA") {
            return "the peer refused this service's certificate (\(text))"
        }
        return "TLS handshake failed: \(text)"
    }
}

/// The first handler of an accepted connection: once it may proceed (after the TLS handshake
/// for ingress, at once for egress) it opens the other side on the same event loop, replaces
/// itself with a ``GlueHandler`` pair, and replays what arrived meanwhile — bytes, a
/// half-close, or the whole connection ending — through the glue, so nothing is lost.
final class SpliceHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    typealias Connect = @Sendable (any EventLoop) -> EventLoopFuture<any Channel>
    let connect: Connect
    let waitForHandshake: Bool
    let record: ConnectionRecord
    private var pending = GlueHandler.Pending()
    private var connecting = false

    init(connect: @escaping Connect, waitForHandshake: Bool, record: ConnectionRecord) {
        self.connect = connect
        self.waitForHandshake = waitForHandshake
        self.record = record
    }

    func channelActive(context: ChannelHandlerContext) {
        if !waitForHandshake { open(context) }
        context.fireChannelActive()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if waitForHandshake, let event = event as? TLSUserEvent, case .handshakeCompleted = event { open(context) }
        if let event = event as? ChannelEvent, case .inputClosed = event { pending.inputClosed = true }
        context.fireUserInboundEventTriggered(event)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pending.bytes.append(unwrapInboundIn(data))
    }

    func channelInactive(context: ChannelHandlerContext) {
        pending.closed = true
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // Handshake failures are logged by HandshakeFailureLogger.
        if !(error is NIOSSLError) { record.failed("connection failed", error) }
        context.close(promise: nil)
    }

    private func open(_ context: ChannelHandlerContext) {
        guard !connecting else { return }
        connecting = true
        let inbound = context.channel
        connect(context.eventLoop).assumeIsolated().whenComplete { [self] result in
            switch result {
            case .success(let outbound):
                let (inboundGlue, outboundGlue) = GlueHandler.matchedPair { [record] error in record.failed("connection failed", error) }
                do {
                    try outbound.pipeline.syncOperations.addHandler(outboundGlue)
                    try inbound.pipeline.syncOperations.addHandler(inboundGlue, position: .after(self))
                    inbound.pipeline.syncOperations.removeHandler(self, promise: nil)
                    inboundGlue.replay(pending, partnerActive: outbound.isActive)
                    pending = .init()
                } catch {
                    record.failed("could not join the connection", error)
                    inbound.close(promise: nil)
                    outbound.close(promise: nil)
                }
            case .failure(let error):
                record.failed(waitForHandshake ? "cannot reach the app" : "cannot reach the peer", error)
                inbound.close(promise: nil)
            }
        }
    }
}
