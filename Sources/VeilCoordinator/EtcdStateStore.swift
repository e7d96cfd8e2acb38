import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

/// TLS material for etcd's client port (etcd `--client-cert-auth`).
public struct EtcdTLS: Sendable {
    public var caPEM: String
    public var certificatePEM: String?
    public var keyPEM: String?

    public init(caPEM: String, certificatePEM: String? = nil, keyPEM: String? = nil) {
        self.caPEM = caPEM
        self.certificatePEM = certificatePEM
        self.keyPEM = keyPEM
    }
}

/// The state in etcd (v3 API through its JSON gateway, `/v3/kv/…`, `/v3/watch`): one key
/// `PREFIX/state` written only by a transaction that compares its mod revision, so each change
/// applies exactly once across replicas; replicas register under `PREFIX/replicas/ID`.
///
/// Calls go to the endpoints in turn, skipping one that cannot be reached, until
/// ``retryWindow`` has passed (an etcd leader election takes one to a few seconds). A write whose
/// outcome is unknown (the connection broke after sending) is resolved by reading the key
/// back: the sealed bytes are unique, so finding them means the write happened.
public final class EtcdStateStore: StateStore, PeerDirectory {
    public let endpoints: [String]
    public let prefix: String
    let http: HTTPClient
    let logger: Logger
    let stateKey: String
    /// How long a call keeps trying other endpoints (etcd elects a new leader within one to a few seconds).
    public let retryWindow: Duration
    private let next = Mutex(0)

    /// - Parameters:
    ///   - endpoints: `https://HOST:PORT` (or `http://`) client URLs of the etcd members.
    ///   - prefix: keys live under it, e.g. `/veil/prod`.
    /// How long one request may take before the next endpoint is tried: etcd answers in
    /// milliseconds, but a request to a member without a leader waits for the election.
    public let attemptTimeout: TimeAmount

    public init(endpoints: [String], prefix: String, tls: EtcdTLS?, retryWindow: Duration = .seconds(5), attemptTimeout: TimeAmount = .seconds(1), logger: Logger) throws {
        self.attemptTimeout = attemptTimeout
        self.retryWindow = retryWindow
        guard !endpoints.isEmpty else { throw StateStoreError.unavailable("no etcd endpoints given") }
        self.endpoints = endpoints.map { $0.hasSuffix("/") ? String($0.dropLast()) : $0 }
        self.prefix = prefix.hasSuffix("/") ? String(prefix.dropLast()) : prefix
        stateKey = self.prefix + "/state"
        self.logger = logger
        var tlsConfiguration = TLSConfiguration.makeClientConfiguration()
        if let tls {
            tlsConfiguration.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(tls.caPEM.utf8)))
            if let certificate = tls.certificatePEM, let key = tls.keyPEM {
                tlsConfiguration.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(certificate.utf8)).map { .certificate($0) }
                tlsConfiguration.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(key.utf8), format: .pem))
            }
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tlsConfiguration, redirectConfiguration: .disallow)
        configuration.timeout = .init(connect: .milliseconds(500), read: .seconds(5))
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    deinit {
        // Not syncShutdown: the last reference may go on an event loop, where blocking traps.
        http.shutdown { _ in }
    }

    public var description: String { "etcd \(prefix) at \(endpoints.joined(separator: ","))" }

    // MARK: - Wire (answers are read by EtcdReplies)

    /// The largest watch line read: a call's answer is limited to 8 MiB, a streamed value
    /// base64-encodes it inside JSON.
    static let longestWatchLine = 16 << 20

    static func base64(_ text: String) -> String { Data(text.utf8).base64EncodedString() }

    /// Why a call failed: `sent` when the request may have reached etcd (its effect is unknown).
    enum CallError: Error {
        case unreachable(String)
        case sent(String)
        case refused(String)
    }

    /// POSTs `body` to `path` on the first endpoint that answers, rotating on failure.
    private func call(_ path: String, _ body: [String: Any], deadline: ContinuousClock.Instant? = nil) async throws(CallError) -> [UInt8] {
        let deadline = deadline ?? ContinuousClock.now + retryWindow
        let data: Data
        do {
            data = try JSONSerialization.data(withJSONObject: body)
        } catch {
            throw .refused("cannot encode the request: \(error)")
        }
        var lastError = "no endpoint tried"
        var sentAny = false
        repeat {
            let index = next.withLock { value -> Int in
                defer { value += 1 }
                return value % endpoints.count
            }
            var request = HTTPClientRequest(url: endpoints[index] + path)
            request.method = .POST
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: data))
            do {
                let response = try await http.execute(request, deadline: .now() + attemptTimeout)
                let bytes = Array(try await response.body.collect(upTo: 8 << 20).readableBytesView)
                if response.status == .ok { return bytes }
                let reason = EtcdReplies.reason(bytes, status: response.status.code)
                // Leader changes, lost quorum and timeouts are transient: try again.
                if response.status.code >= 500 || reason.contains("leader") || reason.contains("timed out") || reason.contains("unavailable") {
                    lastError = "\(endpoints[index]): \(reason)"
                    sentAny = true
                } else {
                    throw CallError.refused("\(endpoints[index]): \(reason)")
                }
            } catch let error as CallError {
                throw error
            } catch {
                lastError = "\(endpoints[index]): \(error)"
                if !Self.isConnectFailure(error) { sentAny = true }
            }
            if index == endpoints.count - 1 { try? await Task.sleep(for: .milliseconds(100)) }
        } while ContinuousClock.now < deadline
        throw sentAny ? .sent(lastError) : .unreachable(lastError)
    }

    static func isConnectFailure(_ error: any Error) -> Bool {
        if let client = error as? HTTPClientError, client == .connectTimeout { return true }
        let text = "\(error)"
        return text.contains("connectTimeout") || text.contains("Connection refused") || text.contains("connection refused")
            || text.contains("connect(descriptor") || text.contains("ECONNREFUSED")
    }

    private func unavailable(_ error: CallError) -> StateStoreError {
        switch error {
        case .unreachable(let why): return .unavailable("no etcd endpoint reachable (\(why))")
        case .sent(let why), .refused(let why): return .unavailable(why)
        }
    }

    // MARK: - StateStore

    public func read() async throws(StateStoreError) -> StoredState? {
        let bytes: [UInt8]
        do {
            bytes = try await call("/v3/kv/range", ["key": Self.base64(stateKey)])
        } catch {
            throw unavailable(error)
        }
        return try EtcdReplies.storedState(range: bytes, key: stateKey)
    }

    public func write(_ bytes: [UInt8], expecting expected: Int64?) async throws(StateStoreError) -> Int64 {
        let key = Self.base64(stateKey)
        let compare: [String: Any] = expected.map { ["target": "MOD", "key": key, "result": "EQUAL", "mod_revision": String($0)] }
            ?? ["target": "VERSION", "key": key, "result": "EQUAL", "version": "0"]
        let body: [String: Any] = [
            "compare": [compare],
            "success": [["request_put": ["key": key, "value": Data(bytes).base64EncodedString()]]],
            "failure": [],
        ]
        let answer: [UInt8]
        do {
            answer = try await call("/v3/kv/txn", body)
        } catch .sent(let why) {
            // Maybe applied: the bytes themselves tell.
            logger.warning("etcd write outcome unknown; reading back", metadata: ["reason": "\(why)"])
            guard let current = try await read() else { throw .unavailable(why) }
            if current.bytes == bytes { return current.revision }
            if current.revision == expected { throw .unavailable(why) }
            throw .conflict
        } catch {
            throw unavailable(error)
        }
        return try EtcdReplies.committedRevision(txn: answer)
    }

    public func changes(after revision: Int64) -> AsyncStream<StoredState> {
        AsyncStream { continuation in
            let task = Task {
                var from = revision + 1
                while !Task.isCancelled {
                    do {
                        from = try await watch(from: from) { continuation.yield($0) }
                    } catch {
                        logger.debug("etcd watch interrupted; reconnecting", metadata: ["reason": "\(error)"])
                    }
                    try? await Task.sleep(for: .milliseconds(200))
                    // Catch up with what was written while the watch was down.
                    if let current = try? await read(), current.revision >= from {
                        continuation.yield(current)
                        from = current.revision + 1
                    }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    /// Streams watch events of the state key from `start` until the stream breaks; returns the
    /// revision to resume from.
    private func watch(from start: Int64, _ yield: (StoredState) -> Void) async throws -> Int64 {
        let index = next.withLock { value -> Int in
            defer { value += 1 }
            return value % endpoints.count
        }
        var request = HTTPClientRequest(url: endpoints[index] + "/v3/watch")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        let body: [String: Any] = ["create_request": ["key": Self.base64(stateKey), "start_revision": String(start)]]
        request.body = .bytes(ByteBuffer(data: try JSONSerialization.data(withJSONObject: body)))
        let response = try await http.execute(request, timeout: .hours(24 * 365))
        guard response.status == .ok else { throw StateStoreError.unavailable("watch: HTTP \(response.status.code)") }
        var resume = start
        var buffer: [UInt8] = []
        for try await chunk in response.body {
            buffer += chunk.readableBytesView
            // The gateway streams one JSON object per line.
            while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let message = EtcdReplies.watchLine(buffer[..<newline])
                buffer.removeSubrange(...newline)
                guard let message else { continue }
                if message.canceled { return resume }
                for state in message.states {
                    yield(state)
                    resume = state.revision + 1
                }
            }
            // A line longer than any state (a sealed state is a few MB at most) is not etcd's.
            guard buffer.count <= Self.longestWatchLine else {
                throw StateStoreError.corrupt("etcd watch sent more than \(Self.longestWatchLine >> 20) MiB without a line end")
            }
        }
        return resume
    }

    public func reset() async throws(StateStoreError) {
        do {
            _ = try await call("/v3/kv/deleterange", ["key": Self.base64(stateKey)])
        } catch {
            throw unavailable(error)
        }
    }

    // MARK: - PeerDirectory

    public func register(replica: String, peerAddress: String) async throws(StateStoreError) {
        let value = Data(#"{"peer":"\#(peerAddress)"}"#.utf8).base64EncodedString()
        do {
            _ = try await call("/v3/kv/put", ["key": Self.base64("\(prefix)/replicas/\(replica)"), "value": value])
        } catch {
            throw unavailable(error)
        }
    }

    public func peers() async throws(StateStoreError) -> [String: String] {
        let start = "\(prefix)/replicas/"
        let end = "\(prefix)/replicas0"  // '/' + 1: every key under the prefix
        let bytes: [UInt8]
        do {
            bytes = try await call("/v3/kv/range", ["key": Self.base64(start), "range_end": Self.base64(end)])
        } catch {
            throw unavailable(error)
        }
        return try EtcdReplies.peers(range: bytes, start: start)
    }
}
