import AsyncHTTPClient
import Crypto
import Foundation
import Hummingbird
import HummingbirdTLS
import Logging
import Synchronization
import NIOCore
import NIOSSL
import ServiceLifecycle
import VeilAttestation
import VeilConnections
import VeilCore
import VeilManifest

/// Runs a coordinator replica: opens (or creates) the state in its store, obtains the state key
/// when it has none (from a peer replica or from recovery key holders), and serves the client
/// and mesh APIs over TLS until SIGINT/SIGTERM.
public struct CoordinatorServer {
    /// Where the state lives.
    public enum StoreChoice: Sendable {
        /// The embedded default: `state.sealed` in the data directory.
        case file
        /// etcd's v3 API, shared by several replicas.
        case etcd(endpoints: [String], prefix: String, tls: EtcdTLS?)
    }

    public struct Configuration: Sendable {
        public var dataDirectory: String
        public var clientAddress: (host: String, port: Int)
        public var meshAddress: (host: String, port: Int)
        /// Which TEE the coordinator runs in; there is no default (simulation must be chosen).
        public var tee: CoordinatorTEE = .simulated
        /// The simulation platform key (simulated coordinators; a hardware coordinator loads it
        /// only when given, to accept simulated launchers of manifests that allow them).
        public var simulationKeyPath: String?
        /// Extra DNS names for the coordinator's TLS certificate (localhost and loopback IPs are always present).
        public var dnsNames: [String]
        /// Intel DCAP collateral (file or directory) for SGX/TDX activations; none refuses them.
        public var dcapCollateralPath: String?
        /// AMD CRLs (DER files, one per product) checked for SEV-SNP activations.
        public var amdCRLPaths: [String] = []
        /// Where VCEKs come from for SEV-SNP reports the host sent without certificates (this
        /// replica's own, and launchers'); nil leaves such evidence unverifiable.
        public var snpEndorsements: (any SNPEndorsementSource)?
        /// AMD CRLs fetched (from KDS) for products without a file in ``amdCRLPaths``.
        public var amdCRLCache: AMDCRLCache?
        /// Intel PCS or a PCCS the coordinator fetches DCAP collateral from and caches
        /// (`--collateral`); exclusive with ``dcapCollateralPath``.
        public var collateralFetcher: (any DCAPCollateralFetcher)?
        /// How long past its `nextUpdate` fetched collateral is still used when the source is
        /// unreachable (`--collateral-grace`; default none).
        public var collateralGrace: Duration = .zero
        public var store: StoreChoice = .file
        /// The mesh address peers reach this replica at (default: the mesh address).
        public var peerAddress: String?
        /// Delete the stored state and this replica's key first: a new coordinator.
        public var reset = false
        /// SEV-SNP: seal the state key again at the chip's committed TCB (`--advance-sealing-tcb`).
        public var advanceSealingTCB = false
        /// Validity of each TLS certificate the coordinator issues itself (renewed at two thirds).
        public var tlsValidity: TimeInterval = ServerIdentity.defaultValidity
        /// Lifetimes of key-broker (KBS) sessions and tokens.
        public var kbs = KBSSettings()
        /// Deadlines and caps for connections on both listeners.
        public var connectionLimits = ConnectionLimits()

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

        var advertisedPeerAddress: String { peerAddress ?? "\(meshAddress.host):\(meshAddress.port)" }
    }

    /// The simulated coordinator's measurement: its own executable, measured as the launcher measures programs.
    public static func selfMeasurement() throws -> [UInt8] { try measurement(ofExecutableAt: "/proc/self/exe") }

    /// The measurement a simulated coordinator running `path` reports (`veil image self` prints
    /// it for the executable it packs).
    public static func measurement(ofExecutableAt path: String) throws -> [UInt8] {
        try LaunchMeasurement.measure(programAt: path, config: .init(service: "veil-coordinator", arguments: []))
    }

    /// Everything a replica needs besides its store.
    struct Environment: Sendable {
        var vault: StateVault
        var provider: any EvidenceProvider
        var verification: Coordinator.Verification
        var replicaPolicy: ReplicaPolicy
        var replicaID: String
        /// The SNP sealing pin moved at this start: recorded in the history once the state is open.
        var pinMove: SealingPinMove?
        /// One exposition for the replica's whole life: counters survive recovery.
        var metrics = PrometheusExposition()

        func connectionGate(_ configuration: Configuration, logger: Logger) -> ConnectionGate {
            let metrics = metrics.metrics
            return ConnectionGate(
                limits: configuration.connectionLimits, logger: logger, onRefusal: { metrics.countConnectionRefused(reason: $0.rawValue) },
                onUnanswered: { metrics.countConnectionWithoutRequest() })
        }
    }

    static func environment(_ configuration: Configuration, logger: Logger) async throws -> Environment {
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        let collateralCache = collateralCache(configuration, logger: logger)
        let dcap = try configuration.dcapCollateralPath.map { DCAPEvidenceVerifier(source: try FileDCAPCollateralSource(path: $0)) }
            ?? collateralCache.map { DCAPEvidenceVerifier(source: $0) }
        let crls = try amdCRLs(configuration.amdCRLPaths)
        let simulationKeyPath = configuration.simulationKeyPath
            ?? (configuration.dataDirectory as NSString).appendingPathComponent(SimulationPlatformKey.defaultFileName)
        let provider: any EvidenceProvider
        let sealing: any SealingKeyProvider
        let ownMeasurement: [UInt8]
        var ownIdentity: TEEIdentity?
        var simulationKey: P256.Signing.PublicKey?
        switch configuration.tee {
        case .simulated:
            let platformKey = try SimulationPlatformKey.loadOrCreate(at: simulationKeyPath)
            ownMeasurement = try selfMeasurement()
            provider = SimulatedEvidenceProvider(key: platformKey, measurement: ownMeasurement)
            sealing = SimulatedSealing(directory: configuration.dataDirectory)
            simulationKey = platformKey.publicKey
            logger.warning("\(simulationWarning)", metadata: ["simulationPlatformKey": "\(simulationKeyPath)", "fingerprint": "\(platformKey.fingerprint)"])
        case .hardware(let devices):
            let identity = try await HardwareIdentity.detect(devices, endorsements: configuration.snpEndorsements, logger: logger)
            (provider, sealing, ownMeasurement, ownIdentity) = (identity.provider, identity.sealing, identity.measurement, identity.identity)
            if let path = configuration.simulationKeyPath {
                simulationKey = try SimulationPlatformKey.loadOrCreate(at: path).publicKey
                logger.warning("accepting simulated launchers signed by \(path) where the manifest allows simulation: \(simulationWarning)")
            }
            logger.info("hardware TEE", metadata: [
                "tee": "\(identity.tee.rawValue)", "measurement": "\(Hex.encode(identity.measurement))", "identity": "\(identity.identity)",
                "sealing": "\(sealing.binding)",
            ])
            if identity.tee == .snp {
                logger.warning("""
                    the SNP launch measurement (what clients pin and the sealing key binds) covers this coordinator only if its binary is \
                    in a measured initrd or in a root filesystem whose dm-verity root hash is on the measured kernel command line; \
                    otherwise any program in a guest booted the same way passes as this coordinator (docs/coordinator-tee.md)
                    """)
            }
        }
        let opened = try openVault(sealing, configuration, logger: logger)
        return Environment(
            vault: opened.vault, provider: provider,
            verification: .init(
                simulationKey: simulationKey, dcap: dcap, snpCRLs: crls, snpEndorsements: configuration.snpEndorsements, collateralCache: collateralCache,
                amdCRLCache: configuration.amdCRLCache),
            replicaPolicy: ReplicaPolicy(
                ownIdentity: ownIdentity ?? TEEIdentity(tee: .simulated, measurement: ownMeasurement),
                verification: VerificationPolicy(
                    allowSimulation: simulationKey != nil, simulationKey: simulationKey, dcap: dcap, allowSNP: true, snpCRLs: crls),
                collateralCache: collateralCache),
            replicaID: try replicaID(configuration.dataDirectory), pinMove: opened.pinMove)
    }

    /// AMD CRLs by the product whose ARK issued each.
    static func amdCRLs(_ paths: [String]) throws -> [AMDProduct: [UInt8]] {
        var crls: [AMDProduct: [UInt8]] = [:]
        for path in paths {
            guard let bytes = FileManager.default.contents(atPath: path).map(Array.init) else { throw CoordinatorError.storage("cannot read AMD CRL \(path)") }
            guard let product = SNPEvidence.product(ofCRL: bytes) else { throw CoordinatorError.storage("\(path) is not a CRL issued by an AMD ARK (Milan, Genoa, Turin)") }
            crls[product] = bytes
        }
        return crls
    }

    /// The replica's vault under `sealing`'s key, the SNP pin moved when asked (and logged).
    static func openVault(_ sealing: any SealingKeyProvider, _ configuration: Configuration, logger: Logger) throws -> OpenedVault {
        let opened: OpenedVault
        do {
            opened = try sealing.openVault(in: configuration.dataDirectory, advancePin: configuration.advanceSealingTCB)
        } catch {
            throw CoordinatorStartError(description: configuration.advanceSealingTCB ? "--advance-sealing-tcb: \(error)" : "\(error)")
        }
        if let move = opened.pinMove {
            logger.warning("the SNP sealing pin moved: the state key is sealed again at the chip's committed TCB; keys of the older TCB open nothing here", metadata: [
                "from": "\(move.from.map(SealingPinMove.hex) ?? "none (unpinned first format)")", "to": "\(SealingPinMove.hex(move.to))", "reason": "\(move.reason.rawValue)",
            ])
        }
        return opened
    }

    /// The cache of `--collateral`, logging each use of collateral within the grace period.
    static func collateralCache(_ configuration: Configuration, logger: Logger) -> DCAPCollateralCache? {
        configuration.collateralFetcher.map { fetcher in
            DCAPCollateralCache(fetcher: fetcher, grace: configuration.collateralGrace, onStale: { platform, nextUpdate in
                logger.warning("using Intel collateral past its nextUpdate within the grace period: the PCS/PCCS could not be reached", metadata: [
                    "platform": "\(platform)", "nextUpdate": "\(nextUpdate)", "grace": "\(configuration.collateralGrace)", "source": "\(fetcher.origin)",
                ])
            })
        }
    }

    /// A stable ID for this replica (created once in its data directory).
    static func replicaID(_ directory: String) throws -> String {
        let path = (directory as NSString).appendingPathComponent("replica-id")
        if let text = FileManager.default.contents(atPath: path).map({ String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) }),
            !text.isEmpty
        {
            return text
        }
        let id = Hex.encode(SymmetricKey(size: .bits128).withUnsafeBytes { Array($0) }.prefix(8))
        try AtomicFile.write(Array((id + "\n").utf8), to: path, mode: 0o644)
        return id
    }

    static func makeStore(_ configuration: Configuration, logger: Logger) throws -> any StateStore {
        switch configuration.store {
        case .file: return FileStateStore(directory: configuration.dataDirectory)
        case .etcd(let endpoints, let prefix, let tls): return try EtcdStateStore(endpoints: endpoints, prefix: prefix, tls: tls, logger: logger)
        }
    }

    /// Opens the coordinator of `configuration` (tests and `veil-bench` run it in-process).
    public static func makeCoordinator(_ configuration: Configuration, logger: Logger) async throws -> Coordinator {
        let environment = try await environment(configuration, logger: logger)
        return try await Coordinator.open(
            store: try makeStore(configuration, logger: logger), vault: environment.vault, evidenceProvider: environment.provider,
            verification: environment.verification, logger: logger, about: .init(identity: environment.replicaPolicy.ownIdentity.description))
    }

    /// Serves until SIGINT/SIGTERM.
    public static func run(_ configuration: Configuration, logger: Logger) async throws {
        let environment = try await environment(configuration, logger: logger)
        let store = try makeStore(configuration, logger: logger)
        if configuration.reset {
            try await store.reset()
            environment.vault.reset()
            logger.warning("--reset: the stored state and this replica's state key were deleted; a new coordinator starts", metadata: ["store": "\(store.description)"])
        }
        var recovered: RecoveryCoordinator?
        while true {
            let coordinator: Coordinator
            do {
                coordinator = try await Coordinator.open(
                    store: store, vault: environment.vault, evidenceProvider: environment.provider, verification: environment.verification, logger: logger,
                    metrics: environment.metrics.metrics, about: .init(identity: environment.replicaPolicy.ownIdentity.description))
            } catch let error as Coordinator.OpenError {
                guard case .needsStateKey(let reason, let recovery) = error else { throw CoordinatorStartError(description: error.description) }
                logger.error("\(error)")
                guard let outcome = try await runRecovery(
                    reason: reason, data: recovery, store: store, environment: environment, configuration: configuration, logger: logger)
                else { return }
                recovered = outcome
                continue
            }
            if let recovered { try await coordinator.recordRecovery(recovered) }
            if let move = environment.pinMove { try await coordinator.record(move, replica: environment.replicaID) }
            try await serve(coordinator, store: store, environment: environment, configuration: configuration, logger: logger)
            return
        }
    }

    static func serve(
        _ coordinator: Coordinator, store: any StateStore, environment: Environment, configuration: Configuration, logger: Logger
    ) async throws {
        let identity = try ServerIdentity(authority: coordinator.authority, dnsNames: configuration.dnsNames, validity: configuration.tlsValidity, logger: logger)
        coordinator.configureKBS(configuration.kbs)
        environment.metrics.report { coordinator.metricsSnapshot(certificateExpiry: identity.notAfter) }
        // Users authenticate with client certificates matched against the manifest, not against
        // a CA: any presented certificate passes the handshake (which proves its key), and the
        // RequireUser middleware authorizes it.
        // "ready" only once both listeners are bound; a bind failure names its listener.
        let listeners = Listeners(expected: ["client API", "mesh API"]) {
            logger.info(
                "coordinator ready",
                metadata: [
                    "state": "\(coordinator.phase.rawValue)", "client": "\(configuration.clientAddress.host):\(configuration.clientAddress.port)",
                    "mesh": "\(configuration.meshAddress.host):\(configuration.meshAddress.port)", "store": "\(store.description)",
                    "generation": "\(coordinator.generation)", "replica": "\(environment.replicaID)",
                ])
        }
        // One gate for both listeners: the caps count a peer's connections on either.
        let gate = environment.connectionGate(configuration, logger: logger)
        let client = Application(
            router: HTTPAPI.clientRouter(coordinator, metrics: environment.metrics),
            server: try .tls(gate.http1(), configuration: .init(tlsConfiguration: try identity.tlsConfiguration(clientCertificates: true)) { _, promise in
                promise.succeed(.certificateVerified)
            }),
            configuration: .init(address: .hostname(configuration.clientAddress.host, port: configuration.clientAddress.port)),
            onServerRunning: { _ in listeners.running("client API") }, logger: logger)
        let peers = store is any PeerDirectory ? PeerKeyService(coordinator: coordinator, policy: environment.replicaPolicy) : nil
        let mesh = Application(
            router: HTTPAPI.meshRouter(coordinator, peers: peers),
            // Client certificates are asked for, not required: a service's activation certificate
            // is its credential for the transit API; the handler verifies it (TransitRoutes).
            server: try .tls(gate.http1(), configuration: .init(tlsConfiguration: try identity.tlsConfiguration(clientCertificates: true)) { _, promise in
                promise.succeed(.certificateVerified)
            }),
            configuration: .init(address: .hostname(configuration.meshAddress.host, port: configuration.meshAddress.port)),
            onServerRunning: { _ in listeners.running("mesh API") }, logger: logger)
        let background = BackgroundWork(logger: logger) {
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await identity.keepRenewed() }
                group.addTask { await coordinator.followChanges() }
                group.addTask { await coordinator.keepOwnCollateralFresh() }
                if let directory = store as? any PeerDirectory {
                    group.addTask {
                        do {
                            try await directory.register(replica: environment.replicaID, peerAddress: configuration.advertisedPeerAddress)
                        } catch {
                            logger.error("cannot register with the peer directory", metadata: ["error": "\(error)"])
                        }
                    }
                }
            }
        }
        let group = ServiceGroup(services: [client, mesh, background], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        do {
            try await group.run()
        } catch let error as IOError {
            throw listeners.bindFailure(error, addresses: [
                "client API": ("\(configuration.clientAddress.host):\(configuration.clientAddress.port)", "--client-addr"),
                "mesh API": ("\(configuration.meshAddress.host):\(configuration.meshAddress.port)", "--mesh-addr"),
            ])
        }
    }

    /// Serves the recovery API on both addresses while asking peer replicas for the state key,
    /// until one of them or enough recovery shares provide it (returns the recovery, to record
    /// in the history) or a signal stops the replica (nil).
    static func runRecovery(
        reason: VaultError, data: RecoveryData?, store: any StateStore, environment: Environment, configuration: Configuration, logger: Logger
    ) async throws -> RecoveryCoordinator? {
        let recovery = try RecoveryCoordinator(
            store: store, vault: environment.vault, data: data, reason: reason.description, evidenceProvider: environment.provider, logger: logger)
        let identity = try ServerIdentity(authority: recovery.authority, dnsNames: configuration.dnsNames, validity: configuration.tlsValidity, logger: logger)
        let (signal, continuation) = AsyncStream<Void>.makeStream()
        environment.metrics.report { recovery.metricsSnapshot(certificateExpiry: identity.notAfter) }
        let router = HTTPAPI.recoveryRouter(recovery, metrics: environment.metrics) { continuation.yield() }
        var services: [any Service] = []
        let gate = environment.connectionGate(configuration, logger: logger)
        for address in [configuration.clientAddress, configuration.meshAddress] {
            services.append(Application(
                router: router,
                server: try .tls(gate.http1(), configuration: .init(tlsConfiguration: try identity.tlsConfiguration(clientCertificates: true)) { _, promise in
                    promise.succeed(.certificateVerified)
                }),
                configuration: .init(address: .hostname(address.host, port: address.port)), logger: logger))
        }
        if let directory = store as? any PeerDirectory {
            services.append(BackgroundWork(logger: logger) {
                await askPeers(directory, recovery: recovery, environment: environment, logger: logger)
                continuation.yield()
            })
        }
        let group = ServiceGroup(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        if let data {
            logger.warning("coordinator in recovery: run `veil recover --key KEY.pem` with \(data.threshold) of \(data.shares.count) recovery keys")
        } else {
            logger.warning("waiting for a peer replica to hand over the state key (the manifest names no recovery keys)")
        }
        // Returns only once the group itself has ended: cancelling it while a graceful
        // shutdown still drains a connection tears that connection's writer down unfinished,
        // which NIO treats as a programming error (the process traps).
        try await withThrowingTaskGroup(of: Bool.self) { tasks in
            tasks.addTask {
                try await group.run()
                return true
            }
            tasks.addTask {
                for await _ in signal {
                    // Let the answer to the last share reach its client first.
                    try? await Task.sleep(for: .milliseconds(200))
                    await group.triggerGracefulShutdown()
                    break
                }
                return false
            }
            while let groupEnded = try await tasks.next(), !groupEnded {}
            continuation.finish()
            tasks.cancelAll()
        }
        return recovery.isRecovered ? recovery : nil
    }

    /// Asks every registered peer in turn, every two seconds, until one hands over the key.
    static func askPeers(_ directory: any PeerDirectory, recovery: RecoveryCoordinator, environment: Environment, logger: Logger) async {
        let http = PeerKeyClient.makeHTTPClient()
        await fetchFromPeers(directory, recovery: recovery, environment: environment, http: http, logger: logger)
        try? await http.shutdown()
    }

    private static func fetchFromPeers(
        _ directory: any PeerDirectory, recovery: RecoveryCoordinator, environment: Environment, http: HTTPClient, logger: Logger
    ) async {
        while !Task.isCancelled && !recovery.isRecovered {
            let peers = (try? await directory.peers()) ?? [:]
            for (id, address) in peers.sorted(by: { $0.key < $1.key }) where id != environment.replicaID {
                do {
                    let key = try await PeerKeyClient.fetch(from: address, provider: environment.provider, policy: environment.replicaPolicy, http: http)
                    try await recovery.adoptKeyFromPeer(key, peer: "\(id) at \(address)")
                    return
                } catch {
                    logger.info("peer could not provide the state key", metadata: ["peer": "\(id) at \(address)", "reason": "\(error)"])
                }
            }
            try? await Task.sleep(for: .seconds(2))
        }
    }
}

/// Which of a replica's listeners are bound: announces readiness once all are, and turns a bind
/// error (which names no address) into one that names the listener that failed.
final class Listeners: Sendable {
    private let expected: [String]
    private let bound = Mutex<Set<String>>([])
    private let ready: @Sendable () -> Void

    init(expected: [String], ready: @escaping @Sendable () -> Void) {
        self.expected = expected
        self.ready = ready
    }

    func running(_ name: String) {
        let all = bound.withLock { bound in
            bound.insert(name)
            return bound.count == expected.count
        }
        if all { ready() }
    }

    /// The error for `error` raised while starting: the first listener not bound yet is the one that failed.
    func bindFailure(_ error: IOError, addresses: [String: (address: String, flag: String)]) -> any Error {
        let done = bound.withLock { $0 }
        guard let failed = expected.first(where: { !done.contains($0) }), let (address, flag) = addresses[failed] else { return error }
        let reason: String
        switch error.errnoCode {
        case EADDRINUSE: reason = "the address is already in use (another coordinator, or another program, listens there)"
        case EADDRNOTAVAIL: reason = "no interface of this machine has that address"
        case EACCES: reason = "permission denied (ports below 1024 need privileges)"
        default: reason = String(cString: strerror(error.errnoCode))
        }
        return CoordinatorStartError(description: "cannot listen on \(address) for the \(failed): \(reason); choose another with \(flag)")
    }
}

/// A fatal start-up refusal (rollback, deleted state, another coordinator's state).
public struct CoordinatorStartError: Error, CustomStringConvertible {
    public let description: String
}

/// Long-running work that stops with the service group.
struct BackgroundWork: Service {
    let logger: Logger
    let work: @Sendable () async -> Void

    init(logger: Logger, _ work: @escaping @Sendable () async -> Void) {
        self.logger = logger
        self.work = work
    }

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await work()
            // Finished work keeps the group alive until shutdown.
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
        }
    }
}
