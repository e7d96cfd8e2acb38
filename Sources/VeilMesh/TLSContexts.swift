import NIOSSL

/// The server and client TLS 1.3 contexts for one certificate chain and key.
struct TLSContexts: Sendable {
    let server: NIOSSLContext
    let client: NIOSSLContext

    init(chain: [NIOSSLCertificate], privateKeyPEM: String) throws {
        let sources = chain.map { NIOSSLCertificateSource.certificate($0) }
        let key = NIOSSLPrivateKeySource.privateKey(try NIOSSLPrivateKey(bytes: Array(privateKeyPEM.utf8), format: .pem))
        var server = TLSConfiguration.makeServerConfiguration(certificateChain: sources, privateKey: key)
        server.minimumTLSVersion = .tlsv13
        // A client certificate is required; the proxy's verification callback replaces BoringSSL's checks.
        server.certificateVerification = .noHostnameVerification
        server.trustRoots = .certificates([])
        self.server = try NIOSSLContext(configuration: server)
        var client = TLSConfiguration.makeClientConfiguration()
        client.minimumTLSVersion = .tlsv13
        client.certificateChain = sources
        client.privateKey = key
        client.certificateVerification = .noHostnameVerification
        client.trustRoots = .certificates([])
        self.client = try NIOSSLContext(configuration: client)
    }
}
