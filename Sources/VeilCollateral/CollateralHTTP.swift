import AsyncHTTPClient
import NIOSSL
import Synchronization

/// HTTP clients for collateral servers (Intel PCS, a PCCS, AMD KDS).
public enum CollateralHTTP {
    public enum Failure: Error, CustomStringConvertible {
        case unreadableCA(path: String, reason: String)
        case emptyCA(path: String)

        public var description: String {
            switch self {
            case .unreadableCA(let path, let reason): return "--collateral-ca \(path): not a PEM certificate file (\(reason))"
            case .emptyCA(let path): return "--collateral-ca \(path) holds no certificate"
            }
        }
    }

    /// For a process that fetches for its whole life (the coordinator): one client for the
    /// system's roots, or one per CA file, made once and kept (never deinitialized, so never shut
    /// down too early).
    public static func longLived(trusting caFile: String?) throws(Failure) -> HTTPClient {
        guard let caFile else { return systemRoots }
        return try kept.withLock { clients throws(Failure) -> HTTPClient in
            if let made = clients[caFile] { return made }
            let made = try client(trusting: caFile)
            clients[caFile] = made
            return made
        }
    }

    private static let kept = Mutex<[String: HTTPClient]>([:])

    /// The system's roots, without retrying a connection that failed to establish: AsyncHTTPClient
    /// would otherwise retry a refused TLS handshake (an untrusted PCCS certificate) until the
    /// request's deadline, and the answer would come 30 s late. Callers retry on their own terms.
    public static let systemRoots = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration(tls: .makeClientConfiguration()))

    static func configuration(tls: TLSConfiguration) -> HTTPClient.Configuration {
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.connectionPool.retryConnectionEstablishment = false
        return configuration
    }

    /// A client that trusts the certificates in `caFile` besides the system's roots (a PCCS
    /// with a certificate of its own CA); the caller shuts it down. Trusting it only opens the
    /// connection: what it serves is verified against Intel's and AMD's roots like any collateral.
    public static func client(trusting caFile: String) throws(Failure) -> HTTPClient {
        let roots: [NIOSSLCertificate]
        do {
            roots = try NIOSSLCertificate.fromPEMFile(caFile)
        } catch {
            throw .unreadableCA(path: caFile, reason: "\(error)")
        }
        guard !roots.isEmpty else { throw .emptyCA(path: caFile) }
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.additionalTrustRoots = [.certificates(roots)]
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration(tls: tls))
    }
}
