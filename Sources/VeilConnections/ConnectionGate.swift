import Logging
import NIOCore
import Synchronization

/// How long a server waits for a connection to speak, and how many it keeps open.
///
/// A connection must deliver a complete request head within `idleTimeout` of being accepted
/// (the TLS handshake included) or of its previous response, and a request body may not
/// pause longer than that; then it is closed. A slow but steady upload (a large manifest
/// over a slow link) is not cut: every body part restarts the wait. (Servers without
/// requests — the mesh proxy — use only the caps.)
public struct ConnectionLimits: Sendable, Equatable {
    public var idleTimeout: Duration = .seconds(10)
    /// Open connections from one peer address, across every listener sharing the gate.
    public var perPeer = 256
    /// Open connections in total, across every listener sharing the gate.
    public var total = 4096

    public init() {}
}

/// Counts open connections per peer address across every listener of a server and refuses
/// one over either cap. Each refusal is reported to `onRefusal` (a metric) and logged at most
/// once every 10 s (a flood must not become a log flood).
public final class ConnectionGate: Sendable {
    public enum Refusal: String, Sendable {
        case peerCap = "peer-cap"
        case totalCap = "total-cap"
    }

    private struct Counts {
        var total = 0
        var perPeer: [String: Int] = [:]
        var refusedSinceLog = 0
        var lastLog: ContinuousClock.Instant?
    }

    public let limits: ConnectionLimits
    let logger: Logger
    let onRefusal: @Sendable (Refusal) -> Void
    /// A connection ended without anything ever written on it (deadline, scan, failed handshake).
    let onUnanswered: @Sendable () -> Void
    private let counts = Mutex(Counts())

    public init(
        limits: ConnectionLimits, logger: Logger, onRefusal: @escaping @Sendable (Refusal) -> Void = { _ in },
        onUnanswered: @escaping @Sendable () -> Void = {}
    ) {
        self.limits = limits
        self.logger = logger
        self.onRefusal = onRefusal
        self.onUnanswered = onUnanswered
    }

    /// Takes a place for a connection from `peer`, or says why there is none.
    public func admit(_ peer: String) -> Refusal? {
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
            onRefusal(refusal)
            if let report {
                logger.warning(
                    "connections refused: too many open",
                    metadata: ["peer": "\(peer)", "reason": "\(refusal.rawValue)", "refusedSinceLastReport": "\(report)",
                               "perPeer": "\(limits.perPeer)", "total": "\(limits.total)"])
            }
        }
        return refusal
    }

    public func release(_ peer: String) {
        counts.withLock { counts in
            counts.total -= 1
            let left = counts.perPeer[peer, default: 1] - 1
            counts.perPeer[peer] = left > 0 ? left : nil
        }
    }

    public var openConnections: Int { counts.withLock { $0.total } }

    /// A handler admitting its channel through this gate (first in the pipeline).
    public func handler() -> ConnectionGateHandler { ConnectionGateHandler(gate: self) }
}

/// Admits its connection through the gate when it becomes active and releases the place when
/// it ends; a refused connection is closed at once (before its TLS handshake completes).
/// Connections that end without an answer ever written on them — the idle deadline, scans,
/// failed handshakes — are reported to the gate's `onUnanswered`.
public final class ConnectionGateHandler: ChannelDuplexHandler, RemovableChannelHandler {
    /// HTTP request and response parts; only passed on, never unwrapped.
    public typealias InboundIn = Any
    public typealias OutboundIn = Any

    let gate: ConnectionGate
    private var peer: String?
    private var answered = false

    init(gate: ConnectionGate) { self.gate = gate }

    public func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { admit(context) }
    }

    public func channelActive(context: ChannelHandlerContext) {
        admit(context)
        context.fireChannelActive()
    }

    public func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
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
            if !handler.value.answered { gate.onUnanswered() }
        }
    }
}
