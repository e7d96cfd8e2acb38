import Crypto
import Foundation
import Logging
import NIOCore
import NIOSSL
import Synchronization
import VeilManifest

/// The coordinator's TLS certificate: issued by the coordinator TLS CA at start and renewed
/// in place before it expires, so a coordinator that runs for months never serves an expired
/// certificate and never needs a restart for it. Each TLS handshake picks the current one.
public final class ServerIdentity: Sendable {
    /// How long each certificate is valid.
    public let validity: TimeInterval
    let authority: CertificateAuthority
    let dnsNames: [String]
    let ipAddresses: [[UInt8]]
    let logger: Logger

    /// The current certificate as bytes: each handshake gets its own BoringSSL objects made from
    /// them (objects shared across concurrent handshakes on several event loops are not safe).
    struct Current: Sendable {
        var leafDER: [UInt8]
        var keyPEM: String
        var notAfter: Date
        var notBefore: Date
    }
    private let current: Mutex<Current>
    private let coordinatorCADER: [UInt8]

    public static let defaultValidity: TimeInterval = 30 * 86400

    /// - Parameters:
    ///   - dnsNames: extra names besides `localhost` (and the loopback addresses).
    public init(authority: CertificateAuthority, dnsNames: [String], validity: TimeInterval = ServerIdentity.defaultValidity, logger: Logger) throws {
        self.authority = authority
        self.dnsNames = ["localhost"] + dnsNames
        ipAddresses = [[127, 0, 0, 1], [UInt8](repeating: 0, count: 15) + [1]]
        self.validity = validity
        self.logger = logger
        coordinatorCADER = authority.coordinatorCADER
        current = Mutex(try Self.issue(authority, dnsNames: self.dnsNames, ipAddresses: ipAddresses, validity: validity))
    }

    static func issue(_ authority: CertificateAuthority, dnsNames: [String], ipAddresses: [[UInt8]], validity: TimeInterval, now: Date = Date()) throws -> Current {
        let key = P256.Signing.PrivateKey()
        let leaf = try authority.issueCoordinatorTLS(publicKey: .init(key.publicKey), dnsNames: dnsNames, ipAddresses: ipAddresses, validFor: validity, now: now)
        return Current(leafDER: try leaf.derBytes, keyPEM: key.pemRepresentation, notAfter: leaf.notValidAfter, notBefore: leaf.notValidBefore)
    }

    /// BoringSSL objects for the current certificate, fresh for one handshake.
    func materials() throws -> (chain: [NIOSSLCertificateSource], key: NIOSSLPrivateKeySource) {
        let now = current.withLock { $0 }
        return (
            [.certificate(try NIOSSLCertificate(bytes: now.leafDER, format: .der)), .certificate(try NIOSSLCertificate(bytes: coordinatorCADER, format: .der))],
            .privateKey(try NIOSSLPrivateKey(bytes: Array(now.keyPEM.utf8), format: .pem)))
    }

    /// When the current certificate expires.
    public var notAfter: Date { current.withLock { $0.notAfter } }

    /// Issues a new certificate when less than a third of the current one's lifetime is left.
    /// Returns whether it renewed.
    @discardableResult
    public func renewIfDue(now: Date = Date()) -> Bool {
        let (notBefore, notAfter) = current.withLock { ($0.notBefore, $0.notAfter) }
        guard notAfter.timeIntervalSince(now) < notAfter.timeIntervalSince(notBefore) / 3 else { return false }
        do {
            let next = try Self.issue(authority, dnsNames: dnsNames, ipAddresses: ipAddresses, validity: validity, now: now)
            current.withLock { $0 = next }
            logger.info("coordinator TLS certificate renewed", metadata: ["notAfter": "\(next.notAfter)"])
            return true
        } catch {
            logger.error("cannot renew the coordinator TLS certificate", metadata: ["error": "\(error)"])
            return false
        }
    }

    /// Renews as due until cancelled, checking often enough for the shortest validity.
    public func keepRenewed() async {
        let interval = max(0.2, min(3600, validity / 20))
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))
            renewIfDue()
        }
    }

    /// A server TLS configuration whose handshakes present the current certificate.
    /// - Parameter clientCertificates: ask for (and let handlers read) client certificates.
    public func tlsConfiguration(clientCertificates: Bool) throws -> TLSConfiguration {
        let initial = try materials()
        var configuration = TLSConfiguration.makeServerConfiguration(certificateChain: initial.chain, privateKey: initial.key)
        configuration.minimumTLSVersion = .tlsv12
        if clientCertificates {
            configuration.certificateVerification = .optionalVerification
            // The server's verification callback decides (users are matched against the manifest,
            // not a CA), so no trust store is read: the default one loads the system's CA files,
            // which Veil's own image does not carry, and failed the listener there.
            configuration.trustRoots = .certificates([])
        }
        configuration.sslContextCallback = { [self] _, promise in
            do {
                let fresh = try self.materials()
                var override = NIOSSLContextConfigurationOverride()
                override.certificateChain = fresh.chain
                override.privateKey = fresh.key
                promise.succeed(override)
            } catch {
                promise.fail(error)
            }
        }
        return configuration
    }
}
