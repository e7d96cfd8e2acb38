import FoundationEssentials
import Glibc
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
import VeilAPI
import VeilCore
import VeilManifest
import X509

/// How a client decides to trust the coordinator's TLS certificate.
public enum CoordinatorTrust: Sendable {
    /// Only the coordinator's own chain under this root (PEM) is accepted: leaf ← coordinator
    /// TLS CA ← root (``CoordinatorIdentityPolicy``). Host names are not what is checked.
    case pinnedRoot(String)
    /// No TLS verification. Only for fetching self-authenticating evidence (`veil attest`).
    case unverifiedForAttestation
}

/// A user's TLS client credentials: how the coordinator recognises a manifest user.
public struct ClientIdentity: Sendable {
    public var certificatePEM: String
    public var privateKeyPEM: String

    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }
}

/// Why a call to the coordinator failed.
public enum CoordinatorClientError: Error, CustomStringConvertible {
    case invalidAddress(String)
    /// The root certificate to pin is not one PEM certificate.
    case invalidPinnedRoot
    case connection(address: String, reason: String)
    /// The server is not the coordinator the pinned root belongs to.
    case notTheCoordinator(address: String, reason: String)
    /// The coordinator answered with an error body.
    case refused(status: Int, code: String, message: String, problems: [String])
    case unexpectedResponse(status: Int, detail: String)

    public var description: String {
        switch self {
        case .invalidAddress(let address): return "coordinator address '\(address)' must be HOST:PORT (several: HOST:PORT,HOST:PORT)"
        case .invalidPinnedRoot:
            return "the root certificate to pin (--root-ca, VEIL_ROOT_CA or the one `veil attest` saved) is not one PEM certificate: "
                + "pass the coordinator's root as PEM (`veil certificate root` after `veil attest`)"
        case .connection(let address, let reason): return "cannot reach the coordinator at \(address): \(reason)"
        case .notTheCoordinator(let address, let reason):
            return "refusing \(address): the server is not the attested coordinator: \(reason)"
        case .refused(let status, _, let message, let problems):
            return "coordinator refused (\(status)): \(message)" + (problems.isEmpty || message.contains(problems[0]) ? "" : "\n  " + problems.joined(separator: "\n  "))
        case .unexpectedResponse(let status, let detail): return "unexpected coordinator response (\(status)): \(detail)"
        }
    }

    /// The server's TLS identity was refused (see ``CoordinatorIdentityPolicy``).
    public var isNotTheCoordinator: Bool {
        if case .notTheCoordinator = self { return true }
        return false
    }

    /// Worth trying another replica: it could not be reached, or it answered 503.
    public var isFailover: Bool {
        switch self {
        case .connection: return true
        case .refused(let status, _, _, _): return status == 503
        default: return false
        }
    }
}

/// A small JSON-over-HTTPS client for the coordinator's API, on SwiftNIO: one keep-alive
/// connection, requests one at a time, the server's chain checked in the handshake by
/// ``CoordinatorIdentityPolicy`` — before any request byte is sent.
public final class CoordinatorClient: Sendable {
    public let address: String
    let host: String
    let port: Int
    let context: NIOSSLContext
    let root: Certificate?
    let lock = AsyncLock()
    private let channel = Mutex<(any Channel)?>(nil)
    /// Why the last handshake's identity check failed, for the error message.
    private let identityFailure = Mutex<String?>(nil)
    /// How long one exchange (TLS handshake, request, whole response) may take: a server that
    /// accepts connections but never answers must not hang a command. Above the coordinator's
    /// own longest wait (collateral downloads, 30 s).
    let responseTimeout: TimeAmount

    /// - Parameters:
    ///   - address: `HOST:PORT`.
    ///   - responseTimeout: see ``responseTimeout``.
    public init(address: String, trust: CoordinatorTrust, identity: ClientIdentity? = nil, responseTimeout: Duration = .seconds(60)) throws {
        self.responseTimeout = .nanoseconds(Int64(responseTimeout.components.seconds) * 1_000_000_000 + responseTimeout.components.attoseconds / 1_000_000_000)
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
            (1...65535).contains(port), colon != address.startIndex
        else { throw CoordinatorClientError.invalidAddress(address) }
        self.address = address
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        self.host = host
        self.port = port
        var tls = TLSConfiguration.makeClientConfiguration()
        // No system trust store: the pinned root is the only anchor (and images may have none).
        tls.trustRoots = .certificates([])
        switch trust {
        case .pinnedRoot(let pem):
            guard let root = try? Certificate(pemEncoded: pem.trimmingWhitespace) else {
                throw CoordinatorClientError.invalidPinnedRoot
            }
            self.root = root
            // The custom callback (CoordinatorIdentityPolicy) replaces BoringSSL's checks.
            tls.certificateVerification = .noHostnameVerification
        case .unverifiedForAttestation:
            root = nil
            tls.certificateVerification = .none
        }
        if let identity {
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(identity.certificatePEM.utf8)).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(identity.privateKeyPEM.utf8), format: .pem))
        }
        context = try NIOSSLContext(configuration: tls)
    }

    /// Runs `body` with a client for `address` — one `HOST:PORT`, or several separated by
    /// commas (replicas). With several, `body` runs again from the start against the next
    /// replica when one cannot be reached, answers 503, or is not the coordinator (a dead
    /// replica's address taken by another server: nothing was sent to it, its handshake was
    /// refused first), for up to `failoverTimeout`. When no replica succeeds, a refused
    /// identity is what is reported, never hidden behind a later connection error. The client
    /// is always shut down afterwards.
    public static func with<Result>(
        address: String, trust: CoordinatorTrust, identity: ClientIdentity? = nil, failoverTimeout: Duration = .seconds(20),
        _ body: (CoordinatorClient) async throws -> Result
    ) async throws -> Result {
        let addresses = address.split(separator: ",").map { $0.trimmingWhitespace }.filter { !$0.isEmpty }
        guard !addresses.isEmpty else { throw CoordinatorClientError.invalidAddress(address) }
        let deadline = ContinuousClock.now + failoverTimeout
        var round = 0
        var impostor: CoordinatorClientError?
        while true {
            for candidate in addresses {
                let client = try CoordinatorClient(address: candidate, trust: trust, identity: identity)
                do {
                    let result = try await body(client)
                    await client.shutdown()
                    return result
                } catch let error as CoordinatorClientError where (error.isFailover || error.isNotTheCoordinator) && addresses.count > 1 {
                    await client.shutdown()
                    if error.isNotTheCoordinator { impostor = error }
                    if ContinuousClock.now >= deadline { throw impostor ?? error }
                } catch {
                    await client.shutdown()
                    throw error
                }
            }
            round += 1
            try await Task.sleep(for: .milliseconds(min(1000, 50 * round * round)))
        }
    }

    /// Sends a request and returns the body of a 2xx response; error bodies become ``CoordinatorClientError/refused``.
    public func call(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil) async throws -> [UInt8] {
        let response = try await exchange(method, path, body: body)
        guard (200..<300).contains(response.status) else {
            if let error = try? JSONDecoder().decode(API.ErrorResponse.self, from: Data(response.body)) {
                throw CoordinatorClientError.refused(
                    status: response.status, code: error.error.code, message: error.error.message, problems: error.error.problems ?? [])
            }
            throw CoordinatorClientError.unexpectedResponse(status: response.status, detail: String(decoding: response.body.prefix(200), as: UTF8.self))
        }
        return response.body
    }

    /// Sends a request with extra `headers` and returns the response whatever its status: for
    /// protocols other than Veil's API on the same listeners (the key-broker protocol's cookies).
    public func exchange(
        _ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, headers: [(String, String)] = []
    ) async throws -> (status: Int, headers: [(String, String)], body: [UInt8]) {
        let response = try await lock.run { () async throws -> NIOHTTPClientResponseFull in
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
            head.headers.add(name: "Host", value: address)
            head.headers.add(name: "Content-Length", value: "\(body?.count ?? 0)")
            if body != nil { head.headers.add(name: "Content-Type", value: "application/json") }
            for (name, value) in headers { head.headers.add(name: name, value: value) }
            let (channel, reused) = try await connection()
            do {
                return try await Self.send(head, body: body, on: channel, timeout: responseTimeout)
            } catch where reused && lastIdentityFailure == nil && !(error is NoAnswer) {
                // A kept-alive connection the server closed meanwhile: once more on a fresh one.
                self.channel.withLock { $0 = nil }
                do {
                    return try await Self.send(head, body: body, on: try await connection().channel, timeout: responseTimeout)
                } catch {
                    throw failure(error)
                }
            } catch {
                throw failure(error)
            }
        }
        return (Int(response.head.status.code), response.head.headers.map { ($0.name, $0.value) }, response.body.map { Array($0.readableBytesView) } ?? [])
    }

    public func call<Response: Decodable>(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, as type: Response.Type) async throws -> Response {
        let data = try await call(method, path, body: body)
        do {
            return try JSONDecoder().decode(type, from: Data(data))
        } catch {
            throw CoordinatorClientError.unexpectedResponse(status: 200, detail: "body is not a \(type) JSON document")
        }
    }

    public func call<Request: Encodable, Response: Decodable>(
        _ method: HTTPMethod, _ path: String, json: Request, as type: Response.Type
    ) async throws -> Response {
        try await call(method, path, body: Array(try JSONEncoder().encode(json)), as: type)
    }

    /// Closes the connection: TLS close_notify goes out, but nothing waits for the server's
    /// (a launcher execs its app right after; the socket is close-on-exec anyway).
    public func shutdown() async {
        let open = channel.withLock { channel -> (any Channel)? in
            defer { channel = nil }
            return channel
        }
        open?.close(promise: nil)
    }

    // MARK: - Connection

    /// The open connection, or a new one (`reused` tells which).
    private func connection() async throws -> (channel: any Channel, reused: Bool) {
        if let open = channel.withLock({ $0 }), open.isActive { return (open, true) }
        identityFailure.withLock { $0 = nil }
        let root = self.root
        let failure: @Sendable (String) -> Void = { [self] reason in identityFailure.withLock { $0 = reason } }
        let serverHostname = IPAddress.bytes(host) == nil ? host : nil
        let context = self.context
        let bootstrap = ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connectTimeout(.seconds(10))
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let ssl: NIOSSLClientHandler
                    if let root {
                        ssl = try NIOSSLClientHandler(context: context, serverHostname: serverHostname, customVerificationCallback: { certificates, promise in
                            let chain = certificates.compactMap { try? $0.toDERBytes() }
                            Task {
                                do {
                                    try await CoordinatorIdentityCheck.verify(chain, root: root)
                                    promise.succeed(.certificateVerified)
                                } catch {
                                    failure((error as? CoordinatorIdentityError)?.reason ?? "\(error)")
                                    promise.succeed(.failed)
                                }
                            }
                        })
                    } else {
                        ssl = try NIOSSLClientHandler(context: context, serverHostname: serverHostname)
                    }
                    try channel.pipeline.syncOperations.addHandler(ssl)
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    try channel.pipeline.syncOperations.addHandler(NIOHTTPClientResponseAggregator(maxContentLength: 16 << 20))
                    try channel.pipeline.syncOperations.addHandler(ResponseHandler())
                }
            }
        let opened: any Channel
        do {
            // An address literal needs no resolver thread and no happy-eyeballs race.
            if serverHostname == nil, let literal = try? SocketAddress(ipAddress: host, port: port) {
                opened = try await bootstrap.connect(to: literal).get()
            } else {
                opened = try await bootstrap.connect(host: host, port: port).get()
            }
        } catch {
            throw CoordinatorClientError.connection(address: address, reason: Self.explain(error))
        }
        channel.withLock { $0 = opened }
        return (opened, false)
    }

    /// The error for a failed exchange: an identity check that refused the server, or a connection failure.
    private func failure(_ error: any Error) -> CoordinatorClientError {
        channel.withLock { $0 = nil }
        if let error = error as? CoordinatorClientError { return error }
        if let reason = lastIdentityFailure { return .notTheCoordinator(address: address, reason: reason) }
        return .connection(address: address, reason: Self.explain(error))
    }

    /// Writes one request and waits for its whole response, for up to `timeout` (then the
    /// connection is closed and the call fails with ``NoAnswer``).
    private static func send(
        _ head: HTTPRequestHead, body: [UInt8]?, on channel: any Channel, timeout: TimeAmount
    ) async throws -> NIOHTTPClientResponseFull {
        let promise = channel.eventLoop.makePromise(of: NIOHTTPClientResponseFull.self)
        let deadline = channel.eventLoop.scheduleTask(in: timeout) {
            try? channel.pipeline.syncOperations.handler(type: ResponseHandler.self).abandon(NoAnswer(timeout: timeout))
            channel.close(promise: nil)
        }
        promise.futureResult.whenComplete { _ in deadline.cancel() }
        channel.eventLoop.execute {
            do {
                try channel.pipeline.syncOperations.handler(type: ResponseHandler.self).expect(promise)
            } catch {
                promise.fail(error)
                return
            }
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(ByteBuffer(bytes: body))), promise: nil) }
            channel.writeAndFlush(HTTPClientRequestPart.end(nil)).whenFailure { promise.fail($0) }
        }
        do {
            return try await promise.futureResult.get()
        } catch {
            throw error
        }
    }

    /// No complete response within the client's ``responseTimeout``.
    struct NoAnswer: Error {
        let timeout: TimeAmount
    }

    static func explain(_ error: any Error) -> String {
        if let silent = error as? NoAnswer {
            return "no answer within \(silent.timeout.nanoseconds / 1_000_000_000) s (is this the coordinator's port? a server that accepts "
                + "connections but never answers, or an overloaded coordinator)"
        }
        if let ssl = error as? NIOSSLError {
            if case .handshakeFailed = ssl { return "TLS handshake failed: \(ssl)" }
            return "TLS error: \(ssl)"
        }
        if let ssl = error as? BoringSSLError { return "TLS handshake failed (\(ssl))" }
        if let io = error as? IOError {
            switch io.errnoCode {
            case ECONNREFUSED: return "connection refused: nothing listens there (is the coordinator running, and is this the right port?)"
            case ETIMEDOUT, EHOSTUNREACH, ENETUNREACH: return "\(String(cString: strerror(io.errnoCode))) (a firewall, or a wrong address?)"
            default: return "\(String(cString: strerror(io.errnoCode)))"
            }
        }
        if let connect = error as? NIOConnectionError {
            if let refused = connect.connectionErrors.first?.error { return explain(refused) }
            if connect.dnsAAAAError != nil || connect.dnsAError != nil { return "the host name does not resolve" }
        }
        return "\(error)"
    }
}

extension CoordinatorClient {
    /// The reason a handshake's identity check gave, when the last connection failed that way.
    var lastIdentityFailure: String? { identityFailure.withLock { $0 } }
}

/// Completes the promise of the request in flight with its aggregated response.
final class ResponseHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOHTTPClientResponseFull
    private var pending: EventLoopPromise<NIOHTTPClientResponseFull>?

    func expect(_ promise: EventLoopPromise<NIOHTTPClientResponseFull>) {
        pending = promise
    }

    /// Fails the request in flight (its deadline passed).
    func abandon(_ error: any Error) {
        pending?.fail(error)
        pending = nil
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pending?.succeed(unwrapInboundIn(data))
        pending = nil
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        pending?.fail(error)
        pending = nil
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        pending?.fail(ChannelError.ioOnClosedChannel)
        pending = nil
        context.fireChannelInactive()
    }
}
