import ArgumentParser
import Foundation
import Logging
import NIOCore
import VeilAttestation
import VeilCollateral
import VeilConnections
import VeilCoordinator
import VeilCore
import VeilLauncherCommands

struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator", abstract: "Run the coordinator (client API and mesh API over TLS).",
        discussion: helpText("""
            One replica of the coordinator. With the default --store file its state is one sealed file in
            --data-dir. With --store etcd several replicas (each with its own --data-dir, where it keeps
            the state key sealed under its own sealing key) share the state in etcd; a replica without
            the state key gets it from a peer by mutual attestation. See docs/ha.md.
            """))

    @Option(help: ArgumentHelp("Directory for this replica's sealed keys (and the state with --store file).", valueName: "dir"))
    var dataDir: String

    @Option(help: ArgumentHelp("Where the state lives: file (the data directory; default) or etcd (shared by replicas).", valueName: "file|etcd"))
    var store = "file"

    @Option(help: ArgumentHelp("etcd client URLs, comma-separated (https://HOST:PORT,…).", valueName: "urls"))
    var etcdEndpoints: String?

    @Option(help: ArgumentHelp("CA certificate (PEM) of etcd's client port.", valueName: "file"))
    var etcdCa: String?

    @Option(help: ArgumentHelp("Client certificate (PEM) for etcd.", valueName: "file"))
    var etcdCert: String?

    @Option(help: ArgumentHelp("Private key (PEM) of --etcd-cert.", valueName: "file"))
    var etcdKey: String?

    @Option(help: ArgumentHelp("Key prefix in etcd: one coordinator per prefix.", valueName: "prefix"))
    var etcdPrefix = "/veil/default"

    @Option(help: ArgumentHelp("Mesh address peers reach this replica at (default: --mesh-addr).", valueName: "host:port"))
    var peerAddress: String?

    @Flag(help: "Delete the stored state and this replica's state key, and start a new coordinator (new root CA, all secrets lost).")
    var reset = false

    @Flag(help: ArgumentHelp(
        "SEV-SNP: seal this replica's state key again at the chip's committed TCB, after a firmware update (TCB recovery); keys of the older TCB then open nothing here. Recorded in the history.",
        discussion: "A replica pins the TCB version it first sealed at, so firmware updates keep its state key until this step."))
    var advanceSealingTCB = false

    @Option(help: ArgumentHelp("Lifetime of the coordinator's own TLS certificates in seconds (renewed at two thirds; default 30 days).", valueName: "seconds"))
    var tlsValidity: Double = ServerIdentity.defaultValidity

    @Option(help: ArgumentHelp("Seconds a key-broker (KBS) session lasts after /kbs/v0/auth, and a KBS attestation token after /kbs/v0/attest (default 300).", valueName: "seconds"))
    var kbsSessionLifetime: Double = KBSSettings().sessionLifetime

    @Option(help: ArgumentHelp(
        "Seconds a connection may take to deliver a request head (TLS handshake included) after it opens or after its last answer, or pause within a request body, before it is closed.",
        valueName: "seconds"))
    var idleTimeout: Double = 10

    @Option(help: ArgumentHelp("Open connections allowed from one peer address (both listeners together).", valueName: "n"))
    var maxConnectionsPerPeer = ConnectionLimits().perPeer

    @Option(help: ArgumentHelp("Open connections allowed in total (both listeners together).", valueName: "n"))
    var maxConnections = ConnectionLimits().total

    @Option(help: ArgumentHelp("Client API address (users, `veil attest`).", valueName: "host:port"))
    var clientAddr = VeilDefaults.clientAddress

    @Option(help: ArgumentHelp("Mesh API address (launchers' activations).", valueName: "host:port"))
    var meshAddr = VeilDefaults.meshAddress

    @Option(help: ArgumentHelp(
        "TEE to run in (env VEIL_TEE): auto (configfs-tsm or Gramine; never simulation), snp, tdx, sgx-gramine, coco (a Confidential Containers pod: evidence from its guest API, env VEIL_GUEST_API, default http://127.0.0.1:8006; no sealing key: the state key comes from peers or recovery), or simulated (development only, no confidentiality). Required.",
        valueName: "tee"))
    var tee: String?

    @Option(help: ArgumentHelp(
        "Simulation platform key file (env \(SimulationPlatformKey.environmentVariable)); created if absent. Default: DIR/\(SimulationPlatformKey.defaultFileName).",
        valueName: "file"))
    var simulationKey: String?

    @Option(name: .customLong("dns-name"), help: "Extra DNS name for the coordinator's TLS certificate (repeatable).")
    var dnsNames: [String] = []

    @Option(help: ArgumentHelp("Intel DCAP collateral (JSON file or directory) for SGX/TDX activations.", valueName: "file|dir"))
    var dcapCollateral: String?

    @Option(help: ArgumentHelp(
        "Intel PCS or a PCCS base URL (https://…) to fetch DCAP collateral from, for SGX/TDX activations and for the coordinator's own quote, which its attestation answer then carries (clients need no collateral file); kept in memory until each document's nextUpdate and on disk in DIR/collateral-cache. Instead of --dcap-collateral.",
        valueName: "url"))
    var collateral: String?

    @Option(help: ArgumentHelp("CA certificate(s) (PEM) trusted for an https --collateral server besides the system's roots (a PCCS with its own CA). Documents are still verified against Intel's root.", valueName: "file"))
    var collateralCa: String?

    @Option(help: ArgumentHelp(
        "Seconds fetched collateral is still used past its nextUpdate while the --collateral server cannot be reached (verified as of that nextUpdate, with a warning); 0: never.",
        valueName: "seconds"))
    var collateralGrace: Int = 0

    @Option(name: .customLong("amd-crl"), help: ArgumentHelp("AMD CRL (DER, KDS /vcek/v1/PRODUCT/crl) checked for SEV-SNP activations (repeatable, one per product).", valueName: "file"))
    var amdCRLs: [String] = []

    @Option(help: ArgumentHelp(
        "SEV-SNP: AMD KDS base URL for VCEKs of reports the host sent without certificates (this replica's and launchers'), cached in DIR/kds-cache, and for each product's CRL (without an --amd-crl file), kept until its nextUpdate. 'none' turns fetching off.",
        valueName: "url"))
    var kds = KDSClient.amdKDS

    @Option(help: "Log format: text, or json (one object per line).") var logFormat: LogFormat = .text

    @Option(help: "Log level (trace, debug, info, notice, warning, error).")
    var logLevel = "info"

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let teeName = tee ?? environment[VeilEnvironment.tee] else {
            throw ValidationError("--tee is required: auto, snp, tdx or sgx-gramine in a TEE, coco in a Confidential Containers pod; simulated for development (NO confidentiality)")
        }
        guard let selection = TEESelection(rawValue: teeName) else {
            throw ValidationError("--tee '\(teeName)' is not one of \(TEESelection.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        var logger = logFormat.logger(label: "veil.coordinator")
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown log level '\(logLevel)'") }
        logger.logLevel = level
        var configuration = CoordinatorServer.Configuration(
            dataDirectory: dataDir, clientAddress: try parseAddress(clientAddr), meshAddress: try parseAddress(meshAddr),
            simulationKeyPath: simulationKey ?? environment[SimulationPlatformKey.environmentVariable], dnsNames: dnsNames)
        if selection != .simulated {
            // The device paths: for guests that put them elsewhere (and for tests' doubles).
            var paths = HardwareTEEPaths(selection: selection)
            if let root = environment[VeilEnvironment.tsmRoot] { paths.tsmRoot = root }
            if let root = environment[VeilEnvironment.gramineRoot] { paths.gramineRoot = root }
            if let keys = environment[VeilEnvironment.gramineKeys] { paths.gramineKeys = keys }
            if let device = environment[VeilEnvironment.sevGuest] { paths.sevGuest = device }
            if let url = environment[VeilEnvironment.guestAPI] { paths.guestAPI = url }
            configuration.tee = .hardware(paths)
            configuration.simulationKeyPath = simulationKey
        }
        configuration.dcapCollateralPath = dcapCollateral
        (configuration.collateralFetcher, configuration.collateralGrace) = try collateralSource()
        configuration.amdCRLPaths = amdCRLs
        if kds != "none" {
            var client = KDSClient(baseURL: kds, cacheDirectory: dataDir + "/kds-cache")
            // A start or an activation should not hang on an unreachable KDS.
            client.timeout = .seconds(10)
            configuration.snpEndorsements = client
            let kdsClient = client
            configuration.amdCRLCache = AMDCRLCache(origin: kds) { try await kdsClient.crl(for: $0) }
        }
        configuration.reset = reset
        configuration.advanceSealingTCB = advanceSealingTCB
        configuration.peerAddress = peerAddress
        guard tlsValidity >= 1 else { throw ValidationError("--tls-validity must be at least 1 second") }
        configuration.tlsValidity = tlsValidity
        configuration.connectionLimits = try connectionLimits()
        guard kbsSessionLifetime >= 1 else { throw ValidationError("--kbs-session-lifetime must be at least 1 second") }
        configuration.kbs = KBSSettings(sessionLifetime: kbsSessionLifetime, tokenLifetime: kbsSessionLifetime)
        if let store = try etcdStore() { configuration.store = store }
        do {
            try await CoordinatorServer.run(configuration, logger: logger)
        } catch let error as CoordinatorStartError {
            throw CommandError("coordinator not started: \(error)")
        }
    }
}

extension CoordinatorCommand {
    /// `--store etcd` with its endpoints and TLS files; nil for `--store file`.
    func etcdStore() throws -> CoordinatorServer.StoreChoice? {
        switch store {
        case "file":
            guard etcdEndpoints == nil else { throw ValidationError("--etcd-endpoints needs --store etcd") }
            return nil
        case "etcd":
            guard let etcdEndpoints else { throw ValidationError("--store etcd needs --etcd-endpoints https://HOST:PORT,…") }
            let endpoints = etcdEndpoints.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
            var tls: EtcdTLS?
            if let etcdCa {
                func read(_ path: String) throws -> String {
                    guard let data = FileManager.default.contents(atPath: path) else { throw CommandError("cannot read \(path)") }
                    return String(decoding: data, as: UTF8.self)
                }
                guard (etcdCert == nil) == (etcdKey == nil) else { throw ValidationError("--etcd-cert and --etcd-key go together") }
                tls = EtcdTLS(caPEM: try read(etcdCa), certificatePEM: try etcdCert.map(read), keyPEM: try etcdKey.map(read))
            } else if endpoints.contains(where: { $0.hasPrefix("https://") }) {
                throw ValidationError("https etcd endpoints need --etcd-ca (and usually --etcd-cert/--etcd-key)")
            }
            return .etcd(endpoints: endpoints, prefix: etcdPrefix, tls: tls)
        default:
            throw ValidationError("--store must be file or etcd")
        }
    }
}

func parseAddress(_ text: String) throws -> (host: String, port: Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
        throw ValidationError("address '\(text)' must be HOST:PORT")
    }
    return (String(text[..<colon]), port)
}

extension CoordinatorCommand {
    /// `--collateral` (with `--collateral-ca`, `--collateral-grace`) as the coordinator's fetcher.
    func collateralSource() throws -> ((any DCAPCollateralFetcher)?, Duration) {
        guard let collateral else {
            if collateralCa != nil { throw ValidationError("--collateral-ca applies to an https --collateral server") }
            return (nil, .zero)
        }
        guard dcapCollateral == nil else { throw ValidationError("--collateral and --dcap-collateral: give one source of Intel collateral") }
        guard collateralGrace >= 0 else { throw ValidationError("--collateral-grace must be 0 or more seconds") }
        var client = PCSClient(baseURL: collateral, cacheDirectory: dataDir + "/collateral-cache")
        // An activation should not hang on an unreachable PCS/PCCS.
        client.timeout = .seconds(10)
        do {
            return (PCSCollateralFetcher(client: client, http: try CollateralHTTP.longLived(trusting: collateralCa)), .seconds(collateralGrace))
        } catch {
            throw ValidationError("\(error)")
        }
    }

}

extension CoordinatorCommand {
    func connectionLimits() throws -> ConnectionLimits {
        guard idleTimeout >= 0.1 else { throw ValidationError("--idle-timeout must be at least 0.1 seconds") }
        guard maxConnectionsPerPeer >= 1, maxConnections >= maxConnectionsPerPeer else {
            throw ValidationError("--max-connections-per-peer must be at least 1 and at most --max-connections (\(maxConnections))")
        }
        var limits = ConnectionLimits()
        limits.idleTimeout = .milliseconds(Int64(idleTimeout * 1000))
        limits.perPeer = maxConnectionsPerPeer
        limits.total = maxConnections
        return limits
    }
}
