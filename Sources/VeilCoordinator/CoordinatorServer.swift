import Crypto
import Foundation
import Hummingbird
import HummingbirdTLS
import Logging
import NIOSSL
import ServiceLifecycle
import VeilAttestation
import VeilManifest

/// Runs a coordinator from a data directory: loads or creates its sealed state and serves the
/// client and mesh APIs over TLS.
public struct CoordinatorServer {
    public struct Configuration: Sendable {
        public var dataDirectory: String
        public var clientAddress: (host: String, port: Int)
        public var meshAddress: (host: String, port: Int)
        /// Only `simulated` exists so far; it must be chosen explicitly.
        public var simulationKeyPath: String?
        /// Extra DNS names for the coordinator's TLS certificate (localhost and loopback IPs are always present).
        public var dnsNames: [String]
        /// Intel DCAP collateral (file or directory) for SGX/TDX activations; none refuses them.
        public var dcapCollateralPath: String?
        /// AMD CRLs (DER files, one per product) checked for SEV-SNP activations.
        public var amdCRLPaths: [String] = []

        public init(
            dataDirectory: String, clientAddress: (host: String, port: Int), meshAddress: (host: String, port: Int),
            simulationKeyPath: String?, dnsNames: [String] = []
        ) {
            self.dataDirectory = dataDirectory
            self.clientAddress = clientAddress
            self.meshAddress = meshAddress
            self.simulationKeyPath = simulationKeyPath
            self.dnsNames = dnsNames
        }
    }

    /// The simulated coordinator's measurement: its own executable, measured as the launcher measures programs.
    public static func selfMeasurement() throws -> [UInt8] {
        try LaunchMeasurement.measure(programAt: "/proc/self/exe", config: .init(service: "veil-coordinator", arguments: []))
    }

    /// The store and evidence provider of a data directory (simulated TEE).
    static func environment(_ configuration: Configuration, logger: Logger) throws
        -> (store: SealedFileStore, provider: SimulatedEvidenceProvider, platformKey: SimulationPlatformKey) {
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        let keyPath = configuration.simulationKeyPath
            ?? (configuration.dataDirectory as NSString).appendingPathComponent(SimulationPlatformKey.defaultFileName)
        let platformKey = try SimulationPlatformKey.loadOrCreate(at: keyPath)
        let sealingKey = try SimulatedSealingKey.loadOrCreate(directory: configuration.dataDirectory)
        let store = SealedFileStore(directory: configuration.dataDirectory, sealingKey: sealingKey)
        let provider = SimulatedEvidenceProvider(key: platformKey, measurement: try selfMeasurement())
        logger.warning("\(simulationWarning)", metadata: ["simulationPlatformKey": "\(keyPath)", "fingerprint": "\(platformKey.fingerprint)"])
        return (store, provider, platformKey)
    }

    /// Throws ``RecoveryNeeded`` when the state cannot be unsealed but can be recovered.
    public static func makeCoordinator(_ configuration: Configuration, logger: Logger) throws -> Coordinator {
        let (store, provider, platformKey) = try environment(configuration, logger: logger)
        let dcap = try configuration.dcapCollateralPath.map { DCAPEvidenceVerifier(source: try FileDCAPCollateralSource(path: $0)) }
        var crls: [AMDProduct: [UInt8]] = [:]
        for path in configuration.amdCRLPaths {
            guard let bytes = FileManager.default.contents(atPath: path).map(Array.init) else { throw SealedStoreError.io("cannot read AMD CRL \(path)") }
            guard let product = SNPEvidence.product(ofCRL: bytes) else { throw SealedStoreError.io("\(path) is not a CRL issued by an AMD ARK (Milan, Genoa, Turin)") }
            crls[product] = bytes
        }
        return try Coordinator(
            store: store, evidenceProvider: provider, simulationKey: platformKey.publicKey, dcap: dcap, snpCRLs: crls, logger: logger)
    }

    /// Serves until SIGINT/SIGTERM. A coordinator that cannot unseal its state but has
    /// recovery data first serves recovery until enough shares rebuilt the state key.
    public static func run(_ configuration: Configuration, logger: Logger) async throws {
        let coordinator: Coordinator
        do {
            coordinator = try makeCoordinator(configuration, logger: logger)
        } catch let needed as RecoveryNeeded {
            logger.error("\(needed)")
            guard try await runRecovery(needed, configuration, logger: logger) else { return }
            try await run(configuration, logger: logger)
            return
        }
        let tls = try tlsConfiguration(coordinator.authority, dnsNames: configuration.dnsNames)
        // Users authenticate with client certificates matched against the manifest, not against
        // a CA: any presented certificate passes the handshake (which proves its key), and the
        // handlers authorize it.
        var clientTLS = tls
        clientTLS.certificateVerification = .optionalVerification
        let client = Application(
            router: HTTPAPI.clientRouter(coordinator),
            server: try .tls(.http1(), configuration: .init(tlsConfiguration: clientTLS) { _, promise in promise.succeed(.certificateVerified) }),
            configuration: .init(address: .hostname(configuration.clientAddress.host, port: configuration.clientAddress.port)),
            logger: logger)
        let mesh = Application(
            router: HTTPAPI.meshRouter(coordinator), server: try .tls(.http1(), tlsConfiguration: tls),
            configuration: .init(address: .hostname(configuration.meshAddress.host, port: configuration.meshAddress.port)),
            logger: logger)
        logger.info(
            "coordinator ready",
            metadata: [
                "state": "\(coordinator.phase.rawValue)", "client": "\(configuration.clientAddress.host):\(configuration.clientAddress.port)",
                "mesh": "\(configuration.meshAddress.host):\(configuration.meshAddress.port)",
            ])
        let group = ServiceGroup(services: [client, mesh], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        try await group.run()
    }

    /// Serves the recovery API on both addresses until the state is recovered (true) or a
    /// signal stops the coordinator (false).
    static func runRecovery(_ needed: RecoveryNeeded, _ configuration: Configuration, logger: Logger) async throws -> Bool {
        let (store, provider, _) = try environment(configuration, logger: logger)
        let recovery = try RecoveryCoordinator(store: store, data: needed.data, evidenceProvider: provider, logger: logger)
        let tls = try tlsConfiguration(recovery.authority, dnsNames: configuration.dnsNames)
        var clientTLS = tls
        clientTLS.certificateVerification = .optionalVerification
        let (signal, continuation) = AsyncStream<Void>.makeStream()
        let router = HTTPAPI.recoveryRouter(recovery) { continuation.yield() }
        var servers: [Application<RouterResponder<ClientRequestContext>>] = []
        for address in [configuration.clientAddress, configuration.meshAddress] {
            servers.append(Application(
                router: router,
                server: try .tls(.http1(), configuration: .init(tlsConfiguration: clientTLS) { _, promise in promise.succeed(.certificateVerified) }),
                configuration: .init(address: .hostname(address.host, port: address.port)), logger: logger))
        }
        let group = ServiceGroup(services: servers, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        logger.warning("coordinator in recovery: run `veil recover --key KEY.pem` with \(needed.data.threshold) of \(needed.data.shares.count) recovery keys")
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            tasks.addTask {
                for await _ in signal {
                    // Let the answer to the last share reach its client first.
                    try? await Task.sleep(for: .milliseconds(200))
                    await group.triggerGracefulShutdown()
                    return
                }
            }
            try await tasks.next()
            continuation.finish()
            tasks.cancelAll()
        }
        return recovery.isRecovered
    }

    /// A fresh TLS server certificate from the intermediate CA for every start.
    static func tlsConfiguration(_ authority: CertificateAuthority, dnsNames: [String]) throws -> TLSConfiguration {
        let key = P256.Signing.PrivateKey()
        let leaf = try authority.issueLeaf(
            publicKey: .init(key.publicKey), commonName: "Veil Coordinator", dnsNames: ["localhost"] + dnsNames,
            ipAddresses: [[127, 0, 0, 1], [UInt8](repeating: 0, count: 15) + [1]], validFor: 30 * 86400)
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: [
                .certificate(try NIOSSLCertificate(bytes: try leaf.derBytes, format: .der)),
                .certificate(try NIOSSLCertificate(bytes: authority.intermediateDER, format: .der)),
            ],
            privateKey: .privateKey(try NIOSSLPrivateKey(bytes: Array(key.pemRepresentation.utf8), format: .pem)))
        configuration.minimumTLSVersion = .tlsv12
        return configuration
    }
}
