import CoreMetrics
import HummingbirdCore
import Logging
import NIOCore
import Synchronization

/// How long a replica waits for a connection to speak, and how many it keeps open.
///
/// A connection must deliver a complete request head within `idleTimeout` of being accepted
/// (the TLS handshake included) or of its previous response, and a request body may not
/// pause longer than that; then it is closed. A slow but steady upload (a large manifest
/// over a slow link) is not cut: every body part restarts the wait.
public struct ConnectionLimits: Sendable, Equatable {
    public var idleTimeout: Duration = .seconds(10)
    /// Open connections from one peer address, across both listeners.
    public var perPeer = 256
    /// Open connections in total, across both listeners.
    public var total = 4096

    public init() {}
}

/// Counts open connections per peer address across every listener of a replica and refuses
/// one over either cap. Refusals are counted in `veil_connections_refused_total{reason}` and
/// logged at most once every 10 s (a flood must not become a log flood).
final class ConnectionGate: Sendable {
    enum Refusal: String {
        case peerCap = "peer-cap"
        case totalCap = "total-cap"
    }

    private struct Counts {
        var total = 0
        var perPeer: [String: Int] = [:]
        var refusedSinceLog = 0
        var lastLog: ContinuousClock.Instant?
    }

    let limits: ConnectionLimits
    let metrics: CoordinatorMetrics
    let logger: Logger
    private let counts = Mutex(Counts())

    init(limits: ConnectionLimits, metrics: CoordinatorMetrics, logger: Logger) {
        self.limits = limits
        self.metrics = metrics
        self.logger = logger
    }

    /// Takes a place for a connection from `peer`, or says why there is none.
    func admit(_ peer: String) -> Refusal? {
        let (refusal, report) = counts.withLock { counts -> (Refusal?, Int?) in
            let refusal: Refusal? =
                counts.total >= limits.total ? .totalCap : counts.perPeer[peer, default: 0] >= limits.perPeer ? .peerCap : nil
            guard refusal != nil else {
                counts.total += 1
                counts.perPeer[peer, default: 0] += 1
                return (nil, nil)
            }
            counts.refusedSinceLog += 1
            let now = ContinuousClock.now
            guard counts.lastLog.map({ now - $0 >= .seconds(10) }) ?? true else { return (refusal, nil) }
            defer { counts.refusedSinceLog = 0 }
            counts.lastLog = now
            return (refusal, counts.refusedSinceLog)
        }
        if let refusal {
            metrics.countConnectionRefused(reason: refusal.rawValue)
            if let report {
                logger.warning(
                    "connections refused: too many open",
                    metadata: ["peer": "\(peer)", "reason": "\(refusal.rawValue)", "refusedSinceLastReport": "\(report)",
                               "perPeer": "\(limits.perPeer)", "total": "\(limits.total)"])
            }
        }
        return refusal
    }

    func release(_ peer: String) {
        counts.withLock { counts in
            counts.total -= 1
            let left = counts.perPeer[peer, default: 1] - 1
            counts.perPeer[peer] = left > 0 ? left : nil
        }
    }

    var openConnections: Int { counts.withLock { $0.total } }

    /// Hummingbird's HTTP/1 server with the idle deadline and this gate on every connection.
    func http1() -> HTTPServerBuilder {
        .http1(configuration: .init(additionalChannelHandlers: [ConnectionGateHandler(gate: self)], idleTimeout: .init(limits.idleTimeout)))
    }
}

/// Admits its connection through the gate when it becomes active and releases the place when
/// it ends; a refused connection is closed at once (before its TLS handshake completes).
/// Connections that end without an answer ever written on them — the idle deadline, scans,
/// failed handshakes — are counted in `veil_connections_without_request_total`.
final class ConnectionGateHandler: ChannelDuplexHandler, RemovableChannelHandler {
    /// HTTP request and response parts; only passed on, never unwrapped.
    typealias InboundIn = Any
    typealias OutboundIn = Any

    let gate: ConnectionGate
    private var peer: String?
    private var answered = false

    init(gate: ConnectionGate) { self.gate = gate }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { admit(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        admit(context)
        context.fireChannelActive()
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        answered = true
        context.write(data, promise: promise)
    }

    private func admit(_ context: ChannelHandlerContext) {
        guard peer == nil else { return }
        let address = context.channel.remoteAddress?.ipAddress ?? "unknown"
        guard gate.admit(address) == nil else {
            context.close(promise: nil)
            return
        }
        peer = address
        // The close future fires once for every end of the channel, whichever handler or peer
        // closed it: the one place to give the place back.
        let gate = self.gate
        let handler = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.channel.closeFuture.whenComplete { _ in
            gate.release(address)
            if !handler.value.answered { gate.metrics.countConnectionWithoutRequest() }
        }
    }
}
