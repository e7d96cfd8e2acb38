/// A service's place in the service mesh: where peers reach it over mutual TLS and which of
/// them may, and which services it reaches. The launcher starts a proxy for it; the app keeps
/// speaking plain TCP on loopback.
///
/// Invariant (after validation): every `Listen`/`Forward` is `HOST:PORT`; plaintext ends
/// (ingress `Forward`, egress `Listen`) are loopback; `Clients` and egress `Service` name
/// services of the manifest.
public struct MeshPolicy: Sendable, Equatable, Codable {
    /// Terminates mutual TLS in front of the app's plain listener.
    public struct Ingress: Sendable, Equatable, Codable {
        /// Where peers connect (TLS), e.g. `0.0.0.0:11211`.
        public var listen: String
        /// The app's plain listener, on loopback, e.g. `127.0.0.1:21211`.
        public var forward: String
        /// Services whose identity may connect; nobody else may.
        public var clients: [String]

        public init(listen: String, forward: String, clients: [String]) {
            self.listen = listen
            self.forward = forward
            self.clients = clients
        }
    }

    /// A local plain port that reaches another service over mutual TLS.
    public struct Egress: Sendable, Equatable, Codable {
        /// Where the app connects (plain, loopback), e.g. `127.0.0.1:7000`.
        public var listen: String
        /// The service the peer must prove to be.
        public var service: String
        /// The peer's ingress, `HOST:PORT`.
        public var address: String

        public init(listen: String, service: String, address: String) {
            self.listen = listen
            self.service = service
            self.address = address
        }
    }

    public var ingress: [Ingress]
    public var egress: [Egress]

    public init(ingress: [Ingress] = [], egress: [Egress] = []) {
        self.ingress = ingress
        self.egress = egress
    }

    public var isEmpty: Bool { ingress.isEmpty && egress.isEmpty }
}

/// `HOST:PORT` parsing shared by the manifest and the proxy (IPv6 hosts in brackets).
public enum HostPort {
    public static func parse(_ text: String) -> (host: String, port: Int)? {
        guard let colon = text.lastIndex(of: ":"), colon != text.startIndex, let port = Int(text[text.index(after: colon)...]),
            (1...65535).contains(port)
        else { return nil }
        var host = String(text[..<colon])
        if host.hasPrefix("[") {
            guard host.hasSuffix("]") else { return nil }
            host = String(host.dropFirst().dropLast())
            guard IPAddress.bytes(host)?.count == 16 else { return nil }
        } else if host.contains(":") {
            return nil
        }
        guard !host.isEmpty else { return nil }
        return (host, port)
    }

    /// Loopback: `localhost`, 127.0.0.0/8, `::1`.
    public static func isLoopback(_ host: String) -> Bool {
        if host == "localhost" { return true }
        guard let bytes = IPAddress.bytes(host) else { return false }
        return bytes.count == 4 ? bytes[0] == 127 : bytes == [UInt8](repeating: 0, count: 15) + [1]
    }
}
