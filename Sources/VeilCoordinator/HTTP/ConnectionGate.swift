import HummingbirdCore
import VeilConnections

extension ConnectionGate {
    /// Hummingbird's HTTP/1 server with the idle deadline and this gate on every connection.
    func http1() -> HTTPServerBuilder {
        .http1(configuration: .init(additionalChannelHandlers: [self.handler()], idleTimeout: .init(limits.idleTimeout)))
    }
}
